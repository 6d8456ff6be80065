//! What a client nobody here wrote (azure-cli) needs from ARM and Graph, each checked against the emulator:
//! `roleDefinitionId` in the subscription form, `networkProfile` on every cluster, `nextLink` on the client's
//! scheme and host, Graph's `getByIds` and service-principal name filter, `atScope() and assignedTo(…)`,
//! `Azure-AsyncOperation` with a working status URL, seven fractional digits, the resource group before the name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use arm_common::{ASSIGNMENTS, CLUSTERS, GROUPS, Harness, REGISTRIES};
use azure_emulator::rbac;
use serde_json::{Value, json};

fn assignment_body(h: &Harness, principal: &str, role: &str) -> Value {
    json!({"properties": {
        "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", h.sub),
        "principalId": principal,
        "principalType": "ServicePrincipal",
    }})
}

fn assignment_url(scope: &str, name: &str) -> String {
    format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"
    )
}

fn seven_digits(ts: &Value) -> bool {
    let s = ts.as_str().unwrap_or_default();
    let Some((_, frac)) = s.rsplit_once('.') else {
        return false;
    };
    frac.len() == 8 && frac.ends_with('Z') && frac[..7].chars().all(|c| c.is_ascii_digit())
}

#[tokio::test]
async fn role_assignments_answer_the_subscription_form_and_arm_timestamps() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrforms", json!({})).await;
    let registry = h.registry_id("rg", "acrforms");
    let kubelet = h.emu.create_service_principal("kubelet");
    // A PUT in the tenant form is answered in the subscription form, as ARM does inside a subscription.
    let mut body = assignment_body(&h, &kubelet.object_id, rbac::ACR_PULL);
    body["properties"]["roleDefinitionId"] = json!(format!(
        "/providers/Microsoft.Authorization/roleDefinitions/{}",
        rbac::ACR_PULL
    ));
    let name = uuid::Uuid::new_v4().to_string();
    let put = h
        .put(&h.admin(), &assignment_url(&registry, &name), &body)
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let expected = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}",
        h.sub,
        rbac::ACR_PULL
    );
    assert_eq!(put.body["properties"]["roleDefinitionId"], json!(expected));
    let get = h.get(&h.admin(), &assignment_url(&registry, &name)).await;
    assert_eq!(get.body["properties"]["roleDefinitionId"], json!(expected));
    // The same string as the role-definition list gives, so an exact match (azure-cli's) finds the role.
    let defs = h
        .get(
            &h.admin(),
            &format!(
                "{registry}/providers/Microsoft.Authorization/roleDefinitions?api-version={ASSIGNMENTS}&$filter=roleName eq 'AcrPull'"
            ),
        )
        .await;
    assert_eq!(defs.status, 200, "{}", defs.body);
    assert_eq!(defs.body["value"][0]["id"], json!(expected));
    // Seven fractional digits, as ARM writes them.
    for field in ["createdOn", "updatedOn"] {
        assert!(
            seven_digits(&get.body["properties"][field]),
            "{field}: {}",
            get.body["properties"][field]
        );
    }
    let registry_body = h
        .get(&h.admin(), &format!("{registry}?api-version={REGISTRIES}"))
        .await;
    assert!(seven_digits(
        &registry_body.body["properties"]["creationDate"]
    ));
}

#[tokio::test]
async fn every_cluster_has_a_network_profile_and_keeps_what_the_put_gave() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    let created = h.create_cluster("rg", "aksplain", json!({})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let profile = &created.body["properties"]["networkProfile"];
    assert_eq!(profile["networkPlugin"], "azure", "{profile}");
    assert_eq!(profile["outboundType"], "loadBalancer");
    assert_eq!(profile["serviceCidr"], "10.0.0.0/16");
    let done = h.wait_succeeded("rg", "aksplain").await;
    assert_eq!(done["properties"]["networkProfile"], *profile);
    // What the PUT gave wins.
    let given = h
        .put(
            &h.admin(),
            &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg", "akskubenet")),
            &json!({"location": "westeurope", "identity": {"type": "SystemAssigned"},
                "properties": {"networkProfile": {"networkPlugin": "kubenet", "podCidr": "10.10.0.0/16"}}}),
        )
        .await;
    assert_eq!(given.status, 201, "{}", given.body);
    let profile = &given.body["properties"]["networkProfile"];
    assert_eq!(profile["networkPlugin"], "kubenet");
    assert_eq!(profile["podCidr"], "10.10.0.0/16");
    assert!(profile.get("networkPluginMode").is_none(), "{profile}");
    assert_eq!(profile["dnsServiceIP"], "10.0.0.10");
}

#[tokio::test]
async fn next_link_follows_the_scheme_and_host_the_client_used() {
    let h = Harness::default().await;
    h.emu.update_settings(|s| s.list_page_size = 1);
    h.create_rg("rg1").await;
    h.create_rg("rg2").await;
    let path = format!(
        "/subscriptions/{}/resourcegroups?api-version={GROUPS}",
        h.sub
    );
    let port = h.emu.addr().port();
    let send = |url: String, forwarded: bool| {
        let mut req = h.http.get(url).bearer_auth(h.admin());
        if forwarded {
            req = req
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "emulator.test:8443");
        }
        async move {
            let resp = req.send().await.unwrap();
            resp.json::<Value>().await.unwrap()
        }
    };
    let plain = send(format!("{}{path}", h.emu.base_url()), false).await;
    let link = plain["nextLink"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/subscriptions/")),
        "{link}"
    );
    // Another host name for the same listener: the link keeps it.
    let by_name = send(format!("http://localhost:{port}{path}"), false).await;
    let link = by_name["nextLink"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("http://localhost:{port}/subscriptions/")),
        "{link}"
    );
    // Behind a TLS-terminating proxy.
    let proxied = send(format!("{}{path}", h.emu.base_url()), true).await;
    let link = proxied["nextLink"].as_str().unwrap();
    assert!(
        link.starts_with("https://emulator.test:8443/subscriptions/"),
        "{link}"
    );
    // The link (re-addressed to the listener) yields the second page.
    let second_url = link.replace("https://emulator.test:8443", &h.emu.base_url());
    let second = send(second_url, false).await;
    assert_eq!(second["value"].as_array().map(Vec::len), Some(1));
    assert!(second.get("nextLink").is_none(), "{second}");
}

#[tokio::test]
async fn graph_answers_get_by_ids_and_the_service_principal_name_filter() {
    let h = Harness::default().await;
    let sp = h.emu.create_service_principal("kubelet");
    let user = h.emu.create_user("alice");
    let graph = h
        .emu
        .token_for(&h.emu.admin_principal_id(), "https://graph.microsoft.com")
        .unwrap();
    let ids = h
        .post(
            &graph,
            "/v1.0/directoryObjects/getByIds",
            &json!({"ids": [sp.object_id, user.object_id, uuid::Uuid::new_v4().to_string()], "types": ["user", "group", "servicePrincipal"]}),
        )
        .await;
    assert_eq!(ids.status, 200, "{}", ids.body);
    let value = ids.body["value"].as_array().unwrap();
    assert_eq!(value.len(), 2, "{}", ids.body);
    assert_eq!(value[0]["@odata.type"], "#microsoft.graph.servicePrincipal");
    assert_eq!(value[0]["id"], json!(sp.object_id));
    assert_eq!(value[0]["appId"], json!(sp.app_id));
    assert_eq!(value[1]["@odata.type"], "#microsoft.graph.user");
    assert_eq!(value[1]["displayName"], "alice");
    // Only the types asked for.
    let only_sps = h
        .post(
            &graph,
            "/v1.0/directoryObjects/getByIds",
            &json!({"ids": [sp.object_id, user.object_id], "types": ["servicePrincipal"]}),
        )
        .await;
    assert_eq!(only_sps.body["value"].as_array().map(Vec::len), Some(1));
    // servicePrincipalNames/any(c:c eq '{appId}').
    let filter = format!("servicePrincipalNames/any(c:c eq '{}')", sp.app_id);
    let listed = h
        .get(
            &graph,
            &format!(
                "/v1.0/servicePrincipals?$filter={}",
                url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
            ),
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["value"][0]["id"], json!(sp.object_id));
    assert_eq!(listed.body["value"].as_array().map(Vec::len), Some(1));
    let none = h
        .get(
            &graph,
            "/v1.0/servicePrincipals?$filter=servicePrincipalNames/any(c:c%20eq%20'nobody')",
        )
        .await;
    assert_eq!(none.body["value"], json!([]));
    // Unsupported filters are refused, never answered wrongly.
    let refused = h
        .get(
            &graph,
            "/v1.0/servicePrincipals?$filter=startswith(displayName,'k')",
        )
        .await;
    assert_eq!(refused.status, 400);
}

#[tokio::test]
async fn at_scope_and_assigned_to_lists_one_principals_assignments_at_or_above_the_scope() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrscope", json!({})).await;
    let registry = h.registry_id("rg", "acrscope");
    let kubelet = h.emu.create_service_principal("kubelet");
    let other = h.emu.create_service_principal("other");
    for (principal, scope) in [
        (&kubelet, registry.clone()),
        (&other, registry.clone()),
        (&kubelet, h.rg_id("rg")),
    ] {
        let a = h
            .put(
                &h.admin(),
                &assignment_url(&scope, &uuid::Uuid::new_v4().to_string()),
                &assignment_body(&h, &principal.object_id, rbac::ACR_PULL),
            )
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let list = |scope: String, filter: String| {
        let h = &h;
        async move {
            h.get(
                &h.admin(),
                &format!(
                    "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS}&$filter={}",
                    url::form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
                ),
            )
            .await
        }
    };
    let at_registry = list(
        registry.clone(),
        format!("atScope() and assignedTo('{}')", kubelet.object_id),
    )
    .await;
    assert_eq!(at_registry.status, 200, "{}", at_registry.body);
    let value = at_registry.body["value"].as_array().unwrap();
    assert_eq!(value.len(), 2, "{}", at_registry.body);
    assert!(
        value
            .iter()
            .all(|a| a["properties"]["principalId"] == json!(kubelet.object_id))
    );
    // At the group: the registry's assignment is below it, so atScope() leaves it out.
    let at_group = list(
        h.rg_id("rg"),
        format!("atScope() and assignedTo('{}')", kubelet.object_id),
    )
    .await;
    assert_eq!(at_group.body["value"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_cluster_put_names_an_operation_whose_status_completes() {
    let h = Harness::default().await;
    h.emu.update_settings(|s| s.cluster_provisioning_ms = 400);
    h.create_rg("rg").await;
    let created = h.create_cluster("rg", "aksasync", json!({})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let url = created
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation header")
        .to_owned();
    assert!(
        url.starts_with(&format!(
            "{}/subscriptions/{}/providers/Microsoft.ContainerService/locations/westeurope/operations/",
            h.emu.base_url(),
            h.sub
        )),
        "{url}"
    );
    let first = h.get(&h.admin(), &url).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "InProgress");
    assert!(first.body.get("endTime").is_none());
    let mut last = first.body;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        last = h.get(&h.admin(), &url).await.body;
        if last["status"] != "InProgress" {
            break;
        }
    }
    assert_eq!(last["status"], "Succeeded", "{last}");
    assert!(seven_digits(&last["endTime"]), "{last}");
    // Unknown operations are 404; another subscription does not see this one.
    let unknown = format!(
        "/subscriptions/{}/providers/Microsoft.ContainerService/locations/westeurope/operations/{}?api-version=2016-03-30",
        h.sub,
        uuid::Uuid::new_v4()
    );
    assert_eq!(h.get(&h.admin(), &unknown).await.status, 404);
    let other_sub = h.emu.subscriptions()[1].clone();
    let elsewhere = url.replace(&h.sub, &other_sub);
    assert_eq!(h.get(&h.admin(), &elsewhere).await.status, 404);
}

#[tokio::test]
async fn a_missing_resource_group_is_reported_before_an_invalid_name() {
    let h = Harness::default().await;
    let a = h
        .put(
            &h.admin(),
            &format!(
                "{}?api-version={REGISTRIES}",
                h.registry_id("nosuchgroup", "bad-name!")
            ),
            &json!({"location": "westeurope", "sku": {"name": "Standard"}}),
        )
        .await;
    assert_eq!((a.status, a.code()), (404, "ResourceGroupNotFound"));
    // With the group present, the name is refused.
    h.create_rg("rg").await;
    let a = h
        .put(
            &h.admin(),
            &format!(
                "{}?api-version={REGISTRIES}",
                h.registry_id("rg", "bad-name!")
            ),
            &json!({"location": "westeurope", "sku": {"name": "Standard"}}),
        )
        .await;
    assert_eq!((a.status, a.code()), (400, "InvalidParameter"));
}

#[tokio::test]
async fn cloud_metadata_names_the_emulator_and_its_origin_is_a_graph_audience() {
    let h = Harness::default().await;
    // Anonymous, as ARM's is: what `az cloud register --endpoint-resource-manager` reads.
    let meta = h
        .send(
            reqwest::Method::GET,
            None,
            "/metadata/endpoints?api-version=2022-09-01",
            None,
        )
        .await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    let origin = format!("{}/", h.emu.base_url());
    assert_eq!(meta.body["resourceManager"], json!(origin));
    assert_eq!(meta.body["microsoftGraphResourceId"], json!(origin));
    assert_eq!(
        meta.body["authentication"]["audiences"][0],
        "https://management.core.windows.net/"
    );
    // A client registered that way asks the identity endpoint for a token for the emulator's origin and uses it
    // on Graph; the same token is not an ARM token.
    let env: std::collections::BTreeMap<String, String> = h.emu.env().into_iter().collect();
    let token: Value = h
        .http
        .get(format!(
            "{}?api-version=2019-08-01&resource={}",
            env["IDENTITY_ENDPOINT"],
            url::form_urlencoded::byte_serialize(origin.as_bytes()).collect::<String>()
        ))
        .header("x-identity-header", &env["IDENTITY_HEADER"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let me = h.emu.handler_principal_id();
    let graph = h
        .get(&token, &format!("/v1.0/servicePrincipals/{me}"))
        .await;
    assert_eq!(graph.status, 200, "{}", graph.body);
    let arm = h.get(&token, "/subscriptions?api-version=2022-12-01").await;
    assert_eq!(
        (arm.status, arm.code()),
        (401, "InvalidAuthenticationTokenAudience")
    );
}
