//! Sessions: open (idempotent with a request id), list, describe, end.

use access::Role;
use agent_proto::bus::Empty;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use api_model::{ErrorCode, OpenSession, Page, Paging, Session, SessionFilter};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cluster::lease::Lease;

use super::body::{IdempotencyKey, JsonBody};
use super::{ApiError, ApiState, Caller, page};
use crate::actors::session::{self, OpenRequest};
use crate::time::{now_ms, rfc3339, timestamp};

/// Opens a session on a device. With a `request_id` (or `Idempotency-Key`), a retried request
/// answers the session the first one opened (200) instead of opening or being refused another.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", operation_id = "openSession",
    request_body = OpenSession,
    params(("Idempotency-Key" = Option<String>, Header, description = "Same as `request_id`")),
    responses(
        (status = 201, description = "The session opened", body = Session),
        (status = 200, description = "The session this request id opened before", body = Session),
        (status = 404, description = "`not_found`: no such device in the tenant", body = api_model::ErrorBody),
        (status = 409, description = "`device_offline`, `session_refused` (a session limit; `holders` says who holds it) or `already_exists` (the request id opened a session on another device)", body = api_model::ErrorBody)))]
pub async fn open(
    State(state): State<ApiState>,
    caller: Caller,
    key: IdempotencyKey,
    JsonBody(body): JsonBody<OpenSession>,
) -> Result<(StatusCode, Json<Session>), ApiError> {
    ids::device(&body.device)?;
    if let Some(id) = &body.request_id {
        ids::idempotency_key(id)?;
    }
    let key = key.merge(body.request_id, "request_id")?;
    // Whether the caller may open sessions at all, before anything of the device is told.
    caller.require_somewhere(Role::ResponderBasic)?;
    let device = state
        .registry
        .get(&caller.tenant, &body.device)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no device {} in tenant {}; list devices with `lr devices`",
                body.device, caller.tenant
            ))
        })?;
    state
        .require_on_device(&caller, Role::ResponderBasic, &device.device)
        .await?;
    let tenant = state
        .leases
        .with_local_directory(|d| d.tenant(&caller.tenant).cloned())
        .await
        .ok_or_else(|| ApiError::not_found(format!("no tenant {}", caller.tenant)))?;
    let request = OpenRequest {
        tenant: caller.tenant.clone(),
        user: caller.user.clone(),
        device: body.device.clone(),
        key,
    };
    // A replay finds its session whether or not the device is still online.
    if let Some(lease) = session::find_opened(&state.leases, &request).await? {
        return Ok((StatusCode::OK, Json(view(&lease))));
    }
    if !device.is_online(now_ms()) {
        crate::metrics::session_refused("device_offline");
        return Err(ApiError::new(
            ErrorCode::DeviceOffline,
            format!(
                "device {} is offline (last seen {}); wait for its agent to reconnect",
                device.device,
                rfc3339(device.last_seen_ms)
            ),
        ));
    }
    if !tenant.settings.live_response_enabled {
        crate::metrics::session_refused("live_response_disabled");
        return Err(ApiError::new(
            ErrorCode::SessionRefused,
            format!(
                "live response is disabled for tenant {}; a tenant admin can enable it (lr admin settings update --live-response on)",
                caller.tenant
            ),
        ));
    }
    let mut context = state.session_context();
    if let Some(idle) = tenant.settings.idle_timeout_ms {
        context.settings.idle_timeout_ms = idle;
    }
    let opened = session::open(request, context).await?;
    let status = if opened.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(&opened.lease))))
}

/// The tenant's live sessions, oldest first.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "sessions", operation_id = "listSessions",
    params(Paging, SessionFilter),
    responses((status = 200, description = "A page of sessions", body = Page<Session>)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
    Query(filter): Query<SessionFilter>,
) -> Result<Json<Page<Session>>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut leases: Vec<Lease> = state
        .leases
        .list(&caller.tenant)
        .await?
        .into_iter()
        .filter(|l| filter.device.as_ref().is_none_or(|d| *d == l.device))
        .filter(|l| filter.user.as_ref().is_none_or(|u| *u == l.user))
        .collect();
    leases.sort_by(|a, b| (a.granted_at, &a.session).cmp(&(b.granted_at, &b.session)));
    let sessions = leases.iter().map(view).collect();
    Ok(Json(page::page(sessions, &paging, |s| &s.session_id)?))
}

/// One of the caller's sessions, with its working directory.
#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "getSession",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 200, description = "The session", body = Session),
        (status = 404, description = "`not_found`: no live session with this id for this analyst", body = api_model::ErrorBody)))]
pub async fn describe(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    caller.require(Role::Viewer)?;
    match state.control(&caller, &id, Op::Describe(Empty {})).await? {
        Reply::Session(s) => Ok(Json(Session {
            session_id: s.session_id,
            device: s.device,
            user: s.user,
            node: s.node_id,
            token: s.token,
            created_at: timestamp(s.created_at_ms),
            duration_s: now_ms().saturating_sub(s.created_at_ms) / 1000,
            cwd: Some(s.cwd),
        })),
        _ => Err(ApiError::unexpected()),
    }
}

/// Ends one of the caller's sessions and frees its device. Works also when the session's node is
/// gone (the lease is released directly).
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "sessions", operation_id = "endSession",
    params(("id" = String, Path, description = "Session id")),
    responses(
        (status = 204, description = "Ended; the device is free"),
        (status = 404, description = "`not_found`: no live session with this id for this analyst", body = api_model::ErrorBody)))]
pub async fn end(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_somewhere(Role::ResponderBasic)?;
    match state.control(&caller, &id, Op::End(Empty {})).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // The session's node is not answering: its lease is released directly (an adoption
        // meanwhile makes that fail, and the retry reaches the adopter).
        Err(e) if e.code == ErrorCode::SessionMoving => {
            match session::end_orphan(&state.leases, &caller.tenant, &caller.user, &id).await {
                Ok(true) => Ok(StatusCode::NO_CONTENT),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn view(lease: &Lease) -> Session {
    Session {
        session_id: lease.session.clone(),
        device: lease.device.clone(),
        user: lease.user.clone(),
        node: lease.node,
        token: lease.token,
        created_at: timestamp(lease.granted_at),
        duration_s: now_ms().saturating_sub(lease.granted_at) / 1000,
        cwd: None,
    }
}
