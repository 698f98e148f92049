//! File transfers' data plane: chunks in JetStream, one message per chunk (DESIGN.md §5).
//!
//! [`ChunkStore`] stores and reads chunks, checks each against its own SHA-256 and a whole file
//! against the SHA-256 declared for it, and serves byte ranges for downloads. Chunks live on
//! `lr.<tenant>.xfer.<transfer>.chunk.<index>` in the stream `LR_CHUNKS`, so a transfer of another
//! tenant is simply not found. Ownership and progress checkpoints of a transfer belong to its
//! `TransferActor` and the replicated control state, not to this module.

mod error;
mod names;
mod range;
mod store;

pub use error::StoreError;
pub use names::MAX_ID_LEN;
pub use range::chunk_count;
pub use store::{
    CHECKSUM_HEADER, ChunkStore, ChunkStoreConfig, DEFAULT_MAX_CHUNK_SIZE, PutOutcome, RangeRead,
    STREAM,
};

#[cfg(test)]
mod tests;
