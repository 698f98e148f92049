//! The executor: one task that owns the fencing ledger, the state file, the running commands and
//! the file transfers; connections hold an [`ExecutorHandle`] and send it requests, chunk requests,
//! put offers and chunks, and cancels. Every one of them but a put chunk comes from an order the
//! connection has already verified ([`crate::authority`]): the executor trusts the tokens it is
//! given, and no unverified token ever reaches the ledger. A chunk request or a put offer is fenced
//! here like a command (a higher token is persisted before anything is read or written), then
//! handed to [`Transfers`] (getfile) or [`Puts`] (putfile). Put chunks carry no token: their put
//! checks the fence itself.
//!
//! Commands outlive connections. A result goes to every connection that asked for the id while it
//! ran; if none of them is still open, the result waits in the ledger until the broker asks again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::commands::{self, CommandContext};
use crate::fencing::{Admission, Fence, Ledger, PersistedState, StateStore};
use crate::model::{
    ChunkData, Completion, Invocation, Outcome, PutOfferRequest, Status, WindowRequest,
};
use crate::sys::root::SystemRoot;
use crate::transfer::put::{self, Puts, WorkDir};
use crate::transfer::{self, Refusal, TransferSink, Transfers};

/// Where results for one connection go.
pub type ResultSink = mpsc::UnboundedSender<Completion>;

/// The largest output a result carries. gRPC servers decode at most 4 MiB per message by default;
/// a bigger result would break the stream, and then break it again every time it is replayed.
pub const MAX_OUTPUT_BYTES: usize = 3 * 1024 * 1024;

/// More running commands than this are refused rather than queued: one session drives a device,
/// so a flood means a broker bug, and the device must stay responsive.
pub const MAX_RUNNING: usize = 32;

enum ExecMsg {
    Submit {
        inv: Invocation,
        reply: ResultSink,
    },
    Chunks {
        req: WindowRequest,
        sink: TransferSink,
    },
    PutOffer {
        req: PutOfferRequest,
        sink: TransferSink,
    },
    PutChunk {
        chunk: ChunkData,
        sink: TransferSink,
    },
    /// Cancels a command or a transfer with this id; a cancelled put answers on `sink`.
    Cancel {
        command_id: String,
        sink: TransferSink,
    },
}

/// Cheap to clone; the executor stops when every handle is dropped.
#[derive(Debug, Clone)]
pub struct ExecutorHandle {
    tx: mpsc::Sender<ExecMsg>,
    highest: watch::Receiver<u64>,
}

impl ExecutorHandle {
    /// Starts the executor task with the state loaded from `store`; commands read system state
    /// under `system_root` ("/" unless configured otherwise); puts write into `work`; at most
    /// `held_result_bytes` of finished results are kept to answer re-sent requests.
    pub fn spawn(
        store: StateStore,
        state: PersistedState,
        system_root: SystemRoot,
        work: WorkDir,
        held_result_bytes: usize,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(256);
        let (highest_tx, highest) = watch::channel(state.highest_token);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let task = Executor {
            ledger: Ledger::new(state, held_result_bytes),
            store: Arc::new(store),
            running: HashMap::new(),
            transfers: Transfers::default(),
            puts: Puts::new(work),
            highest: highest_tx,
            done_tx,
            system_root,
        };
        let join = tokio::spawn(task.run(rx, done_rx));
        (Self { tx, highest }, join)
    }

    pub async fn submit(&self, inv: Invocation, reply: ResultSink) {
        if self.tx.send(ExecMsg::Submit { inv, reply }).await.is_err() {
            warn!("executor has stopped; request dropped");
        }
    }

    pub async fn chunks(&self, req: WindowRequest, sink: TransferSink) {
        if self.tx.send(ExecMsg::Chunks { req, sink }).await.is_err() {
            warn!("executor has stopped; chunk request dropped");
        }
    }

    pub async fn put_offer(&self, req: PutOfferRequest, sink: TransferSink) {
        if self.tx.send(ExecMsg::PutOffer { req, sink }).await.is_err() {
            warn!("executor has stopped; put offer dropped");
        }
    }

    pub async fn put_chunk(&self, chunk: ChunkData, sink: TransferSink) {
        if self
            .tx
            .send(ExecMsg::PutChunk { chunk, sink })
            .await
            .is_err()
        {
            warn!("executor has stopped; put chunk dropped");
        }
    }

    /// Cancels the command or transfer `command_id`; a cancelled put answers on `sink`.
    pub async fn cancel(&self, command_id: String, sink: TransferSink) {
        let _ = self.tx.send(ExecMsg::Cancel { command_id, sink }).await;
    }

    /// The highest fencing token accepted so far (what the hello announces).
    pub fn highest_token(&self) -> u64 {
        *self.highest.borrow()
    }
}

struct Running {
    ctx: CommandContext,
    waiters: Vec<ResultSink>,
}

struct Executor {
    ledger: Ledger,
    store: Arc<StateStore>,
    running: HashMap<String, Running>,
    transfers: Transfers,
    puts: Puts,
    highest: watch::Sender<u64>,
    done_tx: mpsc::UnboundedSender<Completion>,
    system_root: SystemRoot,
}

impl Executor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<ExecMsg>,
        mut done_rx: mpsc::UnboundedReceiver<Completion>,
    ) {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(ExecMsg::Submit { inv, reply }) => self.submit(inv, reply).await,
                    Some(ExecMsg::Chunks { req, sink }) => self.chunks(req, sink).await,
                    Some(ExecMsg::PutOffer { req, sink }) => self.put_offer(req, sink).await,
                    Some(ExecMsg::PutChunk { chunk, sink }) => self.puts.chunk(chunk, sink).await,
                    Some(ExecMsg::Cancel { command_id, sink }) => {
                        self.cancel(&command_id, sink).await
                    }
                    None => break,
                },
                Some(done) = done_rx.recv() => self.finish(done),
            }
        }
        // The agent is stopping: running commands stop at their next check.
        for r in self.running.values() {
            r.ctx.cancel();
        }
        self.transfers.stop_all();
        self.puts.stop_all();
    }

    async fn submit(&mut self, inv: Invocation, reply: ResultSink) {
        let id = inv.command_id.clone();
        let send = |outcome: Outcome| {
            let _ = reply.send(Completion {
                command_id: id.clone(),
                outcome,
            });
        };
        if id.is_empty() {
            return send(Outcome::error(
                Status::InvalidArguments,
                "the request has no command id; every command needs a unique id so it runs at most once",
                inv.cwd,
            ));
        }
        match self.ledger.admit(&id, inv.token) {
            Admission::Replay(outcome) => {
                debug!(command_id = %id, "replaying the result of a completed command");
                send(outcome);
            }
            Admission::AlreadyRunning => {
                debug!(command_id = %id, "command already running; its result will follow");
                if let Some(r) = self.running.get_mut(&id)
                    && !r.waiters.iter().any(|w| w.same_channel(&reply))
                {
                    r.waiters.push(reply);
                }
            }
            Admission::Lost => {
                warn!(command_id = %id, "command re-sent after its result was let go; not run again");
                send(Outcome::error(
                    Status::Failed,
                    format!(
                        "command '{id}' was started before and its result is no longer held (the agent restarted, or newer results took its place); it is not run twice: check its effect on the device, then send it again with a new command id"
                    ),
                    inv.cwd,
                ));
            }
            Admission::Stale { highest } => {
                warn!(command_id = %id, token = inv.token, highest, "refused a stale fencing token");
                send(Outcome::error(
                    Status::StaleToken,
                    format!(
                        "refused: the request's fencing token {} is lower than {highest}, the highest this agent has accepted; a newer session holds this device, so the command was not run",
                        inv.token
                    ),
                    inv.cwd,
                ));
            }
            Admission::Start { state } => {
                if self.running.len() >= MAX_RUNNING {
                    return send(Outcome::error(
                        Status::Failed,
                        format!(
                            "{MAX_RUNNING} commands are already running on this device; wait for them or cancel some, then retry"
                        ),
                        inv.cwd,
                    ));
                }
                // The new token and id are on disk before the command can have any effect, so a
                // crash right after cannot let an older session's command or this id run again.
                if let Err(e) = self.persist(state).await {
                    warn!(command_id = %id, error = %e, "cannot persist fencing state");
                    return send(Outcome::error(
                        Status::Failed,
                        format!(
                            "cannot save the fencing state in state_dir ({e}); the command was not run; free space or fix permissions there, then retry"
                        ),
                        inv.cwd,
                    ));
                }
                self.ledger.begin(&id, inv.token);
                self.highest.send_replace(self.ledger.highest_token());
                self.start(inv, reply);
            }
        }
    }

    /// Fences a chunk request by its token alone (it is asked again by design, so it has no id to
    /// run once), persisting a higher token before any chunk is read, then starts its window.
    async fn chunks(&mut self, req: WindowRequest, sink: TransferSink) {
        if let Err(refusal) = transfer::check_id(&req.transfer_id) {
            return Transfers::refuse_detached(&req.transfer_id, refusal, sink);
        }
        match self.fence(&req.transfer_id, req.token).await {
            Ok(()) => self.transfers.request(req, sink, self.highest.subscribe()),
            Err(Fenced::Stale { highest }) => Transfers::refuse_detached(
                &req.transfer_id,
                Refusal::stale(req.token, highest),
                sink,
            ),
            Err(Fenced::NotSaved(e)) => {
                let refusal = Refusal::failed(format!(
                    "cannot save the fencing state in state_dir ({e}); no chunk was sent; free space or fix permissions there, then retry"
                ));
                self.transfers.refuse(&req.transfer_id, refusal, sink);
            }
        }
    }

    /// Fences a put offer like a chunk request, then hands it to its put.
    async fn put_offer(&mut self, req: PutOfferRequest, sink: TransferSink) {
        if let Err(refusal) = put::check_id(&req.transfer_id) {
            return put::refuse(&req.transfer_id, refusal, sink);
        }
        match self.fence(&req.transfer_id, req.token).await {
            Ok(()) => {
                let fence = self.highest.subscribe();
                self.puts.offer(req, sink, fence).await;
            }
            Err(Fenced::Stale { highest }) => {
                let refusal = Refusal::stale_because(req.token, highest, "nothing was written");
                put::refuse(&req.transfer_id, refusal, sink);
            }
            Err(Fenced::NotSaved(e)) => {
                let refusal = Refusal::failed(format!(
                    "cannot save the fencing state in state_dir ({e}); nothing was written; free space or fix permissions there, then retry"
                ));
                put::refuse(&req.transfer_id, refusal, sink);
            }
        }
    }

    /// Accepts `token` for a transfer, persisting it first when it is a new highest one.
    async fn fence(&mut self, transfer_id: &str, token: u64) -> Result<(), Fenced> {
        match self.ledger.fence(token) {
            Fence::Stale { highest } => {
                warn!(transfer = %transfer_id, token, highest, "refused a stale fencing token");
                Err(Fenced::Stale { highest })
            }
            Fence::Raise { state } => {
                if let Err(e) = self.persist(state).await {
                    warn!(transfer = %transfer_id, error = %e, "cannot persist fencing state");
                    return Err(Fenced::NotSaved(e));
                }
                self.ledger.raise(token);
                self.highest.send_replace(self.ledger.highest_token());
                Ok(())
            }
            Fence::Accept => Ok(()),
        }
    }

    async fn persist(&self, state: PersistedState) -> std::io::Result<()> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.save(&state))
            .await
            .map_err(std::io::Error::other)?
    }

    fn start(&mut self, inv: Invocation, reply: ResultSink) {
        let timeout = commands::timeout_for(&inv.command, inv.timeout);
        let ctx = CommandContext::new(inv.cwd.clone(), timeout)
            .with_system_root(self.system_root.clone());
        info!(
            command_id = %inv.command_id, session = %inv.session_id, token = inv.token,
            command = %inv.command, "command started"
        );
        let done = self.done_tx.clone();
        let run_ctx = ctx.clone();
        let Invocation {
            command_id,
            command,
            args,
            cwd,
            ..
        } = inv;
        self.running.insert(
            command_id.clone(),
            Running {
                ctx,
                waiters: vec![reply],
            },
        );
        tokio::spawn(async move {
            let started = Instant::now();
            // A panic inside the command must still produce a result, or the id would hang.
            let name = command.clone();
            let outcome = tokio::spawn(
                async move { commands::execute(run_ctx, &name, args).await },
            )
            .await
            .unwrap_or_else(|e| {
                Outcome::error(
                    Status::Failed,
                    format!(
                        "the command crashed ({e}); this is a bug in the agent, please report it"
                    ),
                    cwd,
                )
            });
            let outcome = limit_output(outcome);
            info!(
                command_id = %command_id, command = %command, status = ?outcome.status,
                elapsed_ms = started.elapsed().as_millis() as u64, "command finished"
            );
            let _ = done.send(Completion {
                command_id,
                outcome,
            });
        });
    }

    async fn cancel(&mut self, id: &str, sink: TransferSink) {
        let transfer = self.transfers.cancel(id) | self.puts.cancel(id, sink).await;
        match self.running.get(id) {
            Some(r) => {
                info!(command_id = %id, "cancel requested");
                r.ctx.cancel();
            }
            None if transfer => {}
            None => debug!(command_id = %id, "cancel for nothing that is running"),
        }
    }

    fn finish(&mut self, done: Completion) {
        self.ledger.finish(&done.command_id, done.outcome.clone());
        let Some(r) = self.running.remove(&done.command_id) else {
            return;
        };
        for w in r.waiters {
            // A closed sink is a connection that went away: the result stays in the ledger.
            let _ = w.send(done.clone());
        }
    }
}

/// Why a transfer's token was not accepted.
enum Fenced {
    Stale { highest: u64 },
    NotSaved(std::io::Error),
}

/// Replaces an output too large for one message by an error saying how to narrow the request.
fn limit_output(mut outcome: Outcome) -> Outcome {
    let size = outcome
        .output
        .as_ref()
        .and_then(|v| serde_json::to_vec(v).ok())
        .map_or(0, |b| b.len());
    if size > MAX_OUTPUT_BYTES {
        outcome.status = Status::Failed;
        outcome.output = None;
        outcome.file_facts = None;
        outcome.error = format!(
            "the output ({size} bytes) is larger than the {MAX_OUTPUT_BYTES} bytes one result may carry; narrow the request (a subdirectory, a smaller -max) and run it again"
        );
    }
    outcome
}

#[cfg(test)]
mod tests;
