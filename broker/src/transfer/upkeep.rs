//! What every node does with the transfer records besides driving its own: taking transfers over
//! from nodes that stopped driving them, and deleting finished transfers once their retention is
//! over.
//!
//! Every node watches the records. A running transfer whose record nobody has written for
//! [`STALE_AFTER`] (measured on this node's own clock, from when it last saw a write) has lost its
//! owner; this node claims it with a compare-and-set on the revision it saw, and drives it if the
//! claim wins. Several nodes may try at once: exactly one compare-and-set succeeds.
//!
//! A finished transfer is kept for `transfers.retention_secs` after it finished, then its stored
//! chunks and its record are deleted, in that order, so that a failure between the two leaves the
//! record to try again from. Every node does this; deleting twice is harmless.

use std::collections::HashMap;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use tokio::time::Instant;

use super::actor::{TransferContext, drive, is_driven_here};
use super::{BookError, TransferKind, Versioned};
use crate::time::now_ms;

/// An owner writes its record every second; this long without a write means it is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Opening the watch is tried until it works, at most a second apart (backon's jitter adds up to
/// the delay again, so 500 ms become 0.5 to 1 s).
const WATCH_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(500))
    .with_max_delay(Duration::from_millis(500))
    .without_max_times();

type Key = (String, String);

/// How long upkeep pauses before it starts again after its watch ended or it failed.
const RESTART_AFTER: Duration = Duration::from_secs(1);

/// Keeps upkeep running until the node stops: started again when its watch ends, or when it
/// panics, so takeover and expiry never stop quietly on a node that still drives transfers.
pub async fn run(context: TransferContext) {
    loop {
        let task = tokio::spawn(watch(context.clone()));
        // Stopping the node aborts this loop; the watch goes with it.
        let _abort = AbortOnDrop(task.abort_handle());
        match task.await {
            Ok(()) => tracing::warn!("transfer upkeep stopped; starting it again"),
            Err(error) => tracing::error!(%error, "transfer upkeep failed; starting it again"),
        }
        tokio::time::sleep(RESTART_AFTER).await;
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches the records until the watch ends.
async fn watch(context: TransferContext) {
    let watch = (|| context.book.watch_all())
        .retry(WATCH_RETRIES)
        .notify(|error, _| tracing::warn!(%error, "cannot watch transfer records yet; retrying"))
        .await;
    let Ok(watch) = watch else {
        return;
    };
    let mut watch = Box::pin(watch);
    let retention_ms = context.settings.retention_secs.saturating_mul(1000);
    let mut running: HashMap<Key, (Versioned, Instant)> = HashMap::new();
    let mut finished: HashMap<Key, Versioned> = HashMap::new();
    let mut scan = tokio::time::interval(SCAN_EVERY);
    loop {
        tokio::select! {
            update = watch.next() => {
                let Some(update) = update else {
                    tracing::warn!("transfer record watch ended");
                    return;
                };
                let key = (update.record.tenant.clone(), update.record.id.clone());
                if update.record.state.is_terminal() {
                    running.remove(&key);
                    finished.insert(key, update);
                } else {
                    running.insert(key, (update, Instant::now()));
                }
            }
            _ = scan.tick() => {
                let stale: Vec<Versioned> = running
                    .values()
                    .filter(|(v, at)| at.elapsed() > STALE_AFTER && !is_driven_here(&v.record.id))
                    .map(|(v, _)| v.clone())
                    .collect();
                for versioned in stale {
                    claim(&context, versioned).await;
                }
                let now = now_ms();
                let expired: Vec<Key> = finished
                    .iter()
                    .filter(|(_, v)| now.saturating_sub(v.record.finished_at_ms) > retention_ms)
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in expired {
                    if let Some(versioned) = finished.remove(&key)
                        && !expire(&context, &versioned).await
                    {
                        finished.insert(key, versioned);
                    }
                }
            }
        }
    }
}

async fn claim(context: &TransferContext, versioned: Versioned) {
    let id = versioned.record.id.clone();
    match adopt(context, versioned).await {
        Ok(owned) => {
            if let Err(error) = drive(context, owned).await {
                tracing::error!(transfer = %id, %error, "cannot start the transfer's actor");
            }
        }
        Err(error) => {
            tracing::debug!(transfer = %id, %error, "another node claimed the transfer first")
        }
    }
}

/// Takes over a transfer whose owner stopped driving it: a compare-and-set naming this node the
/// owner, on the revision seen. Fails with [`BookError::Superseded`] when anyone wrote the record
/// since (its owner after all, or another node that claimed it first). A cancel that finds no
/// owner to ask takes the transfer over this way too ([`super::cancel`]).
pub(super) async fn adopt(
    context: &TransferContext,
    orphan: Versioned,
) -> Result<Versioned, BookError> {
    let mut record = orphan.record;
    let previous = record.owner;
    record.owner = context.node_id;
    record.heartbeat_ms = now_ms();
    let owned = context.book.update(&record, orphan.revision).await?;
    tracing::info!(tenant = %record.tenant, transfer = %record.id, previous, node = context.node_id, "took over a transfer");
    Ok(owned)
}

/// Deletes a finished transfer's chunks (a getfile's; a putfile's come from the library) and then
/// its record. Returns false when it should be tried again.
async fn expire(context: &TransferContext, versioned: &Versioned) -> bool {
    let record = &versioned.record;
    if record.kind == TransferKind::Getfile
        && let Err(error) = context.store.delete(&record.tenant, &record.id).await
    {
        tracing::debug!(transfer = %record.id, %error, "cannot delete an expired transfer's chunks yet");
        return false;
    }
    match context.book.remove(record, versioned.revision).await {
        Ok(()) => {
            tracing::info!(tenant = %record.tenant, transfer = %record.id, "expired a finished transfer");
            true
        }
        // Another node deleted it first.
        Err(_) if matches!(context.book.get(&record.tenant, &record.id).await, Ok(None)) => true,
        Err(error) => {
            tracing::debug!(transfer = %record.id, %error, "cannot delete an expired transfer's record yet");
            false
        }
    }
}
