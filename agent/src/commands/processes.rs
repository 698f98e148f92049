//! `processes [-hash]`: the running processes, read from /proc.
//!
//! A process that exits mid-scan is left out silently; a field that cannot be read is null (an
//! unprivileged agent cannot read other users' `exe` links, kernel threads have no image or
//! command line). `-hash` adds the SHA256 of each image, hashing each distinct file once.
//!
//! Output:
//! ```json
//! {"processes": [{"pid": 1, "ppid": 0, "name": "init", "user": "root", "uid": 0,
//!                 "command_line": "/sbin/init splash", "args": ["/sbin/init", "splash"],
//!                 "image_path": "/usr/lib/systemd/systemd" | null, "state": "sleeping",
//!                 "start_time": "...Z" | null, "cpu_seconds": 1.25, "rss_bytes": 1234 | null,
//!                 "threads": 1, "sha256": "hex" | null}],
//!  "errors": ["..."]}
//! ```
//! `image_path` ends in " (deleted)" when the image was deleted after the process started (the
//! kernel's own marker, kept because it matters to an investigation); `sha256` is null without
//! `-hash` or when the image cannot be read; `user` falls back to the uid as text.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use ::commands::Invocation;
use serde_json::json;

use super::{CommandContext, CommandError, CommandResult, blocking, io_message};
use crate::sys::hash::{self, HASH_LIMIT_BYTES, Streamed};
use crate::sys::procfs::{self, ProcRoot};
use crate::sys::{meta, users::Names};

const MAX_ERRORS: usize = 100;

pub async fn run(ctx: CommandContext, args: Invocation) -> CommandResult {
    let with_hash = args.flag("hash");
    blocking(move || scan(&ctx, &ProcRoot::default(), &Names::load(), with_hash)).await
}

/// Reads every process under `root`.
pub(crate) fn scan(
    ctx: &CommandContext,
    root: &ProcRoot,
    names: &Names,
    with_hash: bool,
) -> CommandResult {
    let pids = root
        .pids()
        .map_err(|e| CommandError::io("list processes in", root.path(), &e))?;
    let boot = root.boot_time();
    let ticks = root.clock_ticks();
    let mut errors = Vec::new();
    if boot.is_none() {
        errors.push(format!(
            "boot time unknown ({}/stat has no btime): start times are null",
            root.path().display()
        ));
    }
    let mut hashes = HashCache::default();
    let mut list = Vec::with_capacity(pids.len());
    for pid in pids {
        if ctx.is_stopped() {
            return Err(CommandError::Interrupted {
                partial: Some(json!({"processes": list, "errors": errors})),
            });
        }
        let dir = root.pid_dir(pid);
        // No readable stat means the process is gone (or never was): skip it silently.
        let Some(stat) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|t| procfs::parse_stat(&t))
        else {
            continue;
        };
        let status = std::fs::read_to_string(dir.join("status"))
            .map(|t| procfs::parse_status(&t))
            .unwrap_or_default();
        let args = std::fs::read(dir.join("cmdline"))
            .ok()
            .map(|b| procfs::parse_cmdline(&b));
        let image = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| meta::lossy(&p).0);
        let start_time = boot.and_then(|b| {
            let ticks_after_boot = stat.starttime;
            let secs = ticks_after_boot / ticks;
            let nanos = (ticks_after_boot % ticks) * 1_000_000_000 / ticks;
            meta::rfc3339(b + i64::try_from(secs).ok()?, i64::try_from(nanos).ok()?)
        });
        let sha256 = if with_hash && image.is_some() {
            match hashes.sha256(ctx, &dir.join("exe")) {
                Ok(h) => h,
                Err(e) => {
                    if errors.len() < MAX_ERRORS {
                        errors.push(format!("pid {pid}: {e}"));
                    }
                    None
                }
            }
        } else {
            None
        };
        list.push(json!({
            "pid": pid,
            "ppid": stat.ppid,
            "name": stat.comm,
            "user": status.uid.map(|u| names.user_or_number(u)),
            "uid": status.uid,
            "command_line": args.as_ref().map(|a| a.join(" ")),
            "args": args,
            "image_path": image,
            "state": procfs::state_name(stat.state),
            "start_time": start_time,
            "cpu_seconds": (stat.utime + stat.stime) as f64 / ticks as f64,
            "rss_bytes": status.rss_bytes,
            "threads": stat.num_threads,
            "sha256": sha256,
        }));
    }
    Ok(json!({"processes": list, "errors": errors}).into())
}

/// SHA256 per image file, so a hundred workers of one binary are hashed once.
#[derive(Default)]
struct HashCache {
    by_file: HashMap<(u64, u64), String>,
}

impl HashCache {
    /// `Ok(None)` when stopped mid-hash: the scan's own stop check then ends it.
    fn sha256(&mut self, ctx: &CommandContext, exe: &Path) -> Result<Option<String>, String> {
        // /proc/PID/exe opens the image itself, even when it was deleted or replaced on disk.
        let md = std::fs::metadata(exe).map_err(|e| io_message("read the image", exe, &e))?;
        let key = (md.dev(), md.ino());
        if let Some(h) = self.by_file.get(&key) {
            return Ok(Some(h.clone()));
        }
        if md.size() > HASH_LIMIT_BYTES {
            return Err(format!(
                "image of {} bytes is over the hashing limit",
                md.size()
            ));
        }
        let mut file = hash::open_regular(exe, &md).map_err(|e| match e {
            hash::OpenRefused::Io(e) => io_message("open the image", exe, &e),
            other => format!("image not hashed: {other:?}"),
        })?;
        match hash::sha256(&mut file, &|| ctx.is_stopped()) {
            Ok(Streamed::Complete { value, .. }) => {
                self.by_file.insert(key, value.clone());
                Ok(Some(value))
            }
            Ok(Streamed::Stopped { .. }) => Ok(None),
            Err(e) => Err(io_message("read the image", exe, &e)),
        }
    }
}

#[cfg(test)]
mod tests;
