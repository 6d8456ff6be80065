//! `acr-autoattach demo --json` end to end: the binary starts everything itself and every pair must end as
//! the design says.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn demo_json_reports_every_pair_as_expected() {
    let out = Command::new(env!("CARGO_BIN_EXE_acr-autoattach"))
        .args(["demo", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 18, "6 clusters × 3 registries");
    for p in pairs {
        for field in ["cluster", "registry", "expected", "status"] {
            assert!(!p[field].is_null(), "{field} missing in {p}");
        }
        assert_eq!(p["as_expected"], true, "{p}");
    }
    let summary = &report["summary"];
    assert_eq!(summary["pairs"], 18);
    assert_eq!(summary["as_expected"], 18);
    assert_eq!(summary["attached"], 8);
    assert!(summary["azure_requests"].as_u64().unwrap() > 0);
    assert!(
        summary["telemetry"]["invocation_spans"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        summary["telemetry"]["verification_records"]
            .as_u64()
            .unwrap()
            >= 8,
        "{summary}"
    );
    // An ABAC registry gets Repository Reader, never AcrPull.
    assert!(
        pairs
            .iter()
            .filter(|p| p["registry"] == "acrprod" && p["status"] == "attached")
            .all(|p| p["role"] == "Container Registry Repository Reader")
    );
}
