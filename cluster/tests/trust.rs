//! Who may speak Raft: only member brokers of this cluster, proven by a cluster-CA certificate
//! carrying `lr-broker://<cluster>/<member id>`. Everyone else is refused on every RPC, and
//! nothing they send changes the log; messages over the configured size are refused unread.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use agent_proto::raft::raft_client::RaftClient;
use agent_proto::raft::{RaftPayload, SnapshotChunk};
use cluster::lease::{AcquireRequest, LeaseOp, LeaseQuery, TenantLimits};
use cluster::network::TlsMaterial;
use cluster::node::ClusterRequest;
use cluster::raft_types::{NodeId, TypeConfig};
use common::{ClusterPki, TestCluster, acquire_request};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{LeaderId, LogId, Vote};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// A raw Raft RPC client holding `material`, as an intruder would build one.
async fn client(addr: std::net::SocketAddr, material: &TlsMaterial) -> RaftClient<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&material.ca_pem))
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
        .domain_name("127.0.0.1");
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls)
        .unwrap()
        .connect_lazy();
    RaftClient::new(channel).max_encoding_message_size(usize::MAX)
}

fn payload<T: serde::Serialize>(value: &T) -> RaftPayload {
    RaftPayload {
        payload: serde_json::to_vec(value).unwrap(),
    }
}

/// Every kind of forwarded request: each lease write, a read of everything, each membership change.
fn every_forward() -> Vec<ClusterRequest> {
    let tenant = || "demo".to_string();
    vec![
        ClusterRequest::Write(LeaseOp::Acquire(AcquireRequest {
            session: "stolen".into(),
            tenant: tenant(),
            user: "intruder".into(),
            device: "web-07".into(),
            node: 1,
            ttl_ms: 24 * 3600 * 1000,
            session_key: None,
        })),
        ClusterRequest::Write(LeaseOp::Renew {
            tenant: tenant(),
            session: "s1".into(),
            token: 1,
        }),
        ClusterRequest::Write(LeaseOp::Release {
            tenant: tenant(),
            session: "s1".into(),
            token: 1,
        }),
        ClusterRequest::Write(LeaseOp::ExpireSweep),
        ClusterRequest::Write(LeaseOp::SetTenantLimits {
            tenant: tenant(),
            limits: TenantLimits {
                max_sessions_per_tenant: 100_000,
                max_sessions_per_user: 100_000,
            },
        }),
        ClusterRequest::Read(LeaseQuery::All),
        ClusterRequest::AddLearner {
            id: 9,
            addr: "127.0.0.1:1".into(),
        },
        ClusterRequest::Promote { id: 9 },
        ClusterRequest::Remove { id: 2 },
    ]
}

/// Calls every RPC with `material`; returns the code of each answer (Ok for an answer).
async fn call_everything(
    addr: std::net::SocketAddr,
    material: &TlsMaterial,
) -> Vec<(String, Code)> {
    let mut rpc = client(addr, material).await;
    let code = |r: Result<tonic::Response<RaftPayload>, tonic::Status>| match r {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    let mut answers = Vec::new();
    for request in every_forward() {
        let name = format!("forward {request:?}");
        answers.push((name, code(rpc.forward(payload(&request)).await)));
    }
    let append: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(1_000, 9),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: Some(LogId::new(LeaderId::new(1_000, 9), 1_000)),
    };
    answers.push((
        "append_entries".into(),
        code(rpc.append_entries(payload(&append)).await),
    ));
    let vote: VoteRequest<NodeId> = VoteRequest::new(Vote::new(1_000, 9), None);
    answers.push(("vote".into(), code(rpc.vote(payload(&vote)).await)));
    let header = serde_json::json!({
        "vote": Vote::new_committed(1_000, 9),
        "meta": { "last_log_id": null, "last_membership": { "log_id": null, "membership": { "configs": [], "nodes": {} } }, "snapshot_id": "x" },
        "offset": 0,
        "done": true,
    });
    let chunk = SnapshotChunk {
        header: serde_json::to_vec(&header).unwrap(),
        data: Vec::new(),
    };
    answers.push((
        "install_snapshot".into(),
        code(rpc.install_snapshot(chunk).await),
    ));
    answers
}

/// The fingerprint once every node holds the same log: a follower still catching up on the
/// acquire would otherwise look like a change made by an intruder.
async fn settled_fingerprint(cluster: &TestCluster) -> BTreeMap<NodeId, String> {
    let mut settled = BTreeMap::new();
    let agreed = testkit::wait_until(Duration::from_secs(20), || {
        settled = fingerprint(cluster);
        let first = settled.values().next().cloned();
        let same = settled.values().all(|f| Some(f) == first.as_ref());
        async move { same }
    })
    .await;
    assert!(agreed, "the nodes' logs did not settle: {settled:?}");
    settled
}

/// What an intruder could have changed: each node's term, last log index and members.
fn fingerprint(cluster: &TestCluster) -> BTreeMap<NodeId, String> {
    cluster
        .nodes
        .iter()
        .map(|(id, node)| {
            let m = node.raft().metrics().borrow().clone();
            let members: Vec<NodeId> = m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect();
            (
                *id,
                format!(
                    "term {} last {:?} members {members:?}",
                    m.current_term, m.last_log_index
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_member_brokers_may_call_any_raft_rpc() {
    let pki = ClusterPki::new();
    let materials: BTreeMap<NodeId, TlsMaterial> = (1..=3).map(|id| (id, pki.node(id))).collect();
    let cluster = TestCluster::start(3, |c| c.tls = Some(materials[&c.node_id].clone())).await;
    cluster
        .service(1)
        .acquire(acquire_request("demo", "a", "web-07", "s1", 600_000))
        .await
        .unwrap();
    let leader = cluster.wait_for_leader().await;
    let before = settled_fingerprint(&cluster).await;

    // An agent's certificate comes from the agent CA, which Raft does not trust: no handshake.
    let agent = pki.agent();
    // The same certificate signed by the cluster CA (one CA shared by mistake) is still no broker.
    let misissued = pki.agent_from_the_cluster_ca();
    let intruders = [
        ("an agent certificate", agent, None),
        (
            "an agent certificate from the cluster CA",
            misissued,
            Some(Code::PermissionDenied),
        ),
        (
            "a broker of another cluster",
            pki.broker_of("other", 2),
            Some(Code::PermissionDenied),
        ),
        (
            "a broker that is not a member",
            pki.node(9),
            Some(Code::PermissionDenied),
        ),
    ];
    for id in [leader, if leader == 1 { 2 } else { 1 }] {
        let addr = cluster.configs[&id].listen_addr;
        for (who, material, expected) in &intruders {
            for (rpc, code) in call_everything(addr, material).await {
                match expected {
                    Some(expected) => {
                        assert_eq!(code, *expected, "{who} calling {rpc} on node {id}")
                    }
                    None => assert_ne!(
                        code,
                        Code::Ok,
                        "{who} calling {rpc} on node {id} was answered"
                    ),
                }
            }
        }
    }
    assert_eq!(
        fingerprint(&cluster),
        before,
        "an intruder changed the raft state"
    );

    // The same calls from a member are answered: the refusals above are about who calls.
    let mut member = client(cluster.configs[&leader].listen_addr, &materials[&2]).await;
    let read = member
        .forward(payload(&ClusterRequest::Read(LeaseQuery::All)))
        .await;
    assert!(read.is_ok(), "a member's read was refused: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_raft_message_is_refused_and_the_cluster_carries_on() {
    let pki = ClusterPki::new();
    let materials: BTreeMap<NodeId, TlsMaterial> = (1..=3).map(|id| (id, pki.node(id))).collect();
    let cluster = TestCluster::start(3, |c| {
        c.tls = Some(materials[&c.node_id].clone());
        c.max_message_bytes = 256 * 1024;
    })
    .await;
    let leader = cluster.wait_for_leader().await;
    let mut member = client(cluster.configs[&leader].listen_addr, &materials[&2]).await;
    let huge = RaftPayload {
        payload: vec![b' '; 1024 * 1024],
    };
    let status = member.forward(huge).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // Work within the bound goes on.
    cluster
        .service(3)
        .acquire(acquire_request("demo", "a", "web-07", "s1", 600_000))
        .await
        .unwrap();
}
