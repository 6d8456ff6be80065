//! Microsoft Entra security groups as data: owners, members (with when each was added and removed), and the
//! question Azure RBAC asks — which groups does a principal belong to, directly or through nested groups, *as its
//! access token sees it*. A managed identity's token is cached by the platform (~24 h, see
//! `docs/grant-modes.md`), so a membership change counts for RBAC only once it is older than the configured delay,
//! and a removal likewise keeps counting until the delay has passed. Plain data plus small queries; the HTTP
//! semantics live in `server/graph_groups.rs`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// One membership edge: when it was (last) added and, once removed, when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Membership {
    pub added_at: Instant,
    pub removed_at: Option<Instant>,
}

impl Membership {
    /// Whether Graph lists it (it has not been removed).
    pub fn is_current(&self) -> bool {
        self.removed_at.is_none()
    }

    /// Whether RBAC counts it at `now` with the token-cache `delay`: added at least `delay` ago, and not removed
    /// more than `delay` ago.
    pub fn counts_for_rbac(&self, now: Instant, delay: Duration) -> bool {
        let settled = |t: Instant| now.saturating_duration_since(t) >= delay;
        settled(self.added_at) && self.removed_at.is_none_or(|r| !settled(r))
    }
}

/// A security group as stored.
#[derive(Clone, Debug)]
pub struct Group {
    /// Object id (lower case).
    pub id: String,
    pub display_name: String,
    pub description: Option<String>,
    pub mail_nickname: String,
    pub mail_enabled: bool,
    pub security_enabled: bool,
    pub created: OffsetDateTime,
    /// Owner object ids (lower case), in the order added.
    pub owners: Vec<String>,
    /// Member object id (lower case) → the edge. Removed edges stay (as tombstones) while they still count.
    pub members: BTreeMap<String, Membership>,
}

impl Group {
    /// Current members in a stable order (object id).
    pub fn current_members(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, m)| m.is_current())
            .map(|(id, _)| id.as_str())
            .collect()
    }

    pub fn is_member(&self, object_id: &str) -> bool {
        self.members
            .get(&object_id.to_ascii_lowercase())
            .is_some_and(Membership::is_current)
    }

    pub fn is_owner(&self, object_id: &str) -> bool {
        self.owners
            .iter()
            .any(|o| o.eq_ignore_ascii_case(object_id))
    }

    /// Adds `object_id`. Returns `false` when it already is a current member (Graph answers 400). A re-added
    /// member whose removal has not yet reached the token keeps its original settle time.
    pub fn add_member(&mut self, object_id: &str, now: Instant, delay: Duration) -> bool {
        let key = object_id.to_ascii_lowercase();
        match self.members.get_mut(&key) {
            Some(m) if m.is_current() => false,
            Some(m) => {
                let still_counted = m.counts_for_rbac(now, delay);
                if !still_counted {
                    m.added_at = now;
                }
                m.removed_at = None;
                true
            }
            None => {
                self.members.insert(
                    key,
                    Membership {
                        added_at: now,
                        removed_at: None,
                    },
                );
                true
            }
        }
    }

    /// Removes `object_id`. Returns `false` when it is not a current member (Graph answers 404).
    pub fn remove_member(&mut self, object_id: &str, now: Instant) -> bool {
        match self.members.get_mut(&object_id.to_ascii_lowercase()) {
            Some(m) if m.is_current() => {
                m.removed_at = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// The groups `object_id` belongs to, directly or through nested groups, following only edges `keep` accepts.
/// Breadth-first, each group once (cycles are possible in the directory and end here).
pub fn transitive_groups<'a>(
    groups: &'a BTreeMap<String, Group>,
    object_id: &str,
    keep: impl Fn(&Membership) -> bool,
) -> Vec<&'a Group> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::from([object_id.to_ascii_lowercase()]);
    while let Some(member) = queue.pop_front() {
        for group in groups.values() {
            if seen.contains(group.id.as_str()) {
                continue;
            }
            if group.members.get(&member).is_some_and(&keep) {
                seen.insert(group.id.as_str());
                out.push(group);
                queue.push_back(group.id.clone());
            }
        }
    }
    out
}

/// The current members of group `group_id`, directly or through nested groups (nested groups themselves
/// included, as Graph's `transitiveMembers` lists them), breadth-first, each object once; the group itself never.
pub fn transitive_members(groups: &BTreeMap<String, Group>, group_id: &str) -> Vec<String> {
    let root = group_id.to_ascii_lowercase();
    let mut seen: BTreeSet<String> = BTreeSet::from([root.clone()]);
    let mut out = Vec::new();
    let mut queue: VecDeque<String> = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        let Some(group) = groups.get(&id) else {
            continue;
        };
        for member in group.current_members() {
            if seen.insert(member.to_owned()) {
                out.push(member.to_owned());
                queue.push_back(member.to_owned());
            }
        }
    }
    out
}

/// The groups whose role assignments count for `object_id` in an RBAC check at `now`.
pub fn rbac_groups<'a>(
    groups: &'a BTreeMap<String, Group>,
    object_id: &str,
    now: Instant,
    delay: Duration,
) -> Vec<&'a Group> {
    transitive_groups(groups, object_id, |m| m.counts_for_rbac(now, delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(id: &str) -> Group {
        Group {
            id: id.to_owned(),
            display_name: id.to_owned(),
            description: None,
            mail_nickname: id.to_owned(),
            mail_enabled: false,
            security_enabled: true,
            created: OffsetDateTime::UNIX_EPOCH,
            owners: Vec::new(),
            members: BTreeMap::new(),
        }
    }

    #[test]
    fn membership_counts_after_the_delay_and_lingers_after_removal() {
        let t0 = Instant::now();
        let delay = Duration::from_secs(10);
        let mut g = group("g");
        assert!(g.add_member("SP", t0, delay));
        assert!(!g.add_member("sp", t0, delay), "already a member");
        let m = g.members["sp"];
        assert!(!m.counts_for_rbac(t0 + Duration::from_secs(9), delay));
        assert!(m.counts_for_rbac(t0 + delay, delay));
        let removed = t0 + Duration::from_secs(20);
        assert!(g.remove_member("sp", removed));
        assert!(!g.remove_member("sp", removed), "already gone");
        assert!(!g.is_member("sp"));
        let m = g.members["sp"];
        assert!(m.counts_for_rbac(removed + Duration::from_secs(9), delay));
        assert!(!m.counts_for_rbac(removed + delay, delay));
        // Without a delay a change counts at once, both ways.
        let mut h = group("h");
        h.add_member("sp", t0, Duration::ZERO);
        assert!(h.members["sp"].counts_for_rbac(t0, Duration::ZERO));
        h.remove_member("sp", t0);
        assert!(!h.members["sp"].counts_for_rbac(t0, Duration::ZERO));
    }

    #[test]
    fn nested_groups_are_followed_once_even_in_a_cycle() {
        let t0 = Instant::now();
        let mut groups = BTreeMap::new();
        let (mut a, mut b, mut c) = (group("a"), group("b"), group("c"));
        a.add_member("sp", t0, Duration::ZERO);
        b.add_member("a", t0, Duration::ZERO);
        c.add_member("b", t0, Duration::ZERO);
        a.add_member("c", t0, Duration::ZERO);
        for g in [a, b, c, group("d")] {
            groups.insert(g.id.clone(), g);
        }
        let ids: Vec<&str> = rbac_groups(&groups, "SP", t0, Duration::ZERO)
            .iter()
            .map(|g| g.id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // A young edge cuts the path for RBAC but not for Graph's transitive listing.
        let delay = Duration::from_secs(5);
        assert!(rbac_groups(&groups, "sp", t0, delay).is_empty());
        assert_eq!(
            transitive_groups(&groups, "sp", Membership::is_current).len(),
            3
        );
        // Members going down: c holds b, b holds a, a holds sp and (cycle) c, which is the root: left out.
        assert_eq!(transitive_members(&groups, "C"), ["b", "a", "sp"]);
        assert!(transitive_members(&groups, "d").is_empty());
        assert!(transitive_members(&groups, "nope").is_empty());
    }
}
