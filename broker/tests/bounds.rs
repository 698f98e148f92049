//! Resource bounds on a real stack: limits that contradict each other are refused at startup,
//! naming both.

mod common;

use std::time::Duration;

use common::Stack;

/// Waits (bounded) for broker `id` to exit; its exit code.
async fn exit_code(stack: &mut Stack, id: u64) -> Option<i32> {
    for _ in 0..600 {
        let child = stack.brokers.get_mut(&id).unwrap().child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_larger_than_nats_carries_is_refused_at_startup_naming_both_limits() {
    let mut stack = Stack::start(3, "").await;
    stack.nats.reconfigure(|config| {
        config.replace(
            &format!("max_payload: {}", broker::nats::MAX_PAYLOAD_BYTES),
            "max_payload: 1048576",
        )
    });
    stack.kill(1);
    stack.spawn_broker(1);
    assert_eq!(exit_code(&mut stack, 1).await, Some(1), "{}", stack.log(1));
    let log = stack.log(1);
    assert!(
        log.contains("agents.max_message_bytes") && log.contains("max_payload is 1048576"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_the_store_cannot_read_is_an_error_not_an_empty_list() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[2]).await;
    stack.wait_online("token-a", "web-07", Some(2)).await;
    // JetStream off, core NATS still up.
    stack.nats.reconfigure(|config| {
        config
            .lines()
            .filter(|l| !l.trim_start().starts_with("jetstream"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let unavailable = testkit::wait_until(common::WAIT, || async {
        let (status, _) = stack.get(1, "token-a", "/api/v1/devices").await;
        status == reqwest::StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let (status, body) = stack.get(1, "token-a", "/api/v1/devices").await;
    assert!(unavailable, "{status}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_chunk_store_fails_the_getfile_soon_saying_so_while_sessions_still_open() {
    let mut stack = Stack::start(
        3,
        "[transfers]\nchunk_size = 262144\nwindow_chunks = 8\nmax_store_bytes = 2000000\nmax_store_full_secs = 2\n",
    )
    .await;
    stack.start_agent("demo", "fs-01", "fs-01", &[3]).await;
    stack.start_agent("demo", "web-02", "web-02", &[2]).await;
    stack.wait_online("token-a", "fs-01", Some(3)).await;
    stack.wait_online("token-a", "web-02", Some(2)).await;
    let (status, session) = stack.open(1, "token-a", "fs-01").await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{session}");
    let sid = session["session_id"].as_str().unwrap().to_string();
    let path = stack.path().join("big.db");
    std::fs::write(&path, vec![5u8; 4_000_000]).unwrap();
    let started = stack
        .run(
            1,
            "token-a",
            &sid,
            &format!("getfile {} -auto", path.display()),
        )
        .await;
    assert_eq!(started["state"], "completed", "{started}");
    let id = started["output"]["transfer_id"].as_str().unwrap();
    let done = stack.transfer_finished(1, "token-a", id).await;
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("the transfer store is full") && error.contains("max_store_bytes"),
        "{error}"
    );
    // The registry, sessions and other devices carry on.
    let (status, other) = stack.open(2, "token-b", "web-02").await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{other}");
    // What the failed transfer stored is freed: another getfile that fits now completes.
    let other = other["session_id"].as_str().unwrap().to_string();
    let small = stack.path().join("small.db");
    std::fs::write(&small, vec![6u8; 1_000_000]).unwrap();
    let started = stack
        .run(
            2,
            "token-b",
            &other,
            &format!("getfile {} -auto", small.display()),
        )
        .await;
    assert_eq!(started["state"], "completed", "{started}");
    let id = started["output"]["transfer_id"].as_str().unwrap();
    let done = stack.transfer_finished(2, "token-b", id).await;
    assert_eq!(done["state"], "completed", "{done}");
}
