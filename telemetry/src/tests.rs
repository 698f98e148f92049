use std::collections::HashMap;

use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use super::*;

#[test]
fn endpoints_are_plain_http_with_a_port() {
    for good in [
        "http://127.0.0.1:4317",
        "http://collector.local:4317/",
        "http://[::1]:4317",
    ] {
        assert_eq!(check_endpoint(good), Ok(()), "{good}");
    }
    for (bad, says) in [
        ("127.0.0.1:4317", "not an http:// URL"),
        ("not a url", "not an http:// URL"),
        ("https://collector:4317", "https is not supported"),
        ("http://collector", "no port"),
        ("http://:4317", "no usable host"),
        ("http://::1:4317", "no usable host"),
        ("http://collector:0", "bad port"),
        ("http://collector:70000", "bad port"),
        (
            "http://collector:4317/v1/traces",
            "only the collector's scheme, host and port",
        ),
    ] {
        let error = check_endpoint(bad).unwrap_err();
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn nothing_is_injected_without_an_exporter() {
    let span = tracing::info_span!("untraced");
    assert!(context_map(&span).is_empty());
}

/// A span that follows a carrier joins its trace as a child; one that follows an empty carrier
/// starts its own. Nothing needs to reach a collector for this.
#[tokio::test]
async fn a_span_following_a_carrier_joins_its_trace() {
    let export = Export {
        // Nothing listens there: export fails quietly in the background.
        endpoint: "http://127.0.0.1:9".into(),
        service: "lr-test",
        attributes: Vec::new(),
        schedule_delay: None,
    };
    let (layer, telemetry) = layer(&export).unwrap();
    assert!(telemetry.exporting());
    let subscriber = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(subscriber, || {
        let sender = tracing::info_span!(target: "broker::test", "send");
        let carrier = context_map(&sender);
        assert!(carrier.contains_key("traceparent"), "{carrier:?}");
        let sent = sender.context().span().span_context().clone();

        let receiver = tracing::info_span!(target: "agent::test", "receive");
        follow(&receiver, &carrier);
        let received = receiver.context().span().span_context().clone();
        assert_eq!(received.trace_id(), sent.trace_id());
        assert_ne!(received.span_id(), sent.span_id());

        // The same through a unary gRPC call's metadata.
        let mut metadata = tonic::metadata::MetadataMap::new();
        inject(&sender, &mut Metadata(&mut metadata));
        let called = tracing::info_span!(target: "cluster::test", "called");
        follow(&called, &ReceivedMetadata(&metadata));
        let called = called.context().span().span_context().clone();
        assert_eq!(called.trace_id(), sent.trace_id());

        let alone = tracing::info_span!(target: "agent::test", "alone");
        follow(&alone, &HashMap::<String, String>::new());
        let own = alone.context().span().span_context().clone();
        assert!(own.is_valid());
        assert_ne!(own.trace_id(), sent.trace_id());

        // Other crates' spans (the gRPC client's, say) are not exported, so carry no context.
        let library = tracing::info_span!(target: "h2::proto", "poll");
        assert!(context_map(&library).is_empty());
    });
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .unwrap();
}
