//! Streaming file hashes: MD5, SHA1 and SHA256 in one pass with a 64 KiB buffer, stoppable between
//! reads, and opening that never blocks on a FIFO or leaves an access-time trace.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::magic;

/// Files larger than this get metadata only (COMMANDS.md: fileinfo hashing limit).
pub const HASH_LIMIT_BYTES: u64 = 10 * 1024 * 1024 * 1024;

const BUFFER_LEN: usize = 64 * 1024;

/// Why a path was not opened for reading.
#[derive(Debug)]
pub enum OpenRefused {
    /// Not a regular file (FIFO, device, socket, directory): opening could block or have side effects.
    NotRegular(&'static str),
    /// The file changed between the check and the open (e.g. replaced by another file).
    Changed,
    Io(io::Error),
}

/// Opens a regular file for hashing without side effects.
///
/// `O_NONBLOCK` makes an open of a FIFO that replaced the file since `expected` was read return at
/// once instead of hanging; `O_NOCTTY` stops a terminal from becoming ours; `O_NOATIME` keeps the
/// access time an investigator may need (only allowed to the owner or root, so retried without).
/// The opened file is checked to be the same regular file as `expected`.
pub fn open_regular(path: &Path, expected: &Metadata) -> Result<File, OpenRefused> {
    if !expected.file_type().is_file() {
        return Err(OpenRefused::NotRegular(super::meta::kind(
            &expected.file_type(),
        )));
    }
    let base = libc::O_NONBLOCK | libc::O_NOCTTY;
    let file = match open_with(path, base | libc::O_NOATIME) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => open_with(path, base),
        other => other,
    }
    .map_err(OpenRefused::Io)?;
    let actual = file.metadata().map_err(OpenRefused::Io)?;
    if !actual.file_type().is_file() {
        return Err(OpenRefused::NotRegular(super::meta::kind(
            &actual.file_type(),
        )));
    }
    if (actual.dev(), actual.ino()) != (expected.dev(), expected.ino()) {
        return Err(OpenRefused::Changed);
    }
    Ok(file)
}

fn open_with(path: &Path, flags: i32) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(flags).open(path)
}

/// Hex digests of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub md5: String,
    pub sha1: String,
    pub sha256: String,
}

/// What a streaming pass produced.
#[derive(Debug)]
pub enum Streamed<T> {
    Complete {
        value: T,
        bytes: u64,
        /// The first bytes, for [`magic::guess`].
        head: Vec<u8>,
    },
    /// `stop` said so; `bytes` were read until then.
    Stopped { bytes: u64 },
}

/// Reads `file` to the end once, feeding every chunk to `sink`; checks `stop` before each read.
pub fn stream(
    file: &mut File,
    stop: &dyn Fn() -> bool,
    mut sink: impl FnMut(&[u8]),
) -> io::Result<Streamed<()>> {
    let mut buf = vec![0u8; BUFFER_LEN];
    let mut head = Vec::with_capacity(magic::HEAD_LEN);
    let mut bytes = 0u64;
    loop {
        if stop() {
            return Ok(Streamed::Stopped { bytes });
        }
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if head.len() < magic::HEAD_LEN {
            let take = (magic::HEAD_LEN - head.len()).min(n);
            head.extend_from_slice(&buf[..take]);
        }
        sink(&buf[..n]);
        bytes += n as u64;
    }
    Ok(Streamed::Complete {
        value: (),
        bytes,
        head,
    })
}

/// MD5, SHA1 and SHA256 of `file` in one pass.
pub fn all_digests(file: &mut File, stop: &dyn Fn() -> bool) -> io::Result<Streamed<Digests>> {
    let (mut md5, mut sha1, mut sha256) = (Md5::new(), Sha1::new(), Sha256::new());
    let streamed = stream(file, stop, |chunk| {
        md5.update(chunk);
        sha1.update(chunk);
        sha256.update(chunk);
    })?;
    Ok(match streamed {
        Streamed::Complete { bytes, head, .. } => Streamed::Complete {
            value: Digests {
                md5: hex::encode(md5.finalize()),
                sha1: hex::encode(sha1.finalize()),
                sha256: hex::encode(sha256.finalize()),
            },
            bytes,
            head,
        },
        Streamed::Stopped { bytes } => Streamed::Stopped { bytes },
    })
}

/// SHA256 of `file` alone (process images).
pub fn sha256(file: &mut File, stop: &dyn Fn() -> bool) -> io::Result<Streamed<String>> {
    let mut h = Sha256::new();
    let streamed = stream(file, stop, |chunk| h.update(chunk))?;
    Ok(match streamed {
        Streamed::Complete { bytes, head, .. } => Streamed::Complete {
            value: hex::encode(h.finalize()),
            bytes,
            head,
        },
        Streamed::Stopped { bytes } => Streamed::Stopped { bytes },
    })
}

#[cfg(test)]
mod tests;
