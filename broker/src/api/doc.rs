//! The OpenAPI document's frame: title, tags, the bearer scheme, and the errors every operation
//! can answer. The operations themselves come from the handlers' `#[utoipa::path]` annotations,
//! gathered as the router is built (see [`super::routes`]), so the document cannot miss a route.

use api_model::{ErrorBody, ErrorCode};
use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Response, ResponseBuilder};

/// The name of the bearer-token scheme in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Live response API",
        version = "1",
        description = "Open an audited session to an endpoint, run live response commands on it, \
            and move files to and from it. Every request but `/healthz` carries \
            `Authorization: Bearer <token>`; the token names the tenant and analyst, and every \
            object of another tenant or analyst answers exactly like a missing one. Every failure \
            answers `{\"error\": {\"code\", \"message\", ...}}` with a stable `code` (see \
            `ErrorCode`). Lists answer `{\"items\": [...], \"next\": <cursor or null>}`: pass \
            `after=<next>` for the next page.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "cluster", description = "The node answering and its view of the cluster"),
        (name = "analysts", description = "Who the caller is"),
        (name = "devices", description = "Endpoints whose agents have connected"),
        (name = "sessions", description = "Live response sessions: one analyst on one device"),
        (name = "commands", description = "Commands of a session and their live stream"),
        (name = "transfers", description = "Files from devices (getfile) and to them (putfile)"),
        (name = "library", description = "The tenant's library of files for putfile and run"),
        (name = "admin", description = "Tenants (platform admins); a tenant's settings, users, tokens, device groups, enrolment tokens and enrolled devices (tenant admins)"),
        (name = "audit", description = "The tenant's audit log: every session, command, transfer and change, as a hash chain (read-only)"),
    ),
    components(schemas(ErrorBody, ErrorCode))
)]
struct Frame;

/// The frame, before the routes add their operations.
pub fn frame() -> utoipa::openapi::OpenApi {
    let mut doc = Frame::openapi();
    let scheme = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .description(Some("An analyst's API token"))
        .build();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    doc.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    doc
}

/// Adds to every operation the errors any request can meet, unless it names them itself.
pub fn finish(doc: &mut utoipa::openapi::OpenApi) {
    let common = [
        (
            "400",
            "`invalid_request`: a malformed id, body, query or header; `rule` says what is allowed",
        ),
        (
            "401",
            "`unauthorized`: no bearer token, or one this cluster does not know",
        ),
        ("500", "`internal`: a fault in the broker"),
        (
            "503",
            "`unavailable`: the cluster cannot answer now (no leader, a node unreachable); retry",
        ),
    ];
    for item in doc.paths.paths.values_mut() {
        for operation in operations(item) {
            let public = operation
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(is_empty));
            for (status, description) in common {
                if public && status == "401" {
                    continue;
                }
                operation
                    .responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description));
            }
        }
    }
}

fn is_empty(requirement: &SecurityRequirement) -> bool {
    requirement == &SecurityRequirement::default()
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn error_response(description: &str) -> RefOr<Response> {
    let body = ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
        .build();
    ResponseBuilder::new()
        .description(description)
        .content("application/json", body)
        .build()
        .into()
}
