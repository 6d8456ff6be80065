//! A role assignment as the edges read it, and the ownership mark that says which ones are this tool's.

use serde::{Deserialize, Serialize};

use super::{ResourceId, SharedStr, mark};

/// A role assignment as ARM (or Resource Graph's `authorizationresources`) reports it.
///
/// The texts are shared ([`SharedStr`]): a listing hands its rows one copy of each scope, role, principal,
/// principal type and description it repeats, and the plan and results point at the row's id instead of copying
/// it (a steady state of 200,000 rows held each text once per row before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleAssignment {
    /// Full id: `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
    pub id: SharedStr,
    pub name: String,
    pub scope: SharedStr,
    /// The trailing GUID of `roleDefinitionId`, lower-cased (see [`role_guid`](super::role_guid)).
    pub role_definition_guid: SharedStr,
    pub principal_id: SharedStr,
    pub principal_type: Option<SharedStr>,
    pub description: Option<SharedStr>,
    pub condition: Option<String>,
}

/// The ownership mark every assignment made by this project carries at the start of its description.
pub const OWNERSHIP_MARK: &str = "managed-by: acr-autoattach";

/// The description written on an assignment made for `cluster`: the mark, then the cluster id, so that clean-up
/// finds its assignments without any directory permission.
pub fn ownership_description(cluster: &ResourceId) -> String {
    [OWNERSHIP_MARK, " cluster=", cluster.as_str()].concat()
}

impl RoleAssignment {
    /// True when the description parses exactly as the ownership mark ([`RoleAssignment::owner_cluster`]).
    pub fn is_owned(&self) -> bool {
        self.owner_cluster().is_some()
    }

    /// The cluster an owned assignment was made for: the description must be exactly one of the two shapes
    /// [`ownership_description`] and [`member_since_description`](super::member_since_description) write,
    /// `managed-by: acr-autoattach cluster={exact cluster id}[ member-since={unix seconds}]`, nothing before,
    /// between or after (a near miss such as `managed-by: acr-autoattachcluster=…` is a person's text).
    pub fn owner_cluster(&self) -> Option<ResourceId> {
        mark::parse_mark(self.description.as_deref()?).map(|(cluster, _)| cluster)
    }

    /// When the principal's membership in the tool's group began, as the group-mode mark records it
    /// ([`member_since_description`](super::member_since_description)); `None` for the plain mark or no mark.
    pub fn member_since(&self) -> Option<i64> {
        mark::parse_mark(self.description.as_deref()?).and_then(|(_, since)| since)
    }
}
