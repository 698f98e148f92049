//! What the directory holds, what may be asked of it, and what it answers.

use access::RoleGrant;
use serde::{Deserialize, Serialize};

use crate::lease::Millis;

/// The tenant that holds platform admins; no customer tenant may take its id.
pub const PLATFORM_TENANT: &str = "platform";

/// The prefix of every API token, so a leaked one can be found by scanners.
pub const TOKEN_PREFIX: &str = "lrt_";

/// The prefix of every enrolment token (`lre_<id>_<secret>`).
pub const ENROLMENT_TOKEN_PREFIX: &str = "lre_";

/// How a tenant uses live response. Session limits live beside the leases
/// ([`crate::lease::TenantLimits`]) and are shown with these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    pub live_response_enabled: bool,
    pub unsigned_scripts_allowed: bool,
    /// A session with no analyst activity this long ends; `None`: the brokers' default
    /// (`sessions.idle_timeout_ms`).
    pub idle_timeout_ms: Option<u64>,
    /// Device groups where remediation is allowed; empty: nowhere.
    pub remediation_groups: Vec<String>,
    /// Grows with every change of the tenant's settings or limits; never goes back.
    pub version: u64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            live_response_enabled: true,
            unsigned_scripts_allowed: false,
            idle_timeout_ms: None,
            remediation_groups: Vec::new(),
            version: 1,
        }
    }
}

/// A change of settings: only the fields given change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsPatch {
    pub live_response_enabled: Option<bool>,
    pub unsigned_scripts_allowed: Option<bool>,
    pub idle_timeout_ms: Option<u64>,
    pub remediation_groups: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub settings: TenantSettings,
    pub created_at: Millis,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub tenant: String,
    pub name: String,
    pub roles: Vec<RoleGrant>,
    pub created_at: Millis,
}

/// An API token as stored: never the token itself, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    /// The token's public id, also the start of the token (`lrt_<id>_<secret>`).
    pub id: String,
    pub tenant: String,
    pub user: String,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
    pub created_at: Millis,
    #[serde(default)]
    pub expires_at: Option<Millis>,
    #[serde(default)]
    pub revoked_at: Option<Millis>,
    #[serde(default)]
    pub last_used_at: Option<Millis>,
}

impl ApiToken {
    /// Whether the token admits a request at `now` (the caller's clock: expiry is coarse).
    pub fn is_live(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// Which devices a group holds: listed ones, and those matching a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "match", content = "pattern")]
pub enum GroupRule {
    /// A device id glob (`*` any run of characters, `?` one).
    Device(String),
    /// A hostname glob.
    Hostname(String),
    /// A tag the device's agent carries (exact).
    Tag(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGroup {
    pub tenant: String,
    pub name: String,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub rules: Vec<GroupRule>,
}

/// A token a device enrols with: as stored, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolmentToken {
    /// The token's public id, also its start (`lre_<id>_<secret>`).
    pub id: String,
    pub tenant: String,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
    #[serde(default)]
    pub description: String,
    /// The device group every device enrolled with it joins.
    #[serde(default)]
    pub group: Option<String>,
    pub max_uses: u32,
    #[serde(default)]
    pub uses: u32,
    pub created_by: String,
    pub created_at: Millis,
    pub expires_at: Millis,
    #[serde(default)]
    pub revoked_at: Option<Millis>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolmentState {
    Enrolled,
    Revoked,
}

/// A device's enrolment and the certificates it may connect with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledDevice {
    pub tenant: String,
    pub device: String,
    pub state: EnrolmentState,
    /// Hex SHA-256 of the certificate issued last.
    pub certificate: String,
    /// The certificate it replaced at a renewal, accepted until it expires: the renewal's answer
    /// may have been lost on the way to the device.
    #[serde(default)]
    pub previous_certificate: Option<String>,
    pub certificate_expires_at: Millis,
    /// The enrolment token used.
    pub token: String,
    pub enrolled_at: Millis,
    #[serde(default)]
    pub renewed_at: Option<Millis>,
    #[serde(default)]
    pub revoked_at: Option<Millis>,
    /// An admin allowed this device id to enrol again (once).
    #[serde(default)]
    pub reenrolment_allowed: bool,
}

/// The newest checkpoint of a tenant's audit chain: its last entry's position and hash; and
/// where retention last cut its start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub at: Millis,
    #[serde(default)]
    pub cut: Option<AuditCut>,
}

/// Entries before `seq` were removed by retention (at `at`); the chain starts at entry `seq`,
/// which follows an entry hashed `prev_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCut {
    pub seq: u64,
    pub prev_hash: String,
    pub at: Millis,
}

/// Why a device's certificate does not admit it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    #[error(
        "device {device} of tenant {tenant} is not enrolled; enrol it with `lr-agent enroll` and a token from `lr admin enrolment create`"
    )]
    NotEnrolled { tenant: String, device: String },
    #[error(
        "device {device} of tenant {tenant} was revoked; an admin must allow it to enrol again (`lr admin device allow-reenrolment`), then enrol it"
    )]
    Revoked { tenant: String, device: String },
    #[error(
        "this certificate of device {device} was replaced by a newer enrolment or renewal; use the device's current certificate, or enrol it again"
    )]
    Superseded { device: String },
}

/// A change to the directory. Applied atomically at one log index and stamped time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryOp {
    /// The first start of a cluster: the platform tenant with its first admin and token, and
    /// whatever the configuration held before the directory existed. Refused once done.
    Bootstrap {
        admin: String,
        token: ApiToken,
        import: Vec<Import>,
    },
    CreateTenant {
        id: String,
        display_name: String,
    },
    UpdateTenant {
        id: String,
        display_name: Option<String>,
        settings: SettingsPatch,
    },
    RemoveTenant {
        id: String,
    },
    CreateUser {
        tenant: String,
        name: String,
        roles: Vec<RoleGrant>,
    },
    SetRoles {
        tenant: String,
        name: String,
        roles: Vec<RoleGrant>,
    },
    RemoveUser {
        tenant: String,
        name: String,
    },
    CreateToken(ApiToken),
    RevokeToken {
        tenant: String,
        id: String,
    },
    /// Records a token's last use (coarsely: nodes report it now and then, not per request).
    TokenUsed {
        id: String,
        at: Millis,
    },
    PutGroup(DeviceGroup),
    RemoveGroup {
        tenant: String,
        name: String,
    },
    CreateEnrolmentToken(EnrolmentToken),
    RevokeEnrolmentToken {
        tenant: String,
        id: String,
    },
    /// A device enrols with a token: the token must be live and of `tenant`, and the device id
    /// new to the tenant or allowed to enrol again. Uses the token once.
    Enrol {
        tenant: String,
        device: String,
        token_id: String,
        token_sha256: String,
        certificate: String,
        certificate_expires_at: Millis,
    },
    /// An enrolled device connected with `presented` got a new certificate.
    RenewCertificate {
        tenant: String,
        device: String,
        presented: String,
        certificate: String,
        certificate_expires_at: Millis,
    },
    /// The device is refused from now on, and its session lease ends.
    RevokeDevice {
        tenant: String,
        device: String,
    },
    /// A revoked or enrolled device id may enrol once more.
    AllowReenrolment {
        tenant: String,
        device: String,
    },
    /// A broker saw the tenant's audit chain reach `seq` with `hash`. Only a later position
    /// replaces the checkpoint; an older one changes nothing.
    CheckpointAudit {
        tenant: String,
        seq: u64,
        hash: String,
    },
    /// Retention removes the tenant's entries before `seq`; entry `seq` follows `prev_hash`.
    /// Recorded before the removal, only within the checkpointed chain, and only forwards.
    CutAudit {
        tenant: String,
        seq: u64,
        prev_hash: String,
    },
}

/// A tenant, its users and their tokens, as a configuration held them before the directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    pub tenant: String,
    pub users: Vec<(String, Vec<RoleGrant>)>,
    pub tokens: Vec<ApiToken>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectoryOutcome {
    Bootstrapped,
    Tenant(Tenant),
    User(User),
    Token(ApiToken),
    Group(DeviceGroup),
    EnrolmentToken(EnrolmentToken),
    Device(EnrolledDevice),
    AuditHead(AuditHead),
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DirectoryError {
    #[error("no {what} {id}")]
    NotFound { what: String, id: String },
    #[error("{what} {id} exists already")]
    AlreadyExists { what: String, id: String },
    #[error("the directory was bootstrapped already")]
    AlreadyBootstrapped,
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    /// An enrolment or renewal the directory refuses (a dead token, a revoked device...).
    #[error("{0}")]
    Refused(String),
}
