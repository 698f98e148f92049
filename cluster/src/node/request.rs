//! What a node asks of the leader, and what the leader answers: the payload of the `Forward` RPC.

use std::collections::BTreeSet;

use grants::SignedGrant;
use serde::{Deserialize, Serialize};

use crate::lease::{LeaseOp, LeaseOutcome, LeaseQuery, QueryAnswer};
use crate::raft_types::NodeId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// A lease op; the leader stamps it with its clock and proposes it.
    Write(LeaseOp),
    /// A linearizable read (ReadIndex: the leader confirms its leadership with a quorum first).
    Read(LeaseQuery),
    AddLearner {
        id: NodeId,
        addr: String,
    },
    /// Makes a learner a voter.
    Promote {
        id: NodeId,
    },
    /// Removes a node from the cluster, voter or learner.
    Remove {
        id: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterReply {
    Written {
        log_index: u64,
        /// Boxed: a lease is large beside the other answers.
        outcome: Box<LeaseOutcome>,
        /// The authority's signed grant for a lease granted or renewed with a session key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grant: Option<SignedGrant>,
    },
    Read(QueryAnswer),
    MembershipChanged {
        log_index: u64,
        voters: BTreeSet<NodeId>,
    },
}
