//! Prometheus metrics: every metric's name and help in one table, the exporter, and the task that
//! copies Raft's and NATS's state into gauges.
//!
//! Labels are bounded by construction: a command name from the command table, a state or code
//! from an enum, a transfer kind or direction. Never a device, session, user, tenant or
//! transfer id: those are in the audit log, and as labels they would grow the series without end.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cluster::{ClusterError, LeaseService};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tokio::sync::watch;

/// Sessions this node opened.
pub const SESSIONS_OPENED: &str = "lr_sessions_opened_total";
/// Sessions this node adopted from another node (or its own earlier process).
pub const SESSIONS_ADOPTED: &str = "lr_sessions_adopted_total";
/// Session opens refused, by `reason` ([`refusal_reason`]).
pub const SESSIONS_REFUSED: &str = "lr_sessions_refused_total";
/// Commands that reached a final state, by `command` (table name) and `state`.
pub const COMMANDS_FINISHED: &str = "lr_commands_finished_total";
/// Submit to final state, by `command`.
pub const COMMAND_DURATION: &str = "lr_command_duration_seconds";
/// Transfers started, by `kind` (getfile, putfile).
pub const TRANSFERS_STARTED: &str = "lr_transfers_started_total";
/// Transfers ended, by `kind` and `state`.
pub const TRANSFERS_FINISHED: &str = "lr_transfers_finished_total";
/// Chunk bytes stored, by `direction` (from_agent: getfile, to_agent: putfile).
pub const TRANSFER_BYTES: &str = "lr_transfer_bytes_total";
/// Chunk windows asked of an agent again, by `reason` (stalled, refused).
pub const CHUNK_RETRIES: &str = "lr_transfer_chunk_retries_total";
pub const RAFT_TERM: &str = "lr_raft_term";
/// The leader this node knows of (0: none).
pub const RAFT_LEADER: &str = "lr_raft_leader_id";
/// 1 on the node that is the leader.
pub const RAFT_IS_LEADER: &str = "lr_raft_is_leader";
pub const RAFT_LAST_LOG_INDEX: &str = "lr_raft_last_log_index";
pub const RAFT_LAST_APPLIED: &str = "lr_raft_last_applied_index";
/// Entries in this node's log not yet applied to its state machine.
pub const RAFT_APPLY_LAG: &str = "lr_raft_apply_lag_entries";
/// Entries applied since the last snapshot.
pub const RAFT_ENTRIES_SINCE_SNAPSHOT: &str = "lr_raft_entries_since_snapshot";
/// Seconds since this process saw the snapshot change (built or installed).
pub const RAFT_SNAPSHOT_AGE: &str = "lr_raft_snapshot_age_seconds";
/// 1 while the NATS connection is up.
pub const NATS_CONNECTED: &str = "lr_nats_connected";
/// Times the NATS connection came back after a loss.
pub const NATS_RECONNECTS: &str = "lr_nats_reconnects_total";
/// JetStream writes and reads that failed, by `store` (audit, chunks).
pub const JETSTREAM_ERRORS: &str = "lr_jetstream_errors_total";
/// Agent streams this node holds.
pub const AGENTS_CONNECTED: &str = "lr_agents_connected";

enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: name, kind, unit, help. The dashboard and the tests read the same names.
const TABLE: &[(&str, Kind, Option<Unit>, &str)] = &[
    (
        SESSIONS_OPENED,
        Kind::Counter,
        None,
        "sessions opened through this node",
    ),
    (
        SESSIONS_ADOPTED,
        Kind::Counter,
        None,
        "sessions this node took over from a node that died, was cut off or handed them over",
    ),
    (
        SESSIONS_REFUSED,
        Kind::Counter,
        None,
        "session opens refused, by reason",
    ),
    (
        COMMANDS_FINISHED,
        Kind::Counter,
        None,
        "commands that reached a final state, by command and state",
    ),
    (
        COMMAND_DURATION,
        Kind::Histogram,
        Some(Unit::Seconds),
        "time from a command's submission to its final state, by command",
    ),
    (
        TRANSFERS_STARTED,
        Kind::Counter,
        None,
        "transfers started, by kind",
    ),
    (
        TRANSFERS_FINISHED,
        Kind::Counter,
        None,
        "transfers ended, by kind and final state",
    ),
    (
        TRANSFER_BYTES,
        Kind::Counter,
        Some(Unit::Bytes),
        "transfer chunk bytes stored, by direction",
    ),
    (
        CHUNK_RETRIES,
        Kind::Counter,
        None,
        "chunk windows asked of an agent again",
    ),
    (RAFT_TERM, Kind::Gauge, None, "this node's raft term"),
    (
        RAFT_LEADER,
        Kind::Gauge,
        None,
        "the raft leader this node knows of, 0 for none",
    ),
    (
        RAFT_IS_LEADER,
        Kind::Gauge,
        None,
        "1 when this node is the raft leader",
    ),
    (
        RAFT_LAST_LOG_INDEX,
        Kind::Gauge,
        None,
        "index of the last entry in this node's raft log",
    ),
    (
        RAFT_LAST_APPLIED,
        Kind::Gauge,
        None,
        "index of the last entry applied to this node's lease table",
    ),
    (
        RAFT_APPLY_LAG,
        Kind::Gauge,
        None,
        "raft log entries not yet applied on this node",
    ),
    (
        RAFT_ENTRIES_SINCE_SNAPSHOT,
        Kind::Gauge,
        None,
        "raft entries applied since this node's last snapshot",
    ),
    (
        RAFT_SNAPSHOT_AGE,
        Kind::Gauge,
        Some(Unit::Seconds),
        "seconds since this node's snapshot last changed",
    ),
    (
        NATS_CONNECTED,
        Kind::Gauge,
        None,
        "1 while the nats connection is up",
    ),
    (
        NATS_RECONNECTS,
        Kind::Counter,
        None,
        "times the nats connection was established again",
    ),
    (
        JETSTREAM_ERRORS,
        Kind::Counter,
        None,
        "failed jetstream operations, by store",
    ),
    (
        AGENTS_CONNECTED,
        Kind::Gauge,
        None,
        "agent streams held by this node",
    ),
];

/// Every metric's name, for the dashboard's and tests' checks.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLE.iter().map(|(name, ..)| *name)
}

/// Command latencies: a `dir` takes milliseconds, a `findfile` over a disk minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// How often the gauges read Raft's and NATS's state.
const GAUGE_PERIOD: Duration = Duration::from_secs(1);

static INSTALLED: OnceLock<SocketAddr> = OnceLock::new();

/// Installs the process's recorder and serves `/metrics` on `listen`. Once per process: a second
/// node in the same process (tests) records into the first one's exporter.
pub fn install(listen: SocketAddr) -> anyhow::Result<()> {
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Full(COMMAND_DURATION.into()), LATENCY_BUCKETS)?
        .install()
        .map_err(|e| anyhow::anyhow!("metrics.listen: cannot serve metrics on {listen}: {e}"))?;
    let _ = INSTALLED.set(listen);
    for (name, kind, unit, help) in TABLE {
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(*name, *unit, *help),
            (Kind::Counter, None) => describe_counter!(*name, *help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(*name, *unit, *help),
            (Kind::Gauge, None) => describe_gauge!(*name, *help),
            (Kind::Histogram, Some(unit)) => describe_histogram!(*name, *unit, *help),
            (Kind::Histogram, None) => describe_histogram!(*name, *help),
        }
    }
    // Present from the start, so a scrape tells "none" from "not exported".
    gauge!(AGENTS_CONNECTED).set(0.0);
    counter!(SESSIONS_OPENED).absolute(0);
    counter!(SESSIONS_ADOPTED).absolute(0);
    Ok(())
}

/// A session adopted by this node.
pub fn session_adopted() {
    counter!(SESSIONS_ADOPTED).increment(1);
}

/// A session open refused for `reason` (a [`refusal_reason`], or `device_offline`,
/// `live_response_disabled` when the API refuses before asking for a lease).
pub fn session_refused(reason: &'static str) {
    counter!(SESSIONS_REFUSED, "reason" => reason).increment(1);
}

/// A bounded reason for a refused session open.
pub fn refusal_reason(error: &ClusterError) -> &'static str {
    use cluster::lease::{Invariant, LeaseError};
    match error {
        ClusterError::Refused(refusal) => match refusal.invariant {
            Invariant::OneSessionPerDevice => "one_session_per_device",
            Invariant::SessionsPerUser => "sessions_per_user",
            Invariant::SessionsPerTenant => "sessions_per_tenant",
        },
        ClusterError::Rejected(LeaseError::SessionIdInUse { .. }) => "session_id_in_use",
        ClusterError::Rejected(LeaseError::Invalid { .. }) => "invalid",
        ClusterError::Rejected(_) | ClusterError::Directory(_) => "rejected",
        ClusterError::NotLeader { .. }
        | ClusterError::NoLeader { .. }
        | ClusterError::NoQuorum { .. }
        | ClusterError::Unreachable { .. } => "unavailable",
        ClusterError::Membership(_) | ClusterError::Fatal(_) | ClusterError::Protocol(_) => {
            "internal"
        }
    }
}

/// A command's name as the command table spells it, or `other`.
pub fn command_label(name: &str) -> &'static str {
    commands::find(name).map_or("other", |spec| spec.name)
}

/// A command reached its final state `state` `elapsed` after it was submitted.
pub fn command_finished(command: &str, state: api_model::CommandState, elapsed: Duration) {
    let command = command_label(command);
    counter!(COMMANDS_FINISHED, "command" => command, "state" => state.as_str()).increment(1);
    histogram!(COMMAND_DURATION, "command" => command).record(elapsed.as_secs_f64());
}

/// A transfer's kind as a label.
pub fn transfer_kind(kind: api_model::TransferKind) -> &'static str {
    match kind {
        api_model::TransferKind::Getfile => "getfile",
        api_model::TransferKind::Putfile => "putfile",
        api_model::TransferKind::Unknown => "unknown",
    }
}

/// `bytes` of transfer chunks moved `direction` (`from_agent`, `to_agent`).
pub fn transfer_bytes(direction: &'static str, bytes: usize) {
    counter!(TRANSFER_BYTES, "direction" => direction).increment(bytes as u64);
}

/// A chunk window asked of an agent again, because it `reason` (`stalled`, `refused`).
pub fn chunk_retry(reason: &'static str) {
    counter!(CHUNK_RETRIES, "reason" => reason).increment(1);
}

/// A failed JetStream operation on `store` (`audit`, `chunks`).
pub fn jetstream_error(store: &'static str) {
    counter!(JETSTREAM_ERRORS, "store" => store).increment(1);
}

/// Copies Raft's metrics and the NATS connection's state into gauges every second until `stop`.
pub async fn watch_gauges(
    leases: LeaseService,
    nats: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let raft = leases.metrics();
    let mut snapshot: Option<(Option<u64>, Instant)> = None;
    let mut tick = tokio::time::interval(GAUGE_PERIOD);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        {
            let m = raft.borrow();
            let applied = m.last_applied.map_or(0, |id| id.index);
            let last_log = m.last_log_index.unwrap_or(0);
            let snapshot_index = m.snapshot.map(|id| id.index);
            gauge!(RAFT_TERM).set(m.current_term as f64);
            gauge!(RAFT_LEADER).set(m.current_leader.unwrap_or(0) as f64);
            gauge!(RAFT_IS_LEADER).set(f64::from(u8::from(m.current_leader == Some(m.id))));
            gauge!(RAFT_LAST_LOG_INDEX).set(last_log as f64);
            gauge!(RAFT_LAST_APPLIED).set(applied as f64);
            gauge!(RAFT_APPLY_LAG).set(last_log.saturating_sub(applied) as f64);
            gauge!(RAFT_ENTRIES_SINCE_SNAPSHOT)
                .set(applied.saturating_sub(snapshot_index.unwrap_or(0)) as f64);
            let since = match snapshot {
                Some((index, since)) if index == snapshot_index => since,
                _ => {
                    let now = Instant::now();
                    snapshot = Some((snapshot_index, now));
                    now
                }
            };
            gauge!(RAFT_SNAPSHOT_AGE).set(since.elapsed().as_secs_f64());
        }
        let connected = nats.connection_state() == async_nats::connection::State::Connected;
        gauge!(NATS_CONNECTED).set(f64::from(u8::from(connected)));
        // The client counts every connection it made; all but the first are reconnects.
        let connects = nats.statistics().connects.load(Ordering::Relaxed);
        counter!(NATS_RECONNECTS).absolute(connects.saturating_sub(1));
    }
}
