//! ARM JSON → domain types. Pure and tolerant of extra fields; the event handler also feeds Azure Resource
//! Notifications bodies (same resource shape) through [`cluster_from_arm`] and [`registry_from_arm`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::core::model::{
    Cluster, ClusterPrincipal, Interner, Registry, ResourceId, RoleAssignment, RoleAssignmentMode,
    RoleDefinition, SharedStr, Tags, role_guid, role_guid_text,
};

mod assignment_page;
pub use assignment_page::{AssignmentSink, PageEnd, read_resource_graph_page};
use assignment_page::{RawAssignment, Slot};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("`{0}` is missing or not a string")]
    Missing(&'static str),
    #[error("`id` is not a valid resource id: {0}")]
    BadId(String),
    #[error("the resource `{id}` is a {found}, not a {expected}")]
    WrongType {
        id: String,
        found: String,
        expected: &'static str,
    },
    #[error("unknown roleAssignmentMode `{0}`")]
    UnknownMode(String),
}

/// A subscription visible to the identity (`GET /subscriptions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub tenant_id: Option<String>,
    pub display_name: Option<String>,
    /// `Enabled`, `Disabled`, `Warned`, `PastDue`, `Deleted`.
    pub state: Option<String>,
}

impl Subscription {
    pub fn is_enabled(&self) -> bool {
        self.state
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("Enabled"))
    }
}

pub const MANAGED_CLUSTER_TYPE: &str = "microsoft.containerservice/managedclusters";
pub const REGISTRY_TYPE: &str = "microsoft.containerregistry/registries";

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = get_ci(cur, key)?;
    }
    cur.as_str()
}

/// Object member by name, exact first, then ignoring ASCII case (Resource Graph and notifications differ
/// from ARM in casing now and then).
fn get_ci<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn parse_id(v: &Value, expected: &'static str) -> Result<ResourceId, WireError> {
    let raw = str_at(v, &["id"]).ok_or(WireError::Missing("id"))?;
    let id = ResourceId::parse(raw).map_err(|e| WireError::BadId(e.to_string()))?;
    let found = id.resource_type().unwrap_or_default();
    let kind = if expected == MANAGED_CLUSTER_TYPE {
        Some(crate::core::model::ArmKind::ManagedCluster)
    } else if expected == REGISTRY_TYPE {
        Some(crate::core::model::ArmKind::Registry)
    } else {
        None
    };
    if found != expected || kind.is_some_and(|k| !id.is_exact(k)) {
        return Err(WireError::WrongType {
            id: raw.to_owned(),
            found,
            expected,
        });
    }
    Ok(id)
}

fn tags(v: &Value) -> Tags {
    // Tag values are strings in ARM; anything else (null, numbers from hand-made bodies) is kept as text
    // rather than dropped, so a selector never silently loses a key.
    get_ci(v, "tags")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (k.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A managed cluster (ARM GET/list item, Resource Graph row, or notification resource body).
/// The principal is the kubelet identity; a cluster without one is a service-principal cluster only when
/// it has no managed identity and `servicePrincipalProfile.clientId` is a real client id (not `msi`).
/// `identity.principalId` (the control plane) is never used.
pub fn cluster_from_arm(v: &Value) -> Result<Cluster, WireError> {
    let id = parse_id(v, MANAGED_CLUSTER_TYPE)?;
    let props = get_ci(v, "properties").unwrap_or(&Value::Null);
    let kubelet = ["identityProfile", "kubeletidentity"];
    let kubelet_object = non_empty(str_at(props, &[kubelet[0], kubelet[1], "objectId"]));
    let kubelet_client = non_empty(str_at(props, &[kubelet[0], kubelet[1], "clientId"]));
    let sp_client = non_empty(str_at(props, &["servicePrincipalProfile", "clientId"]));
    let identity_type = str_at(v, &["identity", "type"]).unwrap_or("None");
    let has_managed_identity = identity_type.to_ascii_lowercase().contains("assigned");
    let principal = match (kubelet_object, sp_client) {
        (Some(object_id), _) => ClusterPrincipal::Kubelet {
            object_id,
            client_id: kubelet_client,
        },
        (None, Some(client_id))
            if !client_id.eq_ignore_ascii_case("msi") && !has_managed_identity =>
        {
            ClusterPrincipal::ServicePrincipal { client_id }
        }
        _ => ClusterPrincipal::NotYetKnown,
    };
    Ok(Cluster {
        location: str_at(v, &["location"]).unwrap_or_default().to_owned(),
        tenant_id: non_empty(str_at(v, &["tenantId"])),
        tags: tags(v),
        provisioning_state: str_at(props, &["provisioningState"])
            .unwrap_or_default()
            .to_owned(),
        principal,
        id,
    })
}

/// A container registry; `properties.roleAssignmentMode` absent means legacy (its documented default).
pub fn registry_from_arm(v: &Value) -> Result<Registry, WireError> {
    let id = parse_id(v, REGISTRY_TYPE)?;
    let mode = match str_at(v, &["properties", "roleAssignmentMode"]).map(str::trim) {
        None | Some("") => RoleAssignmentMode::LegacyRegistryPermissions,
        Some(m) if m.eq_ignore_ascii_case("LegacyRegistryPermissions") => {
            RoleAssignmentMode::LegacyRegistryPermissions
        }
        Some(m) if m.eq_ignore_ascii_case("AbacRepositoryPermissions") => {
            RoleAssignmentMode::AbacRepositoryPermissions
        }
        // An unknown mode could mean AcrPull is not honoured: refuse rather than guess a role.
        Some(other) => return Err(WireError::UnknownMode(other.to_owned())),
    };
    Ok(Registry {
        location: str_at(v, &["location"]).unwrap_or_default().to_owned(),
        tenant_id: non_empty(str_at(v, &["tenantId"])),
        tags: tags(v),
        mode,
        id,
    })
}

const ROLE_ASSIGNMENTS_SEGMENT: &str = "/providers/microsoft.authorization/roleassignments/";

/// A role assignment from ARM or Resource Graph's `authorizationresources`. When `properties.scope` is
/// missing it is derived from the id. One row alone; a listing reads its rows with one
/// [`RoleAssignmentReader`] so that they share the texts they repeat.
pub fn role_assignment_from_arm(v: &Value) -> Result<RoleAssignment, WireError> {
    RoleAssignmentReader::default().read(v)
}

/// Reads the rows of one listing ([`role_assignment_from_arm`]), handing every row the same copy of each
/// scope, role, principal, principal type and description it has already seen. Lives as long as the listing.
#[derive(Debug, Default)]
pub struct RoleAssignmentReader {
    texts: Interner,
}

impl RoleAssignmentReader {
    pub fn read(&mut self, v: &Value) -> Result<RoleAssignment, WireError> {
        let props = get_ci(v, "properties").unwrap_or(&Value::Null);
        let at = |v, key| Slot::from_str(str_at(v, &[key]));
        self.read_raw(&RawAssignment {
            id: at(v, "id"),
            name: at(v, "name"),
            scope: at(props, "scope"),
            role_definition_id: at(props, "roleDefinitionId"),
            principal_id: at(props, "principalId"),
            principal_type: at(props, "principalType"),
            description: at(props, "description"),
            condition: at(props, "condition"),
        })
    }

    fn read_raw(&mut self, raw: &RawAssignment<'_>) -> Result<RoleAssignment, WireError> {
        let id = raw.id.get().ok_or(WireError::Missing("id"))?;
        let Some(pos) = find_ci(id, ROLE_ASSIGNMENTS_SEGMENT) else {
            return Err(WireError::WrongType {
                id: id.to_owned(),
                found: "resource".into(),
                expected: "microsoft.authorization/roleassignments",
            });
        };
        let name = trimmed(raw.name.get())
            .unwrap_or(&id[pos + ROLE_ASSIGNMENTS_SEGMENT.len()..])
            .to_owned();
        let scope = trimmed(raw.scope.get()).unwrap_or_else(|| {
            let s = &id[..pos];
            if s.is_empty() { "/" } else { s }
        });
        let role_definition_id = raw
            .role_definition_id
            .get()
            .ok_or(WireError::Missing("properties.roleDefinitionId"))?;
        let principal_id =
            trimmed(raw.principal_id.get()).ok_or(WireError::Missing("properties.principalId"))?;
        let role = role_guid_text(role_definition_id);
        let role_definition_guid = if role.bytes().any(|b| b.is_ascii_uppercase()) {
            self.texts.intern(&role.to_ascii_lowercase())
        } else {
            self.texts.intern(role)
        };
        Ok(RoleAssignment {
            role_definition_guid,
            principal_id: self.texts.intern(principal_id),
            principal_type: trimmed(raw.principal_type.get()).map(|t| self.texts.intern(t)),
            description: trimmed(raw.description.get()).map(|d| self.texts.intern(d)),
            condition: non_empty(raw.condition.get()),
            scope: self.texts.intern(scope),
            id: SharedStr::from(id),
            name,
        })
    }
}

/// Where `needle` (lower-case ASCII) last starts in `haystack`, ignoring ASCII case, without a lower-cased copy.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    (0..=h.len().checked_sub(n.len())?)
        .rev()
        .find(|&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn trimmed(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// A role definition; the permissions of all its permission blocks are merged.
pub fn role_definition_from_arm(v: &Value) -> Result<RoleDefinition, WireError> {
    let raw_guid = non_empty(str_at(v, &["name"]))
        .or_else(|| non_empty(str_at(v, &["id"])))
        .ok_or(WireError::Missing("name"))?;
    let props = get_ci(v, "properties").unwrap_or(&Value::Null);
    let mut def = RoleDefinition {
        guid: role_guid(&raw_guid),
        role_name: str_at(props, &["roleName"]).unwrap_or_default().to_owned(),
        ..RoleDefinition::default()
    };
    let strings = |p: &Value, key: &str| -> Vec<String> {
        get_ci(p, key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in get_ci(props, "permissions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        def.actions.extend(strings(p, "actions"));
        def.not_actions.extend(strings(p, "notActions"));
        def.data_actions.extend(strings(p, "dataActions"));
        def.not_data_actions.extend(strings(p, "notDataActions"));
    }
    Ok(def)
}

pub fn subscription_from_arm(v: &Value) -> Result<Subscription, WireError> {
    let subscription_id = non_empty(str_at(v, &["subscriptionId"]))
        .or_else(|| {
            str_at(v, &["id"])
                .and_then(|id| ResourceId::parse(id).ok())
                .map(|id| id.subscription_id().to_owned())
        })
        .ok_or(WireError::Missing("subscriptionId"))?;
    Ok(Subscription {
        subscription_id,
        tenant_id: non_empty(str_at(v, &["tenantId"])),
        display_name: non_empty(str_at(v, &["displayName"])),
        state: non_empty(str_at(v, &["state"])),
    })
}

/// The warning for a row that did not convert.
fn skipped_row(what: &str, id: &str, e: &WireError) -> String {
    format!("skipped {what} `{id}`: {e}")
}

/// Converts a page's rows with `parse` into `out`, consuming the page; a row that does not convert is skipped
/// with a warning naming `what` and its id.
pub fn convert_rows<T>(
    rows: Vec<Value>,
    what: &str,
    mut parse: impl FnMut(&Value) -> Result<T, WireError>,
    out: &mut Vec<T>,
    warnings: &mut Vec<String>,
) {
    out.reserve(rows.len());
    for row in rows {
        match parse(&row) {
            Ok(t) => out.push(t),
            Err(e) => {
                let id = str_at(&row, &["id"]).unwrap_or("?");
                warnings.push(skipped_row(what, id, &e));
            }
        }
    }
}

/// Member `key` (any ASCII case) taken out of an object.
fn take_ci(v: &mut Value, key: &str) -> Option<Value> {
    let obj = v.as_object_mut()?;
    if let Some(found) = obj.remove(key) {
        return Some(found);
    }
    let actual = obj.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    obj.remove(&actual)
}

/// One page of an ARM list: its items and the absolute `nextLink`, if any.
pub fn list_page(v: &Value) -> Option<(Vec<Value>, Option<String>)> {
    take_list_page(v.clone())
}

/// [`list_page`] of a page the caller gives up: the items are moved out, not copied.
pub fn take_list_page(mut v: Value) -> Option<(Vec<Value>, Option<String>)> {
    let next = non_empty(str_at(&v, &["nextLink"]));
    match take_ci(&mut v, "value")? {
        Value::Array(items) => Some((items, next)),
        _ => None,
    }
}

/// One page of a Resource Graph answer: rows (`objectArray`, or `table` converted to objects) and the
/// `$skipToken`, if any.
pub fn resource_graph_page(v: &Value) -> Option<(Vec<Value>, Option<String>)> {
    take_resource_graph_page(v.clone())
}

/// [`resource_graph_page`] of a page the caller gives up: `objectArray` rows are moved out, not copied.
pub fn take_resource_graph_page(mut v: Value) -> Option<(Vec<Value>, Option<String>)> {
    let token = non_empty(str_at(&v, &["$skipToken"]));
    let data = take_ci(&mut v, "data")?;
    let rows = if let Value::Array(rows) = data {
        rows
    } else {
        let data = &data;
        // `resultFormat: table`: {columns: [{name}], rows: [[...]]}.
        let columns: Vec<&str> = get_ci(data, "columns")?
            .as_array()?
            .iter()
            .filter_map(|c| str_at(c, &["name"]))
            .collect();
        get_ci(data, "rows")?
            .as_array()?
            .iter()
            .filter_map(Value::as_array)
            .map(|row| {
                Value::Object(
                    columns
                        .iter()
                        .map(|c| (*c).to_owned())
                        .zip(row.iter().cloned())
                        .collect(),
                )
            })
            .collect()
    };
    Some((rows, token))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kubelet_identity_wins_and_control_plane_identity_is_ignored() {
        let v = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
            "location": "westeurope",
            "tags": {"env": "prod", "n": 3, "e": null},
            "identity": {"type": "SystemAssigned", "principalId": "CONTROL-PLANE"},
            "properties": {
                "provisioningState": "Succeeded",
                "servicePrincipalProfile": {"clientId": "msi"},
                "identityProfile": {"kubeletidentity": {"objectId": "kubelet-oid", "clientId": "kubelet-cid", "resourceId": "/x"}}
            }
        });
        let c = cluster_from_arm(&v).unwrap();
        assert_eq!(
            c.principal,
            ClusterPrincipal::Kubelet {
                object_id: "kubelet-oid".into(),
                client_id: Some("kubelet-cid".into())
            }
        );
        assert!(c.is_ready());
        assert_eq!(c.tags.get("ENV"), Some("prod"));
        assert_eq!(c.tags.get("n"), Some("3"));
        assert_eq!(c.tags.get("e"), Some(""));
    }

    #[test]
    fn creating_managed_identity_cluster_has_no_principal_yet() {
        let v = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
            "identity": {"type": "SystemAssigned", "principalId": "CONTROL-PLANE"},
            "properties": {"provisioningState": "Creating", "servicePrincipalProfile": {"clientId": "msi"}}
        });
        let c = cluster_from_arm(&v).unwrap();
        assert_eq!(c.principal, ClusterPrincipal::NotYetKnown);
        assert!(!c.is_ready());
    }

    #[test]
    fn wrong_types_and_garbage_are_errors_not_panics() {
        let registry = json!({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r"});
        assert!(matches!(
            cluster_from_arm(&registry),
            Err(WireError::WrongType { .. })
        ));
        for garbage in [
            json!(null),
            json!(3),
            json!([]),
            json!({"id": 5}),
            json!({"id": "x"}),
        ] {
            assert!(cluster_from_arm(&garbage).is_err());
            assert!(registry_from_arm(&garbage).is_err());
            assert!(role_assignment_from_arm(&garbage).is_err());
        }
        let unknown_mode = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r",
            "properties": {"roleAssignmentMode": "Something"}
        });
        assert_eq!(
            registry_from_arm(&unknown_mode),
            Err(WireError::UnknownMode("Something".into()))
        );
    }

    #[test]
    fn role_assignment_scope_is_derived_from_the_id_when_absent() {
        let v = json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments/n1",
            "properties": {"roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D", "principalId": "p"}
        });
        let a = role_assignment_from_arm(&v).unwrap();
        assert_eq!(a.scope, "/subscriptions/s/resourceGroups/rg");
        assert_eq!(a.name, "n1");
        assert_eq!(a.role_definition_guid, crate::core::model::ACR_PULL_GUID);
    }

    #[test]
    fn rows_of_one_listing_share_the_texts_they_repeat_and_keep_their_own() {
        let row = |name: &str, case: &str| {
            json!({
                "id": format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/{case}/{name}"),
                "properties": {
                    "roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D",
                    "principalId": "p", "principalType": "ServicePrincipal",
                    "description": " managed-by: acr-autoattach cluster=/x ",
                }
            })
        };
        let mut reader = RoleAssignmentReader::default();
        let a = reader.read(&row("n1", "roleAssignments")).unwrap();
        let b = reader.read(&row("n2", "ROLEASSIGNMENTS")).unwrap();
        for (x, y) in [
            (&a.scope, &b.scope),
            (&a.role_definition_guid, &b.role_definition_guid),
            (&a.principal_id, &b.principal_id),
        ] {
            assert!(std::ptr::eq(x.as_str(), y.as_str()), "{x} not shared");
        }
        assert_eq!(
            a.scope,
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r"
        );
        assert_eq!(a.role_definition_guid, crate::core::model::ACR_PULL_GUID);
        assert_eq!(
            a.description.as_deref(),
            Some("managed-by: acr-autoattach cluster=/x")
        );
        assert_eq!((a.name.as_str(), b.name.as_str()), ("n1", "n2"));
        assert!(b.id.ends_with("/ROLEASSIGNMENTS/n2"));
        assert_eq!(
            role_assignment_from_arm(&row("n1", "roleAssignments")).unwrap(),
            a
        );
    }

    #[test]
    fn role_definitions_merge_permission_blocks() {
        let v = json!({
            "id": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/ABC",
            "name": "ABC",
            "properties": {"roleName": "puller", "permissions": [
                {"actions": ["Microsoft.ContainerRegistry/registries/pull/read"], "notActions": [], "dataActions": []},
                {"actions": [], "dataActions": ["Microsoft.ContainerRegistry/registries/repositories/content/read"], "notDataActions": ["x"]}
            ]}
        });
        let d = role_definition_from_arm(&v).unwrap();
        assert_eq!(d.guid, "abc");
        assert_eq!(
            d.actions,
            vec!["Microsoft.ContainerRegistry/registries/pull/read"]
        );
        assert_eq!(d.data_actions.len(), 1);
        assert_eq!(d.not_data_actions, vec!["x"]);
    }

    #[test]
    fn resource_graph_table_format_is_converted() {
        let v = json!({"data": {"columns": [{"name": "id"}, {"name": "name"}], "rows": [["/subscriptions/s", "n"]]}, "$skipToken": "t"});
        let (rows, token) = resource_graph_page(&v).unwrap();
        assert_eq!(rows, vec![json!({"id": "/subscriptions/s", "name": "n"})]);
        assert_eq!(token.as_deref(), Some("t"));
    }

    #[test]
    fn subscriptions_parse() {
        let s = subscription_from_arm(
            &json!({"id": "/subscriptions/abc", "tenantId": "t", "state": "Disabled"}),
        )
        .unwrap();
        assert_eq!(s.subscription_id, "abc");
        assert!(!s.is_enabled());
    }
}
