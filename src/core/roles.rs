//! The one table of Azure built-in roles this project knows by id, with what each means for pulling from a
//! registry in each `roleAssignmentMode` (see arm.md). Only [`PullRole`](crate::core::model::PullRole)'s two
//! roles are ever assigned; the rest are recognised, never written. A role not in this table is judged by
//! its definition's actions, read from Azure.

use crate::core::model::{ACR_PULL_GUID, REPOSITORY_READER_GUID, RoleAssignmentMode};

/// A built-in role and whether it includes pull on a registry in each mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuiltInRole {
    /// The role definition GUID, lower-case.
    pub guid: &'static str,
    pub name: &'static str,
    /// Includes `Microsoft.ContainerRegistry/registries/pull/read` (honoured in `LegacyRegistryPermissions`).
    pub pulls_legacy: bool,
    /// Includes `.../repositories/content/read` (honoured in `AbacRepositoryPermissions`).
    pub pulls_abac: bool,
}

impl BuiltInRole {
    /// Whether this role lets a principal pull from a registry in `mode`.
    pub fn pulls_in(&self, mode: RoleAssignmentMode) -> bool {
        match mode {
            RoleAssignmentMode::LegacyRegistryPermissions => self.pulls_legacy,
            RoleAssignmentMode::AbacRepositoryPermissions => self.pulls_abac,
        }
    }
}

const fn role(guid: &'static str, name: &'static str, legacy: bool, abac: bool) -> BuiltInRole {
    BuiltInRole {
        guid,
        name,
        pulls_legacy: legacy,
        pulls_abac: abac,
    }
}

/// Every built-in role whose meaning arm.md states. Owner, Contributor and Reader include pull in legacy mode
/// through their `*` / `*/read` actions; in ABAC mode only the repository data roles do.
pub const BUILT_IN_ROLES: [BuiltInRole; 10] = [
    role(ACR_PULL_GUID, "AcrPull", true, false),
    role(
        REPOSITORY_READER_GUID,
        "Container Registry Repository Reader",
        false,
        true,
    ),
    role(
        "8311e382-0749-4cb8-b61a-304f252e45ec",
        "AcrPush",
        true,
        false,
    ),
    role(
        "2a1e307c-b015-4ebd-883e-5b7698a07328",
        "Container Registry Repository Writer",
        false,
        true,
    ),
    role(
        "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
        "Container Registry Repository Contributor",
        false,
        true,
    ),
    role("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", true, false),
    role(
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        true,
        false,
    ),
    role(
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "Reader",
        true,
        false,
    ),
    role(
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator",
        false,
        false,
    ),
    role(
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
        false,
        false,
    ),
];

/// The built-in role with this definition GUID (any case), if the table knows it.
pub fn built_in(guid: &str) -> Option<&'static BuiltInRole> {
    BUILT_IN_ROLES
        .iter()
        .find(|r| r.guid.eq_ignore_ascii_case(guid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::PullRole;

    #[test]
    fn each_pull_role_pulls_only_in_its_own_mode() {
        for mode in [
            RoleAssignmentMode::LegacyRegistryPermissions,
            RoleAssignmentMode::AbacRepositoryPermissions,
        ] {
            let own = PullRole::for_mode(mode);
            let entry = built_in(own.definition_guid()).map(|r| r.pulls_in(mode));
            assert_eq!(entry, Some(true), "{own} in {mode:?}");
            let other = match own {
                PullRole::AcrPull => PullRole::RepositoryReader,
                PullRole::RepositoryReader => PullRole::AcrPull,
            };
            let entry = built_in(other.definition_guid()).map(|r| r.pulls_in(mode));
            assert_eq!(entry, Some(false), "{other} in {mode:?}");
        }
    }

    #[test]
    fn guids_are_unique_lower_case_and_names_match_the_pull_roles() {
        let mut seen = std::collections::HashSet::new();
        for r in &BUILT_IN_ROLES {
            assert!(seen.insert(r.guid), "duplicate {}", r.guid);
            assert_eq!(r.guid, r.guid.to_ascii_lowercase());
        }
        for role in [PullRole::AcrPull, PullRole::RepositoryReader] {
            assert_eq!(
                built_in(role.definition_guid()).map(|r| r.name),
                Some(role.display_name())
            );
        }
        assert!(built_in("ACDD72A7-3385-48EF-BD42-F606FBA81AE7").is_some());
        assert!(built_in("00000000-0000-0000-0000-000000000000").is_none());
    }
}
