//! The console's share of a command line: quoting `exec` arguments into one line, and taking out
//! what the console handles itself (`-output json|table`, `> file`, `>> file`) before the line
//! goes to the broker.
//!
//! Syntax (from the seed): words separated by spaces; double quotes group a word with spaces;
//! inside quotes `\"` is a literal quote.

use std::path::PathBuf;

use crate::render::Format;

/// A command line ready to submit, and the directives taken out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// What is sent to the broker.
    pub line: String,
    /// `-output json|table` (or `--output`), rendered by the console.
    pub output: Option<Format>,
    /// `> file` / `>> file`: write the rendered output to a local file.
    pub redirect: Option<Redirect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub path: PathBuf,
    pub append: bool,
}

/// A word of a typed line: its text with quotes resolved, and the text as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    text: String,
    raw: String,
    quoted: bool,
}

/// Splits a typed line into words.
fn lex(line: &str) -> Result<Vec<Word>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(words);
        }
        let mut word = Word {
            text: String::new(),
            raw: String::new(),
            quoted: false,
        };
        let mut in_quotes = false;
        while let Some(&c) = chars.peek() {
            if !in_quotes && c.is_whitespace() {
                break;
            }
            chars.next();
            word.raw.push(c);
            match c {
                '"' => {
                    in_quotes = !in_quotes;
                    word.quoted = true;
                }
                '\\' if in_quotes && chars.peek() == Some(&'"') => {
                    chars.next();
                    word.raw.push('"');
                    word.text.push('"');
                }
                c => word.text.push(c),
            }
        }
        if in_quotes {
            return Err(format!("unterminated quote in: {line}"));
        }
        words.push(word);
    }
}

/// Quotes one argument as the command-line syntax needs it.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.chars().any(|c| c.is_whitespace() || c == '"') {
        return arg.to_owned();
    }
    format!("\"{}\"", arg.replace('"', "\\\""))
}

/// Takes `-output X` / `--output X` / `--output=X` (X is json or table) out of `words`.
fn take_output(words: &mut Vec<Word>) -> Result<Option<Format>, String> {
    let mut found = None;
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        if w.quoted {
            i += 1;
            continue;
        }
        if let Some(value) = w.text.strip_prefix("--output=") {
            found = Some(
                Format::parse(value)
                    .ok_or_else(|| format!("--output takes json or table, not {value:?}"))?,
            );
            words.remove(i);
            continue;
        }
        if matches!(w.text.as_str(), "-output" | "--output")
            && let Some(format) = words.get(i + 1).and_then(|v| Format::parse(&v.text))
        {
            found = Some(format);
            words.drain(i..i + 2);
            continue;
        }
        i += 1;
    }
    Ok(found)
}

/// Takes `> file` / `>file` / `>> file` out of `words` (only unquoted `>`).
fn take_redirect(words: &mut Vec<Word>) -> Result<Option<Redirect>, String> {
    let Some(i) = words.iter().position(|w| w.raw.starts_with('>')) else {
        return Ok(None);
    };
    let op = words.remove(i);
    let (append, rest) = match op.text.strip_prefix(">>") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, op.text[1..].to_owned()),
    };
    let path = if rest.is_empty() {
        if i >= words.len() {
            return Err("`>` needs a file name: <command> > file.txt".to_owned());
        }
        words.remove(i).text
    } else {
        rest
    };
    if words.len() > i {
        return Err(format!(
            "nothing may follow `> {path}`: put the redirect at the end of the line"
        ));
    }
    Ok(Some(Redirect {
        path: PathBuf::from(path),
        append,
    }))
}

fn join(words: &[Word]) -> String {
    words
        .iter()
        .map(|w| w.raw.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line typed in the REPL.
pub fn from_line(line: &str) -> Result<Prepared, String> {
    let mut words = lex(line)?;
    let redirect = take_redirect(&mut words)?;
    let output = take_output(&mut words)?;
    if words.is_empty() {
        return Err("no command before the redirect".to_owned());
    }
    Ok(Prepared {
        line: join(&words),
        output,
        redirect,
    })
}

/// The words after `--` of `lr exec` / `lr session run`, already split by the shell. No redirect
/// here: the shell does that.
pub fn from_args(args: &[String]) -> Result<Prepared, String> {
    let mut words: Vec<Word> = args
        .iter()
        .map(|a| Word {
            text: a.clone(),
            raw: quote(a),
            quoted: false,
        })
        .collect();
    let output = take_output(&mut words)?;
    if words.is_empty() {
        return Err("no command line after `--`".to_owned());
    }
    Ok(Prepared {
        line: join(&words),
        output,
        redirect: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn exec_args_are_quoted_when_needed() {
        let p = from_args(&args(&["dir", "/tmp/with space", "plain", ""])).unwrap();
        assert_eq!(p.line, r#"dir "/tmp/with space" plain """#);
        let p = from_args(&args(&["findfile", r#"a"b"#])).unwrap();
        assert_eq!(p.line, r#"findfile "a\"b""#);
    }

    #[test]
    fn trailing_output_flag_is_for_the_console() {
        let p = from_args(&args(&["dir", "/tmp", "--output", "json"])).unwrap();
        assert_eq!(p.line, "dir /tmp");
        assert_eq!(p.output, Some(Format::Json));
        let p = from_args(&args(&["processes", "-output", "table"])).unwrap();
        assert_eq!(
            (p.line.as_str(), p.output),
            ("processes", Some(Format::Table))
        );
        let p = from_args(&args(&["dir", "--output=json"])).unwrap();
        assert_eq!(p.output, Some(Format::Json));
        // Not a format: the broker decides what it means.
        let p = from_args(&args(&["dir", "-output", "/tmp"])).unwrap();
        assert_eq!((p.line.as_str(), p.output), ("dir -output /tmp", None));
        assert!(from_args(&args(&["--output", "json"])).is_err());
    }

    #[test]
    fn repl_line_directives() {
        let p = from_line(r#"dir "/var/log/my dir" -output json > out.json"#).unwrap();
        assert_eq!(p.line, r#"dir "/var/log/my dir""#);
        assert_eq!(p.output, Some(Format::Json));
        assert_eq!(
            p.redirect,
            Some(Redirect {
                path: "out.json".into(),
                append: false
            })
        );
        let p = from_line("processes >>procs.txt").unwrap();
        assert_eq!(p.line, "processes");
        assert!(p.redirect.unwrap().append);
    }

    #[test]
    fn quoted_directives_are_left_alone() {
        let p = from_line(r#"findfile ">x" "-output" json"#).unwrap();
        assert_eq!(p.line, r#"findfile ">x" "-output" json"#);
        assert_eq!((p.output, p.redirect), (None, None));
    }

    #[test]
    fn bad_lines() {
        assert!(from_line(r#"dir "/tmp"#).is_err());
        assert!(from_line("dir >").is_err());
        assert!(from_line("dir > a b").is_err());
        assert!(from_line("> a").is_err());
    }

    #[test]
    fn lex_roundtrips_quote() {
        for arg in ["a", "a b", "", r#"x"y"#, r#"" "#, "tab\there"] {
            let words = lex(&quote(arg)).unwrap();
            assert_eq!(words.len(), 1, "{arg:?}");
            assert_eq!(words[0].text, arg);
        }
    }
}
