//! The Event Grid publisher against test webhooks and against the Functions host simulator: event shapes,
//! headers, handshakes, filters, retries on the real (scaled) schedule, no retry on 400, dead-lettering,
//! duplicates and reordering with a seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use azure_emulator::bus::{ArmEvent, ArmOperationKind, EventBus};
use azure_emulator::eventgrid::{
    DeadLetterReason, DeliveryOutcome, EventSchema, EventSubscription, Publisher, PublisherConfig,
};
use serde_json::{Value, json};
use time::OffsetDateTime;

const SUB: &str = "00000000-0000-0000-0000-0000000000aa";
const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-0000000000aa/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-1";

fn arm_event(kind: ArmOperationKind, resource_uri: &str, operation_name: &str) -> ArmEvent {
    ArmEvent {
        kind,
        resource_uri: resource_uri.to_owned(),
        operation_name: operation_name.to_owned(),
        subscription_id: SUB.to_owned(),
        tenant_id: "11111111-1111-1111-1111-111111111111".to_owned(),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        claims: BTreeMap::from([
            ("oid".to_owned(), "22222222-2222-2222-2222-222222222222".to_owned()),
            ("appid".to_owned(), "33333333-3333-3333-3333-333333333333".to_owned()),
        ]),
        authorization_action: operation_name.to_owned(),
        authorization_scope: resource_uri.to_owned(),
        http_method: if kind == ArmOperationKind::Delete { "DELETE" } else { "PUT" }.to_owned(),
        url: format!("https://management.azure.com{resource_uri}?api-version=2025-02-01"),
        time: OffsetDateTime::now_utc(),
        resource_body: (kind == ArmOperationKind::Write).then(|| {
            json!({"id": resource_uri, "name": "aks-1", "type": "Microsoft.ContainerService/managedClusters", "location": "westeurope",
                   "tags": {"env": "prod"}, "properties": {"provisioningState": "Succeeded"}})
        }),
    }
}

fn cluster_write() -> ArmEvent {
    arm_event(
        ArmOperationKind::Write,
        CLUSTER,
        "Microsoft.ContainerService/managedClusters/write",
    )
}

#[derive(Clone, Debug)]
struct Received {
    method: String,
    headers: BTreeMap<String, String>,
    body: Value,
    at: Instant,
}

/// A test webhook: records every request and answers the n-th notification (1-based) with `script(n)`.
struct Webhook {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    _server: tokio::task::JoinHandle<()>,
}

type Script = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

impl Webhook {
    async fn start(script: impl Fn(usize) -> (u16, Duration) + Send + Sync + 'static) -> Self {
        let received = Arc::new(Mutex::new(Vec::<Received>::new()));
        let script: Script = Arc::new(script);
        let state = (Arc::clone(&received), script);
        let app =
            axum::Router::new().fallback(move |method: Method, headers: HeaderMap, body: Bytes| {
                let (received, script) = state.clone();
                async move { answer(&received, &script, method, &headers, &body).await }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/api/events?code=secret-code",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            received,
            _server: server,
        }
    }

    fn notifications(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.headers.get("aeg-event-type").map(String::as_str) == Some("Notification"))
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn answer(
    received: &Mutex<Vec<Received>>,
    script: &Script,
    method: Method,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let record = Received {
        method: method.to_string(),
        headers: headers.clone(),
        body: body.clone(),
        at: Instant::now(),
    };
    let count = {
        let mut received = received.lock().unwrap();
        received.push(record);
        received
            .iter()
            .filter(|r| r.headers.get("aeg-event-type").map(String::as_str) == Some("Notification"))
            .count()
    };
    if method == Method::OPTIONS {
        let origin = headers
            .get("webhook-request-origin")
            .cloned()
            .unwrap_or_default();
        return (StatusCode::OK, [("WebHook-Allowed-Origin", origin)]).into_response();
    }
    if headers.get("aeg-event-type").map(String::as_str) == Some("SubscriptionValidation") {
        let code = body[0]["data"]["validationCode"].clone();
        return axum::Json(json!({"validationResponse": code})).into_response();
    }
    let (status, delay) = script(count);
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap().into_response()
}

fn fast_config() -> PublisherConfig {
    PublisherConfig {
        delivery_timeout: Duration::from_secs(5),
        ..PublisherConfig::scaled(0.001, Duration::from_secs(5))
    }
}

fn shared_fixture(name: &str) -> Option<Value> {
    let path = format!(
        "{}/../../shared/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "shared fixture {path} is missing: {error}"
            );
            eprintln!("skipping: shared fixture {path} is missing ({error})");
            None
        }
    }
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn webhook_gets_the_handshake_then_events_shaped_like_the_published_samples() {
    let Some(sample) =
        shared_fixture("docs_subscription-topic_eventgrid-schema_delete_success.json")
    else {
        return;
    };
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let webhook = Webhook::start(|_| (200, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::new("cluster-events", &webhook.url))
        .await
        .unwrap();
    let handshake = &webhook.all()[0];
    assert_eq!(
        handshake.headers["aeg-event-type"],
        "SubscriptionValidation"
    );
    assert_eq!(
        handshake.body[0]["eventType"],
        "Microsoft.EventGrid.SubscriptionValidationEvent"
    );

    let mut delete = arm_event(
        ArmOperationKind::Delete,
        CLUSTER,
        "Microsoft.ContainerService/managedClusters/delete",
    );
    delete.resource_body = None;
    bus.publish(&cluster_write());
    bus.publish(&delete);
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);

    let notifications = webhook.notifications();
    assert_eq!(notifications.len(), 2);
    for received in &notifications {
        assert_eq!(received.method, "POST");
        assert_eq!(
            received.headers["content-type"],
            "application/json; charset=utf-8"
        );
        assert_eq!(received.headers["aeg-subscription-name"], "CLUSTER-EVENTS");
        assert_eq!(received.headers["aeg-delivery-count"], "0");
        assert_eq!(received.headers["aeg-data-version"], "2");
        assert_eq!(received.headers["aeg-metadata-version"], "1");
        let events = received.body.as_array().expect("delivered as an array");
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(
            sorted_keys(event),
            sorted_keys(&sample[0]),
            "same envelope as the published sample"
        );
        assert_eq!(
            sorted_keys(&event["data"]),
            sorted_keys(&sample[0]["data"]),
            "same data fields as the published sample"
        );
        assert_eq!(event["topic"], format!("/subscriptions/{SUB}"));
        assert_eq!(event["subject"], CLUSTER);
        assert_eq!(event["data"]["resourceUri"], CLUSTER);
        assert_eq!(event["data"]["subscriptionId"], SUB);
        assert_eq!(event["data"]["status"], "Succeeded");
        assert_eq!(
            event["data"]["resourceProvider"],
            "Microsoft.ContainerService"
        );
        OffsetDateTime::parse(
            event["eventTime"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    }
    let types: Vec<&str> = notifications
        .iter()
        .map(|r| r.body[0]["eventType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"Microsoft.Resources.ResourceWriteSuccess")
            && types.contains(&"Microsoft.Resources.ResourceDeleteSuccess")
    );
    let delete_event = notifications
        .iter()
        .find(|r| r.body[0]["eventType"] == "Microsoft.Resources.ResourceDeleteSuccess")
        .unwrap();
    assert_eq!(
        delete_event.body[0]["data"]["operationName"],
        "Microsoft.ContainerService/managedClusters/delete"
    );
    assert_eq!(
        delete_event.body[0]["data"]["httpRequest"]["method"],
        "DELETE"
    );
    assert!(
        publisher
            .deliveries()
            .iter()
            .all(|d| d.outcome == DeliveryOutcome::Delivered && d.attempt == 1)
    );
}

#[tokio::test]
async fn a_webhook_that_fails_the_handshake_is_not_subscribed() {
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(|| async { axum::Json(json!({"validationResponse": "wrong"})) });
    let _server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let error = publisher
        .subscribe(EventSubscription::new("s", url))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("validationResponse"), "{error}");
    assert!(publisher.subscriptions().is_empty());
}

#[tokio::test]
async fn infra_filter_passes_only_the_relevant_operations() {
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let webhook = Webhook::start(|_| (200, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::as_infra_configures(
            "infra",
            &webhook.url,
        ))
        .await
        .unwrap();
    let all = Webhook::start(|_| (200, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::new("everything", &all.url))
        .await
        .unwrap();

    let registry = format!(
        "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1"
    );
    bus.publish(&cluster_write());
    bus.publish(&arm_event(
        ArmOperationKind::Write,
        &format!("{registry}/providers/Microsoft.Authorization/roleAssignments/0b9c"),
        "Microsoft.Authorization/roleAssignments/write",
    ));
    bus.publish(&arm_event(
        ArmOperationKind::Write,
        &format!("{CLUSTER}/agentPools/np1"),
        "Microsoft.ContainerService/managedClusters/agentPools/write",
    ));
    bus.publish(&arm_event(
        ArmOperationKind::Action,
        CLUSTER,
        "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
    ));
    bus.publish(&arm_event(
        ArmOperationKind::Write,
        &format!("{registry}/providers/Microsoft.Resources/tags/default"),
        "Microsoft.Resources/tags/write",
    ));
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);

    let mut operations: Vec<String> = webhook
        .notifications()
        .iter()
        .map(|r| {
            r.body[0]["data"]["operationName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    operations.sort();
    assert_eq!(
        operations,
        [
            "Microsoft.ContainerService/managedClusters/write",
            "Microsoft.Resources/tags/write"
        ]
    );
    assert_eq!(
        all.notifications().len(),
        5,
        "without a filter every operation is delivered"
    );
    let tags = webhook
        .notifications()
        .into_iter()
        .find(|r| r.body[0]["data"]["operationName"] == "Microsoft.Resources/tags/write")
        .unwrap();
    assert!(
        tags.body[0]["subject"]
            .as_str()
            .unwrap()
            .ends_with("/providers/Microsoft.Resources/tags/default")
    );
    let ids: std::collections::BTreeSet<String> = all
        .notifications()
        .iter()
        .map(|r| r.body[0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 5, "every event has its own id");
}

#[tokio::test]
async fn failures_are_retried_on_the_scaled_schedule_until_success() {
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let webhook = Webhook::start(|n| (if n <= 3 { 503 } else { 200 }, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::new("retry", &webhook.url))
        .await
        .unwrap();
    bus.publish(&cluster_write());
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);

    let notifications = webhook.notifications();
    assert_eq!(notifications.len(), 4);
    let counts: Vec<&str> = notifications
        .iter()
        .map(|r| r.headers["aeg-delivery-count"].as_str())
        .collect();
    assert_eq!(counts, ["0", "1", "2", "3"]);
    assert!(
        notifications
            .windows(2)
            .all(|w| w[0].body[0]["id"] == w[1].body[0]["id"])
    );
    // 10 s, 30 s, 1 min scaled by 0.001.
    for (pair, minimum) in notifications.windows(2).zip([10u64, 30, 60]) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(minimum),
            "gap {gap:?} shorter than {minimum} ms"
        );
    }
    let deliveries = publisher.deliveries();
    assert_eq!(
        deliveries
            .iter()
            .map(|d| (d.attempt, d.status))
            .collect::<Vec<_>>(),
        [
            (1, Some(503)),
            (2, Some(503)),
            (3, Some(503)),
            (4, Some(200))
        ]
    );
    assert!(publisher.deadletters().is_empty());
}

#[tokio::test]
async fn bad_request_and_unauthorized_are_never_retried() {
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    for (name, status) in [
        ("bad-request", 400u16),
        ("too-large", 413),
        ("unauthorized", 401),
        ("forbidden", 403),
    ] {
        let webhook = Webhook::start(move |_| (status, Duration::ZERO)).await;
        publisher
            .subscribe(EventSubscription::new(name, &webhook.url))
            .await
            .unwrap();
        bus.publish(&cluster_write());
        assert!(publisher.wait_idle(Duration::from_secs(10)).await);
        assert_eq!(
            webhook.notifications().len(),
            1,
            "{status} must not be retried"
        );
        publisher.unsubscribe(name);
    }
    let deadletters = publisher.deadletters();
    assert_eq!(deadletters.len(), 4);
    assert!(deadletters.iter().all(|d| d.dead_letter_reason
        == DeadLetterReason::NonRetriableStatus
        && d.delivery_attempts == 1));
    assert_eq!(
        deadletters
            .iter()
            .map(|d| d.last_http_status_code)
            .collect::<Vec<_>>(),
        [Some(400), Some(413), Some(401), Some(403)]
    );
}

#[tokio::test]
async fn dead_letter_after_the_last_attempt_and_after_the_time_to_live() {
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let webhook = Webhook::start(|_| (500, Duration::ZERO)).await;
    let mut subscription = EventSubscription::new("three-attempts", &webhook.url);
    subscription.max_delivery_attempts = 3;
    publisher.subscribe(subscription).await.unwrap();
    bus.publish(&cluster_write());
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    assert_eq!(webhook.notifications().len(), 3);
    let deadletters = publisher.deadletters();
    assert_eq!(deadletters.len(), 1);
    assert_eq!(
        deadletters[0].dead_letter_reason,
        DeadLetterReason::MaxDeliveryAttemptsExceeded
    );
    assert_eq!(deadletters[0].delivery_attempts, 3);
    assert_eq!(deadletters[0].last_http_status_code, Some(500));
    assert_eq!(deadletters[0].event["data"]["resourceUri"], CLUSTER);

    // The admin endpoint lists it.
    let address = publisher.serve_admin(0).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let listed: Value = client
        .get(format!("http://{address}/_emulator/deadletter"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["deadLetterReason"], "MaxDeliveryAttemptsExceeded");
    assert_eq!(listed[0]["deliveryAttempts"], 3);
    let subscriptions: Value = client
        .get(format!("http://{address}/_emulator/eventsubscriptions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        !subscriptions.to_string().contains("secret-code"),
        "webhook secrets stay out of listings"
    );

    // TTL of 2 minutes at scale 0.001 = 120 ms: attempts at about 0, 10, 40 and 100 ms, then the next wait
    // (300 ms) would pass it, so the event is dead-lettered when the TTL runs out.
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let mut subscription = EventSubscription::new("short-ttl", &webhook.url);
    subscription.event_ttl = Duration::from_mins(2);
    publisher.subscribe(subscription).await.unwrap();
    bus.publish(&cluster_write());
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let deadletters = publisher.deadletters();
    assert_eq!(deadletters.len(), 1);
    assert_eq!(
        deadletters[0].dead_letter_reason,
        DeadLetterReason::TimeToLiveExceeded
    );
    // Scheduling jitter on a loaded machine may cost the last attempt; never more than four fit.
    assert!(
        (2..=4).contains(&deadletters[0].delivery_attempts),
        "{:?}",
        deadletters[0]
    );
    let lived = deadletters[0].dead_lettered_at - deadletters[0].publish_time;
    assert!(
        lived >= time::Duration::milliseconds(115),
        "dead-lettered after {lived}, before the TTL"
    );
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_and_is_retried() {
    let bus = EventBus::new();
    let config = PublisherConfig {
        delivery_timeout: Duration::from_millis(200),
        ..fast_config()
    };
    let publisher = Publisher::start(&bus, config);
    let webhook = Webhook::start(|n| {
        (
            200,
            if n == 1 {
                Duration::from_millis(600)
            } else {
                Duration::ZERO
            },
        )
    })
    .await;
    publisher
        .subscribe(EventSubscription::new("slow", &webhook.url))
        .await
        .unwrap();
    bus.publish(&cluster_write());
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let outcomes: Vec<DeliveryOutcome> = publisher.deliveries().iter().map(|d| d.outcome).collect();
    // Only the first answer is slow; a loaded machine may still time out a later one, never deliver the first.
    assert_eq!(outcomes.first(), Some(&DeliveryOutcome::TimedOut));
    assert_eq!(outcomes.last(), Some(&DeliveryOutcome::Delivered));
    assert!(webhook.notifications().len() >= 2);
}

async fn duplicates_with_seed(seed: u64) -> (usize, usize) {
    let bus = EventBus::new();
    let config = PublisherConfig {
        duplicate_rate: 0.3,
        seed,
        ..fast_config()
    };
    let publisher = Publisher::start(&bus, config);
    let webhook = Webhook::start(|_| (200, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::new("dups", &webhook.url))
        .await
        .unwrap();
    for _ in 0..40 {
        bus.publish(&cluster_write());
    }
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let duplicates = publisher
        .deliveries()
        .iter()
        .filter(|d| d.duplicate)
        .count();
    let mut ids: Vec<String> = webhook
        .notifications()
        .iter()
        .map(|r| r.body[0]["id"].as_str().unwrap().to_owned())
        .collect();
    let received = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every event arrives at least once");
    assert_eq!(
        received,
        40 + duplicates,
        "a duplicate carries the same event id"
    );
    (duplicates, received)
}

#[tokio::test]
async fn duplicate_delivery_is_driven_by_the_seed() {
    let first = duplicates_with_seed(7).await;
    let again = duplicates_with_seed(7).await;
    assert_eq!(
        first, again,
        "the same seed gives the same number of duplicates"
    );
    assert!(first.0 > 0 && first.0 < 40, "{first:?}");
    let none = {
        let bus = EventBus::new();
        let publisher = Publisher::start(&bus, fast_config());
        let webhook = Webhook::start(|_| (200, Duration::ZERO)).await;
        publisher
            .subscribe(EventSubscription::new("nodups", &webhook.url))
            .await
            .unwrap();
        for _ in 0..20 {
            bus.publish(&cluster_write());
        }
        assert!(publisher.wait_idle(Duration::from_secs(10)).await);
        webhook.notifications().len()
    };
    assert_eq!(none, 20);
}

#[tokio::test]
async fn reordering_lets_later_events_overtake_earlier_ones() {
    let bus = EventBus::new();
    let config = PublisherConfig {
        reorder: true,
        reorder_window: Duration::from_millis(300),
        seed: 42,
        ..fast_config()
    };
    let publisher = Publisher::start(&bus, config);
    let webhook = Webhook::start(|_| (200, Duration::ZERO)).await;
    publisher
        .subscribe(EventSubscription::new("reorder", &webhook.url))
        .await
        .unwrap();
    let mut published = Vec::new();
    for index in 0..10 {
        let mut event = cluster_write();
        event.correlation_id = format!("corr-{index}");
        published.push(event.correlation_id.clone());
        bus.publish(&event);
    }
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let received: Vec<String> = webhook
        .notifications()
        .iter()
        .map(|r| {
            r.body[0]["data"]["correlationId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(received.len(), 10);
    assert_ne!(received, published, "events must arrive out of order");
}

#[tokio::test]
async fn cloudevents_and_resource_notification_subscriptions() {
    let Some(cloud_sample) = shared_fixture("specs_cloudevents_resource_write_success.json") else {
        return;
    };
    let bus = EventBus::new();
    let publisher = Publisher::start(&bus, fast_config());
    let cloud = Webhook::start(|_| (200, Duration::ZERO)).await;
    let mut subscription = EventSubscription::new("cloud", &cloud.url);
    subscription.schema = EventSchema::CloudEventSchemaV1_0;
    publisher.subscribe(subscription).await.unwrap();
    let arn = Webhook::start(|_| (200, Duration::ZERO)).await;
    let mut subscription = EventSubscription::new("arn", &arn.url);
    subscription.schema = EventSchema::ResourceNotifications;
    publisher.subscribe(subscription).await.unwrap();
    assert_eq!(
        cloud.all()[0].method,
        "OPTIONS",
        "CloudEvents webhooks are validated with OPTIONS"
    );

    bus.publish(&cluster_write());
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let event = &cloud.notifications()[0];
    assert_eq!(
        event.headers["content-type"],
        "application/cloudevents+json; charset=utf-8"
    );
    assert_eq!(sorted_keys(&event.body), sorted_keys(&cloud_sample));
    assert_eq!(
        event.body["type"],
        "Microsoft.Resources.ResourceWriteSuccess"
    );
    assert_eq!(event.body["source"], format!("/subscriptions/{SUB}"));
    let notification = &arn.notifications()[0].body;
    assert_eq!(
        notification["type"],
        "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated"
    );
    assert_eq!(notification["data"]["resourceInfo"]["tags"]["env"], "prod");
    assert_eq!(
        notification["data"]["resourceInfo"]["properties"]["provisioningState"],
        "Succeeded"
    );
}
