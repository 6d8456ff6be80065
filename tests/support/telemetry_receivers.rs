//! In-process receivers on 127.0.0.1:0 for telemetry and alerting tests: an OTLP/HTTP collector (decodes
//! real OTLP protobuf and JSON), an Application Insights ingestion endpoint (`/v2/track`, gzip JSON
//! envelopes; or, with local authentication off, `/v2.1/track` with a Microsoft Entra bearer token) and a fake
//! of Alertmanager's v2 alerts API. Each runs on its own thread and runtime, so test
//! bodies may stay synchronous (a scoped tracing subscriber is thread-local), and stops when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

/// One request as received: path, headers, body after content decoding, and the status it was answered with.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
}

/// How an ingestion endpoint with local authentication off judges a bearer token: `Ok` accepts the post,
/// `Err((status, message))` refuses it (401: not a valid token for the audience; 403: a valid token of an
/// identity without Monitoring Metrics Publisher).
pub type TokenCheck = Arc<dyn Fn(&str) -> Result<(), (u16, String)> + Send + Sync>;

/// The check Application Insights makes, against tokens of `emulator`'s identity endpoint: signed by it and
/// unexpired, audience `https://monitor.azure.com`, and (when `publishers` holds any) issued to one of the
/// object ids in `publishers`, the identities holding Monitoring Metrics Publisher. `publishers` may change
/// while the receiver runs.
pub fn monitor_token_check(
    emulator: azure_emulator::EmulatorControl,
    publishers: Arc<Mutex<Vec<String>>>,
) -> TokenCheck {
    Arc::new(move |token: &str| {
        let claims = emulator
            .verify_token(token)
            .map_err(|e| (401, format!("Authorization required: {e}")))?;
        if !azure_emulator::token::is_monitor_audience(&claims.aud) {
            return Err((
                401,
                format!("Authorization required: wrong audience {}", claims.aud),
            ));
        }
        let allowed = publishers.lock().unwrap();
        if !allowed.is_empty() && !allowed.contains(&claims.oid) {
            return Err((
                403,
                "provided credentials do not grant the access to ingest the telemetry into the component"
                    .to_owned(),
            ));
        }
        Ok(())
    })
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_json(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    }
}

/// A server on its own thread; dropping it stops the server and joins the thread.
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(app: Router) -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Per path: (requests, bytes on the wire, bytes after content decoding).
pub type Volume = (u64, u64, u64);

/// What the receiver keeps: every request, or (for volume measurements) only byte counts per path.
#[derive(Clone, Default)]
struct Store {
    requests: Arc<Mutex<Vec<Received>>>,
    count_only: bool,
    /// path → (requests, bytes on the wire, bytes after content decoding)
    volume: Arc<Mutex<BTreeMap<String, Volume>>>,
    /// Local authentication off: only `/v2.1/track` with a token this check accepts.
    entra: Option<TokenCheck>,
}

/// The status and message an ingestion endpoint answers a post to `path` with.
fn ingestion_verdict(store: &Store, path: &str, headers: &HeaderMap) -> (u16, String) {
    let Some(check) = &store.entra else {
        return (200, String::new());
    };
    if path.ends_with("/v2/track") {
        return (400, "Authentication not supported".to_owned());
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        None => (
            401,
            "Authorization required: please provide the valid authorization token".to_owned(),
        ),
        Some(token) => match check(token) {
            Ok(()) => (200, String::new()),
            Err((status, message)) => (status, message),
        },
    }
}

fn is_track(path: &str) -> bool {
    path.ends_with("/v2/track") || path.ends_with("/v2.1/track")
}

/// Answers OTLP/HTTP (`/v1/traces|metrics|logs`) and Application Insights (`/v2/track`) alike.
pub struct TelemetryReceiver {
    server: Server,
    store: Store,
}

async fn record(
    State(store): State<Store>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let wire = body.len() as u64;
    let gz = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let body = if gz {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let path = uri.path().to_owned();
    let (status, message) = if is_track(&path) {
        ingestion_verdict(&store, &path, &headers)
    } else {
        (200, String::new())
    };
    let received = Received {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        status,
    };
    let json = received.is_json();
    let items = if is_track(&path) {
        serde_json::from_slice::<Vec<serde_json::Value>>(&received.body).map_or(0, |v| v.len())
    } else {
        0
    };
    {
        let mut volume = store.volume.lock().unwrap();
        let v = volume.entry(path.clone()).or_default();
        v.0 += 1;
        v.1 += wire;
        v.2 += received.body.len() as u64;
    }
    if !store.count_only {
        store.requests.lock().unwrap().push(received);
    }
    if is_track(&path) {
        let body = if status == 200 {
            format!(r#"{{"itemsReceived":{items},"itemsAccepted":{items},"errors":[]}}"#)
        } else {
            serde_json::json!({
                "itemsReceived": items,
                "itemsAccepted": 0,
                "errors": [{"index": 0, "statusCode": status, "message": message}],
            })
            .to_string()
        };
        (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body.into_bytes(),
        )
    } else if json {
        (
            StatusCode::OK,
            [("content-type", "application/json")],
            b"{}".to_vec(),
        )
    } else {
        // An empty Export*ServiceResponse encodes to zero bytes.
        (
            StatusCode::OK,
            [("content-type", "application/x-protobuf")],
            Vec::new(),
        )
    }
}

impl TelemetryReceiver {
    pub fn start() -> Self {
        Self::start_with(Store::default())
    }

    /// An Application Insights ingestion endpoint with local authentication off: `/v2/track` answers 400,
    /// `/v2.1/track` 401 without a bearer token and whatever `check` says with one.
    pub fn start_entra(check: TokenCheck) -> Self {
        Self::start_with(Store {
            entra: Some(check),
            ..Store::default()
        })
    }

    /// A receiver that keeps only byte counts (for volume measurements of large runs).
    pub fn start_counting() -> Self {
        Self::start_with(Store {
            count_only: true,
            ..Store::default()
        })
    }

    /// path → (requests, bytes on the wire, bytes after content decoding).
    pub fn volume(&self) -> BTreeMap<String, Volume> {
        self.store.volume.lock().unwrap().clone()
    }

    fn start_with(store: Store) -> Self {
        let app = Router::new()
            .fallback(any(record))
            .with_state(store.clone());
        Self {
            server: Server::start(app),
            store,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.store.requests.lock().unwrap().clone()
    }

    fn bodies(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.bodies("/v1/traces")
            .iter()
            .map(|r| {
                if r.is_json() {
                    serde_json::from_slice(&r.body).expect("OTLP/JSON traces decode")
                } else {
                    ExportTraceServiceRequest::decode(&r.body[..])
                        .expect("OTLP protobuf traces decode")
                }
            })
            .collect()
    }

    pub fn metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.bodies("/v1/metrics")
            .iter()
            .map(|r| {
                if r.is_json() {
                    serde_json::from_slice(&r.body).expect("OTLP/JSON metrics decode")
                } else {
                    ExportMetricsServiceRequest::decode(&r.body[..])
                        .expect("OTLP protobuf metrics decode")
                }
            })
            .collect()
    }

    pub fn logs(&self) -> Vec<ExportLogsServiceRequest> {
        self.bodies("/v1/logs")
            .iter()
            .map(|r| {
                if r.is_json() {
                    serde_json::from_slice(&r.body).expect("OTLP/JSON logs decode")
                } else {
                    ExportLogsServiceRequest::decode(&r.body[..])
                        .expect("OTLP protobuf logs decode")
                }
            })
            .collect()
    }

    /// Every Application Insights envelope accepted (on `/v2/track`, or `/v2.1/track` with local authentication
    /// off).
    pub fn envelopes(&self) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| is_track(&r.path) && r.status == 200)
            .collect::<Vec<_>>()
            .iter()
            .flat_map(|r| {
                serde_json::from_slice::<Vec<serde_json::Value>>(&r.body).expect("envelopes decode")
            })
            .collect()
    }

    /// Every byte received (decoded bodies and header values), for leak checks.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.requests() {
            out.extend_from_slice(r.path.as_bytes());
            for (k, v) in &r.headers {
                out.extend_from_slice(k.as_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            out.extend_from_slice(&r.body);
        }
        out
    }
}

/// A fake of Alertmanager's v2 alerts API, keeping Alertmanager's semantics that matter here: alerts are
/// identified by their label set; a POST updates `annotations`/`endsAt` of the alert with the same labels;
/// an alert without `endsAt` ends after `resolve_timeout`; `GET /api/v2/alerts` lists only alerts not yet
/// ended, filtered by `filter=label="value"` matchers.
pub struct FakeAlertmanager {
    server: Server,
    state: AmState,
}

#[derive(Clone, Default)]
struct AmState {
    alerts: Arc<Mutex<BTreeMap<BTreeMap<String, String>, serde_json::Value>>>,
    posts: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    fail_with: Arc<Mutex<Option<u16>>>,
}

fn parse_time(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time")
}

async fn am_post(State(st): State<AmState>, uri: Uri, body: Bytes) -> impl IntoResponse {
    if let Some(code) = *st.fail_with.lock().unwrap() {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    st.posts
        .lock()
        .unwrap()
        .push((uri.to_string(), value.clone()));
    let Some(list) = value.as_array() else {
        return (StatusCode::BAD_REQUEST, "expected an array of alerts").into_response();
    };
    let now = time::OffsetDateTime::now_utc();
    for a in list {
        let Some(labels) = a.get("labels").and_then(|l| l.as_object()) else {
            return (StatusCode::BAD_REQUEST, "alert without labels").into_response();
        };
        let labels: BTreeMap<String, String> = labels
            .iter()
            .filter_map(|(k, v)| {
                v.as_str()
                    .filter(|v| !v.is_empty())
                    .map(|v| (k.clone(), v.to_owned()))
            })
            .collect();
        if labels.is_empty() {
            return (StatusCode::BAD_REQUEST, "at least one label pair required").into_response();
        }
        let starts = a
            .get("startsAt")
            .and_then(|v| v.as_str())
            .map_or(now, parse_time);
        let ends = a
            .get("endsAt")
            .and_then(|v| v.as_str())
            .map_or(now + time::Duration::minutes(5), parse_time);
        if ends < starts {
            return (
                StatusCode::BAD_REQUEST,
                "start time must be before end time",
            )
                .into_response();
        }
        let fmt = |t: time::OffsetDateTime| {
            t.format(&time::format_description::well_known::Rfc3339)
                .unwrap()
        };
        let stored = serde_json::json!({
            "labels": labels,
            "annotations": a.get("annotations").cloned().unwrap_or_else(|| serde_json::json!({})),
            "startsAt": fmt(starts),
            "endsAt": fmt(ends),
            "updatedAt": fmt(now),
            "fingerprint": format!("{:016x}", labels.len()),
            "receivers": [{"name": "default"}],
            "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
        });
        let mut alerts = st.alerts.lock().unwrap();
        // Alertmanager keeps the earlier start of an alert that is still active.
        let merged = match alerts.get(&labels) {
            Some(old) if parse_time(old["endsAt"].as_str().unwrap()) > now => {
                let mut m = stored.clone();
                let old_start = parse_time(old["startsAt"].as_str().unwrap());
                if old_start < starts {
                    m["startsAt"] = old["startsAt"].clone();
                }
                m
            }
            _ => stored,
        };
        alerts.insert(labels, merged);
    }
    StatusCode::OK.into_response()
}

async fn am_get(
    State(st): State<AmState>,
    Query(q): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    if let Some(code) = *st.fail_with.lock().unwrap() {
        return StatusCode::from_u16(code).unwrap().into_response();
    }
    let matchers: Vec<(String, String)> = q
        .iter()
        .filter(|(k, _)| k == "filter")
        .map(|(_, v)| {
            let (k, v) = v.split_once('=').expect("matcher k=\"v\"");
            (k.to_owned(), v.trim_matches('"').to_owned())
        })
        .collect();
    let now = time::OffsetDateTime::now_utc();
    let list: Vec<serde_json::Value> = st
        .alerts
        .lock()
        .unwrap()
        .iter()
        .filter(|(labels, a)| {
            parse_time(a["endsAt"].as_str().unwrap()) > now
                && matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .map(|(_, a)| a.clone())
        .collect();
    axum::Json(list).into_response()
}

impl FakeAlertmanager {
    pub fn start() -> Self {
        let state = AmState::default();
        let app = Router::new()
            .route("/api/v2/alerts", get(am_get).post(am_post))
            .with_state(state.clone());
        Self {
            server: Server::start(app),
            state,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// Every alert not yet ended, as `GET /api/v2/alerts` would list them.
    pub fn active(&self) -> Vec<serde_json::Value> {
        let now = time::OffsetDateTime::now_utc();
        self.state
            .alerts
            .lock()
            .unwrap()
            .values()
            .filter(|a| parse_time(a["endsAt"].as_str().unwrap()) > now)
            .cloned()
            .collect()
    }

    /// Every alert ever received, ended or not.
    pub fn all(&self) -> Vec<serde_json::Value> {
        self.state
            .alerts
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    /// Each POST: the request URI (path and query) and its JSON body.
    pub fn posts(&self) -> Vec<(String, serde_json::Value)> {
        self.state.posts.lock().unwrap().clone()
    }

    /// From now on answer every request with `code`.
    pub fn fail_with(&self, code: Option<u16>) {
        *self.state.fail_with.lock().unwrap() = code;
    }
}
