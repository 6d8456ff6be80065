//! Built-in alerting: the verification results of a run become Alertmanager v2 alerts (fired and resolved)
//! or one generic JSON message per run. The handler keeps no state: to resolve, it asks Alertmanager which of
//! its alerts are active and ends those whose subject is healthy now. Delivery never fails an invocation;
//! failures are counted in `autoattach.alerts.failed`. The webhook URL is a secret and is never shown.
//!
//! Planning (which alerts fire, which resolve) is pure; only [`Alerter::send`] performs I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::{PairResult, PairStatus, RegistryResult, RegistryStatus, ResourceId};
use crate::telemetry::Metrics;

/// The `alertname` of every alert this project sends.
pub const ALERT_NAME: &str = "AcrAutoAttach";
/// The `service` label, so routes can match all of them.
pub const SERVICE_LABEL: &str = "acr-autoattach";
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
}

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
        let mut config = Self::new(&webhook, format)?;
        if let Some(ms) = number("AUTOATTACH_ALERT_TIMEOUT_MS")? {
            config.timeout = Duration::from_millis(ms);
        }
        if let Some(s) = number("AUTOATTACH_ALERT_TTL_SECONDS")? {
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

/// How often an Azure operation failed in a run, by HTTP status (`None`: no response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureFailureCount {
    pub operation: String,
    pub status: Option<u16>,
    pub count: u32,
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

/// Everything one run found, as the alerter needs it.
#[derive(Clone, Debug)]
pub struct AlertRun<'a> {
    pub invocation_id: &'a str,
    pub pairs: &'a [PairResult],
    pub registries: &'a [RegistryResult],
    pub azure_failures: &'a [AzureFailureCount],
    /// True for a run that verified the whole scope (the timer): an active alert whose subject it did not
    /// report is then resolved too (the cluster or registry is gone or no longer selected). Event runs see a
    /// few pairs only and resolve only what they saw healthy.
    pub complete_scope: bool,
    pub now: OffsetDateTime,
}

impl<'a> AlertRun<'a> {
    /// A run from a verification report (the timer's): complete scope when the report is complete.
    pub fn from_report(
        report: &'a crate::model::VerificationReport,
        invocation_id: &'a str,
        azure_failures: &'a [AzureFailureCount],
        now: OffsetDateTime,
    ) -> Self {
        Self {
            invocation_id,
            pairs: &report.pairs,
            registries: &report.registry_results,
            azure_failures,
            complete_scope: report.complete,
            now,
        }
    }
}

/// One alert in Alertmanager's v2 shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

impl Alert {
    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The label set without empty values (Alertmanager treats an empty label as absent).
    fn identity(&self) -> BTreeMap<&str, &str> {
        self.labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

fn severity_rank(status: PairStatus) -> u8 {
    match status {
        PairStatus::Failed => 3,
        PairStatus::Missing => 2,
        PairStatus::Pending => 1,
        PairStatus::Compliant | PairStatus::Repaired | PairStatus::Detached => 0,
    }
}

/// The operator command that walks through one pair (`explain` takes both ids).
fn explain_command(cluster: &ResourceId, registry: &ResourceId) -> String {
    format!("acr-autoattach explain --cluster {cluster} --registry {registry}")
}

fn base_labels(status: &str, severity: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_owned(), ALERT_NAME.to_owned()),
        ("service".to_owned(), SERVICE_LABEL.to_owned()),
        ("status".to_owned(), status.to_owned()),
        ("severity".to_owned(), severity.to_owned()),
    ])
}

/// The alerts that fire for `run` (pure). Pairs `failed`/`missing`, registries `invalid_selector`, Azure
/// operations answered 403 (`forbidden`) and operations failing transiently `threshold` times or more
/// (`transient`). Duplicate results for one pair yield one alert, for the worst status.
pub fn plan_firing(run: &AlertRun<'_>, transient_threshold: u32) -> Vec<Alert> {
    // At most one alert per pair: keyed by the lower-cased ids, keeping the worst status.
    let mut worst: BTreeMap<(String, String), &PairResult> = BTreeMap::new();
    for p in run.pairs {
        if !matches!(p.status, PairStatus::Failed | PairStatus::Missing) {
            continue;
        }
        let key = (p.cluster_id.key(), p.registry_id.key());
        match worst.get(&key) {
            Some(existing) if severity_rank(existing.status) >= severity_rank(p.status) => {}
            _ => {
                worst.insert(key, p);
            }
        }
    }

    let mut alerts = Vec::new();
    for ((cluster, registry), p) in &worst {
        let severity = if p.status == PairStatus::Failed {
            "critical"
        } else {
            "warning"
        };
        let mut labels = base_labels(p.status.as_str(), severity);
        labels.insert("cluster".to_owned(), cluster.clone());
        labels.insert("registry".to_owned(), registry.clone());
        let reason = p
            .reason
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_owned());
        let annotations = BTreeMap::from([
            (
                "summary".to_owned(),
                format!(
                    "AKS cluster {} cannot pull from registry {}: {}",
                    p.cluster_id.name(),
                    p.registry_id.name(),
                    p.status
                ),
            ),
            ("reason".to_owned(), reason),
            (
                "explain".to_owned(),
                explain_command(&p.cluster_id, &p.registry_id),
            ),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }

    let mut seen_registries = BTreeSet::new();
    for r in run.registries {
        if !seen_registries.insert(r.registry_id.key()) {
            continue;
        }
        let RegistryStatus::InvalidSelector = r.status;
        let mut labels = base_labels("invalid_selector", "warning");
        labels.insert("registry".to_owned(), r.registry_id.key());
        let annotations = BTreeMap::from([
            (
                "summary".to_owned(),
                format!(
                    "Registry {} has an opt-in tag that does not parse: it selects no cluster",
                    r.registry_id.name()
                ),
            ),
            ("reason".to_owned(), r.reason.clone()),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }

    // Sum per (operation, kind): a run reports counts per status, the alert is per operation.
    let mut per_operation: BTreeMap<(String, &'static str), u32> = BTreeMap::new();
    for f in run.azure_failures {
        let kind = match f.status {
            Some(403) => "forbidden",
            Some(429 | 500..=599) | None => "transient",
            Some(_) => continue,
        };
        *per_operation
            .entry((f.operation.clone(), kind))
            .or_default() += f.count;
    }
    for ((operation, kind), count) in per_operation {
        let fires = match kind {
            "forbidden" => count >= 1,
            _ => count >= transient_threshold,
        };
        if !fires {
            continue;
        }
        let severity = if kind == "forbidden" {
            "critical"
        } else {
            "warning"
        };
        let mut labels = base_labels(kind, severity);
        labels.insert("operation".to_owned(), operation.clone());
        let summary = if kind == "forbidden" {
            format!(
                "Azure refused `{operation}` with 403 {count} time(s): the handler's identity lacks a permission"
            )
        } else {
            format!(
                "Azure `{operation}` failed transiently {count} time(s) in one run (throttling, 5xx or timeouts)"
            )
        };
        let annotations = BTreeMap::from([
            ("summary".to_owned(), summary.clone()),
            ("reason".to_owned(), summary),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }
    alerts
}

/// Which of Alertmanager's `active` alerts (ours, by `alertname`) this run resolves (pure): those whose label
/// set is not firing now and whose subject the run covered — a pair it reported, a registry it reported or
/// whose pairs it reported, or anything at all when `complete_scope`.
pub fn plan_resolutions(run: &AlertRun<'_>, firing: &[Alert], active: &[Alert]) -> Vec<Alert> {
    let firing_ids: BTreeSet<BTreeMap<&str, &str>> = firing.iter().map(Alert::identity).collect();
    let seen_pairs: BTreeSet<(String, String)> = run
        .pairs
        .iter()
        .map(|p| (p.cluster_id.key(), p.registry_id.key()))
        .collect();
    let seen_registries: BTreeSet<String> = run
        .pairs
        .iter()
        .map(|p| p.registry_id.key())
        .chain(run.registries.iter().map(|r| r.registry_id.key()))
        .collect();
    let now = format_time(run.now);

    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for a in active {
        if a.label("alertname") != Some(ALERT_NAME) {
            continue;
        }
        let id = a.identity();
        if firing_ids.contains(&id) || !done.insert(id) {
            continue;
        }
        let covered = run.complete_scope
            || match (a.label("cluster"), a.label("registry")) {
                (Some(c), Some(r)) => {
                    seen_pairs.contains(&(c.to_ascii_lowercase(), r.to_ascii_lowercase()))
                }
                (None, Some(r)) => seen_registries.contains(&r.to_ascii_lowercase()),
                _ => false,
            };
        if covered {
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at.clone(),
                ends_at: Some(now.clone()),
            });
        }
    }
    out
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The generic JSON body (`AUTOATTACH_ALERT_FORMAT=json`): top-level strings `title` and `text` for
/// Slack/Teams workflow variables, plus the structured `alerts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonAlertMessage {
    pub source: String,
    pub title: String,
    pub text: String,
    pub invocation_id: String,
    pub time: String,
    pub alerts: Vec<JsonAlert>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonAlert {
    pub status: String,
    pub severity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub summary: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

/// Builds the JSON message for the firing alerts; `None` when nothing fires (the json format reports problems
/// only).
pub fn json_message(run: &AlertRun<'_>, firing: &[Alert]) -> Option<JsonAlertMessage> {
    if firing.is_empty() {
        return None;
    }
    let alerts: Vec<JsonAlert> = firing
        .iter()
        .map(|a| {
            let get = |k: &str| a.label(k).map(str::to_owned);
            let ann = |k: &str| a.annotations.get(k).cloned();
            JsonAlert {
                status: get("status").unwrap_or_default(),
                severity: get("severity").unwrap_or_default(),
                cluster: get("cluster"),
                registry: get("registry"),
                operation: get("operation"),
                summary: ann("summary").unwrap_or_default(),
                reason: ann("reason").unwrap_or_default(),
                explain: ann("explain"),
            }
        })
        .collect();
    let text = alerts
        .iter()
        .map(|a| match &a.explain {
            Some(cmd) => format!("- [{}] {}: {} (run `{cmd}`)", a.status, a.summary, a.reason),
            None => format!("- [{}] {}", a.status, a.summary),
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(JsonAlertMessage {
        source: SERVICE_LABEL.to_owned(),
        title: format!("acr-autoattach: {} problem(s) need attention", alerts.len()),
        text,
        invocation_id: run.invocation_id.to_owned(),
        time: format_time(run.now),
        alerts,
    })
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
    use crate::model::PullRole;
    use time::macros::datetime;

    fn cluster(n: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/{n}"
        ))
        .unwrap()
    }
    fn registry(n: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/{n}"
        ))
        .unwrap()
    }
    fn pair(c: &str, r: &str, status: PairStatus) -> PairResult {
        PairResult {
            cluster_id: cluster(c),
            registry_id: registry(r),
            principal_id: Some("p".into()),
            role: Some(PullRole::AcrPull),
            status,
            reason: Some(format!("{c}/{r} is {status}")),
            assignment_id: None,
            latency_seconds: None,
        }
    }
    fn run<'a>(
        pairs: &'a [PairResult],
        registries: &'a [RegistryResult],
        failures: &'a [AzureFailureCount],
        complete: bool,
    ) -> AlertRun<'a> {
        AlertRun {
            invocation_id: "inv",
            pairs,
            registries,
            azure_failures: failures,
            complete_scope: complete,
            now: datetime!(2026-11-30 06:00 UTC),
        }
    }

    #[test]
    fn fires_for_failed_missing_invalid_selector_forbidden_and_repeated_transients() {
        let pairs = [
            pair("a", "r", PairStatus::Missing),
            pair("A", "R", PairStatus::Failed), // same pair, other spelling: one alert, the worst
            pair("b", "r", PairStatus::Compliant),
            pair("c", "r", PairStatus::Pending),
        ];
        let regs = [RegistryResult {
            registry_id: registry("bad"),
            status: RegistryStatus::InvalidSelector,
            reason: "env in (prod".into(),
        }];
        let fails = [
            AzureFailureCount {
                operation: "role_assignments.create".into(),
                status: Some(403),
                count: 1,
            },
            AzureFailureCount {
                operation: "arm.get_cluster".into(),
                status: Some(429),
                count: 2,
            },
            AzureFailureCount {
                operation: "arm.get_cluster".into(),
                status: Some(503),
                count: 1,
            },
            AzureFailureCount {
                operation: "graph.sp".into(),
                status: None,
                count: 2,
            },
            AzureFailureCount {
                operation: "arm.x".into(),
                status: Some(404),
                count: 9,
            },
        ];
        let firing = plan_firing(&run(&pairs, &regs, &fails, false), 3);
        let statuses: Vec<&str> = firing.iter().map(|a| a.labels["status"].as_str()).collect();
        assert_eq!(
            statuses,
            ["failed", "invalid_selector", "transient", "forbidden"]
        );
        let pair_alert = &firing[0];
        assert_eq!(pair_alert.labels["severity"], "critical");
        assert_eq!(pair_alert.labels["cluster"], cluster("a").key());
        assert!(pair_alert.annotations["explain"].starts_with("acr-autoattach explain --cluster "));
        assert!(
            !firing[1].annotations.contains_key("explain"),
            "`explain` needs a cluster: none for a registry alert"
        );
        assert_eq!(firing[2].labels["operation"], "arm.get_cluster");
    }

    #[test]
    fn resolves_only_what_the_run_covered_and_is_no_longer_firing() {
        let healthy = [
            pair("a", "r", PairStatus::Repaired),
            pair("b", "r", PairStatus::Failed),
        ];
        let firing = plan_firing(&run(&healthy, &[], &[], false), 3);
        let mk = |c: &str, r: &str, status: &str| {
            let mut labels = base_labels(status, "warning");
            labels.insert("cluster".into(), cluster(c).key());
            labels.insert("registry".into(), registry(r).key());
            Alert {
                labels,
                annotations: BTreeMap::new(),
                starts_at: Some("2026-11-30T05:00:00Z".into()),
                ends_at: None,
            }
        };
        let mut b_failed = mk("b", "r", "failed");
        b_failed.labels.insert("severity".into(), "critical".into());
        let active = vec![
            mk("a", "r", "missing"), // healthy now → resolved
            b_failed,                // still failing → kept
            mk("b", "r", "missing"), // same pair, status changed → resolved
            mk("z", "r", "missing"), // not seen by this event run → kept
        ];
        let resolved = plan_resolutions(&run(&healthy, &[], &[], false), &firing, &active);
        let got: Vec<(&str, &str)> = resolved
            .iter()
            .map(|a| {
                (
                    a.labels["cluster"].rsplit('/').next().unwrap(),
                    a.labels["status"].as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("a", "missing"), ("b", "missing")]);
        assert_eq!(resolved[0].ends_at.as_deref(), Some("2026-11-30T06:00:00Z"));
        assert_eq!(
            resolved[0].starts_at.as_deref(),
            Some("2026-11-30T05:00:00Z")
        );

        let resolved = plan_resolutions(&run(&healthy, &[], &[], true), &firing, &active);
        assert_eq!(
            resolved.len(),
            3,
            "a complete run also resolves pairs it no longer sees"
        );
    }

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
        let pairs: [PairResult; 0] = [];
        let firing = plan_firing(&run(&pairs, &[], &counts, true), 3);
        let statuses: Vec<&str> = firing.iter().map(|a| a.labels["status"].as_str()).collect();
        assert_eq!(statuses, ["forbidden", "transient"]);
    }

    #[test]
    fn json_message_only_for_problems() {
        let ok = [pair("a", "r", PairStatus::Compliant)];
        let r = run(&ok, &[], &[], true);
        assert!(json_message(&r, &plan_firing(&r, 3)).is_none());
        let bad = [pair("a", "r", PairStatus::Failed)];
        let r = run(&bad, &[], &[], true);
        let m = json_message(&r, &plan_firing(&r, 3)).unwrap();
        assert_eq!(m.alerts.len(), 1);
        assert!(m.text.contains("acr-autoattach explain --cluster"));
        assert_eq!(m.title, "acr-autoattach: 1 problem(s) need attention");
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
}
