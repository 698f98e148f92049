//! The system under test: a real 3-node lease cluster in this process, on loopback, with
//! production timings and fsync (redb `Durability::Immediate`) on every node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cluster::lease::{AcquireRequest, TenantLimits};
use cluster::raft_types::NodeId;
use cluster::{ClusterConfig, ClusterNode, LeaseService};
use tokio::net::TcpListener;

use crate::workload::Target;

/// The tenant every benchmark lease belongs to.
pub const TENANT: &str = "bench";
/// Long enough that no lease expires during a run, so the sweeper proposes nothing.
const TTL_MS: u64 = 60_000;
const LEADER_WAIT: Duration = Duration::from_secs(30);

pub struct LocalCluster {
    nodes: Vec<ClusterNode>,
    /// Removes the data when the cluster is dropped, unless the caller chose the directory.
    _temp: Option<tempfile::TempDir>,
}

impl LocalCluster {
    /// Starts `size` voters, each with its own port and its own redb dir under `data_dir` (a
    /// fresh temp dir when `None`), and waits until they agree on a leader.
    pub async fn start(size: u64, data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let (root, temp) = match data_dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("lease-bench-")
                    .tempdir()
                    .context("cannot create a temp dir for the node stores")?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            // A node restarted from old files would keep the old members' ports: refuse instead.
            let dir = node_dir(&root, id);
            if dir.exists() {
                bail!(
                    "{} already exists; give --data-dir an empty or new directory",
                    dir.display()
                );
            }
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot bind a loopback port for a node")?;
            listeners.insert(id, listener);
        }
        let members: BTreeMap<NodeId, String> = listeners
            .iter()
            .map(|(id, l)| Ok((*id, l.local_addr()?.to_string())))
            .collect::<std::io::Result<_>>()?;
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            let config = ClusterConfig {
                node_id: id,
                listen_addr: listener.local_addr()?,
                members: members.clone(),
                data_dir: node_dir(&root, id),
                ..ClusterConfig::default()
            };
            let node = ClusterNode::start_on(config, listener)
                .await
                .with_context(|| format!("node {id} did not start"))?;
            nodes.push(node);
        }
        let cluster = Self { nodes, _temp: temp };
        cluster.leader().await?;
        Ok(cluster)
    }

    /// The index in `services()` of the leader every node agrees on.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        loop {
            let mut views = Vec::new();
            for node in &self.nodes {
                views.push(node.lease_service().wait_for_leader(LEADER_WAIT).await?);
            }
            if views.iter().all(|v| *v == views[0])
                && let Some(index) = self.nodes.iter().position(|n| n.id() == views[0])
            {
                return Ok(index);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("nodes did not agree on a leader within {LEADER_WAIT:?}: {views:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn services(&self) -> Vec<LeaseService> {
        self.nodes.iter().map(ClusterNode::lease_service).collect()
    }

    /// Lets one user hold a session per device and the tenant hold as many as any run needs.
    pub async fn open_tenant(&self) -> anyhow::Result<()> {
        let limits = TenantLimits {
            max_sessions_per_tenant: cluster::lease::MAX_LIMIT,
            max_sessions_per_user: 1,
        };
        self.nodes[0]
            .lease_service()
            .set_tenant_limits(TENANT, limits)
            .await
            .context("cannot set the benchmark tenant's limits")?;
        Ok(())
    }

    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

fn node_dir(root: &Path, id: NodeId) -> PathBuf {
    root.join(format!("node-{id}"))
}

/// Which node a client sends each pair through.
#[derive(Clone)]
pub enum Route {
    /// Pair k of client i goes through node (i + k) mod n: two thirds of the pairs are forwarded
    /// by a follower to the leader over gRPC, as brokers spread over the cluster would send them.
    RoundRobin(Vec<LeaseService>),
    /// Every pair is a local call on the leader's own service.
    Leader(LeaseService),
}

pub struct ClusterTarget {
    route: Route,
    /// Keeps session, user and device ids unique across runs and invocations.
    tag: String,
}

impl ClusterTarget {
    pub fn new(route: Route, tag: String) -> Arc<Self> {
        Arc::new(Self { route, tag })
    }
}

pub struct ClusterClient {
    index: usize,
    identity: u64,
    pairs: u64,
}

impl Target for ClusterTarget {
    type Client = ClusterClient;
    /// The service the acquire went through, the session and its fencing token.
    type Held = (LeaseService, String, u64);

    async fn client(&self, index: usize) -> anyhow::Result<ClusterClient> {
        Ok(ClusterClient {
            index,
            identity: 0,
            pairs: 0,
        })
    }

    async fn acquire(&self, client: &mut ClusterClient) -> anyhow::Result<Self::Held> {
        let service = match &self.route {
            Route::RoundRobin(services) => {
                let at = (client.index as u64 + client.pairs) % services.len() as u64;
                services[at as usize].clone()
            }
            Route::Leader(service) => service.clone(),
        };
        client.pairs += 1;
        // One user and one device per client, so clients never contend on an invariant.
        let who = format!("{}-c{}-i{}", self.tag, client.index, client.identity);
        let session = format!("{who}-p{}", client.pairs);
        let lease = service
            .acquire(AcquireRequest {
                session: session.clone(),
                tenant: TENANT.into(),
                user: format!("user-{who}"),
                device: format!("device-{who}"),
                node: 1,
                ttl_ms: TTL_MS,
                session_key: None,
            })
            .await?
            .lease;
        Ok((service, session, lease.token))
    }

    async fn release(
        &self,
        _client: &mut ClusterClient,
        (service, session, token): Self::Held,
    ) -> anyhow::Result<()> {
        service.release(TENANT, &session, token).await?;
        Ok(())
    }

    fn fresh_identity(&self, client: &mut ClusterClient) {
        client.identity += 1;
    }
}
