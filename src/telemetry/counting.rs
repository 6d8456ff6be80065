//! Exporter wrappers that count what was actually exported, for the telemetry summary the demo and the CLI
//! print (`TelemetryGuard::export_stats`). Counts are summed over all configured exporters.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::logs::Severity;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use super::records::ATTACHMENT_VERIFICATION;

/// What has been exported successfully so far (summed over exporters), and how many exports failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    pub spans: u64,
    pub log_records: u64,
    /// `AttachmentVerification` records among `log_records`.
    pub verification_records: u64,
    /// Metric exports (one per flush or interval, per exporter).
    pub metric_exports: u64,
    /// Distinct instruments that appeared in a metric export.
    pub instruments: BTreeSet<String>,
    /// Export calls that returned an error (any signal).
    pub failed_exports: u64,
    /// Microsoft Entra failures of the Application Insights exporter: a token the managed identity did not
    /// give, or a post ingestion refused with 401 or 403.
    pub auth_failures: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    spans: AtomicU64,
    log_records: AtomicU64,
    verification_records: AtomicU64,
    metric_exports: AtomicU64,
    instruments: Mutex<BTreeSet<String>>,
    failed_exports: AtomicU64,
    auth_failures: AtomicU64,
}

impl Counters {
    pub(crate) fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ExportStats {
        ExportStats {
            spans: self.spans.load(Ordering::Relaxed),
            log_records: self.log_records.load(Ordering::Relaxed),
            verification_records: self.verification_records.load(Ordering::Relaxed),
            metric_exports: self.metric_exports.load(Ordering::Relaxed),
            instruments: self
                .instruments
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default(),
            failed_exports: self.failed_exports.load(Ordering::Relaxed),
            auth_failures: self.auth_failures.load(Ordering::Relaxed),
        }
    }

    fn result(&self, result: &OTelSdkResult) {
        if result.is_err() {
            self.failed_exports.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Wraps an exporter of any signal and counts its successful exports into shared counters.
pub(crate) struct Counting<E> {
    inner: E,
    counters: Arc<Counters>,
}

impl<E> Counting<E> {
    pub(crate) fn new(inner: E, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }
}

impl<E> fmt::Debug for Counting<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Counting")
    }
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.counters.spans.fetch_add(n, Ordering::Relaxed);
        }
        self.counters.result(&result);
        result
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

impl<E: LogExporter> LogExporter for Counting<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let (n, verifications) = batch.iter().fold((0u64, 0u64), |(n, v), (record, _)| {
            let is_verification = record.event_name() == Some(ATTACHMENT_VERIFICATION);
            (n + 1, v + u64::from(is_verification))
        });
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.counters.log_records.fetch_add(n, Ordering::Relaxed);
            self.counters
                .verification_records
                .fetch_add(verifications, Ordering::Relaxed);
        }
        self.counters.result(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Counting<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let names: Vec<String> = metrics
            .scope_metrics()
            .flat_map(opentelemetry_sdk::metrics::data::ScopeMetrics::metrics)
            .map(|m| m.name().to_owned())
            .collect();
        let result = self.inner.export(metrics).await;
        if result.is_ok() {
            self.counters.metric_exports.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut set) = self.counters.instruments.lock() {
                set.extend(names);
            }
        }
        self.counters.result(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
