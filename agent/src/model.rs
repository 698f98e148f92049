//! Domain types of a command's life on the agent: what the broker asked and what came of it.
//! The protobuf forms are converted in [`crate::convert`] only.

use std::time::Duration;

use serde_json::Value;

/// A command as the broker asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command_id: String,
    pub session_id: String,
    pub token: u64,
    pub command: String,
    pub args: Vec<String>,
    pub cwd: String,
    /// `None` when the broker left it to the command's default.
    pub timeout: Option<Duration>,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Cancelled,
    TimedOut,
    StaleToken,
    UnknownCommand,
    Unsupported,
    InvalidArguments,
}

/// The result of one command id: replayed unchanged when the same id comes again.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub output: Option<Value>,
    /// Empty when the command succeeded.
    pub error: String,
    /// The working directory after the command.
    pub cwd: String,
}

impl Outcome {
    pub fn error(status: Status, error: impl Into<String>, cwd: impl Into<String>) -> Self {
        Self {
            status,
            output: None,
            error: error.into(),
            cwd: cwd.into(),
        }
    }
}

/// An outcome addressed to the command it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub command_id: String,
    pub outcome: Outcome,
}
