//! The host's own HTTP endpoint: the Event Grid webhook of the Event Grid extension and the admin API.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Shared, Trigger, WorkerState, timers, wire};

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = router(shared);
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(%error, "the host endpoint failed");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/runtime/webhooks/{extension}", any(extension_webhook))
        .route("/admin/host/status", get(host_status))
        .route("/admin/functions", get(list_functions))
        .route("/admin/functions/{name}", post(admin_invoke))
        .with_state(shared)
}

async fn root() -> &'static str {
    "Your Functions 4.0 app is up and running (Functions host simulator)"
}

#[derive(Deserialize)]
struct WebhookQuery {
    #[serde(rename = "functionName")]
    function_name: Option<String>,
    code: Option<String>,
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// `/runtime/webhooks/{extension}` as the host routes it (`HostController.ExtensionWebHookHandler`): GET, PUT,
/// POST, DELETE and OPTIONS; the extension name is matched case-insensitively; the caller must present the
/// extension's system key (`{extension}_extension`) or the master key, in `x-functions-key` (which wins) or
/// `code=`, else 401 before anything else is looked at.
async fn extension_webhook(
    State(shared): State<Arc<Shared>>,
    Path(extension): Path<String>,
    Query(query): Query<WebhookQuery>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if ![
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(&method)
    {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let presented = match headers.get("x-functions-key") {
        Some(value) => value.to_str().ok(),
        None => query.code.as_deref(),
    }
    .unwrap_or_default();
    if presented.is_empty() || !shared.keys.allows_webhook(&extension, presented) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if matches!(*shared.worker.borrow(), WorkerState::Stopped { .. }) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the host is stopped");
    }
    if !extension.eq_ignore_ascii_case("eventgrid") {
        return StatusCode::NOT_FOUND.into_response();
    }
    eventgrid_webhook(shared, query.function_name, method, &headers, &body).await
}

/// The Event Grid extension's handler (`EventGridExtensionConfigProvider` and `HttpRequestProcessor` in
/// azure-sdk-for-net's Microsoft.Azure.WebJobs.Extensions.EventGrid).
async fn eventgrid_webhook(
    shared: Arc<Shared>,
    function_name: Option<String>,
    method: Method,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(name) = function_name else {
        // Known difference: the extension answers 404 here too (an empty name is not a listener). The simulator
        // keeps 400, which emulator/tests/eg_end_to_end.rs uses as a host-made "never retried" answer.
        return plain(StatusCode::BAD_REQUEST, "functionName is required");
    };
    let Some(function) = shared.eventgrid_function(&name).cloned() else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("cannot find function: '{name}'"),
        );
    };
    if method == Method::OPTIONS {
        return cloudevents_handshake(headers);
    }
    let event_type = headers
        .get("aeg-event-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let is = |expected: &str| event_type.eq_ignore_ascii_case(expected);
    if !is("SubscriptionValidation") && !is("Notification") {
        return if is("Unsubscribe") {
            StatusCode::ACCEPTED.into_response()
        } else {
            plain(
                StatusCode::BAD_REQUEST,
                format!("aeg-event-type '{event_type}' is not supported"),
            )
        };
    }
    let payload: Value = match serde_json::from_slice(body) {
        Ok(payload) => payload,
        Err(error) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("the request body is not JSON: {error}"),
            );
        }
    };
    let events = match payload {
        Value::Array(events) => events,
        single => vec![single],
    };
    if is("SubscriptionValidation") {
        let code = events
            .iter()
            .find(|event| {
                event.get("eventType").and_then(Value::as_str)
                    == Some("Microsoft.EventGrid.SubscriptionValidationEvent")
            })
            .and_then(|event| event.pointer("/data/validationCode"))
            .and_then(Value::as_str);
        return match code {
            Some(code) => Json(json!({"validationResponse": code})).into_response(),
            None => plain(
                StatusCode::BAD_REQUEST,
                "no SubscriptionValidationEvent with data.validationCode",
            ),
        };
    }
    // Each invocation runs on its own task, as the extension calls the executor with `CancellationToken.None`:
    // when Event Grid gives up on this request (30 s) and drops it, the invocations still run to completion,
    // and Event Grid's retry arrives beside them.
    let invocations: Vec<_> = events
        .into_iter()
        .map(|event| {
            let metadata = wire::event_grid_metadata(&event);
            let shared = Arc::clone(&shared);
            let function = function.clone();
            tokio::spawn(async move { shared.invoke(&function, event, metadata).await })
        })
        .collect();
    let records = futures::future::join_all(invocations).await;
    if records.iter().all(|record| {
        record
            .as_ref()
            .is_ok_and(super::InvocationRecord::succeeded)
    }) {
        StatusCode::ACCEPTED.into_response()
    } else {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "one or more invocations failed",
        )
    }
}

/// CloudEvents 1.0 abuse-protection handshake: `OPTIONS` is always 200; `WebHook-Allowed-Origin` echoes an
/// Event Grid origin of a known cloud and is `eventgrid.azure.net` otherwise (no `WebHook-Allowed-Rate`).
fn cloudevents_handshake(headers: &HeaderMap) -> Response {
    const KNOWN_ORIGINS: [&str; 5] = [
        "eventgrid.azure.net",
        "eventgrid.azure.us",
        "eventgrid.azure.eaglex.ic.gov",
        "eventgrid.azure.microsoft.scloud",
        "eventgrid.azure.cn",
    ];
    let origin = headers
        .get("webhook-request-origin")
        .and_then(|value| value.to_str().ok())
        .filter(|origin| KNOWN_ORIGINS.contains(origin))
        .unwrap_or(KNOWN_ORIGINS[0]);
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(origin) {
        response
            .headers_mut()
            .insert("webhook-allowed-origin", value);
    }
    response
}

async fn host_status(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let (state, errors) = match &*shared.worker.borrow() {
        WorkerState::Ready { .. } => ("Running", Vec::new()),
        WorkerState::Starting => ("Initialized", Vec::new()),
        WorkerState::Stopped { reason } => ("Stopped", vec![reason.clone()]),
    };
    Json(json!({
        "state": state,
        "version": wire::HOST_VERSION,
        "errors": errors,
        "processUptime": shared.started.elapsed().as_millis() as u64,
    }))
}

async fn list_functions(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(Value::Array(
        shared
            .functions
            .iter()
            .map(|f| json!({"name": f.name, "trigger": f.trigger_type(), "bindingName": f.binding_name}))
            .collect(),
    ))
}

/// `POST /admin/functions/{name}` with `{"input": "..."}`: runs a non-HTTP function now; answers 202 at once.
async fn admin_invoke(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(function) = shared.function(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let input = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => value.get("input").cloned(),
            Err(error) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("the request body is not JSON: {error}"),
                );
            }
        }
    };
    match function.trigger {
        Trigger::Timer { .. } => {
            tokio::spawn(async move { timers::invoke_now(&shared, &function).await });
        }
        Trigger::EventGrid => {
            // The input is the event, as a JSON text (the admin API carries strings).
            let event = match input {
                Some(Value::String(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(event) => event,
                    Err(error) => {
                        return plain(
                            StatusCode::BAD_REQUEST,
                            format!("input is not an event: {error}"),
                        );
                    }
                },
                Some(event @ Value::Object(_)) => event,
                _ => return plain(StatusCode::BAD_REQUEST, "input must hold the event"),
            };
            tokio::spawn(async move {
                let metadata = wire::event_grid_metadata(&event);
                shared.invoke(&function, event, metadata).await
            });
        }
    }
    StatusCode::ACCEPTED.into_response()
}
