//! getfile, putfile and the library through a real 3-broker cluster, real nats-server with
//! JetStream and a real agent: failover of the transfer's owner and of the agent's node, corrupted
//! chunks, a file that changes mid-transfer, HTTP Range and the console's resumed download, and the
//! library's rules.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent::testing::{self, Corruption};
use common::Stack;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "token-a";
/// Chunks of 256 KiB and windows of 8 keep the tests' files small and their windows many.
const SETTINGS: &str = "[transfers]\nchunk_size = 262144\nwindow_chunks = 8\nmax_library_file_bytes = 3000000\n\n[tenants.demo]\nmax_getfile_bytes = 64000000\n";
const CHUNK: u64 = 262_144;
const WINDOW: u64 = 8;

fn random_file(path: &Path, size: usize) -> String {
    let mut data = vec![0u8; size];
    fill_random(&mut (0x9E37_79B9_7F4A_7C15 ^ size as u64), &mut data);
    std::fs::write(path, &data).unwrap();
    hex::encode(Sha256::digest(&data))
}

/// Fills `data` from a xorshift generator at `state`: fast, and different for every seed.
fn fill_random(state: &mut u64, data: &mut [u8]) {
    for byte in data.iter_mut() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *byte = *state as u8;
    }
}

/// A sparse file of `size` bytes with random bytes every 64 KiB (far less than a chunk), so a
/// misplaced or lost chunk still changes the hash; returns its SHA-256. It takes a few MiB of
/// disk however large it is, leaving the disk to the store under test.
fn sparse_random_file(path: &Path, size: u64) -> String {
    use std::io::{Read, Seek, SeekFrom, Write};
    const STRIDE: u64 = 64 * 1024;
    let mut file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    file.set_len(size).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15 ^ size;
    for offset in (0..size).step_by(STRIDE as usize) {
        let mut mark = [0u8; 64];
        fill_random(&mut state, &mut mark);
        let len = mark.len().min((size - offset) as usize);
        file.seek(SeekFrom::Start(offset)).unwrap();
        file.write_all(&mark[..len]).unwrap();
    }
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).unwrap();
        if n == 0 {
            break hex::encode(hash.finalize());
        }
        hash.update(&buffer[..n]);
    }
}

async fn session(stack: &Stack, node: u64, device: &str) -> String {
    let (status, session) = stack.open(node, TOKEN, device).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    session["session_id"].as_str().unwrap().to_string()
}

/// Starts `line` (a getfile) and returns its transfer id.
async fn start(stack: &Stack, node: u64, session: &str, line: &str) -> String {
    let command = stack.run(node, TOKEN, session, line).await;
    assert_eq!(command["state"], "completed", "{line}: {command}");
    command["output"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Starts `getfile <path> -auto` and returns its transfer id.
async fn getfile(stack: &Stack, node: u64, session: &str, path: &Path) -> String {
    start(
        stack,
        node,
        session,
        &format!("getfile {} -auto", path.display()),
    )
    .await
}

async fn transfer(stack: &Stack, node: u64, id: &str) -> Value {
    let (status, view) = stack
        .get(node, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

/// Waits until the transfer ends; returns its final view.
async fn finished(stack: &Stack, node: u64, id: &str) -> Value {
    stack.transfer_finished(node, TOKEN, id).await
}

async fn wait_for_progress(stack: &Stack, node: u64, id: &str, chunks: u64) {
    let reached = testkit::wait_until(Duration::from_secs(60), || async {
        transfer(stack, node, id).await["chunks_done"]
            .as_u64()
            .is_some_and(|done| done >= chunks)
    })
    .await;
    assert!(reached, "transfer {id} never reached {chunks} chunks");
}

async fn content(stack: &Stack, node: u64, id: &str, range: Option<&str>) -> (StatusCode, Vec<u8>) {
    let mut request = stack
        .http
        .get(format!("{}/api/v1/transfers/{id}/content", stack.url(node)))
        .bearer_auth(TOKEN);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.bytes().await.unwrap().to_vec())
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--block-size=1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

fn fixture(stack: &Stack, name: &str) -> PathBuf {
    let dir = stack.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getfile_survives_its_owner_dying_and_checks_every_chunk() {
    let mut stack = Stack::start(3, SETTINGS).await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    // The session, and so the transfer, is driven by broker 1; the agent is on broker 3.
    let sid = session(&stack, 1, "web-07").await;

    let path = fixture(&stack, "memory.img");
    let sha = random_file(&path, 40 * CHUNK as usize + 1234);
    let chunks = 41;
    testing::delay_chunks(&path, Duration::from_millis(40));
    let line = format!("getfile {} -auto", path.display());
    let id = start(&stack, 1, &sid, &line).await;
    wait_for_progress(&stack, 2, &id, 12).await;
    stack.kill(1);

    // Another node takes over from the last stored chunk and finishes.
    testing::delay_chunks(&path, Duration::ZERO);
    let done = finished(&stack, 2, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_ne!(done["node"], 1, "{done}");
    let resent = testing::chunks_read(&path) - chunks;
    assert!(
        resent <= WINDOW,
        "the agent re-sent {resent} chunks, more than one window of {WINDOW}"
    );
    let (status, body) = content(&stack, 2, &id, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(hex::encode(Sha256::digest(&body)), sha);

    // Ranges: a slice, an open end, and one past the end.
    let whole = std::fs::read(&path).unwrap();
    let (status, body) = content(&stack, 3, &id, Some("bytes=262000-262999")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &whole[262_000..263_000]);
    let (status, body) = content(&stack, 3, &id, Some("bytes=10485000-")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &whole[10_485_000..]);
    let (status, _) = content(&stack, 3, &id, Some("bytes=99999999-")).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);

    // Another analyst, and another tenant, see no such transfer.
    let (status, _) = stack
        .get(2, "token-b", &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .get(2, "token-c", &format!("/api/v1/transfers/{id}/content"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A chunk corrupted in flight is refused and asked for again; the file still arrives whole.
    let (status, _) = stack
        .delete(2, TOKEN, &format!("/api/v1/sessions/{sid}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let sid = session(&stack, 2, "web-07").await;
    let path = fixture(&stack, "sample.bin");
    let sha = random_file(&path, 5 * CHUNK as usize);
    testing::corrupt_chunk_once(&path, 2, Corruption::Data);
    let id = getfile(&stack, 2, &sid, &path).await;
    let done = finished(&stack, 2, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    let (_, body) = content(&stack, 2, &id, None).await;
    assert_eq!(hex::encode(Sha256::digest(&body)), sha);
    assert!(stack.log(3).contains("chunk refused"));

    // A chunk changed together with its checksum passes the chunk check, but not the file's.
    let path = fixture(&stack, "forged.bin");
    random_file(&path, 3 * CHUNK as usize);
    testing::corrupt_chunk_once(&path, 1, Corruption::DataAndChecksum);
    let id = getfile(&stack, 2, &sid, &path).await;
    let done = finished(&stack, 2, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("hashes to"),
        "{done}"
    );
    let (status, _) = content(&stack, 2, &id, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getfile_follows_the_agent_to_another_node_and_refuses_what_it_must() {
    let mut stack = Stack::start(3, SETTINGS).await;
    // The agent dials broker 3 first and broker 2 when 3 is not there.
    stack.start_agent("demo", "db-01", "db-01", &[3, 2]).await;
    stack.wait_online(TOKEN, "db-01", None).await;
    let (_, devices) = stack.get(1, TOKEN, "/api/v1/devices").await;
    let agents_node = devices["items"][0]["node"].as_u64().unwrap();
    let sid = session(&stack, 1, "db-01").await;

    // The agent's node dies mid-transfer: the agent reconnects to broker 2 and the transfer goes on.
    let path = fixture(&stack, "capture.pcap");
    let sha = random_file(&path, 30 * CHUNK as usize);
    testing::delay_chunks(&path, Duration::from_millis(40));
    let id = getfile(&stack, 1, &sid, &path).await;
    wait_for_progress(&stack, 1, &id, 6).await;
    stack.kill(agents_node);
    testing::delay_chunks(&path, Duration::ZERO);
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    let (_, body) = content(&stack, 1, &id, None).await;
    assert_eq!(hex::encode(Sha256::digest(&body)), sha);

    // The file changes on the device mid-transfer: a clear failure, nothing to download.
    let path = fixture(&stack, "growing.log");
    random_file(&path, 20 * CHUNK as usize);
    testing::delay_chunks(&path, Duration::from_millis(200));
    let id = getfile(&stack, 1, &sid, &path).await;
    wait_for_progress(&stack, 1, &id, 2).await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"appended by the attacker"))
        .unwrap();
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("changed"),
        "{done}"
    );
    let (status, _) = content(&stack, 1, &id, None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Without fileinfo first, getfile says what to do.
    let small = fixture(&stack, "notes.txt");
    random_file(&small, 100);
    let refused = stack
        .run(1, TOKEN, &sid, &format!("getfile {}", small.display()))
        .await;
    assert_eq!(refused["state"], "failed");
    assert!(refused["error"].as_str().unwrap().contains("run `fileinfo"));
    // After fileinfo it works, from the cached facts.
    let info = stack
        .run(1, TOKEN, &sid, &format!("fileinfo {}", small.display()))
        .await;
    assert_eq!(info["state"], "completed");
    let id = start(&stack, 1, &sid, &format!("getfile {}", small.display())).await;
    assert_eq!(finished(&stack, 1, &id).await["state"], "completed");

    // A directory, a FIFO, and a file over the tenant's limit are refused with the reason.
    let dir = stack.path().join("files");
    let refused = stack
        .run(1, TOKEN, &sid, &format!("getfile {} -auto", dir.display()))
        .await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not a regular file")
    );
    let fifo = dir.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let refused = stack
        .run(1, TOKEN, &sid, &format!("getfile {} -auto", fifo.display()))
        .await;
    assert_eq!(refused["state"], "failed", "{refused}");
    let big = fixture(&stack, "big.img");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(64_000_001)
        .unwrap();
    let refused = stack
        .run(1, TOKEN, &sid, &format!("getfile {} -auto", big.display()))
        .await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("over the getfile limit of 64000000 bytes"),
        "{refused}"
    );
    // A transfer id that is not one is refused with the rule.
    let (status, body) = stack.get(1, TOKEN, "/api/v1/transfers/..%2F..%2Fetc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["rule"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gib_round_trips_with_the_right_sha256() {
    let mut stack = Stack::start(3, "").await;
    // The store keeps the GiB until it is deleted; say so plainly rather than time out on a full disk.
    let free = free_bytes(stack.path());
    assert!(
        free > 3 << 29,
        "this test needs 1.5 GiB free under {} for the transfer store, and there are {free} bytes",
        stack.path().display()
    );
    stack.start_agent("demo", "big-01", "big-01", &[2]).await;
    stack.wait_online(TOKEN, "big-01", Some(2)).await;
    let sid = session(&stack, 1, "big-01").await;
    let path = fixture(&stack, "disk.img");
    let sha = sparse_random_file(&path, 1 << 30);
    let id = getfile(&stack, 1, &sid, &path).await;
    let done = finished(&stack, 3, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    std::fs::remove_file(&path).unwrap();

    // Streamed to disk and hashed on the way, as an analyst's download would be.
    let mut response = stack
        .http
        .get(format!("{}/api/v1/transfers/{id}/content", stack.url(3)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(bytes) = response.chunk().await.unwrap() {
        size += bytes.len() as u64;
        hash.update(&bytes);
    }
    assert_eq!(size, 1 << 30);
    assert_eq!(hex::encode(hash.finalize()), sha);
    let (status, _) = stack
        .delete(3, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

async fn upload(stack: &Stack, name: &str, data: Vec<u8>, query: &str) -> (StatusCode, Value) {
    let response = stack
        .http
        .put(format!("{}/api/v1/library/{name}?{query}", stack.url(2)))
        .bearer_auth(TOKEN)
        .body(data)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A library file deleted while a putfile delivers it ends the transfer failed, saying so, rather
/// than leaving it to offer chunks it can no longer read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_putfile_whose_library_file_is_deleted_midway_ends_failed_saying_so() {
    let mut stack = Stack::start(3, SETTINGS).await;
    // The agent reaches its broker through a proxy that slows what the broker sends it, so the
    // transfer is still under way when the file goes.
    let proxy = testkit::TcpProxy::start(
        format!("127.0.0.1:{}", stack.brokers[&1].agent_port)
            .parse()
            .unwrap(),
    );
    let enrolled = stack.enrol("demo", "ws-11", 1).await;
    stack.run_agent(agent::Config {
        brokers: vec![proxy.addr().to_string()],
        state_dir: stack.path().join("agent-ws-11"),
        ..enrolled
    });
    stack.wait_online(TOKEN, "ws-11", Some(1)).await;
    let tool = fixture(&stack, "big-tool.bin");
    random_file(&tool, 11 * CHUNK as usize + 1);
    let (status, _) = upload(&stack, "big-tool.bin", std::fs::read(&tool).unwrap(), "").await;
    assert_eq!(status, StatusCode::CREATED);
    proxy.delay(testkit::Direction::ToClient, Duration::from_millis(300));

    let sid = session(&stack, 1, "ws-11").await;
    let id = start(&stack, 1, &sid, "putfile big-tool.bin").await;
    let (status, _) = stack.delete(2, TOKEN, "/api/v1/library/big-tool.bin").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("library file big-tool.bin was deleted or replaced during the transfer"),
        "{done}"
    );
    // Nothing half-written is left in the device's working folder.
    let work = stack.path().join("agent-ws-11").join("work");
    let left = || {
        let files = |dir: PathBuf| std::fs::read_dir(dir).map_or(Vec::new(), |e| e.collect());
        let mut left = files(work.join(".partial"));
        left.extend(files(work.clone()));
        left.into_iter()
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.ends_with(".partial"))
            .collect::<Vec<_>>()
    };
    assert!(
        testkit::wait_until(common::WAIT, || async { left().is_empty() }).await,
        "{:?}",
        left()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_keeps_its_rules_and_putfile_delivers() {
    let mut stack = Stack::start(3, SETTINGS).await;
    let state_dir = stack.start_agent("demo", "ws-09", "ws-09", &[3]).await;
    stack.wait_online(TOKEN, "ws-09", Some(3)).await;

    let script = b"#!/bin/sh\necho collected\n".to_vec();
    let (status, entry) = upload(
        &stack,
        "collector.sh",
        script.clone(),
        "description=collects%20logs&parameters_description=none",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    assert_eq!(entry["sha256"], hex::encode(Sha256::digest(&script)));
    assert_eq!(entry["uploaded_by"], "analyst-a");
    let (status, refused) = upload(&stack, "collector.sh", b"other".to_vec(), "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "already_exists");
    let (status, bad) = upload(&stack, "..%2Fescape.sh", b"x".to_vec(), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, big) = upload(&stack, "huge.bin", vec![7u8; 3_000_001], "").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{big}");
    // A tool of several chunks, for putfile.
    let tool = fixture(&stack, "tool.bin");
    let tool_sha = random_file(&tool, 2 * CHUNK as usize + 77);
    let (status, _) = upload(&stack, "tool.bin", std::fs::read(&tool).unwrap(), "").await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, listed) = stack.get(1, TOKEN, "/api/v1/library").await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["collector.sh", "tool.bin"], "{listed}");
    // Another tenant sees none of it.
    let (_, other) = stack.get(1, "token-c", "/api/v1/library").await;
    assert_eq!(other["items"].as_array().unwrap().len(), 0);

    // putfile lands the file in the agent's working folder, verified.
    let sid = session(&stack, 1, "ws-09").await;
    let id = start(&stack, 1, &sid, "putfile tool.bin").await;
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    let landed = state_dir.join("work").join("tool.bin");
    assert_eq!(done["path"], landed.display().to_string());
    assert_eq!(
        hex::encode(Sha256::digest(std::fs::read(&landed).unwrap())),
        tool_sha
    );

    // Again without -overwrite: refused; with it: replaced.
    let id = start(&stack, 1, &sid, "putfile tool.bin").await;
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("-overwrite"),
        "{done}"
    );
    let (status, _) = upload(&stack, "tool.bin", script.clone(), "overwrite=true").await;
    assert_eq!(status, StatusCode::OK);
    let id = start(&stack, 1, &sid, "putfile tool.bin -overwrite -keep").await;
    assert_eq!(finished(&stack, 1, &id).await["state"], "completed");
    assert_eq!(std::fs::read(&landed).unwrap(), script);

    // The library command lists the same files; a missing name is a clear failure.
    let listing = stack.run(1, TOKEN, &sid, "library").await;
    assert_eq!(listing["output"]["files"].as_array().unwrap().len(), 2);
    let missing = stack.run(1, TOKEN, &sid, "putfile nothing.sh").await;
    assert_eq!(missing["state"], "failed");
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("no library file named nothing.sh")
    );
    // A name that tries to leave the working folder names no library file, and nothing is copied.
    for name in ["../../etc/cron.d/x", "/etc/passwd"] {
        let refused = stack.run(1, TOKEN, &sid, &format!("putfile {name}")).await;
        assert_ne!(refused["state"], "completed", "{name}: {refused}");
        assert!(
            refused["error"]
                .as_str()
                .unwrap_or_default()
                .contains("a library name is a file name, not a path"),
            "{refused}"
        );
    }
    assert!(!Path::new("/etc/cron.d/x").exists());

    let (status, _) = stack.delete(2, TOKEN, "/api/v1/library/collector.sh").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = stack.delete(2, TOKEN, "/api/v1/library/collector.sh").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A TCP relay in front of a broker's API that cuts each of its first `cuts` connections once it
/// has passed `cut_after` bytes towards the client, as a dropping network would.
struct CuttingRelay {
    port: u16,
    connections: Arc<AtomicU64>,
    bytes_down: Arc<AtomicU64>,
}

impl CuttingRelay {
    async fn start(upstream: u16, cuts: u64, cut_after: u64) -> CuttingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicU64::new(0));
        let bytes_down = Arc::new(AtomicU64::new(0));
        let (counted, down) = (connections.clone(), bytes_down.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let nth = counted.fetch_add(1, Ordering::SeqCst);
                let budget = if nth < cuts { cut_after } else { u64::MAX };
                tokio::spawn(relay(client, upstream, budget, down.clone()));
            }
        });
        CuttingRelay {
            port,
            connections,
            bytes_down,
        }
    }
}

async fn relay(client: TcpStream, upstream: u16, mut budget: u64, down: Arc<AtomicU64>) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while budget > 0 {
        let Ok(read) = server_read.read(&mut buffer).await else {
            break;
        };
        if read == 0 {
            break;
        }
        let passed = read.min(usize::try_from(budget).unwrap_or(usize::MAX));
        if client_write.write_all(&buffer[..passed]).await.is_err() {
            break;
        }
        down.fetch_add(passed as u64, Ordering::SeqCst);
        budget -= passed as u64;
    }
    // Dropping both halves resets the connection mid-body.
    upward.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consoles_download_resumes_with_range_after_its_connection_is_cut() {
    let mut stack = Stack::start(3, SETTINGS).await;
    stack.start_agent("demo", "hr-01", "hr-01", &[1]).await;
    stack.wait_online(TOKEN, "hr-01", None).await;
    let sid = session(&stack, 1, "hr-01").await;
    let path = fixture(&stack, "mailbox.pst");
    let size = 48 * CHUNK;
    let sha = random_file(&path, size as usize);
    let id = getfile(&stack, 1, &sid, &path).await;
    assert_eq!(finished(&stack, 1, &id).await["state"], "completed");

    // The analyst's network drops twice, each time a quarter of the way into the file.
    let api_port = stack.url(2).rsplit(':').next().unwrap().parse().unwrap();
    let relay = CuttingRelay::start(api_port, 2, size / 4).await;
    let client = lr_console::api::Client::new(&lr_console::api::Endpoint {
        base: format!("https://localhost:{}", relay.port).parse().unwrap(),
        token: Some(TOKEN.to_string()),
        ca_cert: Some(stack.ca_path()),
    })
    .unwrap();
    let view = client.transfer(&id, Duration::ZERO).await.unwrap().value;
    let downloads = stack.path().join("downloads");
    let saved = lr_console::download::download(&client, &view, &downloads, |_| {})
        .await
        .unwrap_or_else(|failure| panic!("download failed: {failure:?}"));

    assert_eq!(saved, downloads.join("mailbox.pst"));
    let data = std::fs::read(&saved).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&data)), sha);
    // Three connections, and about one file's worth of bytes through them: each retry asked for
    // the rest of the file only (Range), not for all of it again.
    assert!(relay.connections.load(Ordering::SeqCst) >= 3);
    let down = relay.bytes_down.load(Ordering::SeqCst);
    assert!(
        down < size + size / 8,
        "{down} bytes reached the console for a {size}-byte file"
    );
    assert!(
        std::fs::read_dir(&downloads).unwrap().count() == 1,
        "a .part file was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_transfer_is_deleted_after_its_retention() {
    let mut stack = Stack::start(3, "[transfers]\nchunk_size = 262144\nretention_secs = 5\n").await;
    stack.start_agent("demo", "ops-01", "ops-01", &[2]).await;
    stack.wait_online(TOKEN, "ops-01", None).await;
    let sid = session(&stack, 1, "ops-01").await;
    let path = fixture(&stack, "notes.txt");
    random_file(&path, 3 * CHUNK as usize);
    let id = getfile(&stack, 1, &sid, &path).await;
    assert_eq!(finished(&stack, 1, &id).await["state"], "completed");
    let client = stack.nats_as_broker(1).await;
    let store = broker::transfer::ChunkStore::open(client, 1).await.unwrap();
    assert_eq!(store.contiguous_count("demo", &id).await.unwrap(), 3);

    let gone = testkit::wait_until(Duration::from_secs(30), || async {
        stack
            .get(3, TOKEN, &format!("/api/v1/transfers/{id}"))
            .await
            .0
            == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone, "transfer {id} was kept past its retention");
    assert_eq!(store.contiguous_count("demo", &id).await.unwrap(), 0);
    assert_eq!(content(&stack, 2, &id, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_getfiles_than_the_agent_sends_at_once_all_complete() {
    let mut stack = Stack::start(3, SETTINGS).await;
    stack.start_agent("demo", "fs-01", "fs-01", &[3]).await;
    stack.wait_online(TOKEN, "fs-01", None).await;
    let sid = session(&stack, 1, "fs-01").await;
    let count = agent::transfer::MAX_WINDOWS + 2;
    let mut started = Vec::new();
    for i in 0..count {
        let path = fixture(&stack, &format!("share-{i}.db"));
        let sha = random_file(&path, 4 * WINDOW as usize * CHUNK as usize + i);
        // Slow reads keep every window open while the others are asked for: each transfer lasts
        // about 8 s, far longer than starting all of them takes even on a loaded machine.
        testing::delay_chunks(&path, Duration::from_millis(250));
        let id = getfile(&stack, 1, &sid, &path).await;
        started.push((id, sha));
    }
    for (id, sha) in &started {
        let done = finished(&stack, 1, id).await;
        assert_eq!(done["state"], "completed", "{done}");
        let (status, data) = content(&stack, 2, id, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&hex::encode(Sha256::digest(&data)), sha);
    }
    assert!(
        stack.log(1).contains("the agent is busy"),
        "no transfer was ever told to wait"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_getfile_whose_device_stays_away_ends_failed_saying_so() {
    let settings = SETTINGS.replace("[transfers]\n", "[transfers]\nmax_stall_secs = 3\n");
    let mut stack = Stack::start(3, &settings).await;
    // The agent knows only broker 3: with it gone, the device is away.
    stack.start_agent("demo", "fs-01", "fs-01", &[3]).await;
    stack.wait_online(TOKEN, "fs-01", Some(3)).await;
    let sid = session(&stack, 1, "fs-01").await;
    let path = fixture(&stack, "slow.db");
    random_file(&path, 8 * WINDOW as usize * CHUNK as usize);
    testing::delay_chunks(&path, Duration::from_millis(250));
    let id = getfile(&stack, 1, &sid, &path).await;
    stack.kill(3);
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("no progress for 3 s") && error.contains("fs-01"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_store_quota_is_checked_before_anything_is_stored() {
    let settings = format!("{SETTINGS}max_store_bytes = 3000000\n");
    let mut stack = Stack::start(3, &settings).await;
    stack.start_agent("demo", "fs-01", "fs-01", &[3]).await;
    stack.wait_online(TOKEN, "fs-01", None).await;
    let sid = session(&stack, 1, "fs-01").await;

    let (status, body) = upload(&stack, "tool.bin", vec![7u8; 2_000_000], "").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // 1 MB of room left: a second 2 MB upload and a 2 MB getfile are refused, saying why.
    let (status, body) = upload(&stack, "more.bin", vec![8u8; 2_000_000], "").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("quota"),
        "{body}"
    );
    let big = fixture(&stack, "big.db");
    random_file(&big, 2_000_000);
    let refused = stack
        .run(1, TOKEN, &sid, &format!("getfile {} -auto", big.display()))
        .await;
    assert_eq!(refused["state"], "failed", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("max_store_bytes"),
        "{refused}"
    );
    // What fits still goes.
    let small = fixture(&stack, "small.db");
    let sha = random_file(&small, 500_000);
    let id = getfile(&stack, 1, &sid, &small).await;
    let done = finished(&stack, 1, &id).await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["sha256"], sha.as_str(), "{done}");
}
