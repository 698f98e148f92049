//! `SessionActor`: one live response session, on the node it was opened through.
//!
//! It owns the session's lease (acquired by [`open`], renewed every third of its TTL, released
//! when the session ends), its working directory, and its command queue: one command runs at a
//! time, as in the seed. Any node reaches it on `lr.<tenant>.sess.<id>.ctl`; results come back on
//! `.evt`; every state change is published on `.out` for live streams. When the device reconnects
//! (`.online`), the running command is sent again with the same id, which the agent answers from
//! its cache if it already ran it.

mod record;
mod transfers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use agent_proto::agent::{Cancel, CommandRequest};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{CommandList, Empty, Error, SessionInfo, SessionReply};
use cluster::lease::{AcquireRequest, Lease};
use cluster::{ClusterError, LeaseService};
use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use record::{CommandRecord, CommandState};

use super::now_ms;
use crate::actors::transfer::TransferContext;
use crate::bus::{self, Bus, BusError};
use crate::config::SessionsSection;
use transfers::{FileFacts, Requester};

/// How long a command dispatch waits for the device's node to take it.
const DISPATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Commands a session remembers; the oldest finished ones are forgotten first.
const MAX_COMMANDS: usize = 1000;
/// Grace beyond a command's own timeout before the broker gives up on the agent's answer.
const RESULT_GRACE_MS: u64 = 30_000;
/// Files whose fileinfo a session remembers for getfile.
const MAX_FILE_FACTS: usize = 1000;

pub struct SessionActor;

pub enum SessionMsg {
    Control(async_nats::Message),
    Event(async_nats::Message),
    Tick,
}

pub struct SessionArgs {
    pub node_id: u64,
    pub lease: Lease,
    pub bus: Bus,
    pub leases: LeaseService,
    pub settings: SessionsSection,
    pub transfers: TransferContext,
}

pub struct SessionState {
    args: SessionArgs,
    cwd: String,
    commands: BTreeMap<String, CommandRecord>,
    queue: VecDeque<String>,
    running: Option<String>,
    /// What fileinfo reported, by absolute path: getfile's prerequisite.
    file_facts: HashMap<String, FileFacts>,
    last_activity: Instant,
    last_renewal: Instant,
    /// Set once the lease is released, so it is released exactly once.
    released: bool,
    tasks: Vec<JoinHandle<()>>,
}

/// Who opens a session, and on what.
pub struct OpenRequest {
    pub tenant: String,
    pub user: String,
    pub device: String,
}

/// Acquires the lease and starts the session's actor under `supervisor`.
pub async fn open(
    request: OpenRequest,
    node_id: u64,
    bus: Bus,
    leases: LeaseService,
    settings: SessionsSection,
    transfers: TransferContext,
    supervisor: ActorCell,
) -> Result<Lease, ClusterError> {
    let lease = leases
        .acquire(AcquireRequest {
            session: uuid::Uuid::now_v7().to_string(),
            tenant: request.tenant,
            user: request.user,
            device: request.device,
            node: node_id,
            ttl_ms: settings.lease_ttl_ms,
        })
        .await?;
    let args = SessionArgs {
        node_id,
        lease: lease.clone(),
        bus,
        leases: leases.clone(),
        settings,
        transfers,
    };
    if let Err(error) = Actor::spawn_linked(None, SessionActor, args, supervisor).await {
        tracing::error!(session = %lease.session, %error, "cannot start a session actor; releasing its lease");
        let _ = leases
            .release(&lease.tenant, &lease.session, lease.token)
            .await;
        return Err(ClusterError::Fatal(format!(
            "cannot start the session: {error}"
        )));
    }
    Ok(lease)
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
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
        tasks.push(myself.send_interval(Duration::from_secs(1), || SessionMsg::Tick));
        tracing::info!(tenant = %lease.tenant, session = %lease.session, user = %lease.user, device = %lease.device, token = lease.token, "session opened");
        Ok(SessionState {
            args,
            cwd: "/".into(),
            commands: BTreeMap::new(),
            queue: VecDeque::new(),
            running: None,
            file_facts: HashMap::new(),
            last_activity: Instant::now(),
            last_renewal: Instant::now(),
            released: false,
            tasks,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::Control(message) => state.on_control(&myself, message).await,
            SessionMsg::Event(message) => state.on_event(message).await,
            SessionMsg::Tick => state.on_tick(&myself).await,
        }
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
        state.release().await;
        let lease = &state.args.lease;
        tracing::info!(tenant = %lease.tenant, session = %lease.session, "session ended");
        Ok(())
    }
}

fn error(code: &str, message: impl Into<String>) -> Reply {
    Reply::Error(Error {
        code: code.into(),
        message: message.into(),
    })
}

impl SessionState {
    fn tenant(&self) -> &str {
        &self.args.lease.tenant
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
            error("not_found", format!("no session {session}"))
        } else {
            match request.op {
                Some(Op::Run(line)) => self.run(line).await,
                Some(Op::Cancel(id)) => self.cancel(&id).await,
                Some(Op::Get(id)) => match self.commands.get(&id) {
                    Some(record) => Reply::Command(record.to_wire()),
                    None => error("not_found", format!("no command {id} in session {session}")),
                },
                Some(Op::List(_)) => Reply::Commands(CommandList {
                    commands: self.commands.values().map(CommandRecord::to_wire).collect(),
                }),
                Some(Op::Describe(_)) => Reply::Session(self.info()),
                Some(Op::End(_)) => {
                    // The device is free by the time the analyst hears the session ended.
                    self.release().await;
                    myself.stop(Some("ended by the analyst".into()));
                    Reply::Ended(Empty {})
                }
                None => error("invalid_request", "empty session request"),
            }
        };
        let tenant = self.tenant().to_string();
        let body = Body::SessionReply(SessionReply { body: Some(reply) });
        if let Err(e) = self.args.bus.reply(&message, &tenant, body).await {
            tracing::warn!(%session, error = %e, "cannot answer a control request");
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
            cwd: self.cwd.clone(),
            token: lease.token,
        }
    }

    async fn run(&mut self, line: String) -> Reply {
        self.last_activity = Instant::now();
        let invocation = match commands::parse(&line) {
            Ok(invocation) => invocation,
            Err(e) => return error("invalid_request", e.to_string()),
        };
        let spec = invocation.spec;
        if spec.runs == commands::Runs::Console {
            return error(
                "invalid_request",
                format!("{} runs in the console, not on the device", spec.name),
            );
        }
        if invocation.redirect.is_some() {
            return error(
                "invalid_request",
                "writing output to a file (> file) is done by the console; remove it here",
            );
        }
        let mut record = CommandRecord {
            id: uuid::Uuid::now_v7().to_string(),
            line,
            command: spec.name.to_string(),
            args: invocation.device_args(),
            timeout_ms: u32::try_from(spec.timeout.as_millis()).unwrap_or(u32::MAX),
            state: CommandState::Queued,
            output_json: String::new(),
            error: String::new(),
            cwd: self.cwd.clone(),
            submitted_at_ms: now_ms(),
            started_at_ms: 0,
            finished_at_ms: 0,
            then_getfile: false,
        };
        if matches!(spec.runs, commands::Runs::Broker | commands::Runs::Transfer) {
            // Done at once, without the device's queue; `getfile -auto` queues its fileinfo.
            if let Some(outcome) = self.run_on_broker(&invocation, &mut record).await {
                let (state, output, error) = match outcome {
                    Ok(output) => (CommandState::Completed, output, String::new()),
                    Err(error) => (CommandState::Failed, String::new(), error),
                };
                record.state = state;
                record.output_json = output;
                record.error = error;
                record.started_at_ms = record.submitted_at_ms;
                record.finished_at_ms = now_ms();
                let reply = Reply::Command(record.to_wire());
                let id = record.id.clone();
                self.commands.insert(id.clone(), record);
                self.forget_old_commands();
                self.publish(&id).await;
                return reply;
            }
        }
        let reply = Reply::Command(record.to_wire());
        self.queue.push_back(record.id.clone());
        self.commands.insert(record.id.clone(), record);
        self.forget_old_commands();
        self.dispatch().await;
        reply
    }

    async fn cancel(&mut self, id: &str) -> Reply {
        self.last_activity = Instant::now();
        let Some(record) = self.commands.get(id) else {
            return error("not_found", format!("no command {id} in this session"));
        };
        match record.state {
            CommandState::Queued => {
                self.queue.retain(|q| q != id);
                self.finish(
                    id,
                    CommandState::Cancelled,
                    String::new(),
                    "cancelled before it started".into(),
                    None,
                )
                .await;
            }
            CommandState::Running => {
                let tenant = self.tenant().to_string();
                let subject = bus::device_cmd(&tenant, &self.args.lease.device);
                let cancel = Body::Cancel(Cancel {
                    command_id: id.to_string(),
                });
                if let Err(e) = self
                    .args
                    .bus
                    .request(subject, &tenant, cancel, DISPATCH_TIMEOUT)
                    .await
                {
                    tracing::warn!(command = %id, error = %e, "cancel did not reach the device");
                }
            }
            _ => {}
        }
        Reply::Command(self.commands[id].to_wire())
    }

    async fn on_event(&mut self, message: async_nats::Message) {
        match bus::decode(&message) {
            Ok((_, Body::Result(result))) => {
                if self.running.as_deref() != Some(result.command_id.as_str()) {
                    return;
                }
                let mut state = CommandState::of(result.status());
                let cwd = (state == CommandState::Completed && !result.cwd.is_empty())
                    .then_some(result.cwd);
                let (mut output, mut error) = (result.output_json, result.error);
                let record = &self.commands[&result.command_id];
                if state == CommandState::Completed
                    && (record.command == "fileinfo" || record.then_getfile)
                    && let Some(facts) = FileFacts::from_fileinfo(&output)
                {
                    self.remember(facts);
                }
                if self.commands[&result.command_id].then_getfile {
                    (state, output, error) = self
                        .getfile_after_fileinfo(&result.command_id, state, &output, error)
                        .await;
                }
                self.finish(&result.command_id, state, output, error, cwd)
                    .await;
                self.dispatch().await;
            }
            // The device reconnected: send the running command again; the agent will not run it twice.
            Ok((_, Body::DeviceOnline(_))) => {
                if let Some(id) = self.running.clone()
                    && let Err(e) = self.send(&id).await
                {
                    tracing::warn!(command = %id, error = %e, "cannot re-send the running command");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(session = %self.args.lease.session, error = %e, "dropped an event")
            }
        }
    }

    async fn on_tick(&mut self, myself: &ActorRef<SessionMsg>) {
        let settings = &self.args.settings;
        if self.running.is_none()
            && self.last_activity.elapsed() > Duration::from_millis(settings.idle_timeout_ms)
        {
            tracing::info!(session = %self.args.lease.session, "session idle too long; ending it");
            myself.stop(Some("idle timeout".into()));
            return;
        }
        if self.last_renewal.elapsed() >= Duration::from_millis(settings.lease_ttl_ms / 3) {
            let lease = &self.args.lease;
            match self
                .args
                .leases
                .renew(&lease.tenant, &lease.session, lease.token)
                .await
            {
                Ok(_) => self.last_renewal = Instant::now(),
                Err(ClusterError::Rejected(e)) => {
                    tracing::warn!(session = %lease.session, error = %e, "lease lost; ending the session");
                    myself.stop(Some("lease lost".into()));
                    return;
                }
                Err(e) => {
                    tracing::warn!(session = %lease.session, error = %e, "lease renewal failed; retrying")
                }
            }
        }
        // An agent that never answers does not hold the queue forever.
        if let Some(id) = self.running.clone() {
            let record = &self.commands[&id];
            if now_ms().saturating_sub(record.started_at_ms)
                > u64::from(record.timeout_ms) + RESULT_GRACE_MS
            {
                let message = "the device did not answer within the command's timeout".to_string();
                self.finish(&id, CommandState::TimedOut, String::new(), message, None)
                    .await;
                self.dispatch().await;
            }
        }
    }

    /// Starts the next queued command if none is running.
    async fn dispatch(&mut self) {
        while self.running.is_none() {
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            if let Some(record) = self.commands.get_mut(&id) {
                record.state = CommandState::Running;
                record.started_at_ms = now_ms();
                record.cwd = self.cwd.clone();
            }
            self.running = Some(id.clone());
            match self.send(&id).await {
                Ok(()) => self.publish(&id).await,
                Err(message) => {
                    self.finish(&id, CommandState::Failed, String::new(), message, None)
                        .await
                }
            }
        }
    }

    /// Hands a command to the node holding the device's stream.
    async fn send(&self, id: &str) -> Result<(), String> {
        let record = &self.commands[id];
        let lease = &self.args.lease;
        let request = CommandRequest {
            command_id: record.id.clone(),
            session_id: lease.session.clone(),
            token: lease.token,
            command: record.command.clone(),
            args: record.args.clone(),
            cwd: record.cwd.clone(),
            timeout_ms: record.timeout_ms,
        };
        let subject = bus::device_cmd(&lease.tenant, &lease.device);
        match self
            .args
            .bus
            .request(
                subject,
                &lease.tenant,
                Body::Command(request),
                DISPATCH_TIMEOUT,
            )
            .await
        {
            Ok(Body::Ack(ack)) if ack.error_code.is_empty() => Ok(()),
            Ok(Body::Ack(ack)) => Err(ack.error),
            Ok(_) => Err("unexpected answer from the device's node".into()),
            Err(BusError::NoResponders(_)) => Err(format!(
                "device {} is offline (no agent connected); wait for it to reconnect and run the command again",
                lease.device
            )),
            Err(e) => Err(format!(
                "the command could not be sent to device {}: {e}",
                lease.device
            )),
        }
    }

    async fn finish(
        &mut self,
        id: &str,
        state: CommandState,
        output_json: String,
        error: String,
        cwd: Option<String>,
    ) {
        if let Some(cwd) = cwd {
            self.cwd = cwd;
        }
        if let Some(record) = self.commands.get_mut(id) {
            record.state = state;
            record.output_json = output_json;
            record.error = error;
            record.cwd = self.cwd.clone();
            record.finished_at_ms = now_ms();
        }
        if self.running.as_deref() == Some(id) {
            self.running = None;
        }
        self.publish(id).await;
    }

    async fn publish(&self, id: &str) {
        let Some(record) = self.commands.get(id) else {
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

    /// Runs a broker command. `None` means it was turned into a device command to queue
    /// (`getfile -auto` runs `fileinfo` first).
    async fn run_on_broker(
        &mut self,
        invocation: &commands::Invocation,
        record: &mut CommandRecord,
    ) -> Option<Result<String, String>> {
        let value = |name: &str| {
            invocation
                .values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let flag = |name: &str| invocation.flags.contains(&name);
        let context = self.args.transfers.clone();
        let lease = &self.args.lease;
        let who = Requester {
            tenant: &lease.tenant,
            user: &lease.user,
            session: &lease.session,
            device: &lease.device,
            token: lease.token,
        };
        match invocation.spec.name {
            "library" => Some(transfers::library_listing(&context, &lease.tenant).await),
            "putfile" => Some(
                transfers::start_putfile(
                    &context,
                    &who,
                    &value("name"),
                    flag("keep"),
                    flag("overwrite"),
                )
                .await,
            ),
            _ => {
                let path = transfers::resolve(&self.cwd, &value("path"));
                if flag("auto") {
                    record.command = "fileinfo".into();
                    record.args = vec!["-path".into(), path];
                    record.then_getfile = true;
                    return None;
                }
                Some(match self.file_facts.get(&path) {
                    Some(facts) => transfers::start_getfile(&context, &who, facts).await,
                    None => Err(format!(
                        "getfile needs the size and SHA-256 of {path} first: run `fileinfo {}` or add -auto",
                        commands::quote(&path)
                    )),
                })
            }
        }
    }

    /// The fileinfo of `getfile -auto` finished: start the transfer, or say why not.
    async fn getfile_after_fileinfo(
        &mut self,
        id: &str,
        state: CommandState,
        fileinfo_output: &str,
        error: String,
    ) -> (CommandState, String, String) {
        if state != CommandState::Completed {
            return (state, String::new(), format!("fileinfo failed: {error}"));
        }
        let Some(facts) = FileFacts::from_fileinfo(fileinfo_output) else {
            return (
                CommandState::Failed,
                String::new(),
                format!("fileinfo gave no size or path for command {id}; run fileinfo to see why"),
            );
        };
        let lease = &self.args.lease;
        let who = Requester {
            tenant: &lease.tenant,
            user: &lease.user,
            session: &lease.session,
            device: &lease.device,
            token: lease.token,
        };
        match transfers::start_getfile(&self.args.transfers, &who, &facts).await {
            Ok(output) => (CommandState::Completed, output, String::new()),
            Err(error) => (CommandState::Failed, String::new(), error),
        }
    }

    fn remember(&mut self, facts: FileFacts) {
        if self.file_facts.len() >= MAX_FILE_FACTS {
            self.file_facts.clear();
        }
        self.file_facts.insert(facts.path.clone(), facts);
    }

    fn forget_old_commands(&mut self) {
        while self.commands.len() > MAX_COMMANDS {
            let oldest_finished = self
                .commands
                .iter()
                .find(|(_, r)| r.state.is_terminal())
                .map(|(id, _)| id.clone());
            match oldest_finished {
                Some(id) => {
                    self.commands.remove(&id);
                }
                None => break,
            }
        }
    }
}
