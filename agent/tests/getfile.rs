//! getfile end to end: a real `agent::run` answering chunk requests from in-test brokers, the way
//! the broker pulls a file: in windows, resuming from any chunk, across reconnects.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent::testing::{self, Corruption};
use agent_proto::agent::command_result::Status as Pb;
use common::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

const KIB: u32 = 1024;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A file of `len` random bytes.
fn random_file(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    let path = dir.join("evidence.bin");
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

/// A request for `path` as fileinfo described it (`data`).
fn request(id: &str, token: u64, path: &Path, data: &[u8], chunk_size: u32) -> GetWindow {
    GetWindow {
        transfer_id: id.into(),
        token,
        path: path_str(path),
        size: data.len() as u64,
        sha256: sha256(data),
        chunk_size,
        first_index: 0,
        count: 1,
    }
}

fn status(code: i32) -> Pb {
    Pb::try_from(code).unwrap()
}

/// Receives chunks `first..end` in order, checks each against its own SHA-256, and stores them.
async fn receive(conn: &mut Conn, first: u64, end: u64, into: &mut Vec<Vec<u8>>) {
    for index in first..end {
        let c = conn.chunk().await;
        assert_eq!(c.index, index);
        assert_eq!(c.sha256, sha256(&c.data), "chunk {index} arrives intact");
        if into.len() <= index as usize {
            into.resize(index as usize + 1, Vec::new());
        }
        into[index as usize] = c.data;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_comes_over_in_windows_and_reassembles_to_its_sha256() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_files, dir) = tempdir();
    let (path, data) = random_file(&dir, 5 * 1024 * 1024);

    let mut conn = broker.accept().await;
    assert!(conn.hello.capabilities.iter().any(|c| c == "getfile"));
    // 5 MiB in chunks of 256 KiB: 20 chunks, 5 windows of 4.
    let mut chunks = Vec::new();
    for first in (0..20).step_by(4) {
        conn.chunk_request(GetWindow {
            first_index: first,
            count: 4,
            ..request("t-5mib", 1, &path, &data, 256 * KIB)
        })
        .await;
        receive(&mut conn, first, first + 4, &mut chunks).await;
    }
    assert!(chunks.iter().all(|c| c.len() == 256 * KIB as usize));
    assert_eq!(sha256(&chunks.concat()), sha256(&data));

    // Nothing past the end of the file.
    conn.chunk_request(GetWindow {
        first_index: 20,
        count: 4,
        ..request("t-5mib", 1, &path, &data, 256 * KIB)
    })
    .await;
    let end = conn.transfer_ended().await;
    assert_eq!(status(end.status), Pb::InvalidArguments);
    assert_eq!(
        end.error,
        "chunk 20 is past the end of the file: 5242880 bytes in chunks of 262144 bytes make 20 chunks (0 to 19)"
    );
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_token_is_refused_and_a_higher_one_survives_a_restart() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, state_dir) = tempdir();
    let config = agent_config(&pki, &[broker.addr], &state_dir);
    let agent = RunningAgent::start(config.clone());
    let (_files, dir) = tempdir();
    let (path, data) = random_file(&dir, 100_000);

    let mut conn = broker.accept().await;
    conn.chunk_request(request("new", 7, &path, &data, 64 * KIB))
        .await;
    assert_eq!(conn.chunk().await.index, 0);
    conn.chunk_request(request("old", 5, &path, &data, 64 * KIB))
        .await;
    let end = conn.transfer_ended().await;
    assert_eq!(end.transfer_id, "old");
    assert_eq!(status(end.status), Pb::StaleToken);
    assert_eq!(
        end.error,
        "refused: the request's fencing token 5 is lower than 7, the highest this agent has accepted; a newer session holds this device, so no chunk was sent"
    );
    // A command of the older session is refused by the same fence.
    conn.command("old-cmd", 6, "help", &[], "/").await;
    assert_eq!(common::status(&conn.result().await), Pb::StaleToken);
    drop(conn);
    agent.stop().await;

    // The token the transfer raised was on disk before its first chunk.
    let agent = RunningAgent::start(config);
    let mut conn = broker.accept().await;
    assert_eq!(conn.hello.highest_token, 7);
    conn.chunk_request(request("older", 6, &path, &data, 64 * KIB))
        .await;
    assert_eq!(status(conn.transfer_ended().await.status), Pb::StaleToken);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_window_between_chunks_and_the_transfer_resumes_after() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_files, dir) = tempdir();
    // 64 chunks of 64 KiB, each read 100 ms apart: the window would take over 6 s.
    let (path, data) = random_file(&dir, 64 * 64 * KIB as usize);
    testing::delay_chunks(&path, Duration::from_millis(100));

    let mut conn = broker.accept().await;
    conn.chunk_request(GetWindow {
        count: 64,
        ..request("t-cancel", 1, &path, &data, 64 * KIB)
    })
    .await;
    let mut chunks = Vec::new();
    receive(&mut conn, 0, 1, &mut chunks).await;
    conn.cancel("t-cancel", 1).await;
    let cancelled_at = Instant::now();
    let end = loop {
        match conn.transfer().await {
            Transfer::Chunk(c) => {
                assert_eq!(c.index as usize, chunks.len());
                chunks.push(c.data);
            }
            Transfer::Ended(e) => break e,
            Transfer::Progress(p) => panic!("getfile sends no put progress: {p:?}"),
        }
    };
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(end.transfer_id, "t-cancel");
    assert_eq!(status(end.status), Pb::Cancelled);
    let next = chunks.len() as u64;
    assert!(next < 64, "the window stopped early: {next} chunks");
    assert_eq!(
        end.error,
        format!(
            "getfile was cancelled; this window sent {next} of its chunks; ask again from chunk {next} to resume"
        )
    );

    // Asked again from where it stopped, the rest comes.
    testing::clear(&path);
    conn.chunk_request(GetWindow {
        first_index: next,
        count: 64,
        ..request("t-cancel", 1, &path, &data, 64 * KIB)
    })
    .await;
    receive(&mut conn, next, 64, &mut chunks).await;
    assert_eq!(sha256(&chunks.concat()), sha256(&data));
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_resumes_from_an_index_on_another_broker_after_a_reconnect() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut a = TestBroker::start(&pki, 1).await;
    let mut b = TestBroker::start(&pki, 2).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[a.addr, b.addr]);
    let (_files, dir) = tempdir();
    let (path, data) = random_file(&dir, 16 * 64 * KIB as usize + 1000);
    testing::delay_chunks(&path, Duration::from_millis(50));

    let (mut conn, survivor, dead) = tokio::select! {
        c = a.accept() => (c, b, a),
        c = b.accept() => (c, a, b),
    };
    conn.chunk_request(GetWindow {
        count: 17,
        ..request("t-resume", 3, &path, &data, 64 * KIB)
    })
    .await;
    let mut chunks = Vec::new();
    receive(&mut conn, 0, 3, &mut chunks).await;
    // The broker dies mid-window.
    drop(conn);
    dead.stop().await;

    let mut survivor = survivor;
    let mut conn = survivor.accept().await;
    testing::clear(&path);
    conn.chunk_request(GetWindow {
        first_index: 3,
        count: 64,
        ..request("t-resume", 3, &path, &data, 64 * KIB)
    })
    .await;
    receive(&mut conn, 3, 17, &mut chunks).await;
    assert_eq!(chunks[16].len(), 1000, "the last chunk is partial");
    assert_eq!(sha256(&chunks.concat()), sha256(&data));
    drop(conn);
    agent.stop().await;
    survivor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_hook_corrupts_a_chunk_once() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_files, dir) = tempdir();
    let (path, data) = random_file(&dir, 3 * 64 * KIB as usize);
    let slice = |i: usize| &data[i * 64 * KIB as usize..(i + 1) * 64 * KIB as usize];
    testing::corrupt_chunk_once(&path, 1, Corruption::Data);
    testing::corrupt_chunk_once(&path, 2, Corruption::DataAndChecksum);

    let mut conn = broker.accept().await;
    let window = GetWindow {
        count: 3,
        ..request("t-bad", 1, &path, &data, 64 * KIB)
    };
    conn.chunk_request(window.clone()).await;
    let c0 = conn.chunk().await;
    assert_eq!(
        (c0.data.as_slice(), c0.sha256.clone()),
        (slice(0), sha256(slice(0)))
    );
    let c1 = conn.chunk().await;
    assert_ne!(c1.data, slice(1));
    assert_eq!(
        c1.sha256,
        sha256(slice(1)),
        "the checksum is of the true data"
    );
    let c2 = conn.chunk().await;
    assert_ne!(c2.data, slice(2));
    assert_eq!(
        c2.sha256,
        sha256(&c2.data),
        "consistent, so only the file hash tells"
    );

    // Once only: asked again, every chunk is intact.
    conn.chunk_request(window).await;
    for i in 0..3 {
        let c = conn.chunk().await;
        assert_eq!((c.index, c.data.as_slice()), (i as u64, slice(i)));
    }
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_stalls_the_reads() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, agent) = RunningAgent::start_on(&pki, &[broker.addr]);
    let (_files, dir) = tempdir();
    // 64 chunks of 256 KiB (16 MiB) in one window, and a broker that stops reading.
    let (path, data) = random_file(&dir, 64 * 256 * KIB as usize);

    let mut conn = broker.accept().await;
    conn.chunk_request(GetWindow {
        count: 64,
        ..request("t-stall", 1, &path, &data, 256 * KIB)
    })
    .await;
    let mut chunks = Vec::new();
    receive(&mut conn, 0, 1, &mut chunks).await;
    // Unread, the stream fills: the test broker's buffer, HTTP/2 flow-control windows, the agent's
    // sink. Reading the whole file from the page cache would take a few milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let read = testing::chunks_read(&path);
    assert!(
        read < 48,
        "the agent read {read} of 64 chunks ahead of a stalled stream"
    );

    receive(&mut conn, 1, 64, &mut chunks).await;
    assert_eq!(sha256(&chunks.concat()), sha256(&data));
    assert_eq!(testing::chunks_read(&path), 64);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}
