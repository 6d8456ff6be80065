//! Delivery: the dispatcher that turns bus events into per-subscription deliveries, one delivery's retry loop,
//! and the webhook validation handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::{
    DeadLetter, DeadLetterReason, DeliveryOutcome, DeliveryRecord, EventSchema, EventSubscription,
    Inner, PublisherError, lock, retry_delay, schema,
};
use crate::bus::ArmEvent;

pub(super) async fn dispatch(
    inner: Arc<Inner>,
    mut events: mpsc::UnboundedReceiver<ArmEvent>,
    mut probes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            event = events.recv() => match event {
                Some(event) => fan_out(&inner, &event),
                None => return,
            },
            probe = probes.recv() => {
                // Everything published before the probe is already queued: take it all, then answer.
                while let Ok(event) = events.try_recv() {
                    fan_out(&inner, &event);
                }
                if let Some(probe) = probe {
                    let _ = probe.send(());
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

fn fan_out(inner: &Arc<Inner>, event: &ArmEvent) {
    // One id per event, shared by every subscription, as a system topic does.
    let id = uuid::Uuid::new_v4().to_string();
    let subscriptions = lock(&inner.subscriptions).clone();
    for subscription in subscriptions {
        if !subscription.may_match_arm(event) {
            continue;
        }
        let built = match subscription.schema {
            EventSchema::EventGridSchema => Some(schema::event_grid_event(event, &id)),
            EventSchema::CloudEventSchemaV1_0 => Some(schema::cloud_event(event, &id)),
            EventSchema::ResourceNotifications => schema::resource_notification(event, &id),
        };
        let Some(built) = built.filter(|built| subscription.matches(built)) else {
            continue;
        };
        inner.in_flight.send_modify(|count| *count += 1);
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let mut shutdown = inner.shutdown.clone();
            tokio::select! {
                () = deliver(&inner, &subscription, built) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
            inner
                .in_flight
                .send_modify(|count| *count = count.saturating_sub(1));
        });
    }
}

enum Verdict {
    Success,
    Retry,
    Never,
}

fn verdict(
    subscription: &EventSubscription,
    outcome: DeliveryOutcome,
    status: Option<u16>,
) -> Verdict {
    match (outcome, status) {
        (DeliveryOutcome::Delivered, _) => Verdict::Success,
        (DeliveryOutcome::HttpError, Some(400 | 413 | 403)) => Verdict::Never,
        (DeliveryOutcome::HttpError, Some(401)) if !subscription.is_function_destination() => {
            Verdict::Never
        }
        _ => Verdict::Retry,
    }
}

/// Delivers one event to one subscription until it succeeds, is dead-lettered or the publisher stops.
async fn deliver(inner: &Inner, subscription: &EventSubscription, event: Value) {
    let publish_time = OffsetDateTime::now_utc();
    let published = Instant::now();
    let ttl = inner.config.scale(subscription.event_ttl);
    if inner.config.reorder && !inner.config.reorder_window.is_zero() {
        tokio::time::sleep(inner.config.reorder_window.mul_f64(inner.random_unit())).await;
    }
    let mut attempt = 1u32;
    loop {
        let (outcome, status) = post(inner, subscription, &event, attempt, false).await;
        let attempted_at = OffsetDateTime::now_utc();
        let dead_letter = |reason| DeadLetter {
            subscription: subscription.name.clone(),
            event: event.clone(),
            dead_letter_reason: reason,
            delivery_attempts: attempt,
            last_delivery_outcome: outcome,
            last_http_status_code: status,
            publish_time,
            last_delivery_attempt_time: Some(attempted_at),
            dead_lettered_at: OffsetDateTime::now_utc(),
        };
        match verdict(subscription, outcome, status) {
            Verdict::Success => {
                if inner.config.duplicate_rate > 0.0
                    && inner.random_unit() < inner.config.duplicate_rate
                {
                    post(inner, subscription, &event, attempt, true).await;
                }
                return;
            }
            Verdict::Never => {
                lock(&inner.deadletters).push(dead_letter(DeadLetterReason::NonRetriableStatus));
                return;
            }
            Verdict::Retry if attempt >= subscription.max_delivery_attempts => {
                lock(&inner.deadletters)
                    .push(dead_letter(DeadLetterReason::MaxDeliveryAttemptsExceeded));
                return;
            }
            Verdict::Retry => {
                let wait = inner.config.scale(retry_delay(attempt));
                if published.elapsed().saturating_add(wait) > ttl {
                    tokio::time::sleep(ttl.saturating_sub(published.elapsed())).await;
                    lock(&inner.deadletters)
                        .push(dead_letter(DeadLetterReason::TimeToLiveExceeded));
                    return;
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
        }
    }
}

/// One HTTP delivery; records it and returns its outcome.
async fn post(
    inner: &Inner,
    subscription: &EventSubscription,
    event: &Value,
    attempt: u32,
    duplicate: bool,
) -> (DeliveryOutcome, Option<u16>) {
    let (body, content_type, data_version, metadata_version) = match subscription.schema {
        EventSchema::EventGridSchema => (
            Value::Array(vec![event.clone()]),
            "application/json; charset=utf-8",
            event
                .get("dataVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            "1",
        ),
        EventSchema::CloudEventSchemaV1_0 | EventSchema::ResourceNotifications => (
            event.clone(),
            "application/cloudevents+json; charset=utf-8",
            String::new(),
            "1",
        ),
    };
    let started = Instant::now();
    let request = inner
        .client
        .post(&subscription.endpoint_url)
        .timeout(inner.config.delivery_timeout)
        .header(http::header::CONTENT_TYPE, content_type)
        .header("aeg-event-type", "Notification")
        .header(
            "aeg-subscription-name",
            subscription.name.to_ascii_uppercase(),
        )
        .header("aeg-delivery-count", (attempt - 1).to_string())
        .header("aeg-data-version", data_version)
        .header("aeg-metadata-version", metadata_version)
        .body(body.to_string());
    let (outcome, status) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Drain the answer so the connection can be reused; its content does not matter.
            let _ = response.bytes().await;
            if (200..=204).contains(&status) && started.elapsed() <= inner.config.delivery_timeout {
                (DeliveryOutcome::Delivered, Some(status))
            } else {
                (DeliveryOutcome::HttpError, Some(status))
            }
        }
        Err(error) if error.is_timeout() => (DeliveryOutcome::TimedOut, None),
        Err(_) => (DeliveryOutcome::ConnectionFailed, None),
    };
    let event_id = event
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let event_type = event
        .get("eventType")
        .or_else(|| event.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    tracing::debug!(subscription = %subscription.name, %event_id, attempt, ?outcome, ?status, duplicate, "event delivery");
    lock(&inner.deliveries).push(DeliveryRecord {
        subscription: subscription.name.clone(),
        event_id,
        event_type,
        attempt,
        outcome,
        status,
        duplicate,
        time: OffsetDateTime::now_utc(),
        duration: started.elapsed(),
    });
    (outcome, status)
}

/// The validation handshake on registration: Event Grid schema POSTs a `SubscriptionValidationEvent` and expects
/// `{"validationResponse": code}`; CloudEvents sends `OPTIONS` with `WebHook-Request-Origin`.
pub(super) async fn handshake(
    inner: &Inner,
    subscription: &EventSubscription,
) -> Result<(), PublisherError> {
    let fail = |reason: String| PublisherError::ValidationFailed {
        name: subscription.name.clone(),
        reason,
    };
    let timeout = inner.config.delivery_timeout.max(Duration::from_secs(1));
    match subscription.schema {
        EventSchema::EventGridSchema => {
            let code = uuid::Uuid::new_v4().to_string();
            let response = inner
                .client
                .post(&subscription.endpoint_url)
                .timeout(timeout)
                .header(
                    http::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .header("aeg-event-type", "SubscriptionValidation")
                .header(
                    "aeg-subscription-name",
                    subscription.name.to_ascii_uppercase(),
                )
                .header("aeg-delivery-count", "0")
                .header("aeg-data-version", "1")
                .header("aeg-metadata-version", "1")
                .body(
                    schema::validation_event(&subscription.name, &code, OffsetDateTime::now_utc())
                        .to_string(),
                )
                .send()
                .await
                .map_err(|error| {
                    fail(format!(
                        "the endpoint did not answer: {}",
                        error.without_url()
                    ))
                })?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(fail(format!("the endpoint answered HTTP {status}")));
            }
            let body: Value = response
                .json()
                .await
                .map_err(|_| fail("the answer is not JSON".to_owned()))?;
            let answered = body
                .as_object()
                .and_then(|object| {
                    object
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("validationResponse"))
                })
                .and_then(|(_, v)| v.as_str());
            if answered == Some(code.as_str()) {
                Ok(())
            } else {
                Err(fail(
                    "the answer does not echo data.validationCode as validationResponse".to_owned(),
                ))
            }
        }
        EventSchema::CloudEventSchemaV1_0 | EventSchema::ResourceNotifications => {
            let origin = "eventgrid.azure.net";
            let response = inner
                .client
                .request(reqwest::Method::OPTIONS, &subscription.endpoint_url)
                .timeout(timeout)
                .header("WebHook-Request-Origin", origin)
                .send()
                .await
                .map_err(|error| {
                    fail(format!(
                        "the endpoint did not answer: {}",
                        error.without_url()
                    ))
                })?;
            let allowed = response
                .headers()
                .get("webhook-allowed-origin")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if response.status().is_success() && (allowed == origin || allowed == "*") {
                Ok(())
            } else {
                Err(fail(format!(
                    "OPTIONS answered HTTP {} with WebHook-Allowed-Origin '{allowed}'",
                    response.status().as_u16()
                )))
            }
        }
    }
}
