//! The openraft type configuration: what an entry carries and what applying it returns.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::lease::{LeaseOp, LeaseOutcome, Millis};

/// The payload of a normal log entry: a lease op, stamped with the leader's clock when proposed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub stamped_at: Millis,
    pub op: LeaseOp,
}

/// What the state machine returns for an applied entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// `None` for blank and membership entries.
    pub outcome: Option<LeaseOutcome>,
}

openraft::declare_raft_types!(
    /// Raft types of the lease cluster: u64 node ids, `BasicNode` addresses, in-memory snapshot bytes.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
