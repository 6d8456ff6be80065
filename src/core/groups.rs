//! Group memberships as the core sees them: for each principal, the security groups it belongs to directly or
//! through nested groups, as Microsoft Graph's `transitiveMemberOf` lists them. Azure RBAC counts a role held by
//! any of those groups as the principal's own (`docs/grant-modes.md`), so verification does too — for groups made
//! by anyone, not only this project's. Also the naming and ownership mark of the tool's own groups. Data only.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use uuid::Uuid;

use super::model::{OWNERSHIP_MARK, PullRole, ResourceId};

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

    /// Every principal looked up (lower-cased) with its groups (lower-cased), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, impl Iterator<Item = &str>)> {
        self.0
            .iter()
            .map(|(p, groups)| (p.as_str(), groups.iter().map(String::as_str)))
    }
}

/// How pull is granted (`AUTOATTACH_GRANT_MODE`, `docs/grant-modes.md` §5): one direct assignment per pair
/// (today's behaviour, the default), or the tool's group per (registry, pull role) with a direct fast path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GrantMode {
    #[default]
    Direct,
    Group(GroupSettings),
}

impl GrantMode {
    /// The group settings, in group mode.
    pub fn group(self) -> Option<GroupSettings> {
        match self {
            Self::Direct => None,
            Self::Group(g) => Some(g),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group(_) => "group",
        }
    }
}

/// Default `AUTOATTACH_GROUP_SETTLE_HOURS`: about 24 h of managed-identity token cache plus a margin
/// (`docs/grant-modes.md` §4).
pub const DEFAULT_SETTLE_HOURS: u64 = 26;
/// Default `AUTOATTACH_ASSIGNMENT_HEADROOM`: assignments kept free per subscription for people's own.
pub const DEFAULT_HEADROOM: u32 = 200;
/// Default `AUTOATTACH_ASSIGNMENT_LIMIT`: Azure's fixed per-subscription limit.
pub const DEFAULT_ASSIGNMENT_LIMIT: u32 = 4_000;

/// The parameters of group mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GroupSettings {
    /// How long a new membership in the tool's group takes to count for RBAC, in seconds: after that the direct
    /// fast-path assignment goes.
    pub settle_secs: u64,
    /// Assignments kept free per registry subscription: the fast path stops at `limit - headroom`.
    pub headroom: u32,
    /// The per-subscription limit of role assignments (Azure's 4,000 unless set lower).
    pub limit: u32,
}

impl Default for GroupSettings {
    fn default() -> Self {
        Self {
            settle_secs: DEFAULT_SETTLE_HOURS * 3_600,
            headroom: DEFAULT_HEADROOM,
            limit: DEFAULT_ASSIGNMENT_LIMIT,
        }
    }
}

impl GroupSettings {
    /// The settle window from decimal hours (`AUTOATTACH_GROUP_SETTLE_HOURS`, fractions allowed: 0.001 h is
    /// 3.6 s), rounded up to whole seconds; `None` unless positive and finite (at most 100 years).
    pub fn settle_secs_from_hours(hours: f64) -> Option<u64> {
        const MAX_HOURS: f64 = 100.0 * 366.0 * 24.0;
        if !hours.is_finite() || hours <= 0.0 || hours > MAX_HOURS {
            return None;
        }
        // In range (checked above), positive and at most ~3.2e9: the cast cannot truncate or wrap.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(((hours * 3_600.0).ceil() as u64).max(1))
    }

    /// When a membership that began at `since` (unix seconds) counts for RBAC.
    pub fn settles_at(&self, since: i64) -> i64 {
        since.saturating_add(i64::try_from(self.settle_secs).unwrap_or(i64::MAX))
    }

    /// Whether a membership that began at `since` counts at `now` (`since + settle <= now`).
    pub fn is_settled(&self, since: i64, now: i64) -> bool {
        i64::try_from(self.settle_secs)
            .ok()
            .and_then(|settle| since.checked_add(settle))
            .is_some_and(|at| at <= now)
    }
}

/// The tool's own group for one (registry, pull role) in group mode: how it is named, marked and found
/// (`docs/grant-modes.md` §5). Display names are not unique in Entra ID, so a group is the tool's only when its
/// `description` is exactly [`GroupSpec::description`] **and** the handler's identity is among its owners; the
/// display name and `mailNickname` only narrow the search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    pub registry: ResourceId,
    pub role: PullRole,
}

/// Fixed namespace of the deterministic `mailNickname` (UUID v5). Never change it: groups already made depend on it.
pub const GROUP_NICKNAME_NAMESPACE: Uuid =
    Uuid::from_u128(0x2b7e_91c4_0d5a_4f63_8c1e_5a9f_d204_7b31);

impl GroupSpec {
    pub fn new(registry: ResourceId, role: PullRole) -> Self {
        Self { registry, role }
    }

    /// `acr-autoattach pull <registry name> (<role name>)`, what a person reads in the portal (≤ 256 characters:
    /// registry names have at most 50).
    pub fn display_name(&self) -> String {
        format!(
            "acr-autoattach pull {} ({})",
            self.registry.name(),
            self.role.display_name()
        )
    }

    /// `managed-by: acr-autoattach registry=<registry id> role=<role definition guid>`: the ownership mark of
    /// role assignments ([`OWNERSHIP_MARK`]) with what the group grants.
    pub fn description(&self) -> String {
        format!(
            "{OWNERSHIP_MARK} registry={} role={}",
            self.registry.as_str(),
            self.role.definition_guid()
        )
    }

    /// `acrautoattach-<32 hex>`: deterministic over the registry (case-insensitively) and role, 46 ASCII
    /// characters without any of the characters Graph refuses in a `mailNickname`. Not unique in Entra ID for
    /// security groups: a search key only.
    pub fn mail_nickname(&self) -> String {
        let input = format!("{}|{}", self.registry.key(), self.role.definition_guid());
        format!(
            "acrautoattach-{}",
            Uuid::new_v5(&GROUP_NICKNAME_NAMESPACE, input.as_bytes()).simple()
        )
    }

    /// Whether `description` marks a group made by this tool for this registry and role: exactly
    /// [`GroupSpec::description`], the registry id compared case-insensitively as ARM ids are.
    pub fn is_marked(&self, description: Option<&str>) -> bool {
        let Some(rest) = description
            .and_then(|d| d.strip_prefix(OWNERSHIP_MARK))
            .and_then(|d| d.strip_prefix(" registry="))
        else {
            return false;
        };
        let Some((registry, role)) = rest.split_once(" role=") else {
            return false;
        };
        !registry.chars().any(char::is_whitespace)
            && registry.eq_ignore_ascii_case(self.registry.as_str())
            && role == self.role.definition_guid()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
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

    #[test]
    fn settle_hours_parse_to_seconds_and_settling_is_inclusive() {
        assert_eq!(GroupSettings::settle_secs_from_hours(26.0), Some(93_600));
        assert_eq!(
            GroupSettings::settle_secs_from_hours(0.001),
            Some(4),
            "3.6 s, rounded up"
        );
        assert_eq!(GroupSettings::settle_secs_from_hours(1e-9), Some(1));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            assert_eq!(GroupSettings::settle_secs_from_hours(bad), None, "{bad}");
        }
        let g = GroupSettings::default();
        assert_eq!(
            (g.settle_secs, g.headroom, g.limit),
            (26 * 3_600, 200, 4_000)
        );
        assert!(g.is_settled(1_000, 1_000 + 93_600));
        assert!(!g.is_settled(1_000, 1_000 + 93_599));
        assert!(!g.is_settled(i64::MAX - 5, i64::MAX), "no overflow");
        assert_eq!(GrantMode::default(), GrantMode::Direct);
        assert_eq!(GrantMode::Group(g).group(), Some(g));
    }

    fn spec() -> GroupSpec {
        GroupSpec::new(
            ResourceId::parse(
                "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1",
            )
            .unwrap(),
            PullRole::AcrPull,
        )
    }

    #[test]
    fn the_group_is_named_for_people_and_marked_for_the_tool() {
        let g = spec();
        assert_eq!(g.display_name(), "acr-autoattach pull acr1 (AcrPull)");
        let d = g.description();
        assert!(d.starts_with(OWNERSHIP_MARK));
        assert!(g.is_marked(Some(&d)));
        let upper_registry = d.replace("/resourceGroups/rg/", "/RESOURCEGROUPS/RG/");
        assert!(
            g.is_marked(Some(&upper_registry)),
            "ARM ids compare case-insensitively"
        );
        assert!(!g.is_marked(None));
        assert!(!g.is_marked(Some("acr-autoattach pull acr1 (AcrPull)")));
        assert!(
            !g.is_marked(Some(&format!("{d} extra"))),
            "text after the mark"
        );
        assert!(!g.is_marked(Some(&format!(" {d}"))), "text before the mark");
        let other_role = GroupSpec::new(g.registry.clone(), PullRole::RepositoryReader);
        assert!(!other_role.is_marked(Some(&d)));
        let other_registry = GroupSpec::new(
            ResourceId::parse(
                "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr12",
            )
            .unwrap(),
            PullRole::AcrPull,
        );
        assert!(
            !other_registry.is_marked(Some(&d)),
            "a registry id that only starts the same"
        );
    }

    #[test]
    fn the_mail_nickname_is_deterministic_and_valid() {
        let g = spec();
        let nick = g.mail_nickname();
        assert_eq!(nick, spec().mail_nickname());
        assert!(nick.len() <= 64);
        assert!(nick.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let upper = GroupSpec::new(
            ResourceId::parse(
                &g.registry
                    .as_str()
                    .to_ascii_uppercase()
                    .replace("/SUBSCRIPTIONS/", "/subscriptions/"),
            )
            .unwrap(),
            PullRole::AcrPull,
        );
        assert_eq!(
            upper.mail_nickname(),
            nick,
            "registry ids compare case-insensitively"
        );
        assert_ne!(
            GroupSpec::new(g.registry.clone(), PullRole::RepositoryReader).mail_nickname(),
            nick
        );
    }
}
