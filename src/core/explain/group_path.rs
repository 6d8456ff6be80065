//! `explain`, the group path: for each group the principal is in (directly or nested) that holds an assignment
//! at the registry or above, the path principal → group (→ nested group …) → assignment, and whether it counts:
//! a group made by anyone counts as Azure RBAC counts it; the tool's own group only in group mode and once the
//! membership has settled (the planner's rules "Group mode").

use serde::Serialize;

use super::ScopedAssignment;
use crate::core::groups::GrantMode;
use crate::core::model::{PullRole, Registry, RoleAssignment};
use crate::core::planner::{self, Observed, PlanSettings};

/// One way the principal may hold pull through a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPath {
    /// Principal, then each group down to the one holding the assignment (lower-cased ids). Two entries when
    /// the nesting is not known (`transitiveMemberOf` lists nested groups without the chain).
    pub path: Vec<String>,
    /// The tool's own group for this registry and role.
    pub own: bool,
    /// When the membership began and settles (the tool's own group only).
    pub membership: Option<MembershipAge>,
    pub assignment: ScopedAssignment,
    /// Whether the planner counts this path as covering the pair now.
    pub counts: bool,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct MembershipAge {
    /// Unix seconds; `None` when unknown (not settled).
    pub since: Option<i64>,
    pub settles_at: Option<i64>,
    /// `member-since` mark of the pair's direct assignment, or the handler's own record.
    pub evidence: &'static str,
}

/// The group paths of `principal` to `registry` in `observed`.
pub(super) fn group_paths(
    observed: &Observed,
    settings: &PlanSettings,
    registry: &Registry,
    principal: &str,
) -> Vec<GroupPath> {
    let role = PullRole::for_mode(registry.mode);
    let own = observed
        .own_group(&registry.id, role)
        .map(|g| g.trim().to_ascii_lowercase());
    let mut out = Vec::new();
    for group in observed.memberships.groups_of(principal) {
        for a in observed
            .assignments
            .iter()
            .filter(|a| a.principal_id.trim().eq_ignore_ascii_case(group))
        {
            let Some(level) = planner::scope_level(&a.scope, &registry.id, &[]) else {
                continue;
            };
            let covers = planner::pull_coverage(a, registry, &observed.role_definitions, &[]);
            let is_own = own.as_deref() == Some(group);
            let membership = is_own.then(|| age(observed, settings, registry, principal, group));
            let (counts, note) = judge(settings, covers.is_some(), is_own, membership.as_ref());
            out.push(GroupPath {
                path: chain(observed, principal, group),
                own: is_own,
                membership,
                assignment: ScopedAssignment::of(a, level, observed, covers.map(|c| c.to_string())),
                counts,
                note,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.assignment.level, &a.assignment.id).cmp(&(b.assignment.level, &b.assignment.id))
    });
    out
}

/// Principal → … → `group`: each hop a group the previous one is in that is itself known to be in `group`
/// (at most 8); `[principal, group]` when no nesting is known.
fn chain(observed: &Observed, principal: &str, group: &str) -> Vec<String> {
    let mut path = vec![principal.trim().to_ascii_lowercase()];
    for _ in 0..8 {
        let current = path.last().cloned().unwrap_or_default();
        let next = observed.memberships.groups_of(&current).find(|g| {
            *g != group && !path.iter().any(|p| p == g) && observed.memberships.is_member(g, group)
        });
        match next {
            Some(g) => path.push(g.to_owned()),
            None => break,
        }
    }
    path.push(group.to_owned());
    path
}

/// When the principal's membership in the tool's group began, as the planner reads it.
fn age(
    observed: &Observed,
    settings: &PlanSettings,
    registry: &Registry,
    principal: &str,
    group: &str,
) -> MembershipAge {
    let name = crate::core::model::assignment_name(
        &registry.id,
        principal,
        PullRole::for_mode(registry.mode),
    )
    .to_string();
    let marked = observed
        .assignments
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(&name) && a.is_owned())
        .and_then(RoleAssignment::member_since);
    let (since, evidence) = match marked {
        Some(s) => (
            Some(s),
            "the member-since mark of the pair's direct assignment",
        ),
        None => (
            observed.membership_since_of(principal, group),
            "the handler's record of when it first saw the membership",
        ),
    };
    MembershipAge {
        since,
        settles_at: settings
            .grant
            .group()
            .zip(since)
            .map(|(gs, s)| gs.settles_at(s)),
        evidence,
    }
}

fn judge(
    settings: &PlanSettings,
    covers: bool,
    own: bool,
    membership: Option<&MembershipAge>,
) -> (bool, String) {
    if !covers {
        return (
            false,
            "the group's role does not grant pull here".to_owned(),
        );
    }
    if !own {
        return (
            true,
            "a group not made by this tool: Azure RBAC counts it".to_owned(),
        );
    }
    match (settings.grant, membership.and_then(|m| m.settles_at)) {
        (GrantMode::Direct, _) => (
            false,
            "the tool's own group does not count in direct mode (it is being drained)".to_owned(),
        ),
        (GrantMode::Group(_), Some(at)) if at <= settings.now_unix => (
            true,
            format!("the tool's group; the membership settled at unix time {at}"),
        ),
        (GrantMode::Group(_), Some(at)) => (
            false,
            format!("the tool's group; the membership counts for RBAC from unix time {at}"),
        ),
        (GrantMode::Group(_), None) => (
            false,
            "the tool's group; when the membership began is not known yet, so it does not count"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::many_single_char_names)]
mod tests {
    use super::*;
    use crate::core::explain::explain_pair;
    use crate::core::fixtures::{PRINCIPAL, cluster, observed, registry};
    use crate::core::groups::GroupSettings;
    use crate::core::model::RoleAssignmentMode;

    const TEAM: &str = "9999aaaa-0000-4000-8000-0000000000aa";
    const PLATFORM: &str = "9999aaaa-0000-4000-8000-0000000000bb";
    const OURS: &str = "9999aaaa-0000-4000-8000-0000000000cc";

    fn held_by(r: &Registry, group: &str) -> RoleAssignment {
        crate::core::fixtures::group_assignment(r, group)
    }

    #[test]
    fn explain_shows_the_path_through_nested_groups_and_when_the_tools_group_counts() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let c = cluster(&[]);
        let mut o = observed(c, r.clone(), vec![held_by(&r, PLATFORM), held_by(&r, OURS)]);
        // The principal is in TEAM, TEAM in PLATFORM (which holds AcrPull), and in the tool's group.
        o.memberships.insert(PRINCIPAL, [TEAM, PLATFORM, OURS]);
        o.memberships.insert(TEAM, [PLATFORM]);
        o.own_groups
            .insert((r.id.clone(), PullRole::AcrPull), OURS.into());
        o.set_membership_since(PRINCIPAL, OURS, 1_000);
        let mut s = crate::core::fixtures::settings(false);
        s.now_unix = 1_500;
        s.grant = GrantMode::Group(GroupSettings {
            settle_secs: 1_000,
            headroom: 0,
            limit: 4_000,
        });
        let e = explain_pair(&o, &s).unwrap();
        assert_eq!(e.grant_mode, "group");
        assert_eq!(e.group_paths.len(), 2, "{:#?}", e.group_paths);
        let platform = e.group_paths.iter().find(|g| !g.own).unwrap();
        assert_eq!(platform.path, [PRINCIPAL, TEAM, PLATFORM]);
        assert!(platform.counts && platform.assignment.covers_pull.is_some());
        let ours = e.group_paths.iter().find(|g| g.own).unwrap();
        assert_eq!(ours.path, [PRINCIPAL, OURS]);
        assert!(!ours.counts, "not settled: {}", ours.note);
        assert_eq!(ours.membership.as_ref().unwrap().settles_at, Some(2_000));
        // The verdict is the planner's: covered through the person's group.
        assert_eq!(e.verdict.status, "compliant");
        assert!(
            e.verdict.text.contains("through group"),
            "{}",
            e.verdict.text
        );

        // Settled: the tool's group counts too; in direct mode it never does.
        s.now_unix = 2_000;
        let e = explain_pair(&o, &s).unwrap();
        assert!(e.group_paths.iter().all(|g| g.counts));
        s.grant = GrantMode::Direct;
        let e = explain_pair(&o, &s).unwrap();
        assert!(!e.group_paths.iter().find(|g| g.own).unwrap().counts);
    }

    #[test]
    fn explain_notes_the_join_and_the_settled_removal() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let c = cluster(&[]);
        let mut s = crate::core::fixtures::settings(false);
        s.now_unix = 5_000;
        s.grant = GrantMode::Group(GroupSettings {
            settle_secs: 1_000,
            headroom: 0,
            limit: 4_000,
        });
        // A new pair: joins with the fast path, the group is made.
        let mut o = observed(c.clone(), r.clone(), vec![]);
        o.subscription_usage
            .insert(r.id.subscription_id().to_ascii_lowercase(), 0);
        let e = explain_pair(&o, &s).unwrap();
        assert_eq!(e.verdict.status, "missing");
        assert!(e.verdict.text.contains("fast path"), "{}", e.verdict.text);
        assert!(
            e.notes.iter().any(|n| n.contains("makes the tool's group")),
            "{:?}",
            e.notes
        );
        // Settled: covered through the tool's group, its direct assignment goes (a note, not the verdict).
        let own = crate::core::fixtures::assignment(
            r.id.as_str(),
            PullRole::AcrPull.definition_guid(),
            Some(&c),
        );
        let mut o = observed(c, r.clone(), vec![own, held_by(&r, OURS)]);
        o.memberships.insert(PRINCIPAL, [OURS]);
        o.own_groups
            .insert((r.id.clone(), PullRole::AcrPull), OURS.into());
        o.set_membership_since(PRINCIPAL, OURS, 1_000);
        let e = explain_pair(&o, &s).unwrap();
        assert_eq!(e.verdict.status, "compliant", "{}", e.verdict.text);
        assert!(
            e.notes
                .iter()
                .any(|n| n.contains("removes the direct assignment")),
            "{:?}",
            e.notes
        );
    }
}
