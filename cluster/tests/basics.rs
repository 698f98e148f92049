//! A three-node cluster over loopback grants, refuses, renews, releases and expires leases.

mod common;

use std::time::Duration;

use cluster::ClusterError;
use cluster::lease::{Invariant, LeaseError, TenantLimits};
use common::{TestCluster, WAIT, acquire_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_granted_and_refused_through_any_node() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let (s1, s2, s3) = (cluster.service(1), cluster.service(2), cluster.service(3));

    let lease = s1
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s1", 60_000))
        .await
        .unwrap()
        .lease;
    assert!(lease.token > 0);

    // Another analyst on another node is refused, and told who holds the device.
    let err = s2
        .acquire(acquire_request("demo", "analyst-b", "web-07", "s2", 60_000))
        .await
        .unwrap_err();
    let ClusterError::Refused(refusal) = &err else {
        panic!("expected a refusal, got {err}")
    };
    assert_eq!(refusal.invariant, Invariant::OneSessionPerDevice);
    assert_eq!(refusal.holders[0].user, "analyst-a");
    assert_eq!(refusal.holders[0].session, "s1");
    let message = err.to_string();
    assert!(
        message.contains("device web-07 is in a session held by analyst-a"),
        "{message}"
    );

    // The same analyst cannot open a second session (per-user limit 1).
    let err = s3
        .acquire(acquire_request("demo", "analyst-a", "db-01", "s3", 60_000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Refused(r) if r.invariant == Invariant::SessionsPerUser),
        "{err}"
    );

    // Tenant limit 2: the third session in the tenant is refused.
    s2.set_tenant_limits(
        "demo",
        TenantLimits {
            max_sessions_per_tenant: 2,
            max_sessions_per_user: 1,
        },
    )
    .await
    .unwrap();
    s2.acquire(acquire_request("demo", "analyst-b", "db-01", "s4", 60_000))
        .await
        .unwrap();
    let err = s3
        .acquire(acquire_request("demo", "analyst-c", "db-02", "s5", 60_000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Refused(r) if r.invariant == Invariant::SessionsPerTenant),
        "{err}"
    );

    // Another tenant is not affected, and its device ids are its own.
    s3.acquire(acquire_request("acme", "analyst-a", "web-07", "s6", 60_000))
        .await
        .unwrap();

    // Releasing frees the device at once, for a new grant with a higher token.
    s3.release("demo", "s1", lease.token).await.unwrap();
    let again = s1
        .acquire(acquire_request("demo", "analyst-c", "web-07", "s7", 60_000))
        .await
        .unwrap()
        .lease;
    assert!(again.token > lease.token);

    // Reads are linearizable from every node.
    for service in [&s1, &s2, &s3] {
        assert_eq!(
            service
                .by_device("demo", "web-07")
                .await
                .unwrap()
                .unwrap()
                .session,
            "s7"
        );
        assert_eq!(service.list("demo").await.unwrap().len(), 2);
        assert!(
            service.get("acme", "s1").await.unwrap().is_none(),
            "a session is not visible from another tenant"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_typed_errors_and_change_nothing() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let service = cluster.service(2);
    let lease = service
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s1", 60_000))
        .await
        .unwrap()
        .lease;
    let before = service.list_all().await.unwrap();

    let unknown = service.renew("demo", "nope", 1).await.unwrap_err();
    assert!(
        matches!(
            unknown,
            ClusterError::Rejected(LeaseError::UnknownSession { .. })
        ),
        "{unknown}"
    );
    let wrong_token = service
        .release("demo", "s1", lease.token + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            wrong_token,
            ClusterError::Rejected(LeaseError::WrongToken { .. })
        ),
        "{wrong_token}"
    );
    let other_tenant = service
        .release("acme", "s1", lease.token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            other_tenant,
            ClusterError::Rejected(LeaseError::UnknownSession { .. })
        ),
        "{other_tenant}"
    );
    for ttl in [0, u64::MAX] {
        let err = service
            .acquire(acquire_request("demo", "analyst-b", "db", "s2", ttl))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClusterError::Rejected(LeaseError::Invalid { field, .. }) if field == "ttl_ms"),
            "{err}"
        );
    }
    let err = service
        .acquire(acquire_request("demo", "", "db", "s2", 1000))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Rejected(LeaseError::Invalid { field, .. }) if field == "user"),
        "{err}"
    );
    let err = service
        .set_tenant_limits(
            "demo",
            TenantLimits {
                max_sessions_per_tenant: 0,
                max_sessions_per_user: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClusterError::Rejected(LeaseError::Invalid { .. })),
        "{err}"
    );

    assert_eq!(service.list_all().await.unwrap(), before);
    assert_eq!(
        service.limits("demo").await.unwrap(),
        TenantLimits::default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_not_renewed_expires_and_the_device_is_free_again() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let service = cluster.service(1);

    // A renewed lease outlives its TTL several times over.
    let kept = service
        .acquire(acquire_request("demo", "analyst-b", "db-01", "kept", 1_500))
        .await
        .unwrap()
        .lease;
    let stale = service
        .acquire(acquire_request(
            "demo",
            "analyst-a",
            "web-07",
            "stale",
            1_000,
        ))
        .await
        .unwrap()
        .lease;
    for _ in 0..8 {
        service.renew("demo", "kept", kept.token).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(service.get("demo", "kept").await.unwrap().is_some());

    // The one that was not renewed is gone, by the leader's stamped time, on every node.
    let expired = testkit::wait_until(WAIT, || async {
        service.by_device("demo", "web-07").await.unwrap().is_none()
    })
    .await;
    assert!(expired, "lease did not expire");
    let renew = service
        .renew("demo", "stale", stale.token)
        .await
        .unwrap_err();
    assert!(
        matches!(
            renew,
            ClusterError::Rejected(LeaseError::UnknownSession { .. })
        ),
        "{renew}"
    );

    let next = cluster
        .service(3)
        .acquire(acquire_request(
            "demo",
            "analyst-c",
            "web-07",
            "next",
            60_000,
        ))
        .await
        .unwrap()
        .lease;
    assert!(next.token > stale.token);
}
