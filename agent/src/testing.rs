//! Test hooks that make the agent misbehave on purpose, so the broker's tests can check it copes.
//!
//! Compiled only with the cargo feature `test-hooks`, which no production build enables: no config
//! key, environment variable or message reaches them. A test crate turns it on with
//! `agent = { path = "../agent", features = ["test-hooks"] }` in its `[dev-dependencies]`.
//!
//! Hooks are process-wide and keyed by the file path a chunk request names (compared as sent, so
//! give the same absolute path), so tests running in parallel in one process, each on its own
//! fixture file, do not meet each other's hooks.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// How a chunk is corrupted in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// The data no longer matches the chunk's `sha256`: the per-chunk check must catch it.
    Data,
    /// The data is changed and its `sha256` recomputed to match: only the broker's whole-file
    /// SHA-256 can catch it.
    DataAndChecksum,
}

struct Tamper {
    path: PathBuf,
    index: u64,
    how: Corruption,
}

static TAMPERS: Mutex<Vec<Tamper>> = Mutex::new(Vec::new());
static DELAYS: Mutex<Vec<(PathBuf, Duration)>> = Mutex::new(Vec::new());
static READS: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

/// Corrupts chunk `index` of the next transfer of `path` once: the first time that chunk is sent
/// it is corrupted (its first byte inverted; an empty chunk gets one byte), and sent intact when
/// asked again.
pub fn corrupt_chunk_once(path: impl Into<PathBuf>, index: u64, how: Corruption) {
    TAMPERS.lock().unwrap().push(Tamper {
        path: path.into(),
        index,
        how,
    });
}

/// Waits `delay` before reading each chunk of `path` (stoppable by a cancel), so a test can act
/// while a window is in flight. Replaces an earlier delay for the same path.
pub fn delay_chunks(path: impl Into<PathBuf>, delay: Duration) {
    let path = path.into();
    let mut delays = DELAYS.lock().unwrap();
    delays.retain(|(p, _)| *p != path);
    delays.push((path, delay));
}

/// How many chunks of `path` the agent has read from disk so far, all transfers together: a test
/// can check that a stalled stream stalls the reads.
pub fn chunks_read(path: &Path) -> u64 {
    READS
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| p == path)
        .map_or(0, |(_, n)| *n)
}

/// Removes every hook and count for `path`.
pub fn clear(path: &Path) {
    TAMPERS.lock().unwrap().retain(|t| t.path != path);
    DELAYS.lock().unwrap().retain(|(p, _)| p != path);
    READS.lock().unwrap().retain(|(p, _)| p != path);
}

pub(crate) fn delay(path: &Path) -> Option<Duration> {
    DELAYS
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, d)| *d)
}

/// Called with every chunk read: counts it, and corrupts it if a hook says so.
pub(crate) fn after_read(
    path: &Path,
    index: u64,
    mut data: Vec<u8>,
    sha256: String,
) -> (Vec<u8>, String) {
    {
        let mut reads = READS.lock().unwrap();
        match reads.iter_mut().find(|(p, _)| p == path) {
            Some((_, n)) => *n += 1,
            None => reads.push((path.to_owned(), 1)),
        }
    }
    let how = {
        let mut tampers = TAMPERS.lock().unwrap();
        let Some(at) = tampers
            .iter()
            .position(|t| t.path == path && t.index == index)
        else {
            return (data, sha256);
        };
        tampers.remove(at).how
    };
    match data.first_mut() {
        Some(b) => *b = !*b,
        None => data.push(0),
    }
    tracing::warn!(path = %path.display(), index, ?how, "test hook: chunk corrupted");
    match how {
        Corruption::Data => (data, sha256),
        Corruption::DataAndChecksum => {
            let sha256 = hex::encode(Sha256::digest(&data));
            (data, sha256)
        }
    }
}
