//! File transfers, the agent's half. getfile (this module): the broker pulls a file in windows of
//! chunks; the agent sends exactly the chunks asked for, in order, each with the SHA-256 of its
//! data, then waits for the next request. A transfer resumes from any chunk index, on any
//! connection. putfile ([`put`]): the broker pushes a file into the agent's working folder, chunk
//! by chunk, resuming from what the agent already holds; both share the chunk size bounds, the
//! [`TransferSink`] and [`Refusal`].
//!
//! ```text
//! session ──ChunkRequest──► verify its signed ticket (crate::authority); refused: UNAUTHORIZED
//!                              └─► executor: fence the token (a higher one is persisted first)
//!                              └─► Transfers::request: validate; one task per transfer id
//!                                     └─► window task ── spawn_blocking: open, read one chunk ─┐
//! stream ◄── TransferSink: bounded channel of chunks and TransferEnded, merged into the stream ◄─┘
//! ```
//!
//! - **One task per transfer at a time.** A request for a transfer whose window is still being sent
//!   supersedes that window: it stops before its next chunk, without a `TransferEnded`, and the new
//!   window starts only once the old task has ended, so two windows of one transfer never
//!   interleave. Chunks of the old window may already be on the wire ahead of the new ones; the
//!   broker keeps chunks by index, so they are duplicates at worst. Refusals are ordered the same way.
//!   A request refused for a stale token is the exception: it is answered at once and disturbs
//!   nothing, since a newer session may own the transfer now.
//! - **Cancel** (a verified `Cancel{command_id = transfer_id}`) stops the window in flight before
//!   its next chunk, even while it waits for room on the stream, and ends it with `CANCELLED`.
//! - **A refused ticket** (its grant or signature does not verify) is answered `UNAUTHORIZED` at
//!   once, like a stale token, and disturbs nothing of the transfer it names.
//! - **Bounded memory.** A window holds one chunk at a time and the sink is a small channel that
//!   the gRPC stream drains as the network allows, so a slow link slows the reads down.
//! - **The file must not change.** The first window of a transfer remembers the file's device,
//!   inode, size and mtime; every later window and every chunk read checks them again. The
//!   whole-file SHA-256 is the broker's to verify; the agent only checks the declared size.
//! - **Fencing.** A window also stops, with `STALE_TOKEN`, once a higher token has been accepted.
//! - At most [`MAX_WINDOWS`] windows are sent at once, all transfers together; one more is
//!   answered `Busy`, and the broker asks again a little later.
//!
//! What is remembered of a transfer (parameters, file stamp) lives in memory for the
//! [`MAX_REMEMBERED_TRANSFERS`] most recently used ones: after an agent restart, a resumed transfer
//! is checked against its declared size only, and the broker's whole-file hash catches the rest.

pub mod put;
mod reader;
mod window;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::model::{Status, TransferEnd, TransferEvent, WindowRequest};
use reader::FileStamp;
use window::WindowTask;

/// The capability the hello announces: this agent answers chunk requests.
pub const CAPABILITY: &str = "getfile";

/// Chunk sizes the agent accepts. The largest leaves 64 KiB of the 4 MiB a gRPC message may carry
/// by default for the rest of the `Chunk` message.
pub const MIN_CHUNK_SIZE: u32 = 64 * 1024;
pub const MAX_CHUNK_SIZE: u32 = 4 * 1024 * 1024 - 64 * 1024;

/// The most chunks one request may ask for.
pub const MAX_WINDOW_CHUNKS: u32 = 64;

/// The most windows sent at once, all transfers together; more are refused with "retry".
pub const MAX_WINDOWS: usize = 8;

/// How many transfers' parameters and file stamps are remembered.
pub const MAX_REMEMBERED_TRANSFERS: usize = 256;

/// Chunks waiting for the stream, per connection: with the one each window is reading, this bounds
/// a connection's transfer memory.
pub const SINK_CAPACITY: usize = 2;

/// The error of a transfer whose file is not the one its first window read.
pub const FILE_CHANGED: &str = "the file changed on the device during the transfer (size/mtime differ); run fileinfo again and restart getfile";

/// The error (status `Busy`) when [`MAX_WINDOWS`] windows are already being sent.
pub const TOO_MANY: &str = "too many transfers at once; retry";

/// Why a transfer cannot go on, before it is addressed to its transfer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    pub error: String,
}

impl Refusal {
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            error: error.into(),
        }
    }

    pub fn invalid(error: impl Into<String>) -> Self {
        Self {
            status: Status::InvalidArguments,
            error: error.into(),
        }
    }

    /// An order the agent did not verify (see [`crate::authority`]): `error` says why.
    pub fn unauthorized(error: impl Into<String>) -> Self {
        Self {
            status: Status::Unauthorized,
            error: error.into(),
        }
    }

    pub fn stale(token: u64, highest: u64) -> Self {
        Self::stale_because(token, highest, "no chunk was sent")
    }

    /// A stale token, saying what did not happen (`"no chunk was sent"`).
    pub fn stale_because(token: u64, highest: u64, nothing_done: &str) -> Self {
        Self {
            status: Status::StaleToken,
            error: format!(
                "refused: the request's fencing token {token} is lower than {highest}, the highest this agent has accepted; a newer session holds this device, so {nothing_done}"
            ),
        }
    }

    pub fn end(self, transfer_id: &str) -> TransferEnd {
        TransferEnd {
            transfer_id: transfer_id.to_owned(),
            status: self.status,
            error: self.error,
            path: None,
        }
    }
}

/// A validated request: chunks `[first, end)` of `path`, `end` clipped to the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub transfer_id: String,
    pub token: u64,
    pub path: PathBuf,
    pub size: u64,
    pub chunk_size: u64,
    pub first: u64,
    pub end: u64,
}

impl Window {
    /// The byte offset and length of chunk `index`.
    pub fn span(&self, index: u64) -> (u64, usize) {
        let offset = index * self.chunk_size;
        let len = self.chunk_size.min(self.size.saturating_sub(offset));
        // At most MAX_CHUNK_SIZE, so it fits.
        (offset, len as usize)
    }
}

/// How many chunks a file of `size` bytes makes. An empty file is one empty chunk, so every
/// transfer has a chunk 0 that proves the file is still there.
pub fn chunk_count(size: u64, chunk_size: u64) -> u64 {
    size.div_ceil(chunk_size).max(1)
}

/// Refuses an id the transfer cannot be addressed by.
pub fn check_id(transfer_id: &str) -> Result<(), Refusal> {
    ids::transfer(transfer_id).map_err(|e| Refusal::invalid(e.to_string()))
}

/// Checks a request on its own (no IO).
pub fn validate(req: &WindowRequest) -> Result<Window, Refusal> {
    check_id(&req.transfer_id)?;
    if !Path::new(&req.path).is_absolute() || req.path.contains('\0') {
        return Err(Refusal::invalid(format!(
            "getfile needs an absolute path on the device; got '{}'",
            req.path
        )));
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
        return Err(Refusal::invalid(format!(
            "chunk_size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes (64 KiB up to 4 MiB less 64 KiB, so that a chunk fits in one message); ask with a chunk size in that range",
            req.chunk_size
        )));
    }
    if !(1..=MAX_WINDOW_CHUNKS).contains(&req.count) {
        return Err(Refusal::invalid(format!(
            "count {} is outside 1..={MAX_WINDOW_CHUNKS}; ask for 1 to {MAX_WINDOW_CHUNKS} chunks at a time",
            req.count
        )));
    }
    if req.sha256.len() != 64 || !req.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::invalid(format!(
            "sha256 '{}' is not 64 hex characters; send the sha256 fileinfo reported",
            req.sha256
        )));
    }
    let chunk_size = u64::from(req.chunk_size);
    let chunks = chunk_count(req.size, chunk_size);
    if req.first_index >= chunks {
        return Err(Refusal::invalid(format!(
            "chunk {} is past the end of the file: {} bytes in chunks of {chunk_size} bytes make {chunks} chunks (0 to {})",
            req.first_index,
            req.size,
            chunks - 1
        )));
    }
    Ok(Window {
        transfer_id: req.transfer_id.clone(),
        token: req.token,
        path: PathBuf::from(&req.path),
        size: req.size,
        chunk_size,
        first: req.first_index,
        end: req
            .first_index
            .saturating_add(u64::from(req.count))
            .min(chunks),
    })
}

/// Where one connection's transfer events go: a bounded channel merged into its stream, and a
/// token cancelled when the connection ends, so no window waits on a dead stream.
#[derive(Debug, Clone)]
pub struct TransferSink {
    tx: mpsc::Sender<TransferEvent>,
    closed: CancellationToken,
}

/// Why a send did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupted {
    Stopped,
    Closed,
}

impl TransferSink {
    /// A sink of [`SINK_CAPACITY`] events and its receiving end; cancel `closed` when the receiving
    /// end goes away.
    pub fn channel(closed: CancellationToken) -> (Self, mpsc::Receiver<TransferEvent>) {
        let (tx, rx) = mpsc::channel(SINK_CAPACITY);
        (Self { tx, closed }, rx)
    }

    /// Sends `event` once there is room, unless `stop` fires or the connection ends first.
    async fn send(
        &self,
        event: TransferEvent,
        stop: &CancellationToken,
    ) -> Result<(), Interrupted> {
        tokio::select! {
            biased;
            () = stop.cancelled() => Err(Interrupted::Stopped),
            () = self.closed.cancelled() => Err(Interrupted::Closed),
            sent = self.tx.send(event) => sent.map_err(|_| Interrupted::Closed),
        }
    }

    /// Sends the end of a transfer unless the connection ends first.
    async fn send_end(&self, end: TransferEnd) {
        let _ = self
            .send(TransferEvent::Ended(end), &CancellationToken::new())
            .await;
    }
}

/// Why a window was told to stop: only a cancel is answered (`CANCELLED`); a superseded window or
/// one stopped by the agent's shutdown ends silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Superseded,
    Cancelled,
    Shutdown,
}

/// A task's stop signal; the first reason given wins.
#[derive(Debug, Clone, Default)]
struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl Stop {
    fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    fn reason(&self) -> Option<StopReason> {
        self.reason.get().copied()
    }
}

/// The file stamp a transfer's first window took, shared with its later windows.
type SharedStamp = Arc<Mutex<Option<FileStamp>>>;

/// What must stay the same across the requests of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Params {
    path: String,
    size: u64,
    sha256: String,
    chunk_size: u32,
}

impl Params {
    fn of(req: &WindowRequest) -> Self {
        Self {
            path: req.path.clone(),
            size: req.size,
            sha256: req.sha256.to_ascii_lowercase(),
            chunk_size: req.chunk_size,
        }
    }
}

struct Task {
    stop: Stop,
    join: JoinHandle<()>,
    sends_chunks: bool,
}

#[derive(Default)]
struct Entry {
    /// Set by the first valid request.
    params: Option<Params>,
    stamp: SharedStamp,
    /// The latest task of this transfer; a new one waits for it to end.
    task: Option<Task>,
    last_used: u64,
}

/// The transfers the agent knows of; owned by the executor, which fences requests first.
#[derive(Default)]
pub struct Transfers {
    entries: HashMap<String, Entry>,
    clock: u64,
}

impl Transfers {
    /// Answers a request whose token is accepted (and persisted): starts its window, or refuses it.
    pub fn request(&mut self, req: WindowRequest, sink: TransferSink, fence: watch::Receiver<u64>) {
        let window = match validate(&req) {
            Ok(w) => w,
            Err(refusal) => return self.refuse(&req.transfer_id, refusal, sink),
        };
        let params = Params::of(&req);
        if let Some(known) = self
            .entries
            .get(&req.transfer_id)
            .and_then(|e| e.params.as_ref())
            && *known != params
        {
            let refusal = Refusal::invalid(format!(
                "transfer {} was started for '{}' ({} bytes, sha256 {}, chunks of {} bytes); a request for it cannot change them; start a new transfer with a new id",
                req.transfer_id, known.path, known.size, known.sha256, known.chunk_size
            ));
            return self.refuse(&req.transfer_id, refusal, sink);
        }
        if self.windows_in_flight(&req.transfer_id) >= MAX_WINDOWS {
            let busy = Refusal {
                status: Status::Busy,
                error: TOO_MANY.into(),
            };
            return self.refuse(&req.transfer_id, busy, sink);
        }
        info!(
            transfer = %req.transfer_id, session = %req.session_id, token = req.token,
            first = window.first, end = window.end, "chunk window requested"
        );
        let entry = self.entry(&req.transfer_id);
        entry.params = Some(params);
        let stamp = Arc::clone(&entry.stamp);
        self.chain(&req.transfer_id, true, move |stop, prev| {
            WindowTask {
                window,
                sink,
                stop,
                prev,
                stamp,
                fence,
            }
            .run()
        });
    }

    /// Answers the latest request for `transfer_id` with `refusal`: like a new window, it stops the
    /// window in flight and is sent after it.
    pub fn refuse(&mut self, transfer_id: &str, refusal: Refusal, sink: TransferSink) {
        if check_id(transfer_id).is_err() {
            return Self::refuse_detached(transfer_id, refusal, sink);
        }
        debug!(transfer = %transfer_id, status = ?refusal.status, error = %refusal.error, "chunk request refused");
        let end = refusal.end(transfer_id);
        self.chain(transfer_id, false, move |_stop, prev| async move {
            if let Some(prev) = prev {
                let _ = prev.await;
            }
            sink.send_end(end).await;
        });
    }

    /// Sends `refusal` at once, touching nothing of the transfer: for a stale token (a request of an
    /// older session must not disturb a newer one's transfer) and for an id that cannot be one.
    pub fn refuse_detached(transfer_id: &str, refusal: Refusal, sink: TransferSink) {
        debug!(transfer = %transfer_id, status = ?refusal.status, error = %refusal.error, "chunk request refused");
        let end = refusal.end(transfer_id);
        tokio::spawn(async move { sink.send_end(end).await });
    }

    /// Stops the window in flight for `transfer_id`, which then ends with `CANCELLED`. False when
    /// nothing of that transfer is being sent.
    pub fn cancel(&mut self, transfer_id: &str) -> bool {
        match self.entries.get(transfer_id).and_then(|e| e.task.as_ref()) {
            Some(t) if t.sends_chunks && !t.join.is_finished() => {
                info!(transfer = %transfer_id, "transfer cancel requested");
                t.stop.stop(StopReason::Cancelled);
                true
            }
            _ => false,
        }
    }

    /// Stops every window (the agent is stopping).
    pub fn stop_all(&mut self) {
        for task in self.entries.values().filter_map(|e| e.task.as_ref()) {
            task.stop.stop(StopReason::Shutdown);
        }
    }

    fn windows_in_flight(&self, except: &str) -> usize {
        self.entries
            .iter()
            .filter(|(id, e)| {
                id.as_str() != except
                    && e.task
                        .as_ref()
                        .is_some_and(|t| t.sends_chunks && !t.join.is_finished())
            })
            .count()
    }

    /// The entry of `transfer_id`, created (and the least recently used idle one forgotten) if new.
    fn entry(&mut self, transfer_id: &str) -> &mut Entry {
        self.clock += 1;
        if !self.entries.contains_key(transfer_id) && self.entries.len() >= MAX_REMEMBERED_TRANSFERS
        {
            let idle = self
                .entries
                .iter()
                .filter(|(_, e)| e.task.as_ref().is_none_or(|t| t.join.is_finished()))
                .min_by_key(|(_, e)| e.last_used)
                .map(|(id, _)| id.clone());
            if let Some(id) = idle {
                self.entries.remove(&id);
            }
        }
        let entry = self.entries.entry(transfer_id.to_owned()).or_default();
        entry.last_used = self.clock;
        entry
    }

    /// Spawns the next task of `transfer_id`: the previous one is told to stop (a window) and the
    /// new one gets its handle, to wait for it before sending anything.
    fn chain<F, Fut>(&mut self, transfer_id: &str, sends_chunks: bool, make: F)
    where
        F: FnOnce(Stop, Option<JoinHandle<()>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let entry = self.entry(transfer_id);
        let prev = entry.task.take().map(|t| {
            t.stop.stop(StopReason::Superseded);
            t.join
        });
        let stop = Stop::default();
        let join = tokio::spawn(make(stop.clone(), prev));
        entry.task = Some(Task {
            stop,
            join,
            sends_chunks,
        });
    }
}

#[cfg(test)]
mod tests;
