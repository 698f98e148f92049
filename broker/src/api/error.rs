//! The API's one error type: a stable code, a message for a person, and the HTTP status the code
//! maps to ([`wire::statuses`]). Every failure of every handler goes through it, so clients see one
//! JSON shape.

use agent_proto::bus;
use api_model::ErrorCode;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster::ClusterError;
use cluster::directory::DirectoryError;
use cluster::lease::{Invariant, LeaseError};
use serde_json::{Value, json};

use crate::wire;

#[derive(Debug)]
pub struct ApiError {
    /// Always the code's status (`wire::statuses(code).0`); set by [`ApiError::new`].
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields beside code and message (e.g. the holders of a refused session).
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: wire::statuses(code).0,
            code,
            message: message.into(),
            extra: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// The session's node answered with something other than what the request asks for.
    pub fn unexpected() -> Self {
        Self::unavailable("unexpected answer from the session's node; retry")
    }

    /// The error a session's node answered with; one without a code is the node's fault.
    pub fn from_code(code: bus::ErrorCode, message: String) -> Self {
        Self::new(
            wire::error_code(code).unwrap_or(ErrorCode::Internal),
            message,
        )
    }
}

/// A malformed id in a path or body: 400, with the rule to follow beside the message.
impl From<ids::InvalidId> for ApiError {
    fn from(error: ids::InvalidId) -> Self {
        Self {
            extra: Some(json!({"rule": error.rule()})),
            ..Self::invalid(error.to_string())
        }
    }
}

impl From<ClusterError> for ApiError {
    fn from(error: ClusterError) -> Self {
        match &error {
            ClusterError::Refused(refusal) => {
                let invariant = match refusal.invariant {
                    Invariant::OneSessionPerDevice => "one_session_per_device",
                    Invariant::SessionsPerUser => "sessions_per_user",
                    Invariant::SessionsPerTenant => "sessions_per_tenant",
                };
                let holders: Vec<Value> = refusal
                    .holders
                    .iter()
                    .map(|h| json!({"user": h.user, "session": h.session, "device": h.device, "since": crate::time::rfc3339(h.since)}))
                    .collect();
                Self {
                    extra: Some(
                        json!({"invariant": invariant, "limit": refusal.limit, "holders": holders}),
                    ),
                    ..Self::new(ErrorCode::SessionRefused, error.to_string())
                }
            }
            ClusterError::Rejected(LeaseError::Invalid { .. }) => Self::invalid(error.to_string()),
            ClusterError::Rejected(LeaseError::SessionIdInUse { .. }) => Self::new(
                ErrorCode::AlreadyExists,
                "this request id already opened a session on another device; use a new request id",
            ),
            ClusterError::Rejected(_) => Self::not_found(error.to_string()),
            ClusterError::Directory(e) => match e {
                DirectoryError::NotFound { .. } => Self::not_found(e.to_string()),
                DirectoryError::Invalid { .. } | DirectoryError::Refused(_) => {
                    Self::invalid(e.to_string())
                }
                DirectoryError::AlreadyExists { .. }
                | DirectoryError::AlreadyBootstrapped
                | DirectoryError::Conflict(_) => Self::new(ErrorCode::AlreadyExists, e.to_string()),
            },
            _ => Self::unavailable(format!("{error}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(Value::Object(extra)), Value::Object(fields)) = (self.extra, &mut error) {
            fields.extend(extra);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_typed_code_answers_the_json_and_status_it_always_did() {
        let response = ApiError::new(ErrorCode::NotReady, "not yet").into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body,
            json!({"error": {"code": "not_ready", "message": "not yet"}})
        );
    }

    #[test]
    fn session_node_errors_keep_their_code() {
        let e = ApiError::from_code(bus::ErrorCode::NotFound, "no command c".into());
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, ErrorCode::NotFound)
        );
        let e = ApiError::from_code(bus::ErrorCode::Unspecified, "?".into());
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
        );
    }
}
