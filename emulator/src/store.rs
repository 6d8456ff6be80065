//! The emulator's state: subscriptions, resource groups, clusters, registries, role assignments, role definitions,
//! the directory of principals, and Resource Graph's delayed view. Plain data plus small queries; the HTTP
//! semantics live in `arm`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::groups::{self, Group};
use crate::rbac::{self, RoleDefinition};

/// What kind of directory object a principal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum PrincipalKind {
    User,
    Group,
    ServicePrincipal,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal => "ServicePrincipal",
        }
    }
}

/// A directory object (Microsoft Entra ID): user, group, application service principal or managed identity.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub object_id: String,
    /// Application (client) id for service principals and managed identities; empty otherwise.
    pub app_id: String,
    pub display_name: String,
    pub kind: PrincipalKind,
    /// `Application` or `ManagedIdentity` for service principals.
    pub service_principal_type: String,
    pub tenant_id: String,
    /// The user-assigned identity resource id, for managed identities.
    pub managed_identity_resource_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_time: OffsetDateTime,
    #[serde(skip)]
    pub created_at: Instant,
}

#[derive(Clone, Debug)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub tags: BTreeMap<String, String>,
}

impl Subscription {
    pub fn to_arm(&self) -> Value {
        json!({
            "id": format!("/subscriptions/{}", self.id),
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
            "tags": self.tags,
            "subscriptionId": self.id,
            "tenantId": self.tenant_id,
            "displayName": self.display_name,
            "state": "Enabled",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "EnterpriseAgreement_2014-09-01",
                "spendingLimit": "Off"
            }
        })
    }
}

/// A stored ARM resource: its GET body plus what the emulator needs to know about it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub body: Value,
    pub subscription: String,
    pub resource_group: String,
    pub kind: ResourceKind,
    /// Bumped on every PUT so a stale provisioning task does not overwrite a newer state.
    pub generation: u64,
    /// Object id of the kubelet identity (clusters) once provisioned.
    pub kubelet_object_id: Option<String>,
    /// Object id of the system-assigned control-plane identity (clusters).
    pub control_plane_object_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    ResourceGroup,
    Cluster,
    Registry,
}

impl ResourceKind {
    pub fn arm_type(self) -> &'static str {
        match self {
            Self::ResourceGroup => "Microsoft.Resources/resourceGroups",
            Self::Cluster => "Microsoft.ContainerService/managedClusters",
            Self::Registry => "Microsoft.ContainerRegistry/registries",
        }
    }

    /// The operation label segment used by stats (`GET managedClusters`).
    pub fn label(self) -> &'static str {
        match self {
            Self::ResourceGroup => "resourceGroups",
            Self::Cluster => "managedClusters",
            Self::Registry => "registries",
        }
    }

    /// The action prefix (`{prefix}/read|write|delete`).
    pub fn action_prefix(self) -> &'static str {
        match self {
            Self::ResourceGroup => "Microsoft.Resources/subscriptions/resourceGroups",
            Self::Cluster => "Microsoft.ContainerService/managedClusters",
            Self::Registry => "Microsoft.ContainerRegistry/registries",
        }
    }
}

/// A role assignment as stored.
#[derive(Clone, Debug)]
pub struct RoleAssignment {
    pub name: String,
    /// The scope as first written (original case, leading `/`).
    pub scope: String,
    pub role_guid: String,
    pub principal_id: String,
    pub principal_type: String,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub delegated_managed_identity_resource_id: Option<String>,
    pub created_on: OffsetDateTime,
    pub updated_on: OffsetDateTime,
    pub created_by: String,
    pub updated_by: String,
}

impl RoleAssignment {
    pub fn id(&self) -> String {
        let scope = if self.scope == "/" {
            ""
        } else {
            self.scope.as_str()
        };
        format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.name
        )
    }

    /// The role definition's id as ARM answers it for this assignment's scope.
    pub fn role_definition_id(&self) -> String {
        match rbac::subscription_of(&self.scope) {
            Some(sub) => format!(
                "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}",
                self.role_guid
            ),
            None => format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{}",
                self.role_guid
            ),
        }
    }

    pub fn scope_key(&self) -> String {
        rbac::normalize_scope(&self.scope)
    }

    /// The ARM body. `roleDefinitionId` is in the subscription form (`/subscriptions/{s}/providers/…`) for an
    /// assignment inside a subscription, as ARM answers (and as the role-definition list and Resource Graph give
    /// it: azure-cli matches the strings exactly); the tenant form only above subscriptions.
    pub fn to_arm(&self) -> Value {
        let mut properties = json!({
            "roleDefinitionId": self.role_definition_id(),
            "principalId": self.principal_id,
            "principalType": self.principal_type,
            "scope": self.scope,
            "createdOn": rfc3339(self.created_on),
            "updatedOn": rfc3339(self.updated_on),
            "createdBy": self.created_by,
            "updatedBy": self.updated_by,
        });
        if let Some(map) = properties.as_object_mut() {
            if let Some(d) = &self.description {
                map.insert("description".into(), json!(d));
            }
            if let Some(c) = &self.condition {
                map.insert("condition".into(), json!(c));
            }
            if let Some(v) = &self.condition_version {
                map.insert("conditionVersion".into(), json!(v));
            }
            if let Some(d) = &self.delegated_managed_identity_resource_id {
                map.insert("delegatedManagedIdentityResourceId".into(), json!(d));
            }
        }
        json!({
            "id": self.id(),
            "name": self.name,
            "type": "Microsoft.Authorization/roleAssignments",
            "properties": properties,
        })
    }
}

/// A timestamp as ARM writes it: UTC, seven fractional digits (`2026-05-01T10:20:30.1234567Z`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// What a role-assignment condition may test about the assignment being written (`@Request`) or deleted
/// (`@Resource`): its role definition GUID and its principal type.
#[derive(Clone, Copy, Debug)]
pub struct AssignmentFacts<'a> {
    pub role: &'a str,
    /// As given (`ServicePrincipal`, `Group`, …; empty when a request gives none).
    pub principal_type: &'a str,
}

/// One version of a row in Resource Graph's delayed view (`None` = deleted).
#[derive(Clone, Debug)]
struct GraphVersion {
    at: Instant,
    /// Shared: a query's snapshot holds the rows it matched without copying them.
    row: Option<Arc<Value>>,
}

/// Which Resource Graph table a row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GraphTable {
    Resources,
    AuthorizationResources,
}

#[derive(Default)]
pub struct Store {
    pub subscriptions: BTreeMap<String, Subscription>,
    /// Keyed by lower-case resource id.
    pub resources: BTreeMap<String, Resource>,
    /// Keyed by lower-case name (role-assignment names are unique tenant-wide). Shared, so a list's snapshot
    /// holds them without copying. Written only through [`Store::insert_assignment`] and
    /// [`Store::remove_assignment`], which keep the index by principal.
    pub role_assignments: BTreeMap<String, Arc<RoleAssignment>>,
    /// Assignment names (lower case) by principal object id (lower case): a caller's grants without a scan.
    by_principal: HashMap<String, BTreeSet<String>>,
    /// Assignments per subscription (lower case) of their scope: the 4,000 limit checked on every PUT without a
    /// scan of the store.
    per_subscription: HashMap<String, usize>,
    pub role_definitions: BTreeMap<String, RoleDefinition>,
    /// Keyed by object id (lower case).
    pub principals: BTreeMap<String, Principal>,
    /// Security groups by object id (lower case); each is also in `principals` as a `Group`.
    pub groups: BTreeMap<String, Group>,
    /// Microsoft Graph application permissions (app roles, e.g. `Group.Create`) granted to a principal by object
    /// id (lower case): what an admin's consent puts into the `roles` claim of its Graph tokens.
    pub graph_app_roles: BTreeMap<String, BTreeSet<String>>,
    /// How long a group membership change takes to count for RBAC (the managed-identity token cache); kept in
    /// step with `Settings::group_membership_delay_ms` by the app.
    pub membership_delay: Duration,
    graph: BTreeMap<(GraphTable, String), Vec<GraphVersion>>,
}

impl Store {
    pub fn new() -> Self {
        let mut store = Self::default();
        for role in rbac::built_in_roles() {
            store.role_definitions.insert(role.name.clone(), role);
        }
        store
    }

    pub fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions.get(&id.to_ascii_lowercase())
    }

    pub fn resource_group_id(sub: &str, rg: &str) -> String {
        format!("/subscriptions/{sub}/resourceGroups/{rg}")
    }

    pub fn resource_group(&self, sub: &str, rg: &str) -> Option<&Resource> {
        self.resources
            .get(&Self::resource_group_id(sub, rg).to_ascii_lowercase())
    }

    pub fn principal(&self, object_id: &str) -> Option<&Principal> {
        self.principals.get(&object_id.to_ascii_lowercase())
    }

    pub fn principal_by_app_id(&self, app_id: &str) -> Option<&Principal> {
        self.principals
            .values()
            .find(|p| !p.app_id.is_empty() && p.app_id.eq_ignore_ascii_case(app_id))
    }

    pub fn principal_by_resource_id(&self, resource_id: &str) -> Option<&Principal> {
        self.principals.values().find(|p| {
            p.managed_identity_resource_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(resource_id))
        })
    }

    /// Whether `object_id` may perform `action` at `scope`. `request_role` / `existing_role` (the assignment being
    /// written / deleted) feed the constrained-roles condition of role-assignment writes and deletes.
    pub fn is_allowed(
        &self,
        object_id: &str,
        action: &str,
        scope: &str,
        request_role: Option<AssignmentFacts<'_>>,
        existing_role: Option<AssignmentFacts<'_>>,
    ) -> bool {
        self.allowed_by(
            &self.grants_of(object_id),
            action,
            scope,
            request_role,
            existing_role,
        )
    }

    /// The assignments held by `object_id`, its own and those of the groups it belongs to (directly or nested)
    /// as its token sees them (see [`groups::rbac_groups`]): computed once, they answer many
    /// [`Store::allowed_by`] questions (Resource Graph checks every row it returns). Read from the index by
    /// principal: the cost is the holders' own assignments, not the store's.
    pub fn grants_of(&self, object_id: &str) -> Vec<&RoleAssignment> {
        let mut holders: BTreeSet<String> = BTreeSet::from([object_id.to_ascii_lowercase()]);
        if !self.groups.is_empty() {
            let now = Instant::now();
            for g in groups::rbac_groups(&self.groups, object_id, now, self.membership_delay) {
                holders.insert(g.id.to_ascii_lowercase());
            }
        }
        holders
            .iter()
            .flat_map(|h| self.assignments_of(h))
            .map(AsRef::as_ref)
            .collect()
    }

    /// The assignments whose principal is `object_id` itself (not its groups), from the index, by name.
    pub fn assignments_of<'a>(
        &'a self,
        object_id: &str,
    ) -> impl Iterator<Item = &'a Arc<RoleAssignment>> + 'a {
        self.by_principal
            .get(&object_id.to_ascii_lowercase())
            .into_iter()
            .flatten()
            .filter_map(|name| self.role_assignments.get(name))
    }

    /// Whether `object_id` can pull from the registry `registry_id` as the registry's data plane decides it
    /// (ACR's token exchange asks ARM for the caller's permissions on the registry): in
    /// `AbacRepositoryPermissions` mode a role whose data actions allow reading repository content, otherwise
    /// one whose actions allow `registries/pull/read`; at the registry or above; through the principal's own or
    /// its groups' assignments. An assignment with a condition may limit pull to some repositories, so it does
    /// not count as pull on the whole registry. `None` when the registry does not exist.
    pub fn can_pull(&self, object_id: &str, registry_id: &str) -> Option<bool> {
        let registry = self.resources.get(&registry_id.to_ascii_lowercase())?;
        let abac = registry.body["properties"]["roleAssignmentMode"]
            .as_str()
            .is_some_and(|m| m.eq_ignore_ascii_case("AbacRepositoryPermissions"));
        let scope = rbac::normalize_scope(registry_id);
        Some(self.grants_of(object_id).iter().any(|a| {
            a.condition.is_none()
                && rbac::is_at_or_above(&a.scope_key(), &scope)
                && self.role_definitions.get(&a.role_guid).is_some_and(|role| {
                    if abac {
                        role.allows_data(rbac::REPOSITORY_CONTENT_READ)
                    } else {
                        role.allows(rbac::REGISTRY_PULL)
                    }
                })
        }))
    }

    /// Stores an assignment under its lower-case name (replacing one of that name) and indexes it.
    pub fn insert_assignment(&mut self, assignment: Arc<RoleAssignment>) {
        let name = assignment.name.to_ascii_lowercase();
        if let Some(old) = self.role_assignments.remove(&name) {
            self.unindex(&old, &name);
        }
        if let Some(sub) = rbac::subscription_of(&assignment.scope) {
            *self.per_subscription.entry(sub).or_default() += 1;
        }
        self.by_principal
            .entry(assignment.principal_id.to_ascii_lowercase())
            .or_default()
            .insert(name.clone());
        self.role_assignments.insert(name, assignment);
    }

    /// Removes the assignment of this name (any case), if any.
    pub fn remove_assignment(&mut self, name: &str) -> Option<Arc<RoleAssignment>> {
        let name = name.to_ascii_lowercase();
        let removed = self.role_assignments.remove(&name)?;
        self.unindex(&removed, &name);
        Some(removed)
    }

    fn unindex(&mut self, assignment: &RoleAssignment, name: &str) {
        if let Some(sub) = rbac::subscription_of(&assignment.scope)
            && let Some(count) = self.per_subscription.get_mut(&sub)
        {
            *count = count.saturating_sub(1);
        }
        let key = assignment.principal_id.to_ascii_lowercase();
        if let Some(names) = self.by_principal.get_mut(&key) {
            names.remove(name);
            if names.is_empty() {
                self.by_principal.remove(&key);
            }
        }
    }

    /// [`Store::is_allowed`] over a principal's [`Store::grants_of`].
    pub fn allowed_by(
        &self,
        grants: &[&RoleAssignment],
        action: &str,
        scope: &str,
        request_role: Option<AssignmentFacts<'_>>,
        existing_role: Option<AssignmentFacts<'_>>,
    ) -> bool {
        let scope = rbac::normalize_scope(scope);
        let action_lower = action.to_ascii_lowercase();
        grants.iter().any(|a| {
            if !rbac::is_at_or_above(&a.scope_key(), &scope) {
                return false;
            }
            let Some(role) = self.role_definitions.get(&a.role_guid) else {
                return false;
            };
            if !role.allows(action) {
                return false;
            }
            match &a.condition {
                None => true,
                Some(condition) => {
                    let constrained = rbac::parse_constrained_roles(condition);
                    let unreadable = constrained.write.is_none() && constrained.delete.is_none();
                    let (list, types, facts) =
                        if action_lower == "microsoft.authorization/roleassignments/write" {
                            (
                                constrained.write,
                                constrained.write_principal_types,
                                request_role,
                            )
                        } else if action_lower == "microsoft.authorization/roleassignments/delete" {
                            (
                                constrained.delete,
                                constrained.delete_principal_types,
                                existing_role,
                            )
                        } else {
                            return true;
                        };
                    let type_ok = |f: AssignmentFacts<'_>| {
                        types.as_ref().is_none_or(|t| {
                            t.iter().any(|x| x.eq_ignore_ascii_case(f.principal_type))
                        })
                    };
                    match list {
                        // A condition the emulator cannot read never widens role-assignment rights.
                        None => !unreadable,
                        Some(list) => facts.is_some_and(|f| {
                            list.iter().any(|x| x.eq_ignore_ascii_case(f.role)) && type_ok(f)
                        }),
                    }
                }
            }
        })
    }

    /// Whether `object_id` holds any assignment at, above or below `scope`.
    pub fn has_any_access(&self, object_id: &str, scope: &str) -> bool {
        let scope = rbac::normalize_scope(scope);
        self.grants_of(object_id).iter().any(|a| {
            let s = a.scope_key();
            rbac::is_at_or_above(&s, &scope) || rbac::is_at_or_above(&scope, &s)
        })
    }

    /// Records a new version of a row for Resource Graph.
    pub fn graph_write(
        &mut self,
        table: GraphTable,
        id: &str,
        row: Option<Value>,
        now: Instant,
        keep: Duration,
    ) {
        let versions = self
            .graph
            .entry((table, id.to_ascii_lowercase()))
            .or_default();
        versions.push(GraphVersion {
            at: now,
            row: row.map(Arc::new),
        });
        // Versions older than the newest one that is already visible can never be seen again.
        if let Some(cut) = now.checked_sub(keep) {
            let visible = versions.iter().rposition(|v| v.at <= cut);
            if let Some(idx) = visible {
                versions.drain(..idx);
            }
        }
    }

    /// The rows of `table` as Resource Graph sees them at `as_of` (shared, not copied), and how many row
    /// histories were read to find them.
    pub fn graph_rows(&self, table: GraphTable, as_of: Option<Instant>) -> (Vec<Arc<Value>>, u64) {
        let mut examined = 0u64;
        let rows = self
            .graph
            .range((table, String::new())..)
            .take_while(|((t, _), _)| *t == table)
            .filter_map(|(_, versions)| {
                examined += 1;
                let visible = match as_of {
                    Some(cut) => versions.iter().rev().find(|v| v.at <= cut),
                    None => versions.last(),
                };
                visible.and_then(|v| v.row.clone())
            })
            .collect();
        (rows, examined)
    }

    pub fn clear_graph(&mut self) {
        self.graph.clear();
    }

    /// Role assignments whose scope is in subscription `sub` (lower case), from the counter the writes keep.
    pub fn assignments_in_subscription(&self, sub: &str) -> usize {
        self.per_subscription.get(sub).copied().unwrap_or(0)
    }
}

/// The Resource Graph row of a resource (`resources` table): the ARM body plus the columns ARG adds.
pub fn resource_graph_row(resource: &Resource, tenant_id: &str) -> Value {
    let mut row = resource.body.clone();
    if let Some(map) = row.as_object_mut() {
        let ty = map
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_ascii_lowercase();
        map.insert("type".into(), json!(ty));
        map.insert("tenantId".into(), json!(tenant_id));
        map.insert("subscriptionId".into(), json!(resource.subscription));
        map.insert(
            "resourceGroup".into(),
            json!(resource.resource_group.to_ascii_lowercase()),
        );
        map.entry("tags").or_insert_with(|| json!({}));
        map.entry("kind").or_insert_with(|| json!(""));
    }
    row
}

/// The Resource Graph row of a role assignment (`authorizationresources` table).
pub fn assignment_graph_row(assignment: &RoleAssignment, tenant_id: &str) -> Value {
    let mut row = assignment.to_arm();
    if let Some(map) = row.as_object_mut() {
        map.insert(
            "type".into(),
            json!("microsoft.authorization/roleassignments"),
        );
        map.insert("tenantId".into(), json!(tenant_id));
        map.insert(
            "subscriptionId".into(),
            json!(rbac::subscription_of(&assignment.scope).unwrap_or_default()),
        );
        map.insert(
            "resourceGroup".into(),
            json!(
                rbac::resource_group_of(&assignment.scope)
                    .unwrap_or_default()
                    .to_ascii_lowercase()
            ),
        );
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(name: &str, scope: &str) -> Arc<RoleAssignment> {
        Arc::new(RoleAssignment {
            name: name.to_owned(),
            scope: scope.to_owned(),
            role_guid: "7f951dda-4ed3-4680-a7ca-43fe172d538d".to_owned(),
            principal_id: "p1".to_owned(),
            principal_type: "ServicePrincipal".to_owned(),
            description: None,
            condition: None,
            condition_version: None,
            delegated_managed_identity_resource_id: None,
            created_on: OffsetDateTime::UNIX_EPOCH,
            updated_on: OffsetDateTime::UNIX_EPOCH,
            created_by: String::new(),
            updated_by: String::new(),
        })
    }

    #[test]
    fn the_per_subscription_count_follows_inserts_replacements_and_removals() {
        let mut store = Store::new();
        store.insert_assignment(assignment("a", "/subscriptions/S1/resourceGroups/rg"));
        store.insert_assignment(assignment("b", "/subscriptions/s1"));
        store.insert_assignment(assignment("c", "/subscriptions/s2/resourceGroups/rg"));
        store.insert_assignment(assignment(
            "d",
            "/providers/Microsoft.Management/managementGroups/mg",
        ));
        assert_eq!(store.assignments_in_subscription("s1"), 2);
        assert_eq!(store.assignments_in_subscription("s2"), 1);
        // Replacing a name moves its count to the new scope's subscription.
        store.insert_assignment(assignment("B", "/subscriptions/s2"));
        assert_eq!(store.assignments_in_subscription("s1"), 1);
        assert_eq!(store.assignments_in_subscription("s2"), 2);
        assert!(store.remove_assignment("A").is_some());
        assert!(store.remove_assignment("a").is_none());
        assert_eq!(store.assignments_in_subscription("s1"), 0);
        let scanned = store
            .role_assignments
            .values()
            .filter(|a| rbac::subscription_of(&a.scope).as_deref() == Some("s2"))
            .count();
        assert_eq!(store.assignments_in_subscription("s2"), scanned);
    }
}
