//! Checkpoints of the chains' heads in the replicated state: written by each node for the chains
//! it extended, every `audit.checkpoint_interval_ms` and when a session ends. The verifier
//! demands that the chain reaches the newest checkpoint with its hash, so entries removed from
//! the tail are noticed unless they were written after it.

use std::collections::HashMap;
use std::time::Duration;

use cluster::LeaseService;
use cluster::directory::DirectoryOp;
use tokio::sync::watch;

use super::AuditLog;

/// Checkpoints the heads this node wrote, every `every`, until `stop` turns true.
pub async fn run(
    log: AuditLog,
    leases: LeaseService,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut done: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        for (tenant, seq, hash) in log.written_heads().await {
            if done.get(&tenant).is_some_and(|d| *d >= seq) {
                continue;
            }
            match checkpoint(&leases, &tenant, seq, hash).await {
                Ok(()) => {
                    done.insert(tenant, seq);
                }
                Err(error) => {
                    tracing::warn!(%tenant, seq, %error, "cannot checkpoint the audit chain; trying again");
                }
            }
        }
    }
}

/// Checkpoints `tenant`'s head as this node last wrote it, now (a session ended).
pub async fn now(log: &AuditLog, leases: &LeaseService, tenant: &str) {
    let head = log
        .written_heads()
        .await
        .into_iter()
        .find(|(t, _, _)| t == tenant);
    if let Some((tenant, seq, hash)) = head
        && let Err(error) = checkpoint(leases, &tenant, seq, hash).await
    {
        tracing::warn!(%tenant, seq, %error, "cannot checkpoint the audit chain");
    }
}

async fn checkpoint(
    leases: &LeaseService,
    tenant: &str,
    seq: u64,
    hash: String,
) -> Result<(), cluster::ClusterError> {
    let op = DirectoryOp::CheckpointAudit {
        tenant: tenant.to_owned(),
        seq,
        hash,
    };
    leases.change_directory(op).await.map(|_| ())
}
