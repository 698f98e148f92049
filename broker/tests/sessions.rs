//! Live response sessions end to end: a real nats-server, three `lr-broker` processes and real
//! agents on loopback; analysts on one node, agents on another.

mod common;

use std::process::Command;

use common::{Stack, WAIT};
use reqwest::StatusCode;
use serde_json::Value;

fn tool_hash(tool: &str, path: &str) -> String {
    let out = Command::new(tool).arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_on_node_1_investigates_a_device_on_node_3() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;

    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    assert!(session["token"].as_u64().unwrap() > 0);

    let files = stack.path().join("evidence dir");
    std::fs::create_dir_all(&files).unwrap();
    let sample = files.join("sample.bin");
    std::fs::write(
        &sample,
        (0..200_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();

    let dir = stack
        .run(1, "token-a", &id, &format!("dir \"{}\"", files.display()))
        .await;
    assert_eq!(dir["state"], "completed", "{dir}");
    assert!(dir["output"].to_string().contains("sample.bin"), "{dir}");

    let cd = stack
        .run(1, "token-a", &id, &format!("cd \"{}\"", files.display()))
        .await;
    assert_eq!(cd["state"], "completed", "{cd}");
    assert_eq!(cd["cwd"], files.display().to_string());

    // Relative to the session's cwd, kept by the session across commands.
    let info = stack.run(1, "token-a", &id, "fileinfo sample.bin").await;
    assert_eq!(info["state"], "completed", "{info}");
    let text = info["output"].to_string();
    let sample = sample.display().to_string();
    for tool in ["sha256sum", "sha1sum", "md5sum"] {
        let hash = tool_hash(tool, &sample);
        assert!(text.contains(&hash), "{tool} {hash} not in {text}");
    }

    let processes = stack.run(1, "token-a", &id, "processes").await;
    assert_eq!(processes["state"], "completed");
    let own = std::process::id();
    let list = processes["output"]["processes"].as_array().unwrap();
    assert!(
        list.iter().any(|p| p["pid"] == own),
        "own pid {own} missing"
    );

    let found = stack
        .run(
            1,
            "token-a",
            &id,
            &format!("findfile sample.* -path \"{}\"", stack.path().display()),
        )
        .await;
    assert_eq!(found["state"], "completed", "{found}");
    assert!(found["output"].to_string().contains(&sample), "{found}");

    // Bad input: a malformed line and an unknown command change nothing and say why.
    let (status, body) = stack
        .post(
            1,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands"),
            Some(serde_json::json!({"command_line": "cd \"/tmp"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = stack
        .post(
            2,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands"),
            Some(serde_json::json!({"command_line": "rm -rf /"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown command 'rm'")
    );

    // Another tenant sees neither the device nor the session.
    let (status, _) = stack.open(2, "token-c", "web-07").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .get(2, "token-c", &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = stack
        .delete(2, "token-a", &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = stack
        .post(
            1,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands"),
            Some(serde_json::json!({"command_line": "dir"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a command on a closed session is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limits_name_the_holder_and_ending_frees_the_device() {
    let mut stack = Stack::start(
        3,
        "[tenants.demo]\nmax_sessions_per_tenant = 2\nmax_sessions_per_user = 1\n",
    )
    .await;
    for (device, broker) in [("d1", 1), ("d2", 2), ("d3", 3)] {
        stack.start_agent("demo", device, device, &[broker]).await;
    }
    for device in ["d1", "d2", "d3"] {
        stack.wait_online("token-a", device, None).await;
    }

    let (status, first) = stack.open(1, "token-a", "d1").await;
    assert_eq!(status, StatusCode::CREATED, "{first}");

    let (status, body) = stack.open(2, "token-b", "d1").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["invariant"], "one_session_per_device");
    assert_eq!(body["error"]["holders"][0]["user"], "analyst-a");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("held by analyst-a"),
        "{body}"
    );

    let (status, body) = stack.open(3, "token-a", "d2").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["invariant"], "sessions_per_user");

    let (status, _) = stack.open(3, "token-b", "d2").await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = stack.open(1, "token-d", "d3").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["invariant"], "sessions_per_tenant");

    let (_, sessions) = stack.get(2, "token-b", "/api/v1/sessions").await;
    assert_eq!(sessions["items"].as_array().unwrap().len(), 2);

    let id = first["session_id"].as_str().unwrap();
    let (status, _) = stack
        .delete(3, "token-a", &format!("/api/v1/sessions/{id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = stack.open(2, "token-d", "d1").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "ending a session frees its device at once: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_session_moves_and_its_agent_moves_to_another_node() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 9000\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[2, 3]).await;
    stack.wait_online("token-a", "web-07", None).await;
    let (_, devices) = stack.get(1, "token-a", "/api/v1/devices").await;
    let agent_node = devices["items"][0]["node"].as_u64().unwrap();
    let other = if agent_node == 2 { 3 } else { 2 };

    // The session's node dies: another node adopts the session, which works on.
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    stack.kill(1);
    let moved = testkit::wait_until(WAIT, || async {
        let (status, view) = stack
            .get(other, "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        status == StatusCode::OK && view["node"] != 1
    })
    .await;
    assert!(moved, "the dead node's session was not adopted");
    assert_eq!(
        stack.run(other, "token-a", &id, "cd /").await["state"],
        "completed"
    );

    // Node 1 comes back (two of three keep the Raft majority), then the agent's node dies: the
    // agent reconnects to the other node and the session, moved again if it lived there, works.
    stack.spawn_broker(1);
    stack.wait_healthy(1).await;
    stack.kill(agent_node);
    stack
        .wait_online_via(other, "token-a", "web-07", other)
        .await;
    let dir = testkit::wait_until(WAIT, || async {
        let (status, view) = stack
            .get(other, "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        status == StatusCode::OK && view["node"] != agent_node
    })
    .await;
    assert!(dir, "the session did not settle on a live node");
    let dir = stack.run(other, "token-a", &id, "dir").await;
    assert_eq!(dir["state"], "completed", "{dir}");
    assert_eq!(dir["cwd"], "/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_certificate_does_not_match_its_hello_is_refused() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "impostor", "web-07", &[1]).await;
    stack.start_agent("demo", "honest", "honest", &[1]).await;
    stack.wait_online("token-a", "honest", None).await;
    let refused = testkit::wait_until(WAIT, || async {
        stack.log(1).contains("hello claims device impostor")
    })
    .await;
    assert!(
        refused,
        "the broker did not refuse the mismatched hello:\n{}",
        stack.log(1)
    );
    let (_, devices) = stack.get(1, "token-a", "/api/v1/devices").await;
    let names: Vec<&Value> = devices["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["device"])
        .collect();
    assert!(
        !names.iter().any(|n| *n == "impostor" || *n == "web-07"),
        "{devices}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_analyst_vanished_ends_by_idle_timeout() {
    let mut stack = Stack::start(3, "[sessions]\nidle_timeout_ms = 1500\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[1]).await;
    stack.wait_online("token-a", "web-07", None).await;
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED);
    let id = session["session_id"].as_str().unwrap().to_string();
    let ended = testkit::wait_until(WAIT, || async {
        stack
            .get(1, "token-a", &format!("/api/v1/sessions/{id}"))
            .await
            .0
            == StatusCode::NOT_FOUND
    })
    .await;
    assert!(ended, "the idle session did not end");
    // Its lease is released: the device is free for someone else at once.
    let (status, body) = stack.open(1, "token-b", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// A device's node that stops answering holds up neither the session's lease renewal nor its
/// analyst: with a lease of 3 s and dispatches that wait 5 s each, the session outlives several
/// of them, and each command fails saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_waiting_on_a_stalled_device_node_do_not_starve_the_lease() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 3000\n").await;
    // The device on a node that does not lead Raft, the session on another.
    let (_, health) = stack.get(1, "token-a", "/healthz").await;
    let leader = health["leader"].as_u64().unwrap();
    let device_node = (1..=3).find(|n| *n != leader).unwrap();
    let session_node = (1..=3).find(|n| *n != device_node).unwrap();
    stack
        .start_agent("demo", "web-07", "web-07", &[device_node])
        .await;
    stack
        .wait_online("token-a", "web-07", Some(device_node))
        .await;
    let (status, session) = stack.open(session_node, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();

    let pid = stack.brokers[&device_node].child.as_ref().unwrap().id();
    let _stalled = testkit::Paused::new(pid);
    for _ in 0..3 {
        let done = stack.run(session_node, "token-a", &id, "processes").await;
        assert_eq!(done["state"], "failed", "{done}");
        assert!(
            done["error"]
                .as_str()
                .unwrap()
                .contains("could not be sent to device web-07"),
            "{done}"
        );
        let (status, alive) = stack
            .get(session_node, "token-a", &format!("/api/v1/sessions/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "the session ended: {alive}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_output_streams_live_to_any_node() {
    use futures::StreamExt;

    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let (_, session) = stack.open(1, "token-a", "web-07").await;
    let id = session["session_id"].as_str().unwrap().to_string();

    // Listen on node 2 while the command runs through node 1.
    let events = stack
        .http
        .get(format!("{}/api/v1/sessions/{id}/events", stack.url(2)))
        .bearer_auth("token-a")
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), StatusCode::OK);
    let mut body = events.bytes_stream();
    let done = stack.run(1, "token-a", &id, "cd /tmp").await;
    assert_eq!(done["state"], "completed");

    let mut seen = String::new();
    let streamed = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if seen.contains("event: command") && seen.contains("\"state\":\"completed\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(streamed, Ok(true), "no completed command event in: {seen}");

    // Another analyst of the tenant cannot listen to this session.
    let (status, _) = stack
        .get(2, "token-b", &format!("/api/v1/sessions/{id}/events"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_reaches_the_agent_and_stops_a_search_of_the_whole_disk() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let (_, session) = stack.open(1, "token-a", "web-07").await;
    let id = session["session_id"].as_str().unwrap().to_string();

    // A search that would take far longer than the test: every file under /, no match limit.
    let (status, submitted) = stack
        .post(1, "token-a", &format!("/api/v1/sessions/{id}/commands"), Some(serde_json::json!({"command_line": "findfile *zz-no-such* -path / -max 10000 -xdev false"})))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let cid = submitted["command_id"].as_str().unwrap().to_string();
    let running = testkit::wait_until(WAIT, || async {
        let (_, c) = stack
            .get(
                2,
                "token-a",
                &format!("/api/v1/sessions/{id}/commands/{cid}"),
            )
            .await;
        c["state"] == "running"
    })
    .await;
    assert!(running);

    let asked = std::time::Instant::now();
    let (status, _) = stack
        .post(
            2,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands/{cid}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (_, command) = stack
        .get(
            2,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands/{cid}?wait_ms=10000"),
        )
        .await;
    let took = asked.elapsed();
    assert_eq!(command["state"], "cancelled", "{command}");
    assert!(
        took < std::time::Duration::from_secs(1),
        "the cancel took {took:?}"
    );
    // What had been done comes back with the cancel.
    assert!(command["output"]["matches"].is_array(), "{command}");

    let next = stack.run(1, "token-a", &id, "cd /tmp").await;
    assert_eq!(
        next["state"], "completed",
        "the session accepts the next command: {next}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_outputs_are_kept_by_reference_and_the_command_list_stays_readable() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    // A directory whose listing is about 2 MB.
    let dir = stack.path().join("many");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..6_000 {
        std::fs::write(dir.join(format!("{i:05}-{}", "x".repeat(120))), b"").unwrap();
    }
    let (_, session) = stack.open(1, "token-a", "web-07").await;
    let id = session["session_id"].as_str().unwrap().to_string();
    let line = format!("dir {}", dir.display());
    let mut size = 0;
    for _ in 0..10 {
        let done = stack.run(1, "token-a", &id, &line).await;
        assert_eq!(done["state"], "completed", "{}", done["error"]);
        size = done["output"].to_string().len();
    }
    assert!(size > 1_700_000, "the listing is only {size} bytes");

    // Ten such outputs are more than one NATS message carries (8 MiB): the list is readable
    // because the session keeps them by reference, and each output is still all there. A page
    // ends once its outputs pass 16 MiB, and `next` leads to the rest.
    let path = format!("/api/v1/sessions/{id}/commands?limit=10");
    let deadline = tokio::time::Instant::now() + WAIT;
    let listed = loop {
        let (status, page) = stack.get(2, "token-a", &path).await;
        if status == StatusCode::OK {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let items = listed["items"].as_array().unwrap();
    let fits = (16 * 1024 * 1024) / size + 1;
    assert_eq!(items.len(), fits.min(10), "{size}-byte outputs");
    for item in items {
        assert_eq!(item["output"].to_string().len(), size);
    }
    let next = listed["next"].as_str().expect("a next page");
    let (status, rest) = stack
        .get(2, "token-a", &format!("{path}&after={next}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{rest}");
    assert_eq!(rest["items"].as_array().unwrap().len() + items.len(), 10);
    assert!(rest["next"].is_null(), "{}", rest["next"]);
    let first = items[0]["command_id"].as_str().unwrap();
    let (status, one) = stack
        .get(
            1,
            "token-a",
            &format!("/api/v1/sessions/{id}/commands/{first}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["output"].to_string().len(), size);
}

/// analyst-a's console client, given the three API nodes, node 1 first.
fn console_of_three(stack: &Stack) -> lr_console::api::Client {
    lr_console::api::Client::new(&lr_console::api::Endpoint {
        base: stack.url(1).parse().unwrap(),
        token: Some("token-a".to_string()),
        ca_cert: Some(stack.ca_path()),
    })
    .unwrap()
    .with_nodes(vec![
        stack.url(2).parse().unwrap(),
        stack.url(3).parse().unwrap(),
    ])
}

/// The console's client, given three API nodes, keeps a session's work going when the first dies
/// in the middle of a command's long-poll: it moves to the next node and stays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_moves_to_another_api_node_when_its_node_dies_mid_command() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    // The session lives on node 2; the console talks to node 1 first.
    let (status, session) = stack.open(2, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    let console = console_of_three(&stack);

    // A search that runs a few seconds at least, long-polled through node 1 when it dies.
    let line = "findfile *zz-no-such* -path / -max 10000 -xdev false";
    let running = console.submit(&id, line).await.unwrap();
    let poll = tokio::spawn({
        let (console, id, cid) = (console.clone(), id.clone(), running.command_id.clone());
        async move { console.command(&id, &cid, WAIT).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stack.kill(1);
    let cancelled = console.cancel(&id, &running.command_id).await;
    assert!(cancelled.is_ok(), "{cancelled:?}");
    let ended = poll.await.unwrap().unwrap();
    assert_ne!(ended.state, api_model::CommandState::Running, "{ended:?}");
    // Later work goes straight through the node that answered.
    let next = console.submit(&id, "cd /tmp").await.unwrap();
    let done = console.command(&id, &next.command_id, WAIT).await.unwrap();
    assert_eq!(done.state, api_model::CommandState::Completed, "{done:?}");
}

/// `lr exec` and the REPL, given three API nodes, keep a session's work going when the first,
/// which also holds the session, dies mid-command: the console moves on, another node adopts
/// the session, and the running command's true end arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_keeps_working_when_its_first_node_and_the_sessions_dies_mid_command() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 9000\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    let console = console_of_three(&stack);
    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["session_id"].as_str().unwrap().to_string();
    let cd = console.submit(&id, "cd /tmp").await.unwrap();
    assert_eq!(
        console
            .command(&id, &cd.command_id, WAIT)
            .await
            .unwrap()
            .state,
        api_model::CommandState::Completed
    );

    let line = "findfile *zz-no-such* -path / -max 10000 -xdev false";
    let running = console.submit(&id, line).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stack.kill(1);
    let mut ended = console
        .command(&id, &running.command_id, WAIT)
        .await
        .unwrap();
    for _ in 0..4 {
        if !matches!(
            ended.state,
            api_model::CommandState::Queued | api_model::CommandState::Running
        ) {
            break;
        }
        ended = console
            .command(&id, &running.command_id, WAIT)
            .await
            .unwrap();
    }
    assert!(
        matches!(
            ended.state,
            api_model::CommandState::Completed | api_model::CommandState::Failed
        ),
        "the running command reports its true end: {ended:?}"
    );
    let next = console.submit(&id, "dir").await.unwrap();
    let done = console.command(&id, &next.command_id, WAIT).await.unwrap();
    assert_eq!(done.state, api_model::CommandState::Completed, "{done:?}");
    assert_eq!(done.cwd.as_deref(), Some("/tmp"), "{done:?}");
}
