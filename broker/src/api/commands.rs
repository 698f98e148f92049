//! A session's commands: submit (idempotent with a command id), list, long-poll one, cancel,
//! and the live stream of their changes.

use access::Role;
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{Empty, RunRequest};
use api_model::{
    AuditFilter, Command, CommandFilter, CommandState, ErrorCode, Page, Paging, RunCommand, Wait,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::value::RawValue;

use super::body::{IdempotencyKey, JsonBody};
use super::{ApiError, ApiState, Caller, page};
use crate::time::{timestamp, timestamp_if_set};
use crate::wire;
use crate::{audit, bus};

/// Longest long-poll of a command's state.
const MAX_WAIT_MS: u64 = 30_000;

/// Queues a command line. With a `command_id` (or `Idempotency-Key`), a retried request answers
/// the command the first one submitted (200) and never runs it twice.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/commands", tag = "commands", operation_id = "runCommand",
    params(("id" = String, Path, description = "Session id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Same as `command_id`")),
    request_body = RunCommand,
    responses(
        (status = 202, description = "Queued", body = Command),
        (status = 200, description = "The command this id submitted before", body = Command),
        (status = 404, description = "`not_found`: no live session with this id for this analyst", body = api_model::ErrorBody),
        (status = 409, description = "`already_exists`: the command id names another command line in this session", body = api_model::ErrorBody)))]
pub async fn run(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    key: IdempotencyKey,
    JsonBody(body): JsonBody<RunCommand>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    if let Some(command) = &body.command_id {
        ids::command(command)?;
    }
    let command_id = key
        .merge(body.command_id, "command_id")?
        .unwrap_or_default();
    // The role the command line needs; a line that does not parse is the session's to refuse.
    let role = commands::parse(&body.command_line)
        .map(|parsed| parsed.spec.role)
        .unwrap_or(Role::ResponderBasic);
    match state.leases.local_get(&caller.tenant, &id).await {
        Some(lease) if lease.user == caller.user => {
            state
                .require_on_device(&caller, role, &lease.device)
                .await?
        }
        _ => caller.require(role)?,
    }
    let request = RunRequest {
        command_line: body.command_line,
        command_id,
    };
    match state.control(&caller, &id, Op::Run(request)).await? {
        Reply::Submitted(submitted) => {
            let status = if submitted.replayed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let command = submitted.command.ok_or_else(ApiError::unexpected)?;
            Ok((status, Json(view(&command))))
        }
        _ => Err(ApiError::unexpected()),
    }
}

/// Most output bytes one page of commands carries: past it the page ends early (with at least one
/// command) and `next` leads on, so a page costs the API node a bounded amount whatever the
/// commands printed.
const MAX_PAGE_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// The session's commands, oldest first (the session remembers its last 1000).
#[utoipa::path(get, path = "/api/v1/sessions/{id}/commands", tag = "commands", operation_id = "listCommands",
    params(("id" = String, Path, description = "Session id"), Paging, CommandFilter),
    responses(
        (status = 200, description = "A page of commands; fewer than `limit` when their outputs pass 16 MiB, with `next` for the rest", body = Page<Command>),
        (status = 404, description = "`not_found`: no live session with this id for this analyst", body = api_model::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
    Query(filter): Query<CommandFilter>,
) -> Result<Json<Page<Command>>, ApiError> {
    caller.require(Role::Viewer)?;
    // Finished commands' outputs are in the audit log: read only for the page answered.
    let (commands, stored) = match state.control(&caller, &id, Op::List(Empty {})).await {
        Ok(Reply::Commands(list)) => (
            list.commands.iter().map(view).collect(),
            list.commands
                .into_iter()
                .filter_map(|c| {
                    if c.output_held {
                        Some((c.command_id, Output::Held))
                    } else if c.output_json.is_empty() && !c.output_ref.is_empty() {
                        Some((c.command_id, Output::Logged(c.output_ref)))
                    } else {
                        None
                    }
                })
                .collect(),
        ),
        Ok(_) => return Err(ApiError::unexpected()),
        Err(gone) if gone.code == ErrorCode::NotFound => {
            from_log(&state, &caller, &id, gone).await?
        }
        Err(error) => return Err(error),
    };
    let commands = commands
        .into_iter()
        .filter(|c: &Command| filter.state.is_none_or(|s| s == c.state))
        .collect();
    let mut page = page::page(commands, &paging, |c| &c.command_id)?;
    let (mut bytes, count) = (0, page.items.len());
    for (at, command) in page.items.iter_mut().enumerate() {
        match stored.get(&command.command_id) {
            Some(Output::Logged(reference)) => {
                command.output = stored_output(&state, &caller, reference).await?;
            }
            Some(Output::Held) => {
                let cid = command.command_id.clone();
                if let Reply::Command(one) = state.control(&caller, &id, Op::Get(cid)).await? {
                    *command = view(&one);
                    if command.output.is_none() && !one.output_ref.is_empty() {
                        command.output = stored_output(&state, &caller, &one.output_ref).await?;
                    }
                }
            }
            None => {}
        }
        bytes += command.output.as_ref().map_or(0, |o| o.get().len());
        if bytes > MAX_PAGE_OUTPUT_BYTES && at + 1 < count {
            let last = command.command_id.clone();
            page.items.truncate(at + 1);
            page.next = Some(last);
            break;
        }
    }
    Ok(Json(page))
}

/// Where a listed command's output is: in the audit log, or still held by its session.
enum Output {
    Logged(String),
    Held,
}

/// A finished command's output as the audit log holds it under `reference`.
async fn stored_output(
    state: &ApiState,
    caller: &Caller,
    reference: &str,
) -> Result<Option<Box<RawValue>>, ApiError> {
    Ok(state
        .transfers
        .audit
        .output(&caller.tenant, reference)
        .await?
        .and_then(|o| String::from_utf8(o.body.to_vec()).ok())
        .and_then(|json| RawValue::from_string(json).ok()))
}

/// The commands of `caller`'s session `session` that is no longer live, as the audit log tells
/// them: each submitted one with its end, or failed with an unknown outcome when its session's
/// broker stopped before the result arrived. `gone` when the log knows no such session of theirs.
async fn from_log(
    state: &ApiState,
    caller: &Caller,
    session: &str,
    gone: ApiError,
) -> Result<(Vec<Command>, HashMap<String, Output>), ApiError> {
    let filter = AuditFilter {
        session: Some(session.to_owned()),
        user: Some(caller.user.clone()),
        ..AuditFilter::default()
    };
    let log = &state.transfers.audit;
    let (entries, _) = log.read(&caller.tenant, &filter, None, usize::MAX).await?;
    if entries.is_empty() {
        return Err(gone);
    }
    let mut outputs = HashMap::new();
    let commands = audit::story::commands(entries)
        .into_iter()
        .map(|logged| {
            let mut command = Command {
                command_id: logged.id,
                command_line: logged.line,
                state: CommandState::Failed,
                output: None,
                error: Some(
                    "the session ended before this command's result arrived; its outcome on the device is unknown"
                        .into(),
                ),
                cwd: None,
                submitted_at: Some(timestamp(logged.submitted_at_ms)),
                started_at: None,
                finished_at: None,
            };
            if let Some(end) = logged.end {
                command.state = end.state;
                command.error = Some(end.error).filter(|e| !e.is_empty());
                command.cwd = Some(end.cwd).filter(|c| !c.is_empty());
                command.finished_at = Some(timestamp(end.finished_at_ms));
                // Read only for the page answered.
                if let Some(reference) = end.output_ref {
                    outputs.insert(command.command_id.clone(), Output::Logged(reference));
                }
            }
            command
        })
        .collect();
    Ok((commands, outputs))
}

/// One command. With `wait_ms`, answers as soon as it finishes, or after `wait_ms` at the latest.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/commands/{cid}", tag = "commands", operation_id = "getCommand",
    params(("id" = String, Path, description = "Session id"), ("cid" = String, Path, description = "Command id"), Wait),
    responses(
        (status = 200, description = "The command as it stands", body = Command),
        (status = 404, description = "`not_found`: no such session or command for this analyst", body = api_model::ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
    Query(wait): Query<Wait>,
) -> Result<Json<Command>, ApiError> {
    caller.require(Role::Viewer)?;
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
    let mut latest = match state.control(&caller, &id, Op::Get(cid.clone())).await {
        Ok(Reply::Command(first))
            if first.output_json.is_empty() && !first.output_ref.is_empty() =>
        {
            let mut command = view(&first);
            command.output = stored_output(&state, &caller, &first.output_ref).await?;
            command
        }
        Ok(Reply::Command(first)) => view(&first),
        Ok(_) => return Err(ApiError::unexpected()),
        // An ended session's command is final: the log's answer is the last word.
        Err(gone) if gone.code == ErrorCode::NotFound => {
            let missing = ApiError::not_found(format!("no command {cid} in session {id}"));
            let (commands, outputs) = from_log(&state, &caller, &id, gone).await?;
            let mut command = commands
                .into_iter()
                .find(|c| c.command_id == cid)
                .ok_or(missing)?;
            if let Some(Output::Logged(reference)) = outputs.get(&cid) {
                command.output = stored_output(&state, &caller, reference).await?;
            }
            return Ok(Json(command));
        }
        Err(error) => return Err(error),
    };
    let Some(updates) = updates.as_mut() else {
        return Ok(Json(latest));
    };
    let deadline = tokio::time::Instant::now() + wait;
    while !latest.state.is_terminal() {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, updates.next()).await else {
            break;
        };
        if let Ok((_, Body::CommandUpdate(update))) = bus::decode(&message)
            && update.command_id == cid
        {
            latest = view(&update);
        }
    }
    Ok(Json(latest))
}

/// Cancels a queued or running command.
#[utoipa::path(post, path = "/api/v1/sessions/{id}/commands/{cid}/cancel", tag = "commands", operation_id = "cancelCommand",
    params(("id" = String, Path, description = "Session id"), ("cid" = String, Path, description = "Command id")),
    responses(
        (status = 202, description = "Cancelled, or asked to stop on the device", body = Command),
        (status = 404, description = "`not_found`: no such session or command for this analyst", body = api_model::ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, cid)): Path<(String, String)>,
) -> Result<(StatusCode, Json<Command>), ApiError> {
    caller.require_somewhere(Role::ResponderBasic)?;
    match state.control(&caller, &id, Op::Cancel(cid)).await? {
        Reply::Command(c) => Ok((StatusCode::ACCEPTED, Json(view(&c)))),
        _ => Err(ApiError::unexpected()),
    }
}

/// How often a live stream asks whether its session still lives: the session says when it ends,
/// unless its node died first.
const EVENTS_CHECK: Duration = Duration::from_secs(15);

/// Server-sent events: a `command` event with the whole command at every change of state, and a
/// last `ended` event (`{"session_id"}`) when the session ends.
#[utoipa::path(get, path = "/api/v1/sessions/{id}/events", tag = "commands", operation_id = "sessionEvents",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "`text/event-stream` of `command` events, each a Command, then an `ended` event when the session ends, and the stream closes", content_type = "text/event-stream", body = Command),
        (status = 404, description = "`not_found`: no live session with this id for this analyst", body = api_model::ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(Role::Viewer)?;
    ids::session(&id)?;
    // Subscribed first, so that an end after the check below is on the subscription.
    let updates = state
        .bus
        .subscribe(bus::session_out(&caller.tenant, &id))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    // Only the session's owner may listen; this also answers 404 for a missing session.
    state.control(&caller, &id, Op::Describe(Empty {})).await?;
    let checks = tokio::time::interval_at(tokio::time::Instant::now() + EVENTS_CHECK, EVENTS_CHECK);
    let listener = std::sync::Arc::new((state, caller, id));
    let events = futures::stream::unfold(Some((updates, checks)), move |live| {
        let listener = listener.clone();
        async move {
            let (mut updates, mut checks) = live?;
            let (state, caller, id) = &*listener;
            loop {
                let message = tokio::select! {
                    // A closed subscription (NATS gone) says nothing of the session: no `ended`.
                    message = updates.next() => message?,
                    _ = checks.tick() => {
                        let check = state.control(caller, id, Op::Describe(Empty {})).await;
                        if check.is_err_and(|e| e.code == ErrorCode::NotFound) {
                            break;
                        }
                        continue;
                    }
                };
                match bus::decode(&message) {
                    Ok((_, Body::CommandUpdate(c))) => {
                        let Ok(data) = serde_json::to_string(&view(&c)) else {
                            continue;
                        };
                        let event = Event::default().event("command").data(data);
                        return Some((Ok(event), Some((updates, checks))));
                    }
                    Ok((_, Body::SessionReply(reply)))
                        if matches!(reply.body, Some(Reply::Ended(_))) =>
                    {
                        break;
                    }
                    _ => {}
                }
            }
            let data = serde_json::json!({ "session_id": id }).to_string();
            Some((Ok(Event::default().event("ended").data(data)), None))
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The API's form of a command. The device's output passes through as raw JSON, so its field
/// order (the order of table columns in the console) is kept.
fn view(c: &agent_proto::bus::Command) -> Command {
    let output = (!c.output_json.is_empty()).then(|| {
        RawValue::from_string(c.output_json.clone()).unwrap_or_else(|_| {
            // Not JSON: pass it on as a string rather than lose it.
            RawValue::from_string(serde_json::Value::String(c.output_json.clone()).to_string())
                .expect("a JSON string is JSON")
        })
    });
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Command {
        command_id: c.command_id.clone(),
        command_line: c.command_line.clone(),
        state: wire::command_state(c.state()),
        output,
        error: text(&c.error),
        cwd: text(&c.cwd),
        submitted_at: timestamp_if_set(c.submitted_at_ms),
        started_at: timestamp_if_set(c.started_at_ms),
        finished_at: timestamp_if_set(c.finished_at_ms),
    }
}
