//! Role assignments: the spec's examples replay, the OpenAPI schema's rules, ARM's conflict, replication and
//! limit semantics, list filters and paging, and authorization.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::collections::BTreeSet;
use std::time::Duration;

use arm_common::{ASSIGNMENTS, Harness, shared, shared_dir};
use azure_emulator::{
    EmulatorConfig, HandlerRights, PrincipalKind, PrincipalSpec, SubscriptionConfig, rbac,
};
use serde_json::{Value, json};

const EXAMPLES: &str = "azure-specs/specification/authorization/resource-manager/Microsoft.Authorization/stable/2022-04-01";

fn assignment_url(scope: &str, name: &str) -> String {
    format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"
    )
}

/// `actual` has every key of `expected` (recursively) with a value of the same JSON type.
fn assert_shape(expected: &Value, actual: &Value, at: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let Some(av) = a.get(k) else {
                    panic!("{at}.{k} missing in {actual}")
                };
                assert_shape(v, av, &format!("{at}.{k}"));
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if let (Some(first), false) = (e.first(), a.is_empty()) {
                for item in a {
                    assert_shape(first, item, &format!("{at}[]"));
                }
            }
        }
        (e, a) => assert_eq!(
            std::mem::discriminant(e),
            std::mem::discriminant(a),
            "{at}: {e} vs {a}"
        ),
    }
}

/// The documented assignment's identifying fields equal ours (role definition compared by GUID, as arm.md says).
fn assert_same_assignment(expected: &Value, actual: &Value) {
    for key in ["id", "name", "type"] {
        assert_eq!(expected[key], actual[key], "{key}");
    }
    for key in ["principalId", "principalType", "scope"] {
        assert_eq!(
            expected["properties"][key], actual["properties"][key],
            "properties.{key}"
        );
    }
    assert_eq!(
        rbac::role_definition_guid(expected["properties"]["roleDefinitionId"].as_str().unwrap()),
        rbac::role_definition_guid(actual["properties"]["roleDefinitionId"].as_str().unwrap())
    );
}

async fn example_harness() -> Harness {
    let mut config = EmulatorConfig::for_tests();
    config.subscriptions.push(SubscriptionConfig::new(
        "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2",
        config.default_tenant.clone(),
    ));
    config.handler_rights = HandlerRights::None;
    let mut h = Harness::start(config).await;
    h.sub = "a925f2f7-5c63-4b7b-8799-25a5f97bc3b2".into();
    h.create_rg("testrg").await;
    h.emu.create_principal(PrincipalSpec {
        object_id: Some("ce2ce14e-85d7-4629-bdbc-454d0519d987".into()),
        ..PrincipalSpec::user("example user")
    });
    // The examples use a custom role; create it through ARM as a user would.
    let role = h
        .put(
            &h.admin(),
            &format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/0b5fe924-9a61-425c-96af-cfe6e287ca2d?api-version=2022-04-01", h.sub),
            &json!({"properties": {"roleName": "example role", "permissions": [{"actions": ["*/read"]}], "assignableScopes": [format!("/subscriptions/{}", h.sub)]}}),
        )
        .await;
    assert_eq!(role.status, 201, "{}", role.body);
    h
}

/// Creates an assignment exactly as described by a documented response body.
async fn seed(h: &Harness, documented: &Value) {
    let scope = documented["properties"]["scope"].as_str().unwrap();
    let name = documented["name"].as_str().unwrap();
    let a = h
        .put(
            &h.admin(),
            &assignment_url(scope, name),
            &json!({"properties": {
                "roleDefinitionId": documented["properties"]["roleDefinitionId"],
                "principalId": documented["properties"]["principalId"],
                "principalType": documented["properties"]["principalType"],
            }}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test]
async fn every_role_assignment_example_replays() {
    let Some(dir) = shared_dir(&format!("{EXAMPLES}/examples")) else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 10, "the ten RoleAssignments_*.json examples");
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let example: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let params = &example["parameters"];
        let responses = &example["responses"];
        let version = params["api-version"].as_str().unwrap();
        let path = match (
            params.get("roleAssignmentId"),
            params.get("scope"),
            params.get("subscriptionId"),
        ) {
            (Some(id), _, _) => format!("/{}", id.as_str().unwrap()),
            (None, Some(scope), _) => {
                let base = format!(
                    "/{}/providers/Microsoft.Authorization/roleAssignments",
                    scope.as_str().unwrap()
                );
                match params.get("roleAssignmentName") {
                    Some(n) => format!("{base}/{}", n.as_str().unwrap()),
                    None => base,
                }
            }
            (None, None, Some(sub)) => format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Authorization/roleAssignments",
                sub.as_str().unwrap(),
                params["resourceGroupName"].as_str().unwrap()
            ),
            _ => panic!("{name}: unknown parameter shape"),
        };
        let url = format!("{path}?api-version={version}");
        let h = example_harness().await;
        if name.contains("_Create") {
            let body = &params["parameters"];
            let first = h.put(&h.admin(), &url, body).await;
            assert_eq!(first.status, 201, "{name}: {}", first.body);
            assert_shape(&responses["201"]["body"], &first.body, &name);
            assert_same_assignment(&responses["201"]["body"], &first.body);
            let again = h.put(&h.admin(), &url, body).await;
            assert_eq!(again.status, 200, "{name} re-PUT: {}", again.body);
            assert_shape(&responses["200"]["body"], &again.body, &name);
            assert_same_assignment(&responses["200"]["body"], &again.body);
        } else if name.contains("_Delete") {
            seed(&h, &responses["200"]["body"]).await;
            let first = h.delete(&h.admin(), &url).await;
            assert_eq!(first.status, 200, "{name}");
            assert_shape(&responses["200"]["body"], &first.body, &name);
            assert_same_assignment(&responses["200"]["body"], &first.body);
            let second = h.delete(&h.admin(), &url).await;
            assert_eq!(second.status, 204, "{name}");
            assert_eq!(second.body, Value::Null);
        } else if name.contains("_Get") {
            seed(&h, &responses["200"]["body"]).await;
            let got = h.get(&h.admin(), &url).await;
            assert_eq!(got.status, 200, "{name}: {}", got.body);
            assert_shape(&responses["200"]["body"], &got.body, &name);
            assert_same_assignment(&responses["200"]["body"], &got.body);
        } else if name.contains("_List") {
            let documented = responses["200"]["body"]["value"].as_array().unwrap();
            for item in documented {
                seed(&h, item).await;
            }
            let listed = h.get(&h.admin(), &url).await;
            assert_eq!(listed.status, 200, "{name}: {}", listed.body);
            assert_shape(&responses["200"]["body"], &listed.body, &name);
            let ours = listed.body["value"].as_array().unwrap();
            for item in documented {
                let mine = ours
                    .iter()
                    .find(|o| o["id"] == item["id"])
                    .unwrap_or_else(|| panic!("{name}: {} not listed", item["id"]));
                assert_same_assignment(item, mine);
            }
            // Anything else listed is the admin's own Owner assignment that lets this test run.
            for extra in ours
                .iter()
                .filter(|o| !documented.iter().any(|d| d["id"] == o["id"]))
            {
                assert_eq!(
                    extra["properties"]["principalId"],
                    h.emu.admin_principal_id(),
                    "{name}: unexpected {extra}"
                );
            }
        } else {
            panic!("{name}: unrecognised example");
        }
    }
}

#[tokio::test]
async fn bodies_the_schema_rejects_get_400() {
    let Some(spec) = shared(&format!(
        "{EXAMPLES}/authorization-RoleAssignmentsCalls.json"
    )) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let defs = &spec["definitions"];
    let required_outer: Vec<String> =
        serde_json::from_value(defs["RoleAssignmentCreateParameters"]["required"].clone()).unwrap();
    let required_inner: Vec<String> =
        serde_json::from_value(defs["RoleAssignmentProperties"]["required"].clone()).unwrap();
    let enum_values: Vec<String> = serde_json::from_value(
        defs["RoleAssignmentProperties"]["properties"]["principalType"]["enum"].clone(),
    )
    .unwrap();
    assert_eq!(required_outer, ["properties"]);

    let h = Harness::default().await;
    h.create_rg("rg").await;
    let scope = h.rg_id("rg");
    let user = h.emu.create_user("u");
    let valid = json!({"properties": {"roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}", h.sub, rbac::READER), "principalId": user.object_id}});

    for field in &required_outer {
        let mut body = valid.clone();
        body.as_object_mut().unwrap().remove(field);
        let a = h
            .put(
                &h.admin(),
                &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
                &body,
            )
            .await;
        assert_eq!(a.status, 400, "without {field}: {}", a.body);
    }
    for field in &required_inner {
        let mut body = valid.clone();
        body["properties"].as_object_mut().unwrap().remove(field);
        let a = h
            .put(
                &h.admin(),
                &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
                &body,
            )
            .await;
        assert_eq!(a.status, 400, "without properties.{field}: {}", a.body);
        assert!(a.message().contains(field.as_str()), "{}", a.message());
    }
    for (bad_body, why) in [
        (
            json!({"properties": {"roleDefinitionId": 5, "principalId": user.object_id}}),
            "roleDefinitionId not a string",
        ),
        (
            json!({"properties": {"roleDefinitionId": valid["properties"]["roleDefinitionId"], "principalId": user.object_id, "principalType": "Robot"}}),
            "principalType outside the enum",
        ),
        (
            json!({"properties": {"roleDefinitionId": valid["properties"]["roleDefinitionId"], "principalId": user.object_id, "description": ["x"]}}),
            "description not a string",
        ),
        (json!({"properties": "x"}), "properties not an object"),
        (json!([1, 2]), "not an object"),
    ] {
        let a = h
            .put(
                &h.admin(),
                &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
                &bad_body,
            )
            .await;
        assert_eq!(a.status, 400, "{why}: {}", a.body);
    }
    let not_json = h
        .http
        .put(h.url(&assignment_url(&scope, &uuid::Uuid::new_v4().to_string())))
        .bearer_auth(h.admin())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let bad_name = h
        .put(&h.admin(), &assignment_url(&scope, "not-a-guid"), &valid)
        .await;
    assert_eq!(
        (bad_name.status, bad_name.code()),
        (400, "InvalidRoleAssignmentId")
    );

    // Every enum value is accepted for a principal of that kind.
    for value in &enum_values {
        let kind = match value.as_str() {
            "User" => PrincipalKind::User,
            "Group" | "ForeignGroup" => PrincipalKind::Group,
            _ => PrincipalKind::ServicePrincipal,
        };
        let p = h.emu.create_principal(PrincipalSpec {
            kind,
            ..PrincipalSpec::service_principal(value.clone())
        });
        let mut body = valid.clone();
        body["properties"]["principalId"] = json!(p.object_id);
        body["properties"]["principalType"] = json!(value);
        let a = h
            .put(
                &h.admin(),
                &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
                &body,
            )
            .await;
        assert_eq!(a.status, 201, "{value}: {}", a.body);
        assert_eq!(a.body["properties"]["principalType"], *value);
    }
    // Without principalType the directory decides (the spec's default is User; ours resolves the real type).
    let sp = h.emu.create_service_principal("sp");
    let mut body = valid.clone();
    body["properties"]["principalId"] = json!(sp.object_id);
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body,
        )
        .await;
    assert_eq!(a.body["properties"]["principalType"], "ServicePrincipal");
    // A declared type that contradicts the directory is refused.
    body["properties"]["principalType"] = json!("User");
    body["properties"]["roleDefinitionId"] = json!(format!(
        "/providers/Microsoft.Authorization/roleDefinitions/{}",
        rbac::ACR_PULL
    ));
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body,
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "UnmatchedPrincipalType"));
    // An unknown role definition.
    body["properties"]["principalType"] = json!("ServicePrincipal");
    body["properties"]["roleDefinitionId"] = json!(
        "/providers/Microsoft.Authorization/roleDefinitions/00000000-1111-4222-8333-444444444444"
    );
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body,
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "RoleDefinitionDoesNotExist"));
}

#[tokio::test]
async fn conflicts_and_limits() {
    let mut config = EmulatorConfig::for_tests();
    config.handler_rights = HandlerRights::None;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrconf", json!({})).await;
    let scope = h.registry_id("rg", "acrconf");
    let sp = h.emu.create_service_principal("kubelet");
    let body = |principal: &str, role: &str| json!({"properties": {"roleDefinitionId": format!("/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/{role}"), "principalId": principal, "principalType": "ServicePrincipal"}});
    let first = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        h.put(
            &h.admin(),
            &assignment_url(&scope, &first),
            &body(&sp.object_id, rbac::ACR_PULL)
        )
        .await
        .status,
        201
    );
    // Same principal + role + scope under another name.
    let dup = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body(&sp.object_id, rbac::ACR_PULL),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (409, "RoleAssignmentExists"));
    assert_eq!(dup.message(), "The role assignment already exists.");
    // Same name, another principal (or another scope): names are unique tenant-wide.
    let other = h.emu.create_service_principal("other");
    let upd = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &first),
            &body(&other.object_id, rbac::ACR_PULL),
        )
        .await;
    assert_eq!(
        (upd.status, upd.code()),
        (409, "RoleAssignmentUpdateNotPermitted")
    );
    let moved = h
        .put(
            &h.admin(),
            &assignment_url(&h.rg_id("rg"), &first),
            &body(&sp.object_id, rbac::ACR_PULL),
        )
        .await;
    assert_eq!(
        (moved.status, moved.code()),
        (409, "RoleAssignmentUpdateNotPermitted")
    );
    // Identical re-PUT: 200.
    assert_eq!(
        h.put(
            &h.admin(),
            &assignment_url(&scope, &first),
            &body(&sp.object_id, rbac::ACR_PULL)
        )
        .await
        .status,
        200
    );

    // The per-subscription limit.
    let existing = {
        let list = h.get(&h.admin(), &format!("/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}", h.sub)).await;
        list.body["value"].as_array().unwrap().len()
    };
    h.emu
        .update_settings(|s| s.role_assignment_limit = existing + 1);
    let p2 = h.emu.create_service_principal("p2");
    assert_eq!(
        h.put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body(&p2.object_id, rbac::ACR_PULL)
        )
        .await
        .status,
        201
    );
    let over = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &body(&p2.object_id, rbac::READER),
        )
        .await;
    assert_eq!(
        (over.status, over.code()),
        (400, "RoleAssignmentLimitExceeded")
    );
}

#[tokio::test]
async fn the_real_limit_is_4000_per_subscription() {
    let mut config = EmulatorConfig::for_tests();
    config.handler_rights = HandlerRights::None;
    let h = Harness::start(config).await;
    assert_eq!(h.emu.settings().role_assignment_limit, 4_000);
    h.create_rg("rg").await;
    let scope = h.rg_id("rg");
    // Fill up to the limit directly (setup), then the 4,001st PUT through ARM is refused.
    let already = 1; // the admin's Owner assignment
    for _ in already..4_000 {
        let p = uuid::Uuid::new_v4().to_string();
        h.emu.grant(&p, rbac::ACR_PULL, &scope);
    }
    let p = h.emu.create_service_principal("one too many");
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", rbac::ACR_PULL), "principalId": p.object_id, "principalType": "ServicePrincipal"}}),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "RoleAssignmentLimitExceeded"));
}

#[tokio::test]
async fn principal_not_found_until_replicated_unless_service_principal() {
    let h = Harness::default().await;
    h.emu.update_settings(|s| s.principal_replication_ms = 600);
    h.create_rg("rg").await;
    h.create_registry("rg", "acrrepl", json!({})).await;
    h.create_cluster("rg", "fresh", json!({})).await;
    let cluster = h.wait_succeeded("rg", "fresh").await;
    let kubelet = cluster["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap()
        .to_owned();
    let scope = h.registry_id("rg", "acrrepl");
    let role = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        h.sub,
        rbac::ACR_PULL
    );
    let without = json!({"properties": {"roleDefinitionId": role, "principalId": kubelet}});
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &without,
        )
        .await;
    assert_eq!(
        (a.status, a.code()),
        (400, "PrincipalNotFound"),
        "{}",
        a.body
    );
    assert!(a.message().contains(&kubelet.replace('-', "")));
    assert!(a.message().contains("replication delay"));
    let with = json!({"properties": {"roleDefinitionId": role, "principalId": kubelet, "principalType": "ServicePrincipal"}});
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &with,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    // After the window the directory knows it (another role, so no duplicate).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let reader = json!({"properties": {"roleDefinitionId": format!("/providers/Microsoft.Authorization/roleDefinitions/{}", rbac::READER), "principalId": kubelet}});
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &reader,
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["properties"]["principalType"], "ServicePrincipal");
    // Deleting the cluster deletes its kubelet identity; the assignments stay listed, as in Azure.
    let del = h
        .delete(
            &h.admin(),
            &format!("{}?api-version=2026-02-01", h.cluster_id("rg", "fresh")),
        )
        .await;
    assert_eq!(del.status, 202);
    assert!(h.emu.principal(&kubelet).is_none());
    let listed = h.get(&h.admin(), &format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter=atScope()")).await;
    let of_kubelet = listed.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["properties"]["principalId"] == kubelet.as_str())
        .count();
    assert_eq!(of_kubelet, 2);
    // A principal that does not exist at all is never found without principalType.
    let ghost = json!({"properties": {"roleDefinitionId": role, "principalId": uuid::Uuid::new_v4().to_string()}});
    let a = h
        .put(
            &h.admin(),
            &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
            &ghost,
        )
        .await;
    assert_eq!(a.code(), "PrincipalNotFound");
}

#[tokio::test]
async fn list_filters_and_paging_by_next_link() {
    let mut config = EmulatorConfig::for_tests();
    config.settings.role_assignment_page_size = 2;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    h.create_rg("other").await;
    h.create_registry("rg", "acrlist", json!({})).await;
    let registry = h.registry_id("rg", "acrlist");
    let p = h.emu.create_service_principal("p");
    let q = h.emu.create_service_principal("q");
    let sub_scope = format!("/subscriptions/{}", h.sub);
    let at_registry = h.emu.grant(&p.object_id, rbac::ACR_PULL, &registry);
    let at_rg = h.emu.grant(&q.object_id, rbac::READER, &h.rg_id("rg"));
    let at_other = h.emu.grant(&p.object_id, rbac::READER, &h.rg_id("other"));
    let at_sub = h.emu.grant(&q.object_id, rbac::ACR_PULL, &sub_scope);

    let walk = |first: String| {
        let h = &h;
        async move {
            let mut names = BTreeSet::new();
            let mut pages = 0;
            let mut next = Some(first);
            while let Some(url) = next {
                let a = h.get(&h.admin(), &url).await;
                assert_eq!(a.status, 200, "{}", a.body);
                pages += 1;
                let items = a.body["value"].as_array().unwrap();
                assert!(items.len() <= 2);
                for item in items {
                    assert!(
                        names.insert(item["name"].as_str().unwrap().to_owned()),
                        "duplicate across pages"
                    );
                }
                next = a.body["nextLink"].as_str().map(str::to_owned);
                if let Some(n) = &next {
                    assert!(
                        n.starts_with(&h.emu.base_url()) && n.contains("$skipToken="),
                        "{n}"
                    );
                }
            }
            (names, pages)
        }
    };
    // Unfiltered at the subscription: at, above and below (every assignment in it: 3 bootstrap + 4 here).
    let (all, pages) = walk(format!(
        "{sub_scope}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}"
    ))
    .await;
    assert_eq!(all.len(), 7);
    assert_eq!(pages, 4);
    for n in [&at_registry, &at_rg, &at_other, &at_sub] {
        assert!(all.contains(n.as_str()));
    }
    // atScope() at the registry: at or above only.
    let (at_scope, _) = walk(format!("{registry}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter=atScope()")).await;
    assert!(
        at_scope.contains(&at_registry) && at_scope.contains(&at_rg) && at_scope.contains(&at_sub)
    );
    assert!(!at_scope.contains(&at_other));
    // principalId at the resource group: at, above or below, that principal only.
    let (of_p, _) = walk(format!(
        "{}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter=principalId%20eq%20'{}'",
        h.rg_id("rg"),
        p.object_id
    ))
    .await;
    assert_eq!(of_p, BTreeSet::from([at_registry.clone()]));
    let bad = h.get(&h.admin(), &format!("{sub_scope}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter=roleName%20eq%20'x'")).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn callers_without_rights_get_authorization_failed() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrauth", json!({})).await;
    let registry = h.registry_id("rg", "acrauth");
    let nobody = h.emu.create_service_principal("nobody");
    let token = h.emu.arm_token(&nobody.object_id).unwrap();
    let a = h
        .get(&token, &format!("{registry}?api-version=2025-11-01"))
        .await;
    assert_eq!((a.status, a.code()), (403, "AuthorizationFailed"));
    assert_eq!(
        a.message(),
        format!(
            "The client '{o}' with object id '{o}' does not have authorization to perform action 'Microsoft.ContainerRegistry/registries/read' over scope '{registry}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            o = nobody.object_id
        )
    );
    // The handler (least privilege): reads, assigns AcrPull / Repository Reader, but nothing broader.
    let handler = h.emu.handler_token();
    assert_eq!(
        h.get(&handler, &format!("{registry}?api-version=2025-11-01"))
            .await
            .status,
        200
    );
    let kubelet = h.emu.create_service_principal("kubelet");
    let assign = |role: &str| json!({"properties": {"roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", h.sub), "principalId": kubelet.object_id, "principalType": "ServicePrincipal", "description": "managed-by: acr-autoattach"}});
    let name = uuid::Uuid::new_v4().to_string();
    let ok = h
        .put(
            &handler,
            &assignment_url(&registry, &name),
            &assign(rbac::ACR_PULL),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        ok.body["properties"]["createdBy"],
        h.emu.handler_principal_id()
    );
    let ok = h
        .put(
            &handler,
            &assignment_url(&registry, &uuid::Uuid::new_v4().to_string()),
            &assign(rbac::REPOSITORY_READER),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let owner = h
        .put(
            &handler,
            &assignment_url(&registry, &uuid::Uuid::new_v4().to_string()),
            &assign(rbac::OWNER),
        )
        .await;
    assert_eq!(
        (owner.status, owner.code()),
        (403, "AuthorizationFailed"),
        "the ABAC condition limits the roles"
    );
    let write = h.create_registry("rg", "acrauth", json!({})).await;
    assert_eq!(write.status, 200, "admin may write");
    let mut handler_write = h
        .put(
            &handler,
            &format!("{registry}?api-version=2025-11-01"),
            &json!({"location": "westeurope", "sku": {"name": "Basic"}}),
        )
        .await;
    assert_eq!(
        (handler_write.status, handler_write.code()),
        (403, "AuthorizationFailed")
    );
    assert!(
        handler_write
            .message()
            .contains("'Microsoft.ContainerRegistry/registries/write'")
    );
    // A condition of another shape never widens role-assignment rights.
    let odd = h.emu.create_service_principal("odd");
    h.emu.grant_with_condition(&odd.object_id, rbac::RBAC_ADMINISTRATOR, &registry, "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:ContainerName] StringEqualsIgnoreCase 'x'");
    let odd_token = h.emu.arm_token(&odd.object_id).unwrap();
    let denied = h
        .put(
            &odd_token,
            &assignment_url(&registry, &uuid::Uuid::new_v4().to_string()),
            &assign(rbac::READER),
        )
        .await;
    assert_eq!((denied.status, denied.code()), (403, "AuthorizationFailed"));
    assert_eq!(
        h.get(&odd_token, &format!("{registry}?api-version=2025-11-01"))
            .await
            .status,
        200,
        "reads are not role-assignment actions"
    );
    // The handler may delete the pull assignment it made.
    handler_write = h.delete(&handler, &assignment_url(&registry, &name)).await;
    assert_eq!(handler_write.status, 200);
}
