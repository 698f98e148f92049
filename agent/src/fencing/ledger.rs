//! The fencing and idempotency decisions as a state machine: a request in, a decision out, no IO.
//!
//! Order of checks for a request `(id, token)`:
//! 1. a completed id replays its result (even with an older token: nothing runs, and the old
//!    session learns the truth rather than a misleading "stale");
//! 2. a running id is not started again; its result goes to every asker when it ends;
//! 3. an id started before the agent restarted, whose result was lost with the process, is not
//!    run again (at most once beats exactly once for remediation-like commands);
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
    /// Started in an earlier life of the agent; its result is gone.
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

#[derive(Debug, Default)]
pub struct Ledger {
    highest: u64,
    started: VecDeque<String>,
    started_set: HashSet<String>,
    running: HashSet<String>,
    done: HashMap<String, Outcome>,
    done_order: VecDeque<String>,
    /// Ids from the persisted state: started before this process.
    previous_life: HashSet<String>,
}

impl Ledger {
    pub fn new(persisted: PersistedState) -> Self {
        let mut ledger = Self {
            highest: persisted.highest_token,
            ..Self::default()
        };
        for id in persisted.started {
            ledger.previous_life.insert(id.clone());
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
        if let Some(outcome) = self.done.get(id) {
            return Admission::Replay(outcome.clone());
        }
        if self.running.contains(id) {
            return Admission::AlreadyRunning;
        }
        if self.previous_life.contains(id) {
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
        self.done.insert(id.to_owned(), outcome);
        self.done_order.push_back(id.to_owned());
        while self.done_order.len() > MAX_REMEMBERED {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
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
                self.previous_life.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests;
