//! Tracing for the `lr-broker` and `lr-agent` binaries: log lines on stderr, and, only when an
//! OTLP endpoint is configured, the same `tracing` spans exported over OTLP/gRPC; W3C trace
//! context written into and read from what carries a command between processes ([`inject`],
//! [`follow`]: NATS headers, the agent stream's messages).
//!
//! Without an endpoint no OpenTelemetry layer is installed: spans cost what `tracing` costs, and
//! [`inject`] writes nothing. With one, spans leave through a batch processor on a thread of its
//! own: a span ending only queues it (dropped when the queue is full), so a slow or unreachable
//! collector never holds up the work being traced.
#![forbid(unsafe_code)]

mod endpoint;
mod export;
mod propagate;

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use endpoint::check_endpoint;
pub use opentelemetry::KeyValue;
pub use propagate::{Extractor, Injector, Metadata, ReceivedMetadata, context_map, follow, inject};

/// Crates whose spans are exported. An allowlist: the gRPC, HTTP and NATS libraries' own spans
/// would include the exporter's calls, which would then export themselves without end.
const TRACED: [&str; 3] = ["broker", "agent", "cluster"];

/// Where spans go and whose they are.
#[derive(Debug, Clone)]
pub struct Export {
    /// The collector, `http://host:port` (see [`check_endpoint`]).
    pub endpoint: String,
    /// `service.name`: `lr-broker` or `lr-agent`.
    pub service: &'static str,
    /// More resource attributes naming this process (`service.instance.id`, the node or device).
    pub attributes: Vec<KeyValue>,
    /// How long ended spans wait to be sent together; `None`: `OTEL_BSP_SCHEDULE_DELAY` (ms), else
    /// 5 s.
    pub schedule_delay: Option<Duration>,
}

/// The exporting half, kept until the process ends; [`Telemetry::shutdown`] sends what is queued.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// How long [`Telemetry::shutdown`] waits for the last spans to be sent.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Sends the spans still queued (waiting at most 5 s) and stops exporting. Blocks: call it
    /// off the async runtime's workers (`spawn_blocking`), while the runtime still runs, since
    /// the gRPC channel lives on it.
    pub fn shutdown(mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(%error, "spans still queued at exit were not all sent");
        }
    }

    /// Sends the spans ended so far now rather than at the next scheduled batch.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }
}

/// The OpenTelemetry layer for `export`, filtered to this product's crates, and its handle. Must
/// be called inside a Tokio runtime (the gRPC channel is created on it, connecting lazily).
pub fn layer<S>(
    export: &Export,
) -> Result<(Box<dyn Layer<S> + Send + Sync + 'static>, Telemetry), String>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    check_endpoint(&export.endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(export.endpoint.clone())
        .build()
        .map_err(|e| format!("cannot set up the exporter to {}: {e}", export.endpoint))?;
    let exporter = export::Reporting::new(exporter, export.endpoint.clone());
    let mut batch = BatchConfigBuilder::default();
    if let Some(delay) = export.schedule_delay {
        batch = batch.with_scheduled_delay(delay);
    }
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch.build())
        .build();
    let resource = Resource::builder()
        .with_service_name(export.service)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attributes(export.attributes.iter().cloned())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer(export.service);
    let targets = Targets::new().with_targets(TRACED.map(|t| (t, LevelFilter::INFO)));
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(targets)
        .boxed();
    Ok((
        layer,
        Telemetry {
            provider: Some(provider),
        },
    ))
}

/// Installs the process's subscriber: log lines on stderr (`json`: one object a line) filtered by
/// `filter`, and spans exported as `export` says when it is given. Must be called inside a Tokio
/// runtime when `export` is given.
pub fn init(json: bool, filter: EnvFilter, export: Option<&Export>) -> Result<Telemetry, String> {
    // Logs go to stderr (journald, container logs); colours only for a person at a terminal.
    let ansi = std::io::stderr().is_terminal();
    let Some(export) = export else {
        // No exporter: exactly the subscriber of a build without tracing export.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        if json {
            builder.json().init();
        } else {
            builder.init();
        }
        return Ok(Telemetry::default());
    };
    let (otel, telemetry) = layer(export)?;
    // The log filter applies to log lines only: `LR_LOG=warn` must not empty the traces.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let fmt = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    tracing_subscriber::registry().with(fmt).with(otel).init();
    Ok(telemetry)
}

#[cfg(test)]
mod tests;
