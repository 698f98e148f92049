//! The administration routes of the in-test broker (`/api/v1/admin/...`): tenants, users, tokens,
//! device groups, enrolment tokens and enrolled devices in memory, read and answered as the
//! `api-model` types, paged like every list. A tenant route acts in the tenant the `LR-Tenant`
//! header names, else in `demo` (the tenant of the test token). The viewer's token
//! ([`VIEWER_TOKEN`]) is refused every admin route with 403 `forbidden` naming the role, as the
//! broker refuses it. A new token or enrolment token is answered once and kept only as its
//! record.
//!
//! Tenant `demo` has three enrolled devices: `web-07` (online), `db-01` (offline) and `old-03`
//! (revoked). Their list is answered [`ENROLLED_PAGE`] devices a page, so a console that does
//! not follow `next` misses some.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use api_model::{
    CreateEnrolmentToken, CreateTenant, CreateToken, CreateUser, CreatedEnrolmentToken,
    CreatedToken, DeviceGroup, EnrolledDevice, EnrolmentState, EnrolmentToken, GroupRule, Paging,
    RoleGrant, Tenant, TenantSettings, Timestamp, Token, UpdateTenant, UpdateUser, User,
};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fake_broker::{error, page};

/// A viewer's token: it reads the tenant's lists, administers nothing.
pub const VIEWER_TOKEN: &str = "viewer-token";

/// The SHA-256 of the cluster CA that every new enrolment token is answered with.
pub const CA_FINGERPRINT: &str = "5e0f3c0d8a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";

/// Most enrolled devices on one page of their list.
pub const ENROLLED_PAGE: usize = 2;

struct Admin {
    tenants: BTreeMap<String, Tenant>,
    /// By tenant and name.
    users: BTreeMap<(String, String), User>,
    tokens: Vec<Token>,
    groups: BTreeMap<(String, String), DeviceGroup>,
    minted: u64,
    enrolment_tokens: Vec<EnrolmentToken>,
    /// By tenant and device id.
    devices: BTreeMap<(String, String), EnrolledDevice>,
}

type St = Arc<Mutex<Admin>>;

fn at() -> Timestamp {
    "2025-06-01T11:00:00Z".parse().unwrap()
}

fn enrolled(device: &str, online: bool, state: EnrolmentState) -> EnrolledDevice {
    let revoked = state == EnrolmentState::Revoked;
    EnrolledDevice {
        device: device.to_owned(),
        tenant: "demo".to_owned(),
        state,
        certificate: "c0ffee".repeat(10) + "c0ff",
        certificate_expires_at: "2025-06-08T11:00:00Z".parse().unwrap(),
        enrolled_at: at(),
        renewed_at: None,
        revoked_at: revoked.then(at),
        reenrolment_allowed: false,
        online,
        last_seen: (!revoked).then(|| "2025-06-01T10:42:00Z".parse().unwrap()),
        hostname: (!revoked).then(|| format!("{device}.example")),
    }
}

fn new_tenant(id: &str, name: Option<String>) -> Tenant {
    Tenant {
        id: id.to_owned(),
        display_name: name.unwrap_or_else(|| id.to_owned()),
        settings: TenantSettings {
            live_response_enabled: true,
            unsigned_scripts_allowed: false,
            idle_timeout_ms: None,
            remediation_groups: Vec::new(),
            max_sessions_per_tenant: 25,
            max_sessions_per_user: 1,
            version: 1,
        },
        created_at: at(),
    }
}

impl Default for Admin {
    fn default() -> Self {
        let analyst = User {
            tenant: "demo".into(),
            name: "analyst-b".into(),
            roles: vec![RoleGrant {
                role: "responder-basic".into(),
                groups: Vec::new(),
            }],
            created_at: at(),
        };
        Admin {
            tenants: BTreeMap::from([("demo".into(), new_tenant("demo", None))]),
            users: BTreeMap::from([(("demo".into(), "analyst-b".into()), analyst)]),
            tokens: Vec::new(),
            groups: BTreeMap::new(),
            minted: 0,
            enrolment_tokens: Vec::new(),
            devices: [
                enrolled("web-07", true, EnrolmentState::Enrolled),
                enrolled("db-01", false, EnrolmentState::Enrolled),
                enrolled("old-03", false, EnrolmentState::Revoked),
            ]
            .into_iter()
            .map(|d| ((d.tenant.clone(), d.device.clone()), d))
            .collect(),
        }
    }
}

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/tenants/{id}",
            get(get_tenant).patch(update_tenant).delete(remove_tenant),
        )
        .route("/settings", get(get_settings).patch(update_settings))
        .route("/users", get(list_users).post(create_user))
        .route(
            "/users/{name}",
            get(get_user).patch(update_user).delete(remove_user),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/groups", get(list_groups))
        .route(
            "/groups/{name}",
            get(get_group).put(put_group).delete(remove_group),
        )
        .route(
            "/enrolment-tokens",
            get(list_enrolment_tokens).post(create_enrolment_token),
        )
        .route(
            "/enrolment-tokens/{id}",
            axum::routing::delete(revoke_enrolment_token),
        )
        .route("/devices", get(list_devices))
        .route("/devices/{id}", get(get_device))
        .route("/devices/{id}/revoke", post(revoke_device))
        .route("/devices/{id}/allow-reenrolment", post(allow_reenrolment))
        .route("/devices/{id}/groups", get(device_groups))
        .route_layer(middleware::from_fn(viewers_refused))
        .with_state(St::default())
}

/// A viewer holds no admin role: the broker's 403, with the role it lacks.
async fn viewers_refused(req: Request, next: Next) -> Response {
    let viewer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {VIEWER_TOKEN}"));
    if viewer {
        let role = if req.uri().path().contains("/tenants") {
            "platform-admin"
        } else {
            "tenant-admin"
        };
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "this needs the role {role} in tenant demo; analyst-v holds: viewer; ask a tenant admin for it"
            ),
            json!({ "role": role }),
        );
    }
    next.run(req).await
}

/// The tenant a request acts in.
fn tenant_of(headers: &HeaderMap) -> String {
    headers
        .get("lr-tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("demo")
        .to_owned()
}

fn not_found(message: String) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", &message, json!({}))
}

fn exists(message: String) -> Response {
    error(StatusCode::CONFLICT, "already_exists", &message, json!({}))
}

fn answer(value: impl serde::Serialize) -> Response {
    Json(value).into_response()
}

fn created(value: impl serde::Serialize) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn values<T: serde::Serialize>(items: impl IntoIterator<Item = T>) -> Vec<Value> {
    items
        .into_iter()
        .map(|i| serde_json::to_value(i).unwrap())
        .collect()
}

// ---- tenants ------------------------------------------------------------------------------------

async fn list_tenants(State(st): State<St>, Query(paging): Query<Paging>) -> Response {
    let admin = st.lock().unwrap();
    page(
        values(admin.tenants.values()),
        "id",
        &paging,
        api_model::MAX_LIMIT,
    )
}

async fn create_tenant(State(st): State<St>, Json(body): Json<CreateTenant>) -> Response {
    let mut admin = st.lock().unwrap();
    if admin.tenants.contains_key(&body.id) {
        return exists(format!("tenant {} exists already", body.id));
    }
    let tenant = new_tenant(&body.id, body.display_name);
    admin.tenants.insert(body.id, tenant.clone());
    created(tenant)
}

async fn get_tenant(State(st): State<St>, Path(id): Path<String>) -> Response {
    match st.lock().unwrap().tenants.get(&id) {
        Some(tenant) => answer(tenant),
        None => not_found(format!("no tenant {id}")),
    }
}

fn apply(tenant: &mut Tenant, update: UpdateTenant) {
    let s = &mut tenant.settings;
    if let Some(v) = update.display_name {
        tenant.display_name = v;
    }
    if let Some(v) = update.live_response_enabled {
        s.live_response_enabled = v;
    }
    if let Some(v) = update.unsigned_scripts_allowed {
        s.unsigned_scripts_allowed = v;
    }
    if let Some(v) = update.idle_timeout_ms {
        s.idle_timeout_ms = Some(v);
    }
    if let Some(v) = update.remediation_groups {
        s.remediation_groups = v;
    }
    if let Some(v) = update.max_sessions_per_tenant {
        s.max_sessions_per_tenant = v;
    }
    if let Some(v) = update.max_sessions_per_user {
        s.max_sessions_per_user = v;
    }
    s.version += 1;
}

async fn update_tenant(
    State(st): State<St>,
    Path(id): Path<String>,
    Json(body): Json<UpdateTenant>,
) -> Response {
    let mut admin = st.lock().unwrap();
    let Some(tenant) = admin.tenants.get_mut(&id) else {
        return not_found(format!("no tenant {id}"));
    };
    apply(tenant, body);
    answer(tenant)
}

async fn remove_tenant(State(st): State<St>, Path(id): Path<String>) -> Response {
    match st.lock().unwrap().tenants.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(format!("no tenant {id}")),
    }
}

async fn get_settings(State(st): State<St>, headers: HeaderMap) -> Response {
    get_tenant(State(st), Path(tenant_of(&headers))).await
}

async fn update_settings(
    State(st): State<St>,
    headers: HeaderMap,
    body: Json<UpdateTenant>,
) -> Response {
    update_tenant(State(st), Path(tenant_of(&headers)), body).await
}

// ---- users --------------------------------------------------------------------------------------

async fn list_users(
    State(st): State<St>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let users = admin.users.values().filter(|u| u.tenant == tenant);
    page(values(users), "name", &paging, api_model::MAX_LIMIT)
}

async fn create_user(
    State(st): State<St>,
    headers: HeaderMap,
    Json(body): Json<CreateUser>,
) -> Response {
    let tenant = tenant_of(&headers);
    let mut admin = st.lock().unwrap();
    let key = (tenant.clone(), body.name.clone());
    if admin.users.contains_key(&key) {
        return exists(format!("user {} exists already", body.name));
    }
    let user = User {
        tenant,
        name: body.name,
        roles: body.roles,
        created_at: at(),
    };
    admin.users.insert(key, user.clone());
    created(user)
}

async fn get_user(State(st): State<St>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    match st
        .lock()
        .unwrap()
        .users
        .get(&(tenant_of(&headers), name.clone()))
    {
        Some(user) => answer(user),
        None => not_found(format!("no user {name}")),
    }
}

async fn update_user(
    State(st): State<St>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<UpdateUser>,
) -> Response {
    let mut admin = st.lock().unwrap();
    match admin.users.get_mut(&(tenant_of(&headers), name.clone())) {
        Some(user) => {
            user.roles = body.roles;
            answer(user)
        }
        None => not_found(format!("no user {name}")),
    }
}

async fn remove_user(
    State(st): State<St>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let mut admin = st.lock().unwrap();
    match admin.users.remove(&(tenant_of(&headers), name.clone())) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(format!("no user {name}")),
    }
}

// ---- tokens -------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct TokenFilter {
    user: Option<String>,
}

async fn list_tokens(
    State(st): State<St>,
    headers: HeaderMap,
    Query(filter): Query<TokenFilter>,
    Query(paging): Query<Paging>,
) -> Response {
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let tokens = admin
        .tokens
        .iter()
        .filter(|t| t.tenant == tenant && filter.user.as_ref().is_none_or(|u| *u == t.user));
    page(values(tokens), "id", &paging, api_model::MAX_LIMIT)
}

async fn create_token(
    State(st): State<St>,
    headers: HeaderMap,
    Json(body): Json<CreateToken>,
) -> Response {
    let tenant = tenant_of(&headers);
    let mut admin = st.lock().unwrap();
    if !admin
        .users
        .contains_key(&(tenant.clone(), body.user.clone()))
    {
        return not_found(format!("no user {} in tenant {tenant}", body.user));
    }
    admin.minted += 1;
    let id = format!("tok{:013}", admin.minted);
    let record = Token {
        id: id.clone(),
        tenant,
        user: body.user,
        description: body.description,
        created_at: at(),
        expires_at: body
            .expires_in_secs
            .map(|_| "2025-07-01T11:00:00Z".parse().unwrap()),
        revoked_at: None,
        last_used_at: None,
    };
    admin.tokens.push(record.clone());
    created(CreatedToken {
        token: format!("lrt_{id}_s3cr3t{}", admin.minted),
        record,
    })
}

async fn revoke_token(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let tenant = tenant_of(&headers);
    let mut admin = st.lock().unwrap();
    match admin
        .tokens
        .iter_mut()
        .find(|t| t.id == id && t.tenant == tenant)
    {
        Some(token) => {
            token.revoked_at = Some(at());
            answer(token)
        }
        None => not_found(format!("no token {id}")),
    }
}

// ---- groups -------------------------------------------------------------------------------------

async fn list_groups(
    State(st): State<St>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let groups = admin
        .groups
        .iter()
        .filter(|((t, _), _)| *t == tenant)
        .map(|(_, g)| g);
    page(values(groups), "name", &paging, api_model::MAX_LIMIT)
}

async fn get_group(State(st): State<St>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    match st
        .lock()
        .unwrap()
        .groups
        .get(&(tenant_of(&headers), name.clone()))
    {
        Some(group) => answer(group),
        None => not_found(format!("no group {name}")),
    }
}

async fn put_group(
    State(st): State<St>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<DeviceGroup>,
) -> Response {
    let group = DeviceGroup { name, ..body };
    let key = (tenant_of(&headers), group.name.clone());
    st.lock().unwrap().groups.insert(key, group.clone());
    answer(group)
}

async fn remove_group(
    State(st): State<St>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    match st
        .lock()
        .unwrap()
        .groups
        .remove(&(tenant_of(&headers), name.clone()))
    {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(format!("no group {name}")),
    }
}

/// `*` any run of characters, `?` one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, _) => text.is_empty(),
        (Some((b'*', rest)), _) => {
            glob(rest, text) || text.split_first().is_some_and(|(_, t)| glob(pattern, t))
        }
        (Some((p, rest)), Some((c, t))) => (*p == b'?' || p == c) && glob(rest, t),
        (Some(_), None) => false,
    }
}

async fn device_groups(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !["web-07", "db-01"].contains(&id.as_str()) {
        return not_found(format!("no device {id}"));
    }
    let hostname = format!("{id}.example");
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let groups: Vec<&String> = admin
        .groups
        .iter()
        .filter(|((t, _), _)| *t == tenant)
        .filter(|(_, g)| {
            g.devices.contains(&id)
                || g.rules.iter().any(|r| match r {
                    GroupRule::Device(p) => glob(p.as_bytes(), id.as_bytes()),
                    GroupRule::Hostname(p) => glob(p.as_bytes(), hostname.as_bytes()),
                    // The fake's devices carry no tags.
                    GroupRule::Tag(_) => false,
                })
        })
        .map(|((_, name), _)| name)
        .collect();
    answer(json!({"device": id, "groups": groups}))
}

// ---- enrolment ----------------------------------------------------------------------------------

async fn list_enrolment_tokens(
    State(st): State<St>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let tokens = admin.enrolment_tokens.iter().filter(|t| t.tenant == tenant);
    page(values(tokens), "id", &paging, api_model::MAX_LIMIT)
}

async fn create_enrolment_token(
    State(st): State<St>,
    headers: HeaderMap,
    Json(body): Json<CreateEnrolmentToken>,
) -> Response {
    let tenant = tenant_of(&headers);
    let mut admin = st.lock().unwrap();
    if let Some(group) = &body.group
        && !admin.groups.contains_key(&(tenant.clone(), group.clone()))
    {
        return not_found(format!("no group {group}"));
    }
    admin.minted += 1;
    let id = format!("enr{:013}", admin.minted);
    let secs = i64::try_from(body.expires_in_secs.unwrap_or(86_400)).unwrap();
    let expires_at = Timestamp::from_second(at().as_second() + secs).unwrap();
    let record = EnrolmentToken {
        id: id.clone(),
        tenant,
        description: body.description,
        group: body.group,
        max_uses: body.max_uses.unwrap_or(1),
        uses: 0,
        created_by: "analyst-a".to_owned(),
        created_at: at(),
        expires_at,
        revoked_at: None,
    };
    admin.enrolment_tokens.push(record.clone());
    created(CreatedEnrolmentToken {
        token: format!("lre_{id}_s3cr3t{}", admin.minted),
        ca_fingerprint: CA_FINGERPRINT.to_owned(),
        issuing_ca_fingerprint: "ab".repeat(32),
        record,
    })
}

async fn revoke_enrolment_token(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let tenant = tenant_of(&headers);
    let mut admin = st.lock().unwrap();
    match admin
        .enrolment_tokens
        .iter_mut()
        .find(|t| t.id == id && t.tenant == tenant)
    {
        Some(token) => {
            token.revoked_at = Some(at());
            answer(token)
        }
        None => not_found(format!("no enrolment token {id}")),
    }
}

async fn list_devices(
    State(st): State<St>,
    headers: HeaderMap,
    Query(paging): Query<Paging>,
) -> Response {
    let tenant = tenant_of(&headers);
    let admin = st.lock().unwrap();
    let devices = admin
        .devices
        .iter()
        .filter(|((t, _), _)| *t == tenant)
        .map(|(_, d)| d);
    page(values(devices), "device", &paging, ENROLLED_PAGE)
}

/// Applies `change` to a device of the request's tenant and answers it, or 404 with the
/// broker's message (`no device ...` from the directory).
fn with_device(
    st: &St,
    headers: &HeaderMap,
    id: &str,
    change: impl FnOnce(&mut EnrolledDevice),
) -> Response {
    let mut admin = st.lock().unwrap();
    match admin.devices.get_mut(&(tenant_of(headers), id.to_owned())) {
        Some(device) => {
            change(device);
            answer(device)
        }
        None => not_found(format!("no device {id}")),
    }
}

async fn get_device(State(st): State<St>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let admin = st.lock().unwrap();
    match admin.devices.get(&(tenant_of(&headers), id.clone())) {
        Some(device) => answer(device),
        None => not_found(format!("no enrolled device {id}")),
    }
}

async fn revoke_device(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_device(&st, &headers, &id, |d| {
        d.state = EnrolmentState::Revoked;
        d.revoked_at = Some(at());
        d.reenrolment_allowed = false;
        d.online = false;
    })
}

async fn allow_reenrolment(
    State(st): State<St>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    with_device(&st, &headers, &id, |d| d.reenrolment_allowed = true)
}
