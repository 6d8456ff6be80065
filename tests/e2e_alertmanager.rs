//! Issue 7's alerting acceptance, end to end: Event Grid → Functions host simulator → `acr-autoattach serve` →
//! ARM emulator, alerting to Alertmanager's v2 API. A pair breaks (our assignment removed behind our back, and
//! repair refused with 403 because the handler lost its write right): the timer's run fires an alert for the pair
//! (and one for the 403); once the right is back the next run repairs the pair and resolves both alerts.
//!
//! `.ci/e2e-alertmanager.sh` starts a real Alertmanager on loopback and runs this file with `ALERTMANAGER_URL`
//! (and `AUTOATTACH_E2E_ALERTMANAGER=1`, so a missing URL fails there). Without it the real-Alertmanager test
//! prints a notice and returns; the same scenario always runs against the in-process fake of the v2 API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;
#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::time::Duration;

use acr_autoattach::cli::testbed::Testbed;
use acr_autoattach::core::alerts::ALERT_NAME;
use acr_autoattach::core::model::ACR_PULL_GUID;
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use azure_emulator::rbac::{RBAC_ADMINISTRATOR, pull_roles_only_condition};
use estate::*;
use serde_json::Value;

const URL_VARIABLE: &str = "ALERTMANAGER_URL";
/// Set by `.ci/e2e-alertmanager.sh`: then a missing URL is a broken script, not an opt-out.
const SCRIPT_VARIABLE: &str = "AUTOATTACH_E2E_ALERTMANAGER";
/// Bound on waiting for Alertmanager to show (or stop showing) an alert after a run posted it.
const ALERT_WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_fires_for_a_broken_pair_and_resolves_after_repair() {
    let url = std::env::var(URL_VARIABLE)
        .ok()
        .filter(|u| !u.trim().is_empty());
    let Some(url) = url else {
        assert!(
            std::env::var_os(SCRIPT_VARIABLE).is_none(),
            "{SCRIPT_VARIABLE} is set but {URL_VARIABLE} is not: the script must pass Alertmanager's URL"
        );
        eprintln!(
            "notice: {URL_VARIABLE} is not set; skipping the real-Alertmanager scenario \
             (.ci/e2e-alertmanager.sh runs it against prometheus-alertmanager on loopback)"
        );
        return;
    };
    let url = url.trim().trim_end_matches('/').to_owned();
    eprintln!("scenario against Alertmanager at {url}");
    broken_pair_alerts_then_resolves(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_alertmanager_fires_for_a_broken_pair_and_resolves_after_repair() {
    let am = receivers::FakeAlertmanager::start();
    broken_pair_alerts_then_resolves(&am.url()).await;
    // Every post was a JSON array of alerts to the v2 path.
    assert!(
        am.posts()
            .iter()
            .all(|(uri, body)| uri.starts_with("/api/v2/alerts") && body.is_array())
    );
}

/// Our alerts that Alertmanager lists as active (`GET /api/v2/alerts?active=true`, filtered on our alertname).
async fn active_alerts(http: &reqwest::Client, am: &str) -> Vec<Value> {
    let mut url = url::Url::parse(&format!("{am}/api/v2/alerts")).expect("Alertmanager's URL");
    url.query_pairs_mut()
        .append_pair("filter", &format!("alertname=\"{ALERT_NAME}\""))
        .append_pair("active", "true");
    let response = http
        .get(url)
        .send()
        .await
        .expect("Alertmanager answers GET /api/v2/alerts");
    assert!(
        response.status().is_success(),
        "GET /api/v2/alerts: {}",
        response.status()
    );
    let alerts: Vec<Value> = response.json().await.expect("a JSON array of alerts");
    // A listed alert must not be over: `endsAt` in the future (or absent), state not `resolved`.
    let now = time::OffsetDateTime::now_utc();
    alerts
        .into_iter()
        .filter(|a| a["status"]["state"].as_str() != Some("resolved"))
        .filter(|a| {
            a["endsAt"].as_str().is_none_or(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .is_ok_and(|end| end > now)
            })
        })
        .collect()
}

fn label<'a>(alert: &'a Value, name: &str) -> &'a str {
    alert["labels"][name].as_str().unwrap_or_default()
}

fn is_pair_alert(alert: &Value, cluster: &str, registry: &str) -> bool {
    label(alert, "cluster") == cluster.to_ascii_lowercase()
        && label(alert, "registry") == registry.to_ascii_lowercase()
}

fn is_forbidden_write_alert(alert: &Value) -> bool {
    label(alert, "status") == "forbidden" && label(alert, "operation") == "put_role_assignment"
}

/// Polls Alertmanager until `done` holds for the active alerts, or [`ALERT_WAIT`] passes; returns the last list.
async fn wait_alerts(
    http: &reqwest::Client,
    am: &str,
    done: impl Fn(&[Value]) -> bool,
) -> (bool, Vec<Value>) {
    let deadline = tokio::time::Instant::now() + ALERT_WAIT;
    loop {
        let alerts = active_alerts(http, am).await;
        if done(&alerts) {
            return (true, alerts);
        }
        if tokio::time::Instant::now() >= deadline {
            return (false, alerts);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_timer_ok(bed: &Testbed) {
    let run = bed
        .run_timer()
        .await
        .expect("the host runs VerifyAttachments");
    if !run.succeeded() {
        dump(bed);
    }
    assert!(run.succeeded(), "VerifyAttachments failed: {run:?}");
}

/// The handler's Role Based Access Control Administrator assignment at the subscription (its write right).
async fn handler_write_right(bed: &Testbed, subscription_scope: &str) -> Vec<String> {
    let handler = bed
        .emulator
        .control()
        .handler_principal_id()
        .to_ascii_lowercase();
    bed.admin
        .list_role_assignments(subscription_scope)
        .await
        .unwrap()
        .iter()
        .filter(|a| principal(a) == handler && role_guid(a) == RBAC_ADMINISTRATOR)
        .filter(|a| {
            a["properties"]["scope"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(subscription_scope))
        })
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn broken_pair_alerts_then_resolves(am: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let bed = start(
        options()
            .setting("AUTOATTACH_ALERT_WEBHOOK", am)
            .setting("AUTOATTACH_ALERT_FORMAT", "alertmanager"),
    )
    .await;
    let s1 = sub(&bed, 0);
    let subscription_scope = format!("/subscriptions/{s1}");
    // Fresh names, so a long-lived Alertmanager holds no alert of an earlier run for this pair.
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let group = format!("rg-alerts-{unique}");
    rg(&bed, &s1, &group).await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, &group, &format!("acralerts{unique}")).tag("acr-autoattach", "*"),
    )
    .await;
    let (aks, kubelet) = cluster(
        &bed,
        ClusterSpec::new(&s1, &group, &format!("aks-alerts-{unique}")),
    )
    .await;
    settle(&bed).await;
    assert_eq!(
        pulls(&bed, &acr, &kubelet).await,
        vec![(ACR_PULL_GUID.to_owned(), true)],
        "the event path attaches the cluster"
    );
    // A healthy complete run: nothing fires for the pair.
    run_timer_ok(&bed).await;
    let (quiet, alerts) = wait_alerts(&http, am, |a| {
        !a.iter().any(|x| is_pair_alert(x, &aks, &acr))
    })
    .await;
    assert!(quiet, "no alert for a healthy pair: {alerts:#?}");

    // Break the pair: the handler loses its write right (repair will get 403), then our assignment is removed
    // behind its back, both through ARM as the admin.
    let rights = handler_write_right(&bed, &subscription_scope).await;
    assert_eq!(
        rights.len(),
        1,
        "the handler holds one RBAC Administrator assignment"
    );
    bed.admin.delete_role_assignment(&rights[0]).await.unwrap();
    let kubelet_lower = kubelet.to_ascii_lowercase();
    let ours: Vec<String> = assignments_at(&bed, &acr)
        .await
        .iter()
        .filter(|a| principal(a) == kubelet_lower && is_owned(a))
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ours.len(), 1, "our assignment for the pair");
    bed.admin.delete_role_assignment(&ours[0]).await.unwrap();
    settle(&bed).await;

    run_timer_ok(&bed).await;
    assert!(
        pulls(&bed, &acr, &kubelet).await.is_empty(),
        "repair was refused (403), so the pair stays broken"
    );
    let (fired, alerts) = wait_alerts(&http, am, |a| {
        a.iter().any(|x| is_pair_alert(x, &aks, &acr)) && a.iter().any(is_forbidden_write_alert)
    })
    .await;
    if !fired {
        dump(&bed);
    }
    assert!(
        fired,
        "an active alert for the pair and one for the refused write: {alerts:#?}"
    );
    let pair_alert = alerts
        .iter()
        .find(|x| is_pair_alert(x, &aks, &acr))
        .unwrap();
    eprintln!("fired: {pair_alert:#}");
    assert_eq!(label(pair_alert, "alertname"), ALERT_NAME);
    assert_eq!(label(pair_alert, "status"), "failed");
    assert_eq!(label(pair_alert, "severity"), "critical");
    let reason = pair_alert["annotations"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("AuthorizationFailed"),
        "the reason annotation carries ARM's refusal: {reason:?}"
    );
    let explain = pair_alert["annotations"]["explain"]
        .as_str()
        .unwrap_or_default();
    assert!(
        explain.starts_with("acr-autoattach explain --cluster ")
            && explain
                .to_ascii_lowercase()
                .contains(&acr.to_ascii_lowercase()),
        "explain annotation: {explain:?}"
    );
    let forbidden = alerts.iter().find(|x| is_forbidden_write_alert(x)).unwrap();
    assert_eq!(label(forbidden, "severity"), "critical");

    // Give the right back as the infrastructure grants it (constrained to the pull roles), and let repair run.
    bed.emulator.control().grant_with_condition(
        &bed.emulator.control().handler_principal_id(),
        RBAC_ADMINISTRATOR,
        &subscription_scope,
        &pull_roles_only_condition(),
    );
    run_timer_ok(&bed).await;
    assert_eq!(
        pulls(&bed, &acr, &kubelet).await,
        vec![(ACR_PULL_GUID.to_owned(), true)],
        "the next run repairs the pair"
    );
    let (resolved, alerts) = wait_alerts(&http, am, |a| {
        !a.iter()
            .any(|x| is_pair_alert(x, &aks, &acr) || is_forbidden_write_alert(x))
    })
    .await;
    if !resolved {
        dump(&bed);
    }
    assert!(
        resolved,
        "the pair's and the 403's alerts are resolved once repaired: {alerts:#?}"
    );
    eprintln!("resolved: neither the pair's nor the 403's alert is active after the repair");
    bed.shutdown().await;
}
