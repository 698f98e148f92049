//! The life cycles of commands and transfers. Each has an `Unknown` variant that only a client
//! ever holds: a state from a newer broker, read as "not finished".

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a command is in its life: `queued` → `running` → one of the terminal states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    /// The device refused it: unknown or unsupported command, bad arguments, or a stale session.
    Rejected,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl CommandState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::TimedOut | Self::Rejected
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::TimedOut => "timed_out",
            Self::Rejected => "rejected",
            Self::Unknown => "unknown",
        }
    }
}

/// Where a transfer is in its life: `running` → `verifying` → one of the terminal states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferState {
    Running,
    /// Every chunk is stored; the whole file is being checked against its SHA-256.
    Verifying,
    Completed,
    Failed,
    Cancelled,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl TransferState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Verifying => "verifying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Unknown => "unknown",
        }
    }
}

/// Which way a transfer goes: `getfile` from the device, `putfile` to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Getfile,
    Putfile,
    #[serde(other, skip_serializing)]
    Unknown,
}

impl std::fmt::Display for CommandState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for TransferState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
