//! Event classification throughput: the handler sees mostly irrelevant events (storage accounts, actions,
//! other providers), so the path that ignores them must be cheap. Target: >= 500,000 events per second on
//! one core. Inputs are Microsoft's published sample events read in place from `../shared/fixtures/events/`
//! (absent outside CI: a notice, and nothing is measured), plus AKS variants built from them by changing
//! only `resourceUri`, `subject` and `operationName`, as the fixtures' README prescribes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use acr_autoattach::core::events::{Classification, classify, classify_trigger, parse_trigger};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/events");

/// The published samples that describe ordinary (for us irrelevant) resource events.
const IRRELEVANT: &[&str] = &[
    "specs_eventgrid-schema_resource_write_success.json",
    "specs_cloudevents_resource_write_success.json",
    "docs_subscription-topic_eventgrid-schema_write_success.json",
    "docs_subscription-topic_eventgrid-schema_delete_success.json",
    "docs_subscription-topic_eventgrid-schema_action_success.json",
    "specs_arn_resources_created_or_updated.json",
];

const AKS: &str = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/apps/providers/Microsoft.ContainerService/managedClusters/aks1";

/// `../shared/fixtures/events` beside the checkout; `ACR_AUTOATTACH_SHARED` (the `shared` folder) overrides it
/// for a worktree that does not sit beside `shared`.
fn fixtures_dir() -> PathBuf {
    std::env::var_os("ACR_AUTOATTACH_SHARED").map_or_else(
        || PathBuf::from(FIXTURES),
        |shared| PathBuf::from(shared).join("fixtures/events"),
    )
}

fn fixture(name: &str) -> Option<Value> {
    let path = fixtures_dir().join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("fixture is JSON")),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "fixture {} missing under CI: {e}",
                path.display()
            );
            eprintln!("SKIP: fixture {} not readable: {e}", path.display());
            None
        }
    }
}

/// One event object (array fixtures hold one event).
fn single(value: Value) -> Value {
    match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    }
}

/// The Event Grid write sample turned into an AKS cluster write (only ids and operation changed).
fn aks_write(sample: &Value) -> Value {
    let mut event = sample.clone();
    event["subject"] = Value::String(AKS.into());
    let data = &mut event["data"];
    data["resourceUri"] = Value::String(AKS.into());
    data["operationName"] =
        Value::String("Microsoft.ContainerService/managedClusters/write".into());
    event
}

/// What the handler does (`classify_trigger`: a borrowed look, nothing copied); returns the relevant count.
fn classify_value(trigger: &Value) -> usize {
    classify_trigger(trigger)
        .expect("trigger usable")
        .iter()
        .flatten()
        .filter(|c| !matches!(c.classification, Classification::Ignored { .. }))
        .count()
}

/// The full way, for the side-by-side figure: every event parsed into the typed models, then classified.
fn classify_value_full(trigger: &Value) -> usize {
    parse_trigger(trigger)
        .expect("trigger usable")
        .iter()
        .flatten()
        .filter(|e| !matches!(classify(e).classification, Classification::Ignored { .. }))
        .count()
}

fn bench_events(c: &mut Criterion) {
    let samples: Vec<Value> = IRRELEVANT
        .iter()
        .filter_map(|name| fixture(name))
        .map(single)
        .collect();
    if samples.is_empty() {
        eprintln!(
            "SKIP: no published sample events under {}: classification not measured",
            fixtures_dir().display()
        );
        return;
    }
    let mut group = c.benchmark_group("classify");

    // The bulk: each sample delivered as one event (the Functions host hands the trigger value over parsed).
    let per_event: Vec<Value> = samples.clone();
    group.throughput(Throughput::Elements(per_event.len() as u64));
    group.bench_function("irrelevant_value", |b| {
        b.iter(|| {
            per_event
                .iter()
                .map(|e| classify_value(black_box(e)))
                .sum::<usize>()
        });
    });

    group.bench_function("irrelevant_value_full_way", |b| {
        b.iter(|| {
            per_event
                .iter()
                .map(|e| classify_value_full(black_box(e)))
                .sum::<usize>()
        });
    });

    // The same events from the wire text: JSON parse included.
    let texts: Vec<String> = samples.iter().map(Value::to_string).collect();
    group.bench_function("irrelevant_text", |b| {
        b.iter(|| {
            texts
                .iter()
                .map(|t| {
                    let v: Value = serde_json::from_str(black_box(t)).expect("JSON");
                    classify_value(&v)
                })
                .sum::<usize>()
        });
    });

    // A batch of 100 irrelevant events in one array (Event Grid batches up to its max events per batch).
    let batch = Value::Array(samples.iter().cycle().take(100).cloned().collect());
    group.throughput(Throughput::Elements(100));
    group.bench_function("irrelevant_batch_100", |b| {
        b.iter(|| classify_value(black_box(&batch)));
    });

    // The relevant case, for comparison: an AKS cluster write.
    if let Some(write) = samples.first() {
        let aks = aks_write(write);
        assert!(
            classify_value(&aks) == 1,
            "the AKS variant must classify as relevant"
        );
        group.throughput(Throughput::Elements(1));
        group.bench_function("aks_cluster_write", |b| {
            b.iter(|| classify_value(black_box(&aks)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_events);
criterion_main!(benches);
