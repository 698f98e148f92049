//! Configuration of one cluster member: plain data with defaults, validated once at start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use grants::AuthorityKey;
use serde::{Deserialize, Serialize};

use crate::network::TlsMaterial;
use crate::raft_types::NodeId;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name: peers must prove `lr-broker://<name>/<their id>` with their certificate.
    pub name: String,
    pub node_id: NodeId,
    /// Where this node's Raft RPC server listens.
    pub listen_addr: SocketAddr,
    /// The initial voters, this node included: id -> `host:port` of their Raft RPC.
    pub members: BTreeMap<NodeId, String>,
    /// Start empty and wait to be added as a learner, instead of bootstrapping with `members`.
    pub join: bool,
    /// Holds `raft-log.redb` and `state-machine.redb`.
    pub data_dir: PathBuf,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log) after this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging node catches up without one.
    pub keep_after_snapshot: u64,
    /// How long a lease op or read may wait for a leader and a quorum.
    pub request_timeout_ms: u64,
    /// How often the leader checks for expired leases and proposes a sweep.
    pub sweep_interval_ms: u64,
    /// The largest Raft RPC message sent or accepted; a larger one is refused before it is read.
    pub max_message_bytes: usize,
    #[serde(skip)]
    pub tls: Option<TlsMaterial>,
    /// The lease authority's signing key: while this node leads, it signs a grant for every lease
    /// it grants or renews that names a session key. Without it, leases carry no grant.
    #[serde(skip)]
    pub authority: Option<Arc<AuthorityKey>>,
}

impl ClusterConfig {
    /// The longest election timeout, unless configured otherwise.
    pub const DEFAULT_ELECTION_TIMEOUT_MAX_MS: u64 = 1000;
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            name: "local".into(),
            node_id: 1,
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 7401)),
            members: BTreeMap::new(),
            join: false,
            data_dir: PathBuf::from("data/raft"),
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: Self::DEFAULT_ELECTION_TIMEOUT_MAX_MS,
            snapshot_every: 1000,
            keep_after_snapshot: 100,
            request_timeout_ms: 5000,
            sweep_interval_ms: 1000,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls: None,
            authority: None,
        }
    }
}

/// Room for a snapshot chunk (a quarter of it) and a batch of entries.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Below this, a snapshot chunk would be too small to make progress.
const MIN_MESSAGE_BYTES: usize = 256 * 1024;
/// Above this, one message could hold a node's memory hostage.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// A configuration that cannot work, naming the bad key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster config: {key}: {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

fn bad(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        ids::broker(&self.name).map_err(|e| bad("name", e.to_string()))?;
        if !(MIN_MESSAGE_BYTES..=MAX_MESSAGE_BYTES).contains(&self.max_message_bytes) {
            return Err(bad(
                "max_message_bytes",
                format!("must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BYTES}"),
            ));
        }
        if self.node_id == 0 {
            return Err(bad("node_id", "0 is reserved; number nodes from 1"));
        }
        let ids = || {
            self.members
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.join {
            let Some(own) = self.members.get(&self.node_id) else {
                return Err(bad(
                    "node_id",
                    format!(
                        "node {} is not among members ({}); fix node_id, add this node to members, or set join = true",
                        self.node_id,
                        ids()
                    ),
                ));
            };
            if own
                .rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                != Some(self.listen_addr.port())
            {
                return Err(bad(
                    "members",
                    format!(
                        "this node's entry {own} does not match listen_addr {}; peers would not reach it",
                        self.listen_addr
                    ),
                ));
            }
        }
        if self.members.keys().all(|id| *id == self.node_id) {
            return Err(bad(
                "members",
                "no peers: a lease cluster needs at least 3 voters to survive a node failure; list every member",
            ));
        }
        for (id, addr) in &self.members {
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if *id == 0 || !port_ok {
                return Err(bad(
                    "members",
                    format!("member {id} = {addr:?} is not `id = \"host:port\"` with id >= 1"),
                ));
            }
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms * 2 > self.election_timeout_min_ms {
            return Err(bad(
                "heartbeat_ms",
                "must be above 0 and at most half of election_timeout_min_ms",
            ));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(bad(
                "election_timeout_max_ms",
                "must be above election_timeout_min_ms",
            ));
        }
        if self.snapshot_every == 0 {
            return Err(bad("snapshot_every", "must be above 0"));
        }
        if self.request_timeout_ms == 0 || self.sweep_interval_ms == 0 {
            return Err(bad(
                "request_timeout_ms",
                "timeouts and intervals must be above 0",
            ));
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ConfigError> {
        let config = openraft::Config {
            cluster_name: "lr-leases".to_string(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            // A chunk plus its JSON header must fit in one message.
            snapshot_max_chunk_size: (self.max_message_bytes / 4) as u64,
            ..Default::default()
        };
        config.validate().map_err(|e| bad("raft", e.to_string()))
    }
}

#[cfg(test)]
mod tests;
