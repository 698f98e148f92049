//! The OTLP exporter, reporting its failures in the log: the first one at once, then at most once
//! a minute while they last, and the recovery. (The SDK's own logging is off: it would report
//! every failed batch.)

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// How often a failure that goes on is logged again.
const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Reporting<E> {
    inner: E,
    endpoint: String,
    failing: Mutex<Option<Failing>>,
}

#[derive(Debug)]
struct Failing {
    last_report: Instant,
    /// Spans lost since the last report.
    dropped: usize,
}

impl<E> Reporting<E> {
    pub fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: Mutex::new(None),
        }
    }

    fn note(&self, result: &OTelSdkResult, spans: usize) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let endpoint = &self.endpoint;
        match (result, failing.as_mut()) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => {
                tracing::info!(%endpoint, dropped = f.dropped, "spans are exported again");
                *failing = None;
            }
            (Err(error), None) => {
                tracing::warn!(
                    %endpoint, %error, dropped = spans,
                    "cannot export spans; they are dropped until the collector takes them (said again every minute while it lasts)"
                );
                *failing = Some(Failing {
                    last_report: Instant::now(),
                    dropped: 0,
                });
            }
            (Err(error), Some(f)) => {
                f.dropped += spans;
                if f.last_report.elapsed() >= REPORT_EVERY {
                    tracing::warn!(%endpoint, %error, dropped = f.dropped, "spans are still not exported");
                    f.last_report = Instant::now();
                    f.dropped = 0;
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let spans = batch.len();
        async move {
            let result = self.inner.export(batch).await;
            self.note(&result, spans);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
