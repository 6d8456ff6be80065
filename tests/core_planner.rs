//! The planner's rules, one test per rule, with fixture builders; and properties over generated estates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::BTreeSet;

use acr_autoattach::core::model::{
    ACR_PULL_GUID, Cluster, ClusterPrincipal, Mode, PairStatus, PullRole, REPOSITORY_READER_GUID,
    Registry, RegistryStatus, ResourceId, RoleAssignment, RoleAssignmentMode, RoleDefinition,
    assignment_name, ownership_description,
};
use acr_autoattach::core::planner::{
    Action, ApplyOutcome, Completeness, Grant, Observed, PendingReason, Plan, PlanItem,
    PlanSettings, RefusalReason, RemovalReason, ScopeLevel, action_matches, plan, result_for,
};
use fixtures::{cluster_id, registry_id};
use proptest::prelude::*;

const TAG: &str = "acr-autoattach";
const SUB1: &str = "11111111-1111-1111-1111-111111111111";
const SUB2: &str = "22222222-2222-2222-2222-222222222222";
const OWNER_GUID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const REPO_WRITER_GUID: &str = "2a1e307c-b015-4ebd-883e-5b7698a07328";
const ACR_PUSH_GUID: &str = "8311e382-0749-4cb8-b61a-304f252e45ec";

// ----- builders ------------------------------------------------------------------------------------------

/// A ready managed-identity cluster whose kubelet object id is `kubelet-{name}`.
fn cluster(sub: &str, name: &str, tags: &[(&str, &str)]) -> Cluster {
    Cluster {
        id: cluster_id(sub, name),
        location: "westeurope".into(),
        tenant_id: None,
        tags: tags.iter().copied().collect(),
        provisioning_state: "Succeeded".into(),
        principal: ClusterPrincipal::Kubelet {
            object_id: format!("kubelet-{name}"),
            client_id: None,
        },
    }
}

fn registry(sub: &str, name: &str, opt_in: Option<&str>) -> Registry {
    Registry {
        id: registry_id(sub, name),
        location: "westeurope".into(),
        tenant_id: None,
        tags: opt_in.map(|v| (TAG, v)).into_iter().collect(),
        mode: RoleAssignmentMode::LegacyRegistryPermissions,
    }
}

fn abac(mut r: Registry) -> Registry {
    r.mode = RoleAssignmentMode::AbacRepositoryPermissions;
    r
}

fn assignment(scope: &str, role_guid: &str, principal: &str, name: &str) -> RoleAssignment {
    RoleAssignment {
        id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}").into(),
        name: name.into(),
        scope: scope.into(),
        role_definition_guid: role_guid.into(),
        principal_id: principal.into(),
        principal_type: Some("ServicePrincipal".into()),
        description: None,
        condition: None,
    }
}

/// An assignment this project made for `cluster` (ownership mark in the description).
fn owned(
    registry: &Registry,
    role: PullRole,
    principal: &str,
    cluster: &ResourceId,
) -> RoleAssignment {
    let name = assignment_name(&registry.id, principal, role).to_string();
    RoleAssignment {
        description: Some(ownership_description(cluster).into()),
        ..assignment(
            registry.id.as_str(),
            role.definition_guid(),
            principal,
            &name,
        )
    }
}

fn settings() -> PlanSettings {
    PlanSettings::new(TAG)
}

fn observed(
    clusters: Vec<Cluster>,
    registries: Vec<Registry>,
    assignments: Vec<RoleAssignment>,
) -> Observed {
    Observed {
        clusters,
        registries,
        assignments,
        ..Observed::default()
    }
}

fn only(plan: &Plan) -> &PlanItem {
    assert_eq!(plan.items.len(), 1, "{:#?}", plan.items);
    &plan.items[0]
}

fn kinds(plan: &Plan) -> Vec<(String, String, &'static str)> {
    plan.items
        .iter()
        .map(|i| {
            (
                i.cluster.name().to_owned(),
                i.registry.name().to_owned(),
                i.action.as_str(),
            )
        })
        .collect()
}

// ----- selection and creation ----------------------------------------------------------------------------

#[test]
fn selected_pair_gets_the_exact_assignment_spec() {
    let prod = cluster(SUB1, "aks-prod", &[("env", "prod")]);
    let dev = cluster(SUB1, "aks-dev", &[("env", "dev")]);
    let acr = registry(SUB1, "acrprod", Some("env=prod"));
    let p = plan(
        &observed(vec![prod.clone(), dev], vec![acr.clone()], vec![]),
        &settings(),
    );
    let item = only(&p);
    assert_eq!(item.cluster, prod.id);
    assert_eq!(item.role, Some(PullRole::AcrPull));
    let Action::Create(spec) = &item.action else {
        panic!("{item:?}")
    };
    assert_eq!(spec.scope, acr.id);
    assert_eq!(
        spec.name,
        assignment_name(&acr.id, "kubelet-aks-prod", PullRole::AcrPull)
    );
    assert_eq!(
        spec.role_definition_id,
        format!(
            "/subscriptions/{SUB1}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL_GUID}"
        )
    );
    assert_eq!(spec.principal_id, "kubelet-aks-prod");
    assert_eq!(spec.principal_type, "ServicePrincipal");
    assert_eq!(spec.description, ownership_description(&prod.id));
    assert_eq!(
        spec.assignment_id(),
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            acr.id, spec.name
        )
    );
    let body = spec.request_body();
    assert_eq!(body["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(
        body["properties"]["roleDefinitionId"],
        spec.role_definition_id.as_str()
    );
    assert!(
        body["properties"]["description"]
            .as_str()
            .unwrap()
            .starts_with("managed-by: acr-autoattach")
    );
}

#[test]
fn abac_registry_gets_repository_reader() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = abac(registry(SUB1, "acrabac", Some("*")));
    let p = plan(&observed(vec![c], vec![r], vec![]), &settings());
    let Action::Create(spec) = &only(&p).action else {
        panic!()
    };
    assert_eq!(spec.role, PullRole::RepositoryReader);
    assert!(spec.role_definition_id.ends_with(REPOSITORY_READER_GUID));
}

#[test]
fn registries_not_opted_in_and_opted_out_clusters_produce_nothing() {
    let c = cluster(SUB1, "aks1", &[]);
    let out = cluster(SUB1, "aks-out", &[("ACR-AUTOATTACH", "Off")]);
    let regs = vec![
        registry(SUB1, "untagged", None),
        registry(SUB1, "off", Some("off")),
        registry(SUB1, "false", Some("FALSE")),
        registry(SUB1, "empty", Some("")),
        registry(SUB1, "all", Some("all")),
    ];
    let p = plan(&observed(vec![c, out], regs, vec![]), &settings());
    assert_eq!(kinds(&p), vec![("aks1".into(), "all".into(), "create")]);
    assert!(p.registry_results.is_empty());
}

#[test]
fn invalid_selector_is_reported_and_selects_nothing_not_even_removals() {
    let c = cluster(SUB1, "aks1", &[("env", "prod")]);
    let bad = registry(SUB1, "acrbad", Some("env in (prod"));
    let mine = owned(&bad, PullRole::AcrPull, "kubelet-aks1", &c.id);
    let mut s = settings();
    s.detach = true;
    s.completeness = Completeness::Full;
    let p = plan(&observed(vec![c], vec![bad.clone()], vec![mine]), &s);
    assert!(p.items.is_empty(), "{:#?}", p.items);
    assert_eq!(p.registry_results.len(), 1);
    assert_eq!(p.registry_results[0].registry_id, bad.id);
    assert_eq!(
        p.registry_results[0].status,
        RegistryStatus::InvalidSelector
    );
    assert!(
        p.registry_results[0].reason.contains("at position 13"),
        "{}",
        p.registry_results[0].reason
    );
}

// ----- coverage ------------------------------------------------------------------------------------------

#[test]
fn human_acrpull_at_resource_group_scope_covers() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let human = RoleAssignment {
        description: Some("granted by alice".into()),
        ..assignment(
            &format!("/subscriptions/{SUB1}/resourcegroups/RG-ACR"),
            ACR_PULL_GUID,
            "KUBELET-AKS1",
            "h1",
        )
    };
    let p = plan(
        &observed(vec![c], vec![r], vec![human.clone()]),
        &settings(),
    );
    let Action::AlreadyCovered { assignment_id, how } = &only(&p).action else {
        panic!("{p:#?}")
    };
    assert_eq!(assignment_id, &human.id);
    assert_eq!(how.scope, ScopeLevel::ResourceGroup);
    assert_eq!(
        how.grant,
        Grant::PullRole {
            role: PullRole::AcrPull
        }
    );
    assert_eq!(p.writes().count(), 0);
}

#[test]
fn unrelated_assignments_do_not_cover() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let other_registry = registry(SUB1, "acr10", None);
    let noise = vec![
        // another principal at the registry
        assignment(r.id.as_str(), ACR_PULL_GUID, "someone-else", "n1"),
        // a registry whose name shares a prefix
        assignment(
            other_registry.id.as_str(),
            ACR_PULL_GUID,
            "kubelet-aks1",
            "n2",
        ),
        // a resource group whose name shares a prefix
        assignment(
            &format!("/subscriptions/{SUB1}/resourceGroups/rg-acr2"),
            ACR_PULL_GUID,
            "kubelet-aks1",
            "n3",
        ),
        // another subscription
        assignment(
            &format!("/subscriptions/{SUB2}"),
            OWNER_GUID,
            "kubelet-aks1",
            "n4",
        ),
        // a role that does not include pull
        assignment(
            r.id.as_str(),
            "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
            "kubelet-aks1",
            "n5",
        ),
        // a missing scope is not the root
        RoleAssignment {
            scope: String::new().into(),
            ..assignment("", ACR_PULL_GUID, "kubelet-aks1", "n7")
        },
        // a management group not known to be above the subscription
        assignment(
            "/providers/Microsoft.Management/managementGroups/mg1",
            ACR_PULL_GUID,
            "kubelet-aks1",
            "n6",
        ),
    ];
    let p = plan(&observed(vec![c], vec![r], noise), &settings());
    assert!(matches!(only(&p).action, Action::Create(_)), "{p:#?}");
}

#[test]
fn subscription_owner_covers_in_legacy_mode_but_not_in_abac_mode() {
    let c = cluster(SUB1, "aks1", &[]);
    let owner = assignment(
        &format!("/subscriptions/{SUB1}"),
        OWNER_GUID,
        "kubelet-aks1",
        "o1",
    );
    let legacy = registry(SUB1, "acrlegacy", Some("*"));
    let p = plan(
        &observed(vec![c.clone()], vec![legacy], vec![owner.clone()]),
        &settings(),
    );
    let Action::AlreadyCovered { how, .. } = &only(&p).action else {
        panic!("{p:#?}")
    };
    assert_eq!(how.scope, ScopeLevel::Subscription);
    assert_eq!(how.grant, Grant::BuiltIn { role_name: "Owner" });

    let abac_reg = abac(registry(SUB1, "acrabac", Some("*")));
    let p = plan(
        &observed(vec![c.clone()], vec![abac_reg.clone()], vec![owner.clone()]),
        &settings(),
    );
    assert!(matches!(&only(&p).action, Action::Create(s) if s.role == PullRole::RepositoryReader));

    // In ABAC mode AcrPull and AcrPush are not honoured either; Repository Writer is.
    let legacy_roles = vec![
        assignment(abac_reg.id.as_str(), ACR_PULL_GUID, "kubelet-aks1", "a1"),
        assignment(abac_reg.id.as_str(), ACR_PUSH_GUID, "kubelet-aks1", "a2"),
    ];
    let p = plan(
        &observed(vec![c.clone()], vec![abac_reg.clone()], legacy_roles),
        &settings(),
    );
    assert!(matches!(only(&p).action, Action::Create(_)));
    let writer = assignment(
        &format!("/subscriptions/{SUB1}"),
        REPO_WRITER_GUID,
        "kubelet-aks1",
        "w1",
    );
    let p = plan(
        &observed(vec![c], vec![abac_reg], vec![owner, writer]),
        &settings(),
    );
    let Action::AlreadyCovered { how, .. } = &only(&p).action else {
        panic!("{p:#?}")
    };
    assert_eq!(
        how.grant,
        Grant::BuiltIn {
            role_name: "Container Registry Repository Writer"
        }
    );
}

#[test]
fn a_conditioned_assignment_is_a_persons_decision_never_widened() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = abac(registry(SUB1, "acrabac", Some("*")));
    let conditioned = RoleAssignment {
        condition: Some("@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWith 'team-a/'".into()),
        ..assignment(r.id.as_str(), REPOSITORY_READER_GUID, "kubelet-aks1", "c1")
    };
    let p = plan(
        &observed(vec![c.clone()], vec![r.clone()], vec![conditioned.clone()]),
        &settings(),
    );
    // Issue 10, rule 2: compliant, restricted; nothing broader is created beside it.
    let Action::AlreadyCovered { how, .. } = &only(&p).action else {
        panic!("{p:#?}")
    };
    assert!(how.restricted_by_condition, "{how:?}");
    assert!(how.to_string().contains("restricted by a condition"));
    // The same assignment without a condition covers.
    let plain = RoleAssignment {
        condition: None,
        ..conditioned
    };
    let p = plan(&observed(vec![c], vec![r], vec![plain]), &settings());
    assert!(matches!(only(&p).action, Action::AlreadyCovered { .. }));
}

#[test]
fn custom_roles_are_judged_by_their_actions_with_wildcards() {
    let c = cluster(SUB1, "aks1", &[]);
    let legacy = registry(SUB1, "acrlegacy", Some("*"));
    let abac_reg = abac(registry(SUB1, "acrabac", Some("*")));
    let custom_guid = "0f0f0f0f-0000-0000-0000-000000000001";
    let mut o = observed(
        vec![c],
        vec![legacy, abac_reg],
        vec![assignment(
            &format!("/subscriptions/{SUB1}"),
            custom_guid,
            "kubelet-aks1",
            "x1",
        )],
    );
    // No definition known: not counted.
    let p = plan(&o, &settings());
    assert_eq!(p.writes().count(), 2);

    let def =
        |actions: &[&str], not_actions: &[&str], data: &[&str], not_data: &[&str]| RoleDefinition {
            guid: custom_guid.into(),
            role_name: "Platform puller".into(),
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            not_actions: not_actions.iter().map(|s| (*s).to_owned()).collect(),
            data_actions: data.iter().map(|s| (*s).to_owned()).collect(),
            not_data_actions: not_data.iter().map(|s| (*s).to_owned()).collect(),
        };
    o.role_definitions.insert(
        custom_guid.into(),
        def(
            &["Microsoft.ContainerRegistry/*/read"],
            &[],
            &["microsoft.containerregistry/registries/repositories/*"],
            &[],
        ),
    );
    let p = plan(&o, &settings());
    assert_eq!(p.writes().count(), 0, "{p:#?}");
    for item in &p.items {
        let Action::AlreadyCovered { how, .. } = &item.action else {
            panic!()
        };
        assert_eq!(
            how.grant,
            Grant::ByActions {
                role_name: "Platform puller".into()
            }
        );
    }
    // Exclusions win over wildcards.
    o.role_definitions.insert(
        custom_guid.into(),
        def(
            &["*"],
            &["Microsoft.ContainerRegistry/registries/pull/*"],
            &["*"],
            &["Microsoft.ContainerRegistry/registries/repositories/content/read"],
        ),
    );
    let p = plan(&o, &settings());
    assert_eq!(p.writes().count(), 2, "{p:#?}");
}

#[test]
fn action_patterns_match_like_azure() {
    let op = "Microsoft.ContainerRegistry/registries/pull/read";
    for yes in [
        "*",
        "*/read",
        "microsoft.containerregistry/*",
        "Microsoft.ContainerRegistry/registries/*/read",
        op,
    ] {
        assert!(action_matches(yes, op), "{yes}");
    }
    for no in [
        "*/write",
        "Microsoft.ContainerRegistry/registries/push/*",
        "Microsoft.Storage/*",
        "",
    ] {
        assert!(!action_matches(no, op), "{no}");
    }
}

#[test]
fn management_group_and_root_assignments_cover_when_known_above() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let mg = assignment(
        "/providers/Microsoft.Management/managementGroups/Platform",
        ACR_PULL_GUID,
        "kubelet-aks1",
        "m1",
    );
    let mut o = observed(vec![c.clone()], vec![r.clone()], vec![mg]);
    o.management_groups.insert(
        SUB1.into(),
        vec!["/providers/Microsoft.Management/managementGroups/platform".into()],
    );
    let p = plan(&o, &settings());
    let Action::AlreadyCovered { how, .. } = &only(&p).action else {
        panic!()
    };
    assert_eq!(how.scope, ScopeLevel::ManagementGroup);
    let root = assignment("/", ACR_PULL_GUID, "kubelet-aks1", "r1");
    let root = RoleAssignment {
        scope: "/".into(),
        ..root
    };
    let p = plan(&observed(vec![c], vec![r], vec![root]), &settings());
    let Action::AlreadyCovered { how, .. } = &only(&p).action else {
        panic!()
    };
    assert_eq!(how.scope, ScopeLevel::Root);
}

#[test]
fn the_closest_covering_assignment_is_reported() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let sub_owner = assignment(
        &format!("/subscriptions/{SUB1}"),
        OWNER_GUID,
        "kubelet-aks1",
        "a",
    );
    let at_registry = assignment(r.id.as_str(), ACR_PULL_GUID, "kubelet-aks1", "b");
    let p = plan(
        &observed(vec![c], vec![r], vec![sub_owner, at_registry.clone()]),
        &settings(),
    );
    let Action::AlreadyCovered { assignment_id, how } = &only(&p).action else {
        panic!()
    };
    assert_eq!(assignment_id, &at_registry.id);
    assert_eq!(how.scope, ScopeLevel::Registry);
}

// ----- tenants, principals, readiness --------------------------------------------------------------------

#[test]
fn cross_subscription_same_tenant_is_attached_and_other_tenant_refused() {
    let c = cluster(SUB2, "aks-other-sub", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let mut o = observed(vec![c], vec![r], vec![]);
    o.subscription_tenants
        .insert(SUB1.into(), "tenant-a".into());
    o.subscription_tenants
        .insert(SUB2.into(), "TENANT-A".into());
    let first = plan(&o, &settings());
    let Action::Create(spec) = &only(&first).action else {
        panic!()
    };
    // The role definition id lives in the registry's subscription, not the cluster's.
    assert!(
        spec.role_definition_id
            .starts_with(&format!("/subscriptions/{SUB1}/"))
    );

    o.subscription_tenants
        .insert(SUB2.into(), "tenant-b".into());
    let item = plan(&o, &settings()).items.remove(0);
    assert_eq!(
        item.action,
        Action::Refused {
            reason: RefusalReason::OtherTenant {
                cluster_tenant: "tenant-b".into(),
                registry_tenant: "tenant-a".into()
            }
        }
    );
    let refused = result_for(&item, &ApplyOutcome::NotApplied);
    assert_eq!(refused.status, PairStatus::Failed);
    assert!(refused.reason.unwrap().contains("tenant-b"));

    // Same tenant for both, but not the handler's.
    o.subscription_tenants
        .insert(SUB2.into(), "tenant-a".into());
    let mut s = settings();
    s.handler_tenant = Some("tenant-h".into());
    assert!(matches!(
        only(&plan(&o, &s)).action,
        Action::Refused {
            reason: RefusalReason::OutsideHandlerTenant { .. }
        }
    ));
}

#[test]
fn service_principal_cluster_uses_the_resolved_object_id() {
    let mut c = cluster(SUB1, "aks-sp", &[]);
    c.principal = ClusterPrincipal::ServicePrincipal {
        client_id: "app-123".into(),
    };
    let r = registry(SUB1, "acr1", Some("*"));
    let mut o = observed(vec![c.clone()], vec![r], vec![]);
    assert_eq!(
        only(&plan(&o, &settings())).action,
        Action::Pending {
            reason: PendingReason::ServicePrincipalNotLookedUp
        }
    );
    o.principals
        .insert(c.id.clone(), Err("Graph: not found".into()));
    assert!(matches!(
        &only(&plan(&o, &settings())).action,
        Action::Pending { reason: PendingReason::ServicePrincipalUnresolved { reason } } if reason == "Graph: not found"
    ));
    o.principals.insert(c.id.clone(), Ok("sp-object-1".into()));
    let item = plan(&o, &settings()).items.remove(0);
    assert_eq!(item.principal_id.as_deref(), Some("sp-object-1"));
    let Action::Create(spec) = item.action else {
        panic!()
    };
    assert_eq!(spec.principal_id, "sp-object-1");
    assert_eq!(spec.principal_type, "ServicePrincipal");
}

#[test]
fn a_cluster_not_ready_is_pending_unless_already_covered() {
    let mut creating = cluster(SUB1, "aks1", &[]);
    creating.provisioning_state = "Creating".into();
    creating.principal = ClusterPrincipal::NotYetKnown;
    let r = registry(SUB1, "acr1", Some("*"));
    let item = plan(
        &observed(vec![creating.clone()], vec![r.clone()], vec![]),
        &settings(),
    )
    .items
    .remove(0);
    assert!(
        matches!(&item.action, Action::Pending { reason: PendingReason::ClusterNotReady { provisioning_state } } if provisioning_state == "Creating")
    );
    assert_eq!(
        result_for(&item, &ApplyOutcome::NotApplied).status,
        PairStatus::Pending
    );

    // Identity known but still updating: covered pairs stay compliant, uncovered ones wait.
    let mut updating = cluster(SUB1, "aks1", &[]);
    updating.provisioning_state = "Updating".into();
    let p = plan(
        &observed(vec![updating.clone()], vec![r.clone()], vec![]),
        &settings(),
    );
    assert!(matches!(only(&p).action, Action::Pending { .. }));
    let a = assignment(r.id.as_str(), ACR_PULL_GUID, "kubelet-aks1", "a");
    let p = plan(&observed(vec![updating], vec![r], vec![a]), &settings());
    assert!(matches!(only(&p).action, Action::AlreadyCovered { .. }));
}

#[test]
fn audit_mode_reports_missing_and_writes_nothing() {
    let c = cluster(SUB1, "aks1", &[("env", "dev")]);
    let r = registry(SUB1, "acr1", Some("*"));
    let gone_selector = registry(SUB1, "acr2", Some("env=prod"));
    let stale = owned(&gone_selector, PullRole::AcrPull, "kubelet-aks1", &c.id);
    let mut s = settings();
    s.mode = Mode::Audit;
    s.detach = true;
    let p = plan(&observed(vec![c], vec![r, gone_selector], vec![stale]), &s);
    assert_eq!(p.writes().count(), 0);
    let item = only(&p);
    assert!(matches!(&item.action, Action::ReportMissing(spec) if spec.role == PullRole::AcrPull));
    assert_eq!(
        result_for(item, &ApplyOutcome::NotApplied).status,
        PairStatus::Missing
    );
}

// ----- detach --------------------------------------------------------------------------------------------

fn detach_settings(completeness: Completeness) -> PlanSettings {
    let mut s = settings();
    s.detach = true;
    s.completeness = completeness;
    s
}

#[test]
fn detach_removes_only_owned_assignments_no_longer_selected() {
    let dev = cluster(SUB1, "aks-dev", &[("env", "dev")]);
    let prod = cluster(SUB1, "aks-prod", &[("env", "prod")]);
    // The registry moved from env=dev to env=prod.
    let r = registry(SUB1, "acr1", Some("env=prod"));
    let ours_dev = owned(&r, PullRole::AcrPull, "kubelet-aks-dev", &dev.id);
    let human_dev = RoleAssignment {
        description: Some("made by bob".into()),
        ..assignment(r.id.as_str(), ACR_PULL_GUID, "kubelet-aks-dev", "human")
    };
    let ours_prod = owned(&r, PullRole::AcrPull, "kubelet-aks-prod", &prod.id);
    let o = observed(
        vec![dev.clone(), prod],
        vec![r.clone()],
        vec![ours_dev.clone(), human_dev, ours_prod.clone()],
    );

    let p = plan(&o, &detach_settings(Completeness::Partial));
    assert_eq!(
        kinds(&p),
        vec![
            ("aks-dev".into(), "acr1".into(), "remove"),
            ("aks-prod".into(), "acr1".into(), "already_covered")
        ]
    );
    let Action::Remove { assignment, reason } = &p.items[0].action else {
        panic!()
    };
    assert_eq!(assignment, &ours_dev);
    assert_eq!(reason, &RemovalReason::NoLongerSelected);
    let res = result_for(&p.items[0], &ApplyOutcome::Removed);
    assert_eq!(res.status, PairStatus::Detached);
    assert_eq!(res.assignment_id.as_deref(), Some(ours_dev.id.as_str()));
    assert!(
        matches!(&p.items[1].action, Action::AlreadyCovered { assignment_id, .. } if *assignment_id == ours_prod.id)
    );

    // Without detach nothing is removed.
    let p = plan(&o, &settings());
    assert_eq!(
        kinds(&p),
        vec![("aks-prod".into(), "acr1".into(), "already_covered")]
    );
}

#[test]
fn detach_never_touches_unmarked_or_non_pull_assignments() {
    let c = cluster(SUB1, "aks1", &[("acr-autoattach", "off")]);
    let r = registry(SUB1, "acr1", Some("*"));
    let unmarked = assignment(r.id.as_str(), ACR_PULL_GUID, "kubelet-aks1", "u");
    let forged_owner = RoleAssignment {
        description: Some(ownership_description(&c.id).into()),
        ..assignment(r.id.as_str(), OWNER_GUID, "kubelet-aks1", "f")
    };
    let marked_elsewhere = RoleAssignment {
        description: Some(format!("note: {}", ownership_description(&c.id)).into()),
        ..assignment(r.id.as_str(), ACR_PULL_GUID, "kubelet-aks1", "m")
    };
    let mut s = detach_settings(Completeness::Full);
    s.deleted_clusters.insert(c.id.clone());
    let p = plan(
        &observed(
            vec![],
            vec![r],
            vec![unmarked, forged_owner, marked_elsewhere],
        ),
        &s,
    );
    assert!(p.items.is_empty(), "{p:#?}");
}

#[test]
fn detach_on_deleted_absent_opted_out_clusters() {
    let gone = cluster(SUB1, "aks-gone", &[]);
    let absent = cluster(SUB1, "aks-absent", &[]);
    let out = cluster(SUB1, "aks-out", &[(TAG, "off")]);
    let r = registry(SUB1, "acr1", Some("*"));
    let assignments = vec![
        owned(&r, PullRole::AcrPull, "kubelet-aks-gone", &gone.id),
        owned(&r, PullRole::AcrPull, "kubelet-aks-absent", &absent.id),
        owned(&r, PullRole::AcrPull, "kubelet-aks-out", &out.id),
    ];
    let o = observed(vec![out], vec![r], assignments);
    let reasons = |p: &Plan| {
        p.items
            .iter()
            .map(|i| match &i.action {
                Action::Remove { reason, .. } => (i.cluster.name().to_owned(), reason.as_str()),
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let mut partial = detach_settings(Completeness::Partial);
    partial.deleted_clusters.insert(gone.id.clone());
    assert_eq!(
        reasons(&plan(&o, &partial)),
        vec![
            ("aks-gone".into(), "cluster_deleted"),
            ("aks-out".into(), "cluster_opted_out")
        ]
    );
    let mut full = detach_settings(Completeness::Full);
    full.deleted_clusters = BTreeSet::from([gone.id.clone()]);
    assert_eq!(
        reasons(&plan(&o, &full)),
        vec![
            ("aks-absent".into(), "cluster_absent"),
            ("aks-gone".into(), "cluster_deleted"),
            ("aks-out".into(), "cluster_opted_out")
        ]
    );
}

#[test]
fn a_cluster_in_a_subscription_outside_the_inventory_is_not_absent() {
    let elsewhere = cluster(SUB2, "aks-elsewhere", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let ours = owned(
        &r,
        PullRole::AcrPull,
        "kubelet-aks-elsewhere",
        &elsewhere.id,
    );
    let mut o = observed(vec![], vec![r], vec![ours]);
    let full = detach_settings(Completeness::Full);
    assert!(plan(&o, &full).items.is_empty());
    // Once SUB2 is known to be inventoried, the cluster's absence counts.
    o.subscription_tenants.insert(SUB2.into(), "t".into());
    let p = plan(&o, &full);
    assert!(matches!(
        only(&p).action,
        Action::Remove {
            reason: RemovalReason::ClusterAbsent,
            ..
        }
    ));
}

#[test]
fn a_present_cluster_is_never_treated_as_deleted() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let ours = owned(&r, PullRole::AcrPull, "kubelet-aks1", &c.id);
    let mut s = detach_settings(Completeness::Full);
    s.deleted_clusters.insert(c.id.clone());
    let p = plan(&observed(vec![c], vec![r], vec![ours]), &s);
    assert!(matches!(only(&p).action, Action::AlreadyCovered { .. }));
}

#[test]
fn detach_replaces_the_assignment_of_a_changed_kubelet_identity() {
    let mut c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let old = owned(&r, PullRole::AcrPull, "kubelet-old", &c.id);
    c.principal = ClusterPrincipal::Kubelet {
        object_id: "kubelet-new".into(),
        client_id: None,
    };
    let p = plan(
        &observed(vec![c], vec![r], vec![old.clone()]),
        &detach_settings(Completeness::Partial),
    );
    assert_eq!(p.items.len(), 2);
    assert!(
        matches!(&p.items[0].action, Action::Remove { assignment, reason: RemovalReason::PrincipalChanged { current_principal_id } }
        if *assignment == old && current_principal_id == "kubelet-new")
    );
    assert!(
        matches!(&p.items[1].action, Action::Create(spec) if spec.principal_id == "kubelet-new")
    );
}

#[test]
fn detach_removes_a_role_the_registry_mode_no_longer_honours() {
    let c = cluster(SUB1, "aks1", &[]);
    let legacy = registry(SUB1, "acr1", Some("*"));
    let ours = owned(&legacy, PullRole::AcrPull, "kubelet-aks1", &c.id);
    let switched = abac(legacy);
    let p = plan(
        &observed(vec![c], vec![switched], vec![ours]),
        &detach_settings(Completeness::Partial),
    );
    assert_eq!(p.items.len(), 2);
    assert!(matches!(
        &p.items[0].action,
        Action::Remove {
            reason: RemovalReason::RoleNotHonoured,
            ..
        }
    ));
    assert!(
        matches!(&p.items[1].action, Action::Create(spec) if spec.role == PullRole::RepositoryReader)
    );
}

// ----- results -------------------------------------------------------------------------------------------

#[test]
fn results_map_outcomes_to_statuses() {
    let c = cluster(SUB1, "aks1", &[]);
    let r = registry(SUB1, "acr1", Some("*"));
    let item = plan(&observed(vec![c], vec![r], vec![]), &settings())
        .items
        .remove(0);
    let Action::Create(spec) = &item.action else {
        panic!()
    };
    let created = result_for(
        &item,
        &ApplyOutcome::Created {
            assignment_id: spec.assignment_id().into(),
        },
    );
    assert_eq!(created.status, PairStatus::Repaired);
    assert_eq!(created.role, Some(PullRole::AcrPull));
    assert_eq!(created.principal_id.as_deref(), Some("kubelet-aks1"));
    assert_eq!(created.assignment_id, Some(spec.assignment_id().into()));
    assert_eq!(
        result_for(&item, &ApplyOutcome::AlreadyExists).status,
        PairStatus::Compliant
    );
    let failed = result_for(
        &item,
        &ApplyOutcome::Failed(acr_autoattach::core::model::PairFailure::permanent(
            "forbidden",
            "403 AuthorizationFailed",
        )),
    );
    assert_eq!(
        (failed.status, failed.reason.as_deref()),
        (
            PairStatus::Failed,
            Some("forbidden: 403 AuthorizationFailed")
        )
    );
    assert_eq!(
        failed.failure.map(|f| (f.kind, f.transient)),
        Some(("forbidden", false))
    );
    assert_eq!(
        result_for(&item, &ApplyOutcome::NotApplied).status,
        PairStatus::Failed
    );
}

// ----- properties ----------------------------------------------------------------------------------------

const SELECTORS: [&str; 8] = [
    "*",
    "all",
    "off",
    "env=prod",
    "env!=prod,team",
    "env in (dev",
    "@subscription=",
    "!legacy",
];
const ROLES: [&str; 6] = [
    ACR_PULL_GUID,
    REPOSITORY_READER_GUID,
    OWNER_GUID,
    ACR_PUSH_GUID,
    REPO_WRITER_GUID,
    "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
];

prop_compose! {
    fn arb_cluster(i: usize)(
        sub in prop::sample::select(vec![SUB1, SUB2]),
        env in prop::sample::select(vec![None, Some("prod"), Some("dev")]),
        opt_out in prop::bool::weighted(0.15),
        ready in prop::bool::weighted(0.8),
        sp in prop::bool::weighted(0.2),
        principal in 0..3usize,
    ) -> Cluster {
        let mut tags: Vec<(&str, &str)> = env.map(|e| ("env", e)).into_iter().collect();
        if opt_out { tags.push((TAG, "off")); }
        let mut c = cluster(sub, &format!("aks{i}"), &tags);
        c.principal = if sp {
            ClusterPrincipal::ServicePrincipal { client_id: format!("app{i}") }
        } else if ready {
            ClusterPrincipal::Kubelet { object_id: format!("p{i}-{principal}"), client_id: None }
        } else {
            c.provisioning_state = "Creating".into();
            ClusterPrincipal::NotYetKnown
        };
        c
    }
}

prop_compose! {
    fn arb_registry(i: usize)(
        sub in prop::sample::select(vec![SUB1, SUB2]),
        sel in prop::option::of(prop::sample::select(SELECTORS.to_vec())),
        is_abac in any::<bool>(),
    ) -> Registry {
        let r = registry(sub, &format!("acr{i}"), sel);
        if is_abac { abac(r) } else { r }
    }
}

fn arb_estate() -> impl Strategy<Value = (Observed, PlanSettings)> {
    let clusters = (0..5usize).map(arb_cluster).collect::<Vec<_>>();
    let registries = (0..3usize).map(arb_registry).collect::<Vec<_>>();
    let raw_assignments = prop::collection::vec(
        (
            0..5usize,
            0..3usize,
            0..3usize,
            prop::sample::select(ROLES.to_vec()),
            any::<bool>(),
            0..4usize,
            any::<bool>(),
        ),
        0..12,
    );
    (
        clusters,
        registries,
        raw_assignments,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0..5usize),
    )
        .prop_map(
            |(clusters, registries, raw, detach, audit, full, deleted)| {
                let mut assignments = Vec::new();
                for (n, (ci, ri, pi, role, mark, scope_kind, cond)) in raw.into_iter().enumerate() {
                    let c = &clusters[ci];
                    let r = &registries[ri];
                    let scope = match scope_kind {
                        0 | 1 => r.id.to_string(),
                        2 => r.id.resource_group_scope().unwrap(),
                        _ => r.id.subscription_scope(),
                    };
                    assignments.push(RoleAssignment {
                        description: mark.then(|| ownership_description(&c.id).into()),
                        condition: cond.then(|| "some condition".to_owned()),
                        ..assignment(&scope, role, &format!("p{ci}-{pi}"), &format!("a{n}"))
                    });
                }
                let mut observed = observed(clusters, registries, assignments);
                // Some service principals resolve.
                for c in &observed.clusters {
                    if matches!(c.principal, ClusterPrincipal::ServicePrincipal { .. })
                        && c.id.name().ends_with(['0', '2', '4'])
                    {
                        observed
                            .principals
                            .insert(c.id.clone(), Ok(format!("p{}-0", &c.id.name()[3..])));
                    }
                }
                let mut s = settings();
                s.detach = detach;
                s.mode = if audit { Mode::Audit } else { Mode::Enforce };
                s.completeness = if full {
                    Completeness::Full
                } else {
                    Completeness::Partial
                };
                if let Some(d) = deleted {
                    let name = format!("aks{d}");
                    let id = observed
                        .clusters
                        .iter()
                        .find(|c| c.id.name() == name)
                        .unwrap()
                        .id
                        .clone();
                    observed.clusters.retain(|c| c.id != id);
                    s.deleted_clusters.insert(id);
                }
                (observed, s)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn plans_keep_every_invariant((o, s) in arb_estate()) {
        let p = plan(&o, &s);
        // Deterministic, also under a shuffled snapshot.
        let mut reversed = o.clone();
        reversed.clusters.reverse();
        reversed.registries.reverse();
        reversed.assignments.reverse();
        prop_assert_eq!(&plan(&reversed, &s), &p);

        for item in &p.items {
            let registry = o.registries.iter().find(|r| r.id == item.registry);
            match &item.action {
                Action::Create(spec) | Action::ReportMissing(spec) => {
                    let registry = registry.unwrap();
                    // Only the pull role for the registry's mode, ever.
                    prop_assert_eq!(spec.role, PullRole::for_mode(registry.mode));
                    prop_assert!(spec.role_definition_id.ends_with(spec.role.definition_guid()));
                    prop_assert_eq!(&spec.scope, &registry.id);
                    prop_assert!(spec.description.starts_with("managed-by: acr-autoattach"));
                    prop_assert_eq!(matches!(item.action, Action::Create(_)), s.mode == Mode::Enforce);
                    let cluster = o.clusters.iter().find(|c| c.id == item.cluster).unwrap();
                    prop_assert!(cluster.is_ready());
                }
                Action::Remove { assignment, .. } => {
                    prop_assert!(s.detach && s.mode == Mode::Enforce);
                    prop_assert!(assignment.is_owned());
                    prop_assert!(PullRole::from_definition_guid(&assignment.role_definition_guid).is_some());
                    // An assignment that covers a selected pair is never removed.
                    let still_covering = p.items.iter().any(|i| matches!(&i.action, Action::AlreadyCovered { assignment_id, .. } if *assignment_id == assignment.id));
                    prop_assert!(!still_covering);
                }
                _ => {}
            }
            if !matches!(item.action, Action::Remove { .. }) {
                let cluster = o.clusters.iter().find(|c| c.id == item.cluster).unwrap();
                prop_assert!(cluster.tags.get(TAG) != Some("off"));
            }
        }
        // A registry whose tag does not parse gets a result and no item at all.
        for r in &o.registries {
            let invalid = r.tags.get(TAG).is_some_and(|v| v.starts_with("env in (") || v == "@subscription=");
            prop_assert_eq!(invalid, p.registry_results.iter().any(|x| x.registry_id == r.id));
            if invalid {
                // Only a gone cluster's assignments may still go: that does not depend on the selector.
                let selector_based = p.items.iter().filter(|i| i.registry == r.id).any(|i| {
                    !matches!(
                        &i.action,
                        Action::Remove { reason: RemovalReason::ClusterDeleted | RemovalReason::ClusterAbsent, .. }
                    )
                });
                prop_assert!(!selector_based);
            }
        }
    }
}
