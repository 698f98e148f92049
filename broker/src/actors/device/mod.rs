//! `DeviceActor`: owns one agent's gRPC stream on the node the agent dialled.
//!
//! It takes sessions' signed orders (commands, cancels, transfer tickets and offers) and chunk
//! windows for its device from NATS (`lr.<tenant>.dev.<device>.cmd`), and writes to the agent's
//! stream only those whose fencing token the lease table backs ([`orders::judge`]: the local
//! replica first, a linearizable read before any refusal); the rest are dropped and logged. It
//! publishes the agent's results to the session's subject. A newer
//! connection of the same device (a higher epoch, announced on `.online`) supersedes it; so does a
//! stream that closes or an agent that stops heartbeating.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::agent::broker_message::Body as ToAgent;
use agent_proto::agent::order_body::Action;
use agent_proto::agent::{BrokerMessage, CommandResult, Order, Renewed};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::{Ack, DeviceOnline};
use api_model::{AuditKind, ErrorCode};
use cluster::LeaseService;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::agents::enrolment::{self, Issuer};
use crate::audit;
use crate::bus::{self, Bus};
use crate::orders::{self, Claims};
use crate::registry::DeviceRegistry;
use crate::time::now_ms;
use crate::transfer::ChunkIntake;
use crate::wire;

/// How many heartbeat intervals may pass without one before the agent counts as gone.
const MISSED_HEARTBEATS: u32 = 3;
/// How often `last_seen` is written to the registry: often enough for people, rarely enough that
/// a fleet's heartbeats do not become a stream of registry writes.
const LAST_SEEN_EVERY: Duration = Duration::from_secs(30);

pub struct DeviceActor;

pub enum DeviceMsg {
    /// A message on one of the device's subjects.
    Bus(async_nats::Message),
    Heartbeat,
    Result(CommandResult),
    StreamClosed(String),
    /// Every heartbeat interval: is the agent still heartbeating, and still admitted?
    CheckLiveness,
    /// The agent asks for a new certificate (a signing request for its new key).
    Renew(Vec<u8>),
}

pub struct DeviceArgs {
    pub node_id: u64,
    pub tenant: String,
    pub device: String,
    pub epoch: u64,
    pub heartbeat: Duration,
    pub to_agent: mpsc::Sender<Result<BrokerMessage, tonic::Status>>,
    pub bus: Bus,
    pub registry: DeviceRegistry,
    /// Where chunks this connection is asked for are checked and stored.
    pub intake: ChunkIntake,
    /// The lease table every order is checked against, and the directory the connection's
    /// certificate is.
    pub leases: LeaseService,
    /// Fingerprint of the certificate this connection's agent holds (after a renewal on this
    /// connection, the new one's).
    pub certificate: String,
    pub issuer: Arc<Issuer>,
    /// Where orders refused for a stale or unknown token are recorded.
    pub audit: crate::audit::AuditLog,
}

pub struct DeviceState {
    args: DeviceArgs,
    /// Session of each command sent to the agent and not yet answered.
    in_flight: HashMap<String, String>,
    last_heartbeat: Instant,
    /// When `last_seen` was last written to the registry, and that write while it runs.
    last_recorded: Instant,
    recording: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Actor for DeviceActor {
    type Msg = DeviceMsg;
    type State = DeviceState;
    type Arguments = DeviceArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<DeviceMsg>,
        args: DeviceArgs,
    ) -> Result<DeviceState, ActorProcessingErr> {
        let mut tasks = Vec::new();
        for subject in [
            bus::device_cmd(&args.tenant, &args.device),
            bus::device_online(&args.tenant, &args.device),
        ] {
            let mut subscription = args.bus.subscribe(subject).await?;
            let me = myself.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    if me.cast(DeviceMsg::Bus(message)).is_err() {
                        break;
                    }
                }
            }));
        }
        tasks.push(myself.send_interval(args.heartbeat, || DeviceMsg::CheckLiveness));
        // Sessions waiting on this device re-send what they had in flight.
        let online = Body::DeviceOnline(DeviceOnline {
            node_id: args.node_id,
            epoch: args.epoch,
        });
        args.bus
            .publish(
                bus::device_online(&args.tenant, &args.device),
                &args.tenant,
                online,
            )
            .await?;
        tracing::info!(tenant = %args.tenant, device = %args.device, epoch = args.epoch, "device online");
        Ok(DeviceState {
            args,
            in_flight: HashMap::new(),
            last_heartbeat: Instant::now(),
            last_recorded: Instant::now(),
            recording: None,
            tasks,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<DeviceMsg>,
        msg: DeviceMsg,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            DeviceMsg::Bus(message) => {
                let span = crate::trace::device_message(&message);
                state.on_bus(&myself, message).instrument(span).await
            }
            DeviceMsg::Heartbeat => {
                state.last_heartbeat = Instant::now();
                if state.last_recorded.elapsed() < LAST_SEEN_EVERY {
                    return Ok(());
                }
                if state.recording.as_ref().is_some_and(|r| !r.is_finished()) {
                    return Ok(());
                }
                state.last_recorded = Instant::now();
                // Off the handler: a slow store must not hold up orders or the liveness check.
                let a = &state.args;
                let (registry, tenant, device, epoch) = (
                    a.registry.clone(),
                    a.tenant.clone(),
                    a.device.clone(),
                    a.epoch,
                );
                state.recording = Some(tokio::spawn(async move {
                    if let Err(error) = registry
                        .touch(&tenant, &device, epoch, true, now_ms())
                        .await
                    {
                        tracing::warn!(%device, %error, "cannot record heartbeat");
                    }
                }));
            }
            DeviceMsg::Result(result) => {
                let span = crate::trace::device_result(&result);
                state.on_result(result).instrument(span).await
            }
            DeviceMsg::Renew(csr_der) => {
                let a = &state.args;
                let renewed = match a
                    .issuer
                    .renew(&a.leases, &a.tenant, &a.device, &a.certificate, &csr_der)
                    .await
                {
                    Ok(issued) => {
                        state.args.certificate = issued.fingerprint;
                        Renewed {
                            certificate_pem: issued.cert_pem,
                            expires_at_ms: issued.expires_at_ms,
                            error: String::new(),
                        }
                    }
                    Err(status) => {
                        tracing::warn!(tenant = %a.tenant, device = %a.device, reason = status.message(), "refused a certificate renewal");
                        Renewed {
                            error: status.message().to_owned(),
                            ..Renewed::default()
                        }
                    }
                };
                let _ = state.to_agent(ToAgent::Renewed(renewed)).await;
            }
            DeviceMsg::StreamClosed(reason) => {
                tracing::info!(tenant = %state.args.tenant, device = %state.args.device, epoch = state.args.epoch, %reason, "agent stream closed");
                myself.stop(Some(reason));
            }
            DeviceMsg::CheckLiveness => {
                if !state.still_admitted(&myself, false).await {
                    return Ok(());
                }
                if state.last_heartbeat.elapsed() > state.args.heartbeat * MISSED_HEARTBEATS {
                    tracing::warn!(device = %state.args.device, "agent stopped heartbeating; dropping its stream");
                    let _ = state
                        .args
                        .to_agent
                        .try_send(Err(tonic::Status::deadline_exceeded(
                            "no heartbeat from the agent; reconnect",
                        )));
                    myself.stop(Some("heartbeats missed".into()));
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<DeviceMsg>,
        state: &mut DeviceState,
    ) -> Result<(), ActorProcessingErr> {
        for task in &state.tasks {
            task.abort();
        }
        // The last online mark is written before the offline one.
        if let Some(recording) = state.recording.take() {
            let _ = recording.await;
        }
        let a = &state.args;
        if let Err(error) = a
            .registry
            .touch(&a.tenant, &a.device, a.epoch, false, now_ms())
            .await
        {
            tracing::warn!(device = %a.device, %error, "cannot record the device offline");
        }
        Ok(())
    }
}

impl DeviceState {
    /// Whether the connection's certificate still admits the device (asking the leader when
    /// `changed`: the enrolment just changed); if not, the stream is ended with the reason and
    /// the actor stops.
    async fn still_admitted(&self, myself: &ActorRef<DeviceMsg>, changed: bool) -> bool {
        let a = &self.args;
        let verdict = if changed {
            enrolment::admitted_by_leader(&a.leases, &a.tenant, &a.device, &a.certificate).await
        } else {
            enrolment::admitted(&a.leases, &a.tenant, &a.device, &a.certificate).await
        };
        match verdict {
            Err(status) if status.code() == tonic::Code::PermissionDenied => {
                tracing::warn!(tenant = %a.tenant, device = %a.device, reason = status.message(), "the device's certificate no longer admits it; dropping its stream");
                let _ = a.to_agent.try_send(Err(status));
                myself.stop(Some("no longer admitted".into()));
                false
            }
            _ => true,
        }
    }

    async fn on_bus(&mut self, myself: &ActorRef<DeviceMsg>, message: async_nats::Message) {
        let (tenant, body) = match bus::decode(&message) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::warn!(device = %self.args.device, %error, "dropped a bus message");
                return;
            }
        };
        let ack = match body {
            Body::Order(mut order) => match self.admit(&order, &message.subject).await {
                Ok(claims) => {
                    // The stream outlives any one command, so the trace rides in the message.
                    order.trace_context = crate::trace::for_agent();
                    match self.to_agent(ToAgent::Order(order)).await {
                        Ok(()) => {
                            if let Action::Command(c) = claims.action {
                                self.in_flight.insert(c.command_id, claims.session);
                            }
                            Ack::default()
                        }
                        Err(ack) => ack,
                    }
                }
                Err(ack) => ack,
            },
            Body::ChunkRequest(request) => {
                let ticket = request.ticket.clone().unwrap_or_default();
                match self.admit(&ticket, &message.subject).await {
                    Ok(Claims {
                        action: Action::Get(get),
                        ..
                    }) => {
                        self.args
                            .intake
                            .expect(&get, request.first_index, request.count);
                        self.to_agent(ToAgent::ChunkRequest(request))
                            .await
                            .err()
                            .unwrap_or_default()
                    }
                    Ok(_) => wire::refusal(
                        ErrorCode::InvalidRequest,
                        "a chunk request's ticket must be a getfile ticket",
                    ),
                    Err(ack) => ack,
                }
            }
            Body::PutChunk(chunk) => {
                // Sent without a reply: the agent's progress answers it.
                let _ = self.to_agent(ToAgent::PutChunk(chunk)).await;
                return;
            }
            Body::RecheckEnrolment(_) => {
                self.still_admitted(myself, true).await;
                return;
            }
            Body::DeviceOnline(online) => {
                if online.epoch > self.args.epoch {
                    tracing::info!(device = %self.args.device, epoch = self.args.epoch, newer = online.epoch, node = online.node_id, "superseded by a newer connection");
                    myself.stop(Some("superseded".into()));
                }
                return;
            }
            _ => return,
        };
        if let Err(error) = self.args.bus.reply(&message, &tenant, Body::Ack(ack)).await {
            tracing::warn!(device = %self.args.device, %error, "cannot acknowledge a command");
        }
    }

    /// The order's claims if the lease table backs them; otherwise the refusal, logged with the
    /// subject it came on and the token it claimed.
    async fn admit(&self, order: &Order, subject: &str) -> Result<Claims, Ack> {
        let a = &self.args;
        let claims = orders::claims(order).map_err(|reason| {
            tracing::warn!(tenant = %a.tenant, device = %a.device, %subject, %reason, "dropped an unreadable order");
            wire::refusal(ErrorCode::InvalidRequest, reason)
        })?;
        let (lease, applied) = a.leases.local_by_device(&a.tenant, &a.device).await;
        let mut verdict = orders::judge(&claims, lease.as_ref(), applied);
        if matches!(&verdict, Err(r) if r.code != ErrorCode::Gone) {
            // This replica may not have applied a fresh grant yet: ask the leader before refusing.
            verdict = match a.leases.by_device(&a.tenant, &a.device).await {
                Ok(lease) => {
                    let (_, applied) = a.leases.local_by_device(&a.tenant, &a.device).await;
                    let granted = lease.as_ref().map_or(0, |l| l.token);
                    orders::judge(&claims, lease.as_ref(), applied.max(granted))
                }
                Err(error) => {
                    tracing::warn!(device = %a.device, %error, "cannot confirm an order's lease");
                    return Err(wire::refusal(
                        ErrorCode::Unavailable,
                        format!(
                            "the lease authority cannot be reached to check the order ({error}); retry"
                        ),
                    ));
                }
            };
        }
        match verdict {
            Ok(()) => Ok(claims),
            Err(refusal) => {
                tracing::warn!(
                    tenant = %a.tenant, device = %a.device, %subject, session = %claims.session,
                    token = claims.token, id = %claims.subject_id(), reason = %refusal.reason,
                    "dropped an order that the device's lease does not back"
                );
                let refused = audit::Event::new(
                    AuditKind::Refused,
                    json!({"order": claims.subject_id(), "token": claims.token,
                           "reason": refusal.reason}),
                )
                .device(&a.device)
                .session(&claims.session);
                if let Err(error) = a.audit.record(&a.tenant, refused).await {
                    tracing::warn!(device = %a.device, %error, "cannot record a refused order");
                }
                Err(wire::refusal(refusal.code, refusal.reason))
            }
        }
    }

    /// Queues `body` for the agent without waiting: an agent that does not read its stream
    /// gets a refusal for what does not fit, never a handler stuck on it.
    async fn to_agent(&self, body: ToAgent) -> Result<(), Ack> {
        let message = BrokerMessage { body: Some(body) };
        self.args.to_agent.try_send(Ok(message)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => wire::refusal(
                ErrorCode::Unavailable,
                format!(
                    "device {} is not reading what it is sent ({} messages wait); retry shortly",
                    self.args.device,
                    self.args.to_agent.max_capacity()
                ),
            ),
            mpsc::error::TrySendError::Closed(_) => wire::refusal(
                ErrorCode::DeviceOffline,
                format!(
                    "device {} disconnected; wait for it to reconnect",
                    self.args.device
                ),
            ),
        })
    }

    async fn on_result(&mut self, result: CommandResult) {
        let Some(session) = self.in_flight.remove(&result.command_id) else {
            tracing::debug!(command = %result.command_id, "result for a command this connection did not send");
            return;
        };
        let tenant = self.args.tenant.clone();
        if let Err(error) = self
            .args
            .bus
            .publish(
                bus::session_evt(&tenant, &session),
                &tenant,
                Body::Result(result),
            )
            .await
        {
            tracing::warn!(device = %self.args.device, %session, %error, "cannot deliver a command result");
        }
    }
}
