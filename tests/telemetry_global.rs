//! The process-global setup (`telemetry::init_with_writer`, what `serve` uses), alone in its own test binary
//! because a global subscriber can be installed once per process. Export errors that the OTel SDK logs from its
//! own threads reach the log output, and any line quoting the endpoint's query key has it blanked out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use acr_autoattach::telemetry::{self, ProcessInfo, TelemetryConfig, TelemetryError, Trigger};

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn global_setup_logs_export_failures_without_the_endpoint_key() {
    const QUERY_KEY: &str = "planted-endpoint-query-key";
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let env = move |k: &str| match k {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" => {
            Some(format!("http://{dead}/v1/traces?api-key={QUERY_KEY}"))
        }
        "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("500".to_owned()),
        "AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS" => Some("2000".to_owned()),
        _ => None,
    };
    let config = TelemetryConfig::from_env(&env).unwrap();
    let info = ProcessInfo::from_env(&|_| None);
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let guard = telemetry::init_with_writer(&config, &info, move || writer.clone()).unwrap();
    assert!(matches!(
        telemetry::init_with_writer(&config, &info, std::io::sink),
        Err(TelemetryError::SubscriberAlreadySet)
    ));

    {
        let _inv = telemetry::invocation_span(
            &info,
            "VerifyAttachments",
            "inv-global",
            Trigger::Timer,
            None,
        )
        .entered();
        tracing::info!("verification started");
        // What a dependency quoting the URL it failed on would log.
        tracing::warn!(target: "some_http_dependency", "request to http://{dead}/v1/traces?api-key={QUERY_KEY} failed");
    }
    let report = guard.flush();
    assert!(!report.completed || !report.errors.is_empty(), "{report:?}");
    drop(guard);

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("verification started"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("opentelemetry")),
        "the SDK's export error reaches the logs: {text}"
    );
    assert!(!text.contains(QUERY_KEY), "{text}");
    assert!(text.contains("api-key=<redacted> failed"), "{text}");
}
