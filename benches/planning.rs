//! Planning a full inventory of 10,000 clusters × 20 registries (200,000 pairs) in 5 subscriptions, half
//! of the pairs already covered by an owned assignment. Target: <= 1 s per plan.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use acr_autoattach::core::model::{
    Cluster, ClusterPrincipal, PullRole, Registry, ResourceId, RoleAssignment, RoleAssignmentMode,
    Tags, ownership_description,
};
use acr_autoattach::core::planner::{Completeness, Observed, PlanSettings, plan};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const CLUSTERS: usize = 10_000;
const REGISTRIES: usize = 20;
const SUBSCRIPTIONS: usize = 5;
const TAG: &str = "acr-autoattach";

fn sub(i: usize) -> String {
    format!("11111111-1111-4111-8111-{:012}", i % SUBSCRIPTIONS)
}

fn principal(i: usize) -> String {
    format!("0000aaaa-0000-4000-8000-{i:012}")
}

fn estate() -> Observed {
    let clusters: Vec<Cluster> = (0..CLUSTERS)
        .map(|i| Cluster {
            id: ResourceId::parse(&format!(
                "/subscriptions/{}/resourceGroups/apps{}/providers/Microsoft.ContainerService/managedClusters/aks{i}",
                sub(i),
                i % 50
            ))
            .expect("valid id"),
            location: "westeurope".into(),
            tenant_id: None,
            tags: [("env", if i.is_multiple_of(2) { "prod" } else { "dev" })]
                .into_iter()
                .collect::<Tags>(),
            provisioning_state: "Succeeded".into(),
            principal: ClusterPrincipal::Kubelet {
                object_id: principal(i),
                client_id: None,
            },
        })
        .collect();
    let registries: Vec<Registry> = (0..REGISTRIES)
        .map(|r| Registry {
            id: ResourceId::parse(&format!(
                "/subscriptions/{}/resourceGroups/platform/providers/Microsoft.ContainerRegistry/registries/acr{r}",
                sub(r)
            ))
            .expect("valid id"),
            location: "westeurope".into(),
            tenant_id: None,
            tags: [(TAG, "*")].into_iter().collect::<Tags>(),
            mode: RoleAssignmentMode::LegacyRegistryPermissions,
        })
        .collect();
    let role = PullRole::for_mode(RoleAssignmentMode::LegacyRegistryPermissions).definition_guid();
    let mut assignments = Vec::new();
    for (ci, cluster) in clusters.iter().enumerate() {
        for registry in &registries {
            if ci % 2 == 1 {
                continue;
            }
            let name = format!("{:08x}-0000-4000-8000-{:012x}", ci, assignments.len());
            assignments.push(RoleAssignment {
                id: format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    registry.id
                ),
                name,
                scope: registry.id.to_string(),
                role_definition_guid: role.to_owned(),
                principal_id: principal(ci),
                principal_type: Some("ServicePrincipal".into()),
                description: Some(ownership_description(&cluster.id)),
                condition: None,
            });
        }
    }
    Observed {
        clusters,
        registries,
        assignments,
        ..Observed::default()
    }
}

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
