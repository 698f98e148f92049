//! Taking transfers over from nodes that stopped driving them.
//!
//! Every node watches the transfer records. A running transfer whose record nobody has written
//! for [`STALE_AFTER`] (measured on this node's own clock, from when it last saw a write) has lost
//! its owner; this node claims it with a compare-and-set on the revision it saw, and drives it if
//! the claim wins. Several nodes may try at once: exactly one compare-and-set succeeds.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{TransferContext, drive, is_driven_here};
use crate::actors::now_ms;
use crate::transfers::Versioned;

/// An owner writes its record every second; this long without a write means it is gone.
pub const STALE_AFTER: Duration = Duration::from_secs(5);
const SCAN_EVERY: Duration = Duration::from_secs(1);

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
    let mut seen: HashMap<(String, String), (Versioned, Instant)> = HashMap::new();
    let mut scan = tokio::time::interval(SCAN_EVERY);
    loop {
        tokio::select! {
            update = watch.next() => {
                let Some(update) = update else {
                    tracing::warn!("transfer record watch ended; takeover stops on this node");
                    return;
                };
                let key = (update.record.tenant.clone(), update.record.id.clone());
                if update.record.state.is_terminal() {
                    seen.remove(&key);
                } else {
                    seen.insert(key, (update, Instant::now()));
                }
            }
            _ = scan.tick() => {
                let stale: Vec<Versioned> = seen
                    .values()
                    .filter(|(v, at)| at.elapsed() > STALE_AFTER && !is_driven_here(&v.record.id))
                    .map(|(v, _)| v.clone())
                    .collect();
                for versioned in stale {
                    claim(&context, versioned).await;
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
