//! The analyst API: REST + Server-Sent Events over HTTPS, JSON everywhere, bearer tokens.
//! `openapi.json` beside this file documents it and is served at `/api/v1/openapi.json`.

mod auth;
mod error;
mod handlers;
mod library;
mod serve;
mod transfers;

use std::sync::Arc;
use std::time::Duration;

use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{SessionReply, SessionRequest};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use cluster::LeaseService;
use ractor::ActorCell;

pub use auth::{Caller, Tokens, sha256_hex};
pub use error::ApiError;
pub use serve::serve_https;

use crate::bus::{self, Bus, BusError};
use crate::config::SessionsSection;
use crate::registry::DeviceRegistry;
use crate::transfer::TransferContext;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long a request to a session's node may take.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct ApiState(Arc<Inner>);

pub struct Inner {
    pub node_id: u64,
    pub bus: Bus,
    pub registry: DeviceRegistry,
    pub leases: LeaseService,
    pub settings: SessionsSection,
    pub sessions: ActorCell,
    pub transfers: TransferContext,
    pub tokens: Tokens,
    /// True once the configured tenant limits are in the replicated state.
    pub limits_applied: tokio::sync::watch::Receiver<bool>,
}

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl ApiState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Sends a request to the session's actor, wherever it runs.
    async fn control(&self, caller: &Caller, session: &str, op: Op) -> Result<Reply, ApiError> {
        let missing = || {
            ApiError::not_found(format!(
                "no live session {session}; it never existed, was ended, or expired"
            ))
        };
        ids::session(session)?;
        let request = Body::SessionRequest(SessionRequest {
            user: caller.user.clone(),
            op: Some(op),
        });
        let subject = bus::session_ctl(&caller.tenant, session);
        match self
            .bus
            .request(subject, &caller.tenant, request, CONTROL_TIMEOUT)
            .await
        {
            Ok(Body::SessionReply(SessionReply {
                body: Some(Reply::Error(e)),
            })) => Err(ApiError::from_code(&e.code, e.message)),
            Ok(Body::SessionReply(SessionReply { body: Some(reply) })) => Ok(reply),
            Ok(_) => Err(ApiError::unavailable(
                "unexpected answer from the session's node; retry",
            )),
            Err(BusError::NoResponders(_)) => Err(missing()),
            Err(e) => Err(ApiError::unavailable(format!(
                "the session's node did not answer: {e}; retry"
            ))),
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(handlers::health))
        .route("/api/v1/openapi.json", get(handlers::openapi))
        .route("/api/v1/devices", get(handlers::list_devices))
        .route(
            "/api/v1/sessions",
            get(handlers::list_sessions).post(handlers::open_session),
        )
        .route(
            "/api/v1/sessions/{id}",
            get(handlers::describe_session).delete(handlers::end_session),
        )
        .route(
            "/api/v1/sessions/{id}/commands",
            get(handlers::list_commands).post(handlers::run_command),
        )
        .route(
            "/api/v1/sessions/{id}/commands/{cid}",
            get(handlers::get_command),
        )
        .route(
            "/api/v1/sessions/{id}/commands/{cid}/cancel",
            post(handlers::cancel_command),
        )
        .route(
            "/api/v1/sessions/{id}/events",
            get(handlers::session_events),
        )
        .route("/api/v1/transfers", get(transfers::list))
        .route(
            "/api/v1/transfers/{id}",
            get(transfers::get).delete(transfers::cancel),
        )
        .route("/api/v1/transfers/{id}/content", get(transfers::content))
        .route("/api/v1/library", get(library::list))
        .route(
            "/api/v1/library/{name}",
            // The library's own size limit applies while the upload streams in.
            put(library::upload)
                .layer(DefaultBodyLimit::disable())
                .delete(library::delete),
        )
        .fallback(handlers::no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
