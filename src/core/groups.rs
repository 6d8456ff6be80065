//! Group memberships as the core sees them: for each principal, the security groups it belongs to directly or
//! through nested groups, as Microsoft Graph's `transitiveMemberOf` lists them. Azure RBAC counts a role held by
//! any of those groups as the principal's own (`docs/grant-modes.md`), so verification does too — for groups made
//! by anyone, not only this project's. Data only.

use std::collections::{BTreeSet, HashMap};

/// Principal object id → the object ids of the groups it belongs to (direct or nested). Ids compare
/// case-insensitively (stored lower-cased). A principal that is absent was not looked up: only its direct
/// assignments count for it, which can at worst cause a redundant grant, never a missing one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupMemberships(HashMap<String, BTreeSet<String>>);

impl GroupMemberships {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the groups of `principal` as one look-up returned them (replacing an earlier look-up).
    pub fn insert<I, S>(&mut self, principal: &str, groups: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.0.insert(
            principal.to_ascii_lowercase(),
            groups
                .into_iter()
                .map(|g| g.as_ref().trim().to_ascii_lowercase())
                .filter(|g| !g.is_empty())
                .collect(),
        );
    }

    /// Whether the principal's groups were looked up.
    pub fn is_known(&self, principal: &str) -> bool {
        self.0.contains_key(&principal.to_ascii_lowercase())
    }

    /// Whether `principal` belongs to `group` (directly or nested), as far as known.
    pub fn is_member(&self, principal: &str, group: &str) -> bool {
        self.0
            .get(&principal.to_ascii_lowercase())
            .is_some_and(|groups| groups.contains(&group.to_ascii_lowercase()))
    }

    /// The groups of `principal` (lower-cased, sorted); empty when unknown.
    pub fn groups_of(&self, principal: &str) -> impl Iterator<Item = &str> {
        self.0
            .get(&principal.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_unknown_principals_have_no_groups() {
        let mut m = GroupMemberships::new();
        assert!(m.is_empty());
        m.insert("SP-1", ["Group-A", " group-b ", ""]);
        assert!(m.is_known("sp-1"));
        assert!(m.is_member("sp-1", "GROUP-A"));
        assert!(m.is_member("Sp-1", "group-b"));
        assert!(!m.is_member("sp-1", "group-c"));
        assert_eq!(
            m.groups_of("SP-1").collect::<Vec<_>>(),
            ["group-a", "group-b"]
        );
        assert!(!m.is_known("sp-2"));
        assert_eq!(m.groups_of("sp-2").count(), 0);
        m.insert("sp-1", Vec::<String>::new());
        assert!(m.is_known("sp-1"), "looked up, in no group");
        assert!(!m.is_member("sp-1", "group-a"));
    }
}
