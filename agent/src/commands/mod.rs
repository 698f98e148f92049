//! The live response commands this agent runs. What a command is (name, parameters, help,
//! timeout, platforms) is the shared table [`::commands::TABLE`]; [`REGISTRY`] only binds a name
//! from it to an implementation. [`execute`] reads the arguments against the table, runs the
//! implementation under its timeout and cancellation, and maps every way it can end to an
//! [`Outcome`]. Adding a command is one table entry plus one module here and one registry row.

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
pub mod scheduledtasks;
pub mod services;
pub mod startupfolders;

use std::path::PathBuf;
use std::time::Duration;

use ::commands::{Invocation, Platform, Runs, Spec};
use futures::future::BoxFuture;
use serde_json::Value;

pub use context::{CommandContext, StopReason, normalize};
pub use error::{CommandError, io_message};

use crate::model::{FileFacts, Outcome, Status};

/// What a command returns when it succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutput {
    pub value: Value,
    /// A new working directory (only `cd` sets it).
    pub cwd: Option<PathBuf>,
    /// What the broker needs of a file, typed (only `fileinfo` sets it).
    pub file_facts: Option<FileFacts>,
}

impl From<Value> for CommandOutput {
    fn from(value: Value) -> Self {
        Self {
            value,
            cwd: None,
            file_facts: None,
        }
    }
}

pub type CommandResult = Result<CommandOutput, CommandError>;
/// An implementation gets its arguments already read and type-checked against the table.
pub type RunFn = fn(CommandContext, Invocation) -> BoxFuture<'static, CommandResult>;

/// One row of the registry: a name from [`::commands::TABLE`] and the code that runs it.
#[derive(Debug, Clone, Copy)]
pub struct Implementation {
    pub name: &'static str,
    pub run: RunFn,
}

/// The platform this agent runs on, as the table names platforms.
pub const PLATFORM: Platform = Platform::Linux;

/// Every command this agent implements. `help` lists them in the table's order.
pub static REGISTRY: &[Implementation] = &[
    Implementation {
        name: "cd",
        run: |ctx, args| Box::pin(cd::run(ctx, args)),
    },
    Implementation {
        name: "connections",
        run: |ctx, args| Box::pin(connections::run(ctx, args)),
    },
    Implementation {
        name: "dir",
        run: |ctx, args| Box::pin(dir::run(ctx, args)),
    },
    Implementation {
        name: "drivers",
        run: |ctx, args| Box::pin(drivers::run(ctx, args)),
    },
    Implementation {
        name: "fileinfo",
        run: |ctx, args| Box::pin(fileinfo::run(ctx, args)),
    },
    Implementation {
        name: "findfile",
        run: |ctx, args| Box::pin(findfile::run(ctx, args)),
    },
    Implementation {
        name: "help",
        run: |ctx, args| Box::pin(help::run(ctx, args)),
    },
    Implementation {
        name: "persistence",
        run: |ctx, args| Box::pin(persistence::run(ctx, args)),
    },
    Implementation {
        name: "processes",
        run: |ctx, args| Box::pin(processes::run(ctx, args)),
    },
    Implementation {
        name: "scheduledtasks",
        run: |ctx, args| Box::pin(scheduledtasks::run(ctx, args)),
    },
    Implementation {
        name: "services",
        run: |ctx, args| Box::pin(services::run(ctx, args)),
    },
    Implementation {
        name: "startupfolders",
        run: |ctx, args| Box::pin(startupfolders::run(ctx, args)),
    },
];

/// How long a stopped command may take to hand back its partial result before the runner gives up
/// on it (its blocking thread then ends on its own at its next stop check).
pub const STOP_GRACE: Duration = Duration::from_secs(1);

/// The bound for a name the table does not know; such a command ends at once anyway.
const UNKNOWN_COMMAND_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The table entry and implementation that run `name` (any case) here, or why nothing does and
/// the status that says so.
pub fn lookup(name: &str) -> Result<(&'static Spec, &'static Implementation), (Status, String)> {
    let Some(spec) = ::commands::find(name) else {
        return Err((
            Status::UnknownCommand,
            format!("unknown command '{name}'; run help for the list"),
        ));
    };
    if spec.runs != Runs::Device {
        return Err((
            Status::UnknownCommand,
            format!("{} runs in the console, not on the device", spec.name),
        ));
    }
    if !spec.supports(PLATFORM) {
        return Err((Status::Unsupported, unsupported_here(spec)));
    }
    match REGISTRY.iter().find(|i| i.name == spec.name) {
        Some(implementation) => Ok((spec, implementation)),
        None => Err((
            Status::Unsupported,
            format!(
                "{} is not in this agent (version {}); update the agent to run it",
                spec.name,
                crate::VERSION
            ),
        )),
    }
}

/// The names the agent announces as capabilities.
pub fn names() -> Vec<String> {
    REGISTRY.iter().map(|c| c.name.to_owned()).collect()
}

/// The timeout of a command: the request's when set, else the table's for the command.
pub fn timeout_for(name: &str, requested: Option<Duration>) -> Duration {
    requested
        .filter(|t| !t.is_zero())
        .or_else(|| ::commands::find(name).map(|s| s.timeout))
        .unwrap_or(UNKNOWN_COMMAND_TIMEOUT)
}

/// "registry is a Windows command; not supported on linux".
fn unsupported_here(spec: &Spec) -> String {
    let platforms: Vec<_> = spec
        .platforms
        .iter()
        .map(|p| match p {
            Platform::Linux => "Linux",
            Platform::Windows => "Windows",
        })
        .collect();
    format!(
        "{} is a {} command; not supported on {}",
        spec.name,
        platforms.join(" and "),
        std::env::consts::OS
    )
}

/// Reads `args` as the broker sends them (`-name value` then flags; positional values work too)
/// against the table entry `spec`. `-output` is accepted and ignored: the agent always answers
/// JSON and the console formats it.
fn read_args(spec: &Spec, args: &[String]) -> Result<Invocation, CommandError> {
    let invocation = ::commands::parse_args(spec.name, args)
        .map_err(|e| CommandError::invalid(e.to_string()))?;
    if let Some(redirect) = invocation.redirect {
        return Err(CommandError::invalid(format!(
            "'{} {}' writes output to a file on the analyst's machine; the console does that, not the device",
            if redirect.append { ">>" } else { ">" },
            redirect.path
        )));
    }
    Ok(invocation)
}

/// The value of a parameter the table marks required; the grammar has already refused its absence.
pub fn required<'a>(args: &'a Invocation, name: &str) -> Result<&'a str, CommandError> {
    args.value(name)
        .ok_or_else(|| CommandError::invalid(format!("{} needs <{name}>", args.spec.name)))
}

/// Runs `name` with `args` in `ctx` and maps every way it can end to an [`Outcome`].
pub async fn execute(ctx: CommandContext, name: &str, args: Vec<String>) -> Outcome {
    let cwd = ctx.cwd().display().to_string();
    let refuse = |status, error: String| Outcome::error(status, error, cwd.clone());
    let (spec, implementation) = match lookup(name) {
        Ok(found) => found,
        Err((status, why)) => return refuse(status, why),
    };
    let usage = spec.usage();
    let result = match read_args(spec, &args) {
        Ok(invocation) => {
            let run = (implementation.run)(ctx.clone(), invocation);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => r,
                () = ctx.stopped() => match tokio::time::timeout(STOP_GRACE, &mut run).await {
                    Ok(r) => r,
                    Err(_) => Err(CommandError::Interrupted { partial: None }),
                },
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(out) => Outcome {
            status: Status::Ok,
            output: Some(out.value),
            error: String::new(),
            cwd: out.cwd.map_or(cwd, |p| p.display().to_string()),
            file_facts: out.file_facts,
        },
        // Most of the grammar's messages already end with the usage.
        Err(CommandError::InvalidArguments(msg)) if msg.ends_with(&format!("usage: {usage}")) => {
            refuse(Status::InvalidArguments, msg)
        }
        Err(CommandError::InvalidArguments(msg)) => {
            refuse(Status::InvalidArguments, format!("{msg}; usage: {usage}"))
        }
        Err(CommandError::Failed(msg)) => refuse(Status::Failed, msg),
        Err(CommandError::Unsupported(msg)) => refuse(Status::Unsupported, msg),
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
                file_facts: None,
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
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod schema_tests;
