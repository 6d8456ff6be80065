//! Planning a full inventory of 10,000 clusters × 20 registries (200,000 pairs) in 5 subscriptions, half
//! of the pairs already covered by an owned assignment. Target: <= 1 s per plan.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use acr_autoattach::core::planner::{Completeness, PlanSettings, plan};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/estate.rs"]
mod estate;
use estate::{CLUSTERS, REGISTRIES, TAG, estate};

fn bench_planning(c: &mut Criterion) {
    let observed = estate();
    let mut settings = PlanSettings::new(TAG);
    settings.completeness = Completeness::Full;
    settings.detach = true;
    let first = plan(&observed, &settings);
    let pairs = CLUSTERS * REGISTRIES;
    assert_eq!(first.items.len(), pairs, "one item per pair");
    assert_eq!(
        first.writes().count(),
        pairs / 2,
        "half the pairs need a write"
    );

    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(pairs as u64));
    group.bench_function("full_10000x20", |b| {
        b.iter(|| plan(black_box(&observed), black_box(&settings)).items.len());
    });
    group.finish();
}

criterion_group!(benches, bench_planning);
criterion_main!(benches);
