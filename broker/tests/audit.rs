//! The audit log on a real stack: a session with commands, a getfile and a putfile read back
//! after the session ended and after every broker restarted; the chain verified against the
//! cluster's checkpoint; tenant isolation and roles; a command whose broker dies before its
//! result still on record.

mod common;

use common::{Stack, WAIT};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "token-a";

async fn entries(stack: &Stack, node: u64, token: &str, query: &str) -> Vec<Value> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/api/v1/audit?limit=50&after={cursor}&{query}"),
            None => format!("/api/v1/audit?limit=50&{query}"),
        };
        let (status, page) = stack.get(node, token, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        found.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return found,
        }
    }
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_story_outlives_the_session_and_every_broker() {
    let mut stack = Stack::start(3, "").await;
    let (_, admin) = stack.admin_token().await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;

    let response = stack
        .http
        .put(format!("{}/api/v1/library/tool.sh", stack.url(2)))
        .bearer_auth(TOKEN)
        .body("echo audited\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, session) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();
    let dir = stack.run(1, TOKEN, &session, "dir /").await;
    assert_eq!(dir["state"], "completed", "{dir}");
    for line in ["getfile /etc/hostname -auto", "putfile tool.sh -overwrite"] {
        let started = stack.run(1, TOKEN, &session, line).await;
        assert_eq!(started["state"], "completed", "{line}: {started}");
        let id = started["output"]["transfer_id"].as_str().unwrap();
        let done = stack.transfer_finished(1, TOKEN, id).await;
        assert_eq!(done["state"], "completed", "{done}");
    }
    let (status, _) = stack
        .call(
            1,
            TOKEN,
            Method::DELETE,
            &format!("/api/v1/sessions/{session}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let story = |entries: Vec<Value>| {
        entries
            .into_iter()
            .filter(|e| e["session"] == session.as_str())
            .collect::<Vec<_>>()
    };
    let read = story(entries(&stack, 2, TOKEN, "").await);
    let seen = kinds(&read);
    for kind in [
        "session_opened",
        "command_submitted",
        "command_finished",
        "transfer_started",
        "transfer_finished",
        "session_ended",
    ] {
        assert!(seen.iter().any(|k| k == kind), "no {kind} in {seen:?}");
    }
    assert_eq!(seen.first().map(String::as_str), Some("session_opened"));
    assert_eq!(seen.last().map(String::as_str), Some("session_ended"));
    let submitted = read
        .iter()
        .position(|e| e["kind"] == "command_submitted" && e["details"]["command_line"] == "dir /")
        .unwrap();
    let finished = read
        .iter()
        .position(|e| e["kind"] == "command_finished" && e["details"]["command_line"] == "dir /")
        .unwrap();
    assert!(submitted < finished, "submitted before it finished");
    let transfers: Vec<&Value> = read
        .iter()
        .filter(|e| e["kind"] == "transfer_finished")
        .collect();
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    assert!(transfers.iter().any(|t| {
        t["details"]["direction"] == "getfile"
            && t["details"]["path"] == "/etc/hostname"
            && t["details"]["sha256"]
                .as_str()
                .is_some_and(|s| s.len() == 64)
    }));
    assert!(
        transfers
            .iter()
            .any(|t| t["details"]["direction"] == "putfile")
    );
    let everything = entries(&stack, 2, TOKEN, "").await;
    assert!(
        kinds(&everything).iter().any(|k| k == "library_changed"),
        "{everything:?}"
    );

    // The session's own command list still answers, from the log.
    let (status, listed) = stack
        .get(3, TOKEN, &format!("/api/v1/sessions/{session}/commands"))
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let first = &listed["items"][0];
    assert_eq!(first["command_line"], "dir /");
    assert_eq!(first["state"], "completed", "{listed}");
    assert!(first["output"].is_object(), "{listed}");
    let (status, one) = stack
        .get(
            1,
            TOKEN,
            &format!(
                "/api/v1/sessions/{session}/commands/{}",
                first["command_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(one["state"], "completed");
    let (status, _) = stack
        .get(
            1,
            "token-b",
            &format!("/api/v1/sessions/{session}/commands"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another analyst's ended session"
    );

    // The output, by reference.
    let reference = read[finished]["output_ref"].as_str().unwrap().to_string();
    let response = stack
        .http
        .get(format!("{}/api/v1/audit/output/{reference}", stack.url(3)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("\"path\""));

    // Another tenant sees none of it, not even by reference.
    let acme = entries(&stack, 1, "token-c", "").await;
    assert!(acme.iter().all(|e| e["tenant"] == "acme"), "{acme:?}");
    let (status, _) = stack
        .get(1, "token-c", &format!("/api/v1/audit/output/{reference}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A viewer reads entries, not outputs; only admins verify.
    let (status, user) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::POST,
            "/api/v1/admin/users",
            Some(json!({"name": "watcher", "roles": [{"role": "viewer"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, created) = stack
        .call_in(
            1,
            &admin,
            Some("demo"),
            Method::POST,
            "/api/v1/admin/tokens",
            Some(json!({"user": "watcher"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let viewer = created["token"].as_str().unwrap().to_string();
    assert!(
        !entries(&stack, 1, &viewer, "kind=command_finished")
            .await
            .is_empty()
    );
    let (status, refused) = stack
        .get(1, &viewer, &format!("/api/v1/audit/output/{reference}"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, _) = stack.get(1, &viewer, "/api/v1/audit/verify").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Refusals are on record too.
    let refusals = entries(&stack, 2, TOKEN, "kind=refused&user=watcher").await;
    assert!(refusals.len() >= 2, "{refusals:?}");

    // Every broker restarted: the same story, and the chain verifies against the checkpoint.
    for id in 1..=3 {
        stack.kill(id);
    }
    for id in 1..=3 {
        stack.spawn_broker(id);
    }
    for id in 1..=3 {
        stack.wait_healthy(id).await;
    }
    let again = story(entries(&stack, 3, TOKEN, "").await);
    assert_eq!(again, read);
    // As `lr log --session` reads it.
    let console = lr_console::api::Client::new(&lr_console::api::Endpoint {
        base: stack.url(1).parse().unwrap(),
        token: Some(TOKEN.to_string()),
        ca_cert: Some(stack.ca_path()),
    })
    .unwrap();
    let filter = api_model::AuditFilter {
        session: Some(session.clone()),
        ..Default::default()
    };
    let listed = console.audit(&filter, 10_000).await.unwrap();
    let seqs: Vec<u64> = listed.items.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = read.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, expected);
    let verified = testkit::wait_until(WAIT, || async {
        let (status, verify) = stack
            .call_in(
                1,
                &admin,
                Some("demo"),
                Method::GET,
                "/api/v1/audit/verify",
                None,
            )
            .await;
        status == StatusCode::OK
            && verify["ok"] == true
            && verify["checkpoint_seq"].as_u64() > Some(0)
    })
    .await;
    assert!(verified, "the chain did not verify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_broker_dies_before_its_result_stays_on_record() {
    let mut stack = Stack::start(3, "[sessions]\nlease_ttl_ms = 3000\n").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    let (status, session) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();
    // A command that outlives its session's broker.
    let (status, command) = stack
        .post(
            1,
            TOKEN,
            &format!("/api/v1/sessions/{session}/commands"),
            Some(json!({"command_line": "processes"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{command}");
    let id = command["command_id"].as_str().unwrap().to_string();
    stack.kill(1);
    let story = entries(&stack, 2, TOKEN, &format!("session={session}")).await;
    let submitted = story
        .iter()
        .find(|e| e["kind"] == "command_submitted" && e["command_id"] == id.as_str());
    assert!(submitted.is_some(), "{story:?}");
    // Its session's list answers from the log: finished, or failed with an unknown outcome.
    let listed = testkit::wait_until(WAIT, || async {
        let (status, listed) = stack
            .get(2, TOKEN, &format!("/api/v1/sessions/{session}/commands"))
            .await;
        status == StatusCode::OK
            && listed["items"][0]["command_id"] == id.as_str()
            && matches!(
                listed["items"][0]["state"].as_str(),
                Some("completed" | "failed")
            )
    })
    .await;
    assert!(listed, "the dead broker's session has no command list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_entry_cannot_be_written_is_refused() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    let (status, session) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        stack.run(1, TOKEN, &session, "dir /").await["state"],
        "completed"
    );

    // JetStream off, core NATS (the sessions' control subjects) still up.
    stack.nats.reconfigure(|config| {
        config
            .lines()
            .filter(|l| !l.trim_start().starts_with("jetstream"))
            .map(|l| format!("{l}\n"))
            .collect()
    });
    let refused = testkit::wait_until(WAIT, || async {
        let (status, answer) = stack
            .post(
                1,
                TOKEN,
                &format!("/api/v1/sessions/{session}/commands"),
                Some(json!({"command_line": "processes"})),
            )
            .await;
        status == StatusCode::SERVICE_UNAVAILABLE
            && answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("audit log") && m.contains("nothing was done"))
    })
    .await;
    assert!(refused, "a command was taken without its audit entry");
}

/// Verifies tenant `tenant`'s chain as the platform admin until `done` holds for the answer;
/// the answer, or none past the deadline.
async fn verified_when(
    stack: &Stack,
    admin: &str,
    tenant: &str,
    done: impl Fn(&Value) -> bool,
) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        let (status, verify) = stack
            .call_in(
                1,
                admin,
                Some(tenant),
                Method::GET,
                "/api/v1/audit/verify",
                None,
            )
            .await;
        if status == StatusCode::OK && done(&verify) {
            return Some(verify);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_cuts_one_tenants_chain_where_the_cluster_records_it() {
    // Tenant demo keeps its entries about 3.5 s; acme the default 180 days.
    let mut stack = Stack::start(
        3,
        "\n[audit]\nretention_interval_ms = 1000\ncheckpoint_interval_ms = 200\n\n[tenants.demo]\naudit_retention_days = 0.00004\n",
    )
    .await;
    let (_, admin) = stack.admin_token().await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online(TOKEN, "web-07", Some(3)).await;
    let (status, session) = stack.open(1, TOKEN, "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        stack.run(1, TOKEN, &session, "dir /").await["state"],
        "completed"
    );
    let response = stack
        .http
        .put(format!("{}/api/v1/library/acme.sh", stack.url(2)))
        .bearer_auth("token-c")
        .body("echo acme\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let acme_before = entries(&stack, 1, "token-c", "").await;
    assert!(!acme_before.is_empty());
    let old = entries(&stack, 1, TOKEN, "kind=command_finished").await;
    let old_output = old[0]["output_ref"].as_str().unwrap().to_string();

    // Past demo's retention, new entries keep coming; the old ones go, with their outputs.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let young = stack.run(1, TOKEN, &session, "dir /").await;
    assert_eq!(young["state"], "completed");
    let gone = testkit::wait_until(WAIT, || async {
        let path = format!("/api/v1/audit/output/{old_output}");
        stack.get(1, TOKEN, &path).await.0 == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone, "an expired output is still there");
    let cut = verified_when(&stack, &admin, "demo", |v| {
        v["ok"] == true && v["first_seq"].as_u64() > Some(1)
    })
    .await
    .expect("retention never cut demo's chain");
    assert!(cut["cut_at"].is_string(), "{cut}");
    let kept = entries(&stack, 2, TOKEN, "").await;
    assert!(
        kept[0]["seq"].as_u64() >= cut["first_seq"].as_u64(),
        "{kept:?}"
    );
    // Another tenant's retention is its own.
    assert_eq!(entries(&stack, 1, "token-c", "").await, acme_before);
    let acme = verified_when(&stack, &admin, "acme", |v| v["ok"] == true)
        .await
        .expect("acme's chain does not verify");
    assert_eq!(acme["first_seq"], 1, "{acme}");

    // Broker credentials may purge in the log, for retention; entries removed beyond the
    // recorded cut are named by the verifier.
    let client = common::connect_as_broker(&stack.nats, &stack.certs, 2).await;
    let stream = async_nats::jetstream::new(client)
        .get_stream(broker::audit::STREAM)
        .await
        .unwrap();
    stream.purge().filter("lr.demo.audit.log").await.unwrap();
    let named = verified_when(&stack, &admin, "demo", |v| {
        v["ok"] == false && v["first_broken"].as_u64() == v["first_seq"].as_u64()
    })
    .await
    .expect("a purge past the cut went unnoticed");
    assert!(
        named["problem"].as_str().unwrap().contains("removed"),
        "{named}"
    );
}
