//! Jittered exponential backoff between connection attempts: from `initial` doubling to `max`,
//! each delay scaled by a random factor in [0.5, 1.5) so a fleet does not reconnect in lockstep.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    current_ms: u64,
}

impl Backoff {
    pub fn new(initial_ms: u64, max_ms: u64) -> Self {
        let initial_ms = initial_ms.max(1);
        Self {
            initial_ms,
            max_ms: max_ms.max(initial_ms),
            current_ms: initial_ms,
        }
    }

    /// The delay before the next attempt; the one after is twice as long, up to the maximum.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.current_ms as f64;
        self.current_ms = (self.current_ms.saturating_mul(2)).min(self.max_ms);
        Duration::from_millis((base * rng.random_range(0.5..1.5)) as u64)
    }

    /// After a connection that worked: the next attempt comes quickly.
    pub fn reset(&mut self) {
        self.current_ms = self.initial_ms;
    }

    /// After a refusal that retrying soon will not fix.
    pub fn jump_to_max(&mut self) {
        self.current_ms = self.max_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max() {
        let mut rng = rand::rng();
        let mut b = Backoff::new(100, 5_000);
        let bases = [100u64, 200, 400, 800, 1600, 3200, 5000, 5000];
        for base in bases {
            let d = b.next_delay(&mut rng).as_millis() as u64;
            assert!(d >= base / 2 && d < base * 3 / 2, "{d} for base {base}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) < Duration::from_millis(150));
        b.jump_to_max();
        assert!(b.next_delay(&mut rng) >= Duration::from_millis(2_500));
    }
}
