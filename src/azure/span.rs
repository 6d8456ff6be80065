//! The client span of one HTTP request to Azure, after the OpenTelemetry HTTP client span conventions
//! (`http-spans`, stable): name `{METHOD} {target}`, `http.request.method`, `url.full`, `server.address`,
//! `server.port` and `http.response.status_code` as integers, `error.type`, status ERROR for 4xx, 5xx and
//! no answer. This is the one place an Azure request span is built (docs/telemetry.md, "Traces").

use tracing::Span;
use url::Url;

use super::http::Operation;

/// The value every query parameter but `api-version` is replaced with in `url.full` (the conventions' word).
pub const REDACTED: &str = "REDACTED";

/// The low-cardinality target of the span name: the ARM (or Graph) resource collection the operation
/// addresses, e.g. `PUT roleAssignments`.
pub fn target(op: Operation) -> &'static str {
    match op {
        Operation::GetCluster | Operation::ListClusters => "managedClusters",
        Operation::ListRegistries | Operation::GetRegistry => "registries",
        Operation::ListRoleAssignments
        | Operation::PutRoleAssignment
        | Operation::DeleteRoleAssignment => "roleAssignments",
        Operation::GetRoleDefinition => "roleDefinitions",
        Operation::ListSubscriptions => "subscriptions",
        Operation::GraphServicePrincipal | Operation::GraphTransitiveMemberOf => {
            "servicePrincipals"
        }
        Operation::GraphFindGroup
        | Operation::GraphCreateGroup
        | Operation::GraphGroupOwners
        | Operation::GraphAddMember
        | Operation::GraphRemoveMember
        | Operation::GraphListMembers
        | Operation::GraphTransitiveMembers => "groups",
        Operation::ResourceGraph => "resources",
    }
}

/// `url` without user info and fragment, every query value but `api-version` replaced with `REDACTED`
/// (a `$skipToken`, a `$filter` naming a principal, a SAS never reach telemetry; the key names stay, so
/// the request's shape is still visible).
pub fn redacted_url(url: &Url) -> String {
    let mut clean = url.clone();
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean.set_fragment(None);
    if clean.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let value = if k.eq_ignore_ascii_case("api-version") {
                    v.into_owned()
                } else {
                    REDACTED.to_owned()
                };
                (k.into_owned(), value)
            })
            .collect();
        clean.set_query(None);
        if !pairs.is_empty() {
            clean.query_pairs_mut().extend_pairs(pairs);
        }
    }
    clean.to_string()
}

/// The span of one attempt (`resend_count`: attempts before this one). Its `tracing` name is
/// `azure.request`; the exported name is `{METHOD} {target}`.
pub fn request_span(op: Operation, method: &str, url: &Url, resend_count: u32) -> Span {
    let port = url.port_or_known_default().unwrap_or_default();
    tracing::info_span!(
        "azure.request",
        otel.name = %format_args!("{method} {}", target(op)),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        azure.operation = op.as_str(),
        http.request.method = %method,
        url.full = %redacted_url(url),
        server.address = url.host_str().unwrap_or_default(),
        // Integers: tracing-opentelemetry exports `i64` fields as ints, but `u16`/`u64` as strings.
        server.port = i64::from(port),
        http.request.resend_count = i64::from(resend_count),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records the answer on a span from [`request_span`]: the status code (when an answer arrived) and, for
/// 4xx, 5xx or no answer, status ERROR and `error.type` (the status code as text, as the conventions say,
/// or `no_answer_kind` — `timeout`, `connect`, … — when nothing came back).
pub fn record_answer(span: &Span, status: Option<u16>, no_answer_kind: &str) {
    if let Some(code) = status {
        span.record("http.response.status_code", i64::from(code));
        if code >= 400 {
            span.record("error.type", code.to_string().as_str());
            span.record("otel.status_code", "ERROR");
        }
    } else {
        span.record("error.type", no_answer_kind);
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_full_keeps_only_the_api_version() {
        let u = Url::parse(
            "https://user:pw@management.azure.com/subscriptions/s/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&%24filter=principalId%20eq%20%27p%27&%24skipToken=secret#frag",
        )
        .unwrap();
        let shown = redacted_url(&u);
        assert_eq!(
            shown,
            "https://management.azure.com/subscriptions/s/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&%24filter=REDACTED&%24skipToken=REDACTED"
        );
        let plain = Url::parse("https://graph.microsoft.com/v1.0/servicePrincipals/x").unwrap();
        assert_eq!(redacted_url(&plain), plain.as_str());
    }

    #[test]
    fn every_operation_has_a_collection_target() {
        let names: Vec<String> = Operation::ALL
            .iter()
            .map(|op| format!("PUT {}", target(*op)))
            .collect();
        assert!(names.contains(&"PUT roleAssignments".to_owned()));
        assert!(Operation::ALL.iter().all(|op| !target(*op).contains(' ')));
    }
}
