//! What the chunk store refuses or fails at, each saying what to do about it.

/// A chunk store failure. Only [`StoreError::Unavailable`] is worth retrying as is
/// ([`StoreError::is_retryable`]); every other variant is a decision about the input or the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    InvalidId(#[from] ids::InvalidId),

    #[error("checksum {value:?} refused: a SHA-256 is written as 64 hex digits")]
    InvalidChecksum { value: String },

    #[error(
        "chunk {index} refused: {size} bytes is more than the {max}-byte chunk limit; send chunks of at most {max} bytes"
    )]
    TooLarge { index: u64, size: usize, max: usize },

    #[error(
        "chunk {index} refused: its data does not match the SHA-256 sent with it; nothing was stored, send the chunk again"
    )]
    Corrupt { index: u64 },

    #[error(
        "chunk {index} of transfer {transfer} is not stored; it was never received or the transfer was deleted"
    )]
    NotFound { transfer: String, index: u64 },

    #[error(
        "stored chunk {index} of transfer {transfer} is damaged: {reason}; delete the transfer and fetch the file again"
    )]
    Damaged {
        transfer: String,
        index: u64,
        reason: String,
    },

    #[error(
        "file of transfer {transfer} has SHA-256 {actual}, not the declared {expected}; the file is not complete, delete the transfer and fetch it again"
    )]
    Mismatch {
        transfer: String,
        expected: String,
        actual: String,
    },

    #[error("range {start}-{end} cannot be satisfied: the file has {total} bytes")]
    RangeNotSatisfiable { start: u64, end: u64, total: u64 },

    #[error("{0}")]
    InvalidLayout(String),

    #[error("writing transfer {transfer} to its destination failed: {source}")]
    Write {
        transfer: String,
        #[source]
        source: std::io::Error,
    },

    #[error("chunk store unavailable while {action}: {reason}; retry when NATS JetStream answers")]
    Unavailable { action: String, reason: String },

    #[error(
        "JetStream refused {action}: {reason}; check stream LR_CHUNKS's limits and the NATS servers"
    )]
    Refused { action: String, reason: String },

    #[error(
        "the transfer store is full ({reason}); delete finished transfers, or ask an administrator to raise transfers.max_store_bytes or the NATS servers' max_file_store"
    )]
    Full { reason: String },

    #[error("chunk store failed while {action}: {reason}; this is a bug, please report it")]
    Internal { action: String, reason: String },
}

impl StoreError {
    /// Whether the same call may succeed later (NATS or JetStream did not answer).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    pub(crate) fn unavailable(action: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            action: action.into(),
            reason: reason.to_string(),
        }
    }
}
