//! `connections`: the TCP, UDP and unix sockets of the agent's network namespace, with their state,
//! addresses and owning processes.
//!
//! Sockets come from /proc/net/{tcp,tcp6,udp,udp6,unix}; owners from the `socket:[INODE]` links
//! under /proc/PID/fd. One entry per socket: when several processes share one (a listening socket
//! inherited by workers, say), `pids` lists them all and `pid`/`process` name the lowest pid.
//! A socket no process holds (TIME_WAIT, kernel sockets) has a null owner and an empty `pids`.
//!
//! Output:
//! ```json
//! {"connections": [{"protocol": "tcp|tcp6|udp|udp6", "state": "LISTEN",
//!                   "local_address": "127.0.0.1", "local_port": 8080,
//!                   "remote_address": "0.0.0.0", "remote_port": 0,
//!                   "inode": 5001, "uid": 1000, "user": "www",
//!                   "pid": 100 | null, "process": "nginx" | null, "pids": [100, 200]}],
//!  "unix": [{"type": "stream|dgram|seqpacket", "state": "LISTEN",
//!            "path": "/run/app.sock" | "@abstract-name" | null,
//!            "address_kind": "path|abstract|unnamed", "inode": 8001,
//!            "pid": 100 | null, "process": "nginx" | null, "pids": [100]}],
//!  "truncated": false, "more": 0, "errors": ["..."]}
//! ```
//! TCP states are netstat's (ESTABLISHED, SYN_SENT, ..., LISTEN, CLOSING); UDP and unix sockets
//! are UNCONN or ESTABLISHED (unix also LISTEN, CONNECTING, DISCONNECTING). IPv4-mapped addresses
//! in the tcp6/udp6 tables show as `::ffff:a.b.c.d`. `user` falls back to the uid as text.
//!
//! Each list holds at most [`MAX_SOCKETS`] entries, the first the kernel listed, sorted;
//! `truncated`/`more` say how many were left out. What could not be read is said in `errors` and
//! never fails the command: a missing table (IPv6 disabled), malformed lines (skipped and
//! counted), and processes whose open files the agent may not list (their sockets show no owner;
//! one message counts them). Only when no table at all can be read does the command fail.
//!
//! Sockets of other network namespaces (containers) are not in these tables and are not listed.

mod net;
mod owners;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use ::commands::Invocation;
use serde_json::{Value, json};

use super::{CommandContext, CommandError, CommandResult, blocking, io_message};
use crate::sys::procfs::ProcRoot;
use crate::sys::users::Names;
use net::{InetSocket, Proto, UnixSocket};
use owners::Owners;

/// The most entries each list (IP sockets, unix sockets) returns.
pub const MAX_SOCKETS: usize = 20_000;

/// Lines read between two stop checks.
const LINES_PER_STOP_CHECK: usize = 1024;
/// The most characters of a malformed line quoted in an error.
const QUOTE_CHARS: usize = 120;

pub async fn run(ctx: CommandContext, _args: Invocation) -> CommandResult {
    blocking(move || scan(&ctx, &ProcRoot::default(), &Names::load(), MAX_SOCKETS)).await
}

/// Reads the socket tables under `root`/net and the owners under `root`, keeping at most `max`
/// entries per list.
pub(crate) fn scan(
    ctx: &CommandContext,
    root: &ProcRoot,
    names: &Names,
    max: usize,
) -> CommandResult {
    let mut found = Found {
        max,
        ..Found::default()
    };
    for proto in Proto::ALL {
        let path = root.path().join("net").join(proto.name());
        let table = read_table(ctx, &path, max, |line| net::parse_inet_line(proto, line));
        found.take(table, |f, mut rows, more| {
            f.inet.append(&mut rows);
            f.more_inet += more;
        });
        if ctx.is_stopped() {
            return Err(found.interrupted(names, &Owners::default()));
        }
    }
    let path = root.path().join("net/unix");
    let table = read_table(ctx, &path, max, net::parse_unix_line);
    found.take(table, |f, mut rows, more| {
        f.unix.append(&mut rows);
        f.more_unix += more;
    });
    if found.unreadable_tables == Proto::ALL.len() + 1 {
        return Err(CommandError::failed(format!(
            "cannot read any socket table under '{}': {}; is procfs mounted?",
            root.path().join("net").display(),
            found.errors[0]
        )));
    }
    if ctx.is_stopped() {
        return Err(found.interrupted(names, &Owners::default()));
    }

    let wanted: HashSet<u64> = found
        .inet
        .iter()
        .map(|s| s.inode)
        .chain(found.unix.iter().map(|s| s.inode))
        .filter(|&i| i != 0)
        .collect();
    let owners = Owners::find(ctx, root, &wanted);
    if ctx.is_stopped() {
        return Err(found.interrupted(names, &owners));
    }
    Ok(found.render(names, &owners).into())
}

/// The sockets read so far.
#[derive(Default)]
struct Found {
    inet: Vec<InetSocket>,
    unix: Vec<UnixSocket>,
    more_inet: u64,
    more_unix: u64,
    errors: Vec<String>,
    unreadable_tables: usize,
    max: usize,
}

impl Found {
    /// Adds one table's rows, or says why it could not be read.
    fn take<T>(
        &mut self,
        table: Result<Table<T>, String>,
        add: impl FnOnce(&mut Self, Vec<T>, u64),
    ) {
        match table {
            Ok(t) => {
                self.errors.extend(t.error);
                add(self, t.rows, t.more);
            }
            Err(e) => {
                self.errors.push(e);
                self.unreadable_tables += 1;
            }
        }
    }

    fn interrupted(self, names: &Names, owners: &Owners) -> CommandError {
        CommandError::Interrupted {
            partial: Some(self.render(names, owners)),
        }
    }

    fn render(mut self, names: &Names, owners: &Owners) -> Value {
        self.inet.sort_by(|a, b| {
            (
                a.proto,
                a.local_port,
                a.local,
                a.remote,
                a.remote_port,
                a.inode,
            )
                .cmp(&(
                    b.proto,
                    b.local_port,
                    b.local,
                    b.remote,
                    b.remote_port,
                    b.inode,
                ))
        });
        // Named sockets first, by path; unnamed ones after them.
        self.unix.sort_by(|a, b| {
            (a.path.is_none(), &a.path, a.inode).cmp(&(b.path.is_none(), &b.path, b.inode))
        });
        let pids = |inode: u64| {
            if inode == 0 {
                &[][..]
            } else {
                owners.pids(inode)
            }
        };
        let mut unmapped = 0u64;
        let mut owner = |inode: u64| {
            let pids = pids(inode);
            if inode != 0 && pids.is_empty() {
                unmapped += 1;
            }
            let pid = pids.first().copied();
            (pid, pid.and_then(|p| owners.name(p)), pids)
        };
        let mut connections = Vec::with_capacity(self.inet.len());
        for s in &self.inet {
            let (pid, process, pids) = owner(s.inode);
            connections.push(json!({
                "protocol": s.proto.name(),
                "state": s.state_name(),
                "local_address": s.local.to_string(),
                "local_port": s.local_port,
                "remote_address": s.remote.to_string(),
                "remote_port": s.remote_port,
                "inode": s.inode,
                "uid": s.uid,
                "user": names.user_or_number(s.uid),
                "pid": pid,
                "process": process,
                "pids": pids,
            }));
        }
        let mut unix = Vec::with_capacity(self.unix.len());
        for s in &self.unix {
            let (pid, process, pids) = owner(s.inode);
            unix.push(json!({
                "type": s.type_name(),
                "state": s.state_name(),
                "path": s.path,
                "address_kind": s.address_kind(),
                "inode": s.inode,
                "pid": pid,
                "process": process,
                "pids": pids,
            }));
        }
        if let Some(e) = &owners.walk_error {
            self.errors
                .push(format!("no socket could be mapped to a process: {e}"));
        }
        if owners.unreadable > 0 {
            self.errors.push(format!(
                "could not list the open files of {} ({}); {} could not be mapped to a process and show no owner",
                count(owners.unreadable, "process", "processes"),
                owners.first_error.as_deref().unwrap_or("unknown error"),
                count(unmapped, "socket", "sockets"),
            ));
        }
        for (more, what) in [
            (self.more_inet, "tcp/udp sockets"),
            (self.more_unix, "unix sockets"),
        ] {
            if more > 0 {
                self.errors.push(format!(
                    "{more} more {what} not listed: the limit is {} per list",
                    self.max
                ));
            }
        }
        let more = self.more_inet + self.more_unix;
        json!({
            "connections": connections,
            "unix": unix,
            "truncated": more > 0,
            "more": more,
            "errors": self.errors,
        })
    }
}

/// "1 process", "3 processes".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One table's parsed rows: at most `max`, with how many more there were.
struct Table<T> {
    rows: Vec<T>,
    more: u64,
    /// Malformed lines or a read error part way, summarised in one message.
    error: Option<String>,
}

/// Reads `path` line by line (lossy where not UTF-8: unix paths are bytes), skipping the header.
/// `Err` when the file cannot be opened.
fn read_table<T>(
    ctx: &CommandContext,
    path: &Path,
    max: usize,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Table<T>, String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "'{}' is missing: none of its sockets are listed (the protocol is disabled or not built into this kernel)",
            path.display()
        ),
        _ => io_message("read", path, &e),
    })?;
    let mut reader = std::io::BufReader::new(file);
    let mut table = Table {
        rows: Vec::new(),
        more: 0,
        error: None,
    };
    let mut malformed = 0u64;
    let mut first_malformed = None;
    let mut buf = Vec::new();
    for number in 1.. {
        if number % LINES_PER_STOP_CHECK == 0 && ctx.is_stopped() {
            break;
        }
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                table.error = Some(format!(
                    "{} (after line {})",
                    io_message("read", path, &e),
                    number - 1
                ));
                break;
            }
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches('\n');
        if line.trim().is_empty() || net::is_header(line) {
            continue;
        }
        match parse(line) {
            Some(_) if table.rows.len() >= max => table.more += 1,
            Some(row) => table.rows.push(row),
            None => {
                malformed += 1;
                first_malformed.get_or_insert_with(|| {
                    let quoted: String = line.chars().take(QUOTE_CHARS).collect();
                    format!("line {number}: '{quoted}'")
                });
            }
        }
    }
    if let Some(first) = first_malformed {
        let skipped = format!(
            "skipped {} of '{}' (first, {first})",
            count(malformed, "malformed line", "malformed lines"),
            path.display()
        );
        table.error = Some(match table.error {
            Some(e) => format!("{skipped}; {e}"),
            None => skipped,
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests;
