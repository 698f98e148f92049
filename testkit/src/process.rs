//! Stopping and continuing a process (SIGSTOP, SIGCONT): a peer that hangs without closing its
//! sockets, as a process stuck in a long pause or on a dead disk does. Signals go through the
//! `kill` command, the crate forbidding unsafe code.

use std::process::{Command, Stdio};

/// Stops process `pid` (SIGSTOP). Its children run on. Panics if the signal cannot be sent.
pub fn pause(pid: u32) {
    signal(pid, "-STOP");
}

/// Continues process `pid` (SIGCONT). Panics if the signal cannot be sent.
pub fn resume(pid: u32) {
    signal(pid, "-CONT");
}

/// Process `pid`, stopped until the guard is dropped: a failing test never leaves it stopped.
#[must_use = "the process continues as soon as the guard is dropped"]
pub struct Paused {
    pid: u32,
}

impl Paused {
    /// Stops process `pid`. Panics if the signal cannot be sent.
    pub fn new(pid: u32) -> Self {
        pause(pid);
        Self { pid }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // Quietly: the process may have been killed meanwhile, and a panic here would abort a
        // test that is already unwinding.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn signal(pid: u32, signal: &str) {
    let output = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run kill");
    assert!(
        output.status.success(),
        "cannot send SIG{} to process {pid}: {}",
        &signal[1..],
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
