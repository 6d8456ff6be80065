//! The Azure Functions custom-handler contract (see `docs/functions-host.md` of the shared material): the
//! readiness probe, one `POST /{FunctionName}` per invocation with the `{"Data","Metadata"}` envelope, and the
//! `{"Outputs","Logs","ReturnValue"}` answer.
//!
//! The host treats any non-2xx as a failed invocation (Event Grid then redelivers), and a 2xx with an empty
//! body makes it wait until `functionTimeout`, so every 2xx here carries a JSON object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The functions this handler serves (folder names under `function-app/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FunctionName {
    OnResourceEvent,
    VerifyAttachments,
}

impl FunctionName {
    pub const ALL: [Self; 2] = [Self::OnResourceEvent, Self::VerifyAttachments];

    /// Function names are matched case-insensitively, as the host matches them.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnResourceEvent => "OnResourceEvent",
            Self::VerifyAttachments => "VerifyAttachments",
        }
    }

    /// The trigger binding's name in `function.json`.
    pub fn binding(self) -> &'static str {
        match self {
            Self::OnResourceEvent => "event",
            Self::VerifyAttachments => "timer",
        }
    }
}

/// What the contract calls for each invocation. The functions implement it; contract tests use a stub.
pub trait Functions: Send + Sync + 'static {
    /// Answers one invocation: `Ok` becomes 200 with the answer, `Err` a 500 so the platform retries.
    fn invoke(
        &self,
        invocation: Invocation,
    ) -> impl std::future::Future<Output = Result<InvocationAnswer, InvocationFailure>> + Send;
}

/// The largest invocation body accepted. Event Grid caps one event at 1 MB and the host sends one event per
/// invocation, so anything larger is not a real invocation.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `{"Data": {binding: value}, "Metadata": {...}}` as the host sends it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InvocationRequest {
    #[serde(rename = "Data", alias = "data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: InvocationMetadata,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InvocationMetadata {
    #[serde(default)]
    pub sys: Option<SysMetadata>,
    #[serde(rename = "RetryContext", default)]
    pub retry_context: Option<RetryContext>,
    /// For Event Grid: the event's `data` again.
    #[serde(default)]
    pub data: Option<Value>,
    /// Trigger metadata the handler does not use by name.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SysMetadata {
    #[serde(rename = "MethodName", default)]
    pub method_name: Option<String>,
    #[serde(rename = "UtcNow", default)]
    pub utc_now: Option<String>,
    #[serde(rename = "RandGuid", default)]
    pub rand_guid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RetryContext {
    #[serde(rename = "MaxRetryCount", default)]
    pub max_retry_count: i64,
    #[serde(rename = "RetryCount", default)]
    pub retry_count: i64,
    #[serde(rename = "Exception", default)]
    pub exception: Option<Value>,
}

/// Why a trigger value could not be read from the envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not an invocation envelope {{\"Data\",\"Metadata\"}}: {0}")]
    NotAnEnvelope(String),
    #[error("Data has no `{0}` binding")]
    MissingBinding(String),
    #[error("binding `{binding}` holds a string that is not JSON: {reason}")]
    StringNotJson { binding: String, reason: String },
}

impl EnvelopeError {
    /// Stable label for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "not_json",
            Self::NotAnEnvelope(_) => "not_an_envelope",
            Self::MissingBinding(_) => "missing_binding",
            Self::StringNotJson { .. } => "binding_string_not_json",
        }
    }
}

impl InvocationRequest {
    /// Parses a request body. A body that is JSON but not an object with an object `Data` is not an envelope.
    pub fn from_body(body: &[u8]) -> Result<Self, EnvelopeError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        if !value.is_object() {
            return Err(EnvelopeError::NotAnEnvelope(format!(
                "expected an object, found {}",
                kind(&value)
            )));
        }
        serde_json::from_value(value).map_err(|e| EnvelopeError::NotAnEnvelope(e.to_string()))
    }

    /// The raw value of `binding` (matched case-insensitively), for parsers that decode strings themselves.
    pub fn trigger_raw(&self, binding: &str) -> Result<&Value, EnvelopeError> {
        self.data
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(binding))
            .map(|(_, v)| v)
            .ok_or_else(|| EnvelopeError::MissingBinding(binding.to_owned()))
    }

    /// The trigger value of `binding` (matched case-insensitively, as the host matches names). A plain string
    /// arrives JSON-encoded a second time, so a string holding JSON is decoded; an object is taken as it is.
    pub fn trigger_value(&self, binding: &str) -> Result<Value, EnvelopeError> {
        match self.trigger_raw(binding)? {
            Value::String(s) => serde_json::from_str(s).map_err(|e| EnvelopeError::StringNotJson {
                binding: binding.to_owned(),
                reason: e.to_string(),
            }),
            other => Ok(other.clone()),
        }
    }
}

/// A host's `Metadata.sys.UtcNow` further back than this is a clock that disagrees with ours, not a queue:
/// the invocation's clock then starts at its arrival.
pub const MAX_TRUSTED_QUEUE: Duration = Duration::from_mins(5);

impl Invocation {
    /// When the host dispatched this invocation and how long ago (`now`): the host stamps
    /// `Metadata.sys.UtcNow` as it starts an invocation, before the request waits for a connection to the
    /// handler or in its accept queue, and Event Grid's 30 s run from about then (functions-host.md). The
    /// arrival (`arrival`, no time queued) when the stamp is absent, unreadable, in the future (a clock step)
    /// or older than [`MAX_TRUSTED_QUEUE`].
    pub fn dispatched(
        &self,
        arrival: tokio::time::Instant,
        now: time::OffsetDateTime,
    ) -> (tokio::time::Instant, Duration) {
        let queued = self
            .request
            .as_ref()
            .ok()
            .and_then(|r| r.metadata.sys.as_ref()?.utc_now.as_deref())
            .and_then(|text| {
                let rfc3339 = &time::format_description::well_known::Rfc3339;
                time::OffsetDateTime::parse(text.trim(), rfc3339).ok()
            })
            .and_then(|stamped| Duration::try_from(now - stamped).ok())
            .filter(|queued| *queued <= MAX_TRUSTED_QUEUE)
            .unwrap_or_default();
        match arrival.checked_sub(queued) {
            Some(at) => (at, queued),
            None => (arrival, Duration::ZERO),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One invocation as the handler sees it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: FunctionName,
    /// `X-Azure-Functions-InvocationId` (or a fresh id when a caller sends none).
    pub invocation_id: String,
    /// W3C `traceparent`, when the host sends one.
    pub traceparent: Option<String>,
    /// The parsed envelope, or why the body is not one (answered with a recorded rejection, never a crash).
    pub request: Result<InvocationRequest, EnvelopeError>,
}

/// A successful answer: `200 {"Outputs":{},"Logs":[...],"ReturnValue":...}`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct InvocationAnswer {
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    #[serde(rename = "ReturnValue")]
    pub return_value: Value,
}

/// An invocation that must fail so the platform retries (Event Grid redelivers; a timer waits for its next
/// occurrence). Answered with 500; the host discards the body, which still says why for anyone debugging.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationFailure {
    pub reason: String,
    pub logs: Vec<String>,
}

/// A `Logs` entry as the host may log it: every control character (newline, carriage return, escape, …)
/// and Unicode line separator is written as `\u{…}`, so nothing an event carries can end the host's log
/// line and forge another.
pub fn escape_log_line(line: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !line.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        if unsafe_char(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

fn escape_logs(logs: Vec<String>) -> Vec<String> {
    logs.into_iter()
        .map(|l| match escape_log_line(&l) {
            std::borrow::Cow::Borrowed(_) => l,
            std::borrow::Cow::Owned(escaped) => escaped,
        })
        .collect()
}

impl IntoResponse for InvocationAnswer {
    fn into_response(mut self) -> Response {
        self.logs = escape_logs(std::mem::take(&mut self.logs));
        json_response(
            StatusCode::OK,
            &serde_json::to_value(&self).unwrap_or_else(|_| json!({})),
        )
    }
}

impl IntoResponse for InvocationFailure {
    fn into_response(self) -> Response {
        json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"error": {"code": "InvocationFailed", "message": escape_log_line(&self.reason)}, "Logs": escape_logs(self.logs)}),
        )
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

/// The router: `GET /` for readiness, `POST /{function}` per invocation, JSON 404 for anything else.
pub fn app<F: Functions>(handler: Arc<F>) -> Router {
    app_with_slot(Arc::new(tokio::sync::SetOnce::new_with(Some(handler))))
}

/// Where invocations find the handler. The process answers the host's readiness probe before the handler
/// (telemetry exporters, TLS roots, credentials) is built; invocations that arrive earlier wait for it.
pub type HandlerSlot<F> = Arc<tokio::sync::SetOnce<Arc<F>>>;

/// [`app`] for a handler that is filled in later.
pub fn app_with_slot<F: Functions>(slot: HandlerSlot<F>) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/{function}", post(invoke::<F>))
        .fallback(not_found)
        .with_state(slot)
}

/// The host polls this every 25 ms until it answers; any answer means ready.
async fn ready() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ready"}))
}

async fn not_found() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such route; functions are POST /{FunctionName}",
    )
}

async fn invoke<F: Functions>(
    State(slot): State<HandlerSlot<F>>,
    Path(function): Path<String>,
    timeout: Option<axum::Extension<BodyReadTimeout>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body_timeout = timeout.map_or(ServeLimits::default().body_read_timeout, |t| t.0.0);
    let Some(function) = FunctionName::parse(&function) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "FunctionNotFound",
            &format!(
                "no function named `{}`; this handler serves {}",
                function.chars().take(128).collect::<String>(),
                FunctionName::ALL.map(FunctionName::as_str).join(", ")
            ),
        );
    };
    // Read the (possibly chunked) body with a hard cap, so an oversized body is refused without buffering it.
    let read = tokio::time::timeout(body_timeout, Limited::new(body, MAX_BODY_BYTES).collect());
    let Ok(read) = read.await else {
        tracing::warn!(
            function = function.as_str(),
            timeout_ms = body_timeout.as_millis() as u64,
            "invocation body not received in time"
        );
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "the invocation body did not arrive in time",
        );
    };
    let bytes: Bytes = match read {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            tracing::warn!(
                function = function.as_str(),
                limit = MAX_BODY_BYTES,
                "invocation body too large"
            );
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLarge",
                &format!("the invocation body exceeds {MAX_BODY_BYTES} bytes"),
            );
        }
        Err(e) => {
            tracing::warn!(function = function.as_str(), error = %e, "could not read the invocation body");
            return error_response(
                StatusCode::BAD_REQUEST,
                "BodyReadFailed",
                "the invocation body could not be read",
            );
        }
    };
    let invocation = Invocation {
        function,
        invocation_id: header_str(&headers, "x-azure-functions-invocationid")
            .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned),
        traceparent: header_str(&headers, "traceparent").map(str::to_owned),
        request: InvocationRequest::from_body(&bytes),
    };
    let started = Instant::now();
    let handler = Arc::clone(slot.wait().await);
    let outcome = handler.invoke(invocation).await;
    tracing::debug!(
        function = function.as_str(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "invocation done"
    );
    match outcome {
        Ok(answer) => answer.into_response(),
        Err(failure) => failure.into_response(),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// The server's edges: how long a peer may take to send a request, and how many connections may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A request's headers must arrive within this (a connection trickling bytes is closed).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this (answered 408 otherwise).
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    /// The host talks over loopback and sends at most 1 MB: 10 s for headers and 20 s for a body are far
    /// more than it needs and far less than a slow-loris peer wants; 512 connections are more than the host
    /// opens for a burst (invocations of one resource share one run) and stay under a 1,024 descriptor limit.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(20),
            max_connections: 512,
        }
    }
}

/// Connections the kernel may hold completed for the handler beyond the ones it serves (the kernel caps it at
/// `net.core.somaxconn`). The default of 128 (std, mio) is far below a burst's invocations: a connection that
/// finds the queue full is retried by the host's TCP stack after 1, 2, 4, 8, 16 s, unseen by the handler,
/// while Event Grid's 30 s run.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `127.0.0.1:port` (the host connects over IPv4 loopback only) with a [`LISTEN_BACKLOG`] queue.
pub fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `handler` on `listener` (see [`bind`]) until `shutdown` resolves;
/// in-flight invocations finish before it returns.
pub async fn serve<F: Functions>(
    listener: tokio::net::TcpListener,
    handler: Arc<F>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, app(handler), shutdown, ServeLimits::default()).await
}

/// [`serve`] with a handler that is filled in later (see [`HandlerSlot`]).
pub async fn serve_slot<F: Functions>(
    listener: tokio::net::TcpListener,
    slot: HandlerSlot<F>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(
        listener,
        app_with_slot(slot),
        shutdown,
        ServeLimits::default(),
    )
    .await
}

/// Serves `router` over HTTP/1.1 (what the host speaks) with the [`ServeLimits`]: headers must arrive within
/// their timeout, at most `max_connections` are open, and on `shutdown` no new connection is accepted while
/// every open one finishes its request.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    limits: ServeLimits,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt as _;

    let router = router.layer(axum::Extension(BodyReadTimeout(limits.body_read_timeout)));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Wait for a free slot before accepting: excess connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(
            router
                .clone()
                .map_request(|r: axum::http::Request<hyper::body::Incoming>| r.map(Body::new)),
        );
        // An idle keep-alive connection holds its slot until the peer reuses or closes it, while new
        // connections wait in the backlog (a burst's invocations then wait there unseen): when fewer than a
        // quarter of the slots are free, a connection serves one request and closes.
        let keep_alive = slots.available_permits() >= limits.max_connections / 4;
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(keep_alive)
            .serve_connection(TokioIo::new(stream), service);
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = watched.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The body read timeout, handed to the invocation route.
#[derive(Debug, Clone, Copy)]
struct BodyReadTimeout(Duration);

/// Resolves on SIGTERM (what the host and the platform send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight invocations");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trigger_value_accepts_object_and_json_string() {
        let obj = InvocationRequest::from_body(br#"{"Data":{"event":{"id":"1"}},"Metadata":{}}"#)
            .unwrap();
        assert_eq!(obj.trigger_value("event").unwrap(), json!({"id":"1"}));
        let s =
            InvocationRequest::from_body(br#"{"Data":{"Event":"{\"id\":\"1\"}"},"Metadata":{}}"#)
                .unwrap();
        assert_eq!(s.trigger_value("event").unwrap(), json!({"id":"1"}));
        assert!(matches!(
            s.trigger_value("timer"),
            Err(EnvelopeError::MissingBinding(_))
        ));
        let bad = InvocationRequest::from_body(br#"{"Data":{"event":"{not json"}}"#).unwrap();
        assert!(matches!(
            bad.trigger_value("event"),
            Err(EnvelopeError::StringNotJson { .. })
        ));
    }

    #[test]
    fn envelope_errors() {
        assert!(matches!(
            InvocationRequest::from_body(b"{"),
            Err(EnvelopeError::NotJson(_))
        ));
        assert!(matches!(
            InvocationRequest::from_body(b"[1]"),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
        assert!(matches!(
            InvocationRequest::from_body(br#"{"Data":5}"#),
            Err(EnvelopeError::NotAnEnvelope(_))
        ));
    }

    #[test]
    fn metadata_reads_sys_and_retry_context() {
        let r = InvocationRequest::from_body(
            br#"{"Data":{},"Metadata":{"sys":{"MethodName":"VerifyAttachments","UtcNow":"2026-01-04T10:20:00.004Z","RandGuid":"x"},"RetryContext":{"MaxRetryCount":3,"RetryCount":1,"Exception":null},"data":{"a":1},"extra":2}}"#,
        )
        .unwrap();
        assert_eq!(
            r.metadata.sys.unwrap().method_name.as_deref(),
            Some("VerifyAttachments")
        );
        assert_eq!(r.metadata.retry_context.unwrap().retry_count, 1);
        assert_eq!(r.metadata.data, Some(json!({"a":1})));
        assert_eq!(r.metadata.other.get("extra"), Some(&json!(2)));
    }

    #[test]
    fn control_characters_never_reach_a_logs_line() {
        assert_eq!(escape_log_line("plain line"), "plain line");
        assert_eq!(
            escape_log_line("e1\n[Information] forged\r\u{1b}[31m\u{2028}x"),
            "e1\\u{a}[Information] forged\\u{d}\\u{1b}[31m\\u{2028}x"
        );
    }

    proptest::proptest! {
        #[test]
        fn escaped_lines_hold_no_control_character(line in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}\\u{2028}a]*") {
            let escaped = escape_log_line(&line);
            let clean = !escaped
                .chars()
                .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'));
            proptest::prop_assert!(clean, "{:?}", escaped);
        }
    }
}
