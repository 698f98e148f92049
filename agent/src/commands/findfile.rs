//! `findfile <name>`: find files whose name matches a glob under a root (default "/").
//!
//! The walk never follows symlinks, stays on the root's filesystem unless `-xdev false` or
//! `-allfs`, skips /proc and /sys unless the root is inside them, and stops at `-max` matches
//! (default 1000), at the command's deadline or on cancel, returning what it found so far.
//! Names are matched whole, case-sensitively unless `-nocase`; a pattern cannot hold '/'.
//!
//! Output:
//! ```json
//! {"root": "/abs/root", "pattern": "*.log",
//!  "matches": [{"path": "/abs/root/a.log", "path_lossy": false, "type": "file", "size": 5,
//!               "modified": "...Z"}],
//!  "truncated": false, "errors_skipped": 0, "scanned_dirs": 12}
//! ```
//! `truncated` is true when `-max` was reached (more matches may exist); matches are sorted by
//! path; `errors_skipped` counts directories or entries that could not be read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ::commands::Invocation;
use serde_json::{Value, json};

use super::glob::Glob;
use super::{CommandContext, CommandError, CommandResult, blocking, required};
use crate::sys::meta;

pub const DEFAULT_MAX: usize = 1000;
/// Keeps a result well under the size one message may carry.
pub const MAX_MAX: usize = 10_000;
/// Pseudo filesystems whose walk is slow and meaningless for a file search.
const SKIPPED: &[&str] = &["/proc", "/sys"];

/// A parsed request.
#[derive(Debug)]
struct Search {
    root: PathBuf,
    pattern: String,
    glob: Glob,
    max: usize,
    one_fs: bool,
}

pub async fn run(ctx: CommandContext, args: Invocation) -> CommandResult {
    let search = search(&ctx, &args)?;
    blocking(move || walk(&ctx, &search)).await
}

/// The checks the table cannot express; the grammar has already checked the types.
fn search(ctx: &CommandContext, args: &Invocation) -> Result<Search, CommandError> {
    let pattern = required(args, "name")?;
    if pattern.contains('/') {
        return Err(CommandError::invalid(format!(
            "'{pattern}' holds a '/': findfile matches file names only; give the directory with -path"
        )));
    }
    let glob = Glob::new(pattern, args.flag("nocase")).map_err(CommandError::invalid)?;
    let max = match args.value("max") {
        None => DEFAULT_MAX,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_MAX)
            .ok_or_else(|| {
                CommandError::invalid(format!(
                    "-max {v} is above the limit of {MAX_MAX}; narrow the search with -path or a more precise name"
                ))
            })?,
    };
    Ok(Search {
        root: ctx.resolve(args.value("path").unwrap_or("/")),
        pattern: pattern.to_owned(),
        glob,
        max,
        one_fs: args.value("xdev") != Some("false") && !args.flag("allfs"),
    })
}

#[derive(Default)]
struct Found {
    matches: Vec<Value>,
    errors_skipped: u64,
    scanned_dirs: u64,
    truncated: bool,
}

fn walk(ctx: &CommandContext, s: &Search) -> CommandResult {
    // The root itself may be a symlink to a directory, as with `dir`; nothing below it is followed.
    let root_md =
        std::fs::metadata(&s.root).map_err(|e| CommandError::io("search under", &s.root, &e))?;
    if !root_md.is_dir() {
        return Err(CommandError::failed(format!(
            "cannot search under '{}': it is not a directory",
            s.root.display()
        )));
    }
    let skipped: Vec<&Path> = SKIPPED
        .iter()
        .map(Path::new)
        .filter(|p| !s.root.starts_with(p))
        .collect();
    let mut found = Found::default();
    let mut stack = vec![s.root.clone()];
    let stopped = |found: Found| {
        Err(CommandError::Interrupted {
            partial: Some(render(s, found)),
        })
    };
    'dirs: while let Some(dir) = stack.pop() {
        if ctx.is_stopped() {
            return stopped(found);
        }
        let Ok(reader) = std::fs::read_dir(&dir) else {
            found.errors_skipped += 1;
            continue;
        };
        found.scanned_dirs += 1;
        for entry in reader {
            if ctx.is_stopped() {
                return stopped(found);
            }
            let Ok(entry) = entry else {
                found.errors_skipped += 1;
                continue;
            };
            let name = entry.file_name();
            let (name_text, _) = meta::lossy(Path::new(&name));
            // d_type from the directory read: no stat per entry unless it matches or is a dir.
            let Ok(ft) = entry.file_type() else {
                found.errors_skipped += 1;
                continue;
            };
            if s.glob.matches(&name_text) {
                match entry.metadata() {
                    Ok(md) => found.matches.push(match_json(&entry.path(), &md)),
                    Err(_) => found.errors_skipped += 1,
                }
                if found.matches.len() >= s.max {
                    found.truncated = true;
                    break 'dirs;
                }
            }
            if ft.is_dir() {
                let path = entry.path();
                if skipped.contains(&path.as_path()) {
                    continue;
                }
                if s.one_fs {
                    match entry.metadata() {
                        Ok(md) if md.dev() == root_md.dev() => {}
                        Ok(_) => continue,
                        Err(_) => {
                            found.errors_skipped += 1;
                            continue;
                        }
                    }
                }
                stack.push(path);
            }
        }
    }
    Ok(render(s, found).into())
}

fn match_json(path: &Path, md: &std::fs::Metadata) -> Value {
    let (shown, lossy) = meta::lossy(path);
    json!({
        "path": shown,
        "path_lossy": lossy,
        "type": meta::kind(&md.file_type()),
        "size": md.size(),
        "modified": meta::rfc3339(md.mtime(), md.mtime_nsec()),
    })
}

fn render(s: &Search, mut found: Found) -> Value {
    found
        .matches
        .sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    json!({
        "root": s.root.display().to_string(),
        "pattern": s.pattern,
        "matches": found.matches,
        "truncated": found.truncated,
        "errors_skipped": found.errors_skipped,
        "scanned_dirs": found.scanned_dirs,
    })
}

#[cfg(test)]
mod tests;
