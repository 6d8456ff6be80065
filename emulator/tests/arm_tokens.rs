//! The managed-identity token endpoint, token validation (audience, signature, expiry, tenant) and Microsoft
//! Graph; `azure_identity::ManagedIdentityCredential` obtains tokens from the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::time::Duration;

use arm_common::{CLUSTERS, Harness};
use azure_emulator::token::decode_unverified;
use azure_emulator::{EmulatorConfig, SubscriptionConfig};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

async fn token_request(h: &Harness, header: Option<&str>, query: &str) -> (u16, Value) {
    let mut req = h.http.get(h.url(&format!("/msi/token?{query}")));
    if let Some(v) = header {
        req = req.header("x-identity-header", v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn identity_header(h: &Harness) -> String {
    h.emu
        .env()
        .into_iter()
        .find(|(k, _)| k == "IDENTITY_HEADER")
        .unwrap()
        .1
}

#[tokio::test]
async fn token_endpoint_speaks_the_app_service_protocol() {
    let h = Harness::default().await;
    let secret = identity_header(&h);
    let ok_query = "api-version=2019-08-01&resource=https://management.azure.com";
    assert_eq!(token_request(&h, None, ok_query).await.0, 401);
    assert_eq!(token_request(&h, Some("wrong"), ok_query).await.0, 401);
    assert_eq!(
        token_request(
            &h,
            Some(&secret),
            "api-version=2017-09-01&resource=https://management.azure.com"
        )
        .await
        .0,
        400
    );
    assert_eq!(
        token_request(&h, Some(&secret), "api-version=2019-08-01")
            .await
            .0,
        400
    );
    assert_eq!(
        token_request(
            &h,
            Some(&secret),
            "api-version=2019-08-01&resource=https://vault.azure.net"
        )
        .await
        .0,
        400
    );
    let (status, body) = token_request(&h, Some(&secret), ok_query).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://management.azure.com");
    let expires_on: i64 = body["expires_on"]
        .as_str()
        .expect("expires_on is a string")
        .parse()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!((now + 3500..=now + 3700).contains(&expires_on));
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    let claims = decode_unverified(token).unwrap();
    assert_eq!(claims.oid, h.emu.handler_principal_id());
    assert_eq!(claims.appid, h.emu.handler_client_id());
    assert_eq!(claims.tid, h.emu.default_tenant());
    assert_eq!(
        claims.iss,
        format!("https://sts.windows.net/{}/", claims.tid)
    );
    assert_eq!(claims.exp, expires_on);
    assert!(claims.nbf <= now && claims.iat <= now);
    // The token works on ARM; stats count the token request.
    let a = h
        .get(
            token,
            &format!(
                "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
                h.sub
            ),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(h.emu.stats().count("GET token"), 6);
    assert_eq!(h.emu.stats().count_status("GET token", 200), 1);
}

/// Application Insights ingestion with local auth off takes tokens for `https://monitor.azure.com` (the Azure
/// Monitor exporters ask for `https://monitor.azure.com//.default`); they are no good for ARM.
#[tokio::test]
async fn monitor_tokens_are_issued_for_ingestion_and_refused_by_arm() {
    let h = Harness::default().await;
    let secret = identity_header(&h);
    let (status, body) = token_request(
        &h,
        Some(&secret),
        "api-version=2019-08-01&resource=https://monitor.azure.com/",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let claims = h.emu.verify_token(token).unwrap();
    assert_eq!(claims.aud, "https://monitor.azure.com/");
    assert!(azure_emulator::token::is_monitor_audience(&claims.aud));
    assert_eq!(claims.oid, h.emu.handler_principal_id());
    assert!(h.emu.verify_token(&format!("{token}x")).is_err());
    let arm = h
        .get(
            token,
            &format!(
                "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
                h.sub
            ),
        )
        .await;
    assert_eq!(arm.status, 401, "wrong audience for ARM");
}

#[tokio::test]
async fn token_failures_can_be_injected() {
    let h = Harness::default().await;
    let secret = identity_header(&h);
    h.emu.update_faults(|f| f.token_fail_next = 2);
    let q = "api-version=2019-08-01&resource=https://management.azure.com";
    assert_eq!(token_request(&h, Some(&secret), q).await.0, 500);
    assert_eq!(token_request(&h, Some(&secret), q).await.0, 500);
    assert_eq!(token_request(&h, Some(&secret), q).await.0, 200);
    h.emu.update_faults(|f| f.token_failure_rate = 1.0);
    assert_eq!(token_request(&h, Some(&secret), q).await.0, 500);
}

#[tokio::test]
async fn user_assigned_handler_identity_needs_its_client_id() {
    let mut config = EmulatorConfig::for_tests();
    config.handler_user_assigned = true;
    let h = Harness::start(config).await;
    let env: std::collections::BTreeMap<_, _> = h.emu.env().into_iter().collect();
    assert_eq!(env["AZURE_CLIENT_ID"], h.emu.handler_client_id());
    let secret = identity_header(&h);
    let base = "api-version=2019-08-01&resource=https://management.azure.com";
    assert_eq!(token_request(&h, Some(&secret), base).await.0, 400);
    assert_eq!(
        token_request(
            &h,
            Some(&secret),
            &format!("{base}&client_id={}", uuid::Uuid::new_v4())
        )
        .await
        .0,
        400
    );
    let (status, body) = token_request(
        &h,
        Some(&secret),
        &format!("{base}&client_id={}", h.emu.handler_client_id()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        decode_unverified(body["access_token"].as_str().unwrap())
            .unwrap()
            .oid,
        h.emu.handler_principal_id()
    );
}

#[tokio::test]
async fn arm_refuses_bad_tokens_with_its_401_bodies() {
    let h = Harness::default().await;
    let url = format!(
        "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
        h.sub
    );
    let none = h.send(reqwest::Method::GET, None, &url, None).await;
    assert_eq!((none.status, none.code()), (401, "AuthenticationFailed"));
    let graph_token = h
        .emu
        .token_for(&h.emu.admin_principal_id(), "https://graph.microsoft.com")
        .unwrap();
    let wrong_aud = h.get(&graph_token, &url).await;
    assert_eq!(
        (wrong_aud.status, wrong_aud.code()),
        (401, "InvalidAuthenticationTokenAudience")
    );
    assert!(
        wrong_aud
            .message()
            .contains("'https://graph.microsoft.com'")
    );
    // Forge: same header and signature, claims edited to another principal.
    let real = h.admin();
    let mut parts: Vec<String> = real.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    claims["oid"] = json!(h.emu.handler_principal_id());
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let forged = h.get(&parts.join("."), &url).await;
    assert_eq!(
        (forged.status, forged.code()),
        (401, "InvalidAuthenticationToken")
    );
    assert_eq!(h.get("garbage", &url).await.status, 401);
    // Expiry (configurable lifetime).
    h.emu.update_settings(|s| s.token_lifetime_secs = 1);
    let short = h.admin();
    assert_eq!(h.get(&short, &url).await.status, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = h.get(&short, &url).await;
    assert_eq!(
        (expired.status, expired.code()),
        (401, "ExpiredAuthenticationToken")
    );
}

#[tokio::test]
async fn another_tenants_subscription_is_refused_and_not_listed() {
    let mut config = EmulatorConfig::for_tests();
    let foreign = "33333333-3333-4333-8333-333333333333";
    config.subscriptions.push(SubscriptionConfig::new(
        foreign,
        "44444444-4444-4444-8444-444444444444",
    ));
    let h = Harness::start(config).await;
    let a = h.get(&h.emu.handler_token(), &format!("/subscriptions/{foreign}/providers/Microsoft.ContainerService/managedClusters?api-version={CLUSTERS}")).await;
    assert_eq!(
        (a.status, a.code()),
        (401, "InvalidAuthenticationTokenTenant")
    );
    let subs = h
        .get(
            &h.emu.handler_token(),
            "/subscriptions?api-version=2022-12-01",
        )
        .await;
    let ids: Vec<&str> = subs.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&foreign));
    let missing = h.get(&h.admin(), "/subscriptions/55555555-5555-4555-8555-555555555555/resourcegroups?api-version=2024-11-01").await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "SubscriptionNotFound")
    );
}

#[tokio::test]
async fn graph_serves_service_principals_with_graph_tokens_only() {
    let h = Harness::default().await;
    let app = h.emu.create_service_principal("spn");
    let graph = h
        .emu
        .token_for(&h.emu.handler_principal_id(), "https://graph.microsoft.com")
        .unwrap();
    let by_app = h
        .get(
            &graph,
            &format!("/v1.0/servicePrincipals(appId='{}')", app.app_id),
        )
        .await;
    assert_eq!(by_app.status, 200);
    assert_eq!(by_app.body["id"], app.object_id);
    assert_eq!(by_app.body["appId"], app.app_id);
    let by_id = h
        .get(
            &graph,
            &format!("/v1.0/servicePrincipals/{}", app.object_id),
        )
        .await;
    assert_eq!(by_id.body["appId"], app.app_id);
    let missing = h
        .get(
            &graph,
            &format!("/v1.0/servicePrincipals(appId='{}')", uuid::Uuid::new_v4()),
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "Request_ResourceNotFound")
    );
    assert!(missing.body["error"]["innerError"]["request-id"].is_string());
    let arm_token = h.emu.handler_token();
    let refused = h
        .get(
            &arm_token,
            &format!("/v1.0/servicePrincipals/{}", app.object_id),
        )
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(h.emu.stats().count("GET graph servicePrincipals"), 4);
}

/// `ManagedIdentityCredential` reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process environment only
/// (and setting it in-process needs `unsafe`), so this test runs itself again as a child process with the
/// emulator's variables; the child does the credential work, the parent checks the emulator's side.
#[tokio::test]
async fn managed_identity_credential_obtains_and_refreshes_tokens() {
    const CHILD: &str = "ARM_TOKENS_CHILD";
    if std::env::var(CHILD).is_ok() {
        return child_obtains_tokens().await;
    }
    let h = Harness::default().await;
    // Tokens shorter than the credential's 5-minute refresh margin: every get_token refreshes.
    h.emu.update_settings(|s| s.token_lifetime_secs = 120);
    let output = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "managed_identity_credential_obtains_and_refreshes_tokens",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(h.emu.env())
        .env(CHILD, "1")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("1 passed"), "{stdout}");
    let stats = h.emu.stats();
    // Two ARM tokens (the second a refresh) and one Graph token.
    assert_eq!(stats.count_status("GET token", 200), 3, "{stats:?}");
    assert_eq!(stats.count_status("GET token", 500), 0);
    assert_eq!(
        stats
            .for_caller(&h.emu.handler_principal_id())
            .count_status("LIST resourceGroups", 200),
        1
    );
}

async fn child_obtains_tokens() {
    use azure_core::credentials::TokenCredential;
    use azure_core::http::{ClientOptions, RetryOptions};
    use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions};

    let options = ManagedIdentityCredentialOptions {
        client_options: ClientOptions {
            retry: RetryOptions::none(),
            ..ClientOptions::default()
        },
        ..ManagedIdentityCredentialOptions::default()
    };
    let credential = ManagedIdentityCredential::new(Some(options)).unwrap();
    let first = credential
        .get_token(&["https://management.azure.com/.default"], None)
        .await
        .unwrap();
    let claims = decode_unverified(first.token.secret()).unwrap();
    assert_eq!(claims.aud, "https://management.azure.com");
    assert!(first.expires_on > time::OffsetDateTime::now_utc());
    // Use it against ARM.
    let arm = std::env::var("AUTOATTACH_ARM_ENDPOINT").unwrap();
    let subs: Value = reqwest::Client::new()
        .get(format!("{arm}/subscriptions?api-version=2022-12-01"))
        .bearer_auth(first.token.secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sub = subs["value"][0]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let groups = reqwest::Client::new()
        .get(format!(
            "{arm}/subscriptions/{sub}/resourcegroups?api-version=2024-11-01"
        ))
        .bearer_auth(first.token.secret())
        .send()
        .await
        .unwrap();
    assert_eq!(groups.status(), 200);
    // A 2-minute token is inside the 5-minute refresh margin: the next call fetches a new one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = credential
        .get_token(&["https://management.azure.com/.default"], None)
        .await
        .unwrap();
    assert!(second.expires_on > first.expires_on, "refreshed");
    let graph = credential
        .get_token(&["https://graph.microsoft.com/.default"], None)
        .await
        .unwrap();
    assert_eq!(
        decode_unverified(graph.token.secret()).unwrap().aud,
        "https://graph.microsoft.com"
    );
}
