//! Chunks coming in on an agent's stream (getfile): checked against what was asked of this
//! connection, stored in the [`ChunkStore`], and reported to the transfer's owner.
//!
//! The agent's stream is read one message at a time and a chunk is stored before the next one is
//! read, so a slow store slows the agent down instead of filling the broker's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use agent_proto::agent::{GetTicket, PutProgress, TransferEnded};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::transfer_event::Event;
use agent_proto::bus::{ChunkRefused, TransferEvent};
use bytes::Bytes;

use super::{ChunkStore, StoreError};
use crate::bus::{self, Bus};

/// Windows remembered per connection; the oldest are forgotten first.
const MAX_WINDOWS: usize = 256;

/// What a connection was asked to send for one transfer.
#[derive(Clone, Copy, Debug)]
struct Asked {
    size: u64,
    chunk_size: u64,
    first: u64,
    end: u64,
}

/// The chunk intake of one agent connection; cheap to clone.
#[derive(Clone)]
pub struct ChunkIntake {
    tenant: String,
    device: String,
    store: ChunkStore,
    bus: Bus,
    asked: Arc<Mutex<Windows>>,
}

#[derive(Default)]
struct Windows {
    by_transfer: HashMap<String, Asked>,
    order: VecDeque<String>,
}

impl ChunkIntake {
    pub fn new(tenant: String, device: String, store: ChunkStore, bus: Bus) -> Self {
        Self {
            tenant,
            device,
            store,
            bus,
            asked: Arc::default(),
        }
    }

    /// Remembers a window of `ticket`'s file about to be asked of the agent (chunks `first` to
    /// `first + count`); a later one replaces it.
    pub fn expect(&self, ticket: &GetTicket, first: u64, count: u32) {
        let asked = Asked {
            size: ticket.size,
            chunk_size: u64::from(ticket.chunk_size),
            first,
            end: first.saturating_add(u64::from(count)),
        };
        let mut windows = self.asked.lock().unwrap_or_else(|e| e.into_inner());
        if windows
            .by_transfer
            .insert(ticket.transfer_id.clone(), asked)
            .is_none()
        {
            windows.order.push_back(ticket.transfer_id.clone());
        }
        while windows.order.len() > MAX_WINDOWS {
            if let Some(oldest) = windows.order.pop_front() {
                windows.by_transfer.remove(&oldest);
            }
        }
    }

    /// Checks and stores one chunk, then tells the transfer's owner what became of it.
    pub async fn chunk(&self, transfer: String, index: u64, data: Bytes, sha256: String) {
        let asked = self
            .asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_transfer
            .get(&transfer)
            .copied();
        let Some(asked) = asked else {
            // Never asked of this connection: another transfer's, another tenant's, or forged.
            tracing::warn!(tenant = %self.tenant, device = %self.device, %transfer, index, "refused a chunk nobody asked this connection for");
            return;
        };
        let expected_len = asked.chunk_size.min(
            asked
                .size
                .saturating_sub(index.saturating_mul(asked.chunk_size)),
        );
        let event = if index < asked.first || index >= asked.end {
            Some(refused(index, "outside the window asked for".into()))
        } else if data.len() as u64 != expected_len {
            Some(refused(
                index,
                format!(
                    "{} bytes where the chunk has {expected_len} (chunk size {})",
                    data.len(),
                    asked.chunk_size
                ),
            ))
        } else {
            let bytes = data.len();
            match self
                .store
                .put_chunk(&self.tenant, &transfer, index, data, &sha256)
                .await
            {
                Ok(_) => {
                    crate::metrics::transfer_bytes("from_agent", bytes);
                    Some(Event::ChunkStored(index))
                }
                Err(error @ (StoreError::Corrupt { .. } | StoreError::TooLarge { .. })) => {
                    Some(refused(index, error.to_string()))
                }
                Err(error) => {
                    // Not stored: the owner hears why, and asks again when the window stalls.
                    tracing::warn!(%transfer, index, %error, "cannot store a chunk");
                    crate::metrics::jetstream_error("chunks");
                    Some(Event::ChunkRefused(ChunkRefused {
                        index,
                        reason: error.to_string(),
                        store_failed: true,
                        store_full: matches!(error, StoreError::Full { .. }),
                    }))
                }
            }
        };
        if let Some(Event::ChunkRefused(r)) = &event
            && !r.store_failed
        {
            tracing::warn!(tenant = %self.tenant, device = %self.device, %transfer, index, reason = %r.reason, "chunk refused");
        }
        if let Some(event) = event {
            self.report(transfer, event).await;
        }
    }

    pub async fn ended(&self, ended: TransferEnded) {
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_transfer
            .remove(&ended.transfer_id);
        self.report(ended.transfer_id.clone(), Event::Ended(ended))
            .await;
    }

    pub async fn put_progress(&self, progress: PutProgress) {
        self.report(progress.transfer_id.clone(), Event::PutProgress(progress))
            .await;
    }

    async fn report(&self, transfer: String, event: Event) {
        if ids::transfer(&transfer).is_err() {
            tracing::warn!(device = %self.device, "dropped an event for a malformed transfer id");
            return;
        }
        let subject = bus::transfer_evt(&self.tenant, &transfer);
        let body = Body::TransferEvent(TransferEvent {
            transfer_id: transfer,
            event: Some(event),
            device: self.device.clone(),
        });
        if let Err(error) = self.bus.publish(subject, &self.tenant, body).await {
            tracing::warn!(device = %self.device, %error, "cannot report a transfer event");
        }
    }
}

fn refused(index: u64, reason: String) -> Event {
    Event::ChunkRefused(ChunkRefused {
        index,
        reason,
        store_failed: false,
        store_full: false,
    })
}

#[cfg(test)]
mod tests;
