//! `lr connect <device>`: the interactive console.
//!
//! Opens a session, reads lines (reedline on a terminal, plain lines from a pipe), runs each as a
//! command and shows its output; the prompt `<device> <cwd>> ` follows the command's `cwd`.
//! `exit`, `quit` and Ctrl+D end it; `cls` clears the screen; Ctrl+C at the prompt clears the line
//! and while a command runs cancels it. However the console ends, it closes the session.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reedline::{
    FileBackedHistory, Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus,
    Reedline, Signal,
};
use tokio::runtime::Runtime;

use crate::api::Client;
use crate::app::close_session;
use crate::cmdline::{self, Prepared};
use crate::exit::{Exit, Failure};
use crate::render::{self, Format};
use crate::run::{self, Shape};
use crate::signals::Signals;

/// The longest a REPL command may run before the console gives up and cancels it: longer than
/// the longest device-side timeout (30 minutes for getfile, findfile, run).
const COMMAND_WAIT: Duration = Duration::from_secs(35 * 60);
const HISTORY_SIZE: usize = 10_000;
/// Grace for the main loop to notice SIGTERM/SIGHUP itself before the watchdog acts.
const TERMINATE_GRACE: Duration = Duration::from_millis(500);

/// Runs the console on `device` until the user ends it. Returns the exit code of the console:
/// 0, or the failure that ended it (the session could not be opened, or it ended under us).
pub fn run(
    rt: &Runtime,
    api: &Client,
    device: &str,
    format: Format,
    signals: &Signals,
) -> Result<Exit, Failure> {
    let (opened, _) = rt.block_on(api.open_session(device))?;
    let session = opened.session_id;
    let cwd = rt
        .block_on(api.session(&session))
        .ok()
        .and_then(|(info, _)| info.cwd)
        .unwrap_or_default();
    crate::say!(
        "lr: connected to {device} (session {session}{}); exit, quit or Ctrl+D ends it, Ctrl+C cancels a running command",
        opened
            .node
            .map(|n| format!(", node {n}"))
            .unwrap_or_default()
    );

    let at_prompt = Arc::new(AtomicBool::new(false));
    let watchdog = rt.spawn(watchdog(
        api.clone(),
        session.clone(),
        signals.clone(),
        at_prompt.clone(),
    ));
    let mut state = Repl {
        rt,
        api,
        device,
        session: &session,
        cwd,
        format,
        signals,
        at_prompt,
    };
    let result = match Input::open() {
        Ok(mut input) => state.lines(&mut input),
        Err(e) => Err(Failure::new(
            Exit::Usage,
            format!("cannot read from the terminal: {e}"),
        )),
    };
    watchdog.abort();
    rt.block_on(close_session(api, &session));
    crate::say!("lr: session {session} closed");
    result
}

struct Repl<'a> {
    rt: &'a Runtime,
    api: &'a Client,
    device: &'a str,
    session: &'a str,
    cwd: String,
    format: Format,
    signals: &'a Signals,
    at_prompt: Arc<AtomicBool>,
}

impl Repl<'_> {
    fn lines(&mut self, input: &mut Input) -> Result<Exit, Failure> {
        loop {
            if self.signals.terminating() {
                return Ok(Exit::Success);
            }
            let prompt = LrPrompt {
                left: if self.cwd.is_empty() {
                    self.device.to_owned()
                } else {
                    format!("{} {}", self.device, self.cwd)
                },
            };
            self.at_prompt.store(true, Ordering::SeqCst);
            let read = input.read(&prompt);
            self.at_prompt.store(false, Ordering::SeqCst);
            let line = match read {
                Ok(Read::Line(line)) => line,
                Ok(Read::Interrupted) => continue,
                Ok(Read::Eof) => return Ok(Exit::Success),
                Err(e) => {
                    crate::say!("lr: cannot read input: {e}");
                    return Ok(Exit::Success);
                }
            };
            match line.trim() {
                "" => continue,
                "exit" | "quit" => return Ok(Exit::Success),
                "cls" | "clear" => {
                    input.clear_screen();
                    continue;
                }
                trimmed => match cmdline::from_line(trimmed) {
                    Ok(prepared) => self.command(&prepared)?,
                    Err(message) => crate::say!("lr: {message}"),
                },
            }
        }
    }

    /// Runs one line. Only a session that is gone ends the console; other failures are shown.
    fn command(&mut self, prepared: &Prepared) -> Result<(), Failure> {
        let outcome = self.rt.block_on(run::run_command(
            self.api,
            self.session,
            &prepared.line,
            COMMAND_WAIT,
            self.signals,
            self.signals.now(),
        ));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(failure) => {
                if matches!(
                    failure.api_code.as_deref(),
                    Some("session_ended" | "not_found")
                ) {
                    return Err(failure);
                }
                failure.print();
                return Ok(());
            }
        };
        let command = &outcome.command;
        if let Some(cwd) = &command.cwd
            && !cwd.is_empty()
        {
            self.cwd.clone_from(cwd);
        }
        if outcome.cancel_requested && command.state == crate::api::CommandState::Completed {
            crate::say!("lr: the command completed before the cancel reached it");
        }
        let format = prepared.output.unwrap_or(self.format);
        match &prepared.redirect {
            None => {
                let mut stdout = std::io::stdout().lock();
                let width = render::terminal_width();
                if let Err(e) = run::report(command, format, Shape::OutputOnly, width, &mut stdout)
                {
                    crate::say!("lr: cannot write output: {e}");
                }
            }
            Some(redirect) => {
                let file = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(redirect.append)
                    .truncate(!redirect.append)
                    .open(&redirect.path);
                match file {
                    Ok(mut file) => {
                        match run::report(command, format, Shape::OutputOnly, None, &mut file) {
                            Ok(_) => {
                                crate::say!("lr: output written to {}", redirect.path.display())
                            }
                            Err(e) => {
                                crate::say!("lr: cannot write {}: {e}", redirect.path.display())
                            }
                        }
                    }
                    Err(e) => crate::say!("lr: cannot open {}: {e}", redirect.path.display()),
                }
            }
        }
        Ok(())
    }
}

/// SIGTERM or SIGHUP while the line editor blocks the main thread: close the session, restore
/// the terminal and exit. While a command runs, the main loop handles the signal itself.
async fn watchdog(api: Client, session: String, signals: Signals, at_prompt: Arc<AtomicBool>) {
    signals.terminated().await;
    tokio::time::sleep(TERMINATE_GRACE).await;
    while !at_prompt.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    close_session(&api, &session).await;
    let _ = crossterm::terminal::disable_raw_mode();
    crate::say!("\nlr: terminated; session {session} closed");
    std::process::exit(143);
}

enum Read {
    Line(String),
    Interrupted,
    Eof,
}

/// Lines from the terminal through reedline, or plain lines from a pipe or file.
enum Input {
    Editor(Box<Reedline>),
    Plain(std::io::StdinLock<'static>),
}

impl Input {
    fn open() -> std::io::Result<Input> {
        if !std::io::stdin().is_terminal() {
            return Ok(Input::Plain(std::io::stdin().lock()));
        }
        let mut editor = Reedline::create().with_history_exclusion_prefix(Some(" ".to_owned()));
        if let Some(path) = history_path() {
            let history = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    FileBackedHistory::with_file(HISTORY_SIZE, path.clone())
                        .map_err(|e| e.to_string())
                });
            match history {
                Ok(history) => editor = editor.with_history(Box::new(history)),
                Err(e) => crate::say!("lr: no command history ({}: {e})", path.display()),
            }
        }
        Ok(Input::Editor(Box::new(editor)))
    }

    fn read(&mut self, prompt: &LrPrompt) -> std::io::Result<Read> {
        match self {
            Input::Editor(editor) => match editor.read_line(prompt)? {
                Signal::Success(line) => Ok(Read::Line(line)),
                Signal::CtrlC => Ok(Read::Interrupted),
                Signal::CtrlD => Ok(Read::Eof),
                _ => Ok(Read::Interrupted),
            },
            Input::Plain(stdin) => {
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    return Ok(Read::Eof);
                }
                Ok(Read::Line(line))
            }
        }
    }

    fn clear_screen(&mut self) {
        match self {
            Input::Editor(editor) => {
                let _ = editor.clear_screen();
            }
            Input::Plain(_) => {
                if std::io::stdout().is_terminal() {
                    let mut stdout = std::io::stdout();
                    let _ = stdout
                        .write_all(b"\x1b[2J\x1b[H")
                        .and_then(|()| stdout.flush());
                }
            }
        }
    }
}

/// `$XDG_STATE_HOME/lr/history`, else `~/.local/state/lr/history`.
fn history_path() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".local").join("state")))?;
    Some(base.join("lr").join("history"))
}

/// `<device> <cwd>> `
struct LrPrompt {
    left: String,
}

impl Prompt for LrPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.left)
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("::: ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        let prefix = match search.status {
            PromptHistorySearchStatus::Passing => "",
            PromptHistorySearchStatus::Failing => "failing ",
        };
        Cow::Owned(format!("({prefix}search: {}) ", search.term))
    }
}
