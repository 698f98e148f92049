//! A broker node's lifecycle: `BrokerConfig -> BrokerNode::start -> shutdown`.
//!
//! Start order matters: the Raft member first (sessions need leases), then NATS (everything
//! between nodes), then the actors' supervisors, and last the two listeners that let work in:
//! agents' gRPC and the analysts' API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::agent::agent_link_server::AgentLinkServer;
use agent_proto::agent::enrolment_server::EnrolmentServer;
use anyhow::Context;
use cluster::ClusterNode;
use cluster::network::TlsMaterial;
use grants::AuthorityKey;
use ractor::{Actor, ActorRef};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::actors::{Supervisor, session};
use crate::agents::AgentService;
use crate::agents::enrolment::{EnrolmentService, Issuer};
use crate::api::{self, ApiState};
use crate::audit::AuditLog;
use crate::bus::Bus;
use crate::config::BrokerConfig;
use crate::registry::DeviceRegistry;
use crate::transfer::library::Library;
use crate::transfer::{ChunkStore, ChunkStoreConfig, TransferBook, TransferContext, upkeep};

/// An enrolment request is a token, a device id and a signing request: a few kilobytes.
const ENROLMENT_MESSAGE_BYTES: usize = 64 * 1024;
/// How long start waits for the NATS server.
const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub struct BrokerNode {
    pub node_id: u64,
    pub api_addr: SocketAddr,
    pub agents_addr: SocketAddr,
    cluster: ClusterNode,
    supervisors: Vec<ActorRef<()>>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    directory: watch::Receiver<crate::directory::Readiness>,
}

/// The node's PEM files, read once.
struct Pems {
    cluster_ca: String,
    agent_ca: String,
    cert: String,
    key: String,
}

impl Pems {
    fn read(tls: &crate::config::TlsSection) -> anyhow::Result<Self> {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(Self {
            cluster_ca: read(&tls.cluster_ca)?,
            agent_ca: read(&tls.agent_ca)?,
            cert: read(&tls.cert)?,
            key: read(&tls.key)?,
        })
    }

    /// This node's certificate followed by the cluster CA, unless the file holds it already.
    fn chain(&self) -> String {
        if self.cert.contains(self.cluster_ca.trim()) {
            self.cert.clone()
        } else {
            format!("{}\n{}", self.cert.trim_end(), self.cluster_ca)
        }
    }

    /// What this node hands enrolling devices, and signs their certificates with when it holds
    /// the issuing CA's key.
    fn issuer(&self, config: &BrokerConfig, authority_public: &str) -> anyhow::Result<Issuer> {
        let ca = match &config.tls.agent_ca_key {
            Some(path) => {
                let key = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(
                    pki::Ca::from_pem(pki::CaRole::Agents, &self.agent_ca, &key)
                        .context("tls.agent_ca_key")?,
                )
            }
            None => None,
        };
        let authority_keys = if config.agents.authority_keys.is_empty() {
            vec![authority_public.to_owned()]
        } else {
            config.agents.authority_keys.clone()
        };
        Ok(Issuer::new(
            ca,
            self.cluster_ca.clone(),
            self.agent_ca.clone(),
            authority_keys,
            config.agents.certificate_lifetime(),
        ))
    }

    /// Refuses to start with a certificate that does not name this node: peers and nats-server
    /// would refuse it anyway, with less clear messages.
    fn check_identity(&self, cluster: &str, node: u64) -> anyhow::Result<()> {
        let expected = pki::BrokerIdentity::new(cluster, node)?;
        let der = CertificateDer::pem_slice_iter(self.cert.as_bytes())
            .next()
            .context("tls.cert holds no certificate")?
            .context("tls.cert is not a pem certificate")?;
        let found = pki::broker_identity(der.as_ref()).with_context(|| {
            format!("tls.cert is not a broker certificate; issue one for {expected} with `lr-broker dev-certs`")
        })?;
        anyhow::ensure!(
            found == expected,
            "tls.cert is issued to {found}, but this node is {expected} (cluster_name, node_id); use this node's certificate"
        );
        Ok(())
    }
}

impl BrokerNode {
    pub async fn start(config: BrokerConfig) -> anyhow::Result<Self> {
        let pems = Pems::read(&config.tls)?;
        pems.check_identity(&config.cluster_name, config.node_id)?;
        if let Some(listen) = config.metrics.listen {
            crate::metrics::install(listen)?;
        }

        let authority = AuthorityKey::from_pem_file(&config.raft.authority_key)
            .context("raft.authority_key: cannot read the lease authority's key")?;
        let authority_public = authority.public().to_string();
        tracing::info!(key = %authority_public, "lease authority key loaded");
        let mut cluster_config = config.cluster_config();
        cluster_config.tls = Some(TlsMaterial {
            ca_pem: pems.cluster_ca.clone(),
            cert_pem: pems.cert.clone(),
            key_pem: pems.key.clone(),
        });
        cluster_config.authority = Some(Arc::new(authority));
        let cluster = ClusterNode::start(cluster_config)
            .await
            .context("cannot start the raft member")?;
        let leases = cluster.lease_service();
        let directory = crate::directory::start(&config, leases.clone());

        let nats = crate::nats::connect(
            &config.nats_url,
            format!("lr-broker-{}", config.node_id),
            &crate::nats::ClientTls {
                ca: config.tls.cluster_ca.clone(),
                cert: config.tls.cert.clone(),
                key: config.tls.key.clone(),
            },
            NATS_CONNECT_TIMEOUT,
        )
        .await?;
        // What an agent may send must fit one NATS message on its way to the session.
        let max_payload = nats.server_info().max_payload;
        if config.agents.max_message_bytes > max_payload {
            anyhow::bail!(
                "agents.max_message_bytes is {} bytes but nats-server's max_payload is {max_payload}: a result that large could not reach its session; raise max_payload in nats-server.conf (`lr-broker nats-config` sets {}) or lower agents.max_message_bytes",
                config.agents.max_message_bytes,
                crate::nats::MAX_PAYLOAD_BYTES
            );
        }
        let bus = Bus::new(nats.clone());
        let registry = DeviceRegistry::open(nats.clone(), config.transfers.replicas).await.context(
            "cannot open the device registry in jetstream; is jetstream enabled (nats-server -js)?",
        )?;
        let settings = config.transfers.clone();
        let store = ChunkStore::open_with(
            nats.clone(),
            ChunkStoreConfig {
                replicas: settings.replicas,
                max_chunk_size: settings.chunk_size as usize,
                max_bytes: settings.max_store_bytes,
                ..ChunkStoreConfig::default()
            },
        )
        .await
        .context("cannot open the transfer chunk store in jetstream")?;
        if (store.max_chunk_size() as u64) < u64::from(settings.chunk_size) {
            anyhow::bail!(
                "transfers.chunk_size is {} bytes but nats carries at most {}; raise max_payload in nats-server.conf or lower transfers.chunk_size",
                settings.chunk_size,
                store.max_chunk_size()
            );
        }
        let book = TransferBook::open(nats.clone(), settings.replicas)
            .await
            .context("cannot open the transfer records in jetstream")?;
        let library = Library::open(nats.clone(), store.clone(), settings.replicas)
            .await
            .context("cannot open the library in jetstream")?;

        let (devices, _) = Actor::spawn(None, Supervisor, "devices")
            .await
            .context("cannot start the device supervisor")?;
        let (sessions, _) = Actor::spawn(None, Supervisor, "sessions")
            .await
            .context("cannot start the session supervisor")?;
        let (transfers_supervisor, _) = Actor::spawn(None, Supervisor, "transfers")
            .await
            .context("cannot start the transfer supervisor")?;
        let audit = AuditLog::open(nats.clone(), &config.audit, config.node_id)
            .await
            .context("cannot open the audit log")?;
        let transfers = TransferContext {
            node_id: config.node_id,
            bus: bus.clone(),
            store: store.clone(),
            book,
            library,
            settings,
            tenants: Arc::new(config.tenants.clone()),
            supervisor: transfers_supervisor.get_cell(),
            audit: audit.clone(),
            leases: leases.clone(),
        };
        let upkeep_task = tokio::spawn(upkeep::run(transfers.clone()));
        let (liveness, liveness_task) = crate::liveness::start(config.node_id, leases.clone());
        let min_ttl = session::takeover::MIN_LEASE_TTL;
        if Duration::from_millis(config.sessions.lease_ttl_ms) < min_ttl {
            tracing::warn!(
                lease_ttl_ms = config.sessions.lease_ttl_ms,
                "sessions.lease_ttl_ms is below {} ms: a session's lease may run out before another node adopts it when its node dies, and the session then ends",
                min_ttl.as_millis()
            );
        }
        let takeover_task = tokio::spawn(session::takeover::watch(
            session::SessionContext {
                node_id: config.node_id,
                bus: bus.clone(),
                leases: leases.clone(),
                settings: config.sessions.clone(),
                transfers: transfers.clone(),
                supervisor: sessions.get_cell(),
                liveness: liveness.clone(),
            },
            crate::time::now_ms(),
        ));
        let (stop, stopped) = watch::channel(false);
        let checkpoint_task = tokio::spawn(crate::audit::checkpoint::run(
            audit.clone(),
            leases.clone(),
            Duration::from_millis(config.audit.checkpoint_interval_ms),
            stopped.clone(),
        ));
        let retention_task = tokio::spawn(crate::audit::retention::run(
            audit.clone(),
            leases.clone(),
            crate::audit::retention::Retention::from_config(&config),
            stopped.clone(),
        ));
        let gauges_task = tokio::spawn(crate::metrics::watch_gauges(
            leases.clone(),
            nats.clone(),
            stopped.clone(),
        ));

        let issuer = Arc::new(pems.issuer(&config, &authority_public)?);
        let agents_listener = TcpListener::bind(config.agents.listen)
            .await
            .with_context(|| format!("cannot listen for agents on {}", config.agents.listen))?;
        let agents_addr = agents_listener.local_addr()?;
        let agent_service = AgentService {
            node_id: config.node_id,
            heartbeat: Duration::from_millis(u64::from(config.agents.heartbeat_interval_ms)),
            bus: bus.clone(),
            registry: registry.clone(),
            store,
            supervisor: devices.get_cell(),
            leases: leases.clone(),
            issuer: issuer.clone(),
            audit: audit.clone(),
        };
        let enrolment_service = EnrolmentService {
            issuer: issuer.clone(),
            leases: leases.clone(),
        };
        // Agents' certificates come from the agent CA alone: a broker's certificate is no agent.
        // A certificate is optional at the handshake so a device can enrol; `AgentLink` refuses
        // a stream without one. The chain carries the cluster CA, which an enrolling device
        // finds by the fingerprint it pins.
        let agent_tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(pems.chain(), &pems.key))
            .client_ca_root(Certificate::from_pem(&pems.agent_ca))
            .client_auth_optional(true);
        let agent_server = tonic::transport::Server::builder()
            .tls_config(agent_tls)
            .context("bad tls material for the agent service")?
            .add_service(
                AgentLinkServer::new(agent_service)
                    .max_decoding_message_size(config.agents.max_message_bytes)
                    .max_encoding_message_size(config.agents.max_message_bytes),
            )
            .add_service(
                EnrolmentServer::new(enrolment_service)
                    .max_decoding_message_size(ENROLMENT_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(
                // Commands are small messages: without nodelay each would wait ~40 ms for an ack.
                TcpIncoming::from(agents_listener).with_nodelay(Some(true)),
                wait_for(stopped.clone()),
            );
        let node_id = config.node_id;
        let agents_serving = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let serving = agents_serving.clone();
        let agents_task = tokio::spawn(async move {
            if let Err(error) = agent_server.await {
                tracing::error!(node = node_id, %error, "agent service failed");
            }
            serving.store(false, std::sync::atomic::Ordering::Release);
        });

        let api_listener = TcpListener::bind(config.api.listen)
            .await
            .with_context(|| format!("cannot listen for the api on {}", config.api.listen))?;
        let api_addr = api_listener.local_addr()?;
        let state = ApiState::new(api::Inner {
            node_id: config.node_id,
            bus,
            registry,
            leases,
            settings: config.sessions.clone(),
            sessions: sessions.get_cell(),
            transfers,
            last_use: api::LastUse::default(),
            directory: directory.clone(),
            issuer: issuer.clone(),
            agents_serving,
            liveness,
        });
        let api_task = tokio::spawn(api::serve_https(
            api_listener,
            api_tls(&pems)?,
            api::router(state),
            api::Limits::from(&config.api),
            stopped,
        ));

        tracing::info!(node = config.node_id, api = %api_addr, agents = %agents_addr, raft = %cluster.listen_addr(), "broker node started");
        Ok(Self {
            node_id: config.node_id,
            api_addr,
            agents_addr,
            cluster,
            supervisors: vec![devices, sessions, transfers_supervisor],
            stop,
            servers: vec![
                agents_task,
                api_task,
                upkeep_task,
                liveness_task,
                takeover_task,
                checkpoint_task,
                retention_task,
                gauges_task,
            ],
            directory,
        })
    }

    /// Resolves with the reason when this node's configuration contradicts the directory (a
    /// token added after the bootstrap): the process must stop with exit code 64.
    pub async fn refused(&self) -> String {
        let mut directory = self.directory.clone();
        loop {
            if let crate::directory::Readiness::Refused(reason) = &*directory.borrow_and_update() {
                return reason.clone();
            }
            if directory.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops taking work, ends this node's sessions (releasing their leases) and agent streams,
    /// then leaves the Raft group's traffic.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for supervisor in &self.supervisors {
            supervisor.stop_children(Some("node shutting down".into()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for supervisor in self.supervisors {
            supervisor.stop(None);
        }
        for server in self.servers {
            server.abort();
        }
        self.cluster.shutdown().await;
        tracing::info!(node = self.node_id, "broker node stopped");
    }
}

/// Writes the configured tenant limits once a leader exists; the returned flag turns true when
/// they are in force, and `/healthz` reports the node ready only then.
async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

fn api_tls(pems: &Pems) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(pems.cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("bad certificate pem")?;
    let key = PrivateKeyDer::from_pem_slice(pems.key.as_bytes()).context("bad key pem")?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
