//! Coverage: whether an assignment gives pull on a registry — its scope (the registry or an ancestor) and its
//! role (the built-in table, or a custom role's actions, for the registry's mode).

#[allow(clippy::wildcard_imports)]
use super::*;

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
    })
}

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
    let lower = scope.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("/providers/microsoft.management/managementgroups/") {
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
    if lower == registry.key() {
        Some(ScopeLevel::Registry)
    } else if lower == registry.subscription_scope().to_ascii_lowercase() {
        Some(ScopeLevel::Subscription)
    } else if registry
        .resource_group_scope()
        .is_some_and(|rg| rg.eq_ignore_ascii_case(&lower))
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
