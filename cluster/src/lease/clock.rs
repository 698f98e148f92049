//! Lease time as one node reads it: its wall clock, trusted only while it moves with its monotonic
//! clock. Pure: the caller passes the readings, so tests make clock faults up instead of waiting
//! for one.
//!
//! The leader stamps each entry with [`LeaseClock::stamp`]; every node reads the clock each sweep
//! tick, so a follower's lease time is continuous when it comes to lead.

use std::time::Duration;

use super::Millis;

/// A wall clock that differs from lease time by more than this is taken to have jumped, and ignored.
pub const JUMP_MS: Millis = 1_000;
/// While it follows the wall clock, lease time moves at most 1/`SLEW` faster or slower than the
/// monotonic clock, so no step of the wall clock, however made, moves lease time at once.
pub const SLEW: u64 = 10;

const US_PER_MS: u64 = 1_000;
const JUMP_US: u64 = JUMP_MS * US_PER_MS;

/// One node's lease time. Not replicated: each node keeps its own, and the table's clock takes the
/// highest stamp applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeaseClock {
    last: Option<Reading>,
    /// The highest stamp this node has issued as leader: an applied clock above it is another's.
    issued: Millis,
}

/// The previous reading, in microseconds so that frequent readings still slew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reading {
    lease_us: u64,
    mono_us: u64,
    applied: Millis,
}

impl LeaseClock {
    /// Lease time for an entry this node proposes as leader.
    pub fn stamp(&mut self, wall: Millis, mono: Duration, applied: Millis) -> Millis {
        let now = self.read(wall, mono, applied);
        self.issued = self.issued.max(now);
        now
    }

    /// Lease time now, from the wall clock, a monotonic clock (any origin, never going back) and
    /// the table's clock (the highest stamp applied on this node).
    ///
    /// The first reading trusts the wall clock: a node starting after an outage has nothing else.
    /// Afterwards lease time goes on with the monotonic clock and follows the wall clock, within
    /// [`SLEW`], only while the two agree within [`JUMP_MS`]. It never falls behind the table.
    pub fn read(&mut self, wall: Millis, mono: Duration, applied: Millis) -> Millis {
        let mono_us = u64::try_from(mono.as_micros()).unwrap_or(u64::MAX);
        let wall_us = wall.saturating_mul(US_PER_MS);
        let applied_us = applied.saturating_mul(US_PER_MS);
        let lease_us = match self.last {
            None => wall_us,
            Some(last) => {
                let elapsed = mono_us.saturating_sub(last.mono_us);
                let expected = last.lease_us.saturating_add(elapsed);
                let slack = elapsed / SLEW;
                // Another leader's stamp, applied since the last reading: the cluster's time.
                let fresh = applied > last.applied && applied > self.issued;
                if wall_us.abs_diff(expected) <= JUMP_US {
                    wall_us.clamp(
                        expected.saturating_sub(slack),
                        expected.saturating_add(slack),
                    )
                } else if fresh
                    && (applied_us..=applied_us.saturating_add(JUMP_US)).contains(&wall_us)
                {
                    // The wall clock agrees with the cluster: this node's lease time was the odd
                    // one (it started with a wrong clock, since corrected).
                    wall_us
                } else {
                    expected
                }
            }
        };
        let lease_us = lease_us.max(applied_us);
        self.last = Some(Reading {
            lease_us,
            mono_us,
            applied,
        });
        lease_us / US_PER_MS
    }
}
