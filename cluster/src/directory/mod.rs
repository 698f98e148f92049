//! The directory: tenants and their settings, users and their roles, API tokens (hashes only)
//! and device groups. Replicated with the leases, in the same state machine and snapshots, so a
//! change made through any node holds on every node and survives restarts. Pure: no IO, no clock.

mod types;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use access::{Role, RoleGrant};
use serde::{Deserialize, Serialize};

pub use types::*;

use crate::lease::Millis;

/// Every tenant, user, token and group. Serialized as its maps; the token index is rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "DirectoryData", into = "DirectoryData")]
pub struct Directory {
    bootstrapped: bool,
    tenants: BTreeMap<String, Tenant>,
    /// Keyed by `tenant/name`.
    users: BTreeMap<String, User>,
    tokens: BTreeMap<String, ApiToken>,
    /// Keyed by `tenant/name`.
    groups: BTreeMap<String, DeviceGroup>,
    enrolment_tokens: BTreeMap<String, EnrolmentToken>,
    /// Keyed by `tenant/device`.
    devices: BTreeMap<String, EnrolledDevice>,
    audit_heads: BTreeMap<String, AuditHead>,
    /// Token id by the SHA-256 of the token.
    by_hash: HashMap<String, String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct DirectoryData {
    bootstrapped: bool,
    tenants: BTreeMap<String, Tenant>,
    users: BTreeMap<String, User>,
    tokens: BTreeMap<String, ApiToken>,
    groups: BTreeMap<String, DeviceGroup>,
    enrolment_tokens: BTreeMap<String, EnrolmentToken>,
    devices: BTreeMap<String, EnrolledDevice>,
    audit_heads: BTreeMap<String, AuditHead>,
}

impl From<DirectoryData> for Directory {
    fn from(d: DirectoryData) -> Self {
        let by_hash = d
            .tokens
            .values()
            .map(|t| (t.sha256.clone(), t.id.clone()))
            .collect();
        Self {
            bootstrapped: d.bootstrapped,
            tenants: d.tenants,
            users: d.users,
            tokens: d.tokens,
            groups: d.groups,
            enrolment_tokens: d.enrolment_tokens,
            devices: d.devices,
            audit_heads: d.audit_heads,
            by_hash,
        }
    }
}

impl From<Directory> for DirectoryData {
    fn from(d: Directory) -> Self {
        Self {
            bootstrapped: d.bootstrapped,
            tenants: d.tenants,
            users: d.users,
            tokens: d.tokens,
            groups: d.groups,
            enrolment_tokens: d.enrolment_tokens,
            devices: d.devices,
            audit_heads: d.audit_heads,
        }
    }
}

fn key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

fn invalid(field: &str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn not_found(what: &str, id: &str) -> DirectoryError {
    DirectoryError::NotFound {
        what: what.into(),
        id: id.into(),
    }
}

fn exists(what: &str, id: &str) -> DirectoryError {
    DirectoryError::AlreadyExists {
        what: what.into(),
        id: id.into(),
    }
}

impl Directory {
    /// A tenant's session limits (kept beside the leases) changed: its settings' version grows.
    pub fn limits_changed(&mut self, tenant: &str) {
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.settings.version += 1;
        }
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.bootstrapped
    }

    /// Applies one op at the leader-stamped time `now`. Deterministic; a refused op changes nothing.
    pub fn apply(
        &mut self,
        now: Millis,
        op: &DirectoryOp,
    ) -> Result<DirectoryOutcome, DirectoryError> {
        // Applied to a copy, so an op refused halfway (a bootstrap with a bad import) leaves
        // nothing behind. Directory ops are rare; the copy is cheap next to a Raft round.
        let mut next = self.clone();
        let outcome = next.change(now, op)?;
        *self = next;
        Ok(outcome)
    }

    fn change(
        &mut self,
        now: Millis,
        op: &DirectoryOp,
    ) -> Result<DirectoryOutcome, DirectoryError> {
        match op {
            DirectoryOp::Bootstrap {
                admin,
                token,
                import,
            } => {
                if self.bootstrapped {
                    return Err(DirectoryError::AlreadyBootstrapped);
                }
                self.bootstrapped = true;
                self.create_tenant(now, PLATFORM_TENANT, "Platform operators", true)?;
                let admins = vec![RoleGrant::everywhere(Role::PlatformAdmin)];
                self.create_user(now, PLATFORM_TENANT, admin, admins)?;
                self.create_token(token)?;
                for i in import {
                    if !self.tenants.contains_key(&i.tenant) {
                        self.create_tenant(now, &i.tenant, &i.tenant, false)?;
                    }
                    for (name, roles) in &i.users {
                        if !self.users.contains_key(&key(&i.tenant, name)) {
                            self.create_user(now, &i.tenant, name, roles.clone())?;
                        }
                    }
                    for t in &i.tokens {
                        self.create_token(t)?;
                    }
                }
                Ok(DirectoryOutcome::Bootstrapped)
            }
            DirectoryOp::CreateTenant { id, display_name } => self
                .create_tenant(now, id, display_name, false)
                .map(DirectoryOutcome::Tenant),
            DirectoryOp::UpdateTenant {
                id,
                display_name,
                settings,
            } => {
                let tenant = self
                    .tenants
                    .get_mut(id)
                    .ok_or_else(|| not_found("tenant", id))?;
                if let Some(name) = display_name {
                    check_display_name(name)?;
                    tenant.display_name = name.clone();
                }
                let s = &mut tenant.settings;
                if let Some(v) = settings.live_response_enabled {
                    s.live_response_enabled = v;
                }
                if let Some(v) = settings.unsigned_scripts_allowed {
                    s.unsigned_scripts_allowed = v;
                }
                if let Some(v) = settings.idle_timeout_ms {
                    if !(1_000..=7 * 24 * 3_600_000).contains(&v) {
                        return Err(invalid(
                            "idle_timeout_ms",
                            "must be between 1000 (a second) and 604800000 (a week)",
                        ));
                    }
                    s.idle_timeout_ms = Some(v);
                }
                if let Some(groups) = &settings.remediation_groups {
                    for g in groups {
                        ids::tenant(g).map_err(|e| invalid("remediation_groups", e.to_string()))?;
                    }
                    s.remediation_groups = groups.clone();
                }
                s.version += 1;
                Ok(DirectoryOutcome::Tenant(tenant.clone()))
            }
            DirectoryOp::RemoveTenant { id } => {
                if id == PLATFORM_TENANT {
                    return Err(invalid("tenant", "the platform tenant cannot be removed"));
                }
                self.tenants
                    .remove(id)
                    .ok_or_else(|| not_found("tenant", id))?;
                let prefix = format!("{id}/");
                self.users.retain(|k, _| !k.starts_with(&prefix));
                self.groups.retain(|k, _| !k.starts_with(&prefix));
                self.devices.retain(|k, _| !k.starts_with(&prefix));
                self.tokens.retain(|_, t| t.tenant != *id);
                self.enrolment_tokens.retain(|_, t| t.tenant != *id);
                self.reindex();
                Ok(DirectoryOutcome::Removed)
            }
            DirectoryOp::CreateUser {
                tenant,
                name,
                roles,
            } => self
                .create_user(now, tenant, name, roles.clone())
                .map(DirectoryOutcome::User),
            DirectoryOp::SetRoles {
                tenant,
                name,
                roles,
            } => {
                check_roles(tenant, roles)?;
                let user = self
                    .users
                    .get_mut(&key(tenant, name))
                    .ok_or_else(|| not_found("user", name))?;
                user.roles = roles.clone();
                Ok(DirectoryOutcome::User(user.clone()))
            }
            DirectoryOp::RemoveUser { tenant, name } => {
                self.users
                    .remove(&key(tenant, name))
                    .ok_or_else(|| not_found("user", name))?;
                self.tokens
                    .retain(|_, t| !(t.tenant == *tenant && t.user == *name));
                self.reindex();
                Ok(DirectoryOutcome::Removed)
            }
            DirectoryOp::CreateToken(token) => {
                self.create_token(token).map(DirectoryOutcome::Token)
            }
            DirectoryOp::RevokeToken { tenant, id } => {
                let token = self
                    .tokens
                    .get_mut(id)
                    .filter(|t| t.tenant == *tenant)
                    .ok_or_else(|| not_found("token", id))?;
                token.revoked_at.get_or_insert(now);
                Ok(DirectoryOutcome::Token(token.clone()))
            }
            DirectoryOp::TokenUsed { id, at } => {
                let token = self
                    .tokens
                    .get_mut(id)
                    .ok_or_else(|| not_found("token", id))?;
                token.last_used_at = Some(token.last_used_at.unwrap_or(0).max(*at));
                Ok(DirectoryOutcome::Token(token.clone()))
            }
            DirectoryOp::PutGroup(group) => {
                self.tenant(&group.tenant)
                    .ok_or_else(|| not_found("tenant", &group.tenant))?;
                ids::tenant(&group.name).map_err(|e| invalid("group", e.to_string()))?;
                for d in &group.devices {
                    ids::device(d).map_err(|e| invalid("devices", e.to_string()))?;
                }
                for rule in &group.rules {
                    let (GroupRule::Device(p) | GroupRule::Hostname(p) | GroupRule::Tag(p)) = rule;
                    if p.is_empty() || p.len() > 253 || p.chars().any(char::is_control) {
                        return Err(invalid(
                            "rules",
                            "a pattern is 1 to 253 characters without control characters",
                        ));
                    }
                }
                self.groups
                    .insert(key(&group.tenant, &group.name), group.clone());
                Ok(DirectoryOutcome::Group(group.clone()))
            }
            DirectoryOp::RemoveGroup { tenant, name } => {
                self.groups
                    .remove(&key(tenant, name))
                    .ok_or_else(|| not_found("group", name))?;
                Ok(DirectoryOutcome::Removed)
            }
            DirectoryOp::CreateEnrolmentToken(token) => self
                .create_enrolment_token(token)
                .map(DirectoryOutcome::EnrolmentToken),
            DirectoryOp::RevokeEnrolmentToken { tenant, id } => {
                let token = self
                    .enrolment_tokens
                    .get_mut(id)
                    .filter(|t| t.tenant == *tenant)
                    .ok_or_else(|| not_found("enrolment token", id))?;
                token.revoked_at.get_or_insert(now);
                Ok(DirectoryOutcome::EnrolmentToken(token.clone()))
            }
            DirectoryOp::Enrol {
                tenant,
                device,
                token_id,
                token_sha256,
                certificate,
                certificate_expires_at,
            } => {
                ids::device(device).map_err(|e| invalid("device", e.to_string()))?;
                check_fingerprint(certificate)?;
                let token = self.live_enrolment_token(now, tenant, token_id, token_sha256)?;
                let group = token.group.clone();
                if let Some(known) = self.devices.get(&key(tenant, device))
                    && !known.reenrolment_allowed
                {
                    return Err(DirectoryError::Refused(format!(
                        "device {device} is {} in tenant {tenant} already; an admin must allow it to enrol again (`lr admin device allow-reenrolment {device}`)",
                        match known.state {
                            EnrolmentState::Enrolled => "enrolled",
                            EnrolmentState::Revoked => "revoked",
                        }
                    )));
                }
                if let Some(name) = &group {
                    let group = self.groups.get_mut(&key(tenant, name)).ok_or_else(|| {
                        DirectoryError::Refused(format!(
                            "the enrolment token's device group {name} no longer exists; make a new token"
                        ))
                    })?;
                    if !group.devices.contains(device) {
                        group.devices.push(device.clone());
                    }
                }
                if let Some(token) = self.enrolment_tokens.get_mut(token_id) {
                    token.uses += 1;
                }
                let enrolled = EnrolledDevice {
                    tenant: tenant.clone(),
                    device: device.clone(),
                    state: EnrolmentState::Enrolled,
                    certificate: certificate.clone(),
                    previous_certificate: None,
                    certificate_expires_at: *certificate_expires_at,
                    token: token_id.clone(),
                    enrolled_at: now,
                    renewed_at: None,
                    revoked_at: None,
                    reenrolment_allowed: false,
                };
                self.devices.insert(key(tenant, device), enrolled.clone());
                Ok(DirectoryOutcome::Device(enrolled))
            }
            DirectoryOp::RenewCertificate {
                tenant,
                device,
                presented,
                certificate,
                certificate_expires_at,
            } => {
                check_fingerprint(certificate)?;
                self.admits(tenant, device, presented)
                    .map_err(|e| DirectoryError::Refused(e.to_string()))?;
                let enrolled = self
                    .devices
                    .get_mut(&key(tenant, device))
                    .ok_or_else(|| not_found("device", device))?;
                enrolled.previous_certificate = Some(presented.clone());
                enrolled.certificate = certificate.clone();
                enrolled.certificate_expires_at = *certificate_expires_at;
                enrolled.renewed_at = Some(now);
                Ok(DirectoryOutcome::Device(enrolled.clone()))
            }
            DirectoryOp::RevokeDevice { tenant, device } => {
                let enrolled = self
                    .devices
                    .get_mut(&key(tenant, device))
                    .ok_or_else(|| not_found("device", device))?;
                enrolled.state = EnrolmentState::Revoked;
                enrolled.revoked_at.get_or_insert(now);
                enrolled.reenrolment_allowed = false;
                Ok(DirectoryOutcome::Device(enrolled.clone()))
            }
            DirectoryOp::CheckpointAudit { tenant, seq, hash } => {
                check_fingerprint(hash).map_err(|_| invalid("hash", "must be 64 hex digits"))?;
                let head = self
                    .audit_heads
                    .entry(tenant.clone())
                    .or_insert_with(|| AuditHead {
                        seq: 0,
                        hash: hash.clone(),
                        at: now,
                        cut: None,
                    });
                if *seq > head.seq {
                    head.seq = *seq;
                    head.hash.clone_from(hash);
                    head.at = now;
                }
                Ok(DirectoryOutcome::AuditHead(head.clone()))
            }
            DirectoryOp::CutAudit {
                tenant,
                seq,
                prev_hash,
            } => {
                check_fingerprint(prev_hash)
                    .map_err(|_| invalid("prev_hash", "must be 64 hex digits"))?;
                let head = self
                    .audit_heads
                    .get_mut(tenant)
                    .filter(|h| h.seq >= *seq && *seq > 1)
                    .ok_or_else(|| {
                        invalid(
                            "seq",
                            "a cut starts the chain after its first entry and no later than its checkpointed head",
                        )
                    })?;
                if head.cut.as_ref().is_none_or(|c| c.seq < *seq) {
                    head.cut = Some(AuditCut {
                        seq: *seq,
                        prev_hash: prev_hash.clone(),
                        at: now,
                    });
                }
                Ok(DirectoryOutcome::AuditHead(head.clone()))
            }
            DirectoryOp::AllowReenrolment { tenant, device } => {
                let enrolled = self
                    .devices
                    .get_mut(&key(tenant, device))
                    .ok_or_else(|| not_found("device", device))?;
                enrolled.reenrolment_allowed = true;
                Ok(DirectoryOutcome::Device(enrolled.clone()))
            }
        }
    }

    fn create_enrolment_token(
        &mut self,
        token: &EnrolmentToken,
    ) -> Result<EnrolmentToken, DirectoryError> {
        // The creator may be a platform admin, who is no user of the tenant: recorded, not looked up.
        self.tenant(&token.tenant)
            .ok_or_else(|| not_found("tenant", &token.tenant))?;
        ids::user(&token.created_by).map_err(|e| invalid("created_by", e.to_string()))?;
        ids::tenant(&token.id).map_err(|e| invalid("token id", e.to_string()))?;
        check_fingerprint(&token.sha256).map_err(|_| invalid("sha256", "must be 64 hex digits"))?;
        if token.max_uses == 0 {
            return Err(invalid("max_uses", "must be at least 1"));
        }
        if let Some(name) = &token.group {
            self.group(&token.tenant, name)
                .ok_or_else(|| not_found("group", name))?;
        }
        if self.enrolment_tokens.contains_key(&token.id) {
            return Err(exists("enrolment token", &token.id));
        }
        let mut token = token.clone();
        token.uses = 0;
        token.revoked_at = None;
        self.enrolment_tokens
            .insert(token.id.clone(), token.clone());
        Ok(token)
    }

    /// The token `id` if its hash is `sha256`, it belongs to `tenant` and may enrol one more
    /// device at `now`.
    fn live_enrolment_token(
        &self,
        now: Millis,
        tenant: &str,
        id: &str,
        sha256: &str,
    ) -> Result<&EnrolmentToken, DirectoryError> {
        let unknown = || {
            DirectoryError::Refused(
                "the enrolment token is not known; check it, or make a new one with `lr admin enrolment create`"
                    .into(),
            )
        };
        let token = self
            .enrolment_tokens
            .get(id)
            .filter(|t| t.sha256 == sha256)
            .ok_or_else(unknown)?;
        if token.tenant != tenant {
            return Err(DirectoryError::Refused(format!(
                "the enrolment token belongs to another tenant than {tenant}; use a token of {tenant}"
            )));
        }
        let dead = |why: &str| {
            DirectoryError::Refused(format!(
                "the enrolment token {id} {why}; make a new one with `lr admin enrolment create`"
            ))
        };
        if token.revoked_at.is_some() {
            return Err(dead("was revoked"));
        }
        if now >= token.expires_at {
            return Err(dead("expired"));
        }
        if token.uses >= token.max_uses {
            return Err(dead(&format!(
                "was used up ({} of {} enrolments)",
                token.uses, token.max_uses
            )));
        }
        Ok(token)
    }

    fn create_tenant(
        &mut self,
        now: Millis,
        id: &str,
        display_name: &str,
        platform: bool,
    ) -> Result<Tenant, DirectoryError> {
        ids::tenant(id).map_err(|e| invalid("tenant", e.to_string()))?;
        if id == PLATFORM_TENANT && !platform {
            return Err(invalid(
                "tenant",
                format!("{PLATFORM_TENANT} is reserved for the platform's operators"),
            ));
        }
        check_display_name(display_name)?;
        if self.tenants.contains_key(id) {
            return Err(exists("tenant", id));
        }
        let tenant = Tenant {
            id: id.into(),
            display_name: display_name.into(),
            settings: TenantSettings::default(),
            created_at: now,
        };
        self.tenants.insert(id.into(), tenant.clone());
        Ok(tenant)
    }

    fn create_user(
        &mut self,
        now: Millis,
        tenant: &str,
        name: &str,
        roles: Vec<RoleGrant>,
    ) -> Result<User, DirectoryError> {
        self.tenant(tenant)
            .ok_or_else(|| not_found("tenant", tenant))?;
        ids::user(name).map_err(|e| invalid("user", e.to_string()))?;
        check_roles(tenant, &roles)?;
        if self.users.contains_key(&key(tenant, name)) {
            return Err(exists("user", name));
        }
        let user = User {
            tenant: tenant.into(),
            name: name.into(),
            roles,
            created_at: now,
        };
        self.users.insert(key(tenant, name), user.clone());
        Ok(user)
    }

    fn create_token(&mut self, token: &ApiToken) -> Result<ApiToken, DirectoryError> {
        self.user(&token.tenant, &token.user)
            .ok_or_else(|| not_found("user", &token.user))?;
        ids::tenant(&token.id).map_err(|e| invalid("token id", e.to_string()))?;
        if token.sha256.len() != 64 || !token.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("sha256", "must be 64 hex digits"));
        }
        if self.tokens.contains_key(&token.id) {
            return Err(exists("token", &token.id));
        }
        if self.by_hash.contains_key(&token.sha256) {
            return Err(DirectoryError::Conflict(
                "a token with the same hash exists already; make a new token".into(),
            ));
        }
        self.by_hash.insert(token.sha256.clone(), token.id.clone());
        self.tokens.insert(token.id.clone(), token.clone());
        Ok(token.clone())
    }

    fn reindex(&mut self) {
        self.by_hash = self
            .tokens
            .values()
            .map(|t| (t.sha256.clone(), t.id.clone()))
            .collect();
    }

    pub fn tenant(&self, id: &str) -> Option<&Tenant> {
        self.tenants.get(id)
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants.values()
    }

    pub fn user(&self, tenant: &str, name: &str) -> Option<&User> {
        self.users.get(&key(tenant, name))
    }

    pub fn users(&self, tenant: &str) -> impl Iterator<Item = &User> {
        let prefix = format!("{tenant}/");
        self.users
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, u)| u)
    }

    pub fn token(&self, id: &str) -> Option<&ApiToken> {
        self.tokens.get(id)
    }

    pub fn tokens(&self, tenant: &str) -> impl Iterator<Item = &ApiToken> {
        let tenant = tenant.to_owned();
        self.tokens.values().filter(move |t| t.tenant == tenant)
    }

    /// The token whose SHA-256 is `sha256`, live or not.
    pub fn token_by_hash(&self, sha256: &str) -> Option<&ApiToken> {
        self.by_hash.get(sha256).and_then(|id| self.tokens.get(id))
    }

    pub fn group(&self, tenant: &str, name: &str) -> Option<&DeviceGroup> {
        self.groups.get(&key(tenant, name))
    }

    pub fn groups(&self, tenant: &str) -> impl Iterator<Item = &DeviceGroup> {
        let prefix = format!("{tenant}/");
        self.groups
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, g)| g)
    }

    pub fn enrolment_token(&self, id: &str) -> Option<&EnrolmentToken> {
        self.enrolment_tokens.get(id)
    }

    pub fn enrolment_tokens(&self, tenant: &str) -> impl Iterator<Item = &EnrolmentToken> {
        let tenant = tenant.to_owned();
        self.enrolment_tokens
            .values()
            .filter(move |t| t.tenant == tenant)
    }

    /// Whether a device may enrol with this token now (the same checks an `Enrol` makes of it).
    pub fn check_enrolment_token(
        &self,
        now: Millis,
        tenant: &str,
        id: &str,
        sha256: &str,
    ) -> Result<(), DirectoryError> {
        self.live_enrolment_token(now, tenant, id, sha256)
            .map(|_| ())
    }

    /// The newest checkpoint of `tenant`'s audit chain.
    pub fn audit_head(&self, tenant: &str) -> Option<&AuditHead> {
        self.audit_heads.get(tenant).filter(|h| h.seq > 0)
    }

    pub fn device(&self, tenant: &str, device: &str) -> Option<&EnrolledDevice> {
        self.devices.get(&key(tenant, device))
    }

    pub fn devices(&self, tenant: &str) -> impl Iterator<Item = &EnrolledDevice> {
        let prefix = format!("{tenant}/");
        self.devices
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, d)| d)
    }

    /// Whether the certificate with fingerprint `certificate` admits `device` of `tenant`
    /// ([`admits`]).
    pub fn admits(&self, tenant: &str, device: &str, certificate: &str) -> Result<(), NotAdmitted> {
        admits(self.device(tenant, device), tenant, device, certificate)
    }

    /// The groups of `tenant` a device belongs to, by its id, hostname and tags.
    pub fn groups_of(
        &self,
        tenant: &str,
        device: &str,
        hostname: &str,
        tags: &[String],
    ) -> Vec<String> {
        self.groups(tenant)
            .filter(|g| {
                g.devices.iter().any(|d| d == device)
                    || g.rules.iter().any(|r| match r {
                        GroupRule::Device(p) => glob(p, device),
                        GroupRule::Hostname(p) => glob(p, hostname),
                        GroupRule::Tag(t) => tags.contains(t),
                    })
            })
            .map(|g| g.name.clone())
            .collect()
    }
}

/// Whether the certificate with fingerprint `certificate` admits `device` of `tenant`, whose
/// enrolment is `enrolled`: the device is enrolled, and the certificate is its current one or the
/// one its last renewal replaced.
pub fn admits(
    enrolled: Option<&EnrolledDevice>,
    tenant: &str,
    device: &str,
    certificate: &str,
) -> Result<(), NotAdmitted> {
    let enrolled = enrolled.ok_or_else(|| NotAdmitted::NotEnrolled {
        tenant: tenant.into(),
        device: device.into(),
    })?;
    if enrolled.state == EnrolmentState::Revoked {
        return Err(NotAdmitted::Revoked {
            tenant: tenant.into(),
            device: device.into(),
        });
    }
    if enrolled.certificate != certificate
        && enrolled.previous_certificate.as_deref() != Some(certificate)
    {
        return Err(NotAdmitted::Superseded {
            device: device.into(),
        });
    }
    Ok(())
}

fn check_fingerprint(value: &str) -> Result<(), DirectoryError> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("certificate", "a fingerprint is 64 hex digits"));
    }
    Ok(())
}

fn check_display_name(name: &str) -> Result<(), DirectoryError> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(invalid(
            "display_name",
            "1 to 200 characters, not only spaces, without control characters",
        ));
    }
    Ok(())
}

/// Platform admins live in the platform tenant and nowhere else, and hold nothing else.
fn check_roles(tenant: &str, roles: &[RoleGrant]) -> Result<(), DirectoryError> {
    for grant in roles {
        let platform = grant.role == Role::PlatformAdmin;
        if platform != (tenant == PLATFORM_TENANT) {
            return Err(invalid(
                "roles",
                format!(
                    "platform-admin is held only in the {PLATFORM_TENANT} tenant, and only it is held there"
                ),
            ));
        }
        for g in &grant.groups {
            ids::tenant(g).map_err(|e| invalid("roles.groups", e.to_string()))?;
        }
    }
    Ok(())
}

/// A glob: `*` matches any run of characters, `?` one; case-insensitive (hostnames are).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
