//! The two functions of the app and what each does with an invocation: parse and validate the trigger,
//! hand it to the engine, report every result in `Logs`, `ReturnValue` and telemetry, and decide between an
//! answer (200) and a failed invocation (500, so the platform retries).

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

use crate::azure::RequestObserver;
use crate::core::alerts::{AlertRun, AzureFailureCount};
use crate::core::events::{self, EventRejection};
use crate::core::model::{PairResult, RegistryResult, VerificationReport};
use crate::core::outcome::{Answer, EventOutcome, EventReport, answer};
use crate::runtime::alerting::{Alerter, AzureFailureTally};
use crate::runtime::config::Config;
use crate::runtime::contract::{
    FunctionName, Functions, Invocation, InvocationAnswer, InvocationFailure,
};
use crate::runtime::engine::Engine;
use crate::telemetry::{
    EventOutcomeLabel, Metrics, RunOutcomeLabel, TelemetryGuard, Trigger, invocation_span,
};

/// The most per-pair lines one answer's `Logs` carries; the rest are counted (every result still reaches
/// telemetry as an `AttachmentVerification` record). Each `Logs` entry becomes a host log line, and a
/// 10,000-cluster estate must not produce an answer of hundreds of megabytes.
pub const MAX_PAIR_LOG_LINES: usize = 1_000;

/// The telemetry trigger kind of each function.
fn trigger(function: FunctionName) -> Trigger {
    match function {
        FunctionName::OnResourceEvent => Trigger::PubSub,
        FunctionName::VerifyAttachments => Trigger::Timer,
    }
}

/// The timer trigger's value.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TimerInfo {
    #[serde(rename = "Schedule", default)]
    pub schedule: Option<Value>,
    #[serde(rename = "ScheduleStatus", default)]
    pub schedule_status: Option<ScheduleStatus>,
    #[serde(rename = "IsPastDue", default)]
    pub is_past_due: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ScheduleStatus {
    #[serde(rename = "Last", default)]
    pub last: Option<String>,
    #[serde(rename = "Next", default)]
    pub next: Option<String>,
    #[serde(rename = "LastUpdated", default)]
    pub last_updated: Option<String>,
}

tokio::task_local! {
    /// The Azure failures (403, 429, 5xx, no response) of the invocation running on this task.
    static INVOCATION_AZURE_FAILURES: AzureFailureTally;
}

/// The Azure client's observer for alerting: counts each failed request in the [`AzureFailureTally`] of the
/// invocation whose task sent it, so concurrent invocations sharing the client do not see each other's
/// failures. The engine and the client never spawn (requests run on the invocation's task). A request sent
/// outside an invocation (the operator CLI) is not counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct InvocationAzureFailures;

impl RequestObserver for InvocationAzureFailures {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        _throttled: bool,
        _elapsed: std::time::Duration,
    ) {
        let _ = INVOCATION_AZURE_FAILURES.try_with(|tally| tally.record(operation, status));
    }
}

/// Runs `work` with a fresh Azure failure tally of its own (drained with [`take_azure_failures`]).
/// (Not an `async fn`: that would hold `work` twice in its state, once as argument and once in the scope.)
pub fn with_azure_failure_tally<F: std::future::Future>(
    work: F,
) -> impl std::future::Future<Output = F::Output> {
    INVOCATION_AZURE_FAILURES.scope(AzureFailureTally::default(), work)
}

/// The Azure failures counted so far on this task's tally, emptying it (empty outside one).
pub fn take_azure_failures() -> Vec<AzureFailureCount> {
    INVOCATION_AZURE_FAILURES
        .try_with(AzureFailureTally::drain)
        .unwrap_or_default()
}

/// Telemetry and alerting of the process.
#[derive(Clone)]
pub struct Observability {
    pub metrics: Metrics,
    /// Flushed before each answer (Flex/Consumption instances freeze between invocations).
    pub guard: Option<Arc<TelemetryGuard>>,
    pub alerter: Option<Alerter>,
}

impl Observability {
    /// Metrics that go nowhere, no flushing, no alerts.
    pub fn none() -> Self {
        Self {
            metrics: Metrics::noop(),
            guard: None,
            alerter: None,
        }
    }
}

impl Functions for Handler {
    async fn invoke(&self, invocation: Invocation) -> Result<InvocationAnswer, InvocationFailure> {
        Handler::invoke(self, invocation).await
    }
}

/// Everything an invocation needs; one per process, shared by all invocations.
pub struct Handler {
    engine: Engine,
    observability: Observability,
}

impl Handler {
    pub fn new(engine: Engine, observability: Observability) -> Self {
        Self {
            engine,
            observability,
        }
    }

    pub fn config(&self) -> &Config {
        self.engine.config()
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub async fn invoke(
        &self,
        invocation: Invocation,
    ) -> Result<InvocationAnswer, InvocationFailure> {
        let function = invocation.function;
        let span = invocation_span(
            function.as_str(),
            &invocation.invocation_id,
            trigger(function),
            invocation.traceparent.as_deref(),
        );
        let outcome = with_azure_failure_tally(
            async {
                match function {
                    FunctionName::OnResourceEvent => self.on_resource_event(&invocation).await,
                    FunctionName::VerifyAttachments => self.verify_attachments(&invocation).await,
                }
            }
            .instrument(span),
        )
        .await;
        if let Some(guard) = &self.observability.guard {
            let flushed = guard.flush_async().await;
            if !flushed.completed {
                tracing::warn!(errors = ?flushed.errors, "telemetry flush did not complete before the answer");
            }
        }
        outcome
    }

    async fn on_resource_event(
        &self,
        invocation: &Invocation,
    ) -> Result<InvocationAnswer, InvocationFailure> {
        let started = Instant::now();
        let metrics = &self.observability.metrics;
        let raw = match invocation.request.as_ref() {
            Ok(request) => match request.trigger_raw(FunctionName::OnResourceEvent.binding()) {
                Ok(v) => v,
                Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
            },
            Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
        };
        let elements = match events::parse_trigger(raw) {
            Ok(elements) => elements,
            Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
        };
        let mut logs = Vec::new();
        let mut rejections = Vec::new();
        let mut classified = Vec::new();
        for element in elements {
            match element {
                Ok(event) => classified.push(events::classify(&event)),
                Err(rejection) => {
                    record_rejection(invocation, &rejection, metrics);
                    logs.push(format!("rejected ({}): {rejection}", rejection.as_str()));
                    rejections.push(
                        json!({"rejected": rejection.as_str(), "reason": rejection.to_string()}),
                    );
                }
            }
        }
        let reports = futures::future::join_all(
            classified
                .iter()
                .map(|e| self.engine.handle_event(e, started)),
        )
        .await;
        let mut pair_lines = 0usize;
        for report in &reports {
            metrics.record_event(&report.event_type, event_outcome(report));
            logs.push(event_line(report));
            for pair in &report.pairs {
                self.record_pair(pair, &invocation.invocation_id);
                if pair_lines < MAX_PAIR_LOG_LINES {
                    logs.push(pair_line(pair));
                }
                pair_lines += 1;
            }
            for registry in &report.registry_results {
                self.record_registry(registry, &invocation.invocation_id);
                logs.push(registry_line(registry));
            }
        }
        if pair_lines > MAX_PAIR_LOG_LINES {
            logs.push(format!(
                "… {} more pair results in telemetry",
                pair_lines - MAX_PAIR_LOG_LINES
            ));
        }
        self.alert(invocation, &reports).await;
        let return_value = json!({"events": reports, "rejections": rejections});
        if let Answer::Retry { reason: retry } = answer(&reports) {
            tracing::warn!(invocation_id = %invocation.invocation_id, reason = %retry, "invocation fails so Event Grid retries");
            return Err(InvocationFailure {
                reason: retry,
                logs,
            });
        }
        Ok(InvocationAnswer {
            logs,
            return_value,
            ..InvocationAnswer::default()
        })
    }

    async fn alert(&self, invocation: &Invocation, reports: &[EventReport]) {
        let Some(alerter) = &self.observability.alerter else {
            return;
        };
        let pairs: Vec<PairResult> = reports
            .iter()
            .flat_map(|r| r.pairs.iter().cloned())
            .collect();
        let registries: Vec<RegistryResult> = reports
            .iter()
            .flat_map(|r| r.registry_results.iter().cloned())
            .collect();
        let azure_failures = take_azure_failures();
        if pairs.is_empty() && registries.is_empty() && azure_failures.is_empty() {
            return;
        }
        let run = AlertRun {
            invocation_id: &invocation.invocation_id,
            pairs: &pairs,
            registries: &registries,
            azure_failures: &azure_failures,
            complete_scope: false,
            blind: None,
            now: OffsetDateTime::now_utc(),
        };
        alerter.send(&run).await;
    }

    fn record_pair(&self, pair: &PairResult, invocation_id: &str) {
        self.observability
            .metrics
            .record_verification(pair, invocation_id);
    }

    fn record_registry(&self, registry: &RegistryResult, invocation_id: &str) {
        self.observability
            .metrics
            .record_registry_result(registry, invocation_id);
    }

    /// Runs one verification. A run whose inventory failed (it could not see its scope: issue 10, rule 7)
    /// reports and alerts what it could, then fails the invocation so the host records a failure.
    async fn verify_attachments(
        &self,
        invocation: &Invocation,
    ) -> Result<InvocationAnswer, InvocationFailure> {
        let metrics = &self.observability.metrics;
        let value = match invocation
            .request
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| r.trigger_value(FunctionName::VerifyAttachments.binding()))
        {
            Ok(v) => v,
            Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
        };
        let timer: TimerInfo = match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                return Ok(rejected(
                    invocation,
                    "not_a_timer",
                    &format!("the timer value is not a TimerInfo: {e}"),
                    metrics,
                ));
            }
        };
        let mut logs = Vec::new();
        if timer.is_past_due {
            logs.push(
                "timer is past due (a run was missed, e.g. after a restart); verifying now"
                    .to_owned(),
            );
        }
        let config = self.engine.config();
        let report = self.engine.verify(config.verify_budget, &[], None).await;
        for pair in &report.pairs {
            self.record_pair(pair, &invocation.invocation_id);
        }
        for registry in &report.registry_results {
            self.record_registry(registry, &invocation.invocation_id);
        }
        metrics.record_run(if report.inventory.failure().is_none() && report.complete {
            if report.all_compliant() {
                RunOutcomeLabel::Healthy
            } else {
                RunOutcomeLabel::Unhealthy
            }
        } else {
            RunOutcomeLabel::Failed
        });
        if let Some(alerter) = &self.observability.alerter {
            let azure_failures = take_azure_failures();
            let run = AlertRun::from_report(
                &report,
                &invocation.invocation_id,
                &azure_failures,
                OffsetDateTime::now_utc(),
            );
            alerter.send(&run).await;
        }
        logs.push(summary_line(&report));
        for pair in report.pairs.iter().take(MAX_PAIR_LOG_LINES) {
            logs.push(pair_line(pair));
        }
        if report.pairs.len() > MAX_PAIR_LOG_LINES {
            logs.push(format!(
                "… {} more pair results in telemetry",
                report.pairs.len() - MAX_PAIR_LOG_LINES
            ));
        }
        for registry in &report.registry_results {
            logs.push(registry_line(registry));
        }
        if let Some(reason) = report.inventory.failure() {
            tracing::error!(invocation_id = %invocation.invocation_id, reason, "verification failed: the scope could not be inventoried");
            return Err(InvocationFailure {
                reason: format!(
                    "verification failed: the scope could not be inventoried: {reason}"
                ),
                logs,
            });
        }
        let summary = summary_json(&report, timer.is_past_due);
        Ok(InvocationAnswer {
            logs,
            return_value: summary,
            ..InvocationAnswer::default()
        })
    }
}

fn event_outcome(report: &EventReport) -> EventOutcomeLabel {
    match report.outcome {
        EventOutcome::Ignored => EventOutcomeLabel::Ignored,
        EventOutcome::Retry => EventOutcomeLabel::Retried,
        EventOutcome::Done | EventOutcome::Failed => EventOutcomeLabel::Processed,
    }
}

/// One line per event: what it was and what happened.
pub fn event_line(report: &EventReport) -> String {
    let mut line = format!(
        "event {} ({}): {}",
        report.event_id, report.event_type, report.class
    );
    if let Some(resource) = &report.resource {
        let _ = write!(line, " {resource}");
    }
    let _ = write!(line, " → {}", report.outcome);
    if !report.notes.is_empty() {
        let _ = write!(line, ": {}", report.notes.join("; "));
    }
    line
}

/// One line per pair result.
pub fn pair_line(pair: &PairResult) -> String {
    let mut line = format!(
        "{} cluster={} registry={}",
        pair.status, pair.cluster_id, pair.registry_id
    );
    if let Some(role) = pair.role {
        let _ = write!(line, " role=\"{role}\"");
    }
    if let Some(p) = &pair.principal_id {
        let _ = write!(line, " principal={p}");
    }
    if let Some(l) = pair.latency_seconds {
        let _ = write!(line, " latency={l:.1}s");
    }
    if let Some(r) = &pair.reason {
        let _ = write!(line, " reason=\"{r}\"");
    }
    line
}

fn registry_line(r: &RegistryResult) -> String {
    format!(
        "invalid_selector registry={} reason=\"{}\"",
        r.registry_id, r.reason
    )
}

fn summary_line(report: &VerificationReport) -> String {
    let counts: Vec<String> = report
        .counts()
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect();
    format!(
        "verification {}: {} clusters, {} registries, {} pairs ({}), invalid_selector={}, {} Azure requests, {:.1}s, inventory from {}",
        if report.complete {
            "complete"
        } else {
            "PARTIAL"
        },
        report.clusters.len(),
        report.registries.len(),
        report.pairs.len(),
        counts.join(" "),
        report.registry_results.len(),
        report.azure_requests,
        report.duration_seconds,
        report.inventory,
    )
}

fn summary_json(report: &VerificationReport, past_due: bool) -> Value {
    let counts: serde_json::Map<String, Value> = report
        .counts()
        .iter()
        .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
        .collect();
    json!({
        "complete": report.complete,
        "pastDue": past_due,
        "clusters": report.clusters.len(),
        "registries": report.registries.len(),
        "pairs": report.pairs.len(),
        "counts": counts,
        "invalidSelectors": report.registry_results.len(),
        "unverifiedPairs": report.unverified_pairs,
        "azureRequests": report.azure_requests,
        "durationSeconds": report.duration_seconds,
        "inventorySource": report.inventory,
    })
}

fn record_rejection(invocation: &Invocation, rejection: &EventRejection, metrics: &Metrics) {
    tracing::warn!(
        function = invocation.function.as_str(),
        invocation_id = %invocation.invocation_id,
        rejection = rejection.as_str(),
        reason = %rejection,
        "event rejected"
    );
    metrics.record_event("unparsed", EventOutcomeLabel::Rejected);
}

/// A malformed or irrelevant input: answered with success (retrying cannot help) and a recorded rejection.
fn rejected(
    invocation: &Invocation,
    code: &str,
    reason: &str,
    metrics: &Metrics,
) -> InvocationAnswer {
    tracing::warn!(
        function = invocation.function.as_str(),
        invocation_id = %invocation.invocation_id,
        rejection = code,
        reason,
        "invocation rejected"
    );
    if invocation.function == FunctionName::OnResourceEvent {
        metrics.record_event("unparsed", EventOutcomeLabel::Rejected);
    }
    InvocationAnswer {
        logs: vec![format!("rejected ({code}): {reason}")],
        return_value: json!({"rejected": code}),
        ..InvocationAnswer::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn failures(counts: &[AzureFailureCount]) -> Vec<(&str, Option<u16>, u32)> {
        counts
            .iter()
            .map(|c| (c.operation.as_str(), c.status, c.count))
            .collect()
    }

    #[tokio::test]
    async fn concurrent_invocations_count_only_their_own_azure_failures() {
        let observer = InvocationAzureFailures;
        let first = with_azure_failure_tally(async {
            observer.on_request("put_role_assignment", Some(403), false, Duration::ZERO);
            // Let the other invocation run in between, as concurrent invocations interleave.
            tokio::task::yield_now().await;
            observer.on_request("put_role_assignment", Some(201), false, Duration::ZERO);
            observer.on_request("put_role_assignment", Some(403), false, Duration::ZERO);
            take_azure_failures()
        });
        let second = with_azure_failure_tally(async {
            observer.on_request("list_clusters", Some(503), false, Duration::ZERO);
            tokio::task::yield_now().await;
            observer.on_request("list_clusters", None, false, Duration::ZERO);
            let counted = take_azure_failures();
            assert!(take_azure_failures().is_empty(), "taking drains the tally");
            counted
        });
        let (first, second) = tokio::join!(first, second);
        assert_eq!(failures(&first), [("put_role_assignment", Some(403), 2)]);
        assert_eq!(
            failures(&second),
            [("list_clusters", None, 1), ("list_clusters", Some(503), 1)]
        );
        // Outside an invocation (the operator CLI) nothing is counted, and nothing panics.
        observer.on_request("list_clusters", Some(403), false, Duration::ZERO);
        assert!(take_azure_failures().is_empty());
    }
}
