//! Attach on events, end to end: Event Grid → Functions host simulator → `acr-autoattach serve` → ARM
//! emulator, with no shortcut around any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;

use acr_autoattach::core::model::{ACR_PULL_GUID, REPOSITORY_READER_GUID};
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use estate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_cluster_is_attached_to_exactly_the_registries_that_select_it() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    let all = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrall").tag("acr-autoattach", "*"),
    )
    .await;
    let prod = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrprod")
            .tag("acr-autoattach", "env=prod")
            .abac(),
    )
    .await;
    let off = registry(&bed, RegistrySpec::new(&s1, "platform", "acrprivate")).await;
    settle(&bed).await;

    let (_, dev) = cluster(
        &bed,
        ClusterSpec::new(&s1, "apps", "aks-dev").tag("env", "dev"),
    )
    .await;
    let (_, prd) = cluster(
        &bed,
        ClusterSpec::new(&s1, "apps", "aks-prod").tag("env", "prod"),
    )
    .await;
    settle(&bed).await;

    let failed = bed
        .host
        .invocations()
        .iter()
        .filter(|i| !i.succeeded())
        .count();
    if pulls(&bed, &all, &dev).await.len() != 1 {
        dump(&bed);
    }
    assert_attached(&bed, &all, &dev, ACR_PULL_GUID).await;
    assert_attached(&bed, &all, &prd, ACR_PULL_GUID).await;
    assert_attached(&bed, &prod, &prd, REPOSITORY_READER_GUID).await;
    assert!(pulls(&bed, &prod, &dev).await.is_empty());
    assert!(pulls(&bed, &off, &dev).await.is_empty() && pulls(&bed, &off, &prd).await.is_empty());
    eprintln!(
        "invocations: {} ({failed} failed, retried by Event Grid)",
        bed.host.invocations().len()
    );
    bed.shutdown().await;
}

use std::time::Duration;

use azure_emulator::eventgrid::EventSubscription;
use serde_json::json;

/// Every assignment the handler created or deleted, from the emulator's own counters.
fn handler_writes(bed: &acr_autoattach::cli::testbed::Testbed) -> (u64, u64) {
    let handler = bed.emulator.control().handler_principal_id();
    let stats = bed.stats().for_caller(&handler);
    (
        stats.count_status("PUT roleAssignments", 201)
            + stats.count_status("PUT roleAssignments", 200),
        stats.count("DELETE roleAssignments"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triple_delivery_creates_one_assignment_per_pair() {
    let bed = start(options()).await;
    // Two more subscriptions to the same function: every event arrives three times, as at-least-once allows.
    for name in ["dup-2", "dup-3"] {
        let endpoint = bed.host.eventgrid_webhook_url("OnResourceEvent");
        bed.publisher
            .subscribe(EventSubscription::as_infra_configures(name, endpoint))
            .await
            .unwrap();
    }
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "all"),
    )
    .await;
    let (_, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet, ACR_PULL_GUID).await;
    let deliveries = bed.publisher.deliveries().len();
    assert!(
        deliveries >= 9,
        "expected every event three times, saw {deliveries} deliveries"
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_and_duplicated_events_converge() {
    let mut opts = options();
    opts.publisher.reorder = true;
    opts.publisher.reorder_window = Duration::from_millis(400);
    opts.publisher.duplicate_rate = 0.5;
    opts.publisher.seed = 42;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let mut kubelets = Vec::new();
    for i in 0..3 {
        let spec = ClusterSpec::new(&s1, "rg", &format!("aks{i}")).tag("env", "prod");
        bed.admin.put_cluster(&spec).await.unwrap();
        kubelets.push(spec.id());
    }
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "env=prod"),
    )
    .await;
    // The registry's tag changes twice quickly; the last write wins whatever order the events arrive in.
    bed.admin
        .set_tags(&acr, &[("acr-autoattach", "env=dev")])
        .await
        .unwrap();
    bed.admin
        .set_tags(&acr, &[("acr-autoattach", "env in (prod,dev)")])
        .await
        .unwrap();
    settle(&bed).await;
    for id in &kubelets {
        let body = bed
            .admin
            .wait_cluster_succeeded(id, Duration::from_secs(10))
            .await
            .unwrap();
        let oid = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
            .as_str()
            .unwrap();
        assert_eq!(
            pulls(&bed, &acr, oid).await,
            vec![(ACR_PULL_GUID.to_owned(), true)],
            "{id}"
        );
    }
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_slower_than_the_readiness_budget_is_attached_on_a_retry() {
    let mut opts = options().setting("AUTOATTACH_READY_TIMEOUT_SECS", "1");
    opts.emulator.settings.cluster_provisioning_ms = 2_500;
    // Event Grid's schedule at 1/10 speed: retries after 1 s, 3 s, 6 s, …
    opts.publisher.retry_time_scale = 0.1;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    settle(&bed).await;
    let spec = ClusterSpec::new(&s1, "rg", "slow");
    bed.admin.put_cluster(&spec).await.unwrap();
    settle(&bed).await;
    let invocations = bed.host.invocations();
    let failed = invocations.iter().filter(|i| !i.succeeded()).count();
    assert!(
        failed >= 1,
        "the first invocation must fail while the cluster is Creating"
    );
    let body = bed.admin.get_cluster(&spec.id()).await.unwrap();
    let oid = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap();
    assert_attached(&bed, &acr, oid, ACR_PULL_GUID).await;
    assert!(bed.publisher.deadletters().is_empty());
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_is_ridden_out() {
    let mut opts = options();
    // Tiny ARM buckets: a handful of reads and writes, slow refill. 429s with Retry-After follow quickly.
    opts.emulator.faults.reads = azure_emulator::BucketLimit {
        capacity: 6,
        refill_per_sec: 4,
    };
    opts.emulator.faults.writes = azure_emulator::BucketLimit {
        capacity: 4,
        refill_per_sec: 2,
    };
    opts.publisher.retry_time_scale = 0.1;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let mut registries = Vec::new();
    for i in 0..3 {
        registries.push(
            registry(
                &bed,
                RegistrySpec::new(&s1, "rg", &format!("acrnum{i}")).tag("acr-autoattach", "*"),
            )
            .await,
        );
    }
    let mut clusters = Vec::new();
    for i in 0..3 {
        let spec = ClusterSpec::new(&s1, "rg", &format!("aks{i}"));
        bed.admin.put_cluster(&spec).await.unwrap();
        clusters.push(spec.id());
    }
    settle(&bed).await;
    for id in &clusters {
        let body = bed
            .admin
            .wait_cluster_succeeded(id, Duration::from_secs(10))
            .await
            .unwrap();
        let oid = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
            .as_str()
            .unwrap();
        for acr in &registries {
            assert_eq!(
                pulls(&bed, acr, oid).await,
                vec![(ACR_PULL_GUID.to_owned(), true)],
                "{id} → {acr}"
            );
        }
    }
    let handler = bed.emulator.control().handler_principal_id();
    let by_status = bed.stats().for_caller(&handler).by_status();
    eprintln!("handler requests by status under throttling: {by_status:?}");
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_window_does_not_delay_the_attach() {
    let mut opts = options();
    // New principals stay unknown to the directory for a minute unless the PUT says principalType.
    opts.emulator.settings.principal_replication_ms = 60_000;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let (_, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet, ACR_PULL_GUID).await;
    let handler = bed.emulator.control().handler_principal_id();
    assert_eq!(
        bed.stats()
            .for_caller(&handler)
            .count_status("PUT roleAssignments", 400),
        0
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_created_after_the_clusters_attaches_them() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let (_, a) = cluster(
        &bed,
        ClusterSpec::new(&s1, "rg", "aks-a").tag("team", "red"),
    )
    .await;
    let (_, b) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-b")).await;
    settle(&bed).await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrlate").tag("acr-autoattach", "team"),
    )
    .await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &a, ACR_PULL_GUID).await;
    assert!(pulls(&bed, &acr, &b).await.is_empty());
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retagging_with_detach_removes_only_our_assignments() {
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let (_, dev) = cluster(
        &bed,
        ClusterSpec::new(&s1, "rg", "aks-dev").tag("env", "dev"),
    )
    .await;
    let (_, dev2) = cluster(
        &bed,
        ClusterSpec::new(&s1, "rg", "aks-dev2").tag("env", "dev"),
    )
    .await;
    let (_, prod) = cluster(
        &bed,
        ClusterSpec::new(&s1, "rg", "aks-prod").tag("env", "prod"),
    )
    .await;
    // The registry exists untagged; a person grants dev2 AcrPull by hand; then the registry opts in for dev.
    let acr = registry(&bed, RegistrySpec::new(&s1, "rg", "acrteam1")).await;
    bed.admin
        .put_role_assignment(
            &acr,
            ACR_PULL_GUID,
            &dev2,
            Some("granted by alice for the migration"),
        )
        .await
        .unwrap();
    bed.admin
        .set_tags(&acr, &[("acr-autoattach", "env=dev")])
        .await
        .unwrap();
    settle(&bed).await;
    assert_attached(&bed, &acr, &dev, ACR_PULL_GUID).await;
    assert_eq!(
        pulls(&bed, &acr, &dev2).await,
        vec![(ACR_PULL_GUID.to_owned(), false)],
        "the human grant covers dev2"
    );
    bed.admin
        .set_tags(&acr, &[("acr-autoattach", "env=prod")])
        .await
        .unwrap();
    settle(&bed).await;
    assert!(
        pulls(&bed, &acr, &dev).await.is_empty(),
        "our assignment for dev is removed"
    );
    assert!(
        pulls(&bed, &acr, &dev2)
            .await
            .contains(&(ACR_PULL_GUID.to_owned(), false)),
        "the human-made assignment stays"
    );
    assert_attached(&bed, &acr, &prod, ACR_PULL_GUID).await;
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn human_acrpull_at_resource_group_scope_means_nothing_is_created() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "shared").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "shared", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let spec = ClusterSpec::new(&s1, "shared", "aks1");
    // The cluster exists first (no registry event will pick it up), then a person grants at the group.
    bed.admin.put_cluster(&spec).await.unwrap();
    let body = bed
        .admin
        .wait_cluster_succeeded(&spec.id(), Duration::from_secs(10))
        .await
        .unwrap();
    let kubelet = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap()
        .to_owned();
    settle(&bed).await;
    let created_before = handler_writes(&bed).0;
    let group = format!("/subscriptions/{s1}/resourceGroups/shared");
    bed.admin
        .put_role_assignment(&group, ACR_PULL_GUID, &kubelet, None)
        .await
        .unwrap();
    // A tag change on the cluster triggers a fresh evaluation.
    bed.admin
        .set_tags(&spec.id(), &[("owner", "team-a")])
        .await
        .unwrap();
    settle(&bed).await;
    assert!(pulls(&bed, &acr, &kubelet).await.len() <= 1);
    let created_after = handler_writes(&bed).0;
    assert_eq!(
        created_after, created_before,
        "nothing new once the group-scope grant covers the pair"
    );
    let last = bed
        .host
        .invocations()
        .into_iter()
        .rev()
        .find(|i| i.logs.iter().any(|l| l.contains("cluster_write")))
        .unwrap();
    assert!(
        last.logs
            .iter()
            .any(|l| l.starts_with("compliant") && l.contains("acrteam1")),
        "{:?}",
        last.logs
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_principal_cluster_gets_its_object_id_from_graph() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let sp = bed
        .emulator
        .control()
        .create_service_principal("legacy-cluster-sp");
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let spec = ClusterSpec::new(&s1, "rg", "aks-sp").service_principal(&sp.app_id);
    bed.admin.put_cluster(&spec).await.unwrap();
    bed.admin
        .wait_cluster_succeeded(&spec.id(), Duration::from_secs(10))
        .await
        .unwrap();
    settle(&bed).await;
    assert_attached(&bed, &acr, &sp.object_id, ACR_PULL_GUID).await;
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_another_subscription_is_attached() {
    let bed = start(options()).await;
    let (s1, s2) = (sub(&bed, 0), sub(&bed, 1));
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s2, "apps").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrshared").tag("acr-autoattach", "*"),
    )
    .await;
    let (_, kubelet) = cluster(&bed, ClusterSpec::new(&s2, "apps", "aks-other-sub")).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet, ACR_PULL_GUID).await;
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_writes_nothing_and_reports_missing() {
    let bed = start(options().setting("AUTOATTACH_MODE", "audit")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let (_, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    settle(&bed).await;
    assert!(pulls(&bed, &acr, &kubelet).await.is_empty());
    let handler = bed.emulator.control().handler_principal_id();
    let stats = bed.stats().for_caller(&handler);
    assert_eq!(
        stats.count("PUT roleAssignments") + stats.count("DELETE roleAssignments"),
        0
    );
    let missing = bed
        .host
        .invocations()
        .iter()
        .flat_map(|i| i.logs.clone())
        .filter(|l| l.starts_with("missing") && l.contains("acrteam1"))
        .count();
    assert!(missing >= 1);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irrelevant_events_cost_no_azure_request() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    let handler = bed.emulator.control().handler_principal_id();
    let before = bed.stats().for_caller(&handler).total();
    let base = format!("/subscriptions/{s1}/resourceGroups/rg/providers");
    let events = [
        (
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Storage/storageAccounts/write",
            format!("{base}/Microsoft.Storage/storageAccounts/st1"),
        ),
        (
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Authorization/roleAssignments/write",
            format!(
                "{base}/Microsoft.ContainerRegistry/registries/acr1/providers/Microsoft.Authorization/roleAssignments/0b0d7c4e-0000-4000-8000-000000000001"
            ),
        ),
        (
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.ContainerService/managedClusters/agentPools/write",
            format!("{base}/Microsoft.ContainerService/managedClusters/aks1/agentPools/np1"),
        ),
        (
            "Microsoft.Resources.ResourceActionSuccess",
            "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
            format!("{base}/Microsoft.ContainerService/managedClusters/aks1"),
        ),
    ];
    for (i, (event_type, operation, uri)) in events.iter().enumerate() {
        let event = json!([{
            "id": format!("irrelevant-{i}"), "topic": format!("/subscriptions/{s1}"), "subject": uri,
            "eventType": event_type, "eventTime": "2026-11-30T06:00:00.0000000Z", "dataVersion": "2", "metadataVersion": "1",
            "data": {"operationName": operation, "resourceUri": uri, "subscriptionId": s1, "tenantId": "t", "status": "Succeeded"}
        }]);
        let record = bed
            .host
            .invoke_event("OnResourceEvent", event)
            .await
            .unwrap();
        assert!(record.succeeded(), "{record:?}");
        assert!(
            record.logs.iter().any(|l| l.contains("→ ignored")),
            "{:?}",
            record.logs
        );
    }
    let after = bed.stats().for_caller(&handler).total();
    assert_eq!(after, before, "irrelevant events made Azure requests");
    bed.shutdown().await;
}

/// The reads of one cluster event do not grow with the number of registries; only writes do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_event_reads_do_not_grow_with_registries() {
    let mut figures = Vec::new();
    for registries in [2usize, 12] {
        let bed = start(options()).await;
        let s1 = sub(&bed, 0);
        rg(&bed, &s1, "rg").await;
        for i in 0..registries {
            registry(
                &bed,
                RegistrySpec::new(&s1, "rg", &format!("acrnum{i}")).tag("acr-autoattach", "*"),
            )
            .await;
        }
        settle(&bed).await;
        let spec = ClusterSpec::new(&s1, "rg", "aks1");
        bed.admin.put_cluster(&spec).await.unwrap();
        bed.admin
            .wait_cluster_succeeded(&spec.id(), Duration::from_secs(10))
            .await
            .unwrap();
        settle(&bed).await;
        let handler = bed.emulator.control().handler_principal_id();
        let control = bed.emulator.control();
        control.reset_stats();
        // Replay the completion event once more, now that everything is attached: pure verification.
        let event = json!([{
            "id": "replay-1", "topic": format!("/subscriptions/{s1}"), "subject": spec.id(),
            "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-11-30T06:00:00.0000000Z",
            "dataVersion": "2", "metadataVersion": "1",
            "data": {"operationName": "Microsoft.ContainerService/managedClusters/write", "resourceUri": spec.id(), "subscriptionId": s1, "status": "Succeeded"}
        }]);
        let record = bed
            .host
            .invoke_event("OnResourceEvent", event)
            .await
            .unwrap();
        assert!(record.succeeded());
        let stats = control.stats().for_caller(&handler);
        let reads: u64 = stats
            .by_operation()
            .iter()
            .filter(|(op, _)| op.starts_with("GET") || op.starts_with("LIST"))
            .map(|(_, n)| n)
            .sum();
        figures.push((registries, reads, stats.by_operation()));
        bed.shutdown().await;
    }
    for (r, reads, ops) in &figures {
        eprintln!("registries={r}: handler reads={reads} {ops:?}");
    }
    assert_eq!(
        figures[0].1, figures[1].1,
        "reads grew with the number of registries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_with_detach_removes_its_assignments_on_the_event() {
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let (gone, gone_kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-gone")).await;
    let (_, kept_kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-kept")).await;
    settle(&bed).await;
    assert_eq!(pulls(&bed, &acr, &gone_kubelet).await.len(), 1);
    bed.admin.delete_cluster(&gone).await.unwrap();
    settle(&bed).await;
    assert!(
        pulls(&bed, &acr, &gone_kubelet).await.is_empty(),
        "the deleted cluster's assignment is removed"
    );
    assert_attached(&bed, &acr, &kept_kubelet, ACR_PULL_GUID).await;
    let detached = bed
        .host
        .invocations()
        .iter()
        .flat_map(|i| i.logs.clone())
        .any(|l| l.starts_with("detached") && l.contains("aks-gone"));
    assert!(detached);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_cluster_without_detach_touches_nothing() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrteam1").tag("acr-autoattach", "*"),
    )
    .await;
    let (gone, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-gone")).await;
    settle(&bed).await;
    let handler = bed.emulator.control().handler_principal_id();
    let before = bed.stats().for_caller(&handler).total();
    bed.admin.delete_cluster(&gone).await.unwrap();
    settle(&bed).await;
    assert_eq!(
        pulls(&bed, &acr, &kubelet).await.len(),
        1,
        "detach is off: the assignment stays"
    );
    assert_eq!(
        bed.stats().for_caller(&handler).total(),
        before,
        "and the delete event cost no request"
    );
    bed.shutdown().await;
}

/// Event Grid gives up on a delivery after its timeout while the real host lets the invocation run on; the
/// retry then arrives beside the first, still-running invocation (issue 14, point 5). The handler stays
/// correct: the two overlapping invocations end in exactly one assignment, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_overlapping_a_running_invocation_ends_in_one_assignment() {
    let mut opts = options().setting("AUTOATTACH_READY_TIMEOUT_SECS", "6");
    // The cluster provisions for 2.5 s; the first invocation waits for it, Event Grid stops waiting after
    // 1 s and redelivers 0.5 s later (its 10 s first retry at 1/20 speed), so the two invocations overlap.
    opts.emulator.settings.cluster_provisioning_ms = 2_500;
    opts.publisher.delivery_timeout = Duration::from_secs(1);
    opts.publisher.retry_time_scale = 0.05;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acroverlap").tag("acr-autoattach", "*"),
    )
    .await;
    settle(&bed).await;
    let before = bed.host.invocations().len();
    let spec = ClusterSpec::new(&s1, "rg", "overlap");
    bed.admin.put_cluster(&spec).await.unwrap();
    settle(&bed).await;
    // Let a still-running invocation finish after Event Grid went idle.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let invocations: Vec<_> = bed.host.invocations().into_iter().skip(before).collect();
    let overlapping = invocations.iter().any(|a| {
        invocations.iter().any(|b| {
            a.invocation_id != b.invocation_id
                && a.started_at < b.started_at
                && b.started_at < a.started_at + a.duration
        })
    });
    assert!(
        overlapping,
        "no redelivery overlapped a running invocation: {:?}",
        invocations
            .iter()
            .map(|i| (i.started_at, i.duration, i.http_status))
            .collect::<Vec<_>>()
    );
    let body = bed.admin.get_cluster(&spec.id()).await.unwrap();
    let oid = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap();
    assert_eq!(
        pulls(&bed, &acr, oid).await.len(),
        1,
        "exactly one assignment"
    );
    assert_attached(&bed, &acr, oid, ACR_PULL_GUID).await;
    assert!(bed.publisher.deadletters().is_empty());
    bed.shutdown().await;
}
