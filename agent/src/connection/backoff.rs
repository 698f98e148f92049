//! How long the agent waits between attempts to attach to a broker, from its configuration: delays
//! doubling from `connection.backoff_initial_ms` up to `connection.backoff_max_ms`, each jittered
//! so a fleet does not reconnect in lockstep.
//!
//! backon's jitter adds a random part of up to the delay itself, so the policy starts from half
//! of each configured bound: every delay lies between half the base and the base, where the base
//! doubles from `backoff_initial_ms` to `backoff_max_ms`, so no wait is longer than
//! `backoff_max_ms`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::ConnectionConfig;

/// Attempts to attach, one broker after another, until one works: never given up.
pub fn attach_retries(c: &ConnectionConfig) -> ExponentialBuilder {
    between(c.backoff_initial_ms, c.backoff_max_ms)
}

/// The wait after a stream that worked has ended: the next attempt comes quickly.
pub fn after_stream(c: &ConnectionConfig) -> Duration {
    first(attach_retries(c))
}

/// The wait after a refusal that retrying soon will not fix: the longest.
pub fn after_refusal(c: &ConnectionConfig) -> Duration {
    first(between(c.backoff_max_ms, c.backoff_max_ms))
}

fn between(initial_ms: u64, max_ms: u64) -> ExponentialBuilder {
    let initial_ms = initial_ms.max(1);
    let half = |ms: u64| Duration::from_millis(ms) / 2;
    ExponentialBuilder::new()
        .with_jitter()
        .with_factor(2.0)
        .with_min_delay(half(initial_ms))
        .with_max_delay(half(max_ms.max(initial_ms)))
        .without_max_times()
}

fn first(policy: ExponentialBuilder) -> Duration {
    policy.build().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(initial_ms: u64, max_ms: u64) -> ConnectionConfig {
        ConnectionConfig {
            backoff_initial_ms: initial_ms,
            backoff_max_ms: max_ms,
            ..Default::default()
        }
    }

    /// Between half of `base_ms` and `base_ms`, give or take the rounding of backon's f32 sums.
    fn within(delay: Duration, base_ms: u64) -> bool {
        let slack = Duration::from_micros(10);
        let base = Duration::from_millis(base_ms);
        delay + slack >= base / 2 && delay <= base + slack
    }

    #[test]
    fn doubles_with_jitter_up_to_the_configured_max() {
        let c = config(100, 5_000);
        for _ in 0..200 {
            let mut delays = attach_retries(&c).build();
            for base in [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000] {
                let delay = delays.next().unwrap();
                assert!(within(delay, base), "{delay:?} for a base of {base} ms");
            }
        }
    }

    #[test]
    fn never_gives_up() {
        let mut delays = attach_retries(&config(1, 2)).build();
        assert_eq!(delays.by_ref().take(10_000).count(), 10_000);
        assert!(delays.next().is_some());
    }

    #[test]
    fn after_a_stream_the_wait_is_short_and_after_a_refusal_long() {
        let c = config(100, 5_000);
        for _ in 0..200 {
            let short = after_stream(&c);
            assert!(within(short, 100), "{short:?}");
            let long = after_refusal(&c);
            assert!(within(long, 5_000), "{long:?}");
        }
    }

    #[test]
    fn odd_bounds_stay_sane() {
        // A maximum below the initial delay (refused by validation) keeps the initial delay.
        let mut delays = attach_retries(&config(400, 100)).build();
        for _ in 0..5 {
            let delay = delays.next().unwrap();
            assert!(within(delay, 400), "{delay:?}");
        }
        // A zero initial delay still waits a little.
        assert!(after_stream(&config(0, 10)) > Duration::ZERO);
    }
}
