//! `AuditLog` against a real nats-server with JetStream: two brokers appending to one tenant's
//! chain at once, tampering found and named, a truncated tail caught by the checkpoint, tenant
//! isolation of outputs, and a write refused when JetStream is gone.
//!
//! The server here lets the test itself delete and forge messages, as an intruder with
//! administrator rights on NATS could; brokers' own credentials cannot (see `trust.rs`).

use std::time::Duration;

use api_model::{AuditFilter, AuditKind};
use async_nats::jetstream;
use broker::audit::chain::Checkpoint;
use broker::audit::{AuditLog, AuditSection, Event, STREAM};
use serde_json::{Value, json};
use sha2::Digest as _;
use testkit::NatsServer;

const WAIT: Duration = Duration::from_secs(60);

fn plain_nats() -> NatsServer {
    NatsServer::start_with(|listen, store| {
        format!(
            "listen: {listen}\njetstream {{ store_dir: {:?} }}\n",
            store.display().to_string()
        )
    })
}

async fn log(nats: &NatsServer, node: u64) -> (AuditLog, async_nats::Client) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let log = AuditLog::open(client.clone(), &AuditSection::default(), node)
        .await
        .unwrap();
    (log, client)
}

fn command(n: usize) -> Event {
    Event::new(
        AuditKind::CommandSubmitted,
        json!({"command_line": format!("dir /tmp/{n}")}),
    )
    .user("analyst-a")
    .device("web-07")
    .session("s1")
}

/// Stream sequence numbers of the tenant's entries, in order.
async fn entry_sequences(client: &async_nats::Client, tenant: &str) -> Vec<u64> {
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(STREAM).await.unwrap();
    let last = stream
        .get_last_raw_message_by_subject(&format!("lr.{tenant}.audit.log"))
        .await
        .unwrap()
        .sequence;
    let mut found = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = stream.get_raw_message(seq).await
            && m.subject.as_str() == format!("lr.{tenant}.audit.log")
        {
            found.push(seq);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_appending_at_once_keep_one_chain() {
    let nats = plain_nats();
    let (one, _) = log(&nats, 1).await;
    let (two, client) = log(&nats, 2).await;
    let write = |log: AuditLog| async move {
        for n in 0..60 {
            log.record("demo", command(n)).await.unwrap();
        }
    };
    let (a, b) = tokio::time::timeout(
        WAIT,
        futures::future::join(tokio::spawn(write(one.clone())), tokio::spawn(write(two))),
    )
    .await
    .unwrap();
    a.unwrap();
    b.unwrap();
    let walk = one.walk("demo", None).await.unwrap();
    assert_eq!(walk.broken, None);
    assert_eq!((walk.entries, walk.head_seq), (120, 120));
    let (entries, _) = one
        .read("demo", &AuditFilter::default(), None, 1000)
        .await
        .unwrap();
    let nodes: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.node).collect();
    assert_eq!(nodes.len(), 2, "both brokers wrote entries");
    assert_eq!(entry_sequences(&client, "demo").await.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_named_at_the_entry_where_it_happened() {
    let nats = plain_nats();
    let (log, client) = log(&nats, 1).await;
    for n in 0..30 {
        log.record("demo", command(n)).await.unwrap();
    }
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(STREAM).await.unwrap();
    let sequences = entry_sequences(&client, "demo").await;

    // A forged entry appended directly: a copy of entry 5 with another command line, numbered
    // as the next entry.
    let original: Value =
        serde_json::from_slice(&stream.get_raw_message(sequences[4]).await.unwrap().payload)
            .unwrap();
    let mut forged = original.clone();
    forged["seq"] = json!(31);
    forged["details"]["command_line"] = json!("rm -rf /");
    js.publish(
        "lr.demo.audit.log",
        serde_json::to_vec(&forged).unwrap().into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let walk = log.walk("demo", None).await.unwrap();
    let (at, why) = walk.broken.unwrap();
    assert_eq!(at, 31, "{why}");
    assert!(why.contains("edited"), "{why}");

    // Entry 12 removed.
    stream.delete_message(sequences[11]).await.unwrap();
    let (at, why) = log.walk("demo", None).await.unwrap().broken.unwrap();
    assert_eq!(at, 12, "{why}");
    assert!(why.contains("missing"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_tail_is_caught_by_the_checkpoint() {
    let nats = plain_nats();
    let (log, client) = log(&nats, 1).await;
    let mut last = None;
    for n in 0..10 {
        last = Some(log.record("demo", command(n)).await.unwrap());
    }
    let last = last.unwrap();
    let checkpoint = Checkpoint {
        seq: last.seq,
        hash: last.hash.clone(),
        cut: None,
    };
    let walk = log.walk("demo", Some(checkpoint.clone())).await.unwrap();
    assert_eq!(walk.broken, None);
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(STREAM).await.unwrap();
    let sequences = entry_sequences(&client, "demo").await;
    for seq in &sequences[7..] {
        stream.delete_message(*seq).await.unwrap();
    }
    let (at, why) = log
        .walk("demo", Some(checkpoint))
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(at, 8, "{why}");
    assert!(why.contains("checkpoint"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_stored_once_per_tenant_checked_by_the_walk_and_filters_apply() {
    let nats = plain_nats();
    let (log, _) = log(&nats, 1).await;
    let finished = Event::new(
        AuditKind::CommandFinished,
        json!({"command_line": "processes", "state": "completed"}),
    )
    .user("analyst-a")
    .device("web-07")
    .session("s1")
    .command("c1")
    .output(
        bytes::Bytes::from_static(b"{\"processes\":[]}"),
        access::Role::ResponderBasic,
    );
    let entry = log.record("demo", finished).await.unwrap();
    let reference = entry.output_ref.clone().unwrap();
    assert_eq!(
        entry.details["output_sha256"],
        json!(hex::encode(sha2::Sha256::digest(b"{\"processes\":[]}")))
    );
    let output = log.output("demo", &reference).await.unwrap().unwrap();
    assert_eq!(&output.body[..], b"{\"processes\":[]}");
    assert_eq!(output.role, access::Role::ResponderBasic);
    assert!(log.output("acme", &reference).await.unwrap().is_none());
    assert_eq!(log.walk("demo", None).await.unwrap().broken, None);
    // An output is part of its entry: deleting it breaks the chain there.
    let client = async_nats::connect(nats.url()).await.unwrap();
    jetstream::new(client)
        .get_stream(STREAM)
        .await
        .unwrap()
        .delete_message(reference.parse().unwrap())
        .await
        .unwrap();
    let (at, why) = log.walk("demo", None).await.unwrap().broken.unwrap();
    assert_eq!(at, entry.seq, "{why}");
    assert!(why.contains("output") && why.contains("removed"), "{why}");

    log.record("acme", command(1)).await.unwrap();
    log.record("demo", command(2).user("analyst-b"))
        .await
        .unwrap();
    let only_b = AuditFilter {
        user: Some("analyst-b".into()),
        ..AuditFilter::default()
    };
    let (entries, _) = log.read("demo", &only_b, None, 100).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].tenant, "demo");
    // Pages: one entry each, the cursor carries on.
    let (first, next) = log
        .read("demo", &AuditFilter::default(), None, 1)
        .await
        .unwrap();
    assert_eq!(first[0].seq, 1);
    let (second, _) = log
        .read("demo", &AuditFilter::default(), next, 1)
        .await
        .unwrap();
    assert_eq!(second[0].seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_recorded_when_jetstream_is_gone() {
    let nats = plain_nats();
    let (log, _) = log(&nats, 1).await;
    log.record("demo", command(1)).await.unwrap();
    drop(nats);
    let error = tokio::time::timeout(WAIT, log.record("demo", command(2)))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(error.contains("nothing was done"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_exported_as_json_lines_as_they_are_written() {
    let nats = plain_nats();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.jsonl");
    let config = AuditSection {
        export_file: Some(file.clone()),
        ..AuditSection::default()
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let log = AuditLog::open(client, &config, 1).await.unwrap();
    let first = log.record("demo", command(1)).await.unwrap();
    let second = log.record("acme", command(2)).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["hash"], json!(first.hash));
    assert_eq!(lines[1]["tenant"], "acme");
    assert_eq!(lines[1]["hash"], json!(second.hash));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_are_sent_to_syslog_as_they_are_written() {
    let nats = plain_nats();
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = AuditSection {
        export_syslog: Some(receiver.local_addr().unwrap().to_string()),
        ..AuditSection::default()
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let log = AuditLog::open(client, &config, 1).await.unwrap();
    let entry = log.record("demo", command(1)).await.unwrap();
    let mut buffer = vec![0u8; 65_536];
    let size = receiver.recv(&mut buffer).unwrap();
    let message = String::from_utf8_lossy(&buffer[..size]).to_string();
    assert!(message.starts_with("<110>1 "), "{message}");
    let json = &message[message.find('{').unwrap()..];
    let sent: Value = serde_json::from_str(json).unwrap();
    assert_eq!(sent["hash"], json!(entry.hash));
}
