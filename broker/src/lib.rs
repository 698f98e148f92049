//! A broker node of the live response cluster.
//!
//! - [`node`]: lifecycle, wiring the parts below together.
//! - [`config`]: TOML + `LR_*` environment + flags, validated once.
//! - [`dev`]: a development deployment's certificates and nats-server configuration.
//! - [`actors`]: `DeviceActor`, `SessionActor` and `TransferActor` (ractor), one supervisor per kind.
//! - [`agents`]: the gRPC service agents dial (mutual TLS).
//! - [`api`]: the analysts' REST/SSE API over HTTPS.
//! - [`bus`]: NATS subjects and envelopes between nodes.
//! - [`nats`]: the broker's TLS connection to NATS, and the nats-server configuration that
//!   admits brokers alone.
//! - [`registry`]: devices, their presence and connection epochs, in JetStream.
//! - [`transfers`]: file transfer chunks and records in JetStream, verified per chunk and as a whole.
//! - [`library`]: the tenant library of scripts and tools, as chunked blobs in JetStream.
#![forbid(unsafe_code)]

pub mod actors;
pub mod agents;
pub mod api;
pub mod bus;
pub mod config;
pub mod dev;
mod kv;
pub mod library;
pub mod nats;
pub mod node;
pub mod registry;
pub mod transfers;

pub use config::BrokerConfig;
pub use node::BrokerNode;
