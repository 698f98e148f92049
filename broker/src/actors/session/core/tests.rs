//! `SessionCore` alone: scenarios of each rule, and random event sequences checked against the
//! session's invariants and a plain FIFO model of its queue.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::audit::story::LoggedCommand;

const TIMING: Timing = Timing {
    idle_timeout_ms: 600_000,
    max_held_output_bytes: 64 * 1024 * 1024,
};

fn submit(id: &str, line: &str) -> Event {
    Event::Submit {
        id: id.into(),
        line: line.into(),
    }
}

fn ok(id: &str, output: &str) -> Event {
    Event::AgentResult(AgentResult {
        command_id: id.into(),
        state: CommandState::Completed,
        output_json: output.into(),
        error: String::new(),
        cwd: String::new(),
        file_facts: None,
    })
}

fn facts(path: &str, size: u64, sha256: &str) -> FileFacts {
    FileFacts {
        path: path.into(),
        kind: crate::transfer::start::FileKind::File,
        size,
        sha256: sha256.into(),
        hashes_note: String::new(),
    }
}

/// A completed fileinfo of a regular file, with its facts as the agent states them.
fn fileinfo_ok(id: &str, facts: FileFacts) -> Event {
    Event::AgentResult(AgentResult {
        file_facts: Some(facts),
        ..match ok(id, "{}") {
            Event::AgentResult(r) => r,
            _ => unreachable!(),
        }
    })
}

fn sent(id: &str) -> Event {
    Event::Sent {
        id: id.into(),
        outcome: Ok(()),
    }
}

fn state(core: &SessionCore, id: &str) -> CommandState {
    core.command(id).unwrap().state
}

fn logged(id: &str, line: &str, end: Option<(CommandState, &str)>) -> LoggedCommand {
    LoggedCommand {
        id: id.into(),
        line: line.into(),
        submitted_at_ms: 10,
        end: end.map(|(state, cwd)| crate::audit::story::LoggedEnd {
            state,
            error: String::new(),
            cwd: cwd.into(),
            output_ref: Some(format!("ref-{id}")),
            started_at_ms: 11,
            finished_at_ms: 12,
        }),
    }
}

#[test]
fn an_adopted_session_resumes_from_its_log_and_sends_only_its_unfinished_device_command() {
    let history = vec![
        logged("c1", "cd /tmp", Some((CommandState::Completed, "/tmp"))),
        logged("c2", "dir", Some((CommandState::Failed, "/tmp"))),
        logged("c3", "library", None),
        logged("c4", "processes", None),
        logged("c5", "dir", None),
    ];
    let (mut core, effects) = SessionCore::resume(TIMING, 100, history);
    assert_eq!(core.cwd(), "/tmp");
    assert_eq!(
        effects,
        vec![Effect::Send("c4".into())],
        "only the first unfinished one goes"
    );
    assert_eq!(state(&core, "c1"), CommandState::Completed);
    assert_eq!(core.command("c1").unwrap().output_ref, "ref-c1");
    assert_eq!(state(&core, "c2"), CommandState::Failed);
    // A broker command without an end is not started again: its outcome is unknown.
    assert_eq!(state(&core, "c3"), CommandState::Failed);
    assert!(
        core.command("c3")
            .unwrap()
            .error
            .contains("outcome is unknown")
    );
    assert_eq!(core.running(), Some("c4"));
    assert_eq!(core.queued().collect::<Vec<_>>(), vec!["c5"]);
    assert_eq!(core.command("c4").unwrap().submitted_at_ms, 10);
    // The device answers the running one (from its ledger if it ran): the queue moves on.
    core.handle(sent("c4"), 101).unwrap();
    let effects = core.handle(ok("c4", "[]"), 102).unwrap();
    assert!(effects.contains(&Effect::Send("c5".into())), "{effects:?}");
    // A retried submit of a logged command answers it and runs nothing.
    assert_eq!(core.handle(submit("c1", "cd /tmp"), 103).unwrap(), vec![]);
    let order: Vec<&str> = core.commands().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["c1", "c2", "c3", "c4", "c5"]);
}

#[test]
fn device_commands_run_one_at_a_time_in_order() {
    let mut core = SessionCore::new(TIMING, 0);
    assert_eq!(
        core.handle(submit("a", "dir"), 1),
        Ok(vec![Effect::Send("a".into())])
    );
    assert_eq!(core.handle(submit("b", "processes"), 2), Ok(vec![]));
    assert_eq!(state(&core, "b"), CommandState::Queued);
    assert_eq!(
        core.handle(sent("a"), 3),
        Ok(vec![Effect::Publish("a".into())])
    );
    assert_eq!(
        core.handle(ok("a", "{}"), 4),
        Ok(vec![Effect::Publish("a".into()), Effect::Send("b".into())])
    );
    assert_eq!(state(&core, "a"), CommandState::Completed);
    assert_eq!(core.running(), Some("b"));
}

#[test]
fn outputs_held_until_logged_stay_within_budget_oldest_let_go_first() {
    let mut core = SessionCore::new(
        Timing {
            max_held_output_bytes: 2_500,
            ..TIMING
        },
        0,
    );
    let output = format!("\"{}\"", "x".repeat(998));
    for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let now = 10 * i as u64;
        core.handle(submit(id, "dir"), now).unwrap();
        core.handle(sent(id), now + 1).unwrap();
        core.handle(ok(id, &output), now + 2).unwrap();
        let held: usize = core.commands().map(|r| r.output_json.len()).sum();
        assert!(held <= 2_500, "{held} bytes held after {id}");
    }
    // The newest two are held; the oldest were let go, and say so until the log's reference
    // replaces them.
    assert_eq!(core.command("d").unwrap().output_json, output);
    assert_eq!(core.command("c").unwrap().output_json, output);
    let a = core.command("a").unwrap().to_wire();
    assert!(a.output_json.is_empty());
    assert!(
        a.error.contains("sessions.max_held_output_bytes"),
        "{}",
        a.error
    );
    core.output_stored("a", "ref-a".into());
    let a = core.command("a").unwrap().to_wire();
    assert_eq!((a.output_ref.as_str(), a.error.as_str()), ("ref-a", ""));
    // A list leaves held outputs out, saying so, and shows logged ones by reference.
    let listed: Vec<_> = core.commands().map(CommandRecord::to_wire_listed).collect();
    let held = listed.iter().find(|c| c.command_id == "d").unwrap();
    assert!(held.output_held && held.output_json.is_empty());
    let logged = listed.iter().find(|c| c.command_id == "a").unwrap();
    assert!(!logged.output_held && logged.output_ref == "ref-a");
    // A single output above the whole budget is still held while it is the newest.
    let huge = format!("\"{}\"", "y".repeat(5_000));
    core.handle(submit("e", "dir"), 50).unwrap();
    core.handle(sent("e"), 51).unwrap();
    core.handle(ok("e", &huge), 52).unwrap();
    assert_eq!(core.command("e").unwrap().output_json, huge);
    assert!(core.command("d").unwrap().output_json.is_empty());
}

#[test]
fn a_command_the_device_node_cannot_take_fails_and_the_next_goes() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "dir"), 1).unwrap();
    core.handle(submit("b", "dir"), 1).unwrap();
    let effects = core
        .handle(
            Event::Sent {
                id: "a".into(),
                outcome: Err("device offline".into()),
            },
            2,
        )
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::Publish("a".into()), Effect::Send("b".into())]
    );
    assert_eq!(core.command("a").unwrap().error, "device offline");
}

#[test]
fn refused_lines_change_nothing() {
    let mut core = SessionCore::new(TIMING, 0);
    for line in ["", "nosuchcommand", "cls", "dir > out.txt"] {
        let refusal = core.handle(submit("x", line), 1).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidRequest, "{line}");
    }
    assert_eq!(core.commands().count(), 0);
}

#[test]
fn a_retried_submit_runs_nothing_and_a_reused_id_is_refused() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("x", "dir"), 1).unwrap();
    let submitted_at = core.command("x").unwrap().submitted_at_ms;
    assert_eq!(core.handle(submit("x", "dir"), 2).unwrap(), vec![]);
    assert_eq!(core.command("x").unwrap().submitted_at_ms, submitted_at);
    let clash = core.handle(submit("x", "processes"), 3).unwrap_err();
    assert_eq!(clash.code, ErrorCode::AlreadyExists);
    assert_eq!(core.commands().count(), 1);
}

#[test]
fn commands_keep_the_order_they_came_in_whatever_their_ids() {
    let mut core = SessionCore::new(TIMING, 0);
    for id in ["zz", "aa", "mm"] {
        core.handle(submit(id, "dir"), 1).unwrap();
    }
    let order: Vec<&str> = core.commands().map(|c| c.id.as_str()).collect();
    assert_eq!(order, ["zz", "aa", "mm"]);
}

#[test]
fn broker_commands_run_beside_the_queue() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "dir"), 1).unwrap();
    let effects = core.handle(submit("b", "library"), 2).unwrap();
    assert_eq!(
        effects,
        vec![Effect::RunOnBroker {
            id: "b".into(),
            action: BrokerAction::ListLibrary
        }]
    );
    let effects = core
        .handle(
            Event::BrokerDone {
                id: "b".into(),
                outcome: Ok("{\"files\":[]}".into()),
            },
            3,
        )
        .unwrap();
    assert_eq!(effects, vec![Effect::Publish("b".into())]);
    assert_eq!(state(&core, "b"), CommandState::Completed);
    assert_eq!(core.running(), Some("a"), "the device's queue is untouched");
    let effects = core
        .handle(submit("c", "putfile tool.sh -keep"), 4)
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::RunOnBroker {
            id: "c".into(),
            action: BrokerAction::Putfile {
                name: "tool.sh".into(),
                keep: true,
                overwrite: false
            }
        }]
    );
}

#[test]
fn getfile_needs_fileinfo_first_or_runs_it_with_auto() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "getfile /etc/hosts"), 1).unwrap();
    assert_eq!(state(&core, "a"), CommandState::Failed);
    assert!(
        core.command("a")
            .unwrap()
            .error
            .contains("run `fileinfo /etc/hosts`")
    );

    core.handle(submit("b", "fileinfo /etc/hosts"), 2).unwrap();
    core.handle(fileinfo_ok("b", facts("/etc/hosts", 12, "ab")), 3)
        .unwrap();
    let effects = core.handle(submit("c", "getfile /etc/hosts"), 4).unwrap();
    assert!(
        matches!(&effects[..], [Effect::RunOnBroker { action: BrokerAction::Getfile(f), .. }] if f.size == 12),
        "{effects:?}"
    );

    // -auto: its fileinfo runs on the device, then the transfer starts; the queue waits for it.
    let effects = core.handle(submit("d", "cd /tmp"), 5).unwrap();
    assert_eq!(effects, vec![Effect::Send("d".into())]);
    let cd = Event::AgentResult(AgentResult {
        cwd: "/tmp".into(),
        ..match ok("d", "{}") {
            Event::AgentResult(r) => r,
            _ => unreachable!(),
        }
    });
    assert_eq!(
        core.handle(cd, 6).unwrap(),
        vec![Effect::Publish("d".into())]
    );
    assert_eq!(core.cwd(), "/tmp");
    let effects = core
        .handle(submit("e", "getfile notes.txt -auto"), 7)
        .unwrap();
    assert_eq!(effects, vec![Effect::Send("e".into())]);
    core.handle(submit("f", "dir"), 7).unwrap();
    assert_eq!(core.command("e").unwrap().args, ["-path", "/tmp/notes.txt"]);
    let effects = core
        .handle(fileinfo_ok("e", facts("/tmp/notes.txt", 5, "cd")), 8)
        .unwrap();
    assert!(
        matches!(&effects[..], [Effect::RunOnBroker { id, .. }] if id == "e"),
        "{effects:?}"
    );
    assert_eq!(core.running(), Some("e"));
    let effects = core
        .handle(
            Event::BrokerDone {
                id: "e".into(),
                outcome: Ok("{\"transfer_id\":\"t\"}".into()),
            },
            9,
        )
        .unwrap();
    assert_eq!(
        effects,
        vec![Effect::Publish("e".into()), Effect::Send("f".into())]
    );
    assert_eq!(state(&core, "e"), CommandState::Completed);
}

#[test]
fn getfile_auto_fails_when_its_fileinfo_states_no_facts() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "getfile /etc/hosts -auto"), 1)
        .unwrap();
    let effects = core.handle(ok("a", "{}"), 2).unwrap();
    assert_eq!(effects, vec![Effect::Publish("a".into())]);
    assert_eq!(state(&core, "a"), CommandState::Failed);
    let error = &core.command("a").unwrap().error;
    assert!(error.contains("fileinfo gave no size or path"), "{error}");
}

#[test]
fn cancel_takes_a_queued_command_out_and_asks_the_device_for_a_running_one() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "dir"), 1).unwrap();
    core.handle(submit("b", "dir"), 1).unwrap();
    let effects = core.handle(Event::Cancel { id: "b".into() }, 2).unwrap();
    assert_eq!(effects, vec![Effect::Publish("b".into())]);
    assert_eq!(state(&core, "b"), CommandState::Cancelled);
    assert_eq!(core.queued().count(), 0);
    let effects = core.handle(Event::Cancel { id: "a".into() }, 3).unwrap();
    assert_eq!(effects, vec![Effect::SendCancel("a".into())]);
    assert_eq!(
        state(&core, "a"),
        CommandState::Running,
        "until the agent answers"
    );
    let missing = core
        .handle(Event::Cancel { id: "z".into() }, 4)
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
}

#[test]
fn a_silent_device_times_the_command_out_and_the_queue_moves_on() {
    let mut core = SessionCore::new(TIMING, 0);
    core.handle(submit("a", "dir"), 0).unwrap();
    core.handle(submit("b", "dir"), 0).unwrap();
    let timeout = u64::from(core.command("a").unwrap().timeout_ms) + RESULT_GRACE_MS;
    let effects = core.handle(Event::Tick, timeout).unwrap();
    assert!(
        !effects.contains(&Effect::Send("b".into())),
        "not yet: {effects:?}"
    );
    let effects = core.handle(Event::Tick, timeout + 1).unwrap();
    assert!(effects.contains(&Effect::Send("b".into())), "{effects:?}");
    assert_eq!(state(&core, "a"), CommandState::TimedOut);
}

#[test]
fn a_lost_lease_an_idle_session_or_the_analyst_stops_it() {
    let mut core = SessionCore::new(TIMING, 0);
    assert_eq!(
        core.handle(Event::LeaseLost, 1),
        Ok(vec![Effect::Stop("lease lost")])
    );
    assert_eq!(
        core.handle(submit("a", "dir"), 2),
        Ok(vec![]),
        "a stopped session does nothing"
    );

    let mut core = SessionCore::new(TIMING, 0);
    let effects = core
        .handle(Event::Tick, TIMING.idle_timeout_ms + 1)
        .unwrap();
    assert_eq!(effects, vec![Effect::Stop("idle timeout")]);

    let mut core = SessionCore::new(TIMING, 0);
    let effects = core.handle(Event::End, 1).unwrap();
    assert_eq!(
        effects,
        vec![Effect::ReleaseLease, Effect::Stop("ended by the analyst")]
    );
}

#[test]
fn a_reconnected_device_gets_the_running_command_again() {
    let mut core = SessionCore::new(TIMING, 0);
    assert_eq!(core.handle(Event::DeviceOnline, 1), Ok(vec![]));
    core.handle(submit("a", "dir"), 1).unwrap();
    assert_eq!(
        core.handle(Event::DeviceOnline, 2),
        Ok(vec![Effect::Resend("a".into())])
    );
}

// ---- random sequences -------------------------------------------------------------------------

const LINES: [&str; 10] = [
    "dir",
    "processes",
    "cd /tmp",
    "fileinfo /etc/hosts",
    "getfile /etc/hosts",
    "getfile notes.txt -auto",
    "library",
    "putfile tool.sh",
    "nosuchcommand",
    "cls",
];

#[derive(Clone, Debug)]
enum Step {
    Submit(usize),
    /// The agent answers the running command (true: completed).
    Answer(bool),
    /// The agent answers some other command.
    StrayAnswer(u8),
    Cancel(u8),
    DeviceOnline,
    Tick(u64),
    Lost,
    End,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..LINES.len()).prop_map(Step::Submit),
        6 => any::<bool>().prop_map(Step::Answer),
        1 => any::<u8>().prop_map(Step::StrayAnswer),
        2 => any::<u8>().prop_map(Step::Cancel),
        1 => Just(Step::DeviceOnline),
        3 => (0..1_000_000u64).prop_map(Step::Tick),
        1 => Just(Step::Lost),
        1 => Just(Step::End),
    ]
}

/// Drives a core the way `SessionActor` does: effects that report an outcome are answered at
/// once (sends fail when `sends_fail`), and each event's effects are checked as they come.
struct Driver {
    core: SessionCore,
    now: u64,
    next_id: u64,
    sends_fail: bool,
    stopped: bool,
    /// Device commands in the order they were queued: the order they must start in.
    fifo: VecDeque<String>,
    started: Vec<String>,
    terminal: BTreeMap<String, CommandState>,
}

impl Driver {
    fn apply(&mut self, event: Event) -> Result<(), Refusal> {
        let mut pending = VecDeque::from([event]);
        let mut first = true;
        while let Some(event) = pending.pop_front() {
            let effects = match self.core.handle(event, self.now) {
                Ok(effects) => effects,
                Err(refusal) => {
                    assert!(first, "a follow-up event was refused: {refusal:?}");
                    return Err(refusal);
                }
            };
            first = false;
            for effect in effects {
                assert!(!self.stopped, "an effect after stop: {effect:?}");
                match effect {
                    Effect::Send(id) => {
                        assert_eq!(
                            self.core.running(),
                            Some(id.as_str()),
                            "send of a command not running"
                        );
                        self.started.push(id.clone());
                        let outcome = if self.sends_fail {
                            Err("offline".into())
                        } else {
                            Ok(())
                        };
                        pending.push_back(Event::Sent { id, outcome });
                    }
                    Effect::RunOnBroker { id, .. } => {
                        pending.push_back(Event::BrokerDone {
                            id,
                            outcome: Ok("{}".into()),
                        });
                    }
                    Effect::Resend(id) | Effect::SendCancel(id) => {
                        assert_eq!(self.core.running(), Some(id.as_str()));
                    }
                    Effect::Publish(id) => assert!(self.core.command(&id).is_some()),
                    Effect::Stop(_) => self.stopped = true,
                    Effect::ReleaseLease => {}
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, step: Step) {
        self.now += 1;
        let id_of = |core: &SessionCore, n: u8| {
            let ids: Vec<String> = core.commands().map(|r| r.id.clone()).collect();
            (!ids.is_empty()).then(|| ids[usize::from(n) % ids.len()].clone())
        };
        match step {
            Step::Submit(i) => {
                // Zero-padded: ids sort in submission order, as time-ordered uuids do.
                let id = format!("c{:06}", self.next_id);
                self.next_id += 1;
                let accepted = self.apply(submit(&id, LINES[i])).is_ok();
                let queued = self.core.command(&id).is_some_and(|r| {
                    r.state == CommandState::Queued || self.core.running() == Some(id.as_str())
                }) || self.started.contains(&id);
                if accepted && queued && !self.stopped {
                    self.fifo.push_back(id);
                }
            }
            Step::Answer(completed) => {
                if let Some(id) = self.core.running().map(str::to_owned) {
                    let state = if completed {
                        CommandState::Completed
                    } else {
                        CommandState::Failed
                    };
                    let _ = self.apply(Event::AgentResult(AgentResult {
                        command_id: id,
                        state,
                        output_json: "{}".into(),
                        error: String::new(),
                        cwd: String::new(),
                        file_facts: completed.then(|| facts("/tmp/notes.txt", 5, "cd")),
                    }));
                }
            }
            Step::StrayAnswer(n) => {
                if let Some(id) = id_of(&self.core, n)
                    && self.core.running() != Some(id.as_str())
                {
                    let before = self.core.command(&id).cloned();
                    let _ = self.apply(ok(&id, "{}"));
                    assert_eq!(
                        self.core.command(&id).map(|r| r.state),
                        before.map(|r| r.state)
                    );
                }
            }
            Step::Cancel(n) => {
                if let Some(id) = id_of(&self.core, n) {
                    let _ = self.apply(Event::Cancel { id });
                }
            }
            Step::DeviceOnline => {
                let _ = self.apply(Event::DeviceOnline);
            }
            Step::Tick(ms) => {
                self.now += ms;
                let _ = self.apply(Event::Tick);
            }
            Step::Lost => {
                let _ = self.apply(Event::LeaseLost);
            }
            Step::End => {
                let _ = self.apply(Event::End);
            }
        }
    }

    fn check_invariants(&mut self) {
        let core = &self.core;
        // At most one command runs on the device, and it is the one the core names.
        let running: Vec<&str> = core
            .commands()
            .filter(|r| r.state == CommandState::Running)
            .map(|r| r.id.as_str())
            .collect();
        assert!(running.len() <= 1, "two commands running: {running:?}");
        assert_eq!(running.first().copied(), core.running());
        // The queue holds exactly the queued commands, in submission order.
        let queued: Vec<&str> = core.queued().collect();
        let in_state: Vec<&str> = core
            .commands()
            .filter(|r| r.state == CommandState::Queued)
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(queued, in_state);
        // Nothing waits while the device is idle (unless the session stopped).
        if !self.stopped {
            assert!(
                core.running().is_some() || queued.is_empty(),
                "an idle queue: {queued:?}"
            );
        }
        // A finished command stays as it finished.
        for record in core.commands() {
            if let Some(was) = self.terminal.get(&record.id) {
                assert_eq!(
                    *was, record.state,
                    "{} changed after it finished",
                    record.id
                );
            } else if record.state.is_terminal() {
                self.terminal.insert(record.id.clone(), record.state);
            }
        }
        // Device commands start in the order they were queued.
        let order: Vec<&String> = self
            .fifo
            .iter()
            .filter(|id| self.started.contains(id))
            .collect();
        let started: Vec<&String> = self
            .started
            .iter()
            .filter(|id| self.fifo.contains(id))
            .collect();
        assert_eq!(order, started, "commands started out of order");
        let distinct: BTreeSet<&String> = self.started.iter().collect();
        assert_eq!(
            distinct.len(),
            self.started.len(),
            "a command was sent twice"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_session_invariants(
        steps in proptest::collection::vec(step(), 1..80),
        sends_fail in proptest::bool::weighted(0.1),
    ) {
        let mut driver = Driver {
            core: SessionCore::new(TIMING, 0),
            now: 0,
            next_id: 0,
            sends_fail,
            stopped: false,
            fifo: VecDeque::new(),
            started: Vec::new(),
            terminal: BTreeMap::new(),
        };
        for step in steps {
            driver.run(step);
            driver.check_invariants();
        }
        // Liveness: an agent that answers everything empties the queue.
        if !driver.stopped {
            for _ in 0..=driver.core.commands().count() {
                driver.run(Step::Answer(true));
            }
            driver.check_invariants();
            prop_assert!(driver.core.running().is_none());
            prop_assert!(driver.core.commands().all(|r| r.state.is_terminal()));
        }
    }
}
