//! ARM token buckets, injected faults, the control API and exact stats.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::time::{Duration, Instant};

use arm_common::{CLUSTERS, Harness};
use azure_emulator::{EmulatorConfig, FaultConfig};
use futures::StreamExt as _;
use serde_json::{Value, json};

/// Tokens the read bucket can have refilled while a burst ran for `elapsed`: it refills 25 at each whole
/// second after its first use, so a burst under a second must meet exactly 250.
fn refill_allowance(elapsed: Duration) -> usize {
    usize::try_from(elapsed.as_secs()).unwrap_or(usize::MAX / 50) * 25
}

#[tokio::test]
async fn three_hundred_reads_give_exactly_250_then_429_and_refill_at_25_per_second() {
    let h = Harness::default().await;
    let token = h.emu.handler_token();
    let url = format!(
        "/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters?api-version={CLUSTERS}",
        h.sub
    );
    // "Immediate": all 300 in flight together, so no whole second (a refill) passes between them.
    let t0 = Instant::now();
    let answers: Vec<_> = futures::stream::iter(0..300)
        .map(|_| h.get(&token, &url))
        .buffer_unordered(64)
        .collect()
        .await;
    // On a loaded machine the burst can outlast a refill tick: what refilled meanwhile may pass too, and
    // nothing more (the bucket is 250 + 25/s, never "unlimited").
    let refill_allowance = refill_allowance(t0.elapsed());
    let mut ok = 0;
    let mut throttled = Vec::new();
    for a in answers {
        match a.status {
            200 => {
                ok += 1;
                assert!(
                    a.header("x-ms-ratelimit-remaining-subscription-reads")
                        .is_some()
                );
            }
            429 => throttled.push(a),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        (250..=250 + refill_allowance).contains(&ok),
        "{ok} reads passed; the bucket allows 250 plus {refill_allowance} refilled"
    );
    assert_eq!(throttled.len(), 300 - ok);
    assert!(!throttled.is_empty(), "no read was throttled");
    let first = &throttled[0];
    assert_eq!(first.code(), "SubscriptionRequestsThrottled");
    let retry_after: u64 = first.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    assert_eq!(
        first.header("x-ms-ratelimit-remaining-subscription-reads"),
        Some("0")
    );
    // The bucket is per principal and per subscription: the admin and another subscription are unaffected.
    assert_eq!(h.get(&h.admin(), &url).await.status, 200);
    let other_sub = h.emu.subscriptions()[1].clone();
    assert_eq!(
        h.get(&token, &url.replace(&h.sub, &other_sub)).await.status,
        200
    );
    // After the advertised wait, reads succeed again at the refill rate (25 per second).
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let refilled = {
        let mut n = 0;
        for _ in 0..40 {
            if h.get(&token, &url).await.status == 200 {
                n += 1;
            }
        }
        n
    };
    assert!((25..=50).contains(&refilled), "{refilled}");
    // Stats saw every one of them.
    let mine = h.emu.stats().for_caller(&h.emu.handler_principal_id());
    assert_eq!(
        mine.count_status("LIST managedClusters", 429)
            + mine.count_status("LIST managedClusters", 200),
        341
    );
    assert_eq!(
        mine.count_status("LIST managedClusters", 200),
        u64::try_from(ok + 1).unwrap() + refilled
    );
}

#[tokio::test]
async fn writes_and_deletes_have_their_own_buckets() {
    let mut config = EmulatorConfig::for_tests();
    config.faults.writes.capacity = 3;
    config.faults.deletes.capacity = 2;
    let h = Harness::start(config).await;
    let admin = h.admin();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let a = h
            .put(
                &admin,
                &format!("{}?api-version=2024-11-01", h.rg_id(&format!("rg{i}"))),
                &json!({"location": "westeurope"}),
            )
            .await;
        statuses.push(a.status);
        if a.status == 201 {
            assert!(
                a.header("x-ms-ratelimit-remaining-subscription-writes")
                    .is_some()
            );
        }
    }
    assert_eq!(statuses, [201, 201, 201, 429]);
    let mut deletes = Vec::new();
    for i in 0..3 {
        deletes.push(
            h.delete(
                &admin,
                &format!("{}?api-version=2024-11-01", h.rg_id(&format!("rg{i}"))),
            )
            .await
            .status,
        );
    }
    assert_eq!(deletes, [202, 202, 429]);
    // Reads are still fine.
    assert_eq!(
        h.get(
            &admin,
            &format!(
                "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
                h.sub
            )
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn throttling_can_be_switched_off() {
    let mut config = EmulatorConfig::for_tests();
    config.faults.throttling = false;
    config.faults.reads.capacity = 1;
    let h = Harness::start(config).await;
    for _ in 0..5 {
        assert_eq!(
            h.get(
                &h.admin(),
                &format!(
                    "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
                    h.sub
                )
            )
            .await
            .status,
            200
        );
    }
}

#[tokio::test]
async fn injected_faults_are_seeded_and_settable_at_run_time() {
    let h = Harness::default().await;
    let url = format!(
        "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
        h.sub
    );
    // Deterministic: the next two requests fail.
    h.emu.update_faults(|f| {
        f.fail_next = 2;
        f.error_status = 500;
    });
    assert_eq!(h.get(&h.admin(), &url).await.status, 500);
    assert_eq!(h.get(&h.admin(), &url).await.code(), "InternalServerError");
    assert_eq!(h.get(&h.admin(), &url).await.status, 200);

    // Random 5xx at a rate: the same seed gives the same sequence.
    let run = |seed: u64| {
        let h = &h;
        let url = url.clone();
        async move {
            h.emu.set_faults(FaultConfig {
                seed,
                error_rate: 0.3,
                throttling: false,
                ..FaultConfig::default()
            });
            let mut pattern = Vec::new();
            for _ in 0..40 {
                pattern.push(h.get(&h.admin(), &url).await.status);
            }
            pattern
        }
    };
    let seven = run(7).await;
    let seven_again = run(7).await;
    let eight = run(8).await;
    assert_eq!(seven, seven_again);
    assert_ne!(seven, eight);
    let failures = seven.iter().filter(|s| **s == 503).count();
    assert!((4..=20).contains(&failures), "{failures} of 40");

    // Latency through the HTTP control API (merge of a partial body).
    let set = h
        .http
        .patch(h.url("/_emulator/faults"))
        .json(&json!({"errorRate": 0.0, "latencyMs": 150}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let t0 = Instant::now();
    assert_eq!(h.get(&h.admin(), &url).await.status, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let current: Value = h
        .http
        .get(h.url("/_emulator/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["latencyMs"], 150);
    assert_eq!(current["seed"], 8);

    // Connection resets: the client sees a transport error, not an answer.
    h.emu.set_faults(FaultConfig {
        reset_rate: 1.0,
        ..FaultConfig::default()
    });
    let resp = h.http.get(h.url(&url)).bearer_auth(h.admin()).send().await;
    let broken = match resp {
        Err(_) => true,
        Ok(r) => r.bytes().await.is_err(),
    };
    assert!(broken, "a reset must not look like a complete answer");
}

#[tokio::test]
async fn stats_are_exact_per_operation_status_and_caller() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrstats", json!({})).await;
    h.emu.reset_stats();
    assert_eq!(h.emu.stats().total(), 0);
    let handler = h.emu.handler_token();
    let reg = format!("{}?api-version=2025-11-01", h.registry_id("rg", "acrstats"));
    for _ in 0..3 {
        assert_eq!(h.get(&handler, &reg).await.status, 200);
    }
    h.get(&handler, &format!("/subscriptions/{}/providers/Microsoft.ContainerRegistry/registries?api-version=2025-11-01", h.sub)).await;
    h.get(
        &h.admin(),
        &format!("{}?api-version={CLUSTERS}", h.cluster_id("rg", "missing")),
    )
    .await;
    h.send(reqwest::Method::GET, None, &reg, None).await;
    let stats = h.emu.stats();
    assert_eq!(stats.count("GET registries"), 4);
    assert_eq!(stats.count_status("GET registries", 401), 1);
    assert_eq!(stats.count("LIST registries"), 1);
    assert_eq!(stats.count_status("GET managedClusters", 404), 1);
    assert_eq!(stats.total(), 6);
    let handler_only = stats.for_caller(&h.emu.handler_principal_id());
    assert_eq!(handler_only.total(), 4);
    assert_eq!(handler_only.by_status().get(&200), Some(&4));
    // The same over HTTP, filtered by caller; control requests are never counted.
    let body: Value = h
        .http
        .get(h.url(&format!(
            "/_emulator/stats?caller={}",
            h.emu.handler_principal_id()
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["total"], 4);
    assert_eq!(body["byOperation"]["GET registries"], 3);
    assert_eq!(
        h.http
            .post(h.url("/_emulator/stats/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(h.emu.stats().total(), 0);
}

#[tokio::test]
async fn reset_clears_state_back_to_the_start() {
    let h = Harness::default().await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrreset", json!({})).await;
    let extra = h.emu.create_service_principal("temp");
    assert_eq!(
        h.http
            .post(h.url("/_emulator/reset"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    let a = h
        .get(
            &h.admin(),
            &format!("{}?api-version=2024-11-01", h.rg_id("rg")),
        )
        .await;
    assert_eq!(a.code(), "ResourceGroupNotFound");
    assert!(h.emu.principal(&extra.object_id).is_none());
    assert!(h.emu.principal(&h.emu.handler_principal_id()).is_some());
    assert_eq!(h.emu.stats().total(), 1);
}

#[tokio::test]
async fn control_api_creates_principals_grants_and_tokens_over_http() {
    let h = Harness::default().await;
    let info: Value = h
        .http
        .get(h.url("/_emulator/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["handlerPrincipalId"], h.emu.handler_principal_id());
    assert_eq!(info["subscriptions"].as_array().unwrap().len(), 2);
    // A principal that is not yet replicated.
    let created = h
        .http
        .post(h.url("/_emulator/principals"))
        .json(&json!({"displayName": "ops", "kind": "User", "replicated": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let principal: Value = created.json().await.unwrap();
    let oid = principal["objectId"].as_str().unwrap().to_owned();
    assert!(principal["createdTime"].is_string());
    let bad = h
        .http
        .post(h.url("/_emulator/principals"))
        .json(&json!({"displayName": "x", "objectId": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Token for it; no rights yet.
    let token: Value = h
        .http
        .post(h.url("/_emulator/tokens"))
        .json(&json!({"objectId": oid}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let url = format!(
        "/subscriptions/{}/resourcegroups?api-version=2024-11-01",
        h.sub
    );
    assert_eq!(h.get(&token, &url).await.code(), "AuthorizationFailed");
    // Grant Reader at the subscription; now it reads.
    let grant = h
        .http
        .post(h.url("/_emulator/grants"))
        .json(&json!({"principalId": oid, "roleDefinitionId": azure_emulator::rbac::READER, "scope": format!("/subscriptions/{}", h.sub)}))
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 201);
    assert_eq!(h.get(&token, &url).await.status, 200);
    // Settings over HTTP (partial merge) and the principal list.
    let settings: Value = h
        .http
        .patch(h.url("/_emulator/settings"))
        .json(&json!({"listPageSize": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["listPageSize"], 1);
    assert_eq!(settings["clusterProvisioningMs"], 50);
    assert_eq!(h.emu.settings().list_page_size, 1);
    let all: Value = h
        .http
        .get(h.url("/_emulator/principals"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|p| p["objectId"] == oid.as_str())
    );
    let wrong: Value = h
        .http
        .patch(h.url("/_emulator/faults"))
        .json(&json!({"errorRate": "lots"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(wrong["error"]["code"], "InvalidControlRequest");
}

/// `with_refill_scale(K)`: capacities stay, refills go K times faster; `bucket_usage` counts every request
/// that met a bucket (throttled ones too) per principal and subscription, and `reset_stats` clears it.
#[tokio::test]
async fn a_refill_scale_keeps_the_burst_and_multiplies_the_refill_and_bucket_usage_counts_it() {
    let mut config = EmulatorConfig::for_tests();
    config.faults.reads = azure_emulator::BucketLimit {
        capacity: 20,
        refill_per_sec: 2,
    };
    config.faults = config.faults.with_refill_scale(10);
    assert_eq!(config.faults.reads.refill_per_sec, 20);
    assert_eq!(config.faults.writes.refill_per_sec, 100);
    assert_eq!(config.faults.resource_graph_window_ms, 500);
    let h = Harness::start(config).await;
    let token = h.emu.handler_token();
    let url = format!(
        "/subscriptions/{}/providers/Microsoft.ContainerService/managedClusters?api-version={CLUSTERS}",
        h.sub
    );
    h.emu.reset_stats();
    let burst: Vec<_> = futures::stream::iter(0..30)
        .map(|_| h.get(&token, &url))
        .buffer_unordered(30)
        .collect()
        .await;
    let ok = burst.iter().filter(|a| a.status == 200).count();
    // The burst is the capacity (plus at most one refill if a whole second passed, which 30 loopback
    // requests do not need).
    assert!((20..=40).contains(&ok), "{ok}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let after: Vec<_> = futures::stream::iter(0..25)
        .map(|_| h.get(&token, &url))
        .buffer_unordered(25)
        .collect()
        .await;
    let refilled = after.iter().filter(|a| a.status == 200).count();
    // One second at 2 × 10 per second: 20 tokens (the unscaled refill would give 2).
    assert!((20..=25).contains(&refilled), "{refilled}");
    let usage = h.emu.control().bucket_usage();
    let mine: Vec<_> = usage
        .iter()
        .filter(|u| {
            u.principal
                .eq_ignore_ascii_case(&h.emu.handler_principal_id())
        })
        .collect();
    assert_eq!(mine.len(), 1, "{usage:?}");
    assert_eq!(mine[0].subscription, h.sub.to_ascii_lowercase());
    assert_eq!(mine[0].requests, 55);
    assert_eq!(mine[0].throttled, (55 - ok - refilled) as u64);
    h.emu.control().reset_stats();
    assert!(h.emu.control().bucket_usage().is_empty());
}
