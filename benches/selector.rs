//! Selector parse and evaluation: every registry's opt-in tag is parsed once per plan, and evaluated once per
//! (cluster, registry) pair, so evaluation is on the hot path of planning.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use acr_autoattach::core::model::{Cluster, ClusterPrincipal, ResourceId, Tags};
use acr_autoattach::core::selector::{OptIn, parse_opt_in};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const EXPRESSIONS: &[&str] = &[
    "*",
    "env=prod",
    "env in (prod,staging),team!=legacy",
    "@subscription=11111111-1111-4111-8111-111111111111,@location in (westeurope,northeurope)",
    "env notin (dev,test),!deprecated,tier,@resourceGroup=apps",
    r#""cost center"="R&D 42",env=prod"#,
];

fn cluster(i: usize) -> Cluster {
    let env = ["prod", "staging", "dev", "test"][i % 4];
    let team = ["core", "legacy", "payments"][i % 3];
    Cluster {
        id: ResourceId::parse(&format!(
            "/subscriptions/11111111-1111-4111-8111-11111111111{}/resourceGroups/apps/providers/Microsoft.ContainerService/managedClusters/aks{i}",
            i % 5
        ))
        .expect("valid id"),
        location: if i.is_multiple_of(2) { "westeurope" } else { "eastus" }.into(),
        tenant_id: None,
        tags: [("env", env), ("team", team), ("tier", "1"), ("owner", "platform")]
            .into_iter()
            .collect::<Tags>(),
        provisioning_state: "Succeeded".into(),
        principal: ClusterPrincipal::Kubelet {
            object_id: format!("0000aaaa-0000-4000-8000-{i:012}"),
            client_id: None,
        },
    }
}

fn bench_selector(c: &mut Criterion) {
    let mut group = c.benchmark_group("selector");
    group.throughput(Throughput::Elements(EXPRESSIONS.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            EXPRESSIONS
                .iter()
                .map(|e| usize::from(parse_opt_in(black_box(e)).is_ok()))
                .sum::<usize>()
        });
    });

    let selectors: Vec<OptIn> = EXPRESSIONS
        .iter()
        .map(|e| parse_opt_in(e).expect("expression parses"))
        .collect();
    let clusters: Vec<Cluster> = (0..1_000).map(cluster).collect();
    // Each selector must select some clusters and reject others, or the evaluation is trivial.
    for s in selectors.iter().skip(1) {
        let n = clusters.iter().filter(|c| s.selects(c)).count();
        assert!(n < clusters.len(), "`{s}` rejects some clusters");
    }
    group.throughput(Throughput::Elements(
        (selectors.len() * clusters.len()) as u64,
    ));
    group.bench_function("evaluate_6x1000", |b| {
        b.iter(|| {
            let mut selected = 0usize;
            for s in &selectors {
                for c in &clusters {
                    selected += usize::from(s.selects(black_box(c)));
                }
            }
            selected
        });
    });
    group.finish();
}

criterion_group!(benches, bench_selector);
criterion_main!(benches);
