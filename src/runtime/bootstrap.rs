//! Building the process from its settings: configuration, telemetry and alerting settings (all validated
//! before anything starts), the Azure client and the handler.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;

use crate::azure::{
    AzureClient, AzureError, ClientOptions, ManagedIdentityOptions, RateLimits, RequestObserver,
    developer_tools_credential, managed_identity_credential,
};
use crate::runtime::alerting::{AlertConfig, Alerter};
use crate::runtime::config::{Config, ConfigError, Env};
use crate::runtime::engine::Engine;
use crate::runtime::functions::{Handler, InvocationAzureFailures, Observability};
use crate::telemetry::{Metrics, TelemetryConfig, TelemetryGuard};

/// Every setting of the process, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub telemetry: TelemetryConfig,
    pub alerts: Option<AlertConfig>,
}

impl Settings {
    /// Reads and validates everything; the error names the setting (the binary exits 2 with it).
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let config = Config::from_env(env)?;
        let lookup = |k: &str| env.var(k);
        let telemetry = TelemetryConfig::from_env(&lookup).map_err(|e| ConfigError {
            setting: telemetry_setting(&e.to_string()),
            reason: e.to_string(),
        })?;
        let alerts = AlertConfig::from_env(&lookup).map_err(|e| ConfigError {
            setting: alert_setting(&e.to_string()),
            reason: e.to_string(),
        })?;
        Ok(Self {
            config,
            telemetry,
            alerts,
        })
    }
}

/// The setting a telemetry configuration error names (its message starts with it).
fn telemetry_setting(message: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_RESOURCE_ATTRIBUTES",
    ];
    KNOWN
        .into_iter()
        .find(|k| message.starts_with(k))
        .unwrap_or("OTEL_EXPORTER_OTLP_*")
}

fn alert_setting(message: &str) -> &'static str {
    const KNOWN: [&str; 5] = [
        "AUTOATTACH_ALERT_WEBHOOK",
        "AUTOATTACH_ALERT_FORMAT",
        "AUTOATTACH_ALERT_TIMEOUT_MS",
        "AUTOATTACH_ALERT_TTL_SECONDS",
        "AUTOATTACH_ALERT_TRANSIENT_THRESHOLD",
    ];
    KNOWN
        .into_iter()
        .find(|k| message.starts_with(k))
        .unwrap_or("AUTOATTACH_ALERT_*")
}

/// Whose token the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// The function app's managed identity (App Service protocol via IDENTITY_ENDPOINT/IDENTITY_HEADER).
    ManagedIdentity,
    /// An operator's `az login` session.
    DeveloperTools,
}

/// Feeds every Azure request into the metrics (`autoattach.azure.requests`, `autoattach.azure.throttled`).
struct MetricsObserver(Metrics);

impl RequestObserver for MetricsObserver {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        throttled: bool,
        elapsed: Duration,
    ) {
        self.0
            .record_azure_request(operation, status, throttled, elapsed);
    }
}

/// Tells every observer about each request (the client takes one observer).
struct FanOut(Vec<Arc<dyn RequestObserver>>);

impl RequestObserver for FanOut {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        throttled: bool,
        elapsed: Duration,
    ) {
        for observer in &self.0 {
            observer.on_request(operation, status, throttled, elapsed);
        }
    }
}

/// The credential for `identity`.
pub fn credential(
    config: &Config,
    env: &dyn Env,
    identity: Identity,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    match identity {
        Identity::ManagedIdentity => managed_identity_credential(&ManagedIdentityOptions {
            user_assigned_client_id: config.managed_identity_client_id.clone(),
            // azure_identity retries for about a minute by default; our own policy and deadline govern instead
            // when this is set (fault-injection runs).
            no_retry: crate::runtime::config::parse_bool(
                &env.var("AUTOATTACH_TOKEN_NO_RETRY").unwrap_or_default(),
            )
            .unwrap_or(false),
        }),
        Identity::DeveloperTools => developer_tools_credential(),
    }
}

/// The Azure client for `config`'s endpoints, feeding every request into `metrics`.
pub fn azure_client(
    config: &Config,
    credential: Arc<dyn TokenCredential>,
    metrics: &Metrics,
) -> Result<AzureClient, AzureError> {
    azure_client_observed(
        config,
        credential,
        Arc::new(MetricsObserver(metrics.clone())),
    )
}

/// The Azure client for `config`'s endpoints, telling `observer` about every request.
pub fn azure_client_observed(
    config: &Config,
    credential: Arc<dyn TokenCredential>,
    observer: Arc<dyn RequestObserver>,
) -> Result<AzureClient, AzureError> {
    let mut options = ClientOptions::new(
        config.arm_endpoint.clone(),
        config.graph_endpoint.clone(),
        credential,
    );
    options.max_concurrency = config.max_concurrency;
    options.rate_limits = scaled_rate_limits(options.rate_limits, config.rate_limit_scale);
    options.observer = Some(observer);
    AzureClient::new(options)
}

/// `limits` refilling `scale` times faster: each bucket's refill × scale, Resource Graph's window ÷ scale
/// (capacities and the per-window limit stay), to match an emulator started with the same refill scale.
pub fn scaled_rate_limits(mut limits: RateLimits, scale: u32) -> RateLimits {
    if scale <= 1 {
        return limits;
    }
    let factor = f64::from(scale);
    for bucket in [&mut limits.reads, &mut limits.writes, &mut limits.deletes] {
        bucket.refill_per_sec *= factor;
    }
    limits.resource_graph.window /= scale;
    limits
}

/// The handler of `serve`: engine, telemetry hooks and alerting, with the managed identity.
pub fn handler(
    settings: &Settings,
    env: &dyn Env,
    guard: Option<Arc<TelemetryGuard>>,
) -> Result<Handler, AzureError> {
    let credential = credential(&settings.config, env, Identity::ManagedIdentity)?;
    handler_with_credential(settings, credential, guard)
}

/// [`handler`] with a given credential.
pub fn handler_with_credential(
    settings: &Settings,
    credential: Arc<dyn TokenCredential>,
    guard: Option<Arc<TelemetryGuard>>,
) -> Result<Handler, AzureError> {
    let metrics = guard.as_ref().map_or_else(Metrics::noop, |g| g.metrics());
    // Metrics, and the invoking run's failure tally that alerts on 403s and repeated transient failures.
    let observer = FanOut(vec![
        Arc::new(MetricsObserver(metrics.clone())),
        Arc::new(InvocationAzureFailures),
    ]);
    let client = azure_client_observed(&settings.config, credential, Arc::new(observer))?;
    let engine = Engine::new(settings.config.clone(), client).with_metrics(metrics.clone());
    let alerter = settings
        .alerts
        .clone()
        .map(|a| Alerter::new(a, metrics.clone()));
    Ok(Handler::new(
        engine,
        Observability {
            metrics,
            guard,
            alerter,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_scale_multiplies_refills_and_shortens_the_graph_window() {
        let base = RateLimits::default();
        assert_eq!(scaled_rate_limits(base.clone(), 1), base);
        let fast = scaled_rate_limits(base.clone(), 20);
        assert!((fast.reads.refill_per_sec - base.reads.refill_per_sec * 20.0).abs() < 1e-9);
        assert!((fast.writes.refill_per_sec - base.writes.refill_per_sec * 20.0).abs() < 1e-9);
        assert!((fast.deletes.refill_per_sec - base.deletes.refill_per_sec * 20.0).abs() < 1e-9);
        assert!((fast.writes.capacity - base.writes.capacity).abs() < 1e-9);
        assert_eq!(fast.resource_graph.limit, base.resource_graph.limit);
        assert_eq!(fast.resource_graph.window, base.resource_graph.window / 20);
    }
}
