//! What a running command can see: its working directory, the system root it reads system state
//! from, and whether it must stop (cancelled by the analyst or past its deadline), checkable
//! cheaply from blocking threads.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::sys::root::SystemRoot;

/// Why a command was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    TimedOut,
}

const RUNNING: u8 = 0;
const CANCELLED: u8 = 1;
const TIMED_OUT: u8 = 2;

/// Cheap to clone: clones share the stop state, so a blocking walk can take its own copy.
#[derive(Debug, Clone)]
pub struct CommandContext {
    cwd: PathBuf,
    deadline: Instant,
    timeout: Duration,
    token: CancellationToken,
    reason: Arc<AtomicU8>,
    system_root: SystemRoot,
}

impl CommandContext {
    /// `cwd` must be absolute; anything else is treated as "/".
    pub fn new(cwd: impl Into<PathBuf>, timeout: Duration) -> Self {
        let cwd = cwd.into();
        let cwd = if cwd.is_absolute() {
            cwd
        } else {
            PathBuf::from("/")
        };
        Self {
            cwd,
            deadline: Instant::now() + timeout,
            timeout,
            token: CancellationToken::new(),
            reason: Arc::new(AtomicU8::new(RUNNING)),
            system_root: SystemRoot::live(),
        }
    }

    /// Reads system state (unit files, crontabs, passwd) under `root` instead of "/": the agent's
    /// `system_root` setting, for a mounted image or a test fixture. Paths the analyst gives
    /// (`dir`, `getfile`) are not affected.
    pub fn with_system_root(mut self, root: SystemRoot) -> Self {
        self.system_root = root;
        self
    }

    pub fn system_root(&self) -> &SystemRoot {
        &self.system_root
    }

    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Resolves an argument against the working directory, folding `.` and `..` lexically so the
    /// result is absolute and readable. Symlinks are resolved by the filesystem calls that follow.
    pub fn resolve(&self, arg: &str) -> PathBuf {
        normalize(&self.cwd.join(arg))
    }

    /// The analyst asked to stop this command.
    pub fn cancel(&self) {
        self.stop(CANCELLED);
    }

    /// True once cancelled or past the deadline; an atomic load and a clock read, so blocking loops
    /// can call it per entry.
    pub fn is_stopped(&self) -> bool {
        if self.token.is_cancelled() {
            return true;
        }
        if Instant::now() >= self.deadline {
            self.stop(TIMED_OUT);
            return true;
        }
        false
    }

    /// Why the command was stopped, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::Acquire) {
            CANCELLED => Some(StopReason::Cancelled),
            TIMED_OUT => Some(StopReason::TimedOut),
            _ => None,
        }
    }

    /// Resolves when the command is cancelled or its deadline passes.
    pub async fn stopped(&self) {
        tokio::select! {
            () = self.token.cancelled() => {}
            () = tokio::time::sleep_until(self.deadline) => self.stop(TIMED_OUT),
        }
    }

    fn stop(&self, reason: u8) {
        // The first reason wins: a cancel that arrives after the timeout does not relabel it.
        let _ = self
            .reason
            .compare_exchange(RUNNING, reason, Ordering::AcqRel, Ordering::Acquire);
        self.token.cancel();
    }
}

/// Folds `.` and `..` without touching the filesystem; `..` at the root stays at the root.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_dotdot() {
        let ctx = CommandContext::new("/var/log", Duration::from_secs(1));
        assert_eq!(ctx.resolve("apt"), Path::new("/var/log/apt"));
        assert_eq!(ctx.resolve(".."), Path::new("/var"));
        assert_eq!(ctx.resolve("../../../.."), Path::new("/"));
        assert_eq!(ctx.resolve("/etc/./ssh/../ssh"), Path::new("/etc/ssh"));
        assert_eq!(
            CommandContext::new("relative", Duration::from_secs(1)).cwd(),
            Path::new("/")
        );
    }

    #[tokio::test]
    async fn first_stop_reason_wins() {
        let ctx = CommandContext::new("/", Duration::from_millis(10));
        ctx.stopped().await;
        assert!(ctx.is_stopped());
        ctx.cancel();
        assert_eq!(ctx.stop_reason(), Some(StopReason::TimedOut));

        let ctx = CommandContext::new("/", Duration::from_secs(60));
        assert!(!ctx.is_stopped());
        ctx.cancel();
        assert!(ctx.is_stopped());
        assert_eq!(ctx.stop_reason(), Some(StopReason::Cancelled));
    }
}
