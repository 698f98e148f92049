//! The administration routes of the in-test broker (`/api/v1/admin/...`): tenants, users, tokens
//! and device groups in memory, read and answered as the `api-model` types, paged like every
//! list. A tenant route acts in the tenant the `LR-Tenant` header names, else in `demo` (the
//! tenant of the test token). The viewer's token ([`VIEWER_TOKEN`]) is refused every admin route
//! with 403 `forbidden` naming the role, as the broker refuses it. A new token is answered once
//! and kept only as its record.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use api_model::{
    CreateTenant, CreateToken, CreateUser, CreatedToken, DeviceGroup, GroupRule, Paging, RoleGrant,
    Tenant, TenantSettings, Timestamp, Token, UpdateTenant, UpdateUser, User,
};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fake_broker::{error, page};

/// A viewer's token: it reads the tenant's lists, administers nothing.
pub const VIEWER_TOKEN: &str = "viewer-token";

struct Admin {
    tenants: BTreeMap<String, Tenant>,
    /// By tenant and name.
    users: BTreeMap<(String, String), User>,
    tokens: Vec<Token>,
    groups: BTreeMap<(String, String), DeviceGroup>,
    minted: u64,
}

type St = Arc<Mutex<Admin>>;

fn at() -> Timestamp {
    "2025-06-01T11:00:00Z".parse().unwrap()
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
