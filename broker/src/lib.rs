//! A broker node of the live response cluster.
//!
//! - [`node`]: lifecycle, wiring the parts below together.
//! - [`config`]: TOML + `LR_*` environment + flags, validated once.
//! - [`actors`]: `DeviceActor`, `SessionActor` and `TransferActor` (ractor), one supervisor per kind.
//! - [`agents`]: the gRPC service agents dial (mutual TLS).
//! - [`api`]: the analysts' REST/SSE API over HTTPS.
//! - [`bus`]: NATS subjects and envelopes between nodes.
//! - [`registry`]: devices, their presence and connection epochs, in JetStream.
//! - [`transfers`]: file transfer chunks and records in JetStream, verified per chunk and as a whole.
//! - [`library`]: the tenant library of scripts and tools, as chunked blobs in JetStream.
#![forbid(unsafe_code)]

pub mod actors;
pub mod agents;
pub mod api;
pub mod bus;
pub mod config;
mod kv;
pub mod library;
pub mod node;
pub mod registry;
pub mod transfers;

pub use config::BrokerConfig;
pub use node::BrokerNode;
