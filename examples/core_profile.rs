//! One event classification or one plan, repeated N times, for instruction counts under callgrind (the machine
//! is shared, so wall time is noisy; instructions are not):
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/core_profile events 0
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/core_profile events 1000
//! ```
//! (total of the second minus the first) / 1000 = one classification. `planning N` plans the 10,000 x 20
//! estate of `benches/planning.rs` N times
//! (`planning N CLUSTERS`: a smaller estate built the same way). `events` classifies Microsoft's published Event Grid schema sample
//! of a storage account write (irrelevant) as the host hands it over (a parsed value) the way the handler does
//! (`classify_trigger`); `events-full` the full way (typed models, then `classify`); `events-text` from its
//! JSON text (parse included). `events-each N` classifies the six irrelevant samples of `benches/events.rs` one per
//! call, N rounds; `events-batch N` the same samples as one batch of 100, N times.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use acr_autoattach::core::events::{Classification, classify, classify_trigger, parse_trigger};
use acr_autoattach::core::planner::{Completeness, PlanSettings, plan};
use serde_json::Value;

#[path = "../benches/support/estate.rs"]
mod estate;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/events/specs_eventgrid-schema_resource_write_success.json"
);

/// What the handler does: `classify_trigger` (a borrowed look).
fn relevant(trigger: &Value) -> usize {
    classify_trigger(trigger)
        .expect("trigger usable")
        .iter()
        .flatten()
        .filter(|c| !matches!(c.classification, Classification::Ignored { .. }))
        .count()
}

/// The full way: typed models, then `classify` (what the handler did before issue 15).
fn relevant_full(trigger: &Value) -> usize {
    parse_trigger(trigger)
        .expect("trigger usable")
        .iter()
        .flatten()
        .filter(|e| !matches!(classify(e).classification, Classification::Ignored { .. }))
        .count()
}

/// The irrelevant samples of `benches/events.rs`.
const IRRELEVANT: &[&str] = &[
    "specs_eventgrid-schema_resource_write_success.json",
    "specs_cloudevents_resource_write_success.json",
    "docs_subscription-topic_eventgrid-schema_write_success.json",
    "docs_subscription-topic_eventgrid-schema_delete_success.json",
    "docs_subscription-topic_eventgrid-schema_action_success.json",
    "specs_arn_resources_created_or_updated.json",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("events", String::as_str);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    match what {
        "events" | "events-full" | "events-text" => {
            let text = std::fs::read_to_string(SAMPLE).expect("sample event readable");
            let value: Value = serde_json::from_str(&text).expect("sample is JSON");
            let mut hits = 0;
            for _ in 0..n {
                hits += if what == "events" {
                    relevant(black_box(&value))
                } else if what == "events-full" {
                    relevant_full(black_box(&value))
                } else {
                    let v: Value = serde_json::from_str(black_box(&text)).expect("JSON");
                    relevant(&v)
                };
            }
            println!("{what} x{n}: {hits} relevant");
        }
        "events-each" | "events-batch" => {
            // The criterion bench's inputs: the six irrelevant samples, one event per call or 100 per batch.
            let samples: Vec<Value> = IRRELEVANT
                .iter()
                .map(|name| {
                    let path = format!(
                        "{}/../shared/fixtures/events/{name}",
                        env!("CARGO_MANIFEST_DIR")
                    );
                    let text = std::fs::read_to_string(path).expect("sample readable");
                    match serde_json::from_str(&text).expect("sample is JSON") {
                        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
                        other => other,
                    }
                })
                .collect();
            let batch = Value::Array(samples.iter().cycle().take(100).cloned().collect());
            let mut hits = 0;
            for _ in 0..n {
                if what == "events-each" {
                    hits += samples
                        .iter()
                        .map(|e| relevant(black_box(e)))
                        .sum::<usize>();
                } else {
                    hits += relevant(black_box(&batch));
                }
            }
            println!("{what} x{n}: {hits} relevant");
        }
        "planning" => {
            let clusters = args
                .get(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or(estate::CLUSTERS);
            let observed = estate::estate_of(clusters);
            let mut settings = PlanSettings::new(estate::TAG);
            settings.completeness = Completeness::Full;
            settings.detach = true;
            let mut items = 0;
            for _ in 0..n {
                items += plan(black_box(&observed), black_box(&settings)).items.len();
            }
            println!(
                "planning {clusters} x {} x{n}: {items} items",
                estate::REGISTRIES
            );
        }
        other => {
            eprintln!("unknown workload {other}: events | events-full | events-text | planning");
        }
    }
}
