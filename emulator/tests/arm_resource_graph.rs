//! Resource Graph: the handler's query shapes, `$skipToken` paging, the answer shape of the 2024-04-01
//! examples, refusal of unsupported queries, the per-user quota, the freshness lag and authorization.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::time::Duration;

use arm_common::{Answer, Harness, shared};
use azure_emulator::{EmulatorConfig, rbac};
use serde_json::{Value, json};

const RG: &str = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01";
const CLUSTERS_Q: &str = "resources | where type =~ 'microsoft.containerservice/managedclusters' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc";
const REGISTRIES_Q: &str = "resources | where type =~ 'microsoft.containerregistry/registries' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc";
const ASSIGNMENTS_Q: &str = "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' | project id, name, properties | order by id asc";

async fn query(h: &Harness, token: &str, subs: &[&str], q: &str, options: Value) -> Answer {
    h.post(
        token,
        RG,
        &json!({"subscriptions": subs, "query": q, "options": options}),
    )
    .await
}

fn no_quota() -> EmulatorConfig {
    let mut config = EmulatorConfig::for_tests();
    config.faults.resource_graph_quota = 10_000;
    config
}

#[tokio::test]
async fn handler_queries_page_with_skip_token() {
    let h = Harness::start(no_quota()).await;
    h.create_rg("rg").await;
    for name in ["c3", "c1", "c2"] {
        h.create_cluster("rg", name, json!({"env": "prod"})).await;
    }
    for name in ["c1", "c2", "c3"] {
        h.wait_succeeded("rg", name).await;
    }
    h.create_registry("rg", "acrrg1", json!({"acr-autoattach": "*"}))
        .await;
    let handler = h.emu.handler_token();
    let sub = h.sub.clone();

    let first = query(
        &h,
        &handler,
        &[&sub],
        CLUSTERS_Q,
        json!({"$top": 2, "resultFormat": "objectArray"}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["totalRecords"], 3);
    assert_eq!(first.body["count"], 2);
    assert_eq!(first.body["resultTruncated"], "false");
    assert_eq!(first.body["facets"], json!([]));
    let token = first.body["$skipToken"].as_str().unwrap().to_owned();
    let row = &first.body["data"][0];
    let mut keys: Vec<&str> = row
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "id",
            "location",
            "name",
            "properties",
            "resourceGroup",
            "subscriptionId",
            "tags",
            "tenantId",
            "type"
        ]
    );
    assert_eq!(row["name"], "c1");
    assert_eq!(row["type"], "microsoft.containerservice/managedclusters");
    assert_eq!(row["resourceGroup"], "rg");
    assert_eq!(row["tenantId"], h.emu.default_tenant());
    assert!(row["properties"]["identityProfile"]["kubeletidentity"]["objectId"].is_string());
    assert_eq!(first.header("x-ms-user-quota-remaining"), Some("9999"));
    let second = query(
        &h,
        &handler,
        &[&sub],
        CLUSTERS_Q,
        json!({"$top": 2, "$skipToken": token}),
    )
    .await;
    assert_eq!(second.body["count"], 1);
    assert_eq!(second.body["data"][0]["name"], "c3");
    assert!(second.body.get("$skipToken").is_none());
    // A token belongs to its query.
    let misuse = query(
        &h,
        &handler,
        &[&sub],
        REGISTRIES_Q,
        json!({"$skipToken": token}),
    )
    .await;
    assert_eq!(misuse.status, 400);

    let registries = query(&h, &handler, &[&sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(registries.body["data"][0]["tags"]["acr-autoattach"], "*");
    assert_eq!(
        registries.body["data"][0]["properties"]["roleAssignmentMode"],
        "LegacyRegistryPermissions"
    );

    // Role assignments, all and by principal.
    let kubelet = h.emu.create_service_principal("k");
    let registry = h.registry_id("rg", "acrrg1");
    let name = h.emu.grant(&kubelet.object_id, rbac::ACR_PULL, &registry);
    let all = query(&h, &handler, &[&sub], ASSIGNMENTS_Q, json!({})).await;
    assert_eq!(all.body["totalRecords"], 4, "3 bootstrap + 1: {}", all.body);
    let by_principal = format!(
        "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' and tolower(tostring(properties.principalId)) in ('{}', '{}') | project id, name, properties | order by id asc",
        kubelet.object_id,
        uuid::Uuid::new_v4()
    );
    // `in` is case-sensitive: the handler lower-cases both sides; an upper-case id in the list matches nothing.
    let upper = by_principal.replace(&kubelet.object_id, &kubelet.object_id.to_uppercase());
    assert_eq!(
        query(&h, &handler, &[&sub], &upper, json!({})).await.body["count"],
        0
    );
    let mine = query(&h, &handler, &[&sub], &by_principal, json!({})).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    assert_eq!(mine.body["count"], 1);
    let row = &mine.body["data"][0];
    assert_eq!(row["name"], name);
    assert_eq!(row["properties"]["scope"], registry);
    assert!(
        row["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap()
            .ends_with(rbac::ACR_PULL)
    );
    assert_eq!(row["properties"]["principalType"], "ServicePrincipal");
    // Another subscription only: nothing.
    let other = h.emu.subscriptions()[1].clone();
    let none = query(&h, &handler, &[&other], CLUSTERS_Q, json!({})).await;
    assert_eq!(none.body["totalRecords"], 0);
}

#[tokio::test]
async fn answers_have_the_examples_shape() {
    let Some(example) = shared(
        "azure-specs/specification/resourcegraph/resource-manager/Microsoft.ResourceGraph/stable/2024-04-01/examples/ResourcesFirstPageQuery.json",
    ) else {
        return;
    };
    let example: Value = serde_json::from_str(&example).unwrap();
    let documented = &example["responses"]["200"]["body"];
    let h = Harness::start(no_quota()).await;
    h.create_rg("rg").await;
    for name in ["acrshape1", "acrshape2", "acrshape3", "acrshape4"] {
        h.create_registry("rg", name, json!({})).await;
    }
    let a = query(&h, &h.admin(), &[&h.sub], "Resources | where type =~ 'microsoft.containerregistry/registries' | project id, name, type, location", json!({"$top": 3, "$skip": 0})).await;
    let mut doc_keys: Vec<&String> = documented.as_object().unwrap().keys().collect();
    let mut our_keys: Vec<&String> = a.body.as_object().unwrap().keys().collect();
    doc_keys.sort();
    our_keys.sort();
    assert_eq!(doc_keys, our_keys);
    let doc_row: Vec<&String> = documented["data"][0].as_object().unwrap().keys().collect();
    let our_row: Vec<&String> = a.body["data"][0].as_object().unwrap().keys().collect();
    assert_eq!(doc_row.len(), our_row.len());
    for key in doc_row {
        assert!(our_row.contains(&key));
    }
    assert!(
        a.body["resultTruncated"].is_string()
            && a.body["totalRecords"].is_u64()
            && a.body["count"].is_u64()
    );
    assert_eq!(a.body["totalRecords"], 4);
    // Without `id` in the projection there is no stable paging: truncated, no token.
    let unstable = query(
        &h,
        &h.admin(),
        &[&h.sub],
        "resources | project name",
        json!({"$top": 2}),
    )
    .await;
    assert_eq!(unstable.body["resultTruncated"], "true");
    assert!(unstable.body.get("$skipToken").is_none());
}

#[tokio::test]
async fn unsupported_queries_get_400_listing_what_is_supported() {
    let h = Harness::start(no_quota()).await;
    for q in [
        "resources | summarize count() by type",
        "resources | where name contains 'test'",
        "resourcecontainers | project id",
        "resources | where type =~ 'a' or type =~ 'b'",
        "resources | mv-expand tags",
    ] {
        let a = query(&h, &h.admin(), &[&h.sub], q, json!({})).await;
        assert_eq!(a.status, 400, "{q}");
        assert_eq!(a.code(), "BadRequest");
        let detail = a.body["error"]["details"][0]["message"].as_str().unwrap();
        assert!(
            detail.contains("Supported by this emulator")
                && detail.contains("authorizationresources"),
            "{detail}"
        );
    }
    let mg = h
        .post(
            &h.admin(),
            RG,
            &json!({"managementGroups": ["mg"], "query": "resources"}),
        )
        .await;
    assert_eq!(mg.status, 400);
    let bad_version = h
        .post(
            &h.admin(),
            "/providers/Microsoft.ResourceGraph/resources?api-version=2019-04-01",
            &json!({"query": "resources"}),
        )
        .await;
    assert_eq!(bad_version.code(), "NoRegisteredProviderFound");
    let no_token = h
        .send(
            reqwest::Method::POST,
            None,
            RG,
            Some(&json!({"query": "resources"})),
        )
        .await;
    assert_eq!(no_token.status, 401);
}

#[tokio::test]
async fn quota_is_15_queries_per_5_seconds_per_caller() {
    let h = Harness::default().await;
    let handler = h.emu.handler_token();
    for i in 0..15 {
        let a = query(&h, &handler, &[&h.sub], CLUSTERS_Q, json!({})).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.header("x-ms-user-quota-remaining").unwrap(),
            (14 - i).to_string()
        );
        let resets = a.header("x-ms-user-quota-resets-after").unwrap();
        assert!(
            resets.starts_with("00:00:0") && resets.len() == 8,
            "{resets}"
        );
    }
    let throttled = query(&h, &handler, &[&h.sub], CLUSTERS_Q, json!({})).await;
    assert_eq!((throttled.status, throttled.code()), (429, "RateLimiting"));
    assert_eq!(throttled.header("x-ms-user-quota-remaining"), Some("0"));
    assert!(throttled.header("x-ms-user-quota-resets-after").is_some());
    // Per caller: the admin still has its own quota.
    assert_eq!(
        query(&h, &h.admin(), &[&h.sub], CLUSTERS_Q, json!({}))
            .await
            .status,
        200
    );
    assert_eq!(
        h.emu
            .stats()
            .for_caller(&h.emu.handler_principal_id())
            .count_status("POST resourcegraph", 429),
        1
    );
}

#[tokio::test]
async fn results_lag_behind_writes_by_the_configured_freshness() {
    let mut config = no_quota();
    config.settings.resource_graph_lag_ms = 400;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrlag", json!({"acr-autoattach": "*"}))
        .await;
    let admin = h.admin();
    let now = query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(now.body["totalRecords"], 0, "not visible yet");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(later.body["totalRecords"], 1);
    // A tag change shows the old state during the lag.
    h.patch(
        &admin,
        &format!("{}?api-version=2025-11-01", h.registry_id("rg", "acrlag")),
        &json!({"tags": {"acr-autoattach": "off"}}),
    )
    .await;
    let stale = query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(stale.body["data"][0]["tags"]["acr-autoattach"], "*");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(fresh.body["data"][0]["tags"]["acr-autoattach"], "off");
    // Deletes lag too.
    h.delete(
        &admin,
        &format!("{}?api-version=2025-11-01", h.registry_id("rg", "acrlag")),
    )
    .await;
    assert_eq!(
        query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({}))
            .await
            .body["totalRecords"],
        1
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        query(&h, &admin, &[&h.sub], REGISTRIES_Q, json!({}))
            .await
            .body["totalRecords"],
        0
    );
}

#[tokio::test]
async fn callers_see_only_what_they_may_read() {
    let h = Harness::start(no_quota()).await;
    h.create_rg("a").await;
    h.create_rg("b").await;
    h.create_registry("a", "acrina", json!({})).await;
    h.create_registry("b", "acrinb", json!({})).await;
    let reader = h.emu.create_service_principal("reader");
    h.emu.grant(&reader.object_id, rbac::READER, &h.rg_id("a"));
    let token = h.emu.arm_token(&reader.object_id).unwrap();
    let a = query(&h, &token, &[&h.sub], REGISTRIES_Q, json!({})).await;
    assert_eq!(a.body["totalRecords"], 1);
    assert_eq!(a.body["data"][0]["name"], "acrina");
}
