//! The host's own HTTP endpoint: the Event Grid webhook of the Event Grid extension and the admin API.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
        .route(
            "/runtime/webhooks/eventgrid",
            post(eventgrid_webhook).options(cloudevents_handshake),
        )
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
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn eventgrid_webhook(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<WebhookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(name) = query.function_name else {
        return plain(StatusCode::BAD_REQUEST, "functionName is required");
    };
    let Some(function) = shared
        .function(&name)
        .filter(|f| matches!(f.trigger, Trigger::EventGrid))
        .cloned()
    else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("cannot find an Event Grid function named '{name}'"),
        );
    };
    let event_type = headers
        .get("aeg-event-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let payload: Value = match serde_json::from_slice(&body) {
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
    if event_type.eq_ignore_ascii_case("SubscriptionValidation") {
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
    if !event_type.eq_ignore_ascii_case("Notification") {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("aeg-event-type '{event_type}' is not supported"),
        );
    }
    if matches!(*shared.worker.borrow(), WorkerState::Stopped { .. }) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "the host is stopped");
    }
    let invocations = events.into_iter().map(|event| {
        let metadata = wire::event_grid_metadata(&event);
        let shared = Arc::clone(&shared);
        let function = function.clone();
        async move { shared.invoke(&function, event, metadata).await }
    });
    let records = futures::future::join_all(invocations).await;
    if records.iter().all(super::InvocationRecord::succeeded) {
        StatusCode::ACCEPTED.into_response()
    } else {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "one or more invocations failed",
        )
    }
}

/// CloudEvents 1.0 abuse-protection handshake: `OPTIONS` with `WebHook-Request-Origin`.
async fn cloudevents_handshake(headers: HeaderMap) -> Response {
    match headers.get("webhook-request-origin") {
        Some(origin) => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert("webhook-allowed-origin", origin.clone());
            response
                .headers_mut()
                .insert("webhook-allowed-rate", HeaderValue::from_static("*"));
            response
        }
        None => plain(
            StatusCode::BAD_REQUEST,
            "WebHook-Request-Origin is required",
        ),
    }
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
