//! Results: what applying an item led to, as the pair's verification result.

#[allow(clippy::wildcard_imports)]
use super::*;

/// What the edge did with an item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Nothing was sent: the action needs no write (covered, audit, pending, refused) or was skipped.
    NotApplied,
    /// The PUT succeeded and the read-back found the assignment.
    Created { assignment_id: SharedStr },
    /// `409 RoleAssignmentExists`: the same principal, role and scope exist under another name.
    AlreadyExists,
    /// Nothing was sent: a fresh read just before the write found the deterministic name taken (the snapshot
    /// was stale); it is never PUT again (issue 10, rule 2).
    NameTaken { assignment_id: SharedStr },
    /// The DELETE succeeded (or the assignment was already gone).
    Removed,
    /// Group mode ([`Action::Join`]): the principal was added to the tool's group (or already was a member)
    /// and, for [`Meanwhile::FastPath`], the direct assignment was created too (`fast_path`: its id).
    Joined { fast_path: Option<SharedStr> },
    /// The write or its read-back failed.
    Failed(PairFailure),
}

/// The verification result of an item after apply. Latency is left for the caller (it owns the clock).
pub fn result_for(item: &PlanItem, outcome: &ApplyOutcome) -> PairResult {
    let (status, reason, assignment_id) = match (&item.action, outcome) {
        (_, ApplyOutcome::Failed(failure)) => (PairStatus::Failed, Some(failure.reason()), None),
        (Action::AlreadyCovered { assignment_id, how }, _) if how.restricted_by_condition => (
            PairStatus::Compliant,
            Some(format!(
                "covered by {how}: a person's decision, left as it is (see it with `az role assignment list --assignee {} --scope {} --query \"[].{{role:roleDefinitionName, condition:condition}}\"`)",
                item.principal_id.as_deref().unwrap_or("?"),
                item.registry
            )),
            Some(assignment_id.clone()),
        ),
        (Action::AlreadyCovered { assignment_id, how }, _) => (
            PairStatus::Compliant,
            Some(format!("covered by {how}")),
            Some(assignment_id.clone()),
        ),
        (Action::Exists { assignment_id }, _)
        | (Action::Create(_), ApplyOutcome::NameTaken { assignment_id }) => (
            PairStatus::Compliant,
            Some(format!(
                "the assignment {assignment_id} exists under the deterministic name; it is never rewritten (see it with `az role assignment list --assignee {} --scope {}`)",
                item.principal_id.as_deref().unwrap_or("?"),
                item.registry
            )),
            Some(assignment_id.clone()),
        ),
        (Action::Create(_), ApplyOutcome::Created { assignment_id }) => {
            (PairStatus::Repaired, None, Some(assignment_id.clone()))
        }
        (Action::Create(spec), ApplyOutcome::AlreadyExists) => (
            PairStatus::Compliant,
            Some(format!(
                "{} already assigned (RoleAssignmentExists)",
                spec.role
            )),
            None,
        ),
        (Action::Create(_), _) => (
            PairStatus::Failed,
            Some("the assignment was not created".to_owned()),
            None,
        ),
        (Action::ReportMissing(spec), _) => (
            PairStatus::Missing,
            Some(match spec.role {
                PullRole::AcrPull => {
                    "no pull-capable assignment; AcrPull needed (audit mode writes nothing)".to_owned()
                }
                // Say why an AcrPull someone holds (e.g. from `az aks update --attach-acr`) does not count.
                PullRole::RepositoryReader => "no pull-capable assignment: the registry is in ABAC mode, where AcrPull is not honoured; Container Registry Repository Reader needed (audit mode writes nothing)".to_owned(),
            }),
            None,
        ),
        (Action::Pending { reason }, _) => (PairStatus::Pending, Some(reason.to_string()), None),
        (Action::Refused { reason }, _) => (PairStatus::Failed, Some(reason.to_string()), None),
        (Action::Remove { assignment, reason }, ApplyOutcome::Removed) => (
            PairStatus::Detached,
            Some(reason.to_string()),
            Some(assignment.id.clone()),
        ),
        (Action::Remove { assignment, .. }, _) => (
            PairStatus::Failed,
            Some("the owned assignment was not removed".to_owned()),
            Some(assignment.id.clone()),
        ),
        (Action::Join { meanwhile, .. }, outcome) => join_result(meanwhile, outcome),
    };
    PairResult {
        cluster_id: item.cluster.clone(),
        registry_id: item.registry.clone(),
        principal_id: item.principal_id.clone(),
        role: item.role,
        status,
        reason,
        assignment_id,
        latency_seconds: None,
        failure: match outcome {
            ApplyOutcome::Failed(failure) => Some(failure.clone()),
            _ => None,
        },
    }
}

/// The status, reason and assignment of a [`Action::Join`] after apply (a failure is handled by the caller).
fn join_result(
    meanwhile: &Meanwhile,
    outcome: &ApplyOutcome,
) -> (PairStatus, Option<String>, Option<SharedStr>) {
    const JOINED: &str = "added to the tool's group";
    match (meanwhile, outcome) {
        // The member add failed but the plain-marked direct assignment went in: pull now, the join is retried.
        (
            Meanwhile::FastPath(_),
            ApplyOutcome::Created { assignment_id }
            | ApplyOutcome::Joined {
                fast_path: Some(assignment_id),
            },
        ) => (
            PairStatus::Repaired,
            Some(format!(
                "{JOINED}; direct assignment made meanwhile (fast path)"
            )),
            Some(assignment_id.clone()),
        ),
        (Meanwhile::FastPath(_), ApplyOutcome::NameTaken { assignment_id })
        | (Meanwhile::Covered { assignment_id }, _) => (
            PairStatus::Compliant,
            Some(format!(
                "the direct assignment {assignment_id} covers the pair until the group membership counts"
            )),
            Some(assignment_id.clone()),
        ),
        (Meanwhile::FastPath(spec), ApplyOutcome::AlreadyExists) => (
            PairStatus::Compliant,
            Some(format!(
                "{} already assigned (RoleAssignmentExists)",
                spec.role
            )),
            None,
        ),
        (Meanwhile::FastPath(_), _) => (
            PairStatus::Failed,
            Some("the fast-path assignment was not created".to_owned()),
            None,
        ),
        (Meanwhile::Pending { reason }, _) => (PairStatus::Pending, Some(reason.to_string()), None),
    }
}

/// The pair result of a group-level item that names a cluster (a [`GroupAction::Leave`] attributed to one), after
/// apply: `detached` once removed, `failed` otherwise; `None` for anything else (no pair to report).
pub fn group_result_for(item: &GroupItem, outcome: &ApplyOutcome) -> Option<PairResult> {
    let GroupAction::Leave {
        principal_id,
        cluster: Some(cluster),
        reason,
        ..
    } = &item.action
    else {
        return None;
    };
    let (status, reason) = match outcome {
        ApplyOutcome::Removed => (
            PairStatus::Detached,
            format!("left the tool's group: {reason}"),
        ),
        ApplyOutcome::Failed(failure) => (PairStatus::Failed, failure.reason()),
        _ => (
            PairStatus::Failed,
            "the membership in the tool's group was not removed".to_owned(),
        ),
    };
    Some(PairResult {
        cluster_id: cluster.clone(),
        registry_id: item.registry.clone(),
        principal_id: Some(SharedStr::from(principal_id.as_str())),
        role: Some(item.role),
        status,
        reason: Some(reason),
        assignment_id: None,
        latency_seconds: None,
        failure: match outcome {
            ApplyOutcome::Failed(failure) => Some(failure.clone()),
            _ => None,
        },
    })
}
