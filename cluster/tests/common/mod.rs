//! A cluster of real nodes on loopback for integration tests: each node has its own gRPC port and
//! its own redb files in a temp dir; nodes can be killed and restarted from their files.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cluster::lease::{AcquireRequest, Lease};
use cluster::network::TlsMaterial;
use cluster::raft_types::NodeId;
use cluster::{ClusterConfig, ClusterNode, LeaseService};
use tempfile::TempDir;
use tokio::net::TcpListener;

pub const WAIT: Duration = Duration::from_secs(20);
/// The cluster name test nodes share (`ClusterConfig::default().name`).
pub const CLUSTER: &str = "local";

/// A cluster CA and an agent CA in memory, issuing the material of test nodes and intruders.
pub struct ClusterPki {
    pub cluster_ca: pki::Ca,
    pub agent_ca: pki::Ca,
    dir: TempDir,
}

impl ClusterPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            cluster_ca: pki::ensure_ca(dir.path(), pki::CaRole::Cluster).unwrap(),
            agent_ca: pki::Ca::generate(pki::CaRole::Agents).unwrap(),
            dir,
        }
    }

    /// An agent's certificate signed by the cluster CA itself, as if one CA served both roles.
    pub fn agent_from_the_cluster_ca(&self) -> TlsMaterial {
        let read = |file: String| std::fs::read_to_string(self.dir.path().join(file)).unwrap();
        let role = pki::CaRole::Cluster;
        let shared = pki::Ca::from_pem(
            pki::CaRole::Agents,
            &read(role.cert_file()),
            &read(role.key_file()),
        )
        .unwrap();
        self.material(shared.issue_agent_pem("demo", "web-07").unwrap())
    }

    /// The material of member `id` of cluster [`CLUSTER`].
    pub fn node(&self, id: NodeId) -> TlsMaterial {
        self.broker_of(CLUSTER, id)
    }

    /// A broker certificate of any cluster, from this cluster CA.
    pub fn broker_of(&self, cluster: &str, id: NodeId) -> TlsMaterial {
        let identity = pki::BrokerIdentity::new(cluster, id).unwrap();
        let issued = self.cluster_ca.issue_broker_pem(&identity, &[]).unwrap();
        self.material(issued)
    }

    /// An agent's certificate, from the agent CA, beside the cluster CA as trust root.
    pub fn agent(&self) -> TlsMaterial {
        self.material(self.agent_ca.issue_agent_pem("demo", "web-07").unwrap())
    }

    fn material(&self, issued: pki::IssuedPem) -> TlsMaterial {
        TlsMaterial {
            ca_pem: self.cluster_ca.ca_pem().to_owned(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
        }
    }
}

pub struct TestCluster {
    pub dir: TempDir,
    pub configs: BTreeMap<NodeId, ClusterConfig>,
    pub nodes: BTreeMap<NodeId, ClusterNode>,
}

/// Timings short enough for tests, long enough for a loaded 2-core machine.
pub fn test_config(
    id: NodeId,
    addr: SocketAddr,
    members: &BTreeMap<NodeId, String>,
    data_dir: PathBuf,
) -> ClusterConfig {
    ClusterConfig {
        node_id: id,
        listen_addr: addr,
        members: members.clone(),
        data_dir,
        heartbeat_ms: 50,
        election_timeout_min_ms: 400,
        election_timeout_max_ms: 800,
        request_timeout_ms: 10_000,
        sweep_interval_ms: 100,
        ..ClusterConfig::default()
    }
}

impl TestCluster {
    /// Starts `n` voters; `tune` adjusts every node's config before start.
    pub async fn start(n: u64, tune: impl Fn(&mut ClusterConfig)) -> Self {
        testkit::init_tracing();
        let dir = tempfile::tempdir().unwrap();
        let mut listeners = BTreeMap::new();
        for id in 1..=n {
            // Below the ephemeral range: a restart rebinds this port, and no client socket may take it meanwhile.
            let listener = TcpListener::bind(("127.0.0.1", testkit::free_port()))
                .await
                .unwrap();
            listeners.insert(id, listener);
        }
        let members: BTreeMap<NodeId, String> = listeners
            .iter()
            .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
            .collect();
        let mut cluster = TestCluster {
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            dir,
        };
        for (id, listener) in listeners {
            let mut config = test_config(
                id,
                listener.local_addr().unwrap(),
                &members,
                cluster.dir.path().join(format!("node-{id}")),
            );
            tune(&mut config);
            let node = ClusterNode::start_on(config.clone(), listener)
                .await
                .unwrap();
            cluster.configs.insert(id, config);
            cluster.nodes.insert(id, node);
        }
        cluster.wait_for_leader().await;
        cluster
    }

    pub fn service(&self, id: NodeId) -> LeaseService {
        self.nodes[&id].lease_service()
    }

    pub fn any_service(&self) -> LeaseService {
        self.nodes
            .values()
            .next()
            .expect("no node running")
            .lease_service()
    }

    /// The leader all running nodes agree on.
    pub async fn wait_for_leader(&self) -> NodeId {
        let mut agreed = None;
        let found = testkit::wait_until(WAIT, || {
            let leaders: Vec<Option<NodeId>> = self
                .nodes
                .values()
                .map(|n| n.lease_service().leader())
                .collect();
            let first = leaders[0];
            agreed =
                first.filter(|l| self.nodes.contains_key(l) && leaders.iter().all(|x| *x == first));
            async move { agreed.is_some() }
        })
        .await;
        assert!(
            found,
            "running nodes did not agree on a leader within {WAIT:?}"
        );
        agreed.unwrap()
    }

    /// Stops a node abruptly: its server and Raft core are dropped; its files stay.
    pub async fn kill(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("node not running");
        node.shutdown().await;
    }

    /// Starts a stopped node again from its redb files, on its old port.
    pub async fn restart(&mut self, id: NodeId) {
        let config = self.configs[&id].clone();
        // The port was ours a moment ago; rebinding can briefly fail while the old socket closes.
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(config.listen_addr).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let node = ClusterNode::start_on(config, listener.expect("cannot rebind the node's port"))
            .await
            .unwrap();
        self.nodes.insert(id, node);
    }

    pub async fn shutdown_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id).await;
        }
    }

    pub fn log_path(&self, id: NodeId) -> PathBuf {
        self.configs[&id].data_dir.join("raft-log.redb")
    }
}

pub fn acquire_request(
    tenant: &str,
    user: &str,
    device: &str,
    session: &str,
    ttl_ms: u64,
) -> AcquireRequest {
    AcquireRequest {
        session: session.into(),
        tenant: tenant.into(),
        user: user.into(),
        device: device.into(),
        node: 1,
        ttl_ms,
        session_key: None,
    }
}

pub fn sorted(mut leases: Vec<Lease>) -> Vec<Lease> {
    leases.sort_by_key(|l| l.token);
    leases
}
