//! Sessions outlive their node. Every node watches its replica of the lease table; a session
//! whose node stopped proving it is alive ([`crate::liveness`]) is adopted by another node
//! through the lease authority ([`Takeover::HolderGone`]): same session id, analyst and device,
//! a new and higher token, and the lease never lapses in between. Of two nodes trying, the
//! authority lets exactly one win. The adopter rebuilds the session from the audit log (commands,
//! working directory; the running command sent again, which the device answers from its ledger
//! rather than running twice), records the takeover, and moves the session's running transfers
//! to the new token.
//!
//! One node is asked first (the highest rendezvous hash of session and node among live nodes),
//! so a dead node's sessions spread over the others; any node tries once a session has waited
//! [`ANY_NODE_AFTER`]. A node that restarted adopts the sessions its earlier process held
//! ([`Takeover::Handover`]), and a graceful drain can hand a session over with [`adopt`] without
//! waiting for failure detection.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cluster::ClusterError;
use cluster::lease::{AdoptRequest, Lease, LeaseError, Takeover};
use futures::StreamExt;
use grants::SessionKey;
use ractor::{Actor, SpawnErr};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{SessionActor, SessionArgs, SessionContext};
use crate::audit::story::{self, LoggedCommand};
use crate::orders::Signer;
use crate::transfer::TransferContext;

/// How often a node looks for sessions to adopt.
const SCAN_EVERY: Duration = Duration::from_millis(250);
/// How long, on this node's own clock, a holder must look gone before its sessions are adopted:
/// after a leader election, the proofs live nodes kept retrying land within this.
const SUSPECT_FOR: Duration = Duration::from_millis(500);
/// How long a session waits for the node asked first before any node adopts it.
const ANY_NODE_AFTER: Duration = Duration::from_secs(3);
/// The longest a dead node's session waits before the node asked first adopts it. A lease, renewed
/// every third of its TTL, must outlast this after its last renewal, so it never lapses.
pub const DETECTION: Duration = Duration::from_millis(
    crate::liveness::TTL.as_millis() as u64
        + SUSPECT_FOR.as_millis() as u64
        + 2 * SCAN_EVERY.as_millis() as u64,
);
/// The shortest lease TTL with which sessions outlive their node.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(DETECTION.as_millis() as u64 * 3 / 2);

/// Adoptions a node carries out at once.
const CONCURRENT: usize = 16;
/// How far before its lease's grant a session's story is read from the log: the log's clock and
/// the authority's may differ a little.
const LOG_SLACK_MS: u64 = 60_000;
/// Reading the session's story is tried this often before the session goes on without it.
const LOG_ATTEMPTS: usize = 5;

/// What an adopted session starts from.
pub struct Resume {
    pub previous_node: u64,
    pub previous_token: u64,
    /// Why it was taken over, for its audit entry.
    pub reason: &'static str,
    /// Its commands as the audit log tells them.
    pub history: Vec<LoggedCommand>,
}

/// Watches for sessions to adopt until aborted. `started_ms` is when this process started: a
/// lease of this node not renewed since was held by an earlier process.
pub async fn watch(context: SessionContext, started_ms: u64) {
    let mut suspects: HashMap<String, Instant> = HashMap::new();
    let mut every = tokio::time::interval(SCAN_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // A node that cannot prove it is alive itself adopts nothing.
        if !context.liveness.is_current() {
            continue;
        }
        let me = context.node_id;
        let (leases, live) = context
            .leases
            .with_local_table(|table| {
                let now = table.clock();
                let mut gone = Vec::new();
                for lease in table.all() {
                    if lease.expires_at <= now {
                        continue;
                    }
                    if lease.node == me {
                        gone.push((lease.clone(), Takeover::Handover));
                    } else if !table.node_alive(lease.node, now) {
                        gone.push((lease.clone(), Takeover::HolderGone));
                    }
                }
                (gone, table.live_nodes(now))
            })
            .await;
        let mut due = Vec::new();
        let mut seen = HashSet::new();
        for (lease, reason) in leases {
            seen.insert(lease.session.clone());
            let adopt_now = match reason {
                // Held by this node's earlier process: no actor here, not renewed since.
                Takeover::Handover => {
                    lease.renewed_at.saturating_add(1_000) < started_ms
                        && !super::is_running_here(&lease.session)
                }
                Takeover::HolderGone => {
                    let since = *suspects
                        .entry(lease.session.clone())
                        .or_insert_with(Instant::now);
                    let waited = since.elapsed();
                    waited >= SUSPECT_FOR
                        && (first_choice(&lease.session, &live) == Some(me)
                            || waited >= ANY_NODE_AFTER)
                }
            };
            if adopt_now {
                due.push((lease, reason));
            }
        }
        suspects.retain(|session, _| seen.contains(session));
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENT, |(lease, reason)| {
                let context = &context;
                async move {
                    let session = lease.session.clone();
                    if let Err(error) = adopt(lease, reason, context).await {
                        tracing::warn!(%session, %error, "cannot adopt a session yet; trying again");
                    }
                }
            })
            .await;
    }
}

/// The node asked first to adopt `session`: the live node with the highest rendezvous hash.
fn first_choice(session: &str, live: &[u64]) -> Option<u64> {
    live.iter().copied().max_by_key(|node| {
        let digest = Sha256::new()
            .chain_update(session.as_bytes())
            .chain_update(node.to_le_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    })
}

/// Takes `lease` over on this node, for `reason`, and starts its actor; false when another node
/// adopted it first, the lease ended, or its holder is alive after all. The one way a session
/// moves: failure detection calls it, and so can a drain.
pub async fn adopt(
    lease: Lease,
    reason: Takeover,
    context: &SessionContext,
) -> Result<bool, ClusterError> {
    let key = SessionKey::generate().map_err(|e| ClusterError::Fatal(e.to_string()))?;
    let public = key.public();
    let request = AdoptRequest {
        tenant: lease.tenant.clone(),
        session: lease.session.clone(),
        token: lease.token,
        node: context.node_id,
        session_key: Some(public),
        reason,
    };
    let granted = match context.leases.adopt(request).await {
        Ok(granted) => granted,
        // A retry of an adoption that went through answers as stale: it is ours if it names
        // this node and this key.
        Err(ClusterError::Rejected(LeaseError::WrongToken { .. })) => {
            match context.leases.get(&lease.tenant, &lease.session).await? {
                Some(now) if now.node == context.node_id && now.session_key == Some(public) => {
                    context
                        .leases
                        .renew(&now.tenant, &now.session, now.token)
                        .await?
                }
                _ => return Ok(false),
            }
        }
        Err(ClusterError::Rejected(
            LeaseError::HolderAlive { .. } | LeaseError::UnknownSession { .. },
        )) => return Ok(false),
        Err(error) => return Err(error),
    };
    let Some(grant) = granted.grant else {
        return Err(ClusterError::Fatal(
            "the lease authority moved the lease without a signed grant; give every broker raft.authority_key".into(),
        ));
    };
    let adopted = granted.lease;
    tracing::info!(tenant = %adopted.tenant, session = %adopted.session, previous_node = lease.node, previous_token = lease.token, token = adopted.token, "adopting a session");
    crate::metrics::session_adopted();
    let history = story(&context.transfers, &adopted).await;
    let args = SessionArgs {
        node_id: context.node_id,
        lease: adopted.clone(),
        liveness: context.liveness.clone(),
        resume: Some(Resume {
            previous_node: lease.node,
            previous_token: lease.token,
            reason: match reason {
                Takeover::HolderGone => "its node stopped proving it is alive",
                Takeover::Handover => "its node handed it over",
            },
            history,
        }),
        signer: Signer::new(key, grant),
        bus: context.bus.clone(),
        leases: context.leases.clone(),
        settings: context.settings.clone(),
        transfers: context.transfers.clone(),
    };
    let name = super::actor_name(&adopted.session);
    match Actor::spawn_linked(Some(name), SessionActor, args, context.supervisor.clone()).await {
        Ok(_) | Err(SpawnErr::ActorAlreadyRegistered(_)) => Ok(true),
        // The lease is this node's: a later scan adopts it again from this node's earlier
        // self (a handover) before it runs out.
        Err(error) => Err(ClusterError::Fatal(format!(
            "cannot start the adopted session: {error}"
        ))),
    }
}

/// The session's commands as the log tells them; none, said loudly, when the log cannot be read.
async fn story(transfers: &TransferContext, lease: &Lease) -> Vec<LoggedCommand> {
    let since = lease.granted_at.saturating_sub(LOG_SLACK_MS);
    let log = &transfers.audit;
    for attempt in 1..=LOG_ATTEMPTS {
        match log
            .session_entries(&lease.tenant, &lease.session, since)
            .await
        {
            Ok(entries) => return story::commands(entries),
            Err(error) if attempt < LOG_ATTEMPTS => {
                tracing::warn!(session = %lease.session, %error, "cannot read the session's story yet; retrying");
                tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
            }
            Err(error) => {
                tracing::error!(session = %lease.session, %error, "cannot read the session's story; it goes on without its earlier commands");
            }
        }
    }
    Vec::new()
}

/// Moves the session's running transfers to its new token; answers how many moved.
pub async fn move_transfers(
    transfers: &TransferContext,
    lease: &Lease,
    previous_token: u64,
    signer: &Signer,
) -> usize {
    crate::transfer::handover::move_session(transfers, lease, previous_token, signer).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_live_node_is_asked_first_and_sessions_spread() {
        assert_eq!(first_choice("s", &[]), None);
        assert_eq!(first_choice("s", &[7]), Some(7));
        let chosen: HashSet<u64> = (0..64)
            .filter_map(|i| first_choice(&format!("session-{i}"), &[1, 2, 3]))
            .collect();
        assert_eq!(chosen.len(), 3, "every live node adopts some sessions");
        assert_eq!(
            first_choice("s9", &[1, 2, 3]),
            first_choice("s9", &[3, 2, 1])
        );
    }
}
