//! Cluster and registry lifecycle, resource groups, tags and events against the running emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::time::{Duration, Instant};

use arm_common::{CLUSTERS, GROUPS, Harness, REGISTRIES};
use azure_emulator::bus::ArmOperationKind;
use azure_emulator::{ClusterEventTiming, Emulator, EmulatorConfig};
use serde_json::json;

#[tokio::test]
async fn starts_well_under_a_second_on_loopback() {
    let t0 = Instant::now();
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "startup took {:?}",
        t0.elapsed()
    );
    assert!(emu.addr().ip().is_loopback());
    let env: std::collections::BTreeMap<_, _> = emu.env().into_iter().collect();
    assert_eq!(env["AUTOATTACH_ARM_ENDPOINT"], emu.base_url());
    assert_eq!(
        env["IDENTITY_ENDPOINT"],
        format!("{}/msi/token", emu.base_url())
    );
    assert_eq!(env["IDENTITY_HEADER"].len(), 32);
}

#[tokio::test]
async fn cluster_lifecycle_can_be_watched_and_publishes_two_writes() {
    let h = Harness::default().await;
    let mut events = h.emu.bus().subscribe();
    h.create_rg("rg1").await;
    let put = h
        .create_cluster("rg1", "aks1", json!({"env": "prod"}))
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert_eq!(put.body["properties"]["provisioningState"], "Creating");
    assert!(put.body["properties"].get("identityProfile").is_none());
    assert_eq!(
        put.body["properties"]["servicePrincipalProfile"]["clientId"],
        "msi"
    );
    let get = h
        .get(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg1", "aks1")),
        )
        .await;
    assert_eq!(get.body["properties"]["provisioningState"], "Creating");

    // A second PUT while the first is running is refused, as AKS does.
    let busy = h
        .create_cluster("rg1", "aks1", json!({"env": "prod"}))
        .await;
    assert_eq!((busy.status, busy.code()), (409, "OperationNotAllowed"));
    let done = h.wait_succeeded("rg1", "aks1").await;
    let kubelet = &done["properties"]["identityProfile"]["kubeletidentity"];
    let rid = kubelet["resourceId"].as_str().unwrap();
    assert!(rid.contains("/resourcegroups/MC_rg1_aks1_westeurope/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"), "{rid}");
    let object_id = kubelet["objectId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(object_id).is_ok());
    assert!(uuid::Uuid::parse_str(kubelet["clientId"].as_str().unwrap()).is_ok());
    assert_ne!(
        done["identity"]["principalId"].as_str().unwrap(),
        object_id,
        "control plane identity is another principal"
    );
    assert_eq!(
        done["properties"]["nodeResourceGroup"],
        "MC_rg1_aks1_westeurope"
    );

    // The kubelet identity is a directory principal Graph can read.
    let graph_token = h
        .emu
        .token_for(&h.emu.handler_principal_id(), "https://graph.microsoft.com")
        .unwrap();
    let sp = h
        .get(
            &graph_token,
            &format!("/v1.0/servicePrincipals/{object_id}"),
        )
        .await;
    assert_eq!(sp.status, 200, "{}", sp.body);
    assert_eq!(sp.body["servicePrincipalType"], "ManagedIdentity");

    // RG write, cluster write on accept, cluster write on completion.
    let mut writes = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        writes.push(e);
    }
    let cluster_writes: Vec<_> = writes
        .iter()
        .filter(|e| e.operation_name == "Microsoft.ContainerService/managedClusters/write")
        .collect();
    assert_eq!(cluster_writes.len(), 2);
    assert_eq!(
        cluster_writes[0].resource_body.as_ref().unwrap()["properties"]["provisioningState"],
        "Creating"
    );
    assert_eq!(
        cluster_writes[1].resource_body.as_ref().unwrap()["properties"]["provisioningState"],
        "Succeeded"
    );
    assert_eq!(cluster_writes[0].kind, ArmOperationKind::Write);
    assert_eq!(cluster_writes[0].claims["oid"], h.emu.admin_principal_id());
    assert_eq!(cluster_writes[0].subscription_id, h.sub);

    // Delete: 202, gone, kubelet principal deleted, delete event.
    let del = h
        .delete(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg1", "aks1")),
        )
        .await;
    assert_eq!(del.status, 202);
    let gone = h
        .get(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg1", "aks1")),
        )
        .await;
    assert_eq!((gone.status, gone.code()), (404, "ResourceNotFound"));
    assert!(h.emu.principal(object_id).is_none());
    let sp = h
        .get(
            &graph_token,
            &format!("/v1.0/servicePrincipals/{object_id}"),
        )
        .await;
    assert_eq!((sp.status, sp.code()), (404, "Request_ResourceNotFound"));
    let e = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.operation_name,
        "Microsoft.ContainerService/managedClusters/delete"
    );
    assert!(e.resource_body.is_none());
}

#[tokio::test]
async fn event_timing_on_completion_publishes_once() {
    let mut config = EmulatorConfig::for_tests();
    config.settings.cluster_event_timing = ClusterEventTiming::OnCompletion;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    let mut events = h.emu.bus().subscribe();
    h.create_cluster("rg", "c1", json!({})).await;
    h.wait_succeeded("rg", "c1").await;
    let mut names = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
        names.push(
            e.resource_body.unwrap()["properties"]["provisioningState"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(names, ["Succeeded"]);
}

#[tokio::test]
async fn service_principal_and_byo_kubelet_clusters() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    // SP cluster: the application must exist in Graph.
    let unknown = h
        .put(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg", "sp1")),
            &json!({"location": "westeurope", "properties": {"servicePrincipalProfile": {"clientId": "11111111-2222-4333-8444-555555555555", "secret": "s3cr3t"}}}),
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (400, "ServicePrincipalNotFound")
    );
    let app = h.emu.create_service_principal("cluster-sp");
    let put = h
        .put(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg", "sp1")),
            &json!({"location": "westeurope", "properties": {"servicePrincipalProfile": {"clientId": app.app_id, "secret": "s3cr3t"}}}),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    assert!(
        !put.body.to_string().contains("s3cr3t"),
        "the secret is never echoed"
    );
    let done = h.wait_succeeded("rg", "sp1").await;
    assert_eq!(
        done["properties"]["servicePrincipalProfile"]["clientId"],
        app.app_id
    );
    assert!(done["properties"].get("identityProfile").is_none());
    assert!(done.get("identity").is_none());
    let graph_token = h
        .emu
        .token_for(&h.emu.handler_principal_id(), "https://graph.microsoft.com")
        .unwrap();
    let sp = h
        .get(
            &graph_token,
            &format!("/v1.0/servicePrincipals(appId='{}')", app.app_id),
        )
        .await;
    assert_eq!(sp.body["id"], app.object_id);

    // Bring-your-own kubelet identity.
    let uami = h
        .emu
        .create_user_assigned_identity(&h.sub, "rg", "kubelet-id");
    let rid = uami.managed_identity_resource_id.clone().unwrap();
    let put = h
        .put(
            &h.admin(),
            &format!("{}?api-version=2026-06-01", h.cluster_id("rg", "byo")),
            &json!({
                "location": "westeurope",
                "identity": {"type": "UserAssigned", "userAssignedIdentities": {format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/cp-id", h.sub): {}}},
                "properties": {"identityProfile": {"kubeletidentity": {"resourceId": rid}}}
            }),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let done = h.wait_succeeded("rg", "byo").await;
    assert_eq!(
        done["properties"]["identityProfile"]["kubeletidentity"]["objectId"],
        uami.object_id
    );
    assert_eq!(
        done["properties"]["identityProfile"]["kubeletidentity"]["clientId"],
        uami.app_id
    );
}

#[tokio::test]
async fn registries_resource_groups_tags_and_lists() {
    let h = Harness::default().await;
    let missing = h.create_registry("nope", "acrmissing", json!({})).await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "ResourceGroupNotFound")
    );
    h.create_rg("rg").await;
    let created = h
        .create_registry("rg", "acrone", json!({"acr-autoattach": "*"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["properties"]["roleAssignmentMode"],
        "LegacyRegistryPermissions"
    );
    assert_eq!(
        created.body["properties"]["loginServer"],
        "acrone.azurecr.io"
    );
    let abac = h
        .put(
            &h.admin(),
            &format!("{}?api-version=2026-09-01-preview", h.registry_id("rg", "acrtwo")),
            &json!({"location": "westeurope", "sku": {"name": "Premium"}, "properties": {"roleAssignmentMode": "AbacRepositoryPermissions"}}),
        )
        .await;
    assert_eq!(
        abac.body["properties"]["roleAssignmentMode"],
        "AbacRepositoryPermissions"
    );
    let bad = h
        .put(
            &h.admin(),
            &format!("{}?api-version={REGISTRIES}", h.registry_id("rg", "acrbad")),
            &json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"roleAssignmentMode": "Sometimes"}}),
        )
        .await;
    assert_eq!(bad.status, 400);

    // PATCH tags.
    let patched = h
        .patch(
            &h.admin(),
            &format!("{}?api-version={REGISTRIES}", h.registry_id("rg", "acrone")),
            &json!({"tags": {"acr-autoattach": "env=prod"}}),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["tags"], json!({"acr-autoattach": "env=prod"}));

    // Tags API merge on the registry; event on the tags resource.
    let mut events = h.emu.bus().subscribe();
    let tags_uri = format!(
        "{}/providers/Microsoft.Resources/tags/default",
        h.registry_id("rg", "acrone")
    );
    let merged = h
        .patch(
            &h.admin(),
            &format!("{tags_uri}?api-version=2021-04-01"),
            &json!({"operation": "Merge", "properties": {"tags": {"team": "a"}}}),
        )
        .await;
    assert_eq!(merged.status, 200, "{}", merged.body);
    assert_eq!(
        merged.body["properties"]["tags"],
        json!({"acr-autoattach": "env=prod", "team": "a"})
    );
    let e = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.operation_name, "Microsoft.Resources/tags/write");
    assert_eq!(e.resource_uri, tags_uri);
    assert_eq!(e.resource_body.unwrap()["tags"]["team"], "a");
    let replaced = h
        .put(
            &h.admin(),
            &format!("{tags_uri}?api-version=2021-04-01"),
            &json!({"properties": {"tags": {"only": "this"}}}),
        )
        .await;
    assert_eq!(replaced.body["properties"]["tags"], json!({"only": "this"}));
    let get = h
        .get(
            &h.admin(),
            &format!("{}?api-version={REGISTRIES}", h.registry_id("rg", "acrone")),
        )
        .await;
    assert_eq!(get.body["tags"], json!({"only": "this"}));

    // Lists by subscription and by group.
    let by_sub = h.get(&h.admin(), &format!("/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version={REGISTRIES}", h.sub)).await;
    assert_eq!(by_sub.body["value"].as_array().unwrap().len(), 2);
    let by_rg = h
        .get(
            &h.admin(),
            &format!(
                "{}/providers/Microsoft.ContainerRegistry/registries?api-version={REGISTRIES}",
                h.rg_id("rg")
            ),
        )
        .await;
    assert_eq!(by_rg.body["value"].as_array().unwrap().len(), 2);
    let groups = h
        .get(
            &h.admin(),
            &format!(
                "/subscriptions/{}/resourcegroups?api-version={GROUPS}",
                h.sub
            ),
        )
        .await;
    assert_eq!(groups.body["value"][0]["name"], "rg");
    let subs = h
        .get(&h.admin(), "/subscriptions?api-version=2022-12-01")
        .await;
    assert_eq!(subs.body["value"].as_array().unwrap().len(), 2);
    assert_eq!(subs.body["value"][0]["tenantId"], h.emu.default_tenant());

    // Delete: 200 then 204.
    let url = format!("{}?api-version={REGISTRIES}", h.registry_id("rg", "acrone"));
    assert_eq!(h.delete(&h.admin(), &url).await.status, 200);
    assert_eq!(h.delete(&h.admin(), &url).await.status, 204);
    let gone = h.get(&h.admin(), &url).await;
    assert_eq!((gone.status, gone.code()), (404, "ResourceNotFound"));
    let rg_gone = h
        .get(
            &h.admin(),
            &format!("{}?api-version={GROUPS}", h.rg_id("other")),
        )
        .await;
    assert_eq!(
        (rg_gone.status, rg_gone.code()),
        (404, "ResourceGroupNotFound")
    );
}

#[tokio::test]
async fn api_versions_are_checked_per_type_with_arms_errors() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    let cases = [
        (
            format!("{}?api-version=2019-01-01", h.cluster_id("rg", "x")),
            "NoRegisteredProviderFound",
            "for type 'managedClusters'",
        ),
        (
            format!("{}?api-version=2026-02-01", h.registry_id("rg", "acrxx")),
            "NoRegisteredProviderFound",
            "for type 'registries'",
        ),
        (
            format!("{}?api-version=1999-01-01", h.rg_id("rg")),
            "InvalidApiVersionParameter",
            "The api-version '1999-01-01' is invalid.",
        ),
        (
            h.cluster_id("rg", "x"),
            "MissingApiVersionParameter",
            "(?api-version=)",
        ),
        (
            format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version=2099-01-01",
                h.sub
            ),
            "NoRegisteredProviderFound",
            "for type 'roleAssignments'",
        ),
    ];
    for (path, code, fragment) in cases {
        let a = h.get(&h.admin(), &path).await;
        assert_eq!((a.status, a.code()), (400, code), "{path}: {}", a.body);
        assert!(a.message().contains(fragment), "{}", a.message());
    }
    for version in ["2026-02-01", "2026-06-01"] {
        let a = h.get(&h.admin(), &format!("/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters?api-version={version}", h.sub)).await;
        assert_eq!(a.status, 200);
    }
    let defs = h.get(&h.admin(), &format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d?api-version=2022-05-01-preview", h.sub)).await;
    assert_eq!(defs.status, 200);
    assert_eq!(defs.body["properties"]["roleName"], "AcrPull");
    assert_eq!(
        defs.body["properties"]["permissions"][0]["actions"][0],
        "Microsoft.ContainerRegistry/registries/pull/read"
    );
}

#[tokio::test]
async fn resource_group_delete_removes_its_resources() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrinrg", json!({})).await;
    let mut events = h.emu.bus().subscribe();
    let del = h
        .delete(
            &h.admin(),
            &format!("{}?api-version={GROUPS}", h.rg_id("rg")),
        )
        .await;
    assert_eq!(del.status, 202);
    let ops: Vec<String> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.operation_name)
        .collect();
    assert_eq!(
        ops,
        [
            "Microsoft.ContainerRegistry/registries/delete",
            "Microsoft.Resources/subscriptions/resourceGroups/delete"
        ]
    );
    let list = h.get(&h.admin(), &format!("/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version={REGISTRIES}", h.sub)).await;
    assert_eq!(list.body["value"], json!([]));
}

#[tokio::test]
async fn correlation_ids_are_echoed_and_carried_by_events() {
    let h = Harness::default().await;
    let mut events = h.emu.bus().subscribe();
    let resp = h
        .http
        .put(h.url(&format!("{}?api-version={GROUPS}", h.rg_id("corr"))))
        .bearer_auth(h.admin())
        .header(
            "x-ms-correlation-request-id",
            "3f0c4f6e-0000-4000-8000-000000000abc",
        )
        .json(&json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["x-ms-correlation-request-id"],
        "3f0c4f6e-0000-4000-8000-000000000abc"
    );
    let e = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.correlation_id, "3f0c4f6e-0000-4000-8000-000000000abc");
    // Without one, ARM makes one up and the event carries the same.
    let a = h
        .put(
            &h.admin(),
            &format!("{}?api-version={GROUPS}", h.rg_id("corr2")),
            &json!({"location": "westeurope"}),
        )
        .await;
    let made = a.header("x-ms-correlation-request-id").unwrap().to_owned();
    let e = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.correlation_id, made);
}

#[tokio::test]
async fn generic_resource_list_filters_by_type_name_and_tag() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrgeneric", json!({"acr-autoattach": "*"}))
        .await;
    h.create_registry("rg", "acrother", json!({})).await;
    h.create_cluster("rg", "aksgeneric", json!({})).await;
    let list = |filter: &str| {
        let h = &h;
        let url = format!(
            "/subscriptions/{}/resources?api-version=2024-11-01&$filter={}",
            h.sub,
            filter.replace(' ', "%20")
        );
        async move { h.get(&h.admin(), &url).await }
    };
    let regs = list("resourceType eq 'Microsoft.ContainerRegistry/registries'").await;
    assert_eq!(regs.status, 200, "{}", regs.body);
    assert_eq!(regs.body["value"].as_array().unwrap().len(), 2);
    assert!(
        regs.body["value"][0].get("properties").is_none(),
        "the generic list has no properties"
    );
    let by_name =
        list("resourceType eq 'Microsoft.ContainerRegistry/registries' and name eq 'ACRGENERIC'")
            .await;
    assert_eq!(by_name.body["value"][0]["name"], "acrgeneric");
    let tagged = list("tagName eq 'acr-autoattach' and tagValue eq '*'").await;
    assert_eq!(tagged.body["value"].as_array().unwrap().len(), 1);
    let all = h
        .get(
            &h.admin(),
            &format!("{}/resources?api-version=2024-11-01", h.rg_id("rg")),
        )
        .await;
    assert_eq!(all.body["value"].as_array().unwrap().len(), 3);
    let unsupported = list("location eq 'westeurope'").await;
    assert_eq!(unsupported.status, 400);
    assert_eq!(h.emu.stats().count("LIST resources"), 5);
}
