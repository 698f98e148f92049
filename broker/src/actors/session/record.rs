//! A command of a session as the session keeps it, and its wire form. Its state is the API's
//! (`api_model::CommandState`); the state an agent's result puts it in is [`wire::state_of`].

use agent_proto::bus::Command;
use api_model::CommandState;

use crate::wire;

#[derive(Clone, Debug)]
pub struct CommandRecord {
    pub id: String,
    pub line: String,
    pub command: String,
    pub args: Vec<String>,
    pub timeout_ms: u32,
    pub state: CommandState,
    /// The output until the audit log holds it; then empty, and `output_ref` names it there.
    pub output_json: String,
    pub output_ref: String,
    /// The output was let go from memory before the audit log stored it.
    pub output_let_go: bool,
    pub error: String,
    pub cwd: String,
    pub submitted_at_ms: u64,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    /// `getfile -auto`: this is its `fileinfo`, and the transfer starts when it completes.
    pub then_getfile: bool,
}

impl CommandRecord {
    /// The command as a list carries it: without an output held in memory, so that a list of
    /// up to 1000 stays one bus message; `output_held` says to ask for the command itself.
    pub fn to_wire_listed(&self) -> Command {
        let mut command = self.to_wire();
        command.output_held = !command.output_json.is_empty();
        command.output_json = String::new();
        command
    }

    pub fn to_wire(&self) -> Command {
        Command {
            command_id: self.id.clone(),
            command_line: self.line.clone(),
            state: wire::to_bus_state(self.state).into(),
            output_json: self.output_json.clone(),
            output_ref: self.output_ref.clone(),
            error: if self.output_let_go && self.output_ref.is_empty() {
                let lost = "its output is not available: the session let it go from memory (sessions.max_held_output_bytes) and the audit log has not stored it; run the command again";
                if self.error.is_empty() {
                    lost.to_string()
                } else {
                    format!("{}; {lost}", self.error)
                }
            } else {
                self.error.clone()
            },
            cwd: self.cwd.clone(),
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            output_held: false,
        }
    }
}
