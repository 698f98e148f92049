//! What the REPL's console-side commands show: `status <command id>` (one command of this
//! session), `jobs` (its commands still queued or running) and the switch of `trace`. Rendering
//! only; the REPL fetches and prints.

use crate::api::{Command, CommandState};
use crate::doc::Doc;
use crate::render::{self, Format};

/// `trace`, `trace on`, `trace off`: the new state of the request trace. Without a value the
/// switch flips.
pub fn trace_switch(current: bool, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None => Ok(!current),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(_) => Err(format!(
            "trace takes on or off, not '{}'",
            value.unwrap_or_default()
        )),
    }
}

/// `status <id>`: in JSON the whole command object; as a table its fields (but the output) as
/// key and value, then its output.
pub fn status_body(command: &Command, format: Format, width: Option<u16>) -> String {
    if format == Format::Json {
        return render::json(&command.doc);
    }
    let fields = match &command.doc {
        Doc::Object(fields) => fields
            .iter()
            .filter(|(k, _)| k != "output")
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let mut out = render::text(&Doc::Object(fields), width);
    let output = render::text(command.output(), width);
    if !output.is_empty() {
        out.push('\n');
        out.push_str(&output);
    }
    out
}

/// The columns `jobs` shows in a table; JSON has every field.
const JOB_COLUMNS: [&str; 4] = ["command_id", "command_line", "state", "started_at"];

/// `jobs`: the commands of `list` (the answer of `GET /sessions/{id}/commands`) that have not
/// ended. `None` when the answer is not a list.
pub fn jobs_body(list: &Doc, format: Format, width: Option<u16>) -> Option<String> {
    let Doc::Array(commands) = list else {
        return None;
    };
    let active: Vec<Doc> = commands.iter().filter(|c| !ended(c)).cloned().collect();
    Some(match format {
        Format::Json => render::json(&Doc::Array(active)),
        Format::Table if active.is_empty() => {
            "no queued or running commands in this session\n".to_owned()
        }
        Format::Table => {
            let rows = active
                .iter()
                .map(|c| {
                    Doc::Object(
                        JOB_COLUMNS
                            .iter()
                            .map(|k| ((*k).to_owned(), c.get(k).cloned().unwrap_or_default()))
                            .collect(),
                    )
                })
                .collect();
            render::text(&Doc::Array(rows), width)
        }
    })
}

/// A command in a final state; a state this console does not know counts as not ended.
fn ended(command: &Doc) -> bool {
    command
        .get("state")
        .and_then(Doc::as_str)
        .and_then(|s| serde_json::from_value::<CommandState>(s.into()).ok())
        .is_some_and(CommandState::is_terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Doc {
        Doc::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn trace_flips_or_follows_its_value() {
        assert_eq!(trace_switch(false, None), Ok(true));
        assert_eq!(trace_switch(true, None), Ok(false));
        assert_eq!(trace_switch(true, Some("ON")), Ok(true));
        assert_eq!(trace_switch(true, Some("off")), Ok(false));
        assert!(trace_switch(true, Some("loud")).is_err());
    }

    #[test]
    fn jobs_are_the_commands_not_ended() {
        let list = doc(
            r#"[{"command_id":"c-1","command_line":"dir","state":"completed","output":{"a":1},"started_at":"2025-06-01T11:00:01Z"},
                {"command_id":"c-2","command_line":"findfile -name *.log","state":"running","output":null,"started_at":"2025-06-01T11:00:02Z"},
                {"command_id":"c-3","command_line":"processes","state":"queued","output":null,"started_at":null},
                {"command_id":"c-4","command_line":"dir","state":"dispatched"}]"#,
        );
        let table = jobs_body(&list, Format::Table, None).unwrap();
        assert!(!table.contains("c-1"), "{table}");
        for id in ["c-2", "c-3", "c-4"] {
            assert!(table.contains(id), "{table}");
        }
        assert!(
            table.lines().nth(1).unwrap().contains("command_line"),
            "{table}"
        );
        assert!(!table.contains("output"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&jobs_body(&list, Format::Json, None).unwrap()).unwrap();
        assert_eq!(json.as_array().unwrap().len(), 3);
        assert!(json[0].get("output").is_some(), "JSON keeps every field");
        let none = jobs_body(&doc("[]"), Format::Table, None).unwrap();
        assert_eq!(none, "no queued or running commands in this session\n");
        assert_eq!(jobs_body(&doc("{}"), Format::Table, None), None);
    }

    #[test]
    fn status_shows_the_fields_then_the_output() {
        let command = Command::from_doc(doc(
            r#"{"command_id":"c-2","command_line":"dir","state":"completed","output":[{"name":"a.txt"}],"error":null}"#,
        ))
        .unwrap();
        let table = status_body(&command, Format::Table, None);
        let (fields, output) = table.split_once("\n\n").unwrap();
        assert!(
            fields.contains("command_line") && fields.contains("completed"),
            "{table}"
        );
        assert!(!fields.contains("output"), "{table}");
        assert!(output.contains("a.txt"), "{table}");
        let json: serde_json::Value =
            serde_json::from_str(&status_body(&command, Format::Json, None)).unwrap();
        assert_eq!(json["output"][0]["name"], "a.txt");
    }
}
