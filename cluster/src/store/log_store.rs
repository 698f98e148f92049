//! The Raft log, vote and committed log id in one redb file; every write is fsynced before return.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError, Vote};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Db, blocking, io};
use crate::raft_types::{Entry, LogId, NodeId, StorageError, TypeConfig};

/// Log entries by index, each the JSON of an openraft `Entry`.
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Small JSON values keyed by name: the vote, the committed and the last purged log id.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

type MakeError = fn(AnyError) -> StorageIOError<NodeId>;

/// openraft's log storage on a redb file. Clones share the database, so a clone is also the
/// log reader that replication tasks use.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub(super) fn database(&self) -> &Db {
        &self.db
    }

    /// Opens the log file at `path`, creating it if missing.
    pub async fn open(path: &Path) -> Result<LogStore, StorageError> {
        let path = path.to_path_buf();
        blocking(
            move || {
                let db = Database::create(&path).map_err(io(StorageIOError::write_logs))?;
                // Read transactions fail on tables that were never created, so create both now.
                write_durably(&db, StorageIOError::write_logs, |txn| {
                    txn.open_table(ENTRIES)
                        .map_err(io(StorageIOError::write_logs))?;
                    txn.open_table(META)
                        .map_err(io(StorageIOError::write_logs))?;
                    Ok(())
                })?;
                Ok(LogStore {
                    db: Arc::new(Db::new(db)),
                })
            },
            StorageIOError::write_logs,
        )
        .await
    }

    /// The entries present in `range` of indexes, in order; purged and missing ones are skipped.
    pub async fn entries<RB>(&self, range: RB) -> Result<Vec<Entry>, StorageError>
    where
        RB: RangeBounds<u64>,
    {
        let range = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || read_entries(&db, range), StorageIOError::read_logs).await
    }

    async fn read_meta<T>(
        &self,
        key: &'static str,
        make: MakeError,
    ) -> Result<Option<T>, StorageError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || read_meta(&db, key, make), make).await
    }

    async fn write_meta<T>(
        &self,
        key: &'static str,
        value: &T,
        make: MakeError,
    ) -> Result<(), StorageError>
    where
        T: Serialize,
    {
        let bytes = serde_json::to_vec(value).map_err(io(make))?;
        let db = self.db.clone();
        blocking(
            move || write_durably(&db, make, |txn| put_meta(txn, key, &bytes, make)),
            make,
        )
        .await
    }
}

/// Reads every entry left in the log file at `path`, for inspecting a stopped node's history.
///
/// Blocks on file IO, and fails while a [`LogStore`] of the same file is open in this process.
pub fn read_all_entries(path: &Path) -> Result<Vec<Entry>, StorageError> {
    // `Database::open` rather than `ReadOnlyDatabase`: the latter refuses a file left by a crash.
    let db = Database::open(path).map_err(io(StorageIOError::read_logs))?;
    read_entries(&db, (Bound::Unbounded, Bound::Unbounded))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(
            move || {
                let txn = db.begin_read().map_err(io(StorageIOError::read_logs))?;
                let meta = txn
                    .open_table(META)
                    .map_err(io(StorageIOError::read_logs))?;
                let last_purged_log_id: Option<LogId> =
                    get_json(&meta, LAST_PURGED, StorageIOError::read_logs)?;
                let entries = txn
                    .open_table(ENTRIES)
                    .map_err(io(StorageIOError::read_logs))?;
                let last = match entries.last().map_err(io(StorageIOError::read_logs))? {
                    Some((_, value)) => Some(decode_entry(value.value())?.log_id),
                    None => None,
                };
                Ok(LogState {
                    last_log_id: last.or(last_purged_log_id),
                    last_purged_log_id,
                })
            },
            StorageIOError::read_logs,
        )
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, StorageIOError::write_vote)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(VOTE, StorageIOError::read_vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed, StorageIOError::write)
            .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        // Stored as the JSON of an `Option`, so a saved `None` reads back as `Some(None)`.
        Ok(self
            .read_meta::<Option<LogId>>(COMMITTED, StorageIOError::read)
            .await?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let db = self.db.clone();
        blocking(
            move || {
                write_durably(&db, StorageIOError::write_logs, |txn| {
                    let mut table = txn
                        .open_table(ENTRIES)
                        .map_err(io(StorageIOError::write_logs))?;
                    for entry in &entries {
                        let bytes =
                            serde_json::to_vec(entry).map_err(io(StorageIOError::write_logs))?;
                        table
                            .insert(entry.log_id.index, bytes.as_slice())
                            .map_err(io(StorageIOError::write_logs))?;
                    }
                    Ok(())
                })
            },
            StorageIOError::write_logs,
        )
        .await?;
        // Only now is the batch on disk, so only now may openraft count it toward a quorum.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(index = log_id.index, "truncating raft log");
        let db = self.db.clone();
        blocking(
            move || {
                write_durably(&db, StorageIOError::write_logs, |txn| {
                    let mut table = txn
                        .open_table(ENTRIES)
                        .map_err(io(StorageIOError::write_logs))?;
                    table
                        .retain_in(log_id.index.., |_, _| false)
                        .map_err(io(StorageIOError::write_logs))
                })
            },
            StorageIOError::write_logs,
        )
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(index = log_id.index, "purging raft log");
        let bytes = serde_json::to_vec(&log_id).map_err(io(StorageIOError::write_logs))?;
        let db = self.db.clone();
        blocking(
            move || {
                // One transaction: the purged mark and the deletion land together, so a crash
                // never leaves entries missing below a stale mark.
                write_durably(&db, StorageIOError::write_logs, |txn| {
                    put_meta(txn, LAST_PURGED, &bytes, StorageIOError::write_logs)?;
                    let mut table = txn
                        .open_table(ENTRIES)
                        .map_err(io(StorageIOError::write_logs))?;
                    table
                        .retain_in(..=log_id.index, |_, _| false)
                        .map_err(io(StorageIOError::write_logs))
                })
            },
            StorageIOError::write_logs,
        )
        .await
    }
}

/// Runs `f` in one write transaction and commits it with an fsync.
fn write_durably<T>(
    db: &Database,
    make: MakeError,
    f: impl FnOnce(&WriteTransaction) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let mut txn = db.begin_write().map_err(io(make))?;
    // Immediate is redb's default; set it anyway so a changed default cannot weaken the log.
    txn.set_durability(Durability::Immediate)
        .map_err(io(make))?;
    let out = f(&txn)?;
    txn.commit().map_err(io(make))?;
    Ok(out)
}

fn put_meta(
    txn: &WriteTransaction,
    key: &str,
    bytes: &[u8],
    make: MakeError,
) -> Result<(), StorageError> {
    let mut table = txn.open_table(META).map_err(io(make))?;
    table.insert(key, bytes).map_err(io(make))?;
    Ok(())
}

fn read_meta<T: DeserializeOwned>(
    db: &Database,
    key: &str,
    make: MakeError,
) -> Result<Option<T>, StorageError> {
    let txn = db.begin_read().map_err(io(make))?;
    let table = txn.open_table(META).map_err(io(make))?;
    get_json(&table, key, make)
}

fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    make: MakeError,
) -> Result<Option<T>, StorageError> {
    match table.get(key).map_err(io(make))? {
        Some(value) => Ok(Some(
            serde_json::from_slice(value.value()).map_err(io(make))?,
        )),
        None => Ok(None),
    }
}

fn read_entries(
    db: &Database,
    range: (Bound<u64>, Bound<u64>),
) -> Result<Vec<Entry>, StorageError> {
    if is_empty(&range) {
        return Ok(Vec::new());
    }
    let txn = db.begin_read().map_err(io(StorageIOError::read_logs))?;
    let table = txn
        .open_table(ENTRIES)
        .map_err(io(StorageIOError::read_logs))?;
    let mut entries = Vec::new();
    for item in table.range(range).map_err(io(StorageIOError::read_logs))? {
        let (_, value) = item.map_err(io(StorageIOError::read_logs))?;
        entries.push(decode_entry(value.value())?);
    }
    Ok(entries)
}

fn decode_entry(bytes: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(bytes).map_err(io(StorageIOError::read_logs))
}

/// Whether a range holds no index; such a range is answered without asking redb, whose
/// behaviour on a start past the end is not worth depending on.
fn is_empty(range: &(Bound<u64>, Bound<u64>)) -> bool {
    let start = match range.0 {
        Bound::Included(s) => s,
        Bound::Excluded(s) => match s.checked_add(1) {
            Some(s) => s,
            None => return true,
        },
        Bound::Unbounded => 0,
    };
    match range.1 {
        Bound::Included(e) => start > e,
        Bound::Excluded(e) => start >= e,
        Bound::Unbounded => false,
    }
}
