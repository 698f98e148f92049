//! Shared fixtures for the agent's integration tests: a throwaway PKI and lease authority key, an
//! in-test `AgentLink` broker over mutual TLS whose orders are signed as a real session's are
//! ([`Signer`]), and an agent running in-process via `agent::run`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent::{Config, ConnectionConfig, TlsPaths};
use agent_proto::agent::agent_link_server::{AgentLink, AgentLinkServer};
use agent_proto::agent::{
    AgentMessage, BrokerMessage, Cancel, Chunk, ChunkRequest, CommandRequest, CommandResult,
    GetTicket, Hello, Order, OrderBody, PutChunk, PutOffer, PutProgress, RenewRequest, SignedGrant,
    TransferEnded, Welcome, agent_message, broker_message, order_body,
};
use grants::{AuthorityKey, Grant, SessionKey};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

/// Long enough for a loaded 2-core machine; every wait in these tests is bounded by it.
pub const WAIT: Duration = Duration::from_secs(20);

/// Messages from the agent the test broker holds before it stops reading the stream, so a test
/// that does not read stalls the agent's sending as a slow network would.
pub const INBOUND_BUFFER: usize = 16;

/// The session every order of [`Signer::new`] belongs to.
pub const SESSION: &str = "session-1";

/// How long the test grants last: longer than any test.
pub const GRANT_TTL_MS: u64 = 60 * 60 * 1000;

/// A CA, a broker certificate for "localhost" and an agent client certificate, as PEM files, and
/// the lease authority's key the agent trusts.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
    pub authority: Arc<AuthorityKey>,
}

impl Pki {
    pub fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "lr test ca");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("localhost");
        let (agent_cert, agent_key) = leaf("web-07");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("agent.pem"), agent_cert).unwrap();
        std::fs::write(dir.path().join("agent.key"), agent_key).unwrap();
        Self {
            dir,
            ca_pem: ca_cert.pem(),
            server_cert,
            server_key,
            authority: Arc::new(authority_key()),
        }
    }

    pub fn tls_paths(&self) -> TlsPaths {
        TlsPaths {
            ca_cert: self.dir.path().join("ca.pem"),
            cert: self.dir.path().join("agent.pem"),
            key: self.dir.path().join("agent.key"),
            server_name: "localhost".into(),
        }
    }
}

/// A fresh Ed25519 lease authority key (PKCS#8 PEM, as the brokers would read it).
pub fn authority_key() -> AuthorityKey {
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .unwrap()
        .serialize_pem();
    AuthorityKey::from_pem(&pem).unwrap()
}

/// Milliseconds since the Unix epoch: the brokers' stamps.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An order of `action`: its body stamped `stamped_at_ms`, signed by `key`, under `grant` (which
/// need not match: forgeries are built with this).
pub fn sign_order(
    grant: Option<SignedGrant>,
    key: &SessionKey,
    stamped_at_ms: u64,
    action: order_body::Action,
) -> Order {
    let body = OrderBody {
        stamped_at_ms,
        action: Some(action),
    }
    .encode_to_vec();
    Order {
        signature: key.sign(&body),
        body,
        grant,
        trace_context: Default::default(),
    }
}

/// A grant as it travels.
pub fn wire_grant(signed: grants::SignedGrant) -> SignedGrant {
    SignedGrant {
        body: signed.body,
        signature: signed.signature,
        key_id: signed.key_id,
    }
}

/// The lease authority and one of its sessions, as the brokers play them: every order is signed
/// by the session under a grant for the token it carries, issued now and good for
/// [`GRANT_TTL_MS`].
#[derive(Clone)]
pub struct Signer {
    pub authority: Arc<AuthorityKey>,
    pub session_key: Arc<SessionKey>,
    pub session_id: String,
    pub tenant: String,
    pub device: String,
}

impl Signer {
    /// Session [`SESSION`] on device web-07 of tenant demo, granted by `authority`.
    pub fn new(authority: Arc<AuthorityKey>) -> Self {
        Self {
            authority,
            session_key: Arc::new(SessionKey::generate().unwrap()),
            session_id: SESSION.into(),
            tenant: "demo".into(),
            device: "web-07".into(),
        }
    }

    /// This session's grant for `token`.
    pub fn grant(&self, token: u64) -> Grant {
        let now = now_ms();
        Grant {
            tenant: self.tenant.clone(),
            device: self.device.clone(),
            session: self.session_id.clone(),
            user: "analyst-a".into(),
            token,
            issued_at_ms: now,
            expires_at_ms: now + GRANT_TTL_MS,
            session_key: self.session_key.public(),
        }
    }

    /// `grant`, signed by the authority.
    pub fn sign_grant(&self, grant: &Grant) -> SignedGrant {
        wire_grant(self.authority.sign(grant))
    }

    /// `action` (which must carry `token`) under this session's grant for `token`, stamped now.
    pub fn order(&self, token: u64, action: order_body::Action) -> Order {
        let grant = self.sign_grant(&self.grant(token));
        sign_order(Some(grant), &self.session_key, now_ms(), action)
    }

    pub fn command(&self, id: &str, token: u64, command: &str, args: &[&str], cwd: &str) -> Order {
        self.order(
            token,
            order_body::Action::Command(CommandRequest {
                command_id: id.into(),
                session_id: self.session_id.clone(),
                token,
                command: command.into(),
                args: args.iter().map(|s| s.to_string()).collect(),
                cwd: cwd.into(),
                timeout_ms: 0,
            }),
        )
    }

    pub fn cancel(&self, id: &str, token: u64) -> Order {
        self.order(
            token,
            order_body::Action::Cancel(Cancel {
                command_id: id.into(),
                session_id: self.session_id.clone(),
                token,
            }),
        )
    }

    /// `offer` signed as this session's (its session id is replaced by this session's).
    pub fn put_offer(&self, offer: PutOffer) -> Order {
        let token = offer.token;
        let offer = PutOffer {
            session_id: self.session_id.clone(),
            ..offer
        };
        self.order(token, order_body::Action::Put(offer))
    }

    /// The window `w` asks for, under a ticket signed as this session's.
    pub fn chunk_request(&self, w: GetWindow) -> ChunkRequest {
        let ticket = GetTicket {
            transfer_id: w.transfer_id,
            session_id: self.session_id.clone(),
            token: w.token,
            path: w.path,
            size: w.size,
            sha256: w.sha256,
            chunk_size: w.chunk_size,
        };
        ChunkRequest {
            ticket: Some(self.order(w.token, order_body::Action::Get(ticket))),
            first_index: w.first_index,
            count: w.count,
        }
    }
}

/// A getfile window as a test asks for it: the ticket's fields and the window, flat (as protocol
/// version 1 sent them). [`Signer::chunk_request`] signs the ticket.
#[derive(Debug, Clone)]
pub struct GetWindow {
    pub transfer_id: String,
    pub token: u64,
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u32,
    pub first_index: u64,
    pub count: u32,
}

/// One agent stream as the test broker sees it.
pub struct Conn {
    pub hello: Hello,
    /// The client certificate the agent presented (DER).
    pub peer_cert: Vec<u8>,
    /// Signs what [`Conn::command`], [`Conn::cancel`], [`Conn::chunk_request`] and
    /// [`Conn::put_offer`] send.
    pub signer: Signer,
    to_agent: mpsc::Sender<Result<BrokerMessage, Status>>,
    from_agent: mpsc::Receiver<AgentMessage>,
    pub heartbeats: u64,
}

impl Conn {
    pub async fn send(&self, body: broker_message::Body) {
        self.to_agent
            .send(Ok(BrokerMessage { body: Some(body) }))
            .await
            .expect("agent stream open");
    }

    /// Sends `order` as it is (signed or forged).
    pub async fn order(&self, order: Order) {
        self.send(broker_message::Body::Order(order)).await;
    }

    /// Sends `req` as it is (its ticket signed or forged).
    pub async fn send_chunk_request(&self, req: ChunkRequest) {
        self.send(broker_message::Body::ChunkRequest(req)).await;
    }

    /// A signed command of session [`SESSION`] under a grant for `token`.
    pub async fn command(&self, id: &str, token: u64, command: &str, args: &[&str], cwd: &str) {
        self.order(self.signer.command(id, token, command, args, cwd))
            .await;
    }

    /// A signed cancel of the command or transfer `id`.
    pub async fn cancel(&self, id: &str, token: u64) {
        self.order(self.signer.cancel(id, token)).await;
    }

    /// The next result, counting heartbeats on the way; panics after [`WAIT`].
    pub async fn result(&mut self) -> CommandResult {
        loop {
            let msg = tokio::time::timeout(WAIT, self.from_agent.recv())
                .await
                .expect("a message from the agent in time")
                .expect("agent stream open");
            match msg.body {
                Some(agent_message::Body::Result(r)) => return r,
                Some(agent_message::Body::Heartbeat(_)) => self.heartbeats += 1,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// A chunk request under a signed ticket.
    pub async fn chunk_request(&self, w: GetWindow) {
        self.send_chunk_request(self.signer.chunk_request(w)).await;
    }

    /// The next chunk or transfer end, counting heartbeats on the way; panics after [`WAIT`].
    pub async fn transfer(&mut self) -> Transfer {
        loop {
            let msg = tokio::time::timeout(WAIT, self.from_agent.recv())
                .await
                .expect("a message from the agent in time")
                .expect("agent stream open");
            match msg.body {
                Some(agent_message::Body::Chunk(c)) => return Transfer::Chunk(c),
                Some(agent_message::Body::TransferEnded(e)) => return Transfer::Ended(e),
                Some(agent_message::Body::PutProgress(p)) => return Transfer::Progress(p),
                Some(agent_message::Body::Heartbeat(_)) => self.heartbeats += 1,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// The next chunk; panics on anything else.
    pub async fn chunk(&mut self) -> Chunk {
        match self.transfer().await {
            Transfer::Chunk(c) => c,
            other => panic!("expected a chunk, got {other:?}"),
        }
    }

    /// The next transfer end; panics on anything else.
    pub async fn transfer_ended(&mut self) -> TransferEnded {
        match self.transfer().await {
            Transfer::Ended(e) => e,
            Transfer::Chunk(c) => panic!("expected the transfer's end, got chunk {}", c.index),
            other => panic!("expected the transfer's end, got {other:?}"),
        }
    }

    /// A signed put offer.
    pub async fn put_offer(&self, offer: PutOffer) {
        self.order(self.signer.put_offer(offer)).await;
    }

    pub async fn put_chunk(&self, chunk: PutChunk) {
        self.send(broker_message::Body::PutChunk(chunk)).await;
    }

    /// The next put progress; panics on anything else.
    pub async fn put_progress(&mut self) -> PutProgress {
        match self.transfer().await {
            Transfer::Progress(p) => p,
            other => panic!("expected put progress, got {other:?}"),
        }
    }

    /// The next renewal request, counting heartbeats on the way; panics after [`WAIT`].
    pub async fn renew_request(&mut self) -> RenewRequest {
        loop {
            let msg = tokio::time::timeout(WAIT, self.from_agent.recv())
                .await
                .expect("a renewal request in time")
                .expect("agent stream open");
            match msg.body {
                Some(agent_message::Body::Renew(r)) => return r,
                Some(agent_message::Body::Heartbeat(_)) => self.heartbeats += 1,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }

    /// Waits for one heartbeat.
    pub async fn heartbeat(&mut self) {
        let start = self.heartbeats;
        while self.heartbeats == start {
            let msg = tokio::time::timeout(WAIT, self.from_agent.recv())
                .await
                .expect("a heartbeat in time")
                .expect("agent stream open");
            match msg.body {
                Some(agent_message::Body::Heartbeat(_)) => self.heartbeats += 1,
                other => panic!("unexpected message {other:?}"),
            }
        }
    }
}

/// What the agent sends about a transfer.
#[derive(Debug)]
pub enum Transfer {
    Chunk(Chunk),
    Ended(TransferEnded),
    Progress(PutProgress),
}

/// What the test broker does with a hello.
#[derive(Clone)]
enum Answer {
    Welcome { node_id: u64 },
    Refuse(Status),
}

#[derive(Clone)]
struct Service {
    answer: Answer,
    signer: Signer,
    conns: mpsc::UnboundedSender<Conn>,
    epoch: Arc<Mutex<u64>>,
    refused: mpsc::UnboundedSender<Hello>,
}

#[tonic::async_trait]
impl AgentLink for Service {
    type AttachStream = ReceiverStream<Result<BrokerMessage, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let peer_cert = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.to_vec()))
            .unwrap_or_default();
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(AgentMessage {
                body: Some(agent_message::Body::Hello(h)),
            }) => h,
            _ => return Err(Status::invalid_argument("hello first")),
        };
        let node_id = match &self.answer {
            Answer::Refuse(status) => {
                let _ = self.refused.send(hello);
                return Err(status.clone());
            }
            Answer::Welcome { node_id } => *node_id,
        };
        let epoch = {
            let mut e = self.epoch.lock().unwrap();
            *e += 1;
            *e
        };
        let (to_agent, rx) = mpsc::channel(64);
        to_agent
            .send(Ok(BrokerMessage {
                body: Some(broker_message::Body::Welcome(Welcome {
                    protocol_version: agent::PROTOCOL_VERSION,
                    node_id,
                    epoch,
                    heartbeat_interval_ms: 200,
                })),
            }))
            .await
            .unwrap();
        let (tx, from_agent) = mpsc::channel(INBOUND_BUFFER);
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if tx.send(m).await.is_err() {
                    break;
                }
            }
        });
        let _ = self.conns.send(Conn {
            hello,
            peer_cert,
            signer: self.signer.clone(),
            to_agent,
            from_agent,
            heartbeats: 0,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// An `AgentLink` server on a loopback port with mutual TLS from [`Pki`].
pub struct TestBroker {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Conn>,
    refused: mpsc::UnboundedReceiver<Hello>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start(pki: &Pki, node_id: u64) -> Self {
        Self::start_with(pki, Answer::Welcome { node_id }).await
    }

    /// A broker that refuses every hello with `status`.
    pub async fn refusing(pki: &Pki, status: Status) -> Self {
        Self::start_with(pki, Answer::Refuse(status)).await
    }

    async fn start_with(pki: &Pki, answer: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let (refused_tx, refused) = mpsc::unbounded_channel();
        let service = Service {
            answer,
            signer: Signer::new(Arc::clone(&pki.authority)),
            conns: conns_tx,
            epoch: Arc::default(),
            refused: refused_tx,
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pki.server_cert, &pki.server_key))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(AgentLinkServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            conns,
            refused,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The next agent stream; panics after [`WAIT`].
    pub async fn accept(&mut self) -> Conn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .expect("the agent attaches in time")
            .expect("broker running")
    }

    /// The next refused hello; panics after [`WAIT`].
    pub async fn refused_hello(&mut self) -> Hello {
        tokio::time::timeout(WAIT, self.refused.recv())
            .await
            .expect("the agent tries in time")
            .expect("broker running")
    }

    /// Stops listening and ends the server once its streams are gone (drop the [`Conn`]s first).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("broker stops in time")
                .unwrap();
        }
    }
}

/// An agent config for these tests: fast backoff, short timeouts.
pub fn agent_config(pki: &Pki, brokers: &[SocketAddr], state_dir: &Path) -> Config {
    Config {
        device_id: "web-07".into(),
        tenant: "demo".into(),
        brokers: brokers.iter().map(ToString::to_string).collect(),
        authority_keys: vec![pki.authority.public().to_string()],
        state_dir: state_dir.to_owned(),
        system_root: "/".into(),
        work_dir: None,
        tags: Vec::new(),
        held_result_bytes: agent::DEFAULT_HELD_RESULT_BYTES,
        tls: pki.tls_paths(),
        connection: ConnectionConfig {
            connect_timeout_ms: 2_000,
            welcome_timeout_ms: 5_000,
            backoff_initial_ms: 50,
            backoff_max_ms: 500,
            keepalive_interval_ms: 5_000,
            ..ConnectionConfig::default()
        },
        tracing: Default::default(),
    }
}

/// An agent running in-process until [`RunningAgent::stop`].
pub struct RunningAgent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAgent {
    /// An agent dialling `brokers`, with a fresh state dir that lives as long as the guard.
    pub fn start_on(pki: &Pki, brokers: &[SocketAddr]) -> (tempfile::TempDir, Self) {
        let (guard, state_dir) = tempdir();
        (guard, Self::start(agent_config(pki, brokers, &state_dir)))
    }

    pub fn start(config: Config) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent::run(config, async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("agent stops in time")
            .unwrap()
            .unwrap();
    }
}

pub fn status(r: &CommandResult) -> agent_proto::agent::command_result::Status {
    agent_proto::agent::command_result::Status::try_from(r.status).unwrap()
}

pub fn output(r: &CommandResult) -> serde_json::Value {
    serde_json::from_str(&r.output_json).unwrap()
}

pub fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

pub fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_owned();
    (d, p)
}

/// A tree whose walk takes long enough that a cancel sent right after the command finds it
/// running (10,000 directories).
pub fn big_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let (guard, root) = tempdir();
    for i in 0..100 {
        for j in 0..100 {
            std::fs::create_dir_all(root.join(format!("d{i}/e{j}"))).unwrap();
        }
    }
    (guard, root)
}
