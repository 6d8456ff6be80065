//! Bursts never starve the work (issue 10, point 4): the real handler behind the custom-handler router,
//! against the emulator. Figures are printed for docs/security.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_autoattach::runtime::bootstrap::{self, Settings};
use acr_autoattach::runtime::config::MapEnv;
use acr_autoattach::runtime::contract;
use acr_autoattach::runtime::functions::Handler;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Estate {
    emulator: RunningEmulator,
    handler: Arc<Handler>,
    sub: String,
    cluster: String,
}

/// One tagged registry and one cluster (still `Creating` for `provisioning_ms` when this returns).
async fn estate(provisioning_ms: u64) -> Estate {
    let mut config = EmulatorConfig::for_tests();
    config.settings.cluster_provisioning_ms = provisioning_ms;
    let emulator = Emulator::start(config).await.unwrap();
    let control = emulator.control();
    let sub = control.subscriptions()[0].clone();
    let admin = ArmAdmin::new(emulator.base_url(), control.admin_token());
    admin
        .put_resource_group(&sub, "rg", "westeurope")
        .await
        .unwrap();
    let registry = RegistrySpec::new(&sub, "rg", "acrshared").tag("acr-autoattach", "*");
    admin.put_registry(&registry).await.unwrap();
    let cluster = ClusterSpec::new(&sub, "rg", "aks1");
    admin.put_cluster(&cluster).await.unwrap();
    let mut env: Vec<(String, String)> = emulator.env();
    env.push(("AUTOATTACH_READY_TIMEOUT_SECS".into(), "20".into()));
    let settings = Settings::from_env(&MapEnv::new(env.clone())).unwrap();
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    let handler =
        Arc::new(bootstrap::handler_with_credential(&settings, credential, None).unwrap());
    control.reset_stats();
    Estate {
        emulator,
        handler,
        sub,
        cluster: cluster.id(),
    }
}

fn event(e: &Estate, id: &str) -> Value {
    json!({
        "id": id, "topic": format!("/subscriptions/{}", e.sub), "subject": e.cluster,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-11-30T06:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.ContainerService/managedClusters/write", "resourceUri": e.cluster,
                 "subscriptionId": e.sub, "status": "Succeeded"}
    })
}

async fn invoke(handler: &Arc<Handler>, trigger: &Value) -> (StatusCode, Value) {
    let body =
        json!({"Data": {"event": trigger}, "Metadata": {"sys": {"MethodName": "OnResourceEvent"}}});
    let request = Request::builder()
        .method("POST")
        .uri("/OnResourceEvent")
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = contract::app(Arc::clone(handler))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The handler's own requests to the emulator, by operation (`GET managedClusters`, `LIST registries`, …).
fn handler_requests(e: &Estate) -> std::collections::BTreeMap<String, u64> {
    let control = e.emulator.control();
    control
        .stats()
        .for_caller(&control.handler_principal_id())
        .by_operation()
}

fn pulls(e: &Estate) -> usize {
    let control = e.emulator.control();
    control
        .stats()
        .for_caller(&control.handler_principal_id())
        .count_status("PUT roleAssignments", 201) as usize
}

/// 2,000 concurrent invocations of one cluster's write event while the cluster is still provisioning:
/// every invocation is answered within Event Grid's 30 s, all succeed once the cluster is ready, the
/// cluster is read at most once per readiness poll (reads at 0, 1, 3, 7, 15 s), and the assignment is written
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_concurrent_deliveries_of_one_event_share_one_run() {
    let e = estate(1_500).await;
    let trigger = event(&e, "burst-1");
    let started = Instant::now();
    let calls = (0..2_000).map(|_| {
        let (handler, trigger) = (Arc::clone(&e.handler), trigger.clone());
        tokio::spawn(async move {
            let (status, _) = invoke(&handler, &trigger).await;
            (status, Instant::now())
        })
    });
    let answers = futures::future::join_all(calls).await;
    let elapsed = started.elapsed();
    let slowest = answers
        .iter()
        .map(|a| a.as_ref().unwrap().1 - started)
        .max()
        .unwrap();
    let ok = answers
        .iter()
        .filter(|a| a.as_ref().unwrap().0 == StatusCode::OK)
        .count();
    let requests = handler_requests(&e);
    let cluster_reads = requests.get("GET managedClusters").copied().unwrap_or(0);
    eprintln!(
        "burst: 2000 invocations, {ok} answered 200, slowest answer {slowest:?}, {cluster_reads} cluster reads, handler requests {requests:?}"
    );
    assert!(slowest < Duration::from_secs(30), "{slowest:?}");
    assert_eq!(
        ok, 2_000,
        "every invocation succeeds once the cluster is ready"
    );
    // One invocation alone reads at 0, 1 and 3 s (ready after 1.5 s): 3 reads. The burst shares them, and at
    // most one trailing run (for deliveries that arrived while the first was in flight) polls again.
    let polls_of_one_run = 3 + 1;
    assert!(
        cluster_reads <= 2 * polls_of_one_run,
        "{cluster_reads} cluster reads for {elapsed:?}"
    );
    assert!(
        requests.get("LIST subscriptions").copied().unwrap_or(0) <= 1,
        "the subscription list is filled once: {requests:?}"
    );
    assert_eq!(pulls(&e), 1, "one assignment written: {requests:?}");
    e.emulator.shutdown().await;
}

/// One delivery holding 1,000 copies of one event costs the reads of one event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_a_thousand_copies_costs_the_reads_of_one_event() {
    let once = estate(0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    once.emulator.control().reset_stats();
    let (status, _) = invoke(&once.handler, &json!([event(&once, "one")])).await;
    assert_eq!(status, StatusCode::OK);
    let one = handler_requests(&once);

    let many = estate(0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    many.emulator.control().reset_stats();
    let copies: Vec<Value> = (0..1_000).map(|_| event(&many, "copy")).collect();
    let (status, answer) = invoke(&many.handler, &Value::Array(copies)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let thousand = handler_requests(&many);
    eprintln!("one event: {one:?}; 1,000 copies: {thousand:?}");
    assert_eq!(thousand, one);
    let events = answer["ReturnValue"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "one report for the merged copies");
    assert!(
        events[0]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("999 duplicate events")),
        "{}",
        events[0]
    );
    once.emulator.shutdown().await;
    many.emulator.shutdown().await;
}
