//! The metric instruments. Their names and attributes are a contract for dashboards and alert rules
//! (docs/telemetry.md): change them only together with that document.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};

use crate::core::model::{PairResult, PairStatus, PullRole, RegistryResult, RegistryStatus};

pub const EVENTS: &str = "autoattach.events";
pub const ASSIGNMENTS: &str = "autoattach.assignments";
pub const VERIFICATION_PAIRS: &str = "autoattach.verification.pairs";
pub const VERIFICATION_REGISTRIES: &str = "autoattach.verification.registries";
pub const ATTACH_LATENCY: &str = "autoattach.attach.latency";
pub const AZURE_REQUESTS: &str = "autoattach.azure.requests";
pub const AZURE_REQUEST_DURATION: &str = "autoattach.azure.request.duration";
pub const AZURE_THROTTLED: &str = "autoattach.azure.throttled";
pub const VERIFICATION_RUNS: &str = "autoattach.verification.runs";
pub const ALERTS_SENT: &str = "autoattach.alerts.sent";
pub const ALERTS_FAILED: &str = "autoattach.alerts.failed";
pub const ROLE_ASSIGNMENTS_USED: &str = "autoattach.role_assignments.used";

/// Every documented instrument name, for tests and the docs.
pub const ALL_INSTRUMENTS: [&str; 12] = [
    EVENTS,
    ASSIGNMENTS,
    VERIFICATION_PAIRS,
    VERIFICATION_REGISTRIES,
    ATTACH_LATENCY,
    AZURE_REQUESTS,
    AZURE_REQUEST_DURATION,
    AZURE_THROTTLED,
    VERIFICATION_RUNS,
    ALERTS_SENT,
    ALERTS_FAILED,
    ROLE_ASSIGNMENTS_USED,
];

/// The values the `event.type` attribute may take (metric attributes must stay low-cardinality and must not
/// carry what a sender chose): the Event Grid and Resource Notifications types this project distinguishes,
/// `unparsed`, and `other` for anything else.
pub const EVENT_TYPES: [&str; 13] = [
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceWriteFailure",
    "Microsoft.Resources.ResourceWriteCancel",
    "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.Resources.ResourceDeleteFailure",
    "Microsoft.Resources.ResourceDeleteCancel",
    "Microsoft.Resources.ResourceActionSuccess",
    "Microsoft.Resources.ResourceActionFailure",
    "Microsoft.Resources.ResourceActionCancel",
    "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
    "Microsoft.ResourceNotifications.Resources.Deleted",
    "Microsoft.EventGrid.SubscriptionValidationEvent",
    "unparsed",
];

/// `raw` as an `event.type` attribute value: its canonical spelling when known, else `other`.
pub fn event_type_label(raw: &str) -> &'static str {
    EVENT_TYPES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(raw))
        .copied()
        .unwrap_or("other")
}

/// Bucket boundaries of `autoattach.azure.request.duration`, in seconds: the HTTP client duration advice of
/// the semantic conventions (the SDK's default boundaries are for milliseconds and would put every
/// observation in the first buckets).
pub const AZURE_REQUEST_DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The instrumentation scope name every signal of this project uses.
pub const SCOPE: &str = "acr-autoattach";

/// `autoattach.events{outcome}`: what became of one incoming event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcomeLabel {
    /// Acted upon (attached, verified, detached, or nothing to do after reading Azure).
    Processed,
    /// Not relevant to this project (another resource type, an unrelated operation).
    Ignored,
    /// Malformed: answered with success and recorded, since retrying cannot help.
    Rejected,
    /// A transient failure: the invocation failed so the platform retries.
    Retried,
    /// Subscription validation handshake.
    Validation,
}

impl EventOutcomeLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Rejected => "rejected",
            Self::Retried => "retried",
            Self::Validation => "validation",
        }
    }
}

/// `autoattach.assignments{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignmentOutcome {
    Created,
    Exists,
    Failed,
    Removed,
}

impl AssignmentOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Exists => "exists",
            Self::Failed => "failed",
            Self::Removed => "removed",
        }
    }
}

/// `autoattach.verification.runs{outcome}`: how a timer (or event) verification run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOutcomeLabel {
    /// Every pair healthy.
    Healthy,
    /// Finished, but some pair is failed, missing or pending, or a selector is invalid.
    Unhealthy,
    /// The run could not finish (a transient failure; the invocation failed).
    Failed,
}

impl RunOutcomeLabel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Failed => "failed",
        }
    }
}

/// `status_class` of an Azure request: `2xx`, `3xx`, `4xx`, `429`, `5xx`, or `no_response` — the same
/// classes the Azure client's own statistics use, so reports and dashboards agree.
pub fn status_class(status: Option<u16>) -> &'static str {
    crate::azure::http::status_class(status)
}

/// Handles to every instrument; cheap to clone (the SDK instruments are `Arc`s inside).
#[derive(Clone)]
pub struct Metrics {
    events: Counter<u64>,
    assignments: Counter<u64>,
    pairs: Counter<u64>,
    registries: Counter<u64>,
    attach_latency: Histogram<f64>,
    azure_requests: Counter<u64>,
    azure_request_duration: Histogram<f64>,
    azure_throttled: Counter<u64>,
    runs: Counter<u64>,
    alerts_sent: Counter<u64>,
    alerts_failed: Counter<u64>,
    role_assignments_used: Gauge<u64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(meter: &Meter) -> Self {
        Self {
            events: meter
                .u64_counter(EVENTS)
                .with_unit("{event}")
                .with_description("Events received, by event type and outcome")
                .build(),
            assignments: meter
                .u64_counter(ASSIGNMENTS)
                .with_unit("{assignment}")
                .with_description("Role assignment operations, by outcome and role")
                .build(),
            pairs: meter
                .u64_counter(VERIFICATION_PAIRS)
                .with_unit("{pair}")
                .with_description("Verification results of (cluster, registry) pairs, by status")
                .build(),
            registries: meter
                .u64_counter(VERIFICATION_REGISTRIES)
                .with_unit("{registry}")
                .with_description("Registry-level verification results (invalid_selector), by status")
                .build(),
            attach_latency: meter
                .f64_histogram(ATTACH_LATENCY)
                .with_unit("s")
                .with_description("Seconds from the triggering event's time to the verified attach")
                .with_boundaries(vec![
                    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0,
                ])
                .build(),
            azure_requests: meter
                .u64_counter(AZURE_REQUESTS)
                .with_unit("{request}")
                .with_description("Requests to Azure (ARM, Resource Graph, Graph, token), by operation and status class")
                .build(),
            azure_request_duration: meter
                .f64_histogram(AZURE_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of requests to Azure, by operation")
                .with_boundaries(AZURE_REQUEST_DURATION_BOUNDARIES.to_vec())
                .build(),
            azure_throttled: meter
                .u64_counter(AZURE_THROTTLED)
                .with_unit("{request}")
                .with_description("Azure requests answered 429 (throttled), by operation")
                .build(),
            runs: meter
                .u64_counter(VERIFICATION_RUNS)
                .with_unit("{run}")
                .with_description("Verification runs, by outcome")
                .build(),
            alerts_sent: meter
                .u64_counter(ALERTS_SENT)
                .with_unit("{alert}")
                .with_description("Alerts delivered to the webhook, by format and state")
                .build(),
            alerts_failed: meter
                .u64_counter(ALERTS_FAILED)
                .with_unit("{delivery}")
                .with_description("Failed webhook deliveries, by format and reason")
                .build(),
            role_assignments_used: meter
                .u64_gauge(ROLE_ASSIGNMENTS_USED)
                .with_unit("{assignment}")
                .with_description("Role assignments counted against Azure's 4,000 per-subscription limit, per registry subscription (each verification run)")
                .build(),
        }
    }

    /// Instruments that record nothing (no telemetry configured, or unit tests).
    pub fn noop() -> Self {
        Self::new(&opentelemetry::metrics::NoopMeterProvider::new().meter(SCOPE))
    }

    pub fn record_event(&self, event_type: &str, outcome: EventOutcomeLabel) {
        self.events.add(
            1,
            &[
                KeyValue::new("event.type", event_type_label(event_type)),
                KeyValue::new("outcome", outcome.as_str()),
            ],
        );
    }

    pub fn record_assignment(&self, outcome: AssignmentOutcome, role: PullRole) {
        self.assignments.add(
            1,
            &[
                KeyValue::new("outcome", outcome.as_str()),
                KeyValue::new("role", role.display_name()),
            ],
        );
    }

    /// Counts one pair result and, when it carries one, its attach latency. `record_verification` (the log
    /// record plus this) is what the reconcile engine normally calls.
    pub fn record_pair(&self, result: &PairResult) {
        self.pairs
            .add(1, &[KeyValue::new("status", result.status.as_str())]);
        if let Some(seconds) = result.latency_seconds
            && seconds.is_finite()
            && seconds >= 0.0
            && matches!(result.status, PairStatus::Compliant | PairStatus::Repaired)
        {
            self.attach_latency.record(seconds, &[]);
        }
    }

    pub fn record_registry(&self, result: &RegistryResult) {
        let status = match result.status {
            RegistryStatus::InvalidSelector => "invalid_selector",
        };
        self.registries.add(1, &[KeyValue::new("status", status)]);
    }

    /// One request to Azure. `status` is `None` when no response arrived (connect error, timeout).
    pub fn record_azure_request(
        &self,
        operation: &str,
        status: Option<u16>,
        throttled: bool,
        elapsed: Duration,
    ) {
        let op = KeyValue::new("operation", operation.to_owned());
        self.azure_requests.add(
            1,
            &[
                op.clone(),
                KeyValue::new("status_class", status_class(status)),
            ],
        );
        self.azure_request_duration
            .record(elapsed.as_secs_f64(), std::slice::from_ref(&op));
        if throttled || status == Some(429) {
            self.azure_throttled.add(1, &[op]);
        }
    }

    /// One verification run's count of role assignments in one registry subscription.
    pub fn record_capacity(&self, capacity: &crate::core::model::SubscriptionCapacity) {
        self.role_assignments_used.record(
            capacity.assignments,
            &[
                KeyValue::new("subscription", capacity.subscription.clone()),
                KeyValue::new("limit", i64::try_from(capacity.limit).unwrap_or(i64::MAX)),
            ],
        );
    }

    pub fn record_run(&self, outcome: RunOutcomeLabel) {
        self.runs
            .add(1, &[KeyValue::new("outcome", outcome.as_str())]);
    }

    pub fn record_alerts_sent(&self, format: &'static str, state: &'static str, count: u64) {
        if count > 0 {
            self.alerts_sent.add(
                count,
                &[
                    KeyValue::new("format", format),
                    KeyValue::new("state", state),
                ],
            );
        }
    }

    pub fn record_alert_failure(&self, format: &'static str, reason: &'static str) {
        self.alerts_failed.add(
            1,
            &[
                KeyValue::new("format", format),
                KeyValue::new("reason", reason),
            ],
        );
    }
}

/// The Azure client reports every attempt here (`autoattach.azure.*`).
impl crate::azure::RequestObserver for Metrics {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        throttled: bool,
        elapsed: Duration,
    ) {
        self.record_azure_request(operation, status, throttled, elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(Some(200)), "2xx");
        assert_eq!(status_class(Some(409)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(Some(429)), "429");
        assert_eq!(status_class(None), "no_response");
    }

    #[test]
    fn noop_metrics_accept_everything() {
        let m = Metrics::noop();
        m.record_azure_request("arm.get_cluster", Some(429), true, Duration::from_millis(3));
        m.record_event(
            "Microsoft.Resources.ResourceWriteSuccess",
            EventOutcomeLabel::Processed,
        );
        m.clone().record_run(RunOutcomeLabel::Healthy);
    }

    #[test]
    fn event_type_attribute_takes_only_known_values() {
        assert_eq!(
            event_type_label("microsoft.resources.resourcewritesuccess"),
            "Microsoft.Resources.ResourceWriteSuccess"
        );
        assert_eq!(event_type_label("unparsed"), "unparsed");
        for hostile in [
            "",
            "x\nforged",
            "Microsoft.Resources.ResourceWriteSuccess ",
            "a".repeat(10_000).as_str(),
        ] {
            assert_eq!(event_type_label(hostile), "other");
        }
    }
}
