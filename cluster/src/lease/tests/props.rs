//! Property tests: random op sequences checked step by step against the product's invariants and
//! against the reference model; arbitrary malformed input checked to change nothing.

use std::collections::{BTreeMap, BTreeSet};

use grants::PublicKey;
use proptest::prelude::*;

use super::model::Model;
use crate::lease::{
    AcquireRequest, AdoptRequest, Invariant, Lease, LeaseError, LeaseOp, LeaseOutcome, LeaseQuery,
    LeaseTable, MAX_TTL_MS, Millis, QueryAnswer, Takeover, TenantLimits, validate,
};

const TENANTS: usize = 3;
const USERS: usize = 4;
const DEVICES: usize = 5;

/// Which session an op names: a fresh id, or (modulo their number) one of the live leases.
#[derive(Clone, Copy, Debug)]
enum Pick {
    Fresh,
    Live(usize),
}

#[derive(Clone, Debug)]
enum Action {
    Acquire {
        session: Pick,
        /// With a live session: repeat its lease's request as a retrying client does, exactly
        /// (0) or with one field changed (1 to 5).
        retry: Option<u8>,
        tenant: usize,
        user: usize,
        device: usize,
        node: u64,
        ttl_ms: u64,
    },
    Renew {
        target: Pick,
        other_tenant: bool,
        stale_token: bool,
    },
    Release {
        target: Pick,
        other_tenant: bool,
        stale_token: bool,
    },
    Sweep,
    NodeAlive {
        node: u64,
        ttl_ms: u64,
    },
    Adopt {
        target: Pick,
        other_tenant: bool,
        stale_token: bool,
        node: u64,
        handover: bool,
    },
    Limits {
        tenant: usize,
        per_tenant: u32,
        per_user: u32,
    },
}

#[derive(Clone, Debug)]
struct Step {
    /// Stamped times may go backwards, as after a change to a leader with a slower clock.
    dt: i64,
    /// Log indexes may skip: blank and membership entries take indexes too.
    gap: u64,
    action: Action,
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![1 => Just(Pick::Fresh), 3 => any::<usize>().prop_map(Pick::Live)]
}

fn action() -> impl Strategy<Value = Action> {
    let target = || {
        (
            pick(),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
        )
    };
    prop_oneof![
        6 => (
            prop_oneof![4 => Just(Pick::Fresh), 1 => any::<usize>().prop_map(Pick::Live)],
            prop_oneof![1 => Just(None), 1 => Just(Some(0)), 1 => (1..=6u8).prop_map(Some)],
            0..TENANTS,
            0..USERS,
            0..DEVICES,
            0..2u64,
            prop_oneof![10 => 1..600u64, 1 => Just(MAX_TTL_MS)],
        )
            .prop_map(|(session, retry, tenant, user, device, node, ttl_ms)| {
                Action::Acquire { session, retry, tenant, user, device, node, ttl_ms }
            }),
        2 => target().prop_map(|(target, other_tenant, stale_token)| {
            Action::Renew { target, other_tenant, stale_token }
        }),
        2 => target().prop_map(|(target, other_tenant, stale_token)| {
            Action::Release { target, other_tenant, stale_token }
        }),
        1 => Just(Action::Sweep),
        2 => (0..3u64, 1..600u64).prop_map(|(node, ttl_ms)| Action::NodeAlive { node, ttl_ms }),
        2 => (target(), 0..3u64, any::<bool>()).prop_map(
            |((target, other_tenant, stale_token), node, handover)| {
                Action::Adopt { target, other_tenant, stale_token, node, handover }
            },
        ),
        1 => (0..TENANTS, 1..=6u32, 1..=3u32).prop_map(|(tenant, per_tenant, per_user)| {
            Action::Limits { tenant, per_tenant, per_user }
        }),
    ]
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step =
        (-100i64..300, 0..3u64, action()).prop_map(|(dt, gap, action)| Step { dt, gap, action });
    prop::collection::vec(step, 1..200)
}

fn tenant(i: usize) -> String {
    format!("t{i}")
}

/// Turns a generated step into an op against the current leases, so ops name real sessions and
/// tokens often enough to exercise renewals, releases and retries.
fn to_op(action: &Action, live: &[Lease], fresh: &mut u64) -> LeaseOp {
    let mut fresh_id = || {
        *fresh += 1;
        format!("s{fresh}")
    };
    let chosen = |p: Pick| match p {
        Pick::Live(i) if !live.is_empty() => Some(&live[i % live.len()]),
        _ => None,
    };
    let named = |target: Pick, other_tenant: bool, stale_token: bool, fresh_id: String| {
        let (tenant_name, session, token) = match chosen(target) {
            Some(l) => (l.tenant.clone(), l.session.clone(), l.token),
            None => (tenant(0), fresh_id, 1),
        };
        let tenant_name = if other_tenant {
            format!("{tenant_name}x")
        } else {
            tenant_name
        };
        let token = if stale_token { token + 1 } else { token };
        (tenant_name, session, token)
    };
    match action {
        Action::Acquire {
            session,
            retry,
            tenant: t,
            user,
            device,
            node,
            ttl_ms,
        } => match chosen(*session) {
            Some(l) if retry.is_some() => {
                let mut req = AcquireRequest {
                    session: l.session.clone(),
                    tenant: l.tenant.clone(),
                    user: l.user.clone(),
                    device: l.device.clone(),
                    node: l.node,
                    ttl_ms: l.ttl_ms,
                    session_key: l.session_key,
                };
                match retry {
                    Some(1) => req.node += 1,
                    Some(2) => req.ttl_ms += 1,
                    Some(3) => req.device.push('x'),
                    Some(4) => req.user.push('x'),
                    Some(5) => req.tenant.push('x'),
                    Some(6) => req.session_key = PublicKey::from_bytes(&[6; 32]).ok(),
                    _ => {}
                }
                LeaseOp::Acquire(req)
            }
            existing => LeaseOp::Acquire(AcquireRequest {
                session: existing.map_or_else(fresh_id, |l| l.session.clone()),
                tenant: tenant(*t),
                user: format!("u{user}"),
                device: format!("d{device}"),
                node: *node,
                ttl_ms: *ttl_ms,
                session_key: None,
            }),
        },
        Action::Renew {
            target,
            other_tenant,
            stale_token,
        } => {
            let (tenant, session, token) = named(*target, *other_tenant, *stale_token, fresh_id());
            LeaseOp::Renew {
                tenant,
                session,
                token,
            }
        }
        Action::Release {
            target,
            other_tenant,
            stale_token,
        } => {
            let (tenant, session, token) = named(*target, *other_tenant, *stale_token, fresh_id());
            LeaseOp::Release {
                tenant,
                session,
                token,
            }
        }
        Action::Sweep => LeaseOp::ExpireSweep,
        Action::NodeAlive { node, ttl_ms } => LeaseOp::NodeAlive {
            node: *node,
            ttl_ms: *ttl_ms,
        },
        Action::Adopt {
            target,
            other_tenant,
            stale_token,
            node,
            handover,
        } => {
            let (tenant, session, token) = named(*target, *other_tenant, *stale_token, fresh_id());
            LeaseOp::Adopt(AdoptRequest {
                tenant,
                session,
                token,
                node: *node,
                session_key: PublicKey::from_bytes(&[7; 32]).ok(),
                reason: if *handover {
                    Takeover::Handover
                } else {
                    Takeover::HolderGone
                },
            })
        }
        Action::Limits {
            tenant: t,
            per_tenant,
            per_user,
        } => LeaseOp::SetTenantLimits {
            tenant: tenant(*t),
            limits: TenantLimits {
                max_sessions_per_tenant: *per_tenant,
                max_sessions_per_user: *per_user,
            },
        },
    }
}

fn sessions(leases: &[Lease]) -> BTreeSet<&str> {
    leases.iter().map(|l| l.session.as_str()).collect()
}

/// Runs a sequence, checking the table against the model and the invariants after every step.
fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut table = LeaseTable::default();
    let mut model = Model::default();
    let (mut index, mut stamped, mut fresh) = (0u64, 1_000i64, 0u64);
    let mut last_grant = 0u64;
    // Tenants whose limits were ever lowered may hold more than their limits allow.
    let mut lowered: BTreeSet<String> = BTreeSet::new();
    for (n, step) in steps.iter().enumerate() {
        index += 1 + step.gap;
        stamped = (stamped + step.dt).max(0);
        let stamped_at = stamped as Millis;
        let before: Vec<Lease> = table.all().cloned().collect();
        let op = to_op(&step.action, &before, &mut fresh);
        if let LeaseOp::SetTenantLimits { tenant, limits } = &op {
            let old = table.limits(tenant);
            if limits.max_sessions_per_tenant < old.max_sessions_per_tenant
                || limits.max_sessions_per_user < old.max_sessions_per_user
            {
                lowered.insert(tenant.clone());
            }
        }

        let outcome = table.apply(index, stamped_at, &op);
        prop_assert_eq!(
            &outcome,
            &model.apply(index, stamped_at, &op),
            "op {:?}",
            op
        );
        let after: Vec<Lease> = table.all().cloned().collect();
        prop_assert_eq!(&after, &model.sorted());
        prop_assert_eq!(table.clock(), model.clock);

        let now = table.clock();
        // Only a malformed op (a retry tweaked past the TTL cap) leaves the clock behind.
        prop_assert!(now >= stamped_at || validate(&op).is_err());
        let swept: Vec<&Lease> = before.iter().filter(|l| l.expires_at <= now).collect();
        prop_assert!(
            after.iter().all(|l| l.expires_at > now),
            "live lease expired"
        );
        prop_assert!(!table.has_expired_at(now));
        check_outcome(&outcome, index, &before, &after, &swept, &mut last_grant)?;
        if let (LeaseOutcome::Refused(r), LeaseOp::Acquire(req)) = (&outcome, &op) {
            check_refusal(r, req, &table)?;
        }
        if let LeaseOutcome::Granted(l) = &outcome
            && l.token == index
        {
            // Even over a lowered limit, no new grant may push usage past it.
            let limits = table.limits(&l.tenant);
            let user = table.by_user(&l.tenant, &l.user).len() as u64;
            let tenant = table.by_tenant(&l.tenant).len() as u64;
            prop_assert!(user <= u64::from(limits.max_sessions_per_user));
            prop_assert!(tenant <= u64::from(limits.max_sessions_per_tenant));
        }
        check_invariants(&table, &lowered)?;
        if n % 16 == 0 || n + 1 == steps.len() {
            let json = serde_json::to_string(&table).unwrap();
            prop_assert_eq!(&serde_json::from_str::<LeaseTable>(&json).unwrap(), &table);
        }
    }
    Ok(())
}

fn check_outcome(
    outcome: &LeaseOutcome,
    index: u64,
    before: &[Lease],
    after: &[Lease],
    swept: &[&Lease],
    last_grant: &mut u64,
) -> Result<(), TestCaseError> {
    let mut expected: BTreeSet<&str> = sessions(before);
    for l in swept {
        expected.remove(l.session.as_str());
    }
    match outcome {
        LeaseOutcome::Granted(l) if l.token == index => {
            prop_assert!(l.token > *last_grant, "tokens must strictly increase");
            *last_grant = l.token;
            expected.insert(&l.session);
        }
        LeaseOutcome::Granted(l) => {
            prop_assert!(before.contains(l), "a retry returns the existing lease");
        }
        LeaseOutcome::Adopted(l) => {
            prop_assert!(
                l.token == index && l.token > *last_grant,
                "an adoption takes a new, higher token"
            );
            *last_grant = l.token;
            let old = before.iter().find(|b| b.session == l.session);
            prop_assert!(
                old.is_some_and(|o| (&o.tenant, &o.user, &o.device, o.granted_at)
                    == (&l.tenant, &l.user, &l.device, l.granted_at)),
                "an adoption keeps the session's tenant, user, device and start"
            );
        }
        LeaseOutcome::Released(l) => {
            prop_assert!(before.contains(l));
            prop_assert!(expected.remove(l.session.as_str()), "released a dead lease");
        }
        LeaseOutcome::Expired(gone) => {
            let mut want: Vec<Lease> = swept.iter().map(|l| (*l).clone()).collect();
            want.sort_by_key(|l| l.token);
            prop_assert_eq!(gone, &want);
        }
        _ => {}
    }
    prop_assert_eq!(
        sessions(after),
        expected,
        "the op removed or added the wrong leases"
    );
    Ok(())
}

fn check_refusal(
    r: &crate::lease::Refusal,
    req: &AcquireRequest,
    table: &LeaseTable,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(&r.tenant, &req.tenant);
    for h in &r.holders {
        let l = table.get(&r.tenant, &h.session);
        prop_assert!(
            l.is_some(),
            "holder {} is not a live lease of the tenant",
            h.session
        );
        let l = l.unwrap();
        prop_assert_eq!(
            (&l.user, &l.device, l.granted_at),
            (&h.user, &h.device, h.since)
        );
    }
    let count = r.holders.len() as u64;
    match r.invariant {
        Invariant::OneSessionPerDevice => {
            prop_assert_eq!(count, 1);
            prop_assert_eq!(&r.holders[0].device, &req.device);
        }
        Invariant::SessionsPerUser => {
            prop_assert!(count >= u64::from(r.limit));
            prop_assert!(r.holders.iter().all(|h| h.user == req.user));
        }
        Invariant::SessionsPerTenant => prop_assert!(count >= u64::from(r.limit)),
    }
    Ok(())
}

fn check_invariants(table: &LeaseTable, lowered: &BTreeSet<String>) -> Result<(), TestCaseError> {
    let mut devices = BTreeSet::new();
    let mut users: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    let mut tenants: BTreeMap<&str, u32> = BTreeMap::new();
    for l in table.all() {
        prop_assert!(
            devices.insert((&l.tenant, &l.device)),
            "two leases on one device"
        );
        *users.entry((&l.tenant, &l.user)).or_default() += 1;
        *tenants.entry(&l.tenant).or_default() += 1;
        prop_assert_eq!(table.by_device(&l.tenant, &l.device), Some(l));
    }
    for (&(tenant, user), &count) in &users {
        prop_assert_eq!(table.by_user(tenant, user).len() as u32, count);
        if !lowered.contains(tenant) {
            prop_assert!(count <= table.limits(tenant).max_sessions_per_user);
        }
    }
    for (&tenant, &count) in &tenants {
        let listed = table.by_tenant(tenant);
        prop_assert_eq!(listed.len() as u32, count);
        prop_assert!(listed.iter().all(|l| l.tenant == tenant));
        if !lowered.contains(tenant) {
            prop_assert!(count <= table.limits(tenant).max_sessions_per_tenant);
        }
    }
    prop_assert_eq!(
        table.query(&LeaseQuery::All),
        QueryAnswer::Leases(table.all().cloned().collect())
    );
    Ok(())
}

/// Any id string, weighted towards the ones validation must catch.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-c]{1,3}",
        "[a\\x00\\n\\x7f\\u{85}]{1,3}",
        ".{0,40}",
        "[a-z]{250,260}",
    ]
}

fn any_op() -> impl Strategy<Value = LeaseOp> {
    let edge = || {
        prop_oneof![
            Just(0u64),
            Just(MAX_TTL_MS),
            Just(MAX_TTL_MS + 1),
            any::<u64>()
        ]
    };
    let limit = || {
        prop_oneof![
            Just(0u32),
            1..4u32,
            Just(100_000),
            Just(100_001),
            any::<u32>()
        ]
    };
    prop_oneof![
        (
            id(),
            id(),
            id(),
            id(),
            any::<u64>(),
            prop_oneof![1..100u64, edge()]
        )
            .prop_map(|(session, tenant, user, device, node, ttl_ms)| {
                LeaseOp::Acquire(AcquireRequest {
                    session,
                    tenant,
                    user,
                    device,
                    node,
                    ttl_ms,
                    session_key: None,
                })
            }),
        (id(), id(), any::<u64>()).prop_map(|(tenant, session, token)| LeaseOp::Renew {
            tenant,
            session,
            token
        }),
        (id(), id(), any::<u64>()).prop_map(|(tenant, session, token)| LeaseOp::Release {
            tenant,
            session,
            token
        }),
        Just(LeaseOp::ExpireSweep),
        (id(), limit(), limit()).prop_map(|(tenant, per_tenant, per_user)| {
            LeaseOp::SetTenantLimits {
                tenant,
                limits: TenantLimits {
                    max_sessions_per_tenant: per_tenant,
                    max_sessions_per_user: per_user,
                },
            }
        }),
    ]
}

proptest! {
    #[test]
    fn random_sequences_keep_the_invariants_and_match_the_model(steps in steps()) {
        run(&steps)?;
    }

    /// Whatever the input, apply does not panic, and an op `validate` refuses changes nothing.
    #[test]
    fn malformed_ops_change_nothing(
        ops in prop::collection::vec((any::<u64>(), any::<u64>(), any_op()), 1..20),
    ) {
        let mut table = LeaseTable::default();
        for (index, stamped_at, op) in &ops {
            let before = table.clone();
            let outcome = table.apply(*index, *stamped_at, op);
            match validate(op) {
                Err(error) => {
                    prop_assert!(matches!(error, LeaseError::Invalid { .. }), "{:?}", error);
                    prop_assert_eq!(outcome, LeaseOutcome::Rejected(error));
                    prop_assert_eq!(&table, &before);
                }
                Ok(()) => {
                    let invalid = matches!(outcome, LeaseOutcome::Rejected(LeaseError::Invalid { .. }));
                    prop_assert!(!invalid, "{:?}", outcome);
                    prop_assert_eq!(table.clock(), before.clock().max(*stamped_at));
                }
            }
        }
        let json = serde_json::to_string(&table).unwrap();
        prop_assert_eq!(serde_json::from_str::<LeaseTable>(&json).unwrap(), table);
    }
}
