//! The tenant library: scripts and tools analysts upload once and `putfile` to devices.
//!
//! A file is stored as a chunked blob in the [`ChunkStore`] (like a getfile transfer, under its own
//! blob id) and described by an entry in the JetStream key-value bucket `lr-library`, keyed by
//! tenant and name. A name is claimed with a create (refused when it exists) or replaced with a
//! compare-and-set, so two uploads of one name never both win; the blob of a replaced or deleted
//! entry is deleted after the entry no longer points to it.

use async_nats::jetstream::kv;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ChunkStore, sha256_hex};

const BUCKET: &str = "lr-library";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryEntry {
    pub name: String,
    pub description: String,
    pub parameters_description: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    /// The blob holding the file's chunks.
    pub blob: String,
    pub uploaded_by: String,
    pub uploaded_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error(transparent)]
    Invalid(#[from] ids::InvalidId),
    #[error("{0} is already in the library; upload with overwrite to replace it")]
    Exists(String),
    #[error("no library file named {0}; list the library with `library`")]
    NotFound(String),
    #[error("the file is over the library limit of {limit} bytes; upload a smaller file")]
    TooLarge { limit: u64 },
    #[error(
        "the tenant's store has room for {room} more bytes of its quota of {quota}; delete finished transfers or library files, or ask an administrator to raise max_store_bytes"
    )]
    OverQuota { room: u64, quota: u64 },
    #[error("reading the upload failed: {0}; upload again")]
    Body(String),
    #[error("library unavailable: {0}; retry when NATS JetStream answers")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> LibraryError {
    LibraryError::Unavailable(e.to_string())
}

/// What an upload says about the file besides its bytes.
pub struct Upload {
    pub tenant: String,
    pub user: String,
    pub name: String,
    pub description: String,
    pub parameters_description: String,
    pub overwrite: bool,
    pub limit: u64,
    /// What the tenant's store quota (`quota`) leaves.
    pub room: u64,
    pub quota: u64,
    pub chunk_size: u64,
    pub now_ms: u64,
}

#[derive(Clone)]
pub struct Library {
    kv: kv::Store,
    store: ChunkStore,
}

impl Library {
    pub async fn open(
        client: async_nats::Client,
        store: ChunkStore,
        replicas: usize,
    ) -> Result<Self, LibraryError> {
        let kv = crate::kv::open_bucket(
            client,
            BUCKET,
            "live response library: one entry per tenant and name",
            replicas,
        )
        .await
        .map_err(LibraryError::Unavailable)?;
        Ok(Self { kv, store })
    }

    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<LibraryEntry>, LibraryError> {
        let mut entries: Vec<LibraryEntry> = crate::kv::tenant_values(&self.kv, tenant)
            .await
            .map_err(LibraryError::Unavailable)?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    pub async fn get(&self, tenant: &str, name: &str) -> Result<LibraryEntry, LibraryError> {
        ids::library_name(name)?;
        self.entry(tenant, name)
            .await?
            .map(|(entry, _)| entry)
            .ok_or_else(|| LibraryError::NotFound(name.to_string()))
    }

    /// Stores an upload, chunk by chunk as it arrives, then claims its name. Nothing of a refused
    /// or failed upload stays behind.
    pub async fn upload<S, E>(
        &self,
        upload: Upload,
        body: S,
    ) -> Result<(LibraryEntry, bool), LibraryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        ids::library_name(&upload.name)?;
        let existing = self.entry(&upload.tenant, &upload.name).await?;
        if existing.is_some() && !upload.overwrite {
            return Err(LibraryError::Exists(upload.name));
        }
        let blob = format!("lib-{}", uuid::Uuid::now_v7().simple());
        let stored = self.store_blob(&upload, &blob, body).await;
        let (size, sha256) = match stored {
            Ok(stored) => stored,
            Err(error) => {
                let _ = self.store.delete(&upload.tenant, &blob).await;
                return Err(error);
            }
        };
        let entry = LibraryEntry {
            name: upload.name.clone(),
            description: upload.description,
            parameters_description: upload.parameters_description,
            size,
            sha256,
            chunk_size: upload.chunk_size,
            blob: blob.clone(),
            uploaded_by: upload.user,
            uploaded_at_ms: upload.now_ms,
        };
        let value = Bytes::from(serde_json::to_vec(&entry).map_err(unavailable)?);
        let key = key(&upload.tenant, &upload.name)?;
        let claimed = match &existing {
            None => self.kv.create(&key, value).await.map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    LibraryError::Exists(upload.name.clone())
                } else {
                    unavailable(e)
                }
            }),
            Some((_, revision)) => self.kv.update(&key, value, *revision).await.map_err(|_| {
                LibraryError::Unavailable(format!(
                    "{} was changed by another upload at the same time",
                    upload.name
                ))
            }),
        };
        if let Err(error) = claimed {
            let _ = self.store.delete(&upload.tenant, &blob).await;
            return Err(error);
        }
        if let Some((old, _)) = &existing {
            let _ = self.store.delete(&upload.tenant, &old.blob).await;
        }
        tracing::info!(tenant = %upload.tenant, name = %entry.name, size = entry.size, replaced = existing.is_some(), "library file stored");
        Ok((entry, existing.is_some()))
    }

    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), LibraryError> {
        ids::library_name(name)?;
        let Some((entry, revision)) = self.entry(tenant, name).await? else {
            return Err(LibraryError::NotFound(name.to_string()));
        };
        self.kv
            .delete_expect_revision(key(tenant, name)?, Some(revision))
            .await
            .map_err(unavailable)?;
        let _ = self.store.delete(tenant, &entry.blob).await;
        tracing::info!(tenant, name, "library file deleted");
        Ok(())
    }

    async fn entry(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<(LibraryEntry, u64)>, LibraryError> {
        let Some(entry) = self
            .kv
            .entry(key(tenant, name)?)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&entry.value)
            .ok()
            .map(|e| (e, entry.revision)))
    }

    /// Cuts the body into chunks and stores them; returns the size and SHA-256 of the whole.
    async fn store_blob<S, E>(
        &self,
        upload: &Upload,
        blob: &str,
        mut body: S,
    ) -> Result<(u64, String), LibraryError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let chunk_size = usize::try_from(upload.chunk_size).unwrap_or(usize::MAX);
        let mut hash = Sha256::new();
        let mut size = 0u64;
        let mut index = 0u64;
        let mut pending = BytesMut::new();
        loop {
            let next = body.next().await;
            let finished = next.is_none();
            if let Some(part) = next {
                let part = part.map_err(|e| LibraryError::Body(e.to_string()))?;
                size += part.len() as u64;
                if size > upload.limit {
                    return Err(LibraryError::TooLarge {
                        limit: upload.limit,
                    });
                }
                if size > upload.room {
                    return Err(LibraryError::OverQuota {
                        room: upload.room,
                        quota: upload.quota,
                    });
                }
                hash.update(&part);
                pending.extend_from_slice(&part);
            }
            while pending.len() >= chunk_size || (finished && !pending.is_empty()) {
                let take = pending.len().min(chunk_size);
                let chunk = pending.split_to(take).freeze();
                let sha = sha256_hex(&chunk);
                self.store
                    .put_chunk(&upload.tenant, blob, index, chunk, &sha)
                    .await
                    .map_err(unavailable)?;
                index += 1;
            }
            if finished {
                break;
            }
        }
        Ok((size, hex::encode(hash.finalize())))
    }
}

/// The record's key; the name is checked and hex-encoded there.
fn key(tenant: &str, name: &str) -> Result<String, ids::InvalidId> {
    crate::kv::key(tenant, ids::Kind::LibraryName, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_collide_or_hold_odd_characters() {
        assert_ne!(key("t", "a.b").unwrap(), key("t", "a_b").unwrap());
        assert!(
            key("demo", "my tool (1).sh")
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.')
        );
    }
}
