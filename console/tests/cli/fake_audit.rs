//! The audit routes of the in-test broker (`/api/v1/audit...`): tenant `demo`'s log as a real
//! hash chain (an entry's `hash` is the SHA-256 of its canonical JSON without `hash`, its
//! `prev_hash` the entry before's), read with the `api-model` filter and answered [`AUDIT_PAGE`]
//! entries a page, so a console that does not follow `next` misses some. Cursors are opaque to the
//! console (`cur-<seq>`). Another tenant's log is empty.
//!
//! The log: 1 `session_opened`, 2 `command_submitted` (`dir -path /tmp`), 3 `command_finished`
//! (its output [`OUTPUT_REF`] is [`OUTPUT`]), 4 `refused` (analyst-v on db-01), 5 `session_ended`
//! (by the platform), all on 2025-06-01. The viewer's token is refused every output (a viewer
//! runs no command) and the verification (a tenant admin's) with 403 `forbidden`.
//!
//! Tests make the log grow after the fake has answered its end a number of times
//! ([`AuditLog::grow_after_ends`]), make it unavailable for some reads
//! ([`AuditLog::unavailable_after_ends`]) and change an entry without fixing its hash
//! ([`AuditLog::tamper`]).

use std::sync::{Arc, Mutex};

use api_model::{AuditEntry, AuditFilter, AuditKind, AuditVerification, Paging, Timestamp};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::fake_broker::{VIEWER_TOKEN, error, sha256_hex};

/// Most entries on one page of the log.
pub const AUDIT_PAGE: usize = 2;
/// The output of entry 3, `dir -path /tmp`.
pub const OUTPUT_REF: &str = "out-3";
pub const OUTPUT: &str = "path: /tmp\na.txt\ncache\n";
/// The `prev_hash` of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Default)]
struct Log {
    entries: Vec<AuditEntry>,
    /// Lists answered up to the log's end (a page without `next`).
    ends: usize,
    /// Add an entry once the end has been answered this many times.
    grow_after: Option<usize>,
    /// Answer 503 to this many lists once the end has been answered this many times.
    outage: Option<(usize, usize)>,
}

/// Tenant demo's audit log, shared by the routes and the test.
#[derive(Clone)]
pub struct AuditLog(Arc<Mutex<Log>>);

impl Default for AuditLog {
    fn default() -> Self {
        let log = AuditLog(Arc::default());
        for (kind, at, user, device, details) in [
            (
                AuditKind::SessionOpened,
                "10:00:00",
                Some("analyst-b"),
                Some("web-07"),
                json!({"token": 7, "node": 1}),
            ),
            (
                AuditKind::CommandSubmitted,
                "10:00:05",
                Some("analyst-b"),
                Some("web-07"),
                json!({"command_line": "dir -path /tmp"}),
            ),
            (
                AuditKind::CommandFinished,
                "10:00:06",
                Some("analyst-b"),
                Some("web-07"),
                json!({"command_line": "dir -path /tmp", "state": "completed", "duration_ms": 12,
                       "error": null, "cwd": "/root"}),
            ),
            (
                AuditKind::Refused,
                "10:05:00",
                Some("analyst-v"),
                Some("db-01"),
                json!({"request": {"method": "POST", "path": "/api/v1/sessions"},
                       "reason": "this needs the role responder-basic"}),
            ),
            (
                AuditKind::SessionEnded,
                "11:00:00",
                None,
                Some("web-07"),
                json!({"reason": "lease expired"}),
            ),
        ] {
            log.append(kind, at, user, device, details);
        }
        log
    }
}

impl AuditLog {
    /// Appends an entry of 2025-06-01 at `time`, chained to the last one.
    fn append(
        &self,
        kind: AuditKind,
        time: &str,
        user: Option<&str>,
        device: Option<&str>,
        details: Value,
    ) {
        let mut log = self.0.lock().unwrap();
        let seq = log.entries.len() as u64 + 1;
        let in_session = matches!(
            kind,
            AuditKind::SessionOpened
                | AuditKind::SessionEnded
                | AuditKind::CommandSubmitted
                | AuditKind::CommandFinished
        );
        let command = matches!(
            kind,
            AuditKind::CommandSubmitted | AuditKind::CommandFinished
        );
        let mut entry = AuditEntry {
            tenant: "demo".to_owned(),
            seq,
            at: format!("2025-06-01T{time}Z").parse().unwrap(),
            kind,
            user: user.map(str::to_owned),
            node: 1,
            device: device.map(str::to_owned),
            session: in_session.then(|| "s-1".to_owned()),
            command_id: command.then(|| "c-2".to_owned()),
            transfer_id: None,
            details,
            output_ref: (kind == AuditKind::CommandFinished).then(|| OUTPUT_REF.to_owned()),
            prev_hash: log
                .entries
                .last()
                .map_or_else(|| GENESIS.to_owned(), |e| e.hash.clone()),
            hash: String::new(),
        };
        entry.hash = hash_of(&entry);
        log.entries.push(entry);
    }

    /// After the end of the log has been answered `ends` times, the next list finds one more
    /// entry (6, `admin_changed`).
    pub fn grow_after_ends(&self, ends: usize) {
        self.0.lock().unwrap().grow_after = Some(ends);
    }

    /// After the end of the log has been answered `ends` times, the next `count` lists answer
    /// 503 `unavailable`, as a cluster without quorum does.
    pub fn unavailable_after_ends(&self, ends: usize, count: usize) {
        self.0.lock().unwrap().outage = Some((ends, count));
    }

    /// Changes entry `seq`'s details and leaves its hash as it was.
    pub fn tamper(&self, seq: u64) {
        let mut log = self.0.lock().unwrap();
        let entry = &mut log.entries[seq as usize - 1];
        entry.details = json!({"command_line": "dir -path /etc"});
    }
}

/// The SHA-256 of the entry's canonical JSON (keys sorted, no spaces) without `hash`.
fn hash_of(entry: &AuditEntry) -> String {
    let mut value = serde_json::to_value(entry).unwrap();
    value.as_object_mut().unwrap().remove("hash");
    sha256_hex(canonical(&value).as_bytes())
}

fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

pub fn router<S: Clone + Send + Sync + 'static>(log: AuditLog) -> Router<S> {
    Router::new()
        .route("/", get(list))
        .route("/output/{reference}", get(output))
        .route("/verify", get(verify))
        .with_state(log)
}

fn is_viewer(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {VIEWER_TOKEN}"))
}

fn in_demo(headers: &HeaderMap) -> bool {
    headers
        .get("lr-tenant")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t == "demo")
}

fn invalid(message: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        message,
        json!({}),
    )
}

async fn list(
    State(log): State<AuditLog>,
    headers: HeaderMap,
    Query(filter): Query<AuditFilter>,
    Query(paging): Query<Paging>,
) -> Response {
    {
        let mut state = log.0.lock().unwrap();
        if let Some((after, left)) = state.outage
            && state.ends >= after
            && left > 0
        {
            state.outage = Some((after, left - 1));
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no quorum: the cluster is electing a leader",
                json!({}),
            );
        }
        if state.grow_after.is_some_and(|ends| state.ends >= ends) {
            state.grow_after = None;
            drop(state);
            log.append(
                AuditKind::AdminChanged,
                "11:30:00",
                Some("admin-a"),
                None,
                json!({"action": "create_token", "user": "analyst-b"}),
            );
        }
    }
    let limit = paging.limit.unwrap_or(api_model::DEFAULT_LIMIT);
    if !(1..=api_model::MAX_LIMIT).contains(&limit) {
        return invalid(&format!("limit {limit} is out of range"));
    }
    let after = match paging.after.as_deref() {
        None => 0,
        Some(cursor) => match cursor.strip_prefix("cur-").and_then(|n| n.parse().ok()) {
            Some(seq) => seq,
            None => return invalid(&format!("cursor {cursor:?} is not one of this list")),
        },
    };
    let mut state = log.0.lock().unwrap();
    let matching: Vec<&AuditEntry> = state
        .entries
        .iter()
        .filter(|e| in_demo(&headers) && matches(e, &filter))
        .collect();
    let rest: Vec<&AuditEntry> = matching.into_iter().filter(|e| e.seq > after).collect();
    let take = limit.min(AUDIT_PAGE);
    let items: Vec<Value> = rest
        .iter()
        .take(take)
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let next = (rest.len() > take).then(|| format!("cur-{}", rest[take - 1].seq));
    if next.is_none() {
        state.ends += 1;
    }
    Json(json!({"items": items, "next": next})).into_response()
}

fn matches(entry: &AuditEntry, filter: &AuditFilter) -> bool {
    let same = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    same(&filter.device, &entry.device)
        && same(&filter.user, &entry.user)
        && same(&filter.session, &entry.session)
        && filter.kind.is_none_or(|k| k == entry.kind)
        && filter.since.is_none_or(|t: Timestamp| entry.at >= t)
        && filter.until.is_none_or(|t: Timestamp| entry.at < t)
}

async fn output(
    State(log): State<AuditLog>,
    headers: HeaderMap,
    Path(reference): Path<String>,
) -> Response {
    let known = log
        .0
        .lock()
        .unwrap()
        .entries
        .iter()
        .any(|e| e.output_ref.as_deref() == Some(reference.as_str()));
    if !known || !in_demo(&headers) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no command output {reference}"),
            json!({}),
        );
    }
    if is_viewer(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the output of command c-2 on web-07 needs a role that can run dir there; analyst-v \
             holds: viewer",
            json!({"role": "responder-basic"}),
        );
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        OUTPUT,
    )
        .into_response()
}

async fn verify(State(log): State<AuditLog>, headers: HeaderMap) -> Response {
    if is_viewer(&headers) {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this needs the role tenant-admin in tenant demo; analyst-v holds: viewer",
            json!({"role": "tenant-admin"}),
        );
    }
    let log = log.0.lock().unwrap();
    let mut prev = GENESIS.to_owned();
    let mut broken = None;
    for (at, entry) in log.entries.iter().enumerate() {
        let problem = if entry.seq != at as u64 + 1 {
            Some("its seq is out of place")
        } else if entry.prev_hash != prev {
            Some("its prev_hash is not the hash of the entry before")
        } else if hash_of(entry) != entry.hash {
            Some("its hash does not match its contents")
        } else {
            None
        };
        if let Some(problem) = problem {
            broken = Some((entry.seq, problem));
            break;
        }
        prev.clone_from(&entry.hash);
    }
    let head = log.entries.last();
    Json(AuditVerification {
        tenant: "demo".to_owned(),
        ok: broken.is_none(),
        entries: log.entries.len() as u64,
        first_seq: 1,
        cut_at: None,
        head_seq: head.map_or(0, |e| e.seq),
        head_hash: head.map(|e| e.hash.clone()),
        checkpoint_seq: Some(5),
        checkpoint_at: Some("2025-06-01T11:00:01Z".parse().unwrap()),
        first_broken: broken.map(|(seq, _)| seq),
        // As the broker words it.
        problem: broken.map(|(seq, problem)| format!("entry {seq}: {problem}")),
    })
    .into_response()
}
