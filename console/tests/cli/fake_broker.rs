//! A small in-test broker implementing part of the analyst API contract, over HTTP or HTTPS, that
//! records every request so tests can check what `lr` did (did it close the session? cancel?).
//!
//! Like the real broker it reads each submitted line with `commands::parse` and refuses a mistake
//! or a console-side command with 400 invalid_request. Its "device" answers `dir`, `cd` and
//! `processes`; `fileinfo` fails (no such file); `findfile` answers its submission slowly, then
//! runs until cancelled; anything else is refused with 400 (as `registry` would be on linux).
//! Devices: `busy` (409 session_refused), `offline` (409 device_offline), `ghost` (404), `jobs-07`
//! (opens with a command already running in the session, as if submitted elsewhere), anything
//! else opens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const TOKEN: &str = "good-token";

#[derive(Default)]
struct Inner {
    requests: Vec<String>,
    sessions: HashMap<String, Session>,
    commands: HashMap<String, Cmd>,
    next: u64,
}

#[derive(Clone)]
struct Session {
    device: String,
    cwd: String,
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
        .route("/devices", get(devices))
        .route("/sessions", get(list_sessions).post(open_session))
        .route("/sessions/{id}", get(show_session).delete(close_session))
        .route("/sessions/{id}/commands", get(list_commands).post(submit))
        .route("/sessions/{id}/commands/{cid}", get(command))
        .route("/sessions/{id}/commands/{cid}/cancel", post(cancel))
        .route_layer(middleware::from_fn(auth));
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({"node": 1, "leader": 1, "ok": true})) }),
        )
        .nest("/api/v1", api)
        .layer(middleware::from_fn_with_state(shared.clone(), record))
        .with_state(shared)
}

async fn record(State(st): State<St>, req: Request, next: Next) -> Response {
    let line = format!("{} {}", req.method(), req.uri().path());
    st.inner.lock().unwrap().requests.push(line);
    next.run(req).await
}

async fn auth(req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"));
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

fn error(status: StatusCode, code: &str, message: &str, extra: Value) -> Response {
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

async fn devices() -> Json<Value> {
    Json(json!([
        {"device": "web-07", "tenant": "demo", "hostname": "web-07.example", "os": "linux",
         "agent_version": "0.1.0", "online": true, "node": 1, "last_seen": "2025-06-01T10:42:00Z"},
        {"device": "db-01", "tenant": "demo", "hostname": "db-01.example", "os": "linux",
         "agent_version": "0.1.0", "online": false, "node": 2, "last_seen": "2025-06-01T09:00:00Z"}
    ]))
}

#[derive(Deserialize)]
struct OpenBody {
    device: String,
}

async fn open_session(State(st): State<St>, Json(body): Json<OpenBody>) -> Response {
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
    inner.next += 1;
    let id = format!("s-{}", inner.next);
    inner.sessions.insert(
        id.clone(),
        Session {
            device: body.device.clone(),
            cwd: "/root".into(),
        },
    );
    let token = inner.next;
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
    (
        StatusCode::CREATED,
        Json(
            json!({"session_id": id, "device": body.device, "user": "analyst-b",
                    "token": token, "node": 1, "created_at": "2025-06-01T11:00:00Z"}),
        ),
    )
        .into_response()
}

async fn list_sessions(State(st): State<St>) -> Json<Value> {
    let inner = st.inner.lock().unwrap();
    Json(Value::Array(
        inner
            .sessions
            .iter()
            .map(|(id, s)| json!({"session_id": id, "device": s.device, "user": "analyst-b", "node": 1,
                                  "created_at": "2025-06-01T11:00:00Z", "duration_s": 5, "token": 1}))
            .collect(),
    ))
}

async fn show_session(State(st): State<St>, Path(id): Path<String>) -> Response {
    let inner = st.inner.lock().unwrap();
    match inner.sessions.get(&id) {
        Some(s) => Json(
            json!({"session_id": id, "device": s.device, "user": "analyst-b", "node": 1,
                               "created_at": "2025-06-01T11:00:00Z", "cwd": s.cwd, "token": 1}),
        )
        .into_response(),
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

#[derive(Deserialize)]
struct SubmitBody {
    command_line: String,
}

async fn submit(
    State(st): State<St>,
    Path(id): Path<String>,
    Json(body): Json<SubmitBody>,
) -> Response {
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
    inner.commands.insert(
        cid.clone(),
        Cmd {
            session: id,
            line: line.clone(),
            state,
            output,
            error: err,
            cwd,
        },
    );
    st.changed.notify_waiters();
    (
        StatusCode::ACCEPTED,
        Json(json!({"command_id": cid, "command_line": line, "state": "queued"})),
    )
        .into_response()
}

fn command_json(cid: &str, c: &Cmd) -> Value {
    let terminal = c.state != "running";
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

async fn list_commands(State(st): State<St>, Path(id): Path<String>) -> Json<Value> {
    let inner = st.inner.lock().unwrap();
    Json(Value::Array(
        inner
            .commands
            .iter()
            .filter(|(_, c)| c.session == id)
            .map(|(cid, c)| command_json(cid, c))
            .collect(),
    ))
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
    let state = c.state;
    st.changed.notify_waiters();
    (
        StatusCode::ACCEPTED,
        Json(json!({"command_id": cid, "state": state})),
    )
        .into_response()
}
