use proptest::prelude::*;

use super::*;
use crate::model::Status;

fn ok(cwd: &str) -> Outcome {
    Outcome {
        status: Status::Ok,
        output: None,
        error: String::new(),
        cwd: cwd.into(),
        file_facts: None,
    }
}

fn start(ledger: &mut Ledger, id: &str, token: u64) -> PersistedState {
    match ledger.admit(id, token) {
        Admission::Start { state } => {
            ledger.begin(id, token);
            state
        }
        other => panic!("expected start, got {other:?}"),
    }
}

#[test]
fn stale_tokens_are_refused_equal_and_higher_accepted() {
    let mut l = Ledger::default();
    let s = start(&mut l, "a", 5);
    assert_eq!(s.highest_token, 5);
    assert_eq!(s.started, ["a"]);
    assert_eq!(l.admit("b", 4), Admission::Stale { highest: 5 });
    start(&mut l, "c", 5);
    start(&mut l, "d", 9);
    assert_eq!(l.highest_token(), 9);
}

#[test]
fn transfers_are_fenced_by_token_alone_and_keep_the_started_ids() {
    let mut l = Ledger::default();
    start(&mut l, "a", 5);
    assert_eq!(l.fence(4), Fence::Stale { highest: 5 });
    assert_eq!(l.fence(5), Fence::Accept);
    let Fence::Raise { state } = l.fence(8) else {
        panic!("a higher token raises")
    };
    assert_eq!(state.highest_token, 8);
    assert_eq!(state.started, ["a"], "the started ids survive the raise");
    // Not raised until persisted.
    assert_eq!(l.highest_token(), 5);
    l.raise(8);
    assert_eq!(l.highest_token(), 8);
    assert_eq!(l.admit("b", 7), Admission::Stale { highest: 8 });
}

#[test]
fn ids_run_once() {
    let mut l = Ledger::default();
    start(&mut l, "a", 1);
    assert_eq!(l.admit("a", 1), Admission::AlreadyRunning);
    l.finish("a", ok("/x"));
    assert_eq!(l.admit("a", 1), Admission::Replay(ok("/x")));
    // A replay is served even to an older token: nothing runs.
    start(&mut l, "b", 7);
    assert_eq!(l.admit("a", 1), Admission::Replay(ok("/x")));
}

#[test]
fn ids_from_a_previous_life_are_not_rerun() {
    let l = Ledger::new(
        PersistedState {
            highest_token: 3,
            started: vec!["old".into()],
        },
        DEFAULT_HELD_RESULT_BYTES,
    );
    assert_eq!(l.admit("old", 3), Admission::Lost);
    assert_eq!(l.admit("new", 2), Admission::Stale { highest: 3 });
    assert!(matches!(l.admit("new", 3), Admission::Start { .. }));
}

#[test]
fn memory_is_bounded() {
    let mut l = Ledger::default();
    for i in 0..(MAX_REMEMBERED + 10) {
        let id = i.to_string();
        let state = start(&mut l, &id, 1);
        assert!(state.started.len() <= MAX_REMEMBERED);
        l.finish(&id, ok("/"));
    }
    assert_eq!(l.done.len(), MAX_REMEMBERED);
    assert_eq!(l.started.len(), MAX_REMEMBERED);
    // The oldest result is forgotten: a re-send of it would start again (by design, after 1024).
    assert!(matches!(l.admit("0", 1), Admission::Start { .. }));
    assert!(matches!(l.admit("20", 1), Admission::Replay(_)));
}

fn printed(cwd: &str, bytes: usize) -> Outcome {
    Outcome {
        output: Some(serde_json::Value::String("x".repeat(bytes))),
        ..ok(cwd)
    }
}

#[test]
fn held_results_stay_within_the_byte_budget_and_let_go_ones_are_not_rerun() {
    let mut l = Ledger::new(PersistedState::default(), 10_000);
    for i in 0..10 {
        let id = i.to_string();
        start(&mut l, &id, 1);
        l.finish(&id, printed("/", 3_000));
        assert!(l.held_bytes <= 10_000, "{} held", l.held_bytes);
    }
    assert_eq!(l.done.len(), 3, "three results of about 3 kB fit in 10 kB");
    assert!(matches!(l.admit("9", 1), Admission::Replay(_)));
    // Let go, yet started: its effect may have happened, so it is not run again.
    assert_eq!(l.admit("0", 1), Admission::Lost);
    // One result above the whole budget is never held, and pushes nothing out.
    start(&mut l, "huge", 1);
    l.finish("huge", printed("/", 20_000));
    assert_eq!(l.admit("huge", 1), Admission::Lost);
    assert!(matches!(l.admit("9", 1), Admission::Replay(_)));
}

proptest! {
    // Whatever the order of requests and completions and however small the budget for results: no
    // id starts twice while remembered, and no start ever carries a token below one accepted
    // before it.
    #[test]
    fn fencing_and_at_most_once(
        ops in proptest::collection::vec((0u8..12, 0u64..6, any::<bool>()), 1..200),
        budget in 0usize..5_000,
    ) {
        let mut l = Ledger::new(PersistedState::default(), budget);
        let mut started = std::collections::HashSet::new();
        let mut max_accepted = 0;
        for (id, token, finish) in ops {
            let id = id.to_string();
            if finish {
                l.finish(&id, printed("/", 1_000));
                prop_assert!(l.held_bytes <= budget);
                continue;
            }
            match l.admit(&id, token) {
                Admission::Start { state } => {
                    prop_assert!(token >= max_accepted);
                    prop_assert!(started.insert(id.clone()), "{} started twice", id);
                    prop_assert_eq!(state.highest_token, token.max(max_accepted));
                    l.begin(&id, token);
                    max_accepted = max_accepted.max(token);
                }
                Admission::Stale { highest } => {
                    prop_assert!(token < highest);
                    prop_assert_eq!(highest, max_accepted);
                }
                Admission::Replay(_) | Admission::AlreadyRunning | Admission::Lost => {
                    prop_assert!(started.contains(&id));
                }
            }
        }
    }
}
