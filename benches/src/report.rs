//! Results: latency percentiles, one row per run, the JSON report, and the ours-vs-etcd comparison.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::workload::Samples;

/// Latency summary in milliseconds (nearest-rank percentiles over every successful sample).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let rank = |q: f64| {
            // Nearest rank: the smallest sample with at least q of all samples at or below it.
            let index = (q * samples.len() as f64).ceil() as usize;
            ms(samples[index.clamp(1, samples.len()) - 1])
        };
        let total: Duration = samples.iter().sum();
        Self {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: ms(samples[samples.len() - 1]),
            mean_ms: ms(total) / samples.len() as f64,
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// One measured run: one target, one route, one concurrency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    /// `cluster`, `etcd`, or `etcd-client-lease`.
    pub target: String,
    /// `round-robin` (through every node in turn) or `leader` (straight to the leader).
    pub route: String,
    pub clients: usize,
    pub seconds: f64,
    /// Successful acquire+release pairs.
    pub pairs: u64,
    pub errors: u64,
    /// Replicated, fsynced writes one pair costs on this target.
    pub writes_per_pair: u32,
    pub pairs_per_sec: f64,
    pub writes_per_sec: f64,
    pub pair: Latency,
    pub acquire: Latency,
    pub release: Latency,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_error: Option<String>,
}

impl RunResult {
    pub fn new(
        target: &str,
        route: &str,
        clients: usize,
        writes_per_pair: u32,
        mut samples: Samples,
    ) -> Self {
        let seconds = samples.elapsed.as_secs_f64().max(f64::EPSILON);
        let pairs = samples.pair.len() as u64;
        let pairs_per_sec = pairs as f64 / seconds;
        Self {
            target: target.into(),
            route: route.into(),
            clients,
            seconds,
            pairs,
            errors: samples.errors,
            writes_per_pair,
            pairs_per_sec,
            writes_per_sec: pairs_per_sec * f64::from(writes_per_pair),
            pair: Latency::of(&mut samples.pair),
            acquire: Latency::of(&mut samples.acquire),
            release: Latency::of(&mut samples.release),
            first_error: samples.first_error,
        }
    }
}

/// Everything one invocation measured.
#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    pub cpus: usize,
    pub results: Vec<RunResult>,
}

pub fn print_header() {
    println!(
        "{:<18} {:<11} {:>7} {:>8} {:>9} {:>9} | {:>8} {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>6}",
        "target",
        "route",
        "clients",
        "pairs",
        "pairs/s",
        "writes/s",
        "pair p50",
        "p99",
        "max",
        "acq p50",
        "p99",
        "rel p50",
        "p99",
        "errors"
    );
}

pub fn print_row(r: &RunResult) {
    println!(
        "{:<18} {:<11} {:>7} {:>8} {:>9.1} {:>9.1} | {:>8.2} {:>8.2} {:>8.2} | {:>8.2} {:>8.2} | {:>8.2} {:>8.2} | {:>6}",
        r.target,
        r.route,
        r.clients,
        r.pairs,
        r.pairs_per_sec,
        r.writes_per_sec,
        r.pair.p50_ms,
        r.pair.p99_ms,
        r.pair.max_ms,
        r.acquire.p50_ms,
        r.acquire.p99_ms,
        r.release.p50_ms,
        r.release.p99_ms,
        r.errors
    );
    if let Some(error) = &r.first_error {
        println!("  first error: {error}");
    }
}

/// Prints, for every etcd run with a cluster run of the same route and concurrency, ours / etcd.
pub fn print_comparison(ours: &Report, etcd: &Report) {
    println!(
        "{:<18} {:<11} {:>7} | {:>9} {:>9} {:>6} | {:>8} {:>8} {:>6} | {:>8} {:>8} {:>6}",
        "etcd variant",
        "route",
        "clients",
        "ours p/s",
        "etcd p/s",
        "x",
        "ours p50",
        "etcd p50",
        "x",
        "ours p99",
        "etcd p99",
        "x"
    );
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    for e in &etcd.results {
        let Some(o) = ours
            .results
            .iter()
            .find(|o| o.route == e.route && o.clients == e.clients)
        else {
            continue;
        };
        println!(
            "{:<18} {:<11} {:>7} | {:>9.1} {:>9.1} {:>6.2} | {:>8.2} {:>8.2} {:>6.2} | {:>8.2} {:>8.2} {:>6.2}",
            e.target,
            e.route,
            e.clients,
            o.pairs_per_sec,
            e.pairs_per_sec,
            ratio(o.pairs_per_sec, e.pairs_per_sec),
            o.pair.p50_ms,
            e.pair.p50_ms,
            ratio(o.pair.p50_ms, e.pair.p50_ms),
            o.pair.p99_ms,
            e.pair.p99_ms,
            ratio(o.pair.p99_ms, e.pair.p99_ms)
        );
    }
    println!(
        "x = ours / etcd: above 1 means more pairs/s for ours; below 1 means lower latency for ours"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let latency = Latency::of(&mut samples);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert_eq!(latency.mean_ms, 50.5);
        assert_eq!(Latency::of(&mut []).max_ms, 0.0);
        let mut one = vec![Duration::from_millis(7)];
        assert_eq!(Latency::of(&mut one).p99_ms, 7.0);
    }
}
