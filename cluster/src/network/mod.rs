//! Raft RPC between cluster nodes over tonic gRPC: mutual TLS against the cluster CA, and every
//! call admitted only from a member's broker identity (plaintext and unchecked only in tests).
//!
//! openraft's messages travel as JSON inside protobuf envelopes (`agent-proto/proto/raft.proto`);
//! snapshot data travels as raw bytes beside a JSON header.

// openraft's `RPCError` is large, and its network traits return it, so the helpers that build it have to as well.
#![allow(clippy::result_large_err)]

mod client;
mod server;
mod tls;

use serde::{Deserialize, Serialize};

pub(crate) use client::forward;
pub use client::{NetworkFactory, PeerClient};
pub use server::RaftService;
pub use tls::TlsMaterial;

use crate::raft_types::{NodeId, SnapshotMeta};

/// An install-snapshot request without its data bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: openraft::Vote<NodeId>,
    meta: SnapshotMeta,
    offset: u64,
    done: bool,
}
