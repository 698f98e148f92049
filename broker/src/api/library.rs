//! The tenant library: upload (streamed, chunk by chunk), list, delete.

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiState, Caller};
use crate::time::{now_ms, rfc3339};
use crate::transfer::library::{LibraryEntry, LibraryError, Upload};

impl From<LibraryError> for ApiError {
    fn from(error: LibraryError) -> Self {
        let message = error.to_string();
        match error {
            LibraryError::Invalid(invalid) => invalid.into(),
            LibraryError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", message)
            }
            LibraryError::NotFound(_) => ApiError::not_found(message),
            LibraryError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            LibraryError::Body(_) => ApiError::invalid(message),
            LibraryError::Unavailable(_) => ApiError::unavailable(message),
        }
    }
}

fn entry_json(e: &LibraryEntry) -> Value {
    json!({"name": e.name, "description": e.description, "parameters_description": e.parameters_description,
           "size": e.size, "sha256": e.sha256, "uploaded_by": e.uploaded_by, "uploaded_at": rfc3339(e.uploaded_at_ms)})
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<Value>>, ApiError> {
    let entries = state.transfers.library.list(&caller.tenant).await?;
    Ok(Json(entries.iter().map(entry_json).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters_description: String,
    #[serde(default)]
    overwrite: bool,
}

pub async fn upload(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    ids::library_name(&name)?;
    let context = &state.transfers;
    let upload = Upload {
        tenant: caller.tenant.clone(),
        user: caller.user.clone(),
        name,
        description: query.description,
        parameters_description: query.parameters_description,
        overwrite: query.overwrite,
        limit: context.settings.max_library_file_bytes,
        chunk_size: context.chunk_size(),
        now_ms: now_ms(),
    };
    let body = request.into_body().into_data_stream();
    let (entry, replaced) = context.library.upload(upload, body).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(entry_json(&entry))).into_response())
}

pub async fn delete(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .transfers
        .library
        .delete(&caller.tenant, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
