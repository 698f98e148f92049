//! File transfers, all in one place (DESIGN.md §5):
//!
//! - [`store`]: the data plane. [`ChunkStore`] stores and reads chunks in JetStream, one message
//!   per chunk on `lr.<tenant>.xfer.<transfer>.chunk.<index>` in the stream `LR_CHUNKS` (so a
//!   transfer of another tenant is simply not found), checks each against its own SHA-256 and a
//!   whole file against the SHA-256 declared for it, and serves byte ranges for downloads.
//! - [`book`]: [`TransferBook`], each transfer's record (owner, progress checkpoint, outcome) in
//!   the KV `lr-transfers`, fenced by the record's revision.
//! - [`start`]: what a session's `getfile`/`putfile`/`library` do: check, record, start driving.
//! - [`actor`]: `TransferActor`, which drives one transfer on the node that owns it.
//! - [`cancel`]: an analyst's cancel, from any node: the owner's actor ends the transfer; with no
//!   owner left, the node asked takes the transfer over and ends it the same way.
//! - [`handover`]: a session's running transfers moving with it to the node that adopted it.
//! - [`upkeep`]: every node's watch of the records: takes over orphaned transfers, deletes
//!   finished ones after their retention.
//! - [`intake`]: chunks coming in on an agent's stream, on the node holding it.
//! - [`library`]: the tenant library of scripts and tools, as chunked blobs in the chunk store,
//!   indexed in the KV `lr-library`; `putfile` sends from it.

pub mod actor;
mod book;
pub mod cancel;
mod error;
pub mod handover;
pub mod intake;
pub mod library;
mod names;
mod range;
pub mod start;
mod store;
pub mod upkeep;

pub use actor::{TransferContext, drive};
pub use cancel::{CancelError, cancel};
pub use intake::ChunkIntake;

pub use book::{BookError, TransferBook, TransferKind, TransferRecord, TransferState, Versioned};
pub use error::StoreError;
pub use range::chunk_count;
pub use store::{
    CHECKSUM_HEADER, ChunkStore, ChunkStoreConfig, DEFAULT_MAX_CHUNK_SIZE, PutOutcome, RangeRead,
    STREAM,
};

/// SHA-256 of `data` as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests;
