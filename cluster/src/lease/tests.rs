//! Tests of the lease state machine: one unit test per rule here, property tests in `props`,
//! lease time in `clock`.

mod clock;
mod model;
mod props;

use super::*;

const T: &str = "tenant-a";
const TTL: u64 = 1_000;

fn req(session: &str, tenant: &str, user: &str, device: &str) -> AcquireRequest {
    AcquireRequest {
        session: session.into(),
        tenant: tenant.into(),
        user: user.into(),
        device: device.into(),
        node: 1,
        ttl_ms: TTL,
        session_key: None,
    }
}

fn acquire(session: &str, tenant: &str, user: &str, device: &str) -> LeaseOp {
    LeaseOp::Acquire(req(session, tenant, user, device))
}

fn renew(tenant: &str, session: &str, token: u64) -> LeaseOp {
    LeaseOp::Renew {
        tenant: tenant.into(),
        session: session.into(),
        token,
    }
}

fn release(tenant: &str, session: &str, token: u64) -> LeaseOp {
    LeaseOp::Release {
        tenant: tenant.into(),
        session: session.into(),
        token,
    }
}

fn set_limits(tenant: &str, per_tenant: u32, per_user: u32) -> LeaseOp {
    LeaseOp::SetTenantLimits {
        tenant: tenant.into(),
        limits: TenantLimits {
            max_sessions_per_tenant: per_tenant,
            max_sessions_per_user: per_user,
        },
    }
}

/// A table fed with strictly increasing log indexes, as Raft does.
#[derive(Default)]
struct Log {
    table: LeaseTable,
    index: u64,
}

impl Log {
    fn at(&mut self, stamped_at: Millis, op: LeaseOp) -> LeaseOutcome {
        self.index += 1;
        self.table.apply(self.index, stamped_at, &op)
    }

    fn grant(&mut self, stamped_at: Millis, op: LeaseOp) -> Lease {
        match self.at(stamped_at, op) {
            LeaseOutcome::Granted(lease) => lease,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    fn refusal(&mut self, stamped_at: Millis, op: LeaseOp) -> Refusal {
        match self.at(stamped_at, op) {
            LeaseOutcome::Refused(refusal) => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}

fn holder(l: &Lease) -> Holder {
    Holder {
        user: l.user.clone(),
        session: l.session.clone(),
        device: l.device.clone(),
        since: l.granted_at,
    }
}

#[test]
fn grant_takes_token_from_log_index_and_times_from_stamp() {
    let mut table = LeaseTable::default();
    let outcome = table.apply(7, 100, &acquire("s1", T, "u1", "d1"));
    let lease = Lease {
        session: "s1".into(),
        tenant: T.into(),
        user: "u1".into(),
        device: "d1".into(),
        node: 1,
        token: 7,
        granted_at: 100,
        renewed_at: 100,
        ttl_ms: TTL,
        expires_at: 1_100,
        session_key: None,
    };
    assert_eq!(outcome, LeaseOutcome::Granted(lease.clone()));
    assert_eq!(table.get(T, "s1"), Some(&lease));
    assert_eq!(table.by_device(T, "d1"), Some(&lease));
    assert_eq!(table.by_user(T, "u1"), vec![&lease]);
    assert_eq!(table.by_tenant(T), vec![&lease]);
    assert_eq!(table.len(), 1);
    assert!(!table.is_empty());
}

#[test]
fn busy_device_is_refused_naming_its_holder() {
    let mut log = Log::default();
    let first = log.grant(100, acquire("s1", T, "u1", "d1"));
    let refusal = log.refusal(150, acquire("s2", T, "u2", "d1"));
    assert_eq!(
        refusal,
        Refusal {
            invariant: Invariant::OneSessionPerDevice,
            tenant: T.into(),
            limit: 1,
            holders: vec![holder(&first)],
        }
    );
}

#[test]
fn device_is_checked_before_user_and_tenant_limits() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 1, 1));
    log.grant(100, acquire("s1", T, "u1", "d1"));
    let refusal = log.refusal(100, acquire("s2", T, "u1", "d1"));
    assert_eq!(refusal.invariant, Invariant::OneSessionPerDevice);
    let refusal = log.refusal(100, acquire("s2", T, "u1", "d2"));
    assert_eq!(refusal.invariant, Invariant::SessionsPerUser);
}

#[test]
fn user_limit_refuses_with_the_users_leases() {
    let mut log = Log::default();
    // The default is one session per user.
    let first = log.grant(100, acquire("s1", T, "u1", "d1"));
    let refusal = log.refusal(100, acquire("s2", T, "u1", "d2"));
    assert_eq!(
        refusal,
        Refusal {
            invariant: Invariant::SessionsPerUser,
            tenant: T.into(),
            limit: 1,
            holders: vec![holder(&first)],
        }
    );

    log.at(100, set_limits(T, 10, 2));
    let second = log.grant(50, acquire("s0", T, "u1", "d2"));
    let refusal = log.refusal(200, acquire("s3", T, "u1", "d3"));
    assert_eq!(refusal.invariant, Invariant::SessionsPerUser);
    assert_eq!(refusal.limit, 2);
    // Same `since` (the clock did not go back to 50): ordered by session then.
    assert_eq!(refusal.holders, vec![holder(&second), holder(&first)]);
    // Other users are not limited by u1's leases.
    log.grant(200, acquire("s4", T, "u2", "d3"));
}

#[test]
fn tenant_limit_refuses_with_all_the_tenants_leases_oldest_first() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 2, 2));
    let late = log.grant(300, acquire("s1", T, "u1", "d1"));
    // Stamped earlier, but the clock does not go back: both have since 300, ordered by session.
    let early = log.grant(100, acquire("s0", T, "u2", "d2"));
    let refusal = log.refusal(400, acquire("s3", T, "u3", "d3"));
    assert_eq!(
        refusal,
        Refusal {
            invariant: Invariant::SessionsPerTenant,
            tenant: T.into(),
            limit: 2,
            holders: vec![holder(&early), holder(&late)],
        }
    );
    // Another tenant has its own count.
    log.grant(400, acquire("s3", "tenant-b", "u3", "d3"));
}

#[test]
fn release_frees_device_user_and_tenant_slots_at_once() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 1, 1));
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    log.refusal(100, acquire("s2", T, "u1", "d1"));
    assert_eq!(
        log.at(100, release(T, "s1", lease.token)),
        LeaseOutcome::Released(lease)
    );
    assert!(log.table.is_empty());
    assert_eq!(log.table.by_device(T, "d1"), None);
    log.grant(100, acquire("s2", T, "u1", "d1"));
}

#[test]
fn renew_extends_from_the_stamped_time() {
    let mut log = Log::default();
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    let renewed = match log.at(600, renew(T, "s1", lease.token)) {
        LeaseOutcome::Renewed(l) => l,
        other => panic!("expected a renewal, got {other:?}"),
    };
    assert_eq!(
        renewed,
        Lease {
            renewed_at: 600,
            expires_at: 1_600,
            ..lease.clone()
        }
    );
    assert_eq!(log.table.get(T, "s1"), Some(&renewed));
    assert!(!log.table.has_expired_at(1_100));
    assert_eq!(
        log.at(1_100, LeaseOp::ExpireSweep),
        LeaseOutcome::Expired(vec![])
    );
    assert!(log.table.has_expired_at(1_600));
    assert_eq!(
        log.at(1_600, LeaseOp::ExpireSweep),
        LeaseOutcome::Expired(vec![renewed])
    );
}

#[test]
fn expiry_is_decided_by_stamped_time_only() {
    let mut log = Log::default();
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    assert!(!log.table.has_expired_at(1_099));
    assert!(log.table.has_expired_at(1_100));
    assert_eq!(
        log.at(1_099, LeaseOp::ExpireSweep),
        LeaseOutcome::Expired(vec![])
    );
    assert_eq!(log.table.len(), 1);
    // Any op sweeps first, silently: the device is free at exactly expires_at.
    let next = log.grant(1_100, acquire("s2", T, "u1", "d1"));
    assert_eq!(log.table.all().collect::<Vec<_>>(), vec![&next]);
    assert_eq!(
        log.at(1_100, renew(T, "s1", lease.token)),
        LeaseOutcome::Rejected(LeaseError::UnknownSession {
            session: "s1".into()
        })
    );
}

#[test]
fn sweep_reports_expired_leases_by_token() {
    let mut log = Log::default();
    let mut b = log.grant(100, acquire("b", T, "u1", "d1"));
    let a = log.grant(100, acquire("a", T, "u2", "d2"));
    b = match log.at(100, renew(T, "b", b.token)) {
        LeaseOutcome::Renewed(l) => l,
        other => panic!("expected a renewal, got {other:?}"),
    };
    assert_eq!(
        log.at(5_000, LeaseOp::ExpireSweep),
        LeaseOutcome::Expired(vec![b, a])
    );
    assert!(log.table.is_empty());
}

#[test]
fn clock_never_goes_backwards() {
    let mut log = Log::default();
    log.at(1_000, LeaseOp::ExpireSweep);
    assert_eq!(log.table.clock(), 1_000);
    // A new leader with a slower clock stamps 500.
    let lease = log.grant(500, acquire("s1", T, "u1", "d1"));
    assert_eq!(log.table.clock(), 1_000);
    assert_eq!((lease.granted_at, lease.expires_at), (1_000, 2_000));
    log.at(1_999, LeaseOp::ExpireSweep);
    assert_eq!(
        log.at(0, LeaseOp::ExpireSweep),
        LeaseOutcome::Expired(vec![])
    );
    assert_eq!(log.table.clock(), 1_999);
}

#[test]
fn another_tenants_session_is_unknown() {
    let mut log = Log::default();
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    let unknown = LeaseOutcome::Rejected(LeaseError::UnknownSession {
        session: "s1".into(),
    });
    assert_eq!(log.at(100, renew("tenant-b", "s1", lease.token)), unknown);
    assert_eq!(log.at(100, release("tenant-b", "s1", lease.token)), unknown);
    assert_eq!(log.table.get("tenant-b", "s1"), None);
    assert_eq!(
        log.table.query(&LeaseQuery::Session {
            tenant: "tenant-b".into(),
            session: "s1".into()
        }),
        QueryAnswer::Leases(vec![])
    );
    assert_eq!(log.table.get(T, "s1"), Some(&lease));
    // The same answer as for a session that never existed.
    assert_eq!(
        log.at(100, renew(T, "nope", 1)),
        LeaseOutcome::Rejected(LeaseError::UnknownSession {
            session: "nope".into()
        })
    );
}

#[test]
fn devices_and_users_are_namespaced_by_tenant() {
    let mut log = Log::default();
    let a = log.grant(100, acquire("s1", T, "u1", "d1"));
    let b = log.grant(100, acquire("s2", "tenant-b", "u1", "d1"));
    assert_eq!(log.table.by_device(T, "d1"), Some(&a));
    assert_eq!(log.table.by_device("tenant-b", "d1"), Some(&b));
    assert_eq!(log.table.by_user("tenant-b", "u1"), vec![&b]);
}

#[test]
fn stale_token_is_refused_and_changes_nothing() {
    let mut log = Log::default();
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    let wrong = LeaseOutcome::Rejected(LeaseError::WrongToken {
        session: "s1".into(),
        token: lease.token + 1,
    });
    assert_eq!(log.at(200, renew(T, "s1", lease.token + 1)), wrong);
    assert_eq!(log.at(200, release(T, "s1", lease.token + 1)), wrong);
    assert_eq!(log.table.get(T, "s1"), Some(&lease));
}

#[test]
fn acquire_retry_returns_the_same_lease() {
    let mut log = Log::default();
    let lease = log.grant(100, acquire("s1", T, "u1", "d1"));
    assert_eq!(log.grant(300, acquire("s1", T, "u1", "d1")), lease);
    assert_eq!(log.table.len(), 1);

    let in_use = LeaseOutcome::Rejected(LeaseError::SessionIdInUse {
        session: "s1".into(),
    });
    let mut other_node = req("s1", T, "u1", "d1");
    other_node.node = 2;
    assert_eq!(log.at(300, LeaseOp::Acquire(other_node)), in_use);
    assert_eq!(log.at(300, acquire("s1", T, "u1", "d2")), in_use);
    assert_eq!(log.at(300, acquire("s1", "tenant-b", "u1", "d1")), in_use);
    assert_eq!(log.table.all().collect::<Vec<_>>(), vec![&lease]);
}

#[test]
fn lowering_limits_evicts_nobody_but_refuses_new_acquires() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 10, 2));
    let a = log.grant(100, acquire("s1", T, "u1", "d1"));
    let b = log.grant(100, acquire("s2", T, "u1", "d2"));
    assert_eq!(
        log.at(100, set_limits(T, 10, 1)),
        LeaseOutcome::LimitsSet {
            tenant: T.into(),
            limits: TenantLimits {
                max_sessions_per_tenant: 10,
                max_sessions_per_user: 1
            }
        }
    );
    assert_eq!(log.table.len(), 2);
    assert_eq!(
        log.refusal(100, acquire("s3", T, "u1", "d3")).invariant,
        Invariant::SessionsPerUser
    );
    log.at(100, release(T, "s1", a.token));
    log.refusal(100, acquire("s3", T, "u1", "d3"));
    log.at(100, release(T, "s2", b.token));
    log.grant(100, acquire("s3", T, "u1", "d3"));
}

#[test]
fn limits_default_until_set() {
    let mut log = Log::default();
    assert_eq!(log.table.limits(T), TenantLimits::default());
    log.at(0, set_limits(T, 3, 2));
    assert_eq!(
        log.table.query(&LeaseQuery::Limits { tenant: T.into() }),
        QueryAnswer::Limits(TenantLimits {
            max_sessions_per_tenant: 3,
            max_sessions_per_user: 2
        })
    );
    assert_eq!(log.table.limits("tenant-b"), TenantLimits::default());
}

#[test]
fn malformed_ops_are_rejected_with_the_field_and_change_nothing() {
    let long = "x".repeat(MAX_ID_LEN + 1);
    let with = |f: fn(&mut AcquireRequest)| {
        let mut r = req("s9", T, "u9", "d9");
        f(&mut r);
        LeaseOp::Acquire(r)
    };
    let cases: Vec<(LeaseOp, &str)> = vec![
        (with(|r| r.ttl_ms = 0), "ttl_ms"),
        (with(|r| r.ttl_ms = MAX_TTL_MS + 1), "ttl_ms"),
        (with(|r| r.ttl_ms = u64::MAX), "ttl_ms"),
        (with(|r| r.device = String::new()), "device"),
        (with(|r| r.user = String::new()), "user"),
        (with(|r| r.session = String::new()), "session"),
        (with(|r| r.tenant = String::new()), "tenant"),
        (with(|r| r.device = "d\n1".into()), "device"),
        (with(|r| r.user = "u\u{0}".into()), "user"),
        (acquire("s9", T, "u9", &long), "device"),
        (with(|r| r.tenant = "demo.eu".into()), "tenant"),
        (set_limits(T, 0, 1), "max_sessions_per_tenant"),
        (set_limits(T, 1, 0), "max_sessions_per_user"),
        (set_limits(T, MAX_LIMIT + 1, 1), "max_sessions_per_tenant"),
        (set_limits("", 1, 1), "tenant"),
        (renew("", "s1", 1), "tenant"),
        (renew(T, "", 1), "session"),
        (release("", "s1", 1), "tenant"),
        (release(T, "", 1), "session"),
    ];
    let mut log = Log::default();
    log.grant(100, acquire("s1", T, "u1", "d1"));
    for (op, field) in cases {
        let before = log.table.clone();
        let error = validate(&op).expect_err("op should be invalid");
        assert!(
            matches!(&error, LeaseError::Invalid { field: f, .. } if f == field),
            "{op:?} gave {error:?}"
        );
        // Stamped far in the future: a rejected op must not even advance the clock or sweep.
        assert_eq!(log.at(10_000, op), LeaseOutcome::Rejected(error));
        assert_eq!(log.table, before);
    }
}

#[test]
fn validation_accepts_the_boundaries() {
    let mut r = req("s", T, "u", &"d".repeat(MAX_ID_LEN));
    r.ttl_ms = MAX_TTL_MS;
    assert_eq!(validate(&LeaseOp::Acquire(r.clone())), Ok(()));
    r.ttl_ms = 1;
    assert_eq!(validate(&LeaseOp::Acquire(r)), Ok(()));
    assert_eq!(validate(&set_limits(T, MAX_LIMIT, 1)), Ok(()));
    assert_eq!(validate(&LeaseOp::ExpireSweep), Ok(()));
}

#[test]
fn error_messages_are_lowercase_without_trailing_period() {
    let error = validate(&set_limits(T, 0, 1)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid max_sessions_per_tenant: must be at least 1"
    );
    let error = validate(&acquire("s", T, "u", "")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("invalid device: it is empty; use 1 to 64 characters"),
        "{error}"
    );
}

#[test]
fn extreme_times_saturate_instead_of_panicking() {
    let mut log = Log::default();
    let lease = log.grant(u64::MAX - 10, acquire("s1", T, "u1", "d1"));
    assert_eq!(lease.expires_at, u64::MAX);
    assert_eq!(log.table.clock(), u64::MAX - 10);
    log.at(u64::MAX, renew(T, "s1", lease.token));
    assert_eq!(log.table.clock(), u64::MAX);
}

#[test]
fn queries_answer_from_the_indexes() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 10, 3));
    let a = log.grant(100, acquire("s1", T, "u1", "d1"));
    let b = log.grant(100, acquire("s2", T, "u1", "d2"));
    let c = log.grant(100, acquire("s3", "tenant-b", "u1", "d1"));
    let leases = |q| match log.table.query(&q) {
        QueryAnswer::Leases(l) => l,
        other => panic!("expected leases, got {other:?}"),
    };
    assert_eq!(
        leases(LeaseQuery::User {
            tenant: T.into(),
            user: "u1".into()
        }),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        leases(LeaseQuery::Device {
            tenant: "tenant-b".into(),
            device: "d1".into()
        }),
        vec![c.clone()]
    );
    assert_eq!(
        leases(LeaseQuery::Tenant { tenant: T.into() }),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(leases(LeaseQuery::All), vec![a, b, c]);
    assert_eq!(
        leases(LeaseQuery::Tenant {
            tenant: "nobody".into()
        }),
        vec![]
    );
}

#[test]
fn json_round_trip_gives_an_equal_table_with_working_indexes() {
    let mut log = Log::default();
    log.at(0, set_limits(T, 5, 2));
    log.grant(100, acquire("s1", T, "u1", "d1"));
    log.grant(200, acquire("s2", T, "u1", "d2"));
    log.grant(200, acquire("s3", "tenant-b", "u1", "d1"));
    let json = serde_json::to_string(&log.table).unwrap();
    let mut loaded: LeaseTable = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, log.table);
    assert_eq!(loaded.clock(), 200);
    let outcome = loaded.apply(99, 200, &acquire("s4", T, "u2", "d1"));
    assert!(matches!(
        outcome,
        LeaseOutcome::Refused(Refusal {
            invariant: Invariant::OneSessionPerDevice,
            ..
        })
    ));
    let empty: LeaseTable =
        serde_json::from_str(&serde_json::to_string(&LeaseTable::default()).unwrap()).unwrap();
    assert_eq!(empty, LeaseTable::default());
}

#[test]
fn corrupt_snapshot_fails_to_load() {
    let mut log = Log::default();
    log.grant(100, acquire("s1", T, "u1", "d1"));
    let mut value = serde_json::to_value(&log.table).unwrap();
    let lease = value["leases"]["s1"].clone();
    let mut twin = lease.clone();
    twin["session"] = "s2".into();
    value["leases"]["s2"] = twin;
    let error = serde_json::from_value::<LeaseTable>(value.clone()).unwrap_err();
    assert!(
        error.to_string().contains("two leases on device d1"),
        "{error}"
    );

    value["leases"]["s2"] = lease;
    let error = serde_json::from_value::<LeaseTable>(value).unwrap_err();
    assert!(error.to_string().contains("under key s2"), "{error}");
}

#[test]
fn revoking_a_device_ends_its_lease_in_the_same_entry() {
    use crate::directory::{ApiToken, DirectoryOp as Op, EnrolmentToken};
    let mut log = Log::default();
    let token = ApiToken {
        id: "t0".into(),
        tenant: "platform".into(),
        user: "root".into(),
        sha256: "a".repeat(64),
        description: String::new(),
        created_at: 1,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    };
    let ops = [
        Op::Bootstrap {
            admin: "root".into(),
            token,
            import: vec![],
        },
        Op::CreateTenant {
            id: T.into(),
            display_name: "A".into(),
        },
        Op::CreateUser {
            tenant: T.into(),
            name: "admin".into(),
            roles: vec![],
        },
        Op::CreateEnrolmentToken(EnrolmentToken {
            id: "e1".into(),
            tenant: T.into(),
            sha256: "e".repeat(64),
            description: String::new(),
            group: None,
            max_uses: 1,
            uses: 0,
            created_by: "admin".into(),
            created_at: 1,
            expires_at: 10_000,
            revoked_at: None,
        }),
        Op::Enrol {
            tenant: T.into(),
            device: "d1".into(),
            token_id: "e1".into(),
            token_sha256: "e".repeat(64),
            certificate: "c".repeat(64),
            certificate_expires_at: 10_000,
        },
    ];
    for op in ops {
        assert!(matches!(
            log.at(1, LeaseOp::Directory(op)),
            LeaseOutcome::Directory(_)
        ));
    }
    log.grant(2, acquire("s1", T, "u1", "d1"));
    log.grant(2, acquire("s2", T, "u2", "d2"));
    let revoke = Op::RevokeDevice {
        tenant: T.into(),
        device: "d1".into(),
    };
    assert!(matches!(
        log.at(3, LeaseOp::Directory(revoke)),
        LeaseOutcome::Directory(_)
    ));
    assert_eq!(log.table.by_device(T, "d1"), None);
    assert!(
        log.table.by_device(T, "d2").is_some(),
        "other devices keep theirs"
    );
}

fn adopt(session: &str, token: u64, node: u64, reason: Takeover) -> LeaseOp {
    LeaseOp::Adopt(AdoptRequest {
        tenant: T.into(),
        session: session.into(),
        token,
        node,
        session_key: None,
        reason,
    })
}

fn alive(node: u64, ttl_ms: u64) -> LeaseOp {
    LeaseOp::NodeAlive { node, ttl_ms }
}

#[test]
fn a_session_is_adopted_only_once_its_node_stopped_proving_it_is_alive() {
    let mut log = Log::default();
    log.at(0, alive(1, 300));
    let held = log.grant(100, acquire("s1", T, "u1", "d1"));
    let refused = log.at(200, adopt("s1", held.token, 2, Takeover::HolderGone));
    assert_eq!(
        refused,
        LeaseOutcome::Rejected(LeaseError::HolderAlive {
            session: "s1".into(),
            node: 1
        })
    );
    // Past node 1's liveness, but within the lease: the lease moves without lapsing.
    let LeaseOutcome::Adopted(moved) =
        log.at(300, adopt("s1", held.token, 2, Takeover::HolderGone))
    else {
        panic!("expected an adoption");
    };
    assert_eq!((moved.node, moved.token), (2, log.index));
    assert!(moved.token > held.token);
    assert_eq!(
        (moved.granted_at, moved.renewed_at, moved.expires_at),
        (100, 300, 1_300)
    );
    assert_eq!(table_device(&log, "d1"), Some("s1".into()));
    // A second adopter with the old token loses; so does the old holder renewing.
    assert!(matches!(
        log.at(310, adopt("s1", held.token, 3, Takeover::HolderGone)),
        LeaseOutcome::Rejected(LeaseError::WrongToken { .. })
    ));
    assert!(matches!(
        log.at(320, renew(T, "s1", held.token)),
        LeaseOutcome::Rejected(LeaseError::WrongToken { .. })
    ));
    // Another analyst still finds the device taken.
    assert_eq!(
        log.refusal(330, acquire("s2", T, "u2", "d1")).invariant,
        Invariant::OneSessionPerDevice
    );
}

#[test]
fn a_handover_needs_only_the_current_token_and_an_expired_lease_is_not_adopted() {
    let mut log = Log::default();
    log.at(0, alive(1, 10_000));
    let held = log.grant(100, acquire("s1", T, "u1", "d1"));
    assert!(matches!(
        log.at(200, adopt("s1", held.token, 2, Takeover::Handover)),
        LeaseOutcome::Adopted(_)
    ));
    let other = log.grant(300, acquire("s3", T, "u3", "d3"));
    assert!(matches!(
        log.at(2_000, adopt("s3", other.token, 2, Takeover::Handover)),
        LeaseOutcome::Rejected(LeaseError::UnknownSession { .. })
    ));
}

fn table_device(log: &Log, device: &str) -> Option<String> {
    log.table.by_device(T, device).map(|l| l.session.clone())
}
