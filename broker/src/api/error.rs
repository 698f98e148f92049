//! The API's one error type: a stable code, a message for a person, an HTTP status. Every failure
//! of every handler goes through it, so clients see one JSON shape.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cluster::ClusterError;
use cluster::lease::{Invariant, LeaseError};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra fields beside code and message (e.g. the holders of a refused session).
    pub extra: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Maps a session-control error code from the session's node.
    pub fn from_code(code: &str, message: String) -> Self {
        match code {
            "not_found" => Self::not_found(message),
            "invalid_request" => Self::invalid(message),
            _ => Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
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
                    status: StatusCode::CONFLICT,
                    code: "session_refused",
                    message: error.to_string(),
                    extra: Some(
                        json!({"invariant": invariant, "limit": refusal.limit, "holders": holders}),
                    ),
                }
            }
            ClusterError::Rejected(LeaseError::Invalid { .. }) => Self::invalid(error.to_string()),
            ClusterError::Rejected(_) => Self::not_found(error.to_string()),
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
