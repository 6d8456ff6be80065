//! The planner as it was before issue 15 made it linear (commit a81fead), kept verbatim in substance as the
//! reference the optimised `planner::plan` must agree with (`tests/core_planner_reference.rs`). Slow on
//! purpose: per-pair look-ups, a scan of every assignment per missing pair, every cluster per removal.
//! Include with `#[path = "support/reference_planner.rs"] mod reference;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use acr_autoattach::core::model::{
    Cluster, ClusterPrincipal, Mode, PullRole, Registry, RegistryResult, RegistryStatus,
    ResourceId, RoleAssignment,
};
use acr_autoattach::core::planner::{
    Action, AssignmentSpec, Completeness, Grant, Observed, PendingReason, Plan, PlanItem,
    PlanSettings, RefusalReason, RemovalReason, provably_ours, pull_coverage,
};
use acr_autoattach::core::selector::{OptIn, cluster_opted_out, registry_opt_in};

fn rank(grant: &Grant) -> u8 {
    match grant {
        Grant::PullRole { .. } => 0,
        Grant::BuiltIn { .. } => 1,
        Grant::ByActions { .. } => 2,
    }
}

fn tie_break(action: &Action) -> String {
    match action {
        Action::Remove { assignment, .. } => assignment.id.to_ascii_lowercase(),
        _ => String::new(),
    }
}

fn order(action: &Action) -> u8 {
    match action {
        Action::Remove { .. } => 0,
        Action::AlreadyCovered { .. } => 1,
        Action::Create(_) | Action::Exists { .. } | Action::Join { .. } => 2,
        Action::ReportMissing(_) => 3,
        Action::Pending { .. } => 4,
        Action::Refused { .. } => 5,
    }
}

fn current_principal(cluster: &Cluster, observed: &Observed) -> Result<String, PendingReason> {
    match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } if !object_id.trim().is_empty() => {
            Ok(object_id.trim().to_owned())
        }
        ClusterPrincipal::Kubelet { .. } | ClusterPrincipal::NotYetKnown => {
            Err(PendingReason::ClusterNotReady {
                provisioning_state: cluster.provisioning_state.clone(),
            })
        }
        ClusterPrincipal::ServicePrincipal { .. } => match observed.principals.get(&cluster.id) {
            Some(Ok(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            Some(Ok(_)) => Err(PendingReason::ServicePrincipalUnresolved {
                reason: "empty object id".to_owned(),
            }),
            Some(Err(reason)) => Err(PendingReason::ServicePrincipalUnresolved {
                reason: reason.clone(),
            }),
            None => Err(PendingReason::ServicePrincipalNotLookedUp),
        },
    }
}

fn tenant_of<'a>(
    own: Option<&'a String>,
    id: &ResourceId,
    observed: &'a Observed,
) -> Option<&'a str> {
    own.map(String::as_str)
        .or_else(|| {
            observed
                .subscription_tenants
                .get(&id.subscription_id().to_ascii_lowercase())
                .map(String::as_str)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn refusal(
    cluster: &Cluster,
    registry: &Registry,
    observed: &Observed,
    settings: &PlanSettings,
) -> Option<RefusalReason> {
    let cluster_tenant = tenant_of(cluster.tenant_id.as_ref(), &cluster.id, observed);
    let registry_tenant = tenant_of(registry.tenant_id.as_ref(), &registry.id, observed);
    if let (Some(c), Some(r)) = (cluster_tenant, registry_tenant)
        && !c.eq_ignore_ascii_case(r)
    {
        return Some(RefusalReason::OtherTenant {
            cluster_tenant: c.to_owned(),
            registry_tenant: r.to_owned(),
        });
    }
    let handler = settings
        .handler_tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())?;
    [registry_tenant, cluster_tenant]
        .into_iter()
        .flatten()
        .find(|t| !t.eq_ignore_ascii_case(handler))
        .map(|t| RefusalReason::OutsideHandlerTenant {
            tenant: t.to_owned(),
        })
}

fn management_groups_of<'a>(registry: &Registry, observed: &'a Observed) -> &'a [String] {
    observed
        .management_groups
        .get(&registry.id.subscription_id().to_ascii_lowercase())
        .map_or(&[], Vec::as_slice)
}

fn pair_item(
    cluster: &Cluster,
    registry: &Registry,
    observed: &Observed,
    by_principal: &HashMap<String, Vec<&RoleAssignment>>,
    settings: &PlanSettings,
) -> PlanItem {
    let role = PullRole::for_mode(registry.mode);
    let item = |principal_id: Option<String>, action| PlanItem {
        cluster: cluster.id.clone(),
        registry: registry.id.clone(),
        principal_id: principal_id.map(Into::into),
        role: Some(role),
        action,
    };
    if let Some(reason) = refusal(cluster, registry, observed, settings) {
        return item(None, Action::Refused { reason });
    }
    let principal = match current_principal(cluster, observed) {
        Ok(p) => p,
        Err(reason) => return item(None, Action::Pending { reason }),
    };
    let mgs = management_groups_of(registry, observed);
    let covered = by_principal
        .get(&principal.to_ascii_lowercase())
        .into_iter()
        .flatten()
        .filter_map(|a| {
            pull_coverage(a, registry, &observed.role_definitions, mgs).map(|c| (*a, c))
        })
        .min_by(|(a1, c1), (a2, c2)| {
            (
                c1.restricted_by_condition,
                c1.scope,
                rank(&c1.grant),
                a1.id.to_ascii_lowercase(),
            )
                .cmp(&(
                    c2.restricted_by_condition,
                    c2.scope,
                    rank(&c2.grant),
                    a2.id.to_ascii_lowercase(),
                ))
        });
    if let Some((assignment, how)) = covered {
        return item(
            Some(principal),
            Action::AlreadyCovered {
                assignment_id: assignment.id.clone(),
                how,
            },
        );
    }
    let spec = AssignmentSpec::new(&registry.id, &principal, role, &cluster.id);
    if let Some(existing) = observed
        .assignments
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(&spec.name.to_string()))
    {
        return item(
            Some(principal),
            Action::Exists {
                assignment_id: existing.id.clone(),
            },
        );
    }
    if !cluster.is_ready() {
        let reason = PendingReason::ClusterNotReady {
            provisioning_state: cluster.provisioning_state.clone(),
        };
        return item(Some(principal), Action::Pending { reason });
    }
    let action = match settings.mode {
        Mode::Enforce => Action::Create(spec),
        Mode::Audit => Action::ReportMissing(spec),
    };
    item(Some(principal), action)
}

struct DetachContext<'a> {
    clusters: HashMap<&'a ResourceId, &'a Cluster>,
    registries: HashMap<&'a ResourceId, (&'a Registry, Option<OptIn>)>,
    observed: &'a Observed,
    settings: &'a PlanSettings,
}

fn removal_reason(
    cx: &DetachContext<'_>,
    assignment: &RoleAssignment,
    role: PullRole,
    owner: &ResourceId,
    registry_id: &ResourceId,
) -> Option<RemovalReason> {
    let (observed, settings) = (cx.observed, cx.settings);
    let Some(cluster) = cx.clusters.get(owner) else {
        if settings.deleted_clusters.contains(owner) {
            return Some(RemovalReason::ClusterDeleted);
        }
        let sub = owner.subscription_id();
        let inventoried = observed
            .subscription_tenants
            .keys()
            .any(|k| k.eq_ignore_ascii_case(sub))
            || cx
                .clusters
                .keys()
                .any(|c| c.subscription_id().eq_ignore_ascii_case(sub))
            || cx
                .registries
                .keys()
                .any(|r| r.subscription_id().eq_ignore_ascii_case(sub));
        return (settings.completeness == Completeness::Full && inventoried)
            .then_some(RemovalReason::ClusterAbsent);
    };
    let (registry, Some(opt_in)) = cx.registries.get(registry_id)? else {
        return None;
    };
    if cluster_opted_out(cluster, &settings.tag_name) {
        return Some(RemovalReason::ClusterOptedOut);
    }
    if !opt_in.selects(cluster) {
        return Some(RemovalReason::NoLongerSelected);
    }
    if let Ok(current) = current_principal(cluster, observed)
        && !current.eq_ignore_ascii_case(assignment.principal_id.trim())
    {
        return Some(RemovalReason::PrincipalChanged {
            current_principal_id: current,
        });
    }
    (role != PullRole::for_mode(registry.mode)).then_some(RemovalReason::RoleNotHonoured)
}

fn principal_still_needed(
    cx: &DetachContext<'_>,
    assignment: &RoleAssignment,
    role: PullRole,
    registry_id: &ResourceId,
) -> bool {
    let Some((registry, Some(opt_in))) = cx.registries.get(registry_id) else {
        return false;
    };
    if role != PullRole::for_mode(registry.mode) {
        return false;
    }
    let principal = assignment.principal_id.trim();
    cx.clusters.values().any(|cluster| {
        if cluster_opted_out(cluster, &cx.settings.tag_name) || !opt_in.selects(cluster) {
            return false;
        }
        match current_principal(cluster, cx.observed) {
            Ok(p) => p.eq_ignore_ascii_case(principal),
            Err(
                PendingReason::ServicePrincipalUnresolved { .. }
                | PendingReason::ServicePrincipalNotLookedUp,
            ) => true,
            Err(_) => false,
        }
    })
}

/// The reference `plan`.
pub fn plan(observed: &Observed, settings: &PlanSettings) -> Plan {
    let mut seen_clusters = HashSet::new();
    let mut clusters: Vec<&Cluster> = observed
        .clusters
        .iter()
        .filter(|c| seen_clusters.insert(&c.id))
        .collect();
    clusters.sort_by(|a, b| a.id.cmp(&b.id));
    let mut seen_registries = HashSet::new();
    let mut registries: Vec<&Registry> = observed
        .registries
        .iter()
        .filter(|r| seen_registries.insert(&r.id))
        .collect();
    registries.sort_by(|a, b| a.id.cmp(&b.id));

    let mut seen_assignments = HashSet::new();
    let assignments: Vec<&RoleAssignment> = observed
        .assignments
        .iter()
        .filter(|a| seen_assignments.insert(a.id.to_ascii_lowercase()))
        .collect();
    let mut by_principal: HashMap<String, Vec<&RoleAssignment>> = HashMap::new();
    for a in &assignments {
        by_principal
            .entry(a.principal_id.trim().to_ascii_lowercase())
            .or_default()
            .push(a);
    }

    let mut out = Plan::default();
    let mut opt_ins: HashMap<&ResourceId, (&Registry, Option<OptIn>)> = HashMap::new();
    for registry in &registries {
        let opt_in = match registry_opt_in(&registry.tags, &settings.tag_name) {
            Ok(o) => o,
            Err(e) => {
                out.registry_results.push(RegistryResult {
                    registry_id: registry.id.clone(),
                    status: RegistryStatus::InvalidSelector,
                    reason: format!(
                        "tag `{}` value `{}`: {e}; it selects no cluster",
                        settings.tag_name,
                        registry.tags.get(&settings.tag_name).unwrap_or_default()
                    ),
                });
                opt_ins.insert(&registry.id, (registry, None));
                continue;
            }
        };
        for cluster in &clusters {
            if cluster_opted_out(cluster, &settings.tag_name) || !opt_in.selects(cluster) {
                continue;
            }
            out.items.push(pair_item(
                cluster,
                registry,
                observed,
                &by_principal,
                settings,
            ));
        }
        opt_ins.insert(&registry.id, (registry, Some(opt_in)));
    }

    if settings.detach && settings.mode == Mode::Enforce {
        let cx = DetachContext {
            clusters: clusters.iter().map(|c| (&c.id, *c)).collect(),
            registries: opt_ins,
            observed,
            settings,
        };
        for assignment in &assignments {
            let Some((owner, role, registry_id)) = provably_ours(assignment) else {
                continue;
            };
            let Some(reason) = removal_reason(&cx, assignment, role, &owner, &registry_id) else {
                continue;
            };
            if principal_still_needed(&cx, assignment, role, &registry_id) {
                continue;
            }
            out.items.push(PlanItem {
                cluster: owner,
                registry: registry_id,
                principal_id: Some(assignment.principal_id.clone()),
                role: Some(role),
                action: Action::Remove {
                    assignment: (*assignment).clone(),
                    reason,
                },
            });
        }
    }

    out.items.sort_by(|a, b| {
        (
            &a.registry,
            &a.cluster,
            order(&a.action),
            tie_break(&a.action),
        )
            .cmp(&(
                &b.registry,
                &b.cluster,
                order(&b.action),
                tie_break(&b.action),
            ))
    });
    out
}
