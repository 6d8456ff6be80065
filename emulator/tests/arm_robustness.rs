//! No input crashes the emulator or earns a 5xx: seeded random paths, queries and bodies against every route,
//! with ARM's error body on every refusal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::fmt::Write as _;

use arm_common::Harness;
use azure_emulator::EmulatorConfig;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};

const SEGMENTS: &[&str] = &[
    "subscriptions",
    "resourceGroups",
    "resourcegroups",
    "providers",
    "Microsoft.ContainerService",
    "managedClusters",
    "Microsoft.ContainerRegistry",
    "registries",
    "Microsoft.Authorization",
    "roleAssignments",
    "roleDefinitions",
    "Microsoft.Resources",
    "tags",
    "default",
    "Microsoft.ResourceGraph",
    "resources",
    "v1.0",
    "servicePrincipals(appId='x')",
    "servicePrincipals",
    "msi",
    "token",
    "rg",
    "acrrobust",
    "aks",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "%00",
    "é",
    "..",
    "",
];
const VERSIONS: &[&str] = &[
    "2026-02-01",
    "2025-11-01",
    "2022-04-01",
    "2024-11-01",
    "2024-04-01",
    "2022-12-01",
    "x",
    "",
];

fn random_body(rng: &mut StdRng, sub: &str) -> Option<Vec<u8>> {
    match rng.random_range(0..7) {
        0 => None,
        1 => Some(b"{not json".to_vec()),
        2 => Some(json!({"location": "westeurope", "sku": {"name": "Standard"}, "tags": {"a": "b"}}).to_string().into_bytes()),
        3 => Some(
            json!({"properties": {"roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d"), "principalId": uuid::Uuid::new_v4(), "principalType": "ServicePrincipal"}})
                .to_string()
                .into_bytes(),
        ),
        4 => Some(json!({"query": "resources | where type =~ 'x' | project id | order by id asc", "subscriptions": [sub], "options": {"$top": rng.random_range(0..2000), "$skipToken": "e30="}}).to_string().into_bytes()),
        5 => Some(json!([1, {"properties": null}, "x"]).to_string().into_bytes()),
        _ => Some((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()).collect()),
    }
}

#[tokio::test]
async fn random_requests_never_crash_or_5xx() {
    let mut config = EmulatorConfig::for_tests();
    config.faults.throttling = false;
    config.faults.resource_graph_quota = 100_000;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    let mut rng = StdRng::seed_from_u64(42);
    let methods = [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::DELETE,
        reqwest::Method::POST,
    ];
    for i in 0..600 {
        let mut path = String::new();
        let len = rng.random_range(0..10);
        for j in 0..len {
            path.push('/');
            if j == 1 && rng.random_bool(0.7) {
                path.push_str(&h.sub);
            } else {
                path.push_str(SEGMENTS[rng.random_range(0..SEGMENTS.len())]);
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        let mut url = format!("{}{path}", h.emu.base_url());
        match rng.random_range(0..4) {
            0 => {}
            1 => write!(
                url,
                "?api-version={}",
                VERSIONS[rng.random_range(0..VERSIONS.len())]
            )
            .unwrap(),
            2 => write!(
                url,
                "?api-version={}&$filter=principalId%20eq%20'zz'&$skipToken=%%%",
                VERSIONS[rng.random_range(0..VERSIONS.len())]
            )
            .unwrap(),
            _ => url.push_str("?api-version=2022-04-01&$filter=atScope()&$skipToken=b2Zmc2V0OjE"),
        }
        let method = methods[rng.random_range(0..methods.len())].clone();
        let mut req = h.http.request(method.clone(), &url);
        if rng.random_bool(0.8) {
            req = req.bearer_auth(h.admin());
        }
        if let Some(body) = random_body(&mut rng, &h.sub) {
            req = req.header("content-type", "application/json").body(body);
        }
        let Ok(resp) = req.send().await else { continue }; // a URL reqwest itself refuses never reached us
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(status < 500, "#{i} {method} {url} -> {status}: {text}");
        if status >= 400 && !text.is_empty() {
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("#{i} {method} {url}: not JSON: {text}"));
            assert!(body.get("error").is_some(), "#{i} {method} {url}: {text}");
        }
    }
    // Still serving.
    let a = h
        .get(
            &h.admin(),
            &format!("{}?api-version=2024-11-01", h.rg_id("rg")),
        )
        .await;
    assert_eq!(a.status, 200);
}
