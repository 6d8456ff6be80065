//! SIGTERM while an invocation is in flight: the invocation finishes and is answered, then the process exits 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::{Emulator, EmulatorConfig};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_invocation_finish() {
    let mut config = EmulatorConfig::for_tests();
    config.settings.cluster_provisioning_ms = 1_500;
    let emulator = Emulator::start(config).await.unwrap();
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
    let cluster = ClusterSpec::new(&sub, "rg", "aks1");
    admin.put_cluster(&cluster).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-autoattach"))
        .arg("serve")
        .env_clear()
        .envs(emulator.env())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUTOATTACH_READY_TIMEOUT_SECS", "10")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(&base).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The cluster is still Creating: this invocation waits for readiness (about 1.5 s).
    let event = json!({
        "id": "e1", "topic": format!("/subscriptions/{sub}"), "subject": cluster.id(),
        "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-11-30T06:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.ContainerService/managedClusters/write", "resourceUri": cluster.id(),
                 "subscriptionId": sub, "status": "Succeeded"}
    });
    let body =
        json!({"Data": {"event": event}, "Metadata": {"sys": {"MethodName": "OnResourceEvent"}}});
    let request = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/OnResourceEvent");
        async move { http.post(url).json(&body).send().await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let pid = child.id().unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let answer = request
        .await
        .unwrap()
        .expect("the in-flight invocation is answered");
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    let logs = answer["Logs"].to_string();
    assert!(logs.contains("repaired"), "{answer}");
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    // New connections are refused once it has stopped.
    assert!(http.get(&base).send().await.is_err());
}
