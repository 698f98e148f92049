//! Helpers for the commands' unit tests.

use std::time::Duration;

use super::{CommandContext, execute};
use crate::model::Outcome;

/// Runs a command to completion with a generous deadline.
pub async fn run(name: &str, cwd: &str, args: &[&str]) -> Outcome {
    let ctx = CommandContext::new(cwd, Duration::from_secs(60));
    execute(ctx, name, args.iter().map(|s| s.to_string()).collect()).await
}

pub fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success(), "mkfifo failed");
}
