//! The fencing and idempotency decisions as a state machine: a request in, a decision out, no IO.
//!
//! Order of checks for a request `(id, token)`:
//! 1. a completed id replays its result (even with an older token: nothing runs, and the old
//!    session learns the truth rather than a misleading "stale");
//! 2. a running id is not started again; its result goes to every asker when it ends;
//! 3. an id started before whose result is no longer held (lost with an earlier process, or
//!    pushed out of the byte budget by newer results) is not run again (at most once beats
//!    exactly once for remediation-like commands);
//! 4. a token lower than the highest accepted is refused;
//! 5. anything else starts, once the new state is persisted.
//!
//! A file transfer's chunk request has no id to run once (it is asked for again by design), so it
//! is fenced by its token alone: [`Ledger::fence`], then [`Ledger::raise`] once persisted.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::model::Outcome;

/// How many completed results and started ids are remembered.
pub const MAX_REMEMBERED: usize = 1024;

/// The default budget for the results held to answer re-sent requests, in bytes.
pub const DEFAULT_HELD_RESULT_BYTES: usize = 64 * 1024 * 1024;

/// What survives an agent restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub highest_token: u64,
    /// Ids of the most recently started commands, oldest first.
    pub started: Vec<String>,
}

/// The decision for one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Replay(Outcome),
    AlreadyRunning,
    /// Started before, and its result is no longer held: it was lost with an earlier process,
    /// or newer results pushed it out of the byte budget.
    Lost,
    Stale {
        highest: u64,
    },
    /// Persist `state`, then call [`Ledger::begin`] and run the command.
    Start {
        state: PersistedState,
    },
}

/// The decision for a request fenced by its token alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// The token is the highest already: nothing to persist.
    Accept,
    /// A new highest token: persist `state`, then call [`Ledger::raise`].
    Raise {
        state: PersistedState,
    },
    Stale {
        highest: u64,
    },
}

#[derive(Debug)]
pub struct Ledger {
    highest: u64,
    /// Every id started and still remembered, oldest first: the persisted ones from earlier
    /// processes, then this process's.
    started: VecDeque<String>,
    started_set: HashSet<String>,
    running: HashSet<String>,
    done: HashMap<String, Held>,
    done_order: VecDeque<String>,
    /// The size of the results in `done`, kept at or under `max_held_bytes`.
    held_bytes: usize,
    max_held_bytes: usize,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new(PersistedState::default(), DEFAULT_HELD_RESULT_BYTES)
    }
}

impl Ledger {
    /// A ledger that holds at most `max_held_bytes` of results (their outputs, errors and working
    /// directories) to answer re-sent requests; a single larger result is not held at all.
    pub fn new(persisted: PersistedState, max_held_bytes: usize) -> Self {
        let mut ledger = Self {
            highest: persisted.highest_token,
            started: VecDeque::new(),
            started_set: HashSet::new(),
            running: HashSet::new(),
            done: HashMap::new(),
            done_order: VecDeque::new(),
            held_bytes: 0,
            max_held_bytes,
        };
        for id in persisted.started {
            ledger.remember_started(id);
        }
        ledger
    }

    pub fn highest_token(&self) -> u64 {
        self.highest
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn admit(&self, id: &str, token: u64) -> Admission {
        if let Some(held) = self.done.get(id) {
            return Admission::Replay(held.outcome());
        }
        if self.running.contains(id) {
            return Admission::AlreadyRunning;
        }
        // Started, not running and without a held result: its result is gone.
        if self.started_set.contains(id) {
            return Admission::Lost;
        }
        if token < self.highest {
            return Admission::Stale {
                highest: self.highest,
            };
        }
        let mut started: Vec<String> = self.started.iter().cloned().collect();
        started.push(id.to_owned());
        let excess = started.len().saturating_sub(MAX_REMEMBERED);
        started.drain(..excess);
        Admission::Start {
            state: PersistedState {
                highest_token: self.highest.max(token),
                started,
            },
        }
    }

    pub fn fence(&self, token: u64) -> Fence {
        if token < self.highest {
            Fence::Stale {
                highest: self.highest,
            }
        } else if token == self.highest {
            Fence::Accept
        } else {
            Fence::Raise {
                state: PersistedState {
                    highest_token: token,
                    started: self.started.iter().cloned().collect(),
                },
            }
        }
    }

    /// Records `token` as accepted; call only after the state from [`Ledger::fence`] is persisted.
    pub fn raise(&mut self, token: u64) {
        self.highest = self.highest.max(token);
    }

    /// Records that `id` runs with `token`; call only after the state from `admit` is persisted.
    pub fn begin(&mut self, id: &str, token: u64) {
        self.highest = self.highest.max(token);
        self.running.insert(id.to_owned());
        self.remember_started(id.to_owned());
    }

    pub fn finish(&mut self, id: &str, outcome: Outcome) {
        if !self.running.remove(id) {
            return;
        }
        let held = Held::new(outcome);
        if held.size() > self.max_held_bytes {
            return;
        }
        self.held_bytes += held.size();
        self.done.insert(id.to_owned(), held);
        self.done_order.push_back(id.to_owned());
        while self.done_order.len() > MAX_REMEMBERED || self.held_bytes > self.max_held_bytes {
            let Some(old) = self.done_order.pop_front() else {
                break;
            };
            if let Some(held) = self.done.remove(&old) {
                self.held_bytes -= held.size();
            }
        }
    }

    fn remember_started(&mut self, id: String) {
        if self.started_set.insert(id.clone()) {
            self.started.push_back(id);
        }
        while self.started.len() > MAX_REMEMBERED {
            if let Some(old) = self.started.pop_front() {
                self.started_set.remove(&old);
            }
        }
    }
}

/// A finished result as the ledger holds it: its output as JSON text, which costs what it
/// weighs (a parsed document takes several times its text in memory).
#[derive(Debug)]
struct Held {
    outcome: Outcome,
    output_json: Option<String>,
}

impl Held {
    fn new(mut outcome: Outcome) -> Self {
        let output_json = outcome.output.take().map(|output| output.to_string());
        Self {
            outcome,
            output_json,
        }
    }

    fn size(&self) -> usize {
        self.output_json.as_ref().map_or(0, String::len)
            + self.outcome.error.len()
            + self.outcome.cwd.len()
    }

    /// The result as it was finished.
    fn outcome(&self) -> Outcome {
        Outcome {
            // Text this ledger wrote from a document reads back as that document.
            output: self
                .output_json
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok()),
            ..self.outcome.clone()
        }
    }
}

#[cfg(test)]
mod tests;
