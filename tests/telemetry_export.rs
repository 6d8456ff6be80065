//! Telemetry end to end on loopback: a demo-sized scenario (an Event Grid invocation with a `traceparent`, a
//! timer run) exported over OTLP http/protobuf and http/json to an in-process collector that decodes the real
//! OTLP messages, and to an in-process Application Insights ingestion endpoint that decodes the real gzip
//! `/v2/track` envelopes. Plus the secrets test: planted secrets appear in no exported byte and no log line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_autoattach::azure::Operation;
use acr_autoattach::azure::span as azure_span;
use acr_autoattach::core::model::{
    PairResult, PairStatus, PullRole, RegistryResult, RegistryStatus, ResourceId,
};
use acr_autoattach::telemetry::{
    self, AssignmentOutcome, EventOutcomeLabel, Metrics, ProcessInfo, RunOutcomeLabel,
    TelemetryConfig, TelemetryGuard, Trigger, metrics as names,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use receivers::TelemetryReceiver;

const PUT_URL: &str = "https://management.azure.com/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acrshared/providers/Microsoft.Authorization/roleAssignments/6f1c0000-0000-0000-0000-000000000001?api-version=2022-04-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const APP_ID: &str = "/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/rg-attach/providers/Microsoft.Web/sites/func-autoattach-prod";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    move |k| map.get(k).cloned()
}

fn info() -> ProcessInfo {
    ProcessInfo {
        faas_name: "func-autoattach-prod".into(),
        faas_instance: "instance-7".into(),
        service_version: "0.1.0".into(),
        app_resource_id: Some(APP_ID.into()),
    }
}

const SUB: &str = "11111111-1111-1111-1111-111111111111";

fn cluster(n: &str) -> ResourceId {
    fixtures::cluster_id(SUB, n)
}

fn registry(n: &str) -> ResourceId {
    fixtures::registry_id(SUB, n)
}

fn pair(
    c: &str,
    r: &str,
    status: PairStatus,
    reason: Option<&str>,
    latency: Option<f64>,
) -> PairResult {
    PairResult {
        reason: reason.map(str::to_owned),
        latency_seconds: latency,
        ..fixtures::pair(cluster(c), registry(r), status)
    }
}

/// What the scenario produced, for the assertions.
struct Scenario {
    pair_results: usize,
}

/// The demo-sized scenario: an Event Grid invocation (cluster created → two registries attached) with a
/// `traceparent`, then a timer run over four pairs with one invalid selector.
fn run_scenario(guard: &TelemetryGuard, planted_url_secret: Option<&str>) -> Scenario {
    let m: Metrics = guard.metrics();
    let mut pair_results = 0;

    {
        let inv = telemetry::invocation_span(
            &info(),
            "OnResourceEvent",
            "inv-event-1",
            Trigger::PubSub,
            Some(&format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
        );
        let entered = inv.enter();
        m.record_event(
            "Microsoft.Resources.ResourceWriteSuccess",
            EventOutcomeLabel::Processed,
        );
        let url = match planted_url_secret {
            Some(s) => format!(
                "https://management.azure.com/subscriptions/x/providers/Microsoft.ContainerService/managedClusters?api-version=2025-10-01&$skipToken={s}"
            ),
            None => "https://management.azure.com/subscriptions/x/providers/Microsoft.ContainerService/managedClusters/aks-1?api-version=2025-10-01".to_owned(),
        };
        {
            let span = azure_span::request_span(
                Operation::GetCluster,
                "GET",
                &url::Url::parse(&url).unwrap(),
                0,
            );
            let _s = span.enter();
            azure_span::record_answer(&span, Some(200), "");
            m.record_azure_request("get_cluster", Some(200), false, Duration::from_millis(40));
        }
        {
            // The handler's identity may not write role assignments: 403, a client span in error.
            let span = azure_span::request_span(
                Operation::PutRoleAssignment,
                "PUT",
                &url::Url::parse(PUT_URL).unwrap(),
                0,
            );
            let _s = span.enter();
            azure_span::record_answer(&span, Some(403), "");
        }
        m.record_azure_request("get_cluster", Some(429), true, Duration::from_millis(5));
        for (r, status, latency) in [
            ("acrshared", PairStatus::Repaired, Some(4.5)),
            ("acrteam", PairStatus::Compliant, Some(1.25)),
        ] {
            let span = telemetry::pair_span(&cluster("aks-1"), &registry(r));
            let _p = span.enter();
            m.record_assignment(AssignmentOutcome::Created, PullRole::AcrPull);
            m.record_verification(&pair("aks-1", r, status, None, latency), "inv-event-1");
            pair_results += 1;
        }
        tracing::info!(cluster = "aks-1", "event handled");
        // The invocation failed (a transient error): the host saw 500.
        drop(entered);
        telemetry::record_invocation_result(&inv, 500, Some("500"));
    }
    let report = guard.flush();
    assert!(report.completed, "first flush: {report:?}");

    {
        let inv = telemetry::invocation_span(
            &info(),
            "VerifyAttachments",
            "inv-timer-1",
            Trigger::Timer,
            None,
        );
        telemetry::record_timer(&inv, "0 */30 * * * *", "2026-12-01T06:30:00Z");
        telemetry::record_invocation_result(&inv, 200, None);
        let _e = inv.enter();
        let results = [
            pair("aks-1", "acrshared", PairStatus::Compliant, None, None),
            pair(
                "aks-2",
                "acrshared",
                PairStatus::Missing,
                Some("audit mode: not created"),
                None,
            ),
            pair(
                "aks-3",
                "acrshared",
                PairStatus::Failed,
                Some("403 AuthorizationFailed on PUT roleAssignments"),
                None,
            ),
            pair(
                "aks-4",
                "acrteam",
                PairStatus::Pending,
                Some("cluster provisioning"),
                None,
            ),
        ];
        for r in &results {
            let span = telemetry::pair_span(&r.cluster_id, &r.registry_id);
            let _p = span.enter();
            m.record_verification(r, "inv-timer-1");
            pair_results += 1;
        }
        m.record_assignment(AssignmentOutcome::Exists, PullRole::AcrPull);
        m.record_assignment(AssignmentOutcome::Failed, PullRole::RepositoryReader);
        m.record_assignment(AssignmentOutcome::Removed, PullRole::AcrPull);
        m.record_registry_result(
            &RegistryResult {
                registry_id: registry("acrbad"),
                status: RegistryStatus::InvalidSelector,
                reason: "env in (prod".into(),
            },
            "inv-timer-1",
        );
        m.record_azure_request(
            "put_role_assignment",
            Some(403),
            false,
            Duration::from_millis(30),
        );
        m.record_azure_request(
            "graph_service_principal",
            None,
            false,
            Duration::from_secs(2),
        );
        m.record_run(RunOutcomeLabel::Unhealthy);
        m.record_capacity(&acr_autoattach::core::model::SubscriptionCapacity {
            subscription: "00000000-0000-4000-8000-000000000001".into(),
            assignments: 3_700,
            limit: 4_000,
            exhausted: false,
        });
        m.record_alerts_sent("alertmanager", "firing", 2);
        m.record_alert_failure("alertmanager", "connect");
    }
    let report = guard.flush();
    assert!(report.completed, "second flush: {report:?}");
    Scenario { pair_results }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key) {
        Some(Value::StringValue(s)) => Some(s.as_str()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn otlp_env(receiver: &TelemetryReceiver, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-otlp-tenant=tenant-a".to_owned(),
        ),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=platform".to_owned(),
        ),
        ("OTEL_SERVICE_NAME", "acr-autoattach-prod".to_owned()),
    ]
}

/// Expected attribute keys of every documented instrument.
fn expected_metric_attributes() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    BTreeMap::from([
        (names::EVENTS, BTreeSet::from(["event.type", "outcome"])),
        (names::ASSIGNMENTS, BTreeSet::from(["outcome", "role"])),
        (names::VERIFICATION_PAIRS, BTreeSet::from(["status"])),
        (names::VERIFICATION_REGISTRIES, BTreeSet::from(["status"])),
        (names::ATTACH_LATENCY, BTreeSet::new()),
        (
            names::AZURE_REQUESTS,
            BTreeSet::from(["operation", "status_class"]),
        ),
        (names::AZURE_REQUEST_DURATION, BTreeSet::from(["operation"])),
        (names::AZURE_THROTTLED, BTreeSet::from(["operation"])),
        (names::VERIFICATION_RUNS, BTreeSet::from(["outcome"])),
        (names::ALERTS_SENT, BTreeSet::from(["format", "state"])),
        (names::ALERTS_FAILED, BTreeSet::from(["format", "reason"])),
        (
            names::ROLE_ASSIGNMENTS_USED,
            BTreeSet::from(["subscription", "limit"]),
        ),
    ])
}

fn check_otlp(receiver: &TelemetryReceiver, scenario: &Scenario, logs: &LogBuffer) {
    // Resource and headers.
    let traces = receiver.traces();
    assert!(!traces.is_empty(), "no traces exported");
    let resource = traces[0].resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr_str(&resource.attributes, "service.name"),
        Some("acr-autoattach-prod")
    );
    assert_eq!(
        attr_str(&resource.attributes, "cloud.provider"),
        Some("azure")
    );
    assert_eq!(
        attr_str(&resource.attributes, "cloud.platform"),
        Some("azure.functions")
    );
    assert_eq!(
        attr_str(&resource.attributes, "cloud.resource_id"),
        Some(APP_ID)
    );
    assert_eq!(
        attr_str(&resource.attributes, "faas.name"),
        None,
        "faas.name is per function: a span attribute on Azure"
    );
    assert_eq!(
        attr_str(&resource.attributes, "faas.instance"),
        Some("instance-7")
    );
    assert_eq!(
        attr_str(&resource.attributes, "service.version"),
        Some("0.1.0")
    );
    assert_eq!(
        attr_str(&resource.attributes, "deployment.environment"),
        Some("prod")
    );
    for r in receiver.requests() {
        assert_eq!(r.header("x-otlp-tenant"), Some("tenant-a"), "{}", r.path);
    }

    // Spans: the event invocation continues the caller's trace; children hang under it.
    let spans: Vec<_> = traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let event_inv = spans
        .iter()
        .find(|s| s.name == "func-autoattach-prod/OnResourceEvent")
        .expect("event invocation span");
    assert_eq!(hex(&event_inv.trace_id), TRACE_ID);
    assert_eq!(hex(&event_inv.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(event_inv.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attr_str(&event_inv.attributes, "faas.trigger"),
        Some("pubsub")
    );
    assert_eq!(
        attr_str(&event_inv.attributes, "faas.invocation_id"),
        Some("inv-event-1")
    );
    assert_eq!(
        attr_str(&event_inv.attributes, "faas.name"),
        Some("func-autoattach-prod/OnResourceEvent")
    );
    assert_eq!(
        attr_str(&event_inv.attributes, "cloud.resource_id"),
        Some(format!("{APP_ID}/functions/OnResourceEvent").as_str())
    );
    // The failed invocation: the host saw 500, the span is an error.
    assert!(
        matches!(
            attr(&event_inv.attributes, "http.response.status_code"),
            Some(Value::IntValue(500))
        ),
        "{:?}",
        event_inv.attributes
    );
    assert_eq!(attr_str(&event_inv.attributes, "error.type"), Some("500"));
    assert_eq!(
        event_inv.status.as_ref().map(|s| s.code),
        Some(2),
        "STATUS_CODE_ERROR"
    );
    let timer_inv = spans
        .iter()
        .find(|s| s.name == "func-autoattach-prod/VerifyAttachments")
        .expect("timer invocation span");
    assert_eq!(
        attr_str(&timer_inv.attributes, "faas.cron"),
        Some("0 */30 * * * *")
    );
    assert_eq!(
        attr_str(&timer_inv.attributes, "faas.time"),
        Some("2026-12-01T06:30:00Z")
    );
    assert_eq!(attr_str(&timer_inv.attributes, "error.type"), None);
    assert_ne!(
        timer_inv.status.as_ref().map_or(0, |s| s.code),
        2,
        "a healthy run is no error"
    );
    // No unnamespaced span attribute.
    for s in &spans {
        for kv in &s.attributes {
            assert!(
                kv.key.contains('.'),
                "unnamespaced attribute {} on {}",
                kv.key,
                s.name
            );
        }
    }
    assert!(
        timer_inv.parent_span_id.is_empty(),
        "no traceparent: a root span"
    );
    assert_ne!(hex(&timer_inv.trace_id), TRACE_ID);
    assert_eq!(
        attr_str(&timer_inv.attributes, "faas.trigger"),
        Some("timer")
    );
    let azure = spans
        .iter()
        .find(|s| s.name == "GET managedClusters")
        .expect("azure request span");
    assert_eq!(azure.parent_span_id, event_inv.span_id);
    assert_eq!(azure.trace_id, event_inv.trace_id);
    assert_eq!(azure.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        attr_str(&azure.attributes, "http.request.method"),
        Some("GET")
    );
    assert_eq!(
        attr_str(&azure.attributes, "server.address"),
        Some("management.azure.com")
    );
    assert!(
        matches!(
            attr(&azure.attributes, "server.port"),
            Some(Value::IntValue(443))
        ),
        "{:?}",
        azure.attributes
    );
    assert!(
        matches!(
            attr(&azure.attributes, "http.response.status_code"),
            Some(Value::IntValue(200))
        ),
        "{:?}",
        azure.attributes
    );
    assert!(
        attr_str(&azure.attributes, "url.full")
            .unwrap()
            .ends_with("?api-version=2025-10-01"),
        "{:?}",
        azure.attributes
    );
    assert_ne!(azure.status.as_ref().map_or(0, |s| s.code), 2);
    let forbidden = spans
        .iter()
        .find(|s| s.name == "PUT roleAssignments")
        .expect("the 403 client span");
    assert!(matches!(
        attr(&forbidden.attributes, "http.response.status_code"),
        Some(Value::IntValue(403))
    ));
    assert_eq!(attr_str(&forbidden.attributes, "error.type"), Some("403"));
    assert_eq!(forbidden.status.as_ref().map(|s| s.code), Some(2));
    assert_eq!(
        attr_str(&forbidden.attributes, "azure.operation"),
        Some("put_role_assignment")
    );
    let pair_spans: Vec<_> = spans.iter().filter(|s| s.name == "pair decision").collect();
    assert_eq!(pair_spans.len(), scenario.pair_results);
    assert!(
        pair_spans
            .iter()
            .all(|s| attr_str(&s.attributes, "autoattach.pair.status").is_some())
    );
    assert_eq!(
        pair_spans
            .iter()
            .filter(|s| s.parent_span_id == timer_inv.span_id)
            .count(),
        4
    );

    // Metrics: every documented instrument, with its attributes.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pair_statuses = BTreeSet::new();
    let mut duration_buckets = BTreeSet::new();
    for req in receiver.metrics() {
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
        {
            let keys = seen.entry(m.name.clone()).or_default();
            if m.name == names::AZURE_REQUEST_DURATION {
                assert_eq!(m.unit, "s");
                let Some(Data::Histogram(h)) = m.data.as_ref() else {
                    panic!("{} is a histogram", m.name)
                };
                for p in &h.data_points {
                    assert_eq!(
                        p.explicit_bounds,
                        names::AZURE_REQUEST_DURATION_BOUNDARIES.to_vec(),
                        "second buckets, 0.005 … 10"
                    );
                    duration_buckets.extend(
                        p.bucket_counts
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| **c > 0)
                            .map(|(i, _)| i),
                    );
                }
            }
            let attrs: Vec<&Vec<KeyValue>> = match m.data.as_ref() {
                Some(Data::Sum(s)) => s.data_points.iter().map(|p| &p.attributes).collect(),
                Some(Data::Histogram(h)) => h.data_points.iter().map(|p| &p.attributes).collect(),
                Some(Data::Gauge(g)) => g.data_points.iter().map(|p| &p.attributes).collect(),
                other => panic!("unexpected data for {}: {other:?}", m.name),
            };
            for a in attrs {
                keys.extend(a.iter().map(|kv| kv.key.clone()));
                if m.name == names::VERIFICATION_PAIRS {
                    pair_statuses.insert(attr_str(a, "status").unwrap().to_owned());
                }
            }
        }
    }
    // 30/40 ms land in (0.025, 0.05], 2 s in (1, 2.5]: seconds in second buckets, not all in the first.
    assert!(
        duration_buckets.contains(&3) && duration_buckets.contains(&10),
        "{duration_buckets:?}"
    );
    for (name, keys) in expected_metric_attributes() {
        let got = seen
            .get(name)
            .unwrap_or_else(|| panic!("metric {name} not exported; got {seen:?}"));
        let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(got, keys, "attributes of {name}");
    }
    assert_eq!(
        pair_statuses,
        BTreeSet::from(
            ["compliant", "failed", "missing", "pending", "repaired"].map(str::to_owned)
        )
    );

    // Logs: one AttachmentVerification per pair result, with every field.
    let records: Vec<_> = receiver
        .logs()
        .into_iter()
        .flat_map(|r| r.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    let verifications: Vec<_> = records
        .iter()
        .filter(|r| r.event_name == "AttachmentVerification")
        .collect();
    assert_eq!(verifications.len(), scenario.pair_results);
    for v in &verifications {
        for key in [
            "cluster.id",
            "registry.id",
            "principal.id",
            "role",
            "status",
            "reason",
            "invocation.id",
        ] {
            assert!(attr(&v.attributes, key).is_some(), "{key} missing on {v:?}");
        }
        assert!(matches!(
            v.body.as_ref().and_then(|b| b.value.as_ref()),
            Some(Value::StringValue(s)) if s == "AttachmentVerification"
        ));
    }
    let failed = verifications
        .iter()
        .find(|v| attr_str(&v.attributes, "status") == Some("failed"))
        .unwrap();
    assert_eq!(
        attr_str(&failed.attributes, "invocation.id"),
        Some("inv-timer-1")
    );
    assert_eq!(
        hex(&failed.trace_id),
        hex(&timer_inv.trace_id),
        "records carry the invocation's trace"
    );
    assert_eq!(failed.severity_text, "WARN");
    assert!(
        records
            .iter()
            .any(|r| r.event_name == "RegistryVerification"
                && attr_str(&r.attributes, "status") == Some("invalid_selector"))
    );
    assert!(
        !records
            .iter()
            .any(|r| r.event_name.starts_with("opentelemetry")),
        "exporter logs fed back"
    );

    // Stdout: the same records as JSON lines.
    let text = logs.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message"] == "AttachmentVerification")
            .count(),
        scenario.pair_results
    );
}

#[test]
fn otlp_http_protobuf_exports_spans_metrics_and_verification_records() {
    let receiver = TelemetryReceiver::start();
    let config = TelemetryConfig::from_env(&env_of(otlp_env(&receiver, "http/protobuf"))).unwrap();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) =
        telemetry::init_scoped(&config, &info(), move || writer.clone()).unwrap();
    let scenario = run_scenario(&guard, None);
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.header("content-type") == Some("application/x-protobuf"))
    );
    check_otlp(&receiver, &scenario, &logs);
    // The summary the demo prints counts what reached the collector.
    let stats = guard.export_stats();
    let exported_spans: usize = receiver
        .traces()
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(stats.spans, exported_spans as u64);
    assert_eq!(stats.verification_records, scenario.pair_results as u64);
    assert_eq!(stats.metric_exports, receiver.metrics().len() as u64);
    assert!(
        names::ALL_INSTRUMENTS
            .iter()
            .all(|n| stats.instruments.contains(*n)),
        "{stats:?}"
    );
    assert_eq!(stats.failed_exports, 0);
    assert!(guard.shutdown().completed);
}

#[test]
fn otlp_http_json_exports_the_same_contract() {
    let receiver = TelemetryReceiver::start();
    let config = TelemetryConfig::from_env(&env_of(otlp_env(&receiver, "http/json"))).unwrap();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) =
        telemetry::init_scoped(&config, &info(), move || writer.clone()).unwrap();
    let scenario = run_scenario(&guard, None);
    assert!(receiver.requests().iter().all(|r| {
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }));
    check_otlp(&receiver, &scenario, &logs);
    assert!(guard.shutdown().completed);
}

/// An Application Insights connection string with an `Authorization` the handler does not know (neither `ikey` nor
/// `AAD`, which tests/telemetry_entra.rs covers) disables only that exporter: OTLP still receives the whole contract.
#[test]
fn an_unknown_authorization_disables_only_the_application_insights_exporter() {
    let receiver = TelemetryReceiver::start();
    let mut env = otlp_env(&receiver, "http/protobuf");
    env.push((
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "InstrumentationKey=00000000-0000-4000-8000-00000000abcd;IngestionEndpoint=http://127.0.0.1:9/;Authorization=SharedKey".to_owned(),
    ));
    let config = TelemetryConfig::from_env(&env_of(env)).unwrap();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) = telemetry::init_scoped(&config, &info(), move || writer.clone())
        .expect("telemetry starts: only the Application Insights exporter is off");
    let scenario = run_scenario(&guard, None);
    check_otlp(&receiver, &scenario, &logs);
    assert!(guard.shutdown().completed);
}

fn props(e: &serde_json::Value) -> &serde_json::Value {
    &e["data"]["baseData"]["properties"]
}

#[test]
fn application_insights_receives_requests_dependencies_metrics_and_verification_traces() {
    let receiver = TelemetryReceiver::start();
    let config = TelemetryConfig::from_env(&env_of(vec![(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        format!(
            "InstrumentationKey=00000000-0000-0000-0000-0000000000aa;IngestionEndpoint={}/;LiveEndpoint={}/",
            receiver.url(),
            receiver.url()
        ),
    )]))
    .unwrap();
    let (guard, _default) = telemetry::init_scoped(&config, &info(), std::io::sink).unwrap();
    let scenario = run_scenario(&guard, None);
    assert!(guard.shutdown().completed);

    let envelopes = receiver.envelopes();
    assert!(receiver.requests().iter().all(|r| r.path == "/v2/track"));
    let of_type = |t: &str| -> Vec<&serde_json::Value> {
        envelopes
            .iter()
            .filter(|e| e["data"]["baseType"] == t)
            .collect()
    };

    // The event invocation is a request in the caller's operation, parented on the caller's span.
    let requests = of_type("RequestData");
    let event_req = requests
        .iter()
        .find(|e| e["data"]["baseData"]["name"] == "func-autoattach-prod/OnResourceEvent")
        .expect("request for the event invocation");
    // The failed invocation is a failed request with the code the host saw.
    assert_eq!(event_req["data"]["baseData"]["success"], false);
    assert_eq!(event_req["data"]["baseData"]["responseCode"], "500");
    let timer_req = requests
        .iter()
        .find(|e| e["data"]["baseData"]["name"] == "func-autoattach-prod/VerifyAttachments")
        .expect("request for the timer invocation");
    assert_eq!(timer_req["data"]["baseData"]["success"], true);
    assert_eq!(timer_req["data"]["baseData"]["responseCode"], "200");
    assert_eq!(props(timer_req)["faas.cron"], "0 */30 * * * *");
    assert_eq!(event_req["tags"]["ai.operation.id"], TRACE_ID);
    assert_eq!(event_req["tags"]["ai.operation.parentId"], PARENT_SPAN_ID);
    assert_eq!(props(event_req)["faas.trigger"], "pubsub");
    assert_eq!(event_req["tags"]["ai.cloud.role"], "acr-autoattach");
    let deps = of_type("RemoteDependencyData");
    let azure = deps
        .iter()
        .find(|e| e["data"]["baseData"]["name"] == "GET managedClusters")
        .expect("dependency for the Azure request");
    let forbidden = deps
        .iter()
        .find(|e| e["data"]["baseData"]["name"] == "PUT roleAssignments")
        .expect("dependency for the 403");
    assert_eq!(forbidden["data"]["baseData"]["success"], false);
    assert_eq!(forbidden["data"]["baseData"]["resultCode"], "403");
    assert_eq!(azure["tags"]["ai.operation.id"], TRACE_ID);
    assert_eq!(
        azure["tags"]["ai.operation.parentId"],
        event_req["data"]["baseData"]["id"]
    );

    // Verification results are traces (MessageData) whose customDimensions carry the fields.
    let messages = of_type("MessageData");
    let verifications: Vec<_> = messages
        .iter()
        .filter(|e| e["data"]["baseData"]["message"] == "AttachmentVerification")
        .collect();
    assert_eq!(verifications.len(), scenario.pair_results);
    for v in &verifications {
        for key in [
            "cluster.id",
            "registry.id",
            "principal.id",
            "role",
            "status",
            "reason",
            "invocation.id",
        ] {
            assert!(
                props(v).get(key).is_some(),
                "customDimensions.{key} missing: {v}"
            );
        }
    }
    let failed: Vec<_> = verifications
        .iter()
        .filter(|v| props(v)["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(props(failed[0])["invocation.id"], "inv-timer-1");
    assert_eq!(failed[0]["data"]["baseData"]["severityLevel"], 2, "Warning");

    // Metrics arrive as MetricData named after the instruments.
    let metric_names: BTreeSet<String> = of_type("MetricData")
        .iter()
        .flat_map(|e| e["data"]["baseData"]["metrics"].as_array().unwrap().clone())
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    for name in names::ALL_INSTRUMENTS {
        assert!(
            metric_names.contains(name),
            "{name} not in {metric_names:?}"
        );
    }
    let pair_metric_statuses: BTreeSet<String> = of_type("MetricData")
        .iter()
        .filter(|e| e["data"]["baseData"]["metrics"][0]["name"] == names::VERIFICATION_PAIRS)
        .map(|e| props(e)["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        pair_metric_statuses.contains("failed"),
        "{pair_metric_statuses:?}"
    );
}

#[test]
fn planted_secrets_reach_no_exported_byte_and_no_log_line() {
    const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.planted-access-token";
    const IDENTITY_HEADER: &str = "planted-identity-header-6b1f0c";
    const IKEY: &str = "0badc0de-5ec2-4e7a-9a1b-planted1key0";
    const WEBHOOK_KEY: &str = "planted-webhook-key-9f8e7d";
    const SKIP_TOKEN: &str = "planted-skiptoken-secret";

    let receiver = TelemetryReceiver::start();
    let webhook = format!("{}/hooks/alert?code={WEBHOOK_KEY}", "http://127.0.0.1:9");
    let env = env_of(vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("authorization=Bearer%20{TOKEN}"),
        ),
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!(
                "InstrumentationKey={IKEY};IngestionEndpoint={}/",
                receiver.url()
            ),
        ),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_owned()),
        ("AUTOATTACH_ALERT_WEBHOOK", webhook),
        ("AUTOATTACH_ALERT_TIMEOUT_MS", "500".to_owned()),
    ]);
    let config = TelemetryConfig::from_env(&env).unwrap();
    let alert_config = acr_autoattach::runtime::alerting::AlertConfig::from_env(&env)
        .unwrap()
        .unwrap();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) =
        telemetry::init_scoped(&config, &info(), move || writer.clone()).unwrap();

    // Everything a careless start-up or failure path might print.
    tracing::info!(config = ?config, alerting = ?alert_config, "telemetry configured");
    let scenario = run_scenario(&guard, Some(SKIP_TOKEN));
    // A webhook that cannot be reached: the failure is logged and counted, the URL never shown.
    let alerter = acr_autoattach::runtime::alerting::Alerter::new(alert_config, guard.metrics());
    let pairs = [pair(
        "aks-9",
        "acrshared",
        PairStatus::Failed,
        Some("403"),
        None,
    )];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let delivery = rt.block_on(alerter.send(&acr_autoattach::core::alerts::AlertRun {
        invocation_id: "inv-secret",
        capacity: &[],
        pairs: &pairs,
        registries: &[],
        azure_failures: &[],
        complete_scope: false,
        blind: None,
        now: time::OffsetDateTime::now_utc(),
    }));
    assert!(
        !delivery.failures.is_empty(),
        "the webhook is unreachable: {delivery:?}"
    );
    assert!(guard.shutdown().completed);

    let log_text = logs.text();
    assert!(
        log_text.contains("telemetry configured") && log_text.contains("alert delivery failed")
    );
    assert!(scenario.pair_results > 0);
    // The OTLP credential header must reach the collector as a header, and nowhere else.
    let mut exported = Vec::new();
    for r in receiver.requests() {
        exported.extend_from_slice(r.path.as_bytes());
        for (k, v) in &r.headers {
            if k != "authorization" {
                exported.extend_from_slice(v.as_bytes());
            }
        }
        exported.extend_from_slice(&r.body);
    }
    assert!(
        receiver
            .requests()
            .iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}")))
    );
    let exported = String::from_utf8_lossy(&exported).into_owned();
    // Application Insights requires the instrumentation key in each envelope's `iKey`: allowed there only.
    let ikey_field = format!("\"iKey\":\"{IKEY}\"");
    let exported_without_ikey_field = exported.replace(&ikey_field, "");
    assert!(
        exported.contains(&ikey_field),
        "App Insights envelopes were exported"
    );
    for secret in [TOKEN, IDENTITY_HEADER, IKEY, WEBHOOK_KEY, SKIP_TOKEN] {
        assert!(
            !exported_without_ikey_field.contains(secret),
            "{secret} found in exported telemetry"
        );
        assert!(!log_text.contains(secret), "{secret} found in a log line");
    }
}

#[test]
fn a_dead_backend_costs_at_most_one_bounded_flush_and_never_an_error() {
    // A port where nothing listens any more.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    for protocol in ["http/protobuf", "http/json", "grpc"] {
        let env = env_of(vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{dead}")),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "800".to_owned()),
            ("AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS", "1500".to_owned()),
        ]);
        let config = TelemetryConfig::from_env(&env).unwrap();
        let (guard, _default) = telemetry::init_scoped(&config, &info(), std::io::sink).unwrap();
        let m = guard.metrics();
        {
            let _inv = telemetry::invocation_span(
                &info(),
                "VerifyAttachments",
                "inv-dead",
                Trigger::Timer,
                None,
            )
            .entered();
            m.record_verification(
                &pair("aks-1", "acr", PairStatus::Compliant, None, None),
                "inv-dead",
            );
            m.record_run(RunOutcomeLabel::Healthy);
        }
        let started = std::time::Instant::now();
        let report = guard.flush();
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(2500),
            "{protocol}: flush took {took:?}"
        );
        assert!(
            !report.completed || !report.errors.is_empty(),
            "{protocol}: a dead backend cannot have succeeded: {report:?}"
        );
        assert_eq!(
            guard.export_stats().spans,
            0,
            "{protocol}: nothing was delivered"
        );

        // From async code: flush off the worker threads, and dropping the guard there must not panic.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let started = std::time::Instant::now();
            let _ = guard.flush_async().await;
            assert!(started.elapsed() < Duration::from_millis(2500));
            drop(guard);
        });
    }
}
