//! A broker node of the live response cluster.
//!
//! - [`node`]: lifecycle, wiring the parts below together.
//! - [`config`]: TOML + `LR_*` environment + flags, validated once.
//! - [`dev`]: a development deployment's certificates and nats-server configuration.
//! - [`actors`]: `DeviceActor` and `SessionActor` (with its pure `SessionCore`), one supervisor
//!   per kind.
//! - [`agents`]: the gRPC service agents dial (mutual TLS).
//! - [`api`]: the analysts' REST/SSE API over HTTPS.
//! - [`bus`]: NATS subjects and envelopes between nodes.
//! - [`nats`]: the broker's TLS connection to NATS, and the nats-server configuration that
//!   admits brokers alone.
//! - [`metrics`]: Prometheus metrics, their names in one table, and the exporter.
//! - [`registry`]: devices, their presence and connection epochs, in JetStream.
//! - [`transfer`]: file transfers: chunks and records in JetStream, the `TransferActor`, takeover
//!   and retention, chunk intake from agents, how sessions start them, and the tenant library.
//! - [`trace`]: a command's trace across nodes: W3C trace context in NATS headers and agent
//!   messages, and the spans receivers continue it in.
//! - [`time`]: wall-clock milliseconds and how they are shown, for every layer.
//! - [`wire`]: where the bus protocol's states, codes and file facts meet the domain and API
//!   types, and the one mapping of an error code to HTTP status and gRPC code.
#![forbid(unsafe_code)]

pub mod actors;
pub mod agents;
pub mod api;
pub mod audit;
pub mod bus;
pub mod config;
pub mod dev;
pub mod directory;
mod kv;
pub mod liveness;
pub mod metrics;
pub mod nats;
pub mod node;
pub mod orders;
pub mod registry;
pub mod time;
pub mod trace;
pub mod transfer;
pub mod wire;

pub use config::BrokerConfig;
pub use node::BrokerNode;
