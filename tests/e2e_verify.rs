//! Scheduled verification end to end: the host simulator fires VerifyAttachments (`POST
//! /admin/functions/VerifyAttachments`), the real handler binary verifies against the ARM emulator, and the
//! tests judge from ARM itself (as a person would) and from the emulator's request statistics.
//!
//! Each test first lets Event Grid attach what events attach, then unsubscribes the handler, so that what happens
//! afterwards (drift, tag removal, cluster deletion) is seen by the timer alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;

use std::time::Duration;

use acr_autoattach::cli::testbed::Testbed;
use acr_autoattach::core::model::ACR_PULL_GUID;
use azure_emulator::BucketLimit;
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use azure_emulator::functions_host::InvocationRecord;
use estate::*;
use serde_json::Value;

const ACR_PUSH_GUID: &str = "8311e382-0749-4cb8-b61a-304f252e45ec";

/// Stops Event Grid deliveries to the handler: from here on only the timer acts.
async fn events_off(bed: &Testbed) {
    settle(bed).await;
    assert!(
        bed.publisher.unsubscribe("acr-autoattach"),
        "subscription exists"
    );
}

async fn run_timer(bed: &Testbed) -> InvocationRecord {
    let inv = bed.run_timer().await.expect("timer runs");
    if !inv.succeeded() {
        dump(bed);
    }
    assert!(inv.succeeded(), "timer invocation failed: {inv:?}");
    inv
}

fn summary(inv: &InvocationRecord) -> &Value {
    inv.return_value
        .as_ref()
        .expect("the timer returns its summary")
}

fn count(inv: &InvocationRecord, status: &str) -> u64 {
    summary(inv)["counts"][status].as_u64().unwrap_or_default()
}

/// The log line of the pair's result (`{status} cluster=… registry=…`).
fn pair_line<'a>(inv: &'a InvocationRecord, cluster: &str, registry: &str) -> &'a str {
    let (c, r) = (
        format!("cluster={cluster} "),
        format!("registry={registry}"),
    );
    inv.logs
        .iter()
        .find(|l| l.contains(&c) && (l.contains(&format!("{r} ")) || l.ends_with(&r)))
        .unwrap_or_else(|| panic!("no result for {cluster} → {registry} in {:#?}", inv.logs))
}

/// Requests the handler's identity made, by emulator operation label and status.
fn handler_count(bed: &Testbed, operation: &str) -> u64 {
    let handler = bed.emulator.control().handler_principal_id();
    bed.stats().for_caller(&handler).count(operation)
}

fn handler_status(bed: &Testbed, status: u16) -> u64 {
    let handler = bed.emulator.control().handler_principal_id();
    bed.stats()
        .for_caller(&handler)
        .by_status()
        .get(&status)
        .copied()
        .unwrap_or_default()
}

async fn owned_at(bed: &Testbed, scope: &str) -> Vec<Value> {
    assignments_at(bed, scope)
        .await
        .into_iter()
        .filter(is_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_repairs_drift_counts_human_grants_above_and_reports_an_invalid_selector() {
    let bed = start(options()).await;
    let (s1, s2) = (sub(&bed, 0), sub(&bed, 1));
    for name in ["platform", "apps", "team"] {
        rg(&bed, &s1, name).await;
    }
    rg(&bed, &s2, "shared").await;
    let (aks, kubelet) = cluster(
        &bed,
        ClusterSpec::new(&s1, "apps", "aks1").tag("env", "dev"),
    )
    .await;
    // People granted pull above the registries before they opted in.
    bed.admin
        .put_role_assignment(
            &format!("/subscriptions/{s1}/resourceGroups/team"),
            ACR_PULL_GUID,
            &kubelet,
            None,
        )
        .await
        .unwrap();
    bed.admin
        .put_role_assignment(
            &format!("/subscriptions/{s2}"),
            ACR_PULL_GUID,
            &kubelet,
            None,
        )
        .await
        .unwrap();
    let all = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrall").tag("acr-autoattach", "*"),
    )
    .await;
    let bad = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrbad").tag("acr-autoattach", "env in (prod"),
    )
    .await;
    let team = registry(
        &bed,
        RegistrySpec::new(&s1, "team", "acrteam").tag("acr-autoattach", "*"),
    )
    .await;
    let shared = registry(
        &bed,
        RegistrySpec::new(&s2, "shared", "acrshared").tag("acr-autoattach", "*"),
    )
    .await;
    events_off(&bed).await;
    assert_eq!(
        pulls(&bed, &all, &kubelet).await,
        vec![(ACR_PULL_GUID.to_owned(), true)],
        "events attached"
    );

    // Drift: someone deletes our assignment behind our back.
    let ours = owned_at(&bed, &all).await;
    assert_eq!(ours.len(), 1);
    bed.admin
        .delete_role_assignment(ours[0]["id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(pulls(&bed, &all, &kubelet).await.is_empty());
    bed.emulator.control().reset_stats();

    let inv = run_timer(&bed).await;
    assert!(
        pair_line(&inv, &aks, &all).starts_with("repaired "),
        "{inv:#?}"
    );
    let team_line = pair_line(&inv, &aks, &team);
    assert!(
        team_line.starts_with("compliant ") && team_line.contains("resource_group scope"),
        "{team_line}"
    );
    let shared_line = pair_line(&inv, &aks, &shared);
    assert!(
        shared_line.starts_with("compliant ") && shared_line.contains("subscription scope"),
        "{shared_line}"
    );
    assert!(
        inv.logs
            .iter()
            .any(|l| l.starts_with(&format!("invalid_selector registry={bad}"))),
        "{:#?}",
        inv.logs
    );
    assert_eq!((count(&inv, "repaired"), count(&inv, "compliant")), (1, 2));
    assert_eq!(summary(&inv)["invalidSelectors"], 1);
    assert_eq!(summary(&inv)["complete"], true);

    // From ARM: repaired where it was missing; nothing created where a human grant above covers; nothing on the
    // registry whose selector does not parse.
    assert_eq!(
        pulls(&bed, &all, &kubelet).await,
        vec![(ACR_PULL_GUID.to_owned(), true)]
    );
    assert!(owned_at(&bed, &team).await.is_empty());
    assert!(owned_at(&bed, &shared).await.is_empty());
    assert!(assignments_at(&bed, &bad).await.is_empty());
    assert_eq!(
        handler_count(&bed, "PUT roleAssignments"),
        1,
        "exactly the one repair was written"
    );
    assert_eq!(handler_count(&bed, "DELETE roleAssignments"), 0);

    // The next run finds everything in order and writes nothing.
    bed.emulator.control().reset_stats();
    let again = run_timer(&bed).await;
    assert_eq!(
        (count(&again, "repaired"), count(&again, "compliant")),
        (0, 3)
    );
    assert_eq!(handler_count(&bed, "PUT roleAssignments"), 0);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_reports_missing_and_writes_nothing() {
    let bed = start(options().setting("AUTOATTACH_MODE", "audit")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acraudit").tag("acr-autoattach", "*"),
    )
    .await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "apps", "aks1")).await;
    settle(&bed).await;

    let inv = run_timer(&bed).await;
    let line = pair_line(&inv, &aks, &acr);
    assert!(
        line.starts_with("missing ") && line.contains("audit mode writes nothing"),
        "{line}"
    );
    assert_eq!(count(&inv, "missing"), 1);
    assert!(pulls(&bed, &acr, &kubelet).await.is_empty());
    // Neither the events nor the timer wrote anything.
    assert_eq!(handler_count(&bed, "PUT roleAssignments"), 0);
    assert_eq!(handler_count(&bed, "DELETE roleAssignments"), 0);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_removes_only_owned_assignments_including_those_of_deleted_clusters() {
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    let acr1 = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrone").tag("acr-autoattach", "*"),
    )
    .await;
    let acr2 = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrtwo").tag("acr-autoattach", "*"),
    )
    .await;
    let (aks1, p1) = cluster(&bed, ClusterSpec::new(&s1, "apps", "aks1")).await;
    let (aks2, p2) = cluster(&bed, ClusterSpec::new(&s1, "apps", "aks2")).await;
    events_off(&bed).await;
    for (acr, p) in [(&acr1, &p1), (&acr1, &p2), (&acr2, &p1), (&acr2, &p2)] {
        assert_eq!(
            pulls(&bed, acr, p).await,
            vec![(ACR_PULL_GUID.to_owned(), true)],
            "events attached"
        );
    }
    // Human-made assignments, on the same registries and principals.
    let person = bed.emulator.control().create_user("alice");
    bed.admin
        .put_role_assignment(&acr1, ACR_PUSH_GUID, &p1, None)
        .await
        .unwrap();
    bed.admin
        .put_role_assignment(&acr2, ACR_PULL_GUID, &person.object_id, None)
        .await
        .unwrap();

    // acrone opts out (its tag removed) and aks2 is deleted (its kubelet identity leaves the directory).
    bed.admin.set_tags(&acr1, &[("team", "web")]).await.unwrap();
    bed.admin.delete_cluster(&aks2).await.unwrap();
    for _ in 0..200 {
        if bed.admin.get_cluster(&aks2).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        bed.admin.get_cluster(&aks2).await.is_err(),
        "cluster deleted"
    );

    let inv = run_timer(&bed).await;
    for (c, r, why) in [
        (&aks1, &acr1, "no longer selects"),
        (&aks2, &acr1, "absent"),
        (&aks2, &acr2, "absent"),
    ] {
        let line = pair_line(&inv, c, r);
        assert!(
            line.starts_with("detached ") && line.contains(why),
            "{line}"
        );
    }
    assert!(pair_line(&inv, &aks1, &acr2).starts_with("compliant "));
    assert_eq!(count(&inv, "detached"), 3);

    // Only owned assignments went; the human ones stay.
    let left1 = assignments_at(&bed, &acr1).await;
    assert_eq!(left1.len(), 1, "{left1:#?}");
    assert!(
        !is_owned(&left1[0]) && role_guid(&left1[0]) == ACR_PUSH_GUID && principal(&left1[0]) == p1
    );
    let mut left2: Vec<(String, bool)> = assignments_at(&bed, &acr2)
        .await
        .iter()
        .map(|a| (principal(a), is_owned(a)))
        .collect();
    left2.sort();
    let mut want = vec![
        (p1.clone(), true),
        (person.object_id.to_ascii_lowercase(), false),
    ];
    want.sort();
    assert_eq!(left2, want);
    assert_eq!(handler_count(&bed, "DELETE roleAssignments"), 3);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_emulator_still_converges_with_paced_writes() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    events_off(&bed).await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrbusy").tag("acr-autoattach", "*"),
    )
    .await;
    let specs: Vec<ClusterSpec> = (0..12)
        .map(|i| ClusterSpec::new(&s1, "apps", &format!("aks{i:02}")))
        .collect();
    let clusters = futures::future::join_all(specs.into_iter().map(|s| cluster(&bed, s))).await;

    // Buckets far below ARM's (and below the client's own limiter, sized for ARM): the emulator answers 429
    // with Retry-After, which the client must wait out.
    bed.emulator.control().update_faults(|f| {
        f.writes = BucketLimit {
            capacity: 4,
            refill_per_sec: 2,
        };
        f.reads = BucketLimit {
            capacity: 30,
            refill_per_sec: 10,
        };
    });
    bed.emulator.control().reset_stats();
    let inv = run_timer(&bed).await;
    let throttled = handler_status(&bed, 429);
    eprintln!(
        "throttled run: {} repaired, {} failed, {throttled} answers 429, {:.1} s, {} requests",
        count(&inv, "repaired"),
        count(&inv, "failed"),
        inv.duration.as_secs_f64(),
        summary(&inv)["azureRequests"]
    );
    assert_eq!(count(&inv, "repaired"), 12, "{:#?}", inv.logs);
    assert_eq!(count(&inv, "failed"), 0);
    assert_eq!(summary(&inv)["complete"], true);
    for (_, p) in &clusters {
        assert_eq!(
            pulls(&bed, &acr, p).await,
            vec![(ACR_PULL_GUID.to_owned(), true)]
        );
    }
    // 12 writes through a bucket of 4 refilling 2/s cannot finish in under 4 s unless 429s were ignored.
    assert!(
        inv.duration >= Duration::from_millis(3_500),
        "writes were not paced: {:?}",
        inv.duration
    );
    // Each 429 was followed by a wait, not a storm: at most a few per write.
    assert!(
        throttled <= 3 * 12,
        "{throttled} throttled answers for 12 writes"
    );
    let handler = bed.emulator.control().handler_principal_id();
    let stats = bed.stats().for_caller(&handler);
    assert_eq!(
        stats.count("PUT roleAssignments") - stats.count_status("PUT roleAssignments", 429),
        12
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_shorter_than_the_run_gives_a_partial_report_not_a_killed_process() {
    let bed = start(
        options()
            .setting("AUTOATTACH_VERIFY_BUDGET_SECS", "4")
            .setting("AUTOATTACH_MAX_CONCURRENCY", "1"),
    )
    .await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    events_off(&bed).await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "platform", "acrslow").tag("acr-autoattach", "*"),
    )
    .await;
    let specs: Vec<ClusterSpec> = (0..16)
        .map(|i| ClusterSpec::new(&s1, "apps", &format!("aks{i:02}")))
        .collect();
    let clusters = futures::future::join_all(specs.into_iter().map(|s| cluster(&bed, s))).await;

    bed.emulator.control().update_faults(|f| f.latency_ms = 250);
    let inv = run_timer(&bed).await;
    let s = summary(&inv);
    eprintln!("partial run: {s}");
    assert_eq!(s["complete"], false, "{s}");
    assert!(s["unverifiedPairs"].as_u64().unwrap() > 0, "{s}");
    assert!(
        inv.duration < Duration::from_secs(8),
        "the run overran its budget: {:?}",
        inv.duration
    );
    assert!(
        inv.logs
            .iter()
            .any(|l| l.starts_with("verification PARTIAL")),
        "{:#?}",
        inv.logs
    );

    // The handler is alive and the next (unhurried) run finishes the job.
    bed.emulator.control().update_faults(|f| f.latency_ms = 0);
    let next = run_timer(&bed).await;
    assert_eq!(summary(&next)["complete"], true, "{}", summary(&next));
    for (_, p) in &clusters {
        assert_eq!(
            pulls(&bed, &acr, p).await,
            vec![(ACR_PULL_GUID.to_owned(), true)]
        );
    }
    bed.shutdown().await;
}
