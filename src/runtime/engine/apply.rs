//! Applying a plan's items: the write (PUT only to create, never over a name already taken), a pair's
//! failure kinds and the limit, and the reads that confirm what was written.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::core::planner::AssignmentSpec;

/// Where the role assignments a plan was made from were read, which decides the reads around its creates
/// (docs/security.md rule 2, docs/operations.md "What one event costs").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observation {
    /// Listed from ARM in this invocation, moments before the writes, covering every assignment that could
    /// bear a created name (the event path: the principal's assignments in each registry's subscription, or
    /// every assignment at the one registry). That list is the pre-create check, and each PUT's `201` answer,
    /// ARM's own record of the assignment it stored, checked field by field, is the verifying read.
    FreshArm,
    /// From an inventory that may lag (Resource Graph) or is minutes old (a verification run): every registry
    /// with a create is listed fresh from ARM just before, and read back after.
    Inventory,
}

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tracing::Instrument as _;

use super::group_apply::{JoinCtx, join_item};
use super::schedule::{Bucket, HORIZON, Next, WriteQueue};
use crate::azure::http::subscription_of;
use crate::azure::ratelimit::RequestClass;
use crate::core::planner::{Meanwhile, PendingReason};

/// The ARM bucket a write draws from: creates are writes in the registry's subscription, removals deletes
/// in the assignment's.
fn bucket_of(item: &PlanItem) -> Bucket {
    match &item.action {
        Action::Remove { assignment, .. } => {
            Bucket::new(&subscription_of(&assignment.id), RequestClass::Delete)
        }
        // A join without a fast path writes nothing to ARM: it draws from no ARM bucket.
        Action::Join {
            meanwhile: Meanwhile::Covered { .. } | Meanwhile::Pending { .. },
            ..
        } => Bucket::new(GRAPH_ONLY, RequestClass::Write),
        _ => Bucket::new(item.registry.subscription_id(), RequestClass::Write),
    }
}

/// The pseudo-bucket of writes that go to Microsoft Graph only (never a subscription id).
const GRAPH_ONLY: &str = "(microsoft graph)";

impl<C: AzureConnect> Engine<C> {
    /// Sends the plan's writes not yet `decided`, at most `max_concurrency` at once, interleaved across ARM's
    /// buckets: a slot goes to the write whose bucket has a token soonest ([`WriteQueue`]), so no slot waits
    /// on one subscription's bucket while another's could serve. Returns how many were skipped because the
    /// deadline's reserve came first.
    pub(super) async fn send_writes(
        &self,
        azure: &C::Ops,
        plan: &Plan,
        decided: &HashMap<usize, ApplyOutcome>,
        outcomes: &mut [ApplyOutcome],
        spans: &mut [Option<tracing::Span>],
        ctx: &JoinCtx<'_>,
    ) -> usize {
        let budget = azure.write_budget().await;
        let mut queue = WriteQueue::new(
            plan.items
                .iter()
                .enumerate()
                .filter(|(index, i)| i.action.needs_write() && !decided.contains_key(index))
                .map(|(index, item)| (index, bucket_of(item))),
        );
        let stop_at = azure
            .deadline()
            .checked_sub(REPORT_RESERVE)
            .unwrap_or_else(Instant::now);
        let mut skipped = 0usize;
        let mut pending = FuturesUnordered::new();
        loop {
            let mut wake = None;
            while pending.len() < self.config.max_concurrency {
                let now = Instant::now();
                if now >= stop_at {
                    for index in queue.take_where(|_| true) {
                        skipped += 1;
                        outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                            PairFailure::BUDGET_EXHAUSTED,
                            "not applied: the invocation's time budget was exhausted",
                        ));
                    }
                    break;
                }
                let until_stop = stop_at - now;
                let next = queue.next(HORIZON, |bucket, max_wait| match &budget {
                    Some(_) if bucket.subscription == GRAPH_ONLY => Ok(Duration::ZERO),
                    Some(b) => {
                        b.reserve(&bucket.subscription, bucket.class, max_wait.min(until_stop))
                    }
                    None => Ok(Duration::ZERO),
                });
                let (index, after) = match next {
                    Next::Send { index, after } => (index, after),
                    Next::WaitFor(wait) => {
                        wake = Some(now.checked_add(wait).unwrap_or(stop_at).min(stop_at));
                        break;
                    }
                    Next::Done => break,
                };
                let item = &plan.items[index];
                let metrics = &self.metrics;
                let span = pair_span(&item.cluster, &item.registry);
                spans[index] = Some(span.clone());
                pending.push(
                    async move {
                        if !after.is_zero() {
                            tokio::time::sleep(after).await;
                        }
                        (index, apply_item(azure, item, metrics, ctx).await)
                    }
                    .instrument(span),
                );
            }
            let done = match (pending.is_empty(), wake) {
                (true, None) => break,
                (true, Some(at)) => {
                    tokio::time::sleep_until(at).await;
                    continue;
                }
                (false, None) => pending.next().await,
                (false, Some(at)) => match tokio::time::timeout_at(at, pending.next()).await {
                    Ok(done) => done,
                    Err(_) => continue,
                },
            };
            if let Some((index, (outcome, pending))) = done {
                if let Some(reason) = pending {
                    ctx.pending
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(index, reason);
                }
                if let ApplyOutcome::Failed(failure) = &outcome
                    && failure.kind == LIMIT_REASON_PREFIX
                {
                    // Azure refused a create for the subscription's limit: none of its creates can succeed.
                    let full = Bucket::new(
                        plan.items[index].registry.subscription_id(),
                        RequestClass::Write,
                    );
                    for other in queue.take_where(|b| *b == full) {
                        outcomes[other] = ApplyOutcome::Failed(limit_failure(
                            plan.items[other].registry.subscription_id(),
                        ));
                    }
                }
                outcomes[index] = outcome;
            }
        }
        skipped
    }
}

pub(super) async fn apply_item<A: AzureOps>(
    azure: &A,
    item: &PlanItem,
    metrics: &Metrics,
    ctx: &JoinCtx<'_>,
) -> (ApplyOutcome, Option<PendingReason>) {
    let (outcome, pending) = match &item.action {
        Action::Join {
            group_id,
            meanwhile,
        } => join_item(azure, item, group_id.as_ref(), meanwhile, ctx).await,
        _ => (write_item(azure, item).await, None),
    };
    if let Some(role) = item.role {
        let label = match (&item.action, &outcome) {
            (_, ApplyOutcome::Failed { .. }) => Some(AssignmentOutcome::Failed),
            (_, ApplyOutcome::Created { .. } | ApplyOutcome::Joined { fast_path: Some(_) }) => {
                Some(AssignmentOutcome::Created)
            }
            (_, ApplyOutcome::AlreadyExists | ApplyOutcome::NameTaken { .. }) => {
                Some(AssignmentOutcome::Exists)
            }
            (_, ApplyOutcome::Removed) => Some(AssignmentOutcome::Removed),
            (_, ApplyOutcome::NotApplied | ApplyOutcome::Joined { fast_path: None }) => None,
        };
        if let Some(label) = label {
            metrics.record_assignment(label, role);
        }
    }
    (outcome, pending)
}

/// PUTs one assignment (only to create) and checks ARM's answer is the assignment asked for.
pub(super) async fn write_create<A: AzureOps>(
    azure: &A,
    spec: &AssignmentSpec,
    registry: &ResourceId,
) -> ApplyOutcome {
    match azure.put_role_assignment(spec).await {
        Ok(PutOutcome::Created(a) | PutOutcome::Unchanged(a)) => {
            if answer_shows(spec, &a) {
                ApplyOutcome::Created {
                    assignment_id: a.id,
                }
            } else {
                ApplyOutcome::Failed(PairFailure::transient(
                    PairFailure::NOT_VISIBLE,
                    format!(
                        "ARM answered the PUT with an assignment other than the one asked for ({})",
                        a.id
                    ),
                ))
            }
        }
        Ok(PutOutcome::AlreadyExists) => ApplyOutcome::AlreadyExists,
        Err(AzureError::RoleAssignmentLimitExceeded { .. }) => {
            ApplyOutcome::Failed(limit_failure(registry.subscription_id()))
        }
        Err(e) => ApplyOutcome::Failed(pair_failure(&e)),
    }
}

pub(super) async fn write_item<A: AzureOps>(azure: &A, item: &PlanItem) -> ApplyOutcome {
    match &item.action {
        Action::Create(spec) => write_create(azure, spec, &item.registry).await,
        Action::Remove { assignment, .. } => {
            match azure.delete_role_assignment(&assignment.id).await {
                Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => ApplyOutcome::Removed,
                Err(e) => ApplyOutcome::Failed(pair_failure(&e)),
            }
        }
        _ => ApplyOutcome::NotApplied,
    }
}

/// Whether ARM's answer to a PUT is the assignment asked for: its name, exact registry scope, role and principal,
/// and no condition.
pub(super) fn answer_shows(spec: &AssignmentSpec, answer: &RoleAssignment) -> bool {
    answer.name.eq_ignore_ascii_case(&spec.name.to_string())
        && answer
            .scope
            .trim_end_matches('/')
            .eq_ignore_ascii_case(spec.scope.as_str())
        && answer
            .role_definition_guid
            .eq_ignore_ascii_case(spec.role.definition_guid())
        && answer.principal_id.eq_ignore_ascii_case(&spec.principal_id)
        && answer.condition.is_none()
}

/// A failed write as the pair's typed failure: its kind (the metric label) and whether retrying can help.
/// A pair in a full subscription: names the limit and the subscription, and what helps. Not transient.
pub(super) fn limit_failure(subscription: &str) -> PairFailure {
    PairFailure::permanent(
        LIMIT_REASON_PREFIX,
        format!(
            "subscription {subscription} holds Azure's fixed maximum of {ROLE_ASSIGNMENT_LIMIT} role assignments; no assignment can be created there until some are removed or replaced by group assignments (https://aka.ms/rbac-limits)"
        ),
    )
}

/// Per subscription holding a registry in scope: the assignments the inventory counted against `limit` (the
/// deployment's `AUTOATTACH_ASSIGNMENT_LIMIT`, at most Azure's fixed 4,000), and whether Azure refused a PUT
/// there for the limit in this run.
pub fn capacity(
    registries: &[Registry],
    counted: &BTreeMap<String, u64>,
    pairs: &[PairResult],
    limit: u64,
) -> Vec<SubscriptionCapacity> {
    let exhausted: BTreeSet<String> = pairs
        .iter()
        .filter(|p| {
            p.failure
                .as_ref()
                .is_some_and(|f| f.kind == LIMIT_REASON_PREFIX)
        })
        .map(|p| p.registry_id.subscription_id().to_ascii_lowercase())
        .collect();
    registries
        .iter()
        .map(|r| r.id.subscription_id().to_ascii_lowercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|subscription| SubscriptionCapacity {
            assignments: counted.get(&subscription).copied().unwrap_or(0),
            limit,
            exhausted: exhausted.contains(&subscription),
            subscription,
        })
        .collect()
}

pub(super) fn pair_failure(e: &AzureError) -> PairFailure {
    PairFailure {
        kind: e.kind(),
        transient: e.is_transient(),
        detail: e.to_string(),
    }
}

/// The creates whose deterministic name is already taken at their registry, read fresh from ARM (one list per
/// registry with a create) just before writing: Resource Graph lags, and a PUT under an existing name would
/// rewrite it (e.g. drop a condition a person added). A create whose registry cannot be read is not sent.
pub(super) async fn names_taken<A: AzureOps>(
    azure: &A,
    plan: &Plan,
) -> HashMap<usize, ApplyOutcome> {
    if azure.deadline().saturating_duration_since(Instant::now()) < REPORT_RESERVE {
        // No write will be sent anyway (see `Engine::apply`).
        return HashMap::new();
    }
    let mut by_registry: HashMap<&ResourceId, Vec<(usize, String)>> = HashMap::new();
    for (index, item) in plan.items.iter().enumerate() {
        if let Action::Create(spec)
        | Action::Join {
            meanwhile: Meanwhile::FastPath(spec),
            ..
        } = &item.action
        {
            by_registry
                .entry(&item.registry)
                .or_default()
                .push((index, spec.name.to_string()));
        }
    }
    let lists = by_registry.iter().map(|(registry, creates)| async move {
        (
            creates,
            azure
                .list_role_assignments(registry.as_str(), &AssignmentFilter::AtScope)
                .await,
        )
    });
    let mut decided = HashMap::new();
    for (creates, listed) in futures::future::join_all(lists).await {
        match listed {
            Ok(found) => {
                for (index, name) in creates {
                    if let Some(a) = found.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
                        decided.insert(
                            *index,
                            ApplyOutcome::NameTaken {
                                assignment_id: a.id.clone(),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                for (index, _) in creates {
                    decided.insert(*index, ApplyOutcome::Failed(pair_failure(&e)));
                }
            }
        }
    }
    decided
}

/// Confirms every created assignment through a fresh ARM read: one list per registry written to (at scope),
/// so the read-back grows with the writes, never with the pairs observed.
pub(super) async fn read_back<A: AzureOps>(azure: &A, plan: &Plan, outcomes: &mut [ApplyOutcome]) {
    let mut by_registry: HashMap<&ResourceId, Vec<usize>> = HashMap::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if matches!(
            outcome,
            ApplyOutcome::Created { .. } | ApplyOutcome::Joined { fast_path: Some(_) }
        ) {
            by_registry
                .entry(&plan.items[index].registry)
                .or_default()
                .push(index);
        }
    }
    let lists = by_registry.iter().map(|(registry, indices)| async move {
        (
            indices,
            azure
                .list_role_assignments(registry.as_str(), &AssignmentFilter::AtScope)
                .await,
        )
    });
    for (indices, listed) in futures::future::join_all(lists).await {
        match listed {
            Ok(found) => {
                let ids: HashSet<String> =
                    found.iter().map(|a| a.id.to_ascii_lowercase()).collect();
                for &index in indices {
                    if let ApplyOutcome::Created { assignment_id }
                    | ApplyOutcome::Joined {
                        fast_path: Some(assignment_id),
                    } = &outcomes[index]
                        && !ids.contains(&assignment_id.to_ascii_lowercase())
                    {
                        outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                            PairFailure::NOT_VISIBLE,
                            "created, but not yet visible on read-back",
                        ));
                    }
                }
            }
            Err(e) => {
                for &index in indices {
                    outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                        e.kind(),
                        format!("read-back failed: {e}"),
                    ));
                }
            }
        }
    }
}
