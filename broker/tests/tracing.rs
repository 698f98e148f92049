//! One trace follows a command across every process it passes: the API node's request, the
//! session's node, the device's node and the agent, each exporting its spans over OTLP/gRPC to a
//! collector in this test process. Brokers are real processes configured with
//! `[tracing] otlp_endpoint`; the agent runs in this process, exporting through the layer its
//! binary installs from the same setting.

mod common;

use std::collections::{BTreeMap, BTreeSet};
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
const REQUEST_ID: &str = "trace-test-run-1";
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

/// The spans of the trace whose root is the API request with our request id, once each of them
/// reaches that root through parents the collector has received.
fn command_trace(spans: &[ReceivedSpan]) -> Option<Vec<ReceivedSpan>> {
    let request = spans.iter().find(|s| {
        s.name == "request"
            && s.attributes.get("request_id").map(String::as_str) == Some(REQUEST_ID)
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
    // The device's stream on node 3, its session on node 2, the analyst's API calls on node 1.
    stack.start_agent(TENANT, DEVICE, DEVICE, &[3]).await;
    stack.wait_online(TOKEN, DEVICE, Some(3)).await;
    let (status, session) = stack.open(2, TOKEN, DEVICE).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session = session["session_id"].as_str().unwrap().to_string();

    let response = stack
        .http
        .post(format!(
            "{}/api/v1/sessions/{session}/commands",
            stack.url(1)
        ))
        .bearer_auth(TOKEN)
        .header("x-request-id", REQUEST_ID)
        .json(&json!({ "command_line": "cd /" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let submitted: Value = response.json().await.unwrap();
    let command = submitted["command_id"].as_str().unwrap().to_string();
    let finished = testkit::wait_until(WAIT, || async {
        let (_, view) = stack
            .get(
                1,
                TOKEN,
                &format!("/api/v1/sessions/{session}/commands/{command}?wait_ms=2000"),
            )
            .await;
        view["state"] == "completed"
    })
    .await;
    assert!(finished, "the command did not complete");

    // Every process of the command's path, in one trace rooted at the API request.
    let wanted: BTreeSet<Exporter> = [
        Exporter::Broker(1),
        Exporter::Broker(2),
        Exporter::Broker(3),
        Exporter::Agent(DEVICE.into()),
    ]
    .into();
    let mut trace = Vec::new();
    let complete = testkit::wait_until(WAIT, || {
        agent_telemetry.flush();
        trace = command_trace(&collector.spans()).unwrap_or_default();
        let seen: BTreeSet<Exporter> = trace.iter().map(exporter).collect();
        let done = wanted.is_subset(&seen);
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
        "the command's trace does not join the four processes; it holds:\n{}\nall spans received: {}",
        summary.join("\n"),
        collector.spans().len()
    );

    let named =
        |who: Exporter, name: &str| trace.iter().any(|s| exporter(s) == who && s.name == name);
    assert!(named(Exporter::Broker(1), "request"), "{summary:#?}");
    assert!(
        named(Exporter::Broker(2), "session control"),
        "{summary:#?}"
    );
    assert!(named(Exporter::Broker(3), "device order"), "{summary:#?}");
    assert!(
        named(Exporter::Agent(DEVICE.into()), "agent command"),
        "{summary:#?}"
    );
    // The result's way back continues the same trace.
    assert!(named(Exporter::Broker(3), "device result"), "{summary:#?}");
    assert!(named(Exporter::Broker(2), "session event"), "{summary:#?}");
    let request = trace.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(
        request.attributes["route"],
        "/api/v1/sessions/{id}/commands"
    );
    assert!(request.parent_span_id.is_empty(), "{request:?}");
    let agent = trace.iter().find(|s| s.name == "agent command").unwrap();
    assert_eq!(agent.attributes["command"], "cd");
    assert_eq!(agent.resource["lr.tenant"], TENANT);
    assert_eq!(
        trace
            .iter()
            .find(|s| exporter(s) == Exporter::Broker(2))
            .unwrap()
            .resource["service.instance.id"],
        "local/2"
    );

    // A collector that goes away slows no command, and a node says so once, not per batch.
    drop(collector);
    for _ in 0..3 {
        let started = Instant::now();
        let done = stack.run(1, TOKEN, &session, "cd /").await;
        assert_eq!(done["state"], "completed", "{done}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a command took {:?} with the collector gone",
            started.elapsed()
        );
    }
    let unreported = |id: u64| stack.log(id).matches("cannot export spans").count();
    let said = testkit::wait_until(WAIT, || {
        let n = unreported(1);
        async move { n >= 1 }
    })
    .await;
    assert!(said, "broker 1 did not say its spans cannot be exported");
    assert_eq!(unreported(1), 1, "{}", stack.log(1));

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
