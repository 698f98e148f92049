//! openraft storage on redb: the Raft log and the lease state machine.
//!
//! The log store commits every write with an fsync before openraft hears of it. The state machine
//! lives in memory and is persisted only through snapshots; on restart openraft re-applies the
//! committed log after the last snapshot, which is why the log store keeps the committed log id.

// openraft's `StorageError` is large, and its storage traits return it, so the helpers that
// produce it have to as well.
#![allow(clippy::result_large_err)]

mod log_store;
mod state_machine;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use openraft::{AnyError, StorageIOError};
use redb::Database;

pub use log_store::{LogStore, read_all_entries};
pub use state_machine::{SnapshotBuilder, StateMachineStore, StateReader};

use crate::raft_types::{NodeId, StorageError};

/// File name of the Raft log inside a node's data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// File name of the state-machine snapshots inside a node's data directory.
pub const STATE_MACHINE_FILE: &str = "state-machine.redb";

/// Opens (creating if missing) the log store and state machine of a node's data directory.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachineStore), StorageError> {
    let owned = dir.to_path_buf();
    blocking(
        move || std::fs::create_dir_all(&owned).map_err(io(StorageIOError::write)),
        StorageIOError::write,
    )
    .await?;
    let log = LogStore::open(&dir.join(LOG_FILE)).await?;
    let sm = StateMachineStore::open(&dir.join(STATE_MACHINE_FILE)).await?;
    Ok((log, sm))
}

/// A redb database that records when it is really closed. redb allows one open handle per file,
/// and its file lock is released only at the end of `Database`'s own drop, after the last `Arc`
/// is gone; reopening must wait for that, not for the reference count.
pub(crate) struct Db {
    inner: Option<Database>,
    closed: Arc<AtomicBool>,
}

impl Db {
    pub(crate) fn new(database: Database) -> Self {
        Self {
            inner: Some(database),
            closed: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn closed_flag(&self) -> Arc<AtomicBool> {
        self.closed.clone()
    }
}

impl std::ops::Deref for Db {
    type Target = Database;
    fn deref(&self) -> &Database {
        self.inner
            .as_ref()
            .expect("the database is only taken in drop")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        drop(self.inner.take());
        self.closed.store(true, Ordering::Release);
    }
}

/// Tells when both of a node's store files are closed, so the node can start again from them
/// (openraft's tasks drop their handles a moment after shutdown).
#[derive(Clone, Debug)]
pub struct StoreFiles {
    closed: [Arc<AtomicBool>; 2],
}

impl StoreFiles {
    pub fn of(log: &LogStore, state_machine: &StateMachineStore) -> Self {
        Self {
            closed: [
                log.database().closed_flag(),
                state_machine.database().closed_flag(),
            ],
        }
    }

    pub fn closed(&self) -> bool {
        self.closed.iter().all(|c| c.load(Ordering::Acquire))
    }
}

/// Runs blocking storage IO off the async workers, so an fsync never stalls other tasks.
///
/// `on_join` builds the error for a task that panicked or was cancelled, since that says nothing
/// about whether the write reached the disk.
async fn blocking<T, F>(
    f: F,
    on_join: fn(AnyError) -> StorageIOError<NodeId>,
) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(on_join(AnyError::new(&e)).into()),
    }
}

/// Adapts any IO error into openraft's error for the failed operation, e.g.
/// `.map_err(io(StorageIOError::write_logs))`.
fn io<E>(make: fn(AnyError) -> StorageIOError<NodeId>) -> impl FnOnce(E) -> StorageError
where
    E: std::error::Error + 'static,
{
    move |e| make(AnyError::new(&e)).into()
}
