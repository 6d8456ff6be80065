//! Built-in alerting: the verification results of a run become Alertmanager v2 alerts (fired and resolved)
//! or one generic JSON message per run. The handler keeps no state: to resolve, it asks Alertmanager which of
//! its alerts are active and ends those whose subject is healthy now. Delivery never fails an invocation;
//! failures are counted in `autoattach.alerts.failed`. The webhook URL is a secret and is never shown.
//!
//! Planning (which alerts fire, which resolve) is pure; only [`Alerter::send`] performs I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
#[cfg(test)]
use time::OffsetDateTime;

use crate::core::alerts::{
    ALERT_NAME, Alert, AlertRun, AzureFailureCount, format_time, json_message, plan_firing,
    plan_resolutions,
};
use crate::telemetry::Metrics;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Alertmanager ends an alert that is not re-sent before its `endsAt`. Firing alerts carry `now + ttl` so they
/// outlive the gap to the next timer run (default schedule: 30 min) and are resolved explicitly, not by expiry.
const DEFAULT_FIRING_TTL: Duration = Duration::from_hours(1);
/// Transient Azure failures (429, 5xx, no answer) of one operation within a run before an alert fires.
const DEFAULT_TRANSIENT_THRESHOLD: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertConfigError {
    // Never echo the value: it is the secret.
    #[error("AUTOATTACH_ALERT_WEBHOOK is not an absolute http(s) URL")]
    BadWebhook,
    #[error("AUTOATTACH_ALERT_FORMAT `{0}` is not one of alertmanager, json")]
    BadFormat(String),
    #[error("{variable} `{value}` is not a non-negative integer")]
    BadNumber {
        variable: &'static str,
        value: String,
    },
    #[error("{variable} {value} is out of range {min}..={max}")]
    OutOfRange {
        variable: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

/// Bounds of `AUTOATTACH_ALERT_TIMEOUT_MS` (2 minutes: an alert must not hold an invocation longer).
pub const MAX_ALERT_TIMEOUT_MS: u64 = 120_000;
/// Bounds of `AUTOATTACH_ALERT_TTL_SECONDS` (a week; without a bound a huge value overflowed the alert's
/// `endsAt` and panicked the invocation).
pub const MAX_ALERT_TTL_SECONDS: u64 = 604_800;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertFormat {
    Alertmanager,
    Json,
}

impl AlertFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Json => "json",
        }
    }
}

/// The webhook and the alerting policy.
#[derive(Clone, PartialEq, Eq)]
pub struct AlertConfig {
    webhook: url::Url,
    pub format: AlertFormat,
    pub timeout: Duration,
    pub firing_ttl: Duration,
    pub transient_threshold: u32,
}

impl fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertConfig")
            .field("webhook", &"<redacted>")
            .field("format", &self.format.as_str())
            .field("timeout", &self.timeout)
            .field("firing_ttl", &self.firing_ttl)
            .field("transient_threshold", &self.transient_threshold)
            .finish()
    }
}

impl AlertConfig {
    pub fn new(webhook: &str, format: AlertFormat) -> Result<Self, AlertConfigError> {
        let webhook = url::Url::parse(webhook.trim()).map_err(|_| AlertConfigError::BadWebhook)?;
        if !matches!(webhook.scheme(), "http" | "https") || webhook.host_str().is_none() {
            return Err(AlertConfigError::BadWebhook);
        }
        Ok(Self {
            webhook,
            format,
            timeout: DEFAULT_TIMEOUT,
            firing_ttl: DEFAULT_FIRING_TTL,
            transient_threshold: DEFAULT_TRANSIENT_THRESHOLD,
        })
    }

    /// `AUTOATTACH_ALERT_WEBHOOK` (unset or empty: alerting off → `Ok(None)`), `AUTOATTACH_ALERT_FORMAT`
    /// (`alertmanager`, default, or `json`), `AUTOATTACH_ALERT_TIMEOUT_MS`, `AUTOATTACH_ALERT_TTL_SECONDS`,
    /// `AUTOATTACH_ALERT_TRANSIENT_THRESHOLD`.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, AlertConfigError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let Some(webhook) = get("AUTOATTACH_ALERT_WEBHOOK") else {
            return Ok(None);
        };
        let format = match get("AUTOATTACH_ALERT_FORMAT")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("alertmanager") => AlertFormat::Alertmanager,
            Some("json") => AlertFormat::Json,
            Some(other) => return Err(AlertConfigError::BadFormat(other.to_owned())),
        };
        let number = |variable: &'static str| -> Result<Option<u64>, AlertConfigError> {
            get(variable)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| AlertConfigError::BadNumber { variable, value: v })
                })
                .transpose()
        };
        let bounded = |variable: &'static str, min: u64, max: u64| {
            number(variable)?
                .map(|value| {
                    if (min..=max).contains(&value) {
                        Ok(value)
                    } else {
                        Err(AlertConfigError::OutOfRange {
                            variable,
                            value,
                            min,
                            max,
                        })
                    }
                })
                .transpose()
        };
        let mut config = Self::new(&webhook, format)?;
        if let Some(ms) = bounded("AUTOATTACH_ALERT_TIMEOUT_MS", 1, MAX_ALERT_TIMEOUT_MS)? {
            config.timeout = Duration::from_millis(ms);
        }
        if let Some(s) = bounded("AUTOATTACH_ALERT_TTL_SECONDS", 1, MAX_ALERT_TTL_SECONDS)? {
            config.firing_ttl = Duration::from_secs(s);
        }
        if let Some(n) = number("AUTOATTACH_ALERT_TRANSIENT_THRESHOLD")? {
            config.transient_threshold = u32::try_from(n).unwrap_or(u32::MAX).max(1);
        }
        Ok(Some(config))
    }

    /// `{webhook}/api/v2/alerts`, keeping the webhook's query (it may carry a key) and user info.
    fn alertmanager_alerts_url(&self) -> url::Url {
        let mut u = self.webhook.clone();
        let path = format!("{}/api/v2/alerts", u.path().trim_end_matches('/'));
        u.set_path(&path);
        u
    }
}

/// Counts the Azure failures that alert (403, 429, 5xx, no response) per operation and status, as the
/// Azure client reports them. Attach it to the client next to the metrics and [`AzureFailureTally::drain`]
/// it at the end of each run. One tally shared by concurrent runs would mix their failures; the handler keeps
/// one per invocation (`functions::InvocationAzureFailures`), the CLI one per command.
#[derive(Clone, Debug, Default)]
pub struct AzureFailureTally(std::sync::Arc<std::sync::Mutex<FailureCounts>>);

/// (operation, status) → failures.
type FailureCounts = BTreeMap<(&'static str, Option<u16>), u32>;

impl AzureFailureTally {
    pub fn record(&self, operation: &'static str, status: Option<u16>) {
        if !matches!(status, None | Some(403 | 429 | 500..=599)) {
            return;
        }
        if let Ok(mut counts) = self.0.lock() {
            let c = counts.entry((operation, status)).or_default();
            *c = c.saturating_add(1);
        }
    }

    /// The counts so far, emptying the tally.
    pub fn drain(&self) -> Vec<AzureFailureCount> {
        let Ok(mut counts) = self.0.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut *counts)
            .into_iter()
            .map(|((operation, status), count)| AzureFailureCount {
                operation: operation.to_owned(),
                status,
                count,
            })
            .collect()
    }
}

impl crate::azure::RequestObserver for AzureFailureTally {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        _throttled: bool,
        _elapsed: Duration,
    ) {
        self.record(operation, status);
    }
}

/// Where a delivery went wrong, without any part of the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStage {
    /// `GET /api/v2/alerts` (finding what to resolve).
    Query,
    /// Posting the alerts or the JSON message.
    Post,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryFailureKind {
    Timeout,
    Connect,
    Status(u16),
    BadResponse,
    Other,
}

impl DeliveryFailureKind {
    fn metric_reason(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Status(s) if s >= 500 => "status_5xx",
            Self::Status(_) => "status_4xx",
            Self::BadResponse => "bad_response",
            Self::Other => "other",
        }
    }

    fn of(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect
        } else if let Some(s) = e.status() {
            Self::Status(s.as_u16())
        } else if e.is_decode() || e.is_body() {
            Self::BadResponse
        } else {
            Self::Other
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryFailure {
    pub stage: DeliveryStage,
    pub kind: DeliveryFailureKind,
}

/// The result of [`Alerter::send`]: informational, never an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertDelivery {
    /// Alerts (or JSON entries) delivered as firing.
    pub firing: usize,
    /// Alerts delivered with `endsAt` = now.
    pub resolved: usize,
    pub failures: Vec<DeliveryFailure>,
}

/// Sends a run's alerts to the configured webhook.
#[derive(Clone)]
pub struct Alerter {
    config: AlertConfig,
    client: reqwest::Client,
    metrics: Metrics,
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Alerter {
    pub fn new(config: AlertConfig, metrics: Metrics) -> Self {
        // Building a client fails only when TLS cannot initialise; the default client has the same TLS.
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .unwrap_or_default();
        Self {
            config,
            client,
            metrics,
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Fires, resolves or posts the run's alerts. Never fails: problems are counted in
    /// `autoattach.alerts.failed`, logged without the URL, and returned in the delivery.
    pub async fn send(&self, run: &AlertRun<'_>) -> AlertDelivery {
        let firing = plan_firing(run, self.config.transient_threshold);
        let delivery = match self.config.format {
            AlertFormat::Alertmanager => self.send_alertmanager(run, firing).await,
            AlertFormat::Json => self.send_json(run, &firing).await,
        };
        let format = self.config.format.as_str();
        self.metrics
            .record_alerts_sent(format, "firing", delivery.firing as u64);
        self.metrics
            .record_alerts_sent(format, "resolved", delivery.resolved as u64);
        for f in &delivery.failures {
            self.metrics
                .record_alert_failure(format, f.kind.metric_reason());
            tracing::warn!(
                alert.format = format,
                alert.stage = ?f.stage,
                alert.failure = ?f.kind,
                "alert delivery failed"
            );
        }
        delivery
    }

    async fn send_alertmanager(&self, run: &AlertRun<'_>, mut firing: Vec<Alert>) -> AlertDelivery {
        let mut delivery = AlertDelivery::default();
        let url = self.config.alertmanager_alerts_url();

        let active = match self.query_active(&url).await {
            Ok(active) => Some(active),
            Err(kind) => {
                delivery.failures.push(DeliveryFailure {
                    stage: DeliveryStage::Query,
                    kind,
                });
                None
            }
        };

        let now = format_time(run.now);
        let ends = format_time(run.now + self.config.firing_ttl);
        for a in &mut firing {
            // Keep the original start of an alert that is already firing.
            let id = a.identity();
            a.starts_at = active
                .as_deref()
                .and_then(|act| act.iter().find(|x| x.identity() == id))
                .and_then(|x| x.starts_at.clone())
                .or_else(|| Some(now.clone()));
            a.ends_at = Some(ends.clone());
        }
        let resolved = active
            .as_deref()
            .map(|act| plan_resolutions(run, &firing, act))
            .unwrap_or_default();

        if firing.is_empty() && resolved.is_empty() {
            return delivery;
        }
        let mut body = firing.clone();
        body.extend(resolved.iter().cloned());
        match self.post_json(url, &body).await {
            Ok(()) => {
                delivery.firing = firing.len();
                delivery.resolved = resolved.len();
            }
            Err(kind) => delivery.failures.push(DeliveryFailure {
                stage: DeliveryStage::Post,
                kind,
            }),
        }
        delivery
    }

    async fn send_json(&self, run: &AlertRun<'_>, firing: &[Alert]) -> AlertDelivery {
        let mut delivery = AlertDelivery::default();
        let Some(message) = json_message(run, firing) else {
            return delivery;
        };
        match self.post_json(self.config.webhook.clone(), &message).await {
            Ok(()) => delivery.firing = message.alerts.len(),
            Err(kind) => delivery.failures.push(DeliveryFailure {
                stage: DeliveryStage::Post,
                kind,
            }),
        }
        delivery
    }

    async fn query_active(&self, alerts_url: &url::Url) -> Result<Vec<Alert>, DeliveryFailureKind> {
        let mut url = alerts_url.clone();
        url.query_pairs_mut()
            .append_pair("filter", &format!("alertname=\"{ALERT_NAME}\""))
            .append_pair("active", "true")
            .append_pair("silenced", "true")
            .append_pair("inhibited", "true")
            .append_pair("unprocessed", "true");
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| DeliveryFailureKind::of(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(DeliveryFailureKind::Status(status.as_u16()));
        }
        response
            .json::<Vec<Alert>>()
            .await
            .map_err(|_| DeliveryFailureKind::BadResponse)
    }

    async fn post_json<T: Serialize + ?Sized>(
        &self,
        url: url::Url,
        body: &T,
    ) -> Result<(), DeliveryFailureKind> {
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| DeliveryFailureKind::of(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryFailureKind::Status(status.as_u16()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn tally_counts_only_alerting_failures_and_drains() {
        let t = AzureFailureTally::default();
        for s in [
            Some(200),
            Some(403),
            Some(403),
            Some(404),
            Some(429),
            None,
            Some(503),
        ] {
            t.record("put_role_assignment", s);
        }
        let counts = t.drain();
        let got: Vec<(Option<u16>, u32)> = counts.iter().map(|c| (c.status, c.count)).collect();
        assert_eq!(
            got,
            [(None, 1), (Some(403), 2), (Some(429), 1), (Some(503), 1)]
        );
        assert!(t.drain().is_empty());
        let run = AlertRun {
            invocation_id: "inv",
            capacity: &[],
            pairs: &[],
            registries: &[],
            azure_failures: &counts,
            complete_scope: true,
            blind: None,
            now: OffsetDateTime::UNIX_EPOCH,
        };
        let firing = plan_firing(&run, 3);
        let statuses: Vec<&str> = firing.iter().map(|a| a.labels["status"].as_str()).collect();
        assert_eq!(statuses, ["forbidden", "transient"]);
    }

    #[test]
    fn config_from_env_and_redaction() {
        let env = |k: &str| match k {
            "AUTOATTACH_ALERT_WEBHOOK" => {
                Some("https://am.example:9093/prefix/?key=hooksecret".to_owned())
            }
            "AUTOATTACH_ALERT_FORMAT" => Some("Alertmanager".to_owned()),
            "AUTOATTACH_ALERT_TTL_SECONDS" => Some("600".to_owned()),
            _ => None,
        };
        let c = AlertConfig::from_env(&env).unwrap().unwrap();
        assert_eq!(c.format, AlertFormat::Alertmanager);
        assert_eq!(c.firing_ttl, Duration::from_mins(10));
        assert!(!format!("{c:?}").contains("hooksecret"));
        assert!(!format!("{c:?}").contains("am.example"));
        assert_eq!(
            c.alertmanager_alerts_url().as_str(),
            "https://am.example:9093/prefix/api/v2/alerts?key=hooksecret"
        );
        assert_eq!(AlertConfig::from_env(&|_| None).unwrap(), None);
        let err = AlertConfig::from_env(&|k: &str| {
            (k == "AUTOATTACH_ALERT_WEBHOOK").then(|| "not a url with hooksecret".to_owned())
        })
        .unwrap_err();
        assert!(!err.to_string().contains("hooksecret"));
        assert!(matches!(
            AlertConfig::from_env(&|k: &str| match k {
                "AUTOATTACH_ALERT_WEBHOOK" => Some("http://127.0.0.1:1".to_owned()),
                "AUTOATTACH_ALERT_FORMAT" => Some("pagerduty".to_owned()),
                _ => None,
            }),
            Err(AlertConfigError::BadFormat(_))
        ));
    }

    proptest::proptest! {
        /// AUTOATTACH_ALERT_TTL_SECONDS and AUTOATTACH_ALERT_TIMEOUT_MS of any size: accepted within their
        /// bounds (and then an alert's `endsAt` cannot overflow), refused with the bound named outside.
        #[test]
        fn alert_numbers_are_bounded(value in proptest::prelude::any::<u64>(), ttl in proptest::prelude::any::<bool>()) {
            let variable = if ttl { "AUTOATTACH_ALERT_TTL_SECONDS" } else { "AUTOATTACH_ALERT_TIMEOUT_MS" };
            let max = if ttl { MAX_ALERT_TTL_SECONDS } else { MAX_ALERT_TIMEOUT_MS };
            let text = value.to_string();
            let env = |k: &str| match k {
                "AUTOATTACH_ALERT_WEBHOOK" => Some("http://127.0.0.1:9/".to_owned()),
                k if k == variable => Some(text.clone()),
                _ => None,
            };
            match AlertConfig::from_env(&env) {
                Ok(Some(c)) => {
                    proptest::prop_assert!((1..=max).contains(&value));
                    proptest::prop_assert!(time::OffsetDateTime::now_utc().checked_add(c.firing_ttl.try_into().unwrap()).is_some());
                }
                Ok(None) => proptest::prop_assert!(false, "webhook set"),
                Err(e) => {
                    proptest::prop_assert!(!(1..=max).contains(&value));
                    let message = e.to_string();
                    proptest::prop_assert!(message.contains(variable) && message.contains(&max.to_string()), "{}", message);
                }
            }
        }
    }
}
