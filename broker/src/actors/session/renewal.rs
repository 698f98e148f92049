//! The session's lease renewal, on a task of its own: however long the session actor is busy,
//! the lease is renewed every third of its TTL. Each answer goes back to the session as
//! [`SessionMsg::Renewed`]; a renewal that failed for now (no quorum, say) is tried again a
//! second later; a lost lease ends the task.

use std::time::Duration;

use cluster::lease::Lease;
use cluster::{ClusterError, LeaseService};
use ractor::ActorRef;
use tokio::task::JoinHandle;

use super::SessionMsg;

/// How soon a renewal that failed for now is tried again.
const RETRY: Duration = Duration::from_secs(1);

pub fn start(
    leases: LeaseService,
    lease: Lease,
    ttl: Duration,
    session: ActorRef<SessionMsg>,
) -> JoinHandle<()> {
    let every = ttl / 3;
    tokio::spawn(async move {
        let mut wait = every;
        loop {
            tokio::time::sleep(wait).await;
            let answer = leases
                .renew(&lease.tenant, &lease.session, lease.token)
                .await;
            let lost = matches!(answer, Err(ClusterError::Rejected(_)));
            wait = if answer.is_ok() {
                every
            } else {
                RETRY.min(every)
            };
            if session.cast(SessionMsg::Renewed(answer)).is_err() || lost {
                return;
            }
        }
    })
}
