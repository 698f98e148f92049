//! Parsers for the /proc files `processes` reads, rooted at any directory so tests can use fixture
//! trees. Every reader returns `None` for what it cannot read: processes vanish mid-scan.

use std::path::{Path, PathBuf};

/// Where procfs is mounted (normally "/proc").
#[derive(Debug, Clone)]
pub struct ProcRoot(PathBuf);

impl Default for ProcRoot {
    fn default() -> Self {
        Self(PathBuf::from("/proc"))
    }
}

impl ProcRoot {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn pid_dir(&self, pid: u32) -> PathBuf {
        self.0.join(pid.to_string())
    }

    /// Numeric entries of the root, in ascending order.
    pub fn pids(&self) -> std::io::Result<Vec<u32>> {
        let mut pids: Vec<u32> = std::fs::read_dir(&self.0)?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Seconds since the epoch at boot, from the `btime` line of /proc/stat.
    pub fn boot_time(&self) -> Option<i64> {
        let text = std::fs::read_to_string(self.0.join("stat")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Clock ticks per second (`USER_HZ`), from the `AT_CLKTCK` entry of /proc/self/auxv; 100, the
    /// value of every common architecture, when that cannot be read.
    pub fn clock_ticks(&self) -> u64 {
        std::fs::read(self.0.join("self/auxv"))
            .ok()
            .and_then(|b| auxv_value(&b, AT_CLKTCK))
            .filter(|&v| v > 0)
            .unwrap_or(100)
    }
}

const AT_CLKTCK: u64 = 17;

/// Looks `key` up in an auxiliary vector: native-endian (key, value) pairs of machine words.
pub fn auxv_value(bytes: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    bytes.chunks_exact(2 * W).find_map(|pair| {
        let k = word(&pair[..W])?;
        (k == key).then(|| word(&pair[W..])).flatten()
    })
}

fn word(bytes: &[u8]) -> Option<u64> {
    Some(usize::from_ne_bytes(bytes.try_into().ok()?) as u64)
}

/// The fields of /proc/PID/stat that `processes` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
    pub num_threads: u64,
    /// Ticks after boot.
    pub starttime: u64,
}

/// Parses /proc/PID/stat. `comm` may hold spaces and parentheses, so fields are counted after the
/// last ')'.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    Some(Stat {
        comm,
        state: field(3)?.chars().next()?,
        ppid: field(4)?.parse().ok()?,
        utime: field(14)?.parse().ok()?,
        stime: field(15)?.parse().ok()?,
        num_threads: field(20)?.parse().ok()?,
        starttime: field(22)?.parse().ok()?,
    })
}

/// The fields of /proc/PID/status that `processes` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Real uid.
    pub uid: Option<u32>,
    pub rss_bytes: Option<u64>,
}

pub fn parse_status(text: &str) -> Status {
    let mut status = Status::default();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            status.uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(v) = line.strip_prefix("VmRSS:") {
            // "VmRSS:	   1234 kB"
            status.rss_bytes = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .map(|kb| kb * 1024);
        }
    }
    status
}

/// /proc/PID/cmdline: NUL-separated arguments; lossy where not UTF-8.
pub fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let trimmed = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if trimmed.is_empty() {
        return Vec::new();
    }
    trimmed
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A readable name for a process state letter.
pub fn state_name(state: char) -> String {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk_sleep",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "tracing_stop",
        'X' | 'x' => "dead",
        'I' => "idle",
        'K' => "wakekill",
        'W' => "waking",
        'P' => "parked",
        other => return other.to_string(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests;
