//! What the Linux system state commands (`services`, `scheduledtasks`, `startupfolders`,
//! `persistence`) share: a [`Scan`] that reads under the command's system root, skips what does
//! not exist, records what cannot be read as `{"path", "reason"}` and knows when to stop; and the
//! parsers of the files they read.
//!
//! Paths in their output are system paths ("/etc/crontab"), also when the agent reads a system
//! tree under another `system_root`.

pub mod cron;
pub mod cronexpr;
pub mod systemd;

#[cfg(test)]
pub(crate) mod fixture;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{CommandContext, CommandError};
use crate::sys::hash::{self, Streamed};
use crate::sys::root::{Account, SystemRoot, is_missing};
use crate::sys::{meta, users::Names};

/// The most entries one list of a result holds; the rest only set `truncated`.
pub const MAX_ENTRIES: usize = 10_000;
/// Errors beyond this many are counted in one last entry.
const MAX_ERRORS: usize = 100;
/// The largest configuration file (unit, crontab, desktop entry, key file) parsed.
pub const CONFIG_LIMIT: u64 = 4 * 1024 * 1024;
/// The most names read from one directory.
const MAX_DIR_NAMES: usize = 10_000;

/// Reading state of one command run.
pub struct Scan {
    pub root: SystemRoot,
    ctx: CommandContext,
    pub names: Names,
    pub accounts: Vec<Account>,
    errors: Vec<Value>,
    dropped_errors: u64,
}

/// Owner and times of one file, as every listing shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    pub owner: String,
    pub size: u64,
    pub modified: Option<String>,
    pub mode: u32,
}

impl FileFacts {
    pub fn executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

impl Scan {
    /// Reads the root's accounts and names once.
    pub fn new(ctx: &CommandContext) -> Self {
        let root = ctx.system_root().clone();
        let mut scan = Self {
            names: root.names(),
            accounts: Vec::new(),
            root,
            ctx: ctx.clone(),
            errors: Vec::new(),
            dropped_errors: 0,
        };
        match scan.root.accounts() {
            Ok(a) => scan.accounts = a,
            Err(e) => scan.error(Path::new("/etc/passwd"), &io_reason(&e)),
        }
        scan
    }

    /// True once the command was cancelled or ran out of time.
    pub fn stopped(&self) -> bool {
        self.ctx.is_stopped()
    }

    /// Records that `path` could not be read (or made sense of) and why.
    pub fn error(&mut self, path: &Path, reason: &str) {
        if self.errors.len() < MAX_ERRORS {
            self.errors
                .push(json!({"path": show(path), "reason": reason}));
        } else {
            self.dropped_errors += 1;
        }
    }

    /// Records an IO error unless it says the file is not there (normal for optional files).
    pub fn io_error(&mut self, path: &Path, e: &std::io::Error) {
        if !is_missing(e) {
            self.error(path, &io_reason(e));
        }
    }

    /// The errors so far, the last one counting those not shown.
    pub fn errors(&self) -> Vec<Value> {
        let mut out = self.errors.clone();
        if self.dropped_errors > 0 {
            out.push(json!({"path": null, "reason": format!("{} more errors not shown", self.dropped_errors)}));
        }
        out
    }

    /// A configuration file as text; `None` when missing (silently) or unreadable (recorded).
    pub fn read_text(&mut self, path: &Path) -> Option<String> {
        match self.root.read_text(path, CONFIG_LIMIT) {
            Ok(t) => Some(t),
            Err(e) => {
                self.io_error(path, &e);
                None
            }
        }
    }

    /// The entries of a directory as system paths, sorted by name; empty when it is missing.
    pub fn list(&mut self, dir: &Path) -> Vec<PathBuf> {
        match self.root.read_dir(dir, MAX_DIR_NAMES) {
            Ok((names, more)) => {
                if more > 0 {
                    self.error(
                        dir,
                        &format!("{more} entries beyond the first {MAX_DIR_NAMES} were not read"),
                    );
                }
                names.into_iter().map(|n| dir.join(n)).collect()
            }
            Err(e) => {
                self.io_error(dir, &e);
                Vec::new()
            }
        }
    }

    /// The regular files (or links to them) of a directory, sorted.
    pub fn list_files(&mut self, dir: &Path) -> Vec<PathBuf> {
        self.list(dir)
            .into_iter()
            .filter(|p| self.root.metadata(p).is_ok_and(|m| m.is_file()))
            .collect()
    }

    /// Owner, size, mode and modification time, following symlinks; `None` when missing or
    /// unreadable (recorded).
    pub fn facts(&mut self, path: &Path) -> Option<FileFacts> {
        match self.root.metadata(path) {
            Ok(md) => Some(FileFacts {
                owner: self.names.user_or_number(md.uid()),
                size: md.size(),
                modified: meta::rfc3339(md.mtime(), md.mtime_nsec()),
                mode: md.mode(),
            }),
            Err(e) => {
                self.io_error(path, &e);
                None
            }
        }
    }

    /// SHA256 of a regular file; `None` (recorded) when it cannot be read or the command stops.
    pub fn sha256(&mut self, path: &Path) -> Option<String> {
        let digest = (|| {
            let host = self.root.resolve(path)?;
            let md = std::fs::metadata(&host)?;
            let mut file = hash::open_regular(&host, &md).map_err(|e| match e {
                hash::OpenRefused::NotRegular(kind) => {
                    std::io::Error::other(format!("it is a {kind}, not a regular file"))
                }
                hash::OpenRefused::Changed => std::io::Error::other("it changed while opened"),
                hash::OpenRefused::Io(e) => e,
            })?;
            let ctx = self.ctx.clone();
            match hash::sha256(&mut file, &move || ctx.is_stopped())? {
                Streamed::Complete { value, .. } => Ok(Some(value)),
                Streamed::Stopped { .. } => Ok(None),
            }
        })();
        match digest {
            Ok(d) => d,
            Err(e) => {
                self.io_error(path, &e);
                None
            }
        }
    }

    /// Every distinct home directory with the first account that has it; "/" and homes that do
    /// not exist are left out (system accounts share them and hold no user files).
    pub fn homes(&self) -> Vec<(String, PathBuf)> {
        let mut seen = std::collections::HashSet::new();
        self.accounts
            .iter()
            .filter(|a| a.home.is_absolute() && a.home != Path::new("/"))
            .filter(|a| seen.insert(a.home.clone()))
            .filter(|a| self.root.metadata(&a.home).is_ok_and(|m| m.is_dir()))
            .map(|a| (a.name.clone(), a.home.clone()))
            .collect()
    }

    /// The command's result, or the partial result when it was stopped.
    pub fn finish(&self, value: Value) -> Result<Value, CommandError> {
        if self.stopped() {
            Err(CommandError::Interrupted {
                partial: Some(value),
            })
        } else {
            Ok(value)
        }
    }
}

/// A path for output: text, non-UTF-8 bytes replaced.
pub fn show(path: &Path) -> String {
    meta::lossy(path).0
}

/// An IO error as a reason: lowercase, with a hint where one helps.
pub fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string().to_lowercase();
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!("{text}; the agent's user may not read it")
    } else {
        text
    }
}

/// A list capped at [`MAX_ENTRIES`].
#[derive(Debug)]
pub struct Capped<T> {
    pub items: Vec<T>,
    pub truncated: bool,
}

impl<T> Default for Capped<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            truncated: false,
        }
    }
}

impl<T> Capped<T> {
    pub fn push(&mut self, item: T) {
        if self.items.len() < MAX_ENTRIES {
            self.items.push(item);
        } else {
            self.truncated = true;
        }
    }
}
