//! `SessionActor`: one live response session, on the node it was opened through.
//!
//! The session's decisions live in [`core::SessionCore`] (pure); this actor carries them out. It
//! owns the session's lease (acquired by [`open`], renewed every third of its TTL, released when
//! the session ends), and feeds the core what happens: control requests on
//! `lr.<tenant>.sess.<id>.ctl`, agents' results on `.evt`, the device reconnecting (`.online`),
//! and a tick every second. Every state change is published on `.out` for live streams, and the
//! session's end is the last message there. Orders to the device leave through the session's
//! [`outbox`], so no handler waits on the device's node.
//!
//! A session outlives its node: when the node dies or is cut off, another adopts it
//! ([`takeover`]) under a new token and rebuilds it from the audit log. While this node cannot
//! prove it is alive ([`Liveness`]) the actor answers nothing and acts on nothing, keeping what
//! arrives for later; once its replica shows the lease under another token, it stops without a
//! word: no release, no end, nothing sent.
//!
//! ```text
//! sessions supervisor ──► SessionActor ──(events)──► SessionCore ──(effects)──► SessionActor
//! ```

mod core;
mod open;
mod outbox;
mod record;
mod renewal;
pub mod takeover;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use agent_proto::agent::order_body::Action;
use agent_proto::agent::{Cancel, CommandRequest};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{CommandList, Empty, RunRequest, SessionInfo, SessionReply, Submitted};
use api_model::{AuditKind, ErrorCode};
use cluster::lease::{Lease, LeaseError};
use cluster::{ClusterError, Granted, LeaseService};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use core::{AgentResult, BrokerAction, Effect, Event, Refusal, SessionCore, Timing};
pub use open::{OpenRequest, Opened, SessionContext, end_orphan, find_opened, open};
pub use record::CommandRecord;

use outbox::{Kind, Outbox};

use crate::audit;
use crate::bus::{self, Bus};
use crate::config::SessionsSection;
use crate::liveness::Liveness;
use crate::orders::Signer;
use crate::time::now_ms;
use crate::transfer::TransferContext;
use crate::transfer::start::{self as transfers, Requester};
use crate::wire;

pub struct SessionActor;

/// Messages kept while this node cannot prove it is alive; more are dropped (a command whose
/// result is lost this way times out).
const MAX_DEFERRED: usize = 1024;
/// A control request kept longer than this is dropped: its requester gave up (after 10 s) and
/// asks again.
const STALE_CONTROL: Duration = Duration::from_secs(8);

pub enum SessionMsg {
    Control(async_nats::Message),
    Event(async_nats::Message),
    Tick,
    /// A finished command's output is in the audit log under this reference.
    OutputStored {
        id: String,
        reference: String,
    },
    /// The lease renewal's answer.
    Renewed(Result<Granted, ClusterError>),
    /// Whether the device's node took command `id`.
    Sent {
        id: String,
        outcome: Result<(), String>,
    },
}

pub struct SessionArgs {
    pub node_id: u64,
    pub lease: Lease,
    /// Whether this node may act for its sessions.
    pub liveness: Liveness,
    /// Set when the session is taken over from another node.
    pub resume: Option<takeover::Resume>,
    /// Signs every order the session sends its device.
    pub signer: Signer,
    pub bus: Bus,
    pub leases: LeaseService,
    pub settings: SessionsSection,
    pub transfers: TransferContext,
}

pub struct SessionState {
    args: SessionArgs,
    /// Orders to the device, sent off the actor in order.
    outbox: Outbox,
    core: SessionCore,
    /// Set once the lease is released, so it is released exactly once.
    released: bool,
    tasks: Vec<JoinHandle<()>>,
    /// Why the session stops, for its last audit entry.
    stop_reason: Option<String>,
    /// Commands whose end is in the audit log, or on its way there (`writing`).
    audited: HashSet<String>,
    writing: Vec<JoinHandle<()>>,
    /// Set once the session's end is on record.
    end_recorded: bool,
    /// Another node adopted the session: this actor stops without a word.
    moved: bool,
    /// What arrived while this node could not prove it is alive (control requests, the
    /// device's events, the log's answers), and when: carried out once it can.
    deferred: VecDeque<(Instant, SessionMsg)>,
    /// What resuming an adopted session leaves to do once the actor runs.
    resumed: Vec<Effect>,
    /// Each traced command's submitting span, until it ends: a command that waited in the queue
    /// is sent while the previous one's result is handled, and must go on in its own trace.
    spans: HashMap<String, tracing::Span>,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        mut args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let lease = &args.lease;
        let mut tasks = Vec::new();
        let subjects = [
            (bus::session_ctl(&lease.tenant, &lease.session), true),
            (bus::session_evt(&lease.tenant, &lease.session), false),
            (bus::device_online(&lease.tenant, &lease.device), false),
        ];
        for (subject, control) in subjects {
            let mut subscription = args.bus.subscribe(subject).await?;
            let me = myself.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    let msg = if control {
                        SessionMsg::Control(message)
                    } else {
                        SessionMsg::Event(message)
                    };
                    if me.cast(msg).is_err() {
                        break;
                    }
                }
            }));
        }
        // Make sure the subscriptions reach the server before anyone is told the session exists.
        args.bus.client().flush().await?;
        // No session without its entry: a failure here fails the open, which frees the lease.
        let entry = match &args.resume {
            None => audit::Event::new(
                AuditKind::SessionOpened,
                json!({"token": lease.token, "node": args.node_id}),
            ),
            Some(resume) => audit::Event::new(
                AuditKind::SessionAdopted,
                json!({
                    "token": lease.token,
                    "node": args.node_id,
                    "previous_token": resume.previous_token,
                    "previous_node": resume.previous_node,
                    "reason": resume.reason,
                }),
            ),
        }
        .user(&lease.user)
        .device(&lease.device)
        .session(&lease.session);
        args.transfers.audit.record(&lease.tenant, entry).await?;
        tasks.push(myself.send_interval(Duration::from_secs(1), || SessionMsg::Tick));
        let (outbox, sending) = Outbox::start(
            args.bus.clone(),
            lease,
            args.leases.clone(),
            args.liveness.clone(),
            myself.clone(),
        );
        tasks.push(sending);
        tasks.push(renewal::start(
            args.leases.clone(),
            lease.clone(),
            Duration::from_millis(args.settings.lease_ttl_ms),
            myself.clone(),
        ));
        let timing = Timing {
            idle_timeout_ms: args.settings.idle_timeout_ms,
            max_held_output_bytes: args.settings.max_held_output_bytes,
        };
        let (core, resumed) = match args.resume.as_mut() {
            None => {
                tracing::info!(tenant = %lease.tenant, session = %lease.session, user = %lease.user, device = %lease.device, token = lease.token, "session opened");
                (SessionCore::new(timing, now_ms()), Vec::new())
            }
            Some(resume) => {
                tracing::info!(tenant = %lease.tenant, session = %lease.session, user = %lease.user, device = %lease.device, token = lease.token, previous_node = resume.previous_node, "session adopted");
                SessionCore::resume(timing, now_ms(), std::mem::take(&mut resume.history))
            }
        };
        Ok(SessionState {
            args,
            outbox,
            core,
            released: false,
            tasks,
            stop_reason: None,
            audited: HashSet::new(),
            writing: Vec::new(),
            end_recorded: false,
            moved: false,
            deferred: VecDeque::new(),
            resumed,
            spans: HashMap::new(),
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(resume) = &state.args.resume {
            let previous = resume.previous_token;
            let moved = takeover::move_transfers(
                &state.args.transfers,
                &state.args.lease,
                previous,
                &state.args.signer,
            )
            .await;
            if moved > 0 {
                tracing::info!(session = %state.args.lease.session, transfers = moved, "the session's transfers continue under its new token");
            }
        }
        for effect in std::mem::take(&mut state.resumed) {
            if let Some(next) = state.carry_out(&myself, effect).await {
                let _ = state.apply(&myself, next).await;
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if !state.args.liveness.is_current() {
            match msg {
                SessionMsg::Renewed(_) => {}
                SessionMsg::Tick => return Ok(()),
                _ => {
                    if state.deferred.len() < MAX_DEFERRED {
                        state.deferred.push_back((Instant::now(), msg));
                    }
                    return Ok(());
                }
            }
        }
        // Once this node proves it is alive again its replica shows any adoption: nothing kept
        // meanwhile is answered or acted on by an actor whose session moved.
        if !state.still_held(&myself).await {
            return Ok(());
        }
        // Boxed: a message's handling is a deep future (a putfile reaches the library and the
        // store), too big for a worker's stack when moved inline twice.
        while let Some((at, deferred)) = state.deferred.pop_front() {
            // A control request its requester stopped waiting for is asked again elsewhere.
            if matches!(deferred, SessionMsg::Control(_)) && at.elapsed() > STALE_CONTROL {
                continue;
            }
            Box::pin(state.handle_one(&myself, deferred)).await;
        }
        Box::pin(state.handle_one(&myself, msg)).await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        for task in &state.tasks {
            task.abort();
        }
        if state.moved {
            // The session lives on at its adopter: its lease, its story and its streams are
            // that node's now.
            tracing::info!(session = %state.args.lease.session, token = state.args.lease.token, "session moved to another node; this node stood down");
            return Ok(());
        }
        state.release().await;
        let reason = state.record_end().await;
        let lease = &state.args.lease;
        // Last on `.out`, after the end is on record: live streams of the session end with it.
        let ended = Body::SessionReply(SessionReply {
            body: Some(Reply::Ended(Empty {})),
        });
        let subject = bus::session_out(&lease.tenant, &lease.session);
        if let Err(error) = state.args.bus.publish(subject, &lease.tenant, ended).await {
            tracing::debug!(session = %lease.session, %error, "cannot publish the session's end");
        }
        tracing::info!(tenant = %lease.tenant, session = %lease.session, %reason, "session ended");
        Ok(())
    }
}

/// The registered name of session `session`'s actor.
fn actor_name(session: &str) -> String {
    format!("session-{session}")
}

/// Whether this node runs session `session`'s actor.
pub fn is_running_here(session: &str) -> bool {
    ractor::registry::where_is(actor_name(session)).is_some()
}

fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Error(wire::error_reply(code, message))
}

impl SessionState {
    fn tenant(&self) -> &str {
        &self.args.lease.tenant
    }

    async fn handle_one(&mut self, myself: &ActorRef<SessionMsg>, msg: SessionMsg) {
        match msg {
            SessionMsg::Control(message) => {
                let span = crate::trace::session_control(&message);
                // Boxed: wrapped in place, this large future is copied on the worker's stack.
                Box::pin(self.on_control(myself, message))
                    .instrument(span)
                    .await
            }
            SessionMsg::Event(message) => {
                let span = crate::trace::session_event(&message);
                Box::pin(self.on_event(myself, message))
                    .instrument(span)
                    .await
            }
            SessionMsg::Tick => {
                let _ = self.apply(myself, Event::Tick).await;
            }
            SessionMsg::OutputStored { id, reference } => {
                self.core.output_stored(&id, reference);
            }
            SessionMsg::Renewed(answer) => {
                if let Some(event) = self.renewed(myself, answer) {
                    let _ = self.apply(myself, event).await;
                }
            }
            SessionMsg::Sent { id, outcome } => {
                let _ = self.apply(myself, Event::Sent { id, outcome }).await;
            }
        }
    }

    /// Whether this node's replica still shows the lease under this actor's token; when it
    /// shows another, the actor stands down. The replica is never ahead of the authority, so a
    /// lease it shows moved has moved.
    async fn still_held(&mut self, myself: &ActorRef<SessionMsg>) -> bool {
        let lease = &self.args.lease;
        match self
            .args
            .leases
            .local_get(&lease.tenant, &lease.session)
            .await
        {
            Some(now) if now.token != lease.token => {
                self.stand_down(myself);
                false
            }
            _ => true,
        }
    }

    /// Stops this actor without a word: the session lives on at the node that adopted it. The
    /// outbox sends nothing meanwhile (it checks the replica before each order).
    fn stand_down(&mut self, myself: &ActorRef<SessionMsg>) {
        if !self.moved {
            self.moved = true;
            tracing::warn!(session = %self.args.lease.session, "another node adopted this session; standing down");
            myself.stop(Some("adopted by another node".into()));
        }
    }

    /// Records the session's end, once, after its commands' ends; answers why it ended.
    async fn record_end(&mut self) -> String {
        let reason = self
            .stop_reason
            .clone()
            .unwrap_or_else(|| "the node stopped".into());
        if self.end_recorded {
            return reason;
        }
        self.end_recorded = true;
        for writing in self.writing.drain(..) {
            let _ = writing.await;
        }
        let lease = &self.args.lease;
        let ended = audit::Event::new(AuditKind::SessionEnded, json!({"reason": reason}))
            .user(&lease.user)
            .device(&lease.device)
            .session(&lease.session);
        let log = &self.args.transfers.audit;
        match log.record(&lease.tenant, ended).await {
            Ok(_) => audit::checkpoint::now(log, &self.args.leases, &lease.tenant).await,
            Err(error) => {
                tracing::error!(session = %lease.session, %error, "cannot record the session's end")
            }
        }
        reason
    }

    async fn on_control(&mut self, myself: &ActorRef<SessionMsg>, message: async_nats::Message) {
        let request = match bus::decode(&message) {
            Ok((_, Body::SessionRequest(request))) => request,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(session = %self.args.lease.session, error = %e, "dropped a control message");
                return;
            }
        };
        let session = self.args.lease.session.clone();
        // Another analyst of the tenant gets the same answer as for a session that does not exist.
        let reply = if request.user != self.args.lease.user {
            error(ErrorCode::NotFound, format!("no session {session}"))
        } else {
            match request.op {
                Some(Op::Run(RunRequest {
                    command_line,
                    command_id,
                })) => self.submit(myself, command_id, command_line).await,
                Some(Op::Cancel(id)) => {
                    let cancel = Event::Cancel { id: id.clone() };
                    self.answer(myself, cancel, &id).await
                }
                Some(Op::Get(id)) => match self.core.command(&id) {
                    Some(record) => Reply::Command(record.to_wire()),
                    None => error(
                        ErrorCode::NotFound,
                        format!("no command {id} in session {session}"),
                    ),
                },
                Some(Op::List(_)) => Reply::Commands(CommandList {
                    commands: self
                        .core
                        .commands()
                        .map(CommandRecord::to_wire_listed)
                        .collect(),
                }),
                Some(Op::Describe(_)) => Reply::Session(self.info()),
                Some(Op::End(_)) => {
                    // The device is free, and the end on record, by the time the analyst hears
                    // the session ended.
                    let _ = self.apply(myself, Event::End).await;
                    self.record_end().await;
                    Reply::Ended(Empty {})
                }
                None => error(ErrorCode::InvalidRequest, "empty session request"),
            }
        };
        let tenant = self.tenant().to_string();
        let body = Body::SessionReply(SessionReply { body: Some(reply) });
        if let Err(e) = self.args.bus.reply(&message, &tenant, body).await {
            tracing::warn!(%session, error = %e, "cannot answer a control request");
        }
    }

    /// Queues `line` as command `id` (one the session picks when empty), or answers the command
    /// that id names already.
    async fn submit(&mut self, myself: &ActorRef<SessionMsg>, id: String, line: String) -> Reply {
        let id = if id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            id
        };
        let replayed = self.core.command(&id).is_some();
        if !replayed {
            // Recorded before anything is sent: a command the log cannot hold is not run.
            let lease = &self.args.lease;
            let submitted =
                audit::Event::new(AuditKind::CommandSubmitted, json!({"command_line": line}))
                    .user(&lease.user)
                    .device(&lease.device)
                    .session(&lease.session)
                    .command(&id);
            if let Err(e) = self
                .args
                .transfers
                .audit
                .record(&lease.tenant, submitted)
                .await
            {
                return error(ErrorCode::Unavailable, e.to_string());
            }
        }
        let span = tracing::Span::current();
        if !replayed && !span.is_none() {
            self.spans.insert(id.clone(), span);
        }
        let submit = Event::Submit {
            id: id.clone(),
            line,
        };
        let reply = self.answer(myself, submit, &id).await;
        if self.core.command(&id).is_none() {
            self.spans.remove(&id);
        }
        match reply {
            Reply::Command(command) => Reply::Submitted(Submitted {
                command: Some(command),
                replayed,
            }),
            other => other,
        }
    }

    /// Applies `event` and answers with command `id` as it then stands, or the refusal.
    async fn answer(&mut self, myself: &ActorRef<SessionMsg>, event: Event, id: &str) -> Reply {
        match self.apply(myself, event).await {
            Ok(()) => match self.core.command(id) {
                Some(record) => Reply::Command(record.to_wire()),
                None => error(
                    ErrorCode::NotFound,
                    format!("no command {id} in this session"),
                ),
            },
            Err(refusal) => error(refusal.code, refusal.message),
        }
    }

    /// Feeds `event` to the core and carries out its effects, feeding back what they report,
    /// until nothing is left to do. Only the first event can be refused.
    async fn apply(&mut self, myself: &ActorRef<SessionMsg>, event: Event) -> Result<(), Refusal> {
        let mut pending = VecDeque::from([event]);
        let mut first = true;
        while let Some(event) = pending.pop_front() {
            let effects = match self.core.handle(event, now_ms()) {
                Ok(effects) => effects,
                Err(refusal) if first => return Err(refusal),
                Err(refusal) => {
                    tracing::warn!(session = %self.args.lease.session, reason = %refusal.message, "a follow-up event was refused");
                    continue;
                }
            };
            first = false;
            for effect in effects {
                if let Some(next) = self.carry_out(myself, effect).await {
                    pending.push_back(next);
                }
            }
        }
        Ok(())
    }

    /// Carries out one effect; returns the event that reports its outcome, if it has one.
    async fn carry_out(&mut self, myself: &ActorRef<SessionMsg>, effect: Effect) -> Option<Event> {
        match effect {
            Effect::Send(id) => {
                // Its answer comes back as `SessionMsg::Sent`, unless it cannot even be queued.
                let queued = self.command_span(&id).in_scope(|| {
                    self.command_order(&id)
                        .and_then(|order| self.outbox.send(Kind::Command, id.clone(), order))
                });
                queued.err().map(|e| Event::Sent {
                    id,
                    outcome: Err(e),
                })
            }
            Effect::Resend(id) => {
                let queued = self
                    .command_order(&id)
                    .and_then(|order| self.outbox.send(Kind::Resend, id.clone(), order));
                if let Err(error) = queued {
                    tracing::warn!(command = %id, %error, "cannot re-send the running command");
                }
                None
            }
            Effect::SendCancel(id) => {
                if let Err(error) =
                    self.outbox
                        .send(Kind::Cancel, id.clone(), self.cancel_order(&id))
                {
                    tracing::warn!(command = %id, %error, "cancel did not reach the device");
                }
                None
            }
            Effect::RunOnBroker { id, action } => {
                let span = self.command_span(&id);
                let outcome = self.run_on_broker(action).instrument(span).await;
                Some(Event::BrokerDone { id, outcome })
            }
            Effect::Publish(id) => {
                self.spans.remove(&id);
                self.publish(&id).await;
                self.audit_end(myself, &id);
                None
            }
            Effect::ReleaseLease => {
                self.release().await;
                None
            }
            Effect::Stop(reason) => {
                tracing::info!(session = %self.args.lease.session, reason, "session stopping");
                self.stop_reason = Some(reason.to_string());
                myself.stop(Some(reason.into()));
                None
            }
        }
    }

    async fn on_event(&mut self, myself: &ActorRef<SessionMsg>, message: async_nats::Message) {
        let event = match bus::decode(&message) {
            Ok((_, Body::Result(result))) => Event::AgentResult(AgentResult {
                state: wire::state_of(result.status()),
                command_id: match self.command_of(&result.command_id) {
                    Some(id) => id.to_string(),
                    None => return,
                },
                output_json: result.output_json,
                error: result.error,
                cwd: result.cwd,
                file_facts: result.file_facts.map(wire::file_facts),
            }),
            // The device reconnected: the running command goes again; the agent will not run it twice.
            Ok((_, Body::DeviceOnline(_))) => Event::DeviceOnline,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(session = %self.args.lease.session, error = %e, "dropped an event");
                return;
            }
        };
        let _ = self.apply(myself, event).await;
    }

    /// Takes a renewal's answer: orders carry the new grant from now on; a lease under another
    /// token moved to another node, and this actor stands down; a lost lease ends the session
    /// ([`Event::LeaseLost`]).
    fn renewed(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        answer: Result<Granted, ClusterError>,
    ) -> Option<Event> {
        if let Err(ClusterError::Rejected(LeaseError::WrongToken { .. })) = &answer {
            self.stand_down(myself);
            return None;
        }
        let session = &self.args.lease.session;
        match answer {
            Ok(Granted { grant, .. }) => {
                if let Some(grant) = grant {
                    self.args.signer.renewed(grant);
                }
                None
            }
            Err(ClusterError::Rejected(e)) => {
                tracing::warn!(%session, error = %e, "lease lost; ending the session");
                Some(Event::LeaseLost)
            }
            Err(e) => {
                tracing::warn!(%session, error = %e, "lease renewal failed; retrying");
                None
            }
        }
    }

    async fn release(&mut self) {
        if self.released {
            return;
        }
        let lease = &self.args.lease;
        match self
            .args
            .leases
            .release(&lease.tenant, &lease.session, lease.token)
            .await
        {
            Ok(_) | Err(ClusterError::Rejected(_)) => self.released = true,
            Err(error) => {
                tracing::warn!(session = %lease.session, %error, "cannot release the lease; it will expire")
            }
        }
    }

    fn info(&self) -> SessionInfo {
        let lease = &self.args.lease;
        SessionInfo {
            session_id: lease.session.clone(),
            device: lease.device.clone(),
            user: lease.user.clone(),
            node_id: self.args.node_id,
            created_at_ms: lease.granted_at,
            cwd: self.core.cwd().to_string(),
            token: lease.token,
        }
    }

    /// The id the device knows command `id` by. Command ids are the client's choice and unique
    /// only within their session, while the device remembers (and replays) results by id across
    /// sessions: the session id in front keeps one analyst's id from reaching another's result.
    fn device_command_id(&self, id: &str) -> String {
        format!("{}.{id}", self.args.lease.session)
    }

    /// The command of this session a device's command id names.
    fn command_of<'a>(&self, device_command_id: &'a str) -> Option<&'a str> {
        device_command_id
            .strip_prefix(self.args.lease.session.as_str())?
            .strip_prefix('.')
    }

    /// The signed cancel of command `id`.
    fn cancel_order(&self, id: &str) -> Body {
        let lease = &self.args.lease;
        Body::Order(self.args.signer.sign(Action::Cancel(Cancel {
            command_id: self.device_command_id(id),
            session_id: lease.session.clone(),
            token: lease.token,
        })))
    }

    /// The span command `id` goes on in: the one that submitted it, or the current one.
    fn command_span(&self, id: &str) -> tracing::Span {
        self.spans
            .get(id)
            .cloned()
            .unwrap_or_else(tracing::Span::current)
    }

    /// The signed order that runs command `id` on the device.
    fn command_order(&self, id: &str) -> Result<Body, String> {
        let record = self
            .core
            .command(id)
            .ok_or_else(|| format!("no command {id}"))?;
        let lease = &self.args.lease;
        let request = CommandRequest {
            command_id: self.device_command_id(&record.id),
            session_id: lease.session.clone(),
            token: lease.token,
            command: record.command.clone(),
            args: record.args.clone(),
            cwd: record.cwd.clone(),
            timeout_ms: record.timeout_ms,
        };
        Ok(Body::Order(self.args.signer.sign(Action::Command(request))))
    }

    /// Records command `id`'s end once it has one: state, duration, error, output.
    fn audit_end(&mut self, myself: &ActorRef<SessionMsg>, id: &str) {
        let Some(record) = self.core.command(id) else {
            return;
        };
        if !record.state.is_terminal() || self.audited.contains(id) {
            return;
        }
        let lease = &self.args.lease;
        let mut event = audit::Event::new(
            AuditKind::CommandFinished,
            json!({
                "command_line": record.line,
                "state": record.state,
                "duration_ms": record.finished_at_ms.saturating_sub(record.started_at_ms),
                "error": record.error,
                "cwd": record.cwd,
            }),
        )
        .user(&lease.user)
        .device(&lease.device)
        .session(&lease.session)
        .command(id);
        if !record.output_json.is_empty() {
            // Reading the output needs the role running the command did.
            let role = commands::parse(&record.line)
                .map(|parsed| parsed.spec.role)
                .unwrap_or(access::Role::ResponderAdvanced);
            event = event.output(record.output_json.clone().into(), role);
        }
        self.audited.insert(id.to_owned());
        crate::metrics::command_finished(
            &record.command,
            record.state,
            Duration::from_millis(record.finished_at_ms.saturating_sub(record.submitted_at_ms)),
        );
        // Off the session's path: the command is done and its submission on record, so the
        // next command need not wait for this entry (and its output) to be written.
        // Once written, the session keeps the output's reference instead of the output.
        let log = self.args.transfers.audit.clone();
        let (tenant, session, id) = (lease.tenant.clone(), lease.session.clone(), id.to_owned());
        let me = myself.clone();
        self.writing.retain(|w| !w.is_finished());
        self.writing.push(tokio::spawn(async move {
            match log.record(&tenant, event).await {
                Ok(entry) => {
                    if let Some(reference) = entry.output_ref {
                        let _ = me.cast(SessionMsg::OutputStored { id, reference });
                    }
                }
                Err(error) => {
                    tracing::error!(%session, command = %id, %error, "cannot record a command's end");
                }
            }
        }));
    }

    async fn publish(&self, id: &str) {
        let Some(record) = self.core.command(id) else {
            return;
        };
        let tenant = self.tenant().to_string();
        let subject = bus::session_out(&tenant, &self.args.lease.session);
        if let Err(e) = self
            .args
            .bus
            .publish(subject, &tenant, Body::CommandUpdate(record.to_wire()))
            .await
        {
            tracing::debug!(command = %id, error = %e, "cannot publish a command update");
        }
    }

    /// Carries out a broker or transfer command; returns its output document, or why it failed.
    async fn run_on_broker(&self, action: BrokerAction) -> Result<String, String> {
        let context = &self.args.transfers;
        let lease = &self.args.lease;
        let who = Requester {
            tenant: &lease.tenant,
            user: &lease.user,
            session: &lease.session,
            device: &lease.device,
            token: lease.token,
            signer: &self.args.signer,
        };
        match action {
            BrokerAction::ListLibrary => transfers::library_listing(context, &lease.tenant).await,
            BrokerAction::Putfile {
                name,
                keep,
                overwrite,
            } => transfers::start_putfile(context, &who, &name, keep, overwrite).await,
            BrokerAction::Getfile(facts) => transfers::start_getfile(context, &who, &facts).await,
        }
    }
}
