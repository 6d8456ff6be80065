//! The members of the tool's groups that leave, and the drained groups' assignments (rules "Group mode" of the
//! planner's module doc). Every member of a group the tool owns (mark and owner) is treated as one it added.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Per (registry, principal) of the plan's pair items: whether the pair is covered without the tool's groups
/// (direct mode never counts them), and whether every pair of the registry is.
struct PairCoverage {
    covered: HashSet<(usize, String)>,
    /// Per registry: every pair item is covered (or refused) and its principal's groups were looked up.
    settled_registries: HashMap<usize, bool>,
}

impl PairCoverage {
    fn new(ix: &Index<'_>, observed: &Observed, items: &[PlanItem]) -> Self {
        let mut covered = HashSet::new();
        let mut settled_registries: HashMap<usize, bool> = HashMap::new();
        for item in items {
            let Some(&r) = ix.registry_at.get(&item.registry) else {
                continue;
            };
            let ok = match (&item.action, item.principal_id.as_deref()) {
                (Action::AlreadyCovered { .. }, Some(p)) => {
                    covered.insert((r, p.trim().to_ascii_lowercase()));
                    observed.memberships.is_known(p.trim())
                }
                (Action::Refused { .. }, _) => true,
                _ => false,
            };
            let all = settled_registries.entry(r).or_insert(true);
            *all &= ok;
        }
        Self {
            covered,
            settled_registries,
        }
    }
}

/// Leaves and drained-group removals for every group of the tool whose registry was observed with a valid
/// opt-in (anything else is kept: it cannot be judged). Enforce mode only.
pub(super) fn member_actions(
    g: &Groups<'_>,
    ix: &Index<'_>,
    observed: &Observed,
    settings: &PlanSettings,
    items: &[PlanItem],
    out: &mut Vec<GroupItem>,
) {
    if settings.mode != Mode::Enforce || observed.own_groups.is_empty() {
        return;
    }
    let mut members: HashMap<&str, Vec<&str>> = HashMap::new();
    for (principal, groups) in observed.memberships.iter() {
        for group in groups {
            if g.own_ids.contains(group) {
                members.entry(group).or_default().push(principal);
            }
        }
    }
    let coverage = PairCoverage::new(ix, observed, items);
    for ((registry_id, role), group_id) in &observed.own_groups {
        let key = group_id.trim().to_ascii_lowercase();
        let Some(&ri) = ix.registry_at.get(registry_id) else {
            continue;
        };
        let r = &ix.registries[ri];
        if r.opt_in.is_err() || key.is_empty() {
            continue;
        }
        let item = |action| GroupItem {
            registry: r.registry.id.clone(),
            role: *role,
            action,
        };
        let list = members.get(key.as_str()).map_or(&[][..], Vec::as_slice);
        for principal in list {
            let Some((reason, cluster)) =
                leave_reason(g, ix, ri, *role, principal, settings, &coverage)
            else {
                continue;
            };
            out.push(item(GroupAction::Leave {
                group_id: group_id.trim().to_owned(),
                principal_id: (*principal).to_owned(),
                cluster,
                reason,
            }));
        }
        if g.mode.is_none()
            && list.is_empty()
            && settings.completeness == Completeness::Full
            && !observed.memberships.is_empty()
            && coverage.settled_registries.get(&ri).is_none_or(|all| *all)
        {
            for assignment in g.held_by_group.get(&key).into_iter().flatten() {
                if is_group_assignment(assignment, &r.registry.id, group_id, *role) {
                    out.push(item(GroupAction::RemoveAssignment {
                        group_id: group_id.trim().to_owned(),
                        assignment: (*assignment).clone(),
                        reason: RemovalReason::GroupDrained,
                    }));
                }
            }
        }
    }
}

/// The tool's group's own assignment, provably: exact registry scope, the group's pull role, the deterministic
/// name over (registry, group id, role) and exactly the group's mark.
fn is_group_assignment(
    a: &RoleAssignment,
    registry: &ResourceId,
    group_id: &str,
    role: PullRole,
) -> bool {
    detach::registry_scope(&a.scope).is_some_and(|scope| scope == *registry)
        && PullRole::from_definition_guid(&a.role_definition_guid) == Some(role)
        && a.principal_id.trim().eq_ignore_ascii_case(group_id.trim())
        && detach::named_deterministically(a, registry, role)
        && GroupSpec::new(registry.clone(), role).is_marked(a.description.as_deref())
}

/// Why `principal` (lower-cased) leaves the tool's group for registry `ri` and `role`, with the cluster it is
/// attributed to; `None` to keep it.
fn leave_reason(
    g: &Groups<'_>,
    ix: &Index<'_>,
    ri: usize,
    role: PullRole,
    principal: &str,
    settings: &PlanSettings,
    coverage: &PairCoverage,
) -> Option<(RemovalReason, Option<ResourceId>)> {
    let r = &ix.registries[ri];
    let honoured = role == PullRole::for_mode(r.registry.mode);
    let users = ix
        .clusters_by_principal
        .get(principal)
        .map_or(&[][..], Vec::as_slice);
    let selected = users
        .iter()
        .copied()
        .find(|&c| !ix.opted_out[c] && r.selects[c]);
    if honoured && (selected.is_some() || r.selects_unresolved) {
        // Still needed. Direct mode drains the group once the pair's direct assignment covers it, unless that
        // assignment carries a member-since mark: leaving would make the mark stale (a later switch back to
        // group mode would count the settle window from before the new membership).
        let drain = g.mode.is_none()
            && coverage.covered.contains(&(ri, principal.to_owned()))
            && !marked_member_since(ix, r, principal, role);
        return drain.then(|| {
            (
                RemovalReason::DirectMode,
                selected.map(|c| ix.clusters[c].id.clone()),
            )
        });
    }
    if !settings.detach {
        return None;
    }
    if let Some(&c) = users.first() {
        let reason = if !honoured {
            RemovalReason::RoleNotHonoured
        } else if ix.opted_out[c] {
            RemovalReason::ClusterOptedOut
        } else {
            RemovalReason::NoLongerSelected
        };
        return Some((reason, Some(ix.clusters[c].id.clone())));
    }
    if !honoured {
        return Some((RemovalReason::RoleNotHonoured, None));
    }
    // No cluster of the snapshot uses it: the cluster named by its direct assignment's mark, if one is left.
    let owner = ix
        .named(assignment_name(&r.registry.id, principal, role))
        .filter(|a| a.principal_id.trim().eq_ignore_ascii_case(principal))
        .and_then(RoleAssignment::owner_cluster);
    if let Some(owner) = &owner {
        if settings.deleted_clusters.contains(owner) {
            return Some((RemovalReason::ClusterDeleted, Some(owner.clone())));
        }
        if let Some(&c) = ix.cluster_at.get(owner) {
            return match &ix.principals[c] {
                Ok(current) => Some((
                    RemovalReason::PrincipalChanged {
                        current_principal_id: current.to_string(),
                    },
                    Some(owner.clone()),
                )),
                Err(_) => None,
            };
        }
    }
    (settings.completeness == Completeness::Full).then_some((RemovalReason::PrincipalUnused, owner))
}

/// The principal's deterministic direct assignment at the registry carries the group-mode mark.
fn marked_member_since(
    ix: &Index<'_>,
    r: &RegistryIndex<'_>,
    principal: &str,
    role: PullRole,
) -> bool {
    ix.named(assignment_name(&r.registry.id, principal, role))
        .is_some_and(|a| a.member_since().is_some())
}
