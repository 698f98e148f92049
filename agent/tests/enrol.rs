//! Enrolment and the certificate's life afterwards, over real TLS: `agent::enrol::enrol` against an
//! in-test `Enrolment` server (a broker certificate chained to a cluster CA, agent certificates
//! signed by an agent CA), then the enrolled agent on an in-test `AgentLink` broker trusting that
//! agent CA: renewal over the stream, an interrupted replacement finished before the dial, and an
//! expired certificate stopping the agent.

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agent::enrol::{EnrolError, EnrolOptions, enrol};
use agent_proto::agent::enrolment_server::{Enrolment, EnrolmentServer};
use agent_proto::agent::{EnrolReply, EnrolRequest, Renewed, broker_message};
use common::*;
use grants::AuthorityKey;
use pki::{BrokerIdentity, Ca, CaRole, IssuedPem};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

const TOKEN: &str = "lre_1_secret";

/// The two CAs, a broker certificate from the cluster CA (for localhost, 127.0.0.1, ::1) and the
/// lease authority's key.
struct Cluster {
    cluster: Ca,
    agents: Arc<Ca>,
    broker: IssuedPem,
    authority: Arc<AuthorityKey>,
}

impl Cluster {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cluster = Ca::generate(CaRole::Cluster).unwrap();
        let broker = cluster
            .issue_broker_pem(&BrokerIdentity::new("test", 1).unwrap(), &[])
            .unwrap();
        Self {
            cluster,
            agents: Arc::new(Ca::generate(CaRole::Agents).unwrap()),
            broker,
            authority: Arc::new(authority_key()),
        }
    }

    fn fingerprint(&self) -> String {
        pki::fingerprint(&pki::pem_to_der(self.cluster.ca_pem()).unwrap())
    }

    /// What a broker presents: its certificate, then the cluster CA.
    fn chain(&self) -> String {
        format!("{}{}", self.broker.cert_pem, self.cluster.ca_pem())
    }

    /// The agents' endpoint of this cluster: the broker's chain, trusting only the agent CA.
    fn link_pki(&self) -> Pki {
        Pki {
            dir: tempfile::tempdir().unwrap(),
            ca_pem: self.agents.ca_pem().to_owned(),
            server_cert: self.chain(),
            server_key: self.broker.key_pem.clone(),
            authority: Arc::clone(&self.authority),
        }
    }

    /// A certificate for a new key of web-07 in demo, valid for `lifetime`: (key, certificate).
    fn agent_cert(&self, lifetime: Duration) -> (String, String) {
        let request = pki::new_request("web-07").unwrap();
        let issued = self
            .agents
            .sign_agent_request(&request.csr_der, "demo", "web-07", lifetime)
            .unwrap();
        (request.key_pem, issued.cert_pem)
    }
}

/// The broker's enrolment, as far as the agent can tell: one token of tenant demo.
struct MockEnrolment {
    agents: Arc<Ca>,
    cluster_ca_pem: String,
    authority_keys: Vec<String>,
    lifetime: Duration,
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Enrolment for MockEnrolment {
    async fn enrol(&self, request: Request<EnrolRequest>) -> Result<Response<EnrolReply>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        if r.token != TOKEN {
            return Err(Status::unauthenticated("the enrolment token is unknown"));
        }
        if !r.tenant.is_empty() && r.tenant != "demo" {
            return Err(Status::permission_denied(
                "the token enrols into tenant demo",
            ));
        }
        let issued = self
            .agents
            .sign_agent_request(&r.csr_der, "demo", &r.device_id, self.lifetime)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(EnrolReply {
            tenant: "demo".into(),
            device_id: r.device_id,
            certificate_pem: issued.cert_pem,
            issuing_ca_pem: self.agents.ca_pem().to_owned(),
            cluster_ca_pem: self.cluster_ca_pem.clone(),
            authority_keys: self.authority_keys.clone(),
            expires_at_ms: issued.expires_at_ms,
        }))
    }
}

/// An `Enrolment` server on a loopback port: TLS with the broker's chain, no client certificate.
struct EnrolServer {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl EnrolServer {
    async fn start(cluster: &Cluster, lifetime: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let service = MockEnrolment {
            agents: Arc::clone(&cluster.agents),
            cluster_ca_pem: cluster.cluster.ca_pem().to_owned(),
            authority_keys: vec![cluster.authority.public().to_string()],
            lifetime,
            calls: Arc::clone(&calls),
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cluster.chain(), &cluster.broker.key_pem));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(EnrolmentServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            addr,
            calls,
            _stop: stop,
        }
    }
}

/// Enrolment of web-07 at `broker` with the right token and `fingerprint`, writing under `dir`.
fn options(broker: SocketAddr, fingerprint: &str, dir: &Path) -> EnrolOptions {
    EnrolOptions {
        broker: broker.to_string(),
        token: TOKEN.into(),
        ca_fingerprint: fingerprint.into(),
        device_id: "web-07".into(),
        tenant: None,
        state_dir: dir.join("state"),
        config: dir.join("etc/agent.toml"),
        server_name: None,
        tags: Vec::new(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der(pem: &str) -> Vec<u8> {
    pki::pem_to_der(pem).unwrap()
}

/// The enrolled config, with the test's fast reconnects.
fn fast(mut config: agent::Config) -> agent::Config {
    config.connection = agent::ConnectionConfig {
        backoff_initial_ms: 50,
        backoff_max_ms: 500,
        ..Default::default()
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_writes_the_key_certificates_and_config() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    let server = EnrolServer::start(&cluster, Duration::from_secs(3600)).await;
    let (_dir, dir) = tempdir();
    let options = EnrolOptions {
        tenant: Some("demo".into()),
        tags: vec!["pci".into()],
        // Pasted as a person might: prefixed, upper case, bytes separated.
        ca_fingerprint: format!(
            "SHA256:{}",
            cluster
                .fingerprint()
                .to_uppercase()
                .as_bytes()
                .chunks(2)
                .map(|b| std::str::from_utf8(b).unwrap())
                .collect::<Vec<_>>()
                .join(":")
        ),
        ..options(server.addr, "", &dir)
    };

    let config = enrol(&options).await.unwrap();

    let state = dir.join("state");
    let tls = state.join("tls");
    assert_eq!(config.device_id, "web-07");
    assert_eq!(config.tenant, "demo");
    assert_eq!(config.brokers, [server.addr.to_string()]);
    assert_eq!(
        config.authority_keys,
        [cluster.authority.public().to_string()]
    );
    assert_eq!(config.tags, ["pci"]);
    assert_eq!(config.state_dir, state);
    assert_eq!(config.tls.key, tls.join("agent.key"));
    assert_eq!(config.tls.cert, tls.join("agent.pem"));
    assert_eq!(config.tls.ca_cert, tls.join("cluster-ca.pem"));
    assert_eq!(config.tls.server_name, "127.0.0.1");
    assert_eq!(config.connection, agent::ConnectionConfig::default());

    let key = std::fs::read_to_string(&config.tls.key).unwrap();
    let cert = der(&std::fs::read_to_string(&config.tls.cert).unwrap());
    assert!(pki::certifies_key(&cert, &key).unwrap());
    let identity = pki::agent_identity(&cert).unwrap();
    assert_eq!(identity.to_string(), "lr-agent://demo/web-07");
    let read = |name: &str| std::fs::read_to_string(tls.join(name)).unwrap();
    assert_eq!(read("cluster-ca.pem"), cluster.cluster.ca_pem());
    assert_eq!(read("agent-ca.pem"), cluster.agents.ca_pem());
    assert_eq!(mode(&config.tls.key), 0o600);
    assert_eq!(mode(&options.config), 0o600);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&tls), 0o700);
    let written = std::fs::read_to_string(&options.config).unwrap();
    assert!(
        written.starts_with("# Written by `lr-agent enroll`"),
        "{written}"
    );
    assert!(!written.contains("[connection]"), "{written}");
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);

    // The agent runs with what was written: the cluster's agents' endpoint takes its certificate.
    let link = cluster.link_pki();
    let mut broker = TestBroker::start(&link, 1).await;
    let agent = RunningAgent::start(fast(agent::Config {
        brokers: vec![broker.addr.to_string()],
        ..config
    }));
    let conn = broker.accept().await;
    assert_eq!(conn.hello.device_id, "web-07");
    assert_eq!(conn.peer_cert, cert);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_without_the_pinned_ca_is_refused_and_nothing_is_written() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    let server = EnrolServer::start(&cluster, Duration::from_secs(3600)).await;
    let (_dir, dir) = tempdir();
    let stranger = Ca::generate(CaRole::Cluster).unwrap();
    let pin = pki::fingerprint(&der(stranger.ca_pem()));

    let error = enrol(&options(server.addr, &pin, &dir)).await.unwrap_err();
    assert!(
        matches!(error, EnrolError::CaNotPresented { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "the broker at {} presented no CA with fingerprint {pin}",
            server.addr
        )) && text.contains("check --ca-fingerprint, `lr admin enrolment create` prints it"),
        "{text}"
    );
    assert_eq!(server.calls.load(Ordering::SeqCst), 0, "the token was sent");
    assert!(!dir.join("state").exists() && !dir.join("etc").exists());

    // The pinned CA is there but the broker's certificate does not carry the expected name.
    let error = enrol(&EnrolOptions {
        server_name: Some("broker.elsewhere".into()),
        ..options(server.addr, &cluster.fingerprint(), &dir)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(error, EnrolError::BrokerCertificate { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("--server-name"), "{error}");
    assert_eq!(server.calls.load(Ordering::SeqCst), 0);
    assert!(!dir.join("state").exists() && !dir.join("etc").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_brokers_message_and_nothing_is_written() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    let server = EnrolServer::start(&cluster, Duration::from_secs(3600)).await;
    let (_dir, dir) = tempdir();
    let pin = cluster.fingerprint();

    let error = enrol(&EnrolOptions {
        token: "lre_1_wrong".into(),
        ..options(server.addr, &pin, &dir)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            &error,
            EnrolError::Refused { code: tonic::Code::Unauthenticated, message, .. }
                if message == "the enrolment token is unknown"
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("check --token"), "{error}");

    let error = enrol(&EnrolOptions {
        tenant: Some("other".into()),
        ..options(server.addr, &pin, &dir)
    })
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("refused the enrolment: the token enrols into tenant demo"),
        "{error}"
    );
    assert!(!dir.join("state").exists() && !dir.join("etc").exists());

    // Nobody listens: unreachable, which a script may retry.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = enrol(&options(closed, &pin, &dir)).await.unwrap_err();
    assert!(matches!(error, EnrolError::Unreachable { .. }), "{error:?}");
    assert!(!dir.join("state").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_renewed_over_the_stream_and_the_next_dial_presents_it() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    // Renewal is due two thirds into the lifetime: 6 s after enrolment.
    let server = EnrolServer::start(&cluster, Duration::from_secs(9)).await;
    let (_dir, dir) = tempdir();
    let config = enrol(&options(server.addr, &cluster.fingerprint(), &dir))
        .await
        .unwrap();
    let enrolled = std::fs::read(&config.tls.cert).unwrap();
    let link = cluster.link_pki();
    let mut broker = TestBroker::start(&link, 1).await;
    let agent = RunningAgent::start(fast(agent::Config {
        brokers: vec![broker.addr.to_string()],
        ..config.clone()
    }));
    let mut conn = broker.accept().await;

    // A refusal is asked again, with a new key, no sooner than the retry interval (1 s here).
    let first = conn.renew_request().await;
    conn.send(broker_message::Body::Renewed(Renewed {
        error: "the issuing ca is unavailable".into(),
        ..Default::default()
    }))
    .await;
    let refused_at = Instant::now();
    let second = conn.renew_request().await;
    assert!(
        refused_at.elapsed() >= Duration::from_millis(900),
        "asked again after {:?}",
        refused_at.elapsed()
    );
    assert_ne!(first.csr_der, second.csr_der, "a new key for each request");
    assert_eq!(std::fs::read(&config.tls.cert).unwrap(), enrolled);

    let issued = cluster
        .agents
        .sign_agent_request(&second.csr_der, "demo", "web-07", Duration::from_secs(3600))
        .unwrap();
    conn.send(broker_message::Body::Renewed(Renewed {
        certificate_pem: issued.cert_pem.clone(),
        expires_at_ms: issued.expires_at_ms,
        error: String::new(),
    }))
    .await;
    let renewed = testkit::wait_until(WAIT, || async {
        std::fs::read_to_string(&config.tls.cert).is_ok_and(|pem| pem == issued.cert_pem)
    })
    .await;
    assert!(renewed, "the renewed certificate was not written");
    let key = std::fs::read_to_string(&config.tls.key).unwrap();
    assert!(pki::certifies_key(&der(&issued.cert_pem), &key).unwrap());
    assert_eq!(mode(&config.tls.key), 0o600);

    // The next stream presents the renewed certificate.
    drop(conn);
    let conn = broker.accept().await;
    assert_eq!(conn.peer_cert, der(&issued.cert_pem));
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replacement_is_finished_before_the_dial() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    let server = EnrolServer::start(&cluster, Duration::from_secs(3600)).await;
    let (_dir, dir) = tempdir();
    let config = enrol(&options(server.addr, &cluster.fingerprint(), &dir))
        .await
        .unwrap();
    let next = |path: &Path| {
        path.with_extension(format!(
            "{}.next",
            path.extension().unwrap().to_str().unwrap()
        ))
    };
    let (key, cert) = (&config.tls.key, &config.tls.cert);

    // A key whose certificate never got written is discarded: the old pair stands.
    let enrolled = std::fs::read_to_string(cert).unwrap();
    let (orphan, _) = cluster.agent_cert(Duration::from_secs(3600));
    std::fs::write(next(key), orphan).unwrap();
    agent::TlsMaterial::load(&config.tls).unwrap();
    assert!(!next(key).exists());
    assert_eq!(std::fs::read_to_string(cert).unwrap(), enrolled);

    // A crash after both were written and the key renamed: the certificate follows its key.
    let (new_key, new_cert) = cluster.agent_cert(Duration::from_secs(3600));
    std::fs::write(key, &new_key).unwrap();
    std::fs::write(next(cert), &new_cert).unwrap();
    let link = cluster.link_pki();
    let mut broker = TestBroker::start(&link, 1).await;
    let agent = RunningAgent::start(fast(agent::Config {
        brokers: vec![broker.addr.to_string()],
        ..config.clone()
    }));
    let conn = broker.accept().await;
    assert_eq!(conn.peer_cert, der(&new_cert));
    assert!(!next(cert).exists());
    assert_eq!(std::fs::read_to_string(cert).unwrap(), new_cert);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_stops_the_agent_with_what_to_do() {
    testkit::init_tracing();
    let cluster = Cluster::new();
    let server = EnrolServer::start(&cluster, Duration::from_secs(3600)).await;
    let (_dir, dir) = tempdir();
    let config = enrol(&options(server.addr, &cluster.fingerprint(), &dir))
        .await
        .unwrap();
    let (key, cert) = cluster.agent_cert(Duration::ZERO);
    std::fs::write(&config.tls.key, key).unwrap();
    std::fs::write(&config.tls.cert, &cert).unwrap();
    let expired_at = pki::validity(&der(&cert)).unwrap().not_after_ms;
    assert!(testkit::wait_until(WAIT, || async { now_ms() > expired_at }).await);

    let run = agent::run(config, std::future::pending());
    let error = tokio::time::timeout(WAIT, run)
        .await
        .expect("the agent stops in time")
        .unwrap_err();
    let text = format!("{error:#}");
    let at = jiff::Timestamp::from_millisecond(expired_at as i64).unwrap();
    assert!(
        text.contains(&format!("the device's certificate expired at {at}"))
            && text.contains("enrol again with `lr-agent enroll")
            && text.contains("an agent offline past its certificate's expiry must enrol again"),
        "{text}"
    );
    assert!(error.downcast_ref::<agent::CertificateExpired>().is_some());
}
