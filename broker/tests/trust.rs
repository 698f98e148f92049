//! The broker's trust boundaries with real processes, real TLS and a real nats-server: NATS admits
//! brokers alone and only to what brokers use; oversized NATS and Raft messages are refused
//! without the receiving process growing; malformed ids are refused in config and over the API.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use agent_proto::raft::RaftPayload;
use agent_proto::raft::raft_client::RaftClient;
use common::{Stack, connect_as_broker, secure_nats};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const MIB: usize = 1024 * 1024;

fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A NATS connection attempt without retries; `Err` when the server does not admit it.
async fn try_nats(
    url: &str,
    certs: &Path,
    client_cert: Option<(&str, &str)>,
) -> Result<async_nats::Client, String> {
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .add_root_certificates(certs.join("cluster-ca.pem"));
    if let Some((cert, key)) = client_cert {
        options = options.add_client_certificate(certs.join(cert), certs.join(key));
    }
    let client = options.connect(url).await.map_err(|e| e.to_string())?;
    client.flush().await.map_err(|e| e.to_string())?;
    Ok(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_admits_brokers_alone_and_only_to_what_brokers_use() {
    provider();
    let certs = tempfile::tempdir().unwrap();
    let nats = secure_nats(certs.path(), 2);
    let dir = certs.path();
    pki::ensure_ca(dir, pki::CaRole::Agents)
        .unwrap()
        .issue_agent(dir, "demo", "web-07")
        .unwrap();
    // A cluster-CA broker certificate for a node nats-server does not list.
    let cluster_ca = pki::ensure_ca(dir, pki::CaRole::Cluster).unwrap();
    cluster_ca
        .issue_broker(
            dir,
            &pki::BrokerIdentity::new(common::CLUSTER, 9).unwrap(),
            &[],
        )
        .unwrap();

    // Without credentials: plain, and TLS without a client certificate.
    let plain = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://127.0.0.1:{}", nats.port))
        .await;
    assert!(plain.is_err(), "a client without tls was admitted");
    assert!(
        try_nats(&nats.url(), dir, None).await.is_err(),
        "a client without a certificate was admitted"
    );
    // An agent's material: its certificate comes from the agent CA.
    let agent = try_nats(
        &nats.url(),
        dir,
        Some(("agent-web-07.pem", "agent-web-07.key")),
    )
    .await;
    assert!(agent.is_err(), "an agent certificate was admitted");
    // A broker certificate of the cluster that is no listed user.
    let stranger = try_nats(&nats.url(), dir, Some(("broker-9.pem", "broker-9.key"))).await;
    let error = stranger.expect_err("an unlisted broker was admitted");
    assert!(error.to_lowercase().contains("authorization"), "{error}");
    assert!(nats.log().contains("TLS handshake error"), "{}", nats.log());

    // A listed broker is admitted, and may use `lr.>` but nothing outside a broker's needs.
    let broker = try_nats(&nats.url(), dir, Some(("broker-2.pem", "broker-2.key")))
        .await
        .expect("broker 2 was refused");
    let mut echo = broker.subscribe("lr.demo.dev.web-07.cmd").await.unwrap();
    broker
        .publish("lr.demo.dev.web-07.cmd", "x".into())
        .await
        .unwrap();
    broker.flush().await.unwrap();
    let got =
        tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut echo)).await;
    assert!(matches!(got, Ok(Some(_))), "a broker could not use lr.>");
    let _ = broker.subscribe(">").await;
    let _ = broker.publish("$JS.API.STREAM.LIST", "{}".into()).await;
    let _ = broker
        .publish("$JS.API.STREAM.DELETE.OTHER", "".into())
        .await;
    // The audit log: no broker may delete the stream or change it (retention's purges and
    // deletions are allowed, and caught by the verifier beyond the cut the cluster recorded).
    for api in ["DELETE", "UPDATE"] {
        let _ = broker
            .publish(format!("$JS.API.STREAM.{api}.LR_AUDIT"), "{}".into())
            .await;
    }
    let _ = broker.flush().await;
    let refused = testkit::wait_until(Duration::from_secs(10), || async {
        let log = nats.log();
        log.contains("Subscription Violation - Subject \">\"")
            && log.contains("Publish Violation - Subject \"$JS.API.STREAM.LIST\"")
            && log.contains("Publish Violation - Subject \"$JS.API.STREAM.DELETE.OTHER\"")
            && ["DELETE", "UPDATE"].iter().all(|api| {
                log.contains(&format!(
                    "Publish Violation - Subject \"$JS.API.STREAM.{api}.LR_AUDIT\""
                ))
            })
    })
    .await;
    assert!(refused, "nats-server did not refuse: {}", nats.log());
}

/// Resident set size and its peak of a process, in bytes (after resetting the peak).
fn memory(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak resident size (`VmHWM`) of `pid` to its current size.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

fn tls_client(certs: &Path, cert: &str, key: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(certs.join("cluster-ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(certs.join(cert))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(certs.join(key)).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_nats_message_is_refused_without_the_server_growing() {
    provider();
    let certs = tempfile::tempdir().unwrap();
    let nats = secure_nats(certs.path(), 1);
    // Warm the server up with a real broker connection first.
    let _broker = connect_as_broker(&nats, certs.path(), 1).await;

    // A raw client with broker 1's credentials, which announces 100 MiB and sends them.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .unwrap();
    let mut plain = BufReader::new(tcp);
    let mut info = String::new();
    plain.read_line(&mut info).await.unwrap();
    assert!(info.starts_with("INFO "), "{info}");
    let connector = tls_client(certs.path(), "broker-1.pem", "broker-1.key");
    let mut tls = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            plain.into_inner(),
        )
        .await
        .unwrap();
    tls.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true}\r\nPING\r\n",
    )
    .await
    .unwrap();
    let mut answer = vec![0; 4096];
    let n = tls.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).contains("PONG"));

    let pid = nats.pid();
    reset_peak(pid);
    let (before, _) = memory(pid);
    let size = 100 * MIB;
    tls.write_all(format!("PUB lr.demo.x {size}\r\n").as_bytes())
        .await
        .unwrap();
    let block = vec![b'x'; MIB];
    // The server refuses at the header and hangs up; writing on is allowed to fail.
    for _ in 0..size / MIB {
        if tls.write_all(&block).await.is_err() {
            break;
        }
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("Maximum Payload Violation"), "{reply}");
    let (_, peak) = memory(pid);
    assert!(
        peak < before + 32 * MIB,
        "nats-server grew from {before} to {peak} bytes on a refused message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_raft_message_is_refused_without_the_broker_growing() {
    let stack = Stack::start(3, "").await;
    let certs = stack.certs.clone();
    let read = |name: &str| std::fs::read(certs.join(name)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("cluster-ca.pem")))
        .identity(Identity::from_pem(
            read("broker-1.pem"),
            read("broker-1.key"),
        ))
        .domain_name("127.0.0.1");
    let channel =
        Endpoint::from_shared(format!("https://127.0.0.1:{}", stack.brokers[&2].raft_port))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
    // A member's credentials: the size bound holds even for a peer.
    let mut raft = RaftClient::new(channel).max_encoding_message_size(usize::MAX);
    let pid = stack.brokers[&2].child.as_ref().unwrap().id();
    reset_peak(pid);
    let (before, _) = memory(pid);
    let status = raft
        .forward(RaftPayload {
            payload: vec![b' '; 64 * MIB],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    let (_, peak) = memory(pid);
    assert!(
        peak < before + 32 * MIB,
        "broker 2 grew from {before} to {peak} bytes on a refused message"
    );
    // The cluster carries on.
    stack.wait_healthy(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_ids_over_the_api_are_refused_with_the_rule() {
    let stack = Stack::start(3, "").await;
    let (status, body) = stack.open(1, "token-a", "web.07").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["rule"]
            .as_str()
            .unwrap()
            .contains("A-Z a-z 0-9 _ -"),
        "{body}"
    );
    let (status, body) = stack.get(1, "token-a", "/api/v1/sessions/a.b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session id"),
        "{body}"
    );
    let (status, body) = stack.get(1, "token-a", "/api/v1/transfers/x*").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A library name with a newline, which would forge a line in listings and logs.
    let response = stack
        .http
        .put(format!("{}/api/v1/library/two%0Alines.sh", stack.url(1)))
        .bearer_auth("token-a")
        .body("echo hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("control character"),
        "{body}"
    );
    let (_, listed) = stack.get(1, "token-a", "/api/v1/library").await;
    assert_eq!(listed["items"], json!([]), "nothing was stored");
}

/// Runs `lr-broker run` on broker 1's config as `edit` changes it; returns its exit code and stderr.
fn run_with(stack: &Stack, name: &str, edit: impl Fn(String) -> String) -> (Option<i32>, String) {
    let config = stack.brokers[&1].config.clone();
    let text = edit(std::fs::read_to_string(&config).unwrap());
    let path = stack.path().join(name);
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lr-broker"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_tenants_in_config_stop_the_broker_naming_the_key() {
    let stack = Stack::start(3, "").await;
    // `acme.eu` would share the subject and key space of `acme`.
    let (code, stderr) = run_with(&stack, "tenants.toml", |t| {
        format!("{t}\n[tenants.\"acme.eu\"]\nmax_sessions_per_tenant = 5\n")
    });
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("tenants.acme.eu"), "{stderr}");
    assert!(stderr.contains("NATS subject"), "{stderr}");
    let (code, stderr) = run_with(&stack, "token.toml", |t| {
        t.replacen("tenant = \"demo\"", "tenant = \"demo.eu\"", 1)
    });
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("api.tokens[0].tenant"), "{stderr}");
    let (code, stderr) = run_with(&stack, "cluster.toml", |t| {
        format!("cluster_name = \"a.b\"\n{t}")
    });
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("cluster_name"), "{stderr}");
    // A certificate issued to another node is refused at start, naming both identities.
    let (code, stderr) = run_with(&stack, "other.toml", |t| {
        format!("cluster_name = \"other\"\n{t}")
    });
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("lr-broker://local/1") && stderr.contains("lr-broker://other/1"),
        "{stderr}"
    );
}
