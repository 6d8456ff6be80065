//! Application Insights with local authentication off (issue 13): the handler's exporter authenticates with
//! the managed identity. Against an ingestion receiver that accepts only `/v2.1/track` with a bearer token the
//! emulator's identity endpoint issued for `https://monitor.azure.com` (and, where the test says so, only for the
//! identity holding Monitoring Metrics Publisher):
//! - the records arrive, each post carrying such a token, fetched once for all posts while it is valid;
//! - without a token nothing is sent, one line says so, it is counted, and the exporter sends once the identity
//!   answers again;
//! - the real binary takes the identity from `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (another identity
//!   than its ARM one), and when ingestion refuses (403) it logs once and keeps answering invocations;
//! - the instrumentation-key mode is unchanged (`/v2/track`, no token, no token request).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_autoattach::telemetry::{self, ProcessInfo, TelemetryConfig, TelemetryGuard};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::token::decode_unverified;
use azure_emulator::{Emulator, EmulatorConfig};
use receivers::{TelemetryReceiver, monitor_token_check};

const IKEY: &str = "00000000-0000-4000-8000-0000000000ee";
const MONITOR_SCOPE: &str = "https://monitor.azure.com//.default";

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// The emulator's App Service credential, counting the scopes it is asked for.
#[derive(Debug)]
struct CountingCredential {
    inner: AppServiceCredential,
    scopes: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl TokenCredential for CountingCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.scopes.lock().unwrap().push(scopes.join(" "));
        self.inner.get_token(scopes, options).await
    }
}

fn config(pairs: &[(&str, String)]) -> TelemetryConfig {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    TelemetryConfig::from_env(&|k: &str| map.get(k).cloned()).unwrap()
}

fn entra_config(receiver: &TelemetryReceiver, client_id: &str) -> TelemetryConfig {
    config(&[
        (
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!(
                "InstrumentationKey={IKEY};IngestionEndpoint={}/",
                receiver.url()
            ),
        ),
        (
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            format!("ClientId={client_id};Authorization=AAD"),
        ),
    ])
}

fn info() -> ProcessInfo {
    ProcessInfo::from_env(&|k| (k == "WEBSITE_SITE_NAME").then(|| "func-entra".to_owned()))
}

/// A span, a verification record and a metric point, marked so a test can find them.
fn emit(guard: &TelemetryGuard, marker: &str) {
    let span = tracing::info_span!("entra-export", marker);
    let _entered = span.enter();
    tracing::info!(
        target: "acr_autoattach::telemetry::records",
        marker,
        "AttachmentVerification"
    );
    guard.metrics().record_azure_request(
        "GET resources",
        Some(200),
        false,
        Duration::from_millis(3),
    );
}

fn messages(receiver: &TelemetryReceiver) -> Vec<String> {
    receiver
        .envelopes()
        .iter()
        .filter(|e| e["data"]["baseType"] == "MessageData")
        .map(|e| e["data"]["baseData"]["properties"]["marker"].to_string())
        .collect()
}

async fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..300 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn bearer(r: &receivers::Received) -> Option<String> {
    r.header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

// Multi-threaded: the exporter threads fetch tokens from the emulator while the test thread waits on a flush.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_an_entra_only_receiver_with_one_monitor_token() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let control = emulator.control();
    let handler = control.handler_principal_id();
    let receiver = TelemetryReceiver::start_entra(monitor_token_check(
        control.clone(),
        Arc::new(Mutex::new(vec![handler.clone()])),
    ));
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let credential = CountingCredential {
        inner: AppServiceCredential::from_env_pairs(&emulator.env()).unwrap(),
        scopes: scopes.clone(),
    };
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) = telemetry::init_scoped_with_credential(
        &entra_config(&receiver, &control.handler_client_id()),
        &info(),
        move || writer.clone(),
        Some(Arc::new(credential)),
    )
    .unwrap();

    emit(&guard, "first");
    assert!(guard.flush_async().await.completed);
    emit(&guard, "second");
    assert!(guard.flush_async().await.completed);

    let posts = receiver.requests();
    assert!(
        posts.len() >= 4,
        "traces, logs and metrics, twice: {}",
        posts.len()
    );
    let mut tokens = Vec::new();
    for post in &posts {
        assert_eq!(post.path, "/v2.1/track", "the Entra ingestion path");
        assert_eq!(post.status, 200, "accepted");
        let token = bearer(post).expect("a bearer token on every post");
        let claims = decode_unverified(&token).unwrap();
        assert!(
            azure_emulator::token::is_monitor_audience(&claims.aud),
            "{}",
            claims.aud
        );
        assert_eq!(claims.oid, handler);
        tokens.push(token);
    }
    // One token for every post: fetched once for the monitor audience while valid.
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
    assert_eq!(*scopes.lock().unwrap(), vec![MONITOR_SCOPE.to_owned()]);
    // The envelopes still name the resource by its key; the records and the metric arrived.
    let envelopes = receiver.envelopes();
    assert!(envelopes.iter().all(|e| e["iKey"] == IKEY));
    let markers = messages(&receiver);
    assert!(
        markers.contains(&"\"first\"".to_owned()) && markers.contains(&"\"second\"".to_owned()),
        "{markers:?}"
    );
    assert!(
        envelopes
            .iter()
            .any(|e| e["data"]["baseData"]["metrics"][0]["name"] == "autoattach.azure.requests"),
        "{envelopes:?}"
    );
    assert_eq!(guard.export_stats().auth_failures, 0);
    let text = logs.text();
    assert!(!text.contains(&tokens[0]), "the token is never logged");
    assert!(!text.contains("Entra"), "{text}");
    assert!(guard.shutdown().completed);
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_nothing_is_sent_one_line_says_so_and_the_exporter_recovers() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let control = emulator.control();
    let receiver = TelemetryReceiver::start_entra(monitor_token_check(
        control.clone(),
        Arc::new(Mutex::new(Vec::new())),
    ));
    let credential = AppServiceCredential::from_env_pairs(&emulator.env()).unwrap();
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let (guard, _default) = telemetry::init_scoped_with_credential(
        &entra_config(&receiver, &control.handler_client_id()),
        &info(),
        move || writer.clone(),
        Some(Arc::new(credential)),
    )
    .unwrap();
    // The identity endpoint fails every request.
    control.update_faults(|f| f.token_failure_rate = 1.0);
    emit(&guard, "during-outage");
    // The flush is bounded; the invocation it belongs to would answer all the same.
    let started = std::time::Instant::now();
    let _ = guard.flush_async().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    emit(&guard, "still-out");
    let _ = guard.flush_async().await;
    assert!(
        receiver.requests().is_empty(),
        "nothing is sent without a token"
    );
    assert!(guard.export_stats().auth_failures >= 1);
    let warned = |text: &str| text.matches("gave no Microsoft Entra token").count();
    assert_eq!(warned(&logs.text()), 1, "{}", logs.text());
    let identity_header = emulator
        .env()
        .into_iter()
        .find(|(k, _)| k == "IDENTITY_HEADER")
        .unwrap()
        .1;
    assert!(
        !logs.text().contains(&identity_header),
        "no identity header"
    );

    // The identity answers again: the exporter sends (the held batches, retried, and new ones).
    control.update_faults(|f| f.token_failure_rate = 0.0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    emit(&guard, "after-outage");
    let _ = guard.flush_async().await;
    eventually("records after the outage", || {
        messages(&receiver).contains(&"\"after-outage\"".to_owned())
    })
    .await;
    assert!(
        receiver
            .requests()
            .iter()
            .all(|r| r.status == 200 && bearer(r).is_some())
    );
    assert_eq!(warned(&logs.text()), 1, "still one line: {}", logs.text());
    let _ = guard.shutdown();
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entra_receiver_refuses_what_ingestion_refuses() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let control = emulator.control();
    let handler = control.handler_principal_id();
    let receiver = TelemetryReceiver::start_entra(monitor_token_check(
        control.clone(),
        Arc::new(Mutex::new(vec![handler.clone()])),
    ));
    let http = reqwest::Client::new();
    let post = |path: &'static str, token: Option<String>| {
        let mut request = http
            .post(format!("{}{path}", receiver.url()))
            .header("content-type", "application/json")
            .body("[]");
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let monitor = |oid: &str| {
        control
            .token_for(oid, "https://monitor.azure.com/")
            .unwrap()
    };
    // The instrumentation-key API, as the exporter posts it unauthenticated: refused on an Entra-only resource.
    assert_eq!(post("/v2/track", None).await, 400);
    assert_eq!(post("/v2.1/track", None).await, 401);
    assert_eq!(
        post("/v2.1/track", Some(control.arm_token(&handler).unwrap())).await,
        401,
        "wrong audience"
    );
    assert_eq!(
        post("/v2.1/track", Some(format!("{}x", monitor(&handler)))).await,
        401,
        "not signed by the emulator"
    );
    let other = control.create_service_principal("not-a-publisher");
    assert_eq!(
        post("/v2.1/track", Some(monitor(&other.object_id))).await,
        403
    );
    assert_eq!(post("/v2.1/track", Some(monitor(&handler))).await, 200);
    emulator.shutdown().await;
}

#[test]
fn the_instrumentation_key_mode_is_unchanged() {
    let receiver = TelemetryReceiver::start();
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let credential = CountingCredential {
        inner: AppServiceCredential::new("http://127.0.0.1:9/msi/token", "unused", None),
        scopes: scopes.clone(),
    };
    let (guard, _default) = telemetry::init_scoped_with_credential(
        &config(&[(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!(
                "InstrumentationKey={IKEY};IngestionEndpoint={}/",
                receiver.url()
            ),
        )]),
        &info(),
        std::io::sink,
        Some(Arc::new(credential)),
    )
    .unwrap();
    emit(&guard, "ikey");
    assert!(guard.shutdown().completed);
    let posts = receiver.requests();
    assert!(!posts.is_empty());
    assert!(
        posts
            .iter()
            .all(|r| r.path == "/v2/track" && r.header("authorization").is_none())
    );
    assert!(messages(&receiver).contains(&"\"ikey\"".to_owned()));
    assert!(scopes.lock().unwrap().is_empty(), "no token is requested");
}

fn timer_body() -> serde_json::Value {
    serde_json::json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": "VerifyAttachments", "UtcNow": "2026-12-01T06:30:00Z"}}
    })
}

/// The real binary, as deployed: the App Insights connection string and `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`
/// naming a user-assigned identity other than the one the handler uses for ARM (`AZURE_CLIENT_ID`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_uses_the_identity_of_the_authentication_string_and_survives_refusals() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let control = emulator.control();
    let sub = control.subscriptions()[0].clone();
    let publisher = control.create_user_assigned_identity(&sub, "rg-telemetry", "id-publisher");
    let publishers = Arc::new(Mutex::new(vec![publisher.object_id.clone()]));
    let receiver =
        TelemetryReceiver::start_entra(monitor_token_check(control.clone(), publishers.clone()));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_acr-autoattach"))
        .arg("serve")
        .env_clear()
        .envs(emulator.env())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS", "8000")
        .env(
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            format!(
                "InstrumentationKey={IKEY};IngestionEndpoint={}/",
                receiver.url()
            ),
        )
        .env(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            format!("ClientId={};Authorization=AAD", publisher.app_id),
        )
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stdout.take().unwrap();
    let sink = stdout.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let invoke = || {
        let request = http
            .post(format!("{base}/VerifyAttachments"))
            .json(&timer_body());
        async move { request.send().await.map(|r| r.status().as_u16()) }
    };
    eventually("the handler listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;

    assert_eq!(invoke().await.unwrap(), 200);
    eventually("accepted posts", || !receiver.envelopes().is_empty()).await;
    let accepted: Vec<_> = receiver
        .requests()
        .into_iter()
        .filter(|r| r.status == 200)
        .collect();
    for post in &accepted {
        assert_eq!(post.path, "/v2.1/track");
        let claims = decode_unverified(&bearer(post).unwrap()).unwrap();
        assert_eq!(
            claims.oid, publisher.object_id,
            "the identity of the authentication string"
        );
        assert_ne!(claims.oid, control.handler_principal_id());
    }
    assert!(
        receiver
            .envelopes()
            .iter()
            .any(|e| e["data"]["baseType"] == "RequestData"),
        "the invocation arrived as a request"
    );

    // The identity loses Monitoring Metrics Publisher: ingestion answers 403. The handler logs it once and keeps
    // answering.
    publishers.lock().unwrap().clear();
    publishers.lock().unwrap().push("someone-else".to_owned());
    for _ in 0..3 {
        assert_eq!(invoke().await.unwrap(), 200);
    }
    eventually("a refused post", || {
        receiver.requests().iter().any(|r| r.status == 403)
    })
    .await;
    let refusals = |s: &str| s.matches("Application Insights refused").count();
    eventually("the refusal line", || {
        refusals(&stdout.lock().unwrap()) >= 1
    })
    .await;
    assert_eq!(invoke().await.unwrap(), 200, "still serving");
    let text = stdout.lock().unwrap().clone();
    assert_eq!(refusals(&text), 1, "{text}");
    assert!(text.contains("Monitoring Metrics Publisher"), "{text}");
    for post in receiver.requests() {
        if let Some(token) = bearer(&post) {
            assert!(!text.contains(&token), "the token is never logged");
        }
    }
    assert!(!text.contains(IKEY), "the key is never logged");
    let _ = child.kill().await;
    emulator.shutdown().await;
}
