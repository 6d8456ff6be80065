//! The two functions of the app and what each does with an invocation: parse and validate the trigger,
//! hand it to the engine, report every result in `Logs`, `ReturnValue` and telemetry, and decide between an
//! answer (200) and a failed invocation (500, so the platform retries).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use futures::StreamExt as _;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument;

use crate::azure::RequestObserver;
use crate::core::alerts::{AlertRun, AzureFailureCount};
use crate::core::events::{self, ClassifiedEvent, EventRejection};
use crate::core::model::{
    PairResult, PairStatus, RegistryResult, ResourceId, SubscriptionCapacity, VerificationReport,
};
use crate::core::ncrontab::Schedule;
use crate::core::outcome::{Answer, EventOutcome, EventReport, answer};
use crate::runtime::alerting::{Alerter, AzureFailureTally};
use crate::runtime::config::Config;
use crate::runtime::contract::{
    FunctionName, Functions, Invocation, InvocationAnswer, InvocationFailure,
};
use crate::runtime::engine::{EVENT_HARD_BUDGET, Engine, unfinished_report, work_key};
use crate::runtime::pair_records::{self, PairRecords, is_snapshot_run};
use crate::runtime::singleflight::SingleFlight;
use crate::telemetry::{
    EventOutcomeLabel, Metrics, ProcessInfo, RegistrySummary, RunOutcomeLabel, TelemetryGuard,
    Trigger, invocation_span, record_invocation_result, record_timer,
};

/// The most per-pair lines one answer's `Logs` carries; the rest are counted (every result still reaches
/// telemetry as an `AttachmentVerification` record). Each `Logs` entry becomes a host log line, and a
/// 10,000-cluster estate must not produce an answer of hundreds of megabytes.
pub const MAX_PAIR_LOG_LINES: usize = 1_000;

/// Distinct events of one delivery handled at once; the Azure client bounds the requests in flight, this
/// bounds the work an invocation holds open.
pub const MAX_EVENTS_IN_FLIGHT: usize = 8;

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
    engine: Arc<Engine>,
    observability: Observability,
    /// Concurrent invocations about the same resource share one run of the engine (single flight): a burst
    /// of N deliveries of one event costs at most two runs, never N.
    events: SingleFlight<String, EventReport>,
    /// The function app (name and id) the invocation spans name.
    process: ProcessInfo,
}

impl Handler {
    pub fn new(engine: Engine, observability: Observability) -> Self {
        let process = observability.guard.as_ref().map_or_else(
            || ProcessInfo::from_env(&|_| None),
            |g| g.process_info().clone(),
        );
        Self {
            engine: Arc::new(engine),
            observability,
            events: SingleFlight::new(EVENT_HARD_BUDGET),
            process,
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
            &self.process,
            function.as_str(),
            &invocation.invocation_id,
            trigger(function),
            invocation.traceparent.as_deref(),
        );
        let (outcome, run_error) = with_azure_failure_tally(
            async {
                match function {
                    FunctionName::OnResourceEvent => {
                        (self.on_resource_event(&invocation).await, None)
                    }
                    FunctionName::VerifyAttachments => self.verify_attachments(&invocation).await,
                }
            }
            .instrument(span.clone()),
        )
        .await;
        // What the host sees: 200 for an answer, 500 for a failure (`InvocationFailure` answers 500).
        match &outcome {
            Ok(_) => record_invocation_result(&span, 200, run_error),
            // A run that failed for a known reason (`inventory_failed`) says so; any other failure is "500".
            Err(_) => record_invocation_result(&span, 500, Some(run_error.unwrap_or("500"))),
        }
        drop(span);
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
        let (started, queued) = invocation.dispatched(Instant::now(), OffsetDateTime::now_utc());
        let metrics = &self.observability.metrics;
        let raw = match invocation.request.as_ref() {
            Ok(request) => match request.trigger_raw(FunctionName::OnResourceEvent.binding()) {
                Ok(v) => v,
                Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
            },
            Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
        };
        // Parse and classify in one pass: an irrelevant event (the bulk) is never copied.
        let elements = match events::classify_trigger(raw) {
            Ok(elements) => elements,
            Err(e) => return Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
        };
        let mut logs = Vec::new();
        let mut rejections = Vec::new();
        let mut classified = Vec::new();
        for element in elements {
            match element {
                Ok(event) => classified.push(event),
                Err(rejection) => {
                    record_rejection(invocation, &rejection, metrics);
                    logs.push(format!("rejected ({}): {rejection}", rejection.as_str()));
                    rejections.push(
                        json!({"rejected": rejection.as_str(), "reason": rejection.to_string()}),
                    );
                }
            }
        }
        // Duplicates within the delivery need the work once: one report per distinct work, the others
        // counted on it.
        let mut distinct: Vec<(ClassifiedEvent, usize)> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for event in classified {
            match work_key(&event) {
                Some(key) => {
                    if let Some(&i) = seen.get(&key) {
                        distinct[i].1 += 1;
                    } else {
                        seen.insert(key, distinct.len());
                        distinct.push((event, 0));
                    }
                }
                None => distinct.push((event, 0)),
            }
        }
        // Whatever is not done by the deadline (from the host's dispatch) fails alone and asks for a retry.
        let deadline = started + EVENT_HARD_BUDGET;
        let distinct = &distinct;
        let reports: Vec<EventReport> = futures::stream::iter(0..distinct.len())
            .map(|i| async move {
                let (event, duplicates) = &distinct[i];
                let mut report =
                    match tokio::time::timeout_at(deadline, self.coalesced(event, started)).await {
                        Ok(report) => report,
                        Err(_) => unfinished_report(
                            event,
                            "not finished within the delivery deadline; Event Grid will retry",
                        ),
                    };
                if *duplicates > 0 {
                    report.notes.push(format!(
                        "{duplicates} duplicate events in this delivery merged into this one"
                    ));
                }
                report
            })
            .buffered(MAX_EVENTS_IN_FLIGHT)
            .collect()
            .await;
        let mut pair_lines = 0usize;
        for (report, (_, duplicates)) in reports.iter().zip(distinct) {
            for _ in 0..=*duplicates {
                metrics.record_event(&report.event_type, event_outcome(report));
            }
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
        let return_value = json!({"events": reports, "rejections": rejections, "queuedSeconds": queued.as_secs_f64()});
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

    /// Handles `event`, sharing the run with every concurrent invocation about the same work whose run
    /// began after this one arrived (`started`): never an answer from a state read before the event.
    async fn coalesced(&self, event: &ClassifiedEvent, started: Instant) -> EventReport {
        let Some(key) = work_key(event) else {
            return self.engine.handle_event(event, started).await;
        };
        let engine = Arc::clone(&self.engine);
        let owned = event.clone();
        let mut report = self
            .events
            .run(
                key,
                started,
                |_| true,
                move || async move { engine.handle_event(&owned, started).await },
            )
            .await;
        report.event_id.clone_from(&event.metadata.id);
        report.event_type.clone_from(&event.metadata.event_type);
        report
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
            capacity: &[],
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
    /// reports and alerts what it could, then fails the invocation so the host records a failure. The second
    /// value is the span's `error.type` when the run could not do its work (`inventory_failed`, or
    /// `incomplete` — a partial run still answers 200).
    async fn verify_attachments(
        &self,
        invocation: &Invocation,
    ) -> (
        Result<InvocationAnswer, InvocationFailure>,
        Option<&'static str>,
    ) {
        let metrics = &self.observability.metrics;
        let value = match invocation
            .request
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|r| r.trigger_value(FunctionName::VerifyAttachments.binding()))
        {
            Ok(v) => v,
            Err(e) => {
                return (
                    Ok(rejected(invocation, e.as_str(), &e.to_string(), metrics)),
                    None,
                );
            }
        };
        let timer: TimerInfo = match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                return (
                    Ok(rejected(
                        invocation,
                        "not_a_timer",
                        &format!("the timer value is not a TimerInfo: {e}"),
                        metrics,
                    )),
                    None,
                );
            }
        };
        let fired = fired_at(invocation);
        record_timer(
            &tracing::Span::current(),
            &self.engine.config().verify_schedule,
            &fired
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        );
        let mut logs = Vec::new();
        if timer.is_past_due {
            logs.push(
                "timer is past due (a run was missed, e.g. after a restart); verifying now"
                    .to_owned(),
            );
        }
        let config = self.engine.config();
        let (report, group_notes) = self
            .engine
            .verify_noted(config.verify_budget, &[], None)
            .await;
        let snapshot = config.pair_records == PairRecords::All
            || is_snapshot_run(
                fired,
                timer
                    .schedule_status
                    .as_ref()
                    .and_then(|s| s.last.as_deref())
                    .and_then(parse_time),
                Schedule::parse(&config.verify_schedule).ok().as_ref(),
                config.snapshot_hours,
            );
        emit_verification_records(
            metrics,
            self.observability.guard.as_deref(),
            &report,
            config.pair_records,
            snapshot,
            &invocation.invocation_id,
        )
        .await;
        for registry in &report.registry_results {
            self.record_registry(registry, &invocation.invocation_id);
        }
        for capacity in &report.capacity {
            metrics.record_capacity(capacity);
        }
        let run_error = if report.inventory.failure().is_some() {
            Some("inventory_failed")
        } else if !report.complete {
            Some("incomplete")
        } else {
            None
        };
        metrics.record_run(match run_error {
            Some(_) => RunOutcomeLabel::Failed,
            None if report.all_compliant() => RunOutcomeLabel::Healthy,
            None => RunOutcomeLabel::Unhealthy,
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
        logs.extend(report.capacity.iter().map(SubscriptionCapacity::line));
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
        logs.extend(group_notes);
        if let Some(reason) = report.inventory.failure() {
            tracing::error!(invocation_id = %invocation.invocation_id, reason, "verification failed: the scope could not be inventoried");
            return (
                Err(InvocationFailure {
                    reason: format!(
                        "verification failed: the scope could not be inventoried: {reason}"
                    ),
                    logs,
                }),
                run_error,
            );
        }
        let summary = summary_json(&report, timer.is_past_due);
        (
            Ok(InvocationAnswer {
                logs,
                return_value: summary,
                ..InvocationAnswer::default()
            }),
            run_error,
        )
    }
}

/// When the timer fired (`faas.time`): the host's `sys.UtcNow`, else now.
fn fired_at(invocation: &Invocation) -> OffsetDateTime {
    invocation
        .request
        .as_ref()
        .ok()
        .and_then(|r| r.metadata.sys.as_ref())
        .and_then(|sys| sys.utc_now.as_deref())
        .and_then(parse_time)
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// An RFC 3339 time as the host writes it (`2026-12-01T06:00:00.0040000Z`, `ScheduleStatus.Last` may carry
/// an offset).
fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()
}

/// Records emitted between two flushes: below the SDK's batch queue (2,048 log records by default), which
/// drops what does not fit, so a 200,000-record snapshot is delivered whole rather than mostly dropped.
pub const RECORDS_PER_FLUSH: usize = 1_000;

/// Reports a verification run's pair results as `AUTOATTACH_PAIR_RECORDS` says: every result is counted in
/// the metrics; an `AttachmentVerification` record is emitted for those [`pair_records::emits`] keeps
/// (all of them when `snapshot`); then one `RegistryVerification` summary per registry in scope. With a
/// `guard`, it flushes every [`RECORDS_PER_FLUSH`] records. Returns the number of `AttachmentVerification`
/// records emitted.
pub async fn emit_verification_records(
    metrics: &Metrics,
    guard: Option<&TelemetryGuard>,
    report: &VerificationReport,
    mode: PairRecords,
    snapshot: bool,
    invocation_id: &str,
) -> usize {
    let snapshot = snapshot || mode == PairRecords::All;
    // registry (ids compare ignoring case; the first spelling met is kept) → (pairs, compliant, reported)
    let mut per_registry: BTreeMap<ResourceId, (usize, usize, usize)> = report
        .registries
        .iter()
        .map(|r| (r.clone(), (0, 0, 0)))
        .collect();
    let mut emitted = 0;
    for pair in &report.pairs {
        let emit = pair_records::emits(mode, snapshot, pair.status);
        if emit {
            metrics.record_verification(pair, invocation_id);
            emitted += 1;
            if emitted % RECORDS_PER_FLUSH == 0
                && let Some(guard) = guard
            {
                let _ = guard.flush_async().await;
            }
        } else {
            metrics.record_pair(pair);
        }
        let entry = per_registry.entry(pair.registry_id.clone()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(pair.status == PairStatus::Compliant);
        entry.2 += usize::from(emit);
    }
    let complete = report.complete && report.inventory.failure().is_none();
    for (registry_id, (pairs, compliant, reported)) in &per_registry {
        metrics.record_registry_summary(
            &RegistrySummary {
                registry_id,
                pairs: *pairs,
                compliant: *compliant,
                reported: *reported,
                records: mode.as_str(),
                snapshot,
                complete,
            },
            invocation_id,
        );
    }
    emitted
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
        "roleAssignments": report.capacity,
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
