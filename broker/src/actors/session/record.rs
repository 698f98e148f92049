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
            state: wire::to_bus_state(self.state).into(),
            output_json: self.output_json.clone(),
            output_ref: self.output_ref.clone(),
            error: self.error.clone(),
            cwd: self.cwd.clone(),
            submitted_at_ms: self.submitted_at_ms,
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
        }
    }
}
