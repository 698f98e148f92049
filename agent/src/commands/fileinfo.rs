//! `fileinfo <path>`: metadata and MD5/SHA1/SHA256 of one file.
//!
//! Symlinks are followed (the analyst wants the file); when the path itself is a symlink its target
//! is shown. Hashes are computed in one streaming pass, for regular files only and up to
//! [`HASH_LIMIT_BYTES`]: a FIFO, device, socket or directory is never opened and gets
//! `"hashes": null` with the reason in `hashes_note`. The file is opened with `O_NOATIME` where
//! allowed, so looking at it does not change its access time. Cancelling mid-hash returns the
//! metadata with `hashes: null`.
//!
//! Beside the document, a completed fileinfo returns the facts getfile needs ([`FileFacts`]: path,
//! type, size, SHA-256, hashes note), typed, so the broker never reads them back out of the JSON.
//!
//! Output:
//! ```json
//! {"path": "/abs/file", "name": "file", "name_lossy": false,
//!  "type": "file", "size": 5, "mode": "0644", "mode_string": "-rw-r--r--",
//!  "uid": 0, "owner": "root", "gid": 0, "group": "root",
//!  "modified": "...Z", "accessed": "...Z", "changed": "...Z", "created": "...Z" | null,
//!  "hidden": false, "inode": 123, "device": 2049, "hard_links": 1,
//!  "symlink_target": null | "target as stored in the link",
//!  "magic": "elf|script|text|data|gzip|zip|pdf|png|...|empty" | null,
//!  "hashes": {"md5": "hex", "sha1": "hex", "sha256": "hex"} | null,
//!  "hashes_note": null | "why there are no hashes, or that the file changed while read"}
//! ```

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::UNIX_EPOCH;

use ::commands::Invocation;
use serde_json::{Map, Value, json};

use super::{
    CommandContext, CommandError, CommandOutput, CommandResult, blocking, io_message, required,
};
use crate::model::FileFacts;
use crate::sys::hash::{self, OpenRefused, Streamed};
use crate::sys::{magic, meta, users::Names};

pub use crate::sys::hash::HASH_LIMIT_BYTES;

pub async fn run(ctx: CommandContext, args: Invocation) -> CommandResult {
    let path = ctx.resolve(required(&args, "path")?);
    blocking(move || inspect(&ctx, &path)).await
}

fn inspect(ctx: &CommandContext, path: &Path) -> CommandResult {
    let lmd = std::fs::symlink_metadata(path)
        .map_err(|e| CommandError::io("read the metadata of", path, &e))?;
    let mut note = None;
    let (md, symlink_target) = if lmd.file_type().is_symlink() {
        let target = std::fs::read_link(path).ok().map(|t| meta::lossy(&t).0);
        match std::fs::metadata(path) {
            Ok(md) => (md, target),
            Err(e) => {
                note = Some(format!(
                    "the symlink's target cannot be reached ({}); showing the link itself",
                    e.to_string().to_lowercase()
                ));
                (lmd, target)
            }
        }
    } else {
        (lmd, None)
    };

    let names = Names::load();
    let mut obj = describe(path, &md, &names);
    obj.insert("symlink_target".into(), json!(symlink_target));

    let (hashes, magic, hash_note) = if note.is_some() {
        (None, None, None)
    } else if !md.is_file() {
        let kind = meta::kind(&md.file_type());
        let why = format!("not a regular file ({kind}): not opened, so no hashes");
        (None, None, Some(why))
    } else if md.size() > HASH_LIMIT_BYTES {
        let why = format!(
            "{} bytes is over the hashing limit of {HASH_LIMIT_BYTES} bytes; no hashes",
            md.size()
        );
        (None, None, Some(why))
    } else {
        match hash_file(ctx, path, &md) {
            HashResult::Done {
                digests,
                magic,
                note,
            } => (Some(digests), Some(magic), note),
            HashResult::Refused(why) => (None, None, Some(why)),
            HashResult::Stopped { bytes } => {
                obj.insert("magic".into(), Value::Null);
                obj.insert("hashes".into(), Value::Null);
                let note = format!("stopped after hashing {bytes} of {} bytes", md.size());
                obj.insert("hashes_note".into(), json!(note));
                return Err(CommandError::Interrupted {
                    partial: Some(Value::Object(obj)),
                });
            }
        }
    };
    let hashes_note = note.or(hash_note);
    obj.insert("magic".into(), json!(magic));
    obj.insert(
        "hashes".into(),
        hashes.as_ref().map_or(
            Value::Null,
            |d: &hash::Digests| json!({"md5": d.md5, "sha1": d.sha1, "sha256": d.sha256}),
        ),
    );
    obj.insert("hashes_note".into(), json!(hashes_note));
    let facts = FileFacts {
        path: meta::lossy(path).0,
        kind: meta::file_kind(&md.file_type()),
        size: md.size(),
        sha256: hashes.map(|d| d.sha256),
        hashes_note,
    };
    Ok(CommandOutput {
        value: Value::Object(obj),
        cwd: None,
        file_facts: Some(facts),
    })
}

/// The metadata fields, from a `stat` of the file.
fn describe(path: &Path, md: &Metadata, names: &Names) -> Map<String, Value> {
    let mut obj = meta::common_fields(md, names);
    let (shown, _) = meta::lossy(path);
    let name_os = path.file_name().unwrap_or(path.as_os_str());
    let (name, name_lossy) = meta::lossy(Path::new(name_os));
    let created = md
        .created()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| {
            meta::rfc3339(
                i64::try_from(d.as_secs()).ok()?,
                i64::from(d.subsec_nanos()),
            )
        });
    obj.insert("path".into(), json!(shown));
    obj.insert("name".into(), json!(name));
    obj.insert("name_lossy".into(), json!(name_lossy));
    obj.insert(
        "accessed".into(),
        json!(meta::rfc3339(md.atime(), md.atime_nsec())),
    );
    obj.insert(
        "changed".into(),
        json!(meta::rfc3339(md.ctime(), md.ctime_nsec())),
    );
    obj.insert("created".into(), json!(created));
    obj.insert("hidden".into(), json!(name.starts_with('.')));
    obj.insert("inode".into(), json!(md.ino()));
    obj.insert("device".into(), json!(md.dev()));
    obj.insert("hard_links".into(), json!(md.nlink()));
    obj
}

enum HashResult {
    Done {
        digests: hash::Digests,
        magic: &'static str,
        note: Option<String>,
    },
    Refused(String),
    Stopped {
        bytes: u64,
    },
}

fn hash_file(ctx: &CommandContext, path: &Path, md: &Metadata) -> HashResult {
    let mut file = match hash::open_regular(path, md) {
        Ok(f) => f,
        Err(OpenRefused::NotRegular(kind)) => {
            return HashResult::Refused(format!(
                "the path became a {kind} before it was opened: not read, so no hashes"
            ));
        }
        Err(OpenRefused::Changed) => {
            return HashResult::Refused(
                "the file was replaced while being opened; run fileinfo again".into(),
            );
        }
        Err(OpenRefused::Io(e)) => return HashResult::Refused(io_message("open", path, &e)),
    };
    match hash::all_digests(&mut file, &|| ctx.is_stopped()) {
        Ok(Streamed::Complete {
            value, bytes, head, ..
        }) => HashResult::Done {
            digests: value,
            magic: magic::guess(&head),
            note: (bytes != md.size()).then(|| {
                format!(
                    "the file changed while it was read: {bytes} bytes hashed, its size was {}",
                    md.size()
                )
            }),
        },
        Ok(Streamed::Stopped { bytes }) => HashResult::Stopped { bytes },
        Err(e) => HashResult::Refused(io_message("read", path, &e)),
    }
}

#[cfg(test)]
mod tests;
