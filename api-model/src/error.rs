//! The one error shape of the API and its stable codes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Timestamp;

/// Why a request failed, stable across versions: clients branch on this, people read `message`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: a bad id, body, query or command line. `rule` says what is allowed.
    InvalidRequest,
    /// No bearer token, or one the broker does not know, or one revoked or expired.
    Unauthorized,
    /// The caller's roles do not allow this; `role` names the role needed.
    Forbidden,
    /// No such object for this caller (another analyst's or tenant's objects answer the same).
    NotFound,
    /// The object exists already; ask again with `overwrite=true` to replace it.
    AlreadyExists,
    /// A session limit refused the session; `invariant`, `limit` and `holders` say which and who.
    SessionRefused,
    /// The device's agent is not connected.
    DeviceOffline,
    /// The object is not in a state that allows this yet (e.g. a transfer still running).
    NotReady,
    /// The request body is over the limit.
    PayloadTooLarge,
    /// The asked range lies outside the file.
    RangeNotSatisfiable,
    /// The object existed but its data is gone (expired or damaged); make it again.
    Gone,
    /// The cluster cannot answer now (no leader, a node unreachable); retry.
    Unavailable,
    /// The session's node stopped answering and another node is taking the session over; retry
    /// in a few seconds, through any node.
    SessionMoving,
    /// A fault in the broker; the message says what, the broker's log says more.
    Internal,
    /// A code from a newer broker than this client knows.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl ErrorCode {
    /// Every code a broker sends, for tests and documents that must name them all.
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::SessionRefused,
        ErrorCode::DeviceOffline,
        ErrorCode::NotReady,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::Gone,
        ErrorCode::Unavailable,
        ErrorCode::SessionMoving,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::SessionRefused => "session_refused",
            ErrorCode::DeviceOffline => "device_offline",
            ErrorCode::NotReady => "not_ready",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::Gone => "gone",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::SessionMoving => "session_moving",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::AlreadyExists
            | ErrorCode::SessionRefused
            | ErrorCode::DeviceOffline
            | ErrorCode::NotReady => 409,
            ErrorCode::Gone => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::Unavailable | ErrorCode::SessionMoving => 503,
            ErrorCode::Internal | ErrorCode::Unknown => 500,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure answers `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "no transfer 0190; list yours with GET /api/v1/transfers"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code, a message for a person (what, why, what to do) and, for some
/// codes, the facts behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// `invalid_request` for a malformed id: the rule the id must follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `forbidden`: the role the request needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `session_refused`: the limit that refused the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invariant: Option<Invariant>,
    /// `session_refused`: the limit's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `session_refused`: the sessions that hold the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holders: Option<Vec<Holder>>,
}

impl ErrorDetail {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            rule: None,
            role: None,
            invariant: None,
            limit: None,
            holders: None,
        }
    }
}

/// The session limit that refused a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    OneSessionPerDevice,
    SessionsPerUser,
    SessionsPerTenant,
    /// A limit from a newer broker than this client knows.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// A session that holds a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holder {
    pub user: String,
    pub session: String,
    pub device: String,
    pub since: Timestamp,
}
