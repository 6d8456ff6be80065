//! Desired state: one pure function from an observed snapshot to the actions that make every selected
//! (cluster, registry) pair pull-capable (kube-rs style `reconcile`). No I/O, no clock.
//!
//! # Rules (design.md "Behaviour", arm.md)
//! - A registry's opt-in tag ([`PlanSettings::tag_name`]) decides which clusters it selects
//!   ([`crate::core::selector`]); a value that does not parse yields [`RegistryStatus::InvalidSelector`] and no
//!   pair action for that registry (neither grants nor selection-based removals: a typo must not revoke
//!   access either; only a deleted cluster's owned assignments there still go, as that needs no selector).
//! - A cluster carrying the same tag with `off`/`false` is never selected.
//! - Per selected pair: refused when the cluster's and the registry's tenants are both known and differ (or
//!   either differs from the handler's tenant); pending while the principal is unknown; already covered when
//!   an assignment of a pull-capable role for the registry's mode exists for the principal at the registry or
//!   an ancestor scope ([`pull_coverage`]); pending while the cluster is not ready; otherwise a create
//!   ([`Mode::Enforce`]) or a report of the gap ([`Mode::Audit`]). The role is [`PullRole::for_mode`]: the
//!   types admit no other.
//! - With `detach` (enforce mode only: audit writes nothing), an assignment is removed only when it carries the
//!   ownership mark, has one of the two pull roles, names its cluster, and: the cluster is known-deleted or (full
//!   inventory only, and only in a subscription the inventory covered) absent, or the cluster opted out, or the registry no longer selects it, or the cluster's
//!   current principal differs, or the registry's mode no longer honours the role. Never an unmarked one.
//!   A cluster present in the snapshot is never treated as deleted, whatever `deleted_clusters` says: removing a
//!   live cluster's access is worse than keeping a stale assignment one more run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::core::model::{
    ArmKind, Cluster, ClusterPrincipal, Mode, PairFailure, PairResult, PairStatus, PullRole,
    Registry, RegistryResult, RegistryStatus, ResourceId, RoleAssignment, RoleAssignmentMode,
    RoleDefinition, assignment_name, ownership_description, role_guid,
};
use crate::core::roles;
use crate::core::selector::{OptIn, cluster_opted_out, registry_opt_in};

/// `principalType` of every assignment this project writes (lets ARM skip the directory look-up that fails
/// during replication).
pub const PRINCIPAL_TYPE_SERVICE_PRINCIPAL: &str = "ServicePrincipal";

/// The control-plane action that grants pull in `LegacyRegistryPermissions` mode.
pub const LEGACY_PULL_ACTION: &str = "Microsoft.ContainerRegistry/registries/pull/read";
/// The data action that grants pull in `AbacRepositoryPermissions` mode.
pub const ABAC_PULL_DATA_ACTION: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/read";

mod coverage;
mod detach;
mod index;
mod results;

pub use coverage::{
    action_matches, permits, principal_pull_coverage, pull_coverage, role_grants_pull, scope_level,
};
pub use detach::provably_ours;
use detach::{principal_still_needed, removal_reason};
use index::{Index, RegistryIndex};
pub use results::{ApplyOutcome, result_for};

// ---------------------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------------------

/// Everything the edges observed. Clusters and registries are the ones in scope; `assignments` are those at,
/// above and below the registries' scopes (or for the clusters' principals) as listed.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub clusters: Vec<Cluster>,
    pub registries: Vec<Registry>,
    pub assignments: Vec<RoleAssignment>,
    /// Role definitions seen (custom roles, or any built-in not known by GUID here), keyed by lower-cased GUID.
    pub role_definitions: HashMap<String, RoleDefinition>,
    /// For service-principal clusters: the principal's object id from Microsoft Graph, or why it is unknown.
    pub principals: HashMap<ResourceId, Result<String, String>>,
    /// Tenant of each subscription (key: lower-cased subscription id), when known.
    pub subscription_tenants: HashMap<String, String>,
    /// Management groups above each subscription (key: lower-cased subscription id; values: names or ids).
    /// Unknown ancestry means a management-group assignment is not counted (at worst a redundant grant).
    pub management_groups: HashMap<String, Vec<String>>,
}

/// Whether the snapshot holds every cluster in scope (timer) or only some (event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Completeness {
    Full,
    Partial,
}

#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub tag_name: String,
    pub mode: Mode,
    pub detach: bool,
    /// The tenant the handler's identity lives in, when known.
    pub handler_tenant: Option<String>,
    /// Clusters confirmed gone (delete event and GET 404).
    pub deleted_clusters: BTreeSet<ResourceId>,
    pub completeness: Completeness,
}

impl PlanSettings {
    /// Enforce mode, no detach, partial inventory, no tenant or deletions known.
    pub fn new(tag_name: impl Into<String>) -> Self {
        Self {
            tag_name: tag_name.into(),
            mode: Mode::Enforce,
            detach: false,
            handler_tenant: None,
            deleted_clusters: BTreeSet::new(),
            completeness: Completeness::Partial,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Sorted by registry, then cluster, then action kind.
    pub items: Vec<PlanItem>,
    pub registry_results: Vec<RegistryResult>,
}

impl Plan {
    /// Items that need a write (create or remove).
    pub fn writes(&self) -> impl Iterator<Item = &PlanItem> {
        self.items.iter().filter(|i| i.action.needs_write())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanItem {
    pub cluster: ResourceId,
    pub registry: ResourceId,
    pub principal_id: Option<String>,
    pub role: Option<PullRole>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// An existing assignment already gives the principal pull access.
    AlreadyCovered {
        assignment_id: String,
        how: Coverage,
    },
    /// Enforce mode: PUT this assignment.
    Create(AssignmentSpec),
    /// An assignment with the deterministic name exists but does not (or no longer) give pull as observed
    /// (e.g. a person changed it): it is never PUT again (issue 10, rule 2); nothing is written.
    Exists {
        assignment_id: String,
    },
    /// Audit mode: this assignment is missing; nothing is written.
    ReportMissing(AssignmentSpec),
    Pending {
        reason: PendingReason,
    },
    Refused {
        reason: RefusalReason,
    },
    /// Detach: DELETE this owned assignment.
    Remove {
        assignment: RoleAssignment,
        reason: RemovalReason,
    },
}

impl Action {
    pub fn needs_write(&self) -> bool {
        matches!(self, Self::Create(_) | Self::Remove { .. })
    }

    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AlreadyCovered { .. } => "already_covered",
            Self::Create(_) => "create",
            Self::Exists { .. } => "exists",
            Self::ReportMissing(_) => "report_missing",
            Self::Pending { .. } => "pending",
            Self::Refused { .. } => "refused",
            Self::Remove { .. } => "remove",
        }
    }

    /// Orders several removals for one pair (compared ignoring ASCII case).
    fn tie_break(&self) -> &str {
        match self {
            Self::Remove { assignment, .. } => &assignment.id,
            _ => "",
        }
    }

    fn order(&self) -> u8 {
        match self {
            Self::Remove { .. } => 0,
            Self::AlreadyCovered { .. } => 1,
            Self::Create(_) | Self::Exists { .. } => 2,
            Self::ReportMissing(_) => 3,
            Self::Pending { .. } => 4,
            Self::Refused { .. } => 5,
        }
    }
}

/// The role assignment to PUT, exactly as arm.md prescribes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssignmentSpec {
    /// The registry.
    pub scope: ResourceId,
    /// Deterministic ([`assignment_name`]): a duplicate PUT is idempotent.
    pub name: Uuid,
    pub role: PullRole,
    /// Full id in the registry's subscription.
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: &'static str,
    /// The ownership mark and the cluster id ([`ownership_description`]).
    pub description: String,
}

impl AssignmentSpec {
    pub fn new(
        registry: &ResourceId,
        principal_id: &str,
        role: PullRole,
        cluster: &ResourceId,
    ) -> Self {
        Self {
            scope: registry.clone(),
            name: assignment_name(registry, principal_id, role),
            role,
            role_definition_id: role.definition_id(registry.subscription_id()),
            principal_id: principal_id.trim().to_owned(),
            principal_type: PRINCIPAL_TYPE_SERVICE_PRINCIPAL,
            description: ownership_description(cluster),
        }
    }

    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: the PUT target.
    pub fn assignment_id(&self) -> String {
        crate::core::model::role_assignment_id(&self.scope, self.name)
    }

    /// The PUT body.
    pub fn request_body(&self) -> Value {
        crate::core::model::role_assignment_body(
            &self.role_definition_id,
            &self.principal_id,
            &self.description,
        )
    }
}

/// How an existing assignment covers a pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Coverage {
    pub grant: Grant,
    pub scope: ScopeLevel,
    /// The assignment carries a condition (e.g. limiting pull to some repositories). That is a person's
    /// decision: the pair is compliant and no broader assignment is ever added beside it (issue 10, rule 2).
    pub restricted_by_condition: bool,
    /// The group (object id) that holds the assignment when the principal has pull through its membership
    /// (direct or nested) rather than its own assignment ([`principal_pull_coverage`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via_group: Option<String>,
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {} scope", self.grant, self.scope.as_str())?;
        if let Some(group) = &self.via_group {
            write!(f, ", through group {group}")?;
        }
        if self.restricted_by_condition {
            f.write_str(", restricted by a condition")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Grant {
    /// The pull role itself (the one this project would assign).
    PullRole { role: PullRole },
    /// A built-in role known to include pull for the registry's mode (AcrPush, Owner, …).
    BuiltIn { role_name: &'static str },
    /// A role definition whose (data) actions include pull, wildcards and exclusions applied.
    ByActions { role_name: String },
}

impl Grant {
    fn rank(&self) -> u8 {
        match self {
            Self::PullRole { .. } => 0,
            Self::BuiltIn { .. } => 1,
            Self::ByActions { .. } => 2,
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PullRole { role } => write!(f, "{role}"),
            Self::BuiltIn { role_name } => write!(f, "{role_name} (built-in, includes pull)"),
            Self::ByActions { role_name } => write!(f, "{role_name} (its actions include pull)"),
        }
    }
}

/// Where an assignment sits relative to the registry. Ordered from the registry outwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeLevel {
    Registry,
    ResourceGroup,
    Subscription,
    ManagementGroup,
    Root,
}

impl ScopeLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registry => "registry",
            Self::ResourceGroup => "resource_group",
            Self::Subscription => "subscription",
            Self::ManagementGroup => "management_group",
            Self::Root => "root",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingReason {
    /// Provisioning has not succeeded, or the kubelet identity is not there yet.
    ClusterNotReady { provisioning_state: String },
    /// A service-principal cluster whose object id Graph did not give.
    ServicePrincipalUnresolved { reason: String },
    /// A service-principal cluster whose object id was not looked up.
    ServicePrincipalNotLookedUp,
}

impl PendingReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClusterNotReady { .. } => "cluster_not_ready",
            Self::ServicePrincipalUnresolved { .. } => "service_principal_unresolved",
            Self::ServicePrincipalNotLookedUp => "service_principal_not_looked_up",
        }
    }
}

impl fmt::Display for PendingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClusterNotReady { provisioning_state } => write!(
                f,
                "cluster not ready (provisioningState {provisioning_state}, kubelet identity required)"
            ),
            Self::ServicePrincipalUnresolved { reason } => {
                write!(f, "service principal object id unresolved: {reason}")
            }
            Self::ServicePrincipalNotLookedUp => {
                f.write_str("service principal object id not looked up yet")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RefusalReason {
    /// The cluster and the registry live in different tenants.
    OtherTenant {
        cluster_tenant: String,
        registry_tenant: String,
    },
    /// The cluster or the registry lives outside the handler's tenant.
    OutsideHandlerTenant { tenant: String },
}

impl RefusalReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::OtherTenant { .. } => "other_tenant",
            Self::OutsideHandlerTenant { .. } => "outside_handler_tenant",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherTenant {
                cluster_tenant,
                registry_tenant,
            } => write!(
                f,
                "refused: cluster tenant {cluster_tenant} differs from registry tenant {registry_tenant}"
            ),
            Self::OutsideHandlerTenant { tenant } => {
                write!(f, "refused: tenant {tenant} is not the handler's tenant")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemovalReason {
    /// The registry's tag no longer selects the cluster (or the registry is no longer opted in).
    NoLongerSelected,
    /// The cluster opted out.
    ClusterOptedOut,
    /// The cluster is confirmed deleted.
    ClusterDeleted,
    /// The cluster is missing from a full inventory.
    ClusterAbsent,
    /// The cluster's current principal is another one (kubelet identity changed).
    PrincipalChanged { current_principal_id: String },
    /// The registry's mode no longer honours this role (e.g. AcrPull after a switch to ABAC).
    RoleNotHonoured,
}

impl RemovalReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NoLongerSelected => "no_longer_selected",
            Self::ClusterOptedOut => "cluster_opted_out",
            Self::ClusterDeleted => "cluster_deleted",
            Self::ClusterAbsent => "cluster_absent",
            Self::PrincipalChanged { .. } => "principal_changed",
            Self::RoleNotHonoured => "role_not_honoured",
        }
    }
}

impl fmt::Display for RemovalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoLongerSelected => {
                f.write_str("the registry's tag no longer selects the cluster")
            }
            Self::ClusterOptedOut => f.write_str("the cluster opted out"),
            Self::ClusterDeleted => f.write_str("the cluster was deleted"),
            Self::ClusterAbsent => f.write_str("the cluster is absent from the inventory"),
            Self::PrincipalChanged {
                current_principal_id,
            } => write!(
                f,
                "the cluster's principal changed (now {current_principal_id})"
            ),
            Self::RoleNotHonoured => f.write_str("the registry's mode does not honour this role"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------------------

/// The principal that must hold pull access, or why it is not known.
fn current_principal(cluster: &Cluster, observed: &Observed) -> Result<String, PendingReason> {
    match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } if !object_id.trim().is_empty() => {
            Ok(object_id.trim().to_owned())
        }
        ClusterPrincipal::Kubelet { .. } | ClusterPrincipal::NotYetKnown => {
            Err(PendingReason::ClusterNotReady {
                provisioning_state: cluster.provisioning_state.clone(),
            })
        }
        ClusterPrincipal::ServicePrincipal { .. } => match observed.principals.get(&cluster.id) {
            Some(Ok(id)) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            Some(Ok(_)) => Err(PendingReason::ServicePrincipalUnresolved {
                reason: "empty object id".to_owned(),
            }),
            Some(Err(reason)) => Err(PendingReason::ServicePrincipalUnresolved {
                reason: reason.clone(),
            }),
            None => Err(PendingReason::ServicePrincipalNotLookedUp),
        },
    }
}

fn tenant_of<'a>(
    own: Option<&'a String>,
    id: &ResourceId,
    observed: &'a Observed,
) -> Option<&'a str> {
    own.map(String::as_str)
        .or_else(|| {
            observed
                .subscription_tenants
                .get(&id.subscription_id().to_ascii_lowercase())
                .map(String::as_str)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Why the pair must not be attached across tenants, from the cluster's and the registry's tenants
/// ([`tenant_of`]).
fn refusal(
    cluster_tenant: Option<&str>,
    registry_tenant: Option<&str>,
    settings: &PlanSettings,
) -> Option<RefusalReason> {
    if let (Some(c), Some(r)) = (cluster_tenant, registry_tenant)
        && !c.eq_ignore_ascii_case(r)
    {
        return Some(RefusalReason::OtherTenant {
            cluster_tenant: c.to_owned(),
            registry_tenant: r.to_owned(),
        });
    }
    let handler = settings
        .handler_tenant
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())?;
    [registry_tenant, cluster_tenant]
        .into_iter()
        .flatten()
        .find(|t| !t.eq_ignore_ascii_case(handler))
        .map(|t| RefusalReason::OutsideHandlerTenant {
            tenant: t.to_owned(),
        })
}

fn management_groups_of<'a>(registry: &Registry, observed: &'a Observed) -> &'a [String] {
    observed
        .management_groups
        .get(&registry.id.subscription_id().to_ascii_lowercase())
        .map_or(&[], Vec::as_slice)
}

/// The action for one selected pair (cluster `c`, registry `r` of the index).
fn pair_item(
    ix: &Index<'_>,
    c: usize,
    r: &RegistryIndex<'_>,
    observed: &Observed,
    settings: &PlanSettings,
) -> PlanItem {
    let (cluster, registry) = (ix.clusters[c], r.registry);
    let role = PullRole::for_mode(registry.mode);
    let item = |principal_id: Option<String>, action| PlanItem {
        cluster: cluster.id.clone(),
        registry: registry.id.clone(),
        principal_id,
        role: Some(role),
        action,
    };
    if let Some(reason) = refusal(ix.cluster_tenants[c], r.tenant, settings) {
        return item(None, Action::Refused { reason });
    }
    let principal = match &ix.principals[c] {
        Ok(p) => p,
        Err(reason) => {
            return item(
                None,
                Action::Pending {
                    reason: reason.clone(),
                },
            );
        }
    };
    // Only the principal's assignments at the registry's own scope, its resource group, its subscription,
    // a management group or the root can cover it: those are asked, whatever else the principal holds.
    let covered = ix
        .held(c)
        .into_iter()
        .flat_map(|held| held.candidates(r))
        .filter_map(|a| {
            pull_coverage(a, registry, &observed.role_definitions, r.management_groups)
                .map(|c| (a, c))
        })
        .min_by(|(a1, c1), (a2, c2)| {
            // A whole-registry grant is named before a restricted one; then the nearest scope.
            (c1.restricted_by_condition, c1.scope, c1.grant.rank())
                .cmp(&(c2.restricted_by_condition, c2.scope, c2.grant.rank()))
                .then_with(|| cmp_ignore_ascii_case(&a1.id, &a2.id))
        });
    if let Some((assignment, how)) = covered {
        return item(
            Some(principal.clone()),
            Action::AlreadyCovered {
                assignment_id: assignment.id.clone(),
                how,
            },
        );
    }
    let spec = AssignmentSpec::new(&registry.id, principal, role, &cluster.id);
    // Never rewrite: an assignment already under the deterministic name (whatever it holds now, e.g. a person
    // changed it) is never PUT again; the PUT is only ever a create.
    if let Some(existing) = ix.by_name.get(&spec.name.to_string()) {
        return item(
            Some(principal.clone()),
            Action::Exists {
                assignment_id: existing.id.clone(),
            },
        );
    }
    if !cluster.is_ready() {
        let reason = PendingReason::ClusterNotReady {
            provisioning_state: cluster.provisioning_state.clone(),
        };
        return item(Some(principal.clone()), Action::Pending { reason });
    }
    let action = match settings.mode {
        Mode::Enforce => Action::Create(spec),
        Mode::Audit => Action::ReportMissing(spec),
    };
    item(Some(principal.clone()), action)
}

/// `a` and `b` ordered as their ASCII-lower-cased forms would be, without building them.
fn cmp_ignore_ascii_case(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|x| x.to_ascii_lowercase())
        .cmp(b.bytes().map(|x| x.to_ascii_lowercase()))
}

/// Observed state in, actions out. Deterministic: the same snapshot always gives the same plan. Linear in the
/// pairs and the assignments: every look-up is prepared once ([`index`]).
pub fn plan(observed: &Observed, settings: &PlanSettings) -> Plan {
    let ix = Index::new(observed, settings);
    let mut out = Plan::default();
    for r in &ix.registries {
        if let Err(e) = &r.opt_in {
            out.registry_results.push(RegistryResult {
                registry_id: r.registry.id.clone(),
                status: RegistryStatus::InvalidSelector,
                reason: format!(
                    "tag `{}` value `{}`: {e}; it selects no cluster",
                    settings.tag_name,
                    r.registry.tags.get(&settings.tag_name).unwrap_or_default()
                ),
            });
            continue;
        }
        for c in 0..ix.clusters.len() {
            if ix.opted_out[c] || !r.selects[c] {
                continue;
            }
            out.items.push(pair_item(&ix, c, r, observed, settings));
        }
    }

    let mut removals = Vec::new();
    if settings.detach && settings.mode == Mode::Enforce {
        // [`provably_ours`], taken apart: the owner and the registry are parsed once per distinct description
        // and scope (each repeats once per registry or per cluster), and the name is checked (a SHA-1) only
        // for an assignment that would otherwise go. All must hold, so the order does not change the plan.
        let mut owners: HashMap<Option<&str>, Option<ResourceId>> = HashMap::new();
        let mut scopes: HashMap<&str, Option<ResourceId>> = HashMap::new();
        for assignment in &ix.assignments {
            let Some(owner) = owners
                .entry(assignment.description.as_deref())
                .or_insert_with(|| assignment.owner_cluster())
                .clone()
            else {
                continue;
            };
            let registry = scopes
                .entry(&assignment.scope)
                .or_insert_with(|| detach::registry_scope(&assignment.scope))
                .clone();
            let Some((role, registry_id)) = detach::pull_role_at_registry(assignment, registry)
            else {
                continue;
            };
            let Some(reason) =
                removal_reason(&ix, settings, assignment, role, &owner, &registry_id)
            else {
                continue;
            };
            if !detach::named_deterministically(assignment, &registry_id, role)
                || principal_still_needed(&ix, assignment, role, &registry_id)
            {
                continue;
            }
            removals.push(PlanItem {
                cluster: owner,
                registry: registry_id,
                principal_id: Some(assignment.principal_id.clone()),
                role: Some(role),
                action: Action::Remove {
                    assignment: (*assignment).clone(),
                    reason,
                },
            });
        }
    }

    out.items = sorted(out.items, removals);
    out
}

/// The order of a plan's items: registry, cluster, action kind, then (removals) assignment id.
fn item_order(a: &PlanItem, b: &PlanItem) -> std::cmp::Ordering {
    (&a.registry, &a.cluster, a.action.order())
        .cmp(&(&b.registry, &b.cluster, b.action.order()))
        .then_with(|| cmp_ignore_ascii_case(a.action.tie_break(), b.action.tie_break()))
}

/// `pairs` (already in [`item_order`]: registries, then clusters, each sorted, one item per pair) and the
/// removals merged, as a stable sort of the two in that order would give.
fn sorted(pairs: Vec<PlanItem>, mut removals: Vec<PlanItem>) -> Vec<PlanItem> {
    debug_assert!(pairs.is_sorted_by(|a, b| item_order(a, b).is_le()));
    removals.sort_by(item_order);
    let mut out = Vec::with_capacity(pairs.len() + removals.len());
    let mut removals = removals.into_iter().peekable();
    for pair in pairs {
        while let Some(removal) = removals.next_if(|r| item_order(r, &pair).is_lt()) {
            out.push(removal);
        }
        out.push(pair);
    }
    out.extend(removals);
    out
}
