//! The planning estate shared by `benches/planning.rs` and `examples/core_profile.rs`: 10,000 clusters x 20
//! registries in 5 subscriptions, every registry selecting every cluster (`*`), the even clusters' pairs already
//! covered by an owned AcrPull assignment
//! (deterministic name, ownership mark: provably ours, so detach judges every one and keeps it). Include with `#[path = "../benches/support/estate.rs"] mod estate;`.
#![allow(dead_code, clippy::expect_used)]

use acr_autoattach::core::model::{
    Cluster, ClusterPrincipal, PullRole, Registry, ResourceId, RoleAssignment, RoleAssignmentMode,
    Tags, assignment_name, ownership_description,
};
use acr_autoattach::core::planner::Observed;

pub const CLUSTERS: usize = 10_000;
pub const REGISTRIES: usize = 20;
pub const SUBSCRIPTIONS: usize = 5;
pub const TAG: &str = "acr-autoattach";

pub fn sub(i: usize) -> String {
    format!("11111111-1111-4111-8111-{:012}", i % SUBSCRIPTIONS)
}

pub fn principal(i: usize) -> String {
    format!("0000aaaa-0000-4000-8000-{i:012}")
}

/// The full estate: [`CLUSTERS`] x [`REGISTRIES`].
pub fn estate() -> Observed {
    estate_of(CLUSTERS)
}

/// `clusters` x [`REGISTRIES`], built the same way.
pub fn estate_of(clusters: usize) -> Observed {
    let clusters: Vec<Cluster> = (0..clusters)
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
    let pull = PullRole::for_mode(RoleAssignmentMode::LegacyRegistryPermissions);
    let role = pull.definition_guid();
    let mut assignments = Vec::new();
    for (ci, cluster) in clusters.iter().enumerate() {
        for registry in &registries {
            if ci % 2 == 1 {
                continue;
            }
            // What this project writes: the deterministic name and the ownership mark (so detach judges each).
            let name = assignment_name(&registry.id, &principal(ci), pull).to_string();
            assignments.push(RoleAssignment {
                id: format!(
                    "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
                    registry.id
                )
                .into(),
                name,
                scope: registry.id.to_string().into(),
                role_definition_guid: role.to_owned().into(),
                principal_id: principal(ci).into(),
                principal_type: Some("ServicePrincipal".into()),
                description: Some(ownership_description(&cluster.id).into()),
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
