//! The link to the brokers: one task owns the stream, dials brokers in turn with jittered backoff,
//! and reconnects after any stream end, trying the next broker first so a dead node is skipped.
//!
//! ```text
//! run_link ──► session::serve(broker i) ──► ends ──► backoff ──► session::serve(broker i+1) ...
//!                 │ hello → welcome → {orders (commands, cancels, put offers), chunk requests,
//!                 │                    put chunks} in;
//!                 │                   {heartbeats, results, chunks, put progress, transfer ends} out
//!                 ├─► Link::admit: every order and ticket verified (crate::authority), refused ones
//!                 │   answered UNAUTHORIZED
//!                 └─► ExecutorHandle (commands and puts outlive the session; chunk windows end with it)
//! ```
//!
//! The [`Authority`] lives in the [`Link`], shared by every session to every broker, so what one
//! stream has verified (the newest broker stamp) holds for the next.

mod backoff;
mod host;
mod session;
mod tls;

use std::sync::{Arc, Mutex, PoisonError};

use backon::Retryable;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use host::hostname;
pub use tls::TlsMaterial;

use crate::authority::{Authority, Refused, SignedOrder};
use crate::config::Config;
use crate::convert::AgentInfo;
use crate::executor::ExecutorHandle;
use session::{SessionEnd, SessionError};

/// Everything a session needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Link {
    pub config: Config,
    pub tls: TlsMaterial,
    pub info: AgentInfo,
    pub executor: ExecutorHandle,
    pub authority: Mutex<Authority>,
}

impl Link {
    /// Whether `order` is obeyed (see [`crate::authority`]). The lock is held for two signature
    /// checks, a fraction of a millisecond.
    pub fn admit(&self, order: &SignedOrder) -> Result<grants::Grant, Refused> {
        // The authority's state is one number that is only ever raised: a panic elsewhere
        // cannot leave it half-written.
        self.authority
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(order)
    }
}

/// Holds a stream to some broker until `shutdown` is cancelled.
pub(crate) async fn run_link(link: Arc<Link>, shutdown: CancellationToken) {
    let brokers = &link.config.brokers;
    let c = &link.config.connection;
    // A random first broker spreads a fleet of agents over the nodes.
    let mut next = rand::rng().random_range(0..brokers.len());
    loop {
        // Each attempt dials the next broker, so a dead node is skipped.
        let attempt = || {
            let addr = brokers[next].as_str();
            next = (next + 1) % brokers.len();
            let link = &link;
            async move {
                session::serve(link, addr)
                    .await
                    .map(|end| (addr, end))
                    .map_err(|error| (addr, error))
            }
        };
        let attached = attempt
            .retry(backoff::attach_retries(c))
            .when(|(_, error)| !is_identity_problem(error))
            .notify(
                |(addr, error), _| warn!(broker = %addr, error = %error, "cannot attach to broker"),
            );
        let attached = tokio::select! {
            attached = attached => attached,
            () = shutdown.cancelled() => break,
        };
        let pause = match attached {
            Ok((addr, SessionEnd { node_id, reason })) => {
                info!(broker = %addr, node_id, %reason, "stream to broker ended; reconnecting");
                backoff::after_stream(c)
            }
            Err((addr, error)) => {
                if let SessionError::Rejected(status) = &error {
                    error!(
                        broker = %addr, code = ?status.code(), reason = status.message(),
                        "the broker refused this agent's identity: a configuration problem (device_id or tenant do not match the client certificate, or the certificate is not trusted); fix the config or certificate"
                    );
                }
                backoff::after_refusal(c)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => break,
        }
    }
}

/// A refusal that retrying soon will not fix.
fn is_identity_problem(error: &SessionError) -> bool {
    matches!(error, SessionError::Rejected(status) if session::is_identity_problem(status))
}
