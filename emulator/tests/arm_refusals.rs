//! What Azure refuses and the handler's security rules rely on the emulator refusing too: tag values over 256
//! characters, tag names that differ only in case on one resource, and role assignments at a registry that does
//! not exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use arm_common::{ASSIGNMENTS, GROUPS, Harness, REGISTRIES};
use azure_emulator::rbac;
use serde_json::{Value, json};

fn tags_url(scope: &str) -> String {
    format!("{scope}/providers/Microsoft.Resources/tags/default?api-version=2021-04-01")
}

#[tokio::test]
async fn tag_values_over_256_characters_are_refused_everywhere_tags_are_written() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    let at_limit = "v".repeat(256);
    let over = "v".repeat(257);
    // At the limit: accepted.
    let ok = h
        .create_registry("rg", "acrlimit", json!({"acr-autoattach": at_limit}))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    // Over it: refused on PUT of a registry, a cluster and a resource group, on PATCH, and on the Tags API.
    let registry = h
        .create_registry("rg", "acrover", json!({"acr-autoattach": over}))
        .await;
    assert_eq!(
        (registry.status, registry.code()),
        (400, "InvalidTagValueLength")
    );
    assert!(
        registry.message().contains("maximum length of '256'"),
        "{}",
        registry.message()
    );
    let cluster = h
        .create_cluster("rg", "aksover", json!({"acr-autoattach": over}))
        .await;
    assert_eq!(
        (cluster.status, cluster.code()),
        (400, "InvalidTagValueLength")
    );
    let group = h
        .put(
            &h.admin(),
            &format!("{}?api-version={GROUPS}", h.rg_id("rg2")),
            &json!({"location": "westeurope", "tags": {"t": over}}),
        )
        .await;
    assert_eq!((group.status, group.code()), (400, "InvalidTagValueLength"));
    let registry_id = h.registry_id("rg", "acrlimit");
    let patch = h
        .patch(
            &h.admin(),
            &format!("{registry_id}?api-version={REGISTRIES}"),
            &json!({"tags": {"acr-autoattach": over}}),
        )
        .await;
    assert_eq!((patch.status, patch.code()), (400, "InvalidTagValueLength"));
    let merge = h
        .patch(
            &h.admin(),
            &tags_url(&registry_id),
            &json!({"operation": "Merge", "properties": {"tags": {"other": over}}}),
        )
        .await;
    assert_eq!((merge.status, merge.code()), (400, "InvalidTagValueLength"));
    // Nothing refused was stored: the registry keeps its first tags, the refused ones do not exist.
    let stored = h
        .get(
            &h.admin(),
            &format!("{registry_id}?api-version={REGISTRIES}"),
        )
        .await;
    assert_eq!(stored.body["tags"], json!({"acr-autoattach": at_limit}));
    let missing = h
        .get(
            &h.admin(),
            &format!(
                "{}?api-version={REGISTRIES}",
                h.registry_id("rg", "acrover")
            ),
        )
        .await;
    assert_eq!(missing.status, 404);
    // Names have their own limit (512).
    let long_name = h
        .create_registry("rg", "acrname", json!({ "n".repeat(513): "x" }))
        .await;
    assert_eq!(
        (long_name.status, long_name.code()),
        (400, "InvalidTagNameLength")
    );
}

#[tokio::test]
async fn tag_names_that_differ_only_in_case_cannot_both_be_on_one_resource() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    let twice = json!({"acr-autoattach": "env=prod", "ACR-AutoAttach": "env=dev"});
    let put = h.create_registry("rg", "acrcase", twice.clone()).await;
    assert_eq!((put.status, put.code()), (400, "InvalidRequestContent"));
    assert!(
        put.message().contains("case-insensitive"),
        "{}",
        put.message()
    );
    let cluster = h.create_cluster("rg", "akscase", twice.clone()).await;
    assert_eq!(cluster.status, 400, "{}", cluster.body);
    // Through the Tags API (replace), on an existing registry.
    assert_eq!(
        h.create_registry("rg", "acrcase", json!({"acr-autoattach": "env=prod"}))
            .await
            .status,
        201
    );
    let registry_id = h.registry_id("rg", "acrcase");
    let replace = h
        .put(
            &h.admin(),
            &tags_url(&registry_id),
            &json!({"properties": {"tags": twice}}),
        )
        .await;
    assert_eq!(
        (replace.status, replace.code()),
        (400, "InvalidRequestContent")
    );
    // A merge with another spelling replaces the tag: the resource never holds both spellings.
    let merged = h
        .patch(
            &h.admin(),
            &tags_url(&registry_id),
            &json!({"operation": "Merge", "properties": {"tags": {"ACR-AUTOATTACH": "env=dev"}}}),
        )
        .await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(
        merged.body["properties"]["tags"],
        json!({"ACR-AUTOATTACH": "env=dev"})
    );
}

fn assignment(h: &Harness, principal: &str) -> Value {
    json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}", h.sub, rbac::ACR_PULL),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }})
}

#[tokio::test]
async fn role_assignments_at_a_registry_that_does_not_exist_are_refused() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    let kubelet = h.emu.create_service_principal("kubelet");
    let body = assignment(&h, &kubelet.object_id);
    let ghost = h.registry_id("rg", "acrghost");
    let name = uuid::Uuid::new_v4().to_string();
    let url = format!(
        "{ghost}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"
    );
    for token in [h.admin(), h.emu.handler_token()] {
        let a = h.put(&token, &url, &body).await;
        assert_eq!(
            (a.status, a.code()),
            (404, "ResourceNotFound"),
            "{}",
            a.body
        );
        assert!(a.message().contains("acrghost"), "{}", a.message());
    }
    // In a resource group that does not exist: the group is named.
    let in_missing_group = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}",
        h.registry_id("nogroup", "acrghost")
    );
    let a = h.put(&h.admin(), &in_missing_group, &body).await;
    assert_eq!((a.status, a.code()), (404, "ResourceGroupNotFound"));
    // Nothing was written anywhere.
    let list = h
        .get(
            &h.admin(),
            &format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter=principalId eq '{}'",
                h.sub, kubelet.object_id
            ),
        )
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["value"], json!([]));
    // Once the registry exists, the same PUT succeeds.
    assert_eq!(
        h.create_registry("rg", "acrghost", json!({})).await.status,
        201
    );
    let a = h.put(&h.admin(), &url, &body).await;
    assert_eq!(a.status, 201, "{}", a.body);
}
