//! Which processes hold which sockets: the `socket:[INODE]` links under /proc/PID/fd.

use std::collections::{HashMap, HashSet};

use crate::commands::{CommandContext, io_message};
use crate::sys::procfs::ProcRoot;

/// How many fd links are read between two stop checks.
const FDS_PER_STOP_CHECK: usize = 1024;

/// Socket owners found by one walk of the process table.
#[derive(Debug, Default)]
pub struct Owners {
    /// Pids holding each socket, ascending, each once.
    by_inode: HashMap<u64, Vec<u32>>,
    /// The `comm` of every pid in `by_inode`.
    names: HashMap<u32, String>,
    /// Processes whose open files could not be listed (permissions, most often).
    pub unreadable: u64,
    pub first_error: Option<String>,
    /// The process table itself could not be listed: no socket has a known owner.
    pub walk_error: Option<String>,
}

impl Owners {
    pub fn pids(&self, inode: u64) -> &[u32] {
        self.by_inode.get(&inode).map_or(&[], Vec::as_slice)
    }

    pub fn name(&self, pid: u32) -> Option<&str> {
        self.names.get(&pid).map(String::as_str)
    }

    /// Walks every process under `root` and records those holding one of `wanted`. Processes that
    /// vanish mid-walk are left out; on stop, what was found so far is returned.
    pub fn find(ctx: &CommandContext, root: &ProcRoot, wanted: &HashSet<u64>) -> Self {
        let mut owners = Owners::default();
        if wanted.is_empty() {
            return owners;
        }
        let pids = match root.pids() {
            Ok(pids) => pids,
            Err(e) => {
                owners.walk_error = Some(io_message("list processes in", root.path(), &e));
                return owners;
            }
        };
        let mut since_check = 0;
        for pid in pids {
            if ctx.is_stopped() {
                break;
            }
            let dir = root.pid_dir(pid);
            // No comm: the process is gone.
            let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
                continue;
            };
            let fd_dir = dir.join("fd");
            let entries = match std::fs::read_dir(&fd_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    owners.unreadable_process(io_message("list the open files of", &fd_dir, &e));
                    continue;
                }
            };
            let mut holds_any = false;
            for entry in entries.flatten() {
                since_check += 1;
                if since_check >= FDS_PER_STOP_CHECK {
                    since_check = 0;
                    if ctx.is_stopped() {
                        break;
                    }
                }
                // A link that cannot be read was closed meanwhile.
                let Ok(target) = std::fs::read_link(entry.path()) else {
                    continue;
                };
                let Some(inode) = target.to_str().and_then(socket_inode) else {
                    continue;
                };
                if !wanted.contains(&inode) {
                    continue;
                }
                let pids = owners.by_inode.entry(inode).or_default();
                // Pids come in ascending order, so a repeat (dup'ed fd) is always the last one.
                if pids.last() != Some(&pid) {
                    pids.push(pid);
                }
                holds_any = true;
            }
            if holds_any {
                owners
                    .names
                    .insert(pid, comm.trim_end_matches('\n').to_owned());
            }
        }
        owners
    }

    fn unreadable_process(&mut self, message: String) {
        self.unreadable += 1;
        self.first_error.get_or_insert(message);
    }
}

/// The inode of a `socket:[12345]` link target.
pub fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}
