//! The replicated session-lease authority of the broker cluster.
//!
//! - [`lease`]: the pure lease state machine (no IO, no clock reads).
//! - [`directory`]: tenants, users, roles, API tokens and device groups, replicated with the
//!   leases (pure as well).
//! - [`store`]: openraft log and state-machine stores on redb files.
//! - [`network`]: Raft RPC between nodes over tonic gRPC.
//! - [`node`]: a cluster member's lifecycle and the [`LeaseService`] handle the rest of the broker uses.
#![forbid(unsafe_code)]

pub mod directory;
pub mod lease;
pub mod network;
pub mod node;
pub mod raft_types;
pub mod store;

pub use node::{ClusterConfig, ClusterError, ClusterNode, Granted, LeaseService, StartError};
