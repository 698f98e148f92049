//! Cancelling a getfile through a real 3-broker cluster, real nats-server and a real agent: the
//! cancel reaches the transfer's owner through whichever node the analyst asks, and a transfer
//! whose owner died is still cancelled, by the node asked.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_proto::agent::command_result::Status;
use agent_proto::bus::Envelope;
use agent_proto::bus::envelope::Body;
use agent_proto::bus::transfer_event::Event;
use common::Stack;
use futures::StreamExt;
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "token-a";
/// One window holds the whole file, so the agent is always sending when the cancel comes.
const SETTINGS: &str = "[transfers]\nchunk_size = 262144\nwindow_chunks = 64\n";
const CHUNK: usize = 262_144;
const CHUNKS: u64 = 40;

fn fixture(stack: &Stack, name: &str) -> PathBuf {
    let dir = stack.path().join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let data: Vec<u8> = (0..CHUNKS as usize * CHUNK)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// Opens a session through `node` (which then owns its transfers) and starts a slow getfile of
/// `path`; returns the transfer id once a few chunks are stored.
async fn slow_getfile(stack: &Stack, node: u64, device: &str, path: &Path) -> String {
    let (status, session) = stack.open(node, TOKEN, device).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let sid = session["session_id"].as_str().unwrap();
    agent::testing::delay_chunks(path, Duration::from_millis(100));
    let line = format!("getfile {} -auto", path.display());
    let command = stack.run(node, TOKEN, sid, &line).await;
    assert_eq!(command["state"], "completed", "{command}");
    let id = command["output"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = testkit::wait_until(Duration::from_secs(60), || async {
        view(stack, node, &id).await["chunks_done"]
            .as_u64()
            .is_some_and(|done| done >= 4)
    })
    .await;
    assert!(started, "transfer {id} made no progress");
    id
}

async fn view(stack: &Stack, node: u64, id: &str) -> Value {
    let (status, view) = stack
        .get(node, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

/// The transfer's events as its owner receives them, seen with broker `node`'s credentials.
async fn watch_events(stack: &Stack, node: u64, id: &str) -> async_nats::Subscriber {
    let nats = stack.nats_as_broker(node).await;
    let events = nats
        .subscribe(format!("lr.demo.xfer.{id}.evt"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    events
}

/// Waits for the agent's own end of the transfer: told to stop, it ends its window cancelled.
async fn agent_ended_cancelled(events: &mut async_nats::Subscriber, id: &str) {
    let ended = tokio::time::timeout(common::WAIT, async {
        while let Some(message) = events.next().await {
            let Ok(Envelope {
                body: Some(Body::TransferEvent(event)),
                ..
            }) = Envelope::decode(message.payload)
            else {
                continue;
            };
            if let Some(Event::Ended(ended)) = event.event {
                return ended;
            }
        }
        panic!("the event subscription of transfer {id} ended");
    })
    .await
    .unwrap_or_else(|_| panic!("the agent never ended transfer {id}"));
    assert_eq!(ended.status(), Status::Cancelled, "{ended:?}");
}

/// How many chunks of transfer `id` are stored, from the first on.
async fn stored_chunks(stack: &Stack, id: &str) -> u64 {
    let client = stack.nats_as_broker(2).await;
    let store = broker::transfer::ChunkStore::open(client, 1).await.unwrap();
    store.contiguous_count("demo", id).await.unwrap()
}

/// Whether anything still answers on the transfer's control subject (its owner's actor).
async fn driven(stack: &Stack, id: &str) -> bool {
    let nats = stack.nats_as_broker(2).await;
    let subject = format!("lr.demo.xfer.{id}.ctl");
    !testkit::wait_until(Duration::from_secs(10), || async {
        let asked = tokio::time::timeout(
            Duration::from_millis(500),
            nats.request(subject.clone(), Default::default()),
        )
        .await;
        matches!(asked, Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_another_node_ends_the_transfer_on_its_owner() {
    let mut stack = Stack::start(3, SETTINGS).await;
    stack.start_agent("demo", "fin-01", "fin-01", &[3]).await;
    stack.wait_online(TOKEN, "fin-01", Some(3)).await;
    let path = fixture(&stack, "ledger.db");
    // The session, and so the transfer, is driven by broker 1; the agent is on broker 3.
    let id = slow_getfile(&stack, 1, "fin-01", &path).await;
    assert_eq!(view(&stack, 2, &id).await["node"], 1);
    let mut events = watch_events(&stack, 2, &id).await;

    // Another analyst, or another tenant, cannot cancel it: it reads as missing. A malformed id
    // is refused with the rule.
    for token in ["token-b", "token-c"] {
        let (status, body) = stack
            .delete(2, token, &format!("/api/v1/transfers/{id}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{token}: {body}");
        assert_eq!(
            body["error"]["message"],
            format!("no transfer {id}; list yours with GET /api/v1/transfers")
        );
    }
    let (status, body) = stack
        .delete(2, TOKEN, "/api/v1/transfers/..%2F..%2Fetc")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(view(&stack, 2, &id).await["state"], "running");

    // The analyst cancels through broker 2; broker 1 ends the transfer.
    let (status, body) = stack
        .delete(2, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let done = view(&stack, 2, &id).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["error"], "cancelled by the analyst", "{done}");
    assert_eq!(
        done["node"], 1,
        "the owner did not record the cancel: {done}"
    );
    assert!(
        stack
            .log(1)
            .lines()
            .any(|l| l.contains("transfer ended") && l.contains(&id) && l.contains("cancelled")),
        "the owner's log does not show the cancel"
    );
    assert!(!stack.log(2).contains("cancelling it here"));
    // The owner's actor stopped, the agent was told, the stored chunks are gone.
    assert!(!driven(&stack, &id).await, "the owner's actor still runs");
    agent_ended_cancelled(&mut events, &id).await;
    assert_eq!(stored_chunks(&stack, &id).await, 0);
    assert!(agent::testing::chunks_read(&path) < CHUNKS);

    // Cancelling again answers the same and changes nothing.
    let (status, body) = stack
        .delete(3, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(view(&stack, 3, &id).await, done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_of_a_transfer_whose_owner_died_is_carried_out_by_the_node_asked() {
    let mut stack = Stack::start(3, SETTINGS).await;
    stack.start_agent("demo", "hr-02", "hr-02", &[3]).await;
    stack.wait_online(TOKEN, "hr-02", Some(3)).await;
    let path = fixture(&stack, "payroll.db");
    let id = slow_getfile(&stack, 1, "hr-02", &path).await;
    let mut events = watch_events(&stack, 2, &id).await;

    // The owner dies; the cancel comes before any node adopts the transfer (its record is stale
    // only after 5 s).
    stack.kill(1);
    let (status, body) = stack
        .delete(2, TOKEN, &format!("/api/v1/transfers/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let done = view(&stack, 2, &id).await;
    assert_eq!(done["state"], "cancelled", "{done}");
    assert_eq!(done["error"], "cancelled by the analyst", "{done}");
    assert_eq!(
        done["node"], 2,
        "the node asked did not take the transfer over: {done}"
    );
    assert!(
        stack
            .log(2)
            .contains("no node drove the transfer; cancelling it here")
    );
    agent_ended_cancelled(&mut events, &id).await;
    assert_eq!(stored_chunks(&stack, &id).await, 0);
    assert!(
        !driven(&stack, &id).await,
        "an actor still drives the transfer"
    );
}
