//! A command's trace across nodes: the sending span's W3C trace context goes out in NATS message
//! headers ([`headers`], which [`crate::bus`] adds to everything it sends) and in the agent's
//! messages; a receiver handles what it got in a span that continues that trace.
//!
//! Spans start at the API's `request` span. A message that carries no trace context (spans not
//! exported, or sent outside any traced work: transfer chunks, heartbeats) is handled in no span
//! of its own, so nothing is created for it.

use std::collections::HashMap;

use agent_proto::agent::CommandResult;
use async_nats::HeaderMap;
use tracing::Span;

/// The header carrying the trace (W3C `traceparent`).
const TRACEPARENT: &str = "traceparent";

/// The current span's trace context as NATS headers; `None` when it is not traced.
pub fn headers() -> Option<HeaderMap> {
    let mut headers = Outgoing(HeaderMap::new());
    telemetry::inject(&Span::current(), &mut headers);
    (!headers.0.is_empty()).then_some(headers.0)
}

/// The span a session handles a control request (from an API node) in.
pub fn session_control(message: &async_nats::Message) -> Span {
    match message.headers.as_ref().filter(|h| carries(h)) {
        Some(headers) => follow(tracing::info_span!("session control"), headers),
        None => Span::none(),
    }
}

/// The span a session handles an event (an agent's result, from the device's node) in.
pub fn session_event(message: &async_nats::Message) -> Span {
    match message.headers.as_ref().filter(|h| carries(h)) {
        Some(headers) => follow(tracing::info_span!("session event"), headers),
        None => Span::none(),
    }
}

/// The span a device actor handles a message of its subjects (a session's order) in.
pub fn device_message(message: &async_nats::Message) -> Span {
    match message.headers.as_ref().filter(|h| carries(h)) {
        Some(headers) => follow(tracing::info_span!("device order"), headers),
        None => Span::none(),
    }
}

/// The span a device actor passes an agent's result on in: a child of the agent's span.
pub fn device_result(result: &CommandResult) -> Span {
    if !result.trace_context.contains_key(TRACEPARENT) {
        return Span::none();
    }
    let span = tracing::info_span!("device result");
    telemetry::follow(&span, &result.trace_context);
    span
}

/// The current span's trace context for a message to the agent (empty when it is not traced).
pub fn for_agent() -> HashMap<String, String> {
    telemetry::context_map(&Span::current())
}

/// `span`, made a child of the trace in `headers` (before anything starts it).
fn follow(span: Span, headers: &HeaderMap) -> Span {
    telemetry::follow(&span, &Received(headers));
    span
}

fn carries(headers: &HeaderMap) -> bool {
    headers.get(TRACEPARENT).is_some()
}

/// Headers of a NATS message being sent, taking trace context.
struct Outgoing(HeaderMap);

impl telemetry::Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        // Header values cannot hold line breaks; trace context never does, but a value that
        // did would make async-nats panic.
        if !value.contains(['\r', '\n']) {
            self.0.insert(key, value);
        }
    }
}

/// Headers of a received NATS message, giving trace context.
struct Received<'a>(&'a HeaderMap);

impl telemetry::Extractor for Received<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|value| value.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// HTTP headers as a carrier: an API client's own `traceparent` makes its request's span a
/// child of the client's trace.
pub struct HttpHeaders<'a>(pub &'a axum::http::HeaderMap);

impl telemetry::Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untraced_work_sends_no_headers_and_starts_no_span() {
        assert!(headers().is_none());
        assert!(for_agent().is_empty());
        let result = CommandResult::default();
        assert!(device_result(&result).is_none());
    }
}
