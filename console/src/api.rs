//! Typed client of the broker's analyst API (`/api/v1`): one method per endpoint, one error enum.
//!
//! Requests and answers are the types of `api-model`, the contract the broker is built from.
//! Objects the console prints whole are [`Typed`]: the typed value it acts on, and beside it the
//! document as the broker sent it, so tables and JSON keep the broker's field order. Lists are
//! read page after page up to [`MAX_LIST_ITEMS`].
//!
//! Every request is bounded in time. The client knows every API node it was given and sends each
//! request to the one that last answered (sticky); when that node does not answer or answers
//! 502/503/504, the request goes to the next node in turn ([`Nodes`]). Only requests that act
//! once however often they arrive are sent again after they may have reached a node: reads, PUT,
//! PATCH, DELETE, cancels, and the two requests that create something (opening a session,
//! submitting a command), which carry an id the console picks. The other POSTs are sent again
//! only when no connection was made.

use std::future::Future;
use std::ops::Deref;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api_model::{
    ErrorBody, ErrorCode, ErrorDetail, LibraryUpload, MAX_LIMIT, OpenSession, Page, Paging,
    RunCommand, TransferFilter,
};
use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::doc::Doc;
use crate::exit::Exit;

mod admin;
mod audit;
mod nodes;

pub use admin::DeviceGroups;
pub use audit::AuditPage;
use nodes::Nodes;

/// How long to wait for a TCP+TLS connection to a broker node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary (not long-polling) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest long-poll the server honours; asking for more is pointless.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// Slack on top of a long-poll's `wait_ms` for the network and the server's own work.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);
/// Most items of a list the console reads; past them it says the list was cut.
pub const MAX_LIST_ITEMS: usize = 10_000;
/// Attempts of one request at each API node before it fails.
pub const ATTEMPTS_PER_NODE: usize = 3;
/// Pauses between the attempts of one request while API nodes fail: 0.1 s doubling to 2 s
/// (jitter adds up to the delay again, hence the halves). Over three nodes the attempts span
/// 5 to 9 s, more than a session takes to move off a dead node (about 4 s).
const FAILOVER: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(50))
    .with_max_delay(Duration::from_secs(1))
    .with_jitter();

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The broker answered with an error of the contract: `{"error": {"code", "message", ..}}`.
    #[error("{}", detail.message)]
    Api { status: u16, detail: ErrorDetail },
    /// No answer: connection refused, DNS, TLS handshake, timeout, connection dropped.
    #[error("cannot reach the broker at {url}: {reason}")]
    Unreachable {
        url: String,
        reason: String,
        tls: bool,
        /// A connection was made, so the node may have acted on the request.
        sent: bool,
    },
    /// No API node answered: each node's last failure, in the order they were tried.
    #[error("no API node answered: {}", tried.iter().map(|(node, why)| format!("{node} ({why})")).collect::<Vec<_>>().join("; "))]
    NoNode {
        tried: Vec<(String, String)>,
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
            ApiError::Api { status, detail } => Exit::for_api_code(detail.code, *status),
            ApiError::Unreachable { .. } | ApiError::NoNode { .. } | ApiError::Protocol(_) => {
                Exit::Unavailable
            }
            ApiError::Setup(_) => Exit::Usage,
        }
    }

    /// The stable API error code, if the broker sent one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Api { detail, .. } => Some(detail.code),
            _ => None,
        }
    }

    /// Worth retrying an idempotent request: the broker was not reached, had no quorum, or a
    /// gateway in front of it had no node to pass the request to.
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Unreachable { .. } | ApiError::NoNode { .. } => true,
            ApiError::Api { detail, status } => {
                matches!(
                    detail.code,
                    ErrorCode::Unavailable | ErrorCode::SessionMoving
                ) || matches!(status, 502..=504)
            }
            _ => false,
        }
    }

    /// Worth sending again to a node: for a request that would act twice, only when no
    /// connection was made.
    fn worth_another(&self, replay: Replay) -> bool {
        match replay {
            Replay::Safe => self.is_transient(),
            Replay::Unsafe => matches!(self, ApiError::Unreachable { sent: false, .. }),
        }
    }

    /// Parses an error answer; anything outside the contract becomes a protocol error.
    pub fn from_error_body(status: u16, body: &[u8]) -> ApiError {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(body) => ApiError::Api {
                status,
                detail: body.error,
            },
            Err(_) => ApiError::Protocol(format!(
                "HTTP {status} without an error body of the API: {}",
                snippet(body)
            )),
        }
    }
}

/// An error answer: the contract's error, or for 502/503/504 in other words than the
/// contract's, a gateway in front of the brokers saying no node answers it.
fn error_answer(status: StatusCode, body: &[u8], shown: String) -> ApiError {
    let err = ApiError::from_error_body(status.as_u16(), body);
    if matches!(status.as_u16(), 502..=504) && matches!(err, ApiError::Protocol(_)) {
        return ApiError::Unreachable {
            url: shown,
            reason: format!(
                "HTTP {} from something else than a broker: {}",
                status.as_u16(),
                snippet(body)
            ),
            tls: false,
            sent: true,
        };
    }
    err
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

/// An object of the API as the console keeps it: the typed value it acts on, and the document
/// as the broker sent it, which is what gets printed (fields in the broker's order, and fields
/// of a newer broker too). Derefs to the value.
#[derive(Debug, Clone)]
pub struct Typed<T> {
    pub value: T,
    pub doc: Doc,
}

impl<T> Deref for Typed<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

/// The objects of the API, by the name an error about them uses.
pub trait Object: DeserializeOwned {
    const WHAT: &'static str;
}

impl Object for api_model::Command {
    const WHAT: &'static str = "command";
}
impl Object for api_model::Device {
    const WHAT: &'static str = "device";
}
impl Object for api_model::Health {
    const WHAT: &'static str = "health";
}
impl Object for api_model::Readiness {
    const WHAT: &'static str = "readiness";
}
impl Object for api_model::LibraryEntry {
    const WHAT: &'static str = "library entry";
}
impl Object for api_model::Me {
    const WHAT: &'static str = "me";
}
impl Object for api_model::Session {
    const WHAT: &'static str = "session";
}
impl Object for api_model::Transfer {
    const WHAT: &'static str = "transfer";
}

impl<T: Object> Typed<T> {
    /// Reads one JSON object as both the typed value and the document.
    pub fn parse(text: &str) -> Result<Typed<T>, ApiError> {
        let value = serde_json::from_str(text).map_err(|e| {
            ApiError::Protocol(format!("{} object does not match the API: {e}", T::WHAT))
        })?;
        let doc = Doc::parse(text.as_bytes())
            .map_err(|e| ApiError::Protocol(format!("{} object is not JSON: {e}", T::WHAT)))?;
        Ok(Typed { value, doc })
    }

    /// The typed value of a document.
    pub fn from_doc(doc: Doc) -> Result<Typed<T>, ApiError> {
        Typed::parse(&doc.to_compact())
    }
}

/// A command of a session: what the console acts on, and the object to print.
pub type Command = Typed<api_model::Command>;

impl Command {
    /// The command's `output` field (any JSON, or null), in the device's field order.
    pub fn output(&self) -> &Doc {
        static NULL: Doc = Doc::Null;
        self.doc.get("output").unwrap_or(&NULL)
    }
}

/// A whole list, read page after page; `cut` when it held more than [`MAX_LIST_ITEMS`].
#[derive(Debug, Clone)]
pub struct List<T> {
    pub items: Vec<Typed<T>>,
    pub cut: bool,
}

impl<T> List<T> {
    /// The items as the broker sent them, as one array to print.
    pub fn doc(&self) -> Doc {
        Doc::Array(self.items.iter().map(|item| item.doc.clone()).collect())
    }
}

/// A fresh id for a request that creates something: a UUIDv7 (an id of the contract: 36 of
/// `0-9 a-f -`), so the broker can tell a retry from a new request.
fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Appends the fields of a query type of the API (`Paging`, the filters) that are set.
fn append_query(url: &mut Url, params: &impl Serialize) {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(params) else {
        return;
    };
    let pairs: Vec<(String, String)> = fields
        .into_iter()
        .filter_map(|(key, value)| match value {
            serde_json::Value::Null => None,
            serde_json::Value::String(text) => Some((key, text)),
            other => Some((key, other.to_string())),
        })
        .collect();
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
}

/// Whether a request may be sent again after it may have reached a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Twice acts as once: reads, PUT, PATCH, DELETE, a cancel, and the POSTs that carry an
    /// `Idempotency-Key`.
    Safe,
    /// Twice would act twice (a second token): sent again only when no connection was made.
    Unsafe,
}

impl Replay {
    /// A POST without an idempotency key creates or acts anew; every other method is idempotent.
    fn of(method: &Method) -> Replay {
        if *method == Method::POST {
            Replay::Unsafe
        } else {
            Replay::Safe
        }
    }
}

/// The analyst API of one broker deployment, through any of its API nodes.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Shared by clones, so every part of the console stays with the node that answers.
    nodes: Arc<Nodes>,
    token: Option<String>,
    /// The tenant a platform admin acts in: the `LR-Tenant` header of every request.
    tenant: Option<String>,
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
            nodes: Arc::new(Nodes::new(endpoint.base.clone(), Vec::new())),
            token: endpoint.token.clone(),
            tenant: None,
            trace: Arc::default(),
        })
    }

    /// The same client acting in `tenant` (a platform admin's `--tenant`): every request names
    /// it in the `LR-Tenant` header.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Client {
        self.tenant = tenant;
        self
    }

    /// The same client with further API nodes of the same deployment, tried in this order after
    /// the endpoint's when a node does not answer.
    pub fn with_nodes(mut self, more: Vec<Url>) -> Client {
        self.nodes = Arc::new(Nodes::new(self.nodes.first().clone(), more));
        self
    }

    /// Turns the request trace on or off, for this client and its clones.
    pub fn set_trace(&self, on: bool) {
        self.trace.store(on, Ordering::Relaxed);
    }

    pub fn tracing(&self) -> bool {
        self.trace.load(Ordering::Relaxed)
    }

    /// `GET /healthz` (no token needed).
    pub async fn health(&self) -> Result<Typed<api_model::Health>, ApiError> {
        self.get_url(self.url(&["healthz"])).await?.typed()
    }

    /// `GET /readyz` at every API node, in order (no token sent, no failover: each node
    /// answers for itself): the node's URL and its readiness (ready or not), or why it did not
    /// answer.
    pub async fn readiness(&self) -> Vec<(String, Result<Typed<api_model::Readiness>, ApiError>)> {
        let url = self.url(&["readyz"]);
        let mut answers = Vec::with_capacity(self.nodes.count());
        for node in 0..self.nodes.count() {
            let answer = self.readiness_at(self.nodes.at(&url, node)).await;
            answers.push((shown_node(self.nodes.url(node)), answer));
        }
        answers
    }

    /// One node's `/readyz`: 200 and 503 both carry its readiness.
    async fn readiness_at(&self, url: Url) -> Result<Typed<api_model::Readiness>, ApiError> {
        let shown = url.to_string();
        let trace = self
            .tracing()
            .then(|| Trace::start(&Method::GET, &shown, None, None));
        let answer = async {
            let response = self
                .http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await?;
            let status = response.status();
            Ok((status, response.bytes().await?))
        };
        let (status, bytes) = answer.await.map_err(|e: reqwest::Error| {
            let err = unreachable_error(&shown, &e);
            if let Some(trace) = &trace {
                trace.end(&err.to_string());
            }
            err
        })?;
        if let Some(trace) = &trace {
            trace.end(&format!("HTTP {}, {} bytes", status.as_u16(), bytes.len()));
        }
        if matches!(status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE) {
            let answer = Answer {
                status,
                body: bytes.to_vec(),
                shown: shown.clone(),
            };
            if let Ok(readiness) = answer.typed() {
                return Ok(readiness);
            }
        }
        if !status.is_success() {
            return Err(error_answer(status, &bytes, shown));
        }
        Err(ApiError::Protocol(format!(
            "{shown} answered HTTP {status} without a readiness object: {}",
            snippet(&bytes)
        )))
    }

    /// `GET /api/v1/me`: who the token belongs to.
    pub async fn me(&self) -> Result<Typed<api_model::Me>, ApiError> {
        self.get(&["me"]).await?.typed()
    }

    /// `GET /api/v1/devices`, every page.
    pub async fn devices(&self) -> Result<List<api_model::Device>, ApiError> {
        self.list(&["devices"], &api_model::DeviceFilter::default())
            .await
    }

    /// `GET /api/v1/sessions`, every page.
    pub async fn sessions(&self) -> Result<List<api_model::Session>, ApiError> {
        self.list(&["sessions"], &api_model::SessionFilter::default())
            .await
    }

    /// `POST /api/v1/sessions` → 201 (200 when the broker answers a retry with the session the
    /// first attempt opened).
    pub async fn open_session(&self, device: &str) -> Result<Typed<api_model::Session>, ApiError> {
        let body = OpenSession {
            device: device.to_owned(),
            request_id: None,
        };
        self.create(
            self.api(&["sessions"]),
            &body,
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await
    }

    /// `GET /api/v1/sessions/{id}`
    pub async fn session(&self, session: &str) -> Result<Typed<api_model::Session>, ApiError> {
        self.get(&["sessions", session]).await?.typed()
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

    /// `POST /api/v1/sessions/{id}/commands` → 202 with the command (200 when the broker
    /// answers a retry with the command the first attempt submitted).
    pub async fn submit(&self, session: &str, command_line: &str) -> Result<Command, ApiError> {
        let body = RunCommand {
            command_line: command_line.to_owned(),
            command_id: None,
        };
        self.create(
            self.api(&["sessions", session, "commands"]),
            &body,
            &[StatusCode::ACCEPTED, StatusCode::CREATED, StatusCode::OK],
        )
        .await
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
        self.call(
            Method::GET,
            url,
            None,
            wait + LONG_POLL_SLACK,
            &[StatusCode::OK],
        )
        .await?
        .typed()
    }

    /// `GET /api/v1/sessions/{id}/commands`, every page.
    pub async fn commands(&self, session: &str) -> Result<List<api_model::Command>, ApiError> {
        self.list(
            &["sessions", session, "commands"],
            &api_model::CommandFilter::default(),
        )
        .await
    }

    /// `POST /api/v1/sessions/{id}/commands/{cid}/cancel` → 202 with the command.
    /// The broker answers a second cancel with the command as the first left it, so it is
    /// sent again like a read.
    pub async fn cancel(&self, session: &str, command: &str) -> Result<Command, ApiError> {
        self.send(
            Replay::Safe,
            Method::POST,
            self.api(&["sessions", session, "commands", command, "cancel"]),
            None,
            None,
            REQUEST_TIMEOUT,
            &[StatusCode::ACCEPTED, StatusCode::OK],
        )
        .await?
        .typed()
    }

    /// `GET /api/v1/transfers/{id}?wait_ms=N`: long-polls up to `wait` (capped at [`MAX_WAIT`])
    /// for progress or a change of state.
    pub async fn transfer(
        &self,
        transfer: &str,
        wait: Duration,
    ) -> Result<Typed<api_model::Transfer>, ApiError> {
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
        .await?
        .typed()
    }

    /// `GET /api/v1/transfers?session=<id>`: the caller's transfers in a session, every page.
    pub async fn transfers(&self, session: &str) -> Result<List<api_model::Transfer>, ApiError> {
        let filter = TransferFilter {
            session: Some(session.to_owned()),
            ..TransferFilter::default()
        };
        self.list(&["transfers"], &filter).await
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
        self.failover(Replay::Safe, |node| {
            self.content_at(self.nodes.at(&url, node), from)
        })
        .await
    }

    /// One attempt of [`Client::content`] at `url`.
    async fn content_at(&self, url: Url, from: u64) -> Result<reqwest::Response, ApiError> {
        let shown = url.to_string();
        let trace = self.tracing().then(|| {
            Trace::start(
                &Method::GET,
                &format!("{shown} (Range: bytes={from}-)"),
                None,
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
                sent: true,
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
        Err(error_answer(status, &bytes, shown))
    }

    /// `GET /api/v1/library`, every page.
    pub async fn library(&self) -> Result<List<api_model::LibraryEntry>, ApiError> {
        self.list(&["library"], &()).await
    }

    /// `PUT /api/v1/library/{name}` with the file streamed as the body. Returns the entry and
    /// whether it is new (201) rather than a replacement (200).
    pub async fn library_put(
        &self,
        name: &str,
        upload: &LibraryUpload,
        body: reqwest::Body,
        length: u64,
    ) -> Result<(Typed<api_model::LibraryEntry>, bool), ApiError> {
        let mut url = self.api(&["library", name]);
        append_query(&mut url, upload);
        // The streamed body cannot be sent twice: one attempt, at the node in use.
        let url = self.nodes.at(&url, self.nodes.current());
        let shown = url.to_string();
        let trace = self.tracing().then(|| {
            Trace::start(
                &Method::PUT,
                &format!("{shown} ({length} bytes)"),
                None,
                None,
            )
        });
        // No overall time limit: a big file on a slow link takes as long as it takes.
        let request = self
            .request(Method::PUT, url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, length)
            .body(body);
        let answer = self
            .exchange(
                request,
                shown,
                trace,
                &[StatusCode::CREATED, StatusCode::OK],
            )
            .await?;
        Ok((answer.typed()?, answer.status == StatusCode::CREATED))
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

    /// Every item of a list, following `next` page after page, up to [`MAX_LIST_ITEMS`].
    async fn list<T: Object>(
        &self,
        segments: &[&str],
        filter: &impl Serialize,
    ) -> Result<List<T>, ApiError> {
        self.list_up_to(segments, filter, MAX_LIST_ITEMS).await
    }

    /// The first `max` items of a list (at most [`MAX_LIST_ITEMS`]), following `next` page after
    /// page; `cut` when there were more.
    async fn list_up_to<T: Object>(
        &self,
        segments: &[&str],
        filter: &impl Serialize,
        max: usize,
    ) -> Result<List<T>, ApiError> {
        let max = max.clamp(1, MAX_LIST_ITEMS);
        let mut items: Vec<Typed<T>> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = self.api(segments);
            append_query(&mut url, filter);
            append_query(
                &mut url,
                &Paging {
                    limit: Some(max.min(MAX_LIMIT)),
                    after: after.take(),
                },
            );
            let answer = self.get_url(url).await?;
            let page = answer.page()?;
            let empty = page.items.is_empty();
            for item in page.items {
                if items.len() == max {
                    return Ok(List { items, cut: true });
                }
                items.push(Typed::parse(item.get())?);
            }
            match page.next {
                None => return Ok(List { items, cut: false }),
                Some(_) if items.len() == max => return Ok(List { items, cut: true }),
                // Each page but the last brings something, so reading a list always ends.
                Some(next) if empty => {
                    return Err(ApiError::Protocol(format!(
                        "{} answered an empty page with a next cursor ({next})",
                        answer.shown
                    )));
                }
                Some(next) => after = Some(next),
            }
        }
    }

    /// A request that creates something (a session, a command), sent with an
    /// `Idempotency-Key` the console picks once: on a transient failure it is sent again, to
    /// any node, with the same key, and the broker answers what the first attempt created
    /// instead of creating it twice.
    async fn create<T: Object>(
        &self,
        url: Url,
        body: &impl Serialize,
        expected: &[StatusCode],
    ) -> Result<Typed<T>, ApiError> {
        let body = serde_json::to_value(body)
            .map_err(|e| ApiError::Setup(format!("cannot write the request: {e}")))?;
        let key = request_id();
        self.send(
            Replay::Safe,
            Method::POST,
            url,
            Some(body),
            Some(&key),
            REQUEST_TIMEOUT,
            expected,
        )
        .await?
        .typed()
    }

    async fn get(&self, segments: &[&str]) -> Result<Answer, ApiError> {
        self.get_url(self.api(segments)).await
    }

    async fn get_url(&self, url: Url) -> Result<Answer, ApiError> {
        self.call(Method::GET, url, None, REQUEST_TIMEOUT, &[StatusCode::OK])
            .await
    }

    /// `<first node>/api/v1/<segments>`, each segment percent-encoded; [`Client::send`] moves
    /// it to the node it goes to.
    fn api(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.nodes.first().clone();
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
    ) -> Result<Answer, ApiError> {
        self.send(
            Replay::of(&method),
            method,
            url,
            body,
            None,
            timeout,
            expected,
        )
        .await
    }

    /// A request with a JSON body (and an `Idempotency-Key`, for [`Client::create`]), through
    /// [`Client::failover`].
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        replay: Replay,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        key: Option<&str>,
        timeout: Duration,
        expected: &[StatusCode],
    ) -> Result<Answer, ApiError> {
        self.failover(replay, |node| {
            self.send_to(
                method.clone(),
                self.nodes.at(&url, node),
                body.clone(),
                key,
                timeout,
                expected,
            )
        })
        .await
    }

    /// Sends a request to the node in use by `attempt`, which makes one attempt at the node it
    /// is given. On a failure worth another attempt (see [`Replay`]) the next node in turn is
    /// used, after a pause, at most [`ATTEMPTS_PER_NODE`] times per node. Says once when the
    /// console moved to another node; when none answered, the error names each and why.
    async fn failover<T, F, Fut>(&self, replay: Replay, attempt: F) -> Result<T, ApiError>
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let nodes = &self.nodes;
        // Each node's last failure in this request.
        let failures: Mutex<Vec<Option<NodeFailure>>> =
            Mutex::new((0..nodes.count()).map(|_| None).collect());
        // The session's node stopped and another is adopting it: the API node is fine.
        let moving = std::sync::atomic::AtomicBool::new(false);
        let once = || async {
            let node = nodes.current();
            match attempt(node).await {
                Ok(value) => Ok((node, value)),
                Err(err) => {
                    if err.code() == Some(ErrorCode::SessionMoving) {
                        moving.store(true, std::sync::atomic::Ordering::Relaxed);
                    } else if err.worth_another(replay) {
                        nodes.failed(node);
                    }
                    lock(&failures)[node] = Some(NodeFailure::of(&err));
                    Err(err)
                }
            }
        };
        let outcome = once
            .retry(FAILOVER.with_max_times(nodes.count() * ATTEMPTS_PER_NODE - 1))
            .when(|err| err.worth_another(replay))
            .await;
        let failures = std::mem::take(&mut *lock(&failures));
        match outcome {
            Ok((node, value)) => {
                if moving.load(std::sync::atomic::Ordering::Relaxed) {
                    crate::say!("lr: the session moved to another broker node; continuing");
                }
                if let Some(before) = nodes.answered(node) {
                    let why = match &failures[before] {
                        Some(NodeFailure { answered: true, .. }) => "unavailable",
                        _ => "unreachable",
                    };
                    crate::say!(
                        "lr: API node {} is {why}; continuing through {}",
                        shown_node(nodes.url(before)),
                        shown_node(nodes.url(node))
                    );
                }
                Ok(value)
            }
            Err(err) if nodes.count() > 1 && err.worth_another(replay) => Err(ApiError::NoNode {
                tls: failures.iter().flatten().any(|f| f.tls),
                tried: failures
                    .into_iter()
                    .enumerate()
                    .filter_map(|(node, failure)| Some((shown_node(nodes.url(node)), failure?.why)))
                    .collect(),
            }),
            Err(err) => Err(err),
        }
    }

    /// One attempt of a request with a JSON body at `url`.
    async fn send_to(
        &self,
        method: Method,
        url: Url,
        body: Option<serde_json::Value>,
        key: Option<&str>,
        timeout: Duration,
        expected: &[StatusCode],
    ) -> Result<Answer, ApiError> {
        let shown = url.to_string();
        let trace = self.tracing().then(|| {
            let key = key.map(|k| format!("(Idempotency-Key: {k})"));
            Trace::start(&method, &shown, body.as_ref(), key.as_deref())
        });
        let mut request = self.request(method, url).timeout(timeout);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.exchange(request, shown, trace, expected).await
    }

    /// A request with the token and `Accept: application/json`, without a time limit.
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.request_accepting(method, url, "application/json")
    }

    /// A request with the token that accepts the media type `accept`, without a time limit.
    fn request_accepting(&self, method: Method, url: Url, accept: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, accept);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header(TENANT_HEADER, tenant);
        }
        request
    }

    /// Sends `request` and reads its answer: an error body of the contract becomes
    /// [`ApiError::Api`], a status outside `expected` a protocol error.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        shown: String,
        trace: Option<Trace>,
        expected: &[StatusCode],
    ) -> Result<Answer, ApiError> {
        let answer = async {
            let response = request.send().await?;
            let status = response.status();
            Ok((status, response.bytes().await?))
        };
        let (status, bytes) = answer.await.map_err(|e: reqwest::Error| {
            let err = unreachable_error(&shown, &e);
            if let Some(trace) = &trace {
                trace.end(&err.to_string());
            }
            err
        })?;
        if let Some(trace) = &trace {
            trace.end(&format!("HTTP {}, {} bytes", status.as_u16(), bytes.len()));
        }
        if !status.is_success() {
            return Err(error_answer(status, &bytes, shown));
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
        Ok(Answer {
            status,
            body: bytes.to_vec(),
            shown,
        })
    }
}

/// Why an attempt at a node failed, for the message when no node answered.
struct NodeFailure {
    why: String,
    tls: bool,
    /// The node answered (502/503/504): unavailable rather than unreachable.
    answered: bool,
}

impl NodeFailure {
    fn of(err: &ApiError) -> NodeFailure {
        match err {
            ApiError::Unreachable { reason, tls, .. } => NodeFailure {
                why: reason.clone(),
                tls: *tls,
                answered: false,
            },
            ApiError::Api { status, detail } => NodeFailure {
                why: format!("HTTP {status}: {}", detail.message),
                tls: false,
                answered: true,
            },
            other => NodeFailure {
                why: other.to_string(),
                tls: false,
                answered: true,
            },
        }
    }
}

/// A node's base URL as the user wrote it, for messages.
fn shown_node(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// The lock of a failover's record; a panic elsewhere cannot leave it half-written.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The header that makes a retried request answer what the first one did.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header a platform admin names the tenant it acts in with.
pub const TENANT_HEADER: &str = "lr-tenant";

/// A successful answer, read as what the endpoint returns.
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    /// The URL it answers, for messages.
    shown: String,
}

impl Answer {
    /// The body as JSON text; a body that is not JSON is a protocol error.
    fn json(&self) -> Result<&str, ApiError> {
        let not_json = |why: String| {
            ApiError::Protocol(format!(
                "{} answered HTTP {} with a body that is not JSON ({why}): {}",
                self.shown,
                self.status,
                snippet(&self.body)
            ))
        };
        let text = std::str::from_utf8(&self.body).map_err(|e| not_json(e.to_string()))?;
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| not_json(e.to_string()))?;
        Ok(text)
    }

    fn typed<T: Object>(&self) -> Result<Typed<T>, ApiError> {
        Typed::parse(self.json()?)
    }

    /// A page of a list, each item kept as the broker wrote it.
    fn page(&self) -> Result<Page<Box<RawValue>>, ApiError> {
        serde_json::from_str(self.json()?).map_err(|e| {
            ApiError::Protocol(format!(
                "{} answered something else than a page of a list ({e})",
                self.shown
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
    fn start(
        method: &Method,
        url: &str,
        body: Option<&serde_json::Value>,
        note: Option<&str>,
    ) -> Trace {
        let request = format!("{method} {url}");
        let mut line = format!("lr: trace: {request}");
        for part in [body.map(ToString::to_string), note.map(str::to_owned)]
            .into_iter()
            .flatten()
        {
            line.push(' ');
            line.push_str(&part);
        }
        crate::say!("{line}");
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
        // A connect error (refused, DNS, TLS handshake) means the request never left.
        sent: !err.is_connect(),
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
    fn query_of_the_paging_and_filter_types() {
        let c = client("https://lr.example/");
        let mut url = c.api(&["transfers"]);
        append_query(
            &mut url,
            &TransferFilter {
                session: Some("s 1".into()),
                state: Some(api_model::TransferState::Running),
                kind: None,
            },
        );
        append_query(
            &mut url,
            &Paging {
                limit: Some(MAX_LIMIT),
                after: None,
            },
        );
        let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("limit".to_owned(), "1000".to_owned()),
                ("session".to_owned(), "s 1".to_owned()),
                ("state".to_owned(), "running".to_owned()),
            ]
        );
        let mut url = c.api(&["library"]);
        append_query(&mut url, &());
        append_query(&mut url, &api_model::DeviceFilter::default());
        assert_eq!(url.as_str(), "https://lr.example/api/v1/library");
    }

    #[test]
    fn request_ids_are_ids_of_the_contract() {
        let (a, b) = (request_id(), request_id());
        assert_ne!(a, b);
        assert!(
            (1..=64).contains(&a.len())
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn command_state_terminality() {
        use api_model::CommandState;
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
        assert_eq!(cmd.state, api_model::CommandState::Completed);
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
        assert_eq!(err.code(), Some(ErrorCode::DeviceOffline));
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
