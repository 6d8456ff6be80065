//! Applying group mode's actions (`docs/grant-modes.md` §5): the tool's group and its assignment before any pair
//! (the group's assignment takes capacity before any fast path), then per pair the member add FIRST and the
//! fast-path direct assignment after it, marked with the time the add succeeded; last the removals from the
//! tool's groups and of a drained group's assignment.
//!
//! Capacity is held in the process ([`GroupCache::reserve`]): a fast-path PUT is sent only while the registry
//! subscription's count plus one stays within `limit - headroom`, the group's own PUT within `limit`, so
//! concurrent invocations of one process never overshoot together. A fast path refused here leaves the pair
//! `pending` (`CapacityReserved`) until its membership counts.

use super::groups::{GroupCache, now_unix};
#[allow(clippy::wildcard_imports)]
use super::*;
use crate::azure::MemberChange;
use crate::core::groups::{GroupSettings, GroupSpec};
use crate::core::model::{PullRole, SharedStr};
use crate::core::planner::{AssignmentSpec, GroupAction, GroupItem, Meanwhile, PendingReason};

/// What the pair items of a plan need from its group setup, and where they record what they did.
pub(super) struct JoinCtx<'a> {
    /// The tool's group per (registry, role), as found or made by this plan's setup (or planned with).
    pub ids: HashMap<(ResourceId, PullRole), String>,
    pub cache: &'a Mutex<GroupCache>,
    pub settings: Option<GroupSettings>,
    /// Pairs whose fast path was refused at apply for capacity: plan index → their pending reason.
    pub pending: Mutex<HashMap<usize, PendingReason>>,
    /// Fast-path names a fresh ARM list showed taken (a lagging inventory): name → the assignment's id.
    pub taken: HashMap<String, SharedStr>,
}

impl JoinCtx<'_> {
    fn cache(&self) -> std::sync::MutexGuard<'_, GroupCache> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What one group item did, for the report's notes and the logs.
fn note(item: &GroupItem, what: &str) -> String {
    format!(
        "group mode: {} {} ({}): {what}",
        item.action.as_str(),
        item.registry.name(),
        item.role.display_name()
    )
}

impl<C: AzureConnect> Engine<C> {
    /// `EnsureGroup` and `AssignGroup`, in plan order, before any pair: returns the group ids for the joins and
    /// notes on what was done or could not be.
    pub(super) async fn apply_group_setup(
        &self,
        azure: &C::Ops,
        plan: &Plan,
        notes: &mut Vec<String>,
    ) -> HashMap<(ResourceId, PullRole), String> {
        let mut ids = HashMap::new();
        let Some(settings) = self.grant_mode().group() else {
            return ids;
        };
        if !plan.groups.iter().any(|g| {
            matches!(
                g.action,
                GroupAction::EnsureGroup { .. } | GroupAction::AssignGroup { .. }
            )
        }) {
            return ids;
        }
        // Concurrent invocations of a burst planned the same group from the same snapshot: one makes it and
        // its assignment, the others find both in the cache (one group per process, not one per event).
        let _one_at_a_time = self.group_fill.lock().await;
        for item in &plan.groups {
            let key = (item.registry.clone(), item.role);
            let cached = self.group_cache().group_of(&item.registry, item.role);
            let spec = match (&item.action, cached) {
                (GroupAction::EnsureGroup { assign }, Some(id)) => {
                    ids.insert(key, id.clone());
                    let known = self.group_cache().group_assignment_known(&id);
                    (*assign && !known)
                        .then(|| AssignmentSpec::for_group(&item.registry, &id, item.role))
                }
                (GroupAction::EnsureGroup { assign }, None) => {
                    let group = GroupSpec::new(item.registry.clone(), item.role);
                    match azure.ensure_own_group(&group).await {
                        Ok(outcome) => {
                            let id = outcome.group().id.to_ascii_lowercase();
                            self.group_cache().set_group(&item.registry, item.role, &id);
                            ids.insert(key, id.clone());
                            let known = self.group_cache().group_assignment_known(&id);
                            (*assign && !known)
                                .then(|| AssignmentSpec::for_group(&item.registry, &id, item.role))
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, error.type = e.kind(), "group mode: the tool's group could not be found or made");
                            notes.push(note(item, &e.to_string()));
                            None
                        }
                    }
                }
                (GroupAction::AssignGroup { group_id, spec }, _) => {
                    ids.insert(key, group_id.to_ascii_lowercase());
                    let known = self.group_cache().group_assignment_known(group_id);
                    (!known).then(|| spec.clone())
                }
                (GroupAction::Leave { .. } | GroupAction::RemoveAssignment { .. }, _) => None,
            };
            if let Some(spec) = spec {
                let outcome = self.assign_group(azure, &spec, settings).await;
                notes.push(note(item, &outcome));
            }
        }
        ids
    }

    /// PUTs the group's assignment within the limit (not the headroom: it is what frees the headroom).
    async fn assign_group(
        &self,
        azure: &C::Ops,
        spec: &AssignmentSpec,
        settings: GroupSettings,
    ) -> String {
        let sub = spec.scope.subscription_id().to_owned();
        if let Err(used) = self.group_cache().reserve(&sub, settings.limit) {
            return format!(
                "not assigned: subscription {sub} uses {} of {} role assignments",
                used.map_or_else(|| "an unknown number".to_owned(), |u| u.to_string()),
                settings.limit
            );
        }
        match azure.put_role_assignment(spec).await {
            Ok(PutOutcome::Created(a)) => {
                let text = format!("assigned ({})", a.id);
                self.group_cache()
                    .set_group_assignment(&spec.principal_id, Some(a));
                text
            }
            Ok(PutOutcome::Unchanged(a)) => {
                self.group_cache().release(&sub);
                self.group_cache()
                    .set_group_assignment(&spec.principal_id, Some(a));
                "already assigned".to_owned()
            }
            Ok(PutOutcome::AlreadyExists) => {
                self.group_cache().release(&sub);
                "already assigned (RoleAssignmentExists)".to_owned()
            }
            Err(e) => {
                self.group_cache().release(&sub);
                tracing::warn!(error = %e, error.type = e.kind(), "group mode: the group's assignment failed");
                format!("not assigned: {e}")
            }
        }
    }

    /// `Leave` and `RemoveAssignment`, after the pairs: removals from the tool's groups and of a drained
    /// group's assignment, `max_concurrency` at a time. Returns a note per action, and the pair result of each
    /// leave attributed to a cluster (`detached`, or `failed`).
    pub(super) async fn apply_group_removals(
        &self,
        azure: &C::Ops,
        plan: &Plan,
    ) -> (Vec<String>, Vec<PairResult>) {
        let mut removals: Vec<&GroupItem> = Vec::new();
        for item in &plan.groups {
            if matches!(
                item.action,
                GroupAction::Leave { .. } | GroupAction::RemoveAssignment { .. }
            ) {
                removals.push(item);
            }
        }
        let (mut notes, mut pairs) = (Vec::new(), Vec::new());
        for chunk in removals.chunks(self.config.max_concurrency.max(1)) {
            let mut running = Vec::with_capacity(chunk.len());
            for item in chunk {
                running.push(self.remove_one(azure, item));
            }
            for (item, done) in chunk.iter().zip(futures::future::join_all(running).await) {
                if let Some((note, outcome)) = done {
                    notes.push(note);
                    pairs.extend(planner::group_result_for(item, &outcome));
                }
            }
        }
        (notes, pairs)
    }

    async fn remove_one(&self, azure: &C::Ops, item: &GroupItem) -> Option<(String, ApplyOutcome)> {
        let mut outcome = ApplyOutcome::Removed;
        let what = match &item.action {
            GroupAction::Leave {
                group_id,
                principal_id,
                reason,
                ..
            } => match azure.remove_group_member(group_id, principal_id).await {
                Ok(_) => {
                    self.group_cache().left(group_id, principal_id);
                    format!("{principal_id} removed ({})", reason.as_str())
                }
                Err(e) => {
                    outcome = ApplyOutcome::Failed(apply::pair_failure(&e));
                    format!("{principal_id} not removed: {e}")
                }
            },
            GroupAction::RemoveAssignment {
                group_id,
                assignment,
                reason,
            } => match azure.delete_role_assignment(&assignment.id).await {
                Ok(_) => {
                    let mut cache = self.group_cache();
                    cache.set_group_assignment(group_id, None);
                    cache.release(&crate::azure::http::subscription_of(&assignment.id));
                    format!("{} removed ({})", assignment.id, reason.as_str())
                }
                Err(e) => {
                    outcome = ApplyOutcome::Failed(apply::pair_failure(&e));
                    format!("{} not removed: {e}", assignment.id)
                }
            },
            GroupAction::EnsureGroup { .. } | GroupAction::AssignGroup { .. } => return None,
        };
        Some((note(item, &what), outcome))
    }
}

/// A pair's `Join`: the member add first, then (fast path) the direct assignment marked with the time the add
/// succeeded — plain-marked when the add failed, so no age is claimed. Returns the outcome and, when the fast
/// path was refused here for capacity, the pair's pending reason.
pub(super) async fn join_item<A: AzureOps>(
    azure: &A,
    item: &PlanItem,
    group_id: Option<&String>,
    meanwhile: &Meanwhile,
    ctx: &JoinCtx<'_>,
) -> (ApplyOutcome, Option<PendingReason>) {
    let principal = item.principal_id.clone().unwrap_or_default();
    let group = group_id.cloned().or_else(|| {
        item.role
            .and_then(|role| ctx.ids.get(&(item.registry.clone(), role)).cloned())
    });
    let added: Result<i64, PairFailure> = match &group {
        None => Err(PairFailure::transient(
            "group_missing",
            "the tool's group could not be found or made",
        )),
        Some(group) => match azure.add_group_member(group, &principal).await {
            Ok(change) => {
                let now = now_unix();
                let mut cache = ctx.cache();
                if change == MemberChange::Changed {
                    // A fresh membership starts now, whatever an older listing said.
                    cache.left(group, &principal);
                }
                Ok(cache.joined(group, &principal, now))
            }
            Err(e) => Err(apply::pair_failure(&e)),
        },
    };
    let Meanwhile::FastPath(spec) = meanwhile else {
        return match added {
            Ok(_) => (ApplyOutcome::Joined { fast_path: None }, None),
            Err(failure) => (ApplyOutcome::Failed(failure), None),
        };
    };
    if let Some(assignment_id) = ctx.taken.get(&spec.name.to_string()) {
        return match added {
            Ok(_) => (
                ApplyOutcome::NameTaken {
                    assignment_id: assignment_id.clone(),
                },
                None,
            ),
            Err(failure) => (ApplyOutcome::Failed(failure), None),
        };
    }
    let sub = item.registry.subscription_id().to_owned();
    if let Some(settings) = ctx.settings {
        let ceiling = settings.limit.saturating_sub(settings.headroom);
        if let Err(used) = ctx.cache().reserve(&sub, ceiling) {
            let reason = PendingReason::CapacityReserved {
                subscription: sub.to_ascii_lowercase(),
                used,
                limit: settings.limit,
                headroom: settings.headroom,
            };
            return match added {
                Ok(_) => (ApplyOutcome::Joined { fast_path: None }, Some(reason)),
                Err(failure) => (ApplyOutcome::Failed(failure), None),
            };
        }
    }
    let spec = match &added {
        Ok(since) => spec.with_member_since(&item.cluster, *since),
        Err(_) => spec.clone(),
    };
    let put = apply::write_create(azure, &spec, &item.registry).await;
    if !matches!(put, ApplyOutcome::Created { .. }) {
        ctx.cache().release(&sub);
    }
    match (put, added) {
        (ApplyOutcome::Created { assignment_id }, Ok(_)) => (
            ApplyOutcome::Joined {
                fast_path: Some(assignment_id),
            },
            None,
        ),
        (other, _) => (other, None),
    }
}
