//! The blocking half of a put: the working folder, the partial file chunks are written into, and
//! the move of a checked file to its name. Call from a blocking thread.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::volatile::Volatile;
use super::{Offer, PARTIAL_DIR};
use crate::sys::hash::{self, Streamed};
use crate::transfer::Refusal;

/// The SHA-256 of nothing: what an empty file must declare.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The working folder and the record of files to delete at restart.
#[derive(Debug)]
pub struct WorkDir {
    dir: PathBuf,
    /// One writer at a time: puts of several transfers may end together.
    volatile: Mutex<Volatile>,
}

impl WorkDir {
    /// `dir` should be absolute: the path a finished put answers is `dir` joined with its name.
    pub fn new(dir: PathBuf, volatile: Volatile) -> Self {
        Self {
            dir,
            volatile: Mutex::new(volatile),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the partial file of `transfer_id` (already checked) is.
    pub fn partial(&self, transfer_id: &str) -> PathBuf {
        self.dir.join(PARTIAL_DIR).join(transfer_id)
    }

    /// Creates the working folder and its partial folder with mode 0700 if they are missing.
    fn ensure(&self) -> Result<(), Refusal> {
        let partial = self.dir.join(PARTIAL_DIR);
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&partial)
            .map_err(|e| {
                Refusal::failed(format!(
                    "{}; set work_dir in the agent's config to a folder the agent may write, or fix this one",
                    io_text("create the working folder", &partial, &e)
                ))
            })
    }

    /// Starts or resumes a put: refused when the name is taken and the offer does not overwrite;
    /// otherwise the partial file, open for writing, and how many chunks it already holds.
    pub fn begin(&self, offer: &Offer) -> Result<(File, u64), Refusal> {
        self.refuse_taken(offer)?;
        if offer.size == 0 && offer.sha256 != EMPTY_SHA256 {
            return Err(self.mismatch(EMPTY_SHA256, offer));
        }
        self.ensure()?;
        let path = self.partial(&offer.transfer_id);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // The folder is the agent's own, but a link planted there must still not be followed.
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Refusal::failed(io_text("create the partial file", &path, &e)))?;
        let len = file
            .metadata()
            .map_err(|e| Refusal::failed(io_text("read the metadata of", &path, &e)))?
            .len();
        if len > offer.size {
            // Left by another file under the same transfer id: start over.
            file.set_len(0)
                .map_err(|e| Refusal::failed(io_text("truncate", &path, &e)))?;
            return Ok((file, 0));
        }
        Ok((file, offer.received_in(len)))
    }

    /// Checks the whole partial file against the offer and moves it to its name: the absolute path
    /// it now has. On a mismatch the partial file is deleted.
    pub fn finish(&self, offer: &Offer, file: &File) -> Result<PathBuf, Refusal> {
        let partial = self.partial(&offer.transfer_id);
        file.sync_all()
            .map_err(|e| Refusal::failed(io_text("flush", &partial, &e)))?;
        // The very file the chunks were written to, read from its start.
        let mut reader = file
            .try_clone()
            .and_then(|mut f| f.seek(SeekFrom::Start(0)).map(|_| f))
            .map_err(|e| Refusal::failed(io_text("read", &partial, &e)))?;
        let actual = match hash::sha256(&mut reader, &|| false) {
            Ok(Streamed::Complete { value, .. }) => value,
            Ok(Streamed::Stopped { .. }) => {
                return Err(Refusal::failed(
                    "hashing the received file stopped before its end; run putfile again",
                ));
            }
            Err(e) => return Err(Refusal::failed(io_text("read", &partial, &e))),
        };
        if actual != offer.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(self.mismatch(&actual, offer));
        }
        if let Err(refusal) = self.refuse_taken(offer) {
            // Nothing changes in the working folder, and no partial file is left behind.
            let _ = std::fs::remove_file(&partial);
            return Err(refusal);
        }
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| Refusal::failed(io_text("set the mode of", &partial, &e)))?;
        let dest = self.dir.join(&offer.name);
        // Listed before it is in place, so no crash leaves a file to delete unlisted.
        let listed = if offer.keep {
            None
        } else {
            Some(self.volatile(|v| v.add(&offer.name))?)
        };
        if let Err(e) = place(&partial, &dest, offer.overwrite) {
            if listed == Some(false) {
                let _ = self.volatile(|v| v.remove(&offer.name));
            }
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(&partial);
                taken(offer, &self.dir)
            } else {
                Refusal::failed(format!(
                    "{}; the checked file stays as {} until the put is offered again",
                    io_text("move the file into place at", &dest, &e),
                    partial.display()
                ))
            });
        }
        if offer.keep {
            self.volatile(|v| v.remove(&offer.name))?;
        }
        Ok(dest)
    }

    /// Deletes the partial file of `transfer_id`; true if there was one.
    pub fn discard(&self, transfer_id: &str) -> io::Result<bool> {
        match std::fs::remove_file(self.partial(transfer_id)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn refuse_taken(&self, offer: &Offer) -> Result<(), Refusal> {
        if !offer.overwrite && std::fs::symlink_metadata(self.dir.join(&offer.name)).is_ok() {
            return Err(taken(offer, &self.dir));
        }
        Ok(())
    }

    fn mismatch(&self, actual: &str, offer: &Offer) -> Refusal {
        Refusal::failed(format!(
            "the file received hashes to {actual}, not the declared {}; nothing was written, run putfile again",
            offer.sha256
        ))
    }

    fn volatile<T>(&self, f: impl FnOnce(&Volatile) -> io::Result<T>) -> Result<T, Refusal> {
        let v = self.volatile.lock().unwrap_or_else(|e| e.into_inner());
        f(&v).map_err(|e| {
            Refusal::failed(format!(
                "{}; the file was not put; free space or fix permissions in state_dir, then run putfile again",
                io_text("update the list of files to delete at restart", v.path(), &e)
            ))
        })
    }
}

/// Writes one checked chunk at its place in the partial file.
pub fn write_chunk(
    file: &File,
    name: &str,
    index: u64,
    offset: u64,
    data: &[u8],
) -> Result<(), Refusal> {
    file.write_all_at(data, offset).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
                "; free space in the working folder, then offer the put again to resume"
            }
            _ => "; offer the put again to resume",
        };
        Refusal::failed(format!(
            "cannot write chunk {index} of '{name}': {}{hint}",
            e.to_string().to_lowercase()
        ))
    })
}

/// Moves `partial` to `dest` atomically and makes the move durable. Without `overwrite` a hard
/// link is made, which fails rather than replace a file created since the check; where the file
/// system has no hard links, a rename after a fresh check has to do.
fn place(partial: &Path, dest: &Path, overwrite: bool) -> io::Result<()> {
    if overwrite {
        std::fs::rename(partial, dest)?;
    } else {
        match std::fs::hard_link(partial, dest) {
            Ok(()) => std::fs::remove_file(partial)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => {
                if std::fs::symlink_metadata(dest).is_ok() {
                    return Err(io::ErrorKind::AlreadyExists.into());
                }
                std::fs::rename(partial, dest)?;
            }
        }
    }
    if let Some(dir) = dest.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn taken(offer: &Offer, dir: &Path) -> Refusal {
    Refusal::failed(format!(
        "{} already exists in the working folder {}; add -overwrite to replace it",
        offer.name,
        dir.display()
    ))
}

/// "cannot create the partial file '/x': permission denied (os error 13)".
pub fn io_text(what: &str, path: &Path, err: &io::Error) -> String {
    format!(
        "cannot {what} '{}': {}",
        path.display(),
        err.to_string().to_lowercase()
    )
}
