//! The blocking half of a transfer: open the declared file without side effects, and read one chunk
//! at a time by position with its SHA-256, checking after every read that the file did not change.
//! Call from a blocking thread.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{FILE_CHANGED, Refusal};
use crate::sys::hash::{self, OpenRefused};

/// What identifies one version of a file: another file at the path (inode), or a write to it
/// (size, mtime), changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
}

impl FileStamp {
    pub fn of(md: &Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec()),
        }
    }
}

/// A regular file opened for a window of chunks.
#[derive(Debug)]
pub struct OpenFile {
    file: File,
    path: PathBuf,
    stamp: FileStamp,
}

/// Opens `path` (symlinks followed) if it is a regular file of `declared_size` bytes and, when the
/// transfer already read it in an earlier window, still the file it was then (`remembered`).
///
/// The type is checked before opening, and the open uses `O_NONBLOCK`, so a FIFO or device is never
/// opened and cannot block the agent ([`hash::open_regular`], as `fileinfo` does).
pub fn open(
    path: &Path,
    declared_size: u64,
    remembered: Option<&FileStamp>,
) -> Result<OpenFile, Refusal> {
    let md = std::fs::metadata(path).map_err(|e| Refusal::failed(io_text("read", path, &e)))?;
    let file = hash::open_regular(path, &md).map_err(|refused| match refused {
        OpenRefused::NotRegular(kind) => Refusal::failed(format!(
            "'{}' is a {}, not a regular file: getfile sends regular files only and never opens a fifo, device or socket",
            path.display(),
            kind.replace('_', " ")
        )),
        OpenRefused::Changed => Refusal::failed(FILE_CHANGED),
        OpenRefused::Io(e) => Refusal::failed(io_text("open", path, &e)),
    })?;
    let md = file
        .metadata()
        .map_err(|e| Refusal::failed(io_text("read the metadata of", path, &e)))?;
    let stamp = FileStamp::of(&md);
    if let Some(before) = remembered
        && *before != stamp
    {
        return Err(Refusal::failed(FILE_CHANGED));
    }
    if stamp.size != declared_size {
        return Err(Refusal::failed(format!(
            "'{}' is {} bytes but fileinfo declared {declared_size}: the file changed since fileinfo; run fileinfo again and restart getfile",
            path.display(),
            stamp.size
        )));
    }
    Ok(OpenFile {
        file,
        path: path.to_owned(),
        stamp,
    })
}

impl OpenFile {
    pub fn stamp(&self) -> FileStamp {
        self.stamp
    }

    /// `len` bytes at `offset` and their hex SHA-256; refused if the file is shorter than that now
    /// or changed (size, mtime) while it was read.
    pub fn read_chunk(&self, offset: u64, len: usize) -> Result<(Vec<u8>, String), Refusal> {
        let mut data = vec![0u8; len];
        self.file
            .read_exact_at(&mut data, offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Refusal::failed(FILE_CHANGED),
                _ => Refusal::failed(format!(
                    "cannot read '{}' at byte {offset}: {}",
                    self.path.display(),
                    e.to_string().to_lowercase()
                )),
            })?;
        let now = self
            .file
            .metadata()
            .map_err(|e| Refusal::failed(io_text("read the metadata of", &self.path, &e)))?;
        if FileStamp::of(&now) != self.stamp {
            return Err(Refusal::failed(FILE_CHANGED));
        }
        let sha256 = hex::encode(Sha256::digest(&data));
        Ok((data, sha256))
    }
}

/// "cannot open '/x': no such file or directory (os error 2); it may have been moved or deleted".
fn io_text(what: &str, path: &Path, err: &io::Error) -> String {
    let hint = match err.kind() {
        io::ErrorKind::NotFound => "; it may have been moved or deleted since fileinfo",
        io::ErrorKind::PermissionDenied => "; the agent's user may not read it",
        _ => "",
    };
    format!(
        "cannot {what} '{}': {}{hint}",
        path.display(),
        err.to_string().to_lowercase()
    )
}

#[cfg(test)]
mod tests;
