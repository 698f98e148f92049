//! One put's task: owns what the agent knows of the transfer (its offer, the open partial file and
//! how many chunks it holds) and handles its offers, chunks and cancel one at a time, in the order
//! they came, doing all file IO on the blocking pool.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::partial::{self, WorkDir};
use super::{ChunkStep, Offer, check_chunk, done_end, no_offer};
use crate::model::{ChunkData, PutProgress, Status, TransferEnd, TransferEvent};
use crate::transfer::{Refusal, TransferSink};

pub(super) enum PutMsg {
    Offer {
        offer: Offer,
        sink: TransferSink,
    },
    Chunk {
        chunk: ChunkData,
        sink: TransferSink,
    },
    Cancel {
        sink: TransferSink,
    },
}

impl PutMsg {
    pub fn sink(self) -> Option<TransferSink> {
        match self {
            PutMsg::Offer { sink, .. } | PutMsg::Chunk { sink, .. } | PutMsg::Cancel { sink } => {
                Some(sink)
            }
        }
    }
}

/// What the task knows of its transfer.
enum State {
    /// No offer: never made, or forgotten after a failure or a cancel.
    Idle,
    /// Chunks `0..received` are in the partial file.
    Open {
        offer: Offer,
        file: Arc<File>,
        received: u64,
    },
    /// The file is at `path`; repeats of the offer or of a chunk answer that again.
    Done { offer: Offer, path: PathBuf },
}

pub(super) struct PutTask {
    id: String,
    work: Arc<WorkDir>,
    /// The highest token the agent has accepted.
    fence: watch::Receiver<u64>,
    state: State,
}

impl PutTask {
    pub fn new(id: String, work: Arc<WorkDir>, fence: watch::Receiver<u64>) -> Self {
        Self {
            id,
            work,
            fence,
            state: State::Idle,
        }
    }

    /// Handles messages until the queue is dropped; starts once `prev`, an older task of the same
    /// transfer, has ended.
    pub async fn run(mut self, mut rx: mpsc::Receiver<PutMsg>, prev: Option<JoinHandle<()>>) {
        if let Some(prev) = prev {
            let _ = prev.await;
        }
        while let Some(msg) = rx.recv().await {
            match msg {
                PutMsg::Offer { offer, sink } => self.offer(offer, &sink).await,
                PutMsg::Chunk { chunk, sink } => self.chunk(chunk, &sink).await,
                PutMsg::Cancel { sink } => self.cancel(&sink).await,
            }
        }
        debug!(transfer = %self.id, "put forgotten");
    }

    async fn offer(&mut self, offer: Offer, sink: &TransferSink) {
        match &mut self.state {
            State::Done { offer: known, path } if known.same_file(&offer) => {
                debug!(transfer = %self.id, "put offered again after it completed");
                return sink.send_end(done_end(&self.id, path)).await;
            }
            State::Open { offer: known, .. } | State::Done { offer: known, .. }
                if !known.same_file(&offer) =>
            {
                let refusal = Refusal::invalid(format!(
                    "transfer {} was offered as '{}' ({} bytes, sha256 {}, chunks of {} bytes); an offer cannot change them; start a new put with a new transfer id",
                    self.id, known.name, known.size, known.sha256, known.chunk_size
                ));
                return sink.send_end(refusal.end(&self.id)).await;
            }
            State::Open {
                offer: known,
                received,
                ..
            } => {
                // The same file again (another connection, a newer token): resume from here.
                *known = offer;
                let received = *received;
                return self.progress(received, sink).await;
            }
            State::Done { .. } | State::Idle => {}
        }
        let begun = {
            let (work, offer) = (Arc::clone(&self.work), offer.clone());
            blocking(move || work.begin(&offer)).await
        };
        let (file, received) = match begun {
            Ok(b) => b,
            Err(refusal) => {
                warn!(transfer = %self.id, name = %offer.name, error = %refusal.error, "put refused");
                return sink.send_end(refusal.end(&self.id)).await;
            }
        };
        info!(transfer = %self.id, name = %offer.name, received, chunks = offer.chunks(), "put resumes");
        let chunks = offer.chunks();
        self.state = State::Open {
            offer,
            file: Arc::new(file),
            received,
        };
        if chunks > 0 {
            self.progress(received, sink).await;
        }
        if received == chunks {
            self.complete(sink).await;
        }
    }

    async fn chunk(&mut self, chunk: ChunkData, sink: &TransferSink) {
        let (offer, file, received) = match &self.state {
            State::Idle => {
                debug!(transfer = %self.id, index = chunk.index, "chunk for a put with no offer");
                return sink
                    .send_end(Refusal::failed(no_offer(&self.id)).end(&self.id))
                    .await;
            }
            State::Done { path, .. } => return sink.send_end(done_end(&self.id, path)).await,
            State::Open {
                offer,
                file,
                received,
            } => (offer.clone(), Arc::clone(file), *received),
        };
        let highest = *self.fence.borrow();
        if highest > offer.token {
            warn!(transfer = %self.id, token = offer.token, highest, "put chunk after a higher token");
            let refusal = Refusal {
                status: Status::StaleToken,
                error: format!(
                    "stopped: a newer session holds this device (fencing token {highest} is higher than the {} this put was offered with); no more chunks are written; offer it again from the newer session to resume",
                    offer.token
                ),
            };
            return sink.send_end(refusal.end(&self.id)).await;
        }
        let step = match check_chunk(&offer, received, chunk.index, chunk.data.len()) {
            Ok(step) => step,
            Err(why) => {
                warn!(transfer = %self.id, index = chunk.index, %why, "put chunk refused");
                return self.progress(received, sink).await;
            }
        };
        let (index, name) = (chunk.index, offer.name.clone());
        let wrote = blocking(move || {
            let actual = hex::encode(Sha256::digest(&chunk.data));
            if !actual.eq_ignore_ascii_case(&chunk.sha256) {
                return Ok(Err(format!(
                    "chunk {index} hashes to {actual}, not the {} it came with",
                    chunk.sha256
                )));
            }
            if let ChunkStep::Write { offset } = step {
                partial::write_chunk(&file, &name, index, offset, &chunk.data)?;
            }
            Ok(Ok(step))
        })
        .await;
        let received = match wrote {
            Ok(Ok(ChunkStep::Write { .. })) => received + 1,
            Ok(Ok(step)) => {
                debug!(transfer = %self.id, index, ?step, "put chunk not written");
                received
            }
            Ok(Err(why)) => {
                warn!(transfer = %self.id, index, %why, "put chunk refused");
                received
            }
            Err(refusal) => {
                // The disk refused: the broker learns why and may offer again once it is fixed.
                warn!(transfer = %self.id, index, error = %refusal.error, "put chunk not written");
                return sink.send_end(refusal.end(&self.id)).await;
            }
        };
        if let State::Open { received: r, .. } = &mut self.state {
            *r = received;
        }
        self.progress(received, sink).await;
        if received == offer.chunks() {
            self.complete(sink).await;
        }
    }

    /// Every chunk is in: check the whole file and move it to its name.
    async fn complete(&mut self, sink: &TransferSink) {
        let State::Open { offer, file, .. } = std::mem::replace(&mut self.state, State::Idle)
        else {
            return;
        };
        let finished = {
            let (work, offer) = (Arc::clone(&self.work), offer.clone());
            blocking(move || work.finish(&offer, &file)).await
        };
        match finished {
            Ok(path) => {
                info!(transfer = %self.id, path = %path.display(), keep = offer.keep, "put complete");
                let end = done_end(&self.id, &path);
                self.state = State::Done { offer, path };
                sink.send_end(end).await;
            }
            Err(refusal) => {
                // The offer is forgotten: offering it again starts over from what is left.
                warn!(transfer = %self.id, name = %offer.name, error = %refusal.error, "put failed");
                sink.send_end(refusal.end(&self.id)).await;
            }
        }
    }

    async fn cancel(&mut self, sink: &TransferSink) {
        if let State::Done { path, .. } = &self.state {
            // Too late to cancel: the file is in place, and the answer says so.
            return sink.send_end(done_end(&self.id, path)).await;
        }
        let name = match std::mem::replace(&mut self.state, State::Idle) {
            State::Open { offer, .. } => Some(offer.name),
            _ => None,
        };
        let discarded = {
            let (work, id) = (Arc::clone(&self.work), self.id.clone());
            blocking(move || {
                work.discard(&id).map_err(|e| {
                    Refusal::failed(partial::io_text("delete", &work.partial(&id), &e))
                })
            })
            .await
        };
        let end = match discarded {
            Ok(_) => {
                info!(transfer = %self.id, "put cancelled; partial file deleted");
                cancelled_end(&self.id, name.as_deref())
            }
            Err(refusal) => refusal.end(&self.id),
        };
        sink.send_end(end).await;
    }

    async fn progress(&self, received: u64, sink: &TransferSink) {
        let progress = TransferEvent::Progress(PutProgress {
            transfer_id: self.id.clone(),
            received,
        });
        let _ = sink
            .send(progress, &tokio_util::sync::CancellationToken::new())
            .await;
    }
}

/// The end of a cancelled put.
pub(super) fn cancelled_end(transfer_id: &str, name: Option<&str>) -> TransferEnd {
    let what = name.map_or_else(String::new, |n| format!(" to '{n}'"));
    TransferEnd {
        transfer_id: transfer_id.to_owned(),
        status: Status::Cancelled,
        error: format!(
            "putfile{what} was cancelled; the partial file was deleted and nothing was written to the working folder"
        ),
        path: None,
    }
}

/// Runs file IO on the blocking pool; a panic there fails the put instead of hanging it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(Refusal::failed(format!(
            "the put crashed ({e}); this is a bug in the agent, please report it"
        )))
    })
}
