//! Acknowledged leases survive restarts from the redb files, and a node that missed many entries
//! catches up through a snapshot.

mod common;

use cluster::lease::{Lease, TenantLimits};
use common::{TestCluster, WAIT, acquire_request, sorted};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_lease_survives_a_full_restart() {
    // A low snapshot threshold, so the restart reads a snapshot and the log after it.
    let mut cluster = TestCluster::start(3, |c| {
        c.snapshot_every = 20;
        c.keep_after_snapshot = 5;
    })
    .await;
    for tenant in ["demo", "acme"] {
        let limits = TenantLimits {
            max_sessions_per_tenant: 100,
            max_sessions_per_user: 1,
        };
        cluster
            .any_service()
            .set_tenant_limits(tenant, limits)
            .await
            .unwrap();
    }
    let mut acknowledged: Vec<Lease> = Vec::new();
    for i in 0..30 {
        let service = cluster.service(i % 3 + 1);
        let tenant = if i % 2 == 0 { "demo" } else { "acme" };
        let lease = service
            .acquire(acquire_request(
                tenant,
                &format!("user-{i}"),
                &format!("dev-{i}"),
                &format!("s{i}"),
                600_000,
            ))
            .await
            .unwrap()
            .lease;
        if i % 5 == 0 {
            service
                .release(tenant, &lease.session, lease.token)
                .await
                .unwrap();
        } else {
            acknowledged.push(lease);
        }
    }

    cluster.shutdown_all().await;
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.wait_for_leader().await;

    for id in 1..=3 {
        let leases = sorted(cluster.service(id).list_all().await.unwrap());
        assert_eq!(leases, acknowledged, "node {id} after restart");
    }
    // The restarted cluster goes on granting, with tokens above every old one.
    let next = cluster
        .service(2)
        .acquire(acquire_request(
            "demo", "user-new", "dev-new", "s-new", 600_000,
        ))
        .await
        .unwrap()
        .lease;
    assert!(acknowledged.iter().all(|l| l.token < next.token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_was_down_catches_up_through_a_snapshot() {
    let mut cluster = TestCluster::start(3, |c| {
        c.snapshot_every = 50;
        c.keep_after_snapshot = 10;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    let lagging_last_log = cluster.nodes[&lagging]
        .lease_service()
        .metrics()
        .borrow()
        .last_log_index
        .unwrap_or(0);
    cluster.kill(lagging).await;

    // Well past the snapshot threshold while the node is down.
    let service = cluster.service(leader);
    let limits = TenantLimits {
        max_sessions_per_tenant: 100,
        max_sessions_per_user: 1,
    };
    service.set_tenant_limits("demo", limits).await.unwrap();
    for i in 0..150 {
        let lease = service
            .acquire(acquire_request(
                "demo",
                &format!("user-{i}"),
                &format!("dev-{i}"),
                &format!("s{i}"),
                600_000,
            ))
            .await
            .unwrap()
            .lease;
        if i % 3 != 0 {
            service
                .release("demo", &lease.session, lease.token)
                .await
                .unwrap();
        }
    }
    // The leader purges after it builds a snapshot, in the background: wait for it.
    let purged = testkit::wait_until(WAIT, || {
        let purged = service
            .metrics()
            .borrow()
            .purged
            .map(|p| p.index)
            .unwrap_or(0);
        async move { purged > lagging_last_log }
    })
    .await;
    assert!(
        purged,
        "the leader did not purge what the lagging node needs within {WAIT:?}"
    );

    cluster.restart(lagging).await;
    let target = service.metrics().borrow().last_applied.unwrap().index;
    let node = cluster.nodes[&lagging].lease_service();
    let caught_up = testkit::wait_until(WAIT, || {
        let applied = node
            .metrics()
            .borrow()
            .last_applied
            .map(|l| l.index)
            .unwrap_or(0);
        async move { applied >= target }
    })
    .await;
    assert!(caught_up, "node {lagging} did not catch up");
    let snapshot = node
        .metrics()
        .borrow()
        .snapshot
        .map(|s| s.index)
        .unwrap_or(0);
    assert!(
        snapshot > lagging_last_log,
        "node {lagging} caught up without installing a snapshot"
    );

    // Its own applied state, read locally, is the leader's.
    let local = sorted(
        cluster.nodes[&lagging]
            .local_state()
            .with_table(|t| t.all().cloned().collect())
            .await,
    );
    assert_eq!(local, sorted(service.list_all().await.unwrap()));
    assert_eq!(local.len(), 50);
}
