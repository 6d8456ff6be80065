//! The alerter against an in-process fake of Alertmanager's v2 API (and a generic JSON webhook): alerts fire
//! with the documented labels, at most one per pair per run, resolve when the pair recovers (found through
//! `GET /api/v2/alerts`, not through any state of ours), and a failing webhook never fails the caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;
#[path = "support/telemetry_receivers.rs"]
mod receivers;

use acr_autoattach::core::alerts::{ALERT_NAME, AlertRun, AzureFailureCount};
use acr_autoattach::core::model::{
    PairResult, PairStatus, RegistryResult, RegistryStatus, ResourceId,
};
use acr_autoattach::runtime::alerting::{
    AlertConfig, AlertFormat, Alerter, DeliveryFailureKind, DeliveryStage,
};
use acr_autoattach::telemetry::Metrics;
use receivers::{FakeAlertmanager, TelemetryReceiver};
use time::OffsetDateTime;

fn cluster(n: &str) -> ResourceId {
    fixtures::cluster_id("S1", n)
}

fn registry(n: &str) -> ResourceId {
    fixtures::registry_id("S1", n)
}

fn pair(c: &str, r: &str, status: PairStatus, reason: &str) -> PairResult {
    PairResult {
        reason: Some(reason.to_owned()),
        ..fixtures::pair(cluster(c), registry(r), status)
    }
}

fn run<'a>(
    invocation: &'a str,
    pairs: &'a [PairResult],
    registries: &'a [RegistryResult],
    failures: &'a [AzureFailureCount],
    complete: bool,
) -> AlertRun<'a> {
    AlertRun {
        invocation_id: invocation,
        capacity: &[],
        pairs,
        registries,
        azure_failures: failures,
        complete_scope: complete,
        blind: None,
        now: OffsetDateTime::now_utc(),
    }
}

fn alerter(url: &str, format: AlertFormat) -> Alerter {
    Alerter::new(AlertConfig::new(url, format).unwrap(), Metrics::noop())
}

fn labels_of(a: &serde_json::Value) -> (String, String, String) {
    let l = &a["labels"];
    (
        l["cluster"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned(),
        l["registry"]
            .as_str()
            .unwrap_or_default()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned(),
        l["status"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_broken_pair_fires_and_resolves_when_repaired() {
    let am = FakeAlertmanager::start();
    let alerter = alerter(&am.url(), AlertFormat::Alertmanager);

    // Run 1 (timer): aks-1 lost its assignment and repair is blocked by a 403; aks-2 is fine.
    let pairs = [
        pair(
            "aks-1",
            "acrshared",
            PairStatus::Failed,
            "403 AuthorizationFailed: cannot write roleAssignments",
        ),
        pair(
            "aks-1",
            "acrshared",
            PairStatus::Missing,
            "assignment removed",
        ), // same pair again: one alert
        pair("aks-2", "acrshared", PairStatus::Compliant, ""),
    ];
    let failures = [AzureFailureCount {
        operation: "role_assignments.create".into(),
        status: Some(403),
        count: 1,
    }];
    let d = alerter
        .send(&run("inv-1", &pairs, &[], &failures, true))
        .await;
    assert!(d.failures.is_empty(), "{d:?}");
    assert_eq!((d.firing, d.resolved), (2, 0));

    let active = am.active();
    assert_eq!(active.len(), 2, "{active:#?}");
    let pair_alert = active
        .iter()
        .find(|a| a["labels"]["status"] == "failed")
        .expect("pair alert");
    assert_eq!(pair_alert["labels"]["alertname"], ALERT_NAME);
    assert_eq!(pair_alert["labels"]["severity"], "critical");
    assert_eq!(pair_alert["labels"]["cluster"], cluster("aks-1").key());
    assert_eq!(
        pair_alert["labels"]["registry"],
        registry("acrshared").key()
    );
    assert!(
        pair_alert["annotations"]["reason"]
            .as_str()
            .unwrap()
            .contains("403")
    );
    assert_eq!(
        pair_alert["annotations"]["explain"],
        format!(
            "acr-autoattach explain --cluster {} --registry {}",
            cluster("aks-1"),
            registry("acrshared")
        )
    );
    let first_start = pair_alert["startsAt"].as_str().unwrap().to_owned();
    let forbidden = active
        .iter()
        .find(|a| a["labels"]["status"] == "forbidden")
        .expect("403 alert");
    assert_eq!(forbidden["labels"]["operation"], "role_assignments.create");

    // Run 2 (an event for another cluster): aks-1 is not in it, so nothing resolves; still failing alerts
    // are not duplicated.
    let other = [pair("aks-3", "acrshared", PairStatus::Repaired, "")];
    let d = alerter.send(&run("inv-2", &other, &[], &[], false)).await;
    assert_eq!((d.firing, d.resolved), (0, 0));
    assert_eq!(am.active().len(), 2);

    // Run 3 (timer): still broken → re-sent with its original start, not a second alert.
    let d = alerter
        .send(&run("inv-3", &pairs[..1], &[], &failures, true))
        .await;
    assert_eq!((d.firing, d.resolved), (2, 0));
    let active = am.active();
    assert_eq!(active.len(), 2);
    let again = active
        .iter()
        .find(|a| a["labels"]["status"] == "failed")
        .unwrap();
    assert_eq!(again["startsAt"].as_str().unwrap(), first_start);
    assert_eq!(again["annotations"]["invocation_id"], "inv-3");

    // Run 4 (timer): repair succeeded, no more 403 → both alerts end.
    let healed = [
        pair("aks-1", "acrshared", PairStatus::Repaired, ""),
        pair("aks-2", "acrshared", PairStatus::Compliant, ""),
    ];
    let d = alerter.send(&run("inv-4", &healed, &[], &[], true)).await;
    assert_eq!((d.firing, d.resolved), (0, 2), "{d:?}");
    assert!(am.active().is_empty(), "{:#?}", am.active());
    let ended = am
        .all()
        .into_iter()
        .find(|a| a["labels"]["status"] == "failed")
        .unwrap();
    assert_eq!(ended["startsAt"].as_str().unwrap(), first_start);

    // The resolving POST went to /api/v2/alerts and every GET filtered on our alertname.
    assert!(am.posts().iter().all(|(uri, _)| uri == "/api/v2/alerts"));
}

#[tokio::test]
async fn invalid_selector_and_repeated_transient_failures_alert_a_status_change_replaces_the_old_alert()
 {
    let am = FakeAlertmanager::start();
    let alerter = alerter(&format!("{}/", am.url()), AlertFormat::Alertmanager);
    let regs = [RegistryResult {
        registry_id: registry("acrbad"),
        status: RegistryStatus::InvalidSelector,
        reason: "`env in (prod` does not parse".into(),
    }];
    let failures = [
        AzureFailureCount {
            operation: "arm.list_clusters".into(),
            status: Some(429),
            count: 2,
        },
        AzureFailureCount {
            operation: "arm.list_clusters".into(),
            status: None,
            count: 1,
        },
        AzureFailureCount {
            operation: "graph.get_sp".into(),
            status: Some(503),
            count: 1,
        },
    ];
    let pairs = [pair(
        "aks-1",
        "acrshared",
        PairStatus::Missing,
        "audit mode",
    )];
    alerter
        .send(&run("inv-1", &pairs, &regs, &failures, false))
        .await;
    let mut got: Vec<(String, String, String)> = am.active().iter().map(labels_of).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (String::new(), String::new(), "transient".into()),
            (String::new(), "acrbad".into(), "invalid_selector".into()),
            ("aks-1".into(), "acrshared".into(), "missing".into()),
        ]
    );

    // The pair goes from missing to failed: the `missing` alert ends, a `failed` one starts.
    let pairs = [pair(
        "aks-1",
        "acrshared",
        PairStatus::Failed,
        "409 conflict",
    )];
    let d = alerter.send(&run("inv-2", &pairs, &regs, &[], false)).await;
    assert_eq!((d.firing, d.resolved), (2, 1), "{d:?}");
    let mut got: Vec<(String, String, String)> = am.active().iter().map(labels_of).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (String::new(), String::new(), "transient".into()), // an event run does not resolve run-level alerts
            (String::new(), "acrbad".into(), "invalid_selector".into()),
            ("aks-1".into(), "acrshared".into(), "failed".into()),
        ]
    );
}

#[tokio::test]
async fn a_failing_or_unreachable_webhook_is_reported_not_raised() {
    let am = FakeAlertmanager::start();
    am.fail_with(Some(503));
    let alerter = alerter(&am.url(), AlertFormat::Alertmanager);
    let pairs = [pair("aks-1", "acrshared", PairStatus::Failed, "boom")];
    let d = alerter.send(&run("inv-1", &pairs, &[], &[], true)).await;
    assert_eq!(d.firing, 0);
    assert_eq!(
        d.failures
            .iter()
            .map(|f| (f.stage, f.kind))
            .collect::<Vec<_>>(),
        [
            (DeliveryStage::Query, DeliveryFailureKind::Status(503)),
            (DeliveryStage::Post, DeliveryFailureKind::Status(503)),
        ]
    );

    // Nothing listens on the port of a server that has stopped.
    let gone = FakeAlertmanager::start().url();
    let alerter = Alerter::new(
        AlertConfig::new(&gone, AlertFormat::Json).unwrap(),
        Metrics::noop(),
    );
    let d = alerter.send(&run("inv-1", &pairs, &[], &[], true)).await;
    assert_eq!(d.failures.len(), 1);
    assert_eq!(d.failures[0].kind, DeliveryFailureKind::Connect);
}

#[tokio::test]
async fn json_format_posts_one_message_per_run_and_only_for_problems() {
    let hook = TelemetryReceiver::start();
    let alerter = alerter(
        &format!("{}/workflows/run?sig=abc", hook.url()),
        AlertFormat::Json,
    );

    let healthy = [pair("aks-1", "acrshared", PairStatus::Compliant, "")];
    let d = alerter.send(&run("inv-1", &healthy, &[], &[], true)).await;
    assert_eq!(d.firing, 0);
    assert!(
        hook.requests().is_empty(),
        "nothing to report, nothing sent"
    );

    let pairs = [
        pair("aks-1", "acrshared", PairStatus::Failed, "403 on PUT"),
        pair("aks-1", "acrshared", PairStatus::Failed, "403 on PUT"),
        pair("aks-2", "acrshared", PairStatus::Missing, "audit mode"),
        pair("aks-3", "acrshared", PairStatus::Pending, "provisioning"),
    ];
    let d = alerter.send(&run("inv-2", &pairs, &[], &[], true)).await;
    assert_eq!(d.firing, 2);
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/workflows/run");
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["source"], "acr-autoattach");
    assert_eq!(body["invocationId"], "inv-2");
    assert!(body["title"].as_str().unwrap().contains("2 problem"));
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("acr-autoattach explain --cluster")
    );
    let alerts = body["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["status"], "failed");
    assert_eq!(alerts[0]["severity"], "critical");
    assert_eq!(alerts[1]["status"], "missing");
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, stopped when dropped.
struct RealAlertmanager {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_alertmanager() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .flat_map(|d| [d.join("prometheus-alertmanager"), d.join("alertmanager")])
            .find(|p| p.is_file())
    })
}

async fn start_real_alertmanager(binary: &std::path::Path) -> RealAlertmanager {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = std::process::Command::new(binary)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--config.file={}", config.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let am = RealAlertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..100 {
        if client
            .get(format!("{}/-/ready", am.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return am;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("alertmanager did not become ready");
}

async fn real_active(url: &str) -> Vec<serde_json::Value> {
    let mut u = url::Url::parse(&format!("{url}/api/v2/alerts")).unwrap();
    u.query_pairs_mut()
        .append_pair("filter", &format!("alertname=\"{ALERT_NAME}\""))
        .append_pair("active", "true");
    reqwest::get(u).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn against_a_real_alertmanager_the_alert_fires_then_resolves() {
    let Some(binary) = find_alertmanager() else {
        eprintln!(
            "skipping: prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)"
        );
        return;
    };
    let am = start_real_alertmanager(&binary).await;
    let alerter = alerter(&am.url, AlertFormat::Alertmanager);

    let broken = [pair(
        "aks-1",
        "acrshared",
        PairStatus::Failed,
        "assignment removed; repair refused: 403 AuthorizationFailed",
    )];
    let forbidden = [AzureFailureCount {
        operation: "put_role_assignment".into(),
        status: Some(403),
        count: 1,
    }];
    let d = alerter
        .send(&run("inv-1", &broken, &[], &forbidden, true))
        .await;
    assert!(d.failures.is_empty(), "{d:?}");
    assert_eq!(d.firing, 2);
    let active = real_active(&am.url).await;
    let mut got: Vec<(String, String, String)> = active.iter().map(labels_of).collect();
    got.sort();
    assert_eq!(
        got,
        [
            (String::new(), String::new(), "forbidden".into()),
            ("aks-1".into(), "acrshared".into(), "failed".into()),
        ]
    );
    let pair_alert = active
        .iter()
        .find(|a| a["labels"]["status"] == "failed")
        .unwrap();
    assert_eq!(pair_alert["labels"]["severity"], "critical");
    assert!(
        pair_alert["annotations"]["explain"]
            .as_str()
            .unwrap()
            .starts_with("acr-autoattach explain")
    );

    // The repair succeeds at the next timer run: Alertmanager's own listing shows nothing active any more.
    let healed = [pair("aks-1", "acrshared", PairStatus::Repaired, "")];
    let d = alerter.send(&run("inv-2", &healed, &[], &[], true)).await;
    assert!(d.failures.is_empty(), "{d:?}");
    assert_eq!((d.firing, d.resolved), (0, 2));
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(real_active(&am.url).await.is_empty());
}
