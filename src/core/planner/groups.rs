//! Group mode (issue 16 point 2, `docs/grant-modes.md` §5) and the coverage through groups of both modes. The
//! rules are in the planner's module doc ("Group mode"); this module decides one pair at a time
//! ([`Groups::decide`]) and then the plan's group-level actions and capacity ([`Groups::finish`]).

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::core::groups::GroupSettings;

mod members;

/// What planning knows about groups: built once per plan, and only when a membership, one of the tool's groups or
/// group mode is in play (the direct path without groups pays nothing).
pub(super) struct Groups<'a> {
    /// Group mode's settings; `None` in direct mode.
    pub(super) mode: Option<GroupSettings>,
    /// Per cluster (index order): the groups its principal is in (lower-cased, sorted); empty when unknown.
    of_cluster: Vec<Vec<&'a str>>,
    /// Per group (lower-cased object id): the assignments it holds.
    held_by_group: HashMap<String, Vec<&'a RoleAssignment>>,
    /// The tool's own group ids (lower-cased).
    own_ids: HashSet<String>,
    /// Registries whose selected pairs need the tool's group (group mode, enforce).
    needs_group: BTreeSet<ResourceId>,
    /// A member's fast-path assignment (by name) → why the pair is pending when capacity refuses it.
    fallbacks: HashMap<Uuid, PendingReason>,
    /// Direct assignments that go because their principal's membership has settled.
    settled: Vec<PlanItem>,
}

/// The tool's group for `registry` and `role` in `observed`, lower-cased.
fn own_group_key(observed: &Observed, registry: &ResourceId, role: PullRole) -> Option<String> {
    observed
        .own_group(registry, role)
        .map(|g| g.trim().to_ascii_lowercase())
        .filter(|g| !g.is_empty())
}

/// `a` is the pair's own direct assignment: the deterministic `name` and one of the two ownership marks.
pub(super) fn is_own_direct(a: &RoleAssignment, name: Uuid) -> bool {
    let mut text = Uuid::encode_buffer();
    a.name
        .trim()
        .eq_ignore_ascii_case(name.hyphenated().encode_lower(&mut text))
        && a.is_owned()
}

impl<'a> Groups<'a> {
    pub(super) fn new(
        ix: &Index<'a>,
        observed: &'a Observed,
        settings: &PlanSettings,
    ) -> Option<Self> {
        let mode = settings.grant.group();
        if mode.is_none() && observed.memberships.is_empty() && observed.own_groups.is_empty() {
            return None;
        }
        let groups_of = ix
            .principals
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|p| observed.memberships.groups_of(p).collect())
                    .unwrap_or_default()
            })
            .collect();
        let own_ids: HashSet<String> = observed
            .own_groups
            .values()
            .map(|g| g.trim().to_ascii_lowercase())
            .filter(|g| !g.is_empty())
            .collect();
        let mut known: HashSet<&str> = own_ids.iter().map(String::as_str).collect();
        for (_, groups) in observed.memberships.iter() {
            known.extend(groups);
        }
        let mut held_by_group: HashMap<String, Vec<&RoleAssignment>> = HashMap::new();
        for a in &ix.assignments {
            // What this project writes for a kubelet is never a group's: skip those without a look-up.
            if a.principal_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(PRINCIPAL_TYPE_SERVICE_PRINCIPAL))
            {
                continue;
            }
            let holder = a.principal_id.trim().to_ascii_lowercase();
            if known.contains(holder.as_str()) {
                held_by_group.entry(holder).or_default().push(a);
            }
        }
        Some(Self {
            mode,
            of_cluster: groups_of,
            held_by_group,
            own_ids,
            needs_group: BTreeSet::new(),
            fallbacks: HashMap::new(),
            settled: Vec::new(),
        })
    }

    /// The pull coverage of cluster `c`'s principal on `r` through a group it is in that is NOT the tool's
    /// (groups made by anyone count, as Azure RBAC counts them; the tool's own count only once settled, in
    /// group mode: [`Groups::decide`]).
    pub(super) fn group_cover<'s>(
        &'s self,
        c: usize,
        r: &'s RegistryIndex<'_>,
        observed: &'s Observed,
    ) -> impl Iterator<Item = (&'a RoleAssignment, Coverage)> + 's {
        self.of_cluster[c]
            .iter()
            .filter(|g| !self.own_ids.contains(**g))
            .flat_map(move |g| self.grants_of(g, r, observed))
    }

    /// The assignments `group` (lower-cased) holds that give pull on `r`, with how.
    fn grants_of<'s>(
        &'s self,
        group: &'s str,
        r: &'s RegistryIndex<'_>,
        observed: &'s Observed,
    ) -> impl Iterator<Item = (&'a RoleAssignment, Coverage)> + 's {
        self.held_by_group
            .get(group)
            .into_iter()
            .flatten()
            .filter_map(move |a| {
                pull_coverage(
                    a,
                    r.registry,
                    &observed.role_definitions,
                    r.management_groups,
                )
                .map(|how| {
                    let how = Coverage {
                        via_group: Some(group.to_owned()),
                        ..how
                    };
                    (*a, how)
                })
            })
    }

    /// The best pull grant the tool's group holds on `r`, if any.
    fn own_grant(
        &self,
        group: &str,
        r: &RegistryIndex<'_>,
        observed: &Observed,
    ) -> Option<(&'a RoleAssignment, Coverage)> {
        self.grants_of(group, r, observed)
            .min_by(|(a1, c1), (a2, c2)| {
                (c1.restricted_by_condition, c1.scope, c1.grant.rank())
                    .cmp(&(c2.restricted_by_condition, c2.scope, c2.grant.rank()))
                    .then_with(|| cmp_ignore_ascii_case(&a1.id, &a2.id))
            })
    }

    fn is_member(&self, c: usize, group: &str) -> bool {
        self.of_cluster[c].binary_search(&group).is_ok()
    }

    /// Group mode, one selected pair that nothing but the tool covers (neither a person's assignment nor a group
    /// not the tool's): the action, by the rules "Group mode" of the planner's module doc. `spec` is the pair's
    /// direct assignment (plain mark); `own_direct` what holds its deterministic name, if anything.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decide(
        &mut self,
        gs: GroupSettings,
        ix: &Index<'_>,
        c: usize,
        r: &RegistryIndex<'_>,
        spec: AssignmentSpec,
        own_direct: Option<&RoleAssignment>,
        observed: &Observed,
        settings: &PlanSettings,
    ) -> Action {
        let (cluster, registry) = (ix.clusters[c], r.registry);
        let principal = spec.principal_id.as_str();
        let group = own_group_key(observed, &registry.id, spec.role);
        let member = group.as_deref().is_some_and(|g| self.is_member(c, g));
        let ours = own_direct
            .filter(|a| a.is_owned() && a.principal_id.trim().eq_ignore_ascii_case(principal));
        // The durable mark first (it survives restarts); the process-held record otherwise (see the module doc).
        let marked = ours.and_then(RoleAssignment::member_since);
        let since = group
            .as_deref()
            .filter(|_| member)
            .and_then(|g| marked.or_else(|| observed.membership_since_of(principal, g)));
        let settled = since.is_some_and(|s| gs.is_settled(s, settings.now_unix));
        let grant = group
            .as_deref()
            .and_then(|g| self.own_grant(g, r, observed));
        let enforce = settings.mode == Mode::Enforce;
        if member
            && settled
            && let Some((assignment, how)) = grant
        {
            if enforce && let Some(ours) = ours {
                self.remove_settled(ours, r);
            }
            return Action::AlreadyCovered {
                assignment_id: assignment.id.clone(),
                how,
            };
        }
        if enforce {
            self.needs_group.insert(registry.id.clone());
        }
        let group_id = observed
            .own_group(&registry.id, spec.role)
            .map(|g| g.trim().to_owned());
        if let Some(existing) = own_direct {
            // Not a member, yet its direct assignment dates a membership: a stale mark (the principal left the
            // group while the assignment stayed). Rejoining would let that date settle the new membership at
            // once, so the pair stays on its direct assignment.
            if member || !enforce || marked.is_some() {
                return match pull_coverage(
                    existing,
                    registry,
                    &observed.role_definitions,
                    r.management_groups,
                ) {
                    Some(how) => Action::AlreadyCovered {
                        assignment_id: existing.id.clone(),
                        how,
                    },
                    None => Action::Exists {
                        assignment_id: existing.id.clone(),
                    },
                };
            }
            return Action::Join {
                group_id,
                meanwhile: Meanwhile::Covered {
                    assignment_id: existing.id.clone(),
                },
            };
        }
        if !cluster.is_ready() {
            let reason = PendingReason::ClusterNotReady {
                provisioning_state: cluster.provisioning_state.clone(),
            };
            return Action::Pending { reason };
        }
        let waiting = if settled {
            PendingReason::GroupAssignmentMissing {
                group_id: group_id.clone(),
            }
        } else {
            PendingReason::GroupMembershipSettling {
                settles_at: since.map(|s| gs.settles_at(s)),
            }
        };
        match (settings.mode, member) {
            (Mode::Audit, true) => Action::Pending { reason: waiting },
            (Mode::Audit, false) => Action::ReportMissing(spec),
            (Mode::Enforce, true) => {
                // A member without a direct assignment (its fast path failed, or capacity came back): the fast
                // path again, marked with the membership's start when known (an upper bound of it).
                let spec = match since {
                    Some(s) => spec.with_member_since(&cluster.id, s),
                    None => spec,
                };
                self.fallbacks.insert(spec.name, waiting);
                Action::Create(spec)
            }
            (Mode::Enforce, false) => Action::Join {
                group_id,
                meanwhile: Meanwhile::FastPath(spec),
            },
        }
    }

    /// The direct assignment `ours` goes: its principal's membership has settled. Only when it is provably
    /// ours (exact registry scope, a pull role, deterministic name, one of the two marks); once per assignment.
    fn remove_settled(&mut self, ours: &RoleAssignment, r: &RegistryIndex<'_>) {
        let Some((owner, role, registry)) = provably_ours(ours) else {
            return;
        };
        if registry != r.registry.id
            || self
                .settled
                .iter()
                .any(|i| matches!(&i.action, Action::Remove { assignment, .. } if assignment.id.eq_ignore_ascii_case(&ours.id)))
        {
            return;
        }
        self.settled.push(PlanItem {
            cluster: owner,
            registry,
            principal_id: Some(ours.principal_id.clone()),
            role: Some(role),
            action: Action::Remove {
                assignment: ours.clone(),
                reason: RemovalReason::SettledInGroup,
            },
        });
    }

    /// After the pair pass: the group actions (the group's assignment takes capacity first), the fast paths in
    /// plan order while capacity allows (the others become pending), the settled removals (into `removals`,
    /// none twice), the members that leave and the drained groups' assignments.
    pub(super) fn finish(
        &mut self,
        ix: &Index<'_>,
        observed: &Observed,
        settings: &PlanSettings,
        out: &mut Plan,
        removals: &mut Vec<PlanItem>,
    ) {
        if let Some(gs) = self.mode {
            let mut capacity = Capacity::new(gs, observed);
            self.group_actions(ix, observed, &mut capacity, &mut out.groups);
            self.fast_paths(&mut capacity, &mut out.items);
        }
        let taken: HashSet<String> = removals
            .iter()
            .filter_map(|i| match &i.action {
                Action::Remove { assignment, .. } => Some(assignment.id.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        removals.extend(self.settled.drain(..).filter(|i| match &i.action {
            Action::Remove { assignment, .. } => {
                !taken.contains(&assignment.id.to_ascii_lowercase())
            }
            _ => false,
        }));
        members::member_actions(self, ix, observed, settings, &out.items, &mut out.groups);
    }

    /// `EnsureGroup` / `AssignGroup` for every registry whose pairs need the group, capacity allowing.
    fn group_actions(
        &self,
        ix: &Index<'_>,
        observed: &Observed,
        capacity: &mut Capacity<'_>,
        groups: &mut Vec<GroupItem>,
    ) {
        for registry_id in &self.needs_group {
            let Some(r) = ix.registry_at.get(registry_id).map(|&i| &ix.registries[i]) else {
                continue;
            };
            let registry = &r.registry.id;
            let role = PullRole::for_mode(r.registry.mode);
            let sub = registry.subscription_id();
            let action = match observed.own_group(registry, role) {
                None => GroupAction::EnsureGroup {
                    assign: capacity.take_group(sub),
                },
                Some(group_id) => {
                    let key = group_id.trim().to_ascii_lowercase();
                    let spec = AssignmentSpec::for_group(registry, group_id, role);
                    // Never rewrite: a taken deterministic name is left as it is.
                    if self.own_grant(&key, r, observed).is_some()
                        || ix.named(spec.name).is_some()
                        || !capacity.take_group(sub)
                    {
                        continue;
                    }
                    GroupAction::AssignGroup {
                        group_id: group_id.trim().to_owned(),
                        spec,
                    }
                }
            };
            groups.push(GroupItem {
                registry: registry.clone(),
                role,
                action,
            });
        }
    }

    /// Every fast path of the plan, in plan order, while capacity allows; one write per assignment name.
    fn fast_paths(&self, capacity: &mut Capacity<'_>, items: &mut [PlanItem]) {
        for item in items {
            let sub = item.registry.subscription_id();
            match &mut item.action {
                Action::Create(spec) if !capacity.take_fast_path(sub, spec.name) => {
                    let reason = self
                        .fallbacks
                        .get(&spec.name)
                        .cloned()
                        .unwrap_or_else(|| capacity.reserved(sub));
                    item.action = Action::Pending { reason };
                }
                Action::Join { meanwhile, .. } => {
                    if let Meanwhile::FastPath(spec) = meanwhile
                        && !capacity.take_fast_path(sub, spec.name)
                    {
                        *meanwhile = Meanwhile::Pending {
                            reason: capacity.reserved(sub),
                        };
                    }
                }
                _ => {}
            }
        }
    }
}

/// Role assignments per registry subscription: observed usage plus the writes this plan schedules.
struct Capacity<'o> {
    gs: GroupSettings,
    usage: &'o HashMap<String, u32>,
    scheduled: HashMap<String, u32>,
    names: HashSet<Uuid>,
}

impl<'o> Capacity<'o> {
    fn new(gs: GroupSettings, observed: &'o Observed) -> Self {
        Self {
            gs,
            usage: &observed.subscription_usage,
            scheduled: HashMap::new(),
            names: HashSet::new(),
        }
    }

    /// In use in `sub` counting this plan's writes; `None` when the usage is unknown.
    fn used(&self, sub: &str) -> Option<u32> {
        let sub = sub.to_ascii_lowercase();
        let used = *self.usage.get(&sub)?;
        Some(used.saturating_add(self.scheduled.get(&sub).copied().unwrap_or(0)))
    }

    fn take(&mut self, sub: &str) {
        *self.scheduled.entry(sub.to_ascii_lowercase()).or_default() += 1;
    }

    /// The group's assignment: while `used + 1 <= limit`, or when the usage is unknown (one write per registry
    /// and role; Azure refuses it when full).
    fn take_group(&mut self, sub: &str) -> bool {
        let ok = self
            .used(sub)
            .is_none_or(|used| used.saturating_add(1) <= self.gs.limit);
        if ok {
            self.take(sub);
        }
        ok
    }

    /// A fast path: only with known usage and `used + 1 <= limit - headroom`. The same assignment (a principal
    /// shared by clusters) is one write.
    fn take_fast_path(&mut self, sub: &str, name: Uuid) -> bool {
        if self.names.contains(&name) {
            return true;
        }
        let ok = self.used(sub).is_some_and(|used| {
            used.saturating_add(1) <= self.gs.limit.saturating_sub(self.gs.headroom)
        });
        if ok {
            self.take(sub);
            self.names.insert(name);
        }
        ok
    }

    fn reserved(&self, sub: &str) -> PendingReason {
        PendingReason::CapacityReserved {
            subscription: sub.to_owned(),
            used: self.used(sub),
            limit: self.gs.limit,
            headroom: self.gs.headroom,
        }
    }
}

/// The order of a plan's group items: registry, role, kind, then group and principal.
pub(super) fn sort_group_items(items: &mut [GroupItem]) {
    items.sort_by(|a, b| {
        (&a.registry, a.role.definition_guid(), a.action.order())
            .cmp(&(&b.registry, b.role.definition_guid(), b.action.order()))
            .then_with(|| tie_break(&a.action).cmp(&tie_break(&b.action)))
    });
}

fn tie_break(action: &GroupAction) -> (&str, &str) {
    match action {
        GroupAction::EnsureGroup { .. } => ("", ""),
        GroupAction::AssignGroup { group_id, .. } => (group_id, ""),
        GroupAction::Leave {
            group_id,
            principal_id,
            ..
        } => (group_id, principal_id),
        GroupAction::RemoveAssignment {
            group_id,
            assignment,
            ..
        } => (group_id, &assignment.id),
    }
}
