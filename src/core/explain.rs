//! `explain` (pure): one (cluster, registry) pair walked through step by step — selection, tenants, role,
//! principal, the assignments that cover it — with the verdict taken from the planner itself.

use std::collections::HashMap;

use serde::Serialize;

use crate::core::model::{
    ClusterPrincipal, PullRole, ResourceId, RoleAssignment, RoleAssignmentMode, RoleDefinition,
    SERVICE_PRINCIPAL_NOT_LOOKED_UP,
};
use crate::core::planner::{
    self, Action, GroupAction, Meanwhile, Observed, Plan, PlanSettings, RemovalReason, ScopeLevel,
};
use crate::core::selector::{OptIn, RequirementOutcome, cluster_opted_out, parse_opt_in};

mod group_path;
pub use group_path::{GroupPath, MembershipAge};

/// The answer of `explain`: every step, as data (printed by [`render_explanation`], or as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub cluster: ClusterFacts,
    pub registry: RegistryFacts,
    pub selection: Selection,
    /// The cluster carries the opt-in tag with `off`/`false`.
    pub cluster_opted_out: bool,
    /// The registry selects the cluster (and the cluster did not opt out).
    pub selected: bool,
    pub tenants: Tenants,
    /// The role this registry's mode requires, and why.
    pub role: PullRole,
    pub role_reason: String,
    /// The principal that must hold pull, or why it is unknown.
    pub principal_id: Option<String>,
    pub principal_note: Option<String>,
    /// Assignments of the principal at the registry or an ancestor, from the registry outwards.
    pub assignments: Vec<ScopedAssignment>,
    /// Assignments of the principal elsewhere (other registries, other resources).
    pub assignments_elsewhere: usize,
    /// `direct` or `group` ([`crate::core::groups::GrantMode`]).
    pub grant_mode: &'static str,
    /// Pull through groups the principal is in (directly or nested): principal → group (→ …) → assignment.
    pub group_paths: Vec<GroupPath>,
    pub verdict: Verdict,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterFacts {
    pub id: ResourceId,
    pub subscription: String,
    pub resource_group: Option<String>,
    pub location: String,
    pub tags: Vec<(String, String)>,
    pub provisioning_state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistryFacts {
    pub id: ResourceId,
    pub role_assignment_mode: String,
    pub tag_name: String,
    /// The opt-in tag's value (`None`: absent).
    pub tag_value: Option<String>,
}

/// How the registry's tag value reads.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// No opt-in tag, or `off`/`false`: the registry selects no cluster.
    NotOptedIn,
    /// `*`: every cluster.
    All,
    /// A selector, requirement by requirement.
    Selector {
        canonical: String,
        steps: Vec<RequirementOutcome>,
    },
    /// The value does not parse: the registry selects nothing and nothing is granted or removed on it.
    Invalid { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenants {
    pub cluster: Option<String>,
    pub registry: Option<String>,
    pub handler: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopedAssignment {
    pub level: ScopeLevel,
    pub scope: String,
    pub id: String,
    pub role: String,
    pub principal_id: String,
    pub owned: bool,
    /// How it covers pull on this registry (`None`: it does not).
    pub covers_pull: Option<String>,
}

impl ScopedAssignment {
    /// `a` as listed at `level`, with how it covers pull here (`None`: it does not).
    fn of(
        a: &RoleAssignment,
        level: ScopeLevel,
        observed: &Observed,
        covers_pull: Option<String>,
    ) -> Self {
        Self {
            level,
            scope: a.scope.to_string(),
            id: a.id.to_string(),
            role: role_label(a, &observed.role_definitions),
            principal_id: a.principal_id.to_string(),
            owned: a.is_owned(),
            covers_pull,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `compliant`, `missing`, `pending`, `refused`, `not_selected`, `remove`, `invalid_selector`.
    pub status: &'static str,
    pub text: String,
    /// Nothing to do and nothing wrong.
    pub in_order: bool,
}

/// Explains the only (cluster, registry) pair of `observed`, using the planner itself for the verdict (so the
/// explanation cannot disagree with what reconcile does). `None` when `observed` lacks the cluster or registry.
pub fn explain_pair(observed: &Observed, settings: &PlanSettings) -> Option<Explanation> {
    let cluster = observed.clusters.first()?;
    let registry = observed.registries.first()?;
    let tag_value = registry.tags.get(&settings.tag_name).map(str::to_owned);
    let parsed = tag_value.as_deref().map(parse_opt_in);
    let selection = selection_of(parsed.as_ref(), cluster);
    let opted_out = cluster_opted_out(cluster, &settings.tag_name);
    let selects = matches!(&parsed, Some(Ok(o)) if o.selects(cluster));
    let mode_name = mode_name(registry.mode);
    let tenant = |own: Option<&String>, id: &ResourceId| {
        own.cloned().or_else(|| {
            observed
                .subscription_tenants
                .get(&id.subscription_id().to_ascii_lowercase())
                .cloned()
        })
    };
    let (principal_id, principal_note) = principal_of(cluster, observed);
    let (assignments, elsewhere) = assignments_of(observed, registry, principal_id.as_deref());
    let plan = planner::plan(observed, settings);
    let verdict = verdict(&plan, selects && !opted_out, parsed.as_ref());
    let group_paths = principal_id.as_deref().map_or_else(Vec::new, |p| {
        group_path::group_paths(observed, settings, registry, p)
    });
    let notes = group_notes(&plan, principal_id.as_deref());
    Some(Explanation {
        cluster: ClusterFacts {
            id: cluster.id.clone(),
            subscription: cluster.id.subscription_id().to_owned(),
            resource_group: cluster.id.resource_group().map(str::to_owned),
            location: cluster.location.clone(),
            tags: cluster
                .tags
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            provisioning_state: cluster.provisioning_state.clone(),
        },
        registry: RegistryFacts {
            id: registry.id.clone(),
            role_assignment_mode: mode_name.to_owned(),
            tag_name: settings.tag_name.clone(),
            tag_value,
        },
        selection,
        cluster_opted_out: opted_out,
        selected: selects && !opted_out,
        tenants: Tenants {
            cluster: tenant(cluster.tenant_id.as_ref(), &cluster.id),
            registry: tenant(registry.tenant_id.as_ref(), &registry.id),
            handler: settings.handler_tenant.clone(),
        },
        role: PullRole::for_mode(registry.mode),
        role_reason: role_reason(registry.mode),
        principal_id,
        principal_note,
        assignments,
        assignments_elsewhere: elsewhere,
        grant_mode: settings.grant.as_str(),
        group_paths,
        verdict,
        notes,
    })
}

/// Step 1: how the registry's tag value reads for this cluster.
fn selection_of(
    parsed: Option<&Result<OptIn, crate::core::selector::SelectorError>>,
    cluster: &crate::core::model::Cluster,
) -> Selection {
    match parsed {
        None | Some(Ok(OptIn::NotOptedIn)) => Selection::NotOptedIn,
        Some(Ok(OptIn::All)) => Selection::All,
        Some(Ok(OptIn::Selector(s))) => Selection::Selector {
            canonical: s.to_string(),
            steps: s.explain(cluster),
        },
        Some(Err(e)) => Selection::Invalid {
            error: e.to_string(),
        },
    }
}

/// Step 2: why the registry's mode needs its pull role.
fn role_reason(mode: RoleAssignmentMode) -> String {
    let name = mode_name(mode);
    match mode {
        RoleAssignmentMode::LegacyRegistryPermissions => format!(
            "the registry's roleAssignmentMode is {name}: AcrPull grants pull on every repository"
        ),
        RoleAssignmentMode::AbacRepositoryPermissions => format!(
            "the registry's roleAssignmentMode is {name}: AcrPull is not honoured there; Container Registry Repository Reader (without a condition) grants pull on every repository"
        ),
    }
}

/// Step 3: the principal that must hold pull, or why it is unknown.
fn principal_of(
    cluster: &crate::core::model::Cluster,
    observed: &Observed,
) -> (Option<String>, Option<String>) {
    match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } => (
            Some(object_id.clone()),
            Some("the kubelet identity (identityProfile.kubeletidentity)".to_owned()),
        ),
        ClusterPrincipal::NotYetKnown => (
            None,
            Some(format!(
                "no kubelet identity yet (provisioningState {})",
                cluster.provisioning_state
            )),
        ),
        ClusterPrincipal::ServicePrincipal { client_id } => {
            match observed.principals.get(&cluster.id) {
                Some(Ok(id)) => (
                    Some(id.clone()),
                    Some(format!("the service principal of appId {client_id}")),
                ),
                Some(Err(reason)) => (None, Some(reason.clone())),
                None => (None, Some(SERVICE_PRINCIPAL_NOT_LOOKED_UP.to_owned())),
            }
        }
    }
}

/// Step 4: the principal's assignments at the registry or an ancestor (from the registry outwards), and how
/// many it holds elsewhere.
fn assignments_of(
    observed: &Observed,
    registry: &crate::core::model::Registry,
    principal_id: Option<&str>,
) -> (Vec<ScopedAssignment>, usize) {
    let principal_key = principal_id.map(str::to_ascii_lowercase);
    let mut assignments = Vec::new();
    let mut elsewhere = 0usize;
    for a in &observed.assignments {
        if principal_key
            .as_deref()
            .is_some_and(|p| !a.principal_id.trim().eq_ignore_ascii_case(p))
        {
            continue;
        }
        let Some(level) = planner::scope_level(&a.scope, &registry.id, &[]) else {
            elsewhere += 1;
            continue;
        };
        let covers = planner::pull_coverage(a, registry, &observed.role_definitions, &[]);
        assignments.push(ScopedAssignment::of(
            a,
            level,
            observed,
            covers.map(|c| c.to_string()),
        ));
    }
    assignments.sort_by(|a, b| (a.level, &a.id).cmp(&(b.level, &b.id)));
    (assignments, elsewhere)
}

fn mode_name(mode: RoleAssignmentMode) -> &'static str {
    match mode {
        RoleAssignmentMode::LegacyRegistryPermissions => "LegacyRegistryPermissions",
        RoleAssignmentMode::AbacRepositoryPermissions => "AbacRepositoryPermissions",
    }
}

fn role_label(a: &RoleAssignment, definitions: &HashMap<String, RoleDefinition>) -> String {
    let guid = a.role_definition_guid.to_ascii_lowercase();
    if let Some(role) = PullRole::from_definition_guid(&guid) {
        return role.display_name().to_owned();
    }
    if let Some(d) = definitions.get(&guid) {
        return d.role_name.clone();
    }
    crate::core::roles::built_in(&guid)
        .map_or_else(|| format!("role {guid}"), |r| r.name.to_owned())
}

/// What reconcile does besides the pair's verdict in group mode or while draining: the direct assignment that
/// goes once the membership settled, the principal leaving the tool's group, the group's own writes.
fn group_notes(plan: &Plan, principal: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    for i in &plan.items {
        if let Action::Remove {
            assignment,
            reason: RemovalReason::SettledInGroup,
        } = &i.action
        {
            notes.push(format!(
                "reconcile removes the direct assignment {}: {}",
                assignment.name,
                RemovalReason::SettledInGroup
            ));
        }
    }
    for g in &plan.groups {
        let note = match &g.action {
            GroupAction::Leave {
                principal_id,
                reason,
                ..
            } if principal.is_some_and(|p| p.trim().eq_ignore_ascii_case(principal_id)) => {
                format!("reconcile removes the principal from the tool's group: {reason}")
            }
            GroupAction::EnsureGroup { .. } => {
                "reconcile makes the tool's group for this registry and role".to_owned()
            }
            GroupAction::AssignGroup { spec, .. } => format!(
                "reconcile assigns {} at the registry to the tool's group (assignment {})",
                spec.role, spec.name
            ),
            _ => continue,
        };
        notes.push(note);
    }
    notes
}

/// Group mode: the principal is not yet a member of the tool's group.
fn join_verdict(meanwhile: &Meanwhile) -> Verdict {
    let joins = "reconcile adds the principal to the tool's group for this registry and role";
    match meanwhile {
        Meanwhile::FastPath(spec) => Verdict {
            status: "missing",
            text: format!(
                "missing: {joins}, and creates {} at the registry for principal {} at once (fast path, assignment {}) until the membership counts",
                spec.role, spec.principal_id, spec.name
            ),
            in_order: false,
        },
        Meanwhile::Covered { assignment_id } => Verdict {
            status: "compliant",
            text: format!(
                "compliant: the direct assignment {assignment_id} covers the pair; {joins} (it replaces the direct assignment once settled)"
            ),
            in_order: true,
        },
        Meanwhile::Pending { reason } => Verdict {
            status: "pending",
            text: format!("pending: {joins}; {reason}"),
            in_order: false,
        },
    }
}

fn verdict(
    plan: &Plan,
    selected: bool,
    parsed: Option<&Result<OptIn, crate::core::selector::SelectorError>>,
) -> Verdict {
    let v = |status, text: String, in_order| Verdict {
        status,
        text,
        in_order,
    };
    if let Some(Err(e)) = parsed {
        return v(
            "invalid_selector",
            format!(
                "the registry's tag does not parse ({e}): it selects no cluster, and nothing is granted or removed on it until it is fixed"
            ),
            false,
        );
    }
    if let Some((assignment, reason)) = plan.items.iter().find_map(|i| match &i.action {
        // A settled removal goes with a covered pair: the verdict is the pair's, the removal a note.
        Action::Remove {
            reason: RemovalReason::SettledInGroup,
            ..
        } => None,
        Action::Remove { assignment, reason } => Some((assignment, reason)),
        _ => None,
    }) {
        return v(
            "remove",
            format!(
                "reconcile (detach on) removes the owned assignment {}: {reason}",
                assignment.name
            ),
            false,
        );
    }
    let Some(item) = plan.items.iter().find(|i| {
        !matches!(
            i.action,
            Action::Remove {
                reason: RemovalReason::SettledInGroup,
                ..
            }
        )
    }) else {
        return if selected {
            v(
                "unknown",
                "the planner produced nothing for this pair".into(),
                false,
            )
        } else {
            v(
                "not_selected",
                "not selected: the cluster needs no access to this registry, and nothing of ours is to remove"
                    .into(),
                true,
            )
        };
    };
    match &item.action {
        Action::AlreadyCovered { how, .. } => v(
            "compliant",
            format!("compliant: pull is covered by {how}; nothing to create"),
            true,
        ),
        Action::Create(spec) | Action::ReportMissing(spec) => v(
            "missing",
            format!(
                "missing: no assignment gives pull; reconcile creates {} at the registry for principal {} (assignment {})",
                spec.role, spec.principal_id, spec.name
            ),
            false,
        ),
        Action::Exists { assignment_id } => v(
            "compliant",
            format!(
                "compliant: the assignment {assignment_id} exists under the deterministic name; it is never rewritten"
            ),
            true,
        ),
        Action::Pending { reason } => v("pending", format!("pending: {reason}"), false),
        Action::Refused { reason } => v("refused", reason.to_string(), false),
        Action::Remove { .. } => v(
            "remove",
            "an owned assignment is due for removal".into(),
            false,
        ),
        Action::Join { meanwhile, .. } => join_verdict(meanwhile),
    }
}
