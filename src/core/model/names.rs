//! Deterministic assignment names, role-assignment ids and the PUT body.

use uuid::Uuid;

use super::{PullRole, ResourceId};

/// Fixed namespace for deterministic assignment names (UUID v5). Never change it: names already in Azure
/// depend on it.
pub const ASSIGNMENT_NAME_NAMESPACE: Uuid =
    Uuid::from_u128(0x6f1c_2a7e_5d3b_4c8a_9e21_7b0d_3f4a_ac12);

/// The deterministic name of the assignment of `role` on `registry` to `principal_id`: the same pair always
/// maps to the same name, so a retried or duplicated PUT is idempotent.
pub fn assignment_name(registry: &ResourceId, principal_id: &str, role: PullRole) -> Uuid {
    // `{registry id}|{principal id}|{role definition GUID}`, lower-cased (the GUID already is).
    let mut input = [
        registry.as_str(),
        "|",
        principal_id.trim(),
        "|",
        role.definition_guid(),
    ]
    .concat();
    input.make_ascii_lowercase();
    Uuid::new_v5(&ASSIGNMENT_NAME_NAMESPACE, input.as_bytes())
}

/// `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`: a role assignment's full id.
pub fn role_assignment_id(scope: &ResourceId, name: Uuid) -> String {
    format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}")
}

/// The body of every role-assignment PUT this project sends (arm.md): the full role definition id, the
/// principal, `principalType: ServicePrincipal` (skips the directory look-up that fails while a new kubelet
/// identity replicates) and the ownership description.
pub fn role_assignment_body(
    role_definition_id: &str,
    principal_id: &str,
    description: &str,
) -> serde_json::Value {
    serde_json::json!({
        "properties": {
            "roleDefinitionId": role_definition_id,
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
            "description": description,
        }
    })
}
