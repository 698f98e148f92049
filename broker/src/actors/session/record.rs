//! A command of a session as the session keeps it, and its wire form.

use agent_proto::agent::command_result::Status;
use agent_proto::bus::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Rejected,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Running => "running",
            CommandState::Completed => "completed",
            CommandState::Failed => "failed",
            CommandState::Cancelled => "cancelled",
            CommandState::TimedOut => "timed_out",
            CommandState::Rejected => "rejected",
        }
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, CommandState::Queued | CommandState::Running)
    }

    /// The state an agent's result puts a command in.
    pub fn of(status: Status) -> Self {
        match status {
            Status::Ok => CommandState::Completed,
            Status::Failed | Status::Busy | Status::Unspecified => CommandState::Failed,
            Status::Cancelled => CommandState::Cancelled,
            Status::TimedOut => CommandState::TimedOut,
            Status::StaleToken
            | Status::UnknownCommand
            | Status::Unsupported
            | Status::InvalidArguments => CommandState::Rejected,
        }
    }
}

#[derive(Clone, Debug)]
pub struct CommandRecord {
    pub id: String,
    pub line: String,
    pub command: String,
    pub args: Vec<String>,
    pub timeout_ms: u32,
    pub state: CommandState,
    pub output_json: String,
    pub error: String,
    pub cwd: String,
    pub submitted_at_ms: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// `getfile -auto`: this is its `fileinfo`, and the transfer starts when it completes.
    pub then_getfile: bool,
}

impl CommandRecord {
    pub fn to_wire(&self) -> Command {
        Command {
            command_id: self.id.clone(),
            command_line: self.line.clone(),
            state: self.state.as_str().to_string(),
            output_json: self.output_json.clone(),
            error: self.error.clone(),
            cwd: self.cwd.clone(),
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
        }
    }
}
