//! Raft RPC between cluster nodes over tonic gRPC (optionally mutual TLS).
//!
//! openraft's messages travel as JSON inside protobuf envelopes (`agent-proto/proto/raft.proto`);
//! snapshot data travels as raw bytes beside a JSON header.

// openraft's `RPCError` is large, and its network traits return it, so the helpers that build it have to as well.
#![allow(clippy::result_large_err)]

mod client;
mod server;
mod tls;

use serde::{Deserialize, Serialize};

pub use client::{NetworkFactory, PeerClient};
pub(crate) use client::{connect, forward};
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
