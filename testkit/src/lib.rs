//! Test support shared by the workspace's integration tests: deadlines instead of sleeps, real
//! servers (nats-server) as child processes on loopback, and faults to inject between and into
//! processes. With the `otlp` feature, [`otlp::Collector`] receives the spans processes export.
#![forbid(unsafe_code)]

mod nats;
#[cfg(feature = "otlp")]
pub mod otlp;
mod process;
mod proxy;

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

pub use nats::{NatsServer, free_port};
/// A hung process: stop and continue it by pid, or hold it stopped with a guard that lets it
/// continue on drop.
pub use process::{Paused, pause, resume};
/// Network faults between two processes: a loopback TCP proxy that can cut every connection,
/// delay one direction or discard it while connections stay open.
pub use proxy::{Direction, TcpProxy};

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs to the test's captured output; `RUST_LOG` picks the level (warnings by default).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
