//! Every API request's id, span, access log line and counters, in one middleware.
//!
//! The id comes from the client's `x-request-id` when it is a plain token (so a caller's own
//! trace id carries through), else it is a fresh UUIDv7; it goes back in the response's
//! `x-request-id` and into a span around the request, so every line logged while handling it
//! carries it; the span starts the trace of what the request causes on other nodes, or continues
//! the client's when it sends a W3C `traceparent`. Routes are named by their template
//! (`/api/v1/sessions/{id}`), never the raw path: ids in a path would make a metric label per
//! session and leak into logs' cardinality.
//! Headers are not logged: the bearer token stays out of the log. A streamed answer (a command's
//! events) is logged and timed when its head is sent; the stream itself runs on past the line.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The header carrying a request's id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest client-chosen request id kept; a longer one is replaced.
const MAX_ID_LEN: usize = 128;
/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// Runs a request inside its span, then logs and counts it.
pub async fn middleware(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(request.headers());
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let span = tracing::info_span!("request", request_id = %id, method, route = %route);
    // A client's own trace context makes this request part of its trace.
    telemetry::follow(&span, &crate::trace::HttpHeaders(request.headers()));
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            duration_ms = elapsed.as_micros() as f64 / 1000.0,
            "api request"
        );
    });
    metrics::counter!(
        "lr_api_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status.as_str().to_owned()
    )
    .increment(1);
    metrics::histogram!("lr_api_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The client's id when it is a plain token, else a fresh one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane(id))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// 1 to 128 characters of letters, digits and `-_.:+=/`: nothing that could forge a log line
/// or a header.
fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+=/".contains(&b))
}

/// The method as a label; any method outside HTTP's own is `OTHER`, so a client cannot add
/// labels.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(id: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, HeaderValue::from_str(id).unwrap());
        headers
    }

    #[test]
    fn a_plain_client_id_is_kept() {
        for id in ["abc-123", "4bf92f3577b34da6a3ce929d0e0e4736", "req_1.2:3"] {
            assert_eq!(request_id(&with(id)), id);
        }
    }

    #[test]
    fn a_missing_or_odd_client_id_is_replaced_by_a_uuid() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        for headers in [
            HeaderMap::new(),
            with(""),
            with("has space"),
            with("quote\"d"),
            with(&long),
        ] {
            let id = request_id(&headers);
            let uuid = uuid::Uuid::parse_str(&id).expect("a uuid");
            assert_eq!(uuid.get_version_num(), 7);
        }
    }

    #[test]
    fn methods_outside_http_are_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "OTHER");
    }
}
