//! The audit log, read-only: entries with filters and cursor paging, a command's output by
//! reference (for those whose role could have run the command), and the chain's verification
//! (tenant admins). Nothing here writes or deletes an entry.

use access::Role;
use api_model::{
    AuditEntry, AuditFilter, AuditKind, AuditVerification, DEFAULT_LIMIT, MAX_LIMIT, Page, Paging,
};
use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::auth::TENANT_HEADER;
use super::{ApiError, ApiState, Caller};
use serde_json::{Value, json};

use crate::audit::chain::Checkpoint;
use crate::audit::{AuditError, Event};
use crate::time::timestamp;

impl From<AuditError> for ApiError {
    fn from(error: AuditError) -> Self {
        ApiError::unavailable(error.to_string())
    }
}

/// The tenant's entries, oldest first. `next` continues after the last entry scanned.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", operation_id = "listAudit",
    params(Paging, AuditFilter),
    responses((status = 200, description = "A page of entries", body = Page<AuditEntry>)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
    Query(filter): Query<AuditFilter>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    caller.require(Role::Viewer)?;
    let limit = paging.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit {limit} is out of range; ask for 1 to {MAX_LIMIT} items"
        )));
    }
    let after = match &paging.after {
        None => None,
        Some(cursor) => Some(cursor.parse::<u64>().map_err(|_| {
            ApiError::invalid(format!(
                "cursor {cursor:?} is not one this list gave; start again without `after`"
            ))
        })?),
    };
    let (items, next) = state
        .transfers
        .audit
        .read(&caller.tenant, &filter, after, limit)
        .await?;
    Ok(Json(Page {
        items,
        next: next.map(|n| n.to_string()),
    }))
}

/// A finished command's output, as the device answered it.
#[utoipa::path(get, path = "/api/v1/audit/output/{ref}", tag = "audit", operation_id = "getAuditOutput",
    params(("ref" = String, Path, description = "The `output_ref` of a `command_finished` entry")),
    responses((status = 200, description = "The output", content_type = "text/plain", body = String)))]
pub async fn output(
    State(state): State<ApiState>,
    caller: Caller,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let output = state
        .transfers
        .audit
        .output(&caller.tenant, &reference)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no output {reference}")))?;
    state
        .require_on_device(&caller, output.role, &output.device)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        output.body,
    )
        .into_response())
}

/// Walks the tenant's chain from its first entry against the cluster's newest checkpoint of its
/// head, and names the first entry that does not hold.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", operation_id = "verifyAudit",
    responses((status = 200, description = "What the walk found", body = AuditVerification)))]
pub async fn verify(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    caller.require(Role::TenantAdmin)?;
    let head = state
        .leases
        .directory()
        .await?
        .audit_head(&caller.tenant)
        .cloned();
    let checkpoint = head.as_ref().map(|h| Checkpoint {
        seq: h.seq,
        hash: h.hash.clone(),
        cut: h.cut.as_ref().map(|c| (c.seq, c.prev_hash.clone())),
    });
    let cut = head.as_ref().and_then(|h| h.cut.clone());
    let walk = state
        .transfers
        .audit
        .walk(&caller.tenant, checkpoint)
        .await?;
    let (first_broken, problem) = walk.broken.map_or((None, None), |(at, why)| {
        (Some(at), Some(format!("entry {at}: {why}")))
    });
    Ok(Json(AuditVerification {
        tenant: caller.tenant.clone(),
        ok: first_broken.is_none(),
        entries: walk.entries,
        first_seq: cut.as_ref().map_or(1, |c| c.seq),
        cut_at: cut.map(|c| timestamp(c.at)),
        head_seq: walk.head_seq,
        head_hash: walk.head_hash,
        checkpoint_seq: head.as_ref().map(|h| h.seq),
        checkpoint_at: head.map(|h| timestamp(h.at)),
        first_broken,
        problem,
    }))
}

impl ApiState {
    /// Records what `caller` is about to change; an error means it must not be done.
    pub(super) async fn record_change(
        &self,
        caller: &Caller,
        kind: AuditKind,
        what: Value,
    ) -> Result<(), ApiError> {
        let event = Event::new(kind, redact(what)).user(&caller.user);
        self.transfers.audit.record(&caller.tenant, event).await?;
        Ok(())
    }

    /// Records that `caller` was refused `what`, and why. A refusal the log cannot hold is still
    /// answered: the caller was refused either way.
    pub(super) async fn record_refusal(&self, caller: &Caller, what: Value, reason: &str) {
        let event = Event::new(
            AuditKind::Refused,
            json!({"request": redact(what), "reason": reason}),
        )
        .user(&caller.user);
        if let Err(error) = self.transfers.audit.record(&caller.tenant, event).await {
            tracing::warn!(%error, "cannot record a refusal");
        }
    }
}

/// The largest error answer read back to record its reason.
const MAX_REFUSAL_BODY: usize = 64 * 1024;

/// Records every request refused for a role (403) or a session limit (409 `session_refused`),
/// with the caller, the request and the reason the answer gave.
pub async fn refusals(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let what = json!({"method": request.method().as_str(), "path": request.uri().path()});
    // Who asked is worked out again only for a refusal, off every other request's path.
    let credentials: Vec<_> = [
        header::AUTHORIZATION,
        HeaderName::from_static(TENANT_HEADER),
    ]
    .into_iter()
    .filter_map(|name| Some((name.clone(), request.headers().get(&name)?.clone())))
    .collect();
    let response = next.run(request).await;
    let status = response.status();
    if status != StatusCode::FORBIDDEN && status != StatusCode::CONFLICT {
        return response;
    }
    let mut asked = Request::new(Body::empty());
    asked.headers_mut().extend(credentials);
    let (mut parts, _) = asked.into_parts();
    let Ok(caller) = Caller::from_request_parts(&mut parts, &state).await else {
        return response;
    };
    let (head, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_REFUSAL_BODY)
        .await
        .unwrap_or_default();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let error = &answer["error"];
    if status == StatusCode::FORBIDDEN || error["code"] == "session_refused" {
        let reason = error["message"].as_str().unwrap_or_default();
        state.record_refusal(&caller, what, reason).await;
    }
    Response::from_parts(head, Body::from(bytes))
}

/// `value` without token hashes: the log says what changed, not what would identify a secret.
fn redact(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("sha256");
            for v in map.values_mut() {
                *v = redact(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = redact(v.take());
            }
        }
        _ => {}
    }
    value
}
