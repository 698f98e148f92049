//! Probes and request logs on a real stack: `/readyz` says ready and why not, every request gets
//! an id echoed in `x-request-id` and logged with its route template, and JSON logs parse.

mod common;

use std::time::Duration;

use common::{Stack, WAIT};
use reqwest::StatusCode;
use serde_json::Value;

/// A session id no session has: in a path it must not reach the access log.
const RAW_ID: &str = "s-no-such-session-4711";

/// GETs `path` on broker `id` with an optional `x-request-id`; answers the status, the echoed
/// id and the body.
async fn get(
    stack: &Stack,
    id: u64,
    path: &str,
    request_id: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = stack
        .http
        .get(format!("{}{path}", stack.url(id)))
        .bearer_auth("token-a");
    if let Some(request_id) = request_id {
        request = request.header("x-request-id", request_id);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let echoed = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    (status, echoed, response.json().await.unwrap_or(Value::Null))
}

/// The log line of broker `id` that carries `request_id`, once it is written.
async fn access_line(stack: &Stack, id: u64, request_id: &str) -> String {
    let found = testkit::wait_until(WAIT, || async {
        stack
            .log(id)
            .lines()
            .any(|l| l.contains(request_id) && l.contains("api request"))
    })
    .await;
    let log = stack.log(id);
    assert!(found, "no access line for {request_id} in:\n{log}");
    log.lines()
        .find(|l| l.contains(request_id) && l.contains("api request"))
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_leader_and_requests_carry_their_id() {
    let mut stack = Stack::start(3, "").await;

    let (status, _, body) = get(&stack, 1, "/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["reason"], Value::Null, "{body}");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["leader", "directory", "nats", "jetstream", "listeners"]
    );

    // A client's id comes back and is logged with the route's template, not the raw path.
    let path = format!("/api/v1/sessions/{RAW_ID}");
    let (status, echoed, body) = get(&stack, 1, &path, Some("trace-abc-123")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(echoed.as_deref(), Some("trace-abc-123"));
    let line = access_line(&stack, 1, "trace-abc-123").await;
    assert!(line.contains("/api/v1/sessions/{id}"), "{line}");
    assert!(line.contains("status=404"), "{line}");
    assert!(line.contains("GET"), "{line}");
    assert!(line.contains("duration_ms="), "{line}");
    assert!(!line.contains(RAW_ID), "{line}");
    assert!(
        !stack.log(1).contains("token-a"),
        "a bearer token reached the log"
    );

    // Without one (or with one that is no plain token) the broker makes one up.
    for given in [None, Some("no spaces allowed")] {
        let (_, echoed, _) = get(&stack, 1, "/healthz", given).await;
        let echoed = echoed.expect("an x-request-id");
        let uuid = uuid::Uuid::parse_str(&echoed).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 7);
        let line = access_line(&stack, 1, &echoed).await;
        assert!(line.contains("/healthz"), "{line}");
    }

    // Alone, broker 1 has no leader: alive, but not ready, and it says why.
    stack.kill(2);
    stack.kill(3);
    let last = std::sync::Mutex::new(Value::Null);
    let unready = testkit::wait_until(Duration::from_secs(60), || {
        let request = stack.http.get(format!("{}/readyz", stack.url(1))).send();
        let last = &last;
        async move {
            let Ok(response) = request.await else {
                return false;
            };
            let status = response.status();
            let body = response.json().await.unwrap_or(Value::Null);
            let named = body["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("leader:"));
            *last.lock().unwrap() = body;
            status == StatusCode::SERVICE_UNAVAILABLE && named
        }
    })
    .await;
    let last = last.into_inner().unwrap();
    assert!(
        unready,
        "broker 1 still ready alone: {last}\n{}",
        stack.log(1)
    );
    assert_eq!(last["ready"], false, "{last}");
    assert_eq!(last["checks"][0]["ok"], false, "{last}");
    assert!(
        last["checks"][0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no raft leader")),
        "{last}"
    );
    let (status, _, _) = get(&stack, 1, "/healthz", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "/healthz answers while the process serves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line() {
    let mut stack = Stack::start(3, "").await;
    stack.kill(1);
    stack.spawn_broker_with_env(1, &[("LR_LOG_FORMAT", "json")]);
    stack.wait_healthy(1).await;

    let (status, echoed, body) = get(&stack, 1, "/readyz", Some("json-line-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(echoed.as_deref(), Some("json-line-1"));
    let line = access_line(&stack, 1, "json-line-1").await;

    let log = stack.log(1);
    let mut lines = 0;
    for text in log.lines().filter(|l| !l.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(text);
        assert!(parsed.is_ok(), "not json: {text}\nwhole log:\n{log}");
        lines += 1;
    }
    assert!(lines > 1, "{log}");
    let access: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(access["fields"]["status"], 200, "{access}");
    assert_eq!(access["span"]["request_id"], "json-line-1", "{access}");
    assert_eq!(access["span"]["route"], "/readyz", "{access}");
}

/// `lr health` against real brokers: ready through every node, then, with two of three gone,
/// not ready, naming the survivor's failed leader check and the nodes that did not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lr_health_reads_every_nodes_readiness() {
    use lr_console::exit::Exit;
    use lr_console::render::Format;
    let mut stack = Stack::start(3, "").await;
    let console = lr_console::api::Client::new(&lr_console::api::Endpoint {
        base: stack.url(1).parse().unwrap(),
        token: None,
        ca_cert: Some(stack.ca_path()),
    })
    .unwrap()
    .with_nodes(vec![
        stack.url(2).parse().unwrap(),
        stack.url(3).parse().unwrap(),
    ]);
    let ready = lr_console::health::run(&console, Format::Json).await;
    assert!(matches!(ready, Ok(Exit::Success)), "{ready:?}");

    stack.kill(2);
    stack.kill(3);
    let failed = testkit::wait_until(WAIT, || async {
        match lr_console::health::run(&console, Format::Json).await {
            Err(failure) => {
                failure.exit == Exit::Unavailable && failure.message.contains("leader:")
            }
            Ok(_) => false,
        }
    })
    .await;
    assert!(failed, "broker 1 still counts as ready without a majority");
}
