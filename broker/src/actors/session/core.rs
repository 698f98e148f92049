//! `SessionCore`: every decision of a session, pure. Events go in with the time they happen at;
//! decisions come out as [`Effect`] values for `SessionActor` to carry out. No IO, no clock.
//!
//! One command runs at a time, in submission order, as in the seed. A broker or transfer command
//! is carried out at once, beside the queue; `getfile -auto` first queues its `fileinfo` and turns
//! into a transfer when that completes. A running command whose device never answers times out;
//! a session idle too long, or whose lease is lost, stops.

use std::collections::{HashMap, VecDeque};

use indexmap::IndexMap;

use api_model::{CommandState, ErrorCode};
use commands::{BrokerCommand, Runs, TransferCommand};

use super::record::CommandRecord;
use crate::audit::story::LoggedCommand;
use crate::transfer::start::{FileFacts, resolve};

/// Commands a session remembers; the oldest finished ones are forgotten first.
pub const MAX_COMMANDS: usize = 1000;
/// Grace beyond a command's own timeout before the broker gives up on the agent's answer.
pub const RESULT_GRACE_MS: u64 = 30_000;
/// Files whose fileinfo a session remembers for getfile.
const MAX_FILE_FACTS: usize = 1000;

/// The session's timing settings.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub idle_timeout_ms: u64,
    /// Outputs held until the audit log stores them: past it, the oldest are let go.
    pub max_held_output_bytes: usize,
}

/// Something that happened to the session.
#[derive(Clone, Debug)]
pub enum Event {
    /// The analyst submits a command line; `id` is the new command's id.
    Submit {
        id: String,
        line: String,
    },
    Cancel {
        id: String,
    },
    /// The outcome of [`Effect::Send`]: the device's node took the command, or why not.
    Sent {
        id: String,
        outcome: Result<(), String>,
    },
    /// The outcome of [`Effect::RunOnBroker`]: the command's output document, or why it failed.
    BrokerDone {
        id: String,
        outcome: Result<String, String>,
    },
    /// The agent's answer to a command.
    AgentResult(AgentResult),
    /// The device's agent connected again.
    DeviceOnline,
    /// The lease is gone (expired, or a newer session holds the device).
    LeaseLost,
    Tick,
    /// The analyst ends the session.
    End,
}

/// What the agent reported for a command, in domain terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentResult {
    pub command_id: String,
    pub state: CommandState,
    pub output_json: String,
    pub error: String,
    /// The working directory after the command (`cd`); empty when unchanged.
    pub cwd: String,
    /// What a completed `fileinfo` found: getfile's prerequisite.
    pub file_facts: Option<FileFacts>,
}

/// What the brokers do for a broker or transfer command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerAction {
    ListLibrary,
    Putfile {
        name: String,
        keep: bool,
        overwrite: bool,
    },
    Getfile(FileFacts),
}

/// A decision for the actor to carry out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Hand the command to the device's node; answer with [`Event::Sent`].
    Send(String),
    /// Hand the running command to the device again after a reconnection; the agent answers a
    /// command it already ran from its cache. Nothing to answer.
    Resend(String),
    /// Ask the device to cancel the running command.
    SendCancel(String),
    /// Run a broker or transfer command; answer with [`Event::BrokerDone`].
    RunOnBroker {
        id: String,
        action: BrokerAction,
    },
    /// Publish the command's new state to live streams.
    Publish(String),
    /// Release the lease, then stop.
    ReleaseLease,
    Stop(&'static str),
}

/// A refused request, with the error code the API maps to its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// The session's state and the rules that change it.
#[derive(Clone, Debug)]
pub struct SessionCore {
    timing: Timing,
    cwd: String,
    /// In submission order (client-chosen ids need not sort by time).
    commands: IndexMap<String, CommandRecord>,
    queue: VecDeque<String>,
    running: Option<String>,
    /// The running command waits for its broker action (a `getfile -auto` starting its transfer).
    on_broker: bool,
    /// What fileinfo reported, by absolute path: getfile's prerequisite.
    file_facts: HashMap<String, FileFacts>,
    last_activity_ms: u64,
    stopped: bool,
}

impl SessionCore {
    pub fn new(timing: Timing, now_ms: u64) -> Self {
        Self {
            timing,
            cwd: "/".into(),
            commands: IndexMap::new(),
            queue: VecDeque::new(),
            running: None,
            on_broker: false,
            file_facts: HashMap::new(),
            last_activity_ms: now_ms,
            stopped: false,
        }
    }

    /// A session taken over from another node, rebuilt from its commands as the audit log tells
    /// them: each finished one as it ended, the working directory the last one left, and each
    /// device command without an end queued again in order, the first sent at once. The device
    /// answers a command it already ran from its ledger (or says its result is lost) and runs one
    /// that never reached it: never twice. A broker or transfer command without an end is not
    /// started again; it failed, its outcome unknown.
    pub fn resume(timing: Timing, now_ms: u64, logged: Vec<LoggedCommand>) -> (Self, Vec<Effect>) {
        let mut core = Self::new(timing, now_ms);
        let mut effects = Vec::new();
        for command in logged {
            let parsed = commands::parse(&command.line).ok();
            let name = parsed.as_ref().map_or_else(
                || {
                    command
                        .line
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                },
                |p| p.spec.name.to_owned(),
            );
            let on_device = parsed.as_ref().is_some_and(|p| {
                p.spec.runs == Runs::Device
                    || (p.spec.runs == Runs::Transfer(TransferCommand::Getfile)
                        && p.flags.contains(&"auto"))
            });
            let mut record = CommandRecord {
                id: command.id.clone(),
                line: command.line.clone(),
                command: name,
                args: Vec::new(),
                timeout_ms: 0,
                state: CommandState::Failed,
                output_json: String::new(),
                output_ref: String::new(),
                output_let_go: false,
                error: String::new(),
                cwd: core.cwd.clone(),
                submitted_at_ms: command.submitted_at_ms,
                started_at_ms: command.submitted_at_ms,
                finished_at_ms: now_ms,
                then_getfile: false,
            };
            match command.end {
                Some(end) => {
                    if !end.cwd.is_empty() {
                        core.cwd = end.cwd.clone();
                    }
                    record.state = end.state;
                    record.error = end.error;
                    record.cwd = core.cwd.clone();
                    record.output_ref = end.output_ref.unwrap_or_default();
                    record.started_at_ms = end.started_at_ms;
                    record.finished_at_ms = end.finished_at_ms;
                }
                None if on_device => {
                    if core
                        .submit(command.id.clone(), command.line, now_ms, &mut effects)
                        .is_ok()
                        && let Some(record) = core.commands.get_mut(&command.id)
                    {
                        record.submitted_at_ms = command.submitted_at_ms;
                    }
                    continue;
                }
                None => {
                    record.error = "the node running this command stopped before it finished, and it is not started again: its outcome is unknown; check `transfers` or run it again".into();
                }
            }
            core.commands.insert(command.id, record);
        }
        core.forget_old_commands();
        (core, effects)
    }

    pub fn cwd(&self) -> &str {
        &self.cwd
    }

    pub fn command(&self, id: &str) -> Option<&CommandRecord> {
        self.commands.get(id)
    }

    /// The finished command `id`'s output is in the audit log as `reference`: the session keeps
    /// the reference, not the output.
    pub fn output_stored(&mut self, id: &str, reference: String) {
        if let Some(record) = self.commands.get_mut(id)
            && record.state.is_terminal()
        {
            record.output_json = String::new();
            record.output_ref = reference;
        }
    }

    /// Every remembered command, oldest first.
    pub fn commands(&self) -> impl Iterator<Item = &CommandRecord> {
        self.commands.values()
    }

    pub fn running(&self) -> Option<&str> {
        self.running.as_deref()
    }

    /// Ids of the queued commands, next first.
    pub fn queued(&self) -> impl Iterator<Item = &str> {
        self.queue.iter().map(String::as_str)
    }

    /// Applies `event`, which happened at `now_ms`; returns what to do, in order. A submit or
    /// cancel that is refused changes nothing and says why.
    pub fn handle(&mut self, event: Event, now_ms: u64) -> Result<Vec<Effect>, Refusal> {
        let mut effects = Vec::new();
        if self.stopped {
            return Ok(effects);
        }
        match event {
            Event::Submit { id, line } => self.submit(id, line, now_ms, &mut effects)?,
            Event::Cancel { id } => self.cancel(&id, now_ms, &mut effects)?,
            Event::Sent { id, outcome } => {
                if self.running.as_deref() == Some(id.as_str()) && !self.on_broker {
                    match outcome {
                        Ok(()) => effects.push(Effect::Publish(id)),
                        Err(message) => {
                            self.finish(
                                &id,
                                CommandState::Failed,
                                String::new(),
                                message,
                                None,
                                now_ms,
                                &mut effects,
                            );
                            self.dispatch(now_ms, &mut effects);
                        }
                    }
                }
            }
            Event::BrokerDone { id, outcome } => {
                self.broker_done(id, outcome, now_ms, &mut effects)
            }
            Event::AgentResult(result) => self.agent_result(result, now_ms, &mut effects),
            Event::DeviceOnline => {
                if let Some(id) = &self.running
                    && !self.on_broker
                {
                    effects.push(Effect::Resend(id.clone()));
                }
            }
            Event::LeaseLost => self.stop("lease lost", &mut effects),
            Event::Tick => self.tick(now_ms, &mut effects),
            Event::End => {
                effects.push(Effect::ReleaseLease);
                self.stop("ended by the analyst", &mut effects);
            }
        }
        Ok(effects)
    }

    fn submit(
        &mut self,
        id: String,
        line: String,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) -> Result<(), Refusal> {
        self.last_activity_ms = now_ms;
        // A retried submit: the command it names stands; nothing runs again.
        if let Some(existing) = self.commands.get(&id) {
            return if existing.line == line {
                Ok(())
            } else {
                Err(refuse(
                    ErrorCode::AlreadyExists,
                    format!(
                        "command id {id} names another command line in this session; pick a new id"
                    ),
                ))
            };
        }
        let invocation =
            commands::parse(&line).map_err(|e| refuse(ErrorCode::InvalidRequest, e.to_string()))?;
        let spec = invocation.spec;
        if invocation.redirect.is_some() {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                "writing output to a file (> file) is done by the console; remove it here",
            ));
        }
        let value = |name: &str| {
            invocation
                .values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let flag = |name: &str| invocation.flags.contains(&name);
        let mut record = CommandRecord {
            id: id.clone(),
            line,
            command: spec.name.to_string(),
            args: invocation.device_args(),
            timeout_ms: u32::try_from(spec.timeout.as_millis()).unwrap_or(u32::MAX),
            state: CommandState::Queued,
            output_json: String::new(),
            output_ref: String::new(),
            output_let_go: false,
            error: String::new(),
            cwd: self.cwd.clone(),
            submitted_at_ms: now_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
            then_getfile: false,
        };
        // Exhaustive: a command kind the table gains is a compile error here until handled.
        let action = match spec.runs {
            Runs::Console => {
                return Err(refuse(
                    ErrorCode::InvalidRequest,
                    format!("{} runs in the console, not on the device", spec.name),
                ));
            }
            Runs::Device => None,
            Runs::Broker(BrokerCommand::Library) => Some(Ok(BrokerAction::ListLibrary)),
            Runs::Transfer(TransferCommand::Putfile) => Some(Ok(BrokerAction::Putfile {
                name: value("name"),
                keep: flag("keep"),
                overwrite: flag("overwrite"),
            })),
            Runs::Transfer(TransferCommand::Getfile) => {
                let path = resolve(&self.cwd, &value("path"));
                if flag("auto") {
                    // Its fileinfo runs on the device first; the transfer starts when it completes.
                    record.command = "fileinfo".into();
                    record.args = vec!["-path".into(), path];
                    record.then_getfile = true;
                    None
                } else {
                    Some(match self.file_facts.get(&path) {
                        Some(facts) => Ok(BrokerAction::Getfile(facts.clone())),
                        None => Err(format!(
                            "getfile needs the size and SHA-256 of {path} first: run `fileinfo {}` or add -auto",
                            commands::quote(&path)
                        )),
                    })
                }
            }
        };
        match action {
            None => {
                self.queue.push_back(id.clone());
                self.commands.insert(id, record);
                self.dispatch(now_ms, effects);
            }
            Some(Ok(action)) => {
                // Beside the queue: started now, finished by `BrokerDone`.
                record.state = CommandState::Running;
                record.started_at_ms = now_ms;
                self.commands.insert(id.clone(), record);
                effects.push(Effect::RunOnBroker { id, action });
            }
            Some(Err(message)) => {
                record.state = CommandState::Failed;
                record.error = message;
                record.started_at_ms = now_ms;
                record.finished_at_ms = now_ms;
                self.commands.insert(id.clone(), record);
                effects.push(Effect::Publish(id));
            }
        }
        self.forget_old_commands();
        Ok(())
    }

    fn cancel(&mut self, id: &str, now_ms: u64, effects: &mut Vec<Effect>) -> Result<(), Refusal> {
        self.last_activity_ms = now_ms;
        let Some(record) = self.commands.get(id) else {
            return Err(refuse(
                ErrorCode::NotFound,
                format!("no command {id} in this session"),
            ));
        };
        match record.state {
            CommandState::Queued => {
                self.queue.retain(|q| q != id);
                self.finish(
                    id,
                    CommandState::Cancelled,
                    String::new(),
                    "cancelled before it started".into(),
                    None,
                    now_ms,
                    effects,
                );
            }
            CommandState::Running if self.running.as_deref() == Some(id) && !self.on_broker => {
                effects.push(Effect::SendCancel(id.to_string()));
            }
            _ => {}
        }
        Ok(())
    }

    fn broker_done(
        &mut self,
        id: String,
        outcome: Result<String, String>,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        let Some(record) = self.commands.get(&id) else {
            return;
        };
        if record.state.is_terminal() {
            return;
        }
        let (state, output, error) = match outcome {
            Ok(output) => (CommandState::Completed, output, String::new()),
            Err(error) => (CommandState::Failed, String::new(), error),
        };
        let was_queued_command = self.running.as_deref() == Some(id.as_str());
        self.finish(&id, state, output, error, None, now_ms, effects);
        if was_queued_command {
            self.on_broker = false;
            self.dispatch(now_ms, effects);
        }
    }

    fn agent_result(&mut self, result: AgentResult, now_ms: u64, effects: &mut Vec<Effect>) {
        let id = result.command_id;
        if self.running.as_deref() != Some(id.as_str()) || self.on_broker {
            return;
        }
        let record = &self.commands[&id];
        let then_getfile = record.then_getfile;
        let completed = result.state == CommandState::Completed;
        let facts = (completed && (record.command == "fileinfo" || then_getfile))
            .then_some(result.file_facts)
            .flatten();
        if let Some(facts) = &facts {
            self.remember(facts.clone());
        }
        let cwd = (completed && !result.cwd.is_empty()).then_some(result.cwd);
        if then_getfile {
            let outcome = match (completed, facts) {
                (false, _) => Err(format!("fileinfo failed: {}", result.error)),
                (true, None) => Err(format!(
                    "fileinfo gave no size or path for command {id}; run fileinfo to see why"
                )),
                (true, Some(facts)) => Ok(facts),
            };
            match outcome {
                Ok(facts) => {
                    // Still running until its transfer has started.
                    self.on_broker = true;
                    effects.push(Effect::RunOnBroker {
                        id,
                        action: BrokerAction::Getfile(facts),
                    });
                }
                Err(error) => {
                    let state = if completed {
                        CommandState::Failed
                    } else {
                        result.state
                    };
                    self.finish(&id, state, String::new(), error, cwd, now_ms, effects);
                    self.dispatch(now_ms, effects);
                }
            }
            return;
        }
        self.finish(
            &id,
            result.state,
            result.output_json,
            result.error,
            cwd,
            now_ms,
            effects,
        );
        self.dispatch(now_ms, effects);
    }

    fn tick(&mut self, now_ms: u64, effects: &mut Vec<Effect>) {
        if self.running.is_none()
            && now_ms.saturating_sub(self.last_activity_ms) > self.timing.idle_timeout_ms
        {
            self.stop("idle timeout", effects);
            return;
        }
        // An agent that never answers does not hold the queue forever.
        if let Some(id) = self.running.clone()
            && !self.on_broker
        {
            let record = &self.commands[&id];
            if now_ms.saturating_sub(record.started_at_ms)
                > u64::from(record.timeout_ms) + RESULT_GRACE_MS
            {
                let message = "the device did not answer within the command's timeout".to_string();
                self.finish(
                    &id,
                    CommandState::TimedOut,
                    String::new(),
                    message,
                    None,
                    now_ms,
                    effects,
                );
                self.dispatch(now_ms, effects);
            }
        }
    }

    /// Starts the next queued command if none is running.
    fn dispatch(&mut self, now_ms: u64, effects: &mut Vec<Effect>) {
        if self.running.is_some() {
            return;
        }
        let Some(id) = self.queue.pop_front() else {
            return;
        };
        if let Some(record) = self.commands.get_mut(&id) {
            record.state = CommandState::Running;
            record.started_at_ms = now_ms;
            record.cwd = self.cwd.clone();
        }
        self.running = Some(id.clone());
        effects.push(Effect::Send(id));
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        id: &str,
        state: CommandState,
        output_json: String,
        error: String,
        cwd: Option<String>,
        now_ms: u64,
        effects: &mut Vec<Effect>,
    ) {
        if let Some(cwd) = cwd {
            self.cwd = cwd;
        }
        if let Some(record) = self.commands.get_mut(id) {
            record.state = state;
            record.output_json = output_json;
            record.error = error;
            record.cwd = self.cwd.clone();
            record.finished_at_ms = now_ms;
        }
        if self.running.as_deref() == Some(id) {
            self.running = None;
        }
        self.let_go_of_outputs(id);
        effects.push(Effect::Publish(id.to_string()));
    }

    /// Keeps the outputs held in memory within budget by letting go of the oldest, never of
    /// `newest` (still to be published and logged). Each older one is already being written to
    /// the audit log, which holds its own copy: its reference replaces it when written.
    fn let_go_of_outputs(&mut self, newest: &str) {
        let mut held: usize = self.commands.values().map(|r| r.output_json.len()).sum();
        for (id, record) in &mut self.commands {
            if held <= self.timing.max_held_output_bytes {
                break;
            }
            if id != newest && record.state.is_terminal() && !record.output_json.is_empty() {
                held -= record.output_json.len();
                record.output_json = String::new();
                record.output_let_go = true;
            }
        }
    }

    fn stop(&mut self, reason: &'static str, effects: &mut Vec<Effect>) {
        self.stopped = true;
        effects.push(Effect::Stop(reason));
    }

    fn remember(&mut self, facts: FileFacts) {
        if self.file_facts.len() >= MAX_FILE_FACTS {
            self.file_facts.clear();
        }
        self.file_facts.insert(facts.path.clone(), facts);
    }

    fn forget_old_commands(&mut self) {
        while self.commands.len() > MAX_COMMANDS {
            let oldest_finished = self
                .commands
                .iter()
                .find(|(_, r)| r.state.is_terminal())
                .map(|(id, _)| id.clone());
            match oldest_finished {
                Some(id) => {
                    self.commands.shift_remove(&id);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
