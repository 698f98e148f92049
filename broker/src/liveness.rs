//! This node's liveness in the lease authority. Every [`EVERY`] the node proves it is alive for
//! [`TTL`] (`LeaseOp::NodeAlive`); another node may adopt its sessions only once that has run out
//! in the authority's time ([`cluster::lease::Takeover::HolderGone`]).
//!
//! The node fences itself by the same clock: it counts itself alive only until
//! [`Liveness::is_current`] says otherwise, a margin before the earliest moment the authority
//! could call it gone. A node cut off from the Raft majority, or frozen and woken, then neither
//! answers for nor sends on behalf of its sessions until it proved it is alive again, so two
//! nodes never drive one session. A proof counts once this node's replica applied it, so by then
//! the replica also shows any adoption of its sessions, which their actors check before acting.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cluster::LeaseService;
use cluster::lease::SLEW;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long one proof lasts in the authority's time.
pub const TTL: Duration = Duration::from_millis(2_500);
/// How often the node proves it is alive.
pub const EVERY: Duration = Duration::from_millis(500);
/// How often the node looks whether its replica applied its proof.
const APPLIED_POLL: Duration = Duration::from_millis(5);
/// Kept between this node's own deadline and the authority's: scheduling and the answer's way back.
const MARGIN: Duration = Duration::from_millis(200);

/// Whether this node may still act for its sessions; cheap to clone and to ask.
#[derive(Clone, Default)]
pub struct Liveness {
    until: Arc<Mutex<Option<Instant>>>,
}

impl Liveness {
    /// True while this node's last proof, counted from when it was sent, still holds on any
    /// replica's clock: lease time runs at most 1/[`SLEW`] faster than real time.
    pub fn is_current(&self) -> bool {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    fn proved(&self, sent: Instant) {
        let safe = TTL * u32::try_from(SLEW).unwrap_or(10) / u32::try_from(SLEW + 1).unwrap_or(11);
        let until = sent + safe.saturating_sub(MARGIN);
        let mut current = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        *current = Some(current.map_or(until, |c| c.max(until)));
    }
}

/// Proves `node` alive every [`EVERY`] until the task is aborted.
pub fn start(node: u64, leases: LeaseService) -> (Liveness, JoinHandle<()>) {
    let liveness = Liveness::default();
    let proving = liveness.clone();
    let task = tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        // A proof the authority recorded that this node's replica has not applied: until it
        // has, the node sends no more, so a node that can reach the leader but no longer hears
        // from it (a one-way partition) stops being counted alive.
        let mut unapplied: Option<u64> = None;
        loop {
            every.tick().await;
            if let Some(index) = unapplied {
                if leases.local_applied().await < index {
                    continue;
                }
                unapplied = None;
            }
            let sent = Instant::now();
            let outcome = match tokio::time::timeout(TTL, leases.node_alive(node, TTL)).await {
                Ok(Ok(index)) => {
                    // Only once this node's replica holds the proof does it hold everything
                    // before it too, such as another node's adoption of one of its sessions.
                    let applied = async {
                        while leases.local_applied().await < index {
                            tokio::time::sleep(APPLIED_POLL).await;
                        }
                    };
                    match tokio::time::timeout(TTL.saturating_sub(sent.elapsed()), applied).await {
                        Ok(()) => Ok(()),
                        Err(_) => {
                            unapplied = Some(index);
                            Err("this node's replica is not applying the cluster's log".to_string())
                        }
                    }
                }
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("the lease authority did not answer in time".to_string()),
            };
            match outcome {
                Ok(()) => {
                    proving.proved(sent);
                    if std::mem::take(&mut failing) {
                        tracing::info!(node, "this node proves it is alive to the cluster again");
                    }
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(node, %error, "cannot prove this node is alive; its sessions pause and may move to another node");
                }
                Err(_) => {}
            }
        }
    });
    (liveness, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_proof_holds_for_less_than_the_authority_grants_it() {
        let liveness = Liveness::default();
        assert!(!liveness.is_current(), "never proved");
        liveness.proved(Instant::now());
        assert!(liveness.is_current());
        // The authority's 2.5 s may pass in 2.27 s of real time; the node stops first.
        tokio::time::advance(Duration::from_millis(2_080)).await;
        assert!(!liveness.is_current());
        // An older proof answered late never shortens a newer one.
        let late = Instant::now() - Duration::from_secs(2);
        liveness.proved(Instant::now());
        liveness.proved(late);
        assert!(liveness.is_current());
    }
}
