//! One OpenTelemetry setup for the handler: resource, exporters (OTLP over http/protobuf, http/json or gRPC;
//! Application Insights), the tracing subscriber (JSON logs on stdout always, plus the OTel span and log
//! bridges when an exporter is configured), metric instruments, the `AttachmentVerification` log record, span
//! helpers, and a bounded flush that never fails an invocation.
//!
//! The contract (names of metrics, attributes, records, spans) is documented in docs/telemetry.md.

mod app_insights;
pub mod config;
mod counting;
mod entra;
pub mod metrics;
mod records;
mod resource;
mod scrub;

pub use resource::{ProcessInfo, build_resource};

use std::sync::{Arc, mpsc};
use std::time::Duration;

use azure_core::credentials::TokenCredential;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use config::{
    AppInsightsAuth, AppInsightsConnectionString, OtlpConfig, OtlpProtocol, OtlpSignalConfig,
    Signal, TelemetryConfig, TelemetryConfigError, redact_url,
};
pub use counting::ExportStats;
pub use metrics::{AssignmentOutcome, EventOutcomeLabel, Metrics, RunOutcomeLabel, status_class};
pub use records::{
    ATTACHMENT_VERIFICATION, REGISTRY_VERIFICATION, RegistrySummary, Trigger, invocation_span,
    pair_span, record_invocation_result, record_timer,
};

/// Targets whose own events must not be fed back into the OTel log/span bridges (an exporter logging about
/// its export would export that log, and so on).
const EXPORTER_TARGETS_OFF: &str = "opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,\
opentelemetry_http=off,opentelemetry_application_insights=off,hyper=off,hyper_util=off,reqwest=off,h2=off,\
tonic=off,tower=off,rustls=off,acr_autoattach::telemetry::entra=off";

/// The verification records (`AttachmentVerification`, `RegistryVerification`) are the product's output, not
/// diagnostics: a quieter `RUST_LOG` (say `warn`) must not silence them, nor the invocation spans.
const RECORDS_ALWAYS_ON: &str = "acr_autoattach::telemetry::records=info";

fn is_exporter_target(target: &str) -> bool {
    EXPORTER_TARGETS_OFF.split(',').any(|directive| {
        let name = directive.trim().trim_end_matches("=off");
        // Prefix match, as EnvFilter directives do (`opentelemetry` also covers `opentelemetry-otlp`).
        target.starts_with(name)
    })
}

/// How often metrics are exported between flushes. Every invocation flushes anyway, so this only matters for
/// a long-running process.
const METRIC_EXPORT_INTERVAL: Duration = Duration::from_mins(1);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] TelemetryConfigError),
    /// `detail` is scrubbed of every configured secret before it is stored.
    #[error("building the {exporter} {signal} exporter failed: {detail}")]
    Exporter {
        exporter: &'static str,
        signal: &'static str,
        detail: String,
    },
    #[error("building the HTTP client for telemetry export failed: {0}")]
    HttpClient(String),
    #[error("starting the runtime for the gRPC exporter failed: {0}")]
    Runtime(String),
    #[error("a global tracing subscriber is already installed")]
    SubscriberAlreadySet,
}

/// The providers behind a running telemetry setup. Dropping it shuts them down; call [`TelemetryGuard::flush`]
/// before each invocation answers and [`TelemetryGuard::shutdown`] on exit.
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    metrics: Metrics,
    flush_timeout: Duration,
    // Owns the runtime the gRPC channel's connection task runs on (the SDK exports from its own threads).
    grpc_runtime: Option<tokio::runtime::Runtime>,
    counters: std::sync::Arc<counting::Counters>,
    info: ProcessInfo,
    /// The Microsoft Entra token source of the Application Insights exporter, when it authenticates so.
    entra: Option<Arc<entra::EntraAuth>>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("traces", &self.tracer_provider.is_some())
            .field("metrics", &self.meter_provider.is_some())
            .field("logs", &self.logger_provider.is_some())
            .field("flush_timeout", &self.flush_timeout)
            .finish_non_exhaustive()
    }
}

/// What a flush achieved. Informational only: telemetry never fails an invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// False when the bounded wait ran out; the export continues in the background.
    pub completed: bool,
    /// Export errors (already free of configured secrets).
    pub errors: Vec<String>,
}

impl TelemetryGuard {
    /// The metric instruments, bound to this setup's meter provider (no-op without a metrics exporter).
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// The process the resource describes (the function app's name and id, for the invocation spans).
    pub fn process_info(&self) -> &ProcessInfo {
        &self.info
    }

    /// What the exporters have delivered so far: the telemetry summary the demo and the CLI print.
    pub fn export_stats(&self) -> ExportStats {
        self.counters.snapshot()
    }

    /// Pushes every buffered span, metric and log record to the exporters, waiting at most the configured
    /// flush timeout. Blocking: from async code call [`TelemetryGuard::flush_async`] instead.
    pub fn flush(&self) -> FlushReport {
        self.run_bounded(false)
    }

    /// [`TelemetryGuard::flush`] off the async worker threads.
    pub async fn flush_async(&self) -> FlushReport {
        let providers = self.providers();
        let timeout = self.flush_timeout;
        match tokio::task::spawn_blocking(move || run_bounded(providers, timeout, false)).await {
            Ok(report) => report,
            Err(_) => FlushReport {
                completed: false,
                errors: vec!["flush task did not finish".to_owned()],
            },
        }
    }

    /// Flushes and stops the exporters (bounded like `flush`).
    pub fn shutdown(mut self) -> FlushReport {
        let report = self.run_bounded(true);
        self.tracer_provider = None;
        self.meter_provider = None;
        self.logger_provider = None;
        report
    }

    /// The dispatcher of `subscriber`, also handed to the Entra token source so that its warnings, logged from
    /// the SDK's export threads, reach this setup's log lines.
    fn dispatch<S>(&self, subscriber: S) -> tracing::Dispatch
    where
        S: tracing::Subscriber + Send + Sync + 'static,
    {
        let dispatch = tracing::Dispatch::new(subscriber);
        if let Some(entra) = &self.entra {
            entra.log_to(&dispatch);
        }
        dispatch
    }

    fn providers(&self) -> Providers {
        Providers {
            traces: self.tracer_provider.clone(),
            metrics: self.meter_provider.clone(),
            logs: self.logger_provider.clone(),
        }
    }

    fn run_bounded(&self, shutdown: bool) -> FlushReport {
        run_bounded(self.providers(), self.flush_timeout, shutdown)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(rt) = self.grpc_runtime.take() {
            // `shutdown_background` is the one way to drop a runtime that is allowed inside async code.
            rt.shutdown_background();
        }
    }
}

#[derive(Clone)]
struct Providers {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
    logs: Option<SdkLoggerProvider>,
}

/// Runs the flush (or shutdown) on its own thread so the caller waits at most `timeout`; a slow or dead
/// backend then costs one timeout, never the invocation.
fn run_bounded(providers: Providers, timeout: Duration, shutdown: bool) -> FlushReport {
    if providers.traces.is_none() && providers.metrics.is_none() && providers.logs.is_none() {
        return FlushReport {
            completed: true,
            errors: Vec::new(),
        };
    }
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("telemetry-flush".to_owned())
        .spawn(move || {
            let mut errors = Vec::new();
            // Spans first: their end may still add log records and metric points.
            if let Some(p) = &providers.traces {
                let r = if shutdown {
                    p.shutdown()
                } else {
                    p.force_flush()
                };
                if let Err(e) = r {
                    errors.push(format!("traces: {e}"));
                }
            }
            if let Some(p) = &providers.logs {
                let r = if shutdown {
                    p.shutdown()
                } else {
                    p.force_flush()
                };
                if let Err(e) = r {
                    errors.push(format!("logs: {e}"));
                }
            }
            if let Some(p) = &providers.metrics {
                let r = if shutdown {
                    p.shutdown()
                } else {
                    p.force_flush()
                };
                if let Err(e) = r {
                    errors.push(format!("metrics: {e}"));
                }
            }
            let _ = tx.send(errors);
        });
    if spawned.is_err() {
        return FlushReport {
            completed: false,
            errors: vec!["could not start the flush thread".to_owned()],
        };
    }
    match rx.recv_timeout(timeout) {
        Ok(errors) => FlushReport {
            completed: true,
            errors,
        },
        Err(_) => FlushReport {
            completed: false,
            errors: vec![format!("telemetry flush exceeded {timeout:?}")],
        },
    }
}

/// Installs the global tracing subscriber (JSON on stdout, plus the OTel bridges when an exporter is
/// configured), the global tracer and meter providers and the W3C trace-context propagator. Call once at
/// start-up; tests use [`init_scoped`]. Under Microsoft Entra authentication the Application Insights exporter
/// uses the managed identity named by `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`.
pub fn init(
    config: &TelemetryConfig,
    info: &ProcessInfo,
) -> Result<TelemetryGuard, TelemetryError> {
    init_with_writer(config, info, std::io::stdout)
}

/// [`init`] with log lines going to `log_writer` instead of stdout (a process-wide test of the global setup,
/// or a binary that wants its logs on stderr).
pub fn init_with_writer<W>(
    config: &TelemetryConfig,
    info: &ProcessInfo,
    log_writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let guard = build_guard(config, info, None)?;
    let dispatch = guard.dispatch(build_subscriber(config, &guard, log_writer));
    tracing::dispatcher::set_global_default(dispatch)
        .map_err(|_| TelemetryError::SubscriberAlreadySet)?;
    if let Some(tp) = &guard.tracer_provider {
        opentelemetry::global::set_tracer_provider(tp.clone());
    }
    if let Some(mp) = &guard.meter_provider {
        opentelemetry::global::set_meter_provider(mp.clone());
    }
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(guard)
}

/// Like [`init`], but the subscriber is installed only for the current thread until the returned
/// `DefaultGuard` drops, log lines go to `log_writer`, and nothing process-global is touched: parallel tests
/// each get their own setup (use [`TelemetryGuard::metrics`] rather than the global meter).
pub fn init_scoped<W>(
    config: &TelemetryConfig,
    info: &ProcessInfo,
    log_writer: W,
) -> Result<(TelemetryGuard, tracing::subscriber::DefaultGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    init_scoped_with_credential(config, info, log_writer, None)
}

/// [`init_scoped`] whose Application Insights exporter, under Microsoft Entra authentication, takes its tokens
/// from `credential` (`None`: the managed identity, as [`init`] does). In-process tests pass a credential for
/// the emulator's identity endpoint, which `ManagedIdentityCredential` reads from the process environment only.
pub fn init_scoped_with_credential<W>(
    config: &TelemetryConfig,
    info: &ProcessInfo,
    log_writer: W,
    credential: Option<Arc<dyn TokenCredential>>,
) -> Result<(TelemetryGuard, tracing::subscriber::DefaultGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let guard = build_guard(config, info, credential)?;
    let dispatch = guard.dispatch(build_subscriber(config, &guard, log_writer));
    let default = tracing::dispatcher::set_default(&dispatch);
    Ok((guard, default))
}

fn env_filter(directives: &str, extra: Option<&str>) -> EnvFilter {
    let combined = match extra {
        Some(x) => format!("{directives},{x}"),
        None => directives.to_owned(),
    };
    EnvFilter::try_new(&combined)
        .or_else(|_| {
            EnvFilter::try_new(extra.map_or_else(|| "info".to_owned(), |x| format!("info,{x}")))
        })
        .unwrap_or_else(|_| EnvFilter::new("info"))
}

fn build_subscriber<W>(
    config: &TelemetryConfig,
    guard: &TelemetryGuard,
    log_writer: W,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log_writer = scrub::ScrubbingMakeWriter::new(log_writer, scrub::log_secrets_of(config));
    let stdout = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(log_writer)
        .with_filter(env_filter(&config.log_filter, Some(RECORDS_ALWAYS_ON)));

    let span_level = env_filter(&config.log_filter, None)
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO)
        .max(tracing_subscriber::filter::LevelFilter::INFO);
    let spans = guard.tracer_provider.as_ref().map(|tp| {
        tracing_opentelemetry::layer()
            .with_tracer(tp.tracer(metrics::SCOPE))
            // No unnamespaced span attributes: `target`, `busy_ns` and `idle_ns` would be (the location
            // stays as the conventions' `code.*`).
            .with_target(false)
            .with_tracked_inactivity(false)
            // Events travel as log records (with the span's trace context); as span events too, Application
            // Insights would store every `AttachmentVerification` twice.
            .with_filter(tracing_subscriber::filter::filter_fn(move |m| {
                m.is_span() && *m.level() <= span_level && !is_exporter_target(m.target())
            }))
    });
    let logs = guard.logger_provider.as_ref().map(|lp| {
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(lp).with_filter(
            env_filter(
                &config.log_filter,
                Some(&format!("{EXPORTER_TARGETS_OFF},{RECORDS_ALWAYS_ON}")),
            ),
        )
    });

    tracing_subscriber::registry()
        .with(stdout)
        .with(spans)
        .with(logs)
}

/// Every configured secret, for scrubbing error texts that an exporter might have built from its config.
fn secrets_of(config: &TelemetryConfig) -> Vec<String> {
    let mut out = Vec::new();
    for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
        if let Some(s) = config.otlp.signal(signal) {
            out.extend(s.headers.iter().map(|(_, v)| v.clone()));
            out.push(s.endpoint.clone());
        }
    }
    if let Some(cs) = &config.app_insights {
        out.push(cs.expose().to_owned());
        out.extend(
            cs.expose()
                .split(';')
                .filter_map(|kv| kv.split_once('='))
                .map(|(_, v)| v.to_owned()),
        );
    }
    out.retain(|s| s.len() >= 4);
    // Longest first, so a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |acc, s| {
        acc.replace(s.as_str(), "<redacted>")
    })
}

fn build_http_client(timeout: Duration) -> Result<reqwest::blocking::Client, TelemetryError> {
    // The blocking client owns a runtime of its own and panics when built inside an async context:
    // build it on a plain thread.
    std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| TelemetryError::HttpClient(e.without_url().to_string()))
    })
    .join()
    .map_err(|_| TelemetryError::HttpClient("client construction panicked".to_owned()))?
}

fn otlp_protocol(p: OtlpProtocol) -> opentelemetry_otlp::Protocol {
    match p {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
        OtlpProtocol::Grpc => opentelemetry_otlp::Protocol::Grpc,
    }
}

fn grpc_metadata(
    headers: &[(String, String)],
) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
    let mut http_headers = http::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            http_headers.insert(name, value);
        }
    }
    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(http_headers)
}

fn header_map(headers: &[(String, String)]) -> std::collections::HashMap<String, String> {
    headers.iter().cloned().collect()
}

#[allow(clippy::too_many_lines)]
fn build_guard(
    config: &TelemetryConfig,
    info: &ProcessInfo,
    credential: Option<Arc<dyn TokenCredential>>,
) -> Result<TelemetryGuard, TelemetryError> {
    let resource = build_resource(config, info);
    let secrets = secrets_of(config);
    let exporter_err = |signal: &'static str, e: &dyn std::fmt::Display| TelemetryError::Exporter {
        exporter: "otlp",
        signal,
        detail: scrub(&e.to_string(), &secrets),
    };

    let grpc_runtime = grpc_runtime(config)?;
    // Tonic channels spawn their connection task on the runtime current at construction.
    let grpc_enter = grpc_runtime.as_ref().map(tokio::runtime::Runtime::enter);

    let max_timeout = [Signal::Traces, Signal::Metrics, Signal::Logs]
        .iter()
        .filter_map(|s| config.otlp.signal(*s).map(|c| c.timeout))
        .max()
        .unwrap_or(Duration::from_secs(10));
    let client = if config.exports() {
        Some(build_http_client(max_timeout)?)
    } else {
        None
    };
    let counters = std::sync::Arc::new(counting::Counters::default());
    let counted = |e| counting::Counting::new(e, counters.clone());
    let (app_insights, entra) = match (&config.app_insights, &client) {
        (Some(cs), Some(c)) => app_insights::for_config(
            cs,
            &config.app_insights_auth,
            c,
            credential,
            &counters,
            &secrets,
        )?,
        _ => (None, None),
    };

    // Traces.
    let mut tracer_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut any_traces = false;
    if let (Some(sc), Some(client)) = (&config.otlp.traces, &client) {
        let exporter = otlp_span_exporter(sc, client).map_err(|e| exporter_err("traces", &e))?;
        tracer_builder =
            tracer_builder.with_batch_exporter(counting::Counting::new(exporter, counters.clone()));
        any_traces = true;
    }
    if let Some(ai) = &app_insights {
        tracer_builder = tracer_builder.with_batch_exporter(counted(ai.clone()));
        any_traces = true;
    }
    let tracer_provider = any_traces.then(|| tracer_builder.build());

    // Metrics.
    let mut meter_builder = SdkMeterProvider::builder().with_resource(resource.clone());
    let mut any_metrics = false;
    if let (Some(sc), Some(client)) = (&config.otlp.metrics, &client) {
        let exporter = otlp_metric_exporter(sc, client).map_err(|e| exporter_err("metrics", &e))?;
        meter_builder = meter_builder.with_reader(
            PeriodicReader::builder(counting::Counting::new(exporter, counters.clone()))
                .with_interval(METRIC_EXPORT_INTERVAL)
                .build(),
        );
        any_metrics = true;
    }
    if let Some(ai) = &app_insights {
        meter_builder = meter_builder.with_reader(
            PeriodicReader::builder(counted(ai.clone()))
                .with_interval(METRIC_EXPORT_INTERVAL)
                .build(),
        );
        any_metrics = true;
    }
    let meter_provider = any_metrics.then(|| meter_builder.build());

    // Logs.
    let mut logger_builder = SdkLoggerProvider::builder().with_resource(resource);
    let mut any_logs = false;
    if let (Some(sc), Some(client)) = (&config.otlp.logs, &client) {
        let exporter = otlp_log_exporter(sc, client).map_err(|e| exporter_err("logs", &e))?;
        logger_builder =
            logger_builder.with_batch_exporter(counting::Counting::new(exporter, counters.clone()));
        any_logs = true;
    }
    if let Some(ai) = app_insights {
        logger_builder = logger_builder.with_batch_exporter(counted(ai));
        any_logs = true;
    }
    let logger_provider = any_logs.then(|| logger_builder.build());

    let metrics = match &meter_provider {
        Some(mp) => Metrics::new(&mp.meter(metrics::SCOPE)),
        None => Metrics::noop(),
    };
    drop(grpc_enter);

    Ok(TelemetryGuard {
        tracer_provider,
        meter_provider,
        logger_provider,
        metrics,
        flush_timeout: config.flush_timeout,
        grpc_runtime,
        counters,
        info: info.clone(),
        entra,
    })
}

/// One OTLP exporter (span, metric or log: three builder types with the same methods) for one signal's
/// settings: gRPC (tonic) or HTTP (protobuf/JSON) through `client`.
macro_rules! otlp_exporter {
    ($exporter:ty, $sc:expr, $client:expr) => {{
        let sc: &OtlpSignalConfig = $sc;
        if sc.protocol == OtlpProtocol::Grpc {
            <$exporter>::builder()
                .with_tonic()
                .with_endpoint(sc.endpoint.clone())
                .with_timeout(sc.timeout)
                .with_metadata(grpc_metadata(&sc.headers))
                .build()
        } else {
            <$exporter>::builder()
                .with_http()
                .with_protocol(otlp_protocol(sc.protocol))
                .with_endpoint(sc.endpoint.clone())
                .with_timeout(sc.timeout)
                .with_headers(header_map(&sc.headers))
                .with_http_client($client.clone())
                .build()
        }
    }};
}

/// The OTLP SpanExporter for one signal's settings: gRPC (tonic) or HTTP (protobuf/JSON) through `client`.
fn otlp_span_exporter(
    sc: &OtlpSignalConfig,
    client: &reqwest::blocking::Client,
) -> Result<opentelemetry_otlp::SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    otlp_exporter!(opentelemetry_otlp::SpanExporter, sc, client)
}

/// The OTLP MetricExporter for one signal's settings: gRPC (tonic) or HTTP (protobuf/JSON) through `client`.
fn otlp_metric_exporter(
    sc: &OtlpSignalConfig,
    client: &reqwest::blocking::Client,
) -> Result<opentelemetry_otlp::MetricExporter, opentelemetry_otlp::ExporterBuildError> {
    otlp_exporter!(opentelemetry_otlp::MetricExporter, sc, client)
}

/// The OTLP LogExporter for one signal's settings: gRPC (tonic) or HTTP (protobuf/JSON) through `client`.
fn otlp_log_exporter(
    sc: &OtlpSignalConfig,
    client: &reqwest::blocking::Client,
) -> Result<opentelemetry_otlp::LogExporter, opentelemetry_otlp::ExporterBuildError> {
    otlp_exporter!(opentelemetry_otlp::LogExporter, sc, client)
}

/// A one-thread runtime for tonic, when any signal is exported over gRPC.
fn grpc_runtime(
    config: &TelemetryConfig,
) -> Result<Option<tokio::runtime::Runtime>, TelemetryError> {
    let needs_grpc = [Signal::Traces, Signal::Metrics, Signal::Logs]
        .iter()
        .any(|s| {
            config
                .otlp
                .signal(*s)
                .is_some_and(|c| c.protocol == OtlpProtocol::Grpc)
        });
    if !needs_grpc {
        return Ok(None);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("telemetry-grpc")
        .enable_all()
        .build()
        .map(Some)
        .map_err(|e| TelemetryError::Runtime(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::app_insights::is_loopback_http;
    use super::*;

    #[test]
    fn resource_precedence() {
        let config = TelemetryConfig {
            resource_attributes: vec![
                ("deployment.environment".into(), "prod".into()),
                ("faas.name".into(), "override".into()),
                ("service.name".into(), "from-attrs".into()),
            ],
            ..TelemetryConfig::default()
        };
        let info = ProcessInfo {
            faas_name: "func-app".into(),
            faas_instance: "i-1".into(),
            service_version: "1.2.3".into(),
            app_resource_id: None,
        };
        let r = build_resource(&config, &info);
        let get = |k: &'static str| {
            r.get(&opentelemetry::Key::from_static_str(k))
                .map(|v| v.to_string())
        };
        assert_eq!(get("service.name").as_deref(), Some("from-attrs"));
        assert_eq!(get("faas.name").as_deref(), Some("override"));
        assert_eq!(get("faas.instance").as_deref(), Some("i-1"));
        assert_eq!(get("cloud.provider").as_deref(), Some("azure"));
        assert_eq!(get("cloud.platform").as_deref(), Some("azure.functions"));
        assert_eq!(
            get("cloud.resource_id"),
            None,
            "unknown app id: not guessed"
        );
        assert_eq!(get("service.version").as_deref(), Some("1.2.3"));
        assert_eq!(get("deployment.environment").as_deref(), Some("prod"));

        let named = TelemetryConfig {
            service_name: "explicit".into(),
            ..config
        };
        let r = build_resource(&named, &info);
        assert_eq!(
            r.get(&opentelemetry::Key::from_static_str("service.name"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("explicit")
        );
    }

    #[test]
    fn app_resource_id_from_the_app_service_variables() {
        let env = |k: &str| match k {
            "WEBSITE_SITE_NAME" => Some("func-attach".to_owned()),
            "WEBSITE_OWNER_NAME" => Some(
                "0b1f6471-1bf0-4dda-aec3-111122223333+rg-attach-WestEuropewebspace-Linux"
                    .to_owned(),
            ),
            "WEBSITE_RESOURCE_GROUP" => Some("rg-attach".to_owned()),
            _ => None,
        };
        let info = ProcessInfo::from_env(&env);
        let app = "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/rg-attach/providers/Microsoft.Web/sites/func-attach";
        assert_eq!(info.app_resource_id.as_deref(), Some(app));
        assert_eq!(
            info.function_name("VerifyAttachments"),
            "func-attach/VerifyAttachments"
        );
        assert_eq!(
            info.function_resource_id("VerifyAttachments"),
            Some(format!("{app}/functions/VerifyAttachments"))
        );
        let r = build_resource(&TelemetryConfig::default(), &info);
        assert_eq!(
            r.get(&opentelemetry::Key::from_static_str("cloud.resource_id"))
                .map(|v| v.to_string())
                .as_deref(),
            Some(app)
        );
        // An owner name that does not start with a subscription id names nothing.
        let odd = |k: &str| match k {
            "WEBSITE_OWNER_NAME" => Some("not-a-subscription+rg".to_owned()),
            other => env(other),
        };
        assert_eq!(ProcessInfo::from_env(&odd).app_resource_id, None);
    }

    #[test]
    fn scrub_replaces_every_secret() {
        let config = TelemetryConfig::from_env(&|k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://127.0.0.1:1".into()),
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("authorization=Bearer tok123".into()),
            "APPLICATIONINSIGHTS_CONNECTION_STRING" => {
                Some("InstrumentationKey=ikey-42;IngestionEndpoint=http://127.0.0.1:2".into())
            }
            _ => None,
        })
        .unwrap();
        let s = scrub(
            "failed with Bearer tok123 and ikey-42",
            &secrets_of(&config),
        );
        assert!(!s.contains("tok123") && !s.contains("ikey-42"), "{s}");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_exporter_target("opentelemetry-otlp"));
        assert!(is_exporter_target("opentelemetry_sdk::trace"));
        assert!(!is_exporter_target("acr_autoattach::telemetry"));
        assert!(is_loopback_http("http://127.0.0.1:8080/"));
        assert!(is_loopback_http("http://localhost:1"));
        assert!(is_loopback_http("http://[::1]:1"));
        assert!(!is_loopback_http("https://127.0.0.1:1"));
        assert!(!is_loopback_http("http://10.0.0.1"));
    }

    #[test]
    fn no_exporter_means_no_providers_and_instant_flush() {
        let (guard, _d) = init_scoped(
            &TelemetryConfig::default(),
            &ProcessInfo::from_env(&|_| None),
            std::io::sink,
        )
        .unwrap();
        assert!(guard.tracer_provider.is_none() && guard.meter_provider.is_none());
        let report = guard.flush();
        assert!(report.completed && report.errors.is_empty());
    }
}
