//! Administration (`/api/v1/admin/...`): tenants (platform admins), and a tenant's settings,
//! users, tokens and device groups (tenant admins). Roles are written by their ids
//! (`viewer`, `responder-basic`, `responder-advanced`, `library-manager`, `tenant-admin`,
//! `platform-admin`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Timestamp;

/// A tenant's settings and session limits. `version` grows with every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantSettings {
    pub live_response_enabled: bool,
    pub unsigned_scripts_allowed: bool,
    /// `null`: the brokers' default.
    pub idle_timeout_ms: Option<u64>,
    pub remediation_groups: Vec<String>,
    pub max_sessions_per_tenant: u32,
    pub max_sessions_per_user: u32,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "acme", "display_name": "ACME Corp", "created_at": "2026-12-05T12:00:00Z",
    "settings": {"live_response_enabled": true, "unsigned_scripts_allowed": false, "idle_timeout_ms": null,
    "remediation_groups": [], "max_sessions_per_tenant": 25, "max_sessions_per_user": 1, "version": 3}}))]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub settings: TenantSettings,
    pub created_at: Timestamp,
}

/// `POST /api/v1/admin/tenants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub id: String,
    /// The id when not given.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// `PATCH /api/v1/admin/tenants/{id}` and `PATCH /api/v1/admin/settings`: only the fields given
/// change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpdateTenant {
    pub display_name: Option<String>,
    pub live_response_enabled: Option<bool>,
    pub unsigned_scripts_allowed: Option<bool>,
    pub idle_timeout_ms: Option<u64>,
    pub remediation_groups: Option<Vec<String>>,
    pub max_sessions_per_tenant: Option<u32>,
    pub max_sessions_per_user: Option<u32>,
}

/// A role, on every device of the tenant or only on the devices of `groups`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RoleGrant {
    pub role: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"tenant": "acme", "name": "alice@acme.example",
    "roles": [{"role": "responder-basic"}, {"role": "responder-advanced", "groups": ["servers"]}],
    "created_at": "2026-12-05T12:00:00Z"}))]
pub struct User {
    pub tenant: String,
    pub name: String,
    pub roles: Vec<RoleGrant>,
    pub created_at: Timestamp,
}

/// `POST /api/v1/admin/users`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub name: String,
    pub roles: Vec<RoleGrant>,
}

/// `PATCH /api/v1/admin/users/{name}`: the user's roles, replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    pub roles: Vec<RoleGrant>,
}

/// An API token as the directory keeps it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Token {
    pub id: String,
    pub tenant: String,
    pub user: String,
    pub description: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

/// `POST /api/v1/admin/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    pub user: String,
    #[serde(default)]
    pub description: String,
    /// Seconds from now until the token stops working; never when not given.
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

/// The answer to `POST /api/v1/admin/tokens`: the token, shown this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The bearer token (`lrt_...`). It is not stored and cannot be shown again.
    pub token: String,
    #[serde(flatten)]
    pub record: Token,
}

/// Which devices a group holds by rule: a device id or hostname glob (`*`, `?`), or a tag the
/// device's agent carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "match", content = "pattern")]
pub enum GroupRule {
    Device(String),
    Hostname(String),
    Tag(String),
}

/// `PUT /api/v1/admin/groups/{name}` and what it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"name": "servers", "devices": ["db-01"], "rules": [{"match": "hostname", "pattern": "web-*"}]}))]
pub struct DeviceGroup {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GroupRule>,
}

/// An enrolment token as the directory keeps it: never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrolmentToken {
    pub id: String,
    pub tenant: String,
    pub description: String,
    /// The device group enrolled devices join, if any.
    pub group: Option<String>,
    pub max_uses: u32,
    pub uses: u32,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// `POST /api/v1/admin/enrolment-tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrolmentToken {
    #[serde(default)]
    pub description: String,
    /// Seconds from now until the token stops working (default a day, at most 30 days).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// How many devices may enrol with it (default 1).
    #[serde(default)]
    pub max_uses: Option<u32>,
    /// A device group of the tenant every device enrolled with it joins.
    #[serde(default)]
    pub group: Option<String>,
}

/// The answer to `POST /api/v1/admin/enrolment-tokens`: the token, shown this once, and the
/// fingerprint `lr-agent enroll --ca-fingerprint` pins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrolmentToken {
    /// The enrolment token (`lre_...`). It is not stored and cannot be shown again.
    pub token: String,
    /// SHA-256 (hex) of the cluster CA certificate, which signs every broker's certificate: the
    /// device checks the broker it enrols through against it.
    pub ca_fingerprint: String,
    /// SHA-256 (hex) of the issuing CA certificate, which signs the devices' certificates.
    pub issuing_ca_fingerprint: String,
    #[serde(flatten)]
    pub record: EnrolmentToken,
}

/// Whether a device may connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentState {
    Enrolled,
    Revoked,
    /// A value from a newer broker.
    #[serde(other, skip_serializing)]
    Unknown,
}

/// An enrolled device: its enrolment, its certificate and when it was last seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrolledDevice {
    pub device: String,
    pub tenant: String,
    pub state: EnrolmentState,
    /// SHA-256 (hex) of the device's current certificate.
    pub certificate: String,
    pub certificate_expires_at: Timestamp,
    pub enrolled_at: Timestamp,
    pub renewed_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// An admin allowed the device id to enrol again.
    pub reenrolment_allowed: bool,
    pub online: bool,
    pub last_seen: Option<Timestamp>,
    pub hostname: Option<String>,
}
