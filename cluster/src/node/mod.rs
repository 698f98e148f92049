//! One member of the lease cluster: `ClusterConfig -> ClusterNode::start -> LeaseService`, and shutdown.
//!
//! A node runs three tasks beside openraft's own: the gRPC server for peers, and the expiry
//! sweeper, which reads the node's lease time every tick and proposes an `ExpireSweep` while this
//! node leads and some lease has run out.

mod config;
mod error;
mod leader;
mod request;
mod service;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::raft::raft_server::RaftServer;
use openraft::error::InitializeError;
use openraft::error::RaftError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

pub use config::{ClusterConfig, ConfigError, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::ClusterError;
pub use leader::LeaderOps;
use leader::NodeClock;
pub use request::{ClusterReply, ClusterRequest};
pub use service::{Granted, LeaseService};

use crate::network::{NetworkFactory, RaftService};
use crate::raft_types::{NodeId, Raft};
use crate::store::{self, StateReader, StoreFiles};

/// How long shutdown waits for openraft's tasks to drop their store handles.
const FILES_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the raft stores in {dir}: {reason}")]
    Storage { dir: String, reason: String },
    #[error("cannot listen for raft rpc on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// A running cluster member.
pub struct ClusterNode {
    id: NodeId,
    raft: Raft,
    service: LeaseService,
    state: StateReader,
    files: StoreFiles,
    listen_addr: std::net::SocketAddr,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    #[cfg(feature = "fault-clock")]
    clock: Arc<NodeClock>,
}

impl ClusterNode {
    /// Starts a node listening on `config.listen_addr`.
    pub async fn start(config: ClusterConfig) -> Result<Self, StartError> {
        config.validate()?;
        let listener =
            TcpListener::bind(config.listen_addr)
                .await
                .map_err(|e| StartError::Listen {
                    addr: config.listen_addr.to_string(),
                    reason: e.to_string(),
                })?;
        Self::start_on(config, listener).await
    }

    /// Starts a node on a listener the caller already bound (tests bind port 0 first).
    pub async fn start_on(
        config: ClusterConfig,
        listener: TcpListener,
    ) -> Result<Self, StartError> {
        config.validate()?;
        let storage_error = |e: &dyn std::fmt::Display| StartError::Storage {
            dir: config.data_dir.display().to_string(),
            reason: e.to_string(),
        };
        let (log_store, state_machine) = store::open(&config.data_dir)
            .await
            .map_err(|e| storage_error(&e))?;
        let state = state_machine.reader();
        let files = StoreFiles::of(&log_store, &state_machine);
        let network = NetworkFactory {
            tls: config.tls.clone(),
            max_message_bytes: config.max_message_bytes,
        };
        let raft_config = Arc::new(config.raft_config()?);
        let raft = Raft::new(
            config.node_id,
            raft_config,
            network.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

        let clock = Arc::new(NodeClock::new());
        let leader = LeaderOps::new(
            config.node_id,
            raft.clone(),
            state.clone(),
            config.request_timeout(),
            config.authority.clone(),
            clock.clone(),
        );
        let service = LeaseService::new(
            config.node_id,
            raft.clone(),
            leader.clone(),
            network,
            config.request_timeout(),
        );
        let listen_addr = listener.local_addr().map_err(|e| StartError::Listen {
            addr: config.listen_addr.to_string(),
            reason: e.to_string(),
        })?;
        let (stop_server, stopped) = oneshot::channel();
        let server = spawn_server(
            &config,
            listener,
            RaftService::new(
                raft.clone(),
                leader.clone(),
                config.tls.is_some().then(|| config.name.clone()),
            ),
            stopped,
        )?;

        if !config.join {
            bootstrap(&raft, &config).await?;
        }
        let sweeper = tokio::spawn(sweep_expired(
            config.node_id,
            raft.clone(),
            state.clone(),
            service.clone(),
            clock.clone(),
            Duration::from_millis(config.sweep_interval_ms),
        ));
        tracing::info!(node = config.node_id, addr = %listen_addr, "raft node started");
        Ok(Self {
            id: config.node_id,
            raft,
            service,
            state,
            files,
            listen_addr,
            stop_server: Some(stop_server),
            server,
            sweeper,
            #[cfg(feature = "fault-clock")]
            clock,
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn listen_addr(&self) -> std::net::SocketAddr {
        self.listen_addr
    }

    pub fn lease_service(&self) -> LeaseService {
        self.service.clone()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node's applied state, without any leader round trip (not linearizable).
    pub fn local_state(&self) -> &StateReader {
        &self.state
    }

    /// Puts this node's wall clock `offset_ms` off, as a jump of the system clock would: for
    /// tests of lease time. Only with the cargo feature `fault-clock`, which no production build
    /// enables.
    #[cfg(feature = "fault-clock")]
    pub fn set_wall_clock_offset(&self, offset_ms: i64) {
        self.clock.set_wall_offset(offset_ms);
    }

    /// Stops serving peers and stops the Raft core. Everything acknowledged is already on disk;
    /// returns once the store files are closed, so the node can start again from them.
    pub async fn shutdown(mut self) {
        self.sweeper.abort();
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(node = self.id, %error, "raft core did not stop cleanly");
        }
        // Open peer connections are not waited for: a stopped node answers nothing.
        self.server.abort();
        let _ = (&mut self.server).await;
        let deadline = tokio::time::Instant::now() + FILES_CLOSE_TIMEOUT;
        while !self.files.closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !self.files.closed() {
            tracing::warn!(node = self.id, "raft store files still open after shutdown");
        }
        tracing::info!(node = self.id, "raft node stopped");
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.sweeper.abort();
        self.server.abort();
    }
}

fn spawn_server(
    config: &ClusterConfig,
    listener: TcpListener,
    service: RaftService,
    stopped: oneshot::Receiver<()>,
) -> Result<JoinHandle<()>, StartError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls.server_config())
            .map_err(|e| StartError::Listen {
                addr: config.listen_addr.to_string(),
                reason: format!("bad tls configuration: {e}"),
            })?;
    }
    let router = builder.add_service(
        RaftServer::new(service)
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes),
    );
    let node = config.node_id;
    Ok(tokio::spawn(async move {
        // Nagle plus delayed acks would hold every small Raft reply for ~40 ms.
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(error) = router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
        {
            tracing::error!(node, %error, "raft rpc server failed");
        }
    }))
}

/// Initializes a fresh cluster with the configured voters. Only the lowest-id member does it,
/// so voters do not race each other's first election; the others join when it reaches them. A
/// node that already has a log (a restart) skips it.
async fn bootstrap(raft: &Raft, config: &ClusterConfig) -> Result<(), StartError> {
    if config.members.keys().next() != Some(&config.node_id) {
        return Ok(());
    }
    if raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?
    {
        return Ok(());
    }
    match raft.initialize(initial_members(&config.members)).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(StartError::Raft(e.to_string())),
    }
}

/// The voters of the initial membership, keyed by id, for `Raft::initialize`.
fn initial_members(members: &BTreeMap<NodeId, String>) -> BTreeMap<NodeId, openraft::BasicNode> {
    members
        .iter()
        .map(|(id, addr)| (*id, openraft::BasicNode::new(addr)))
        .collect()
}

/// While this node leads, proposes an expiry sweep whenever a lease has run out by lease time.
async fn sweep_expired(
    id: NodeId,
    raft: Raft,
    state: StateReader,
    service: LeaseService,
    clock: Arc<NodeClock>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Read on every node, so a follower's lease time goes on without gaps when it comes to lead.
        let now = clock.now(state.clock().await);
        if raft.metrics().borrow().current_leader != Some(id) {
            continue;
        }
        if !state.with_table(|table| table.has_expired_at(now)).await {
            continue;
        }
        match service.expire_sweep().await {
            Ok(expired) => {
                for lease in &expired {
                    tracing::info!(node = id, tenant = %lease.tenant, session = %lease.session, device = %lease.device, "lease expired");
                }
            }
            Err(error) => tracing::warn!(node = id, %error, "expiry sweep failed"),
        }
    }
}
