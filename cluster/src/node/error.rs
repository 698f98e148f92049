//! The errors a caller of the lease service sees, each saying what happened and what to do.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::directory::DirectoryError;
use crate::lease::{Invariant, LeaseError, Millis, Refusal};
use crate::raft_types::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ClusterError {
    /// The acquire is valid but would break a session invariant.
    #[error("{0}")]
    Refused(Refusal),
    /// The op is malformed or names no live lease; nothing changed.
    #[error(transparent)]
    Rejected(#[from] LeaseError),
    /// A directory change was refused; nothing changed.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// This node is not the leader; the caller retries on `leader` when known.
    #[error("node {node} is not the leader (leader: {leader:?})")]
    NotLeader {
        node: NodeId,
        leader: Option<NodeId>,
    },
    #[error(
        "no leader elected within {waited_ms} ms; check that a majority of the cluster's nodes are running and can reach each other"
    )]
    NoLeader { waited_ms: u64 },
    #[error(
        "the cluster did not commit or confirm the request within {waited_ms} ms (no quorum); its outcome is unknown: retry, or check that a majority of nodes are up"
    )]
    NoQuorum { waited_ms: u64 },
    #[error("node {node} could not be reached: {reason}")]
    Unreachable { node: NodeId, reason: String },
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The Raft core of a node stopped (shutdown or storage failure); that node serves nothing more.
    #[error("raft node stopped: {0}")]
    Fatal(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClusterError {
    /// True when the request surely did not reach a leader's log, so sending it again cannot apply it twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::NotLeader { .. } | ClusterError::Unreachable { .. }
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holder = self.holders.first();
        match (self.invariant, holder) {
            (Invariant::OneSessionPerDevice, Some(h)) => write!(
                f,
                "device {} is in a session held by {} (tenant {}, session {}) since {}; wait or ask an admin to end it",
                h.device,
                h.user,
                self.tenant,
                h.session,
                utc(h.since)
            ),
            (Invariant::SessionsPerUser, Some(h)) => write!(
                f,
                "{} already has {} live session(s) in tenant {}, the limit (oldest: session {} on device {} since {}); end a session first",
                h.user,
                self.holders.len(),
                self.tenant,
                h.session,
                h.device,
                utc(h.since)
            ),
            (Invariant::SessionsPerTenant, _) => write!(
                f,
                "tenant {} has {} live sessions, its limit of {} (held by {}); wait for one to end or ask an admin to raise the limit",
                self.tenant,
                self.holders.len(),
                self.limit,
                self.holders
                    .iter()
                    .map(|h| h.user.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (invariant, None) => write!(
                f,
                "refused by the {invariant} limit of {} in tenant {}",
                self.limit, self.tenant
            ),
        }
    }
}

/// Formats stamped milliseconds as a UTC time a person reads.
fn utc(at: Millis) -> String {
    i64::try_from(at)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{at} ms since epoch"))
}
