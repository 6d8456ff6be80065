//! Detach: when an owned assignment may be removed — provably ours (registry scope, a pull role, the
//! deterministic name, the exact mark) and no live selected cluster still using its principal.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Why an owned assignment should go, or `None` to keep it.
pub(super) fn removal_reason(
    ix: &Index<'_>,
    settings: &PlanSettings,
    assignment: &RoleAssignment,
    role: PullRole,
    owner: &ResourceId,
    registry_id: &ResourceId,
) -> Option<RemovalReason> {
    let Some(&c) = ix.cluster_at.get(owner) else {
        if settings.deleted_clusters.contains(owner) {
            return Some(RemovalReason::ClusterDeleted);
        }
        // Absent means gone only where the inventory looked: a cluster in a subscription outside the scope
        // (e.g. after a scope change) is merely unseen.
        let inventoried = ix
            .inventoried
            .contains(&owner.subscription_id().to_ascii_lowercase());
        return (settings.completeness == Completeness::Full && inventoried)
            .then_some(RemovalReason::ClusterAbsent);
    };
    // The registry must be observed with a valid opt-in to judge selection.
    let r = &ix.registries[*ix.registry_at.get(registry_id)?];
    if r.opt_in.is_err() {
        return None;
    }
    if ix.opted_out[c] {
        return Some(RemovalReason::ClusterOptedOut);
    }
    if !r.selects[c] {
        return Some(RemovalReason::NoLongerSelected);
    }
    if let Ok(current) = &ix.principals[c]
        && !current.eq_ignore_ascii_case(assignment.principal_id.trim())
    {
        return Some(RemovalReason::PrincipalChanged {
            current_principal_id: current.to_string(),
        });
    }
    (role != PullRole::for_mode(r.registry.mode)).then_some(RemovalReason::RoleNotHonoured)
}

/// The owner cluster, role and registry of an assignment this project provably made, or `None` (issue 10,
/// rule 3). All must hold: the description parses exactly as the ownership mark; the role is one of the two
/// pull roles; the scope is a registry's own exact id (never a resource group, a subscription or anything
/// nested); the name is the deterministic name for (registry, principal, role).
pub fn provably_ours(assignment: &RoleAssignment) -> Option<(ResourceId, PullRole, ResourceId)> {
    let owner = assignment.owner_cluster()?;
    let (role, registry) = pull_role_at_registry(assignment, registry_scope(&assignment.scope))?;
    named_deterministically(assignment, &registry, role).then_some((owner, role, registry))
}

/// The registry an assignment's scope is the exact id of, if any.
pub(super) fn registry_scope(scope: &str) -> Option<ResourceId> {
    ResourceId::parse(scope)
        .ok()
        .filter(|registry| registry.is_exact(ArmKind::Registry))
}

/// The assignment's pull role, with the registry its scope names ([`registry_scope`]), when it has both.
pub(super) fn pull_role_at_registry(
    assignment: &RoleAssignment,
    registry: Option<ResourceId>,
) -> Option<(PullRole, ResourceId)> {
    let role = PullRole::from_definition_guid(&assignment.role_definition_guid)?;
    Some((role, registry?))
}

/// The assignment carries the deterministic name for (registry, its principal, role). The costly part of
/// [`provably_ours`] (a SHA-1): planning asks it only of an assignment it would otherwise remove.
pub(super) fn named_deterministically(
    assignment: &RoleAssignment,
    registry: &ResourceId,
    role: PullRole,
) -> bool {
    let name = assignment_name(registry, &assignment.principal_id, role);
    let mut text = Uuid::encode_buffer();
    assignment
        .name
        .trim()
        .eq_ignore_ascii_case(name.hyphenated().encode_lower(&mut text))
}

/// Shared principals (bring-your-own kubelet identity): whether a live cluster that the registry still selects
/// uses the assignment's principal, whatever cluster the description names. A selected service-principal
/// cluster whose object id is not known counts as using it (it cannot be proven otherwise). Only judged when
/// the role is the one the registry's mode honours (otherwise the assignment grants nothing to keep).
pub(super) fn principal_still_needed(
    ix: &Index<'_>,
    assignment: &RoleAssignment,
    role: PullRole,
    registry_id: &ResourceId,
) -> bool {
    let Some(r) = ix.registry_at.get(registry_id).map(|&r| &ix.registries[r]) else {
        return false;
    };
    if r.opt_in.is_err() || role != PullRole::for_mode(r.registry.mode) {
        return false;
    }
    r.selects_unresolved
        || ix
            .clusters_by_principal
            .get(&assignment.principal_id.trim().to_ascii_lowercase())
            .is_some_and(|users| users.iter().any(|&c| !ix.opted_out[c] && r.selects[c]))
}
