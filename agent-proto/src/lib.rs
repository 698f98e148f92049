//! Wire types: generated protobuf messages and tonic services. No logic lives here.
#![forbid(unsafe_code)]

/// Broker-to-broker Raft RPC of the lease cluster.
pub mod raft {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("lr.raft.v1");
}

/// The agent's stream to a broker node.
pub mod agent {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("lr.agent.v1");
}

/// Broker-to-broker envelopes carried over NATS subjects.
pub mod bus {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/bus/lr.bus.v1.rs"));
}
