//! What clients send: bodies, query strings, and the page every list answers with.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /api/v1/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"device": "web-01", "request_id": "0193a1c2-7000-7000-8000-00000000000a"}))]
pub struct OpenSession {
    pub device: String,
    /// Chosen by the client, unique per attempt to open (an id: 1–64 of `A-Z a-z 0-9 _ -`). A
    /// retried request with the same id answers the session the first one opened instead of
    /// opening another. The `Idempotency-Key` header does the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `POST /api/v1/sessions/{id}/commands`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"command_line": "processes", "command_id": "0193a1c2-8000-7000-8000-000000000001"}))]
pub struct RunCommand {
    pub command_line: String,
    /// Chosen by the client (an id: 1–64 of `A-Z a-z 0-9 _ -`): a retried request with the same id
    /// answers the command the first one submitted and never runs it twice. The `Idempotency-Key`
    /// header does the same. The broker picks one when neither is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// A page of a list. Ask for the next page with `after=<next>`; `next` is null on the last page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Most items a page holds when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Most items a page may hold.
pub const MAX_LIMIT: usize = 1000;

/// Paging of every list: `limit` items after the cursor `after` (the `next` of the previous page).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Most items to answer, 1 to 1000 (default 100).
    pub limit: Option<usize>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// `GET /api/v1/devices` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviceFilter {
    /// Only devices whose agent is (true) or is not (false) connected.
    pub online: Option<bool>,
}

/// `GET /api/v1/sessions` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionFilter {
    /// Only sessions on this device.
    pub device: Option<String>,
    /// Only sessions of this analyst.
    pub user: Option<String>,
}

/// `GET /api/v1/sessions/{id}/commands` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CommandFilter {
    /// Only commands in this state.
    pub state: Option<crate::CommandState>,
}

/// `GET /api/v1/transfers` filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferFilter {
    /// Only transfers of this session.
    pub session: Option<String>,
    /// Only transfers in this state.
    pub state: Option<crate::TransferState>,
    /// Only getfile or only putfile transfers.
    pub kind: Option<crate::TransferKind>,
}

/// Long-polling of one object: answer as soon as it changes, or after `wait_ms` at the latest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Wait {
    /// Milliseconds to wait for a change, up to 30000 (default 0: answer at once).
    pub wait_ms: Option<u64>,
}

/// `PUT /api/v1/library/{name}` options; the body is the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LibraryUpload {
    /// What the file is for.
    #[serde(default)]
    pub description: String,
    /// What parameters a script takes.
    #[serde(default)]
    pub parameters_description: String,
    /// Replace a file of the same name (otherwise 409 `already_exists`).
    #[serde(default)]
    pub overwrite: bool,
}
