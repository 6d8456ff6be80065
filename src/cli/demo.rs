//! `acr-autoattach demo`: the whole mission on loopback in one command. The emulator, Event Grid and the
//! Functions host simulator start in this process; the host launches this same binary as its handler; an
//! estate is built through ARM PUTs as a person would; events flow by themselves; every pair is then read
//! back from ARM and compared with what the design says it must be.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use serde::Serialize;
use serde_json::Value;

use azure_emulator::admin::{AdminError, ClusterSpec, RegistrySpec};
use azure_emulator::eventgrid::PublisherConfig;
use azure_emulator::functions_host::InvocationRecord;

use crate::cli::testbed::{Testbed, TestbedError, TestbedOptions};
use crate::core::model::{PullRole, role_guid};

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    #[error("ARM: {0}")]
    Arm(#[from] AdminError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// What the design says a pair must end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    Attached(PullRole),
    /// The registry's selector leaves the cluster out.
    NotSelected,
    /// The cluster carries the opt-out tag.
    OptedOut,
    /// The registry has no opt-in tag.
    NotOptedIn,
}

impl Expected {
    fn describe(self) -> String {
        match self {
            Self::Attached(role) => format!("attach ({role})"),
            Self::NotSelected => "not selected".into(),
            Self::OptedOut => "cluster opted out".into(),
            Self::NotOptedIn => "registry not opted in".into(),
        }
    }
}

/// One (cluster, registry) pair after the run.
#[derive(Debug, Clone, Serialize)]
pub struct DemoPair {
    pub cluster: String,
    pub registry: String,
    pub expected: Expected,
    /// `attached` or `not_attached`, read back from ARM.
    pub status: &'static str,
    pub role: Option<String>,
    /// Seconds from the event's time to the verified attach, as the handler measured it.
    pub seconds_to_attach: Option<f64>,
    pub as_expected: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TelemetrySummary {
    pub spans: u64,
    pub invocation_spans: u64,
    pub metric_names: Vec<String>,
    pub log_records: u64,
    pub verification_records: u64,
    /// The user's OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, shown without user info or query) the
    /// demo forwarded every export to, when set.
    pub forwarded_to: Option<String>,
    /// Exports forwarded there, and those it refused or that could not reach it.
    pub forwarded_requests: u64,
    pub forward_failures: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoSummary {
    pub pairs: usize,
    pub attached: usize,
    pub as_expected: usize,
    pub azure_requests: u64,
    pub invocations: usize,
    pub failed_invocations_retried: usize,
    pub seconds: f64,
    pub telemetry: TelemetrySummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub pairs: Vec<DemoPair>,
    pub summary: DemoSummary,
}

impl DemoReport {
    pub fn all_as_expected(&self) -> bool {
        self.summary.as_expected == self.summary.pairs
    }
}

/// An OTLP/HTTP JSON receiver that counts what the handler exports.
#[derive(Default)]
struct Received {
    spans: u64,
    invocation_spans: u64,
    metric_names: std::collections::BTreeSet<String>,
    log_records: u64,
    verification_records: u64,
    forwarded_requests: u64,
    forward_failures: u64,
}

/// An OTLP/HTTP endpoint and the headers to send it.
type Endpoint = (String, Vec<(String, String)>);

/// The user's own OTLP/HTTP endpoints (from `OTEL_EXPORTER_OTLP_*` of the demo's environment), where the
/// receiver forwards every export it gets, so Jaeger or a Collector the user runs sees the demo too.
struct Forward {
    client: reqwest::Client,
    /// signal (`traces`, `metrics`, `logs`) → (endpoint, headers)
    signals: BTreeMap<&'static str, Endpoint>,
    /// The endpoint as shown to the user (no user info, no query).
    shown: String,
}

impl Forward {
    /// `None` when no OTLP endpoint is set. gRPC endpoints are left out (the receiver speaks OTLP/HTTP);
    /// the returned note says so.
    fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(Option<Self>, Option<String>), DemoError> {
        use crate::telemetry::{OtlpProtocol, Signal, TelemetryConfig, redact_url};
        let config = TelemetryConfig::from_env(env).map_err(|e| DemoError::Other(e.to_string()))?;
        let mut signals = BTreeMap::new();
        let mut grpc = Vec::new();
        let mut shown = None;
        for (signal, name) in [
            (Signal::Traces, "traces"),
            (Signal::Metrics, "metrics"),
            (Signal::Logs, "logs"),
        ] {
            let Some(c) = config.otlp.signal(signal) else {
                continue;
            };
            if c.protocol == OtlpProtocol::Grpc {
                grpc.push(name);
                continue;
            }
            shown.get_or_insert_with(|| redact_url(&c.endpoint));
            signals.insert(name, (c.endpoint.clone(), c.headers.clone()));
        }
        let note = (!grpc.is_empty()).then(|| {
            format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL is grpc for {}: the demo forwards over OTLP/HTTP only, set http/protobuf or http/json to see those signals",
                grpc.join(", ")
            )
        });
        let Some(shown) = shown else {
            return Ok((None, note));
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| DemoError::Other(format!("HTTP client for forwarding: {e}")))?;
        Ok((
            Some(Self {
                client,
                signals,
                shown,
            }),
            note,
        ))
    }
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Received>>,
    forward: Option<Arc<Forward>>,
}

/// Sends one export on to the user's endpoint (OTLP/HTTP JSON, as the handler sent it).
async fn forward_export(state: ReceiverState, signal: String, body: Bytes) {
    let Some(forward) = &state.forward else {
        return;
    };
    let Some((endpoint, headers)) = forward.signals.get(signal.as_str()) else {
        return;
    };
    let mut request = forward
        .client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let ok = request.send().await.is_ok_and(|r| r.status().is_success());
    let mut r = state
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if ok {
        r.forwarded_requests += 1;
    } else {
        r.forward_failures += 1;
    }
}

async fn otlp(
    State(state): State<ReceiverState>,
    Path(signal): Path<String>,
    body: Bytes,
) -> &'static str {
    if state.forward.is_some() {
        tokio::spawn(forward_export(state.clone(), signal.clone(), body.clone()));
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return "{}";
    };
    let mut r = state
        .received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let items = |v: &Value, outer: &str, inner: &str, leaf: &str| -> Vec<Value> {
        v[outer]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|o| o[inner].as_array().cloned().unwrap_or_default())
            .flat_map(|i| i[leaf].as_array().cloned().unwrap_or_default())
            .collect()
    };
    match signal.as_str() {
        "traces" => {
            for span in items(&value, "resourceSpans", "scopeSpans", "spans") {
                r.spans += 1;
                let name = span["name"].as_str().unwrap_or_default();
                // Invocation spans are named `faas.name` = `<app>/<function>`.
                if name.ends_with("/OnResourceEvent") || name.ends_with("/VerifyAttachments") {
                    r.invocation_spans += 1;
                }
            }
        }
        "metrics" => {
            for metric in items(&value, "resourceMetrics", "scopeMetrics", "metrics") {
                if let Some(name) = metric["name"].as_str() {
                    r.metric_names.insert(name.to_owned());
                }
            }
        }
        "logs" => {
            for record in items(&value, "resourceLogs", "scopeLogs", "logRecords") {
                r.log_records += 1;
                let named = record["eventName"].as_str() == Some("AttachmentVerification")
                    || record["body"]["stringValue"].as_str() == Some("AttachmentVerification");
                if named {
                    r.verification_records += 1;
                }
            }
        }
        _ => {}
    }
    "{}"
}

struct Receiver {
    url: String,
    received: Arc<Mutex<Received>>,
    forwarded_to: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    async fn start(forward: Option<Forward>) -> Result<Self, DemoError> {
        let received = Arc::new(Mutex::new(Received::default()));
        let forwarded_to = forward.as_ref().map(|f| f.shown.clone());
        let app = Router::new()
            .route("/v1/{signal}", post(otlp))
            .with_state(ReceiverState {
                received: Arc::clone(&received),
                forward: forward.map(Arc::new),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            url,
            received,
            forwarded_to,
            stop: Some(tx),
        })
    }

    fn summary(&self) -> TelemetrySummary {
        let r = self
            .received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        TelemetrySummary {
            spans: r.spans,
            invocation_spans: r.invocation_spans,
            metric_names: r.metric_names.iter().cloned().collect(),
            log_records: r.log_records,
            verification_records: r.verification_records,
            forwarded_to: self.forwarded_to.clone(),
            forwarded_requests: r.forwarded_requests,
            forward_failures: r.forward_failures,
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

struct ClusterPlan {
    spec: ClusterSpec,
    what: &'static str,
    opted_out: bool,
}

struct RegistryPlan {
    spec: RegistrySpec,
    what: &'static str,
    /// Which clusters (by name) the registry's tag selects; `None`: not opted in.
    selects: Option<fn(&str) -> bool>,
}

/// Each demo cluster's principal once it has provisioned: the kubelet identity ARM reports, or the service
/// principal's object id for the service-principal cluster.
async fn principals_when_ready(
    bed: &Testbed,
    clusters: &[ClusterPlan],
    sp_object_id: &str,
) -> Result<BTreeMap<String, String>, DemoError> {
    let mut principals = BTreeMap::new();
    for c in clusters {
        let body = bed
            .admin
            .wait_cluster_succeeded(&c.spec.id(), Duration::from_secs(30))
            .await?;
        let principal = if c.spec.service_principal_client_id.is_some() {
            sp_object_id.to_owned()
        } else {
            body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        principals.insert(c.spec.name.clone(), principal);
    }
    Ok(principals)
}

/// Runs the demo. `say` receives the progress lines.
pub async fn run(
    handler_command: Vec<String>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    // The user's own OTLP endpoint, if any: the demo's receiver forwards every export there as well.
    let (forward, note) = Forward::from_env(&|k: &str| std::env::var(k).ok())?;
    if let Some(f) = &forward {
        say(&format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set: the run's telemetry goes to {} as well as to the demo's own receiver",
            f.shown
        ));
    }
    if let Some(note) = note {
        say(&note);
    }
    let receiver = Receiver::start(forward).await?;
    let mut options = TestbedOptions::for_tests(handler_command);
    // A cluster takes 1.5 s to provision, so the first write event finds it `Creating`; Event Grid's retry
    // schedule runs 20× faster than in Azure.
    options.emulator.settings.cluster_provisioning_ms = 1_500;
    options.emulator.settings.principal_replication_ms = 10_000;
    options.publisher = PublisherConfig::scaled(0.05, Duration::from_secs(30));
    options = options
        .setting("AUTOATTACH_READY_TIMEOUT_SECS", "5")
        .setting("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.url)
        .setting("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .setting("OTEL_SERVICE_NAME", "acr-autoattach-demo");
    say(
        "starting the Azure emulator, Event Grid and the Functions host (handler: acr-autoattach serve)",
    );
    let bed = Testbed::start(options).await?;
    let control = bed.emulator.control();
    let subs = control.subscriptions();
    let (s1, s2) = match subs.as_slice() {
        [a, b, ..] => (a.clone(), b.clone()),
        _ => {
            return Err(DemoError::Other(
                "the emulator needs two subscriptions".into(),
            ));
        }
    };
    say(&format!(
        "ARM, Graph, Resource Graph and the identity endpoint on {}",
        bed.emulator.base_url()
    ));
    say(&format!(
        "subscriptions: {s1} (platform), {s2} (apps); one tenant"
    ));
    for (sub, rg) in [(&s1, "platform"), (&s1, "apps"), (&s2, "apps2")] {
        bed.admin.put_resource_group(sub, rg, "westeurope").await?;
    }

    let registries = demo_registries(&s1);
    for r in &registries {
        bed.admin.put_registry(&r.spec).await?;
        say(&format!("registry {:<11} {}", r.spec.name, r.what));
    }

    let sp = control.create_service_principal("aks-legacy-sp");
    let clusters = demo_clusters(&s1, &s2, &sp.app_id);
    let puts = clusters.iter().map(|c| bed.admin.put_cluster(&c.spec));
    for (c, put) in clusters.iter().zip(futures::future::join_all(puts).await) {
        put?;
        say(&format!(
            "cluster  {:<14} {} → Creating",
            c.spec.name, c.what
        ));
    }
    say(
        "events flow: Event Grid → Functions host → OnResourceEvent (clusters provision for 1.5 s)",
    );
    let principals = principals_when_ready(&bed, &clusters, &sp.object_id).await?;
    if !bed.wait_idle(Duration::from_secs(45)).await {
        say("warning: Event Grid still had deliveries in flight");
    }
    let invocations = bed.host.invocations();
    let failed = invocations.iter().filter(|i| !i.succeeded()).count();
    say(&format!(
        "{} invocations of OnResourceEvent; {failed} failed (a cluster still Creating past the readiness budget) and were redelivered by Event Grid",
        invocations.len()
    ));
    let timer = bed.run_timer().await?;
    if let Some(line) = timer.logs.first() {
        say(&format!("VerifyAttachments (timer, run now): {line}"));
    }

    let latency = reported_latencies(&invocations);

    let mut pairs = Vec::new();
    for r in &registries {
        let listed = bed.admin.list_role_assignments(&r.spec.id()).await?;
        for c in &clusters {
            let principal = principals.get(&c.spec.name).cloned().unwrap_or_default();
            let role = assigned_role(&listed, &r.spec.id(), &principal);
            let expected = expected_for(r, c);
            let as_expected = match expected {
                Expected::Attached(want) => role == Some(want),
                _ => role.is_none(),
            };
            pairs.push(DemoPair {
                cluster: c.spec.name.clone(),
                registry: r.spec.name.clone(),
                expected,
                status: if role.is_some() {
                    "attached"
                } else {
                    "not_attached"
                },
                role: role.map(|r| r.display_name().to_owned()),
                seconds_to_attach: latency
                    .get(&(
                        c.spec.id().to_ascii_lowercase(),
                        r.spec.id().to_ascii_lowercase(),
                    ))
                    .copied(),
                as_expected,
            });
        }
    }
    // The handler flushes telemetry before each answer; give the last export a moment to land.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let handler = control.handler_principal_id();
    let summary = DemoSummary {
        pairs: pairs.len(),
        attached: pairs.iter().filter(|p| p.status == "attached").count(),
        as_expected: pairs.iter().filter(|p| p.as_expected).count(),
        azure_requests: bed.stats().for_caller(&handler).total(),
        invocations: bed.host.invocations().len(),
        failed_invocations_retried: failed,
        seconds: started.elapsed().as_secs_f64(),
        telemetry: receiver.summary(),
    };
    bed.shutdown().await;
    Ok(DemoReport { pairs, summary })
}

/// The demo's registries: one for every cluster, one ABAC registry with a selector, one not opted in.
fn demo_registries(s1: &str) -> Vec<RegistryPlan> {
    vec![
        RegistryPlan {
            spec: RegistrySpec::new(s1, "platform", "acrshared").tag("acr-autoattach", "*"),
            what: "every cluster (`*`)",
            selects: Some(|_| true),
        },
        RegistryPlan {
            spec: RegistrySpec::new(s1, "platform", "acrprod")
                .tag("acr-autoattach", "env in (prod,staging)")
                .abac(),
            what: "ABAC mode, `env in (prod,staging)`",
            selects: Some(|c| c.contains("prod") || c.contains("staging") || c == "aks-optout"),
        },
        RegistryPlan {
            spec: RegistrySpec::new(s1, "platform", "acrsandbox"),
            what: "no opt-in tag",
            selects: None,
        },
    ]
}

/// The demo's clusters across two subscriptions, one opted out and one with a service principal.
fn demo_clusters(s1: &str, s2: &str, sp_app_id: &str) -> Vec<ClusterPlan> {
    vec![
        ClusterPlan {
            spec: ClusterSpec::new(s1, "apps", "aks-prod-weu").tag("env", "prod"),
            what: "env=prod",
            opted_out: false,
        },
        ClusterPlan {
            spec: ClusterSpec::new(s2, "apps2", "aks-prod-neu")
                .tag("env", "prod")
                .location("northeurope"),
            what: "env=prod, other subscription than the registries",
            opted_out: false,
        },
        ClusterPlan {
            spec: ClusterSpec::new(s1, "apps", "aks-staging").tag("env", "staging"),
            what: "env=staging",
            opted_out: false,
        },
        ClusterPlan {
            spec: ClusterSpec::new(s1, "apps", "aks-dev").tag("env", "dev"),
            what: "env=dev",
            opted_out: false,
        },
        ClusterPlan {
            spec: ClusterSpec::new(s1, "apps", "aks-optout")
                .tag("env", "prod")
                .tag("acr-autoattach", "off"),
            what: "env=prod but opted out (acr-autoattach=off)",
            opted_out: true,
        },
        ClusterPlan {
            spec: ClusterSpec::new(s2, "apps2", "aks-sp-legacy")
                .tag("env", "dev")
                .service_principal(sp_app_id),
            what: "service-principal cluster, env=dev",
            opted_out: false,
        },
    ]
}

/// Seconds from event to verified attach, as the handler reported them in its answers.
fn reported_latencies(invocations: &[InvocationRecord]) -> BTreeMap<(String, String), f64> {
    let mut latency: BTreeMap<(String, String), f64> = BTreeMap::new();
    for inv in invocations {
        let events = inv
            .return_value
            .as_ref()
            .and_then(|v| v["events"].as_array().cloned())
            .unwrap_or_default();
        for pair in events
            .iter()
            .flat_map(|e| e["pairs"].as_array().cloned().unwrap_or_default())
        {
            if let (Some(c), Some(r), Some(s)) = (
                pair["cluster_id"].as_str(),
                pair["registry_id"].as_str(),
                pair["latency_seconds"].as_f64(),
            ) && pair["status"] == "repaired"
            {
                latency
                    .entry((c.to_ascii_lowercase(), r.to_ascii_lowercase()))
                    .or_insert(s);
            }
        }
    }
    latency
}

/// The pull role `listed` grants `principal` at `scope`, if any.
fn assigned_role(listed: &[Value], scope: &str, principal: &str) -> Option<PullRole> {
    listed
        .iter()
        .filter(|a| {
            a["properties"]["scope"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(scope))
                && a["properties"]["principalId"]
                    .as_str()
                    .is_some_and(|p| p.eq_ignore_ascii_case(principal))
        })
        .find_map(|a| {
            PullRole::from_definition_guid(&role_guid(
                a["properties"]["roleDefinitionId"].as_str()?,
            ))
        })
}

/// What the demo expects for (registry, cluster).
fn expected_for(r: &RegistryPlan, c: &ClusterPlan) -> Expected {
    match r.selects {
        None => Expected::NotOptedIn,
        Some(_) if c.opted_out => Expected::OptedOut,
        Some(f) if f(&c.spec.name) => Expected::Attached(if r.spec.abac {
            PullRole::RepositoryReader
        } else {
            PullRole::AcrPull
        }),
        Some(_) => Expected::NotSelected,
    }
}

/// The human-readable table.
pub fn render(report: &DemoReport) -> String {
    let mut out = String::new();
    let header = format!(
        "{:<14} {:<11} {:<46} {:<13} {:<37} {:>8}  OK",
        "CLUSTER", "REGISTRY", "EXPECTED", "STATUS", "ROLE", "SECONDS"
    );
    let _ = writeln!(out, "\n{header}");
    for p in &report.pairs {
        let _ = writeln!(
            out,
            "{:<14} {:<11} {:<46} {:<13} {:<37} {:>8}  {}",
            p.cluster,
            p.registry,
            p.expected.describe(),
            p.status,
            p.role.as_deref().unwrap_or("-"),
            p.seconds_to_attach
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}")),
            if p.as_expected { "yes" } else { "NO" }
        );
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "\n{} pairs, {} attached, {} as expected; {} Azure requests by the handler; {} invocations ({} failed and retried); {:.1} s",
        s.pairs,
        s.attached,
        s.as_expected,
        s.azure_requests,
        s.invocations,
        s.failed_invocations_retried,
        s.seconds
    );
    let t = &s.telemetry;
    let _ = writeln!(
        out,
        "telemetry exported (OTLP/HTTP JSON to the demo's receiver): {} spans ({} invocation spans), {} metrics [{}], {} log records ({} AttachmentVerification)",
        t.spans,
        t.invocation_spans,
        t.metric_names.len(),
        t.metric_names.join(", "),
        t.log_records,
        t.verification_records
    );
    if let Some(to) = &t.forwarded_to {
        let _ = writeln!(
            out,
            "telemetry also forwarded to {to} (OTEL_EXPORTER_OTLP_ENDPOINT): {} exports delivered, {} failed",
            t.forwarded_requests, t.forward_failures
        );
    }
    out
}
