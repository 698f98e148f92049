//! Who is asking, which node answers, and the tenant's devices.

use api_model::{Device, DeviceFilter, Health, Me, Page, Paging};
use axum::Json;
use axum::extract::{Query, State};

use access::Role;

use super::{ApiError, ApiState, Caller, page};
use crate::directory::Readiness;
use crate::registry::DeviceRecord;
use crate::time::{now_ms, timestamp};

/// Whether this node serves requests: it sees a Raft leader and the directory is ready.
#[utoipa::path(get, path = "/healthz", tag = "cluster", operation_id = "health",
    security(()),
    responses((status = 200, description = "This node and the leader it sees", body = Health)))]
pub async fn health(State(state): State<ApiState>) -> Json<Health> {
    let leader = state.leases.leader();
    Json(Health {
        node: state.node_id,
        leader,
        ok: leader.is_some() && *state.directory.borrow() == Readiness::Ready,
    })
}

/// Who the bearer token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "analysts", operation_id = "whoAmI",
    responses((status = 200, description = "The caller", body = Me)))]
pub async fn me(caller: Caller) -> Json<Me> {
    let commands = commands::TABLE
        .iter()
        .filter(|spec| access::allows_somewhere(&caller.roles, spec.role))
        .map(|spec| spec.name.to_string())
        .collect();
    let roles = caller
        .roles
        .iter()
        .map(|g| {
            if g.groups.is_empty() {
                g.role.to_string()
            } else {
                format!("{} (groups {})", g.role, g.groups.join(", "))
            }
        })
        .collect();
    Json(Me {
        tenant: caller.tenant,
        user: caller.user,
        roles,
        commands,
    })
}

/// The tenant's devices (every device whose agent has connected at least once), by device id.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", operation_id = "listDevices",
    params(Paging, DeviceFilter),
    responses((status = 200, description = "A page of devices", body = Page<Device>)))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(paging): Query<Paging>,
    Query(filter): Query<DeviceFilter>,
) -> Result<Json<Page<Device>>, ApiError> {
    caller.require(Role::Viewer)?;
    let now = now_ms();
    let mut devices: Vec<Device> = state
        .registry
        .list(&caller.tenant)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .iter()
        .map(|d| view(d, now))
        .filter(|d| filter.online.is_none_or(|online| online == d.online))
        .collect();
    devices.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(Json(page::page(devices, &paging, |d| &d.device)?))
}

fn view(d: &DeviceRecord, now: u64) -> Device {
    Device {
        device: d.device.clone(),
        tenant: d.tenant.clone(),
        hostname: d.hostname.clone(),
        os: d.os.clone(),
        agent_version: d.agent_version.clone(),
        online: d.is_online(now),
        node: d.node,
        last_seen: timestamp(d.last_seen_ms),
        tags: d.tags.clone(),
    }
}
