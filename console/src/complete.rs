//! Tab completion in the REPL, from the command table: command names at the start of the line
//! (and after `help`); after a command, its `-param` and `-flag` names and `-output`; after
//! `-output`, `json` and `table`. Values (device paths, command ids) are not completed.

use commands::{Spec, TABLE};
use reedline::{Completer, CompletionResult, Span, Suggestion};

/// The REPL's completer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TableCompleter;

impl Completer for TableCompleter {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        CompletionResult::fresh(suggestions(line, pos))
    }
}

/// A word of the line before the cursor: where it starts and its text without quotes.
#[derive(Debug)]
struct Word {
    start: usize,
    text: String,
    quoted: bool,
}

/// Splits `line` into words as the grammar does, roughly: enough to know which word the cursor
/// is in. The last word is the one being typed (empty after a space).
fn words(line: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        match c {
            c if c.is_whitespace() && !in_quotes => words.extend(current.take()),
            '"' => {
                in_quotes = !in_quotes;
                current
                    .get_or_insert(Word {
                        start: i,
                        text: String::new(),
                        quoted: true,
                    })
                    .quoted = true;
            }
            c => current
                .get_or_insert(Word {
                    start: i,
                    text: String::new(),
                    quoted: false,
                })
                .text
                .push(c),
        }
    }
    words.push(current.unwrap_or(Word {
        start: line.len(),
        text: String::new(),
        quoted: false,
    }));
    words
}

/// What to offer for the word under the cursor at byte `pos` of `line`.
pub fn suggestions(line: &str, pos: usize) -> Vec<Suggestion> {
    let Some(before) = line.get(..pos) else {
        return Vec::new();
    };
    let mut words = words(before);
    let current = words
        .pop()
        .expect("words() always ends with the current word");
    if current.quoted {
        return Vec::new();
    }
    let span = Span::new(current.start, pos);
    let Some(first) = words.first() else {
        return command_names(&current.text, span);
    };
    let Some(spec) = commands::find(&first.text) else {
        return Vec::new();
    };
    let options_ended = words.iter().any(|w| !w.quoted && w.text == "--");
    let redirected = words.iter().any(|w| !w.quoted && w.text.starts_with('>'));
    if options_ended || redirected || current.text.starts_with('>') {
        return Vec::new();
    }
    let previous = words.last().filter(|w| !w.quoted && words.len() > 1);
    if let Some(option) = previous.and_then(|w| w.text.strip_prefix('-')) {
        if option.eq_ignore_ascii_case("output") {
            return matching(
                ["json", "table"].map(|f| (f, "output format")),
                &current.text,
                span,
            );
        }
        if spec.param(option).is_some() {
            // A value comes next.
            return Vec::new();
        }
    }
    if spec.name == "help" && !current.text.starts_with('-') && words.len() == 1 {
        return command_names(&current.text, span);
    }
    if current.text.is_empty() || current.text.starts_with('-') {
        return options(spec, &words[1..], &current.text, span);
    }
    Vec::new()
}

fn command_names(typed: &str, span: Span) -> Vec<Suggestion> {
    matching(TABLE.iter().map(|s| (s.name, s.summary)), typed, span)
}

/// `-param`, `-flag` and `-output` names of `spec` not given yet.
fn options(spec: &Spec, given: &[Word], typed: &str, span: Span) -> Vec<Suggestion> {
    let used = |name: &str| {
        given.iter().any(|w| {
            !w.quoted
                && w.text
                    .strip_prefix('-')
                    .is_some_and(|g| g.eq_ignore_ascii_case(name))
        })
    };
    let names: Vec<(String, &str)> = spec
        .params
        .iter()
        .map(|p| (p.name, p.help))
        .chain(spec.flags.iter().map(|f| (f.name, f.help)))
        .chain([("output", "json or table")])
        .filter(|(name, _)| !used(name))
        .map(|(name, help)| (format!("-{name}"), help))
        .collect();
    matching(
        names.iter().map(|(name, help)| (name.as_str(), *help)),
        typed,
        span,
    )
}

fn matching<'a>(
    candidates: impl IntoIterator<Item = (&'a str, &'a str)>,
    typed: &str,
    span: Span,
) -> Vec<Suggestion> {
    let typed = typed.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter(|(value, _)| value.to_ascii_lowercase().starts_with(&typed))
        .map(|(value, description)| Suggestion {
            value: value.to_owned(),
            description: Some(description.to_owned()),
            span,
            append_whitespace: true,
            ..Suggestion::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values offered with the cursor at the end of `line`.
    fn offered(line: &str) -> Vec<String> {
        let result = TableCompleter.complete(line, line.len());
        result
            .suggestions()
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    #[test]
    fn command_names_at_the_start() {
        assert_eq!(offered("fi"), ["fileinfo", "findfile"]);
        assert_eq!(offered("PRO"), ["processes"]);
        assert_eq!(offered("").len(), TABLE.len());
        assert!(offered("zz").is_empty());
        let all = TableCompleter.complete("  di", 4);
        let s = &all.suggestions()[0];
        assert_eq!((s.value.as_str(), s.span), ("dir", Span::new(2, 4)));
        assert!(s.append_whitespace);
    }

    #[test]
    fn options_after_a_command() {
        assert_eq!(
            offered("findfile "),
            [
                "-name", "-path", "-max", "-xdev", "-allfs", "-nocase", "-output"
            ]
        );
        assert_eq!(
            offered("findfile *.so -"),
            [
                "-name", "-path", "-max", "-xdev", "-allfs", "-nocase", "-output"
            ]
        );
        assert_eq!(offered("findfile *.so -m"), ["-max"]);
        assert_eq!(
            offered("findfile *.so -max 10 -nocase -"),
            ["-name", "-path", "-xdev", "-allfs", "-output"],
            "options given are not offered again"
        );
        assert_eq!(offered("processes -"), ["-hash", "-output"]);
        let span = TableCompleter.complete("dir -pa", 7).suggestions()[0].span;
        assert_eq!(span, Span::new(4, 7));
    }

    #[test]
    fn formats_after_output() {
        assert_eq!(offered("dir -output "), ["json", "table"]);
        assert_eq!(offered("dir /tmp -OUTPUT j"), ["json"]);
    }

    #[test]
    fn nothing_where_a_value_goes() {
        assert!(
            offered("findfile -path ").is_empty(),
            "a device path comes next"
        );
        assert!(offered("dir /t").is_empty());
        assert!(offered("dir > ").is_empty());
        assert!(offered("dir -- -").is_empty());
        assert!(offered(r#"dir "-"#).is_empty());
        assert!(offered("nosuch -").is_empty());
    }

    #[test]
    fn help_completes_command_names() {
        assert_eq!(offered("help fi"), ["fileinfo", "findfile"]);
        assert_eq!(offered("help -"), ["-command", "-output"]);
        assert!(offered("help dir ").contains(&"-output".to_owned()));
    }

    #[test]
    fn cursor_in_the_middle_and_out_of_bounds() {
        // Only the text before the cursor counts.
        let r = TableCompleter.complete("pro /tmp", 3);
        assert_eq!(r.suggestions()[0].value, "processes");
        assert!(TableCompleter.complete("dir", 10).suggestions().is_empty());
    }
}
