//! Detach: when an owned assignment may be removed — provably ours (registry scope, a pull role, the
//! deterministic name, the exact mark) and no live selected cluster still using its principal.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What detach judges an owned assignment against.
pub(super) struct DetachContext<'a> {
    pub(super) clusters: HashMap<&'a ResourceId, &'a Cluster>,
    /// Observed registries with their opt-in (`None`: invalid selector).
    pub(super) registries: HashMap<&'a ResourceId, (&'a Registry, Option<OptIn>)>,
    pub(super) observed: &'a Observed,
    pub(super) settings: &'a PlanSettings,
}

/// Why an owned assignment should go, or `None` to keep it.
pub(super) fn removal_reason(
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
        // Absent means gone only where the inventory looked: a cluster in a subscription outside the scope
        // (e.g. after a scope change) is merely unseen.
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
    // The registry must be observed with a valid opt-in to judge selection.
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

/// The owner cluster, role and registry of an assignment this project provably made, or `None` (issue 10,
/// rule 3). All must hold: the description parses exactly as the ownership mark; the role is one of the two
/// pull roles; the scope is a registry's own exact id (never a resource group, a subscription or anything
/// nested); the name is the deterministic name for (registry, principal, role).
pub fn provably_ours(assignment: &RoleAssignment) -> Option<(ResourceId, PullRole, ResourceId)> {
    let owner = assignment.owner_cluster()?;
    let role = PullRole::from_definition_guid(&assignment.role_definition_guid)?;
    let registry = ResourceId::parse(&assignment.scope).ok()?;
    if !registry.is_exact(ArmKind::Registry) {
        return None;
    }
    let name = assignment_name(&registry, &assignment.principal_id, role);
    assignment
        .name
        .trim()
        .eq_ignore_ascii_case(&name.to_string())
        .then_some((owner, role, registry))
}

/// Shared principals (bring-your-own kubelet identity): whether a live cluster that the registry still selects
/// uses the assignment's principal, whatever cluster the description names. A selected service-principal
/// cluster whose object id is not known counts as using it (it cannot be proven otherwise). Only judged when
/// the role is the one the registry's mode honours (otherwise the assignment grants nothing to keep).
pub(super) fn principal_still_needed(
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
            Err(PendingReason::ClusterNotReady { .. }) => false,
        }
    })
}
