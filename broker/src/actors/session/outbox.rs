//! Orders to the session's device, sent off the actor one after another. A slow or unreachable
//! device node holds up neither the session's ticks (and with them its lease renewal) nor its
//! control requests, and an order never overtakes one queued before it: a cancel follows its
//! command. An order waits while this node cannot prove it is alive ([`Liveness`]): it may be
//! sent only by the node the lease authority still counts on.

use std::time::Duration;

use agent_proto::bus::envelope::Body;
use cluster::LeaseService;
use cluster::lease::Lease;
use ractor::ActorRef;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::SessionMsg;
use crate::bus::{self, Bus, BusError};
use crate::liveness::Liveness;
use crate::wire;

/// How long one order waits for the device's node to take it.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting order looks again whether this node is alive.
const LIVENESS_POLL: Duration = Duration::from_millis(50);

/// Orders waiting to be sent; past this the session is told at once rather than queueing more.
const CAPACITY: usize = 64;

/// What an order is, for what its answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A command started now: its answer goes back to the session as [`SessionMsg::Sent`].
    Command,
    /// The running command again, after the device reconnected: a failure is only logged.
    Resend,
    /// A cancel of the running command: a failure is only logged.
    Cancel,
}

struct Outgoing {
    kind: Kind,
    /// The session's command id.
    id: String,
    order: Body,
    /// The span that queued it: the order's trace goes on from there.
    span: tracing::Span,
}

/// The sending end; the task stops when it is dropped or the session stops.
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
}

impl Outbox {
    /// Starts the task that sends `tenant`'s orders to `device`, answering to `session`.
    pub fn start(
        bus: Bus,
        lease: &Lease,
        leases: LeaseService,
        liveness: Liveness,
        session: ActorRef<SessionMsg>,
    ) -> (Self, JoinHandle<()>) {
        let (tenant, device) = (lease.tenant.clone(), lease.device.clone());
        let (session_id, token) = (lease.session.clone(), lease.token);
        let (tx, mut rx) = mpsc::channel::<Outgoing>(CAPACITY);
        let task = tokio::spawn(async move {
            while let Some(Outgoing {
                kind,
                id,
                order,
                span,
            }) = rx.recv().await
            {
                // Frozen or cut off, this node holds its orders; if the session moved meanwhile,
                // the session stops and this task with it before anything is sent.
                while !liveness.is_current() {
                    tokio::time::sleep(LIVENESS_POLL).await;
                }
                let held = leases.local_get(&tenant, &session_id).await;
                if held.is_none_or(|lease| lease.token != token) {
                    tracing::info!(session = %session_id, command = %id, "the session's lease moved on; order not sent");
                    break;
                }
                let outcome = deliver(&bus, &tenant, &device, order)
                    .instrument(span)
                    .await;
                match (kind, outcome) {
                    (Kind::Command, outcome) => {
                        if session.cast(SessionMsg::Sent { id, outcome }).is_err() {
                            break;
                        }
                    }
                    (_, Ok(())) => {}
                    (Kind::Resend, Err(error)) => {
                        tracing::warn!(command = %id, %error, "cannot re-send the running command");
                    }
                    (Kind::Cancel, Err(error)) => {
                        tracing::warn!(command = %id, %error, "cancel did not reach the device");
                    }
                }
            }
        });
        (Self { tx }, task)
    }

    /// Queues `order` without waiting; refused when [`CAPACITY`] orders already wait.
    pub fn send(&self, kind: Kind, id: String, order: Body) -> Result<(), String> {
        self.tx
            .try_send(Outgoing {
                kind,
                id,
                order,
                span: tracing::Span::current(),
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => format!(
                    "{CAPACITY} orders of this session already wait for the device's node; retry shortly"
                ),
                mpsc::error::TrySendError::Closed(_) => "the session is ending".to_string(),
            })
    }
}

/// Hands `order` to the node holding `device`'s stream; the error says why it was not taken.
async fn deliver(bus: &Bus, tenant: &str, device: &str, order: Body) -> Result<(), String> {
    let subject = bus::device_cmd(tenant, device);
    match bus.request(subject, tenant, order, DISPATCH_TIMEOUT).await {
        Ok(Body::Ack(ack)) if wire::accepted(&ack) => Ok(()),
        Ok(Body::Ack(ack)) => Err(ack.error),
        Ok(_) => Err("unexpected answer from the device's node".into()),
        Err(BusError::NoResponders(_)) => Err(format!(
            "device {device} is offline (no agent connected); wait for it to reconnect and run the command again"
        )),
        Err(e) => Err(format!(
            "the command could not be sent to device {device}: {e}"
        )),
    }
}
