//! Running one command in a session: submit, long-poll until it ends (bounded), cancel on Ctrl+C
//! or when the wait runs out, and report the result.

use std::io::Write;
use std::time::Duration;

use api_model::CommandState;
use tokio::time::{Instant, sleep};

use crate::api::{ApiError, Client, Command};
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::render::{self, Format};
use crate::signals::{Received, Signals};

/// How long to wait for the final state after asking to cancel.
const CANCEL_GRACE: Duration = Duration::from_secs(15);
/// How long to keep retrying a long-poll while the broker is unreachable or has no quorum.
const RETRY_BUDGET: Duration = Duration::from_secs(30);
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// A command that reached a final state.
#[derive(Debug)]
pub struct Outcome {
    pub command: Command,
    /// The user interrupted (or the wait ran out) and the console asked to cancel.
    pub cancel_requested: bool,
}

enum Poll {
    Done(Command),
    Interrupted(Option<Command>),
    OutOfTime(Option<Command>),
}

/// Submits `line` to `session` and waits up to `wait` for the command to end. A Ctrl+C (or
/// SIGTERM) received after `mark` cancels the command and waits [`CANCEL_GRACE`] for its final
/// state. Take `mark` before anything the user may want to interrupt: a signal that lands while
/// the submission is in flight still cancels the command once its id is known.
pub async fn run_command(
    api: &Client,
    session: &str,
    line: &str,
    wait: Duration,
    signals: &Signals,
    mark: Received,
) -> Result<Outcome, Failure> {
    let submitted = api.submit(session, line).await?;
    let cid = submitted.command_id.clone();
    // A retried submission may answer a command that has already ended.
    if submitted.state.is_terminal() {
        return Ok(Outcome {
            command: submitted,
            cancel_requested: false,
        });
    }
    let reason = match poll(api, session, &cid, Instant::now() + wait, signals, mark).await? {
        Poll::Done(command) => {
            return Ok(Outcome {
                command,
                cancel_requested: false,
            });
        }
        Poll::Interrupted(_) => format!("interrupted: cancelling command {cid}"),
        Poll::OutOfTime(_) => format!(
            "command {cid} did not finish within {}s (--wait): cancelling it",
            wait.as_secs()
        ),
    };
    crate::say!("lr: {reason}");
    match api.cancel(session, &cid).await {
        Ok(command) if command.state.is_terminal() => {
            return Ok(Outcome {
                command,
                cancel_requested: true,
            });
        }
        Ok(_) => {}
        // It may have finished meanwhile; the poll below tells.
        Err(e) => crate::say!("lr: cancel of {cid} failed: {e}"),
    }
    let mark = signals.now();
    match poll(
        api,
        session,
        &cid,
        Instant::now() + CANCEL_GRACE,
        signals,
        mark,
    )
    .await?
    {
        Poll::Done(command) => Ok(Outcome {
            command,
            cancel_requested: true,
        }),
        Poll::Interrupted(last) | Poll::OutOfTime(last) => {
            let state = last.map_or("unknown", |c| c.state.as_str());
            Err(Failure::new(
                Exit::CommandFailed,
                format!("command {cid} was asked to cancel but is still {state}"),
            )
            .hint(format!(
                "lr session commands {session} shows its final state"
            )))
        }
    }
}

/// Long-polls the command until it is terminal, `deadline` passes, or a signal after `mark`.
async fn poll(
    api: &Client,
    session: &str,
    cid: &str,
    deadline: Instant,
    signals: &Signals,
    mark: Received,
) -> Result<Poll, ApiError> {
    let mut last: Option<Command> = None;
    let mut failing_since: Option<Instant> = None;
    let mut backoff = RETRY_FIRST;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ok(Poll::OutOfTime(last));
        }
        let wait = deadline - now;
        let answer = tokio::select! {
            answer = api.command(session, cid, wait) => answer,
            () = signals.after(mark) => return Ok(Poll::Interrupted(last)),
        };
        match answer {
            Ok(command) if command.state.is_terminal() => return Ok(Poll::Done(command)),
            Ok(command) => {
                last = Some(command);
                failing_since = None;
                backoff = RETRY_FIRST;
            }
            Err(e) if e.is_transient() => {
                let since = *failing_since.get_or_insert(now);
                if now.duration_since(since) >= RETRY_BUDGET {
                    return Err(e);
                }
                tokio::select! {
                    () = sleep(backoff.min(deadline.saturating_duration_since(now))) => {}
                    () = signals.after(mark) => return Ok(Poll::Interrupted(last)),
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// What of a command to print on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The whole command object in JSON, its output in tables (`exec`, `session run`).
    Command,
    /// Only the output, in either format (the REPL).
    OutputOnly,
}

/// Prints a finished command: its output on `out`, its error on stderr. Returns the exit code:
/// 0 for completed, 1 for any other final state.
pub fn report(
    command: &Command,
    format: Format,
    shape: Shape,
    width: Option<u16>,
    out: &mut dyn Write,
) -> std::io::Result<Exit> {
    out.write_all(body(command, format, shape, width).as_bytes())?;
    out.flush()?;
    Ok(conclude(command))
}

/// What of a finished command is printed on stdout, rendered.
pub fn body(command: &Command, format: Format, shape: Shape, width: Option<u16>) -> String {
    match (format, shape) {
        (Format::Json, Shape::Command) => render::json(&command.doc),
        (Format::Json, Shape::OutputOnly) => render::json(command.output()),
        (Format::Table, _) => render::text(command.output(), width),
    }
}

/// The exit code of a finished command, saying on stderr why it did not complete.
pub fn conclude(command: &Command) -> Exit {
    if command.state == CommandState::Completed {
        return Exit::Success;
    }
    crate::say!("lr: {}", failure_line(command));
    Exit::CommandFailed
}

/// `command failed: <error>` and the like, for a command that did not complete.
pub fn failure_line(command: &Command) -> String {
    let state = command.state.as_str().replace('_', " ");
    match command.error.as_deref().map(str::trim) {
        Some(error) if !error.is_empty() => format!("command {state}: {error}"),
        _ => format!("command {} {state}", command.command_id),
    }
}

/// A JSON document stating what happened, for commands whose API answer has no body.
pub fn status_doc(fields: &[(&str, Doc)]) -> Doc {
    Doc::Object(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(json: &str) -> Command {
        Command::from_doc(Doc::parse(json.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn completed_prints_output_and_succeeds() {
        let c = command(
            r#"{"command_id":"c1","command_line":"dir","state":"completed","output":{"entries":[{"name":"a"}]},"error":null}"#,
        );
        let mut out = Vec::new();
        let exit = report(&c, Format::Json, Shape::Command, None, &mut out).unwrap();
        assert_eq!(exit, Exit::Success);
        let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed["command_id"], "c1");

        let mut out = Vec::new();
        report(&c, Format::Json, Shape::OutputOnly, None, &mut out).unwrap();
        let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed["entries"][0]["name"], "a");
    }

    #[test]
    fn every_other_final_state_fails() {
        for state in ["failed", "timed_out", "rejected", "cancelled"] {
            let c = command(&format!(
                r#"{{"command_id":"c1","command_line":"dir","state":"{state}","output":null,"error":"boom"}}"#
            ));
            let mut out = Vec::new();
            let exit = report(&c, Format::Table, Shape::Command, None, &mut out).unwrap();
            assert_eq!(exit, Exit::CommandFailed, "{state}");
        }
    }

    #[test]
    fn failure_lines() {
        let c = command(
            r#"{"command_id":"c1","command_line":"dir","state":"timed_out","error":"took too long"}"#,
        );
        assert_eq!(failure_line(&c), "command timed out: took too long");
        let c =
            command(r#"{"command_id":"c1","command_line":"dir","state":"cancelled","error":null}"#);
        assert_eq!(failure_line(&c), "command c1 cancelled");
    }
}
