//! `dir [path]`: list a directory (default: the cwd) without following or opening anything inside.
//!
//! Entries come from `lstat`: a symlink is shown as a symlink with its target, and FIFOs and
//! devices are never opened. At most [`MAX_ENTRIES`] entries are listed; when a directory holds
//! more, the listed ones are the first the filesystem returned, sorted by name.
//!
//! Output:
//! ```json
//! {"path": "/abs/dir",
//!  "entries": [{"name": "x", "name_lossy": false, "type": "file|dir|symlink|fifo|socket|block_device|char_device|unknown",
//!               "size": 0, "mode": "0644", "mode_string": "-rw-r--r--", "uid": 0, "owner": "root",
//!               "gid": 0, "group": "root", "modified": "2024-01-01T00:00:00Z", "target": null}],
//!  "truncated": false, "more": 0, "errors": ["..."]}
//! ```
//! `owner`/`group` fall back to the number as text; `target` is set for symlinks only;
//! `name_lossy` is true when the name is not UTF-8 and was shown with replacement characters.

use std::fs::DirEntry;
use std::path::Path;

use ::commands::Invocation;
use serde_json::{Value, json};

use super::{CommandContext, CommandError, CommandResult, blocking, io_message};
use crate::sys::{meta, users::Names};

/// The most entries one listing returns.
pub const MAX_ENTRIES: usize = 10_000;
/// Errors beyond this many are counted in the last message only.
const MAX_ERRORS: usize = 100;

pub async fn run(ctx: CommandContext, args: Invocation) -> CommandResult {
    let target = ctx.resolve(args.value("path").unwrap_or("."));
    blocking(move || list(&ctx, &target)).await
}

fn list(ctx: &CommandContext, dir: &Path) -> CommandResult {
    // The directory itself may be reached through a symlink, as with `ls`.
    let md = std::fs::metadata(dir).map_err(|e| CommandError::io("list", dir, &e))?;
    if !md.is_dir() {
        return Err(CommandError::failed(format!(
            "cannot list '{}': it is a {}, not a directory; use fileinfo for one file",
            dir.display(),
            meta::kind(&md.file_type())
        )));
    }
    let reader = std::fs::read_dir(dir).map_err(|e| CommandError::io("list", dir, &e))?;
    let names = Names::load();
    let mut errors = Errors::default();
    let mut kept: Vec<DirEntry> = Vec::new();
    let mut more = 0u64;
    for entry in reader {
        if ctx.is_stopped() {
            return Err(CommandError::Interrupted {
                // The entries read so far are at most MAX_ENTRIES stats away from a partial answer.
                partial: Some(render(dir, &names, kept, more, errors, None)),
            });
        }
        match entry {
            Ok(e) if kept.len() < MAX_ENTRIES => kept.push(e),
            Ok(_) => more += 1,
            Err(e) => errors.push(io_message("read an entry of", dir, &e)),
        }
    }
    kept.sort_by_key(DirEntry::file_name);
    let value = render(dir, &names, kept, more, errors, Some(ctx));
    if ctx.is_stopped() {
        return Err(CommandError::Interrupted {
            partial: Some(value),
        });
    }
    Ok(value.into())
}

fn render(
    dir: &Path,
    names: &Names,
    kept: Vec<DirEntry>,
    more: u64,
    mut errors: Errors,
    stop: Option<&CommandContext>,
) -> Value {
    let mut entries = Vec::with_capacity(kept.len());
    for e in kept {
        // Stat work is bounded by MAX_ENTRIES, but a slow filesystem still deserves a stop check.
        if stop.is_some_and(CommandContext::is_stopped) {
            break;
        }
        entries.push(entry_json(&e, names, &mut errors));
    }
    json!({
        "path": dir.display().to_string(),
        "entries": entries,
        "truncated": more > 0,
        "more": more,
        "errors": errors.into_vec(),
    })
}

fn entry_json(e: &DirEntry, names: &Names, errors: &mut Errors) -> Value {
    let path = e.path();
    let (name, name_lossy) = meta::lossy(Path::new(&e.file_name()));
    // DirEntry::metadata does not follow symlinks (lstat), so nothing is opened or traversed.
    let mut obj = match e.metadata() {
        Ok(md) => meta::common_fields(&md, names),
        Err(err) => {
            errors.push(io_message("read the metadata of", &path, &err));
            let mut m = serde_json::Map::new();
            let kind = e.file_type().map_or("unknown", |t| meta::kind(&t));
            m.insert("type".into(), json!(kind));
            m
        }
    };
    let target = if obj.get("type") == Some(&json!("symlink")) {
        link_target(&path, errors)
    } else {
        None
    };
    obj.insert("name".into(), json!(name));
    obj.insert("name_lossy".into(), json!(name_lossy));
    obj.insert("target".into(), json!(target));
    Value::Object(obj)
}

fn link_target(path: &Path, errors: &mut Errors) -> Option<String> {
    match std::fs::read_link(path) {
        Ok(t) => Some(meta::lossy(&t).0),
        Err(e) => {
            errors.push(io_message("read the symlink", path, &e));
            None
        }
    }
}

/// Error messages, capped so a directory full of unreadable entries cannot blow up the result.
#[derive(Default)]
struct Errors {
    list: Vec<String>,
    dropped: u64,
}

impl Errors {
    fn push(&mut self, msg: String) {
        if self.list.len() < MAX_ERRORS {
            self.list.push(msg);
        } else {
            self.dropped += 1;
        }
    }

    fn into_vec(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.list
                .push(format!("{} more errors not shown", self.dropped));
        }
        self.list
    }
}

#[cfg(test)]
mod tests;
