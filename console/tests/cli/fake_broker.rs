//! A small in-test broker implementing part of the analyst API contract, over HTTP or HTTPS, that
//! records every request so tests can check what `lr` did (did it close the session? cancel?).
//!
//! Like the real broker it reads each submitted line with `commands::parse` and refuses a mistake
//! or a console-side command with 400 invalid_request. Its "device" answers `dir`, `cd` and
//! `processes`; `fileinfo` fails (no such file); `findfile` answers its submission slowly, then
//! runs until cancelled; anything else is refused with 400 (as `registry` would be on linux).
//!
//! Transfers: `getfile`/`download` of `/data/report.bin`, `/data/flaky.bin` (its first content
//! request is cut half-way) and `/data/bad.bin` (announced with a wrong SHA-256) start a transfer
//! that completes on its second poll; `putfile NAME` does the same for a library file. The
//! library lives in memory.
//! Devices: `busy` (409 session_refused), `offline` (409 device_offline), `ghost` (404), `jobs-07`
//! (opens with a command already running in the session, as if submitted elsewhere),
//! `drop-open` (the answer to an open is lost on the way: the session is open, the client sees
//! the connection break; a retry with the same key gets it), `drop-submit` (the same for each
//! command submitted in its session), anything else opens.
//!
//! Lists answer pages (`{"items", "next"}`, `limit` and `after` as the contract says), at most
//! [`FakeBroker::set_page_size`] items each. Opening a session and submitting a command are
//! idempotent by `Idempotency-Key` (or the body's `request_id` / `command_id`) like the broker's:
//! a repeated key answers what the first request made, with 200. The fake numbers sessions and
//! commands itself (`s-1`, `c-2`), whatever the key.
//!
//! [`FakeBroker::node`] starts another API node of the same deployment (the same state, its own
//! port and runtime) that a test can kill mid-request, as a broker process dies.
//!
//! Administration (`/api/v1/admin/...`) is in [`crate::fake_admin`], the audit log
//! (`/api/v1/audit...`) in [`crate::fake_audit`]. Every request's `LR-Tenant`
//! header is recorded ([`FakeBroker::tenant_headers`]).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const TOKEN: &str = "good-token";
pub use crate::fake_admin::VIEWER_TOKEN;

struct Inner {
    requests: Vec<String>,
    /// Path and query of every request, in order.
    uris: Vec<String>,
    /// The `LR-Tenant` header of every request, in order.
    tenant_headers: Vec<Option<String>>,
    /// The idempotency key of every open and submission, by path, in order.
    keys: Vec<(String, Option<String>)>,
    /// Session (open) or command (submission) already made for a key.
    made: HashMap<String, String>,
    /// Most items on one page of a list.
    page_size: usize,
    /// Devices beyond the two every fake has.
    extra_devices: usize,
    /// Sessions opened so far.
    opened: usize,
    sessions: HashMap<String, Session>,
    commands: HashMap<String, Cmd>,
    next: u64,
    transfers: HashMap<String, Xfer>,
    /// The `Range` header of every content request, in order.
    ranges: Vec<Option<String>>,
    library: std::collections::BTreeMap<String, Value>,
    /// Whether `/readyz` answers ready.
    ready: bool,
    /// Reads of a command still to be answered `session_moving` (503).
    moving: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            requests: Vec::new(),
            uris: Vec::new(),
            tenant_headers: Vec::new(),
            keys: Vec::new(),
            made: HashMap::new(),
            page_size: api_model::MAX_LIMIT,
            extra_devices: 0,
            opened: 0,
            sessions: HashMap::new(),
            commands: HashMap::new(),
            next: 0,
            transfers: HashMap::new(),
            ranges: Vec::new(),
            library: std::collections::BTreeMap::new(),
            ready: true,
            moving: 0,
        }
    }
}

#[derive(Clone)]
struct Xfer {
    session: String,
    kind: &'static str,
    path: String,
    name: String,
    content: Vec<u8>,
    sha256: String,
    state: &'static str,
    polls: u32,
    /// Cut the next content stream half-way.
    cut: bool,
}

/// The bytes of the fake device's files.
pub fn file_content(path: &str) -> Option<Vec<u8>> {
    match path {
        "/data/report.bin" | "/data/flaky.bin" | "/data/bad.bin" => {
            Some((0..300_000u32).map(|i| (i * 31 % 251) as u8).collect())
        }
        _ => None,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[derive(Clone)]
struct Session {
    device: String,
    cwd: String,
    /// Its first submission's answer is lost (device `drop-submit`).
    drop_submit: bool,
}

#[derive(Clone)]
struct Cmd {
    session: String,
    line: String,
    state: &'static str,
    output: Value,
    error: Option<String>,
    cwd: Option<String>,
}

#[derive(Default)]
struct Shared {
    inner: Mutex<Inner>,
    changed: Notify,
    audit: crate::fake_audit::AuditLog,
}

type St = Arc<Shared>;

pub struct FakeBroker {
    pub url: String,
    /// PEM of the CA that signed the server certificate (HTTPS only).
    pub ca_pem: Option<String>,
    shared: St,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBroker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Another API node of a [`FakeBroker`] (plain HTTP), serving from its own thread and runtime.
pub struct Node {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Node {
    /// Stops the node as a killed process stops: its runtime is dropped with every connection
    /// it holds, a request in flight included, and its port refuses from then on.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl FakeBroker {
    pub async fn http() -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = St::default();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeBroker {
            url,
            ca_pem: None,
            shared,
            task,
        }
    }

    pub async fn https() -> FakeBroker {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let shared = St::default();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(TlsListener { listener, acceptor }, app)
                .await
                .unwrap();
        });
        FakeBroker {
            url,
            ca_pem: Some(ca_pem),
            shared,
            task,
        }
    }

    /// Another API node with this one's state.
    pub fn node(&self) -> Node {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = router(self.shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    served = axum::serve(listener, app).into_future() => served.unwrap(),
                    _ = stopped => {}
                }
            });
        });
        Node {
            url,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Ends every running command as completed, as if the device answered.
    pub fn finish_running(&self) {
        let mut inner = self.shared.inner.lock().unwrap();
        for c in inner.commands.values_mut().filter(|c| c.state == "running") {
            c.state = "completed";
            c.output = json!([]);
        }
        drop(inner);
        self.shared.changed.notify_waiters();
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    pub fn saw(&self, request: &str) -> bool {
        self.requests().iter().any(|r| r == request)
    }

    pub fn saw_prefix(&self, prefix: &str) -> bool {
        self.requests().iter().any(|r| r.starts_with(prefix))
    }

    /// Command lines submitted, in order.
    pub fn command_lines(&self) -> Vec<String> {
        let inner = self.shared.inner.lock().unwrap();
        let mut cmds: Vec<(&String, &Cmd)> = inner.commands.iter().collect();
        cmds.sort_by_key(|(id, _)| id[2..].parse::<u64>().unwrap());
        cmds.into_iter().map(|(_, c)| c.line.clone()).collect()
    }

    pub fn open_sessions(&self) -> usize {
        self.shared.inner.lock().unwrap().sessions.len()
    }

    /// Sessions opened since the start, closed or not.
    pub fn sessions_opened(&self) -> usize {
        self.shared.inner.lock().unwrap().opened
    }

    /// The `LR-Tenant` header of every request so far (`None`: not sent).
    pub fn tenant_headers(&self) -> Vec<Option<String>> {
        self.shared.inner.lock().unwrap().tenant_headers.clone()
    }

    /// Path and query of every request so far.
    pub fn uris(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().uris.clone()
    }

    /// The idempotency key of every POST to `path` (opens or submissions), in order.
    pub fn keys(&self, path: &str) -> Vec<Option<String>> {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .keys
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, key)| key.clone())
            .collect()
    }

    /// Tenant demo's audit log.
    pub fn audit(&self) -> &crate::fake_audit::AuditLog {
        &self.shared.audit
    }

    /// Answers lists in pages of at most `size` items.
    /// Makes `/readyz` answer not ready (503, no leader) or ready again.
    pub fn set_ready(&self, ready: bool) {
        self.shared.inner.lock().unwrap().ready = ready;
    }

    /// Answers the next `reads` reads of a command `session_moving`, as while another node
    /// adopts the session.
    pub fn set_moving(&self, reads: usize) {
        self.shared.inner.lock().unwrap().moving = reads;
    }

    pub fn set_page_size(&self, size: usize) {
        self.shared.inner.lock().unwrap().page_size = size;
    }

    /// Adds `count` devices (`dev-00001`, …) to the two every fake has.
    pub fn add_devices(&self, count: usize) {
        self.shared.inner.lock().unwrap().extra_devices += count;
    }

    /// The `Range` header of each content request, in order.
    pub fn content_ranges(&self) -> Vec<Option<String>> {
        self.shared.inner.lock().unwrap().ranges.clone()
    }

    /// The state of every transfer, by id.
    pub fn transfer_states(&self) -> Vec<(String, String)> {
        let inner = self.shared.inner.lock().unwrap();
        let mut all: Vec<(String, String)> = inner
            .transfers
            .iter()
            .map(|(id, x)| (id.clone(), x.state.to_owned()))
            .collect();
        all.sort();
        all
    }
}

/// TLS on top of a TCP listener, for `axum::serve`.
struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.listener.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(tcp);
            // A client that distrusts our CA aborts the handshake: just take the next one.
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn router(shared: St) -> Router {
    let api = Router::new()
        .route("/me", get(me))
        .route("/devices", get(devices))
        .route("/sessions", get(list_sessions).post(open_session))
        .route("/sessions/{id}", get(show_session).delete(close_session))
        .route("/sessions/{id}/commands", get(list_commands).post(submit))
        .route("/sessions/{id}/commands/{cid}", get(command))
        .route("/sessions/{id}/commands/{cid}/cancel", post(cancel))
        .route("/transfers", get(list_transfers))
        .route("/transfers/{id}", get(transfer).delete(cancel_transfer))
        .route("/transfers/{id}/content", get(content))
        .route("/library", get(list_library))
        .route("/library/{name}", put(put_library).delete(delete_library))
        .nest("/admin", crate::fake_admin::router())
        .nest("/audit", crate::fake_audit::router(shared.audit.clone()))
        .route_layer(middleware::from_fn(auth));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"node": 1, "leader": 1, "ok": true})) }),
        )
        .route("/readyz", get(readyz))
        .nest("/api/v1", api)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn readyz(State(st): State<St>) -> Response {
    let ready = st.inner.lock().unwrap().ready;
    let no_leader = (!ready).then(|| {
        "this node sees no raft leader; a majority of the brokers must be up and reach each other"
            .to_string()
    });
    let check = |name: &str, detail: Option<String>| api_model::ReadinessCheck {
        name: name.to_string(),
        ok: detail.is_none(),
        detail,
    };
    let body = api_model::Readiness {
        node: 1,
        leader: ready.then_some(1),
        ready,
        reason: no_leader.as_ref().map(|why| format!("leader: {why}")),
        checks: vec![
            check("leader", no_leader),
            check("directory", None),
            check("nats", None),
            check("jetstream", None),
            check("listeners", None),
        ],
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn record(State(st): State<St>, req: Request, next: Next) -> Response {
    let line = format!("{} {}", req.method(), req.uri().path());
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(String::new, ToString::to_string);
    let tenant = req
        .headers()
        .get("lr-tenant")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    {
        let mut inner = st.inner.lock().unwrap();
        inner.requests.push(line);
        inner.uris.push(uri);
        inner.tenant_headers.push(tenant);
    }
    next.run(req).await
}

async fn auth(req: Request, next: Next) -> Response {
    let token = bearer(req.headers());
    let ok = token == Some(TOKEN) || token == Some(VIEWER_TOKEN);
    if !ok {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token; get a token from your tenant admin",
            json!({}),
        );
    }
    next.run(req).await
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// An error answer of the contract: `{"error": {code, message, ..extra}}`.
pub fn error(status: StatusCode, code: &str, message: &str, extra: Value) -> Response {
    let mut body = json!({"code": code, "message": message});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    (status, Json(json!({ "error": body }))).into_response()
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("{what} not found"),
        json!({}),
    )
}

/// The page of `items` (in the list's order) that `paging` asks for, cursors being the `key`
/// field of an item, as the broker pages every list.
pub fn page(
    items: Vec<Value>,
    key: &str,
    paging: &api_model::Paging,
    page_size: usize,
) -> Response {
    let limit = paging.limit.unwrap_or(api_model::DEFAULT_LIMIT);
    if !(1..=api_model::MAX_LIMIT).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("limit {limit} is out of range"),
            json!({}),
        );
    }
    let start = match &paging.after {
        None => 0,
        Some(cursor) => match items.iter().position(|i| i[key] == *cursor) {
            Some(at) => at + 1,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("cursor {cursor} names nothing in this list"),
                    json!({}),
                );
            }
        },
    };
    let take = limit.min(page_size);
    let more = items.len() > start + take;
    let items: Vec<Value> = items.into_iter().skip(start).take(take).collect();
    let next = if more {
        items.last().map(|i| i[key].clone())
    } else {
        None
    };
    Json(json!({"items": items, "next": next})).into_response()
}

/// `s-2` before `s-10`.
fn numbered(id: &str) -> (usize, &str) {
    (id.len(), id)
}

/// An answer lost on the way: the status line may arrive, then the connection breaks.
fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, _>(std::io::Error::other("answer dropped"))
    });
    axum::body::Body::from_stream(stream).into_response()
}

/// The `Idempotency-Key` header, or else the id in the body.
fn key_of(headers: &axum::http::HeaderMap, body: Option<&String>) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| body.cloned())
}

async fn me(headers: axum::http::HeaderMap) -> Json<Value> {
    if bearer(&headers) == Some(VIEWER_TOKEN) {
        return Json(
            json!({"tenant": "demo", "user": "analyst-v", "roles": ["viewer"], "commands": []}),
        );
    }
    Json(json!({"tenant": "demo", "user": "analyst-b",
                "roles": ["responder-basic", "responder-advanced (groups servers, dbs)"],
                "commands": ["cd", "dir", "processes"]}))
}

async fn devices(State(st): State<St>, Query(paging): Query<api_model::Paging>) -> Response {
    let inner = st.inner.lock().unwrap();
    let mut all = vec![
        json!({"device": "web-07", "tenant": "demo", "hostname": "web-07.example", "os": "linux",
         "agent_version": "0.1.0", "online": true, "node": 1, "last_seen": "2025-06-01T10:42:00Z"}),
        json!({"device": "db-01", "tenant": "demo", "hostname": "db-01.example", "os": "linux",
         "agent_version": "0.1.0", "online": false, "node": 2, "last_seen": "2025-06-01T09:00:00Z"}),
    ];
    all.extend((1..=inner.extra_devices).map(|n| {
        json!({"device": format!("dev-{n:05}"), "tenant": "demo", "hostname": format!("dev-{n:05}.example"),
               "os": "linux", "agent_version": "0.1.0", "online": true, "node": 1,
               "last_seen": "2025-06-01T10:42:00Z"})
    }));
    page(all, "device", &paging, inner.page_size)
}

fn session_json(id: &str, s: &Session, with_cwd: bool) -> Value {
    let mut session = json!({"session_id": id, "device": s.device, "user": "analyst-b", "node": 1,
                             "token": id[2..].parse::<u64>().unwrap_or(1),
                             "created_at": "2025-06-01T11:00:00Z", "duration_s": 5});
    if with_cwd {
        session["cwd"] = json!(s.cwd);
    }
    session
}

async fn open_session(
    State(st): State<St>,
    headers: axum::http::HeaderMap,
    Json(body): Json<api_model::OpenSession>,
) -> Response {
    let key = key_of(&headers, body.request_id.as_ref());
    st.inner
        .lock()
        .unwrap()
        .keys
        .push(("/api/v1/sessions".into(), key.clone()));
    match body.device.as_str() {
        "busy" => {
            return error(
                StatusCode::CONFLICT,
                "session_refused",
                "device busy is in a session held by analyst-a (tenant demo) since 10:42 UTC; wait or ask an admin to end it",
                json!({"invariant": "one_session_per_device",
                       "holders": [{"user": "analyst-a", "session": "s-held", "device": "busy", "since": "2025-06-01T10:42:00Z"}]}),
            );
        }
        "offline" => {
            return error(
                StatusCode::CONFLICT,
                "device_offline",
                "device offline has no connected agent",
                json!({}),
            );
        }
        "ghost" => return not_found("device ghost"),
        _ => {}
    }
    let mut inner = st.inner.lock().unwrap();
    if let Some(id) = key.as_ref().and_then(|k| inner.made.get(k))
        && let Some(s) = inner.sessions.get(id)
    {
        return (StatusCode::OK, Json(session_json(id, s, true))).into_response();
    }
    inner.next += 1;
    inner.opened += 1;
    let id = format!("s-{}", inner.next);
    let session = Session {
        device: body.device.clone(),
        cwd: "/root".into(),
        drop_submit: body.device == "drop-submit",
    };
    inner.sessions.insert(id.clone(), session.clone());
    if let Some(key) = key {
        inner.made.insert(key, id.clone());
    }
    if body.device == "jobs-07" {
        inner.next += 1;
        let cid = format!("c-{}", inner.next);
        let running = Cmd {
            session: id.clone(),
            line: "findfile -name *.log -path /var".into(),
            state: "running",
            output: Value::Null,
            error: None,
            cwd: Some("/root".into()),
        };
        inner.commands.insert(cid, running);
    }
    // A retry finds the session by its key and gets the answer.
    if body.device == "drop-open" {
        return dropped();
    }
    (StatusCode::CREATED, Json(session_json(&id, &session, true))).into_response()
}

async fn list_sessions(State(st): State<St>, Query(paging): Query<api_model::Paging>) -> Response {
    let inner = st.inner.lock().unwrap();
    let mut ids: Vec<&String> = inner.sessions.keys().collect();
    ids.sort_by_key(|id| numbered(id));
    let all = ids
        .into_iter()
        .map(|id| session_json(id, &inner.sessions[id], false))
        .collect();
    page(all, "session_id", &paging, inner.page_size)
}

async fn show_session(State(st): State<St>, Path(id): Path<String>) -> Response {
    let inner = st.inner.lock().unwrap();
    match inner.sessions.get(&id) {
        Some(s) => Json(session_json(&id, s, true)).into_response(),
        None => not_found(&format!("session {id}")),
    }
}

async fn close_session(State(st): State<St>, Path(id): Path<String>) -> Response {
    let mut inner = st.inner.lock().unwrap();
    match inner.sessions.remove(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(&format!("session {id}")),
    }
}

async fn submit(
    State(st): State<St>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Json(body): Json<api_model::RunCommand>,
) -> Response {
    let sent = key_of(&headers, body.command_id.as_ref());
    // Command keys are the session's own.
    let key = sent.as_ref().map(|k| format!("{id}/{k}"));
    {
        let mut inner = st.inner.lock().unwrap();
        inner
            .keys
            .push((format!("/api/v1/sessions/{id}/commands"), sent));
        if let Some(cid) = key.as_ref().and_then(|k| inner.made.get(k))
            && let Some(c) = inner.commands.get(cid)
        {
            return (StatusCode::OK, Json(command_json(cid, c))).into_response();
        }
    }
    let line = body.command_line;
    let invocation = match commands::parse(&line) {
        Ok(invocation) => invocation,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &e.to_string(),
                json!({}),
            );
        }
    };
    let verb = invocation.spec.name;
    if invocation.spec.runs == commands::Runs::Console {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{verb} runs in the console, not on the device"),
            json!({}),
        );
    }
    if verb == "findfile" {
        // A slow submission: room for a signal to land before the client knows the command id.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut inner = st.inner.lock().unwrap();
    let Some(session) = inner.sessions.get(&id).cloned() else {
        return not_found(&format!("session {id}"));
    };
    let path = invocation.value("path").map(str::to_owned);
    let (state, output, err, cwd): (&'static str, Value, Option<String>, Option<String>) =
        match verb {
            "dir" => (
                "completed",
                json!({"path": path.as_deref().unwrap_or(&session.cwd), "entries": [
                    {"name": "a.txt", "type": "file", "size": 12, "mode": "0644"},
                    {"name": "cache", "type": "dir", "size": 4096, "mode": "0755"}
                ]}),
                None,
                Some(session.cwd.clone()),
            ),
            "processes" => (
                "completed",
                json!([{"pid": 1, "name": "systemd"}, {"pid": 42, "name": "sshd"}]),
                None,
                Some(session.cwd.clone()),
            ),
            "cd" => {
                let to = path.unwrap_or_else(|| "/".into());
                if let Some(s) = inner.sessions.get_mut(&id) {
                    s.cwd.clone_from(&to);
                }
                ("completed", Value::Null, None, Some(to))
            }
            "fileinfo" => (
                "failed",
                Value::Null,
                Some(format!(
                    "no such file or directory: {}",
                    path.unwrap_or_default()
                )),
                Some(session.cwd.clone()),
            ),
            "findfile" => ("running", Value::Null, None, Some(session.cwd.clone())),
            "getfile" | "download" | "putfile" => {
                let (kind, path, name, content) = if verb == "putfile" {
                    let name = invocation.value("name").unwrap_or_default().to_owned();
                    let content = inner
                        .library
                        .get(&name)
                        .and_then(|e| e["content"].as_str())
                        .map(|c| c.as_bytes().to_vec());
                    ("putfile", String::new(), name, content)
                } else {
                    let path = path.clone().unwrap_or_default();
                    let name = path.rsplit('/').next().unwrap_or_default().to_owned();
                    let content = file_content(&path);
                    ("getfile", path, name, content)
                };
                match content {
                    None => (
                        "failed",
                        Value::Null,
                        Some(format!(
                            "no such file: {}",
                            if kind == "putfile" { &name } else { &path }
                        )),
                        Some(session.cwd.clone()),
                    ),
                    Some(content) => {
                        inner.next += 1;
                        let tid = format!("t-{}", inner.next);
                        let sha256 = if path == "/data/bad.bin" {
                            "0".repeat(64)
                        } else {
                            sha256_hex(&content)
                        };
                        let output = json!({"transfer_id": tid, "path": path, "name": name,
                                            "size": content.len(), "sha256": sha256});
                        inner.transfers.insert(
                            tid,
                            Xfer {
                                session: id.clone(),
                                kind,
                                cut: path == "/data/flaky.bin",
                                path,
                                name,
                                content,
                                sha256,
                                state: "running",
                                polls: 0,
                            },
                        );
                        ("completed", output, None, Some(session.cwd.clone()))
                    }
                }
            }
            "library" => (
                "completed",
                Value::Array(inner.library.values().map(public_entry).collect()),
                None,
                Some(session.cwd.clone()),
            ),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("{verb} is not supported on linux"),
                    json!({}),
                );
            }
        };
    inner.next += 1;
    let cid = format!("c-{}", inner.next);
    let command = Cmd {
        session: id,
        line,
        state,
        output,
        error: err,
        cwd,
    };
    inner.commands.insert(cid.clone(), command.clone());
    if let Some(key) = key {
        inner.made.insert(key, cid.clone());
    }
    st.changed.notify_waiters();
    if session.drop_submit {
        return dropped();
    }
    // As the broker answers a command it has just queued.
    let queued = Cmd {
        state: "queued",
        output: Value::Null,
        error: None,
        ..command
    };
    (StatusCode::ACCEPTED, Json(command_json(&cid, &queued))).into_response()
}

fn command_json(cid: &str, c: &Cmd) -> Value {
    let terminal = !matches!(c.state, "running" | "queued");
    json!({"command_id": cid, "command_line": c.line, "state": c.state, "output": c.output,
           "error": c.error, "cwd": c.cwd, "submitted_at": "2025-06-01T11:00:01Z",
           "started_at": "2025-06-01T11:00:01Z",
           "finished_at": if terminal { json!("2025-06-01T11:00:02Z") } else { Value::Null }})
}

#[derive(Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

async fn command(
    State(st): State<St>,
    Path((id, cid)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
) -> Response {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000));
    {
        let mut inner = st.inner.lock().unwrap();
        if inner.moving > 0 {
            inner.moving -= 1;
            let message = "session s-1's node 1 is not answering; another node takes the session over within seconds; retry";
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "session_moving",
                message,
                json!({}),
            );
        }
    }
    loop {
        let notified = st.changed.notified();
        {
            let inner = st.inner.lock().unwrap();
            let Some(c) = inner.commands.get(&cid).filter(|c| c.session == id) else {
                return not_found(&format!("command {cid}"));
            };
            if c.state != "running" || tokio::time::Instant::now() >= deadline {
                return Json(command_json(&cid, c)).into_response();
            }
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

async fn list_commands(
    State(st): State<St>,
    Path(id): Path<String>,
    Query(paging): Query<api_model::Paging>,
) -> Response {
    let inner = st.inner.lock().unwrap();
    let mut cmds: Vec<(&String, &Cmd)> = inner
        .commands
        .iter()
        .filter(|(_, c)| c.session == id)
        .collect();
    cmds.sort_by_key(|(cid, _)| numbered(cid));
    let all = cmds
        .into_iter()
        .map(|(cid, c)| command_json(cid, c))
        .collect();
    page(all, "command_id", &paging, inner.page_size)
}

async fn cancel(State(st): State<St>, Path((id, cid)): Path<(String, String)>) -> Response {
    let mut inner = st.inner.lock().unwrap();
    let Some(c) = inner.commands.get_mut(&cid).filter(|c| c.session == id) else {
        return not_found(&format!("command {cid}"));
    };
    if c.state == "running" {
        c.state = "cancelled";
        c.error = Some("cancelled by analyst-b".into());
    }
    let answer = command_json(&cid, c);
    st.changed.notify_waiters();
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

fn transfer_json(id: &str, x: &Xfer) -> Value {
    let size = x.content.len() as u64;
    let done = match x.state {
        "completed" => size,
        "running" if x.polls > 0 => size / 2,
        _ => 0,
    };
    let path = if x.kind == "putfile" && x.state == "completed" {
        format!("/tmp/lr/{}", x.name)
    } else {
        x.path.clone()
    };
    json!({"transfer_id": id, "kind": x.kind, "session_id": x.session, "device": "web-07",
           "user": "analyst-b", "path": path, "name": x.name, "size": size, "sha256": x.sha256,
           "chunk_size": 65536, "chunks": size.div_ceil(65536), "chunks_done": done.div_ceil(65536),
           "bytes_done": done, "state": x.state, "error": if x.state == "cancelled" { json!("cancelled by analyst-b") } else { Value::Null },
           "node": 1, "created_at": "2025-06-01T11:00:01Z",
           "finished_at": if x.state == "running" { Value::Null } else { json!("2025-06-01T11:00:03Z") }})
}

/// Each poll moves a transfer on: half-way on the first, completed on the second.
async fn transfer(State(st): State<St>, Path(id): Path<String>) -> Response {
    let mut inner = st.inner.lock().unwrap();
    let Some(x) = inner.transfers.get_mut(&id) else {
        return not_found(&format!("transfer {id}"));
    };
    if x.state == "running" {
        x.polls += 1;
        if x.polls >= 2 {
            x.state = "completed";
        }
    }
    Json(transfer_json(&id, x)).into_response()
}

async fn list_transfers(
    State(st): State<St>,
    Query(filter): Query<api_model::TransferFilter>,
    Query(paging): Query<api_model::Paging>,
) -> Response {
    let inner = st.inner.lock().unwrap();
    let mut xfers: Vec<(&String, &Xfer)> = inner
        .transfers
        .iter()
        .filter(|(_, x)| filter.session.as_ref().is_none_or(|s| *s == x.session))
        .collect();
    xfers.sort_by_key(|(id, _)| numbered(id));
    let all = xfers
        .into_iter()
        .map(|(id, x)| transfer_json(id, x))
        .collect();
    page(all, "transfer_id", &paging, inner.page_size)
}

async fn cancel_transfer(State(st): State<St>, Path(id): Path<String>) -> Response {
    let mut inner = st.inner.lock().unwrap();
    let Some(x) = inner.transfers.get_mut(&id) else {
        return not_found(&format!("transfer {id}"));
    };
    if x.state == "running" {
        x.state = "cancelled";
    }
    x.content.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn content(
    State(st): State<St>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    use axum::http::header;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = st.inner.lock().unwrap();
    inner.ranges.push(range.clone());
    let Some(x) = inner.transfers.get_mut(&id) else {
        return not_found(&format!("transfer {id}"));
    };
    if x.state != "completed" {
        return error(
            StatusCode::CONFLICT,
            "not_ready",
            &format!("transfer {id} is {}", x.state),
            json!({}),
        );
    }
    let size = x.content.len();
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|a| a.parse::<usize>().ok());
    if let Some(from) = from
        && from >= size
    {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{size}"))],
        )
            .into_response();
    }
    let start = from.unwrap_or(0);
    let body = x.content[start..].to_vec();
    let etag = format!("\"{}\"", x.sha256);
    let cut = std::mem::take(&mut x.cut);
    let status = if from.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = if cut {
        // Half the bytes, a moment for them to reach the client, then the connection breaks.
        let half = body[..body.len() / 2].to_vec();
        let stream = futures::stream::unfold(Some(Some(half)), |step| async move {
            match step? {
                Some(half) => Some((Ok(axum::body::Bytes::from(half)), Some(None))),
                None => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Some((Err(std::io::Error::other("cut")), None))
                }
            }
        });
        let mut r = axum::body::Body::from_stream(stream).into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, body.len().into());
        r
    } else {
        body.clone().into_response()
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::ACCEPT_RANGES, "bytes".parse().unwrap());
    h.insert(header::ETAG, etag.parse().unwrap());
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().unwrap(),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", size - 1)
                .parse()
                .unwrap(),
        );
    }
    response
}

/// A library entry as the API shows it (the fake keeps the content beside it).
fn public_entry(entry: &Value) -> Value {
    let mut e = entry.clone();
    if let Value::Object(m) = &mut e {
        m.remove("content");
    }
    e
}

async fn list_library(State(st): State<St>, Query(paging): Query<api_model::Paging>) -> Response {
    let inner = st.inner.lock().unwrap();
    let all = inner.library.values().map(public_entry).collect();
    page(all, "name", &paging, inner.page_size)
}

#[derive(Deserialize)]
struct PutQuery {
    description: Option<String>,
    parameters_description: Option<String>,
    overwrite: Option<bool>,
}

async fn put_library(
    State(st): State<St>,
    Path(name): Path<String>,
    Query(q): Query<PutQuery>,
    body: axum::body::Bytes,
) -> Response {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{name:?} is not a valid library name"),
            json!({}),
        );
    }
    let mut inner = st.inner.lock().unwrap();
    let exists = inner.library.contains_key(&name);
    if exists && q.overwrite != Some(true) {
        return error(
            StatusCode::CONFLICT,
            "already_exists",
            &format!("the library already has a file named {name}"),
            json!({}),
        );
    }
    let entry = json!({"name": name, "description": q.description.unwrap_or_default(),
                       "parameters_description": q.parameters_description.unwrap_or_default(),
                       "size": body.len(), "sha256": sha256_hex(&body), "uploaded_by": "analyst-b",
                       "uploaded_at": "2025-06-01T11:00:00Z",
                       "content": String::from_utf8_lossy(&body)});
    inner.library.insert(name, entry.clone());
    let status = if exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    (status, Json(public_entry(&entry))).into_response()
}

async fn delete_library(State(st): State<St>, Path(name): Path<String>) -> Response {
    let mut inner = st.inner.lock().unwrap();
    match inner.library.remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(&format!("library file {name}")),
    }
}
