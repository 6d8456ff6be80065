//! The Event Grid publisher: plays Azure's subscription system topic (`Microsoft.Resources.Subscriptions`) for
//! the ARM emulator. Every [`ArmEvent`](crate::bus::ArmEvent) on the bus becomes an event; each matching subscription gets it delivered
//! as `../shared/docs/event-grid.md` describes: one event per request (an array for the Event Grid schema),
//! `aeg-*` headers, success only on 200–204 within the delivery timeout, retries on the real schedule scaled by
//! `retry_time_scale`, no retry on 400/413/403 (and 401 for webhooks), dead-letter after the last attempt or the
//! time-to-live, and optional duplicate delivery and reordering driven by a seed.

mod admin;
mod delivery;
pub mod schema;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::bus::EventBus;

/// The real retry schedule: the wait after attempt n (1-based); after the ninth, every 12 hours.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_mins(1),
    Duration::from_mins(5),
    Duration::from_mins(10),
    Duration::from_mins(30),
    Duration::from_hours(1),
    Duration::from_hours(3),
    Duration::from_hours(6),
];
const LATER_RETRY: Duration = Duration::from_hours(12);

/// The unscaled wait before attempt `attempt + 1`.
pub fn retry_delay(attempt: u32) -> Duration {
    usize::try_from(attempt.saturating_sub(1))
        .ok()
        .and_then(|index| RETRY_SCHEDULE.get(index).copied())
        .unwrap_or(LATER_RETRY)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum EventSchema {
    /// `id, topic, subject, eventType, eventTime, data, dataVersion, metadataVersion`, delivered as an array.
    EventGridSchema,
    /// CloudEvents 1.0 in structured mode, one event per request.
    CloudEventSchemaV1_0,
    /// Azure Resource Notifications (`Microsoft.ResourceNotifications.Resources.*`, resource body in
    /// `data.resourceInfo`), in CloudEvents 1.0 form.
    ResourceNotifications,
}

/// One event subscription on the subscription system topic.
#[derive(Clone)]
pub struct EventSubscription {
    pub name: String,
    /// Webhook URL, or a Functions host's `/runtime/webhooks/eventgrid?functionName=X` (treated as an
    /// `AzureFunction` destination: no validation handshake, the function host's no-retry codes).
    pub endpoint_url: String,
    pub schema: EventSchema,
    /// Empty means every type.
    pub included_event_types: Vec<String>,
    /// Advanced filter `StringIn` on `data.operationName` (case-insensitive); `None` means no filter.
    pub operation_name_filter: Option<Vec<String>>,
    /// 1..=30.
    pub max_delivery_attempts: u32,
    /// Event time-to-live (scaled by `retry_time_scale` like the schedule).
    pub event_ttl: Duration,
}

impl fmt::Debug for EventSubscription {
    // Webhook URLs may carry a secret in the query string: print only scheme, host and path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSubscription")
            .field("name", &self.name)
            .field("endpoint", &redact_url(&self.endpoint_url))
            .field("schema", &self.schema)
            .field("included_event_types", &self.included_event_types)
            .field("operation_name_filter", &self.operation_name_filter)
            .field("max_delivery_attempts", &self.max_delivery_attempts)
            .field("event_ttl", &self.event_ttl)
            .finish()
    }
}

/// `scheme://host:port/path` without query or user info.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}{}{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default(),
            parsed.port().map(|p| format!(":{p}")).unwrap_or_default(),
            parsed.path()
        ),
        Err(_) => "<invalid url>".to_owned(),
    }
}

/// The operation names infra filters on (event-grid.md, "Subscription filter").
pub const INFRA_OPERATION_NAMES: [&str; 5] = [
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerRegistry/registries/write",
    "Microsoft.Resources/tags/write",
    "Microsoft.ContainerService/managedClusters/delete",
    "Microsoft.ContainerRegistry/registries/delete",
];

impl EventSubscription {
    /// Event Grid schema, every event type, no filter, the Azure defaults (30 attempts, 1440 minutes).
    pub fn new(name: impl Into<String>, endpoint_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoint_url: endpoint_url.into(),
            schema: EventSchema::EventGridSchema,
            included_event_types: Vec::new(),
            operation_name_filter: None,
            max_delivery_attempts: 30,
            event_ttl: Duration::from_hours(24),
        }
    }

    /// The subscription infra configures: write and delete successes, `StringIn` on the five operation names.
    pub fn as_infra_configures(name: impl Into<String>, endpoint_url: impl Into<String>) -> Self {
        Self {
            included_event_types: vec![
                "Microsoft.Resources.ResourceWriteSuccess".to_owned(),
                "Microsoft.Resources.ResourceDeleteSuccess".to_owned(),
            ],
            operation_name_filter: Some(
                INFRA_OPERATION_NAMES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect(),
            ),
            ..Self::new(name, endpoint_url)
        }
    }

    /// Whether the built event passes the subscription's filters.
    pub fn matches(&self, event: &Value) -> bool {
        let event_type = event
            .get("eventType")
            .or_else(|| event.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let type_ok = self.included_event_types.is_empty()
            || self
                .included_event_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(event_type));
        let operation_ok = match &self.operation_name_filter {
            None => true,
            Some(values) => event
                .pointer("/data/operationName")
                .and_then(Value::as_str)
                .is_some_and(|operation| values.iter().any(|v| v.eq_ignore_ascii_case(operation))),
        };
        type_ok && operation_ok
    }

    /// What [`EventSubscription::matches`] decides of `event` in the Event Grid or CloudEvents schema (its type
    /// follows from the operation kind, `data.operationName` is the event's operation), without building it:
    /// most ARM events (every role-assignment write of a burst) match no subscription.
    pub(crate) fn may_match_arm(&self, event: &crate::bus::ArmEvent) -> bool {
        if self.schema == EventSchema::ResourceNotifications {
            return true;
        }
        let event_type = schema::event_type(event.kind);
        let type_ok = self.included_event_types.is_empty()
            || self
                .included_event_types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(event_type));
        let operation_ok = self.operation_name_filter.as_ref().is_none_or(|values| {
            values
                .iter()
                .any(|v| v.eq_ignore_ascii_case(&event.operation_name))
        });
        type_ok && operation_ok
    }

    pub(crate) fn is_function_destination(&self) -> bool {
        url::Url::parse(&self.endpoint_url).is_ok_and(|url| {
            url.path()
                .eq_ignore_ascii_case("/runtime/webhooks/eventgrid")
        })
    }

    fn validate(&self) -> Result<(), PublisherError> {
        let invalid = |reason: &str| PublisherError::InvalidSubscription {
            name: self.name.clone(),
            reason: reason.to_owned(),
        };
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid("the name must be 1-64 letters, digits or hyphens"));
        }
        let url = url::Url::parse(&self.endpoint_url)
            .map_err(|_| invalid("the endpoint is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the endpoint must be http(s)"));
        }
        if !(1..=30).contains(&self.max_delivery_attempts) {
            return Err(invalid("maxDeliveryAttempts must be between 1 and 30"));
        }
        if self.event_ttl < Duration::from_mins(1) || self.event_ttl > Duration::from_hours(24) {
            return Err(invalid(
                "eventTimeToLiveInMinutes must be between 1 and 1440",
            ));
        }
        if self
            .operation_name_filter
            .as_ref()
            .is_some_and(|values| values.len() > 25)
        {
            return Err(invalid("a StringIn filter holds at most 25 values"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Multiplies the retry schedule and the events' time-to-live (e.g. 0.001 in tests: 10 s → 10 ms).
    pub retry_time_scale: f64,
    /// How long a delivery may take before it counts as failed (30 s in Azure; set it explicitly when scaling).
    pub delivery_timeout: Duration,
    /// Probability (0..=1) that a delivered event is delivered once more.
    pub duplicate_rate: f64,
    /// Delay each event's first delivery by a random time up to `reorder_window`, so events overtake each other.
    pub reorder: bool,
    pub reorder_window: Duration,
    /// Seeds duplicate and reorder decisions.
    pub seed: u64,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            retry_time_scale: 1.0,
            delivery_timeout: Duration::from_secs(30),
            duplicate_rate: 0.0,
            reorder: false,
            reorder_window: Duration::from_millis(200),
            seed: 0,
        }
    }
}

impl PublisherConfig {
    /// Azure's timings scaled by `scale`, including the 30 s delivery timeout (but never below `min_timeout`,
    /// because a real handler behind the host simulator needs a few milliseconds per event).
    pub fn scaled(scale: f64, min_timeout: Duration) -> Self {
        Self {
            retry_time_scale: scale,
            delivery_timeout: scale_duration(Duration::from_secs(30), scale).max(min_timeout),
            ..Self::default()
        }
    }

    fn scale(&self, duration: Duration) -> Duration {
        scale_duration(duration, self.retry_time_scale)
    }
}

/// `duration × factor` that never panics: a negative or NaN factor gives zero, an overflow gives `Duration::MAX`.
fn scale_duration(duration: Duration, factor: f64) -> Duration {
    if factor.is_nan() || factor <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("event subscription '{name}' is invalid: {reason}")]
    InvalidSubscription { name: String, reason: String },
    #[error("webhook validation handshake for subscription '{name}' failed: {reason}")]
    ValidationFailed { name: String, reason: String },
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DeliveryOutcome {
    /// 200–204 in time.
    Delivered,
    /// Another status; retried unless the status is one Event Grid never retries.
    HttpError,
    TimedOut,
    ConnectionFailed,
}

/// One delivery attempt of one event to one subscription.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub subscription: String,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt (the request's `aeg-delivery-count` is `attempt - 1`).
    pub attempt: u32,
    pub outcome: DeliveryOutcome,
    pub status: Option<u16>,
    /// A deliberate extra delivery of an already delivered event.
    pub duplicate: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    pub duration: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DeadLetterReason {
    MaxDeliveryAttemptsExceeded,
    TimeToLiveExceeded,
    /// 400, 413, 403 (and 401 for webhooks): never retried.
    NonRetriableStatus,
}

/// A dead-lettered event, as the dead-letter blob holds it: the event plus the delivery facts.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub subscription: String,
    pub event: Value,
    pub dead_letter_reason: DeadLetterReason,
    pub delivery_attempts: u32,
    pub last_delivery_outcome: DeliveryOutcome,
    pub last_http_status_code: Option<u16>,
    #[serde(with = "time::serde::rfc3339")]
    pub publish_time: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_delivery_attempt_time: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_lettered_at: OffsetDateTime,
}

struct Inner {
    config: PublisherConfig,
    subscriptions: Mutex<Vec<Arc<EventSubscription>>>,
    deliveries: Mutex<Vec<DeliveryRecord>>,
    deadletters: Mutex<Vec<DeadLetter>>,
    /// Deliveries not yet finished (delivered, dead-lettered or dropped).
    in_flight: watch::Sender<usize>,
    rng: Mutex<StdRng>,
    client: reqwest::Client,
    shutdown: watch::Receiver<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means another thread panicked while holding the lock; the data is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn random_unit(&self) -> f64 {
        rand::Rng::random::<f64>(&mut *lock(&self.rng))
    }
}

/// A running publisher. Dropping it stops every delivery.
pub struct Publisher {
    inner: Arc<Inner>,
    probe: mpsc::UnboundedSender<oneshot::Sender<()>>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Subscribes to the bus and starts delivering. Must run inside a Tokio runtime.
    pub fn start(bus: &EventBus, config: PublisherConfig) -> Self {
        let (shutdown, shutdown_rx) = watch::channel(false);
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let inner = Arc::new(Inner {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            subscriptions: Mutex::new(Vec::new()),
            deliveries: Mutex::new(Vec::new()),
            deadletters: Mutex::new(Vec::new()),
            in_flight: watch::channel(0).0,
            client,
            shutdown: shutdown_rx,
        });
        let (probe, probe_rx) = mpsc::unbounded_channel();
        let dispatcher = tokio::spawn(delivery::dispatch(
            Arc::clone(&inner),
            bus.subscribe(),
            probe_rx,
        ));
        Self {
            inner,
            probe,
            shutdown,
            tasks: Mutex::new(vec![dispatcher]),
        }
    }

    /// Registers (or replaces, by name) a subscription; webhooks must pass the validation handshake first.
    pub async fn subscribe(&self, subscription: EventSubscription) -> Result<(), PublisherError> {
        subscription.validate()?;
        if !subscription.is_function_destination() {
            delivery::handshake(&self.inner, &subscription).await?;
        }
        let mut subscriptions = lock(&self.inner.subscriptions);
        subscriptions.retain(|existing| !existing.name.eq_ignore_ascii_case(&subscription.name));
        subscriptions.push(Arc::new(subscription));
        Ok(())
    }

    /// Removes a subscription; events already in flight are still delivered.
    pub fn unsubscribe(&self, name: &str) -> bool {
        let mut subscriptions = lock(&self.inner.subscriptions);
        let before = subscriptions.len();
        subscriptions.retain(|existing| !existing.name.eq_ignore_ascii_case(name));
        subscriptions.len() != before
    }

    pub fn subscriptions(&self) -> Vec<EventSubscription> {
        lock(&self.inner.subscriptions)
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }

    /// Every delivery attempt so far, in the order they finished.
    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        lock(&self.inner.deliveries).clone()
    }

    pub fn deadletters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.deadletters).clone()
    }

    /// Waits until every event already published on the bus has been handed to its subscriptions and no delivery
    /// is in flight (including retries waiting for their turn). `false` on timeout.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let work = async {
            // The dispatcher answers only after taking every event queued before this probe.
            let (tx, rx) = oneshot::channel();
            if self.probe.send(tx).is_ok() {
                let _ = rx.await;
            }
            let mut in_flight = self.inner.in_flight.subscribe();
            let _ = in_flight.wait_for(|count| *count == 0).await;
        };
        tokio::time::timeout(timeout, work).await.is_ok()
    }

    /// The admin routes, for merging into another server.
    pub fn admin_router(&self) -> axum::Router {
        admin::router(Arc::clone(&self.inner))
    }

    /// Serves the publisher's admin endpoint (`GET /_emulator/deadletter`, `/_emulator/deliveries`,
    /// `/_emulator/eventsubscriptions`) on 127.0.0.1; stops when the publisher is dropped.
    pub async fn serve_admin(&self, port: u16) -> Result<SocketAddr, PublisherError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| PublisherError::Bind { port, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| PublisherError::Bind { port, source })?;
        let app = self.admin_router();
        let mut shutdown = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(%error, "the Event Grid admin endpoint failed");
            }
        });
        lock(&self.tasks).push(task);
        Ok(address)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in lock(&self.tasks).iter() {
            task.abort();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_schedule_follows_the_docs() {
        let waits: Vec<u64> = (1..=11)
            .map(|attempt| retry_delay(attempt).as_secs())
            .collect();
        assert_eq!(
            waits,
            [
                10, 30, 60, 300, 600, 1800, 3600, 10_800, 21_600, 43_200, 43_200
            ]
        );
        let config = PublisherConfig {
            retry_time_scale: 0.001,
            ..PublisherConfig::default()
        };
        assert_eq!(config.scale(retry_delay(1)), Duration::from_millis(10));
        assert_eq!(
            PublisherConfig::scaled(0.001, Duration::from_secs(2)).delivery_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            scale_duration(Duration::from_secs(1), f64::NAN),
            Duration::ZERO
        );
        assert_eq!(scale_duration(Duration::from_secs(1), -1.0), Duration::ZERO);
        assert_eq!(
            scale_duration(Duration::from_hours(12), 1e300),
            Duration::MAX
        );
        assert_eq!(
            scale_duration(Duration::from_secs(1), f64::INFINITY),
            Duration::MAX
        );
        assert_eq!(
            PublisherConfig::scaled(0.5, Duration::ZERO).delivery_timeout,
            Duration::from_secs(15)
        );
    }

    #[test]
    fn filters_match_like_event_grid() {
        let subscription = EventSubscription::as_infra_configures("s", "http://127.0.0.1/x");
        let event = |event_type: &str, operation: &str| json!({"eventType": event_type, "data": {"operationName": operation}});
        assert!(subscription.matches(&event(
            "Microsoft.Resources.ResourceWriteSuccess",
            "microsoft.containerservice/MANAGEDCLUSTERS/write"
        )));
        assert!(!subscription.matches(&event(
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Authorization/roleAssignments/write"
        )));
        assert!(!subscription.matches(&event(
            "Microsoft.Resources.ResourceActionSuccess",
            "Microsoft.ContainerService/managedClusters/write"
        )));
        assert!(
            !subscription
                .matches(&json!({"type": "Microsoft.Resources.ResourceWriteSuccess", "data": {}}))
        );
        let cloud = json!({"type": "Microsoft.Resources.ResourceDeleteSuccess", "data": {"operationName": "Microsoft.ContainerRegistry/registries/delete"}});
        assert!(subscription.matches(&cloud));
        assert!(
            EventSubscription::new("all", "http://127.0.0.1/x")
                .matches(&json!({"eventType": "anything"}))
        );
    }

    #[test]
    fn subscriptions_are_validated_and_never_print_secrets() {
        let mut subscription =
            EventSubscription::new("ok-name", "https://127.0.0.1:8443/hook?code=s3cret");
        assert!(subscription.validate().is_ok());
        assert!(!format!("{subscription:?}").contains("s3cret"));
        subscription.max_delivery_attempts = 31;
        assert!(subscription.validate().is_err());
        let bad_name = EventSubscription::new("bad name", "http://127.0.0.1/");
        assert!(bad_name.validate().is_err());
        assert!(
            EventSubscription::new(
                "f",
                "http://127.0.0.1:7071/runtime/webhooks/eventgrid?functionName=F"
            )
            .is_function_destination()
        );
    }
}
