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

use futures::StreamExt;
use tokio::time::Instant;

use super::actor::{TransferContext, drive, is_driven_here};
use super::{TransferKind, Versioned};
use crate::time::now_ms;

/// An owner writes its record every second; this long without a write means it is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
const SCAN_EVERY: Duration = Duration::from_secs(1);

type Key = (String, String);

/// Watches the records until the node stops; returns only if the watch cannot be opened.
pub async fn run(context: TransferContext) {
    let mut watch = loop {
        match context.book.watch_all().await {
            Ok(watch) => break Box::pin(watch),
            Err(error) => {
                tracing::warn!(%error, "cannot watch transfer records yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let retention_ms = context.settings.retention_secs.saturating_mul(1000);
    let mut running: HashMap<Key, (Versioned, Instant)> = HashMap::new();
    let mut finished: HashMap<Key, Versioned> = HashMap::new();
    let mut scan = tokio::time::interval(SCAN_EVERY);
    loop {
        tokio::select! {
            update = watch.next() => {
                let Some(update) = update else {
                    tracing::warn!("transfer record watch ended; takeover and expiry stop on this node");
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
    let mut record = versioned.record;
    let previous = record.owner;
    record.owner = context.node_id;
    record.heartbeat_ms = now_ms();
    match context.book.update(&record, versioned.revision).await {
        Ok(owned) => {
            tracing::info!(tenant = %record.tenant, transfer = %record.id, previous, node = context.node_id, "took over a transfer");
            if let Err(error) = drive(context, owned).await {
                tracing::error!(transfer = %record.id, %error, "cannot start the transfer's actor");
            }
        }
        Err(error) => {
            tracing::debug!(transfer = %record.id, %error, "another node claimed the transfer first")
        }
    }
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
