//! The wire models against the published REST API examples and schema, read in place from
//! `../shared/azure-specs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use acr_autoattach::azure::wire::{
    list_page, resource_graph_page, role_assignment_from_arm, role_definition_from_arm,
};
use acr_autoattach::azure::{cluster_from_arm, registry_from_arm};
use acr_autoattach::core::model::{ClusterPrincipal, PullRole, ResourceId, RoleAssignmentMode};
use acr_autoattach::core::planner::AssignmentSpec;
use serde_json::Value;

const SPECS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/azure-specs/specification"
);

/// The spec file, or `None` (with a notice) when the shared data is absent outside CI; under `CI=true` a
/// missing file fails the test.
fn spec(relative: &str) -> Option<Value> {
    let path: PathBuf = Path::new(SPECS).join(relative);
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{} is missing under CI: {e}",
                path.display()
            );
            eprintln!("skipping: {} not readable ({e})", path.display());
            None
        }
    }
}

const AKS: &str =
    "containerservice/resource-manager/Microsoft.ContainerService/aks/stable/2026-02-01/examples";
const ACR: &str = "containerregistry/resource-manager/Microsoft.ContainerRegistry/Registry/stable/2025-11-01/examples";
const AUTHZ: &str = "authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01";

#[test]
fn managed_cluster_examples() {
    let Some(get) = spec(&format!("{AKS}/ManagedClustersGet.json")) else {
        return;
    };
    let c = cluster_from_arm(&get["responses"]["200"]["body"]).unwrap();
    assert_eq!(c.id.name(), "clustername1");
    assert_eq!(c.location, "location1");
    assert_eq!(c.tags.get("tier"), Some("production"));
    assert_eq!(c.tags.get("archv2"), Some(""));
    assert_eq!(c.provisioning_state, "Succeeded");
    // No managed identity and a real client id: a service-principal cluster.
    assert_eq!(
        c.principal,
        ClusterPrincipal::ServicePrincipal {
            client_id: "clientid".into()
        }
    );
    assert!(c.is_ready());

    let Some(create) = spec(&format!("{AKS}/ManagedClustersCreate_Update.json")) else {
        return;
    };
    for (status, state) in [("200", "Succeeded"), ("201", "Creating")] {
        let c = cluster_from_arm(&create["responses"][status]["body"]).unwrap();
        assert_eq!(c.provisioning_state, state);
        // A user-assigned (control-plane) identity and no kubelet identity in the body: the principal is
        // not known yet, and `identity.userAssignedIdentities[*].principalId` is never taken for it.
        assert_eq!(c.principal, ClusterPrincipal::NotYetKnown, "{status}");
        assert!(!c.is_ready());
    }

    for file in [
        "ManagedClustersList.json",
        "ManagedClustersListByResourceGroup.json",
    ] {
        let Some(list) = spec(&format!("{AKS}/{file}")) else {
            return;
        };
        let (items, next) = list_page(&list["responses"]["200"]["body"]).unwrap();
        assert!(!items.is_empty());
        assert_eq!(next, None);
        for item in &items {
            let c = cluster_from_arm(item).unwrap();
            assert_eq!(
                c.id.resource_type().as_deref(),
                Some("microsoft.containerservice/managedclusters")
            );
        }
    }
}

#[test]
fn registry_examples() {
    let Some(get) = spec(&format!("{ACR}/RegistryGet.json")) else {
        return;
    };
    let r = registry_from_arm(&get["responses"]["200"]["body"]).unwrap();
    assert_eq!(r.mode, RoleAssignmentMode::LegacyRegistryPermissions);
    assert_eq!(r.location, "westus");
    assert_eq!(r.tags.get("KEY"), Some("value"));

    let Some(abac) = spec(&format!("{ACR}/RegistryCreateAbac.json")) else {
        return;
    };
    for (status, body) in abac["responses"].as_object().unwrap() {
        let r = registry_from_arm(&body["body"]).unwrap();
        assert_eq!(
            r.mode,
            RoleAssignmentMode::AbacRepositoryPermissions,
            "{status}"
        );
        assert_eq!(PullRole::for_mode(r.mode), PullRole::RepositoryReader);
    }

    for file in ["RegistryList.json", "RegistryListByResourceGroup.json"] {
        let Some(list) = spec(&format!("{ACR}/{file}")) else {
            return;
        };
        let (items, _) = list_page(&list["responses"]["200"]["body"]).unwrap();
        assert!(!items.is_empty());
        for item in &items {
            registry_from_arm(item).unwrap();
        }
    }
}

#[test]
fn role_assignment_examples() {
    let files = [
        "RoleAssignments_CreateById.json",
        "RoleAssignments_CreateForResource.json",
        "RoleAssignments_CreateForResourceGroup.json",
        "RoleAssignments_CreateForSubscription.json",
        "RoleAssignments_Delete.json",
        "RoleAssignments_DeleteById.json",
        "RoleAssignments_Get.json",
        "RoleAssignments_GetById.json",
    ];
    let mut parsed = 0;
    for file in files {
        let Some(example) = spec(&format!("{AUTHZ}/examples/{file}")) else {
            return;
        };
        for (status, response) in example["responses"].as_object().unwrap() {
            let Some(body) = response.get("body").filter(|b| b.get("id").is_some()) else {
                assert_eq!(status, "204", "{file}: only 204 has no body");
                continue;
            };
            let a = role_assignment_from_arm(body).unwrap();
            assert_eq!(
                a.role_definition_guid, "0b5fe924-9a61-425c-96af-cfe6e287ca2d",
                "{file}"
            );
            assert_eq!(a.principal_id, "ce2ce14e-85d7-4629-bdbc-454d0519d987");
            assert_eq!(a.principal_type.as_deref(), Some("User"));
            assert!(
                a.id.starts_with(a.scope.as_str()),
                "{file}: the id lies under its scope"
            );
            assert!(a.id.ends_with(&a.name));
            assert!(!a.is_owned());
            parsed += 1;
        }
    }
    assert!(parsed >= 12);

    for file in [
        "RoleAssignments_ListForResourceGroup.json",
        "RoleAssignments_ListForScope.json",
    ] {
        let Some(list) = spec(&format!("{AUTHZ}/examples/{file}")) else {
            return;
        };
        let (items, _) = list_page(&list["responses"]["200"]["body"]).unwrap();
        assert!(!items.is_empty());
        for item in &items {
            role_assignment_from_arm(item).unwrap();
        }
    }
}

/// Our PUT body against the OpenAPI definition: required fields present, nothing unknown, principalType one
/// of its enum values.
#[test]
fn role_assignment_put_body_matches_the_schema() {
    let Some(swagger) = spec(&format!("{AUTHZ}/authorization-RoleAssignmentsCalls.json")) else {
        return;
    };
    let defs = &swagger["definitions"];
    let create_required: Vec<&str> = defs["RoleAssignmentCreateParameters"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let props = &defs["RoleAssignmentProperties"];
    let known: Vec<&str> = props["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let required: Vec<&str> = props["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let principal_types: Vec<&str> = props["properties"]["principalType"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();

    let cluster = ResourceId::parse(
        "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks",
    )
    .unwrap();
    let registry = ResourceId::parse(
        "/subscriptions/s2/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr",
    )
    .unwrap();
    let body = AssignmentSpec::new(
        &registry,
        "ce2ce14e-85d7-4629-bdbc-454d0519d987",
        PullRole::AcrPull,
        &cluster,
    )
    .request_body();
    for key in create_required {
        assert!(body.get(key).is_some(), "missing {key}");
    }
    let sent = body["properties"].as_object().unwrap();
    for key in &required {
        assert!(sent.contains_key(*key), "missing properties.{key}");
    }
    for key in sent.keys() {
        assert!(known.contains(&key.as_str()), "unknown properties.{key}");
    }
    assert!(principal_types.contains(&sent["principalType"].as_str().unwrap()));
    // The full id form, in the registry's subscription (arm.md).
    assert_eq!(
        sent["roleDefinitionId"],
        "/subscriptions/s2/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"
    );
}

#[test]
fn resource_graph_examples() {
    let files = [
        (
            "ResourceGraph/stable/2024-04-01/examples/ResourcesBasicQuery.json",
            false,
        ),
        (
            "ResourceGraph/stable/2024-04-01/examples/ResourcesMgBasicQuery.json",
            false,
        ),
        (
            "ResourceGraph/stable/2024-04-01/examples/ResourcesNextPageQuery.json",
            true,
        ),
        (
            "ResourceGraph/stable/2024-04-01/examples/ResourcesTenantBasicQuery.json",
            false,
        ),
        (
            "stable/2024-04-01/examples/ResourcesFirstPageQuery.json",
            true,
        ),
    ];
    for (file, has_token) in files {
        let path = format!("resourcegraph/resource-manager/Microsoft.ResourceGraph/{file}");
        let Some(example) = spec(&path) else { return };
        let body = &example["responses"]["200"]["body"];
        let (rows, token) = resource_graph_page(body).unwrap();
        assert_eq!(rows.len() as u64, body["count"].as_u64().unwrap(), "{file}");
        assert_eq!(token.is_some(), has_token, "{file}");
        assert!(rows.iter().all(|r| {
            r["id"]
                .as_str()
                .is_some_and(|id| ResourceId::parse(id).is_ok())
        }));
    }
}

#[test]
fn role_definitions_in_arm_shape() {
    // No role-definition example ships in the specs; this is the documented ARM shape of a custom role.
    let body = serde_json::json!({
        "id": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/11111111-2222-3333-4444-555555555555",
        "name": "11111111-2222-3333-4444-555555555555",
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": "registry puller",
            "type": "CustomRole",
            "permissions": [{"actions": ["Microsoft.ContainerRegistry/registries/*/read"], "notActions": [],
                             "dataActions": [], "notDataActions": []}],
            "assignableScopes": ["/subscriptions/s"]
        }
    });
    let d = role_definition_from_arm(&body).unwrap();
    assert_eq!(d.guid, "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        d.actions,
        vec!["Microsoft.ContainerRegistry/registries/*/read"]
    );
}
