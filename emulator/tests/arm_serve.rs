//! The `azure-emulator serve` binary: prints the handler's variables in `export K=V` form, then `ready`,
//! quickly, on loopback; flags configure it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_prints_exports_then_ready_and_serves() {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args([
            "serve",
            "--port",
            "0",
            "--subscription",
            "aaaaaaaa-0000-4000-8000-000000000001:first",
            "--subscription",
            "aaaaaaaa-0000-4000-8000-000000000002@bbbbbbbb-0000-4000-8000-000000000002",
            "--no-throttling",
            "--writes",
            "5/1",
            "--cluster-provisioning-ms",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut exports = Vec::new();
    loop {
        let line = lines.next().expect("stdout closed before ready").unwrap();
        if line == "ready" {
            break;
        }
        exports.push(line);
    }
    let startup = t0.elapsed();
    let vars: std::collections::BTreeMap<String, String> = exports
        .iter()
        .map(|l| {
            let rest = l
                .strip_prefix("export ")
                .unwrap_or_else(|| panic!("not an export line: {l}"));
            let (k, v) = rest.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let base = vars["AUTOATTACH_ARM_ENDPOINT"].clone();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_eq!(vars["AUTOATTACH_GRAPH_ENDPOINT"], base);
    assert_eq!(vars["IDENTITY_ENDPOINT"], format!("{base}/msi/token"));
    assert!(!vars["IDENTITY_HEADER"].is_empty());
    assert_eq!(exports[0], format!("export AUTOATTACH_ARM_ENDPOINT={base}"));

    // It serves: a token from the identity endpoint lists the configured subscriptions.
    let client = reqwest::blocking::Client::new();
    let token: serde_json::Value = client
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://management.azure.com",
            vars["IDENTITY_ENDPOINT"]
        ))
        .header("x-identity-header", &vars["IDENTITY_HEADER"])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let subs: serde_json::Value = client
        .get(format!("{base}/subscriptions?api-version=2022-12-01"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed: Vec<&str> = subs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap())
        .collect();
    // The second subscription lives in another tenant: the handler's token does not see it.
    assert_eq!(listed, ["aaaaaaaa-0000-4000-8000-000000000001"]);
    assert_eq!(subs["value"][0]["displayName"], "first");
    let faults: serde_json::Value = client
        .get(format!("{base}/_emulator/faults"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(faults["throttling"], false);
    assert_eq!(
        faults["writes"],
        serde_json::json!({"capacity": 5, "refillPerSec": 1})
    );
    assert_eq!(
        faults["reads"],
        serde_json::json!({"capacity": 250, "refillPerSec": 25})
    );
    let settings: serde_json::Value = client
        .get(format!("{base}/_emulator/settings"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(settings["clusterProvisioningMs"], 10);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(startup < Duration::from_secs(1), "startup took {startup:?}");
}

#[test]
fn serve_refuses_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args(["serve", "--subscription", "not-a-guid"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a GUID"));
}
