//! Splits an analyst's command line into a command name and its arguments, the way the console's
//! syntax reads it: words separated by spaces, double quotes around values with spaces, and a
//! backslash before `"` or another backslash for that character itself.

/// The commands the agents implement, with their timeouts (see COMMANDS.md).
const COMMANDS: &[(&str, u32)] = &[
    ("cd", 10 * 60_000),
    ("dir", 10 * 60_000),
    ("fileinfo", 10 * 60_000),
    ("findfile", 30 * 60_000),
    ("processes", 10 * 60_000),
    ("help", 10 * 60_000),
];

/// Longest command line accepted.
pub const MAX_LEN: usize = 8 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    pub command: String,
    pub args: Vec<String>,
    pub timeout_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty command line; type help for the list of commands")]
    Empty,
    #[error("command line is {0} bytes; the limit is {MAX_LEN}")]
    TooLong(usize),
    #[error("unbalanced double quote; close the quoted value")]
    UnbalancedQuote,
    #[error("the command line ends with a backslash; write two for one")]
    DanglingEscape,
    #[error("control characters are not allowed in a command line")]
    ControlCharacter,
    #[error("unknown command '{0}'; type help for the list of commands")]
    UnknownCommand(String),
}

pub fn parse(line: &str) -> Result<CommandLine, ParseError> {
    if line.len() > MAX_LEN {
        return Err(ParseError::TooLong(line.len()));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ParseError::ControlCharacter);
    }
    let words = split(line)?;
    let (command, args) = words.split_first().ok_or(ParseError::Empty)?;
    let timeout_ms = COMMANDS
        .iter()
        .find(|(name, _)| name == command)
        .map(|(_, timeout)| *timeout)
        .ok_or_else(|| ParseError::UnknownCommand(command.clone()))?;
    Ok(CommandLine {
        command: command.clone(),
        args: args.to_vec(),
        timeout_ms,
    })
}

fn split(line: &str) -> Result<Vec<String>, ParseError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                match chars.next() {
                    Some(escaped @ ('"' | '\\')) => current.push(escaped),
                    // Before anything else a backslash is itself (a file name may hold one).
                    Some(other) => {
                        current.push('\\');
                        current.push(other);
                    }
                    None => return Err(ParseError::DanglingEscape),
                }
                in_word = true;
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' | '\t' if !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            _ => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        return Err(ParseError::UnbalancedQuote);
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_errors() {
        let parsed = parse(r#"findfile "my file*.txt" -path /tmp"#).unwrap();
        assert_eq!(parsed.command, "findfile");
        assert_eq!(parsed.args, vec!["my file*.txt", "-path", "/tmp"]);
        assert_eq!(parsed.timeout_ms, 30 * 60_000);
        assert_eq!(parse("  dir  ").unwrap().args, Vec::<String>::new());
        assert_eq!(parse(r#"cd """#).unwrap().args, vec![""]);
        assert_eq!(parse(r#"cd "a \"q\" b""#).unwrap().args, vec![r#"a "q" b"#]);
        assert_eq!(
            parse(r#"cd a\\b c\d"#).unwrap().args,
            vec![r#"a\b"#, r#"c\d"#]
        );
        assert_eq!(parse(r#"cd x\"#), Err(ParseError::DanglingEscape));
        assert_eq!(parse("   "), Err(ParseError::Empty));
        assert_eq!(parse(r#"cd "/tmp"#), Err(ParseError::UnbalancedQuote));
        assert_eq!(
            parse("rm -rf /"),
            Err(ParseError::UnknownCommand("rm".into()))
        );
        assert_eq!(parse("dir\u{0}"), Err(ParseError::ControlCharacter));
        assert!(matches!(
            parse(&"a".repeat(MAX_LEN + 1)),
            Err(ParseError::TooLong(_))
        ));
    }
}
