//! `serve --tls`: HTTPS on loopback with a certificate from a CA made at start. A client that trusts the CA file
//! gets answers (tokens, ARM, Graph) and `nextLink`s on `https://`; a client that does not is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use azure_emulator::{Emulator, EmulatorConfig};
use serde_json::Value;

fn trusting(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_client_that_trusts_the_ca_file_is_served_over_https() {
    let emu = Emulator::start(EmulatorConfig {
        tls: true,
        ..EmulatorConfig::for_tests()
    })
    .await
    .unwrap();
    let base = emu.base_url();
    assert!(
        base.starts_with(&format!("https://127.0.0.1:{}", emu.addr().port())),
        "{base}"
    );
    let ca_file = emu.ca_file().expect("a CA file");
    let pem = std::fs::read(&ca_file).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pem),
        emu.ca_pem().unwrap_or_default()
    );
    assert!(String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"));
    let env: std::collections::BTreeMap<String, String> = emu.env().into_iter().collect();
    assert_eq!(env["AZURE_EMULATOR_CA_FILE"], ca_file.display().to_string());
    assert_eq!(env["IDENTITY_ENDPOINT"], format!("{base}/msi/token"));

    // The managed-identity endpoint, then ARM, over TLS with only the emulator's CA trusted.
    let client = trusting(&pem);
    let token: Value = client
        .get(format!(
            "{}?api-version=2019-08-01&resource=https://management.azure.com",
            env["IDENTITY_ENDPOINT"]
        ))
        .header("x-identity-header", &env["IDENTITY_HEADER"])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    emu.update_settings(|s| s.list_page_size = 1);
    let page: Value = client
        .get(format!("{base}/subscriptions?api-version=2022-12-01"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["value"].as_array().map(Vec::len), Some(1), "{page}");
    // The next page is on the scheme and host the client used, so a TLS client can follow it.
    let next = page["nextLink"].as_str().unwrap();
    assert!(
        next.starts_with(&format!("{base}/subscriptions?")),
        "{next}"
    );
    let second = client.get(next).bearer_auth(&token).send().await.unwrap();
    assert_eq!(second.status(), 200);

    // Without the CA, the handshake fails: the certificate is the emulator's own.
    let untrusting = reqwest::Client::new();
    assert!(
        untrusting
            .get(format!("{base}/subscriptions?api-version=2022-12-01"))
            .send()
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/subscriptions?api-version=2022-12-01",
            emu.addr().port()
        ))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));

    // Stopping removes the CA folder the emulator made.
    let dir = ca_file.parent().unwrap().to_owned();
    emu.shutdown().await;
    assert!(!dir.exists(), "{} still exists", dir.display());
}

#[test]
fn serve_tls_exports_the_ca_file_and_an_https_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_azure-emulator"))
        .args(["serve", "--tls", "--tls-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut vars = std::collections::BTreeMap::new();
    loop {
        let line = lines.next().expect("stdout closed before ready").unwrap();
        if line == "ready" {
            break;
        }
        let (k, v) = line
            .strip_prefix("export ")
            .unwrap()
            .split_once('=')
            .unwrap();
        vars.insert(k.to_owned(), v.to_owned());
    }
    let ca = dir.path().join("ca.pem");
    assert_eq!(vars["AZURE_EMULATOR_CA_FILE"], ca.display().to_string());
    assert_eq!(vars["REQUESTS_CA_BUNDLE"], ca.display().to_string());
    let base = vars["AUTOATTACH_ARM_ENDPOINT"].clone();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let pem = std::fs::read(&ca).unwrap();
    let client = reqwest::blocking::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let info: Value = client
        .get(format!("{base}/_emulator/info"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(info["baseUrl"], Value::String(base));
    child.kill().unwrap();
    child.wait().unwrap();
}
