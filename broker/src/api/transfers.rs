//! Transfers: status (with long-poll), cancel, content with HTTP Range. A transfer is visible to
//! the analyst who started it; another's (or another tenant's) answers like a missing one.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};
use crate::bus;
use crate::time::now_ms;
use crate::time::rfc3339;
use crate::transfer::{
    BookError, StoreError, TransferKind, TransferRecord, TransferState, Versioned,
};

/// Longest long-poll of a transfer's progress.
const MAX_WAIT_MS: u64 = 30_000;

impl From<BookError> for ApiError {
    fn from(error: BookError) -> Self {
        match error {
            BookError::Invalid(invalid) => invalid.into(),
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

pub fn view(r: &TransferRecord) -> Value {
    let time = |ms: u64| (ms != 0).then(|| rfc3339(ms));
    json!({
        "transfer_id": r.id,
        "kind": match r.kind { TransferKind::Getfile => "getfile", TransferKind::Putfile => "putfile" },
        "session_id": r.session, "device": r.device, "user": r.user,
        "path": r.path, "name": r.name, "size": r.size, "sha256": r.sha256,
        "chunk_size": r.chunk_size, "chunks": r.chunks(), "chunks_done": r.chunks_done,
        "bytes_done": r.bytes_done(), "state": r.state.as_str(),
        "error": (!r.error.is_empty()).then(|| r.error.clone()),
        "node": r.owner, "created_at": rfc3339(r.created_at_ms), "finished_at": time(r.finished_at_ms),
    })
}

/// The caller's own transfer `id`.
async fn owned(state: &ApiState, caller: &Caller, id: &str) -> Result<Versioned, ApiError> {
    match state.transfers.book.get(&caller.tenant, id).await? {
        Some(v) if v.record.user == caller.user => Ok(v),
        _ => Err(ApiError::not_found(format!(
            "no transfer {id}; list yours with GET /api/v1/transfers"
        ))),
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    session: Option<String>,
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let records = state.transfers.book.list(&caller.tenant).await?;
    Ok(Json(
        records
            .iter()
            .filter(|r| r.user == caller.user)
            .filter(|r| query.session.as_ref().is_none_or(|s| *s == r.session))
            .map(view)
            .collect(),
    ))
}

#[derive(Deserialize)]
pub struct Wait {
    wait_ms: Option<u64>,
}

pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<Wait>,
) -> Result<Json<Value>, ApiError> {
    ids::transfer(&id)?;
    let wait = Duration::from_millis(wait.wait_ms.unwrap_or(0).min(MAX_WAIT_MS));
    // Watch before reading, so no change falls between the read and the wait.
    let updates = if wait.is_zero() {
        None
    } else {
        Some(state.transfers.book.watch(&caller.tenant, &id).await?)
    };
    let current = owned(&state, &caller, &id).await?.record;
    let Some(updates) = updates else {
        return Ok(Json(view(&current)));
    };
    if current.state.is_terminal() {
        return Ok(Json(view(&current)));
    }
    let mut updates = Box::pin(updates);
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(update)) = tokio::time::timeout_at(deadline, updates.next()).await {
        if update.state != current.state || update.chunks_done != current.chunks_done {
            return Ok(Json(view(&update)));
        }
    }
    Ok(Json(view(&current)))
}

/// Cancels a running transfer (the compare-and-set takes it from its owner, which stops) and
/// deletes its stored chunks.
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    ids::transfer(&id)?;
    let context = &state.transfers;
    for _ in 0..5 {
        let Versioned {
            mut record,
            revision,
        } = owned(&state, &caller, &id).await?;
        if !record.state.is_terminal() {
            record.state = TransferState::Cancelled;
            record.error = "cancelled by the analyst".into();
            record.finished_at_ms = now_ms();
            match context.book.update(&record, revision).await {
                Ok(_) => {}
                // The owner wrote a checkpoint meanwhile: read again.
                Err(BookError::Superseded(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let subject = bus::device_cmd(&record.tenant, &record.device);
            let stop = agent_proto::bus::envelope::Body::Cancel(agent_proto::agent::Cancel {
                command_id: record.id.clone(),
            });
            let _ = state.bus.publish(subject, &record.tenant, stop).await;
        }
        if record.kind == TransferKind::Getfile {
            context
                .store
                .delete(&record.tenant, &record.id)
                .await
                .map_err(store_error)?;
        }
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::unavailable(
        "the transfer kept changing while being cancelled; retry",
    ))
}

/// The file of a completed getfile, whole or a `Range: bytes=a-b` of it.
pub async fn content(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    ids::transfer(&id)?;
    let record = owned(&state, &caller, &id).await?.record;
    if record.kind != TransferKind::Getfile {
        return Err(ApiError::invalid(format!(
            "transfer {id} is a putfile; only getfile transfers have content to download"
        )));
    }
    if record.state != TransferState::Completed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!(
                "transfer {id} is {}, not completed; its content can be downloaded once it is",
                record.state.as_str()
            ),
        ));
    }
    let size = record.size;
    let range = match headers.get(header::RANGE).map(|v| parse_range(v, size)) {
        None => None,
        Some(Ok(range)) => Some(range),
        Some(Err(error)) if error.status == StatusCode::RANGE_NOT_SATISFIABLE => {
            let mut response = error.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
        Some(Err(error)) => return Err(error),
    };
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", record.sha256)) {
        response_headers.insert(header::ETAG, etag);
    }
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        record.name.replace(['"', '\\'], "_")
    )) {
        response_headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if size == 0 {
        return Ok((StatusCode::OK, response_headers, Body::empty()).into_response());
    }
    let (start, end) = range.unwrap_or((0, size - 1));
    let read = state
        .transfers
        .store
        .read_range(
            &record.tenant,
            &record.id,
            record.chunk_size,
            size,
            start,
            end,
        )
        .map_err(store_error)?;
    let status = if range.is_some() {
        let value = format!("bytes {}-{}/{size}", read.first, read.last);
        if let Ok(value) = HeaderValue::from_str(&value) {
            response_headers.insert(header::CONTENT_RANGE, value);
        }
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    response_headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(read.last - read.first + 1),
    );
    let body = Body::from_stream(read.body.map_err(std::io::Error::other));
    Ok((status, response_headers, body).into_response())
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` (one range), as RFC 9110 §14.1.2 reads them.
fn parse_range(value: &HeaderValue, size: u64) -> Result<(u64, u64), ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            format!("the range {value:?} is outside the file, which has {size} bytes"),
        )
    };
    let text = value.to_str().unwrap_or_default().trim();
    let spec = text.strip_prefix("bytes=").ok_or_else(|| {
        ApiError::invalid(format!(
            "Range {text:?} is not understood; send bytes=<first>-<last>"
        ))
    })?;
    if spec.contains(',') {
        return Err(ApiError::invalid(
            "multiple ranges are not supported; ask for one range at a time",
        ));
    }
    let (first, last) = spec
        .split_once('-')
        .ok_or_else(|| ApiError::invalid(format!("Range {text:?} has no '-'")))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::invalid(format!("Range {text:?} holds a bad number")))
    };
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => {
            let suffix = number(last)?;
            if suffix == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(suffix), size - 1)
        }
        (false, true) => (number(first)?, size.saturating_sub(1)),
        (false, false) => (number(first)?, number(last)?),
        (true, true) => return Err(ApiError::invalid(format!("Range {text:?} is empty"))),
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    if start > end {
        return Err(ApiError::invalid(format!(
            "Range {text:?} ends before it starts"
        )));
    }
    Ok((start, end.min(size - 1)))
}

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::RangeNotSatisfiable { .. } => ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "range_not_satisfiable",
            error.to_string(),
        ),
        StoreError::NotFound { .. } | StoreError::Damaged { .. } => ApiError::new(
            StatusCode::GONE,
            "gone",
            format!("{error}; run getfile again"),
        ),
        e if e.is_retryable() => ApiError::unavailable(e.to_string()),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str, size: u64) -> Result<(u64, u64), StatusCode> {
        parse_range(&HeaderValue::from_str(text).unwrap(), size).map_err(|e| e.status)
    }

    #[test]
    fn ranges_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(range("bytes=90-500", 100), Ok((90, 99)));
        assert_eq!(range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(
            range("bytes=100-", 100),
            Err(StatusCode::RANGE_NOT_SATISFIABLE)
        );
        assert_eq!(range("bytes=5-1", 100), Err(StatusCode::BAD_REQUEST));
        assert_eq!(range("bytes=0-1,5-6", 100), Err(StatusCode::BAD_REQUEST));
        assert_eq!(range("items=0-1", 100), Err(StatusCode::BAD_REQUEST));
    }
}
