//! The agent's persisted fencing state in `state_dir`: written to a temp file, fsynced, renamed over
//! the old one and the directory fsynced, so a crash leaves either the old or the new state.
//! A lock file keeps two agents from sharing one state directory.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::PersistedState;

pub const STATE_FILE: &str = "agent-state.json";
const LOCK_FILE: &str = "agent.lock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot use state_dir '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the fencing state in '{}' is unreadable ({reason}); restore it from a backup, or delete it only if you accept that a command from an older session may run once more",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "state_dir '{}' is in use by another agent process; give each agent its own state_dir",
        path.display()
    )]
    Locked { path: PathBuf },
}

/// Owns the state directory for the life of one agent run.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    /// Held for its lock: released when the store is dropped.
    _lock: File,
}

impl StateStore {
    /// Creates the directory if needed, locks it and loads the state (default when absent).
    pub fn open(dir: &Path) -> Result<(Self, PersistedState), StateError> {
        let io = |source| StateError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: dir.to_owned(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let path = dir.join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedState::default(),
            Err(e) => {
                return Err(StateError::Io { path, source: e });
            }
        };
        Ok((
            Self {
                dir: dir.to_owned(),
                _lock: lock,
            },
            state,
        ))
    }

    /// Durably replaces the state. Blocking: call from a blocking thread.
    pub fn save(&self, state: &PersistedState) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec(state).map_err(std::io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, self.dir.join(STATE_FILE))?;
        // The rename is durable only once the directory entry is.
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lock() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let (store, state) = StateStore::open(&dir).unwrap();
        assert_eq!(state, PersistedState::default());
        let saved = PersistedState {
            highest_token: 42,
            started: vec!["a".into(), "b".into()],
        };
        store.save(&saved).unwrap();
        assert!(matches!(
            StateStore::open(&dir),
            Err(StateError::Locked { .. })
        ));
        drop(store);
        // Another test spawning a process may hold a copy of the lock's descriptor between its
        // fork and exec for a moment: the lock is free once that child has exec'd.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (_store, loaded) = loop {
            match StateStore::open(&dir) {
                Err(StateError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(loaded, saved);
        assert!(!dir.join(format!("{STATE_FILE}.tmp")).exists());
    }

    #[test]
    fn corrupt_state_refuses_to_start() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(STATE_FILE), b"{not json").unwrap();
        let err = StateStore::open(tmp.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }));
        assert!(err.to_string().contains("unreadable"), "{err}");
    }
}
