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
//!
//! # Group mode (issue 16 point 2, `docs/grant-modes.md` §5; [`GrantMode`], module `groups`)
//! - Coverage, both modes: a pull role held by a group the principal is in ([`Observed::memberships`], direct or
//!   nested) covers like its own, for groups made by anyone — except the tool's own groups
//!   ([`Observed::own_groups`]): in direct mode they never count (they are being drained); in group mode only
//!   a **settled** membership counts (`since + settle <= now`; an unknown start is not settled). A direct
//!   assignment is preferred to a group's when both cover. In group mode the pair's own direct assignment
//!   (deterministic name, either mark) is not "someone's": it is judged by the rules below.
//! - Membership start (`since`): the `member-since` of the pair's own direct assignment when it carries one
//!   (durable, written after the member add: an upper bound), else the process-held record
//!   ([`Observed::membership_since`], first seen; a restart starts it again — later, never earlier). A mark
//!   must never outlive the membership it dates: direct mode does not drain a principal whose direct
//!   assignment carries one, and a non-member whose direct assignment carries one is not rejoined (it stays on
//!   its direct assignment; a person removing members by hand causes that).
//! - Group mode, a selected pair nothing but the tool covers (principal known, not refused), enforce:
//!   1. member, settled, and the group holds a pull assignment covering the registry → covered through the group;
//!      the pair's own direct assignment, if provably ours, is removed (`SettledInGroup`, detach setting or not);
//!   2. else the registry needs the group: `EnsureGroup` (none yet) or `AssignGroup` (no covering assignment held
//!      by it and its deterministic name free);
//!   3. the direct assignment exists (any holder of the deterministic name) → covered by it (`Exists` when it no
//!      longer gives pull), and a non-member `Join`s with [`Meanwhile::Covered`] (not when the assignment
//!      carries a `member-since`: see above);
//!   4. cluster not ready → pending;
//!   5. not a member → `Join` with the fast path; a member (its fast path failed, or capacity came back) →
//!      `Create` marked with `member-since` when the start is known.
//!
//!   Audit: 1 without removal, 3, 4, then a member is pending (`GroupMembershipSettling`/`GroupAssignmentMissing`)
//!   and a non-member `ReportMissing`; no group action, no Join.
//! - Capacity, group mode, per registry subscription: `used` = [`Observed::subscription_usage`] plus the writes this
//!   plan schedules (removals are not counted back). Group assignments first (registry order): allowed while
//!   `used + 1 <= limit`, or when usage is unknown (one write; Azure refuses it when full); `EnsureGroup.assign`
//!   says capacity was kept for the new group's assignment. Then fast paths in plan order: only with known usage
//!   and `used + 1 <= limit - headroom`; one write per assignment name (shared principals). Otherwise the Join
//!   keeps no fast path (`CapacityReserved`) and a member's `Create` becomes pending (`GroupMembershipSettling`).
//! - Members of the tool's groups (every member counts as the tool's), enforce, registry observed with a valid
//!   opt-in (otherwise kept): a principal a selected, not opted-out cluster of the snapshot uses (or any while the
//!   registry selects an unresolved service principal) stays — except in direct mode, where it leaves
//!   (`DirectMode`) once the pair is covered without the tool's groups and its direct assignment carries no
//!   `member-since` (leaving would make that mark stale). With `detach`: a principal only unselected or opted-out
//!   clusters use leaves (`NoLongerSelected`/`ClusterOptedOut`; `RoleNotHonoured` when the registry's mode no
//!   longer honours the group's role); one no cluster of the snapshot uses leaves when its direct assignment's
//!   mark names a deleted cluster (`ClusterDeleted`) or a present one with another principal (`PrincipalChanged`),
//!   else only on a full inventory (`PrincipalUnused`).
//! - Direct mode, full inventory, enforce: a tool's group with no member left, once memberships were read
//!   (non-empty) and every pair of its registry is covered without it by principals whose groups were looked up,
//!   loses its own assignment (`GroupDrained`: exact registry scope, its role, deterministic name over
//!   (registry, group id, role), exactly the group's mark). The group object is kept. Group mode never removes it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::core::groups::{GrantMode, GroupMemberships, GroupSpec};
use crate::core::model::{
    ArmKind, Cluster, ClusterPrincipal, Mode, PairFailure, PairResult, PairStatus, PullRole,
    Registry, RegistryResult, RegistryStatus, ResourceId, RoleAssignment, RoleAssignmentMode,
    RoleDefinition, SharedStr, assignment_name, member_since_description, ownership_description,
    role_guid,
};
use crate::core::roles;
use crate::core::selector::{OptIn, cluster_opted_out, registry_opt_in};

/// `principalType` of every assignment this project writes (lets ARM skip the directory look-up that fails
/// during replication).
pub const PRINCIPAL_TYPE_SERVICE_PRINCIPAL: &str = "ServicePrincipal";
/// `principalType` of the tool's group's own assignment (group mode).
pub const PRINCIPAL_TYPE_GROUP: &str = "Group";

/// The control-plane action that grants pull in `LegacyRegistryPermissions` mode.
pub const LEGACY_PULL_ACTION: &str = "Microsoft.ContainerRegistry/registries/pull/read";
/// The data action that grants pull in `AbacRepositoryPermissions` mode.
pub const ABAC_PULL_DATA_ACTION: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/read";

mod coverage;
mod detach;
mod groups;
mod index;
mod outputs;
mod reasons;
mod results;

pub use coverage::{
    action_matches, permits, principal_pull_coverage, pull_coverage, role_grants_pull, scope_level,
};
pub use detach::provably_ours;
use detach::{principal_still_needed, removal_reason};
use groups::Groups;
use index::{Index, RegistryIndex};
pub use outputs::{AssignmentSpec, GroupAction, GroupItem, Meanwhile};
pub use reasons::{PendingReason, RefusalReason, RemovalReason};
pub use results::{ApplyOutcome, group_result_for, result_for};

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
    /// Group memberships (direct or nested) of the principals looked up: principal → groups. Both modes read
    /// it: a pull role held by a group counts for its members (the tool's own groups only as the rules say).
    /// The edges list every member of the tool's own groups here (both modes), so the planner can detach and
    /// drain them.
    pub memberships: GroupMemberships,
    /// The tool's own group per (registry, pull role) when it exists (found by its mark **and** the handler's
    /// identity among its owners: [`GroupSpec`]): its object id. Every member of such a group is treated as
    /// added by the tool. Its role assignment, if any, is in `assignments` like any other.
    pub own_groups: HashMap<(ResourceId, PullRole), String>,
    /// When a principal's membership in one of the tool's groups began, as far as process-held evidence says
    /// (unix seconds; key: principal and group object ids, trimmed and lower-cased:
    /// [`Observed::set_membership_since`]). The planner also reads the durable evidence itself (the
    /// `member-since` mark of the fast-path assignment) and takes the earlier of the two.
    pub membership_since: HashMap<(String, String), i64>,
    /// Role assignments counted against the limit in each registry subscription (key: lower-cased subscription
    /// id), when known. Absent: unknown (group mode then takes no fast path there).
    pub subscription_usage: HashMap<String, u32>,
}

impl Observed {
    /// Records when `principal`'s membership in `group` began (keys normalised as the planner reads them).
    pub fn set_membership_since(&mut self, principal: &str, group: &str, since_unix: i64) {
        self.membership_since.insert(
            (
                principal.trim().to_ascii_lowercase(),
                group.trim().to_ascii_lowercase(),
            ),
            since_unix,
        );
    }

    /// The process-held start of `principal`'s membership in `group`, if recorded.
    pub fn membership_since_of(&self, principal: &str, group: &str) -> Option<i64> {
        if self.membership_since.is_empty() {
            return None;
        }
        self.membership_since
            .get(&(
                principal.trim().to_ascii_lowercase(),
                group.trim().to_ascii_lowercase(),
            ))
            .copied()
    }

    /// The tool's group for `registry` and `role`, if it exists.
    pub fn own_group(&self, registry: &ResourceId, role: PullRole) -> Option<&str> {
        if self.own_groups.is_empty() {
            return None;
        }
        self.own_groups
            .get(&(registry.clone(), role))
            .map(String::as_str)
    }
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
    /// Direct (default) or group mode.
    pub grant: GrantMode,
    /// The time of the run (unix seconds): the planner has no clock. Group mode compares settle windows to it.
    pub now_unix: i64,
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
            grant: GrantMode::Direct,
            now_unix: 0,
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
    /// Group-level actions, at most one of each kind per (registry, role) (one `Leave` per member), sorted by
    /// registry, role, kind. The engine runs `EnsureGroup` and `AssignGroup` before the pair items (the group's
    /// assignment took capacity before any fast path); `Leave` and `RemoveAssignment` are judged on the
    /// observed state alone and may run in any order.
    pub groups: Vec<GroupItem>,
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
    pub principal_id: Option<SharedStr>,
    pub role: Option<PullRole>,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// An existing assignment already gives the principal pull access.
    AlreadyCovered {
        assignment_id: SharedStr,
        how: Coverage,
    },
    /// Enforce mode: PUT this assignment.
    Create(AssignmentSpec),
    /// An assignment with the deterministic name exists but does not (or no longer) give pull as observed
    /// (e.g. a person changed it): it is never PUT again (issue 10, rule 2); nothing is written.
    Exists {
        assignment_id: SharedStr,
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
    /// Group mode: add the principal to the tool's group for the item's (registry, role).
    Join {
        /// The group's object id; `None` when this plan's [`GroupAction::EnsureGroup`] makes it.
        group_id: Option<String>,
        /// What gives the pair pull until the membership settles.
        meanwhile: Meanwhile,
    },
}

impl Action {
    pub fn needs_write(&self) -> bool {
        matches!(
            self,
            Self::Create(_) | Self::Remove { .. } | Self::Join { .. }
        )
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
            Self::Join { .. } => "join",
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
            Self::Create(_) | Self::Exists { .. } | Self::Join { .. } => 2,
            Self::ReportMissing(_) => 3,
            Self::Pending { .. } => 4,
            Self::Refused { .. } => 5,
        }
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

// ---------------------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------------------

/// The principal that must hold pull access, or why it is not known.
fn current_principal(cluster: &Cluster, observed: &Observed) -> Result<SharedStr, PendingReason> {
    match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } if !object_id.trim().is_empty() => {
            Ok(SharedStr::from(object_id.trim()))
        }
        ClusterPrincipal::Kubelet { .. } | ClusterPrincipal::NotYetKnown => {
            Err(PendingReason::ClusterNotReady {
                provisioning_state: cluster.provisioning_state.clone(),
            })
        }
        ClusterPrincipal::ServicePrincipal { .. } => match observed.principals.get(&cluster.id) {
            Some(Ok(id)) if !id.trim().is_empty() => Ok(SharedStr::from(id.trim())),
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
    gx: Option<&mut Groups<'_>>,
) -> PlanItem {
    let (cluster, registry) = (ix.clusters[c], r.registry);
    let role = PullRole::for_mode(registry.mode);
    let item = |principal_id: Option<SharedStr>, action| PlanItem {
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
    // Group mode: the pair's own direct assignment is judged by the group rules, never as "covered by someone".
    let group_mode = gx.as_ref().and_then(|g| {
        g.mode.map(|gs| {
            (
                gs,
                AssignmentSpec::new(&registry.id, principal, role, &cluster.id),
            )
        })
    });
    let own_name = group_mode.as_ref().map(|(_, spec)| spec.name);
    // Only the principal's assignments at the registry's own scope, its resource group, its subscription,
    // a management group or the root can cover it: those are asked, whatever else the principal holds; then
    // (when groups are known) those of the groups it is in, the tool's own aside.
    let covered = ix
        .held(c)
        .into_iter()
        .flat_map(|held| held.candidates(r))
        .filter(|a| own_name.is_none_or(|name| !groups::is_own_direct(a, name)))
        .filter_map(|a| {
            pull_coverage(a, registry, &observed.role_definitions, r.management_groups)
                .map(|c| (a, c))
        })
        .chain(
            gx.as_deref()
                .into_iter()
                .flat_map(|g| g.group_cover(c, r, observed)),
        )
        .min_by(|(a1, c1), (a2, c2)| {
            // A whole-registry grant is named before a restricted one, a direct one before one through a
            // group; then the nearest scope.
            (
                c1.restricted_by_condition,
                c1.via_group.is_some(),
                c1.scope,
                c1.grant.rank(),
            )
                .cmp(&(
                    c2.restricted_by_condition,
                    c2.via_group.is_some(),
                    c2.scope,
                    c2.grant.rank(),
                ))
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
    if let (Some((gs, spec)), Some(g)) = (group_mode, gx) {
        let own_direct = ix.named(spec.name);
        let action = g.decide(gs, ix, c, r, spec, own_direct, observed, settings);
        return item(Some(principal.clone()), action);
    }
    let spec = AssignmentSpec::new(&registry.id, principal, role, &cluster.id);
    // Never rewrite: an assignment already under the deterministic name (whatever it holds now, e.g. a person
    // changed it) is never PUT again; the PUT is only ever a create.
    if let Some(existing) = ix.named(spec.name) {
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
    let mut gx = Groups::new(&ix, observed, settings);
    let mut out = Plan::default();
    // One item per selected pair: sized once (a doubling vector would hold up to twice the items' size).
    out.items.reserve_exact(ix.selected_pairs());
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
            out.items
                .push(pair_item(&ix, c, r, observed, settings, gx.as_mut()));
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

    if let Some(g) = &mut gx {
        g.finish(&ix, observed, settings, &mut out, &mut removals);
    }
    out.items = sorted(out.items, removals);
    groups::sort_group_items(&mut out.groups);
    out
}

/// The order of a plan's items: registry, cluster, action kind, then (removals) assignment id.
fn item_order(a: &PlanItem, b: &PlanItem) -> std::cmp::Ordering {
    (&a.registry, &a.cluster, a.action.order())
        .cmp(&(&b.registry, &b.cluster, b.action.order()))
        .then_with(|| cmp_ignore_ascii_case(a.action.tie_break(), b.action.tie_break()))
}

/// `pairs` (already in [`item_order`]: registries, then clusters, each sorted, one item per pair) and the
/// removals merged, as a stable sort of the two in that order would give. In place: the pairs are not copied
/// into a second vector (at scale that would hold every item twice), and without removals nothing moves.
fn sorted(mut pairs: Vec<PlanItem>, mut removals: Vec<PlanItem>) -> Vec<PlanItem> {
    debug_assert!(pairs.is_sorted_by(|a, b| item_order(a, b).is_le()));
    if removals.is_empty() {
        return pairs;
    }
    removals.sort_by(item_order);
    pairs.append(&mut removals);
    // Two sorted runs: the stable sort merges them (it detects runs), keeping a pair before a removal it ties.
    pairs.sort_by(item_order);
    pairs
}
