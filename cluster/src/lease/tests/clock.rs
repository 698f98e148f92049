//! Tests of lease time: one node's clock rules, then a model of a cluster in which one node's wall
//! clock jumps, checked against what leases promise.

use std::time::Duration;

use proptest::prelude::*;

use crate::lease::{
    AcquireRequest, JUMP_MS, LeaseClock, LeaseOp, LeaseOutcome, LeaseTable, Millis, SLEW,
};

/// A wall clock of 2023, so an hour back is still a valid time.
const EPOCH: Millis = 1_700_000_000_000;
const HOUR: i64 = 60 * 60 * 1000;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Reads a clock every `step` ms over `span` ms of monotonic time, with the wall clock `offset`
/// ms off; returns the last reading.
fn run(clock: &mut LeaseClock, from: u64, span: u64, step: u64, offset: i64) -> Millis {
    let mut last = 0;
    let mut mono = from;
    while mono < from + span {
        mono += step;
        let wall = (EPOCH + mono).saturating_add_signed(offset);
        last = clock.stamp(wall, ms(mono), last);
    }
    last
}

#[test]
fn the_first_reading_trusts_the_wall_clock_but_not_below_the_table() {
    assert_eq!(LeaseClock::default().read(EPOCH, ms(5), 0), EPOCH);
    // A node starting after an outage: its wall clock is ahead of every stamp applied.
    assert_eq!(
        LeaseClock::default().read(EPOCH, ms(5), EPOCH - 3_600_000),
        EPOCH
    );
    assert_eq!(
        LeaseClock::default().read(EPOCH, ms(5), EPOCH + 10),
        EPOCH + 10
    );
}

#[test]
fn a_steady_wall_clock_is_followed_exactly() {
    let mut clock = LeaseClock::default();
    for mono in (0..10_000).step_by(7) {
        assert_eq!(clock.stamp(EPOCH + mono, ms(mono), 0), EPOCH + mono);
    }
}

#[test]
fn a_forward_jump_is_ignored_until_the_wall_clock_comes_back() {
    let mut clock = LeaseClock::default();
    assert_eq!(run(&mut clock, 0, 1_000, 10, 0), EPOCH + 1_000);
    // An hour ahead: lease time goes on with the monotonic clock.
    assert_eq!(run(&mut clock, 1_000, 5_000, 10, HOUR), EPOCH + 6_000);
    // Corrected: followed again at once, lease time never having left it.
    assert_eq!(run(&mut clock, 6_000, 1_000, 10, 0), EPOCH + 7_000);
}

#[test]
fn a_backward_jump_neither_freezes_nor_rewinds_lease_time() {
    let mut clock = LeaseClock::default();
    run(&mut clock, 0, 1_000, 10, 0);
    assert_eq!(run(&mut clock, 1_000, 5_000, 10, -HOUR), EPOCH + 6_000);
    let mut previous = 0;
    for mono in (6_000..7_000).step_by(10) {
        let now = clock.stamp(EPOCH + mono - 3_600_000, ms(mono), previous);
        assert_eq!(now, EPOCH + mono);
        previous = now;
    }
}

#[test]
fn a_small_step_is_followed_at_the_slew_rate() {
    let mut clock = LeaseClock::default();
    run(&mut clock, 0, 1_000, 10, 0);
    // Half a second ahead: within the jump threshold, so followed, at most 1/SLEW a step.
    let now = clock.stamp(EPOCH + 1_100 + 500, ms(1_100), 0);
    assert_eq!(now, EPOCH + 1_100 + 100 / SLEW);
    // After 500 * SLEW ms it has caught up.
    let now = run(&mut clock, 1_100, 500 * SLEW, 10, 500);
    assert_eq!(now, EPOCH + 1_100 + 500 * SLEW + 500);
    // And a step back the same way.
    let now = run(&mut clock, 1_100 + 500 * SLEW, 500 * SLEW, 10, 0);
    assert_eq!(now, EPOCH + 1_100 + 1_000 * SLEW);
}

#[test]
fn lease_time_is_never_behind_the_table() {
    let mut clock = LeaseClock::default();
    clock.stamp(EPOCH, ms(0), 0);
    // Another leader's stamp, ahead of this node's clock.
    assert_eq!(clock.read(EPOCH + 100, ms(100), EPOCH + 400), EPOCH + 400);
    // Lease time goes on from there.
    assert_eq!(clock.read(EPOCH + 200, ms(200), EPOCH + 400), EPOCH + 490);
}

#[test]
fn a_node_started_with_a_wrong_clock_resyncs_when_the_cluster_agrees_with_its_corrected_wall() {
    let mut clock = LeaseClock::default();
    // Started an hour ahead, then corrected: on its own the node cannot tell which was right.
    clock.read(EPOCH + 3_600_000, ms(0), EPOCH - 10);
    assert_eq!(
        clock.read(EPOCH + 1_000, ms(1_000), EPOCH - 10),
        EPOCH + 3_601_000
    );
    // A new stamp of the leader, which the corrected wall clock agrees with.
    assert_eq!(
        clock.read(EPOCH + 2_000, ms(2_000), EPOCH + 1_990),
        EPOCH + 2_000
    );
    assert_eq!(
        clock.read(EPOCH + 3_000, ms(3_000), EPOCH + 1_990),
        EPOCH + 3_000
    );
}

#[test]
fn only_another_leaders_stamps_resync_a_clock() {
    let (mut leader, mut follower) = (LeaseClock::default(), LeaseClock::default());
    leader.stamp(EPOCH, ms(0), 0);
    follower.read(EPOCH, ms(0), 0);
    let applied = leader.stamp(EPOCH + 990, ms(990), EPOCH);
    // Two seconds later both wall clocks say 1.5 s: a step back of half a second past the stamp
    // just applied, so within the threshold of it but beyond the threshold of lease time.
    let wall = EPOCH + 1_500;
    // The leader's own stamp is no evidence that its wall clock is right.
    assert_eq!(leader.stamp(wall, ms(3_000), applied), EPOCH + 3_000);
    // Another node's stamp is: the follower takes its wall clock.
    assert_eq!(follower.read(wall, ms(3_000), applied), wall);
}

#[test]
fn extreme_readings_saturate_instead_of_panicking() {
    let mut clock = LeaseClock::default();
    assert_eq!(
        clock.read(u64::MAX, Duration::MAX, u64::MAX),
        u64::MAX / 1_000
    );
    clock.read(0, Duration::ZERO, 0);
    // A monotonic clock that went back counts as no time passing.
    let mut clock = LeaseClock::default();
    clock.read(EPOCH, ms(1_000), 0);
    assert_eq!(clock.read(EPOCH + 500, ms(400), 0), EPOCH);
}

/// A change of one node's wall clock: none, a small drift, or a jump of up to two hours.
fn offset() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => Just(0i64),
        1 => -(JUMP_MS as i64)..=(JUMP_MS as i64),
        3 => (2 * JUMP_MS as i64..2 * HOUR).prop_map(|o| o),
        3 => (2 * JUMP_MS as i64..2 * HOUR).prop_map(|o| -o),
    ]
}

proptest! {
    /// Between two stamps of a leader, lease time moves with the monotonic clock within the slew,
    /// whatever its wall clock does.
    #[test]
    fn stamps_move_with_the_monotonic_clock_within_the_slew(
        steps in prop::collection::vec((0..3_000u64, offset()), 1..100),
    ) {
        let mut clock = LeaseClock::default();
        let mut mono = 0u64;
        let mut stamped = clock.stamp(EPOCH, ms(0), 0);
        // The table applies each stamp before the next is taken, or one behind.
        let mut applied = 0;
        for (n, (dt, offset)) in steps.into_iter().enumerate() {
            mono += dt;
            let wall = (EPOCH + mono).saturating_add_signed(offset);
            let now = clock.stamp(wall, ms(mono), applied);
            prop_assert!(now >= stamped, "stamp went back from {} to {}", stamped, now);
            let (low, high) = (dt - dt / SLEW, dt + dt.div_ceil(SLEW));
            prop_assert!(
                (low.saturating_sub(1)..=high + 1).contains(&(now - stamped)),
                "stamp moved {} ms in {} ms", now - stamped, dt
            );
            applied = if n % 2 == 0 { now } else { stamped };
            stamped = now;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A follower's wall clock jumps about for up to an hour while the leader's stamps arrive:
    /// the follower's lease time stays with the cluster's, so it stamps right when it comes to lead.
    #[test]
    fn a_follower_keeps_the_clusters_time_whatever_its_wall_clock_does(
        leader_skew in -50i64..=50,
        steps in prop::collection::vec((100..=2_000u64, offset()), 1..1_000),
    ) {
        let mut clock = LeaseClock::default();
        let mut real = EPOCH;
        clock.read(real, ms(0), 0);
        for (dt, offset) in steps {
            // The leader's latest stamp, applied here as the step begins.
            let applied = real.saturating_add_signed(leader_skew);
            real += dt;
            let now = clock.read(real.saturating_add_signed(offset), ms(real - EPOCH), applied);
            prop_assert!(now >= applied);
            prop_assert!(
                now <= real + JUMP_MS + 50,
                "lease time {} ms ahead of the cluster's", now - real
            );
        }
    }
}

const NODES: usize = 3;
/// The node whose wall clock jumps; the others are only a few ms apart.
const FAULTY: usize = 0;
/// Longest real time between two steps of the model.
const MAX_STEP_MS: u64 = 300;

#[derive(Clone, Debug)]
enum Event {
    None,
    /// The faulty node's wall clock is this far off from now on.
    Jump(i64),
    /// Leadership moves to this node.
    Elect(usize),
    /// A healthy node restarts: its clock starts over from its wall clock.
    Restart(usize),
    /// This holder stops renewing, as a session on a dead node does.
    Die(usize),
}

fn event(holders: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::None),
        2 => offset().prop_map(Event::Jump),
        2 => (0..NODES).prop_map(Event::Elect),
        1 => (1..NODES).prop_map(Event::Restart),
        1 => (0..holders).prop_map(Event::Die),
    ]
}

#[derive(Clone, Debug)]
struct Scenario {
    /// Each node's wall clock skew, in ms: NTP keeps healthy clocks this close.
    skews: [i64; NODES],
    /// Each node's monotonic origin, which is arbitrary.
    origins: [u64; NODES],
    ttls: Vec<u64>,
    steps: Vec<(u64, Event)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    // Well above the threshold: two healthy leaders' clocks may differ by up to it.
    let ttls = prop::collection::vec(5_000..30_000u64, 1..5);
    (
        prop::array::uniform3(-50i64..=50),
        prop::array::uniform3(0..1_000_000u64),
        ttls,
    )
        .prop_flat_map(|(skews, origins, ttls)| {
            let holders = ttls.len();
            let steps = prop::collection::vec((10..=MAX_STEP_MS, event(holders)), 1..400);
            (Just(skews), Just(origins), Just(ttls), steps)
        })
        .prop_map(|(skews, origins, ttls, steps)| Scenario {
            skews,
            origins,
            ttls,
            steps,
        })
}

/// Three nodes with their own clocks around one lease table (replication to followers one step
/// behind), holders renewing every third of their TTL as sessions do, and the leader sweeping.
struct Cluster {
    real: u64,
    skews: [i64; NODES],
    origins: [u64; NODES],
    offset: i64,
    clocks: [LeaseClock; NODES],
    leader: usize,
    table: LeaseTable,
    index: u64,
    /// The table's clock as followers have it.
    replicated: Millis,
}

impl Cluster {
    fn wall(&self, node: usize) -> Millis {
        let wall = self.real.saturating_add_signed(self.skews[node]);
        if node == FAULTY {
            wall.saturating_add_signed(self.offset)
        } else {
            wall
        }
    }

    fn mono(&self, node: usize) -> Duration {
        ms(self.real - EPOCH + self.origins[node])
    }

    /// Every node reads its clock, as the sweeper does each tick; the leader sweeps if due.
    fn tick(&mut self) {
        for node in 0..NODES {
            let applied = if node == self.leader {
                self.table.clock()
            } else {
                self.replicated
            };
            let now = self.clocks[node].read(self.wall(node), self.mono(node), applied);
            if node == self.leader && self.table.has_expired_at(now) {
                self.propose(LeaseOp::ExpireSweep);
            }
        }
        self.replicated = self.table.clock();
    }

    fn propose(&mut self, op: LeaseOp) -> LeaseOutcome {
        let node = self.leader;
        let stamped = self.clocks[node].stamp(self.wall(node), self.mono(node), self.table.clock());
        self.index += 1;
        self.table.apply(self.index, stamped, &op)
    }
}

proptest! {
    /// One node's wall clock jumps back and forth by up to two hours while leadership moves and
    /// healthy nodes restart: no live lease expires, and a dead holder's lease ends within its TTL
    /// stretched by the slew.
    #[test]
    fn one_nodes_clock_jumps_neither_expire_live_leases_nor_keep_dead_ones(s in scenario()) {
        let mut cluster = Cluster {
            real: EPOCH,
            skews: s.skews,
            origins: s.origins,
            offset: 0,
            clocks: [LeaseClock::default(); NODES],
            leader: 1,
            table: LeaseTable::default(),
            index: 0,
            replicated: 0,
        };
        cluster.tick();
        let mut tokens = Vec::new();
        for (i, ttl) in s.ttls.iter().enumerate() {
            let op = LeaseOp::Acquire(AcquireRequest {
                session: format!("s{i}"),
                tenant: format!("t{i}"),
                user: format!("u{i}"),
                device: format!("d{i}"),
                node: 1,
                ttl_ms: *ttl,
                session_key: None,
            });
            let LeaseOutcome::Granted(lease) = cluster.propose(op) else {
                panic!("the first acquire of a device is granted");
            };
            tokens.push(lease.token);
        }
        let mut renewed = vec![EPOCH; s.ttls.len()];
        let mut alive = vec![true; s.ttls.len()];
        for (dt, event) in s.steps {
            cluster.real += dt;
            match event {
                Event::None => {}
                Event::Jump(offset) => cluster.offset = offset,
                Event::Elect(node) => cluster.leader = node,
                Event::Restart(node) => cluster.clocks[node] = LeaseClock::default(),
                Event::Die(holder) => alive[holder] = false,
            }
            cluster.tick();
            for (h, ttl) in s.ttls.iter().enumerate() {
                let session = format!("s{h}");
                let tenant = format!("t{h}");
                let held = cluster.table.get(&tenant, &session).is_some();
                if alive[h] {
                    prop_assert!(held, "live lease {} expired at {} ms", h, cluster.real - EPOCH);
                    if cluster.real - renewed[h] >= ttl / 3 {
                        let op = LeaseOp::Renew { tenant, session, token: tokens[h] };
                        let outcome = cluster.propose(op);
                        prop_assert!(matches!(outcome, LeaseOutcome::Renewed(_)), "{:?}", outcome);
                        renewed[h] = cluster.real;
                    }
                } else {
                    // Stretched by the slew, the skews and a step each for the renewal and the sweep.
                    let bound = ttl + ttl / (SLEW - 1) + 200 + 2 * MAX_STEP_MS;
                    prop_assert!(
                        !held || cluster.real - renewed[h] <= bound,
                        "dead lease {} held {} ms after its last renewal (ttl {})",
                        h, cluster.real - renewed[h], ttl
                    );
                }
            }
        }
    }
}
