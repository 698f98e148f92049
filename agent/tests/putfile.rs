//! putfile end to end: a real `agent::run` taking a file pushed by an in-test broker in chunks,
//! resuming after an agent restart, and deleting files put without -keep once the device restarts.

mod common;

use std::path::{Path, PathBuf};

use agent_proto::agent::command_result::Status as Pb;
use agent_proto::agent::{PutChunk, PutOffer};
use common::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

const CHUNK: u32 = 64 * 1024;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn status(code: i32) -> Pb {
    Pb::try_from(code).unwrap()
}

fn offer(id: &str, token: u64, name: &str, data: &[u8], keep: bool) -> PutOffer {
    PutOffer {
        transfer_id: id.into(),
        session_id: "session-1".into(),
        token,
        name: name.into(),
        size: data.len() as u64,
        sha256: sha256(data),
        chunk_size: CHUNK,
        keep,
        overwrite: false,
    }
}

fn chunk(id: &str, data: &[u8], index: u64) -> PutChunk {
    let start = index as usize * CHUNK as usize;
    let part = data[start..data.len().min(start + CHUNK as usize)].to_vec();
    PutChunk {
        transfer_id: id.into(),
        index,
        sha256: sha256(&part),
        data: part,
    }
}

/// A system root holding only a boot id, which the test changes to "restart the device".
fn set_boot_id(root: &Path, id: &str) {
    let path = root.join("proc/sys/kernel/random/boot_id");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{id}\n")).unwrap();
}

/// Sends chunks `first..end` one at a time, each answered by the progress it made.
async fn send_chunks(conn: &mut Conn, id: &str, data: &[u8], first: u64, end: u64) {
    for index in first..end {
        conn.put_chunk(chunk(id, data, index)).await;
        let p = conn.put_progress().await;
        assert_eq!((p.transfer_id.as_str(), p.received), (id, index + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_resumes_after_an_agent_restart_and_is_deleted_when_the_device_restarts() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, state_dir) = tempdir();
    let (_root, root) = tempdir();
    let (_work, work) = tempdir();
    set_boot_id(&root, "boot-1");
    let config = agent::Config {
        system_root: root.clone(),
        work_dir: Some(work.join("lr")),
        ..agent_config(&pki, &[broker.addr], &state_dir)
    };
    let mut data = vec![0u8; 5 * CHUNK as usize / 2];
    rand::rng().fill_bytes(&mut data);
    let small = b"#!/bin/sh\necho kept\n".to_vec();

    let agent = RunningAgent::start(config.clone());
    let mut conn = broker.accept().await;
    assert!(conn.hello.capabilities.iter().any(|c| c == "putfile"));
    conn.put_offer(offer("p-1", 3, "tool.bin", &data, false))
        .await;
    assert_eq!(conn.put_progress().await.received, 0);
    send_chunks(&mut conn, "p-1", &data, 0, 2).await;
    // A bad chunk is refused where it stands.
    let mut bad = chunk("p-1", &data, 2);
    bad.data[0] ^= 1;
    conn.put_chunk(bad).await;
    assert_eq!(conn.put_progress().await.received, 2);
    drop(conn);
    agent.stop().await;

    // The agent restarts: the offer, repeated, resumes from the two chunks on disk.
    let agent = RunningAgent::start(config.clone());
    let mut conn = broker.accept().await;
    conn.put_offer(offer("p-1", 3, "tool.bin", &data, false))
        .await;
    assert_eq!(conn.put_progress().await.received, 2);
    send_chunks(&mut conn, "p-1", &data, 2, 3).await;
    let end = conn.transfer_ended().await;
    assert_eq!(status(end.status), Pb::Ok, "{}", end.error);
    let dest = work.join("lr/tool.bin");
    assert_eq!(PathBuf::from(&end.path), dest);
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // The same name again, without -overwrite: refused, nothing changes.
    conn.put_offer(offer("p-2", 3, "tool.bin", &small, true))
        .await;
    let end = conn.transfer_ended().await;
    assert_eq!(status(end.status), Pb::Failed);
    assert_eq!(
        end.error,
        format!(
            "tool.bin already exists in the working folder {}; add -overwrite to replace it",
            work.join("lr").display()
        )
    );
    // A kept file, in one chunk.
    conn.put_offer(offer("p-3", 3, "kept.sh", &small, true))
        .await;
    assert_eq!(conn.put_progress().await.received, 0);
    send_chunks(&mut conn, "p-3", &small, 0, 1).await;
    assert_eq!(status(conn.transfer_ended().await.status), Pb::Ok);
    drop(conn);
    agent.stop().await;

    // The agent restarts on the same boot: both files stay.
    let agent = RunningAgent::start(config.clone());
    let conn = broker.accept().await;
    assert!(dest.exists());
    drop(conn);
    agent.stop().await;

    // The device restarts: the file put without -keep is gone once the agent is up.
    set_boot_id(&root, "boot-2");
    let agent = RunningAgent::start(config);
    let conn = broker.accept().await;
    assert!(!dest.exists());
    assert_eq!(std::fs::read(work.join("lr/kept.sh")).unwrap(), small);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_offers_are_fenced_and_cancel_deletes_the_partial_file() {
    testkit::init_tracing();
    let pki = Pki::new();
    let mut broker = TestBroker::start(&pki, 1).await;
    let (_state, state_dir) = tempdir();
    let agent = RunningAgent::start(agent_config(&pki, &[broker.addr], &state_dir));
    let mut data = vec![0u8; 3 * CHUNK as usize];
    rand::rng().fill_bytes(&mut data);

    let mut conn = broker.accept().await;
    conn.put_offer(offer("p-new", 9, "a.bin", &data, false))
        .await;
    assert_eq!(conn.put_progress().await.received, 0);
    conn.put_offer(offer("p-old", 8, "b.bin", &data, false))
        .await;
    let end = conn.transfer_ended().await;
    assert_eq!(end.transfer_id, "p-old");
    assert_eq!(status(end.status), Pb::StaleToken);
    assert!(
        end.error
            .contains("token 8 is lower than 9, the highest this agent has accepted"),
        "{}",
        end.error
    );

    send_chunks(&mut conn, "p-new", &data, 0, 1).await;
    let partial = state_dir.join("work/.partial/p-new");
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), u64::from(CHUNK));
    conn.cancel("p-new", 9).await;
    let end = conn.transfer_ended().await;
    assert_eq!(status(end.status), Pb::Cancelled);
    assert!(!partial.exists());
    conn.put_chunk(chunk("p-new", &data, 1)).await;
    let end = conn.transfer_ended().await;
    assert_eq!(status(end.status), Pb::Failed);
    assert!(end.error.contains("offer it again"), "{}", end.error);
    drop(conn);
    agent.stop().await;
    broker.stop().await;
}
