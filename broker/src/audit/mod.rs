//! The audit log: everything done on a tenant's devices, and by its analysts and admins, as one
//! hash chain per tenant in JetStream.
//!
//! Entries live in the stream `LR_AUDIT` on `lr.<tenant>.audit.log`, command outputs beside them
//! on `lr.<tenant>.audit.out` (once each, named in the entry by their stream sequence and
//! SHA-256). An entry is appended with JetStream's expected-last-subject-sequence check, so
//! brokers appending for one tenant at once serialise: the loser re-reads the head and tries
//! again, and the chain never forks. [`chain`] seals and checks entries; [`checkpoint`] writes
//! each tenant's head into the replicated state every few seconds, so a truncated tail is caught
//! too. Entries written are also forwarded for a SIEM: one JSON line each appended to
//! `audit.export_file`, and one syslog message each (RFC 5424 over UDP, the entry as its message)
//! to `audit.export_syslog`, when set.

pub mod chain;
pub mod checkpoint;
pub mod retention;
pub mod story;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use api_model::{AuditEntry, AuditFilter, AuditKind};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{DeleteMessageErrorKind, LastRawMessageErrorKind};
use async_nats::jetstream::{self, ErrorCode, consumer, stream};
use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::time::{now_ms, timestamp};
use chain::{Checkpoint, GENESIS, Verifier, Walk};
use cluster::LeaseService;
use cluster::directory::DirectoryOp;

/// The stream of every tenant's audit entries and command outputs.
pub const STREAM: &str = "LR_AUDIT";
const SUBJECTS: &str = "lr.*.audit.>";
/// An append lost to another broker's re-reads the head and goes again, after a pause that
/// grows and is jittered so that two writers in step fall out of it; at most 50 times.
const APPEND_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(1))
    .with_max_delay(Duration::from_millis(25))
    .with_max_times(50);
/// Bound on reading one message of a scan.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how long entries are kept. Replicas and the sync policy are the trade-off between
/// what a lost NATS node (or machine) can take with it and the cost of each append.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// JetStream replicas of the log: 1 for one NATS server, 3 for a cluster.
    pub replicas: usize,
    /// How long entries are kept (default 180 days; fractions allowed), for every tenant
    /// without its own `[tenants.<t>] audit_retention_days`.
    pub retention_days: f64,
    /// How often the leader's node removes what is past retention (default hourly).
    pub retention_interval_ms: u64,
    /// A JSON-lines file each node appends the entries it writes to, for a SIEM to collect.
    pub export_file: Option<PathBuf>,
    /// A syslog receiver (`host:port`, UDP) each node sends the entries it writes to.
    pub export_syslog: Option<String>,
    /// How often each node writes the heads of the chains it extended into the replicated
    /// state; a tail removed within this window after its entries were written goes unnoticed.
    pub checkpoint_interval_ms: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            replicas: 1,
            retention_days: 180.0,
            retention_interval_ms: 3_600_000,
            export_file: None,
            export_syslog: None,
            checkpoint_interval_ms: 2_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot write the audit log ({0}); nothing was done, retry when JetStream is back")]
    Unavailable(String),
    #[error("the audit log holds an entry that is not json: {0}")]
    Corrupt(String),
}

/// What happened, before the log numbers, dates and seals it.
#[derive(Clone, Debug)]
pub struct Event {
    pub kind: AuditKind,
    pub user: Option<String>,
    pub device: Option<String>,
    pub session: Option<String>,
    pub command_id: Option<String>,
    pub transfer_id: Option<String>,
    pub details: Value,
    /// A command's output, stored once beside the log, with the role reading it needs.
    pub output: Option<(Bytes, access::Role)>,
}

impl Event {
    pub fn new(kind: AuditKind, details: Value) -> Self {
        Self {
            kind,
            user: None,
            device: None,
            session: None,
            command_id: None,
            transfer_id: None,
            details,
            output: None,
        }
    }

    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    pub fn device(mut self, device: impl Into<String>) -> Self {
        self.device = Some(device.into());
        self
    }

    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    pub fn command(mut self, command_id: impl Into<String>) -> Self {
        self.command_id = Some(command_id.into());
        self
    }

    pub fn transfer(mut self, transfer_id: impl Into<String>) -> Self {
        self.transfer_id = Some(transfer_id.into());
        self
    }

    /// A command's output; reading it needs `role` (the command's) on the event's device.
    pub fn output(mut self, output: Bytes, role: access::Role) -> Self {
        self.output = Some((output, role));
        self
    }
}

/// The role reading an output needs, and the device it came from, as headers of its message.
const ROLE_HEADER: &str = "Lr-Role";
const DEVICE_HEADER: &str = "Lr-Device";

/// A command's output as stored.
pub struct Output {
    pub body: Bytes,
    pub role: access::Role,
    pub device: String,
}

/// A chain's head as this node last wrote or read it.
#[derive(Clone, Debug)]
struct Head {
    /// The stream sequence of the last entry on the tenant's subject (0: none).
    stream_seq: u64,
    seq: u64,
    hash: String,
}

#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    stream: stream::Stream,
    node: u64,
    /// One lock per tenant: this node's appends to a chain go one at a time.
    heads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Head>>>>>,
    export: Option<Mutex<std::fs::File>>,
    syslog: Option<std::net::UdpSocket>,
}

/// A UDP socket of the receiver's address family, connected to it.
fn syslog_socket(target: &str) -> std::io::Result<std::net::UdpSocket> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
    let address = target.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the name resolves to nothing")
    })?;
    let local: SocketAddr = if address.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(address)?;
    Ok(socket)
}

fn log_subject(tenant: &str) -> String {
    format!("lr.{tenant}.audit.log")
}

fn output_subject(tenant: &str) -> String {
    format!("lr.{tenant}.audit.out")
}

fn unavailable(what: &str) -> impl Fn(String) -> AuditError + '_ {
    move |e| AuditError::Unavailable(format!("{what}: {e}"))
}

impl AuditLog {
    /// Opens the stream (creating it on first use) and the export file.
    pub async fn open(
        client: async_nats::Client,
        config: &AuditSection,
        node: u64,
    ) -> Result<Self, AuditError> {
        let js = jetstream::new(client);
        let wanted = stream::Config {
            name: STREAM.into(),
            description: Some("live response audit log: one hash chain per tenant".into()),
            subjects: vec![SUBJECTS.into()],
            storage: stream::StorageType::File,
            num_replicas: config.replicas,
            // An entry or an output (at most what an agent sends) fits one message.
            max_message_size: i32::try_from(crate::nats::MAX_PAYLOAD_BYTES).unwrap_or(i32::MAX),
            // No age limit: retention is per tenant and cuts the chain where it records (see
            // [`retention`]); an age limit would break chains without saying where.
            allow_direct: true,
            ..Default::default()
        };
        let stream = js
            .get_or_create_stream(wanted)
            .await
            .map_err(|e| {
                AuditError::Unavailable(format!(
                    "opening the audit stream {STREAM}: {e}; check that JetStream is on and that nats-server lets brokers use {STREAM} (`lr-broker nats-config` writes such a configuration)"
                ))
            })?;
        let export = match &config.export_file {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        AuditError::Unavailable(format!(
                            "cannot open audit.export_file {}: {e}",
                            path.display()
                        ))
                    })?,
            )),
            None => None,
        };
        let syslog = match &config.export_syslog {
            Some(target) => Some(syslog_socket(target).map_err(|e| {
                AuditError::Unavailable(format!("cannot reach audit.export_syslog {target}: {e}"))
            })?),
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                js,
                stream,
                node,
                heads: Mutex::default(),
                export,
                syslog,
            }),
        })
    }

    fn tenant_lock(&self, tenant: &str) -> Arc<tokio::sync::Mutex<Option<Head>>> {
        self.inner
            .heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.to_owned())
            .or_default()
            .clone()
    }

    /// Appends `event` to `tenant`'s chain; answers the entry once JetStream holds it. An error
    /// means nothing was recorded: the caller must not act.
    pub async fn record(&self, tenant: &str, event: Event) -> Result<AuditEntry, AuditError> {
        let recorded = self.append(tenant, event).await;
        if recorded.is_err() {
            crate::metrics::jetstream_error("audit");
        }
        recorded
    }

    async fn append(&self, tenant: &str, event: Event) -> Result<AuditEntry, AuditError> {
        let mut details = event.details;
        let mut output_ref = None;
        if let Some((output, role)) = event.output {
            let sha256 = hex::encode(Sha256::digest(&output));
            let publish = PublishMessage::build()
                .payload(output)
                .header(ROLE_HEADER, role.id())
                .header(
                    DEVICE_HEADER,
                    event.device.clone().unwrap_or_default().as_str(),
                );
            let ack = self
                .inner
                .js
                .send_publish(output_subject(tenant), publish)
                .await
                .map_err(|e| unavailable("storing a command's output")(e.to_string()))?
                .await
                .map_err(|e| unavailable("storing a command's output")(e.to_string()))?;
            output_ref = Some(ack.sequence.to_string());
            if let Value::Object(map) = &mut details {
                map.insert("output_sha256".into(), Value::String(sha256));
            }
        }
        let lock = self.tenant_lock(tenant);
        let mut head = lock.lock().await;
        let mut pauses = APPEND_RETRIES.build();
        loop {
            let current = match head.as_ref() {
                Some(h) => h.clone(),
                None => self.read_head(tenant).await?,
            };
            let mut entry = AuditEntry {
                tenant: tenant.to_owned(),
                seq: current.seq + 1,
                at: timestamp(now_ms()),
                kind: event.kind,
                user: event.user.clone(),
                node: self.inner.node,
                device: event.device.clone(),
                session: event.session.clone(),
                command_id: event.command_id.clone(),
                transfer_id: event.transfer_id.clone(),
                details: details.clone(),
                output_ref: output_ref.clone(),
                prev_hash: current.hash.clone(),
                hash: String::new(),
            };
            let bytes = chain::seal(&mut entry);
            let publish = PublishMessage::build()
                .payload(Bytes::from(bytes.clone()))
                .expected_last_subject_sequence(current.stream_seq);
            let acked = match self
                .inner
                .js
                .send_publish(log_subject(tenant), publish)
                .await
            {
                Ok(future) => future.await,
                Err(e) => Err(e),
            };
            match acked {
                Ok(ack) => {
                    *head = Some(Head {
                        stream_seq: ack.sequence,
                        seq: entry.seq,
                        hash: entry.hash.clone(),
                    });
                    self.export(&bytes);
                    return Ok(entry);
                }
                // Another broker appended first: read its head and go again.
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    *head = None;
                    let Some(pause) = pauses.next() else {
                        return Err(AuditError::Unavailable(
                            "every append lost to other brokers' appends".into(),
                        ));
                    };
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    *head = None;
                    return Err(unavailable("appending an entry")(e.to_string()));
                }
            }
        }
    }

    fn export(&self, bytes: &[u8]) {
        if let Some(socket) = &self.inner.syslog {
            // <110>: facility security/authorization (10), severity informational (6).
            let header = format!(
                "<110>1 {} - lr-broker - audit - ",
                crate::time::rfc3339(now_ms())
            );
            let mut message = header.into_bytes();
            message.extend_from_slice(bytes);
            if let Err(error) = socket.send(&message) {
                tracing::warn!(%error, "cannot send to audit.export_syslog");
            }
        }
        if let Some(file) = &self.inner.export {
            let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = file.write_all(bytes).and_then(|()| file.write_all(b"\n")) {
                tracing::warn!(%error, "cannot append to audit.export_file");
            }
        }
    }

    /// The chain's last entry as JetStream holds it.
    async fn read_head(&self, tenant: &str) -> Result<Head, AuditError> {
        match self
            .inner
            .stream
            .get_last_raw_message_by_subject(&log_subject(tenant))
            .await
        {
            Ok(message) => {
                let value: Value = serde_json::from_slice(&message.payload)
                    .map_err(|e| AuditError::Corrupt(e.to_string()))?;
                Ok(Head {
                    stream_seq: message.sequence,
                    seq: value["seq"].as_u64().unwrap_or(0),
                    hash: value["hash"].as_str().unwrap_or_default().to_owned(),
                })
            }
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(Head {
                stream_seq: 0,
                seq: 0,
                hash: GENESIS.into(),
            }),
            Err(e) => Err(unavailable("reading the chain's head")(e.to_string())),
        }
    }

    /// The heads this node wrote: what it checkpoints.
    pub async fn written_heads(&self) -> Vec<(String, u64, String)> {
        let locks: Vec<(String, Arc<tokio::sync::Mutex<Option<Head>>>)> = self
            .inner
            .heads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(t, l)| (t.clone(), l.clone()))
            .collect();
        let mut heads = Vec::new();
        for (tenant, lock) in locks {
            if let Some(head) = lock.lock().await.as_ref()
                && head.seq > 0
            {
                heads.push((tenant, head.seq, head.hash.clone()));
            }
        }
        heads
    }

    /// Calls `visit` with the stream sequence and bytes of each entry of `tenant` from stream
    /// sequence `from` on, oldest first, until it answers false or the chain's end.
    async fn scan(
        &self,
        tenant: &str,
        from: u64,
        visit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), AuditError> {
        let start = consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from.max(1),
        };
        self.scan_from(tenant, start, from, visit).await
    }

    /// Like [`Self::scan`], from the deliver policy `start`; `from` is the first sequence it
    /// can deliver, when known (else 1).
    async fn scan_from(
        &self,
        tenant: &str,
        start: consumer::DeliverPolicy,
        from: u64,
        mut visit: impl FnMut(u64, &[u8]) -> bool,
    ) -> Result<(), AuditError> {
        let end = self.read_head(tenant).await?.stream_seq;
        if end == 0 || end < from {
            return Ok(());
        }
        let consumer = self
            .inner
            .stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: log_subject(tenant),
                deliver_policy: start,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("reading the log")(e.to_string()))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable("reading the log")(e.to_string()))?;
        loop {
            let message = match tokio::time::timeout(READ_TIMEOUT, messages.next()).await {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(e))) => return Err(unavailable("reading the log")(e.to_string())),
                Ok(None) => return Ok(()),
                Err(_) => {
                    return Err(AuditError::Unavailable("reading the log timed out".into()));
                }
            };
            let seq = message
                .info()
                .map(|i| i.stream_sequence)
                .map_err(|e| unavailable("reading the log")(e.to_string()))?;
            if !visit(seq, &message.payload) || seq >= end {
                return Ok(());
            }
        }
    }

    /// Up to `limit` entries of `tenant` matching `filter`, after the cursor `after` (a stream
    /// sequence); and the cursor of the next page when there may be more.
    pub async fn read(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<AuditEntry>, Option<u64>), AuditError> {
        let mut found = Vec::new();
        let mut last = None;
        let mut corrupt = None;
        self.scan(tenant, after.map_or(1, |a| a + 1), |seq, bytes| {
            last = Some(seq);
            match serde_json::from_slice::<AuditEntry>(bytes) {
                Ok(entry) if matches(filter, &entry) => found.push(entry),
                Ok(_) => {}
                Err(e) => corrupt = Some(e.to_string()),
            }
            corrupt.is_none() && found.len() < limit
        })
        .await?;
        if let Some(e) = corrupt {
            return Err(AuditError::Corrupt(e));
        }
        let more = found.len() >= limit;
        Ok((found, last.filter(|_| more)))
    }

    /// The entries of `tenant`'s session `session`, written at or after `since_ms` (the log's
    /// own clock), oldest first: only the log written since then is read.
    pub async fn session_entries(
        &self,
        tenant: &str,
        session: &str,
        since_ms: u64,
    ) -> Result<Vec<AuditEntry>, AuditError> {
        let start = consumer::DeliverPolicy::ByStartTime {
            start_time: async_nats::datetime::from_nanos(i128::from(since_ms) * 1_000_000)
                .map_err(|e| AuditError::Unavailable(format!("a start time for the log: {e}")))?,
        };
        let mut found = Vec::new();
        let mut corrupt = None;
        self.scan_from(tenant, start, 1, |_, bytes| {
            match serde_json::from_slice::<AuditEntry>(bytes) {
                Ok(entry) if entry.session.as_deref() == Some(session) => found.push(entry),
                Ok(_) => {}
                Err(e) => corrupt = Some(e.to_string()),
            }
            corrupt.is_none()
        })
        .await?;
        match corrupt {
            Some(e) => Err(AuditError::Corrupt(e)),
            None => Ok(found),
        }
    }

    /// The output an entry of `tenant` names by `reference`; none when it is not one of the
    /// tenant's outputs.
    pub async fn output(
        &self,
        tenant: &str,
        reference: &str,
    ) -> Result<Option<Output>, AuditError> {
        let Ok(seq) = reference.parse::<u64>() else {
            return Ok(None);
        };
        match self.inner.stream.get_raw_message(seq).await {
            Ok(message) if message.subject.as_str() == output_subject(tenant) => {
                let header = |name: &str| {
                    message
                        .headers
                        .get(name)
                        .map(|v| v.as_str().to_owned())
                        .unwrap_or_default()
                };
                Ok(Some(Output {
                    // An output without its role needs the highest an analyst can hold.
                    role: header(ROLE_HEADER)
                        .parse()
                        .unwrap_or(access::Role::ResponderAdvanced),
                    device: header(DEVICE_HEADER),
                    body: message.payload,
                }))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(unavailable("reading an output")(e.to_string())),
        }
    }

    pub fn node(&self) -> u64 {
        self.inner.node
    }

    /// The tenants that have entries.
    pub async fn tenants(&self) -> Result<Vec<String>, AuditError> {
        let mut info = self
            .inner
            .stream
            .info_with_subjects(log_subject("*"))
            .await
            .map_err(|e| unavailable("listing the log's tenants")(e.to_string()))?;
        let mut tenants = Vec::new();
        while let Some(subject) = info.next().await {
            let (subject, _) =
                subject.map_err(|e| unavailable("listing the log's tenants")(e.to_string()))?;
            if let Some(tenant) = subject.split('.').nth(1) {
                tenants.push(tenant.to_owned());
            }
        }
        Ok(tenants)
    }

    /// Removes `tenant`'s entries written before `horizon_ms`, with their outputs, but never
    /// the checkpointed head or anything after it: records the cut in the replicated state, then
    /// deletes the outputs, then the entries (so a failure part way is finished next time).
    /// Answers how many entries went.
    pub async fn expire(
        &self,
        leases: &LeaseService,
        tenant: &str,
        horizon_ms: u64,
    ) -> Result<u64, AuditError> {
        let checkpointed = leases
            .directory()
            .await
            .map_err(|e| unavailable("reading the checkpoint")(e.to_string()))?
            .audit_head(tenant)
            .map_or(0, |h| h.seq);
        let mut removed = 0u64;
        let mut outputs = Vec::new();
        let mut kept = None;
        let mut corrupt = None;
        self.scan(tenant, 1, |stream_seq, bytes| {
            let entry = match serde_json::from_slice::<AuditEntry>(bytes) {
                Ok(entry) => entry,
                Err(e) => {
                    corrupt = Some(e.to_string());
                    return false;
                }
            };
            let old = u64::try_from(entry.at.as_millisecond()).unwrap_or(0) < horizon_ms;
            if old && entry.seq < checkpointed {
                removed += 1;
                outputs.extend(entry.output_ref.and_then(|r| r.parse::<u64>().ok()));
                true
            } else {
                kept = Some((stream_seq, entry.seq, entry.prev_hash));
                false
            }
        })
        .await?;
        if let Some(e) = corrupt {
            return Err(AuditError::Corrupt(e));
        }
        let Some((stream_seq, seq, prev_hash)) = kept.filter(|_| removed > 0) else {
            return Ok(0);
        };
        let cut = DirectoryOp::CutAudit {
            tenant: tenant.to_owned(),
            seq,
            prev_hash,
        };
        leases
            .change_directory(cut)
            .await
            .map_err(|e| unavailable("recording the retention cut")(e.to_string()))?;
        for output in outputs {
            match self.inner.stream.delete_message(output).await {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), DeleteMessageErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::NO_MESSAGE_FOUND) => {}
                Err(e) => return Err(unavailable("removing an expired output")(e.to_string())),
            }
        }
        self.inner
            .stream
            .purge()
            .filter(log_subject(tenant))
            .sequence(stream_seq)
            .await
            .map_err(|e| unavailable("removing expired entries")(e.to_string()))?;
        Ok(removed)
    }

    /// Walks `tenant`'s whole chain against `checkpoint`.
    pub async fn walk(
        &self,
        tenant: &str,
        checkpoint: Option<Checkpoint>,
    ) -> Result<Walk, AuditError> {
        let mut verifier = Verifier::new(checkpoint);
        let mut outputs = Vec::new();
        self.scan(tenant, 1, |_, bytes| {
            let accepted = verifier.accepted();
            verifier.push(bytes);
            if verifier.accepted() > accepted
                && let Ok(entry) = serde_json::from_slice::<AuditEntry>(bytes)
                && let Some(reference) = entry.output_ref
            {
                let sha256 = entry.details["output_sha256"].as_str().map(str::to_owned);
                outputs.push((entry.seq, reference, sha256));
            }
            !verifier.is_broken()
        })
        .await?;
        let mut walk = verifier.finish();
        // Outputs are part of their entries: each must still be there, as hashed.
        for (position, reference, sha256) in outputs {
            if walk.broken.as_ref().is_some_and(|(at, _)| *at <= position) {
                break;
            }
            let problem = match self.output(tenant, &reference).await? {
                None => Some(format!(
                    "its output (stream message {reference}) was removed"
                )),
                Some(output)
                    if sha256.as_deref() != Some(&hex::encode(Sha256::digest(&output.body))) =>
                {
                    Some(format!(
                        "its output (stream message {reference}) does not match the hash the entry holds"
                    ))
                }
                Some(_) => None,
            };
            if let Some(problem) = problem {
                walk.broken = Some((position, problem));
                break;
            }
        }
        Ok(walk)
    }
}

fn matches(filter: &AuditFilter, entry: &AuditEntry) -> bool {
    let same = |wanted: &Option<String>, have: &Option<String>| {
        wanted.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    same(&filter.device, &entry.device)
        && same(&filter.user, &entry.user)
        && same(&filter.session, &entry.session)
        && filter.kind.is_none_or(|k| k == entry.kind)
        && filter.since.is_none_or(|t| entry.at >= t)
        && filter.until.is_none_or(|t| entry.at < t)
}
