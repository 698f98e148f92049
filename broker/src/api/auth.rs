//! Who calls, and what they may do. A bearer token is looked up by its SHA-256 in this node's
//! replica of the directory (a revocation reaches every node as fast as Raft replicates it); the
//! caller acts in the token's tenant, and a platform admin in the tenant named by the `LR-Tenant`
//! header. Handlers ask [`Caller::require`] for the role they need: 403 `forbidden` names it.

use std::collections::HashMap;
use std::sync::Mutex;

use access::{Role, RoleGrant};
use api_model::ErrorCode;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use cluster::directory::{DirectoryOp, PLATFORM_TENANT};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::ApiState;
use super::error::ApiError;
use crate::time::{now_ms, rfc3339};

/// The header a platform admin names the tenant it acts in with, on every tenant route.
pub const TENANT_HEADER: &str = "lr-tenant";

/// A token's last use is written to the directory at most this often per node.
const LAST_USE_EVERY_MS: u64 = 10 * 60 * 1000;

/// The analyst behind a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The tenant the request acts in.
    pub tenant: String,
    pub user: String,
    pub roles: Vec<RoleGrant>,
    /// The id of the token the request came with.
    pub token: String,
    /// A platform admin who named no tenant: only platform routes are open to it.
    pub unscoped_platform: bool,
}

impl Caller {
    pub fn is_platform_admin(&self) -> bool {
        access::allows_somewhere(&self.roles, Role::PlatformAdmin)
    }

    /// Allows a request that needs `role` anywhere in the caller's tenant. Reading the tenant's
    /// lists (`viewer`) is open to any role, scoped to device groups or not: groups bound what a
    /// caller may do on devices, not which devices it may see.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        self.scoped()?;
        let anywhere = access::allows(&self.roles, role, None);
        if anywhere || (role == Role::Viewer && access::allows_somewhere(&self.roles, role)) {
            return Ok(());
        }
        Err(self.forbidden(role, String::new()))
    }

    /// Allows a request that needs `role` on at least one device: for what the caller does in its
    /// own session or transfer, which it could only start where its role reaches.
    pub fn require_somewhere(&self, role: Role) -> Result<(), ApiError> {
        self.scoped()?;
        if access::allows_somewhere(&self.roles, role) {
            return Ok(());
        }
        Err(self.forbidden(role, String::new()))
    }

    /// Allows a request that needs `role` on a device in `groups`.
    pub fn require_on(&self, role: Role, device: &str, groups: &[String]) -> Result<(), ApiError> {
        self.scoped()?;
        if access::allows(&self.roles, role, Some(groups)) {
            return Ok(());
        }
        Err(self.forbidden(role, format!(" on device {device}")))
    }

    /// Allows platform administration (tenants), with or without a named tenant.
    pub fn require_platform(&self) -> Result<(), ApiError> {
        if self.is_platform_admin() {
            return Ok(());
        }
        Err(self.forbidden(Role::PlatformAdmin, String::new()))
    }

    fn scoped(&self) -> Result<(), ApiError> {
        if self.unscoped_platform {
            return Err(ApiError {
                extra: Some(
                    json!({"rule": format!("platform admins name the tenant they act in with the {TENANT_HEADER} header (lr --tenant)")}),
                ),
                ..ApiError::invalid(format!(
                    "this route acts inside a tenant: name it with the {TENANT_HEADER} header (lr --tenant <tenant>)"
                ))
            });
        }
        Ok(())
    }

    fn forbidden(&self, role: Role, place: String) -> ApiError {
        let held: Vec<String> = self.roles.iter().map(describe).collect();
        let held = if held.is_empty() {
            "none".to_string()
        } else {
            held.join(", ")
        };
        ApiError {
            extra: Some(json!({"role": role.id()})),
            ..ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this needs the role {role}{place} in tenant {}; {} holds: {held}; ask a tenant admin for it",
                    self.tenant, self.user
                ),
            )
        }
    }
}

fn describe(grant: &RoleGrant) -> String {
    if grant.groups.is_empty() {
        grant.role.id().to_string()
    } else {
        format!("{} (groups {})", grant.role, grant.groups.join(", "))
    }
}

pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// When this node last wrote each token's last use.
#[derive(Debug, Default)]
pub struct LastUse(Mutex<HashMap<String, u64>>);

impl LastUse {
    /// True when `token`'s use at `now` should be written.
    fn due(&self, token: &str, now: u64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(token) {
            Some(at) if now.saturating_sub(*at) < LAST_USE_EVERY_MS => false,
            _ => {
                seen.insert(token.to_owned(), now);
                true
            }
        }
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("missing bearer token; set LR_TOKEN to your API token"))?;
        let named = match parts.headers.get(TENANT_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|t| ids::tenant(t).is_ok())
                    .ok_or_else(|| {
                        ApiError::invalid(format!("the {TENANT_HEADER} header is not a tenant id"))
                    })?
                    .to_string(),
            ),
        };
        let hash = sha256_hex(token);
        let now = now_ms();
        let found = state
            .leases
            .with_local_directory(|d| {
                let record = d.token_by_hash(&hash)?.clone();
                let user = d.user(&record.tenant, &record.user)?.clone();
                let named_exists = named.as_deref().map(|t| d.tenant(t).is_some());
                Some((record, user, named_exists))
            })
            .await;
        let (record, user, named_exists) = found.ok_or_else(|| {
            unauthorized("invalid bearer token: this cluster knows no such token; check LR_TOKEN")
        })?;
        if let Some(at) = record.revoked_at {
            return Err(unauthorized(format!(
                "token {} was revoked at {}; ask a tenant admin for a new one",
                record.id,
                rfc3339(at)
            )));
        }
        if !record.is_live(now) {
            return Err(unauthorized(format!(
                "token {} expired at {}; ask a tenant admin for a new one",
                record.id,
                rfc3339(record.expires_at.unwrap_or_default())
            )));
        }
        if state.last_use.due(&record.id, now) {
            let leases = state.leases.clone();
            let op = DirectoryOp::TokenUsed {
                id: record.id.clone(),
                at: now,
            };
            tokio::spawn(async move {
                if let Err(error) = leases.change_directory(op).await {
                    tracing::debug!(%error, "cannot record a token's last use");
                }
            });
        }
        let platform = record.tenant == PLATFORM_TENANT;
        let tenant = match (&named, platform) {
            (Some(t), true) if named_exists == Some(true) => t.clone(),
            (Some(t), _) if *t != record.tenant => {
                return Err(ApiError::not_found(format!("no tenant {t}")));
            }
            _ => record.tenant.clone(),
        };
        Ok(Caller {
            unscoped_platform: platform && tenant == PLATFORM_TENANT,
            tenant,
            user: record.user,
            roles: user.roles,
            token: record.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: Vec<RoleGrant>) -> Caller {
        Caller {
            tenant: "demo".into(),
            user: "a".into(),
            roles,
            token: "t".into(),
            unscoped_platform: false,
        }
    }

    #[test]
    fn a_refusal_names_the_role_needed_and_the_roles_held() {
        let c = caller(vec![RoleGrant::everywhere(Role::ResponderBasic)]);
        assert!(c.require(Role::Viewer).is_ok());
        let e = c.require(Role::ResponderAdvanced).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert!(
            e.message.contains("responder-advanced")
                && e.message.contains("holds: responder-basic"),
            "{}",
            e.message
        );
        assert!(c.require_platform().is_err());
    }

    #[test]
    fn a_platform_admin_must_name_a_tenant_for_tenant_routes() {
        let mut c = caller(vec![RoleGrant::everywhere(Role::PlatformAdmin)]);
        c.unscoped_platform = true;
        assert_eq!(
            c.require(Role::Viewer).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert!(c.require_platform().is_ok());
        c.unscoped_platform = false;
        assert!(c.require(Role::TenantAdmin).is_ok());
        assert!(c.require(Role::ResponderBasic).is_err());
    }

    #[test]
    fn last_use_is_written_now_and_then() {
        let seen = LastUse::default();
        assert!(seen.due("t", 1_000));
        assert!(!seen.due("t", 2_000));
        assert!(seen.due("t", 1_000 + LAST_USE_EVERY_MS));
        assert!(seen.due("u", 2_000));
    }
}
