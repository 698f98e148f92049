//! The console's share of a command line. The grammar and the table are `commands`'; this module
//! turns `lr exec` arguments into one line, reads a line with [`commands::parse`] before anything
//! is sent, and splits an [`Invocation`] into what the broker sees (the canonical line) and what
//! the console keeps (`-output`, `> file`).

use commands::{Invocation, ParseError, Runs};

use crate::exit::Failure;
use crate::render::Format;

/// The message for a trailing `&` outside the interactive console.
pub const NO_BACKGROUND: &str = "& runs a transfer in the background of lr connect; lr exec and \
                                 lr session run wait for the transfer, so drop the &";

/// Reads a line against the command table; a mistake is a usage failure naming it. A trailing
/// `&` sets [`Invocation::background`] (transfers only; the grammar refuses it elsewhere).
pub fn parse(line: &str) -> Result<Invocation, Failure> {
    commands::parse(line).map_err(|e: ParseError| Failure::usage(e.to_string()))
}

/// Reads a line that runs on the device or the brokers, in the foreground (`lr exec`,
/// `lr session run`).
pub fn parse_for_device(line: &str) -> Result<Invocation, Failure> {
    if ends_in_background(line) {
        return Err(Failure::usage(NO_BACKGROUND));
    }
    let invocation = parse(line)?;
    if invocation.spec.runs == Runs::Console {
        return Err(Failure::usage(format!(
            "{} runs in the interactive console, not on the device; use it in lr connect",
            invocation.spec.name
        )));
    }
    Ok(invocation)
}

/// The line the broker is sent: canonical `-name value` form, without what the console handles
/// (`-output`, `> file`, and `&`: the broker runs every transfer the same way).
pub fn for_broker(invocation: &Invocation) -> String {
    Invocation {
        output: None,
        redirect: None,
        background: false,
        ..invocation.clone()
    }
    .to_line()
}

/// The output format of a command: `-output` in its line, else the user's setting (flag,
/// environment, config file), else the command's default in the table.
pub fn format_of(invocation: &Invocation, setting: Option<Format>) -> Format {
    invocation
        .output
        .map(Format::from)
        .or(setting)
        .unwrap_or_else(|| Format::from(invocation.spec.output))
}

/// The output format of how a transfer ended: `-output` in its line, else the user's setting,
/// else a line for people (the table default of the command is for its start, not its end).
pub fn transfer_format(invocation: &Invocation, setting: Option<Format>) -> Format {
    invocation
        .output
        .map(Format::from)
        .or(setting)
        .unwrap_or(Format::Table)
}

/// The words after `--` of `lr exec` / `lr session run`, already split by the shell, as one line.
/// An argument that looks like an option (`-max`, `--`) stays one; anything else is a value and
/// is quoted when it needs to be. `--output X` and `--output=X` are read as `-output X`.
pub fn line_from_args(args: &[String]) -> Result<String, Failure> {
    if args.is_empty() {
        return Err(Failure::usage("no command line after `--`"));
    }
    if args.last().is_some_and(|a| a == "&") {
        return Err(Failure::usage(NO_BACKGROUND));
    }
    let words: Vec<String> = args
        .iter()
        .map(|arg| {
            if arg == "--output" {
                "-output".to_owned()
            } else if let Some(format) = arg.strip_prefix("--output=") {
                format!("-output {}", quote(format))
            } else if is_option(arg) {
                arg.clone()
            } else {
                quote(arg)
            }
        })
        .collect();
    Ok(words.join(" "))
}

pub use commands::quote;

fn is_option(arg: &str) -> bool {
    arg.len() > 1
        && arg.starts_with('-')
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\')
}

/// Whether the line's last word is an unquoted `&` (run in the background). An `&` inside or at
/// the end of a word is part of it, as in a file name.
pub fn ends_in_background(line: &str) -> bool {
    // The last word as (text, quoted or escaped).
    let mut last: Option<(String, bool)> = None;
    let mut current: Option<(String, bool)> = None;
    let mut in_quotes = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c.is_whitespace() && !in_quotes {
            if current.is_some() {
                last = current.take();
            }
            continue;
        }
        let word = current.get_or_insert_with(|| (String::new(), false));
        match c {
            '\\' => {
                chars.next();
                word.1 = true;
            }
            '"' => {
                in_quotes = !in_quotes;
                word.1 = true;
            }
            c => word.0.push(c),
        }
    }
    matches!(current.or(last), Some((word, false)) if word == "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    fn broker_line(a: &[&str]) -> String {
        for_broker(&parse(&line_from_args(&args(a)).unwrap()).unwrap())
    }

    #[test]
    fn exec_args_become_one_line() {
        assert_eq!(
            line_from_args(&args(&["dir", "/tmp/with space"])).unwrap(),
            r#"dir "/tmp/with space""#
        );
        assert_eq!(
            broker_line(&["findfile", "*.so", "-path", "/tmp", "-nocase"]),
            "findfile -name *.so -path /tmp -nocase"
        );
        assert_eq!(
            broker_line(&["findfile", r#"a"b"#]),
            r#"findfile -name "a\"b""#
        );
        // After `--` a value may start with a dash.
        assert_eq!(
            broker_line(&["fileinfo", "--", "-x"]),
            r#"fileinfo -path "-x""#
        );
        // A `>` from the shell is a value, never a redirection.
        assert_eq!(broker_line(&["fileinfo", ">x"]), r#"fileinfo -path ">x""#);
        assert!(line_from_args(&[]).is_err());
        assert!(line_from_args(&args(&["findfile", "x", "&"])).is_err());
    }

    #[test]
    fn quoted_values_read_back_as_themselves() {
        for value in [
            "a",
            "a b",
            r#"x"y"#,
            r"back\slash",
            r#"\""#,
            "-dash",
            ">gt",
            "tab\there",
        ] {
            let invocation = parse(&format!("fileinfo {}", quote(value))).unwrap();
            assert_eq!(invocation.value("path"), Some(value), "{value:?}");
        }
    }

    proptest::proptest! {
        /// Any value the grammar accepts survives quoting, so `exec` arguments arrive as typed.
        #[test]
        fn any_value_survives_quoting(value in "[^\\p{Cc}]{1,40}") {
            // A leading dash makes an option of an argument, by design; a lone `&` is refused.
            proptest::prop_assume!(!value.starts_with('-') && value != "&");
            let line = line_from_args(&["fileinfo".to_owned(), value.clone()]).unwrap();
            let invocation = parse(&line).unwrap();
            proptest::prop_assert_eq!(invocation.value("path"), Some(value.as_str()));
        }
    }

    #[test]
    fn output_is_the_consoles_in_either_spelling() {
        for a in [
            &["dir", "/tmp", "--output", "json"][..],
            &["dir", "/tmp", "-output", "json"],
            &["dir", "/tmp", "--output=json"],
        ] {
            let invocation = parse(&line_from_args(&args(a)).unwrap()).unwrap();
            assert_eq!(format_of(&invocation, None), Format::Json, "{a:?}");
            assert_eq!(for_broker(&invocation), "dir -path /tmp", "{a:?}");
        }
    }

    #[test]
    fn format_precedence_line_then_setting_then_table() {
        let plain = parse("dir").unwrap();
        assert_eq!(format_of(&plain, None), Format::Table);
        assert_eq!(format_of(&plain, Some(Format::Json)), Format::Json);
        let table = parse("dir -output table").unwrap();
        assert_eq!(format_of(&table, Some(Format::Json)), Format::Table);
    }

    #[test]
    fn repl_line_keeps_output_and_redirect_apart() {
        let invocation = parse(r#"dir "/var/log/my dir" -output json > out.json"#).unwrap();
        assert_eq!(for_broker(&invocation), r#"dir -path "/var/log/my dir""#);
        assert_eq!(invocation.output, Some(commands::Output::Json));
        let redirect = invocation.redirect.unwrap();
        assert_eq!(
            (redirect.path.as_str(), redirect.append),
            ("out.json", false)
        );
        assert!(
            parse("processes >>procs.txt")
                .unwrap()
                .redirect
                .unwrap()
                .append
        );
    }

    #[test]
    fn mistakes_are_named_before_anything_is_sent() {
        let message = |line: &str| parse(line).unwrap_err().message;
        assert!(message("proceses").contains("did you mean processes?"));
        assert!(message("dir -pth /tmp").contains("did you mean path?"));
        assert!(message("findfile").contains("findfile needs <name>"));
        assert!(message("findfile x -max 0").contains("at least 1"));
        assert!(message(r#"dir "/tmp"#).contains("unbalanced double quote"));
        assert!(message("dir >").contains("needs a file name"));
        assert_eq!(parse("dir").unwrap().spec.name, "dir");
        let console_only = parse_for_device("cls").unwrap_err();
        assert_eq!(console_only.exit, crate::exit::Exit::Usage);
        assert!(console_only.message.contains("lr connect"));
    }

    #[test]
    fn trailing_ampersand_means_background() {
        for line in ["getfile /x &", "getfile /x & ", "getfile /x\t&"] {
            assert!(ends_in_background(line), "{line}");
            assert!(parse(line).unwrap().background, "{line}");
            assert_eq!(parse_for_device(line).unwrap_err().message, NO_BACKGROUND);
        }
        let background = parse("download /var/log/a.log -output json &").unwrap();
        assert_eq!(for_broker(&background), "download -path /var/log/a.log");
        for line in ["findfile x &", "library &"] {
            assert!(
                parse(line)
                    .unwrap_err()
                    .message
                    .contains("cannot run in the background"),
                "{line}"
            );
        }
        for line in [
            r#"findfile "x &""#,
            "findfile a&b",
            "findfile x&",
            r#"findfile x \&"#,
            r#"findfile x "&""#,
            "dir",
        ] {
            assert!(!ends_in_background(line), "{line}");
        }
    }
}
