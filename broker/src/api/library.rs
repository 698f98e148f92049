//! The tenant library: upload (streamed, chunk by chunk), list, delete.

use access::Role;
use api_model::{AuditKind, LibraryEntry, LibraryUpload, Page, Paging};
use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use serde_json::json;

use super::{ApiError, ApiState, Caller, page};
use crate::time::{now_ms, timestamp};
use crate::transfer::library::{self, LibraryError, Upload};

impl From<LibraryError> for ApiError {
    fn from(error: LibraryError) -> Self {
        let message = error.to_string();
        match error {
            LibraryError::Invalid(invalid) => invalid.into(),
            LibraryError::Exists(_) => ApiError::new(api_model::ErrorCode::AlreadyExists, message),
            LibraryError::NotFound(_) => ApiError::not_found(message),
            LibraryError::TooLarge { .. } | LibraryError::OverQuota { .. } => {
                ApiError::new(api_model::ErrorCode::PayloadTooLarge, message)
            }
            LibraryError::Body(_) => ApiError::invalid(message),
            LibraryError::Unavailable(_) => ApiError::unavailable(message),
        }
    }
}

fn view(e: &library::LibraryEntry) -> LibraryEntry {
    LibraryEntry {
        name: e.name.clone(),
        description: e.description.clone(),
        parameters_description: e.parameters_description.clone(),
        size: e.size,
        sha256: e.sha256.clone(),
        uploaded_by: e.uploaded_by.clone(),
        uploaded_at: timestamp(e.uploaded_at_ms),
    }
}

/// The tenant's library, by name.
#[utoipa::path(get, path = "/api/v1/library", tag = "library", operation_id = "listLibrary",
    params(Paging),
    responses((status = 200, description = "A page of library files", body = Page<LibraryEntry>)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Result<Json<Page<LibraryEntry>>, ApiError> {
    caller.require(Role::Viewer)?;
    let entries = state.transfers.library.list(&caller.tenant).await?;
    let entries = entries.iter().map(view).collect();
    Ok(Json(page::page(entries, &paging, |e| &e.name)?))
}

/// Adds a file to the tenant's library; the body is the file, streamed.
#[utoipa::path(put, path = "/api/v1/library/{name}", tag = "library", operation_id = "uploadLibraryFile",
    params(("name" = String, Path, description = "File name: no slash, no control character, not starting with '.'"), LibraryUpload),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file"),
    responses(
        (status = 201, description = "Added", body = LibraryEntry),
        (status = 200, description = "Replaced (with `overwrite=true`)", body = LibraryEntry),
        (status = 409, description = "`already_exists`: a file of this name exists; send `overwrite=true` to replace it", body = api_model::ErrorBody),
        (status = 413, description = "`payload_too_large`: the file is over the tenant's library limit", body = api_model::ErrorBody)))]
pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<LibraryUpload>,
    request: Request,
) -> Result<(StatusCode, Json<LibraryEntry>), ApiError> {
    caller.require(Role::LibraryManager)?;
    ids::library_name(&name)?;
    let intent = json!({"action": "upload", "name": name, "overwrite": query.overwrite});
    state
        .record_change(&caller, AuditKind::LibraryChanged, intent)
        .await?;
    let context = &state.transfers;
    let room = context.store_room(&caller.tenant).await.map_err(|e| {
        ApiError::unavailable(format!(
            "cannot tell how much the tenant stores ({e}); retry"
        ))
    })?;
    let upload = Upload {
        tenant: caller.tenant.clone(),
        user: caller.user.clone(),
        name,
        description: query.description,
        parameters_description: query.parameters_description,
        overwrite: query.overwrite,
        limit: context.settings.max_library_file_bytes,
        room,
        quota: context.max_store_bytes(&caller.tenant),
        chunk_size: context.chunk_size(),
        now_ms: now_ms(),
    };
    let body = request.into_body().into_data_stream();
    let (entry, replaced) = context.library.upload(upload, body).await?;
    let done = json!({"action": "uploaded", "name": entry.name, "size": entry.size,
                      "sha256": entry.sha256, "replaced": replaced});
    state
        .record_change(&caller, AuditKind::LibraryChanged, done)
        .await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view(&entry))))
}

/// Removes a file from the tenant's library.
#[utoipa::path(delete, path = "/api/v1/library/{name}", tag = "library", operation_id = "deleteLibraryFile",
    params(("name" = String, Path, description = "File name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`not_found`: no such file in the library", body = api_model::ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::LibraryManager)?;
    let intent = json!({"action": "delete", "name": name});
    state
        .record_change(&caller, AuditKind::LibraryChanged, intent)
        .await?;
    state
        .transfers
        .library
        .delete(&caller.tenant, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
