//! What a stranger can hold of the API: connections that never start TLS or a request are closed,
//! idle connections past the cap wait in the listen backlog, running out of file descriptors
//! pauses accepts instead of spinning, and a session's live stream ends with the session. Real
//! `lr-broker` processes and raw sockets on loopback.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Stack, WAIT};
use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// How long a connection the broker should close may stay open: far past the timeouts the tests
/// set, far short of forever.
const CLOSED_WITHIN: Duration = Duration::from_secs(15);
/// How long the broker's CPU time is watched while it holds idle connections.
const WATCH: Duration = Duration::from_secs(3);
/// What the broker may spend of one core over [`WATCH`] while nothing happens: a loop retrying
/// a failed accept at once spends all of it.
const MAX_IDLE_CPU: f64 = 0.25;

/// The broker's process id.
fn pid(stack: &Stack) -> u32 {
    stack.brokers[&1].child.as_ref().unwrap().id()
}

/// Its file descriptors open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// CPU time (user and system) a process has used, from `/proc/<pid>/stat` (clock ticks, which
/// Linux reports at 100 a second whatever the kernel's own tick).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15; this list starts at field 3.
    Duration::from_millis((fields[11] + fields[12]) * 10)
}

/// The share of one core the broker used over [`WATCH`].
async fn cpu_share(pid: u32) -> f64 {
    let before = cpu_time(pid);
    tokio::time::sleep(WATCH).await;
    (cpu_time(pid) - before).as_secs_f64() / WATCH.as_secs_f64()
}

/// This process's soft limit on open files.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

async fn idle_connections(stack: &Stack, n: usize) -> Vec<TcpStream> {
    let port = stack.brokers[&1].api_port;
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n {
        connections.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    connections
}

/// A client of its own: no pooled connection of the stack's client holds a slot for it.
fn fresh_client(stack: &Stack) -> reqwest::Client {
    let ca = std::fs::read(stack.ca_path()).unwrap();
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn healthz(client: reqwest::Client, url: String) -> StatusCode {
    client
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Reads until the peer closes; how long that took, or None if it did not within [`CLOSED_WITHIN`].
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(mut stream: S) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(CLOSED_WITHIN, async {
        // Without close_notify a TLS read ends in an error, which is a close too.
        while let Ok(n) = stream.read(&mut buf).await
            && n > 0
        {}
    })
    .await
    .ok()
    .map(|()| start.elapsed())
}

async fn tls(stack: &Stack, alpn: &[u8]) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(stack.ca_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", stack.brokers[&1].api_port))
        .await
        .unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(alpn));
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_starts_tls_or_a_request_is_closed() {
    let stack =
        Stack::start_with_api(2, "handshake_timeout_ms = 500\nheader_timeout_ms = 500", "").await;

    let silent = TcpStream::connect(("127.0.0.1", stack.brokers[&1].api_port))
        .await
        .unwrap();
    let after = closed_after(silent).await;
    assert!(
        after.is_some_and(|t| t >= Duration::from_millis(400)),
        "a connection that never started tls: {after:?}"
    );

    for alpn in [&b"http/1.1"[..], b"h2"] {
        let after = closed_after(tls(&stack, alpn).await).await;
        assert!(
            after.is_some_and(|t| t >= Duration::from_millis(400)),
            "a {} connection that never sent a request: {after:?}",
            String::from_utf8_lossy(alpn)
        );
    }

    // A client that does speak is served.
    let status = healthz(fresh_client(&stack), stack.url(1)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_stop_a_request_nor_make_the_broker_spin() {
    // Both this process and the broker (which inherits the limit) hold one descriptor a
    // connection: fewer than 2,000 where `ulimit -n` is low.
    let n = 2_000.min(open_files_limit().saturating_sub(300));
    assert!(n >= 500, "raise `ulimit -n` to run this test");
    let stack = Stack::start_with_api(2, "handshake_timeout_ms = 60000", "").await;
    let pid = pid(&stack);
    let before = open_fds(pid);

    let _idle = idle_connections(&stack, n).await;
    let accepted = testkit::wait_until(WAIT, || async { open_fds(pid) >= before + n }).await;
    assert!(accepted, "the broker did not accept {n} connections");

    let share = cpu_share(pid).await;
    assert!(
        share < MAX_IDLE_CPU,
        "{n} idle connections: {share:.2} of a core"
    );
    let started = Instant::now();
    let status = healthz(fresh_client(&stack), stack.url(1)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_wait_in_the_backlog_until_one_closes() {
    let stack = Stack::start_with_api(
        2,
        "max_connections = 4\nhandshake_timeout_ms = 60000\nheader_timeout_ms = 60000",
        "",
    )
    .await;
    // Four or more slots held (one may be the stack client's pooled connection).
    let idle = idle_connections(&stack, 4).await;
    let mut request = tokio::spawn(healthz(fresh_client(&stack), stack.url(1)));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut request)
            .await
            .is_err(),
        "a connection past the cap was served"
    );

    drop(idle);
    let status = tokio::time::timeout(WAIT, request).await;
    assert!(matches!(status, Ok(Ok(StatusCode::OK))), "{status:?}");
    assert!(
        stack.log(1).contains("api at its connection limit"),
        "{}",
        stack.log(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_pauses_accepts_instead_of_spinning() {
    let stack = Stack::start_with_api(2, "handshake_timeout_ms = 60000", "").await;
    let pid = pid(&stack);
    // Room for 50 more files, then accept fails with EMFILE.
    let limit = open_fds(pid) + 50;
    let lowered = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(lowered.success());

    // 50 accepted, the rest in the listen backlog (128 connections by default).
    let idle = idle_connections(&stack, 120).await;
    let full = testkit::wait_until(WAIT, || async { open_fds(pid) >= limit }).await;
    assert!(full, "the broker holds {} files of {limit}", open_fds(pid));

    let share = cpu_share(pid).await;
    assert!(
        share < MAX_IDLE_CPU,
        "out of descriptors: {share:.2} of a core"
    );
    let warnings = stack
        .log(1)
        .matches("api cannot accept connections")
        .count();
    assert_eq!(warnings, 1, "{}", stack.log(1));

    // Once descriptors free, accepts resume and a request waiting in the backlog is served.
    let request = tokio::spawn(healthz(fresh_client(&stack), stack.url(1)));
    drop(idle);
    let status = tokio::time::timeout(WAIT, request).await;
    assert!(matches!(status, Ok(Ok(StatusCode::OK))), "{status:?}");
}

/// A stack of three brokers with `web-07` online through node 2, a session of analyst-a opened
/// through node 1 (where it lives), and its event stream read through node 2.
async fn listening_to_a_session() -> (Stack, String, reqwest::Response) {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[2]).await;
    stack.wait_online("token-a", "web-07", Some(2)).await;
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    let events = stack
        .http
        .get(format!("{}/api/v1/sessions/{id}/events", stack.url(2)))
        .bearer_auth("token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    (stack, id, events)
}

/// Reads an event stream to its end; what it held, or None if it did not end within `limit`.
async fn read_to_end(events: reqwest::Response, limit: Duration) -> Result<String, String> {
    use futures::StreamExt;
    let mut body = events.bytes_stream();
    let mut seen = String::new();
    let ended = tokio::time::timeout(limit, async {
        while let Some(Ok(chunk)) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    if ended.is_ok() { Ok(seen) } else { Err(seen) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_ends_when_its_session_ends() {
    let (stack, id, events) = listening_to_a_session().await;
    let (status, _) = stack
        .delete(1, "token-a", &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Well before the stream's own check (every 15 s): the session said it ended.
    let seen = read_to_end(events, Duration::from_secs(10)).await;
    let ended = format!("event: ended\ndata: {{\"session_id\":\"{id}\"}}");
    assert!(seen.as_ref().is_ok_and(|s| s.contains(&ended)), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_follows_its_session_to_the_node_that_adopts_it() {
    let (mut stack, id, events) = listening_to_a_session().await;
    let reading = tokio::spawn(read_to_end(events, 3 * WAIT));
    // The session's node dies without a goodbye: the stream stays open while another node
    // adopts the session, and carries what the session does there.
    stack.kill(1);
    let moved = testkit::wait_until(WAIT, || async {
        let (status, view) = stack
            .get(2, "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        status == StatusCode::OK && view["node"] != 1
    })
    .await;
    assert!(moved, "the session was not adopted");
    assert_eq!(
        stack.run(2, "token-a", &id, "dir").await["state"],
        "completed"
    );
    let (status, _) = stack
        .delete(2, "token-a", &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let seen = reading.await.unwrap();
    let ended = format!("event: ended\ndata: {{\"session_id\":\"{id}\"}}");
    assert!(
        seen.as_ref()
            .is_ok_and(|s| s.contains("event: command") && s.contains(&ended)),
        "{seen:?}"
    );
}

#[test]
fn a_bad_api_limit_stops_the_broker_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        ("max_connections", "0"),
        ("handshake_timeout_ms", "10"),
        ("header_timeout_ms", "600000"),
    ] {
        let config = dir.path().join("broker.toml");
        std::fs::write(
            &config,
            format!(
                r#"node_id = 1
data_dir = "{data}"
nats_url = "tls://127.0.0.1:4222"

[raft]
listen = "127.0.0.1:7001"
members = [{{ id = 1, addr = "127.0.0.1:7001" }}, {{ id = 2, addr = "127.0.0.1:7004" }}]
authority_key = "authority.key"

[agents]
listen = "127.0.0.1:7002"

[api]
listen = "127.0.0.1:7003"
{key} = {value}

[tls]
cluster_ca = "ca.pem"
agent_ca = "agent-ca.pem"
cert = "broker.pem"
key = "broker.key"
"#,
                data = dir.path().display()
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lr-broker"))
            .args(["run", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {stderr}");
        assert!(stderr.contains(&format!("api.{key}")), "{key}: {stderr}");
    }
}
