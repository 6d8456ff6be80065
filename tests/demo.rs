//! `acr-autoattach demo --json` end to end: the binary starts everything itself and every pair must end as
//! the design says.
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the demo forwards its telemetry there too: an in-process OTLP
//! receiver stands in for the user's Jaeger or Collector and decodes what arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::process::Command;

use opentelemetry_proto::tonic::common::v1::any_value::Value;

#[test]
fn demo_json_reports_every_pair_as_expected() {
    let users_collector = receivers::TelemetryReceiver::start();
    let out = Command::new(env!("CARGO_BIN_EXE_acr-autoattach"))
        .args(["demo", "--json"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", users_collector.url())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
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
    // The user's collector saw the run: invocation spans and the verification records.
    let telemetry = &summary["telemetry"];
    assert_eq!(
        telemetry["forwarded_to"].as_str(),
        Some(format!("{}/v1/traces", users_collector.url()).as_str()),
        "{telemetry}"
    );
    assert!(
        telemetry["forwarded_requests"].as_u64().unwrap() > 0,
        "{telemetry}"
    );
    let spans: Vec<_> = users_collector
        .traces()
        .into_iter()
        .flat_map(|t| t.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect();
    assert!(
        spans.iter().any(|s| s.name.ends_with("/OnResourceEvent")),
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let records: Vec<_> = users_collector
        .logs()
        .into_iter()
        .flat_map(|l| l.resource_logs)
        .flat_map(|r| r.scope_logs)
        .flat_map(|s| s.log_records)
        .collect();
    assert!(
        records.iter().any(|r| matches!(
            r.body.as_ref().and_then(|b| b.value.as_ref()),
            Some(Value::StringValue(s)) if s == "AttachmentVerification"
        )),
        "no AttachmentVerification reached the user's collector"
    );
    // An ABAC registry gets Repository Reader, never AcrPull.
    assert!(
        pairs
            .iter()
            .filter(|p| p["registry"] == "acrprod" && p["status"] == "attached")
            .all(|p| p["role"] == "Container Registry Repository Reader")
    );
}
