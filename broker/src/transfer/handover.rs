//! A session's running transfers follow it to the node that adopted it: each record takes the
//! session's new token, a ticket and cancel signed with the adopter's key, and the adopter as
//! owner, in one compare-and-set on its revision. The old owner's next write then fails and it
//! stops, and the adopter drives the transfer on from its checkpoint.

use std::time::Duration;

use agent_proto::agent::order_body::Action;
use cluster::lease::Lease;

use super::actor::{TransferContext, drive, is_driven_here};
use super::{BookError, Versioned};
use crate::orders::{self, Signer};
use crate::time::now_ms;

/// How long the adopter waits for a transfer actor of its own, fenced out by the move, to stop.
const OLD_ACTOR_STOP: Duration = Duration::from_secs(5);
/// Compare-and-set attempts per record, each on the revision just read.
const ATTEMPTS: usize = 3;

/// Moves every running transfer `lease`'s session started under `previous_token` (or any older
/// token) to `lease`'s token and this node; answers how many moved.
pub async fn move_session(
    context: &TransferContext,
    lease: &Lease,
    previous_token: u64,
    signer: &Signer,
) -> usize {
    let records = match context.book.list(&lease.tenant).await {
        Ok(records) => records,
        Err(error) => {
            tracing::error!(session = %lease.session, %error, "cannot list the session's transfers; they continue once another node takes them over");
            return 0;
        }
    };
    let mut moved = 0;
    for record in records {
        if record.session != lease.session
            || record.state.is_terminal()
            || record.token > previous_token
        {
            continue;
        }
        match move_one(context, &record.id, lease, signer).await {
            Ok(Some(owned)) => {
                moved += 1;
                let id = owned.record.id.clone();
                // A transfer this node drove already stops at its next write; then it goes on here.
                let deadline = tokio::time::Instant::now() + OLD_ACTOR_STOP;
                while is_driven_here(&id) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                if let Err(error) = drive(context, owned).await {
                    tracing::error!(transfer = %id, %error, "cannot drive a moved transfer; another node takes it over");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(transfer = %record.id, %error, "cannot move a transfer to the session's new token; it fails once the new token reaches the device")
            }
        }
    }
    moved
}

/// One record's move; `None` when it ended or moved meanwhile.
async fn move_one(
    context: &TransferContext,
    id: &str,
    lease: &Lease,
    signer: &Signer,
) -> Result<Option<Versioned>, String> {
    for _ in 0..ATTEMPTS {
        let Some(current) = context
            .book
            .get(&lease.tenant, id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let mut record = current.record;
        if record.state.is_terminal() || record.token >= lease.token {
            return Ok(None);
        }
        record.ticket = resign(&record.ticket, lease.token, signer)?;
        if !record.cancel.is_empty() {
            record.cancel = resign(&record.cancel, lease.token, signer)?;
        }
        let previous = record.owner;
        record.token = lease.token;
        record.owner = context.node_id;
        record.heartbeat_ms = now_ms();
        match context.book.update(&record, current.revision).await {
            Ok(owned) => {
                tracing::info!(tenant = %record.tenant, transfer = %record.id, previous, token = record.token, "moved a transfer with its session");
                return Ok(Some(owned));
            }
            Err(BookError::Superseded(_)) => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
    Err("its record kept changing".into())
}

/// `stored` (an encoded order) again, under `token`, signed by `signer`.
fn resign(stored: &str, token: u64, signer: &Signer) -> Result<String, String> {
    let mut action = orders::claims(&orders::decode(stored)?)?.action;
    match &mut action {
        Action::Get(ticket) => ticket.token = token,
        Action::Put(offer) => offer.token = token,
        Action::Cancel(cancel) => cancel.token = token,
        Action::Command(_) => return Err("a transfer's record holds a command order".into()),
    }
    Ok(orders::encode(&signer.sign(action)))
}
