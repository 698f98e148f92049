//! W3C trace context (`traceparent`, `tracestate`) between a span and a carrier: message headers,
//! a message's string map, or a unary gRPC call's metadata ([`Metadata`]).

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
pub use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Writes `span`'s trace context into `carrier`. Writes nothing when spans are not exported
/// (no OpenTelemetry layer) or `span` is not traced.
pub fn inject(span: &Span, carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(&span.context(), carrier);
}

/// `span`'s trace context as a map (empty when it is not traced): what a message field carries.
pub fn context_map(span: &Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    inject(span, &mut map);
    map
}

/// Makes `span` a child of the trace context in `carrier`, when it holds a valid one; otherwise
/// `span` keeps its own parent (or starts a trace). Call it before `span` is entered or asked for
/// its context: a started span's parent cannot change.
pub fn follow(span: &Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when spans are not exported or `span` is disabled: nothing to join then.
        let _ = span.set_parent(parent);
    }
}

/// A unary gRPC call's metadata as a carrier: the caller injects into its request's, the server
/// follows its request's.
pub struct Metadata<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A received call's metadata, read.
pub struct ReceivedMetadata<'a>(pub &'a tonic::metadata::MetadataMap);

impl Extractor for ReceivedMetadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|key| match key {
                tonic::metadata::KeyRef::Ascii(key) => Some(key.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}
