//! The objects the API answers with.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::{CommandState, Timestamp, TransferKind, TransferState};

/// `GET /healthz`: the process is alive and serves HTTP (always 200); this node, the Raft leader
/// it sees, and whether it serves requests (`GET /readyz` says why not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"node": 1, "leader": 1, "ok": true}))]
pub struct Health {
    pub node: u64,
    pub leader: Option<u64>,
    /// True once the node has a leader and the configured tenant limits are in force.
    pub ok: bool,
}

/// `GET /readyz`: whether this node can serve requests (200) or not (503), check by check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"node": 3, "leader": null, "ready": false,
    "reason": "leader: this node sees no raft leader; a majority of the brokers must be up and reach each other",
    "checks": [
        {"name": "leader", "ok": false, "detail": "this node sees no raft leader; a majority of the brokers must be up and reach each other"},
        {"name": "directory", "ok": true, "detail": null},
        {"name": "nats", "ok": true, "detail": null},
        {"name": "jetstream", "ok": true, "detail": null},
        {"name": "listeners", "ok": true, "detail": null}]}))]
pub struct Readiness {
    pub node: u64,
    pub leader: Option<u64>,
    /// True when every check passed.
    pub ready: bool,
    /// The first failed check and why (`name: detail`); null when ready.
    pub reason: Option<String>,
    /// Every check, in the order they are listed: `leader`, `directory`, `nats`, `jetstream`,
    /// `listeners`.
    pub checks: Vec<ReadinessCheck>,
}

/// One readiness check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadinessCheck {
    pub name: String,
    pub ok: bool,
    /// Why it failed; null when it passed.
    pub detail: Option<String>,
}

/// `GET /api/v1/me`: who the bearer token belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"tenant": "acme", "user": "alice@acme.example",
    "roles": ["responder-basic"], "commands": ["cd", "dir", "fileinfo"]}))]
pub struct Me {
    pub tenant: String,
    pub user: String,
    /// The caller's roles (`role`, or `role (groups a, b)` when scoped to device groups).
    #[serde(default)]
    pub roles: Vec<String>,
    /// The commands the caller may run on some device of the tenant.
    #[serde(default)]
    pub commands: Vec<String>,
}

/// A device whose agent has connected at least once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"device": "web-01", "tenant": "acme", "hostname": "web-01.acme.example",
    "os": "linux", "agent_version": "0.1.0", "online": true, "node": 2,
    "last_seen": "2026-12-05T12:00:00Z"}))]
pub struct Device {
    pub device: String,
    pub tenant: String,
    pub hostname: String,
    pub os: String,
    pub agent_version: String,
    /// Its agent holds a stream to a broker node now.
    pub online: bool,
    /// The broker node holding (or last holding) its stream.
    pub node: u64,
    pub last_seen: Timestamp,
    /// The tags the device's agent carries (device groups may select by them).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A live response session: one analyst on one device, until ended or idle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "0193a1c2-7d4e-7b41-9a0e-2f1c3d4e5f60", "device": "web-01",
    "user": "alice@acme.example", "node": 1, "token": 42, "created_at": "2026-12-05T12:00:00Z",
    "duration_s": 12, "cwd": "/root"}))]
pub struct Session {
    pub session_id: String,
    pub device: String,
    pub user: String,
    /// The broker node the session runs on.
    pub node: u64,
    /// The session's fencing token: the device refuses anything older.
    pub token: u64,
    pub created_at: Timestamp,
    /// Seconds since the session opened.
    pub duration_s: u64,
    /// The working directory on the device; only the session's own node knows it, so lists omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// A command of a session and, once it has run, its output.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"command_id": "0193a1c2-8000-7000-8000-000000000001",
    "command_line": "fileinfo /etc/hosts", "state": "completed",
    "output": {"path": "/etc/hosts", "type": "file", "size": 220},
    "error": null, "cwd": "/root", "submitted_at": "2026-12-05T12:00:01Z",
    "started_at": "2026-12-05T12:00:01Z", "finished_at": "2026-12-05T12:00:01Z"}))]
pub struct Command {
    pub command_id: String,
    pub command_line: String,
    pub state: CommandState,
    /// The command's structured output (its schema is in `commands/output-schema.json`), passed
    /// through as the device wrote it so field order is kept.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Box<RawValue>>,
    /// What went wrong, for a person.
    pub error: Option<String>,
    pub cwd: Option<String>,
    pub submitted_at: Option<Timestamp>,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

impl Clone for Command {
    fn clone(&self) -> Self {
        Self {
            command_id: self.command_id.clone(),
            command_line: self.command_line.clone(),
            state: self.state,
            output: self.output.as_ref().map(|raw| raw.to_owned()),
            error: self.error.clone(),
            cwd: self.cwd.clone(),
            submitted_at: self.submitted_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
        }
    }
}

/// A file on its way from a device (`getfile`) or to it (`putfile`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"transfer_id": "0193a1c2-9000-7000-8000-000000000002", "kind": "getfile",
    "session_id": "0193a1c2-7d4e-7b41-9a0e-2f1c3d4e5f60", "device": "web-01",
    "user": "alice@acme.example", "path": "/var/log/syslog", "name": "syslog", "size": 1048576,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "chunk_size": 262144,
    "chunks": 4, "chunks_done": 2, "bytes_done": 524288, "state": "running", "error": null,
    "node": 1, "created_at": "2026-12-05T12:00:02Z", "finished_at": null}))]
pub struct Transfer {
    pub transfer_id: String,
    pub kind: TransferKind,
    pub session_id: String,
    pub device: String,
    pub user: String,
    /// getfile: the file on the device. putfile: where the file landed, once it has.
    pub path: String,
    /// getfile: a safe name for the analyst's copy. putfile: the library file's name.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub chunk_size: u64,
    pub chunks: u64,
    pub chunks_done: u64,
    pub bytes_done: u64,
    pub state: TransferState,
    pub error: Option<String>,
    /// The broker node driving the transfer.
    pub node: u64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// A file of the tenant's library, ready for `putfile` (and later `run`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "collect.sh", "description": "collects triage data",
    "parameters_description": "-days <n>", "size": 2048,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "uploaded_by": "alice@acme.example", "uploaded_at": "2026-12-05T11:00:00Z"}))]
pub struct LibraryEntry {
    pub name: String,
    pub description: String,
    pub parameters_description: String,
    pub size: u64,
    pub sha256: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}
