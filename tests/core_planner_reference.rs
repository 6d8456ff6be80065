//! Issue 15: the linear planner (indexes built once per snapshot) plans exactly what the planner before it did
//! (`support/reference_planner.rs`: per-pair look-ups, a scan of every assignment per missing pair, of every
//! cluster per removal), over generated estates rich in what the indexes key on: shared and unresolved
//! principals, ids and principals in varying case and with stray spaces, every scope level, deterministic
//! names, ownership marks for present, deleted and absent clusters, duplicates, tenants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/reference_planner.rs"]
mod reference;

use acr_autoattach::core::model::{
    ACR_PULL_GUID, Cluster, ClusterPrincipal, Mode, PullRole, REPOSITORY_READER_GUID, Registry,
    ResourceId, RoleAssignment, RoleAssignmentMode, RoleDefinition, assignment_name,
    ownership_description,
};
use acr_autoattach::core::planner::{Completeness, Observed, PlanSettings, plan};
use proptest::prelude::*;

const TAG: &str = "acr-autoattach";
const SUBS: [&str; 3] = [
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
];
const SELECTORS: [&str; 7] = [
    "*",
    "all",
    "env=prod",
    "env in (prod,dev)",
    "@location=westeurope",
    "off",
    "env in (",
];
const ROLES: [&str; 5] = [
    ACR_PULL_GUID,
    REPOSITORY_READER_GUID,
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635", // Owner
    "8311e382-0749-4cb8-b61a-304f252e45ec", // AcrPush
    "c0ffee00-0000-4000-8000-000000000001", // custom, pull by actions
];

fn cluster_id(sub: usize, i: usize) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks{i}",
        SUBS[sub]
    ))
    .unwrap()
}

fn registry_id(sub: usize, i: usize) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acr{i}",
        SUBS[sub]
    ))
    .unwrap()
}

/// The same text in another case, sometimes with spaces around it.
fn spelled(text: &str, variant: u8) -> String {
    match variant % 4 {
        0 => text.to_owned(),
        1 => text.to_uppercase(),
        2 => format!(" {text} "),
        _ => text.to_lowercase(),
    }
}

prop_compose! {
    fn arb_cluster(i: usize)(
        sub in 0..2usize,
        env in prop::sample::select(vec![None, Some("prod"), Some("dev")]),
        opt_out in prop::bool::weighted(0.15),
        kind in 0..6u8,
        principal in 0..4usize,
        spelling in any::<u8>(),
        tenant in prop::option::weighted(0.2, prop::sample::select(vec!["t1", "T1", "t2", " "])),
    ) -> Cluster {
        let mut tags: Vec<(&str, &str)> = env.map(|e| ("env", e)).into_iter().collect();
        if opt_out { tags.push((TAG, "off")); }
        let mut provisioning_state = "Succeeded".to_owned();
        let principal = match kind {
            // Shared principals (`p0`..`p3`, any case) make several clusters use one identity.
            0..=2 => ClusterPrincipal::Kubelet { object_id: spelled(&format!("p{principal}"), spelling), client_id: None },
            3 => ClusterPrincipal::ServicePrincipal { client_id: format!("app{i}") },
            4 => { "Creating".clone_into(&mut provisioning_state); ClusterPrincipal::NotYetKnown }
            _ => { "Updating".clone_into(&mut provisioning_state); ClusterPrincipal::Kubelet { object_id: format!("p{principal}"), client_id: None } }
        };
        Cluster {
            id: cluster_id(sub, i),
            location: if spelling % 2 == 0 { "westeurope".into() } else { "West Europe".into() },
            tenant_id: tenant.map(str::to_owned),
            tags: tags.into_iter().collect(),
            provisioning_state,
            principal,
        }
    }
}

prop_compose! {
    fn arb_registry(i: usize)(
        sub in 0..3usize,
        sel in prop::option::weighted(0.9, prop::sample::select(SELECTORS.to_vec())),
        is_abac in prop::bool::weighted(0.3),
        tenant in prop::option::weighted(0.2, prop::sample::select(vec!["t1", "t2"])),
    ) -> Registry {
        Registry {
            id: registry_id(sub, i),
            location: "westeurope".into(),
            tenant_id: tenant.map(str::to_owned),
            tags: sel.map(|v| (TAG, v)).into_iter().collect(),
            mode: if is_abac { RoleAssignmentMode::AbacRepositoryPermissions } else { RoleAssignmentMode::LegacyRegistryPermissions },
        }
    }
}

/// One raw assignment: (cluster, registry, principal, role, scope kind, ours, spelling, condition).
type RawAssignment = (usize, usize, usize, usize, u8, bool, u8, bool);

fn build_assignment(
    clusters: &[Cluster],
    registries: &[Registry],
    n: usize,
    (ci, ri, pi, role, scope_kind, ours, spelling, condition): RawAssignment,
) -> RoleAssignment {
    let registry = &registries[ri % registries.len()];
    // Owner marks name present clusters, and clusters absent from the snapshot (aks90..) in every subscription.
    let owner = clusters
        .get(ci)
        .map_or_else(|| cluster_id(ci % 3, 90 + ci), |c| c.id.clone());
    let principal = match clusters.get(ci).map(|c| &c.principal) {
        Some(ClusterPrincipal::Kubelet { object_id, .. }) if pi > 0 => object_id.clone(),
        _ => spelled(&format!("p{pi}"), spelling),
    };
    let scope = match scope_kind % 8 {
        0..=2 => spelled(registry.id.as_str(), spelling / 4),
        3 => registry.id.resource_group_scope().unwrap(),
        4 => format!("{}/", registry.id.subscription_scope().to_uppercase()),
        5 => "/".to_owned(),
        6 => "/providers/Microsoft.Management/managementGroups/mg1".to_owned(),
        _ => format!(
            "{}/providers/Microsoft.Storage/storageAccounts/sa",
            registry.id.resource_group_scope().unwrap()
        ),
    };
    let role_guid = ROLES[role % ROLES.len()];
    let name = match (ours, PullRole::from_definition_guid(role_guid)) {
        (true, Some(pull)) => {
            let n = assignment_name(&registry.id, &principal, pull).to_string();
            if spelling % 3 == 0 {
                n.to_uppercase()
            } else {
                n
            }
        }
        _ => format!("00000000-0000-4000-8000-{n:012}"),
    };
    RoleAssignment {
        id: format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{name}",
            scope.trim()
        )
        .into(),
        name,
        scope: scope.into(),
        role_definition_guid: role_guid.to_owned().into(),
        principal_id: principal.into(),
        principal_type: Some("ServicePrincipal".into()),
        description: ours.then(|| ownership_description(&owner).into()),
        condition: condition.then(|| "some condition".to_owned()),
    }
}

fn arb_estate() -> impl Strategy<Value = (Observed, PlanSettings)> {
    let clusters = (0..7usize).map(arb_cluster).collect::<Vec<_>>();
    let registries = (0..4usize).map(arb_registry).collect::<Vec<_>>();
    let raw = prop::collection::vec(
        (
            0..9usize,
            0..4usize,
            0..4usize,
            0..5usize,
            any::<u8>(),
            prop::bool::weighted(0.6),
            any::<u8>(),
            prop::bool::weighted(0.1),
        ),
        0..30,
    );
    let settings = (
        any::<bool>(),
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::option::of(0..7usize),
        prop::option::weighted(0.2, prop::sample::select(vec!["t1", "t2"])),
    );
    let knowledge = (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(0..3u8, 7),
        prop::collection::vec(0..40usize, 0..4),
    );
    (clusters, registries, raw, settings, knowledge).prop_map(
        |(
            clusters,
            registries,
            raw,
            (detach, audit, full, deleted, handler),
            (tenants, mgs, sp, dupes),
        )| {
            let mut assignments: Vec<RoleAssignment> = raw
                .into_iter()
                .enumerate()
                .map(|(n, r)| build_assignment(&clusters, &registries, n, r))
                .collect();
            // Duplicates, in another case: the first seen counts.
            for d in dupes {
                if let Some(a) = assignments.get(d % assignments.len().max(1)).cloned() {
                    assignments.push(RoleAssignment {
                        id: a.id.to_uppercase().into(),
                        ..a
                    });
                }
            }
            let mut observed = Observed {
                clusters,
                registries,
                assignments,
                ..Observed::default()
            };
            // Service principals: resolved (sometimes to a shared principal), failed, empty or not looked up.
            for (c, how) in observed.clusters.iter().zip(sp) {
                if matches!(c.principal, ClusterPrincipal::ServicePrincipal { .. }) {
                    let answer = match how {
                        0 => Some(Ok(" P1 ".to_owned())),
                        1 => Some(Err("directory said no".to_owned())),
                        _ => (c.id.name() == "aks3").then(|| Ok(String::new())),
                    };
                    if let Some(answer) = answer {
                        observed.principals.insert(c.id.clone(), answer);
                    }
                }
            }
            if tenants {
                observed
                    .subscription_tenants
                    .insert(SUBS[0].to_owned(), "t1".to_owned());
                observed
                    .subscription_tenants
                    .insert(SUBS[1].to_owned(), "T1".to_owned());
            }
            if mgs {
                observed.management_groups.insert(
                    SUBS[0].to_owned(),
                    vec!["/providers/Microsoft.Management/managementGroups/MG1".to_owned()],
                );
            }
            observed.role_definitions.insert(
                "c0ffee00-0000-4000-8000-000000000001".to_owned(),
                RoleDefinition {
                    guid: "c0ffee00-0000-4000-8000-000000000001".to_owned(),
                    role_name: "Puller".to_owned(),
                    actions: vec!["Microsoft.ContainerRegistry/registries/*/read".to_owned()],
                    data_actions: vec!["Microsoft.ContainerRegistry/*".to_owned()],
                    ..RoleDefinition::default()
                },
            );
            let mut s = PlanSettings::new(TAG);
            s.detach = detach;
            s.mode = if audit { Mode::Audit } else { Mode::Enforce };
            s.completeness = if full {
                Completeness::Full
            } else {
                Completeness::Partial
            };
            s.handler_tenant = handler.map(str::to_owned);
            if let Some(d) = deleted {
                let id = observed.clusters[d].id.clone();
                observed.clusters.retain(|c| c.id != id);
                s.deleted_clusters.insert(id);
            }
            (observed, s)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn the_linear_planner_plans_what_the_reference_planner_plans((o, s) in arb_estate()) {
        prop_assert_eq!(plan(&o, &s), reference::plan(&o, &s));
    }
}

/// The generated estates reach every action and removal reason, so the agreement above covers them.
#[test]
fn generated_estates_reach_every_action_and_removal_reason() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_estate();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1500 {
        let (o, s) = strategy.new_tree(&mut runner).unwrap().current();
        for item in plan(&o, &s).items {
            seen.insert(item.action.as_str().to_owned());
            if let acr_autoattach::core::planner::Action::Remove { reason, .. } = &item.action {
                seen.insert(format!("remove:{}", reason.as_str()));
            }
        }
    }
    for wanted in [
        "already_covered",
        "create",
        "exists",
        "report_missing",
        "pending",
        "refused",
        "remove",
        "remove:no_longer_selected",
        "remove:cluster_opted_out",
        "remove:cluster_deleted",
        "remove:cluster_absent",
        "remove:principal_changed",
        "remove:role_not_honoured",
    ] {
        assert!(seen.contains(wanted), "{wanted} never planned: {seen:?}");
    }
}
