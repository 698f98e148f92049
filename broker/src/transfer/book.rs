//! `TransferBook`: every transfer's record (what, whose, who drives it, how far) in the JetStream
//! key-value bucket `lr-transfers`.
//!
//! Ownership is fenced by the entry's revision: a node writes a record only with a
//! compare-and-set on the revision it last wrote or read, so once another node has taken a
//! transfer over (its own compare-and-set bumped the revision), the old owner's next write fails
//! and it stops. Why a KV entry and not a Raft record: a transfer writes a checkpoint every window
//! and a heartbeat every second, which would crowd the lease log; the record lives in the same
//! JetStream as the chunks it describes, and the revision is all the fencing it needs.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

const BUCKET: &str = "lr-transfers";

/// The API's kinds and states are the ones stored: one vocabulary from the record to the client.
pub use api_model::{TransferKind, TransferState};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRecord {
    pub id: String,
    pub kind: TransferKind,
    pub tenant: String,
    pub user: String,
    pub session: String,
    pub device: String,
    /// The session's fencing token: the agent refuses the transfer once a newer session reached it.
    pub token: u64,
    /// getfile: the file on the device. putfile: where the file landed, once it has.
    pub path: String,
    /// getfile: a safe file name for the analyst's copy. putfile: the library name.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    /// putfile: the library blob the chunks are read from.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub keep: bool,
    #[serde(default)]
    pub overwrite: bool,
    pub state: TransferState,
    /// Chunks `0..chunks_done` are committed (stored, or written on the device for putfile).
    pub chunks_done: u64,
    pub error: String,
    /// The node driving the transfer.
    pub owner: u64,
    /// When the owner last wrote this record (wall clock, for people).
    pub heartbeat_ms: u64,
    pub created_at_ms: u64,
    pub finished_at_ms: u64,
    /// The session's signed ticket (getfile) or offer (putfile), an encoded `Order` in hex, signed
    /// when the transfer started: what any node driving the transfer sends the device.
    #[serde(default)]
    pub ticket: String,
    /// The session's signed cancel of this transfer, sent when it ends other than completed.
    #[serde(default)]
    pub cancel: String,
}

impl TransferRecord {
    pub fn chunks(&self) -> u64 {
        super::chunk_count(self.size, self.chunk_size)
    }

    pub fn bytes_done(&self) -> u64 {
        (self.chunks_done * self.chunk_size).min(self.size)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error(transparent)]
    Invalid(#[from] ids::InvalidId),
    #[error("transfer {0} was taken over by another node")]
    Superseded(String),
    #[error("transfer records unavailable: {0}; retry when NATS JetStream answers")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> BookError {
    BookError::Unavailable(e.to_string())
}

/// A record and the revision it was read or written at.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub record: TransferRecord,
    pub revision: u64,
}

#[derive(Clone)]
pub struct TransferBook {
    kv: kv::Store,
}

fn key(tenant: &str, id: &str) -> Result<String, BookError> {
    Ok(crate::kv::key(tenant, ids::Kind::Transfer, id)?)
}

impl TransferBook {
    /// Opens the bucket, creating it on first use with `replicas` copies.
    pub async fn open(client: async_nats::Client, replicas: usize) -> Result<Self, BookError> {
        let kv = crate::kv::open_bucket(
            client,
            BUCKET,
            "live response transfers: owner, progress, outcome",
            replicas,
        )
        .await
        .map_err(BookError::Unavailable)?;
        Ok(Self { kv })
    }

    pub async fn create(&self, record: &TransferRecord) -> Result<Versioned, BookError> {
        let revision = self
            .kv
            .create(key(&record.tenant, &record.id)?, encode(record)?)
            .await
            .map_err(unavailable)?;
        Ok(Versioned {
            record: record.clone(),
            revision,
        })
    }

    /// Writes `record` over the revision last seen; fails with [`BookError::Superseded`] when
    /// someone else wrote since.
    pub async fn update(
        &self,
        record: &TransferRecord,
        revision: u64,
    ) -> Result<Versioned, BookError> {
        match self
            .kv
            .update(key(&record.tenant, &record.id)?, encode(record)?, revision)
            .await
        {
            Ok(revision) => Ok(Versioned {
                record: record.clone(),
                revision,
            }),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                Err(BookError::Superseded(record.id.clone()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Removes a record and its history, unless it was written after `revision`.
    pub async fn remove(&self, record: &TransferRecord, revision: u64) -> Result<(), BookError> {
        self.kv
            .purge_expect_revision(key(&record.tenant, &record.id)?, Some(revision))
            .await
            .map_err(unavailable)
    }

    /// A transfer of `tenant`; another tenant's transfer reads as missing.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<Versioned>, BookError> {
        let Some(entry) = self.kv.entry(key(tenant, id)?).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        Ok(decode(&entry.value).map(|record| Versioned {
            record,
            revision: entry.revision,
        }))
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<TransferRecord>, BookError> {
        let mut records: Vec<TransferRecord> = crate::kv::tenant_values(&self.kv, tenant)
            .await
            .map_err(BookError::Unavailable)?;
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// Every write to any record, as it happens (the current value of each first).
    pub async fn watch_all(&self) -> Result<impl Stream<Item = Versioned> + use<>, BookError> {
        let watch = self.kv.watch_with_history(">").await.map_err(unavailable)?;
        Ok(watch.filter_map(|entry| async move {
            let entry = entry.ok()?;
            if entry.operation != kv::Operation::Put {
                return None;
            }
            Some(Versioned {
                record: decode(&entry.value)?,
                revision: entry.revision,
            })
        }))
    }

    /// Writes to one record, as they happen.
    pub async fn watch(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<impl Stream<Item = TransferRecord> + use<>, BookError> {
        let watch = self.kv.watch(key(tenant, id)?).await.map_err(unavailable)?;
        Ok(watch.filter_map(|entry| async move { decode(&entry.ok()?.value) }))
    }
}

fn encode(record: &TransferRecord) -> Result<Bytes, BookError> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(unavailable)
}

fn decode(value: &[u8]) -> Option<TransferRecord> {
    serde_json::from_slice(value).ok()
}
