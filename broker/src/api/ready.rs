//! `GET /readyz`: whether this node can serve requests now, check by check, so a load balancer
//! stops sending it work (503) and an operator reads why.
//!
//! Every check that waits on another process (NATS, JetStream) has a short deadline: a probe
//! that hangs is read as a failure by the prober anyway, and without a reason.

use std::sync::atomic::Ordering;
use std::time::Duration;

use api_model::{Readiness as ReadinessBody, ReadinessCheck};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::ApiState;
use crate::directory::Readiness;

/// How long NATS and JetStream each have to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a leader may go without a majority's acknowledgement and still count: three of the
/// longest election timeouts the brokers run Raft with, past which the followers elect another.
const QUORUM_ACK_MAX_MS: u64 = 3 * cluster::ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MAX_MS;
const NO_QUORUM: &str = "a majority of the brokers must be up and reach each other";
const NO_LEADER: &str =
    "this node sees no raft leader; a majority of the brokers must be up and reach each other";

/// Whether this node is ready: it sees a Raft leader, its directory is in force, NATS and
/// JetStream answer, and its listeners serve.
#[utoipa::path(get, path = "/readyz", tag = "cluster", operation_id = "ready",
    security(()),
    responses(
        (status = 200, description = "This node serves requests", body = ReadinessBody),
        (status = 503, description = "This node cannot serve requests now; `reason` says which check failed and why", body = ReadinessBody)))]
pub async fn ready(State(state): State<ApiState>) -> (StatusCode, Json<ReadinessBody>) {
    let (leader, since_quorum_ack) = {
        let metrics = state.leases.metrics();
        let metrics = metrics.borrow();
        (metrics.current_leader, metrics.millis_since_quorum_ack)
    };
    let client = state.bus.client().clone();
    let jetstream = async_nats::jetstream::new(client.clone());
    let (nats, jetstream) = tokio::join!(
        tokio::time::timeout(PROBE_TIMEOUT, client.flush()),
        tokio::time::timeout(PROBE_TIMEOUT, jetstream.query_account()),
    );
    let checks = vec![
        check(
            "leader",
            leader_seen(state.node_id, leader, since_quorum_ack),
        ),
        check("directory", directory(&state.directory.borrow())),
        check("nats", answered(nats, "nats-server")),
        check(
            "jetstream",
            answered(jetstream.map(|r| r.map(drop)), "jetstream"),
        ),
        check(
            "listeners",
            if state.agents_serving.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err("the agent listener stopped; see this node's log".to_string())
            },
        ),
    ];
    let body = summary(state.node_id, leader, checks);
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// A leader is seen when this node follows one, or leads and a majority acknowledged it
/// lately: a leader cut off from the others keeps believing it leads.
fn leader_seen(
    node: u64,
    leader: Option<u64>,
    since_quorum_ack_ms: Option<u64>,
) -> Result<(), String> {
    match leader {
        None => Err(NO_LEADER.to_string()),
        Some(leader) if leader != node => Ok(()),
        Some(_) => match since_quorum_ack_ms {
            Some(ms) if ms <= QUORUM_ACK_MAX_MS => Ok(()),
            Some(ms) => Err(format!(
                "this node leads but no majority acknowledged it for {ms} ms, so it sees no raft leader; {NO_QUORUM}"
            )),
            None => Err(format!(
                "this node leads but no majority acknowledged it yet, so it sees no raft leader; {NO_QUORUM}"
            )),
        },
    }
}

fn check(name: &str, result: Result<(), String>) -> ReadinessCheck {
    ReadinessCheck {
        name: name.to_string(),
        ok: result.is_ok(),
        detail: result.err(),
    }
}

fn directory(readiness: &Readiness) -> Result<(), String> {
    match readiness {
        Readiness::Ready => Ok(()),
        Readiness::Refused(reason) => Err(reason.clone()),
        Readiness::Waiting => Err(
            "the directory (tenants, users, tokens) is not yet in force on this node".to_string(),
        ),
    }
}

fn answered<E: std::fmt::Display>(
    result: Result<Result<(), E>, tokio::time::error::Elapsed>,
    what: &str,
) -> Result<(), String> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("{what} did not answer: {error}")),
        Err(_) => Err(format!(
            "{what} did not answer within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
    }
}

/// Ready when every check passed; the reason names the first that did not.
fn summary(node: u64, leader: Option<u64>, checks: Vec<ReadinessCheck>) -> ReadinessBody {
    let reason = checks
        .iter()
        .find(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail.as_deref().unwrap_or("failed")));
    ReadinessBody {
        node,
        leader,
        ready: reason.is_none(),
        reason,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_first_failed_check() {
        let checks = vec![
            check("leader", Err("no leader".to_string())),
            check("nats", Err("down".to_string())),
            check("listeners", Ok(())),
        ];
        let body = summary(3, None, checks);
        assert!(!body.ready);
        assert_eq!(body.reason.as_deref(), Some("leader: no leader"));
        let body = summary(1, Some(1), vec![check("leader", Ok(()))]);
        assert!(body.ready);
        assert_eq!(body.reason, None);
    }

    #[test]
    fn a_leader_counts_while_a_majority_acknowledges_it() {
        assert!(leader_seen(1, Some(2), None).is_ok());
        assert!(leader_seen(1, Some(1), Some(100)).is_ok());
        assert!(
            leader_seen(1, None, None)
                .unwrap_err()
                .contains("no raft leader")
        );
        let stale = leader_seen(1, Some(1), Some(60_000)).unwrap_err();
        assert!(stale.contains("no raft leader"), "{stale}");
        assert!(leader_seen(1, Some(1), None).is_err());
    }

    #[tokio::test]
    async fn a_probe_past_its_deadline_says_so() {
        let elapsed = tokio::time::timeout(Duration::ZERO, std::future::pending::<()>())
            .await
            .unwrap_err();
        let result: Result<Result<(), String>, _> = Err(elapsed);
        let detail = answered(result, "nats-server").unwrap_err();
        assert!(detail.contains("within 2 s"), "{detail}");
    }
}
