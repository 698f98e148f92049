//! How a command fails, and the status each failure maps to.

use serde_json::Value;

/// A command's failure. Messages are lowercase and say what, why and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The arguments do not fit the command; the runner appends the usage.
    #[error("{0}")]
    InvalidArguments(String),
    /// The command ran and could not do what was asked.
    #[error("{0}")]
    Failed(String),
    /// The command exists but not on this OS.
    #[error("{0}")]
    Unsupported(String),
    /// The command saw the stop signal (cancel or deadline) and returned what it had so far.
    #[error("stopped before completion")]
    Interrupted { partial: Option<Value> },
}

impl CommandError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArguments(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        Self::Failed(msg.into())
    }

    /// A filesystem error on `path` while doing `what`, worded for an analyst.
    pub fn io(what: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Self::Failed(io_message(what, path, err))
    }
}

/// "cannot read '/x': permission denied (os error 13)" with a hint where one helps.
pub fn io_message(what: &str, path: &std::path::Path, err: &std::io::Error) -> String {
    let hint = match err.kind() {
        std::io::ErrorKind::NotFound => "; check the path (relative paths resolve against the cwd)",
        std::io::ErrorKind::PermissionDenied => "; the agent's user may not read it",
        _ => "",
    };
    let err = err.to_string().to_lowercase();
    format!("cannot {what} '{}': {err}{hint}", path.display())
}
