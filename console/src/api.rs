//! Typed client of the broker's analyst API (`/api/v1`): one method per endpoint, one error enum.
//!
//! Every request is bounded in time. List and detail answers are kept as [`Doc`]s so the console
//! renders whatever fields the broker sends, in its order; the few fields the console acts on
//! (ids, state, cwd, error) are read into typed structs beside the document.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::doc::Doc;
use crate::exit::Exit;

/// How long to wait for a TCP+TLS connection to a broker node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary (not long-polling) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest long-poll the server honours; asking for more is pointless.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Slack on top of a long-poll's `wait_ms` for the network and the server's own work.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The broker answered with an error of the contract: `{"error": {"code", "message", ..}}`.
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        /// The whole `error` object, with extra fields such as `invariant` and `holders`.
        detail: Doc,
    },
    /// No answer: connection refused, DNS, TLS handshake, timeout, connection dropped.
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        tls: bool,
    },
    /// An answer outside the contract: unexpected status, not JSON, missing fields.
    #[error("unexpected answer from the broker: {0}")]
    Protocol(String),
    /// The client could not be set up (unreadable CA file, bad certificate).
    #[error("{0}")]
    Setup(String),
}

impl ApiError {
    pub fn exit(&self) -> Exit {
        match self {
            ApiError::Api { status, code, .. } => Exit::for_api_code(code, *status),
            ApiError::Unreachable { .. } | ApiError::Protocol(_) => Exit::Unavailable,
            ApiError::Setup(_) => Exit::Usage,
        }
    }

    /// The stable API error code, if the broker sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Worth retrying an idempotent request: the broker was not reached or had no quorum.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } => true,
            ApiError::Api { code, status, .. } => code == "unavailable" || *status == 503,
            _ => false,
        }
    }

    /// Parses an error answer; anything outside the contract becomes a protocol error.
    pub fn from_error_body(status: u16, body: &[u8]) -> ApiError {
        #[derive(Deserialize)]
        struct Body {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: String,
            message: String,
        }
        let parsed = Doc::parse(body).ok().and_then(|doc| {
            let body: Body = serde_json::from_value(doc.to_value()).ok()?;
            Some((body.error, doc.get("error").cloned().unwrap_or_default()))
        });
        match parsed {
            Some((inner, detail)) => ApiError::Api {
                status,
                code: inner.code,
                message: inner.message,
                detail,
            },
            None => ApiError::Protocol(format!(
                "HTTP {status} without an error body of the API: {}",
                snippet(body)
            )),
        }
    }
}

/// The first bytes of a body, printable, for error messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(200).collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text
    }
}

/// Where to reach the broker and as whom.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub base: Url,
    pub token: Option<String>,
    pub ca_cert: Option<std::path::PathBuf>,
}

/// A session as `POST /sessions` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenedSession {
    pub session_id: String,
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub node: Option<u64>,
}

/// A session as `GET /sessions/{id}` returns it (fields the console uses).
#[derive(Debug, Clone, Deserialize)]
pub struct SessionInfo {
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `202 {"command_id", ..}` of a submitted command.
#[derive(Debug, Clone, Deserialize)]
pub struct Submitted {
    pub command_id: String,
}

/// The state of a command; unknown states from a newer broker count as not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    TimedOut,
    Rejected,
    #[serde(other)]
    Unknown,
}

impl CommandState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CommandState::Completed
                | CommandState::Failed
                | CommandState::Cancelled
                | CommandState::TimedOut
                | CommandState::Rejected
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CommandState::Queued => "queued",
            CommandState::Running => "running",
            CommandState::Completed => "completed",
            CommandState::Failed => "failed",
            CommandState::Cancelled => "cancelled",
            CommandState::TimedOut => "timed_out",
            CommandState::Rejected => "rejected",
            CommandState::Unknown => "unknown",
        }
    }
}

/// A command object: the whole document plus the fields the console acts on.
#[derive(Debug, Clone)]
pub struct Command {
    pub doc: Doc,
    pub command_id: String,
    pub state: CommandState,
    pub error: Option<String>,
    pub cwd: Option<String>,
}

impl Command {
    pub fn from_doc(doc: Doc) -> Result<Command, ApiError> {
        #[derive(Deserialize)]
        struct Fields {
            command_id: String,
            state: CommandState,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            cwd: Option<String>,
        }
        let f: Fields = typed(&doc, "command")?;
        Ok(Command {
            command_id: f.command_id,
            state: f.state,
            error: f.error,
            cwd: f.cwd,
            doc,
        })
    }

    /// The command's `output` field (any JSON, or null).
    pub fn output(&self) -> &Doc {
        static NULL: Doc = Doc::Null;
        self.doc.get("output").unwrap_or(&NULL)
    }
}

fn typed<T: DeserializeOwned>(doc: &Doc, what: &str) -> Result<T, ApiError> {
    serde_json::from_value(doc.to_value())
        .map_err(|e| ApiError::Protocol(format!("{what} object does not match the API: {e}")))
}

/// What `PUT /library/{name}` is told besides the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct LibraryUpload<'a> {
    pub description: Option<&'a str>,
    pub parameters_description: Option<&'a str>,
    pub overwrite: bool,
}

/// The analyst API of one broker deployment.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    /// `trace` in the REPL: a line on stderr for every request and its answer. Shared by clones.
    trace: Arc<AtomicBool>,
}

impl Client {
    /// Builds the HTTP client. With a CA file, that CA is the only trust anchor; without one,
    /// the operating system's trust store is used.
    pub fn new(endpoint: &Endpoint) -> Result<Client, ApiError> {
        // reqwest is built without a provider of its own and panics without a process default;
        // `main` installs ring first, this covers library use (tests). A second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("lr/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &endpoint.ca_cert {
            builder = builder.tls_built_in_root_certs(false);
            for cert in read_ca(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            ApiError::Setup(format!("cannot set up the HTTP client: {}", chain(&e)))
        })?;
        Ok(Client {
            http,
            base: endpoint.base.clone(),
            token: endpoint.token.clone(),
            trace: Arc::default(),
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// Turns the request trace on or off, for this client and its clones.
    pub fn set_trace(&self, on: bool) {
        self.trace.store(on, Ordering::Relaxed);
    }

    pub fn tracing(&self) -> bool {
        self.trace.load(Ordering::Relaxed)
    }

    /// `GET /healthz` (no token needed).
    pub async fn health(&self) -> Result<Doc, ApiError> {
        let url = self.url(&["healthz"]);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, &[StatusCode::OK])
            .await
    }

    /// `GET /api/v1/devices`
    pub async fn devices(&self) -> Result<Doc, ApiError> {
        self.get(&["devices"]).await
    }

    /// `GET /api/v1/sessions`
    pub async fn sessions(&self) -> Result<Doc, ApiError> {
        self.get(&["sessions"]).await
    }

    /// `POST /api/v1/sessions` → 201
    pub async fn open_session(&self, device: &str) -> Result<(OpenedSession, Doc), ApiError> {
        let body = serde_json::json!({ "device": device });
        let doc = self
            .call(
                Method::POST,
                self.api(&["sessions"]),
                Some(body),
                REQUEST_TIMEOUT,
                &[StatusCode::CREATED, StatusCode::OK],
            )
            .await?;
        Ok((typed(&doc, "session")?, doc))
    }

    /// `GET /api/v1/sessions/{id}`
    pub async fn session(&self, session: &str) -> Result<(SessionInfo, Doc), ApiError> {
        let doc = self.get(&["sessions", session]).await?;
        Ok((typed(&doc, "session")?, doc))
    }

    /// `DELETE /api/v1/sessions/{id}` → 204
    pub async fn close_session(&self, session: &str) -> Result<(), ApiError> {
        self.call(
            Method::DELETE,
            self.api(&["sessions", session]),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(drop)
    }

    /// `POST /api/v1/sessions/{id}/commands` → 202
    pub async fn submit(&self, session: &str, command_line: &str) -> Result<Submitted, ApiError> {
        let body = serde_json::json!({ "command_line": command_line });
        let doc = self
            .call(
                Method::POST,
                self.api(&["sessions", session, "commands"]),
                Some(body),
                REQUEST_TIMEOUT,
                &[StatusCode::ACCEPTED, StatusCode::CREATED, StatusCode::OK],
            )
            .await?;
        typed(&doc, "submitted command")
    }

    /// `GET /api/v1/sessions/{id}/commands/{cid}?wait_ms=N`: long-polls up to `wait` (capped at
    /// [`MAX_WAIT`]) for the command to finish, then returns it in whatever state it is.
    pub async fn command(
        &self,
        session: &str,
        command: &str,
        wait: Duration,
    ) -> Result<Command, ApiError> {
        let wait = wait.min(MAX_WAIT);
        let mut url = self.api(&["sessions", session, "commands", command]);
        if !wait.is_zero() {
            url.query_pairs_mut()
                .append_pair("wait_ms", &wait.as_millis().to_string());
        }
        let doc = self
            .call(
                Method::GET,
                url,
                None,
                wait + LONG_POLL_SLACK,
                &[StatusCode::OK],
            )
            .await?;
        Command::from_doc(doc)
    }

    /// `GET /api/v1/sessions/{id}/commands`
    pub async fn commands(&self, session: &str) -> Result<Doc, ApiError> {
        self.get(&["sessions", session, "commands"]).await
    }

    /// `POST /api/v1/sessions/{id}/commands/{cid}/cancel` → 202
    pub async fn cancel(&self, session: &str, command: &str) -> Result<Doc, ApiError> {
        self.call(
            Method::POST,
            self.api(&["sessions", session, "commands", command, "cancel"]),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::ACCEPTED, StatusCode::OK],
        )
        .await
    }

    /// `GET /api/v1/transfers/{id}?wait_ms=N`: long-polls up to `wait` (capped at [`MAX_WAIT`])
    /// for progress or a change of state.
    pub async fn transfer(&self, transfer: &str, wait: Duration) -> Result<Doc, ApiError> {
        let wait = wait.min(MAX_WAIT);
        let mut url = self.api(&["transfers", transfer]);
        if !wait.is_zero() {
            url.query_pairs_mut()
                .append_pair("wait_ms", &wait.as_millis().to_string());
        }
        self.call(
            Method::GET,
            url,
            None,
            wait + LONG_POLL_SLACK,
            &[StatusCode::OK],
        )
        .await
    }

    /// `GET /api/v1/transfers?session=<id>`: the caller's transfers in a session.
    pub async fn transfers(&self, session: &str) -> Result<Doc, ApiError> {
        let mut url = self.api(&["transfers"]);
        url.query_pairs_mut().append_pair("session", session);
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, &[StatusCode::OK])
            .await
    }

    /// `DELETE /api/v1/transfers/{id}` → 204: cancels a running transfer and deletes its data.
    pub async fn cancel_transfer(&self, transfer: &str) -> Result<(), ApiError> {
        self.call(
            Method::DELETE,
            self.api(&["transfers", transfer]),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(drop)
    }

    /// `GET /api/v1/transfers/{id}/content` from byte `from` on (`Range: bytes=<from>-` when it
    /// is not 0). Returns the response once its headers are in, to be read as a stream: 200 for
    /// the whole file, 206 for the asked range, 416 when `from` is at or past the end.
    pub async fn content(&self, transfer: &str, from: u64) -> Result<reqwest::Response, ApiError> {
        let url = self.api(&["transfers", transfer, "content"]);
        let shown = url.to_string();
        let trace = self.tracing().then(|| {
            Trace::start(
                &Method::GET,
                &format!("{shown} (Range: bytes={from}-)"),
                None,
            )
        });
        let mut request = self
            .request(Method::GET, url)
            .header(reqwest::header::ACCEPT, "application/octet-stream");
        if from > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let response = tokio::time::timeout(REQUEST_TIMEOUT, request.send())
            .await
            .map_err(|_| ApiError::Unreachable {
                url: shown.clone(),
                reason: format!("no answer in {} s", REQUEST_TIMEOUT.as_secs()),
                tls: false,
            })?
            .map_err(|e| unreachable_error(&shown, &e))?;
        let status = response.status();
        if let Some(trace) = &trace {
            trace.end(&format!("HTTP {}", status.as_u16()));
        }
        if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        Err(ApiError::from_error_body(status.as_u16(), &bytes))
    }

    /// `GET /api/v1/library`
    pub async fn library(&self) -> Result<Doc, ApiError> {
        self.get(&["library"]).await
    }

    /// `PUT /api/v1/library/{name}` with the file streamed as the body. Returns the entry and
    /// whether it is new (201) rather than a replacement (200).
    pub async fn library_put(
        &self,
        name: &str,
        upload: LibraryUpload<'_>,
        body: reqwest::Body,
        length: u64,
    ) -> Result<(Doc, bool), ApiError> {
        let mut url = self.api(&["library", name]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(d) = upload.description {
                query.append_pair("description", d);
            }
            if let Some(p) = upload.parameters_description {
                query.append_pair("parameters_description", p);
            }
            query.append_pair("overwrite", if upload.overwrite { "true" } else { "false" });
        }
        let shown = url.to_string();
        let trace = self
            .tracing()
            .then(|| Trace::start(&Method::PUT, &format!("{shown} ({length} bytes)"), None));
        // No overall time limit: a big file on a slow link takes as long as it takes.
        let request = self
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let (status, doc) = self
            .exchange(
                request,
                &shown,
                trace,
                &[StatusCode::CREATED, StatusCode::OK],
            )
            .await?;
        Ok((doc, status == StatusCode::CREATED))
    }

    /// `DELETE /api/v1/library/{name}` → 204
    pub async fn library_delete(&self, name: &str) -> Result<(), ApiError> {
        self.call(
            Method::DELETE,
            self.api(&["library", name]),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(drop)
    }

    async fn get(&self, segments: &[&str]) -> Result<Doc, ApiError> {
        self.call(
            Method::GET,
            self.api(segments),
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::OK],
        )
        .await
    }

    /// `<base>/api/v1/<segments>`, each segment percent-encoded.
    fn api(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        timeout: Duration,
        expected: &[StatusCode],
    ) -> Result<Doc, ApiError> {
        let shown = url.to_string();
        let trace = self
            .tracing()
            .then(|| Trace::start(&method, &shown, body.as_ref()));
        let mut request = self.request(method, url).timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.exchange(request, &shown, trace, expected)
            .await
            .map(|(_, doc)| doc)
    }

    /// A request with the token and `Accept: application/json`, without a time limit.
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    /// Sends `request` and reads its JSON answer: an error body of the contract becomes
    /// [`ApiError::Api`], a status outside `expected` or a body that is not JSON a protocol error.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        shown: &str,
        trace: Option<Trace>,
        expected: &[StatusCode],
    ) -> Result<(StatusCode, Doc), ApiError> {
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            Ok((status, response.bytes().await?))
        };
        let (status, bytes) = answer.await.map_err(|e: reqwest::Error| {
            let err = unreachable_error(shown, &e);
            if let Some(trace) = &trace {
                trace.end(&err.to_string());
            }
            err
        })?;
        if let Some(trace) = &trace {
            trace.end(&format!("HTTP {}, {} bytes", status.as_u16(), bytes.len()));
        }
        if !status.is_success() {
            return Err(ApiError::from_error_body(status.as_u16(), &bytes));
        }
        if !expected.contains(&status) {
            return Err(ApiError::Protocol(format!(
                "{shown} answered HTTP {status}, expected {}",
                expected
                    .iter()
                    .map(|s| s.as_u16().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        if bytes.is_empty() || status == StatusCode::NO_CONTENT {
            return Ok((status, Doc::Null));
        }
        Doc::parse(&bytes).map(|doc| (status, doc)).map_err(|e| {
            ApiError::Protocol(format!(
                "{shown} answered HTTP {status} with a body that is not JSON ({e}): {}",
                snippet(&bytes)
            ))
        })
    }
}

/// One request in the `trace` of the REPL: a line when it leaves, a line when it is answered.
struct Trace {
    request: String,
    started: Instant,
}

impl Trace {
    fn start(method: &Method, url: &str, body: Option<&serde_json::Value>) -> Trace {
        let request = format!("{method} {url}");
        match body {
            Some(body) => crate::say!("lr: trace: {request} {body}"),
            None => crate::say!("lr: trace: {request}"),
        }
        Trace {
            request,
            started: Instant::now(),
        }
    }

    fn end(&self, outcome: &str) {
        crate::say!(
            "lr: trace: {} -> {outcome} in {} ms",
            self.request,
            self.started.elapsed().as_millis()
        );
    }
}

/// The PEM certificates of a CA file.
fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, ApiError> {
    let pem = std::fs::read(path).map_err(|e| {
        ApiError::Setup(format!(
            "cannot read the CA certificate {}: {e}",
            path.display()
        ))
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        ApiError::Setup(format!(
            "{} is not a PEM certificate bundle: {}",
            path.display(),
            chain(&e)
        ))
    })?;
    if certs.is_empty() {
        return Err(ApiError::Setup(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn unreachable_error(url: &str, err: &reqwest::Error) -> ApiError {
    // reqwest's own layers ("error sending request for url (..)", "client error (Connect)")
    // repeat what the message already says; the causes below them are what the user needs.
    let causes: Vec<String> = chain(err)
        .split(": ")
        .filter(|p| {
            !p.starts_with("error sending request for url")
                && !p.starts_with("client error (")
                && !p.starts_with("error decoding response body")
        })
        .map(str::to_owned)
        .collect();
    let causes = if causes.is_empty() {
        chain(err)
    } else {
        causes.join(": ")
    };
    let reason = if err.is_timeout() {
        format!("no answer in time ({causes})")
    } else {
        causes
    };
    let lower = reason.to_ascii_lowercase();
    let tls = ["certificate", "tls", "handshake", "unknownissuer", "alert"]
        .iter()
        .any(|w| lower.contains(w));
    ApiError::Unreachable {
        url: url.to_owned(),
        reason,
        tls,
    }
}

/// An error and its sources on one line, without repeats: `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(&Endpoint {
            base: Url::parse(base).unwrap(),
            token: None,
            ca_cert: None,
        })
        .unwrap()
    }

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = client("https://lr.example:7601/");
        assert_eq!(
            c.api(&["sessions", "a/b c", "commands"]).as_str(),
            "https://lr.example:7601/api/v1/sessions/a%2Fb%20c/commands"
        );
        let c = client("https://lr.example/prefix");
        assert_eq!(
            c.url(&["healthz"]).as_str(),
            "https://lr.example/prefix/healthz"
        );
    }

    #[test]
    fn command_state_terminality() {
        let parse = |s: &str| -> CommandState { serde_json::from_value(s.into()).unwrap() };
        for s in ["completed", "failed", "cancelled", "timed_out", "rejected"] {
            assert!(parse(s).is_terminal(), "{s}");
            assert_eq!(parse(s).as_str(), s);
        }
        for s in ["queued", "running", "dispatched"] {
            assert!(!parse(s).is_terminal(), "{s}");
        }
    }

    #[test]
    fn command_keeps_the_document() {
        let doc = Doc::parse(
            br#"{"command_id":"c1","command_line":"cd /tmp","state":"completed","output":null,"error":null,"cwd":"/tmp"}"#,
        )
        .unwrap();
        let cmd = Command::from_doc(doc.clone()).unwrap();
        assert_eq!(cmd.cwd.as_deref(), Some("/tmp"));
        assert_eq!(cmd.state, CommandState::Completed);
        assert!(cmd.output().is_null());
        assert_eq!(cmd.doc, doc);
        let missing = Doc::parse(br#"{"state":"completed"}"#).unwrap();
        assert!(matches!(
            Command::from_doc(missing),
            Err(ApiError::Protocol(_))
        ));
    }

    #[test]
    fn error_body_of_the_contract() {
        let err = ApiError::from_error_body(
            409,
            br#"{"error":{"code":"device_offline","message":"device web-07 is offline"}}"#,
        );
        assert_eq!(err.code(), Some("device_offline"));
        assert_eq!(err.to_string(), "device web-07 is offline");
        assert_eq!(err.exit(), Exit::Refused);
        assert!(!err.is_transient());
        let err = ApiError::from_error_body(
            503,
            br#"{"error":{"code":"unavailable","message":"no quorum"}}"#,
        );
        assert!(err.is_transient());
    }
}
