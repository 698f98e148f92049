//! Transfers: status (with long-poll), cancel, content with HTTP Range. A transfer is visible to
//! the analyst who started it; another's (or another tenant's) answers like a missing one.

use access::Role;
use std::time::Duration;

use api_model::{Page, Paging, Transfer, TransferFilter, Wait};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};

use super::{ApiError, ApiState, Caller, page};
use crate::time::{timestamp, timestamp_if_set};
use crate::transfer::{
    self, BookError, CancelError, StoreError, TransferKind, TransferRecord, TransferState,
    Versioned,
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

pub fn view(r: &TransferRecord) -> Transfer {
    Transfer {
        transfer_id: r.id.clone(),
        kind: r.kind,
        session_id: r.session.clone(),
        device: r.device.clone(),
        user: r.user.clone(),
        path: r.path.clone(),
        name: r.name.clone(),
        size: r.size,
        sha256: r.sha256.clone(),
        chunk_size: r.chunk_size,
        chunks: r.chunks(),
        chunks_done: r.chunks_done,
        bytes_done: r.bytes_done(),
        state: r.state,
        error: (!r.error.is_empty()).then(|| r.error.clone()),
        node: r.owner,
        created_at: timestamp(r.created_at_ms),
        finished_at: timestamp_if_set(r.finished_at_ms),
    }
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

/// The caller's transfers, oldest first.
#[utoipa::path(get, path = "/api/v1/transfers", tag = "transfers", operation_id = "listTransfers",
    params(Paging, TransferFilter),
    responses((status = 200, description = "A page of transfers", body = Page<Transfer>)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
    Query(filter): Query<TransferFilter>,
) -> Result<Json<Page<Transfer>>, ApiError> {
    caller.require(Role::Viewer)?;
    let mut records = state.transfers.book.list(&caller.tenant).await?;
    records.retain(|r| {
        r.user == caller.user
            && filter.session.as_ref().is_none_or(|s| *s == r.session)
            && filter.state.is_none_or(|s| s == r.state)
            && filter.kind.is_none_or(|k| k == r.kind)
    });
    // Transfer ids are time-ordered.
    records.sort_by(|a, b| a.id.cmp(&b.id));
    let transfers = records.iter().map(view).collect();
    Ok(Json(page::page(transfers, &paging, |t| &t.transfer_id)?))
}

/// One of the caller's transfers. With `wait_ms`, answers as soon as it makes progress or
/// changes state, or after `wait_ms` at the latest.
#[utoipa::path(get, path = "/api/v1/transfers/{id}", tag = "transfers", operation_id = "getTransfer",
    params(("id" = String, Path, description = "Transfer id"), Wait),
    responses(
        (status = 200, description = "The transfer as it stands", body = Transfer),
        (status = 404, description = "`not_found`: no such transfer for this analyst", body = api_model::ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(wait): Query<Wait>,
) -> Result<Json<Transfer>, ApiError> {
    caller.require(Role::Viewer)?;
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

/// Cancels a running transfer: its owner records it cancelled, tells the device and deletes a
/// getfile's stored chunks, wherever the call arrives (with no owner left, this node takes the
/// transfer over first). A finished getfile's stored file is deleted.
#[utoipa::path(delete, path = "/api/v1/transfers/{id}", tag = "transfers", operation_id = "cancelTransfer",
    params(("id" = String, Path, description = "Transfer id")),
    responses(
        (status = 204, description = "Cancelled (or already finished); a getfile's stored file is deleted"),
        (status = 404, description = "`not_found`: no such transfer for this analyst", body = api_model::ErrorBody),
        (status = 503, description = "`unavailable`: the transfer's node or its record could not be reached; retry", body = api_model::ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_somewhere(Role::ResponderAdvanced)?;
    ids::transfer(&id)?;
    transfer::cancel(&state.transfers, &caller.tenant, &caller.user, &id)
        .await
        .map_err(|error| match error {
            CancelError::NotFound(_) => ApiError::not_found(format!(
                "no transfer {id}; list yours with GET /api/v1/transfers"
            )),
            CancelError::Book(error) => error.into(),
            CancelError::Store(error) => store_error(error),
            CancelError::Unavailable(message) => ApiError::unavailable(message),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// The file of a completed getfile, whole or a `Range: bytes=a-b` of it.
#[utoipa::path(get, path = "/api/v1/transfers/{id}/content", tag = "transfers", operation_id = "getTransferContent",
    params(("id" = String, Path, description = "Transfer id"),
        ("Range" = Option<String>, Header, description = "One range: `bytes=<first>-<last>`, `bytes=<first>-` or `bytes=-<suffix>`")),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The asked range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "`not_found`: no such transfer for this analyst", body = api_model::ErrorBody),
        (status = 409, description = "`not_ready`: the transfer has not completed", body = api_model::ErrorBody),
        (status = 410, description = "`gone`: the stored file expired or is damaged; run getfile again", body = api_model::ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the range lies outside the file", body = api_model::ErrorBody)))]
pub async fn content(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.require_somewhere(Role::ResponderAdvanced)?;
    ids::transfer(&id)?;
    let record = owned(&state, &caller, &id).await?.record;
    if record.kind != TransferKind::Getfile {
        return Err(ApiError::invalid(format!(
            "transfer {id} is a putfile; only getfile transfers have content to download"
        )));
    }
    if record.state != TransferState::Completed {
        return Err(ApiError::new(
            api_model::ErrorCode::NotReady,
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
            api_model::ErrorCode::RangeNotSatisfiable,
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
        StoreError::RangeNotSatisfiable { .. } => {
            ApiError::new(api_model::ErrorCode::RangeNotSatisfiable, error.to_string())
        }
        StoreError::NotFound { .. } | StoreError::Damaged { .. } => ApiError::new(
            api_model::ErrorCode::Gone,
            format!("{error}; run getfile again"),
        ),
        e if e.is_retryable() => ApiError::unavailable(e.to_string()),
        e => ApiError::new(api_model::ErrorCode::Internal, e.to_string()),
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
