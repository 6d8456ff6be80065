//! Group mode in the engine (`docs/grant-modes.md` §5): what a run reads about the tool's groups into
//! [`Observed`], and what the process remembers between invocations ([`GroupCache`]).
//!
//! Reads, without a request per (cluster, registry) pair:
//! - the tool's group per (registry, pull role): found once per process by its mark and owner
//!   ([`AzureOps::find_own_group`]), then remembered (its id never changes; the group object is never deleted);
//! - the members of each of the tool's groups: one paged listing per group (999 per page) on every timer run,
//!   once per process on the event path, then kept current by the process's own adds and removals;
//! - group mode, timer: the transitive members of every other group holding a pull-capable assignment at or
//!   above a registry in scope (one paged listing per such group), so a pull held through anyone's group counts;
//! - the role assignments counted against the limit per registry subscription: from the timer's inventory, on
//!   the event path from the process's last count plus its own writes (one subscription listing when unknown).
//!
//! In direct mode nothing here runs on the event path, and the timer looks for the tool's groups only where a
//! group assignment carrying the tool's mark exists at a registry (a deployment switched back from group mode):
//! its members are drained, then its assignment removed.
//!
//! A missing Microsoft Graph permission never fails a run: the gap is reported and the run goes on with what ARM
//! shows (the fast path and direct assignments keep working).
//!
//! Age of a membership: Azure keeps none. The durable evidence is the `member-since` mark of a fast-path
//! assignment (read by the planner); the process-held evidence is the first time this process saw (or made) the
//! membership, kept here. A restart starts that clock again: later, never earlier.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::azure::DirectoryObject;
use crate::core::groups::{GrantMode, GroupMemberships, GroupSettings, GroupSpec};
use crate::core::model::PullRole;
use crate::runtime::config::GrantModeSetting;

/// What the process knows about the tool's groups between invocations.
#[derive(Debug, Default)]
pub struct GroupCache {
    /// (registry, role) → the tool's group id; `None`: looked up, none exists (group mode then plans its creation).
    groups: HashMap<(ResourceId, PullRole), Option<String>>,
    /// Group id → member principal (lower case) → when this process first saw or made the membership (unix s).
    /// Present only for groups whose member list was loaded.
    members: HashMap<String, HashMap<String, i64>>,
    /// Group id → its pull assignment at its registry when known (`None`: known to be absent).
    assignments: HashMap<String, Option<RoleAssignment>>,
    /// Lower-cased subscription id → role assignments counted against the limit, as last counted plus the
    /// process's own writes since.
    usage: HashMap<String, u32>,
}

impl GroupCache {
    /// Takes one assignment of capacity in `subscription` when `used + 1 <= ceiling` (the count known);
    /// concurrent invocations of one process never overshoot together.
    pub fn reserve(&mut self, subscription: &str, ceiling: u32) -> Result<u32, Option<u32>> {
        match self.usage.get_mut(&subscription.to_ascii_lowercase()) {
            Some(used) if used.saturating_add(1) <= ceiling => {
                *used += 1;
                Ok(*used)
            }
            Some(used) => Err(Some(*used)),
            None => Err(None),
        }
    }

    /// Gives back a reservation whose write did not create anything (or counts a removal).
    pub fn release(&mut self, subscription: &str) {
        if let Some(used) = self.usage.get_mut(&subscription.to_ascii_lowercase()) {
            *used = used.saturating_sub(1);
        }
    }

    /// Counts a create that was not reserved.
    pub fn count_create(&mut self, subscription: &str) {
        if let Some(used) = self.usage.get_mut(&subscription.to_ascii_lowercase()) {
            *used = used.saturating_add(1);
        }
    }

    /// Records that `principal` is a member of `group` (first seen `now` unless already known).
    pub fn joined(&mut self, group: &str, principal: &str, now: i64) -> i64 {
        *self
            .members
            .entry(group.to_ascii_lowercase())
            .or_default()
            .entry(principal.to_ascii_lowercase())
            .or_insert(now)
    }

    pub fn left(&mut self, group: &str, principal: &str) {
        if let Some(m) = self.members.get_mut(&group.to_ascii_lowercase()) {
            m.remove(&principal.to_ascii_lowercase());
        }
    }

    pub fn set_group(&mut self, registry: &ResourceId, role: PullRole, group: &str) {
        self.groups
            .insert((registry.clone(), role), Some(group.to_ascii_lowercase()));
    }

    pub fn set_group_assignment(&mut self, group: &str, assignment: Option<RoleAssignment>) {
        self.assignments
            .insert(group.to_ascii_lowercase(), assignment);
    }

    /// The tool's group for (registry, role), when known to exist.
    pub fn group_of(&self, registry: &ResourceId, role: PullRole) -> Option<String> {
        self.groups
            .get(&(registry.clone(), role))
            .cloned()
            .flatten()
    }

    /// Whether the group's assignment is known to exist.
    pub fn group_assignment_known(&self, group: &str) -> bool {
        matches!(
            self.assignments.get(&group.to_ascii_lowercase()),
            Some(Some(_))
        )
    }

    /// Replaces a group's member list by a fresh listing, keeping the first-seen time of those still there.
    fn listed(&mut self, group: &str, members: &[DirectoryObject], now: i64) {
        let old = self.members.remove(group).unwrap_or_default();
        let fresh = members
            .iter()
            .map(|m| {
                let id = m.id.to_ascii_lowercase();
                let since = old.get(&id).copied().unwrap_or(now);
                (id, since)
            })
            .collect();
        self.members.insert(group.to_owned(), fresh);
    }
}

/// The current time as the planner takes it.
pub fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// The (registry, role) of each registry: the role its mode honours.
fn wanted(registries: &[Registry]) -> Vec<(ResourceId, PullRole)> {
    registries
        .iter()
        .map(|r| (r.id.clone(), PullRole::for_mode(r.mode)))
        .collect()
}

/// The principals of the observed clusters (kubelet object ids, resolved service principals), lower case.
fn principals(observed: &Observed) -> BTreeSet<String> {
    observed
        .clusters
        .iter()
        .filter_map(|c| match &c.principal {
            ClusterPrincipal::Kubelet { object_id, .. } => Some(object_id.to_ascii_lowercase()),
            ClusterPrincipal::ServicePrincipal { .. } => observed
                .principals
                .get(&c.id)
                .and_then(|r| r.as_ref().ok())
                .map(|id| id.to_ascii_lowercase()),
            ClusterPrincipal::NotYetKnown => None,
        })
        .collect()
}

/// A Graph failure: a missing permission is a gap to report (`Ok(None)`), a transient error ends the run
/// (`Err`), anything else is a gap too.
fn gap<T>(
    result: Result<T, AzureError>,
    what: &str,
    gaps: &mut Vec<String>,
) -> Result<Option<T>, AzureError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_transient() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, error.type = e.kind(), "group mode: {what}");
            gaps.push(format!("group mode: {what}: {e}"));
            Ok(None)
        }
    }
}

impl<C: AzureConnect> Engine<C> {
    /// The planner's grant mode from `AUTOATTACH_GRANT_MODE` and the group settings.
    pub fn grant_mode(&self) -> GrantMode {
        let g = &self.config.grant;
        match g.mode {
            GrantModeSetting::Direct => GrantMode::Direct,
            GrantModeSetting::Group => GrantMode::Group(GroupSettings {
                settle_secs: g.settle_secs,
                headroom: g.headroom,
                limit: g.limit,
            }),
        }
    }

    pub(super) fn group_cache(&self) -> std::sync::MutexGuard<'_, GroupCache> {
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Group mode: counts the pair writes that were not reserved (plain creates, removals) in the cache.
    pub(super) fn count_pair_writes(&self, plan: &Plan, outcomes: &[ApplyOutcome]) {
        if self.config.grant.mode != GrantModeSetting::Group {
            return;
        }
        let mut cache = self.group_cache();
        for (item, outcome) in plan.items.iter().zip(outcomes) {
            match (&item.action, outcome) {
                (Action::Create(_), ApplyOutcome::Created { .. }) => {
                    cache.count_create(item.registry.subscription_id());
                }
                (Action::Remove { assignment, .. }, ApplyOutcome::Removed) => {
                    cache.release(&crate::azure::http::subscription_of(&assignment.id));
                }
                _ => {}
            }
        }
    }

    /// Looks up the tool's group for every (registry, role) in `wanted` this process has not looked up yet.
    async fn lookup_groups(
        &self,
        azure: &C::Ops,
        wanted: &[(ResourceId, PullRole)],
        gaps: &mut Vec<String>,
    ) -> Result<(), AzureError> {
        let unknown: Vec<&(ResourceId, PullRole)> = {
            let cache = self.group_cache();
            wanted
                .iter()
                .filter(|k| !cache.groups.contains_key(*k))
                .collect()
        };
        for key in unknown {
            let spec = GroupSpec::new(key.0.clone(), key.1);
            let what = format!("cannot look up the tool's group for {}", key.0.name());
            if let Some(found) = gap(azure.find_own_group(&spec).await, &what, gaps)? {
                self.group_cache()
                    .groups
                    .insert(key.clone(), found.map(|g| g.id.to_ascii_lowercase()));
            }
        }
        Ok(())
    }

    /// The known group ids of `wanted`.
    fn known_groups(
        &self,
        wanted: &[(ResourceId, PullRole)],
    ) -> Vec<(ResourceId, PullRole, String)> {
        let cache = self.group_cache();
        wanted
            .iter()
            .filter_map(|k| {
                cache
                    .groups
                    .get(k)
                    .cloned()
                    .flatten()
                    .map(|g| (k.0.clone(), k.1, g))
            })
            .collect()
    }

    /// Lists the members of `group` (every page) into the cache; `fresh`: even when already loaded.
    async fn load_members(
        &self,
        azure: &C::Ops,
        group: &str,
        fresh: bool,
        gaps: &mut Vec<String>,
    ) -> Result<bool, AzureError> {
        if !fresh && self.group_cache().members.contains_key(group) {
            return Ok(true);
        }
        let what = format!("cannot list the members of the tool's group {group}");
        match gap(azure.list_group_members(group).await, &what, gaps)? {
            Some(members) => {
                self.group_cache().listed(group, &members, now_unix());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Fills the group-mode fields of `observed` from the cache: the tool's groups, the memberships of the
    /// observed principals (in the tool's groups, plus `foreign`: other groups' transitive members), when each
    /// membership in a tool's group began, the usage per subscription; and adds the tool's groups' known
    /// assignments to `observed.assignments` (an event's lists are filtered by the cluster's principal).
    fn fill_observed(&self, observed: &mut Observed, foreign: &HashMap<String, BTreeSet<String>>) {
        let cache = self.group_cache();
        let keys = wanted(&observed.registries);
        for key in &keys {
            if let Some(Some(group)) = cache.groups.get(key) {
                observed.own_groups.insert(key.clone(), group.clone());
            }
        }
        let mut memberships = GroupMemberships::new();
        let own: Vec<String> = observed.own_groups.values().cloned().collect();
        // Every member of the tool's groups, not only observed clusters' principals: a deleted cluster's
        // kubelet is known only as a member, and the planner can make it leave only if it sees it.
        let mut everyone = principals(observed);
        for group in &own {
            if let Some(members) = cache.members.get(group) {
                everyone.extend(members.keys().map(|m| m.to_ascii_lowercase()));
            }
        }
        for principal in everyone {
            let mut groups: BTreeSet<String> = foreign.get(&principal).cloned().unwrap_or_default();
            for group in &own {
                if let Some(since) = cache.members.get(group).and_then(|m| m.get(&principal)) {
                    groups.insert(group.clone());
                    observed.set_membership_since(&principal, group, *since);
                }
            }
            memberships.insert(&principal, &groups);
        }
        observed.memberships = memberships;
        for group in observed.own_groups.values() {
            if let Some(Some(a)) = cache.assignments.get(group)
                && !observed
                    .assignments
                    .iter()
                    .any(|o| o.id.eq_ignore_ascii_case(&a.id))
            {
                observed.assignments.push(a.clone());
            }
        }
        observed.subscription_usage.clone_from(&cache.usage);
    }

    /// Group mode, event path: the tool's groups for the observed registries, their members (once per
    /// process), their own assignments and the usage of the registries' subscriptions (once per process,
    /// then kept by the process's writes). Transient errors end the invocation (Event Grid retries).
    pub(super) async fn observe_groups_event(
        &self,
        azure: &C::Ops,
        observed: &mut Observed,
        notes: &mut Vec<String>,
    ) -> Result<(), AzureError> {
        if self.config.grant.mode != GrantModeSetting::Group {
            return Ok(());
        }
        // One invocation fills what is missing while the others wait, so a burst fills it once.
        let filling = self.group_fill.lock().await;
        let keys = wanted(&observed.registries);
        self.lookup_groups(azure, &keys, notes).await?;
        for (registry, role, group) in self.known_groups(&keys) {
            self.load_members(azure, &group, false, notes).await?;
            let known = self.group_cache().assignments.contains_key(&group);
            if !known {
                let listed = azure
                    .list_role_assignments(
                        registry.as_str(),
                        &AssignmentFilter::Principal(group.clone()),
                    )
                    .await?;
                let own = listed.into_iter().find(|a| {
                    a.scope
                        .trim_end_matches('/')
                        .eq_ignore_ascii_case(registry.as_str())
                        && a.role_definition_guid
                            .eq_ignore_ascii_case(role.definition_guid())
                        && a.condition.is_none()
                });
                self.group_cache().set_group_assignment(&group, own);
            }
        }
        let subs: BTreeSet<String> = observed
            .registries
            .iter()
            .map(|r| r.id.subscription_id().to_ascii_lowercase())
            .collect();
        for sub in subs {
            if self.group_cache().usage.contains_key(&sub) {
                continue;
            }
            let scope = format!("/subscriptions/{sub}");
            let listed = azure
                .list_role_assignments(&scope, &AssignmentFilter::All)
                .await?;
            let prefix = format!("{scope}/");
            let used = listed
                .iter()
                .filter(|a| {
                    let s = a.scope.to_ascii_lowercase();
                    s == scope || s.starts_with(&prefix)
                })
                .count();
            self.group_cache()
                .usage
                .insert(sub, u32::try_from(used).unwrap_or(u32::MAX));
        }
        drop(filling);
        self.fill_observed(observed, &HashMap::new());
        Ok(())
    }

    /// Timer (both modes): the tool's groups and their members afresh, other groups' transitive members (group
    /// mode), the usage from the inventory's count. Returns the gaps to report.
    pub(super) async fn observe_groups_timer(
        &self,
        azure: &C::Ops,
        observed: &mut Observed,
        counted: &BTreeMap<String, u64>,
    ) -> Result<Vec<String>, AzureError> {
        let mut gaps = Vec::new();
        let group_mode = self.config.grant.mode == GrantModeSetting::Group;
        let keys: Vec<(ResourceId, PullRole)> = if group_mode {
            wanted(&observed.registries)
        } else {
            // Direct mode: only where the tool's group left an assignment (a switch back from group mode).
            wanted(&observed.registries)
                .into_iter()
                .filter(|(registry, role)| {
                    let spec = GroupSpec::new(registry.clone(), *role);
                    observed.assignments.iter().any(|a| {
                        a.principal_type.as_deref() == Some("Group")
                            && a.scope
                                .trim_end_matches('/')
                                .eq_ignore_ascii_case(registry.as_str())
                            && spec.is_marked(a.description.as_deref())
                    })
                })
                .collect()
        };
        if keys.is_empty() && !group_mode {
            return Ok(gaps);
        }
        self.lookup_groups(azure, &keys, &mut gaps).await?;
        let own = self.known_groups(&keys);
        for (_, _, group) in &own {
            self.load_members(azure, group, true, &mut gaps).await?;
        }
        let mut foreign: HashMap<String, BTreeSet<String>> = HashMap::new();
        if group_mode {
            let own_ids: BTreeSet<&str> = own.iter().map(|(_, _, g)| g.as_str()).collect();
            for group in pull_groups(observed, &own_ids) {
                let what = format!(
                    "cannot list the members of group {group} (it holds pull at a registry)"
                );
                if let Some(members) = gap(
                    azure.list_group_transitive_members(&group).await,
                    &what,
                    &mut gaps,
                )? {
                    for m in members {
                        foreign
                            .entry(m.id.to_ascii_lowercase())
                            .or_default()
                            .insert(group.clone());
                    }
                }
            }
            let mut cache = self.group_cache();
            for (sub, n) in counted {
                cache.usage.insert(
                    sub.to_ascii_lowercase(),
                    u32::try_from(*n).unwrap_or(u32::MAX),
                );
            }
        }
        {
            // The tool's groups' assignments as this inventory shows them.
            let mut cache = self.group_cache();
            for (registry, role, group) in &own {
                let found = observed.assignments.iter().find(|a| {
                    a.principal_id.eq_ignore_ascii_case(group)
                        && a.scope
                            .trim_end_matches('/')
                            .eq_ignore_ascii_case(registry.as_str())
                        && a.role_definition_guid
                            .eq_ignore_ascii_case(role.definition_guid())
                });
                cache.set_group_assignment(group, found.cloned());
            }
        }
        self.fill_observed(observed, &foreign);
        Ok(gaps)
    }
}

/// Groups other than the tool's holding an unconditioned pull-capable assignment at or above a registry in
/// `observed` (lower-cased ids, each once).
fn pull_groups(observed: &Observed, own: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for a in &observed.assignments {
        if a.principal_type.as_deref() != Some("Group") || a.condition.is_some() {
            continue;
        }
        let id = a.principal_id.to_ascii_lowercase();
        if own.contains(id.as_str()) || out.contains(&id) {
            continue;
        }
        let pulls = observed.registries.iter().any(|r| {
            r.id.is_within(&a.scope)
                && planner::role_grants_pull(
                    &a.role_definition_guid,
                    r.mode,
                    &observed.role_definitions,
                )
                .is_some()
        });
        if pulls {
            out.insert(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_never_pass_the_ceiling_and_unknown_usage_reserves_nothing() {
        let mut cache = GroupCache::default();
        assert_eq!(cache.reserve("S", 10), Err(None));
        cache.usage.insert("s".into(), 8);
        assert_eq!(cache.reserve("S", 10), Ok(9));
        assert_eq!(cache.reserve("s", 10), Ok(10));
        assert_eq!(cache.reserve("s", 10), Err(Some(10)));
        cache.release("S");
        assert_eq!(cache.reserve("s", 10), Ok(10));
    }

    #[test]
    fn a_fresh_listing_keeps_first_seen_times_and_drops_the_gone() {
        let mut cache = GroupCache::default();
        assert_eq!(cache.joined("G", "A", 100), 100);
        assert_eq!(cache.joined("g", "a", 200), 100, "first seen stays");
        let obj = |id: &str| DirectoryObject {
            id: id.into(),
            odata_type: None,
        };
        cache.listed("g", &[obj("A"), obj("b")], 300);
        assert_eq!(cache.members["g"]["a"], 100);
        assert_eq!(cache.members["g"]["b"], 300);
        cache.listed("g", &[obj("b")], 400);
        assert!(!cache.members["g"].contains_key("a"));
    }
}
