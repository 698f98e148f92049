//! The link to the brokers: one task owns the stream, dials brokers in turn with jittered backoff,
//! and reconnects after any stream end, trying the next broker first so a dead node is skipped.
//!
//! ```text
//! run_link ──► session::serve(broker i) ──► ends ──► backoff ──► session::serve(broker i+1) ...
//!                 │ hello → welcome → {orders (commands, cancels, put offers), chunk requests,
//!                 │                    put chunks} in;
//!                 │                   {heartbeats, results, chunks, put progress, transfer ends} out
//!                 ├─► renew: a new key and certificate two thirds into the certificate's lifetime
//!                 ├─► Link::admit: every order and ticket verified (crate::authority), refused ones
//!                 │   answered UNAUTHORIZED
//!                 └─► ExecutorHandle (commands and puts outlive the session; chunk windows end with it)
//! ```
//!
//! Before each dial the TLS files are read again (a renewed certificate is presented from then
//! on); a certificate past its expiry ends the link with [`CertificateExpired`], as only a new
//! enrolment can help.
//!
//! The [`Authority`] lives in the [`Link`], shared by every session to every broker, so what one
//! stream has verified (the newest broker stamp) holds for the next.

mod backoff;
mod host;
mod renew;
mod session;
mod tls;

use std::sync::{Arc, Mutex, PoisonError};

use backon::Retryable;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use host::hostname;
pub(crate) use renew::Renewed;
pub use tls::{CertificateExpired, TlsMaterial};

use crate::authority::{Authority, Refused, SignedOrder};
use crate::config::Config;
use crate::convert::AgentInfo;
use crate::executor::ExecutorHandle;
use session::{SessionEnd, SessionError};

/// Everything a session needs, shared by all of them.
#[derive(Debug)]
pub(crate) struct Link {
    pub config: Config,
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

/// Holds a stream to some broker until `shutdown` is cancelled, or until the device's certificate
/// has expired.
pub(crate) async fn run_link(
    link: Arc<Link>,
    shutdown: CancellationToken,
) -> Result<(), CertificateExpired> {
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
            .when(|(_, error)| {
                !is_identity_problem(error) && !matches!(error, SessionError::Expired(_))
            })
            .notify(
                |(addr, error), _| warn!(broker = %addr, error = %error, "cannot attach to broker"),
            );
        let attached = tokio::select! {
            attached = attached => attached,
            () = shutdown.cancelled() => return Ok(()),
        };
        let pause = match attached {
            Ok((addr, SessionEnd { node_id, reason })) => {
                info!(broker = %addr, node_id, %reason, "stream to broker ended; reconnecting");
                backoff::after_stream(c)
            }
            Err((_, SessionError::Expired(expired))) => return Err(expired),
            Err((addr, error)) => {
                if let SessionError::Rejected(status) = &error {
                    error!(
                        broker = %addr, code = ?status.code(), reason = status.message(),
                        "the broker refused this agent: the reason says what to do (a revoked or re-enrolled device must enrol again once an admin allows it; a device_id or tenant that differs from the certificate's is a configuration mistake)"
                    );
                }
                backoff::after_refusal(c)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// A refusal that retrying soon will not fix.
fn is_identity_problem(error: &SessionError) -> bool {
    matches!(error, SessionError::Rejected(status) if session::is_identity_problem(status))
}

/// An error with its sources: tonic's transport errors say little at the top level, and repeat
/// themselves one level down, so repeated segments are dropped.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = inner.source();
    }
    parts.join(": ")
}
