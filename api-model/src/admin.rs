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
