//! Why a pair is pending, refused or detached: typed reasons whose `as_str` labels are metric labels and whose
//! `Display` is the pair's `reason` text.

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingReason {
    /// Provisioning has not succeeded, or the kubelet identity is not there yet.
    ClusterNotReady { provisioning_state: String },
    /// A service-principal cluster whose object id Graph did not give.
    ServicePrincipalUnresolved { reason: String },
    /// A service-principal cluster whose object id was not looked up.
    ServicePrincipalNotLookedUp,
    /// Group mode: the principal is a member of the tool's group, the membership has not settled yet (or its
    /// start is unknown: `settles_at` is `None`), and no direct assignment covers the pair meanwhile.
    GroupMembershipSettling { settles_at: Option<i64> },
    /// Group mode: the direct fast path was skipped to keep the registry subscription's headroom free (or its
    /// usage is unknown: `used` is `None`); the principal is (or is being made) a member of the tool's group and
    /// the pair waits until that membership counts.
    CapacityReserved {
        subscription: String,
        used: Option<u32>,
        limit: u32,
        headroom: u32,
    },
    /// Group mode: the membership has settled but the tool's group holds no pull assignment at the registry yet
    /// (it is being written, or the subscription is full), and no direct assignment covers the pair meanwhile.
    GroupAssignmentMissing { group_id: Option<String> },
}

impl PendingReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClusterNotReady { .. } => "cluster_not_ready",
            Self::ServicePrincipalUnresolved { .. } => "service_principal_unresolved",
            Self::ServicePrincipalNotLookedUp => "service_principal_not_looked_up",
            Self::GroupMembershipSettling { .. } => "group_membership_settling",
            Self::CapacityReserved { .. } => "capacity_reserved",
            Self::GroupAssignmentMissing { .. } => "group_assignment_missing",
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
            Self::GroupMembershipSettling {
                settles_at: Some(at),
            } => write!(
                f,
                "member of the tool's group; the membership counts for RBAC from unix time {at}"
            ),
            Self::GroupMembershipSettling { settles_at: None } => f.write_str(
                "member of the tool's group; when the membership began is not known yet (settle window starts now)",
            ),
            Self::CapacityReserved {
                subscription,
                used,
                limit,
                headroom,
            } => {
                match used {
                    Some(used) => write!(
                        f,
                        "no direct assignment: subscription {subscription} uses {used} of {limit} role assignments and {headroom} are kept free"
                    )?,
                    None => write!(
                        f,
                        "no direct assignment: the role assignments in use in subscription {subscription} are not known (limit {limit}, {headroom} kept free)"
                    )?,
                }
                f.write_str("; waiting for the group membership to count")
            }
            Self::GroupAssignmentMissing { group_id } => write!(
                f,
                "the tool's group {} holds no pull assignment at the registry yet",
                group_id.as_deref().unwrap_or("(not made yet)")
            ),
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
    /// Group mode: the principal's membership in the tool's group for this registry and role has settled, so
    /// the direct fast-path assignment is no longer needed.
    SettledInGroup,
    /// Direct mode: the pair's direct assignment exists, so the principal leaves the tool's group (a switch
    /// back from group mode drains the groups).
    DirectMode,
    /// The tool's group has no member left (direct mode): its pull assignment at the registry goes; the group
    /// object is kept.
    GroupDrained,
    /// A member of the tool's group that no cluster of a full inventory uses (its cluster was deleted, or its
    /// kubelet identity changed, after its direct assignment was gone).
    PrincipalUnused,
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
            Self::SettledInGroup => "settled_in_group",
            Self::DirectMode => "direct_mode",
            Self::GroupDrained => "group_drained",
            Self::PrincipalUnused => "principal_unused",
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
            Self::SettledInGroup => f.write_str(
                "the principal's membership in the tool's group has settled; the direct assignment is no longer needed",
            ),
            Self::DirectMode => f.write_str(
                "direct mode: the pair's direct assignment exists, the principal leaves the tool's group",
            ),
            Self::GroupDrained => {
                f.write_str("the tool's group has no member left; its assignment goes")
            }
            Self::PrincipalUnused => {
                f.write_str("no cluster of the full inventory uses this principal")
            }
        }
    }
}
