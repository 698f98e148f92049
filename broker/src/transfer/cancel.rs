//! Cancelling a transfer, whichever node the analyst asks: the transfer's owner does it.
//!
//! ```text
//! api (any node) ── cancel() ── book: the caller's own transfer? still running?
//!                       │ lr.<t>.xfer.<id>.ctl: TransferCancel{user}
//!                       ▼
//!                 owner: TransferActor ── actor::end(Cancelled): record, device, chunks ── ack
//!
//!   nobody answers ──► upkeep::adopt (compare-and-set on the record) ──► actor::end(Cancelled)
//! ```
//!
//! The node that gets the cancel asks the owner on the transfer's control subject; the owner's
//! actor records the transfer cancelled, tells the device, deletes a getfile's chunks, answers
//! and stops. When nobody answers, the owner's node is gone and no node has adopted the transfer
//! yet: this node takes it over the way [`super::upkeep`] adopts orphans (a compare-and-set on the
//! record, which is the source of truth) and ends it exactly as the actor would ([`end`]). A
//! write that loses a race (the owner checkpointed, another node adopted the transfer) is tried
//! again from a fresh read, a few times.

use std::time::Duration;

use agent_proto::bus::TransferCancel;
use agent_proto::bus::envelope::Body;
use api_model::ErrorCode;
use backon::{ExponentialBuilder, Retryable};

use super::actor::{TransferContext, end};
use super::upkeep::adopt;
use super::{BookError, StoreError, TransferKind, TransferState, Versioned};
use crate::bus::{self, BusError};
use crate::wire;

/// The error a cancelled transfer records.
pub const CANCELLED: &str = "cancelled by the analyst";
/// How long the owner may take to answer a cancel.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);
/// A cancel that loses a race is tried again: 5 attempts in all, from 50 ms apart doubling up to
/// 200 ms (backon's jitter adds up to the delay again, so the halves below become 25 to 50 ms, …,
/// 100 to 200 ms).
const RACE_RETRIES: ExponentialBuilder = ExponentialBuilder::new()
    .with_jitter()
    .with_min_delay(Duration::from_millis(25))
    .with_max_delay(Duration::from_millis(100))
    .with_max_times(4);

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No transfer `id` of this analyst: another analyst's, or another tenant's, reads the same.
    #[error("no transfer {0}")]
    NotFound(String),
    #[error(transparent)]
    Book(#[from] BookError),
    /// Deleting a finished getfile's chunks failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The owner could not be asked, or could not record the cancel; asking again may work.
    #[error("{0}")]
    Unavailable(String),
}

/// Cancels transfer `id` of `user` in `tenant`: a running one through its owner (or, with no
/// owner left, here), which records it cancelled, tells the device and deletes a getfile's stored
/// chunks; a finished getfile's chunks are deleted too. Returns once the record says so.
pub async fn cancel(
    context: &TransferContext,
    tenant: &str,
    user: &str,
    id: &str,
) -> Result<(), CancelError> {
    let attempt = || try_cancel(context, tenant, user, id);
    attempt
        .retry(RACE_RETRIES)
        .when(|e| matches!(e, Attempt::Raced(_)))
        .notify(|e, _| {
            if let Attempt::Raced(error) = e {
                tracing::debug!(tenant, transfer = id, %error, "the transfer changed while being cancelled; retrying");
            }
        })
        .await
        .map_err(|e| match e {
            Attempt::Raced(error) | Attempt::Failed(error) => error,
        })
}

/// How one attempt failed: in a race worth another attempt (with the error to give when none is
/// left), or for good.
enum Attempt {
    Raced(CancelError),
    Failed(CancelError),
}

impl<E: Into<CancelError>> From<E> for Attempt {
    fn from(error: E) -> Self {
        Attempt::Failed(error.into())
    }
}

fn changed() -> Attempt {
    Attempt::Raced(CancelError::Unavailable(
        "the transfer kept changing while being cancelled; retry".into(),
    ))
}

async fn try_cancel(
    context: &TransferContext,
    tenant: &str,
    user: &str,
    id: &str,
) -> Result<(), Attempt> {
    let current = match context.book.get(tenant, id).await? {
        Some(current) if current.record.user == user => current,
        _ => return Err(CancelError::NotFound(id.to_string()).into()),
    };
    if current.record.state.is_terminal() {
        // Nothing drives it any more; what is left is a getfile's stored file.
        if current.record.kind == TransferKind::Getfile {
            context.store.delete(tenant, id).await?;
        }
        return Ok(());
    }
    let request = Body::TransferCancel(TransferCancel {
        transfer_id: id.to_string(),
        user: user.to_string(),
    });
    let subject = bus::transfer_ctl(tenant, id);
    match context
        .bus
        .request(subject, tenant, request, OWNER_TIMEOUT)
        .await
    {
        Ok(Body::Ack(ack)) => match wire::error_code(ack.error_code()) {
            None => Ok(()),
            Some(ErrorCode::NotFound) => Err(CancelError::NotFound(id.to_string()).into()),
            // Taken over meanwhile, or its record could not be written: read and ask again.
            Some(ErrorCode::Unavailable) => Err(Attempt::Raced(CancelError::Unavailable(format!(
                "the transfer's node could not record the cancel: {}; retry",
                ack.error
            )))),
            Some(_) => Err(CancelError::Unavailable(format!(
                "the transfer's node refused the cancel: {}",
                ack.error
            ))
            .into()),
        },
        Ok(_) => Err(CancelError::Unavailable(
            "unexpected answer from the transfer's node; retry".into(),
        )
        .into()),
        Err(BusError::NoResponders(_) | BusError::TimedOut(_)) => {
            end_orphan(context, current).await
        }
        Err(error) => Err(CancelError::Unavailable(format!(
            "cannot ask the transfer's node: {error}; retry"
        ))
        .into()),
    }
}

/// Cancels a running transfer nobody drives: takes it over, then ends it as its owner would.
async fn end_orphan(context: &TransferContext, orphan: Versioned) -> Result<(), Attempt> {
    let previous = orphan.record.owner;
    let mut owned = match adopt(context, orphan).await {
        Ok(owned) => owned,
        Err(BookError::Superseded(_)) => return Err(changed()),
        Err(error) => return Err(error.into()),
    };
    tracing::info!(tenant = %owned.record.tenant, transfer = %owned.record.id, previous, node = context.node_id, "no node drove the transfer; cancelling it here");
    match end(
        context,
        &mut owned,
        TransferState::Cancelled,
        CANCELLED.into(),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(BookError::Superseded(_)) => Err(changed()),
        Err(error) => Err(error.into()),
    }
}
