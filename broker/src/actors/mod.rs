//! The node's actors (ractor). Actors are local to a node; they reach actors on other nodes only
//! through NATS subjects.
//!
//! Supervision tree of a node:
//!
//! ```text
//! Supervisor("devices") ── DeviceActor (one per agent stream held by this node)
//! Supervisor("sessions") ── SessionActor (one per session created through this node)
//! Supervisor("transfers") ── TransferActor (one per transfer this node owns; crate::transfer)
//! ```
//!
//! A supervisor logs every child that fails. A failed DeviceActor drops the agent's stream, so the
//! agent reconnects and a fresh actor takes over; a failed SessionActor stops renewing its lease,
//! which expires and frees the device (sessions are not moved between nodes, see ARCHITECTURE.md).

pub mod device;
pub mod session;
mod supervisor;

pub use supervisor::Supervisor;
