//! Enrolment administration (tenant admins): enrolment tokens, and the enrolled devices with
//! their certificates, revocation and re-enrolment. Writes go through the leader; reads after a
//! write are linearizable.

use access::Role;
use agent_proto::bus::Empty;
use agent_proto::bus::envelope::Body;
use api_model::{
    CreateEnrolmentToken, CreatedEnrolmentToken, EnrolledDevice, EnrolmentState, EnrolmentToken,
    Page, Paging,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use cluster::directory::{self as dir, DirectoryOp, DirectoryOutcome, ENROLMENT_TOKEN_PREFIX};

use super::body::JsonBody;
use super::{ApiError, ApiState, Caller, page};
use crate::api::sha256_hex;
use crate::bus;
use crate::directory::fresh_secret;
use crate::registry::DeviceRecord;
use crate::time::{now_ms, timestamp};

type Answer<T> = Result<Json<T>, ApiError>;

/// An enrolment token lives a day unless told otherwise, and a month at most: it is a
/// credential that makes devices.
const DEFAULT_TOKEN_SECS: u64 = 24 * 3_600;
const MAX_TOKEN_SECS: u64 = 30 * 24 * 3_600;
const MAX_TOKEN_USES: u32 = 100_000;

fn token_view(t: &dir::EnrolmentToken) -> EnrolmentToken {
    EnrolmentToken {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        description: t.description.clone(),
        group: t.group.clone(),
        max_uses: t.max_uses,
        uses: t.uses,
        created_by: t.created_by.clone(),
        created_at: timestamp(t.created_at),
        expires_at: timestamp(t.expires_at),
        revoked_at: t.revoked_at.map(timestamp),
    }
}

fn device_view(d: &dir::EnrolledDevice, seen: Option<&DeviceRecord>) -> EnrolledDevice {
    EnrolledDevice {
        device: d.device.clone(),
        tenant: d.tenant.clone(),
        state: match d.state {
            dir::EnrolmentState::Enrolled => EnrolmentState::Enrolled,
            dir::EnrolmentState::Revoked => EnrolmentState::Revoked,
        },
        certificate: d.certificate.clone(),
        certificate_expires_at: timestamp(d.certificate_expires_at),
        enrolled_at: timestamp(d.enrolled_at),
        renewed_at: d.renewed_at.map(timestamp),
        revoked_at: d.revoked_at.map(timestamp),
        reenrolment_allowed: d.reenrolment_allowed,
        online: seen.is_some_and(|r| r.is_online(now_ms())),
        last_seen: seen.map(|r| timestamp(r.last_seen_ms)),
        hostname: seen.map(|r| r.hostname.clone()),
    }
}

/// Makes an enrolment token; the answer holds it, this once, and the fingerprint devices pin.
#[utoipa::path(post, path = "/api/v1/admin/enrolment-tokens", tag = "admin", operation_id = "createEnrolmentToken",
    request_body = CreateEnrolmentToken,
    responses((status = 201, description = "Created; `token` is shown only now", body = CreatedEnrolmentToken)))]
pub async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateEnrolmentToken>,
) -> Result<(StatusCode, Json<CreatedEnrolmentToken>), ApiError> {
    caller.require(Role::TenantAdmin)?;
    if body.description.chars().count() > 200 || body.description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "description: at most 200 characters, without control characters",
        ));
    }
    let secs = body.expires_in_secs.unwrap_or(DEFAULT_TOKEN_SECS);
    if !(1..=MAX_TOKEN_SECS).contains(&secs) {
        return Err(ApiError::invalid(format!(
            "expires_in_secs must be between 1 and {MAX_TOKEN_SECS} (30 days)"
        )));
    }
    let max_uses = body.max_uses.unwrap_or(1);
    if !(1..=MAX_TOKEN_USES).contains(&max_uses) {
        return Err(ApiError::invalid(format!(
            "max_uses must be between 1 and {MAX_TOKEN_USES}"
        )));
    }
    if let Some(group) = &body.group {
        ids::tenant(group)?;
    }
    let (id, secret) = fresh_secret(ENROLMENT_TOKEN_PREFIX);
    let now = now_ms();
    let record = dir::EnrolmentToken {
        id,
        tenant: caller.tenant.clone(),
        sha256: sha256_hex(&secret),
        description: body.description,
        group: body.group,
        max_uses,
        uses: 0,
        created_by: caller.user.clone(),
        created_at: now,
        expires_at: now.saturating_add(secs.saturating_mul(1000)),
        revoked_at: None,
    };
    let created = match state
        .change(&caller, DirectoryOp::CreateEnrolmentToken(record))
        .await?
    {
        DirectoryOutcome::EnrolmentToken(token) => token,
        _ => return Err(ApiError::unexpected()),
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrolmentToken {
            token: secret,
            ca_fingerprint: state.issuer.ca_fingerprint(),
            issuing_ca_fingerprint: state.issuer.issuing_ca_fingerprint(),
            record: token_view(&created),
        }),
    ))
}

/// The tenant's enrolment tokens (never their secrets), by id.
#[utoipa::path(get, path = "/api/v1/admin/enrolment-tokens", tag = "admin", operation_id = "listEnrolmentTokens",
    params(Paging),
    responses((status = 200, description = "A page of enrolment tokens", body = Page<EnrolmentToken>)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Answer<Page<EnrolmentToken>> {
    caller.require(Role::TenantAdmin)?;
    let directory = state.directory().await?;
    let tokens = directory
        .enrolment_tokens(&caller.tenant)
        .map(token_view)
        .collect();
    Ok(Json(page::page(tokens, &paging, |t| &t.id)?))
}

/// Revokes an enrolment token: no device enrols with it from then on (devices enrolled with it
/// stay enrolled).
#[utoipa::path(delete, path = "/api/v1/admin/enrolment-tokens/{id}", tag = "admin", operation_id = "revokeEnrolmentToken",
    params(("id" = String, Path, description = "Enrolment token id")),
    responses((status = 200, description = "The token, revoked", body = EnrolmentToken)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<EnrolmentToken> {
    caller.require(Role::TenantAdmin)?;
    ids::tenant(&id)?;
    let op = DirectoryOp::RevokeEnrolmentToken {
        tenant: caller.tenant.clone(),
        id,
    };
    match state.change(&caller, op).await? {
        DirectoryOutcome::EnrolmentToken(token) => Ok(Json(token_view(&token))),
        _ => Err(ApiError::unexpected()),
    }
}

/// The tenant's enrolled and revoked devices, by id, with their certificates and last contact.
#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", operation_id = "listEnrolledDevices",
    params(Paging),
    responses((status = 200, description = "A page of enrolled devices", body = Page<EnrolledDevice>)))]
pub async fn list_devices(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
) -> Answer<Page<EnrolledDevice>> {
    caller.require(Role::TenantAdmin)?;
    let directory = state.directory().await?;
    let seen = state
        .registry
        .list(&caller.tenant)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let devices = directory
        .devices(&caller.tenant)
        .map(|d| device_view(d, seen.iter().find(|r| r.device == d.device)))
        .collect();
    Ok(Json(page::page(devices, &paging, |d| &d.device)?))
}

#[utoipa::path(get, path = "/api/v1/admin/devices/{id}", tag = "admin", operation_id = "getEnrolledDevice",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device's enrolment", body = EnrolledDevice)))]
pub async fn get_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<EnrolledDevice> {
    caller.require(Role::TenantAdmin)?;
    ids::device(&id)?;
    let directory = state.directory().await?;
    let enrolled = directory
        .device(&caller.tenant, &id)
        .ok_or_else(|| ApiError::not_found(format!("no enrolled device {id}")))?;
    device_answer(&state, &caller.tenant, enrolled).await
}

/// Revokes a device: every node refuses its certificate from now on, its stream is dropped
/// within a heartbeat interval, and its session ends.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/revoke", tag = "admin", operation_id = "revokeDevice",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device, revoked", body = EnrolledDevice)))]
pub async fn revoke_device(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<EnrolledDevice> {
    caller.require(Role::TenantAdmin)?;
    ids::device(&id)?;
    let op = DirectoryOp::RevokeDevice {
        tenant: caller.tenant.clone(),
        device: id.clone(),
    };
    let answer = change_device(&state, &caller, op).await?;
    // The node holding the device's stream checks it now; missed, it does at its next
    // heartbeat interval.
    let recheck = Body::RecheckEnrolment(Empty {});
    if let Err(error) = state
        .bus
        .publish(
            bus::device_online(&caller.tenant, &id),
            &caller.tenant,
            recheck,
        )
        .await
    {
        tracing::warn!(device = %id, %error, "cannot ask the device's node to check it now");
    }
    Ok(answer)
}

/// Lets a revoked or enrolled device id enrol once more (with a live enrolment token).
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/allow-reenrolment", tag = "admin", operation_id = "allowReenrolment",
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, description = "The device, allowed to enrol again", body = EnrolledDevice)))]
pub async fn allow_reenrolment(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Answer<EnrolledDevice> {
    caller.require(Role::TenantAdmin)?;
    ids::device(&id)?;
    let op = DirectoryOp::AllowReenrolment {
        tenant: caller.tenant.clone(),
        device: id,
    };
    change_device(&state, &caller, op).await
}

async fn change_device(
    state: &ApiState,
    caller: &Caller,
    op: DirectoryOp,
) -> Answer<EnrolledDevice> {
    match state.change(caller, op).await? {
        DirectoryOutcome::Device(device) => device_answer(state, &caller.tenant, &device).await,
        _ => Err(ApiError::unexpected()),
    }
}

async fn device_answer(
    state: &ApiState,
    tenant: &str,
    enrolled: &dir::EnrolledDevice,
) -> Answer<EnrolledDevice> {
    let seen = state
        .registry
        .get(tenant, &enrolled.device)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(device_view(enrolled, seen.as_ref())))
}
