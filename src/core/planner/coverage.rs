//! Coverage: whether an assignment gives pull on a registry — its scope (the registry or an ancestor) and its
//! role (the built-in table, or a custom role's actions, for the registry's mode).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::core::groups::GroupMemberships;

/// Whether `assignment` gives pull access on `registry` to its principal (the caller matches the principal):
/// its scope is the registry or an ancestor (`management_groups`: the management groups above the registry's
/// subscription, names or ids) and its role includes pull for the registry's mode. An assignment with a
/// condition covers too, [restricted](Coverage::restricted_by_condition): the condition (e.g. pull from some
/// repositories only) is a person's decision, never overridden by adding a broader assignment beside it.
pub fn pull_coverage<S: BuildHasher>(
    assignment: &RoleAssignment,
    registry: &Registry,
    role_definitions: &HashMap<String, RoleDefinition, S>,
    management_groups: &[String],
) -> Option<Coverage> {
    let scope = scope_level(&assignment.scope, &registry.id, management_groups)?;
    let grant = role_grants_pull(
        &assignment.role_definition_guid,
        registry.mode,
        role_definitions,
    )?;
    Some(Coverage {
        grant,
        scope,
        restricted_by_condition: assignment
            .condition
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty()),
        via_group: None,
    })
}

/// Whether `assignment` gives `principal` pull access on `registry`: held by the principal itself, or by a group
/// the principal belongs to, directly or nested (as Azure RBAC counts it), whoever made the group; then as
/// [`pull_coverage`]. An assignment held by anyone else covers nothing for this principal.
pub fn principal_pull_coverage<S: BuildHasher>(
    principal: &str,
    assignment: &RoleAssignment,
    registry: &Registry,
    role_definitions: &HashMap<String, RoleDefinition, S>,
    management_groups: &[String],
    memberships: &GroupMemberships,
) -> Option<Coverage> {
    let holder = assignment.principal_id.trim();
    let via_group = if holder.eq_ignore_ascii_case(principal.trim()) {
        None
    } else if memberships.is_member(principal.trim(), holder) {
        Some(holder.to_ascii_lowercase())
    } else {
        return None;
    };
    pull_coverage(assignment, registry, role_definitions, management_groups)
        .map(|c| Coverage { via_group, ..c })
}

/// The prefix of a management group's scope (compared ignoring ASCII case).
const MANAGEMENT_GROUPS: &str = "/providers/microsoft.management/managementgroups/";

/// Where `scope` lies relative to `registry`, or `None` when it is not the registry or an ancestor.
pub fn scope_level(
    scope: &str,
    registry: &ResourceId,
    management_groups: &[String],
) -> Option<ScopeLevel> {
    // Only a literal `/` is the root: an empty scope is a missing field and must not read as "everything".
    if scope.trim() == "/" {
        return Some(ScopeLevel::Root);
    }
    let scope = scope.trim().trim_end_matches('/');
    if scope.is_empty() {
        return None;
    }
    if let Some(rest) = scope
        .get(..MANAGEMENT_GROUPS.len())
        .filter(|head| head.eq_ignore_ascii_case(MANAGEMENT_GROUPS))
        .map(|_| &scope[MANAGEMENT_GROUPS.len()..])
    {
        let name = rest.split('/').next().unwrap_or_default();
        let known = management_groups.iter().any(|mg| {
            mg.trim()
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        return (known && !name.is_empty() && !rest.contains('/'))
            .then_some(ScopeLevel::ManagementGroup);
    }
    if !registry.is_within(scope) {
        return None;
    }
    if scope.eq_ignore_ascii_case(registry.as_str()) {
        Some(ScopeLevel::Registry)
    } else if scope.eq_ignore_ascii_case(&registry.subscription_scope()) {
        Some(ScopeLevel::Subscription)
    } else if registry
        .resource_group_scope()
        .is_some_and(|rg| rg.eq_ignore_ascii_case(scope))
    {
        Some(ScopeLevel::ResourceGroup)
    } else {
        // Between the resource group and the registry there is no real scope (e.g. `.../providers`).
        None
    }
}

/// Whether a role (by definition GUID) includes pull on a registry in `mode`.
pub fn role_grants_pull<S: BuildHasher>(
    role_definition: &str,
    mode: RoleAssignmentMode,
    role_definitions: &HashMap<String, RoleDefinition, S>,
) -> Option<Grant> {
    let guid = role_guid(role_definition);
    let own_role = PullRole::for_mode(mode);
    if guid == own_role.definition_guid() {
        return Some(Grant::PullRole { role: own_role });
    }
    if let Some(built_in) = roles::built_in(&guid) {
        // A known built-in is judged by the table, never by a definition someone could shadow.
        return built_in.pulls_in(mode).then_some(Grant::BuiltIn {
            role_name: built_in.name,
        });
    }
    let definition = role_definitions.get(&guid)?;
    let grants = match mode {
        RoleAssignmentMode::LegacyRegistryPermissions => permits(
            &definition.actions,
            &definition.not_actions,
            LEGACY_PULL_ACTION,
        ),
        RoleAssignmentMode::AbacRepositoryPermissions => permits(
            &definition.data_actions,
            &definition.not_data_actions,
            ABAC_PULL_DATA_ACTION,
        ),
    };
    grants.then(|| Grant::ByActions {
        role_name: definition.role_name.clone(),
    })
}

/// Azure's permission check for one operation: some allowed pattern matches and no excluded pattern does.
pub fn permits(allowed: &[String], excluded: &[String], operation: &str) -> bool {
    allowed.iter().any(|p| action_matches(p, operation))
        && !excluded.iter().any(|p| action_matches(p, operation))
}

/// Case-insensitive match of an action pattern where `*` stands for any run of characters.
pub fn action_matches(pattern: &str, operation: &str) -> bool {
    let pattern: Vec<char> = pattern.trim().to_lowercase().chars().collect();
    let text: Vec<char> = operation.trim().to_lowercase().chars().collect();
    // Iterative glob match with back-tracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::fixtures::{PRINCIPAL, SUB, assignment, registry};
    use crate::core::model::RoleAssignmentMode;

    const GROUP: &str = "9999aaaa-0000-4000-8000-0000000000aa";
    const OUTER: &str = "9999aaaa-0000-4000-8000-0000000000bb";
    const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";

    fn held_by(mut a: RoleAssignment, holder: &str) -> RoleAssignment {
        a.principal_id = holder.into();
        a.principal_type = Some("Group".into());
        a
    }

    fn coverage(
        a: &RoleAssignment,
        mode: RoleAssignmentMode,
        memberships: &GroupMemberships,
    ) -> Option<Coverage> {
        let r = registry(Some("*"), mode);
        principal_pull_coverage(PRINCIPAL, a, &r, &HashMap::new(), &[], memberships)
    }

    #[test]
    fn a_pull_role_held_by_a_group_covers_its_members_direct_or_nested() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let at_registry = assignment(r.id.as_str(), ACR_PULL, None);
        let mut memberships = GroupMemberships::new();
        // As transitiveMemberOf lists them: the direct group and the one it is nested in.
        memberships.insert(&PRINCIPAL.to_ascii_uppercase(), [GROUP, OUTER]);
        for holder in [GROUP, &OUTER.to_ascii_uppercase()] {
            let how = coverage(
                &held_by(at_registry.clone(), holder),
                RoleAssignmentMode::LegacyRegistryPermissions,
                &memberships,
            )
            .expect("covered through the group");
            assert_eq!(
                how.via_group.as_deref(),
                Some(holder.to_ascii_lowercase().as_str())
            );
            assert_eq!(how.scope, ScopeLevel::Registry);
            assert!(how.to_string().contains("through group"), "{how}");
        }
        // The principal's own assignment covers without a group.
        let own = coverage(
            &at_registry,
            RoleAssignmentMode::LegacyRegistryPermissions,
            &memberships,
        )
        .unwrap();
        assert_eq!(own.via_group, None);
        assert!(!own.to_string().contains("group"));
        // An ancestor scope counts through a group as it does directly.
        let at_sub = held_by(
            assignment(&format!("/subscriptions/{SUB}"), ACR_PULL, None),
            GROUP,
        );
        assert_eq!(
            coverage(
                &at_sub,
                RoleAssignmentMode::LegacyRegistryPermissions,
                &memberships
            )
            .map(|c| c.scope),
            Some(ScopeLevel::Subscription)
        );
    }

    #[test]
    fn a_group_the_principal_is_not_in_or_a_wrong_role_covers_nothing() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let a = held_by(assignment(r.id.as_str(), ACR_PULL, None), GROUP);
        // Memberships not looked up: only direct assignments count.
        assert_eq!(
            coverage(
                &a,
                RoleAssignmentMode::LegacyRegistryPermissions,
                &GroupMemberships::new()
            ),
            None
        );
        let mut elsewhere = GroupMemberships::new();
        elsewhere.insert(PRINCIPAL, [OUTER]);
        assert_eq!(
            coverage(
                &a,
                RoleAssignmentMode::LegacyRegistryPermissions,
                &elsewhere
            ),
            None
        );
        // Another principal in the group does not make this one a member.
        let mut other = GroupMemberships::new();
        other.insert("0000aaaa-0000-4000-8000-000000000002", [GROUP]);
        assert_eq!(
            coverage(&a, RoleAssignmentMode::LegacyRegistryPermissions, &other),
            None
        );
        // AcrPull through a group is not pull on an ABAC registry, as it is not directly.
        let mut member = GroupMemberships::new();
        member.insert(PRINCIPAL, [GROUP]);
        assert_eq!(
            coverage(&a, RoleAssignmentMode::AbacRepositoryPermissions, &member),
            None
        );
        // A conditioned group assignment covers, restricted, as a direct one does.
        let mut conditioned = a.clone();
        conditioned.condition = Some("@Resource[...] StringLike 'team/*'".into());
        let how = coverage(
            &conditioned,
            RoleAssignmentMode::LegacyRegistryPermissions,
            &member,
        )
        .unwrap();
        assert!(how.restricted_by_condition);
        assert_eq!(how.via_group.as_deref(), Some(GROUP));
    }
}
