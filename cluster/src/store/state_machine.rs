//! The lease state machine as openraft sees it: the table lives in memory and is persisted only as
//! snapshots in a redb file, the committed log after the snapshot being re-applied on restart.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use super::{Db, blocking, io};
use crate::lease::{LeaseQuery, LeaseTable, Millis, QueryAnswer};
use crate::raft_types::{
    Entry, LogId, NodeId, Response, Snapshot, SnapshotMeta, StorageError, StoredMembership,
    TypeConfig,
};

/// The current snapshot: its meta, its data, and the counter that keeps built snapshot ids unique.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");

const META: &str = "meta";
const DATA: &str = "data";
const COUNTER: &str = "counter";

type MakeError = fn(AnyError) -> StorageIOError<NodeId>;

fn read_snapshot_error(e: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::read_snapshot(None, e)
}

fn write_snapshot_error(e: AnyError) -> StorageIOError<NodeId> {
    StorageIOError::write_snapshot(None, e)
}

/// Everything applied so far; also the JSON data of a snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Applied {
    table: LeaseTable,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

/// openraft's state machine: the lease table in memory, snapshots in a redb file.
pub struct StateMachineStore {
    state: Arc<RwLock<Applied>>,
    db: Arc<Db>,
}

/// Builds snapshots from a copy of the state, so applying goes on while the copy is written.
pub struct SnapshotBuilder {
    state: Arc<RwLock<Applied>>,
    db: Arc<Db>,
}

/// A cheap, clonable read handle on the applied lease state, for the rest of the node.
///
/// Reads see whatever has been applied locally; linearizable answers need
/// `raft.ensure_linearizable()` first.
#[derive(Clone)]
pub struct StateReader {
    state: Arc<RwLock<Applied>>,
}

impl StateMachineStore {
    pub(super) fn database(&self) -> &Db {
        &self.db
    }

    /// Opens the snapshot file at `path`, creating it if missing, and loads its snapshot if any.
    pub async fn open(path: &Path) -> Result<StateMachineStore, StorageError> {
        let path = path.to_path_buf();
        let (db, applied) = blocking(
            move || {
                let db = Database::create(&path).map_err(io(read_snapshot_error))?;
                // Read transactions fail on tables that were never created, so create it now.
                let mut txn = db.begin_write().map_err(io(write_snapshot_error))?;
                txn.set_durability(Durability::Immediate)
                    .map_err(io(write_snapshot_error))?;
                txn.open_table(SNAPSHOT).map_err(io(write_snapshot_error))?;
                txn.commit().map_err(io(write_snapshot_error))?;
                let applied = match read_current(&db)? {
                    Some(snapshot) => decode(snapshot.meta, snapshot.snapshot.get_ref())?,
                    None => Applied::default(),
                };
                Ok((db, applied))
            },
            read_snapshot_error,
        )
        .await?;
        tracing::info!(last_applied = ?applied.last_applied, "state machine loaded from snapshot");
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(applied)),
            db: Arc::new(Db::new(db)),
        })
    }

    /// A read handle that stays valid while openraft owns this store.
    pub fn reader(&self) -> StateReader {
        StateReader {
            state: self.state.clone(),
        }
    }
}

impl StateReader {
    pub async fn query(&self, q: &LeaseQuery) -> QueryAnswer {
        self.state.read().await.table.query(q)
    }

    pub async fn last_applied(&self) -> Option<LogId> {
        self.state.read().await.last_applied
    }

    pub async fn membership(&self) -> StoredMembership {
        self.state.read().await.last_membership.clone()
    }

    /// The replicated clock: the latest stamped time applied.
    pub async fn clock(&self) -> Millis {
        self.state.read().await.table.clock()
    }

    /// Runs `f` on the table under the read lock; keep `f` short, it delays applying.
    pub async fn with_table<R>(&self, f: impl FnOnce(&LeaseTable) -> R) -> R {
        f(&self.state.read().await.table)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let applied = self.state.read().await.clone();
        let db = self.db.clone();
        blocking(
            move || {
                let data = serde_json::to_vec(&applied).map_err(io(write_snapshot_error))?;
                let meta = persist(&db, &data, |counter| SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.last_membership.clone(),
                    snapshot_id: snapshot_id(applied.last_applied, counter),
                })?;
                tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "built snapshot");
                Ok(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                })
            },
            write_snapshot_error,
        )
        .await
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.state.read().await;
        Ok((state.last_applied, state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut guard = self.state.write().await;
        let state = &mut *guard;
        let mut responses = Vec::new();
        for entry in entries {
            let outcome = match entry.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(req) => Some(state.table.apply(
                    entry.log_id.index,
                    req.stamped_at,
                    &req.op,
                )),
                EntryPayload::Membership(m) => {
                    state.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    None
                }
            };
            state.last_applied = Some(entry.log_id);
            responses.push(Response { outcome });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            state: self.state.clone(),
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let meta = meta.clone();
        let db = self.db.clone();
        let applied = blocking(
            move || {
                let applied = decode(meta.clone(), &data)?;
                // Durable before the in-memory swap: openraft purges the log behind an
                // installed snapshot, so after a crash this snapshot is the only copy.
                persist(&db, &data, |_| meta.clone())?;
                Ok(applied)
            },
            write_snapshot_error,
        )
        .await?;
        tracing::info!(last_applied = ?applied.last_applied, "installed snapshot");
        *self.state.write().await = applied;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let db = self.db.clone();
        blocking(move || read_current(&db), read_snapshot_error).await
    }
}

fn snapshot_id(last: Option<LogId>, counter: u64) -> String {
    match last {
        Some(last) => format!("{}-{}-{}", last.leader_id, last.index, counter),
        None => format!("none-{counter}"),
    }
}

/// Makes a snapshot the current one, durably, unless the stored one is newer; returns the meta
/// of the snapshot now current for this data.
///
/// A build races with an install; without the check a slow build of older state could replace
/// an installed snapshot whose log openraft has already purged.
fn persist(
    db: &Database,
    data: &[u8],
    make_meta: impl FnOnce(u64) -> SnapshotMeta,
) -> Result<SnapshotMeta, StorageError> {
    let make: MakeError = write_snapshot_error;
    let mut txn = db.begin_write().map_err(io(make))?;
    txn.set_durability(Durability::Immediate)
        .map_err(io(make))?;
    let meta = {
        let mut table = txn.open_table(SNAPSHOT).map_err(io(make))?;
        let counter: u64 = match table.get(COUNTER).map_err(io(make))? {
            Some(v) => serde_json::from_slice(v.value()).map_err(io(make))?,
            None => 0,
        } + 1;
        let meta = make_meta(counter);
        let stored: Option<SnapshotMeta> = match table.get(META).map_err(io(make))? {
            Some(v) => Some(serde_json::from_slice(v.value()).map_err(io(make))?),
            None => None,
        };
        if let Some(stored) = stored.filter(|s| s.last_log_id > meta.last_log_id) {
            tracing::info!(
                stored = %stored.snapshot_id,
                skipped = %meta.snapshot_id,
                "newer snapshot already stored, keeping it"
            );
            return Ok(meta);
        }
        let meta_bytes = serde_json::to_vec(&meta).map_err(io(make))?;
        let counter_bytes = serde_json::to_vec(&counter).map_err(io(make))?;
        table
            .insert(META, meta_bytes.as_slice())
            .map_err(io(make))?;
        table.insert(DATA, data).map_err(io(make))?;
        table
            .insert(COUNTER, counter_bytes.as_slice())
            .map_err(io(make))?;
        meta
    };
    txn.commit().map_err(io(make))?;
    Ok(meta)
}

/// The stored snapshot, if any.
fn read_current(db: &Database) -> Result<Option<Snapshot>, StorageError> {
    let make: MakeError = read_snapshot_error;
    let txn = db.begin_read().map_err(io(make))?;
    let table = txn.open_table(SNAPSHOT).map_err(io(make))?;
    let meta = table.get(META).map_err(io(make))?;
    let data = table.get(DATA).map_err(io(make))?;
    match (meta, data) {
        (Some(meta), Some(data)) => Ok(Some(Snapshot {
            meta: serde_json::from_slice(meta.value()).map_err(io(make))?,
            snapshot: Box::new(Cursor::new(data.value().to_vec())),
        })),
        _ => Ok(None),
    }
}

/// The applied state of a snapshot; the meta is authoritative for the log position.
fn decode(meta: SnapshotMeta, data: &[u8]) -> Result<Applied, StorageError> {
    let mut applied: Applied = serde_json::from_slice(data).map_err(io(read_snapshot_error))?;
    applied.last_applied = meta.last_log_id;
    applied.last_membership = meta.last_membership;
    Ok(applied)
}
