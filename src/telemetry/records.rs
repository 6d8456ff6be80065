//! The `AttachmentVerification` log record and the invocation and pair span helpers (the Azure request span is
//! the client's own, `crate::azure::span`). They go through `tracing`, so they reach
//! stdout JSON always and the OTel exporters when configured.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::{Metrics, ProcessInfo};
use crate::core::model::{PairResult, PairStatus, RegistryResult, RegistryStatus, ResourceId};

/// The name (event name and message) of the per-pair verification log record.
pub const ATTACHMENT_VERIFICATION: &str = "AttachmentVerification";
/// The name of the per-registry verification log record (`invalid_selector`).
pub const REGISTRY_VERIFICATION: &str = "RegistryVerification";

/// `faas.trigger` of an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Event Grid.
    PubSub,
    Timer,
    /// An operator's command (`verify`, `explain`) outside the Functions host.
    Other,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PubSub => "pubsub",
            Self::Timer => "timer",
            Self::Other => "other",
        }
    }
}

/// The span of one invocation (FaaS server span conventions): named `faas.name` = `<app>/<function>`, with
/// `faas.trigger`, `faas.invocation_id`, `cloud.resource_id` (when the app's id is known) and the remote
/// parent from a W3C `traceparent` (ignored when absent or malformed). The outcome is recorded with
/// [`record_invocation_result`], timer details with [`record_timer`].
pub fn invocation_span(
    process: &ProcessInfo,
    function_name: &str,
    invocation_id: &str,
    trigger: Trigger,
    traceparent: Option<&str>,
) -> Span {
    let faas_name = process.function_name(function_name);
    let span = tracing::info_span!(
        "invocation",
        otel.name = %faas_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        faas.name = %faas_name,
        faas.trigger = trigger.as_str(),
        faas.invocation_id = %invocation_id,
        faas.cron = tracing::field::Empty,
        faas.time = tracing::field::Empty,
        cloud.resource_id = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    );
    if let Some(id) = process.function_resource_id(function_name) {
        span.record("cloud.resource_id", id.as_str());
    }
    if let Some(tp) = traceparent {
        let carrier: HashMap<String, String> =
            HashMap::from([("traceparent".to_owned(), tp.trim().to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        // A malformed traceparent extracts to an empty context: the span is then simply a root.
        let _ = span.set_parent(cx);
    }
    span
}

/// `faas.cron` (the schedule) and `faas.time` (when the timer fired, RFC 3339) of a timer invocation.
pub fn record_timer(span: &Span, cron: &str, time: &str) {
    span.record("faas.cron", cron);
    span.record("faas.time", time);
}

/// Ends an invocation span truthfully: `http.response.status_code` is the code the Functions host saw
/// (200 or 500); `error` (an `error.type` value) marks the span ERROR — for a 500 (`"500"`) and for a run
/// that answered 200 but could not do its work (a verification that could not inventory). In Application
/// Insights the request then has `success: false` and `responseCode` = the status code.
pub fn record_invocation_result(span: &Span, status_code: u16, error: Option<&str>) {
    span.record("http.response.status_code", i64::from(status_code));
    if let Some(kind) = error {
        span.record("error.type", kind);
        span.record("otel.status_code", "ERROR");
    }
}

/// An internal span around the write (and read-back) of one (cluster, registry) pair. The engine opens it
/// only for pairs it writes; pairs that need no write have their `AttachmentVerification` record only.
pub fn pair_span(cluster: &ResourceId, registry: &ResourceId) -> Span {
    tracing::info_span!(
        "pair",
        otel.name = "pair decision",
        autoattach.cluster.id = %cluster,
        autoattach.registry.id = %registry,
        autoattach.pair.status = tracing::field::Empty,
    )
}

/// The summary of one verification run for one registry: a `RegistryVerification` record with `status` =
/// `summary`, emitted for every registry the run covered, whatever `AUTOATTACH_PAIR_RECORDS` says. It is
/// what lets a query over `changes` records tell "compliant, not reported" from "not covered".
#[derive(Debug, Clone, Copy)]
pub struct RegistrySummary<'a> {
    pub registry_id: &'a ResourceId,
    /// Pair results of this registry in the run.
    pub pairs: usize,
    /// Of which `compliant`.
    pub compliant: usize,
    /// Of which the run emitted an `AttachmentVerification` record for.
    pub reported: usize,
    /// `all` or `changes`.
    pub records: &'static str,
    /// The run reported every pair (`all`, or the snapshot run of `changes`).
    pub snapshot: bool,
    /// The run covered its whole scope (no deadline cut, inventory succeeded).
    pub complete: bool,
}

impl Metrics {
    /// Emits the `RegistryVerification` summary of one registry for one run (INFO).
    pub fn record_registry_summary(&self, summary: &RegistrySummary<'_>, invocation_id: &str) {
        // Integers (OTLP `intValue`); no count comes near `i64::MAX`.
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        tracing::event!(
            name: "RegistryVerification",
            tracing::Level::INFO,
            {
                registry.id = %summary.registry_id,
                status = "summary",
                pairs.total = int(summary.pairs),
                pairs.compliant = int(summary.compliant),
                pairs.reported = int(summary.reported),
                records = summary.records,
                snapshot = summary.snapshot,
                run.complete = summary.complete,
                invocation.id = invocation_id,
            },
            "RegistryVerification"
        );
    }

    /// Emits one `AttachmentVerification` log record for `result` and counts it in
    /// `autoattach.verification.pairs` (and `autoattach.attach.latency` when it carries a latency).
    pub fn record_verification(&self, result: &PairResult, invocation_id: &str) {
        let principal = result.principal_id.as_deref().unwrap_or_default();
        let role = result
            .role
            .map(crate::core::model::PullRole::display_name)
            .unwrap_or_default();
        let reason = result.reason.as_deref().unwrap_or_default();
        let status = result.status.as_str();
        // Problems at warning level, so a log-level filter alone can page on them. (Braced fields: the
        // `name:` form of the level macros cannot parse dotted field names.)
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    name: "AttachmentVerification",
                    $level,
                    {
                        cluster.id = %result.cluster_id,
                        registry.id = %result.registry_id,
                        principal.id = principal,
                        role = role,
                        status = status,
                        reason = reason,
                        invocation.id = invocation_id,
                    },
                    "AttachmentVerification"
                )
            };
        }
        if matches!(result.status, PairStatus::Failed | PairStatus::Missing) {
            emit!(tracing::Level::WARN);
        } else {
            emit!(tracing::Level::INFO);
        }
        Span::current().record("autoattach.pair.status", status);
        self.record_pair(result);
    }

    /// Emits one `RegistryVerification` record (status `invalid_selector`) and counts it in
    /// `autoattach.verification.registries`.
    pub fn record_registry_result(&self, result: &RegistryResult, invocation_id: &str) {
        let status = match result.status {
            RegistryStatus::InvalidSelector => "invalid_selector",
        };
        tracing::event!(
            name: "RegistryVerification",
            tracing::Level::WARN,
            {
                registry.id = %result.registry_id,
                status = status,
                reason = %result.reason,
                invocation.id = invocation_id,
            },
            "RegistryVerification"
        );
        self.record_registry(result);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::model::PullRole;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn verification_record_reaches_stdout_json_with_every_field() {
        let buf = Buf::default();
        let writer = buf.clone();
        let (guard, _d) = crate::telemetry::init_scoped(
            &crate::telemetry::TelemetryConfig::default(),
            &crate::telemetry::ProcessInfo::from_env(&|_| None),
            move || writer.clone(),
        )
        .unwrap();
        let r = PairResult {
            cluster_id: ResourceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a").unwrap(),
            registry_id: ResourceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerRegistry/registries/b").unwrap(),
            principal_id: Some("p-1".into()),
            role: Some(PullRole::AcrPull),
            status: PairStatus::Missing,
            reason: Some("audit mode".into()),
            assignment_id: None,
            latency_seconds: None,
            failure: None,
        };
        {
            let process = crate::telemetry::ProcessInfo::from_env(&|_| None);
            let _e = invocation_span(&process, "VerifyAttachments", "inv-1", Trigger::Timer, None)
                .entered();
            guard.metrics().record_verification(&r, "inv-1");
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["message"], "AttachmentVerification");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["status"], "missing");
        assert_eq!(line["principal.id"], "p-1");
        assert_eq!(line["role"], "AcrPull");
        assert_eq!(line["invocation.id"], "inv-1");
        assert_eq!(line["reason"], "audit mode");
        assert!(
            line["cluster.id"]
                .as_str()
                .unwrap()
                .ends_with("managedClusters/a")
        );
        assert_eq!(line["span"]["faas.invocation_id"], "inv-1");
    }
}
