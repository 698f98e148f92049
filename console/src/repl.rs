//! `lr connect <device>`: the interactive console.
//!
//! Opens a session, reads lines (reedline on a terminal, with completion from the command table;
//! plain lines from a pipe), reads each against the table, and either answers it here (`help`,
//! `cls`, `trace`, `status`, `jobs`, `fg`, `whoami`) or runs it on the device and shows its
//! output, on the screen or in a local file (`> file`, `>> file`). A mistake in a line is shown
//! and nothing is sent. The prompt `<device> <cwd>> ` follows the command's `cwd`. `exit`, `quit`
//! and Ctrl+D end it; Ctrl+C at the prompt clears the line and while a command runs cancels it.
//! However the console ends, it closes the session.
//!
//! Transfers (getfile, download, putfile) become jobs (see [`crate::jobs`]): watched with a
//! progress bar, or in the background after `&` or Ctrl+Z. The console waits for background
//! transfers before it closes the session.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use api_model::{CommandState, ErrorCode};
use commands::{Invocation, Runs};
use reedline::{
    ColumnarMenu, Emacs, ExternalPrinter, FileBackedHistory, KeyCode, KeyModifiers, MenuBuilder,
    Prompt, PromptEditMode, PromptHistorySearch, PromptHistorySearchStatus, Reedline,
    ReedlineEvent, ReedlineMenu, Signal, default_emacs_keybindings,
};
use tokio::runtime::Runtime;

use crate::api::Client;
use crate::app::close_session;
use crate::cmdline;
use crate::complete::TableCompleter;
use crate::exit::{Exit, Failure};
use crate::jobs::{self, Job, Jobs, Notifier, Watched};
use crate::render::{self, Format};
use crate::run::{self, Shape};
use crate::signals::Signals;
use crate::transfer::Started;
use crate::{help, local, sink};

/// The longest a REPL command may run before the console gives up and cancels it: longer than
/// the longest device-side timeout (30 minutes for getfile, findfile, run).
const COMMAND_WAIT: Duration = Duration::from_secs(35 * 60);
const HISTORY_SIZE: usize = 10_000;
const COMPLETION_MENU: &str = "completion_menu";
/// Grace for the main loop to notice SIGTERM/SIGHUP itself before the watchdog acts.
const TERMINATE_GRACE: Duration = Duration::from_millis(500);

/// Runs the console on `device` until the user ends it. Returns the exit code of the console:
/// 0, or the failure that ended it (the session could not be opened, or it ended under us).
pub fn run(
    rt: &Runtime,
    api: &Client,
    device: &str,
    setting: Option<Format>,
    downloads: &Path,
    signals: &Signals,
) -> Result<Exit, Failure> {
    let opened = rt.block_on(api.open_session(device))?.value;
    let session = opened.session_id;
    let cwd = opened
        .cwd
        .or_else(|| {
            rt.block_on(api.session(&session))
                .ok()
                .and_then(|s| s.value.cwd)
        })
        .unwrap_or_default();
    crate::say!(
        "lr: connected to {device} (session {session}, node {}); exit, quit or Ctrl+D ends it, Ctrl+C cancels a running command",
        opened.node
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
        setting,
        signals,
        at_prompt,
        downloads: downloads.to_owned(),
        jobs: Jobs::default(),
        notifier: Notifier::Stderr,
    };
    let result = match Input::open() {
        Ok((mut input, notifier)) => {
            state.notifier = notifier;
            state.lines(&mut input)
        }
        Err(e) => Err(Failure::new(
            Exit::Usage,
            format!("cannot read from the terminal: {e}"),
        )),
    };
    if !signals.terminating() {
        state.finish_jobs();
    }
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
    /// The output format the user chose with `--output`, `LR_OUTPUT` or the config file.
    setting: Option<Format>,
    signals: &'a Signals,
    at_prompt: Arc<AtomicBool>,
    downloads: PathBuf,
    jobs: Jobs,
    notifier: Notifier,
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
            let line = line.trim();
            match line {
                "" => continue,
                "exit" | "quit" => return Ok(Exit::Success),
                _ => {}
            }
            match cmdline::parse(line) {
                Ok(invocation) => self.dispatch(&invocation, input)?,
                Err(mistake) => mistake.print(),
            }
        }
    }

    /// Answers a console-side command here, or runs the command on the device.
    fn dispatch(&mut self, invocation: &Invocation, input: &mut Input) -> Result<(), Failure> {
        let format = cmdline::format_of(invocation, self.setting);
        let spec = invocation.spec;
        // `help` also runs on the device, but the table is here: no round trip.
        if spec.name == "help" {
            let name = invocation.values.first().map(|(_, v)| v.as_str());
            match help::help(name, format) {
                Ok(text) => sink::deliver(&text, invocation.redirect.as_ref()),
                Err(mistake) => crate::say!("lr: {mistake}"),
            }
            return Ok(());
        }
        if matches!(
            spec.runs,
            Runs::Device | Runs::Broker(_) | Runs::Transfer(_)
        ) {
            return self.command(invocation, format);
        }
        match spec.name {
            "cls" => input.clear_screen(),
            "trace" => self.trace(invocation),
            "status" => self.status(invocation, format)?,
            "jobs" => self.jobs(invocation, format),
            "fg" => self.fg(invocation, format),
            "whoami" => self.whoami(invocation, format)?,
            other => crate::say!("lr: {other} is not available in this version of lr"),
        }
        Ok(())
    }

    /// The terminal's width for output on the screen; none for a file.
    fn width(invocation: &Invocation) -> Option<u16> {
        match invocation.redirect {
            Some(_) => None,
            None => render::terminal_width(),
        }
    }

    /// `trace [on|off]`: every API request and its answer on stderr, from now on.
    fn trace(&self, invocation: &Invocation) {
        let value = invocation.values.first().map(|(_, v)| v.as_str());
        match local::trace_switch(self.api.tracing(), value) {
            Ok(true) => {
                self.api.set_trace(true);
                crate::say!(
                    "lr: trace on: each API request and answer is shown here; trace again turns it off"
                );
            }
            Ok(false) => {
                self.api.set_trace(false);
                crate::say!("lr: trace off");
            }
            Err(mistake) => crate::say!("lr: {mistake}"),
        }
    }

    /// `status <command id>`: one command of this session, as it is now.
    fn status(&self, invocation: &Invocation, format: Format) -> Result<(), Failure> {
        let Some((_, id)) = invocation.values.first() else {
            crate::say!(
                "lr: status needs a command id; usage: {}",
                invocation.spec.usage()
            );
            return Ok(());
        };
        match self
            .rt
            .block_on(self.api.command(self.session, id, Duration::ZERO))
        {
            Ok(command) => sink::deliver(
                &local::status_body(&command, format, Self::width(invocation)),
                invocation.redirect.as_ref(),
            ),
            // The generic hint of a 404 (lr devices, lr sessions) does not help here.
            Err(e) if e.code() == Some(ErrorCode::NotFound) => crate::say!(
                "lr: {e}; lr session commands {} lists the commands of this session",
                self.session
            ),
            Err(e) => self.shown_unless_session_ended(e.into())?,
        }
        Ok(())
    }

    /// `whoami`: who the token belongs to.
    fn whoami(&self, invocation: &Invocation, format: Format) -> Result<(), Failure> {
        match self.rt.block_on(self.api.me()) {
            Ok(me) => sink::deliver(
                &local::whoami_body(&me, format),
                invocation.redirect.as_ref(),
            ),
            Err(e) => self.shown_unless_session_ended(e.into())?,
        }
        Ok(())
    }

    /// `jobs`: this console's transfers, running or ended.
    fn jobs(&self, invocation: &Invocation, format: Format) {
        let body = jobs::jobs_body(&self.jobs.rows(), format, Self::width(invocation));
        sink::deliver(&body, invocation.redirect.as_ref());
    }

    /// `fg <id>`: watch a job again; Ctrl+Z sends it back, Ctrl+C cancels it.
    fn fg(&self, invocation: &Invocation, format: Format) {
        let Some((_, id)) = invocation.values.first() else {
            crate::say!("lr: fg needs a job id; usage: {}", invocation.spec.usage());
            return;
        };
        let job = match self.jobs.get(id) {
            Ok(job) => job.clone(),
            Err(mistake) => {
                crate::say!("lr: {mistake}");
                return;
            }
        };
        if !job.is_running() {
            crate::say!("lr: job {} has ended", job.id);
            self.show_end(&job.progress(), format);
            return;
        }
        crate::say!("lr: [{}] {}", job.id, job.line);
        self.watch(&job, format);
    }

    /// Watches a job until it ends (prints the result) or Ctrl+Z (back to the background).
    fn watch(&self, job: &Job, format: Format) {
        let mark = self.signals.now();
        match self
            .rt
            .block_on(job.watch(self.api, self.signals, mark, true))
        {
            Watched::Ended(progress) => self.show_end(&progress, format),
            Watched::Detached => {
                crate::say!(
                    "lr: [{}] {} continues in the background; jobs lists it, fg {} brings it back",
                    job.id,
                    job.line,
                    job.id
                );
                job.detached(&self.notifier);
            }
        }
    }

    fn show_end(&self, progress: &crate::transfer::Progress, format: Format) {
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = jobs::report(progress, format, &mut stdout) {
            crate::say!("lr: cannot write output: {e}");
        }
    }

    /// Starts following the transfer a completed command began: in the foreground, or in the
    /// background for a line that ended in `&`.
    fn transfer(&mut self, invocation: &Invocation, started: Started, format: Format) {
        let id = self.jobs.next_id();
        let line = cmdline::for_broker(invocation);
        let transfer_id = started.transfer_id.clone();
        let job = {
            let _guard = self.rt.enter();
            Job::start(
                id,
                line.clone(),
                self.api,
                started,
                self.downloads.clone(),
                !invocation.background,
                self.notifier.clone(),
            )
        };
        self.jobs.add(job.clone());
        if invocation.background {
            crate::say!("[{id}] {transfer_id} {line}");
        } else {
            self.watch(&job, format);
        }
    }

    /// At the end of the console: background transfers are followed to their end (Ctrl+C
    /// cancels them) before the session closes.
    fn finish_jobs(&self) {
        let running: Vec<Job> = self.jobs.running().into_iter().cloned().collect();
        if running.is_empty() {
            return;
        }
        crate::say!(
            "lr: waiting for {} background transfer{} to end before closing the session; Ctrl+C cancels {}",
            running.len(),
            if running.len() == 1 { "" } else { "s" },
            if running.len() == 1 { "it" } else { "them" }
        );
        let mark = self.signals.now();
        for job in running {
            if let Watched::Ended(progress) =
                self.rt
                    .block_on(job.watch(self.api, self.signals, mark, false))
            {
                crate::say!("{}", jobs::notice(job.id, &job.line, &progress));
            }
        }
    }

    /// A failure of a console-side command is shown, unless the session is over: that ends the
    /// console.
    fn shown_unless_session_ended(&self, failure: Failure) -> Result<(), Failure> {
        if failure.api_code == Some(ErrorCode::Gone) {
            return Err(failure);
        }
        failure.print();
        Ok(())
    }

    /// Runs one command on the device. Only a session that is gone ends the console; other
    /// failures are shown.
    fn command(&mut self, invocation: &Invocation, format: Format) -> Result<(), Failure> {
        let outcome = self.rt.block_on(run::run_command(
            self.api,
            self.session,
            &cmdline::for_broker(invocation),
            COMMAND_WAIT,
            self.signals,
            self.signals.now(),
        ));
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(failure) => {
                if matches!(
                    failure.api_code,
                    Some(ErrorCode::Gone | ErrorCode::NotFound)
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
        if outcome.cancel_requested && command.state == CommandState::Completed {
            crate::say!("lr: the command completed before the cancel reached it");
        }
        if command.state == CommandState::Completed
            && let Some(started) = Started::from_command(invocation.spec.name, command)
        {
            match started {
                Ok(started) => self.transfer(
                    invocation,
                    started,
                    cmdline::transfer_format(invocation, self.setting),
                ),
                Err(failure) => failure.print(),
            }
            return Ok(());
        }
        let body = run::body(command, format, Shape::OutputOnly, Self::width(invocation));
        sink::deliver(&body, invocation.redirect.as_ref());
        run::conclude(command);
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
    /// The input, and where background jobs announce their end: above the prompt on a terminal.
    fn open() -> std::io::Result<(Input, Notifier)> {
        if !std::io::stdin().is_terminal() {
            return Ok((Input::Plain(std::io::stdin().lock()), Notifier::Stderr));
        }
        let printer = ExternalPrinter::<String>::new(64);
        let notifier = Notifier::Printer(printer.sender());
        let mut keybindings = default_emacs_keybindings();
        keybindings.add_binding(
            KeyModifiers::NONE,
            KeyCode::Tab,
            ReedlineEvent::UntilFound(vec![
                ReedlineEvent::Menu(COMPLETION_MENU.to_owned()),
                ReedlineEvent::MenuNext,
            ]),
        );
        let mut editor = Reedline::create()
            .with_external_printer(printer)
            .with_history_exclusion_prefix(Some(" ".to_owned()))
            .with_completer(Box::new(TableCompleter))
            .with_menu(ReedlineMenu::EngineCompleter(Box::new(
                ColumnarMenu::default()
                    .with_name(COMPLETION_MENU)
                    .with_marker("> "),
            )))
            .with_edit_mode(Box::new(Emacs::new(keybindings)));
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
        Ok((Input::Editor(Box::new(editor)), notifier))
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
