//! The real handler's answers through the custom-handler contract (shared docs/functions-host.md), against an
//! emulator: recorded rejections, the timer's summary, every published sample event, and a real socket.
//! The contract alone (statuses, shapes, limits) is tested against a stub in `host_contract.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::sync::Arc;

use acr_autoattach::runtime::bootstrap::{self, Settings};
use acr_autoattach::runtime::config::MapEnv;
use acr_autoattach::runtime::contract;
use acr_autoattach::runtime::functions::Handler;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use fixtures::event_fixture as fixture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The timer example of functions-host.md, verbatim.
const TIMER_EXAMPLE: &str = r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-01-04T10:15:00+00:00","Next":"2026-01-04T10:20:00+00:00","LastUpdated":"2026-01-04T10:16:00+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"VerifyAttachments","UtcNow":"2026-01-04T10:20:00.004Z","RandGuid":"35e6e68c-5583-436c-a277-5aec2b416ba8"}}}"#;

/// A handler wired to a fresh emulator (an empty estate), in audit mode.
async fn setup() -> (Arc<Handler>, RunningEmulator) {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let mut env: Vec<(String, String)> = emulator.env();
    env.push(("AUTOATTACH_MODE".into(), "audit".into()));
    let settings = Settings::from_env(&MapEnv::new(env.clone())).unwrap();
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    let handler = bootstrap::handler_with_credential(&settings, credential, None).unwrap();
    (Arc::new(handler), emulator)
}

async fn call(method: &str, path: &str, body: impl Into<Body>) -> (StatusCode, String, Value) {
    let (handler, _emulator) = setup().await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "x-azure-functions-invocationid",
            "0f1e2d3c-0000-4000-8000-000000000001",
        )
        .body(body.into())
        .unwrap();
    let resp = contract::app(handler).oneshot(req).await.unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, ctype, value)
}

#[tokio::test]
async fn timer_example_is_answered() {
    let (status, ctype, body) = call("POST", "/VerifyAttachments", TIMER_EXAMPLE).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    assert_eq!(body["Outputs"], json!({}));
    let logs = body["Logs"].as_array().unwrap();
    assert!(
        logs[0]
            .as_str()
            .unwrap()
            .starts_with("verification complete: 0 clusters, 0 registries, 0 pairs"),
        "{body}"
    );
    assert_eq!(body["ReturnValue"]["complete"], json!(true));
    assert_eq!(body["ReturnValue"]["pastDue"], json!(false));
    assert_eq!(body["ReturnValue"]["pairs"], json!(0));
}

#[tokio::test]
async fn invalid_json_is_a_recorded_rejection() {
    let (status, _, body) = call("POST", "/OnResourceEvent", "{not json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Outputs"], json!({}));
    assert_eq!(body["ReturnValue"], json!({"rejected": "not_json"}));
    let log = body["Logs"][0].as_str().unwrap();
    assert!(
        log.starts_with("rejected (not_json): the body is not JSON"),
        "{log}"
    );
}

#[tokio::test]
async fn wrong_envelopes_are_recorded_rejections() {
    for (body, code) in [
        ("[1,2]", "not_an_envelope"),
        (r#"{"Data":"x","Metadata":{}}"#, "not_an_envelope"),
        (r#"{"Data":{"timer":{}},"Metadata":{}}"#, "missing_binding"),
        (r#"{"Data":{"event":"{oops"},"Metadata":{}}"#, "not_json"),
        (r#"{"Data":{"event":42},"Metadata":{}}"#, "not_an_event"),
    ] {
        let (status, _, answer) = call("POST", "/OnResourceEvent", body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            answer["ReturnValue"],
            json!({"rejected": code}),
            "{body}: {answer}"
        );
        assert_eq!(answer["Logs"].as_array().unwrap().len(), 1);
    }
    let (status, _, answer) = call(
        "POST",
        "/VerifyAttachments",
        r#"{"Data":{"timer":{"IsPastDue":"yes"}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["ReturnValue"], json!({"rejected": "not_a_timer"}));
}

/// Through a real socket: the host sends bodies chunked, without Content-Length.
#[tokio::test]
async fn real_socket_chunked_body_and_oversized_stream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handler, _emulator) = setup().await;
    let server = tokio::spawn(contract::serve(listener, handler, async move {
        let _ = stop_rx.await;
    }));
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    let chunks: Vec<Result<&'static str, std::io::Error>> = TIMER_EXAMPLE
        .as_bytes()
        .chunks(37)
        .map(|c| Ok(std::str::from_utf8(c).unwrap()))
        .collect();
    let resp = client
        .post(format!("{base}/VerifyAttachments"))
        .header("content-type", "application/json; charset=utf-8")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["Outputs"], json!({}));

    // 2 MiB streamed without a length: refused once the cap is crossed.
    let piece = "a".repeat(64 * 1024);
    let stream =
        futures::stream::iter((0..32).map(move |_| Ok::<_, std::io::Error>(piece.clone())));
    let resp = client
        .post(format!("{base}/OnResourceEvent"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // A published sample event, chunked, as the host sends it.
    if let Some(Value::Array(events)) =
        fixture("docs_subscription-topic_eventgrid-schema_write_success.json")
    {
        let body = wrap(&Value::Array(events.clone()), &events[0]["data"]);
        let chunks: Vec<Result<String, std::io::Error>> = body
            .as_bytes()
            .chunks(101)
            .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
            .collect();
        let resp = client
            .post(format!("{base}/OnResourceEvent"))
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "x-azure-functions-invocationid",
                "0f1e2d3c-0000-4000-8000-000000000002",
            )
            .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(
            answer["Logs"],
            json!([
                "event 4db48cba-50a2-455a-93b4-de41a3b5b7f6 (Microsoft.Resources.ResourceWriteSuccess): other_resource_type → ignored"
            ])
        );
    }

    let resp = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// The envelope the host sends for one Event Grid trigger value.
fn wrap(value: &Value, data: &Value) -> String {
    json!({
        "Data": {"event": value},
        "Metadata": {"data": data, "sys": {"MethodName": "OnResourceEvent", "UtcNow": "2026-11-30T06:00:00.000Z", "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}}
    })
    .to_string()
}

/// Every published sample event, wrapped as the host wraps it — as an object and as a JSON string, single and
/// as an array — gets 200 and exactly the expected answer: none of them concerns a cluster or a registry.
#[tokio::test]
async fn every_published_sample_event_is_answered_exactly() {
    let cases = [
        (
            "docs_subscription-topic_eventgrid-schema_write_success.json",
            "other_resource_type",
        ),
        (
            "docs_subscription-topic_eventgrid-schema_delete_success.json",
            "other_resource_type",
        ),
        (
            "docs_subscription-topic_eventgrid-schema_action_success.json",
            "resource_action",
        ),
        (
            "docs_subscription_validation_event.json",
            "subscription_validation",
        ),
        (
            "specs_eventgrid-schema_resource_write_success.json",
            "other_resource_type",
        ),
        (
            "specs_cloudevents_resource_write_success.json",
            "other_resource_type",
        ),
        (
            "specs_arn_resources_created_or_updated.json",
            "other_resource_type",
        ),
    ];
    for (file, class) in cases {
        let Some(raw) = fixture(file) else { return };
        let events: Vec<Value> = match &raw {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        for event in &events {
            let id = event["id"].as_str().unwrap();
            let event_type = event["eventType"]
                .as_str()
                .or(event["type"].as_str())
                .unwrap();
            let expected_line = format!("event {id} ({event_type}): {class} → ignored");
            let single_variants = [event.clone(), Value::String(event.to_string())];
            let array_variants = [json!([event]), Value::String(json!([event]).to_string())];
            for value in single_variants.iter().chain(&array_variants) {
                let (status, ctype, body) =
                    call("POST", "/OnResourceEvent", wrap(value, &event["data"])).await;
                assert_eq!(status, StatusCode::OK, "{file}");
                assert_eq!(ctype, "application/json");
                assert_eq!(body["Outputs"], json!({}));
                assert_eq!(body["Logs"], json!([expected_line]), "{file}: {body}");
                let reports = body["ReturnValue"]["events"].as_array().unwrap();
                assert_eq!(reports.len(), 1);
                assert_eq!(reports[0]["outcome"], "ignored");
                assert_eq!(reports[0]["class"], class);
                assert_eq!(
                    reports[0]["azure_requests"], 0,
                    "{file}: an ignored event costs no request"
                );
                assert_eq!(body["ReturnValue"]["rejections"], json!([]));
            }
        }
    }
    // The validation *response* sample is not an event at all: recorded as a rejection, answered 200.
    if let Some(raw) = fixture("docs_subscription_validation_response.json") {
        let (status, _, body) = call("POST", "/OnResourceEvent", wrap(&raw, &Value::Null)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["Logs"],
            json!([
                "rejected (unknown_schema): event #0: has neither `eventType` (Event Grid schema) nor `specversion` (CloudEvents)"
            ])
        );
        assert_eq!(body["ReturnValue"]["events"], json!([]));
        assert_eq!(
            body["ReturnValue"]["rejections"][0]["rejected"],
            "unknown_schema"
        );
    }
}
