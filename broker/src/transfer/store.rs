//! `ChunkStore`: transfer chunks in the JetStream stream `LR_CHUNKS`, one message per chunk.
//!
//! A chunk lives on `lr.<tenant>.xfer.<transfer>.chunk.<index>` with its SHA-256 in the
//! `Lr-Chunk-Sha256` header; the stream keeps one message per subject. A chunk is checked against
//! its checksum before it is stored and again whenever it is read; a whole file is checked against
//! the SHA-256 the agent declared before it is reported complete.
//!
//! Consistency: writes are acknowledged by the stream leader once stored (on a quorum with
//! replicas). Presence (`has_chunk`, `contiguous_count`) is asked of the leader, so a chunk whose
//! put returned is seen. Chunk data is read with direct get, which any replica may answer; a
//! replica that has not caught up answers "not found", and the read is then asked of the leader.

use std::collections::BTreeSet;
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::{PublishMessage, StreamMessage};
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self, context::CreateStreamErrorKind};
use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::StoreError;
use super::names::{Sha256Hex, TransferKey};
use super::range::RangePlan;

/// The stream holding every tenant's chunks.
pub const STREAM: &str = "LR_CHUNKS";
/// Header carrying a chunk's SHA-256 (64 lowercase hex digits).
pub const CHECKSUM_HEADER: &str = "Lr-Chunk-Sha256";
/// Largest chunk by default.
pub const DEFAULT_MAX_CHUNK_SIZE: usize = 4 * 1024 * 1024;

const SUBJECTS: &str = "lr.*.xfer.*.chunk.*";
/// Room left beside a chunk for its headers (about 350 bytes are used).
const HEADER_ROOM: usize = 1024;

/// How the chunk stream is created. Its storage limits (`max_bytes`, refusing new chunks when
/// full) are applied to a stream created earlier too; its replicas are fixed when it is first
/// created, and changing them later is an operator's `nats stream edit LR_CHUNKS`.
#[derive(Clone, Debug)]
pub struct ChunkStoreConfig {
    /// JetStream replicas of every chunk: 1 for a single NATS server, 3 for a cluster.
    pub replicas: usize,
    /// Largest chunk accepted. The stream's `max_msg_size` is this plus room for headers, and the
    /// NATS servers' `max_payload` must allow as much (the default of nats-server is 1 MB).
    pub max_chunk_size: usize,
    /// How long a re-sent chunk is recognised as a duplicate without touching storage.
    pub duplicate_window: Duration,
    /// Bound on every JetStream request and publish acknowledgement.
    pub request_timeout: Duration,
    /// Most bytes the stream holds (none: as much as the server's store); past it, chunks are
    /// refused rather than older ones dropped.
    pub max_bytes: Option<u64>,
}

impl Default for ChunkStoreConfig {
    fn default() -> Self {
        Self {
            replicas: 1,
            max_chunk_size: DEFAULT_MAX_CHUNK_SIZE,
            duplicate_window: Duration::from_secs(120),
            request_timeout: Duration::from_secs(10),
            max_bytes: None,
        }
    }
}

/// What became of a chunk handed to [`ChunkStore::put_chunk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The chunk is now stored.
    Stored,
    /// The same chunk (same index, same checksum) was already stored; nothing changed.
    Duplicate,
}

/// A byte range being read: the bytes `first..=last` of the file, and the stream of them.
#[derive(Debug)]
pub struct RangeRead<S> {
    pub first: u64,
    /// The last byte served: the requested end, or the file's last byte if that came first.
    pub last: u64,
    pub body: S,
}

/// Transfer chunks in JetStream; cheap to clone.
#[derive(Clone, Debug)]
pub struct ChunkStore {
    stream: stream::Stream,
    js: jetstream::Context,
    max_chunk_size: usize,
}

impl ChunkStore {
    /// Opens the chunk stream with default settings and `replicas` copies of every chunk,
    /// creating the stream on first use.
    pub async fn open(client: async_nats::Client, replicas: usize) -> Result<Self, StoreError> {
        Self::open_with(
            client,
            ChunkStoreConfig {
                replicas,
                ..ChunkStoreConfig::default()
            },
        )
        .await
    }

    /// Opens the chunk stream, creating it on first use with `config`. The chunk limit is
    /// lowered to what the connected server's `max_payload` carries, and, for a stream created
    /// earlier with other settings (which are used as they are), to its `max_msg_size`.
    pub async fn open_with(
        client: async_nats::Client,
        config: ChunkStoreConfig,
    ) -> Result<Self, StoreError> {
        let max_payload = client.max_payload();
        let mut max_chunk_size = config
            .max_chunk_size
            .min(max_payload.saturating_sub(HEADER_ROOM));
        let max_message_size = i32::try_from(max_chunk_size + HEADER_ROOM)
            .map_err(|_| StoreError::InvalidLayout("max chunk size is above 2 GiB".into()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client);
        let wanted = stream::Config {
            name: STREAM.into(),
            description: Some("live response transfer chunks, one message per chunk".into()),
            subjects: vec![SUBJECTS.into()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            max_message_size,
            // A chunk re-sent after the duplicate window replaces the stored one instead of
            // adding a second copy.
            max_messages_per_subject: 1,
            max_bytes: config
                .max_bytes
                .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
            discard: stream::DiscardPolicy::New,
            duplicate_window: config.duplicate_window,
            allow_direct: true,
            ..Default::default()
        };
        let (max_bytes, discard) = (wanted.max_bytes, wanted.discard);
        let mut stream = js.get_or_create_stream(wanted).await.map_err(|e| {
            let action = format!("opening stream {STREAM}");
            match e.kind() {
                CreateStreamErrorKind::JetStream(error) => StoreError::Refused {
                    action,
                    reason: error.to_string(),
                },
                _ => StoreError::unavailable(action, e),
            }
        })?;
        let current = &stream.cached_info().config;
        if current.max_bytes != max_bytes || current.discard != discard {
            // A stream made before these limits, or with others: the configured ones hold.
            let updated = stream::Config {
                max_bytes,
                discard,
                ..current.clone()
            };
            info!(
                stream = STREAM,
                from = current.max_bytes,
                to = max_bytes,
                "chunk store limits updated"
            );
            js.update_stream(updated)
                .await
                .map_err(|e| StoreError::Refused {
                    action: format!("applying max_bytes {max_bytes} to stream {STREAM}"),
                    reason: e.to_string(),
                })?;
            stream = js
                .get_stream(STREAM)
                .await
                .map_err(|e| StoreError::unavailable(format!("opening stream {STREAM}"), e))?;
        }

        let stream_max = stream.cached_info().config.max_message_size;
        if let Ok(stream_max) = usize::try_from(stream_max)
            && stream_max > 0
        {
            max_chunk_size = max_chunk_size.min(stream_max.saturating_sub(HEADER_ROOM));
        }
        if max_chunk_size == 0 {
            return Err(StoreError::InvalidLayout(format!(
                "no chunk fits: the chunk limit is {}, stream {STREAM} takes messages of {stream_max} \
                 bytes and the server {max_payload}; raise the limit or max_payload in nats-server.conf",
                config.max_chunk_size
            )));
        }
        if max_chunk_size < config.max_chunk_size {
            warn!(
                wanted = config.max_chunk_size,
                max_chunk_size, stream_max, max_payload, "chunk limit lowered to what nats carries"
            );
        }
        info!(
            stream = STREAM,
            replicas = stream.cached_info().config.num_replicas,
            max_chunk_size,
            "chunk store open"
        );
        Ok(Self {
            stream,
            js,
            max_chunk_size,
        })
    }

    /// Largest chunk [`ChunkStore::put_chunk`] accepts; transfers must be cut at most this big.
    pub fn max_chunk_size(&self) -> usize {
        self.max_chunk_size
    }

    /// Stores chunk `index` of a transfer after checking `data` against `sha256_hex`. A chunk
    /// whose data does not match is refused ([`StoreError::Corrupt`]) and nothing is stored.
    ///
    /// Re-sending the same chunk is safe: within the duplicate window it is recognised as a
    /// [`PutOutcome::Duplicate`]; after it, it is stored again in place of the first copy and
    /// reported [`PutOutcome::Stored`]. Either way the stream holds one copy. A chunk re-sent with
    /// other content replaces the stored one: whether a file is right is decided by the
    /// whole-file check of [`ChunkStore::write_file`], never by the outcome of a put.
    pub async fn put_chunk(
        &self,
        tenant: &str,
        transfer: &str,
        index: u64,
        data: Bytes,
        sha256_hex: &str,
    ) -> Result<PutOutcome, StoreError> {
        let key = TransferKey::new(tenant, transfer)?;
        let declared = Sha256Hex::parse(sha256_hex)?;
        if data.len() > self.max_chunk_size {
            return Err(StoreError::TooLarge {
                index,
                size: data.len(),
                max: self.max_chunk_size,
            });
        }
        if sha256_of(data.clone()).await? != declared {
            warn!(
                tenant,
                transfer, index, "chunk refused: data does not match its checksum"
            );
            return Err(StoreError::Corrupt { index });
        }

        let subject = key.chunk_subject(index);
        let msg_id = key.msg_id(index, &declared);
        let ack = self
            .publish(&subject, index, data.clone(), &declared, Some(&msg_id))
            .await?;
        if !ack.duplicate {
            debug!(tenant, transfer, index, seq = ack.sequence, "chunk stored");
            return Ok(PutOutcome::Stored);
        }
        // The duplicate window outlives a purge: an id seen before `delete` still reads as a
        // duplicate although its message is gone, so a duplicate must be present to count as one.
        if self.subject_has_message(&subject).await? {
            debug!(tenant, transfer, index, "chunk already stored");
            return Ok(PutOutcome::Duplicate);
        }
        let ack = self.publish(&subject, index, data, &declared, None).await?;
        debug!(
            tenant,
            transfer,
            index,
            seq = ack.sequence,
            "chunk stored again after delete"
        );
        Ok(PutOutcome::Stored)
    }

    /// Whether chunk `index` of a transfer is stored. Asked of the stream leader; reads no data.
    pub async fn has_chunk(
        &self,
        tenant: &str,
        transfer: &str,
        index: u64,
    ) -> Result<bool, StoreError> {
        let key = TransferKey::new(tenant, transfer)?;
        self.subject_has_message(&key.chunk_subject(index)).await
    }

    /// The indexes of every stored chunk of a transfer, from the stream leader's per-subject
    /// state: one or two requests, no chunk data, answers of about 40 bytes per chunk.
    pub async fn stored_chunks(
        &self,
        tenant: &str,
        transfer: &str,
    ) -> Result<BTreeSet<u64>, StoreError> {
        let key = TransferKey::new(tenant, transfer)?;
        let action = || format!("listing chunks of transfer {transfer}");
        let mut subjects = self
            .stream
            .info_with_subjects(key.chunks_filter())
            .await
            .map_err(|e| StoreError::unavailable(action(), e))?;
        let mut stored = BTreeSet::new();
        while let Some((subject, count)) = subjects
            .try_next()
            .await
            .map_err(|e| StoreError::unavailable(action(), e))?
        {
            if count > 0
                && let Some(index) = key.index_of(&subject)
            {
                stored.insert(index);
            }
        }
        Ok(stored)
    }

    /// How many chunks `0..n` are stored without a gap: the index to resume the transfer from.
    /// Costs what [`ChunkStore::stored_chunks`] costs.
    pub async fn contiguous_count(&self, tenant: &str, transfer: &str) -> Result<u64, StoreError> {
        let mut count = 0;
        for index in self.stored_chunks(tenant, transfer).await? {
            if index != count {
                break;
            }
            count += 1;
        }
        Ok(count)
    }

    /// Chunk `index` of a transfer, checked again against the checksum stored with it.
    pub async fn read_chunk(
        &self,
        tenant: &str,
        transfer: &str,
        index: u64,
    ) -> Result<Bytes, StoreError> {
        let key = TransferKey::new(tenant, transfer)?;
        self.read_verified(&key, index).await
    }

    /// Writes chunks `0..chunks` of a transfer, in order, into `writer` and checks the whole file
    /// against `expected_sha256`. Holds one chunk in memory at a time. On
    /// [`StoreError::Mismatch`] the bytes written are not the declared file: the caller must
    /// discard them and delete the transfer, and never report it complete.
    pub async fn write_file<W>(
        &self,
        tenant: &str,
        transfer: &str,
        chunks: u64,
        expected_sha256: &str,
        mut writer: W,
    ) -> Result<(), StoreError>
    where
        W: AsyncWrite + Unpin,
    {
        let key = TransferKey::new(tenant, transfer)?;
        let expected = Sha256Hex::parse(expected_sha256)?;
        let write_error = |source| StoreError::Write {
            transfer: transfer.to_string(),
            source,
        };
        let mut file_hash = Sha256::new();
        for index in 0..chunks {
            let (data, declared) = self.fetch(&key, index).await?;
            let chunk = data.clone();
            let (hash, actual) = blocking("hashing a chunk", move || {
                let actual = Sha256Hex::from_digest(&Sha256::digest(&chunk));
                file_hash.update(&chunk);
                (file_hash, actual)
            })
            .await?;
            file_hash = hash;
            check_stored(&key, index, &declared, &actual)?;
            writer.write_all(&data).await.map_err(write_error)?;
        }
        writer.flush().await.map_err(write_error)?;
        let actual = Sha256Hex::from_digest(&file_hash.finalize());
        if actual != expected {
            warn!(
                tenant,
                transfer,
                expected = expected.as_str(),
                actual = actual.as_str(),
                "file does not match its declared checksum"
            );
            return Err(StoreError::Mismatch {
                transfer: transfer.to_string(),
                expected: expected.as_str().to_string(),
                actual: actual.as_str().to_string(),
            });
        }
        Ok(())
    }

    /// Bytes `start..=end_inclusive` of a transfer stored in chunks of `chunk_size`, for an HTTP
    /// range request: only the chunks covering the range, cut at its edges, one chunk in memory
    /// at a time. An end past the file's last byte means the last byte, as in HTTP; the bounds
    /// actually served come back in [`RangeRead`] (for `Content-Range`). A range that cannot be
    /// satisfied is refused here, before anything is read, so the caller can answer 416 before
    /// it starts a body. The body ends at its first error.
    ///
    /// Each chunk is checked against its own checksum and length; the whole-file checksum is not
    /// (that is [`ChunkStore::write_file`]'s job, before a transfer is reported complete).
    pub fn read_range(
        &self,
        tenant: &str,
        transfer: &str,
        chunk_size: u64,
        total_size: u64,
        start: u64,
        end_inclusive: u64,
    ) -> Result<RangeRead<impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static>, StoreError>
    {
        let key = TransferKey::new(tenant, transfer)?;
        let plan = RangePlan::new(chunk_size, total_size, start, end_inclusive)?;
        let (first, last) = plan.bounds();
        let store = self.clone();
        let body =
            futures::stream::try_unfold((store, key, plan), |(store, key, mut plan)| async move {
                let Some(piece) = plan.next() else {
                    return Ok(None);
                };
                let data = store.read_verified(&key, piece.index).await?;
                if data.len() as u64 != piece.chunk_len {
                    return Err(StoreError::Damaged {
                        transfer: key.transfer().to_string(),
                        index: piece.index,
                        reason: format!(
                            "it holds {} bytes where the layout expects {}",
                            data.len(),
                            piece.chunk_len
                        ),
                    });
                }
                // `from < to <= chunk_len == data.len()`, which fits in usize.
                let slice = data.slice(piece.from as usize..piece.to as usize);
                Ok(Some((slice, (store, key, plan))))
            });
        Ok(RangeRead { first, last, body })
    }

    /// Removes every chunk of a transfer; returns how many were removed. Deleting a transfer
    /// that has no chunks is not an error.
    pub async fn delete(&self, tenant: &str, transfer: &str) -> Result<u64, StoreError> {
        let key = TransferKey::new(tenant, transfer)?;
        let response = self
            .stream
            .purge()
            .filter(key.chunks_filter())
            .await
            .map_err(|e| StoreError::unavailable(format!("deleting transfer {transfer}"), e))?;
        info!(
            tenant,
            transfer,
            purged = response.purged,
            "transfer chunks deleted"
        );
        Ok(response.purged)
    }

    async fn publish(
        &self,
        subject: &str,
        index: u64,
        data: Bytes,
        sha256: &Sha256Hex,
        msg_id: Option<&str>,
    ) -> Result<PublishAck, StoreError> {
        let size = data.len();
        let mut message = PublishMessage::build()
            .payload(data)
            .header(CHECKSUM_HEADER, sha256.as_str());
        if let Some(msg_id) = msg_id {
            message = message.message_id(msg_id);
        }
        let action = || format!("storing chunk {index} on {subject}");
        let classify = |e: jetstream::context::PublishError| match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => StoreError::TooLarge {
                index,
                size,
                max: self.js.client().max_payload().saturating_sub(HEADER_ROOM),
            },
            // JetStream's "maximum bytes exceeded": the stream or the server's store is full.
            PublishErrorKind::Other if e.to_string().contains("10077") => StoreError::Full {
                reason: e.to_string(),
            },
            PublishErrorKind::Other => StoreError::Refused {
                action: action(),
                reason: e.to_string(),
            },
            _ => StoreError::unavailable(action(), e),
        };
        let ack = self
            .js
            .send_publish(subject.to_string(), message)
            .await
            .map_err(classify)?;
        ack.await.map_err(classify)
    }

    async fn subject_has_message(&self, subject: &str) -> Result<bool, StoreError> {
        let action = || format!("looking for {subject}");
        let mut subjects = self
            .stream
            .info_with_subjects(subject)
            .await
            .map_err(|e| StoreError::unavailable(action(), e))?;
        match subjects
            .try_next()
            .await
            .map_err(|e| StoreError::unavailable(action(), e))?
        {
            Some((_, count)) => Ok(count > 0),
            None => Ok(false),
        }
    }

    async fn read_verified(&self, key: &TransferKey, index: u64) -> Result<Bytes, StoreError> {
        let (data, declared) = self.fetch(key, index).await?;
        let actual = sha256_of(data.clone()).await?;
        check_stored(key, index, &declared, &actual)?;
        Ok(data)
    }

    /// A stored chunk and the checksum stored with it, not yet checked.
    async fn fetch(&self, key: &TransferKey, index: u64) -> Result<(Bytes, Sha256Hex), StoreError> {
        let subject = key.chunk_subject(index);
        let message = match self.stream.direct_get_last_for_subject(&subject).await {
            Ok(message) => message,
            Err(direct) => {
                debug!(subject, error = %direct, "direct get failed; asking the stream leader");
                self.fetch_from_leader(key, index, &subject).await?
            }
        };
        let declared = message
            .headers
            .get(CHECKSUM_HEADER)
            .and_then(|value| Sha256Hex::parse(value.as_str()).ok())
            .ok_or_else(|| StoreError::Damaged {
                transfer: key.transfer().to_string(),
                index,
                reason: format!("it has no valid {CHECKSUM_HEADER} header"),
            })?;
        Ok((message.payload, declared))
    }

    async fn fetch_from_leader(
        &self,
        key: &TransferKey,
        index: u64,
        subject: &str,
    ) -> Result<StreamMessage, StoreError> {
        self.stream
            .get_last_raw_message_by_subject(subject)
            .await
            .map_err(|e| match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => StoreError::NotFound {
                    transfer: key.transfer().to_string(),
                    index,
                },
                LastRawMessageErrorKind::JetStream(error) => StoreError::Refused {
                    action: format!("reading {subject}"),
                    reason: error.to_string(),
                },
                _ => StoreError::unavailable(format!("reading {subject}"), e),
            })
    }
}

fn check_stored(
    key: &TransferKey,
    index: u64,
    declared: &Sha256Hex,
    actual: &Sha256Hex,
) -> Result<(), StoreError> {
    if declared == actual {
        return Ok(());
    }
    warn!(
        tenant = key.tenant(),
        transfer = key.transfer(),
        index,
        "stored chunk does not match its checksum"
    );
    Err(StoreError::Damaged {
        transfer: key.transfer().to_string(),
        index,
        reason: format!(
            "its data hashes to {}, not the stored {}",
            actual.as_str(),
            declared.as_str()
        ),
    })
}

/// SHA-256 of a chunk, off the async workers (a 4 MiB chunk takes milliseconds).
async fn sha256_of(data: Bytes) -> Result<Sha256Hex, StoreError> {
    blocking("hashing a chunk", move || {
        Sha256Hex::from_digest(&Sha256::digest(&data))
    })
    .await
}

async fn blocking<T: Send + 'static>(
    action: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Internal {
            action: action.to_string(),
            reason: e.to_string(),
        })
}
