//! Plan outputs beside the pair actions: the assignment to PUT, and group mode's group-level actions.

#[allow(clippy::wildcard_imports)]
use super::*;

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

    /// The assignment of `role` at `registry` to the tool's group `group_id`: deterministic name over
    /// (registry, group id, role), `principalType: Group`, the group's mark ([`GroupSpec::description`]).
    pub fn for_group(registry: &ResourceId, group_id: &str, role: PullRole) -> Self {
        Self {
            scope: registry.clone(),
            name: assignment_name(registry, group_id, role),
            role,
            role_definition_id: role.definition_id(registry.subscription_id()),
            principal_id: group_id.trim().to_owned(),
            principal_type: PRINCIPAL_TYPE_GROUP,
            description: GroupSpec::new(registry.clone(), role).description(),
        }
    }

    /// The same assignment with the group-mode mark: `member-since=<since_unix>` after the cluster id
    /// ([`member_since_description`]). `cluster` is the item's cluster.
    #[must_use]
    pub fn with_member_since(&self, cluster: &ResourceId, since_unix: i64) -> Self {
        Self {
            description: member_since_description(cluster, since_unix),
            ..self.clone()
        }
    }

    /// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: the PUT target.
    pub fn assignment_id(&self) -> String {
        crate::core::model::role_assignment_id(&self.scope, self.name)
    }

    /// The PUT body.
    pub fn request_body(&self) -> Value {
        let mut body = crate::core::model::role_assignment_body(
            &self.role_definition_id,
            &self.principal_id,
            &self.description,
        );
        if self.principal_type != PRINCIPAL_TYPE_SERVICE_PRINCIPAL
            && let Some(properties) = body.get_mut("properties")
        {
            properties["principalType"] = Value::from(self.principal_type);
        }
        body
    }
}

/// What gives a joining pair pull until its membership settles.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Meanwhile {
    /// The fast path: PUT this direct assignment right AFTER the member add, as
    /// [`AssignmentSpec::with_member_since`] of the time the add succeeded; when the add failed, PUT it as it
    /// is (the plain mark claims no membership age).
    FastPath(AssignmentSpec),
    /// The pair's direct assignment exists already (e.g. a switch from direct mode): nothing to PUT.
    Covered { assignment_id: SharedStr },
    /// No direct assignment (capacity): the pair is pending for this reason until the membership counts.
    Pending { reason: PendingReason },
}

/// A group-level action of a plan, for the tool's group of (`registry`, `role`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupItem {
    pub registry: ResourceId,
    pub role: PullRole,
    pub action: GroupAction,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GroupAction {
    /// No group yet and a selected pair needs it: find or create it ([`GroupSpec`]). With `assign`, capacity
    /// was kept for its assignment: once the group exists, PUT [`AssignmentSpec::for_group`] at once.
    EnsureGroup { assign: bool },
    /// The group exists and holds no pull assignment at the registry: PUT this one (`principalType: Group`).
    AssignGroup {
        group_id: String,
        spec: AssignmentSpec,
    },
    /// Remove `principal_id` from the group (`cluster`: the cluster it is attributed to, when one is).
    Leave {
        group_id: String,
        principal_id: String,
        cluster: Option<ResourceId>,
        reason: RemovalReason,
    },
    /// DELETE the group's own assignment (the group object itself is kept).
    RemoveAssignment {
        group_id: String,
        assignment: RoleAssignment,
        reason: RemovalReason,
    },
}

impl GroupAction {
    /// A label for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::EnsureGroup { .. } => "ensure_group",
            Self::AssignGroup { .. } => "assign_group",
            Self::Leave { .. } => "leave",
            Self::RemoveAssignment { .. } => "remove_group_assignment",
        }
    }

    pub(super) fn order(&self) -> u8 {
        match self {
            Self::EnsureGroup { .. } => 0,
            Self::AssignGroup { .. } => 1,
            Self::Leave { .. } => 2,
            Self::RemoveAssignment { .. } => 3,
        }
    }
}
