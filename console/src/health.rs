//! `lr health`: whether each API node is ready (`GET /readyz`), as lines or as JSON, and exit 4
//! naming the node and the check that failed when one is not.

use crate::api::{Client, Typed};
use crate::doc::Doc;
use crate::exit::{Exit, Failure};
use crate::render::Format;

/// One API node's answer.
struct NodeHealth {
    url: String,
    /// What the node answered; None when it did not.
    readiness: Option<Typed<api_model::Readiness>>,
    /// Why the node is not ready; None when it is.
    problem: Option<String>,
}

/// Asks every API node and prints the answers; fails with [`Exit::Unavailable`] when any node is
/// not ready or did not answer.
pub async fn run(api: &Client, format: Format) -> Result<Exit, Failure> {
    let nodes: Vec<NodeHealth> = api
        .readiness()
        .await
        .into_iter()
        .map(|(url, answer)| match answer {
            Ok(readiness) => NodeHealth {
                url,
                problem: (!readiness.value.ready).then(|| {
                    readiness
                        .value
                        .reason
                        .clone()
                        .unwrap_or_else(|| "not ready".to_string())
                }),
                readiness: Some(readiness),
            },
            Err(err) => NodeHealth {
                url,
                readiness: None,
                problem: Some(Failure::from(err).message),
            },
        })
        .collect();
    let text = match format {
        Format::Json => json(&nodes),
        Format::Table => lines(&nodes),
    };
    crate::app::print_text(&text)?;
    let problems: Vec<String> = nodes
        .iter()
        .filter_map(|node| Some(format!("{}: {}", node.url, node.problem.as_ref()?)))
        .collect();
    if problems.is_empty() {
        return Ok(Exit::Success);
    }
    Err(Failure::new(
        Exit::Unavailable,
        format!("not ready: {}", problems.join("; ")),
    )
    .hint("`lr health --output json` shows every check of each node"))
}

/// One line per node: `URL ready (node N, leader L)` or `URL not ready: check: why`.
fn lines(nodes: &[NodeHealth]) -> String {
    let mut text = String::new();
    for node in nodes {
        match (&node.problem, &node.readiness) {
            (None, Some(r)) => {
                let leader = r
                    .value
                    .leader
                    .map_or_else(|| "none".to_string(), |l| l.to_string());
                text.push_str(&format!(
                    "{} ready (node {}, leader {leader})\n",
                    node.url, r.value.node
                ));
            }
            (problem, _) => text.push_str(&format!(
                "{} not ready: {}\n",
                node.url,
                problem.as_deref().unwrap_or("no answer")
            )),
        }
    }
    text
}

/// An array of `{"url", "ready", "reason", "readiness"}`, `readiness` as the node sent it (null
/// when it did not answer).
fn json(nodes: &[NodeHealth]) -> String {
    let items: Vec<Doc> = nodes
        .iter()
        .map(|node| {
            let field = |name: &str, value: Doc| (name.to_string(), value);
            Doc::Object(vec![
                field("url", Doc::String(node.url.clone())),
                field("ready", Doc::Bool(node.problem.is_none())),
                field(
                    "reason",
                    node.problem.clone().map_or(Doc::Null, Doc::String),
                ),
                field(
                    "readiness",
                    node.readiness.as_ref().map_or(Doc::Null, |r| r.doc.clone()),
                ),
            ])
        })
        .collect();
    crate::render::render(&Doc::Array(items), Format::Json, None)
}
