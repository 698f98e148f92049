//! `help` and `help <command>` in the console, answered from the command table without a round
//! trip: the list grouped by role, or one command's usage, parameters, flags, output, timeout,
//! platforms and examples. Plain text (no colors) for the table format; for `-output json` the
//! same facts as one document, in the agent's `help` shape with more fields.

use std::fmt::Write as _;
use std::time::Duration;

use commands::{ParamKind, ParseError, Role, Runs, Spec, TABLE};

use crate::doc::Doc;
use crate::render::Format;

/// The help for `name` (every command when `None`) in `format`; an unknown name is the parser's
/// error, with a suggestion.
pub fn help(name: Option<&str>, format: Format) -> Result<String, ParseError> {
    let spec = match name {
        None => None,
        Some(name) => Some(
            commands::find(name).ok_or_else(|| ParseError::UnknownCommand {
                name: name.to_owned(),
                suggestion: commands::closest(name, TABLE.iter().map(|s| s.name)),
            })?,
        ),
    };
    Ok(match (spec, format) {
        (None, Format::Table) => list(),
        (None, Format::Json) => crate::render::json(&list_doc()),
        (Some(spec), Format::Table) => explain(spec),
        (Some(spec), Format::Json) => crate::render::json(&spec_doc(spec)),
    })
}

const GROUPS: [(Role, &str); 2] = [
    (
        Role::ResponderBasic,
        "Basic commands (role: responder-basic)",
    ),
    (
        Role::ResponderAdvanced,
        "Advanced commands (role: responder-advanced)",
    ),
];

/// Every command with its summary, grouped by role; groups without commands are left out.
pub fn list() -> String {
    let width = TABLE.iter().map(|s| s.name.len()).max().unwrap_or(0) + 2;
    let mut out = String::new();
    for (role, title) in GROUPS {
        let specs: Vec<&Spec> = TABLE.iter().filter(|s| s.role == role).collect();
        if specs.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{title}");
        for spec in specs {
            let _ = writeln!(
                out,
                "  {:width$}{}{}",
                spec.name,
                spec.summary,
                only_on(spec)
            );
        }
    }
    out.push_str(
        "\nhelp <command> explains one. Every command takes -output json|table, and > file or \
         >> file\nto write its output to a file here. exit, quit or Ctrl+D end the session.\n",
    );
    out
}

/// ` (windows only)` for a command the first supported platform (linux) lacks.
fn only_on(spec: &Spec) -> String {
    if spec.supports(commands::Platform::Linux) {
        return String::new();
    }
    format!(" ({} only)", platforms(spec))
}

fn platforms(spec: &Spec) -> String {
    spec.platforms
        .iter()
        .map(|p| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Path => "path",
        ParamKind::Text => "text",
        ParamKind::Count => "count",
        ParamKind::Bool => "true|false",
    }
}

fn role(role: Role) -> &'static str {
    role.id()
}

fn runs(spec: &Spec) -> &'static str {
    match spec.runs {
        Runs::Device => "the device",
        Runs::Broker(_) => "the brokers",
        Runs::Transfer(_) => {
            "the brokers, with the device's agent (end the line with & for the background)"
        }
        Runs::Console => "this console",
    }
}

/// `10 minutes`, `90 seconds`.
fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        60 => "1 minute".to_owned(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".to_owned(),
        s => format!("{s} seconds"),
    }
}

/// One command, everything the table says about it.
pub fn explain(spec: &Spec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", spec.name, spec.summary);
    let _ = writeln!(out, "\nUsage: {}", spec.usage());
    if !spec.params.is_empty() {
        let _ = writeln!(
            out,
            "\nParameters (in this order, or anywhere as -name value):"
        );
        let rows: Vec<(String, String, &str)> = spec
            .params
            .iter()
            .scan(0, |position, p| {
                let how = if p.positional {
                    *position += 1;
                    let required = if p.required { "required" } else { "optional" };
                    format!("{required}, position {position}")
                } else {
                    "optional, by name only".to_owned()
                };
                Some((format!("-{} <{}>", p.name, kind(p.kind)), how, p.help))
            })
            .collect();
        let first = rows.iter().map(|r| r.0.len()).max().unwrap_or(0) + 2;
        let second = rows.iter().map(|r| r.1.len()).max().unwrap_or(0) + 2;
        for (name, how, help) in rows {
            let _ = writeln!(out, "  {name:first$}{how:second$}{help}");
        }
    }
    if !spec.flags.is_empty() {
        let _ = writeln!(out, "\nFlags:");
        let width = spec.flags.iter().map(|f| f.name.len()).max().unwrap_or(0) + 3;
        for flag in spec.flags {
            let name = format!("-{}", flag.name);
            let _ = writeln!(out, "  {name:width$}{}", flag.help);
        }
    }
    let _ = writeln!(out);
    let facts = [
        (
            "Output",
            format!(
                "{} (-output json|table; > file writes it here)",
                spec.output.as_str()
            ),
        ),
        ("Timeout", duration(spec.timeout)),
        ("Platforms", platforms(spec)),
        ("Runs on", runs(spec).to_owned()),
        ("Role", role(spec.role).to_owned()),
    ];
    for (key, value) in facts {
        let _ = writeln!(out, "{:11}{value}", format!("{key}:"));
    }
    if let Some(first) = spec.prerequisite {
        let _ = writeln!(out, "{:11}{first} on the same target first", "Needs:");
    }
    if !spec.examples.is_empty() {
        let _ = writeln!(out, "\nExamples:");
        for example in spec.examples {
            let _ = writeln!(out, "  {example}");
        }
    }
    out
}

fn obj(fields: Vec<(&str, Doc)>) -> Doc {
    Doc::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn text(s: &str) -> Doc {
    Doc::String(s.to_owned())
}

fn list_doc() -> Doc {
    obj(vec![(
        "commands",
        Doc::Array(
            TABLE
                .iter()
                .map(|s| {
                    obj(vec![
                        ("name", text(s.name)),
                        ("summary", text(s.summary)),
                        ("role", text(role(s.role))),
                    ])
                })
                .collect(),
        ),
    )])
}

fn spec_doc(spec: &Spec) -> Doc {
    let params = spec
        .params
        .iter()
        .map(|p| {
            obj(vec![
                ("name", text(p.name)),
                ("kind", text(kind(p.kind))),
                ("required", Doc::Bool(p.required)),
                ("positional", Doc::Bool(p.positional)),
                ("help", text(p.help)),
            ])
        })
        .collect();
    let flags = spec
        .flags
        .iter()
        .map(|f| obj(vec![("name", text(f.name)), ("help", text(f.help))]))
        .collect();
    obj(vec![
        ("name", text(spec.name)),
        ("summary", text(spec.summary)),
        ("usage", Doc::String(spec.usage())),
        ("parameters", Doc::Array(params)),
        ("flags", Doc::Array(flags)),
        ("output", text(spec.output.as_str())),
        (
            "default_timeout_seconds",
            Doc::Number(spec.timeout.as_secs().into()),
        ),
        (
            "platforms",
            Doc::Array(spec.platforms.iter().map(|p| text(p.as_str())).collect()),
        ),
        (
            "runs",
            text(match spec.runs {
                Runs::Device => "device",
                Runs::Broker(_) => "broker",
                Runs::Transfer(_) => "transfer",
                Runs::Console => "console",
            }),
        ),
        ("role", text(role(spec.role))),
        ("prerequisite", spec.prerequisite.map_or(Doc::Null, text)),
        (
            "examples",
            Doc::Array(spec.examples.iter().map(|e| text(e)).collect()),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_lists_every_command() {
        let out = help(None, Format::Table).unwrap();
        for spec in TABLE {
            assert!(out.contains(spec.summary), "{} missing", spec.name);
        }
        insta::assert_snapshot!(out);
    }

    #[test]
    fn help_findfile() {
        insta::assert_snapshot!(help(Some("findfile"), Format::Table).unwrap());
    }

    #[test]
    fn help_of_a_command_without_parameters() {
        let out = help(Some("PROCESSES"), Format::Table).unwrap();
        assert!(out.starts_with("processes: "), "{out}");
        assert!(out.contains("\nFlags:\n  -hash"), "{out}");
        assert!(!out.contains("Parameters"), "{out}");
    }

    #[test]
    fn unknown_command_is_the_parsers_error() {
        let err = help(Some("findfil"), Format::Table).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown command 'findfil' (did you mean findfile?); type help for the list of commands"
        );
        let err = help(Some("nosuch"), Format::Table).unwrap_err();
        assert_eq!(
            err,
            commands::parse("nosuch").unwrap_err(),
            "the same words as a mistyped command"
        );
    }

    #[test]
    fn json_help_is_one_document() {
        let list: serde_json::Value =
            serde_json::from_str(&help(None, Format::Json).unwrap()).unwrap();
        assert_eq!(list["commands"].as_array().unwrap().len(), TABLE.len());
        let one: serde_json::Value =
            serde_json::from_str(&help(Some("findfile"), Format::Json).unwrap()).unwrap();
        assert_eq!(one["name"], "findfile");
        assert_eq!(one["default_timeout_seconds"], 1800);
        assert_eq!(one["parameters"][0]["name"], "name");
        assert_eq!(one["flags"][1]["name"], "nocase");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(Duration::from_secs(600)), "10 minutes");
        assert_eq!(duration(Duration::from_secs(60)), "1 minute");
        assert_eq!(duration(Duration::from_secs(90)), "90 seconds");
    }
}
