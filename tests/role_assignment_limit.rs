//! Azure's hard limit of role assignments per subscription (issue 10, point 5), through the real handler's
//! timer function against the emulator: a refused PUT fails the pair with a reason naming the limit and
//! the subscription, no further PUT goes to that subscription in the run, and every verification run reports
//! the assignments counted against the limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

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
use serde_json::Value;
use tower::ServiceExt;

const TIMER: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"VerifyAttachments","UtcNow":"2026-01-04T10:20:00.004Z","RandGuid":"35e6e68c-5583-436c-a277-5aec2b416ba8"}}}"#;

fn make_handler(emulator: &RunningEmulator, extra: &[(&str, &str)]) -> Arc<Handler> {
    let mut env: Vec<(String, String)> = emulator.env();
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::from_env(&MapEnv::new(env.clone())).unwrap();
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    Arc::new(bootstrap::handler_with_credential(&settings, credential, None).unwrap())
}

async fn run_timer(handler: &Arc<Handler>) -> (StatusCode, Value) {
    let request = Request::builder()
        .method("POST")
        .uri("/VerifyAttachments")
        .header("content-type", "application/json; charset=utf-8")
        .body(Body::from(TIMER))
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

/// Assignments the emulator counts against `sub`'s limit (scoped at or below the subscription).
async fn counted(admin: &ArmAdmin, sub: &str) -> u64 {
    let prefix = format!("/subscriptions/{sub}").to_ascii_lowercase();
    admin
        .list_role_assignments(&format!("/subscriptions/{sub}"))
        .await
        .unwrap()
        .iter()
        .filter(|a| {
            a["properties"]["scope"]
                .as_str()
                .is_some_and(|s| s.to_ascii_lowercase().starts_with(&prefix))
        })
        .count() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_subscription_fails_its_pairs_and_gets_no_further_puts() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let control = emulator.control();
    let sub = control.subscriptions()[0].clone();
    let admin = ArmAdmin::new(emulator.base_url(), control.admin_token());
    admin
        .put_resource_group(&sub, "rg", "westeurope")
        .await
        .unwrap();
    admin
        .put_registry(&RegistrySpec::new(&sub, "rg", "acrshared").tag("acr-autoattach", "*"))
        .await
        .unwrap();
    for name in ["aks1", "aks2", "aks3"] {
        let spec = ClusterSpec::new(&sub, "rg", name);
        admin.put_cluster(&spec).await.unwrap();
        admin
            .wait_cluster_succeeded(&spec.id(), Duration::from_secs(10))
            .await
            .unwrap();
    }
    // Room for exactly one more assignment in the subscription.
    let before = counted(&admin, &sub).await;
    let mut settings = control.settings();
    settings.role_assignment_limit = usize::try_from(before + 1).unwrap();
    control.set_settings(settings);
    control.reset_stats();

    // One write at a time, so "no further PUT after the refusal" is observable exactly.
    let handler = make_handler(&emulator, &[("AUTOATTACH_MAX_CONCURRENCY", "1")]);
    let (status, answer) = run_timer(&handler).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let stats = control.stats().for_caller(&control.handler_principal_id());
    let created = stats.count_status("PUT roleAssignments", 201);
    let refused = stats.count_status("PUT roleAssignments", 400);
    eprintln!(
        "limit run: {created} created, {refused} refused, PUTs {}; {answer}",
        stats.count("PUT roleAssignments")
    );
    assert_eq!(
        (created, refused),
        (1, 1),
        "one PUT fits, one is refused, none follows"
    );
    assert_eq!(stats.count("PUT roleAssignments"), 2);

    let ret = &answer["ReturnValue"];
    assert_eq!(ret["counts"]["failed"], 2, "{ret}");
    let capacity = ret["roleAssignments"].as_array().unwrap();
    assert_eq!(capacity.len(), 1, "{ret}");
    assert_eq!(capacity[0]["subscription"], sub.to_ascii_lowercase());
    assert_eq!(capacity[0]["exhausted"], true);
    assert_eq!(capacity[0]["assignments"], before, "counted as inventoried");
    let logs: Vec<&str> = answer["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let failed: Vec<&&str> = logs.iter().filter(|l| l.starts_with("failed ")).collect();
    assert_eq!(failed.len(), 2, "{logs:#?}");
    for line in failed {
        assert!(
            line.contains("role_assignment_limit_exceeded")
                && line.contains(&format!("subscription {sub}"))
                && line.contains("4000"),
            "{line}"
        );
    }
    assert!(
        logs.iter().any(|l| l.starts_with(&format!(
            "role assignments in subscription {}",
            sub.to_ascii_lowercase()
        )) && l.contains("FULL")),
        "{logs:#?}"
    );

    // Audit runs report the count too, and it matches what Azure counts.
    let audit = make_handler(&emulator, &[("AUTOATTACH_MODE", "audit")]);
    let (_, answer) = run_timer(&audit).await;
    let capacity = &answer["ReturnValue"]["roleAssignments"][0];
    assert_eq!(capacity["assignments"], counted(&admin, &sub).await);
    assert_eq!(capacity["limit"], 4000);
    assert_eq!(capacity["exhausted"], false);
    emulator.shutdown().await;
}
