//! One trace follows a command across every process it passes: the API node's request, the
//! session's node, the device's node and the agent, each exporting its spans over OTLP/gRPC to a
//! collector in this test process; and a session's opening reaches the Raft leader in the trace
//! of its request (gRPC metadata on the forwarded call). Brokers are real processes configured with
//! `[tracing] otlp_endpoint`; the agent runs in this process, exporting through the layer its
//! binary installs from the same setting.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Stack, TENANT, WAIT};
use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::otlp::{Collector, ReceivedSpan};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

const TOKEN: &str = "token-a";
const DEVICE: &str = "web-07";
const RUN_ID: &str = "trace-test-run-1";
const OPEN_ID: &str = "trace-test-open-1";
const QUEUED_ID: &str = "trace-test-queued-1";
/// Spans leave each process within this long of ending, so the test does not wait 5 s a batch.
const BATCH_DELAY_MS: &str = "100";

/// Who exported a span: a broker by its node id, or the agent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Exporter {
    Broker(u64),
    Agent(String),
    Other(String),
}

fn exporter(span: &ReceivedSpan) -> Exporter {
    match span.service() {
        "lr-broker" => match span.resource.get("lr.node_id").map(|id| id.parse()) {
            Some(Ok(id)) => Exporter::Broker(id),
            _ => Exporter::Other(format!("lr-broker without a node id: {:?}", span.resource)),
        },
        "lr-agent" => Exporter::Agent(
            span.resource
                .get("lr.device_id")
                .cloned()
                .unwrap_or_default(),
        ),
        other => Exporter::Other(other.to_string()),
    }
}

/// The spans of the trace whose root is the API request with `request_id`, once each of them
/// reaches that root through parents the collector has received.
fn trace_of(spans: &[ReceivedSpan], request_id: &str) -> Option<Vec<ReceivedSpan>> {
    let request = spans.iter().find(|s| {
        s.name == "request"
            && s.attributes.get("request_id").map(String::as_str) == Some(request_id)
    })?;
    let trace: Vec<ReceivedSpan> = spans
        .iter()
        .filter(|s| s.trace_id == request.trace_id)
        .cloned()
        .collect();
    let by_id: BTreeMap<&str, &ReceivedSpan> =
        trace.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let joined = trace.iter().all(|span| {
        let mut at = span;
        for _ in 0..64 {
            if at.span_id == request.span_id {
                return true;
            }
            match by_id.get(at.parent_span_id.as_str()) {
                Some(parent) => at = parent,
                None => return false,
            }
        }
        false
    });
    joined.then_some(trace)
}

/// Waits until the trace of `request_id` holds a span named so by each of `wanted`; answers it.
async fn wait_for_trace(
    collector: &Collector,
    agent: &telemetry::Telemetry,
    request_id: &str,
    wanted: &[(Exporter, &str)],
) -> Vec<ReceivedSpan> {
    let mut trace = Vec::new();
    let complete = testkit::wait_until(WAIT, || {
        agent.flush();
        trace = trace_of(&collector.spans(), request_id).unwrap_or_default();
        let done = wanted
            .iter()
            .all(|(who, name)| trace.iter().any(|s| exporter(s) == *who && s.name == *name));
        async move { done }
    })
    .await;
    let summary: Vec<String> = trace
        .iter()
        .map(|s| {
            format!(
                "{:?} {} {}<-{}",
                exporter(s),
                s.name,
                s.span_id,
                s.parent_span_id
            )
        })
        .collect();
    assert!(
        complete,
        "the trace of {request_id} lacks some of {wanted:?}; it holds:\n{}\nall spans received: {}",
        summary.join("\n"),
        collector.spans().len()
    );
    trace
}

/// POSTs `body` to broker `node` with our request id; answers the status and the body.
async fn post(
    stack: &Stack,
    node: u64,
    path: &str,
    request_id: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = stack
        .http
        .post(format!("{}{path}", stack.url(node)))
        .bearer_auth(TOKEN)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_joins_the_api_node_the_session_node_the_device_node_and_the_agent() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let collector = Collector::start().await;
    // The agent runs in this process: its spans leave through the layer `lr-agent` installs for
    // `[tracing] otlp_endpoint`, beside this test's own log output.
    let export = telemetry::Export {
        schedule_delay: Some(Duration::from_millis(100)),
        ..agent::spans_to(&collector.endpoint(), TENANT, DEVICE)
    };
    let (agent_spans, agent_telemetry) = telemetry::layer(&export).unwrap();
    let logs = tracing_subscriber::fmt::layer()
        .with_test_writer()
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")));
    tracing_subscriber::registry()
        .with(logs)
        .with(agent_spans)
        .init();

    let tracing_toml = format!("[tracing]\notlp_endpoint = \"{}\"\n", collector.endpoint());
    let mut stack = Stack::start_with(
        3,
        "",
        &tracing_toml,
        &[("OTEL_BSP_SCHEDULE_DELAY", BATCH_DELAY_MS)],
    )
    .await;
    // The session on a node that does not lead Raft, so opening it forwards to the leader; the
    // device's stream and the analyst's API calls on the two others.
    let (_, ready) = stack.get_text(1, "/readyz").await;
    let leader = serde_json::from_str::<Value>(&ready).unwrap()["leader"]
        .as_u64()
        .unwrap_or_else(|| panic!("no leader in {ready}"));
    let session_node = if leader == 1 { 2 } else { 1 };
    let (api_node, device_node) = match (1..=3).filter(|n| *n != session_node).collect::<Vec<_>>()[..]
    {
        [a, b] => (a, b),
        _ => unreachable!("three brokers"),
    };
    stack
        .start_agent(TENANT, DEVICE, DEVICE, &[device_node])
        .await;
    stack.wait_online(TOKEN, DEVICE, Some(device_node)).await;
    let (status, session) = post(
        &stack,
        session_node,
        "/api/v1/sessions",
        OPEN_ID,
        json!({ "device": DEVICE }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();

    let (status, submitted) = post(
        &stack,
        api_node,
        &format!("/api/v1/sessions/{session}/commands"),
        RUN_ID,
        json!({ "command_line": "cd /" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let command = submitted["command_id"].as_str().unwrap().to_string();
    let finished = testkit::wait_until(WAIT, || async {
        let (_, view) = stack
            .get(
                api_node,
                TOKEN,
                &format!("/api/v1/sessions/{session}/commands/{command}?wait_ms=2000"),
            )
            .await;
        view["state"] == "completed"
    })
    .await;
    assert!(finished, "the command did not complete");

    // Every process of the command's path, in one trace rooted at the API request, there and back.
    let agent = Exporter::Agent(DEVICE.into());
    let trace = wait_for_trace(
        &collector,
        &agent_telemetry,
        RUN_ID,
        &[
            (Exporter::Broker(api_node), "request"),
            (Exporter::Broker(session_node), "session control"),
            (Exporter::Broker(device_node), "device order"),
            (agent.clone(), "agent command"),
            (Exporter::Broker(device_node), "device result"),
            (Exporter::Broker(session_node), "session event"),
        ],
    )
    .await;
    let request = trace.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(
        request.attributes["route"],
        "/api/v1/sessions/{id}/commands"
    );
    assert!(request.parent_span_id.is_empty(), "{request:?}");
    let command_span = trace.iter().find(|s| exporter(s) == agent).unwrap();
    assert_eq!(command_span.attributes["command"], "cd");
    assert_eq!(command_span.resource["lr.tenant"], TENANT);
    let session_span = trace
        .iter()
        .find(|s| exporter(s) == Exporter::Broker(session_node))
        .unwrap();
    assert_eq!(
        session_span.resource["service.instance.id"],
        format!("local/{session_node}")
    );

    // The session's opening: its lease was granted by the leader, called with the trace.
    wait_for_trace(
        &collector,
        &agent_telemetry,
        OPEN_ID,
        &[
            (Exporter::Broker(session_node), "request"),
            (Exporter::Broker(leader), "lease forward"),
        ],
    )
    .await;

    // A command that waits behind a running one is sent while that one's end is handled, yet
    // goes on in its own trace, down to the agent.
    let line = "findfile *zz-no-such* -path / -max 10000 -xdev false";
    let (status, long) = post(
        &stack,
        api_node,
        &format!("/api/v1/sessions/{session}/commands"),
        "trace-test-long-1",
        json!({ "command_line": line }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{long}");
    let long = long["command_id"].as_str().unwrap();
    let (status, queued) = post(
        &stack,
        api_node,
        &format!("/api/v1/sessions/{session}/commands"),
        QUEUED_ID,
        json!({ "command_line": "cd /tmp" }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    assert_eq!(queued["state"], "queued", "{queued}");
    let (status, cancelled) = stack
        .post(
            api_node,
            TOKEN,
            &format!("/api/v1/sessions/{session}/commands/{long}/cancel"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{cancelled}");
    let trace = wait_for_trace(
        &collector,
        &agent_telemetry,
        QUEUED_ID,
        &[
            (Exporter::Broker(device_node), "device order"),
            (agent.clone(), "agent command"),
        ],
    )
    .await;
    let sent = trace.iter().find(|s| exporter(s) == agent).unwrap();
    assert_eq!(sent.attributes["command"], "cd", "{sent:?}");

    // A collector that goes away slows no command, and a node says so once, not per batch.
    drop(collector);
    for _ in 0..3 {
        let started = Instant::now();
        let done = stack.run(api_node, TOKEN, &session, "cd /").await;
        assert_eq!(done["state"], "completed", "{done}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a command took {:?} with the collector gone",
            started.elapsed()
        );
    }
    let unreported = |id: u64| stack.log(id).matches("cannot export spans").count();
    let said = testkit::wait_until(WAIT, || {
        let n = unreported(api_node);
        async move { n >= 1 }
    })
    .await;
    assert!(
        said,
        "broker {api_node} did not say its spans cannot be exported"
    );
    assert_eq!(unreported(api_node), 1, "{}", stack.log(api_node));

    // A collector address that is not one stops a broker at start, naming the key.
    let output = Command::new(env!("CARGO_BIN_EXE_lr-broker"))
        .args(["run", "--config"])
        .arg(&stack.brokers[&1].config)
        .env("LR_TRACING__OTLP_ENDPOINT", "collector:4317")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("tracing.otlp_endpoint"), "{stderr}");
    assert!(stderr.contains("http://"), "{stderr}");

    drop(stack);
    tokio::task::spawn_blocking(move || agent_telemetry.shutdown())
        .await
        .unwrap();
}
