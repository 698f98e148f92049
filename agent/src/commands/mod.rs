//! The live response commands: a registry table (name, summary, usage, examples, default timeout,
//! entry point) and the runner that applies timeouts, cancellation and error mapping to all of
//! them. Adding a command is one module here plus one line in [`REGISTRY`].

pub mod args;
mod context;
mod error;

pub mod cd;
pub mod connections;
pub mod dir;
pub mod drivers;
pub mod fileinfo;
pub mod findfile;
mod glob;
pub mod help;
mod linux;
pub mod persistence;
pub mod processes;
pub mod registry;
pub mod scheduledtasks;
pub mod services;
pub mod startupfolders;

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

pub use context::{CommandContext, StopReason, normalize};
pub use error::{CommandError, io_message};

use crate::model::{Outcome, Status};

/// What a command returns when it succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutput {
    pub value: Value,
    /// A new working directory (only `cd` sets it).
    pub cwd: Option<PathBuf>,
}

impl From<Value> for CommandOutput {
    fn from(value: Value) -> Self {
        Self { value, cwd: None }
    }
}

pub type CommandResult = Result<CommandOutput, CommandError>;
pub type RunFn = fn(CommandContext, Vec<String>) -> BoxFuture<'static, CommandResult>;

/// One row of the registry.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub usage: &'static str,
    pub examples: &'static [&'static str],
    /// Used when the request's `timeout_ms` is 0 (COMMANDS.md: 10 min, findfile 30 min).
    pub default_timeout: Duration,
    pub run: RunFn,
}

pub const TEN_MINUTES: Duration = Duration::from_secs(10 * 60);
pub const THIRTY_MINUTES: Duration = Duration::from_secs(30 * 60);

/// Every command this agent implements, in the order `help` lists them.
pub static REGISTRY: &[CommandSpec] = &[
    cd::SPEC,
    connections::SPEC,
    dir::SPEC,
    drivers::SPEC,
    fileinfo::SPEC,
    findfile::SPEC,
    persistence::SPEC,
    processes::SPEC,
    registry::SPEC,
    scheduledtasks::SPEC,
    services::SPEC,
    startupfolders::SPEC,
    help::SPEC,
];

/// How long a stopped command may take to hand back its partial result before the runner gives up
/// on it (its blocking thread then ends on its own at its next stop check).
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// Looks a command up by name, case-insensitively as the console accepts them.
pub fn find(name: &str) -> Option<&'static CommandSpec> {
    REGISTRY.iter().find(|c| c.name.eq_ignore_ascii_case(name))
}

/// The names the agent announces as capabilities.
pub fn names() -> Vec<String> {
    REGISTRY.iter().map(|c| c.name.to_owned()).collect()
}

/// The timeout of a command: the request's when set, else the command's default.
pub fn timeout_for(name: &str, requested: Option<Duration>) -> Duration {
    requested
        .filter(|t| !t.is_zero())
        .or_else(|| find(name).map(|c| c.default_timeout))
        .unwrap_or(TEN_MINUTES)
}

/// Runs `name` with `args` in `ctx` and maps every way it can end to an [`Outcome`].
pub async fn execute(ctx: CommandContext, name: &str, args: Vec<String>) -> Outcome {
    let cwd = ctx.cwd().display().to_string();
    let Some(spec) = find(name) else {
        return Outcome::error(
            Status::UnknownCommand,
            format!("unknown command '{name}'; run help for the list"),
            cwd,
        );
    };
    let run = (spec.run)(ctx.clone(), args);
    tokio::pin!(run);
    let result = tokio::select! {
        r = &mut run => r,
        () = ctx.stopped() => match tokio::time::timeout(STOP_GRACE, &mut run).await {
            Ok(r) => r,
            Err(_) => Err(CommandError::Interrupted { partial: None }),
        },
    };
    match result {
        Ok(out) => Outcome {
            status: Status::Ok,
            output: Some(out.value),
            error: String::new(),
            cwd: out.cwd.map_or(cwd, |p| p.display().to_string()),
        },
        Err(CommandError::InvalidArguments(msg)) => Outcome::error(
            Status::InvalidArguments,
            format!("{msg}; usage: {}", spec.usage),
            cwd,
        ),
        Err(CommandError::Failed(msg)) => Outcome::error(Status::Failed, msg, cwd),
        Err(CommandError::Unsupported(msg)) => Outcome::error(Status::Unsupported, msg, cwd),
        Err(CommandError::Interrupted { partial }) => {
            let (status, error) = match ctx.stop_reason() {
                Some(StopReason::TimedOut) => (
                    Status::TimedOut,
                    format!(
                        "{} timed out after {} s; partial results are included when there are any; narrow the request or raise its timeout",
                        spec.name,
                        ctx.timeout().as_secs_f64()
                    ),
                ),
                // Interrupted without a stop signal cannot happen; reporting it as cancelled is the
                // closest truthful status.
                _ => (
                    Status::Cancelled,
                    format!(
                        "{} was cancelled; partial results are included when there are any",
                        spec.name
                    ),
                ),
            };
            Outcome {
                status,
                output: partial,
                error,
                cwd,
            }
        }
    }
}

/// Runs blocking work on the blocking pool; a panic there becomes a failure, not a lost result.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(CommandError::failed(format!(
            "the command crashed ({e}); this is a bug in the agent, please report it"
        )))
    })
}

#[cfg(test)]
pub(crate) mod testutil;
