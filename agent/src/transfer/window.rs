//! One window of a transfer: wait for the transfer's previous task to end, open the file, then read
//! and send one chunk at a time, checking for a stop and for a higher token before each.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::reader;
use super::{Interrupted, Refusal, SharedStamp, Stop, StopReason, TransferSink, Window};
use crate::model::{ChunkData, Status, TransferEnd, TransferEvent};

pub(super) struct WindowTask {
    pub window: Window,
    pub sink: TransferSink,
    pub stop: Stop,
    /// The transfer's previous task, already told to stop.
    pub prev: Option<JoinHandle<()>>,
    pub stamp: SharedStamp,
    /// The highest token the agent has accepted.
    pub fence: watch::Receiver<u64>,
}

/// Why a window ended before its last chunk.
enum Halt {
    Refused(Refusal),
    /// Told to stop; `next` is the first chunk not sent.
    Stopped {
        next: u64,
    },
    /// The connection ended.
    Closed,
}

impl WindowTask {
    pub async fn run(mut self) {
        if let Some(prev) = self.prev.take() {
            let _ = prev.await;
        }
        let w = &self.window;
        let id = &w.transfer_id;
        match self.send_chunks().await {
            Ok(()) => debug!(transfer = %id, first = w.first, end = w.end, "chunk window sent"),
            Err(Halt::Refused(refusal)) => {
                warn!(transfer = %id, path = %w.path.display(), error = %refusal.error, "transfer ended");
                self.sink.send_end(refusal.end(id)).await;
            }
            Err(Halt::Stopped { next }) => match self.stop.reason() {
                Some(StopReason::Cancelled) => {
                    info!(transfer = %id, next, "transfer cancelled");
                    self.sink
                        .send_end(TransferEnd {
                            transfer_id: id.clone(),
                            status: Status::Cancelled,
                            error: cancelled(w.first, next),
                            path: None,
                        })
                        .await;
                }
                reason => debug!(transfer = %id, next, ?reason, "chunk window stopped"),
            },
            Err(Halt::Closed) => {
                debug!(transfer = %id, "the stream closed during a chunk window; the broker asks again to resume");
            }
        }
    }

    async fn send_chunks(&self) -> Result<(), Halt> {
        let w = &self.window;
        if self.stop.token.is_cancelled() {
            return Err(Halt::Stopped { next: w.first });
        }
        let remembered = *self.stamp.lock().unwrap();
        let (path, size) = (w.path.clone(), w.size);
        let file = blocking(move || reader::open(&path, size, remembered.as_ref())).await?;
        self.stamp.lock().unwrap().get_or_insert(file.stamp());
        let file = Arc::new(file);
        for index in w.first..w.end {
            if self.stop.token.is_cancelled() {
                return Err(Halt::Stopped { next: index });
            }
            let highest = *self.fence.borrow();
            if highest > w.token {
                return Err(Halt::Refused(Refusal {
                    status: Status::StaleToken,
                    error: format!(
                        "stopped: a newer session holds this device (fencing token {highest} is higher than this transfer's {}); no more chunks are sent",
                        w.token
                    ),
                }));
            }
            #[cfg(feature = "test-hooks")]
            if let Some(delay) = crate::testing::delay(&w.path) {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = self.stop.token.cancelled() => return Err(Halt::Stopped { next: index }),
                }
            }
            let (offset, len) = w.span(index);
            let reading = Arc::clone(&file);
            let (data, sha256) = blocking(move || reading.read_chunk(offset, len)).await?;
            #[cfg(feature = "test-hooks")]
            let (data, sha256) = crate::testing::after_read(&w.path, index, data, sha256);
            let chunk = ChunkData {
                transfer_id: w.transfer_id.clone(),
                index,
                data,
                sha256,
            };
            self.sink
                .send(TransferEvent::Chunk(chunk), &self.stop.token)
                .await
                .map_err(|i| match i {
                    Interrupted::Stopped => Halt::Stopped { next: index },
                    Interrupted::Closed => Halt::Closed,
                })?;
        }
        Ok(())
    }
}

/// "getfile was cancelled; this window sent 3 of its chunks; ask again from chunk 7 to resume".
fn cancelled(first: u64, next: u64) -> String {
    format!(
        "getfile was cancelled; this window sent {} of its chunks; ask again from chunk {next} to resume",
        next - first
    )
}

/// Runs file IO on the blocking pool; a panic there ends the transfer instead of hanging it.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Refusal> + Send + 'static,
) -> Result<T, Halt> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| {
            Err(Refusal::failed(format!(
                "the transfer crashed ({e}); this is a bug in the agent, please report it"
            )))
        })
        .map_err(Halt::Refused)
}
