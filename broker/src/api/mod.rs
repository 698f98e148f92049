//! The analyst API: REST + Server-Sent Events over HTTPS, JSON everywhere, bearer tokens.
//!
//! Every request and response is a type of the `api-model` crate; every handler carries its
//! `#[utoipa::path]`, and [`routes`] registers handlers and their documentation together, so the
//! OpenAPI document served at `/api/v1/openapi.json` (and as a page at `/api/v1/docs`) is
//! generated, never written by hand.

mod access_log;
mod admin;
mod audit;
mod auth;
mod body;
mod commands;
mod devices;
mod doc;
mod enrolment;
mod error;
mod library;
mod listener;
mod page;
mod ready;
mod sessions;
mod transfers;

use std::sync::Arc;
use std::time::Duration;

use agent_proto::bus::envelope::Body;
use agent_proto::bus::session_reply::Body as Reply;
use agent_proto::bus::session_request::Op;
use agent_proto::bus::{SessionReply, SessionRequest};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use cluster::LeaseService;
use ractor::ActorCell;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::{Caller, LastUse, TENANT_HEADER, sha256_hex};
pub use error::ApiError;
pub use listener::{Limits, serve_https};

use crate::bus::{self, Bus};
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
    /// When this node last recorded each token's use.
    pub last_use: LastUse,
    /// Whether the directory is bootstrapped and matches this node's configuration.
    pub directory: tokio::sync::watch::Receiver<crate::directory::Readiness>,
    /// The CAs enrolment tokens name.
    pub issuer: std::sync::Arc<crate::agents::enrolment::Issuer>,
    /// Whether the agent listener still serves; its task clears this when the server ends.
    pub agents_serving: Arc<std::sync::atomic::AtomicBool>,
    /// Whether this node may act for its sessions.
    pub liveness: crate::liveness::Liveness,
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

    fn session_context(&self) -> crate::actors::session::SessionContext {
        crate::actors::session::SessionContext {
            node_id: self.node_id,
            bus: self.bus.clone(),
            leases: self.leases.clone(),
            settings: self.settings.clone(),
            transfers: self.transfers.clone(),
            supervisor: self.sessions.clone(),
            liveness: self.liveness.clone(),
        }
    }

    /// Allows a request that needs `role` on `device`: at once for a role held on every device,
    /// otherwise by the device's groups (from its id and hostname).
    async fn require_on_device(
        &self,
        caller: &Caller,
        role: access::Role,
        device: &str,
    ) -> Result<(), ApiError> {
        if caller.require(role).is_ok() || !access::allows_somewhere(&caller.roles, role) {
            return caller.require(role);
        }
        let (hostname, tags) = match self.registry.get(&caller.tenant, device).await {
            Ok(Some(record)) => (record.hostname, record.tags),
            _ => (String::new(), Vec::new()),
        };
        let groups = self
            .leases
            .with_local_directory(|d| d.groups_of(&caller.tenant, device, &hostname, &tags))
            .await;
        caller.require_on(role, device, &groups)
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
            })) => Err(ApiError::from_code(e.code(), e.message)),
            Ok(Body::SessionReply(SessionReply { body: Some(reply) })) => Ok(reply),
            Ok(_) => Err(ApiError::unavailable(
                "unexpected answer from the session's node; retry",
            )),
            Err(error) => {
                // A live lease without an actor answering: its node died or is cut off, and
                // another node is taking the session over.
                match self.leases.get(&caller.tenant, session).await {
                    Ok(Some(lease)) if lease.user == caller.user => Err(ApiError::new(
                        api_model::ErrorCode::SessionMoving,
                        format!(
                            "session {session}'s node {} is not answering ({error}); another node takes the session over within seconds; retry",
                            lease.node
                        ),
                    )),
                    Ok(_) => Err(missing()),
                    Err(e) => Err(ApiError::unavailable(format!(
                        "the session's node did not answer ({error}) and the lease authority cannot say where it is ({e}); retry"
                    ))),
                }
            }
        }
    }
}

/// Paths served beside the documented operations: the document itself and its page.
pub const UNDOCUMENTED: [&str; 2] = ["/api/v1/openapi.json", "/api/v1/docs"];

/// Every documented operation, and the document generated from them.
pub fn routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    // The library's own size limit applies while an upload streams in.
    let (schemas, paths, library_file) = routes!(library::upload, library::delete);
    let library_file = (
        schemas,
        paths,
        library_file.layer(DefaultBodyLimit::disable()),
    );
    let (router, mut document) = OpenApiRouter::with_openapi(doc::frame())
        .routes(routes!(devices::health))
        .routes(routes!(ready::ready))
        .routes(routes!(devices::me))
        .routes(routes!(devices::list))
        .routes(routes!(sessions::list, sessions::open))
        .routes(routes!(sessions::describe, sessions::end))
        .routes(routes!(commands::list, commands::run))
        .routes(routes!(commands::get))
        .routes(routes!(commands::cancel))
        .routes(routes!(commands::events))
        .routes(routes!(transfers::list))
        .routes(routes!(transfers::get, transfers::cancel))
        .routes(routes!(transfers::content))
        .routes(routes!(library::list))
        .routes(library_file)
        .routes(routes!(admin::list_tenants, admin::create_tenant))
        .routes(routes!(
            admin::get_tenant,
            admin::update_tenant,
            admin::remove_tenant
        ))
        .routes(routes!(admin::get_settings, admin::update_settings))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(
            admin::get_user,
            admin::update_user,
            admin::remove_user
        ))
        .routes(routes!(admin::list_tokens, admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::list_groups))
        .routes(routes!(
            admin::get_group,
            admin::put_group,
            admin::remove_group
        ))
        .routes(routes!(admin::device_groups))
        .routes(routes!(audit::list))
        .routes(routes!(audit::output))
        .routes(routes!(audit::verify))
        .routes(routes!(enrolment::list_tokens, enrolment::create_token))
        .routes(routes!(enrolment::revoke_token))
        .routes(routes!(enrolment::list_devices))
        .routes(routes!(enrolment::get_device))
        .routes(routes!(enrolment::revoke_device))
        .routes(routes!(enrolment::allow_reenrolment))
        .split_for_parts();
    doc::finish(&mut document);
    (router, document)
}

pub fn router(state: ApiState) -> Router {
    let (router, document) = routes();
    router
        .merge(SwaggerUi::new(UNDOCUMENTED[1]).url(UNDOCUMENTED[0], document))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::refusals,
        ))
        // Outermost: the request's span covers everything below, refusals included.
        .layer(axum::middleware::from_fn(access_log::middleware))
        .with_state(state)
}

async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/openapi.json, or /api/v1/docs to read it")
}

#[cfg(test)]
mod tests {
    /// `routes!` registers a handler with its `#[utoipa::path]`; a plain `.route(` would serve a
    /// path the document does not name. (That every documented path is served is checked on a
    /// live broker in `tests/api_contract.rs`.)
    #[test]
    fn routes_are_only_added_with_their_documentation() {
        let source = include_str!("mod.rs");
        let start = source.find("pub fn routes()").unwrap();
        let end = source.find("#[cfg(test)]").unwrap();
        let code = &source[start..end];
        assert!(
            !code.contains(concat!(".route", "(")),
            "a route without documentation"
        );
        assert!(
            !code.contains(concat!(".nest", "(")),
            "a nested router without documentation"
        );
        let (_, document) = super::routes();
        let operations: usize = document
            .paths
            .paths
            .values()
            .map(|item| {
                [&item.get, &item.put, &item.post, &item.patch, &item.delete]
                    .iter()
                    .filter(|op| op.is_some())
                    .count()
            })
            .sum();
        assert_eq!(operations, 50, "{:?}", document.paths.paths.keys());
    }
}
