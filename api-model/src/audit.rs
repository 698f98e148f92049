//! The audit log: one hash chain of entries per tenant, read through `GET /api/v1/audit`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::Timestamp;

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    SessionOpened,
    SessionEnded,
    /// Another node took the session over (its node died, was cut off, or handed it over):
    /// the nodes, and the old and new fencing tokens.
    SessionAdopted,
    /// Written before the command is sent to the device: no command runs without its entry.
    CommandSubmitted,
    /// Its state, duration, exit code, error and output (by reference).
    CommandFinished,
    TransferStarted,
    TransferFinished,
    LibraryChanged,
    /// Tenants, settings, users, tokens, groups, enrolment and devices.
    AdminChanged,
    /// Something asked and refused: a role, a limit, a stale token.
    Refused,
    /// A kind from a newer broker.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// One entry of a tenant's audit log. Its `hash` is the SHA-256 (hex) of the entry's canonical
/// JSON (keys sorted, no spaces) without `hash`; `prev_hash` is the previous entry's `hash` (64
/// zeros for the first), so an entry edited, removed or moved breaks the chain where it was.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub tenant: String,
    /// Position in the tenant's chain, from 1, without gaps.
    pub seq: u64,
    pub at: Timestamp,
    pub kind: AuditKind,
    /// Who acted; none when the platform did (a lease that ran out, a node that stopped).
    pub user: Option<String>,
    /// The broker node that wrote the entry.
    pub node: u64,
    pub device: Option<String>,
    pub session: Option<String>,
    pub command_id: Option<String>,
    pub transfer_id: Option<String>,
    /// What happened, by kind: a command line, a state, a size, a reason.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// A finished command's output, stored once beside the log: `GET /api/v1/audit/output/{ref}`.
    pub output_ref: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

/// `GET /api/v1/audit` filters; every one given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    pub device: Option<String>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub kind: Option<AuditKind>,
    /// Entries at or after this time (RFC 3339).
    pub since: Option<Timestamp>,
    /// Entries before this time (RFC 3339).
    pub until: Option<Timestamp>,
}

/// The answer of `GET /api/v1/audit/verify`: the chain walked from its first entry, against the
/// checkpoints the cluster keeps of its head, with every output its entries name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub tenant: String,
    pub ok: bool,
    /// Entries read.
    pub entries: u64,
    /// Where the chain starts: 1, or the entry retention last cut it at (older ones were removed
    /// as retention allows, at `cut_at`).
    #[serde(default = "first")]
    pub first_seq: u64,
    #[serde(default)]
    pub cut_at: Option<Timestamp>,
    /// The last entry's `seq` and `hash`.
    pub head_seq: u64,
    pub head_hash: Option<String>,
    /// The newest checkpoint of the head in the cluster's replicated state.
    pub checkpoint_seq: Option<u64>,
    pub checkpoint_at: Option<Timestamp>,
    /// The chain position of the first entry that does not hold, and what is wrong there.
    pub first_broken: Option<u64>,
    pub problem: Option<String>,
}

fn first() -> u64 {
    1
}
