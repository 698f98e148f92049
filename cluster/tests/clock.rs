//! One node's wall clock jumps by an hour, forward or back, in a live three-node cluster: no live
//! lease expires early and a dead holder's lease still ends about a TTL after its last renewal.
//! Jumps are made with the cargo feature `fault-clock` (`ClusterNode::set_wall_clock_offset`).

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::lease::{Lease, Millis};
use cluster::{ClusterError, LeaseService};
use common::{TestCluster, WAIT, acquire_request};

const HOUR_MS: i64 = 60 * 60 * 1000;

fn wall_ms() -> Millis {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

/// Renews `lease` every third of its TTL, as a session does, for `span`; no renewal may find it
/// gone. A renewal whose outcome is unknown is simply followed by the next, as a session's is.
async fn renew_for(service: LeaseService, lease: Lease, span: Duration) {
    let every = Duration::from_millis(lease.ttl_ms / 3);
    let until = Instant::now() + span;
    while Instant::now() < until {
        tokio::time::sleep(every).await;
        match service
            .renew(&lease.tenant, &lease.session, lease.token)
            .await
        {
            Ok(_) => {}
            Err(ClusterError::Rejected(error)) => panic!("a live lease was lost: {error}"),
            Err(error) => tracing::warn!(%error, "renewal failed; renewing again"),
        }
    }
}

/// How long after `since` the lease took to end; panics if it outlived `WAIT`.
async fn ended_after(service: &LeaseService, lease: &Lease, since: Instant) -> Duration {
    let gone = testkit::wait_until(WAIT, || {
        let service = service.clone();
        let (tenant, session) = (lease.tenant.clone(), lease.session.clone());
        async move { matches!(service.get(&tenant, &session).await, Ok(None)) }
    })
    .await;
    assert!(gone, "a dead holder's lease outlived {WAIT:?}");
    since.elapsed()
}

/// The lease time the cluster applied is the real time, give or take `slack_ms`.
async fn lease_time_is_real_time(cluster: &TestCluster, node: u64, slack_ms: u64) {
    let clock = cluster.nodes[&node].local_state().clock().await;
    let real = wall_ms();
    assert!(
        clock.abs_diff(real) <= slack_ms,
        "lease time is {} ms off the real time",
        i128::from(clock) - i128::from(real)
    );
}

/// A dead holder's lease lasts its TTL, stretched by the slew, plus sweeps and load.
fn dead_lease_bound(lease: &Lease) -> Duration {
    Duration::from_millis(lease.ttl_ms + lease.ttl_ms / (cluster::lease::SLEW - 1) + 2_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_jump_on_the_leader_expires_no_live_lease() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let service = cluster.service(leader);
    let lease = service
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s1", 3_000))
        .await
        .unwrap()
        .lease;

    cluster.nodes[&leader].set_wall_clock_offset(HOUR_MS);
    renew_for(service.clone(), lease.clone(), Duration::from_secs(6)).await;
    lease_time_is_real_time(&cluster, leader, 2_000).await;

    // The holder stops renewing: its lease ends about a TTL later, not an hour later.
    let stopped = Instant::now();
    let ended = ended_after(&service, &lease, stopped).await;
    assert!(ended <= dead_lease_bound(&lease), "ended after {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_jump_on_the_leader_keeps_no_dead_lease() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let service = cluster.service(leader);
    let granted = Instant::now();
    let lease = service
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s1", 2_000))
        .await
        .unwrap()
        .lease;

    // Lease time neither freezes for the hour nor goes back: the lease ends on time.
    cluster.nodes[&leader].set_wall_clock_offset(-HOUR_MS);
    let ended = ended_after(&service, &lease, granted).await;
    assert!(ended <= dead_lease_bound(&lease), "ended after {ended:?}");
    assert!(
        ended >= Duration::from_millis(lease.ttl_ms * 8 / 10),
        "ended after {ended:?}"
    );

    // And new leases are granted and renewed as before.
    let again = service
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s2", 2_000))
        .await
        .unwrap()
        .lease;
    renew_for(service, again, Duration::from_secs(3)).await;
    lease_time_is_real_time(&cluster, leader, 2_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_clock_jumped_takes_over_without_expiring_leases() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.wait_for_leader().await;
    let mut followers = (1..=3).filter(|id| *id != leader);
    let (jumped, other) = (followers.next().unwrap(), followers.next().unwrap());
    let service = cluster.service(jumped);
    // Long enough to ride out the election that follows.
    let lease = service
        .acquire(acquire_request("demo", "analyst-a", "web-07", "s1", 6_000))
        .await
        .unwrap()
        .lease;
    let renewer = tokio::spawn(renew_for(
        service.clone(),
        lease.clone(),
        Duration::from_secs(10),
    ));

    // The follower's clock jumps an hour ahead, a while before it comes to lead: the leader
    // falls silent and only the jumped follower may campaign.
    cluster.nodes[&jumped].set_wall_clock_offset(HOUR_MS);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in [leader, other] {
        cluster.nodes[&node].raft().runtime_config().elect(false);
    }
    cluster.nodes[&leader]
        .raft()
        .runtime_config()
        .heartbeat(false);
    let took_over = testkit::wait_until(WAIT, || {
        let leads = cluster
            .nodes
            .values()
            .all(|n| n.raft().metrics().borrow().current_leader == Some(jumped));
        async move { leads }
    })
    .await;
    assert!(took_over, "node {jumped} did not take over");

    renewer.await.unwrap();
    lease_time_is_real_time(&cluster, jumped, 2_000).await;
    let stopped = Instant::now();
    let ended = ended_after(&service, &lease, stopped).await;
    assert!(ended <= dead_lease_bound(&lease), "ended after {ended:?}");
}
