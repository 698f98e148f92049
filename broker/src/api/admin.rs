//! Administration: tenants (platform admins), and a tenant's settings, users, tokens and device
//! groups (tenant admins). Every change goes through the leader into the replicated directory;
//! reads after a change are linearizable, so an admin always sees what it just did.

use access::{Role, RoleGrant as Grant};
use api_model::{
    AuditKind, CreateTenant, CreateToken, CreateUser, CreatedToken, DeviceGroup, GroupRule, Page,
    Paging, RoleGrant, Tenant, TenantSettings, Token, UpdateTenant, UpdateUser, User,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cluster::directory::{self as dir, Directory, DirectoryOp, DirectoryOutcome, SettingsPatch};
use cluster::lease::TenantLimits;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::body::JsonBody;
use super::{ApiError, ApiState, Caller, page};
use crate::directory::mint;
use crate::time::{now_ms, timestamp, timestamp_if_set};

type Answer<T> = Result<Json<T>, ApiError>;

// ---- views --------------------------------------------------------------------------------------

fn tenant_view(t: &dir::Tenant, limits: TenantLimits) -> Tenant {
    let s = &t.settings;
    Tenant {
        id: t.id.clone(),
        display_name: t.display_name.clone(),
        settings: TenantSettings {
            live_response_enabled: s.live_response_enabled,
            unsigned_scripts_allowed: s.unsigned_scripts_allowed,
            idle_timeout_ms: s.idle_timeout_ms,
            remediation_groups: s.remediation_groups.clone(),
            max_sessions_per_tenant: limits.max_sessions_per_tenant,
            max_sessions_per_user: limits.max_sessions_per_user,
            version: s.version,
        },
        created_at: timestamp(t.created_at),
    }
}

fn user_view(u: &dir::User) -> User {
    User {
        tenant: u.tenant.clone(),
        name: u.name.clone(),
        roles: u
            .roles
            .iter()
            .map(|g| RoleGrant {
                role: g.role.id().into(),
                groups: g.groups.clone(),
            })
            .collect(),
        created_at: timestamp(u.created_at),
    }
}

fn token_view(t: &dir::ApiToken) -> Token {
    Token {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        user: t.user.clone(),
        description: t.description.clone(),
        created_at: timestamp(t.created_at),
        expires_at: t.expires_at.and_then(timestamp_if_set),
        revoked_at: t.revoked_at.and_then(timestamp_if_set),
        last_used_at: t.last_used_at.and_then(timestamp_if_set),
    }
}

fn group_view(g: &dir::DeviceGroup) -> DeviceGroup {
    DeviceGroup {
        name: g.name.clone(),
        devices: g.devices.clone(),
        rules: g
            .rules
            .iter()
            .map(|r| match r {
                dir::GroupRule::Device(p) => GroupRule::Device(p.clone()),
                dir::GroupRule::Hostname(p) => GroupRule::Hostname(p.clone()),
                dir::GroupRule::Tag(t) => GroupRule::Tag(t.clone()),
            })
            .collect(),
    }
}

fn grants(roles: &[RoleGrant]) -> Result<Vec<Grant>, ApiError> {
    roles
        .iter()
        .map(|g| {
            let role = g
                .role
                .parse::<Role>()
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            Ok(Grant {
                role,
                groups: g.groups.clone(),
            })
        })
        .collect()
}

// ---- helpers ------------------------------------------------------------------------------------

impl ApiState {
    pub(super) async fn directory(&self) -> Result<Directory, ApiError> {
        Ok(self.leases.directory().await?)
    }

    /// Applies `op` for `caller`, recorded in the audit log first (and its refusal after).
    pub(super) async fn change(
        &self,
        caller: &Caller,
        op: DirectoryOp,
    ) -> Result<DirectoryOutcome, ApiError> {
        let what = serde_json::to_value(&op).unwrap_or_default();
        self.record_change(caller, AuditKind::AdminChanged, what.clone())
            .await?;
        match self.leases.change_directory(op).await {
            Ok(outcome) => Ok(outcome),
            Err(error) => {
                let error = ApiError::from(error);
                self.record_refusal(caller, what, &error.message).await;
                Err(error)
            }
        }
    }

    async fn tenant_answer(&self, id: &str) -> Result<Tenant, ApiError> {
        let directory = self.directory().await?;
        let tenant = directory
            .tenant(id)
            .ok_or_else(|| ApiError::not_found(format!("no tenant {id}")))?;
        Ok(tenant_view(tenant, self.leases.limits(id).await?))
    }

    /// Applies `update` to tenant `id`: settings in the directory, limits beside the leases.
    async fn update_tenant(
        &self,
        caller: &Caller,
        id: &str,
        update: UpdateTenant,
    ) -> Result<Tenant, ApiError> {
        let directory = self.directory().await?;
        directory
            .tenant(id)
            .ok_or_else(|| ApiError::not_found(format!("no tenant {id}")))?;
        if update.max_sessions_per_tenant.is_some() || update.max_sessions_per_user.is_some() {
            let now = self.leases.limits(id).await?;
            let limits = TenantLimits {
                max_sessions_per_tenant: update
                    .max_sessions_per_tenant
                    .unwrap_or(now.max_sessions_per_tenant),
                max_sessions_per_user: update
                    .max_sessions_per_user
                    .unwrap_or(now.max_sessions_per_user),
            };
            let what = json!({"SetTenantLimits": {"tenant": id, "limits": {
                "max_sessions_per_tenant": limits.max_sessions_per_tenant,
                "max_sessions_per_user": limits.max_sessions_per_user}}});
            self.record_change(caller, AuditKind::AdminChanged, what)
                .await?;
            self.leases.set_tenant_limits(id, limits).await?;
        }
        let patch = SettingsPatch {
            live_response_enabled: update.live_response_enabled,
            unsigned_scripts_allowed: update.unsigned_scripts_allowed,
            idle_timeout_ms: update.idle_timeout_ms,
            remediation_groups: update.remediation_groups,
        };
        let settings_change = patch != SettingsPatch::default() || update.display_name.is_some();
        if settings_change {
            self.change(
                caller,
                DirectoryOp::UpdateTenant {
                    id: id.into(),
                    display_name: update.display_name,
                    settings: patch,
                },
            )
            .await?;
        }
        self.tenant_answer(id).await
    }
}

// ---- tenants (platform admins) ------------------------------------------------------------------

/// Every tenant, by id.
#[utoipa::path(get, path = "/api/v1/admin/tenants", tag = "admin", operation_id = "listTenants",
    params(Paging),
    responses((status = 200, description = "A page of tenants", body = Page<Tenant>)))]
pub async fn list_tenants(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Answer<Page<Tenant>> {
    caller.require_platform()?;
    let directory = state.directory().await?;
    let mut tenants = Vec::new();
    for t in directory.tenants() {
        tenants.push(tenant_view(t, state.leases.limits(&t.id).await?));
    }
    Ok(Json(page::page(tenants, &paging, |t| &t.id)?))
}

/// Creates a tenant with the default settings.
#[utoipa::path(post, path = "/api/v1/admin/tenants", tag = "admin", operation_id = "createTenant",
    request_body = CreateTenant,
    responses((status = 201, description = "Created", body = Tenant)))]
pub async fn create_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    caller.require_platform()?;
    ids::tenant(&body.id)?;
    let display_name = body.display_name.unwrap_or_else(|| body.id.clone());
    state
        .change(
            &caller,
            DirectoryOp::CreateTenant {
                id: body.id.clone(),
                display_name,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(state.tenant_answer(&body.id).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/admin/tenants/{id}", tag = "admin", operation_id = "getTenant",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 200, description = "The tenant", body = Tenant)))]
pub async fn get_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<Tenant> {
    caller.require_platform()?;
    ids::tenant(&id)?;
    Ok(Json(state.tenant_answer(&id).await?))
}

/// Changes a tenant's name, settings or limits; its settings' version grows.
#[utoipa::path(patch, path = "/api/v1/admin/tenants/{id}", tag = "admin", operation_id = "updateTenant",
    params(("id" = String, Path, description = "Tenant id")),
    request_body = UpdateTenant,
    responses((status = 200, description = "The tenant now", body = Tenant)))]
pub async fn update_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Answer<Tenant> {
    caller.require_platform()?;
    ids::tenant(&id)?;
    Ok(Json(state.update_tenant(&caller, &id, body).await?))
}

/// Removes a tenant with its users, tokens and groups.
#[utoipa::path(delete, path = "/api/v1/admin/tenants/{id}", tag = "admin", operation_id = "removeTenant",
    params(("id" = String, Path, description = "Tenant id")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_tenant(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_platform()?;
    ids::tenant(&id)?;
    state
        .change(&caller, DirectoryOp::RemoveTenant { id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- the caller's tenant (tenant admins) --------------------------------------------------------

/// The caller's tenant and its settings.
#[utoipa::path(get, path = "/api/v1/admin/settings", tag = "admin", operation_id = "getSettings",
    responses((status = 200, description = "The tenant", body = Tenant)))]
pub async fn get_settings(State(state): State<ApiState>, caller: Caller) -> Answer<Tenant> {
    caller.require(Role::TenantAdmin)?;
    Ok(Json(state.tenant_answer(&caller.tenant).await?))
}

/// Changes the caller's tenant's settings or limits; the version grows.
#[utoipa::path(patch, path = "/api/v1/admin/settings", tag = "admin", operation_id = "updateSettings",
    request_body = UpdateTenant,
    responses((status = 200, description = "The tenant now", body = Tenant)))]
pub async fn update_settings(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<UpdateTenant>,
) -> Answer<Tenant> {
    caller.require(Role::TenantAdmin)?;
    Ok(Json(
        state.update_tenant(&caller, &caller.tenant, body).await?,
    ))
}

/// The tenant's users, by name.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", operation_id = "listUsers",
    params(Paging),
    responses((status = 200, description = "A page of users", body = Page<User>)))]
pub async fn list_users(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Answer<Page<User>> {
    caller.require(Role::TenantAdmin)?;
    let directory = state.directory().await?;
    let users = directory.users(&caller.tenant).map(user_view).collect();
    Ok(Json(page::page(users, &paging, |u| &u.name)?))
}

#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", operation_id = "createUser",
    request_body = CreateUser,
    responses((status = 201, description = "Created", body = User)))]
pub async fn create_user(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.require(Role::TenantAdmin)?;
    ids::user(&body.name)?;
    let roles = grants(&body.roles)?;
    let op = DirectoryOp::CreateUser {
        tenant: caller.tenant.clone(),
        name: body.name,
        roles,
    };
    match state.change(&caller, op).await? {
        DirectoryOutcome::User(user) => Ok((StatusCode::CREATED, Json(user_view(&user)))),
        _ => Err(ApiError::unexpected()),
    }
}

#[utoipa::path(get, path = "/api/v1/admin/users/{name}", tag = "admin", operation_id = "getUser",
    params(("name" = String, Path, description = "User name")),
    responses((status = 200, description = "The user", body = User)))]
pub async fn get_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Answer<User> {
    caller.require(Role::TenantAdmin)?;
    ids::user(&name)?;
    let directory = state.directory().await?;
    let user = directory
        .user(&caller.tenant, &name)
        .ok_or_else(|| ApiError::not_found(format!("no user {name}")))?;
    Ok(Json(user_view(user)))
}

/// Replaces a user's roles.
#[utoipa::path(patch, path = "/api/v1/admin/users/{name}", tag = "admin", operation_id = "updateUser",
    params(("name" = String, Path, description = "User name")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user now", body = User)))]
pub async fn update_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> Answer<User> {
    caller.require(Role::TenantAdmin)?;
    ids::user(&name)?;
    let op = DirectoryOp::SetRoles {
        tenant: caller.tenant.clone(),
        name,
        roles: grants(&body.roles)?,
    };
    match state.change(&caller, op).await? {
        DirectoryOutcome::User(user) => Ok(Json(user_view(&user))),
        _ => Err(ApiError::unexpected()),
    }
}

/// Removes a user and its tokens.
#[utoipa::path(delete, path = "/api/v1/admin/users/{name}", tag = "admin", operation_id = "removeUser",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_user(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::TenantAdmin)?;
    ids::user(&name)?;
    let op = DirectoryOp::RemoveUser {
        tenant: caller.tenant.clone(),
        name,
    };
    state.change(&caller, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/admin/tokens` filter.
#[derive(Clone, Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenFilter {
    /// Only this user's tokens.
    pub user: Option<String>,
}

/// The tenant's tokens (never their secrets), by id.
#[utoipa::path(get, path = "/api/v1/admin/tokens", tag = "admin", operation_id = "listTokens",
    params(Paging, TokenFilter),
    responses((status = 200, description = "A page of tokens", body = Page<Token>)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
    Query(filter): Query<TokenFilter>,
) -> Answer<Page<Token>> {
    caller.require(Role::TenantAdmin)?;
    let directory = state.directory().await?;
    let tokens = directory
        .tokens(&caller.tenant)
        .filter(|t| filter.user.as_ref().is_none_or(|u| *u == t.user))
        .map(token_view)
        .collect();
    Ok(Json(page::page(tokens, &paging, |t| &t.id)?))
}

/// Makes a token for a user of the tenant; the answer holds it, this once.
#[utoipa::path(post, path = "/api/v1/admin/tokens", tag = "admin", operation_id = "createToken",
    request_body = CreateToken,
    responses((status = 201, description = "Created; `token` is shown only now", body = CreatedToken)))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require(Role::TenantAdmin)?;
    ids::user(&body.user)?;
    if body.description.chars().count() > 200 || body.description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "description: at most 200 characters, without control characters",
        ));
    }
    let expires_at = match body.expires_in_secs {
        Some(0) => return Err(ApiError::invalid("expires_in_secs must be above 0")),
        Some(secs) => Some(now_ms().saturating_add(secs.saturating_mul(1000))),
        None => None,
    };
    let minted = mint(&caller.tenant, &body.user, &body.description, expires_at);
    state
        .change(&caller, DirectoryOp::CreateToken(minted.record.clone()))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: minted.secret,
            record: token_view(&minted.record),
        }),
    ))
}

/// Revokes a token: every node refuses it from then on.
#[utoipa::path(delete, path = "/api/v1/admin/tokens/{id}", tag = "admin", operation_id = "revokeToken",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "The token, revoked", body = Token)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<Token> {
    caller.require(Role::TenantAdmin)?;
    ids::tenant(&id)?;
    let op = DirectoryOp::RevokeToken {
        tenant: caller.tenant.clone(),
        id,
    };
    match state.change(&caller, op).await? {
        DirectoryOutcome::Token(token) => Ok(Json(token_view(&token))),
        _ => Err(ApiError::unexpected()),
    }
}

/// The tenant's device groups, by name.
#[utoipa::path(get, path = "/api/v1/admin/groups", tag = "admin", operation_id = "listGroups",
    params(Paging),
    responses((status = 200, description = "A page of groups", body = Page<DeviceGroup>)))]
pub async fn list_groups(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Answer<Page<DeviceGroup>> {
    caller.require(Role::TenantAdmin)?;
    let directory = state.directory().await?;
    let groups = directory.groups(&caller.tenant).map(group_view).collect();
    Ok(Json(page::page(groups, &paging, |g| &g.name)?))
}

#[utoipa::path(get, path = "/api/v1/admin/groups/{name}", tag = "admin", operation_id = "getGroup",
    params(("name" = String, Path, description = "Group name")),
    responses((status = 200, description = "The group", body = DeviceGroup)))]
pub async fn get_group(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Answer<DeviceGroup> {
    caller.require(Role::TenantAdmin)?;
    ids::tenant(&name)?;
    let directory = state.directory().await?;
    let group = directory
        .group(&caller.tenant, &name)
        .ok_or_else(|| ApiError::not_found(format!("no group {name}")))?;
    Ok(Json(group_view(group)))
}

/// Creates or replaces a group: its listed devices and its rules.
#[utoipa::path(put, path = "/api/v1/admin/groups/{name}", tag = "admin", operation_id = "putGroup",
    params(("name" = String, Path, description = "Group name")),
    request_body = DeviceGroup,
    responses((status = 200, description = "The group now", body = DeviceGroup)))]
pub async fn put_group(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DeviceGroup>,
) -> Answer<DeviceGroup> {
    caller.require(Role::TenantAdmin)?;
    ids::tenant(&name)?;
    let group = dir::DeviceGroup {
        tenant: caller.tenant.clone(),
        name,
        devices: body.devices,
        rules: body
            .rules
            .into_iter()
            .map(|r| match r {
                GroupRule::Device(p) => dir::GroupRule::Device(p),
                GroupRule::Hostname(p) => dir::GroupRule::Hostname(p),
                GroupRule::Tag(t) => dir::GroupRule::Tag(t),
            })
            .collect(),
    };
    match state.change(&caller, DirectoryOp::PutGroup(group)).await? {
        DirectoryOutcome::Group(group) => Ok(Json(group_view(&group))),
        _ => Err(ApiError::unexpected()),
    }
}

#[utoipa::path(delete, path = "/api/v1/admin/groups/{name}", tag = "admin", operation_id = "removeGroup",
    params(("name" = String, Path, description = "Group name")),
    responses((status = 204, description = "Removed")))]
pub async fn remove_group(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Role::TenantAdmin)?;
    ids::tenant(&name)?;
    let op = DirectoryOp::RemoveGroup {
        tenant: caller.tenant.clone(),
        name,
    };
    state.change(&caller, op).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The groups a device belongs to.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviceGroups {
    pub device: String,
    pub groups: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/devices/{id}/groups", tag = "admin", operation_id = "deviceGroups",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device's groups", body = DeviceGroups)))]
pub async fn device_groups(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<DeviceGroups> {
    caller.require(Role::TenantAdmin)?;
    ids::device(&id)?;
    let device = state
        .registry
        .get(&caller.tenant, &id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let directory = state.directory().await?;
    let groups = directory.groups_of(&caller.tenant, &id, &device.hostname, &device.tags);
    Ok(Json(DeviceGroups { device: id, groups }))
}
