//! `TransferActor`: drives one file transfer, on the node that owns it.
//!
//! getfile: the actor asks the device's node for a window of chunks (`ChunkRequest` on the
//! device's subject); that node takes the chunks off the agent's stream, stores each in the
//! [`ChunkStore`] and tells the owner (`chunk_stored` on `lr.<t>.xfer.<id>.evt`). When the window
//! is stored the actor asks for the next one; when every chunk is stored it reads the file back
//! through SHA-256 and only then calls the transfer complete.
//!
//! putfile: the actor offers the file to the agent, which answers how many chunks it holds; the
//! actor reads chunks from the library blob and sends them a window ahead of the agent's progress.
//!
//! A cancel reaches the owner on `lr.<t>.xfer.<id>.ctl` ([`super::cancel`]): the actor ends the
//! transfer as any other end ([`end`]: record the outcome, tell the device, delete a getfile's
//! chunks), answers, and stops.
//!
//! Progress is checkpointed in the [`TransferBook`] every second; each write is a compare-and-set
//! on the record's revision. Another node takes a transfer over when its record has not been
//! written for [`super::upkeep::STALE_AFTER`] ([`super::upkeep`], which also deletes finished transfers after
//! their retention); the old owner's next write then fails and it stops. A new owner resumes getfile from the contiguous chunks already stored, so the agent
//! re-sends at most the one window that was in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use agent_proto::agent::command_result::Status;
use agent_proto::agent::{ChunkRequest, PutChunk};
use agent_proto::bus::envelope::Body;
use agent_proto::bus::transfer_event::Event;
use agent_proto::bus::{self as bus_proto, Ack};
use api_model::{AuditKind, ErrorCode};
use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{
    BookError, ChunkStore, StoreError, TransferBook, TransferKind, TransferState, Versioned,
};
use crate::bus::{self, Bus, BusError};
use crate::config::{TenantSection, TransfersSection};
use crate::orders;
use crate::time::now_ms;
use crate::transfer::cancel::CANCELLED;
use crate::transfer::library::Library;
use crate::wire;

/// How long a window may go without progress before it is asked for again.
const STALL: Duration = Duration::from_secs(10);
/// How long a request to the device's node may take.
const DEVICE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the owner writes its record even without progress (its heartbeat).
const HEARTBEAT: Duration = Duration::from_secs(1);
// A request to the device's node waits inside the handler: with the heartbeat after it, it
// must end well before another node thinks the owner gone and takes the transfer over.
const _: () = assert!(
    DEVICE_TIMEOUT.as_millis() + 2 * HEARTBEAT.as_millis() < super::upkeep::STALE_AFTER.as_millis()
);
/// How long to wait before asking an agent that answered `Busy` again.
const BUSY_RETRY: Duration = Duration::from_millis(500);

/// What every transfer of a node shares: where data and records live, and the limits.
#[derive(Clone)]
pub struct TransferContext {
    pub node_id: u64,
    pub bus: Bus,
    pub store: ChunkStore,
    pub book: TransferBook,
    pub library: Library,
    pub settings: TransfersSection,
    /// getfile size limits of tenants that do not use the default.
    /// Tenants' own limits, where they set them.
    pub tenants: Arc<BTreeMap<String, TenantSection>>,
    pub supervisor: ActorCell,
    /// Where sessions, commands and transfers are recorded.
    pub audit: crate::audit::AuditLog,
    /// The lease authority: whose session holds a device.
    pub leases: cluster::LeaseService,
}

impl TransferContext {
    pub fn max_getfile_bytes(&self, tenant: &str) -> u64 {
        self.tenants
            .get(tenant)
            .and_then(|t| t.max_getfile_bytes)
            .unwrap_or(self.settings.max_getfile_bytes)
    }

    pub fn max_store_bytes(&self, tenant: &str) -> u64 {
        self.tenants
            .get(tenant)
            .and_then(|t| t.max_store_bytes)
            .unwrap_or(self.settings.max_tenant_store_bytes)
    }

    /// What `tenant` may still store: its quota less its fetched files (every getfile not yet
    /// deleted, counted whole) and its library.
    pub async fn store_room(&self, tenant: &str) -> Result<u64, String> {
        let fetched: u64 = self
            .book
            .list(tenant)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .filter(|r| r.kind == TransferKind::Getfile)
            .map(|r| r.size)
            .sum();
        let library: u64 = self
            .library
            .list(tenant)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|e| e.size)
            .sum();
        Ok(self
            .max_store_bytes(tenant)
            .saturating_sub(fetched.saturating_add(library)))
    }

    pub fn chunk_size(&self) -> u64 {
        u64::from(self.settings.chunk_size)
    }
}

/// The local actor's name for a transfer: at most one per node.
fn actor_name(id: &str) -> String {
    format!("transfer-{id}")
}

/// Whether this node runs the actor of transfer `id`.
pub fn is_driven_here(id: &str) -> bool {
    ractor::registry::where_is(actor_name(id)).is_some()
}

/// Starts the actor of a transfer this node owns (the record says so at `revision`).
pub async fn drive(context: &TransferContext, owned: Versioned) -> Result<(), ActorProcessingErr> {
    let name = actor_name(&owned.record.id);
    let args = TransferArgs {
        context: context.clone(),
        owned,
    };
    Actor::spawn_linked(Some(name), TransferActor, args, context.supervisor.clone()).await?;
    Ok(())
}

pub struct TransferActor;

pub enum TransferMsg {
    Start,
    Event(async_nats::Message),
    /// A request on the transfer's control subject (a cancel).
    Control(async_nats::Message),
    DeviceOnline,
    Tick,
    Verified(Result<(), StoreError>),
}

pub struct TransferArgs {
    context: TransferContext,
    owned: Versioned,
}

pub struct TransferRun {
    context: TransferContext,
    owned: Versioned,
    /// getfile: chunks at or past `chunks_done` stored out of order.
    stored: BTreeSet<u64>,
    /// One past the last chunk asked for (getfile) or sent (putfile).
    sent_up_to: u64,
    last_progress: Instant,
    /// When a chunk last moved the transfer forward (or it was taken up here), and what has
    /// stood in its way since: past `transfers.max_stall_secs` it ends failed with that reason.
    last_advance: Instant,
    obstacle: Option<String>,
    /// Since when the store has refused this transfer's chunks as full, none stored since: past
    /// `transfers.max_store_full_secs` it ends failed.
    store_full_since: Option<Instant>,
    /// When to ask again after the agent answered `Busy`.
    retry_at: Option<Instant>,
    last_written: Instant,
    changed: bool,
    verifying: bool,
    /// Why the transfer can no longer be carried out, found while talking to the device's node;
    /// it ends as failed once the current message is handled.
    refused: Option<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Actor for TransferActor {
    type Msg = TransferMsg;
    type State = TransferRun;
    type Arguments = TransferArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TransferMsg>,
        args: TransferArgs,
    ) -> Result<TransferRun, ActorProcessingErr> {
        let record = &args.owned.record;
        let bus = &args.context.bus;
        let mut tasks = Vec::new();
        let mut events = bus
            .subscribe(bus::transfer_evt(&record.tenant, &record.id))
            .await?;
        let me = myself.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(message) = events.next().await {
                if me.cast(TransferMsg::Event(message)).is_err() {
                    break;
                }
            }
        }));
        let mut control = bus
            .subscribe(bus::transfer_ctl(&record.tenant, &record.id))
            .await?;
        let me = myself.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(message) = control.next().await {
                if me.cast(TransferMsg::Control(message)).is_err() {
                    break;
                }
            }
        }));
        let mut online = bus
            .subscribe(bus::device_online(&record.tenant, &record.device))
            .await?;
        let me = myself.clone();
        tasks.push(tokio::spawn(async move {
            while online.next().await.is_some() {
                if me.cast(TransferMsg::DeviceOnline).is_err() {
                    break;
                }
            }
        }));
        bus.client().flush().await?;
        tasks.push(myself.send_interval(HEARTBEAT, || TransferMsg::Tick));
        myself.cast(TransferMsg::Start)?;
        tracing::info!(tenant = %record.tenant, transfer = %record.id, kind = ?record.kind, node = args.context.node_id, done = record.chunks_done, chunks = record.chunks(), "driving transfer");
        Ok(TransferRun {
            context: args.context,
            owned: args.owned,
            stored: BTreeSet::new(),
            sent_up_to: 0,
            last_progress: Instant::now(),
            last_advance: Instant::now(),
            obstacle: None,
            store_full_since: None,
            retry_at: None,
            last_written: Instant::now(),
            changed: false,
            verifying: false,
            refused: None,
            tasks,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TransferMsg>,
        msg: TransferMsg,
        run: &mut TransferRun,
    ) -> Result<(), ActorProcessingErr> {
        if run.owned.record.state.is_terminal() && !matches!(msg, TransferMsg::Control(_)) {
            // Ended and stopping: only a cancel still gets its answer.
            return Ok(());
        }
        let outcome = match msg {
            TransferMsg::Start => run.start(&myself).await,
            TransferMsg::Control(message) => run.on_control(message).await,
            TransferMsg::Event(message) => run.on_event(&myself, message).await,
            TransferMsg::DeviceOnline => run.resume().await,
            TransferMsg::Tick => run.on_tick(&myself).await,
            TransferMsg::Verified(result) => run.on_verified(result).await,
        };
        let outcome = match (outcome, run.refused.take()) {
            (Ok(()), Some(error)) => run.finish(TransferState::Failed, error).await,
            (outcome, _) => outcome,
        };
        match outcome {
            Ok(()) if run.owned.record.state.is_terminal() => myself.stop(None),
            Ok(()) => {}
            Err(BookError::Superseded(_)) => {
                tracing::info!(transfer = %run.owned.record.id, "another node drives this transfer now; stopping");
                myself.stop(Some("superseded".into()));
            }
            Err(error) => {
                tracing::warn!(transfer = %run.owned.record.id, %error, "cannot record transfer progress; will retry");
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TransferMsg>,
        run: &mut TransferRun,
    ) -> Result<(), ActorProcessingErr> {
        for task in &run.tasks {
            task.abort();
        }
        Ok(())
    }
}

impl TransferRun {
    fn kind(&self) -> TransferKind {
        self.owned.record.kind
    }

    async fn start(&mut self, myself: &ActorRef<TransferMsg>) -> Result<(), BookError> {
        if self.owned.record.state == TransferState::Verifying {
            return self.verify(myself).await;
        }
        match self.kind() {
            TransferKind::Getfile => {
                let r = &self.owned.record;
                match self.context.store.contiguous_count(&r.tenant, &r.id).await {
                    Ok(done) => self.owned.record.chunks_done = done.min(r.chunks()),
                    Err(error) => {
                        tracing::warn!(transfer = %r.id, %error, "cannot read stored chunks; resuming from the checkpoint")
                    }
                }
                self.changed = true;
                if self.owned.record.chunks_done >= self.owned.record.chunks() {
                    return self.verify(myself).await;
                }
                self.request_window().await;
            }
            TransferKind::Putfile => self.offer().await,
            TransferKind::Unknown => {
                // A record written by a newer broker, of a kind this one cannot drive.
                let error = "a transfer of a kind this broker does not know; run it again";
                return self.finish(TransferState::Failed, error.into()).await;
            }
        }
        self.write().await
    }

    /// Whether the device's lease, as this node's replica has it, is this transfer's session
    /// under the token its ticket carries: then a stale-token refusal was meant for an older
    /// ticket of the same session.
    async fn ticket_is_current(&self) -> bool {
        let r = &self.owned.record;
        let (lease, _) = self
            .context
            .leases
            .local_by_device(&r.tenant, &r.device)
            .await;
        lease.is_some_and(|l| l.session == r.session && l.token == r.token)
    }

    /// Asks again from where the transfer stands: after a reconnect, a refusal or a stall.
    async fn resume(&mut self) -> Result<(), BookError> {
        if self.verifying || self.owned.record.state.is_terminal() {
            return Ok(());
        }
        match self.kind() {
            TransferKind::Getfile => self.request_window().await,
            TransferKind::Putfile => self.offer().await,
            TransferKind::Unknown => {}
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        myself: &ActorRef<TransferMsg>,
        message: async_nats::Message,
    ) -> Result<(), BookError> {
        let event = match bus::decode(&message) {
            Ok((_, Body::TransferEvent(event))) if event.transfer_id == self.owned.record.id => {
                event
            }
            Ok(_) => return Ok(()),
            Err(error) => {
                tracing::warn!(transfer = %self.owned.record.id, %error, "dropped a transfer event");
                return Ok(());
            }
        };
        if event.device != self.owned.record.device {
            // Another agent of the tenant naming this transfer: it cannot end or advance it.
            tracing::warn!(transfer = %self.owned.record.id, device = %self.owned.record.device, from = %event.device, "ignored a transfer event from another device");
            return Ok(());
        }
        if self.verifying || self.owned.record.state.is_terminal() {
            return Ok(());
        }
        match event.event {
            Some(Event::ChunkStored(index)) => {
                self.store_full_since = None;
                let done = self.owned.record.chunks_done;
                if index >= done {
                    self.stored.insert(index);
                }
                self.advance_stored();
                if self.owned.record.chunks_done >= self.owned.record.chunks() {
                    return self.verify(myself).await;
                }
                if self.owned.record.chunks_done >= self.sent_up_to {
                    self.request_window().await;
                }
            }
            Some(Event::ChunkRefused(refused)) if refused.store_failed => {
                // Asked again when the window stalls; the store may take it by then.
                if refused.store_full {
                    self.store_full_since.get_or_insert_with(Instant::now);
                }
                self.obstacle = Some(refused.reason);
            }
            Some(Event::ChunkRefused(refused)) => {
                tracing::warn!(transfer = %self.owned.record.id, index = refused.index, reason = %refused.reason, "chunk refused; asking for it again");
                crate::metrics::chunk_retry("refused");
                self.obstacle = Some(format!(
                    "chunk {} was refused: {}",
                    refused.index, refused.reason
                ));
                if refused.index >= self.owned.record.chunks_done {
                    self.request_window().await;
                }
            }
            Some(Event::PutProgress(progress)) => {
                let before = self.owned.record.chunks_done;
                self.owned.record.chunks_done = progress.received.min(self.owned.record.chunks());
                if self.owned.record.chunks_done != before {
                    self.changed = true;
                    self.last_progress = Instant::now();
                    self.advanced();
                } else if self.sent_up_to > before && progress.received == before {
                    // The agent refused a chunk (or lost its partial file): send from there again.
                    self.sent_up_to = before;
                }
                self.send_put_chunks().await;
            }
            Some(Event::Ended(ended)) => {
                let status = ended.status();
                if status == Status::Busy {
                    // The agent sends a few windows at once, all transfers together.
                    tracing::info!(transfer = %self.owned.record.id, "the agent is busy; asking again shortly");
                    self.last_progress = Instant::now();
                    self.retry_at = Some(Instant::now() + BUSY_RETRY);
                } else if status == Status::Ok {
                    if self.kind() == TransferKind::Putfile {
                        self.owned.record.path = ended.path;
                        self.owned.record.chunks_done = self.owned.record.chunks();
                        return self.finish(TransferState::Completed, String::new()).await;
                    }
                } else if status == Status::StaleToken && self.ticket_is_current().await {
                    // A window of the ticket this one replaced stopped as the session's new
                    // token reached the agent (the session moved to another node): ask again.
                    tracing::info!(transfer = %self.owned.record.id, "an older ticket's window stopped; asking again under the current one");
                    self.resume().await?;
                } else {
                    let error = if status == Status::StaleToken {
                        format!(
                            "a newer session holds device {} now, so the transfer stopped: {}",
                            self.owned.record.device, ended.error
                        )
                    } else {
                        ended.error
                    };
                    return self.finish(TransferState::Failed, error).await;
                }
            }
            None => {}
        }
        Ok(())
    }

    async fn on_tick(&mut self, myself: &ActorRef<TransferMsg>) -> Result<(), BookError> {
        if self.owned.record.state.is_terminal() {
            return Ok(());
        }
        let max_stall = Duration::from_secs(self.context.settings.max_stall_secs);
        if !self.verifying && self.last_advance.elapsed() > max_stall {
            let why = self.obstacle.clone().unwrap_or_else(|| {
                format!(
                    "device {} did not send or take any chunk",
                    self.owned.record.device
                )
            });
            let error = format!(
                "no progress for {} s, so the transfer stopped: {why}; run it again when that is fixed",
                max_stall.as_secs()
            );
            return self.finish(TransferState::Failed, error).await;
        }
        let max_store_full = Duration::from_secs(self.context.settings.max_store_full_secs);
        if let Some(since) = self.store_full_since
            && since.elapsed() > max_store_full
        {
            let why = self.obstacle.clone().unwrap_or_default();
            let error = format!(
                "the store refused this transfer's chunks for {} s, so it stopped and what it stored is freed: {why}",
                max_store_full.as_secs()
            );
            return self.finish(TransferState::Failed, error).await;
        }
        if self.retry_at.is_some_and(|at| at <= Instant::now()) {
            self.retry_at = None;
            self.resume().await?;
        } else if !self.verifying && self.last_progress.elapsed() > STALL {
            tracing::info!(transfer = %self.owned.record.id, done = self.owned.record.chunks_done, "no progress; asking again");
            crate::metrics::chunk_retry("stalled");
            self.resume().await?;
        }
        if self.owned.record.state == TransferState::Verifying && !self.verifying {
            // A verification that could not reach the store: try again.
            self.verify(myself).await?;
        }
        if self.changed || self.last_written.elapsed() >= HEARTBEAT {
            self.write().await?;
        }
        Ok(())
    }

    fn advance_stored(&mut self) {
        let before = self.owned.record.chunks_done;
        while self.stored.remove(&self.owned.record.chunks_done) {
            self.owned.record.chunks_done += 1;
        }
        if self.owned.record.chunks_done != before {
            self.changed = true;
            self.last_progress = Instant::now();
            self.advanced();
        }
    }

    fn advanced(&mut self) {
        self.last_advance = Instant::now();
        self.obstacle = None;
    }

    async fn request_window(&mut self) {
        let r = &self.owned.record;
        let first = r.chunks_done;
        let count =
            u64::from(self.context.settings.window_chunks).min(r.chunks().saturating_sub(first));
        self.sent_up_to = first + count;
        self.last_progress = Instant::now();
        let ticket = match orders::decode(&r.ticket) {
            Ok(ticket) => ticket,
            Err(error) => return self.refuse(error),
        };
        let request = ChunkRequest {
            ticket: Some(ticket),
            first_index: first,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        };
        self.send_to_device(Body::ChunkRequest(request)).await;
    }

    async fn offer(&mut self) {
        let r = &self.owned.record;
        self.last_progress = Instant::now();
        self.sent_up_to = r.chunks_done;
        match orders::decode(&r.ticket) {
            Ok(offer) => self.send_to_device(Body::Order(offer)).await,
            Err(error) => self.refuse(error),
        }
    }

    /// Ends the transfer at the next step: it can never be carried out.
    fn refuse(&mut self, error: String) {
        self.refused = Some(error);
    }

    /// Sends library chunks up to a window past what the agent has.
    async fn send_put_chunks(&mut self) {
        let r = &self.owned.record;
        let end = (r.chunks_done + u64::from(self.context.settings.window_chunks)).min(r.chunks());
        let from = self.sent_up_to.max(r.chunks_done);
        for index in from..end {
            let data = match self
                .context
                .store
                .read_chunk(&r.tenant, &r.source, index)
                .await
            {
                Ok(data) => data,
                Err(StoreError::NotFound { .. }) => {
                    let error = format!(
                        "library file {} was deleted or replaced during the transfer; upload it again if needed, then run putfile again",
                        r.name
                    );
                    return self.refuse(error);
                }
                Err(error) => {
                    tracing::warn!(transfer = %r.id, index, %error, "cannot read a library chunk; will retry");
                    self.obstacle = Some(format!("the library file cannot be read: {error}"));
                    return;
                }
            };
            let bytes = data.len();
            let chunk = PutChunk {
                transfer_id: r.id.clone(),
                index,
                sha256: super::sha256_hex(&data),
                data: data.to_vec(),
            };
            let subject = bus::device_cmd(&r.tenant, &r.device);
            if let Err(error) = self
                .context
                .bus
                .publish(subject, &r.tenant, Body::PutChunk(chunk))
                .await
            {
                tracing::warn!(transfer = %r.id, %error, "cannot send a chunk to the device's node");
                return;
            }
            crate::metrics::transfer_bytes("to_agent", bytes);
            self.sent_up_to = index + 1;
        }
    }

    async fn send_to_device(&mut self, body: Body) {
        let r = &self.owned.record;
        let subject = bus::device_cmd(&r.tenant, &r.device);
        match self
            .context
            .bus
            .request(subject, &r.tenant, body, DEVICE_TIMEOUT)
            .await
        {
            Ok(Body::Ack(ack)) if crate::wire::accepted(&ack) => {}
            // A newer session holds the device: the ticket will never be honoured again.
            Ok(Body::Ack(ack)) if ack.error_code() == bus_proto::ErrorCode::Gone => {
                let error = format!(
                    "a newer session holds device {} now, so the transfer stopped: {}",
                    r.device, ack.error
                );
                self.refuse(error);
            }
            Ok(Body::Ack(ack)) => {
                tracing::info!(transfer = %r.id, error = %ack.error, "device's node refused; will retry");
                self.obstacle = Some(format!("device {}'s node refused: {}", r.device, ack.error));
            }
            Ok(_) => tracing::warn!(transfer = %r.id, "unexpected answer from the device's node"),
            Err(BusError::NoResponders(_)) => {
                tracing::info!(transfer = %r.id, device = %r.device, "device offline; the transfer waits for it");
                self.obstacle = Some(format!("device {} is offline", r.device));
            }
            Err(error) => {
                tracing::warn!(transfer = %r.id, %error, "device's node did not answer");
                self.obstacle = Some(format!(
                    "device {}'s node did not answer: {error}",
                    r.device
                ));
            }
        }
    }

    async fn verify(&mut self, myself: &ActorRef<TransferMsg>) -> Result<(), BookError> {
        self.verifying = true;
        if self.owned.record.state != TransferState::Verifying {
            self.owned.record.state = TransferState::Verifying;
            self.write().await?;
        }
        let r = self.owned.record.clone();
        let store = self.context.store.clone();
        let me = myself.clone();
        self.tasks.push(tokio::spawn(async move {
            let result = store
                .write_file(&r.tenant, &r.id, r.chunks(), &r.sha256, tokio::io::sink())
                .await;
            let _ = me.cast(TransferMsg::Verified(result));
        }));
        Ok(())
    }

    async fn on_verified(&mut self, result: Result<(), StoreError>) -> Result<(), BookError> {
        self.verifying = false;
        match result {
            Ok(()) => self.finish(TransferState::Completed, String::new()).await,
            Err(error) if error.is_retryable() => {
                tracing::warn!(transfer = %self.owned.record.id, %error, "cannot verify yet; will retry");
                Ok(())
            }
            Err(StoreError::Mismatch {
                expected, actual, ..
            }) => {
                let error = format!(
                    "the file received hashes to {actual}, not the {expected} fileinfo declared: it changed on the device during the transfer; nothing was kept, run fileinfo again and getfile"
                );
                self.finish(TransferState::Failed, error).await
            }
            Err(error) => self.finish(TransferState::Failed, error.to_string()).await,
        }
    }

    async fn finish(&mut self, state: TransferState, error: String) -> Result<(), BookError> {
        end(&self.context, &mut self.owned, state, error).await?;
        self.changed = false;
        self.last_written = Instant::now();
        Ok(())
    }

    /// A request on the control subject: a cancel by the analyst who started the transfer.
    async fn on_control(&mut self, message: async_nats::Message) -> Result<(), BookError> {
        let id = self.owned.record.id.clone();
        let request = match bus::decode(&message) {
            Ok((_, Body::TransferCancel(request))) if request.transfer_id == id => request,
            Ok(_) => {
                tracing::warn!(transfer = %id, "ignored a control request for something else");
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(transfer = %id, %error, "dropped a control request");
                return Ok(());
            }
        };
        let (answer, outcome) = if request.user != self.owned.record.user {
            // Answered like a missing transfer, as the API answers it.
            let refusal = wire::refusal(ErrorCode::NotFound, format!("no transfer {id}"));
            (refusal, Ok(()))
        } else if self.owned.record.state.is_terminal() {
            (Ack::default(), Ok(()))
        } else {
            match self
                .finish(TransferState::Cancelled, CANCELLED.into())
                .await
            {
                Ok(()) => (Ack::default(), Ok(())),
                // Taken over meanwhile, or the record could not be written: the asking node
                // reads the record again and asks whoever drives it then.
                Err(error) => (
                    wire::refusal(ErrorCode::Unavailable, error.to_string()),
                    Err(error),
                ),
            }
        };
        let tenant = &self.owned.record.tenant;
        if let Err(error) = self
            .context
            .bus
            .reply(&message, tenant, Body::Ack(answer))
            .await
        {
            tracing::warn!(transfer = %id, %error, "cannot answer a cancel");
        }
        outcome
    }

    async fn write(&mut self) -> Result<(), BookError> {
        self.owned.record.owner = self.context.node_id;
        self.owned.record.heartbeat_ms = now_ms();
        self.owned = self
            .context
            .book
            .update(&self.owned.record, self.owned.revision)
            .await?;
        self.changed = false;
        self.last_written = Instant::now();
        Ok(())
    }
}

/// Ends a transfer this node owns (`owned` is its record at the revision this node last wrote or
/// claimed): records the outcome with a compare-and-set, so a node that has lost the transfer
/// changes nothing; then, unless it completed, tells the device to stop and deletes a getfile's
/// stored chunks. The actor ends every transfer this way, and a cancel of a transfer nobody drives
/// ([`super::cancel`]) ends it the same way.
pub(super) async fn end(
    context: &TransferContext,
    owned: &mut Versioned,
    state: TransferState,
    error: String,
) -> Result<(), BookError> {
    let mut record = owned.record.clone();
    record.state = state;
    record.error = error;
    record.finished_at_ms = now_ms();
    record.owner = context.node_id;
    record.heartbeat_ms = record.finished_at_ms;
    *owned = context.book.update(&record, owned.revision).await?;
    let r = &owned.record;
    metrics::counter!(
        crate::metrics::TRANSFERS_FINISHED,
        "kind" => crate::metrics::transfer_kind(r.kind),
        "state" => state.as_str()
    )
    .increment(1);
    tracing::info!(tenant = %r.tenant, transfer = %r.id, state = state.as_str(), error = %r.error, node = context.node_id, "transfer ended");
    let ended = super::start::transfer_event(AuditKind::TransferFinished, r);
    if let Err(error) = context.audit.record(&r.tenant, ended).await {
        tracing::error!(transfer = %r.id, %error, "cannot record the transfer's end");
    }
    if state != TransferState::Completed {
        let subject = bus::device_cmd(&r.tenant, &r.device);
        match orders::decode(&r.cancel) {
            Ok(cancel) => {
                let cancel = Body::Order(cancel);
                if let Err(error) = context.bus.publish(subject, &r.tenant, cancel).await {
                    tracing::warn!(transfer = %r.id, %error, "cannot tell the device's node to stop the transfer");
                }
            }
            Err(error) => tracing::warn!(transfer = %r.id, %error, "no cancel to send the device"),
        }
        if r.kind == TransferKind::Getfile
            && let Err(e) = context.store.delete(&r.tenant, &r.id).await
        {
            tracing::warn!(transfer = %r.id, error = %e, "cannot delete the chunks of a failed transfer");
        }
    }
    Ok(())
}
