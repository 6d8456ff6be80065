//! The HTTP server: one loopback port serving ARM, Resource Graph, Microsoft Graph, the managed-identity token
//! endpoint and the `/_emulator/` control API; plus the Rust handle tests use. Starting and stopping live in
//! `lifecycle`, the Rust handle in `control`, the HTTP control API in `control_api`, the managed-identity token endpoint in `msi`
//! and Microsoft Graph in `graph`; this module routes and shapes responses.

mod control;
mod control_api;
mod graph;
mod graph_common;
mod graph_groups;
mod lifecycle;
mod msi;

pub use control::EmulatorControl;
pub use lifecycle::{Emulator, RunningEmulator};

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use crate::app::{App, FaultDecision, lock};
use crate::arm::{self, Outcome, Request, Route};
use crate::resource_graph;

/// Why the emulator could not start or a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("unknown principal `{0}`")]
    UnknownPrincipal(String),
    #[error("invalid control input: {0}")]
    Invalid(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(control_api::control_stats))
        .route(
            "/_emulator/stats/reset",
            post(control_api::control_stats_reset),
        )
        .route("/_emulator/reset", post(control_api::control_reset))
        .route(
            "/_emulator/faults",
            get(control_api::control_get_faults)
                .put(control_api::control_put_faults)
                .patch(control_api::control_put_faults),
        )
        .route(
            "/_emulator/settings",
            get(control_api::control_get_settings)
                .put(control_api::control_put_settings)
                .patch(control_api::control_put_settings),
        )
        .route(
            "/_emulator/principals",
            get(control_api::control_list_principals).post(control_api::control_create_principal),
        )
        .route("/_emulator/tokens", post(control_api::control_token))
        .route("/_emulator/grants", post(control_api::control_grant))
        .route(
            "/_emulator/graph-app-roles",
            post(control_api::control_graph_app_role),
        )
        .route("/_emulator/can-pull", get(control_api::control_can_pull))
        .route("/_emulator/info", get(control_api::control_info))
        .fallback(service)
        .with_state(app)
}

/// Every non-control request: faults, then the service, then stats.
async fn service(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    // ARM echoes the caller's correlation id (or makes one); events carry the same id.
    let correlation = headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        headers.insert(CORRELATION_HEADER, v);
    }
    let path = uri.path().to_owned();
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let query = arm::parse_query(&raw_query);
    let lower = path.to_ascii_lowercase();
    let kind = if lower == "/msi/token" {
        ServiceKind::Token
    } else if lower.starts_with("/v1.0/") {
        ServiceKind::Graph
    } else if lower.trim_end_matches('/') == "/metadata/endpoints" {
        ServiceKind::Metadata
    } else if lower.trim_end_matches('/') == "/providers/microsoft.resourcegraph/resources" {
        ServiceKind::ResourceGraph
    } else {
        ServiceKind::Arm(arm::parse_route(&path))
    };
    let label = match &kind {
        ServiceKind::Token => "GET token".to_owned(),
        ServiceKind::Metadata => "GET metadata".to_owned(),
        ServiceKind::Graph => graph::label(&method, &path),
        ServiceKind::ResourceGraph => "POST resourcegraph".to_owned(),
        ServiceKind::Arm(route) => arm::label(&method, route),
    };
    let (decision, latency) = app.decide_fault();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let peek_caller = || {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| {
                app.signer
                    .verify(t, time::OffsetDateTime::now_utc().unix_timestamp())
                    .ok()
            })
            .map(|c| c.oid)
    };
    if !matches!(kind, ServiceKind::Token) {
        match decision {
            FaultDecision::Pass => {}
            FaultDecision::ServerError(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                lock(&app.stats).record(&label, status.as_u16(), peek_caller().as_deref());
                let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "ServiceUnavailable"
                } else {
                    "InternalServerError"
                };
                return with_correlation(
                    to_response(Outcome::error(
                        status,
                        code,
                        "The service is temporarily unavailable (injected fault). Please retry.",
                    )),
                    &correlation,
                );
            }
            FaultDecision::Reset => {
                lock(&app.stats).record(&label, 0, peek_caller().as_deref());
                return reset_response();
            }
        }
    }
    let req = Request {
        method: &method,
        path: &path,
        query,
        raw_query: &raw_query,
        headers: &headers,
        body: &body,
        origin: arm::request_origin(&headers, &app.base_url),
    };
    let (outcome, caller) = match &kind {
        ServiceKind::Token => (msi::token_endpoint(&app, &req), None),
        ServiceKind::Metadata => (arm::metadata_endpoints(&req), None),
        ServiceKind::Graph => graph::graph_endpoint(&app, &req),
        ServiceKind::ResourceGraph => resource_graph::handle(&app, &req),
        ServiceKind::Arm(route) => arm::handle(&app, &req, route),
    };
    lock(&app.stats).record(&label, outcome.status.as_u16(), caller.as_deref());
    if !outcome.events.is_empty() {
        app.publish(&outcome.events);
    }
    if let Some((key, generation)) = outcome.provision.clone() {
        let delay = Duration::from_millis(lock(&app.settings).cluster_provisioning_ms);
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let events = arm::complete_cluster(&app, &key, generation);
            app.publish(&events);
        });
    }
    with_correlation(to_response(outcome), &correlation)
}

const CORRELATION_HEADER: &str = "x-ms-correlation-request-id";

fn with_correlation(mut response: Response, correlation: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(correlation) {
        response.headers_mut().insert(CORRELATION_HEADER, v);
    }
    response
}

enum ServiceKind {
    Token,
    Metadata,
    Graph,
    ResourceGraph,
    Arm(Route),
}

/// A response whose body fails mid-stream: the client sees the connection drop before a complete answer.
fn reset_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

pub(super) fn to_response(outcome: Outcome) -> Response {
    let mut response = match outcome.body {
        Some(body) => {
            let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() = outcome.status;
    let headers = response.headers_mut();
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-ms-request-id", v);
    }
    for (name, value) in outcome.headers {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(n, v);
        }
    }
    response
}
