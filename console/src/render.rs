//! Output: one JSON document, or a table rendered generically from the JSON.
//!
//! Table rules, applied to whatever the broker or the device sends:
//! - an array of objects: one row per object, columns from the keys in order of first appearance;
//! - an object with exactly one field that is an array of objects (`{"processes": [..]}`): that
//!   table, with the other fields as a `key: value` summary above it;
//! - any other object: two columns, key and value (nested values as one-line JSON);
//! - a string: printed as is; other scalars as JSON; null: nothing.
//!
//! Cells never wrap: a cell is one line, cut with `…` to fit the terminal width.

use comfy_table::{Cell, CellAlignment, ContentArrangement, Row, Table, presets};
use serde::Deserialize;

use crate::doc::Doc;

/// The output format: `--output json|table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Table,
    Json,
}

impl From<commands::Output> for Format {
    fn from(output: commands::Output) -> Format {
        match output {
            commands::Output::Table => Format::Table,
            commands::Output::Json => Format::Json,
        }
    }
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "table" => Some(Format::Table),
            _ => None,
        }
    }
}

/// The terminal's width when stdout is a terminal; `None` when it is a pipe or a file.
pub fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    crossterm::terminal::size()
        .ok()
        .map(|(w, _)| w)
        .filter(|w| *w > 0)
}

/// Longest text put in one cell before the table cuts it to the width.
const MAX_CELL_CHARS: usize = 400;

/// `doc` in `format`, ending with a newline unless empty. `width` is the terminal width; `None`
/// (output is not a terminal) leaves lines as long as they need to be.
pub fn render(doc: &Doc, format: Format, width: Option<u16>) -> String {
    match format {
        Format::Json => json(doc),
        Format::Table => text(doc, width),
    }
}

/// One indented JSON document and a newline.
pub fn json(doc: &Doc) -> String {
    let mut out = doc.to_pretty();
    out.push('\n');
    out
}

/// The human rendering of `doc`.
pub fn text(doc: &Doc, width: Option<u16>) -> String {
    let mut out = match doc {
        Doc::Null => String::new(),
        Doc::String(s) => s.clone(),
        Doc::Bool(_) | Doc::Number(_) => doc.to_compact(),
        Doc::Array(items) => array(items, width),
        Doc::Object(fields) => object(fields, width),
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

fn array(items: &[Doc], width: Option<u16>) -> String {
    if items.is_empty() {
        return "(none)".to_owned();
    }
    if items.iter().all(Doc::is_scalar) {
        return items.iter().map(plain).collect::<Vec<_>>().join("\n");
    }
    grid(items, width)
}

fn object(fields: &[(String, Doc)], width: Option<u16>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let tables: Vec<&(String, Doc)> = fields.iter().filter(|(_, v)| is_rows(v)).collect();
    let is_empty_list = |v: &Doc| matches!(v, Doc::Array(items) if items.is_empty());
    let lists_only_empty = tables.is_empty()
        && fields.iter().any(|(_, v)| is_empty_list(v))
        && fields
            .iter()
            .all(|(_, v)| v.is_scalar() || is_empty_list(v));
    if tables.is_empty() && !lists_only_empty {
        let mut table = new_table(width);
        table.set_header(one_line_row(vec!["key".to_owned(), "value".to_owned()]));
        for (key, value) in fields {
            table.add_row(one_line_row(vec![key.clone(), plain(value)]));
        }
        return table.to_string();
    }
    // A summary of everything that is not a table, then the table(s).
    let mut out = String::new();
    for (key, value) in fields.iter().filter(|(_, v)| !is_rows(v)) {
        let text = if is_empty_list(value) {
            "(none)".to_owned()
        } else {
            one_line(&plain(value))
        };
        out.push_str(&format!("{key}: {text}\n"));
    }
    for (name, rows) in tables.iter().copied() {
        let Doc::Array(rows) = rows else {
            unreachable!("is_rows checked it is an array")
        };
        if !out.is_empty() {
            out.push('\n');
        }
        if tables.len() > 1 {
            out.push_str(&format!("{name}:\n"));
        }
        out.push_str(&grid(rows, width));
        out.push('\n');
    }
    out
}

/// A non-empty array whose items are all objects: something to show as rows.
fn is_rows(doc: &Doc) -> bool {
    matches!(doc, Doc::Array(items)
        if !items.is_empty() && items.iter().all(|i| matches!(i, Doc::Object(_))))
}

/// One row per item; columns are the union of the objects' keys in order of first appearance.
/// A non-object item lands in a `value` column.
fn grid(items: &[Doc], width: Option<u16>) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for item in items {
        match item {
            Doc::Object(fields) => {
                for (key, _) in fields {
                    if !columns.contains(&key.as_str()) {
                        columns.push(key);
                    }
                }
            }
            _ if !columns.contains(&"value") => columns.push("value"),
            _ => {}
        }
    }
    lead_with_identity(&mut columns);
    let mut table = new_table(width);
    table.set_header(one_line_row(
        columns.iter().map(|c| (*c).to_owned()).collect(),
    ));
    let mut numeric = vec![true; columns.len()];
    for item in items {
        let cells: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let value = match item {
                    Doc::Object(_) => item.get(column),
                    other if *column == "value" => Some(other),
                    _ => None,
                };
                if let Some(v) = value
                    && !matches!(v, Doc::Number(_) | Doc::Null)
                {
                    numeric[i] = false;
                }
                value.map(plain).unwrap_or_default()
            })
            .collect();
        table.add_row(one_line_row(cells));
    }
    for (i, is_numeric) in numeric.into_iter().enumerate() {
        if is_numeric && let Some(column) = table.column_mut(i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table.to_string()
}

/// Columns that say what a row is, in the order they should lead a table.
const IDENTITY_COLUMNS: &[&str] = &[
    "device",
    "session_id",
    "command_id",
    "pid",
    "ppid",
    "user",
    "name",
    "path",
    "hostname",
    "state",
];

/// Keys in alphabetical order mean the sender's order was lost (a JSON map that sorts), so it
/// carries no meaning: then the identity columns go first. Any other order is kept as sent.
fn lead_with_identity(columns: &mut Vec<&str>) {
    if columns.len() < 3 || !columns.is_sorted() {
        return;
    }
    let mut lead: Vec<&str> = IDENTITY_COLUMNS
        .iter()
        .copied()
        .filter(|c| columns.contains(c))
        .collect();
    columns.retain(|c| !lead.contains(c));
    lead.append(columns);
    *columns = lead;
}

fn new_table(width: Option<u16>) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_truncation_indicator("…");
    match width {
        Some(width) => {
            table
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(width);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table
}

/// A column of [`aligned`] lines: its width, and whether its cells lean right (numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub width: usize,
    pub right: bool,
}

/// One row as a line of columns without borders, for rows printed as they come (a log followed
/// as it grows), where no table can be laid out in advance: each cell one line and padded to its
/// column's width (a longer cell pushes the rest along), two spaces apart, the line cut with `…`
/// to `width` when that is known.
pub fn aligned(cells: &[String], columns: &[Column], width: Option<u16>) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        let cell = one_line(cell);
        let column = columns.get(i).copied().unwrap_or(Column {
            width: 0,
            right: false,
        });
        if i > 0 {
            line.push_str("  ");
        }
        let pad = column.width.saturating_sub(cell.chars().count());
        if column.right {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(&cell);
        } else {
            line.push_str(&cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let line = line.trim_end();
    match width {
        Some(width) if line.chars().count() > usize::from(width) => {
            cut_line(line, usize::from(width).saturating_sub(1))
        }
        _ => line.to_owned(),
    }
}

/// Splits nothing: [`one_line`] turns every control character into a visible one, so this never
/// occurs in a cell.
const NO_DELIMITER: char = '\u{1f}';

/// A row whose cells each stay on one line: the table cuts what does not fit, with `…`.
///
/// comfy-table wraps a long cell at its delimiter (a space by default) and `max_height(1)` keeps
/// the first wrapped line, which would end the cell at the last whole word and waste the rest of
/// the column. With a delimiter that never occurs the cell is one word, split at the column's
/// width, so the cut keeps as much of the cell as fits.
fn one_line_row(cells: Vec<String>) -> Row {
    let mut row = Row::from(
        cells
            .into_iter()
            .map(|c| Cell::new(one_line(&c)).set_delimiter(NO_DELIMITER))
            .collect::<Vec<_>>(),
    );
    row.max_height(1);
    row
}

/// A value as cell text: strings bare, null empty, everything else as one-line JSON.
pub fn plain(doc: &Doc) -> String {
    match doc {
        Doc::Null => String::new(),
        Doc::String(s) => s.clone(),
        other => other.to_compact(),
    }
}

/// Newlines and other control characters made visible, and a cap on the length, so a cell is
/// one bounded line.
fn one_line(text: &str) -> String {
    cut_line(text, MAX_CELL_CHARS)
}

/// `text` as one line of at most `max_chars` characters and a `…` when it was longer; newlines
/// and other control characters made visible.
pub fn cut_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 4));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push('⏎'),
            '\t' => out.push(' '),
            c if c.is_control() => out.push('�'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Doc {
        Doc::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn devices_list() {
        let devices = doc(r#"[
            {"device":"web-07","tenant":"demo","hostname":"web-07.prod.example","os":"linux","agent_version":"0.1.0","online":true,"node":1,"last_seen":"2025-06-01T10:42:00Z"},
            {"device":"db-01","tenant":"demo","hostname":"db-01.prod.example","os":"linux","agent_version":"0.1.0","online":false,"node":2,"last_seen":"2025-06-01T09:00:00Z"}
        ]"#);
        insta::assert_snapshot!(text(&devices, Some(120)));
    }

    #[test]
    fn alphabetical_keys_get_identity_columns_first() {
        // What a broker building its JSON with a sorting map sends.
        let procs = doc(
            r#"[{"cmdline":"/sbin/init","cpu":0.1,"memory":1024,"name":"systemd","pid":1,"ppid":0,"user":"root"}]"#,
        );
        let out = text(&procs, None);
        let header = out.lines().nth(1).unwrap();
        let names: Vec<&str> = header
            .split(['│', '┆'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(
            names,
            ["pid", "ppid", "user", "name", "cmdline", "cpu", "memory"]
        );
        // A deliberate order is kept.
        let kept = text(&doc(r#"[{"b":1,"a":2,"c":3,"pid":4}]"#), None);
        assert!(kept.lines().nth(1).unwrap().starts_with("│ b "), "{kept}");
    }

    #[test]
    fn narrow_terminal_cuts_cells_instead_of_wrapping() {
        let rows = doc(
            r#"[{"pid":1,"name":"systemd","cmdline":"/sbin/init splash --a-very-long-argument-list that goes on and on and on"},
                {"pid":4242,"name":"sshd","cmdline":"sshd: analyst [priv]\nsecond line"}]"#,
        );
        let out = text(&rows, Some(50));
        for line in out.lines() {
            assert!(line.chars().count() <= 50, "too wide: {line:?}");
        }
        // Two data rows, a header, its separator and two borders: nothing wrapped.
        assert_eq!(out.lines().count(), 6, "{out}");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn wide_table_fits_80_columns_and_cuts_long_cells() {
        let procs = doc(
            r#"[{"pid":1,"ppid":0,"user":"root","name":"systemd","started":"2025-06-01T08:00:00Z","cmdline":"/sbin/init splash","image":"/usr/lib/systemd/systemd"},
                {"pid":812,"ppid":1,"user":"www-data","name":"nginx","started":"2025-06-01T08:00:05Z","cmdline":"nginx: worker process with a very long command line that cannot fit in any terminal","image":"/usr/sbin/nginx"},
                {"pid":4242,"ppid":812,"user":"analyst-with-a-rather-long-name","name":"sshd","started":"2025-06-01T10:42:00Z","cmdline":"sshd: analyst [priv]","image":"/usr/sbin/sshd"}]"#,
        );
        let out = text(&procs, Some(80));
        for line in out.lines() {
            assert!(line.chars().count() <= 80, "too wide: {line:?}");
        }
        // Three rows, a header, its separator and two borders: nothing wrapped.
        assert_eq!(out.lines().count(), 7, "{out}");
        assert!(out.contains('…'), "{out}");
        insta::assert_snapshot!(out);
    }

    #[test]
    fn object_with_one_array_gets_a_summary_and_a_table() {
        let listing = doc(r#"{"path":"/tmp","total":2,"entries":[
                {"name":"a.txt","type":"file","size":12,"mode":"0644"},
                {"name":"cache","type":"dir","size":4096,"mode":"0755","note":"extra key"}
            ]}"#);
        insta::assert_snapshot!(text(&listing, Some(80)));
    }

    #[test]
    fn several_lists_get_a_table_each_and_empty_ones_a_summary_line() {
        // `dir` as the agent answers it (keys sorted by the broker's JSON map).
        let one = doc(
            r#"{"entries":[{"name":"a.txt","size":12}],"errors":[],"more":0,"path":"/tmp","truncated":false}"#,
        );
        insta::assert_snapshot!("one_list_and_an_empty_one", text(&one, Some(60)));
        let two = doc(
            r#"{"entries":[{"name":"a.txt","size":12}],"errors":[{"path":"/tmp/x","error":"permission denied"}],"path":"/tmp"}"#,
        );
        insta::assert_snapshot!("two_lists", text(&two, Some(60)));
    }

    #[test]
    fn flat_object_is_key_value() {
        let info = doc(
            r#"{"path":"/etc/passwd","size":1823,"hidden":false,"sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","owner":{"uid":0,"name":"root"}}"#,
        );
        insta::assert_snapshot!(text(&info, Some(80)));
    }

    #[test]
    fn scalars_strings_and_empties() {
        assert_eq!(text(&Doc::Null, Some(80)), "");
        assert_eq!(text(&doc(r#""plain text""#), Some(80)), "plain text\n");
        assert_eq!(text(&doc("42"), Some(80)), "42\n");
        assert_eq!(text(&doc("[]"), Some(80)), "(none)\n");
        assert_eq!(text(&doc(r#"["a","b"]"#), Some(80)), "a\nb\n");
        assert_eq!(
            text(&doc(r#"{"matches":[],"scanned":10}"#), Some(80)),
            "matches: (none)\nscanned: 10\n"
        );
    }

    #[test]
    fn json_is_one_document_in_the_broker_order() {
        let d = doc(r#"{"z":1,"a":{"y":null,"b":[1,2]}}"#);
        let out = json(&d);
        assert!(out.ends_with("}\n"));
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back, d.to_value());
        assert!(out.find("\"z\"").unwrap() < out.find("\"a\"").unwrap());
    }

    #[test]
    fn aligned_lines_pad_and_cut() {
        let columns = [
            Column {
                width: 4,
                right: true,
            },
            Column {
                width: 6,
                right: false,
            },
            Column {
                width: 0,
                right: false,
            },
        ];
        let cells = |a: &str, b: &str, c: &str| [a.to_owned(), b.to_owned(), c.to_owned()];
        assert_eq!(
            aligned(&cells("7", "ab", "x y"), &columns, None),
            "   7  ab      x y"
        );
        assert_eq!(
            aligned(&cells("12345", "abcdefgh", ""), &columns, None),
            "12345  abcdefgh"
        );
        assert_eq!(
            aligned(&cells("7", "a\nb", "a long summary"), &columns, Some(16)),
            "   7  a⏎b     a…"
        );
        assert_eq!(cut_line("abcdef", 3), "abc…");
        assert_eq!(cut_line("abc", 3), "abc");
    }

    #[test]
    fn no_width_means_no_cutting() {
        let long = "x".repeat(300);
        let d = doc(&format!(r#"[{{"k":"{long}"}}]"#));
        assert!(text(&d, None).contains(&long));
    }
}
