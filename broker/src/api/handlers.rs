//! One function per endpoint. Each resolves the caller's tenant first; objects of another tenant
//! answer exactly like missing ones.

use std::convert::Infallible;
use std::time::Duration;

use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{Command, Empty};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};
use crate::actors::session::{self, OpenRequest};
use crate::bus;
use crate::time::now_ms;
use crate::time::rfc3339;

/// Longest long-poll of a command's state.
const MAX_WAIT_MS: u64 = 30_000;

/// A JSON body whose rejections (malformed, too large) are API errors like any other.
pub struct JsonBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            format!("request body over {} bytes; send less", super::MAX_BODY),
        )
    } else {
        ApiError::invalid(format!("malformed request body: {}", rejection.body_text()))
    }
}

pub async fn health(State(state): State<ApiState>) -> Json<Value> {
    let leader = state.leases.leader();
    let ready = leader.is_some() && *state.limits_applied.borrow();
    Json(json!({"node": state.node_id, "leader": leader, "ok": ready}))
}

pub async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/openapi.json")
}

pub async fn list_devices(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let devices = state
        .registry
        .list(&caller.tenant)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| {
            json!({"device": d.device, "tenant": d.tenant, "hostname": d.hostname, "os": d.os,
                   "agent_version": d.agent_version, "online": d.is_online(now_ms()), "node": d.node,
                   "last_seen": rfc3339(d.last_seen_ms)})
        })
        .collect();
    Ok(Json(Value::Array(devices)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenSession {
    device: String,
}

pub async fn open_session(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<OpenSession>,
) -> Result<Response, ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "no device {} in tenant {}; list devices with `lr devices`",
            body.device, caller.tenant
        ))
    };
    ids::device(&body.device)?;
    let device = state
        .registry
        .get(&caller.tenant, &body.device)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(missing)?;
    if !device.is_online(now_ms()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "device_offline",
            format!(
                "device {} is offline (last seen {}); wait for its agent to reconnect",
                device.device,
                rfc3339(device.last_seen_ms)
            ),
        ));
    }
    let request = OpenRequest {
        tenant: caller.tenant.clone(),
        user: caller.user.clone(),
        device: body.device.clone(),
    };
    let lease = session::open(
        request,
        state.node_id,
        state.bus.clone(),
        state.leases.clone(),
        state.settings.clone(),
        state.transfers.clone(),
        state.sessions.clone(),
    )
    .await?;
    let created = json!({"session_id": lease.session, "device": lease.device, "user": lease.user,
                         "token": lease.token, "node": lease.node, "created_at": rfc3339(lease.granted_at)});
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub async fn list_sessions(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let now = now_ms();
    let sessions: Vec<Value> = state
        .leases
        .list(&caller.tenant)
        .await?
        .iter()
        .map(|l| {
            json!({"session_id": l.session, "device": l.device, "user": l.user, "node": l.node,
                   "created_at": rfc3339(l.granted_at), "duration_s": now.saturating_sub(l.granted_at) / 1000,
                   "token": l.token})
        })
        .collect();
    Ok(Json(Value::Array(sessions)))
}

pub async fn describe_session(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match state.control(&caller, &id, Op::Describe(Empty {})).await? {
        Reply::Session(s) => Ok(Json(
            json!({"session_id": s.session_id, "device": s.device, "user": s.user,
                                             "node": s.node_id, "created_at": rfc3339(s.created_at_ms),
                                             "cwd": s.cwd, "token": s.token}),
        )),
        _ => Err(ApiError::unavailable(
            "unexpected answer from the session's node",
        )),
    }
}

pub async fn end_session(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.control(&caller, &id, Op::End(Empty {})).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // The session's node is gone but its lease may still be live: end it here.
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            match state.leases.get(&caller.tenant, &id).await? {
                Some(lease) if lease.user == caller.user => {
                    state
                        .leases
                        .release(&caller.tenant, &id, lease.token)
                        .await?;
                    Ok(StatusCode::NO_CONTENT)
                }
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCommand {
    command_line: String,
}

pub async fn run_command(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RunCommand>,
) -> Result<Response, ApiError> {
    match state
        .control(&caller, &id, Op::Run(body.command_line))
        .await?
    {
        Reply::Command(c) => Ok((StatusCode::ACCEPTED, Json(command_json(&c))).into_response()),
        _ => Err(ApiError::unavailable(
            "unexpected answer from the session's node",
        )),
    }
}

pub async fn list_commands(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<CommandView>>, ApiError> {
    match state.control(&caller, &id, Op::List(Empty {})).await? {
        Reply::Commands(list) => Ok(Json(list.commands.iter().map(command_json).collect())),
        _ => Err(ApiError::unavailable(
            "unexpected answer from the session's node",
        )),
    }
}

#[derive(Deserialize)]
pub struct Wait {
    wait_ms: Option<u64>,
}

pub async fn get_command(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
    Query(wait): Query<Wait>,
) -> Result<Json<CommandView>, ApiError> {
    let wait = Duration::from_millis(wait.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    // Subscribe before asking, so no state change falls between the answer and the wait.
    let mut updates = if wait.is_zero() {
        None
    } else {
        Some(
            state
                .bus
                .subscribe(bus::session_out(&caller.tenant, &id))
                .await
                .map_err(|e| ApiError::unavailable(e.to_string()))?,
        )
    };
    let command = match state.control(&caller, &id, Op::Get(cid.clone())).await? {
        Reply::Command(c) => c,
        _ => {
            return Err(ApiError::unavailable(
                "unexpected answer from the session's node",
            ));
        }
    };
    let Some(updates) = updates.as_mut() else {
        return Ok(Json(command_json(&command)));
    };
    if is_terminal(&command) {
        return Ok(Json(command_json(&command)));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut latest = command;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, updates.next()).await {
        if let Ok((_, Body::CommandUpdate(update))) = bus::decode(&message)
            && update.command_id == cid
        {
            latest = update;
            if is_terminal(&latest) {
                break;
            }
        }
    }
    Ok(Json(command_json(&latest)))
}

pub async fn cancel_command(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    match state.control(&caller, &id, Op::Cancel(cid)).await? {
        Reply::Command(c) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({"command_id": c.command_id, "state": c.state})),
        )
            .into_response()),
        _ => Err(ApiError::unavailable(
            "unexpected answer from the session's node",
        )),
    }
}

pub async fn session_events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Only the session's owner may listen; this also answers 404 for a missing session.
    state.control(&caller, &id, Op::Describe(Empty {})).await?;
    let updates = state
        .bus
        .subscribe(bus::session_out(&caller.tenant, &id))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let events = updates.filter_map(|message| async move {
        match bus::decode(&message) {
            Ok((_, Body::CommandUpdate(c))) => serde_json::to_string(&command_json(&c))
                .ok()
                .map(|data| Ok(Event::default().event("command").data(data))),
            _ => None,
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn is_terminal(c: &Command) -> bool {
    !matches!(c.state.as_str(), "queued" | "running")
}

/// The API's JSON form of a command. The agent's output passes through as raw JSON, so its field
/// order (the order of table columns in the console) is kept.
#[derive(Serialize)]
pub struct CommandView {
    command_id: String,
    command_line: String,
    state: String,
    output: Option<Box<RawValue>>,
    error: Option<String>,
    cwd: Option<String>,
    submitted_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn command_json(c: &Command) -> CommandView {
    let output = (!c.output_json.is_empty()).then(|| {
        RawValue::from_string(c.output_json.clone()).unwrap_or_else(|_| {
            // Not JSON: pass it on as a string rather than lose it.
            RawValue::from_string(Value::String(c.output_json.clone()).to_string())
                .expect("a JSON string is JSON")
        })
    });
    let time = |ms: u64| (ms != 0).then(|| rfc3339(ms));
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    CommandView {
        command_id: c.command_id.clone(),
        command_line: c.command_line.clone(),
        state: c.state.clone(),
        output,
        error: text(&c.error),
        cwd: text(&c.cwd),
        submitted_at: time(c.submitted_at_ms),
        started_at: time(c.started_at_ms),
        finished_at: time(c.finished_at_ms),
    }
}
