//! The `AttachmentVerification` log record and the span helpers. They go through `tracing`, so they reach
//! stdout JSON always and the OTel exporters when configured.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::Metrics;
use crate::core::model::{PairResult, PairStatus, RegistryResult, RegistryStatus, ResourceId};

/// The name (event name and message) of the per-pair verification log record.
pub const ATTACHMENT_VERIFICATION: &str = "AttachmentVerification";
/// The name of the per-registry verification log record (`invalid_selector`).
pub const REGISTRY_VERIFICATION: &str = "RegistryVerification";

/// `faas.trigger` of an invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Event Grid.
    PubSub,
    Timer,
    /// An operator's command (`verify`, `explain`) outside the Functions host.
    Other,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PubSub => "pubsub",
            Self::Timer => "timer",
            Self::Other => "other",
        }
    }
}

/// The span of one invocation: a server span named after the function, with `faas.trigger`,
/// `faas.invocation_id` and the remote parent from a W3C `traceparent` (ignored when absent or malformed).
pub fn invocation_span(
    function_name: &str,
    invocation_id: &str,
    trigger: Trigger,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        "invocation",
        otel.name = %function_name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        faas.trigger = trigger.as_str(),
        faas.invocation_id = %invocation_id,
        faas.invoked_name = %function_name,
    );
    if let Some(tp) = traceparent {
        let carrier: HashMap<String, String> =
            HashMap::from([("traceparent".to_owned(), tp.trim().to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        // A malformed traceparent extracts to an empty context: the span is then simply a root.
        let _ = span.set_parent(cx);
    }
    span
}

/// A client span for one request to Azure, with the HTTP client semantic-convention attributes. The URL is
/// recorded without user info, query or fragment, so no token, SAS or `$skipToken` reaches telemetry.
pub fn azure_request_span(operation: &str, method: &str, url: &url::Url) -> Span {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_query(None);
    clean.set_fragment(None);
    let server = clean.host_str().unwrap_or_default().to_owned();
    let port = clean.port_or_known_default().unwrap_or_default();
    tracing::info_span!(
        "azure_request",
        otel.name = %format_args!("{method} {operation}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        azure.operation = %operation,
        http.request.method = %method,
        url.full = %clean,
        server.address = %server,
        server.port = i64::from(port),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records the answer on a span from [`azure_request_span`] (`None`: no response arrived).
pub fn record_http_status(span: &Span, status: Option<u16>) {
    if let Some(code) = status {
        span.record("http.response.status_code", i64::from(code));
        if code >= 400 {
            span.record("error.type", code.to_string().as_str());
            span.record("otel.status_code", "ERROR");
        }
    } else {
        span.record("error.type", "transport");
        span.record("otel.status_code", "ERROR");
    }
}

/// An internal span around the decision for one (cluster, registry) pair.
pub fn pair_span(cluster: &ResourceId, registry: &ResourceId) -> Span {
    tracing::info_span!(
        "pair",
        otel.name = "pair decision",
        cluster.id = %cluster,
        registry.id = %registry,
        status = tracing::field::Empty,
    )
}

impl Metrics {
    /// Emits one `AttachmentVerification` log record for `result` and counts it in
    /// `autoattach.verification.pairs` (and `autoattach.attach.latency` when it carries a latency).
    pub fn record_verification(&self, result: &PairResult, invocation_id: &str) {
        let principal = result.principal_id.as_deref().unwrap_or_default();
        let role = result
            .role
            .map(crate::core::model::PullRole::display_name)
            .unwrap_or_default();
        let reason = result.reason.as_deref().unwrap_or_default();
        let status = result.status.as_str();
        // Problems at warning level, so a log-level filter alone can page on them. (Braced fields: the
        // `name:` form of the level macros cannot parse dotted field names.)
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    name: "AttachmentVerification",
                    $level,
                    {
                        cluster.id = %result.cluster_id,
                        registry.id = %result.registry_id,
                        principal.id = principal,
                        role = role,
                        status = status,
                        reason = reason,
                        invocation.id = invocation_id,
                    },
                    "AttachmentVerification"
                )
            };
        }
        if matches!(result.status, PairStatus::Failed | PairStatus::Missing) {
            emit!(tracing::Level::WARN);
        } else {
            emit!(tracing::Level::INFO);
        }
        Span::current().record("status", status);
        self.record_pair(result);
    }

    /// Emits one `RegistryVerification` record (status `invalid_selector`) and counts it in
    /// `autoattach.verification.registries`.
    pub fn record_registry_result(&self, result: &RegistryResult, invocation_id: &str) {
        let status = match result.status {
            RegistryStatus::InvalidSelector => "invalid_selector",
        };
        tracing::event!(
            name: "RegistryVerification",
            tracing::Level::WARN,
            {
                registry.id = %result.registry_id,
                status = status,
                reason = %result.reason,
                invocation.id = invocation_id,
            },
            "RegistryVerification"
        );
        self.record_registry(result);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::model::PullRole;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn verification_record_reaches_stdout_json_with_every_field() {
        let buf = Buf::default();
        let writer = buf.clone();
        let (guard, _d) = crate::telemetry::init_scoped(
            &crate::telemetry::TelemetryConfig::default(),
            &crate::telemetry::ProcessInfo::from_env(&|_| None),
            move || writer.clone(),
        )
        .unwrap();
        let r = PairResult {
            cluster_id: ResourceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a").unwrap(),
            registry_id: ResourceId::parse("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerRegistry/registries/b").unwrap(),
            principal_id: Some("p-1".into()),
            role: Some(PullRole::AcrPull),
            status: PairStatus::Missing,
            reason: Some("audit mode".into()),
            assignment_id: None,
            latency_seconds: None,
            failure: None,
        };
        {
            let _e = invocation_span("VerifyAttachments", "inv-1", Trigger::Timer, None).entered();
            guard.metrics().record_verification(&r, "inv-1");
        }
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["message"], "AttachmentVerification");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["status"], "missing");
        assert_eq!(line["principal.id"], "p-1");
        assert_eq!(line["role"], "AcrPull");
        assert_eq!(line["invocation.id"], "inv-1");
        assert_eq!(line["reason"], "audit mode");
        assert!(
            line["cluster.id"]
                .as_str()
                .unwrap()
                .ends_with("managedClusters/a")
        );
        assert_eq!(line["span"]["faas.invocation_id"], "inv-1");
    }
}
