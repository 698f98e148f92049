//! File transfers' data plane: chunks in JetStream, one message per chunk (DESIGN.md §5).
//!
//! [`ChunkStore`] stores and reads chunks, checks each against its own SHA-256 and a whole file
//! against the SHA-256 declared for it, and serves byte ranges for downloads. Chunks live on
//! `lr.<tenant>.xfer.<transfer>.chunk.<index>` in the stream `LR_CHUNKS`, so a transfer of another
//! tenant is simply not found. [`TransferBook`] holds each transfer's record: owner, progress
//! checkpoint and outcome, fenced by the record's revision.

mod book;
mod error;
mod names;
mod range;
mod store;

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
    hex(&Sha256::digest(data))
}

/// A digest as lowercase hex digits.
pub fn hex(digest: &[u8]) -> String {
    names::Sha256Hex::from_digest(digest).as_str().to_string()
}

#[cfg(test)]
mod tests;
