//! The closed-loop acquire+release workload, generic over the system under test.
//!
//! Each of C clients runs one pair at a time (acquire, then release of the same lease) until the
//! phase's deadline or its shared op budget runs out, so offered load grows with C and nothing queues
//! outside the system.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Pause after a failed op, so a broken target cannot turn a client into a hot loop.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// A system that grants and releases session leases.
pub trait Target: Send + Sync + 'static {
    /// Per-client state: identity, route position, anything set up once.
    type Client: Send + 'static;
    /// What an acquire hands to the matching release.
    type Held: Send + 'static;

    /// Sets up client `index`; not timed.
    fn client(&self, index: usize) -> impl Future<Output = anyhow::Result<Self::Client>> + Send;
    fn acquire(
        &self,
        client: &mut Self::Client,
    ) -> impl Future<Output = anyhow::Result<Self::Held>> + Send;
    fn release(
        &self,
        client: &mut Self::Client,
        held: Self::Held,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// After a failed op the client's user or device may still be held (an unknown outcome), so
    /// the client moves on to a fresh identity instead of being refused forever.
    fn fresh_identity(&self, client: &mut Self::Client);
}

/// How long one phase may run.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub duration: Duration,
    /// Pair attempts across all clients.
    pub max_ops: u64,
}

/// Latencies of the successful pairs of one phase.
#[derive(Debug, Default)]
pub struct Samples {
    pub pair: Vec<Duration>,
    pub acquire: Vec<Duration>,
    pub release: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the phase start until the last client stopped.
    pub elapsed: Duration,
}

impl Samples {
    fn merge(&mut self, other: Samples) {
        self.pair.extend(other.pair);
        self.acquire.extend(other.acquire);
        self.release.extend(other.release);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Clients set up once and reused by the warm-up and the measured phase.
pub struct Clients<T: Target> {
    target: Arc<T>,
    clients: Vec<T::Client>,
}

impl<T: Target> Clients<T> {
    pub async fn new(target: Arc<T>, count: usize) -> anyhow::Result<Self> {
        let mut clients = Vec::with_capacity(count);
        for index in 0..count {
            clients.push(target.client(index).await?);
        }
        Ok(Self { target, clients })
    }

    /// Runs every client until `bounds` run out and returns what they measured.
    pub async fn run(&mut self, bounds: Bounds) -> anyhow::Result<Samples> {
        let start = Instant::now();
        let deadline = start + bounds.duration;
        let attempts = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(self.clients.len());
        for client in self.clients.drain(..) {
            tasks.push(tokio::spawn(client_loop(
                self.target.clone(),
                client,
                deadline,
                attempts.clone(),
                bounds.max_ops,
            )));
        }
        let mut all = Samples::default();
        for task in tasks {
            let (client, samples) = task.await?;
            self.clients.push(client);
            all.merge(samples);
        }
        all.elapsed = start.elapsed();
        Ok(all)
    }
}

async fn client_loop<T: Target>(
    target: Arc<T>,
    mut client: T::Client,
    deadline: Instant,
    attempts: Arc<AtomicU64>,
    max_ops: u64,
) -> (T::Client, Samples) {
    let mut samples = Samples::default();
    while Instant::now() < deadline && attempts.fetch_add(1, Ordering::Relaxed) < max_ops {
        let started = Instant::now();
        let result = match target.acquire(&mut client).await {
            Ok(held) => {
                let acquired = Instant::now();
                target
                    .release(&mut client, held)
                    .await
                    .map(|()| (acquired - started, acquired.elapsed()))
                    .map_err(|error| error.context("release failed"))
            }
            Err(error) => Err(error.context("acquire failed")),
        };
        match result {
            Ok((acquire, release)) => {
                samples.acquire.push(acquire);
                samples.release.push(release);
                samples.pair.push(acquire + release);
            }
            Err(error) => {
                samples.errors += 1;
                if samples.first_error.is_none() {
                    samples.first_error = Some(format!("{error:#}"));
                }
                target.fresh_identity(&mut client);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    (client, samples)
}
