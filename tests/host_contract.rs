//! The custom-handler wire contract (shared docs/functions-host.md) on its own: `runtime::contract` serves a
//! small stub implementing `Functions`, so these tests need no emulator and no engine. Exact statuses, content
//! types and answer bodies; what reaches the functions (name, invocation id, traceparent, envelope). The real
//! handler's answers are tested in `handler_answers.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use acr_autoattach::runtime::contract::{
    self, FunctionName, Functions, Invocation, InvocationAnswer, InvocationFailure, MAX_BODY_BYTES,
};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// What the stub saw of one invocation.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    function: FunctionName,
    invocation_id: String,
    traceparent: Option<String>,
    /// The trigger's raw value, or the envelope error's code.
    trigger: Result<Value, String>,
}

/// Answers every invocation with its function's name; fails (500) when the trigger value is `{"fail": true}`.
#[derive(Default)]
struct Stub {
    seen: Mutex<Vec<Seen>>,
}

impl Functions for Stub {
    async fn invoke(&self, invocation: Invocation) -> Result<InvocationAnswer, InvocationFailure> {
        let binding = invocation.function.binding();
        let trigger = match &invocation.request {
            Ok(request) => request
                .trigger_value(binding)
                .map_err(|e| e.as_str().to_owned()),
            Err(e) => Err(e.as_str().to_owned()),
        };
        self.seen.lock().unwrap().push(Seen {
            function: invocation.function,
            invocation_id: invocation.invocation_id.clone(),
            traceparent: invocation.traceparent.clone(),
            trigger: trigger.clone(),
        });
        if trigger.as_ref().is_ok_and(|v| v["fail"] == true) {
            return Err(InvocationFailure {
                reason: "scripted failure".into(),
                logs: vec!["about to fail".into()],
            });
        }
        Ok(InvocationAnswer {
            logs: vec![format!("stub {}", invocation.function.as_str())],
            return_value: json!({"function": invocation.function.as_str()}),
            ..InvocationAnswer::default()
        })
    }
}

async fn call_with(
    stub: &Arc<Stub>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> (StatusCode, String, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json; charset=utf-8");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = contract::app(Arc::clone(stub))
        .oneshot(req.body(body.into()).unwrap())
        .await
        .unwrap();
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

async fn call(method: &str, path: &str, body: impl Into<Body>) -> (StatusCode, String, Value) {
    call_with(&Arc::new(Stub::default()), method, path, &[], body).await
}

#[tokio::test]
async fn readiness_probe_answers() {
    let (status, ctype, body) = call("GET", "/", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    assert_eq!(body, json!({"status": "ready"}));
}

#[tokio::test]
async fn an_answer_is_200_with_outputs_logs_and_return_value() {
    let stub = Arc::new(Stub::default());
    let (status, ctype, body) = call_with(
        &stub,
        "POST",
        "/VerifyAttachments",
        &[
            ("x-azure-functions-invocationid", "inv-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ],
        r#"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ctype, "application/json");
    assert_eq!(
        body,
        json!({"Outputs": {}, "Logs": ["stub VerifyAttachments"], "ReturnValue": {"function": "VerifyAttachments"}})
    );
    assert_eq!(
        stub.seen.lock().unwrap().clone(),
        [Seen {
            function: FunctionName::VerifyAttachments,
            invocation_id: "inv-1".into(),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            trigger: Ok(json!({"IsPastDue": false})),
        }]
    );
}

#[tokio::test]
async fn a_failure_is_500_with_the_reason_and_logs() {
    let (status, ctype, body) = call(
        "POST",
        "/OnResourceEvent",
        r#"{"Data":{"event":{"fail":true}},"Metadata":{}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ctype, "application/json");
    assert_eq!(
        body,
        json!({"error": {"code": "InvocationFailed", "message": "scripted failure"}, "Logs": ["about to fail"]})
    );
}

#[tokio::test]
async fn a_body_that_is_no_envelope_still_reaches_the_function_with_a_fresh_id() {
    let stub = Arc::new(Stub::default());
    let (status, _, _) = call_with(&stub, "POST", "/OnResourceEvent", &[], "{not json").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the function decides, the contract never crashes"
    );
    let seen = stub.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].function, FunctionName::OnResourceEvent);
    assert_eq!(seen[0].trigger, Err("not_json".to_owned()));
    assert_eq!(seen[0].traceparent, None);
    assert_eq!(
        seen[0].invocation_id.len(),
        36,
        "a fresh UUID when the host sends none"
    );
}

#[tokio::test]
async fn unknown_function_is_a_json_404() {
    let (status, ctype, body) = call("POST", "/NoSuchFunction", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(ctype, "application/json");
    assert_eq!(body["error"]["code"], "FunctionNotFound");
    assert_eq!(
        body["error"]["message"],
        "no function named `NoSuchFunction`; this handler serves OnResourceEvent, VerifyAttachments"
    );
    let (status, _, body) = call("GET", "/a/b/c", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NotFound");
}

#[tokio::test]
async fn two_mebibyte_body_is_refused_with_413() {
    let stub = Arc::new(Stub::default());
    let big = format!(
        r#"{{"Data":{{"event":"{}"}}}}"#,
        "a".repeat(2 * 1024 * 1024)
    );
    let (status, ctype, body) = call_with(&stub, "POST", "/OnResourceEvent", &[], big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(ctype, "application/json");
    assert_eq!(
        body,
        json!({"error": {"code": "PayloadTooLarge", "message": format!("the invocation body exceeds {MAX_BODY_BYTES} bytes")}})
    );
    assert!(
        stub.seen.lock().unwrap().is_empty(),
        "the function is not invoked"
    );
}
