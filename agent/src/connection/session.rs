//! One attached stream to one broker: dial with mutual TLS, hello, wait for welcome, then carry
//! signed orders (commands, cancels, put offers), chunk requests and put chunks in, and
//! heartbeats, results, chunks and put progress out, until the stream ends.
//!
//! Every order, and the ticket of every chunk request, is verified ([`Link::admit`],
//! [`crate::authority`]) before anything of it reaches the executor, so the fencing ledger only
//! ever sees tokens the lease authority granted. A refused order is logged and answered with
//! `UNAUTHORIZED` (a command by its result, a ticket or put offer by `TransferEnded`); a refused
//! cancel is only logged. Put chunks are not signed: the put checks each against its SHA-256 and
//! the file against its verified offer.
//!
//! An order that carries trace context is handled in a span continuing the broker's trace; a
//! command's span stays open until its result leaves, which carries the span's context back.
//!
//! The TLS material is read afresh for every dial, so a renewed certificate is presented from
//! the next dial on; a certificate past its expiry ends the agent ([`SessionError::Expired`])
//! instead of dialling with it. Renewal requests and their answers ride the stream ([`renew`]).
//!
//! The outgoing stream merges two channels: an unbounded one for the hello, heartbeats and results
//! (small, and they must never wait behind a file), and the bounded [`TransferSink`] for chunks,
//! put progress and transfer ends, which gRPC drains only as the network takes them, so reading a file never outruns the link.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_proto::agent::agent_link_client::AgentLinkClient;
use agent_proto::agent::{BrokerMessage, Welcome, broker_message};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::{Instrument, Span, debug, info, info_span, warn};

use super::renew::{self, Renewal};
use super::tls::CertificateExpired;
use super::{Link, TlsMaterial, chain};
use crate::authority::{Claim, Refused};
use crate::convert::{self, Decoded, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use crate::model::{Action, Completion, Outcome, Status};
use crate::transfer::{Refusal, TransferSink, Transfers, put};

/// The heartbeat interval when the broker's welcome leaves it at 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Bounds on what a welcome may ask for, so a broker bug cannot make the agent spin or go silent.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(600);

/// A session that was welcomed and later ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub node_id: u64,
    pub reason: String,
}

/// A session that never got to the welcome.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Expired(CertificateExpired),
    #[error("cannot read the tls files: {0}")]
    Credentials(crate::config::ConfigError),
    #[error("bad broker address: {0}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the broker closed the stream: {} ({:?})", .0.message(), .0.code())]
    Rejected(tonic::Status),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// A refusal the agent cannot fix by retrying: its identity does not satisfy the broker.
pub fn is_identity_problem(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    )
}

pub async fn serve(link: &Link, addr: &str) -> Result<SessionEnd, SessionError> {
    let c = &link.config.connection;
    let paths = link.config.tls.clone();
    let tls = tokio::task::spawn_blocking(move || TlsMaterial::load(&paths))
        .await
        .map_err(|e| SessionError::Connect(e.to_string()))?
        .map_err(SessionError::Credentials)?;
    tls.check_expiry(unix_ms()).map_err(SessionError::Expired)?;
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| SessionError::Address(chain(&e)))?
        .tls_config(tls.client_config())
        .map_err(|e| SessionError::Connect(chain(&e)))?
        .connect_timeout(c.connect_timeout())
        .tcp_nodelay(true)
        .http2_keep_alive_interval(c.keepalive_interval())
        .keep_alive_timeout(c.keepalive_interval())
        .keep_alive_while_idle(true);
    // The TLS handshake is not covered by connect_timeout, so the whole dial is bounded here.
    let channel = tokio::time::timeout(c.connect_timeout(), endpoint.connect())
        .await
        .map_err(|_| SessionError::Timeout(c.connect_timeout()))?
        .map_err(|e| SessionError::Connect(chain(&e)))?;

    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let _ = out_tx.send(convert::hello(&link.info, link.executor.highest_token()));
    // Windows still sending when this session ends stop at once rather than wait for room.
    let closed = CancellationToken::new();
    let _close_on_return = closed.clone().drop_guard();
    let (transfers, chunk_rx) = TransferSink::channel(closed);
    let outgoing = futures::stream::select(
        UnboundedReceiverStream::new(out_rx),
        ReceiverStream::new(chunk_rx).map(convert::transfer_event),
    );
    let mut client = AgentLinkClient::new(channel)
        .max_decoding_message_size(c.max_message_bytes)
        .max_encoding_message_size(c.max_message_bytes);
    let welcome_timeout = c.welcome_timeout();
    let response = tokio::time::timeout(welcome_timeout, client.attach(outgoing))
        .await
        .map_err(|_| SessionError::Timeout(welcome_timeout))?
        .map_err(SessionError::Rejected)?;
    let mut inbound = response.into_inner();
    let welcome = match tokio::time::timeout(welcome_timeout, inbound.message()).await {
        Err(_) => return Err(SessionError::Timeout(welcome_timeout)),
        Ok(Err(status)) => return Err(SessionError::Rejected(status)),
        Ok(Ok(None)) => {
            return Err(SessionError::Protocol(
                "the stream ended before the welcome".into(),
            ));
        }
        Ok(Ok(Some(BrokerMessage {
            body: Some(broker_message::Body::Welcome(w)),
        }))) => w,
        Ok(Ok(Some(other))) => {
            return Err(SessionError::Protocol(format!(
                "expected a welcome first, got {other:?}"
            )));
        }
    };
    check_welcome(&welcome)?;
    info!(
        broker = %addr, node_id = welcome.node_id, epoch = welcome.epoch,
        heartbeat_ms = welcome.heartbeat_interval_ms, "attached to broker"
    );

    let mut renewal = Renewal::new(tls.validity());
    // The span of each traced command, open until its result leaves: the result carries it back.
    // As many as the executor runs or answers at once, and gone with the session.
    let mut traced: HashMap<String, Span> = HashMap::new();
    let (res_tx, mut res_rx) = mpsc::unbounded_channel::<Completion>();
    let mut heartbeat = tokio::time::interval(heartbeat_interval(&welcome));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = |reason: String| SessionEnd {
        node_id: welcome.node_id,
        reason,
    };
    loop {
        tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(m)) => handle(link, m, &res_tx, &transfers, &mut renewal, &mut traced).await,
                Ok(None) => return Ok(end("the broker ended the stream".into())),
                Err(status) => return Ok(end(format!("{} ({:?})", status.message(), status.code()))),
            },
            Some(done) = res_rx.recv() => {
                let trace = traced
                    .remove(&done.command_id)
                    .map(|span| telemetry::context_map(&span))
                    .unwrap_or_default();
                if out_tx.send(convert::result(done, trace)).is_err() {
                    return Ok(end("the outgoing stream closed".into()));
                }
            }
            () = tokio::time::sleep(renewal.wait(unix_ms())) => {
                if let Some(csr_der) = renew::request(link, &mut renewal, unix_ms())
                    && out_tx.send(convert::renew(csr_der)).is_err()
                {
                    return Ok(end("the outgoing stream closed".into()));
                }
            }
            _ = heartbeat.tick() => {
                if out_tx.send(convert::heartbeat(unix_ms())).is_err() {
                    return Ok(end("the outgoing stream closed".into()));
                }
            }
        }
    }
}

fn check_welcome(w: &Welcome) -> Result<(), SessionError> {
    if w.protocol_version > PROTOCOL_VERSION {
        return Err(SessionError::Protocol(format!(
            "the broker chose protocol version {}, this agent speaks up to {PROTOCOL_VERSION}; upgrade the agent",
            w.protocol_version
        )));
    }
    if w.protocol_version < MIN_PROTOCOL_VERSION {
        return Err(SessionError::Protocol(format!(
            "the broker chose protocol version {}, older than {MIN_PROTOCOL_VERSION} (signed orders), the oldest this agent speaks; upgrade the brokers",
            w.protocol_version
        )));
    }
    Ok(())
}

fn heartbeat_interval(w: &Welcome) -> Duration {
    match w.heartbeat_interval_ms {
        0 => DEFAULT_HEARTBEAT,
        ms => Duration::from_millis(u64::from(ms)).clamp(MIN_HEARTBEAT, MAX_HEARTBEAT),
    }
}

async fn handle(
    link: &Link,
    msg: BrokerMessage,
    results: &mpsc::UnboundedSender<Completion>,
    transfers: &TransferSink,
    renewal: &mut Renewal,
    traced: &mut HashMap<String, Span>,
) {
    match msg.body {
        Some(broker_message::Body::Order(order)) => {
            let parent = convert::trace_context(&order);
            match convert::order(order) {
                Ok(order) => {
                    let span = order_span(&order.action, &parent);
                    if let Action::Command(inv) = &order.action
                        && !span.is_none()
                    {
                        traced.insert(inv.command_id.clone(), span.clone());
                    }
                    obey(link, order, results, transfers).instrument(span).await
                }
                Err(refused) => warn!(reason = %refused, "refused an order"),
            }
        }
        Some(broker_message::Body::ChunkRequest(req)) => match convert::chunk_request(req) {
            Ok(Decoded {
                signed,
                action: req,
            }) => match link.admit(&signed) {
                Ok(_) => link.executor.chunks(req, transfers.clone()).await,
                Err(refused) => {
                    warn!(
                        transfer = %req.transfer_id, session = %req.session_id, token = req.token,
                        path = %req.path, reason = %refused, "refused a chunk request"
                    );
                    let refusal = Refusal::unauthorized(refused.to_string());
                    Transfers::refuse_detached(&req.transfer_id, refusal, transfers.clone());
                }
            },
            Err(refused) => warn!(reason = %refused, "refused a chunk request"),
        },
        Some(broker_message::Body::PutChunk(chunk)) => {
            link.executor
                .put_chunk(convert::put_chunk(chunk), transfers.clone())
                .await;
        }
        Some(broker_message::Body::Renewed(answer)) => {
            renew::answered(link, renewal, convert::renewed(answer), unix_ms()).await;
        }
        Some(broker_message::Body::Welcome(_)) => warn!("ignoring a second welcome"),
        None => debug!("ignoring an empty broker message"),
    }
}

/// The span an order is handled in, a child of the broker span that sent it; none when the
/// order carries no trace (spans are not exported).
fn order_span(action: &Action, parent: &HashMap<String, String>) -> Span {
    if parent.is_empty() {
        return Span::none();
    }
    let span = match action {
        Action::Command(inv) => {
            info_span!("agent command", command_id = %inv.command_id, command = %inv.command)
        }
        Action::Cancel(c) => info_span!("agent cancel", command_id = %c.command_id),
        Action::Put(offer) => info_span!("agent put offer", transfer = %offer.transfer_id),
    };
    telemetry::follow(&span, parent);
    span
}

/// Hands a verified order to the executor, or answers why it was refused.
async fn obey(
    link: &Link,
    order: Decoded<Action>,
    results: &mpsc::UnboundedSender<Completion>,
    transfers: &TransferSink,
) {
    let Decoded { signed, action } = order;
    if let Err(refused) = link.admit(&signed) {
        return refuse(&signed.claim, action, &refused, results, transfers);
    }
    match action {
        Action::Command(inv) => link.executor.submit(inv, results.clone()).await,
        Action::Cancel(c) => {
            debug!(
                command_id = %c.command_id, session = %c.session_id, token = c.token,
                "cancel verified"
            );
            link.executor.cancel(c.command_id, transfers.clone()).await
        }
        Action::Put(offer) => link.executor.put_offer(offer, transfers.clone()).await,
    }
}

/// Logs a refused order and answers it: a command with its result, a put offer with its end; a
/// cancel has nothing to answer.
fn refuse(
    claim: &Claim,
    action: Action,
    refused: &Refused,
    results: &mpsc::UnboundedSender<Completion>,
    transfers: &TransferSink,
) {
    let (session, token) = (&claim.session_id, claim.token);
    match action {
        Action::Command(inv) => {
            warn!(
                command_id = %inv.command_id, session = %session, token, command = %inv.command,
                reason = %refused, "refused a command"
            );
            let _ = results.send(Completion {
                command_id: inv.command_id,
                outcome: Outcome::error(Status::Unauthorized, refused.to_string(), inv.cwd),
            });
        }
        Action::Cancel(c) => warn!(
            command_id = %c.command_id, session = %session, token, reason = %refused,
            "refused a cancel"
        ),
        Action::Put(offer) => {
            warn!(
                transfer = %offer.transfer_id, session = %session, token, name = %offer.name,
                reason = %refused, "refused a put offer"
            );
            let refusal = Refusal::unauthorized(refused.to_string());
            put::refuse(&offer.transfer_id, refusal, transfers.clone());
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
