//! The command-line grammar of the seed: parameters in their fixed order, `-name value` for any
//! of them out of order, flags such as `-hash`, double quotes around values with spaces (a
//! backslash before `"` or `\` stands for that character), `-output json|table` for any command,
//! `--` before a value that starts with `-`, and `> file` / `>> file` at the end to write the
//! output to a file on the analyst's machine, or `&` at the end to run a transfer in the
//! background.

use crate::suggest::closest;
use crate::table::{Output, ParamKind, Spec, TABLE, find};

/// Longest command line accepted.
pub const MAX_LEN: usize = 8 * 1024;

/// Where the console writes a command's output instead of the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub path: String,
    pub append: bool,
}

/// A command line read against the table: every value is checked and named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub spec: &'static Spec,
    /// Parameter values, in the table's parameter order.
    pub values: Vec<(&'static str, String)>,
    /// Flags given, in the table's flag order.
    pub flags: Vec<&'static str>,
    /// `-output`, when given.
    pub output: Option<Output>,
    pub redirect: Option<Redirect>,
    /// `&` at the end: a transfer the console runs in the background.
    pub background: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command line; type help for the list of commands")]
    Empty,
    #[error("command line is {0} bytes; the limit is {MAX_LEN}")]
    TooLong(usize),
    #[error("control characters are not allowed in a command line")]
    ControlCharacter,
    #[error("unbalanced double quote; close the quoted value")]
    UnbalancedQuote,
    #[error("the command line ends with a backslash; write two for one")]
    DanglingEscape,
    #[error(
        "unknown command '{name}'{}; type help for the list of commands",
        hint(suggestion)
    )]
    UnknownCommand {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error(
        "{command} has no parameter -{name}{}; usage: {usage}",
        hint(suggestion)
    )]
    UnknownParameter {
        command: &'static str,
        name: String,
        suggestion: Option<&'static str>,
        usage: String,
    },
    #[error("-{name} needs a value; usage: {usage}")]
    MissingValue { name: String, usage: String },
    #[error("{command} needs <{name}>; usage: {usage}")]
    MissingRequired {
        command: &'static str,
        name: &'static str,
        usage: String,
    },
    #[error("-{name} was given twice")]
    Repeated { name: String },
    #[error("{command} takes no more values, but got '{extra}'; usage: {usage}")]
    TooManyValues {
        command: &'static str,
        extra: String,
        usage: String,
    },
    #[error("-{name} {reason}")]
    InvalidValue { name: &'static str, reason: String },
    #[error("> needs a file name, and nothing may follow it")]
    BadRedirect,
    #[error("{0}")]
    BadBackground(String),
}

fn hint(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

/// One word of a command line; `quoted` words are never options or redirections.
#[derive(Debug)]
struct Word {
    text: String,
    quoted: bool,
}

fn split(line: &str) -> Result<Vec<Word>, ParseError> {
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut in_quotes = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let word = current.get_or_insert(Word {
                    text: String::new(),
                    quoted: false,
                });
                match chars.next() {
                    Some(escaped @ ('"' | '\\')) => {
                        word.text.push(escaped);
                        word.quoted = true;
                    }
                    // Before anything else a backslash is itself (a file name may hold one).
                    Some(other) => {
                        word.text.push('\\');
                        word.text.push(other);
                    }
                    None => return Err(ParseError::DanglingEscape),
                }
            }
            '"' => {
                in_quotes = !in_quotes;
                current
                    .get_or_insert(Word {
                        text: String::new(),
                        quoted: true,
                    })
                    .quoted = true;
            }
            ' ' | '\t' if !in_quotes => words.extend(current.take()),
            _ => {
                current
                    .get_or_insert(Word {
                        text: String::new(),
                        quoted: false,
                    })
                    .text
                    .push(c);
            }
        }
    }
    if in_quotes {
        return Err(ParseError::UnbalancedQuote);
    }
    words.extend(current);
    Ok(words)
}

/// Reads a command line against the table.
pub fn parse(line: &str) -> Result<Invocation, ParseError> {
    if line.len() > MAX_LEN {
        return Err(ParseError::TooLong(line.len()));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::ControlCharacter);
    }
    let mut words = split(line)?.into_iter();
    let name = words.next().ok_or(ParseError::Empty)?;
    read(&name.text, words)
}

/// Reads arguments as a device receives them (already split, see [`Invocation::device_args`])
/// against the table entry of `command`.
pub fn parse_args(command: &str, args: &[String]) -> Result<Invocation, ParseError> {
    let words = args.iter().map(|a| Word {
        text: a.clone(),
        quoted: false,
    });
    read(command, words)
}

fn read(command: &str, mut words: impl Iterator<Item = Word>) -> Result<Invocation, ParseError> {
    let spec = find(command).ok_or_else(|| ParseError::UnknownCommand {
        suggestion: closest(command, TABLE.iter().map(|s| s.name)),
        name: command.to_string(),
    })?;
    let usage = || spec.usage();
    let mut invocation = Invocation {
        spec,
        values: Vec::new(),
        flags: Vec::new(),
        output: None,
        redirect: None,
        background: false,
    };
    let mut given: Vec<(&'static str, String)> = Vec::new();
    let mut positional = spec.params.iter().filter(|p| p.positional);
    let mut options_ended = false;
    while let Some(word) = words.next() {
        if !word.quoted && !options_ended {
            if let Some(target) = word.text.strip_prefix('>') {
                invocation.redirect = Some(redirect(target, &mut words)?);
                if words.next().is_some() {
                    return Err(ParseError::BadRedirect);
                }
                break;
            }
            if word.text == "--" {
                options_ended = true;
                continue;
            }
            if word.text == "&" {
                if words.next().is_some() {
                    return Err(ParseError::BadBackground("& must end the line".into()));
                }
                if !spec.runs.is_transfer() {
                    return Err(ParseError::BadBackground(format!(
                        "{} cannot run in the background; only transfers (getfile, download, putfile) can, remove &",
                        spec.name
                    )));
                }
                invocation.background = true;
                break;
            }
            if let Some(option) = word.text.strip_prefix('-').filter(|o| !o.is_empty()) {
                if option.eq_ignore_ascii_case("output") {
                    let value = words.next().ok_or_else(|| ParseError::MissingValue {
                        name: "output".into(),
                        usage: usage(),
                    })?;
                    if invocation.output.is_some() {
                        return Err(ParseError::Repeated {
                            name: "output".into(),
                        });
                    }
                    invocation.output = Some(match value.text.to_ascii_lowercase().as_str() {
                        "json" => Output::Json,
                        "table" => Output::Table,
                        _ => {
                            return Err(ParseError::InvalidValue {
                                name: "output",
                                reason: format!("must be json or table, not '{}'", value.text),
                            });
                        }
                    });
                } else if let Some(flag) = spec.flag(option) {
                    if invocation.flags.contains(&flag.name) {
                        return Err(ParseError::Repeated {
                            name: flag.name.into(),
                        });
                    }
                    invocation.flags.push(flag.name);
                } else if let Some(param) = spec.param(option) {
                    let value = words.next().ok_or_else(|| ParseError::MissingValue {
                        name: param.name.into(),
                        usage: usage(),
                    })?;
                    if given.iter().any(|(n, _)| *n == param.name) {
                        return Err(ParseError::Repeated {
                            name: param.name.into(),
                        });
                    }
                    given.push((param.name, value.text));
                } else {
                    let names = spec
                        .params
                        .iter()
                        .map(|p| p.name)
                        .chain(spec.flags.iter().map(|f| f.name))
                        .chain(["output"]);
                    return Err(ParseError::UnknownParameter {
                        command: spec.name,
                        suggestion: closest(option, names),
                        name: option.to_string(),
                        usage: usage(),
                    });
                }
                continue;
            }
        }
        // A value in the next free position.
        let param = positional
            .by_ref()
            .find(|p| !given.iter().any(|(n, _)| *n == p.name));
        match param {
            Some(param) => given.push((param.name, word.text)),
            None => {
                return Err(ParseError::TooManyValues {
                    command: spec.name,
                    extra: word.text,
                    usage: usage(),
                });
            }
        }
    }
    for param in spec.params {
        match given.iter().find(|(n, _)| *n == param.name) {
            Some((_, value)) => {
                check(param.name, param.kind, value)?;
                invocation.values.push((param.name, value.clone()));
            }
            None if param.required => {
                return Err(ParseError::MissingRequired {
                    command: spec.name,
                    name: param.name,
                    usage: usage(),
                });
            }
            None => {}
        }
    }
    invocation
        .flags
        .sort_by_key(|f| spec.flags.iter().position(|g| g.name == *f));
    Ok(invocation)
}

fn redirect(
    attached: &str,
    words: &mut impl Iterator<Item = Word>,
) -> Result<Redirect, ParseError> {
    let (append, attached) = match attached.strip_prefix('>') {
        Some(rest) => (true, rest),
        None => (false, attached),
    };
    let path = if attached.is_empty() {
        words
            .next()
            .map(|w| w.text)
            .ok_or(ParseError::BadRedirect)?
    } else {
        attached.to_string()
    };
    if path.is_empty() {
        return Err(ParseError::BadRedirect);
    }
    Ok(Redirect { path, append })
}

fn check(name: &'static str, kind: ParamKind, value: &str) -> Result<(), ParseError> {
    let invalid = |reason: &str| {
        Err(ParseError::InvalidValue {
            name,
            reason: reason.to_string(),
        })
    };
    match kind {
        ParamKind::Path | ParamKind::Text if value.is_empty() => invalid("must not be empty"),
        ParamKind::Path | ParamKind::Text => Ok(()),
        ParamKind::Count => match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(()),
            _ => invalid(&format!(
                "must be a whole number of at least 1, not '{value}'"
            )),
        },
        ParamKind::Bool => match value {
            "true" | "false" => Ok(()),
            _ => invalid(&format!("must be true or false, not '{value}'")),
        },
    }
}

impl Invocation {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }

    /// The arguments as sent to the device: every value as `-name value`, then the flags. Output
    /// format and redirection stay with the console.
    pub fn device_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (name, value) in &self.values {
            args.push(format!("-{name}"));
            args.push(value.clone());
        }
        args.extend(self.flags.iter().map(|f| format!("-{f}")));
        args
    }

    /// The canonical command line: reading it back gives this invocation again.
    pub fn to_line(&self) -> String {
        let mut line = self.spec.name.to_string();
        for (name, value) in &self.values {
            line.push_str(&format!(" -{name} {}", quote(value)));
        }
        for flag in &self.flags {
            line.push_str(&format!(" -{flag}"));
        }
        if let Some(output) = self.output {
            line.push_str(&format!(" -output {}", output.as_str()));
        }
        if let Some(redirect) = &self.redirect {
            line.push_str(if redirect.append { " >> " } else { " > " });
            line.push_str(&quote(&redirect.path));
        }
        if self.background {
            line.push_str(" &");
        }
        line
    }
}

/// Quotes a value when it would otherwise read differently.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value != "&"
        && !value.starts_with(['-', '>'])
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\');
    if plain {
        return value.to_string();
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests;
