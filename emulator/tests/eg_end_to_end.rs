//! Event Grid publisher → Functions host simulator → recording handler, alone and behind the ARM emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use azure_emulator::bus::{ArmEvent, ArmOperationKind, EventBus};
use azure_emulator::eventgrid::{EventSubscription, Publisher, PublisherConfig};
use azure_emulator::functions_host::{FunctionsHost, HostOptions};
use azure_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

const HANDLER: &str = env!("CARGO_BIN_EXE_recording-handler");

fn app_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        json!({"version": "2.0", "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
               "customHandler": {"description": {"defaultExecutablePath": HANDLER}}})
        .to_string(),
    )
    .unwrap();
    let folder = dir.path().join("OnResourceEvent");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]})
            .to_string(),
    )
    .unwrap();
    dir
}

fn host_options(root: &Path, mode: &str) -> (HostOptions, PathBuf) {
    let recording = root.join("recording.jsonl");
    let mut options = HostOptions::new(root);
    options.settings = BTreeMap::from([
        ("RECORDING_FILE".to_owned(), recording.display().to_string()),
        ("RECORDING_MODE".to_owned(), mode.to_owned()),
    ]);
    (options, recording)
}

fn recorded_requests(recording: &Path) -> Vec<Value> {
    std::fs::read_to_string(recording)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|record| record["kind"] == "request")
        .collect()
}

fn config() -> PublisherConfig {
    PublisherConfig::scaled(0.001, Duration::from_secs(10))
}

#[tokio::test]
async fn a_failing_function_makes_event_grid_retry_until_it_succeeds() {
    let root = app_root();
    let (options, recording) = host_options(root.path(), "fail:2");
    let host = FunctionsHost::start(options).await.unwrap();
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, config());
    publisher
        .subscribe(EventSubscription::as_infra_configures(
            "on-resource-event",
            host.eventgrid_webhook_url("OnResourceEvent"),
        ))
        .await
        .unwrap();
    let cluster = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks-1";
    bus.publish(&ArmEvent {
        kind: ArmOperationKind::Write,
        resource_uri: cluster.into(),
        operation_name: "Microsoft.ContainerService/managedClusters/write".into(),
        subscription_id: "s1".into(),
        tenant_id: "t1".into(),
        correlation_id: "c1".into(),
        claims: BTreeMap::new(),
        authorization_action: "Microsoft.ContainerService/managedClusters/write".into(),
        authorization_scope: cluster.into(),
        http_method: "PUT".into(),
        url: format!("https://management.azure.com{cluster}?api-version=2025-10-01"),
        time: time::OffsetDateTime::now_utc(),
        resource_body: None,
    });
    assert!(publisher.wait_idle(Duration::from_secs(20)).await);

    let statuses: Vec<Option<u16>> = publisher.deliveries().iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [Some(500), Some(500), Some(202)],
        "the host answers 500 while the function fails"
    );
    let requests = recorded_requests(&recording);
    assert_eq!(requests.len(), 3);
    let ids: Vec<&Value> = requests
        .iter()
        .map(|r| &r["body"]["Data"]["event"]["id"])
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "the same event is redelivered"
    );
    let invocations = host.invocations();
    assert_eq!(invocations.iter().filter(|i| i.succeeded()).count(), 1);
    assert!(publisher.deadletters().is_empty());
}

#[tokio::test]
async fn a_bad_request_from_the_host_is_not_retried() {
    // The host answers 400 to a webhook call without `functionName`; Event Grid must not retry a 400.
    let root = app_root();
    let (options, _) = host_options(root.path(), "ok");
    let host = FunctionsHost::start(options).await.unwrap();
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, config());
    let url = format!(
        "{}/runtime/webhooks/eventgrid?code={}",
        host.base_url(),
        host.eventgrid_extension_key()
    );
    publisher
        .subscribe(EventSubscription::new("no-function-name", url))
        .await
        .unwrap();
    let mut event = sample_event();
    event.operation_name = "Microsoft.ContainerRegistry/registries/write".into();
    bus.publish(&event);
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(publisher.deliveries().len(), 1);
    assert_eq!(publisher.deliveries()[0].status, Some(400));
    assert_eq!(publisher.deadletters().len(), 1);
}

fn sample_event() -> ArmEvent {
    ArmEvent {
        kind: ArmOperationKind::Write,
        resource_uri: "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1".into(),
        operation_name: String::new(),
        subscription_id: "s1".into(),
        tenant_id: "t1".into(),
        correlation_id: "c1".into(),
        claims: BTreeMap::new(),
        authorization_action: String::new(),
        authorization_scope: String::new(),
        http_method: "PUT".into(),
        url: "https://management.azure.com/x?api-version=2025-04-01".into(),
        time: time::OffsetDateTime::now_utc(),
        resource_body: None,
    }
}

#[tokio::test]
async fn a_cluster_put_in_the_arm_emulator_reaches_the_function_as_a_write_success() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let root = app_root();
    let (mut options, recording) = host_options(root.path(), "ok");
    for (key, value) in emulator.env() {
        options.settings.insert(key, value);
    }
    let host = FunctionsHost::start(options).await.unwrap();
    let publisher = Publisher::start(&emulator.bus(), config());
    publisher
        .subscribe(EventSubscription::as_infra_configures(
            "on-resource-event",
            host.eventgrid_webhook_url("OnResourceEvent"),
        ))
        .await
        .unwrap();

    let sub = emulator.subscriptions()[0].clone();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = emulator.admin_token();
    let put = |url: String, body: Value| client.put(url).bearer_auth(&token).json(&body).send();
    let group = format!(
        "{}/subscriptions/{sub}/resourcegroups/rg-e2e?api-version=2024-03-01",
        emulator.base_url()
    );
    let answer = put(group, json!({"location": "westeurope"})).await.unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let cluster_id = format!(
        "/subscriptions/{sub}/resourceGroups/rg-e2e/providers/Microsoft.ContainerService/managedClusters/aks-e2e"
    );
    let answer = put(
        format!("{}{cluster_id}?api-version=2025-10-01", emulator.base_url()),
        json!({"location": "westeurope", "tags": {"env": "prod"}, "properties": {"dnsPrefix": "aks-e2e"}}),
    )
    .await
    .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    // The cluster finishes provisioning shortly after (and may publish a second write then).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(publisher.wait_idle(Duration::from_secs(20)).await);

    let requests = recorded_requests(&recording);
    assert!(!requests.is_empty(), "the function was never invoked");
    let cluster_requests = requests.len();
    for request in &requests {
        let event = &request["body"]["Data"]["event"];
        assert_eq!(
            event["eventType"],
            "Microsoft.Resources.ResourceWriteSuccess"
        );
        assert_eq!(
            event["data"]["operationName"],
            "Microsoft.ContainerService/managedClusters/write"
        );
        assert!(
            event["subject"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&cluster_id)
        );
        assert_eq!(
            event["topic"].as_str().unwrap().to_ascii_lowercase(),
            format!("/subscriptions/{sub}").to_ascii_lowercase()
        );
        assert_eq!(
            event["data"]["subscriptionId"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase(),
            sub.to_ascii_lowercase()
        );
        assert_eq!(request["body"]["Metadata"]["data"], event["data"]);
    }
    // A registry re-tagged through the Tags API arrives as `Microsoft.Resources/tags/write` on
    // `{registry}/providers/Microsoft.Resources/tags/default`.
    let registry_id = format!(
        "/subscriptions/{sub}/resourceGroups/rg-e2e/providers/Microsoft.ContainerRegistry/registries/acre2e"
    );
    let answer = put(
        format!(
            "{}{registry_id}?api-version=2025-04-01",
            emulator.base_url()
        ),
        json!({"location": "westeurope", "sku": {"name": "Standard"}}),
    )
    .await
    .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let answer = put(
        format!(
            "{}{registry_id}/providers/Microsoft.Resources/tags/default?api-version=2024-03-01",
            emulator.base_url()
        ),
        json!({"properties": {"tags": {"acr-autoattach": "env=prod"}}}),
    )
    .await
    .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    assert!(publisher.wait_idle(Duration::from_secs(20)).await);
    let operations: Vec<(String, String)> = recorded_requests(&recording)[cluster_requests..]
        .iter()
        .map(|r| {
            let event = &r["body"]["Data"]["event"];
            (
                event["data"]["operationName"].as_str().unwrap().to_owned(),
                event["subject"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        operations.iter().any(
            |(op, subject)| op == "Microsoft.ContainerRegistry/registries/write"
                && subject.eq_ignore_ascii_case(&registry_id)
        ),
        "{operations:?}"
    );
    assert!(
        operations
            .iter()
            .any(|(op, subject)| op == "Microsoft.Resources/tags/write"
                && subject.eq_ignore_ascii_case(&format!(
                    "{registry_id}/providers/Microsoft.Resources/tags/default"
                ))),
        "{operations:?}"
    );

    // The resource group write was filtered out by the infra subscription.
    assert!(publisher.deliveries().iter().all(|d| d.status == Some(202)));
    let start: Value = serde_json::from_str(
        std::fs::read_to_string(&recording)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["kind"], "start");
}

#[test]
fn up_command_starts_everything_and_prints_the_exports() {
    let root = app_root();
    let recording = root.path().join("recording.jsonl");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args([
            "up",
            "--port",
            "0",
            "--host-port",
            "0",
            "--no-timers",
            "--app-root",
        ])
        .arg(root.path())
        .arg("--setting")
        .arg(format!("RECORDING_FILE={}", recording.display()))
        .arg("--")
        .arg(HANDLER)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let done = line == "ready";
            let _ = tx.send(line);
            if done {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_mins(1)) {
        let done = line == "ready";
        lines.push(line);
        if done {
            break;
        }
    }
    // SIGINT, as a user's Ctrl-C: `up` stops the host, which stops the handler (SIGKILL would orphan it).
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let stopped = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        child.try_wait().unwrap().is_some()
    });
    if !stopped {
        let _ = child.kill();
    }
    let _ = child.wait();
    assert!(stopped, "up must stop on SIGINT");
    assert_eq!(lines.last().map(String::as_str), Some("ready"), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("export AUTOATTACH_ARM_ENDPOINT=http://127.0.0.1:")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("OnResourceEvent (eventGridTrigger)")),
        "{lines:?}"
    );
    let start: Value = serde_json::from_str(
        std::fs::read_to_string(&recording)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(
        start["env"]["FUNCTIONS_CUSTOMHANDLER_PORT"].is_string(),
        "the handler was started under the host"
    );
}
