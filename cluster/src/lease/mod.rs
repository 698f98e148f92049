//! The lease state machine: decides every grant, renewal, release and expiry. Pure: no IO, no clock.

mod types;

pub use types::*;
