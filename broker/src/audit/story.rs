//! A session's commands as its audit entries tell them: what a node taking a session over
//! rebuilds it from, and what the API answers for a session that ended.

use api_model::{AuditEntry, AuditKind, CommandState};

/// A command of a session as the log tells it: its line, and its end once it had one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedCommand {
    pub id: String,
    pub line: String,
    pub submitted_at_ms: u64,
    pub end: Option<LoggedEnd>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedEnd {
    pub state: CommandState,
    pub error: String,
    /// The working directory after the command.
    pub cwd: String,
    pub output_ref: Option<String>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

/// The commands `entries` (one session's, oldest first) submitted, in order, each with its end.
pub fn commands(entries: impl IntoIterator<Item = AuditEntry>) -> Vec<LoggedCommand> {
    let mut commands: Vec<LoggedCommand> = Vec::new();
    for entry in entries {
        let Some(id) = entry.command_id.clone() else {
            continue;
        };
        let text = |key: &str| entry.details[key].as_str().unwrap_or_default().to_owned();
        let at_ms = u64::try_from(entry.at.as_millisecond()).unwrap_or_default();
        match entry.kind {
            AuditKind::CommandSubmitted => commands.push(LoggedCommand {
                id,
                line: text("command_line"),
                submitted_at_ms: at_ms,
                end: None,
            }),
            AuditKind::CommandFinished => {
                let Some(command) = commands.iter_mut().rev().find(|c| c.id == id) else {
                    continue;
                };
                let duration_ms = entry.details["duration_ms"].as_u64().unwrap_or_default();
                command.end = Some(LoggedEnd {
                    state: serde_json::from_value(entry.details["state"].clone())
                        .unwrap_or(CommandState::Unknown),
                    error: text("error"),
                    cwd: text("cwd"),
                    output_ref: entry.output_ref.clone(),
                    started_at_ms: at_ms.saturating_sub(duration_ms),
                    finished_at_ms: at_ms,
                });
            }
            _ => {}
        }
    }
    commands
}
