//! putfile, the agent's half: the broker pushes a file into the working folder. It offers the file,
//! the agent answers how many chunks it already holds, and the broker sends chunks from there; every
//! chunk is checked against its own SHA-256 and written in place, and the whole file against the
//! offer's before it is moved to its name.
//!
//! ```text
//! session ──PutOffer──► verify the signed offer (crate::authority); refused: UNAUTHORIZED
//!                          └─► executor: fence the token (a higher one is persisted first)
//!         ──PutChunk──►    └─► Puts: validate; one task per transfer id, fed by a bounded queue
//!                                 └─► PutTask ── spawn_blocking: <work_dir>/.partial/<id> ─────┐
//! stream ◄── TransferSink: PutProgress after the offer and every chunk, TransferEnded at the end ◄┘
//! ```
//!
//! - **Where files go.** `<work_dir>/<name>`, `work_dir` being `<state_dir>/work` unless configured;
//!   it and `.partial/` are created with mode 0700 when first needed, and files are made 0600.
//!   A name is a plain file name: no '/', no NUL, not "." or "..", not starting with ".partial".
//! - **Resume.** Chunks are written to `.partial/<transfer_id>` at `index * chunk_size`, only in
//!   order: a chunk past `received` (a gap) is checked but not written, so the partial file's length
//!   always says how many chunks it holds. An offer repeated on any connection, or after an agent
//!   restart, answers `received` from that length and the broker sends from there.
//! - **A bad chunk** (wrong length, index past the end, data not matching its SHA-256) is not
//!   written; the answer is the unchanged `received`, and the broker sends it again.
//! - **Completion.** Once every chunk is in, the partial file is fsynced and hashed whole. A
//!   mismatch deletes it. A match is moved to its name atomically (a hard link, which never
//!   replaces a file, unless the offer said overwrite; then a rename), the folder is fsynced, and
//!   the answer is `TransferEnded{OK, path}`. Repeating the offer or the last chunk answers the same.
//!   A name taken meanwhile (without overwrite) fails the put and deletes the partial file.
//! - **Deleted at restart unless keep.** Files put without `keep` are listed, with the boot id of
//!   the time, in `<state_dir>/volatile-files.json` ([`volatile`]); when the agent starts on a
//!   different boot id, it deletes them.
//! - **Cancel** (a verified `Cancel{command_id = transfer_id}`) deletes the partial file and forgets
//!   the offer.
//! - **Chunks are not signed**: each is checked against its SHA-256 and the whole file against the
//!   signed offer's, so a forged chunk can only make the put fail.
//! - **Fencing.** An offer is fenced by its token like a command; a chunk carries no token, so its
//!   transfer stops with `STALE_TOKEN` once a higher token than its offer's has been accepted, until
//!   it is offered again.
//! - **Bounded memory.** Each transfer's queue holds [`QUEUE_CHUNKS`] chunks; when it is full the
//!   executor waits, which stops the stream being read, so a slow disk slows the broker down. The
//!   offers and outcomes of the [`MAX_REMEMBERED_TRANSFERS`] most recently used transfers are
//!   remembered; a chunk for any other transfer is refused with "offer it again".

mod partial;
mod task;
pub mod volatile;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info};

use super::{MAX_CHUNK_SIZE, MAX_REMEMBERED_TRANSFERS, MIN_CHUNK_SIZE};
use super::{Refusal, TransferSink};
use crate::model::{ChunkData, PutOfferRequest, Status, TransferEnd};
pub use partial::WorkDir;
use task::{PutMsg, PutTask};

/// The capability the hello announces: this agent takes put offers.
pub const CAPABILITY: &str = "putfile";

/// The largest file putfile takes.
pub const MAX_PUT_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The longest file name (most Linux file systems' limit).
pub const MAX_NAME_BYTES: usize = 255;

/// The folder of partial files inside the working folder; no put may use a name starting with it.
pub const PARTIAL_DIR: &str = ".partial";

/// Messages waiting for one transfer's task.
pub const QUEUE_CHUNKS: usize = 8;

/// A validated offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub transfer_id: String,
    pub token: u64,
    pub name: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    pub chunk_size: u64,
    pub keep: bool,
    pub overwrite: bool,
}

impl Offer {
    /// How many chunks the file makes; an empty file makes none.
    pub fn chunks(&self) -> u64 {
        self.size.div_ceil(self.chunk_size)
    }

    /// The byte offset and exact length of chunk `index`, `None` past the end.
    pub fn span(&self, index: u64) -> Option<(u64, usize)> {
        if index >= self.chunks() {
            return None;
        }
        let offset = index * self.chunk_size;
        // At most MAX_CHUNK_SIZE, so it fits.
        Some((offset, self.chunk_size.min(self.size - offset) as usize))
    }

    /// True when `other` offers the same file the same way (token, keep and overwrite may change).
    pub fn same_file(&self, other: &Offer) -> bool {
        (
            self.name.as_str(),
            self.size,
            self.sha256.as_str(),
            self.chunk_size,
        ) == (
            other.name.as_str(),
            other.size,
            other.sha256.as_str(),
            other.chunk_size,
        )
    }

    /// How many chunks a partial file of `len` bytes holds, all of them in order from chunk 0.
    pub fn received_in(&self, len: u64) -> u64 {
        if len >= self.size {
            self.chunks()
        } else {
            len / self.chunk_size
        }
    }
}

/// Refuses a transfer id that cannot name a partial file (the [`ids`] rule keeps it one path
/// component).
pub fn check_id(transfer_id: &str) -> Result<(), Refusal> {
    ids::transfer(transfer_id).map_err(|e| Refusal::invalid(e.to_string()))
}

/// Why `name` is not a plain file name in the working folder, if it is not one.
pub fn check_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "it is empty".to_owned()
    } else if name.len() > MAX_NAME_BYTES {
        format!(
            "it is {} bytes long, more than the {MAX_NAME_BYTES} a file name may have",
            name.len()
        )
    } else if name.contains('/') {
        "it holds a '/'; putfile writes only into the working folder, never into a subfolder or elsewhere".to_owned()
    } else if name.contains('\0') {
        "it holds a NUL byte".to_owned()
    } else if name == "." || name == ".." {
        "'.' and '..' name folders, not files".to_owned()
    } else if name.starts_with(PARTIAL_DIR) {
        format!("names starting with '{PARTIAL_DIR}' are where the agent keeps partial files")
    } else {
        return Ok(());
    };
    Err(format!(
        "'{}' is not a plain file name: {why}; give the file another name",
        name.escape_debug()
    ))
}

/// Checks an offer on its own (no IO).
pub fn validate(req: &PutOfferRequest) -> Result<Offer, Refusal> {
    check_id(&req.transfer_id)?;
    check_name(&req.name).map_err(Refusal::invalid)?;
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&req.chunk_size) {
        return Err(Refusal::invalid(format!(
            "chunk_size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes (64 KiB up to 4 MiB less 64 KiB, so that a chunk fits in one message); offer the file with a chunk size in that range",
            req.chunk_size
        )));
    }
    if req.sha256.len() != 64 || !req.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::invalid(format!(
            "sha256 '{}' is not 64 hex characters; offer the file with the SHA-256 of its whole content",
            req.sha256.escape_debug()
        )));
    }
    if req.size > MAX_PUT_BYTES {
        return Err(Refusal::invalid(format!(
            "the file is {} bytes; putfile takes files of at most {MAX_PUT_BYTES} bytes (4 GiB); split it or compress it first",
            req.size
        )));
    }
    Ok(Offer {
        transfer_id: req.transfer_id.clone(),
        token: req.token,
        name: req.name.clone(),
        size: req.size,
        sha256: req.sha256.to_ascii_lowercase(),
        chunk_size: u64::from(req.chunk_size),
        keep: req.keep,
        overwrite: req.overwrite,
    })
}

/// What to do with a chunk that matches its own SHA-256, given how many chunks are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStep {
    /// The next chunk: write it at `offset`, and `received` advances.
    Write { offset: u64 },
    /// Already written (a repeat): nothing to do.
    Held,
    /// Past a chunk not yet received: not written, so the file's length keeps meaning "held".
    Gap,
}

/// Checks a chunk's index and length against the offer (no IO, no hashing): the step to take, or
/// why the chunk is refused.
pub fn check_chunk(
    offer: &Offer,
    received: u64,
    index: u64,
    len: usize,
) -> Result<ChunkStep, String> {
    let Some((offset, expected)) = offer.span(index) else {
        return Err(format!(
            "chunk {index} is past the end of '{}': {} bytes in chunks of {} bytes make {} chunks",
            offer.name,
            offer.size,
            offer.chunk_size,
            offer.chunks()
        ));
    };
    if len != expected {
        return Err(format!(
            "chunk {index} of '{}' has {len} bytes, not the {expected} it must have",
            offer.name
        ));
    }
    Ok(match index.cmp(&received) {
        std::cmp::Ordering::Less => ChunkStep::Held,
        std::cmp::Ordering::Equal => ChunkStep::Write { offset },
        std::cmp::Ordering::Greater => ChunkStep::Gap,
    })
}

/// The message for a chunk whose transfer this agent holds no offer for.
pub fn no_offer(transfer_id: &str) -> String {
    format!(
        "no offer for transfer {transfer_id} on this agent (it was never offered here, was cancelled or failed, or the agent restarted); offer it again to resume"
    )
}

struct Entry {
    tx: mpsc::Sender<PutMsg>,
    join: JoinHandle<()>,
    last_used: u64,
}

/// The puts the agent knows of; owned by the executor, which fences offers first.
pub struct Puts {
    work: Arc<WorkDir>,
    entries: HashMap<String, Entry>,
    /// Tasks of forgotten or cancelled transfers that may still be working: a new task of the same
    /// transfer waits for the old one, so two never touch one partial file.
    retiring: HashMap<String, JoinHandle<()>>,
    clock: u64,
}

impl Puts {
    pub fn new(work: WorkDir) -> Self {
        Self {
            work: Arc::new(work),
            entries: HashMap::new(),
            retiring: HashMap::new(),
            clock: 0,
        }
    }

    /// Answers an offer whose token is accepted (and persisted).
    pub async fn offer(
        &mut self,
        req: PutOfferRequest,
        sink: TransferSink,
        fence: watch::Receiver<u64>,
    ) {
        let offer = match validate(&req) {
            Ok(o) => o,
            Err(refusal) => return refuse(&req.transfer_id, refusal, sink),
        };
        info!(
            transfer = %offer.transfer_id, session = %req.session_id, token = offer.token,
            name = %offer.name, size = offer.size, keep = offer.keep, overwrite = offer.overwrite,
            "put offered"
        );
        let id = offer.transfer_id.clone();
        self.send(&id, PutMsg::Offer { offer, sink }, Some(fence))
            .await;
    }

    /// Hands a chunk to its transfer's task; refused when the transfer was not offered here.
    pub async fn chunk(&mut self, chunk: ChunkData, sink: TransferSink) {
        let id = chunk.transfer_id.clone();
        if !self.entries.contains_key(&id) {
            debug!(transfer = %id, index = chunk.index, "chunk for a put with no offer");
            return refuse(&id, Refusal::failed(no_offer(&id)), sink);
        }
        self.send(&id, PutMsg::Chunk { chunk, sink }, None).await;
    }

    /// Cancels the put `transfer_id`: its partial file is deleted and its offer forgotten. A put
    /// this agent does not remember (it restarted) is cancelled too if its partial file is there.
    /// False when there was no such put in memory.
    pub async fn cancel(&mut self, transfer_id: &str, sink: TransferSink) -> bool {
        if self.entries.contains_key(transfer_id) {
            info!(transfer = %transfer_id, "put cancel requested");
            self.send(transfer_id, PutMsg::Cancel { sink }, None).await;
            self.retire(transfer_id);
            return true;
        }
        if check_id(transfer_id).is_ok() {
            // Any older task of this id finishes first, as for a new one.
            let prev = self.retiring.remove(transfer_id);
            let work = Arc::clone(&self.work);
            let id = transfer_id.to_owned();
            let join = tokio::spawn(async move {
                if let Some(prev) = prev {
                    let _ = prev.await;
                }
                let discard = {
                    let (work, id) = (Arc::clone(&work), id.clone());
                    tokio::task::spawn_blocking(move || work.discard(&id)).await
                };
                if let Ok(Ok(true)) = discard {
                    info!(transfer = %id, "partial file of a put cancelled after a restart deleted");
                    sink.send_end(task::cancelled_end(&id, None)).await;
                }
            });
            self.retiring.insert(transfer_id.to_owned(), join);
        }
        false
    }

    /// Forgets every put (the agent is stopping); their tasks finish what is queued.
    pub fn stop_all(&mut self) {
        self.entries.clear();
    }

    async fn send(&mut self, id: &str, msg: PutMsg, fence: Option<watch::Receiver<u64>>) {
        self.clock += 1;
        if !self.entries.contains_key(id) {
            let Some(fence) = fence else {
                return;
            };
            self.make_room();
            let (tx, rx) = mpsc::channel(QUEUE_CHUNKS);
            let prev = self.retiring.remove(id);
            let task = PutTask::new(id.to_owned(), Arc::clone(&self.work), fence);
            let join = tokio::spawn(task.run(rx, prev));
            self.entries.insert(
                id.to_owned(),
                Entry {
                    tx,
                    join,
                    last_used: 0,
                },
            );
        }
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.last_used = self.clock;
        if let Err(mpsc::error::SendError(msg)) = entry.tx.send(msg).await {
            // The task ended: it panicked, which is a bug.
            self.entries.remove(id);
            let refusal = Refusal::failed(format!(
                "the put of transfer {id} crashed; this is a bug in the agent, please report it; offer it again to resume"
            ));
            if let Some(sink) = msg.sink() {
                refuse(id, refusal, sink);
            }
        }
    }

    /// Forgets the least recently used transfer when [`MAX_REMEMBERED_TRANSFERS`] are remembered.
    fn make_room(&mut self) {
        self.retiring.retain(|_, join| !join.is_finished());
        if self.entries.len() < MAX_REMEMBERED_TRANSFERS {
            return;
        }
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_used)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            debug!(transfer = %id, "forgetting the least recently used put");
            self.retire(&id);
        }
    }

    /// Drops the transfer's queue: its task ends once it has handled what is queued.
    fn retire(&mut self, id: &str) {
        if let Some(entry) = self.entries.remove(id) {
            self.retiring.insert(id.to_owned(), entry.join);
        }
    }
}

/// Sends `refusal` for `transfer_id` at once, touching nothing of the transfer.
pub fn refuse(transfer_id: &str, refusal: Refusal, sink: TransferSink) {
    debug!(transfer = %transfer_id, status = ?refusal.status, error = %refusal.error, "put refused");
    let end = refusal.end(transfer_id);
    tokio::spawn(async move { sink.send_end(end).await });
}

/// The end of a put that succeeded: where the file is.
fn done_end(transfer_id: &str, path: &std::path::Path) -> TransferEnd {
    TransferEnd {
        transfer_id: transfer_id.to_owned(),
        status: Status::Ok,
        error: String::new(),
        path: Some(path.to_owned()),
    }
}

#[cfg(test)]
mod tests;
