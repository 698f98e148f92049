//! Sessions outlive their broker. When the node holding a session dies, freezes or is cut off,
//! another node adopts it under a new, higher token: same session id, analyst, working directory
//! and history, and no other analyst can take the device in between. The old node, if it comes
//! back, stands down without sending anything.

mod common;

use std::time::{Duration, Instant};

use agent_proto::bus::envelope::Body;
use broker::bus;
use common::{Stack, WAIT};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Submits `line` through `node` and waits for its end; `None` while the session is moving (or
/// the node is gone), so the caller tries again.
async fn try_run(stack: &Stack, node: u64, session: &str, line: &str) -> Option<Value> {
    let (status, submitted) = stack
        .post(
            node,
            "token-a",
            &format!("/api/v1/sessions/{session}/commands"),
            Some(json!({ "command_line": line })),
        )
        .await;
    if status != StatusCode::ACCEPTED {
        assert!(
            matches!(
                status,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
            ),
            "only 'moving, retry' is allowed while the session moves: {status} {submitted}"
        );
        return None;
    }
    let cid = submitted["command_id"].as_str()?.to_string();
    for _ in 0..10 {
        let (status, command) = stack
            .get(
                node,
                "token-a",
                &format!("/api/v1/sessions/{session}/commands/{cid}?wait_ms=5000"),
            )
            .await;
        if status == StatusCode::OK
            && !matches!(command["state"].as_str(), Some("queued" | "running"))
        {
            return Some(command);
        }
    }
    None
}

/// The session as `node` describes it.
async fn describe(stack: &Stack, node: u64, session: &str) -> Value {
    let (status, view) = stack
        .get(node, "token-a", &format!("/api/v1/sessions/{session}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view
}

/// A broker's connection, and the orders published on web-07's subject from now on.
async fn watch_orders(stack: &Stack) -> (async_nats::Client, async_nats::Subscriber) {
    let nats = stack.nats_as_broker(2).await;
    let orders = nats
        .subscribe(bus::device_cmd("demo", "web-07"))
        .await
        .unwrap();
    nats.flush().await.unwrap();
    (nats, orders)
}

/// The tokens of the orders `orders` carried so far, until it is quiet for half a second.
async fn order_tokens(orders: &mut async_nats::Subscriber) -> Vec<u64> {
    let mut tokens = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), orders.next()).await
    {
        if let Ok((_, Body::Order(order))) = bus::decode(&message) {
            tokens.push(broker::orders::claims(&order).unwrap().token);
        }
    }
    tokens
}

/// The first order published on the device's subject, as the bus carries it.
async fn next_order(orders: &mut async_nats::Subscriber) -> bytes::Bytes {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), orders.next())
            .await
            .expect("an order reaches the device's subject")
            .unwrap();
        if let Ok((_, Body::Order(_))) = bus::decode(&message) {
            return message.payload;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_session_is_adopted_and_its_device_stays_its_analysts() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 9000\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[2, 3]).await;
    stack.wait_online("token-a", "web-07", None).await;
    let (status, opened) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["session_id"].as_str().unwrap().to_string();
    let old_token = opened["token"].as_u64().unwrap();

    // An order node 1 sends, captured to be replayed once the session moved.
    let (nats, mut orders) = watch_orders(&stack).await;
    let cd = try_run(&stack, 2, &id, "cd /tmp").await.expect("cd runs");
    assert_eq!(cd["state"], "completed", "{cd}");
    let captured = next_order(&mut orders).await;

    // The analyst keeps working every 200 ms through nodes 2 and 3; another analyst of the
    // tenant tries to take the device all along.
    stack.kill(1);
    let killed = Instant::now();
    let mut attempts = 0;
    let back = loop {
        assert!(killed.elapsed() < WAIT, "the session was not adopted");
        let node = 2 + (attempts % 2);
        attempts += 1;
        let (status, refusal) = stack.open(node, "token-b", "web-07").await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "another analyst took the device while the session moved: {refusal}"
        );
        if let Some(done) = try_run(&stack, node, &id, "dir").await {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let took = killed.elapsed();
    assert_eq!(back["state"], "completed", "{back}");
    assert_eq!(
        back["cwd"], "/tmp",
        "the working directory moved with the session"
    );
    tracing::info!(?took, attempts, "the session works again");

    // Same session and analyst, another node, a higher token; its history came along.
    let view = describe(&stack, 3, &id).await;
    assert_eq!(view["user"], "analyst-a", "{view}");
    assert_ne!(view["node"], 1, "{view}");
    let new_token = view["token"].as_u64().unwrap();
    assert!(new_token > old_token, "{view}");
    let (_, commands) = stack
        .get(3, "token-a", &format!("/api/v1/sessions/{id}/commands"))
        .await;
    let lines: Vec<&str> = commands["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command_line"].as_str().unwrap())
        .collect();
    assert_eq!(lines.first(), Some(&"cd /tmp"), "{commands}");
    assert!(lines.contains(&"dir"), "{commands}");

    // The dead node's order, replayed, no longer reaches the device.
    let reply = nats
        .request(bus::device_cmd("demo", "web-07"), captured)
        .await
        .unwrap();
    let envelope = <agent_proto::bus::Envelope as prost::Message>::decode(reply.payload).unwrap();
    match envelope.body {
        Some(Body::Ack(ack)) => {
            assert!(
                !broker::wire::accepted(&ack),
                "the old token's order was taken"
            );
            assert!(ack.error.contains(&old_token.to_string()), "{}", ack.error);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The takeover is on record.
    let (_, adopted) = stack
        .get(
            2,
            "token-a",
            &format!("/api/v1/audit?session={id}&kind=session_adopted"),
        )
        .await;
    let entry = &adopted["items"][0];
    assert_eq!(entry["details"]["previous_node"], 1, "{adopted}");
    assert_eq!(entry["details"]["previous_token"], old_token, "{adopted}");
    assert_eq!(entry["details"]["token"], new_token, "{adopted}");
}

/// A frozen node's session lives on elsewhere; woken, the node stands down, and nothing it
/// still had to send reaches the device's subject under the old token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nodes_session_lives_on_elsewhere_and_the_woken_node_sends_nothing() {
    let ttl = Duration::from_millis(9000);
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 9000\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let (status, opened) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["session_id"].as_str().unwrap().to_string();
    let old_token = opened["token"].as_u64().unwrap();
    assert_eq!(
        try_run(&stack, 2, &id, "cd /tmp").await.unwrap()["state"],
        "completed"
    );
    let (_nats, mut orders) = watch_orders(&stack).await;

    let pid = stack.brokers[&1].child.as_ref().unwrap().id();
    let frozen = testkit::Paused::new(pid);
    let paused_at = Instant::now();
    let adopted = testkit::wait_until(WAIT, || async {
        try_run(&stack, 2, &id, "dir").await.is_some()
    })
    .await;
    assert!(adopted, "the frozen node's session was not adopted");
    while paused_at.elapsed() < 2 * ttl {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(frozen);

    // Woken, node 1 finds the session moved and stands down.
    let stood_down =
        testkit::wait_until(WAIT, || async { stack.log(1).contains("standing down") }).await;
    assert!(stood_down, "{}", stack.log(1));
    let view = describe(&stack, 1, &id).await;
    assert_ne!(view["node"], 1, "{view}");
    let dir = try_run(&stack, 1, &id, "dir")
        .await
        .expect("the session answers through node 1");
    assert_eq!(dir["cwd"], "/tmp", "{dir}");

    // Every order since the freeze came from the adopter, under its token.
    let tokens = order_tokens(&mut orders).await;
    assert!(
        tokens.len() >= 2,
        "the adopter's orders were seen: {tokens:?}"
    );
    assert!(
        !tokens.contains(&old_token),
        "the woken node sent orders: {tokens:?}"
    );
}

/// The Raft leader broker `node` knows of, from its metrics (0: none).
async fn leader_seen_by(stack: &Stack, node: u64) -> u64 {
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        stack.brokers[&node].metrics_port
    );
    let Ok(response) = reqwest::get(url).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("lr_raft_leader_id "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// A node that stops hearing from the Raft group while NATS and the leader stay reachable gives
/// its session up: it stops proving it is alive, another node adopts the session, and exactly
/// one node drives it from then on. Healed, the node stands down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_raft_group_but_not_from_nats_gives_its_session_up() {
    let mut stack = Stack::start_fronted(3, "", "[sessions]\nlease_ttl_ms = 9000\n", &[3]).await;
    // Node 3 must follow: a leader's replication dials out, which the cut does not touch.
    let settled =
        testkit::wait_until(WAIT, || async { leader_seen_by(&stack, 1).await != 0 }).await;
    assert!(settled, "no leader");
    if leader_seen_by(&stack, 1).await == 3 {
        stack.kill(3);
        let moved = testkit::wait_until(WAIT, || async {
            !matches!(leader_seen_by(&stack, 1).await, 0 | 3)
        })
        .await;
        assert!(moved, "no new leader");
        stack.spawn_broker(3);
        stack.wait_healthy(3).await;
    }
    stack.start_agent("demo", "web-07", "web-07", &[1]).await;
    stack.wait_online("token-a", "web-07", Some(1)).await;
    let (status, opened) = stack.open(3, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
    let id = opened["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        try_run(&stack, 1, &id, "cd /tmp").await.unwrap()["state"],
        "completed"
    );
    let (_nats, mut orders) = watch_orders(&stack).await;

    stack.raft_fronts[&3].cut().await;
    let moved = testkit::wait_until(WAIT, || async {
        let (status, view) = stack
            .get(1, "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        status == StatusCode::OK && view["node"] != 3
    })
    .await;
    assert!(
        moved,
        "the cut-off node's session was not adopted\n{}",
        stack.log(3)
    );
    let view = describe(&stack, 1, &id).await;
    let new_token = view["token"].as_u64().unwrap();
    for _ in 0..3 {
        let dir = try_run(&stack, 1, &id, "dir")
            .await
            .expect("the adopted session runs");
        assert_eq!(dir["cwd"], "/tmp", "{dir}");
    }
    // Exactly one node drives the session: every order since the cut is the adopter's.
    let tokens = order_tokens(&mut orders).await;
    assert!(
        tokens.len() >= 3,
        "the adopter's orders were seen: {tokens:?}"
    );
    assert!(
        tokens.iter().all(|t| *t == new_token),
        "another node sent orders: {tokens:?}"
    );

    // Healed, node 3 hears of the adoption and stands down; its API reaches the adopter.
    stack.raft_fronts[&3].restore().await;
    let stood_down =
        testkit::wait_until(WAIT, || async { stack.log(3).contains("standing down") }).await;
    assert!(stood_down, "{}", stack.log(3));
    let dir = testkit::wait_until(WAIT, || async {
        try_run(&stack, 3, &id, "dir").await.is_some()
    })
    .await;
    assert!(dir, "the session does not answer through the healed node");
}

/// The figure: time from kill -9 of a session's node to the next successful command in the same
/// session, over 20 kills (each node in turn, restarted after). Run with
/// `cargo test -p broker --test failover -- --ignored --nocapture`; see benches/README.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: about three minutes"]
async fn bench_time_from_kill_to_the_next_command() {
    const KILLS: usize = 20;
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 30000\n").await;
    stack
        .start_agent("demo", "web-07", "web-07", &[1, 2, 3])
        .await;
    stack.wait_online("token-a", "web-07", None).await;
    let mut times = Vec::new();
    for kill in 0..KILLS {
        let victim = 1 + (kill as u64 % 3);
        let others: Vec<u64> = (1..=3).filter(|n| *n != victim).collect();
        let (status, opened) = stack.open(victim, "token-a", "web-07").await;
        assert_eq!(status, StatusCode::CREATED, "{opened}");
        let id = opened["session_id"].as_str().unwrap().to_string();
        assert!(try_run(&stack, others[0], &id, "cd /tmp").await.is_some());
        stack.kill(victim);
        let killed = Instant::now();
        let mut attempt = 0;
        loop {
            assert!(
                killed.elapsed() < WAIT,
                "kill {kill}: the session was not adopted"
            );
            let node = others[attempt % 2];
            attempt += 1;
            if try_run(&stack, node, &id, "dir").await.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        times.push(killed.elapsed());
        let (status, _) = stack
            .delete(others[0], "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        stack.spawn_broker(victim);
        stack.wait_healthy(victim).await;
    }
    times.sort();
    let ms = |d: Duration| d.as_millis();
    println!(
        "kill -9 of the session's node to its next successful command, {KILLS} kills: p50 {} ms, max {} ms (min {} ms)",
        ms(times[KILLS / 2]),
        ms(times[KILLS - 1]),
        ms(times[0])
    );
}
