//! File metadata rendered the way every command shows it: type names, mode strings, RFC 3339 times
//! and paths that may not be UTF-8.

use std::fs::{FileType, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde_json::{Value, json};

use super::users::Names;
use crate::model::FileKind;

/// The stable name of a file type in command output.
pub fn kind(ft: &FileType) -> &'static str {
    file_kind(ft).as_str()
}

/// What kind of file a file type is.
pub fn file_kind(ft: &FileType) -> FileKind {
    if ft.is_symlink() {
        FileKind::Symlink
    } else if ft.is_dir() {
        FileKind::Dir
    } else if ft.is_file() {
        FileKind::File
    } else if ft.is_fifo() {
        FileKind::Fifo
    } else if ft.is_socket() {
        FileKind::Socket
    } else if ft.is_block_device() {
        FileKind::BlockDevice
    } else if ft.is_char_device() {
        FileKind::CharDevice
    } else {
        FileKind::Unknown
    }
}

/// Permission bits including setuid/setgid/sticky, as four octal digits ("0644", "4755").
pub fn mode_octal(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// The `ls -l` form of a mode ("drwxr-xr-x", "-rwsr-xr-x"), which analysts read faster than octal.
pub fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o010000 => 'p',
        0o140000 => 's',
        0o060000 => 'b',
        0o020000 => 'c',
        _ => '-',
    };
    let mut s = String::with_capacity(10);
    s.push(kind);
    // (read bit, write bit, exec bit, special bit, special char when exec set, when exec unset)
    let triads = [
        (0o400, 0o200, 0o100, 0o4000, 's', 'S'),
        (0o040, 0o020, 0o010, 0o2000, 's', 'S'),
        (0o004, 0o002, 0o001, 0o1000, 't', 'T'),
    ];
    for (r, w, x, special, on, off) in triads {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        s.push(match (mode & x != 0, mode & special != 0) {
            (true, true) => on,
            (false, true) => off,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Seconds and nanoseconds since the epoch as RFC 3339 UTC; `None` when out of range.
pub fn rfc3339(secs: i64, nanos: i64) -> Option<String> {
    let nanos = i32::try_from(nanos).ok()?;
    jiff::Timestamp::new(secs, nanos)
        .ok()
        .map(|t| t.to_string())
}

/// A path as text plus whether bytes were replaced because it is not UTF-8.
pub fn lossy(path: &Path) -> (String, bool) {
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), true),
    }
}

/// The fields `dir`, `fileinfo` and `findfile` share for one file, from `lstat`/`stat` data.
pub fn common_fields(md: &Metadata, names: &Names) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), json!(kind(&md.file_type())));
    m.insert("size".into(), json!(md.size()));
    m.insert("mode".into(), json!(mode_octal(md.mode())));
    m.insert("mode_string".into(), json!(mode_string(md.mode())));
    m.insert("uid".into(), json!(md.uid()));
    m.insert("owner".into(), json!(names.user_or_number(md.uid())));
    m.insert("gid".into(), json!(md.gid()));
    m.insert("group".into(), json!(names.group_or_number(md.gid())));
    m.insert(
        "modified".into(),
        json!(rfc3339(md.mtime(), md.mtime_nsec())),
    );
    m
}

#[cfg(test)]
mod tests;
