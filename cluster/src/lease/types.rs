//! Domain types of the lease state machine: what is asked, what is decided.

use std::fmt;

use grants::PublicKey;

use crate::directory::{
    Directory, DirectoryError, DirectoryOp, DirectoryOutcome, EnrolledDevice, EnrolmentToken,
};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as stamped by the Raft leader on a proposal.
pub type Millis = u64;

/// The longest TTL a lease may ask for; leases are renewed, so a long TTL only delays recovery.
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The longest tenant, device or session id accepted (user ids may be longer: see [`ids`]).
pub const MAX_ID_LEN: usize = ids::MAX_TOKEN_LEN;
/// The largest per-tenant or per-user limit accepted.
pub const MAX_LIMIT: u32 = 100_000;

/// A live session lease. `token` is the Raft log index of the grant: the fencing token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub session: String,
    pub tenant: String,
    pub user: String,
    pub device: String,
    /// The broker node that holds the session.
    pub node: u64,
    pub token: u64,
    pub granted_at: Millis,
    pub renewed_at: Millis,
    pub ttl_ms: u64,
    pub expires_at: Millis,
    /// The session's public key, named in every grant the authority signs for this lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<PublicKey>,
}

/// Session limits of one tenant; part of the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    pub max_sessions_per_tenant: u32,
    pub max_sessions_per_user: u32,
}

impl Default for TenantLimits {
    fn default() -> Self {
        Self {
            max_sessions_per_tenant: 10,
            max_sessions_per_user: 1,
        }
    }
}

/// A request to grant a new lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcquireRequest {
    pub session: String,
    pub tenant: String,
    pub user: String,
    pub device: String,
    pub node: u64,
    pub ttl_ms: u64,
    /// The key the session signs its orders with; the authority names it in the session's grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<PublicKey>,
}

/// Why a node asks to take a live session over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Takeover {
    /// The holding node stopped proving it is alive ([`LeaseOp::NodeAlive`]): granted only once
    /// its liveness has run out, so a node that is merely slow keeps its sessions.
    HolderGone,
    /// The holder gives the session up on purpose (a drain), or is the adopter itself after a
    /// restart that lost the session's actor: granted whether or not the holder is alive.
    Handover,
}

/// A request to move a live lease to another node under a new, higher token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdoptRequest {
    pub tenant: String,
    pub session: String,
    /// The lease's current token: of two nodes adopting one lease, only the first matches.
    pub token: u64,
    /// The adopting node.
    pub node: u64,
    /// The adopter's own session key, named in the new grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<PublicKey>,
    pub reason: Takeover,
}

/// A change to the lease table. Every op is applied atomically at one log index and one stamped time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOp {
    Acquire(AcquireRequest),
    /// Extends the lease by its TTL from the stamped time.
    Renew {
        tenant: String,
        session: String,
        token: u64,
    },
    Release {
        tenant: String,
        session: String,
        token: u64,
    },
    /// Removes every lease whose `expires_at` is at or before the stamped time.
    ExpireSweep,
    /// A broker node proves it is alive for `ttl_ms` from the stamped time.
    NodeAlive {
        node: u64,
        ttl_ms: u64,
    },
    /// Moves a live lease to another node: same session, device and user, a new token (this
    /// entry's index), the adopter's session key, renewed from the stamped time.
    Adopt(AdoptRequest),
    SetTenantLimits {
        tenant: String,
        limits: TenantLimits,
    },
    /// A change to the directory, in the same log and state as the leases.
    Directory(DirectoryOp),
}

/// What applying a [`LeaseOp`] decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    Granted(Lease),
    Renewed(Lease),
    Released(Lease),
    Expired(Vec<Lease>),
    /// Node `node` is alive until `until` (table time).
    NodeAlive {
        node: u64,
        until: Millis,
    },
    /// The lease as its adopter now holds it.
    Adopted(Lease),
    LimitsSet {
        tenant: String,
        limits: TenantLimits,
    },
    Directory(DirectoryOutcome),
    /// A directory change that was refused; nothing changed.
    DirectoryRefused(DirectoryError),
    /// A valid acquire that would break an invariant.
    Refused(Refusal),
    /// An op that is malformed or names no live lease; nothing changed.
    Rejected(LeaseError),
}

/// The invariant an acquire would have broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Invariant {
    OneSessionPerDevice,
    SessionsPerUser,
    SessionsPerTenant,
}

/// Who holds what an acquire asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub user: String,
    pub session: String,
    pub device: String,
    pub since: Millis,
}

/// A refused acquire: which invariant, its limit, and who holds the places.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub invariant: Invariant,
    pub tenant: String,
    pub limit: u32,
    pub holders: Vec<Holder>,
}

/// A rejected op. Unknown sessions and sessions of another tenant give the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LeaseError {
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error(
        "no live lease for session {session} (never granted, released, or expired); open a new session"
    )]
    UnknownSession { session: String },
    #[error(
        "token {token} is not the token of session {session}'s lease; the lease was granted again and this holder is stale"
    )]
    WrongToken { session: String, token: u64 },
    #[error("session id {session} is already used by another lease; use a new session id")]
    SessionIdInUse { session: String },
    #[error(
        "session {session}'s node {node} is still alive; it keeps the session unless it hands it over"
    )]
    HolderAlive { session: String, node: u64 },
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::OneSessionPerDevice => "one session per device",
            Invariant::SessionsPerUser => "sessions per user",
            Invariant::SessionsPerTenant => "sessions per tenant",
        })
    }
}

/// A read of the lease table, answered linearizably by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseQuery {
    Session {
        tenant: String,
        session: String,
    },
    Device {
        tenant: String,
        device: String,
    },
    User {
        tenant: String,
        user: String,
    },
    Tenant {
        tenant: String,
    },
    Limits {
        tenant: String,
    },
    /// Every live lease of every tenant: for operators and invariant checks, never for analysts.
    All,
    /// The whole directory (administration reads it after its own writes).
    Directory,
    /// One enrolment token, by id (an enrolling device's, before it is known to be genuine).
    EnrolmentToken {
        id: String,
    },
    /// One device's enrolment.
    EnrolledDevice {
        tenant: String,
        device: String,
    },
    /// Until when each broker node last proved it is alive (table time).
    Nodes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryAnswer {
    Leases(Vec<Lease>),
    Limits(TenantLimits),
    Directory(Box<Directory>),
    EnrolmentToken(Option<EnrolmentToken>),
    EnrolledDevice(Option<EnrolledDevice>),
    Nodes(std::collections::BTreeMap<u64, Millis>),
}
