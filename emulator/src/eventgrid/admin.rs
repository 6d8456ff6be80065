//! `GET /_emulator/deadletter` (the dead-letter container's content), `/_emulator/deliveries` and
//! `/_emulator/eventsubscriptions`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::{Inner, lock, redact_url};

pub(super) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/_emulator/deadletter", get(deadletter))
        .route("/_emulator/deliveries", get(deliveries))
        .route("/_emulator/eventsubscriptions", get(subscriptions))
        .with_state(inner)
}

async fn deadletter(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!(*lock(&inner.deadletters)))
}

async fn deliveries(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!(*lock(&inner.deliveries)))
}

async fn subscriptions(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let list: Vec<Value> = lock(&inner.subscriptions)
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "endpoint": redact_url(&s.endpoint_url),
                "schema": s.schema,
                "includedEventTypes": s.included_event_types,
                "operationNameFilter": s.operation_name_filter,
                "maxDeliveryAttempts": s.max_delivery_attempts,
                "eventTimeToLiveInMinutes": s.event_ttl.as_secs() / 60,
            })
        })
        .collect();
    Json(Value::Array(list))
}
