//! `AUTOATTACH_PAIR_RECORDS`: what a verification run exports in `changes` and `all` mode, decoded from the
//! exported OTLP bytes; and (ignored by default, it exports 200,000 records several times) the measured
//! bytes per run at 10,000 clusters × 20 registries that docs/telemetry.md quotes:
//!
//! `cargo test --test telemetry_volume -- --ignored --nocapture`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::collections::{BTreeMap, HashMap};

use acr_autoattach::core::model::{
    InventoryOutcome, InventorySource, Mode, PairResult, PairStatus, PullRole, ResourceId,
    VerificationReport,
};
use acr_autoattach::runtime::functions::emit_verification_records;
use acr_autoattach::runtime::pair_records::PairRecords;
use acr_autoattach::telemetry::{self, ProcessInfo, TelemetryConfig, TelemetryGuard, Trigger};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use receivers::TelemetryReceiver;

fn cluster(i: usize) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{:08x}-1111-1111-1111-111111111111/resourceGroups/rg-aks-{}/providers/Microsoft.ContainerService/managedClusters/aks-{i:05}",
        i / 100,
        i / 100
    ))
    .unwrap()
}

fn registry(j: usize) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acrplatform{j:02}"
    ))
    .unwrap()
}

/// A steady-state run over `clusters` × `registries`: almost every pair compliant, four in a thousand not
/// (one each repaired by this run, missing, pending and failed), as a platform estate looks between
/// changes.
fn report(clusters: usize, registries: usize) -> VerificationReport {
    let registry_ids: Vec<ResourceId> = (0..registries).map(registry).collect();
    let mut pairs = Vec::with_capacity(clusters * registries);
    for i in 0..clusters {
        let c = cluster(i);
        for (j, r) in registry_ids.iter().enumerate() {
            let n = i * registries + j;
            let (status, reason) = match n % 1000 {
                0 => (PairStatus::Repaired, None),
                500 => (PairStatus::Missing, Some("audit mode: not created")),
                250 => (PairStatus::Pending, Some("cluster provisioning")),
                750 => (
                    PairStatus::Failed,
                    Some("403 AuthorizationFailed on PUT roleAssignments"),
                ),
                _ => (PairStatus::Compliant, None),
            };
            pairs.push(PairResult {
                cluster_id: c.clone(),
                registry_id: r.clone(),
                principal_id: Some(format!("{i:08x}-aaaa-bbbb-cccc-{i:012}").into()),
                role: Some(PullRole::AcrPull),
                status,
                reason: reason.map(str::to_owned),
                assignment_id: None,
                latency_seconds: None,
                failure: None,
            });
        }
    }
    VerificationReport {
        started_at: "2026-12-01T06:00:00Z".into(),
        duration_seconds: 120.0,
        mode: Mode::Enforce,
        clusters: (0..clusters).map(cluster).collect(),
        registries: registry_ids,
        pairs,
        registry_results: Vec::new(),
        complete: true,
        unverified_pairs: 0,
        azure_requests: 0,
        inventory: InventoryOutcome::Taken(InventorySource::ResourceGraph),
        capacity: Vec::new(),
    }
}

/// Telemetry to the receiver; the subscriber is installed for this thread until the second value drops.
fn setup(env: Vec<(&'static str, String)>) -> (TelemetryGuard, tracing::subscriber::DefaultGuard) {
    let mut pairs: Vec<(&'static str, String)> = env;
    pairs.push(("AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS", "60000".to_owned()));
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    let config = TelemetryConfig::from_env(&|k: &str| map.get(k).cloned()).unwrap();
    telemetry::init_scoped(&config, &ProcessInfo::from_env(&|_| None), std::io::sink).unwrap()
}

/// Runs the timer's reporting over `report` inside an invocation span, flushes, returns the records emitted.
fn run(
    guard: &TelemetryGuard,
    report: &VerificationReport,
    mode: PairRecords,
    snapshot: bool,
) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let span = telemetry::invocation_span(
        guard.process_info(),
        "VerifyAttachments",
        "inv-volume",
        Trigger::Timer,
        None,
    );
    let emitted = {
        let _e = span.enter();
        rt.block_on(emit_verification_records(
            &guard.metrics(),
            Some(guard),
            report,
            mode,
            snapshot,
            "inv-volume",
        ))
    };
    drop(span);
    let flushed = guard.flush();
    assert!(
        flushed.completed && flushed.errors.is_empty(),
        "{flushed:?}"
    );
    emitted
}

fn otlp(receiver: &TelemetryReceiver, protocol: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
    ]
}

fn str_attr<'a>(
    attrs: &'a [opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<&'a str> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match v.value.as_ref() {
            Some(Value::StringValue(s)) => Some(s.as_str()),
            _ => None,
        })
}

fn int_attr(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<i64> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match v.value.as_ref() {
            Some(Value::IntValue(i)) => Some(*i),
            _ => None,
        })
}

#[test]
fn changes_mode_exports_problems_and_writes_and_one_summary_per_registry() {
    // 100 clusters × 20 registries: 2,000 pairs, 2 of each non-compliant status.
    let report = report(100, 20);
    let not_compliant = report
        .pairs
        .iter()
        .filter(|p| p.status != PairStatus::Compliant)
        .count();
    assert_eq!(not_compliant, 8);
    for (protocol, mode, snapshot, expected) in [
        ("http/protobuf", PairRecords::Changes, false, not_compliant),
        ("http/json", PairRecords::Changes, false, not_compliant),
        ("http/protobuf", PairRecords::Changes, true, 2_000),
        ("http/protobuf", PairRecords::All, false, 2_000),
    ] {
        let receiver = TelemetryReceiver::start();
        let (guard, _subscriber) = setup(otlp(&receiver, protocol));
        let emitted = run(&guard, &report, mode, snapshot);
        assert_eq!(emitted, expected, "{protocol} {mode:?} snapshot={snapshot}");
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
        assert_eq!(
            verifications.len(),
            expected,
            "every emitted record arrived"
        );
        if expected == not_compliant {
            assert!(
                verifications
                    .iter()
                    .all(|v| str_attr(&v.attributes, "status") != Some("compliant"))
            );
        }
        let summaries: Vec<_> = records
            .iter()
            .filter(|r| {
                r.event_name == "RegistryVerification"
                    && str_attr(&r.attributes, "status") == Some("summary")
            })
            .collect();
        assert_eq!(summaries.len(), 20, "one summary per registry");
        let mut by_registry = BTreeMap::new();
        for s in &summaries {
            assert_eq!(int_attr(&s.attributes, "pairs.total"), Some(100));
            assert_eq!(str_attr(&s.attributes, "records"), Some(mode.as_str()));
            assert_eq!(str_attr(&s.attributes, "invocation.id"), Some("inv-volume"));
            by_registry.insert(
                str_attr(&s.attributes, "registry.id").unwrap().to_owned(),
                (
                    int_attr(&s.attributes, "pairs.compliant").unwrap(),
                    int_attr(&s.attributes, "pairs.reported").unwrap(),
                ),
            );
        }
        let reported: i64 = by_registry.values().map(|(_, r)| r).sum();
        let compliant: i64 = by_registry.values().map(|(c, _)| c).sum();
        assert_eq!(reported as usize, expected);
        assert_eq!(compliant as usize, 2_000 - not_compliant);
        // The metric still counts every pair, reported or not (cumulative, in the last export).
        let points: u64 = receiver
            .metrics()
            .last()
            .into_iter()
            .flat_map(|m| &m.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == "autoattach.verification.pairs")
            .filter_map(|m| match m.data.as_ref() {
                Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Sum(s)) => Some(s),
                _ => None,
            })
            .flat_map(|s| &s.data_points)
            .map(|p| match p.value {
                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(
                    i,
                )) => i as u64,
                _ => 0,
            })
            .sum();
        assert_eq!(points, 2_000, "cumulative pair count over all statuses");
        assert!(guard.shutdown().completed);
    }
}

/// The settings that point one exporter at a receiver.
type ExporterEnv = fn(&TelemetryReceiver) -> Vec<(&'static str, String)>;

/// Bytes one run exports, by path, for each mode and exporter.
#[test]
#[ignore = "measurement: exports 200,000 records per mode; run with --ignored --nocapture"]
fn measure_bytes_per_run_at_10000_clusters_by_20_registries() {
    let report = report(10_000, 20);
    println!(
        "run: {} pairs, {} not compliant",
        report.pairs.len(),
        report
            .pairs
            .iter()
            .filter(|p| p.status != PairStatus::Compliant)
            .count()
    );
    let exporters: [(&str, ExporterEnv); 3] = [
        ("otlp http/protobuf", |r| otlp(r, "http/protobuf")),
        ("otlp http/json", |r| otlp(r, "http/json")),
        ("application insights", |r| {
            vec![(
                "APPLICATIONINSIGHTS_CONNECTION_STRING",
                format!(
                    "InstrumentationKey=00000000-0000-0000-0000-0000000000aa;IngestionEndpoint={}/",
                    r.url()
                ),
            )]
        }),
    ];
    for (name, env) in exporters {
        // The snapshot run of `changes` emits exactly what an `all` run does (every record and the same
        // summaries), so `all` measures it too.
        for (label, mode, snapshot) in [
            ("changes (between snapshots)", PairRecords::Changes, false),
            ("all (= changes snapshot run)", PairRecords::All, false),
        ] {
            let receiver = TelemetryReceiver::start_counting();
            let (guard, _subscriber) = setup(env(&receiver));
            let started = std::time::Instant::now();
            let emitted = run(&guard, &report, mode, snapshot);
            assert!(guard.shutdown().completed);
            let volume = receiver.volume();
            let wire: u64 = volume.values().map(|v| v.1).sum();
            let decoded: u64 = volume.values().map(|v| v.2).sum();
            println!(
                "{name:<22} {label:<28} records={emitted:>6} wire_bytes={wire:>11} decoded_bytes={decoded:>11} ({:.1}s) {volume:?}",
                started.elapsed().as_secs_f64()
            );
        }
    }
}
