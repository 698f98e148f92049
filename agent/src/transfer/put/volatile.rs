//! Files put without `keep` are deleted when the device restarts. They are listed in
//! `<state_dir>/volatile-files.json` with the boot id of the time they were put:
//!
//! ```json
//! {"boot_id":"4a7c3f0e-1b2d-4c5e-9f60-7a8b9c0d1e2f","files":["collector.sh","tool.bin"]}
//! ```
//!
//! When the agent starts and the kernel's boot id (`/proc/sys/kernel/random/boot_id`, read under
//! `system_root`) is not the recorded one, the device restarted: the listed files are deleted
//! from the working folder, regular files only, never through a symlink, and the list is emptied.
//! An agent restart on the same boot deletes nothing. The list is written like the fencing state
//! (temp file, fsync, rename, fsync of the folder).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::check_name;
use crate::sys::root::SystemRoot;

pub const VOLATILE_FILE: &str = "volatile-files.json";

/// Where the kernel tells this boot apart from the others.
pub const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// What the state file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolatileRecord {
    /// The boot id when the list was last written; empty when it could not be read.
    pub boot_id: String,
    /// Names in the working folder.
    pub files: BTreeSet<String>,
}

/// The list of files to delete at restart, in `state_dir`.
#[derive(Debug)]
pub struct Volatile {
    path: PathBuf,
    boot_id: PathBuf,
}

/// What the start-up check did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// The device restarted since the list was written.
    pub rebooted: bool,
    pub deleted: Vec<String>,
}

impl Volatile {
    pub fn new(state_dir: &Path, system_root: &SystemRoot) -> Self {
        Self {
            path: state_dir.join(VOLATILE_FILE),
            boot_id: system_root.host(Path::new(BOOT_ID)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This boot's id, `None` when the kernel does not say.
    pub fn boot_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.boot_id).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    /// The record on disk; empty when there is none.
    pub fn load(&self) -> io::Result<VolatileRecord> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a valid list ({e})", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(VolatileRecord::default()),
            Err(e) => Err(e),
        }
    }

    /// Lists `name` as to be deleted at restart; true if it already was.
    pub fn add(&self, name: &str) -> io::Result<bool> {
        let mut record = self.load_or_fresh();
        let listed = !record.files.insert(name.to_owned());
        if let Some(id) = self.boot_id() {
            record.boot_id = id;
        }
        self.save(&record)?;
        Ok(listed)
    }

    /// Keeps `name` across restarts.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        let mut record = self.load_or_fresh();
        if record.files.remove(name) {
            self.save(&record)?;
        }
        Ok(())
    }

    /// At agent start: when the boot id is not the recorded one, deletes the listed files from
    /// `work_dir` and empties the list.
    pub fn clean_at_start(&self, work_dir: &Path) -> io::Result<Cleanup> {
        let record = match self.load() {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                warn!(
                    error = %e,
                    "the list of files to delete at restart is unreadable; it is replaced, and files put without -keep before now are not deleted: delete them from the working folder by hand"
                );
                VolatileRecord::default()
            }
            Err(e) => return Err(e),
        };
        let Some(now) = self.boot_id() else {
            warn!(
                path = %self.boot_id.display(),
                "cannot read the boot id, so a restart of the device cannot be told; files put without -keep are not deleted"
            );
            return Ok(Cleanup::default());
        };
        if record.boot_id == now {
            return Ok(Cleanup::default());
        }
        let mut cleanup = Cleanup {
            // A list written when the boot id could not be read proves nothing.
            rebooted: !record.boot_id.is_empty(),
            deleted: Vec::new(),
        };
        let mut kept = BTreeSet::new();
        if cleanup.rebooted {
            for name in &record.files {
                match delete(work_dir, name) {
                    Ok(true) => cleanup.deleted.push(name.clone()),
                    Ok(false) => {}
                    Err(e) => {
                        warn!(name = %name, error = %e, "cannot delete a file put without -keep; it stays listed and is tried again at the next restart");
                        kept.insert(name.clone());
                    }
                }
            }
        } else {
            kept = record.files;
        }
        self.save(&VolatileRecord {
            boot_id: now,
            files: kept,
        })?;
        Ok(cleanup)
    }

    fn load_or_fresh(&self) -> VolatileRecord {
        self.load().unwrap_or_else(|e| {
            warn!(error = %e, "the list of files to delete at restart is unreadable; starting a new one");
            VolatileRecord::default()
        })
    }

    fn save(&self, record: &VolatileRecord) -> io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Deletes `work_dir/name` if it is a regular file; true if it did. A name that is not a plain
/// file name is never joined to the folder (the list is a file anyone with access to state_dir
/// could edit), and a symlink or folder at the name is left alone.
fn delete(work_dir: &Path, name: &str) -> io::Result<bool> {
    if check_name(name).is_err() {
        warn!(name = %name.escape_debug(), "not a plain file name; left alone");
        return Ok(false);
    }
    let path = work_dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(md) if md.file_type().is_file() => {
            std::fs::remove_file(&path)?;
            Ok(true)
        }
        Ok(_) => {
            warn!(path = %path.display(), "not a regular file; left alone");
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
