//! The lease state machine: decides every grant, renewal, release and expiry. Pure: no IO, no clock.
//!
//! - `types`: what is asked and what is decided.
//! - [`validate()`]: rejects malformed ops before they are proposed or applied.
//! - [`LeaseTable`]: applies ops at a log index and a leader-stamped time, and answers reads.
//! - [`LeaseClock`]: the time a node stamps, robust to a jump of its wall clock.

mod clock;
mod index;
mod snapshot;
mod table;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use clock::{JUMP_MS, LeaseClock, SLEW};
pub use table::LeaseTable;
pub use types::*;
pub use validate::validate;
