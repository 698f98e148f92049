//! Membership from configuration and at runtime: a learner joins, is promoted, is removed; and the
//! Raft transport runs over mutual TLS.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cluster::network::TlsMaterial;
use cluster::raft_types::NodeId;
use cluster::{ClusterError, ClusterNode};
use common::{ClusterPki, TestCluster, WAIT, acquire_request, test_config};
use tokio::net::TcpListener;

fn voters(cluster: &TestCluster, id: NodeId) -> BTreeSet<NodeId> {
    cluster
        .service(id)
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_joins_is_promoted_and_is_removed() {
    let mut cluster = TestCluster::start(3, |_| {}).await;
    let lease = cluster
        .service(1)
        .acquire(acquire_request("demo", "a", "web-07", "s1", 600_000))
        .await
        .unwrap()
        .lease;

    // Node 4 starts empty with `join`, and is added through a follower.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let members = cluster.configs[&1].members.clone();
    let mut config = test_config(4, addr, &members, cluster.dir.path().join("node-4"));
    config.join = true;
    let node = ClusterNode::start_on(config.clone(), listener)
        .await
        .unwrap();
    cluster.configs.insert(4, config);
    cluster.nodes.insert(4, node);

    let follower = (1..=3)
        .find(|id| Some(*id) != cluster.service(1).leader())
        .unwrap();
    cluster
        .service(follower)
        .add_learner(4, &addr.to_string())
        .await
        .unwrap();
    // The learner has the log once add_learner returns, and applies it.
    let learner = cluster.nodes[&4].local_state().clone();
    let applied = testkit::wait_until(WAIT, || {
        let learner = learner.clone();
        async move { learner.with_table(|t| t.len()).await == 1 }
    })
    .await;
    assert!(applied, "the learner did not apply the log");

    cluster.service(2).promote(4).await.unwrap();
    assert_eq!(voters(&cluster, 1), BTreeSet::from([1, 2, 3, 4]));
    // The new voter serves linearizable reads and writes.
    assert_eq!(
        cluster.service(4).get("demo", "s1").await.unwrap(),
        Some(lease)
    );
    cluster
        .service(4)
        .acquire(acquire_request("demo", "b", "db-01", "s2", 600_000))
        .await
        .unwrap();

    cluster.service(4).remove(4).await.unwrap();
    let removed = testkit::wait_until(WAIT, || {
        let now = voters(&cluster, 1);
        async move { now == BTreeSet::from([1, 2, 3]) }
    })
    .await;
    assert!(removed, "node 4 is still a voter");
    cluster.kill(4).await;
    cluster
        .service(3)
        .acquire(acquire_request("demo", "c", "db-02", "s3", 600_000))
        .await
        .unwrap();

    // Promoting a node that is not a member is refused with a reason.
    let err = cluster.service(1).promote(9).await.unwrap_err();
    assert!(matches!(err, ClusterError::Membership(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_runs_over_mutual_tls_and_refuses_strangers() {
    let pki = ClusterPki::new();
    let materials: BTreeMap<NodeId, TlsMaterial> = (1..=3).map(|id| (id, pki.node(id))).collect();
    let cluster = TestCluster::start(3, |c| c.tls = Some(materials[&c.node_id].clone())).await;
    let lease = cluster
        .service(3)
        .acquire(acquire_request("demo", "a", "web-07", "s1", 600_000))
        .await
        .unwrap()
        .lease;
    assert_eq!(
        cluster.service(1).get("demo", "s1").await.unwrap(),
        Some(lease)
    );

    // A node with a certificate from another CA cannot take part: its messages are refused at the handshake.
    let stranger = ClusterPki::new().node(4);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut members = cluster.configs[&1].members.clone();
    members.insert(4, addr.to_string());
    let mut config = test_config(4, addr, &members, cluster.dir.path().join("node-4"));
    config.join = true;
    config.tls = Some(stranger);
    config.request_timeout_ms = 2_000;
    let node = ClusterNode::start_on(config, listener).await.unwrap();
    // It knows no leader, and it cannot reach one.
    assert!(
        node.lease_service()
            .wait_for_leader(std::time::Duration::from_secs(2))
            .await
            .is_err()
    );
    let err = cluster
        .service(1)
        .add_learner(4, &addr.to_string())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClusterError::Membership(m) if m.contains("node 4 did not receive the log")),
        "{err}"
    );
    assert!(
        node.local_state().last_applied().await.is_none(),
        "a node outside the CA received the log"
    );
    // The failed add changed nothing.
    let voters_and_learners: BTreeSet<NodeId> = cluster
        .service(1)
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(voters_and_learners, BTreeSet::from([1, 2, 3]));
    node.shutdown().await;
}
