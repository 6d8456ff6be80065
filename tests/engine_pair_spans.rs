//! The engine opens one `pair` span per written (cluster, registry) pair: the span carries both ids and the
//! pair's final status (once its write is confirmed), and the Azure request that wrote the assignment is its
//! child. Pairs that need no write get no span. Checked with a capturing `tracing` layer against the in-process emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acr_autoattach::core::model::{ACR_PULL_GUID, PairStatus};
use acr_autoattach::runtime::bootstrap;
use acr_autoattach::runtime::config::{Config, MapEnv};
use acr_autoattach::runtime::engine::Engine;
use acr_autoattach::telemetry::Metrics;
use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::{Emulator, EmulatorConfig};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

#[derive(Clone, Debug)]
struct CapturedSpan {
    id: u64,
    parent: Option<u64>,
    name: String,
    fields: BTreeMap<String, String>,
}

/// Every span created, with its parent and its fields as last recorded.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<CapturedSpan>>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.id().into_u64());
        self.0.lock().unwrap().push(CapturedSpan {
            id: id.into_u64(),
            parent,
            name: attrs.metadata().name().to_owned(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        // Ids are reused after a span closes: the latest span with this id is the live one.
        if let Some(span) = spans.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

fn role_assignment_principal(a: &serde_json::Value) -> String {
    a["properties"]["principalId"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

// Current-thread runtime: the thread-local subscriber sees the engine's spans wherever they are polled.
#[tokio::test(flavor = "current_thread")]
async fn each_written_pair_has_a_span_with_its_status_and_its_request_as_child() {
    let capture = Capture::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let admin = ArmAdmin::new(emulator.base_url(), emulator.control().admin_token());
    let s1 = emulator.control().subscriptions()[0].clone();
    admin
        .put_resource_group(&s1, "rg", "westeurope")
        .await
        .unwrap();
    let registry = RegistrySpec::new(&s1, "rg", "acrshared").tag("acr-autoattach", "*");
    admin.put_registry(&registry).await.unwrap();
    let mut kubelets = Vec::new();
    for name in ["aks-covered", "aks-new"] {
        let spec = ClusterSpec::new(&s1, "rg", name);
        admin.put_cluster(&spec).await.unwrap();
        let body = admin
            .wait_cluster_succeeded(&spec.id(), Duration::from_secs(20))
            .await
            .unwrap();
        kubelets.push((
            spec.id(),
            body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    // A person already granted the first cluster pull: that pair needs no write, so it gets no span.
    admin
        .put_role_assignment(&registry.id(), ACR_PULL_GUID, &kubelets[0].1, None)
        .await
        .unwrap();

    let env = emulator.env();
    let config = Config::from_env(&MapEnv::new(env.clone())).unwrap();
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    let client = bootstrap::azure_client(&config, credential, &Metrics::noop()).unwrap();
    let engine = Engine::new(config, client);
    let report = engine.verify(Duration::from_secs(30), &[], None).await;
    let statuses: Vec<PairStatus> = report.pairs.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == PairStatus::Repaired)
            .count(),
        1,
        "{report:#?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == PairStatus::Compliant)
            .count(),
        1,
        "{report:#?}"
    );
    let new_kubelet = kubelets[1].1.to_ascii_lowercase();
    assert!(
        admin
            .list_role_assignments(&registry.id())
            .await
            .unwrap()
            .iter()
            .any(|a| role_assignment_principal(a) == new_kubelet),
        "the new cluster was attached"
    );

    let spans = capture.0.lock().unwrap().clone();
    let pair_spans: Vec<&CapturedSpan> = spans.iter().filter(|s| s.name == "pair").collect();
    assert_eq!(
        pair_spans.len(),
        1,
        "one span per written pair: {pair_spans:#?}"
    );
    let pair = pair_spans[0];
    assert_eq!(pair.fields["otel.name"], "pair decision");
    assert!(
        pair.fields["autoattach.cluster.id"].eq_ignore_ascii_case(&kubelets[1].0),
        "{pair:#?}"
    );
    assert!(
        pair.fields["autoattach.registry.id"].eq_ignore_ascii_case(&registry.id()),
        "{pair:#?}"
    );
    assert_eq!(
        pair.fields
            .get("autoattach.pair.status")
            .map(String::as_str),
        Some("repaired")
    );
    let writes: Vec<&CapturedSpan> = spans
        .iter()
        .filter(|s| {
            s.name == "azure.request"
                && s.fields.get("azure.operation").map(String::as_str)
                    == Some("put_role_assignment")
        })
        .collect();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(
        writes[0].parent,
        Some(pair.id),
        "the PUT is a child of its pair's span"
    );
    emulator.shutdown().await;
}
