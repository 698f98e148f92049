//! Prometheus metrics end to end: three `lr-broker` processes each serving `/metrics`, a real
//! agent, a session and its commands; what each node's scrape says, and that no label names a
//! device, session or analyst.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Stack, WAIT};
use reqwest::StatusCode;

/// One sample of a scrape: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus's text format (the subset the exporter writes: no escaped quotes in our
/// label values, no timestamps).
fn parse(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let labels = body
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (key, value) = pair.split_once('=').expect("label=value");
                        (key.to_string(), value.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.push(Sample {
            name,
            labels,
            value: value.parse().unwrap_or(f64::NAN),
        });
    }
    samples
}

struct Scrape(Vec<Sample>);

impl Scrape {
    /// The value of the series `name` whose labels include `labels`, summed over the rest.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .0
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }
}

async fn scrape(stack: &Stack, id: u64) -> Scrape {
    let url = format!(
        "http://127.0.0.1:{}/metrics",
        stack.brokers[&id].metrics_port
    );
    let response = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("cannot scrape broker {id} at {url}: {e}"));
    assert_eq!(response.status(), StatusCode::OK);
    Scrape(parse(&response.text().await.unwrap()))
}

/// Scrapes broker `id` until `ready` holds of its scrape, within [`WAIT`].
async fn scrape_until(
    stack: &Stack,
    id: u64,
    what: &str,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let scrape = scrape(stack, id).await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker {id}: {what} not seen within {WAIT:?}; scrape: {:#?}",
            scrape.0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broker_serves_bounded_metrics_of_sessions_commands_raft_and_agents() {
    let mut stack = Stack::start(3, "").await;
    stack.start_agent("demo", "web-07", "web-07", &[3]).await;
    stack.wait_online("token-a", "web-07", Some(3)).await;
    // A device that was online and is no more.
    stack.start_agent("demo", "db-01", "db-01", &[2]).await;
    stack.wait_online("token-a", "db-01", Some(2)).await;
    stack.stop_last_agent();
    let offline = testkit::wait_until(WAIT, || async {
        let (_, devices) = stack.get(1, "token-a", "/api/v1/devices").await;
        devices["items"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["device"] == "db-01" && d["online"] == false)
        })
    })
    .await;
    assert!(offline, "db-01 did not go offline");

    let (status, session) = stack.open(1, "token-a", "web-07").await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let session_id = session["session_id"].as_str().unwrap().to_string();
    let dir = stack.run(1, "token-a", &session_id, "dir /").await;
    assert_eq!(dir["state"], "completed", "{dir}");
    let file = stack.path().join("evidence.bin");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let getfile = stack
        .run(
            1,
            "token-a",
            &session_id,
            &format!("getfile {} -auto", file.display()),
        )
        .await;
    assert_eq!(getfile["state"], "completed", "{getfile}");
    let transfer_id = getfile["output"]["transfer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ended = stack.transfer_finished(1, "token-a", &transfer_id).await;
    assert_eq!(ended["state"], "completed", "{ended}");
    // A second analyst is refused the same device: one session per device; and a device no
    // agent serves is refused before any lease is asked for.
    let (status, refused) = stack.open(1, "token-b", "web-07").await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    let (status, offline) = stack.open(1, "token-b", "db-01").await;
    assert_eq!(status, StatusCode::CONFLICT, "{offline}");
    assert_eq!(offline["error"]["code"], "device_offline", "{offline}");

    // The session's node counted the session, the refusal and the command.
    let node1 = scrape_until(&stack, 1, "the session's command", |s| {
        s.value(
            broker::metrics::COMMANDS_FINISHED,
            &[("command", "dir"), ("state", "completed")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        node1.value(broker::metrics::SESSIONS_OPENED, &[]),
        Some(1.0)
    );
    assert_eq!(
        node1.value(
            broker::metrics::SESSIONS_REFUSED,
            &[("reason", "one_session_per_device")]
        ),
        Some(1.0)
    );
    assert_eq!(
        node1.value(
            broker::metrics::SESSIONS_REFUSED,
            &[("reason", "device_offline")]
        ),
        Some(1.0)
    );
    let latency = format!("{}_count", broker::metrics::COMMAND_DURATION);
    assert_eq!(node1.value(&latency, &[("command", "dir")]), Some(1.0));
    for other in [2, 3] {
        let scrape = scrape(&stack, other).await;
        assert_eq!(
            scrape
                .value(broker::metrics::SESSIONS_OPENED, &[])
                .unwrap_or(0.0),
            0.0,
            "broker {other} opened no session"
        );
    }

    // The transfer, wherever its owner and the agent's node are.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut scrapes = Vec::new();
        for id in 1..=3 {
            scrapes.push(scrape(&stack, id).await);
        }
        let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
            scrapes.iter().filter_map(|s| s.value(name, labels)).sum()
        };
        let started = sum(broker::metrics::TRANSFERS_STARTED, &[("kind", "getfile")]);
        let finished = sum(
            broker::metrics::TRANSFERS_FINISHED,
            &[("kind", "getfile"), ("state", "completed")],
        );
        let bytes = sum(
            broker::metrics::TRANSFER_BYTES,
            &[("direction", "from_agent")],
        );
        if started == 1.0 && finished == 1.0 && bytes >= 300_000.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "transfer metrics: started {started}, finished {finished}, bytes {bytes}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The agent's stream is held by node 3 alone.
    scrape_until(&stack, 3, "the agent's stream", |s| {
        s.value(broker::metrics::AGENTS_CONNECTED, &[]) == Some(1.0)
    })
    .await;
    for other in [1, 2] {
        let scrape = scrape(&stack, other).await;
        assert_eq!(
            scrape.value(broker::metrics::AGENTS_CONNECTED, &[]),
            Some(0.0),
            "broker {other} holds no agent"
        );
    }

    // Every node knows the same leader, and exactly one is it.
    let mut leaders = Vec::new();
    let mut leading = 0.0;
    for id in 1..=3 {
        let scrape = scrape_until(&stack, id, "raft gauges", |s| {
            s.value(broker::metrics::RAFT_LEADER, &[])
                .is_some_and(|l| l > 0.0)
                && s.value(broker::metrics::RAFT_LAST_APPLIED, &[])
                    .is_some_and(|i| i > 0.0)
        })
        .await;
        for name in [
            broker::metrics::RAFT_TERM,
            broker::metrics::RAFT_LAST_LOG_INDEX,
            broker::metrics::RAFT_APPLY_LAG,
            broker::metrics::RAFT_SNAPSHOT_AGE,
            broker::metrics::NATS_CONNECTED,
        ] {
            assert!(
                scrape.value(name, &[]).is_some(),
                "broker {id} lacks {name}"
            );
        }
        assert_eq!(
            scrape.value(broker::metrics::NATS_CONNECTED, &[]),
            Some(1.0)
        );
        leaders.push(scrape.value(broker::metrics::RAFT_LEADER, &[]).unwrap());
        leading += scrape.value(broker::metrics::RAFT_IS_LEADER, &[]).unwrap();
    }
    leaders.dedup();
    assert_eq!(
        leaders.len(),
        1,
        "the nodes disagree on the leader: {leaders:?}"
    );
    assert_eq!(leading, 1.0, "exactly one node is the leader");

    // No label anywhere names a device, a session, an analyst or a tenant.
    for id in 1..=3 {
        let scrape = scrape(&stack, id).await;
        for sample in &scrape.0 {
            assert!(
                sample.name.starts_with("lr_"),
                "broker {id}: {} lacks the lr_ prefix",
                sample.name
            );
            for (key, value) in &sample.labels {
                for private in [
                    "web-07",
                    session_id.as_str(),
                    transfer_id.as_str(),
                    "analyst-a",
                    "analyst-b",
                    "demo",
                ] {
                    assert!(
                        !value.contains(private),
                        "broker {id}: {}{{{key}={value:?}}} names {private:?}",
                        sample.name
                    );
                }
            }
        }
    }
}

#[test]
fn every_metric_is_named_once_with_the_prefix() {
    let names: Vec<&str> = broker::metrics::names().collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a metric is listed twice");
    assert!(names.iter().all(|n| n.starts_with("lr_")), "{names:?}");
}

#[test]
fn the_dashboard_is_json_and_charts_every_metric() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/grafana/lr-broker.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    for name in broker::metrics::names() {
        assert!(
            exprs.iter().any(|e| e.contains(name)),
            "no panel charts {name}"
        );
    }
    // Every lr_ name a panel uses is one the broker exports.
    for expr in &exprs {
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("lr_") {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(word);
                assert!(
                    broker::metrics::names().any(|n| n == base),
                    "the dashboard charts {base}, which the broker does not export"
                );
            }
        }
    }
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource");
}
