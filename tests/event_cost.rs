//! What one cluster event costs in Azure requests (issue 15): with N registries that select the cluster in S
//! subscriptions, the event that attaches it costs at most N + S + 3 requests, the verifying read included, and
//! the process fetches at most one token per audience. Counted from the emulator's own request log: every
//! request the handler's identity made (cluster reads and readiness polls, subscription, registry and
//! role-assignment lists, Resource Graph queries, PUTs) plus every token request. Figures are printed for
//! docs/operations.md (`cargo test --test event_cost -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;

use std::collections::BTreeMap;
use std::time::Duration;

use acr_autoattach::cli::testbed::Testbed;
use acr_autoattach::core::model::ACR_PULL_GUID;
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use azure_emulator::config::{DEFAULT_TENANT, SubscriptionConfig};
use estate::*;
use serde_json::json;

/// The requests of one invocation: the handler identity's, by operation, plus the token requests.
#[derive(Debug)]
struct Cost {
    by_operation: BTreeMap<String, u64>,
    tokens: u64,
}

impl Cost {
    fn total(&self) -> u64 {
        self.by_operation.values().sum::<u64>() + self.tokens
    }

    fn cluster_reads(&self) -> u64 {
        self.by_operation
            .get("GET managedClusters")
            .copied()
            .unwrap_or(0)
    }
}

fn tokens(bed: &Testbed) -> u64 {
    bed.stats().count("GET token")
}

/// Sends the `managedClusters/write` event of `cluster` straight to the function (Event Grid is off) and
/// returns what that one invocation cost.
async fn invoke_cluster_write(bed: &Testbed, subscription: &str, cluster: &str) -> (bool, Cost) {
    let handler = bed.emulator.control().handler_principal_id();
    bed.emulator.control().reset_stats();
    let event = json!([{
        "id": format!("eg-{}", uuid::Uuid::new_v4()), "topic": format!("/subscriptions/{subscription}"),
        "subject": cluster, "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2026-11-30T06:00:00Z", "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.ContainerService/managedClusters/write", "resourceUri": cluster,
                 "subscriptionId": subscription, "status": "Succeeded"}
    }]);
    let record = bed
        .host
        .invoke_event("OnResourceEvent", event)
        .await
        .unwrap();
    let stats = bed.stats();
    let cost = Cost {
        by_operation: stats.for_caller(&handler).by_operation(),
        tokens: stats.count("GET token"),
    };
    if !record.succeeded() {
        dump(bed);
    }
    (record.succeeded(), cost)
}

struct Figures {
    n: usize,
    s: usize,
    /// The event raised when the cluster PUT is accepted (the cluster still `Creating`).
    accept_time: Cost,
    /// A ready cluster, every pair still missing; the first event of the process (token, subscription list).
    ready: Cost,
    /// A ready cluster, every pair in place (a redelivery, or the completion event after the accept-time one).
    attached: Cost,
    tokens_in_process: u64,
}

/// N tagged registries spread over S subscriptions, built with Event Grid off, so the handler has made no
/// request yet and each measured event is sent alone: first a ready cluster's event (the process's first: it
/// pays the token and the subscription list), then an accept-time event (a warm process), then that cluster's
/// completion event.
async fn measure(n: usize, s: usize) -> Figures {
    let mut opts = options();
    while opts.emulator.subscriptions.len() < s {
        let i = opts.emulator.subscriptions.len() + 1;
        let id = format!(
            "{i}{i}{i}{i}{i}{i}{i}{i}-{i}{i}{i}{i}-4{i}{i}{i}-8{i}{i}{i}-{}",
            i.to_string().repeat(12)
        );
        opts.emulator
            .subscriptions
            .push(SubscriptionConfig::new(id, DEFAULT_TENANT));
    }
    let bed = start(opts).await;
    assert!(bed.publisher.unsubscribe("acr-autoattach"));
    let subs: Vec<String> = (0..s).map(|i| sub(&bed, i)).collect();
    for s in &subs {
        rg(&bed, s, "platform").await;
    }
    let mut registries = Vec::new();
    for i in 0..n {
        let spec = RegistrySpec::new(&subs[i % s], "platform", &format!("acrcost{i}"))
            .tag("acr-autoattach", "*");
        registries.push(registry(&bed, spec).await);
    }
    rg(&bed, &subs[0], "apps").await;
    let tokens_before = tokens(&bed);

    // A cluster that is ready when its event arrives, every pair missing: the process's first event.
    let ready_spec = ClusterSpec::new(&subs[0], "apps", "aks-ready");
    let (_, kubelet) = cluster(&bed, ready_spec.clone()).await;
    let (ok, ready) = invoke_cluster_write(&bed, &subs[0], &ready_spec.id()).await;
    assert!(ok);
    for r in &registries {
        assert_attached(&bed, r, &kubelet, ACR_PULL_GUID).await;
    }

    // The accept-time event: sent as soon as the PUT is accepted, while the cluster is still Creating.
    let accepted = ClusterSpec::new(&subs[0], "apps", "aks-accept");
    bed.admin.put_cluster(&accepted).await.unwrap();
    let (ok, accept_time) = invoke_cluster_write(&bed, &subs[0], &accepted.id()).await;
    assert!(
        ok,
        "the accept-time event attaches once the cluster is ready"
    );
    let kubelet = bed
        .admin
        .wait_cluster_succeeded(&accepted.id(), Duration::from_secs(10))
        .await
        .unwrap()["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap()
        .to_owned();
    for r in &registries {
        assert_attached(&bed, r, &kubelet, ACR_PULL_GUID).await;
    }
    // Its completion event: nothing left to do but verify.
    let (ok, attached) = invoke_cluster_write(&bed, &subs[0], &accepted.id()).await;
    assert!(ok);
    let figures = Figures {
        tokens_in_process: tokens_before + accept_time.tokens + attached.tokens + ready.tokens,
        n,
        s,
        accept_time,
        ready,
        attached,
    };
    bed.shutdown().await;
    figures
}

/// `az aks update --attach-acr` as measured by `.ci/e2e-azcli.sh` (azure-cli 2.91 against the emulator, the
/// operator identity's requests, its token requests not included): one command per registry, each its own
/// requests (docs/operations.md).
const AZ_ATTACH_ACR_REQUESTS: u64 = 11;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_event_costs_at_most_n_plus_s_plus_3_requests() {
    let mut all = Vec::new();
    for (n, s) in [(1usize, 1usize), (5, 2), (12, 3)] {
        all.push(measure(n, s).await);
    }
    eprintln!(
        "| N registries | S subscriptions | bound N+S+3 | accept-time event (Creating) | ready cluster, first event of the process | already attached | az aks update --attach-acr ×N |"
    );
    for f in &all {
        eprintln!(
            "| {} | {} | {} | {} ({} cluster reads) | {} + {} token | {} | {} |",
            f.n,
            f.s,
            f.n + f.s + 3,
            f.accept_time.total(),
            f.accept_time.cluster_reads(),
            f.ready.total() - f.ready.tokens,
            f.ready.tokens,
            f.attached.total(),
            AZ_ATTACH_ACR_REQUESTS * f.n as u64
        );
        eprintln!(
            "    accept-time {:?} + {} token; ready {:?} + {} token; attached {:?}",
            f.accept_time.by_operation,
            f.accept_time.tokens,
            f.ready.by_operation,
            f.ready.tokens,
            f.attached.by_operation
        );
    }
    for f in &all {
        let bound = (f.n + f.s + 3) as u64;
        let (n, s) = (f.n, f.s);
        assert!(
            f.accept_time.total() <= bound,
            "N={n} S={s}: the accept-time event cost {} requests, more than N+S+3 = {bound}: {:?}",
            f.accept_time.total(),
            f.accept_time
        );
        assert!(
            f.ready.total() - f.ready.tokens <= bound,
            "N={n} S={s}: the process's first event cost {} requests besides its token, more than N+S+3 = \
             {bound}: {:?}",
            f.ready.total() - f.ready.tokens,
            f.ready
        );
        assert!(
            f.attached.total() <= (f.s + 2) as u64,
            "N={n} S={s}: an event with nothing to write cost {}: {:?}",
            f.attached.total(),
            f.attached
        );
        assert!(
            f.accept_time.cluster_reads() <= 2,
            "N={} S={}: {} cluster reads while it was Creating",
            f.n,
            f.s,
            f.accept_time.cluster_reads()
        );
        assert!(
            f.tokens_in_process <= 1,
            "N={} S={}: {} token requests in the whole run (one audience: ARM)",
            f.n,
            f.s,
            f.tokens_in_process
        );
    }
}

/// The event path's pre-create check is its own fresh ARM list of the principal's assignments (no second list
/// per registry): an assignment made under the very name the event would create, narrowed by a condition, just
/// before the event, and not yet in Resource Graph, is never rewritten (docs/security.md rule 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_event_never_rewrites_an_assignment_made_under_its_name_just_before() {
    use acr_autoattach::core::model::{
        PullRole, REPOSITORY_READER_GUID, ResourceId, assignment_name, ownership_description,
    };
    let mut opts = options();
    opts.emulator.settings.resource_graph_lag_ms = 2_000;
    let bed = start(opts).await;
    assert!(bed.publisher.unsubscribe("acr-autoattach"));
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrabac")
            .tag("acr-autoattach", "*")
            .abac(),
    )
    .await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let registry_id = ResourceId::parse(&acr).unwrap();
    let name = assignment_name(&registry_id, &kubelet, PullRole::RepositoryReader);
    let id = format!("{acr}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let condition = "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})) OR (@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'team-a/'))";
    bed.admin
        .call(
            reqwest::Method::PUT,
            &format!("{id}?api-version=2022-04-01"),
            Some(&json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{s1}/providers/Microsoft.Authorization/roleDefinitions/{REPOSITORY_READER_GUID}"),
                "principalId": kubelet, "principalType": "ServicePrincipal",
                "description": ownership_description(&ResourceId::parse(&aks).unwrap()),
                "condition": condition, "conditionVersion": "2.0"}})),
        )
        .await
        .unwrap();
    let (ok, cost) = invoke_cluster_write(&bed, &s1, &aks).await;
    assert!(ok);
    assert_eq!(
        cost.by_operation.get("PUT roleAssignments"),
        None,
        "re-PUT: {cost:?}"
    );
    let now = assignments_at(&bed, &acr).await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_eq!(
        now[0]["properties"]["condition"].as_str(),
        Some(condition),
        "the condition is gone: {now:#?}"
    );
    bed.shutdown().await;
}

/// A whole cluster create through Event Grid, as Azure raises it: one event when the PUT is accepted (the
/// cluster `Creating`), one when provisioning completes, with Event Grid's retries. Prints what the create cost
/// in all (docs/operations.md) and checks every pair is attached once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_create_through_event_grid() {
    let (n, s) = (5usize, 2usize);
    let bed = start(options()).await;
    let subs: Vec<String> = (0..s).map(|i| sub(&bed, i)).collect();
    for s in &subs {
        rg(&bed, s, "platform").await;
    }
    let mut registries = Vec::new();
    for i in 0..n {
        let spec = RegistrySpec::new(&subs[i % s], "platform", &format!("acrcost{i}"))
            .tag("acr-autoattach", "*");
        registries.push(registry(&bed, spec).await);
    }
    rg(&bed, &subs[0], "apps").await;
    settle(&bed).await;
    let invocations_before = bed.host.invocations().len();
    bed.emulator.control().reset_stats();
    let (_, kubelet) = cluster(&bed, ClusterSpec::new(&subs[0], "apps", "aks1")).await;
    settle(&bed).await;
    let handler = bed.emulator.control().handler_principal_id();
    let stats = bed.stats();
    let by_operation = stats.for_caller(&handler).by_operation();
    let total: u64 = by_operation.values().sum::<u64>() + stats.count("GET token");
    let invocations = &bed.host.invocations()[invocations_before..];
    let failed = invocations.iter().filter(|i| !i.succeeded()).count();
    eprintln!(
        "cluster create through Event Grid, N={n} S={s}: {total} requests in {} invocations ({failed} failed): \
         {by_operation:?}",
        invocations.len()
    );
    for r in &registries {
        assert_attached(&bed, r, &kubelet, ACR_PULL_GUID).await;
    }
    // The completion event normally arrives while the accept-time event's run waits for readiness and shares it
    // (N + S + 3 in all); on a loaded machine it may arrive after that run read the cluster again and cost one
    // verification of its own (S + 2 more).
    let bound = (n + s + 3 + s + 2) as u64;
    assert!(
        total <= bound,
        "{total} requests for one create, more than {bound}"
    );
    bed.shutdown().await;
}

/// A cluster-delete event (detach on) observes only the deleted cluster's assignments, so it never takes its
/// own list as the pre-create check for the live clusters its plan also covers: a live cluster's assignment,
/// narrowed by a person's condition, is not re-PUT (docs/security.md rule 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_delete_event_never_rewrites_a_live_clusters_assignment() {
    use acr_autoattach::core::model::REPOSITORY_READER_GUID;
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrabac")
            .tag("acr-autoattach", "*")
            .abac(),
    )
    .await;
    let (gone, gone_kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-gone")).await;
    let (_, kept_kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-kept")).await;
    settle(&bed).await;
    assert!(bed.publisher.unsubscribe("acr-autoattach"));
    assert_attached(&bed, &acr, &gone_kubelet, REPOSITORY_READER_GUID).await;
    assert_attached(&bed, &acr, &kept_kubelet, REPOSITORY_READER_GUID).await;
    let kept = assignments_at(&bed, &acr)
        .await
        .into_iter()
        .find(|a| principal(a) == kept_kubelet.to_ascii_lowercase())
        .unwrap();
    let mut narrowed = kept.clone();
    let condition = "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})) OR (@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'team-a/'))";
    narrowed["properties"]["condition"] = json!(condition);
    narrowed["properties"]["conditionVersion"] = json!("2.0");
    let id = kept["id"].as_str().unwrap().to_owned();
    bed.admin
        .call(
            reqwest::Method::PUT,
            &format!("{id}?api-version=2022-04-01"),
            Some(&json!({"properties": {
                "roleDefinitionId": narrowed["properties"]["roleDefinitionId"],
                "principalId": kept_kubelet, "principalType": "ServicePrincipal",
                "description": narrowed["properties"]["description"],
                "condition": condition, "conditionVersion": "2.0"}})),
        )
        .await
        .unwrap();
    bed.admin.delete_cluster(&gone).await.unwrap();
    bed.emulator.control().reset_stats();
    let event = json!([{
        "id": "delete-1", "topic": format!("/subscriptions/{s1}"), "subject": gone,
        "eventType": "Microsoft.Resources.ResourceDeleteSuccess", "eventTime": "2026-11-30T06:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.ContainerService/managedClusters/delete", "resourceUri": gone,
                 "subscriptionId": s1, "status": "Succeeded"}
    }]);
    let record = bed
        .host
        .invoke_event("OnResourceEvent", event)
        .await
        .unwrap();
    assert!(record.succeeded(), "{record:?}");
    let handler = bed.emulator.control().handler_principal_id();
    let stats = bed.stats().for_caller(&handler);
    assert_eq!(
        stats.count("PUT roleAssignments"),
        0,
        "{:?}",
        stats.by_operation()
    );
    assert!(
        pulls(&bed, &acr, &gone_kubelet).await.is_empty(),
        "detached"
    );
    let now = assignments_at(&bed, &acr).await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert_eq!(
        now[0]["properties"]["condition"].as_str(),
        Some(condition),
        "the person's condition is gone: {now:#?}"
    );
    bed.shutdown().await;
}
