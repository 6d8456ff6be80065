//! Writes as fast as ARM's buckets allow (issue 15): a cold enforce against the emulator with ARM's throttling
//! on. ARM throttles writes per principal and subscription, so a plan spanning several subscriptions must
//! keep every subscription's bucket busy at once (the engine interleaves its writes across buckets), and a
//! fresh process must learn what another run of the same identity left in a bucket before it spends a burst
//! (its first answer's `x-ms-ratelimit-remaining-subscription-writes`).
//!
//! The estate is seeded with throttling off; the measured runs go through the real engine and client, and the
//! order and times of the writes are read from the emulator's event bus (one event per role assignment made).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/credential.rs"]
mod credential;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_autoattach::azure::{AzureClient, BucketSpec, ClientOptions, RateLimits};
use acr_autoattach::core::model::{Mode, PairStatus, VerificationReport};
use acr_autoattach::runtime::config::{Config, MapEnv};
use acr_autoattach::runtime::engine::Engine;
use azure_emulator::admin::{ArmAdmin, ClusterSpec, GROUPS_API, RegistrySpec};
use azure_emulator::config::BucketLimit;
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator, SubscriptionConfig};
use credential::EmulatorCredential;
use futures::StreamExt;
use url::Url;

const WRITE_EVENT: &str = "Microsoft.Authorization/roleAssignments/write";

/// An estate's shape: registries are spread over the subscriptions in turn, and so are clusters.
#[derive(Clone, Copy)]
struct Shape {
    subscriptions: usize,
    registries: usize,
    clusters: usize,
}

/// Seeds the estate with throttling off, then turns ARM's buckets on with `writes` as the write bucket.
async fn estate(shape: Shape, writes: BucketLimit, latency_ms: u64) -> RunningEmulator {
    let mut config = EmulatorConfig::for_tests();
    let tenant = config.default_tenant.clone();
    config.subscriptions = (1..=shape.subscriptions)
        .map(|i| {
            SubscriptionConfig::new(
                format!("{i}{i}{i}{i}{i}{i}{i}{i}-0000-4000-8000-00000000000{i}"),
                &tenant,
            )
        })
        .collect();
    config.settings.cluster_provisioning_ms = 1;
    config.settings.principal_replication_ms = 0;
    config.faults.throttling = false;
    let emu = Emulator::start(config).await.unwrap();
    let admin = ArmAdmin::new(emu.base_url(), emu.control().admin_token());
    let subs = emu.control().subscriptions();
    for s in &subs {
        admin
            .put_resource_group(s, "platform", "westeurope")
            .await
            .unwrap();
        admin
            .put_resource_group(s, "apps", "westeurope")
            .await
            .unwrap();
    }
    for r in 0..shape.registries {
        let spec = RegistrySpec::new(
            &subs[r % shape.subscriptions],
            "platform",
            &format!("acr{r:02}"),
        )
        .tag("acr-autoattach", "*");
        admin.put_registry(&spec).await.unwrap();
    }
    let specs: Vec<ClusterSpec> = (0..shape.clusters)
        .map(|c| {
            ClusterSpec::new(
                &subs[c % shape.subscriptions],
                "apps",
                &format!("aks{c:04}"),
            )
            .tag("env", "prod")
        })
        .collect();
    let admin_ref = &admin;
    futures::stream::iter(specs.iter())
        .for_each_concurrent(32, |spec| async move {
            admin_ref.put_cluster(spec).await.unwrap();
        })
        .await;
    admin
        .wait_cluster_succeeded(&specs.last().unwrap().id(), Duration::from_secs(30))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    emu.control().update_faults(|f| {
        f.throttling = true;
        f.writes = writes;
        f.latency_ms = latency_ms;
    });
    emu
}

/// A fresh handler process (its own client, buckets and token cache) with these client-side write limits.
fn engine(emu: &RunningEmulator, writes: BucketSpec) -> Engine {
    let base = emu.base_url();
    let config = Config::from_env(&MapEnv::new([
        ("AUTOATTACH_ARM_ENDPOINT", base.as_str()),
        ("AUTOATTACH_GRAPH_ENDPOINT", base.as_str()),
        ("AUTOATTACH_USE_RESOURCE_GRAPH", "false"),
    ]))
    .unwrap();
    let url = Url::parse(&base).unwrap();
    let mut options = ClientOptions::new(
        url.clone(),
        url,
        Arc::new(EmulatorCredential::for_handler(emu.control())),
    );
    options.max_concurrency = config.max_concurrency;
    options.rate_limits = RateLimits {
        writes,
        ..RateLimits::default()
    };
    Engine::new(config, AzureClient::new(options).unwrap())
}

/// One write as the emulator made it: its subscription and when.
struct Write {
    subscription: String,
    at: time::OffsetDateTime,
}

/// A cold enforce: the report, its wall time, the writes in the order the emulator made them, and the 429s
/// the handler met.
async fn cold_enforce(
    emu: &RunningEmulator,
    engine: &Engine,
) -> (VerificationReport, f64, Vec<Write>, u64) {
    emu.control().reset_stats();
    let mut events = emu.bus().subscribe();
    let started = Instant::now();
    let report = engine
        .verify(Duration::from_mins(9), &[], Some(Mode::Enforce))
        .await;
    let wall = started.elapsed().as_secs_f64();
    let mut writes = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.operation_name.eq_ignore_ascii_case(WRITE_EVENT) {
            writes.push(Write {
                subscription: e.subscription_id.to_ascii_lowercase(),
                at: e.time,
            });
        }
    }
    let throttled = emu
        .control()
        .stats()
        .for_caller(&emu.control().handler_principal_id())
        .by_status()
        .get(&429)
        .copied()
        .unwrap_or_default();
    (report, wall, writes, throttled)
}

fn repaired(report: &VerificationReport) -> usize {
    report
        .pairs
        .iter()
        .filter(|p| p.status == PairStatus::Repaired)
        .count()
}

/// Per subscription: (first write, last write), seconds after the run's first write.
fn spans(writes: &[Write]) -> BTreeMap<String, (f64, f64)> {
    let Some(t0) = writes.iter().map(|w| w.at).min() else {
        return BTreeMap::new();
    };
    let mut spans: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for w in writes {
        let t = (w.at - t0).as_seconds_f64();
        let e = spans.entry(w.subscription.clone()).or_insert((t, t));
        e.0 = e.0.min(t);
        e.1 = e.1.max(t);
    }
    spans
}

/// Writes per `bin` seconds since the first.
fn histogram(writes: &[Write], bin: f64) -> Vec<usize> {
    let Some(t0) = writes.iter().map(|w| w.at).min() else {
        return Vec::new();
    };
    let mut bins = Vec::new();
    for w in writes {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((w.at - t0).as_seconds_f64() / bin) as usize;
        if bins.len() <= i {
            bins.resize(i + 1, 0);
        }
        bins[i] += 1;
    }
    bins
}

/// 5 subscriptions, one registry each, 60 clusters: 300 writes, 60 per subscription's bucket, beyond the
/// client's burst of 20. The plan is sorted by registry (one subscription after another); the writes must
/// not be: among the first ten every subscription appears, and every subscription's writes overlap in time
/// with every other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_enforce_writes_to_every_subscription_at_once() {
    let shape = Shape {
        subscriptions: 5,
        registries: 5,
        clusters: 60,
    };
    // Azure's shape, refilled 2× faster: a burst, then a steady rate. The client stays a margin below it
    // (capacity <= server capacity - server refill per second, as the defaults do).
    let server = BucketLimit {
        capacity: 40,
        refill_per_sec: 20,
    };
    let client = BucketSpec {
        capacity: 20.0,
        refill_per_sec: 18.0,
    };
    let emu = estate(shape, server, 0).await;
    let (report, wall, writes, throttled) = cold_enforce(&emu, &engine(&emu, client)).await;
    assert!(report.complete, "{}", report.inventory);
    assert_eq!(repaired(&report), 300);
    assert_eq!(writes.len(), 300);
    assert_eq!(throttled, 0, "the client's buckets keep it under ARM's");
    let first: BTreeSet<&str> = writes[..10]
        .iter()
        .map(|w| w.subscription.as_str())
        .collect();
    assert_eq!(
        first.len(),
        5,
        "subscriptions among the first ten writes: {first:?}"
    );
    let spans = spans(&writes);
    println!("writes per 0.25 s: {:?}", histogram(&writes, 0.25));
    let latest_start = spans.values().map(|s| s.0).fold(0.0, f64::max);
    let earliest_end = spans.values().map(|s| s.1).fold(f64::MAX, f64::min);
    println!(
        "cold enforce, 300 writes in 5 subscriptions: {wall:.2} s; per subscription (first, last write): {spans:?}"
    );
    assert!(
        latest_start < earliest_end,
        "every subscription's writes overlap: {spans:?}"
    );
    emu.shutdown().await;
}

/// Another run of the same identity has just drained the subscription's write bucket. A fresh handler does not
/// fire its assumed burst into it: one probe learns that nothing (or little) is left, and the rest are paced
/// by the refill. At most the probe meets a 429 (and waits its Retry-After); every pair is attached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_handler_learns_a_drained_bucket_from_its_first_answer() {
    let shape = Shape {
        subscriptions: 1,
        registries: 1,
        clusters: 12,
    };
    // A slow refill, so the drained bucket is still nearly empty when the writes start (the inventory
    // before them takes a moment): a client trusting its full start would fire all 12 at once.
    let server = BucketLimit {
        capacity: 40,
        refill_per_sec: 2,
    };
    let client = BucketSpec {
        capacity: 30.0,
        refill_per_sec: 1.8,
    };
    let emu = estate(shape, server, 0).await;
    let sub = emu.control().subscriptions()[0].clone();
    // The other run: the same principal's writes until ARM says no more (resource-group PUTs the handler may
    // not make still count: ARM throttles before it authorizes).
    let http = reqwest::Client::new();
    let token = emu.control().handler_token();
    let url = format!(
        "{}/subscriptions/{sub}/resourcegroups/drain?api-version={GROUPS_API}",
        emu.base_url().trim_end_matches('/')
    );
    let mut drained = 0;
    for _ in 0..200 {
        let status = http
            .put(&url)
            .bearer_auth(&token)
            .json(&serde_json::json!({"location": "westeurope"}))
            .send()
            .await
            .unwrap()
            .status();
        if status.as_u16() == 429 {
            break;
        }
        drained += 1;
    }
    assert!(drained >= 40, "the bucket was drained ({drained} writes)");
    let (report, wall, writes, throttled) = cold_enforce(&emu, &engine(&emu, client)).await;
    println!(
        "after a drain: {} writes in {wall:.2} s, {throttled} answered 429",
        writes.len()
    );
    assert!(report.complete, "{}", report.inventory);
    assert_eq!(repaired(&report), 12);
    assert!(throttled <= 1, "{throttled} writes met a 429");
    emu.shutdown().await;
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Figures, not a pass/fail: a cold enforce at a modest size across several subscriptions, with ARM's write
/// bucket scaled down to `WT_BURST` + `WT_REFILL`/s (the client a margin below, as the defaults are) and `WT_LATENCY_MS` per request. Prints the wall time of the run and of its write phase against
/// the least time the buckets allow:
/// `lower_bound = max over buckets (writes − burst)⁺ / refill`, plus latency terms (the last answer, and
/// writes × latency / concurrency when that is larger).
///
/// `cargo test --test write_throughput -- --ignored --nocapture cold_enforce_figures`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "figures: about 30 s (about 100 s before the writes were interleaved)"]
async fn cold_enforce_figures() {
    let shape = Shape {
        subscriptions: env_or("WT_SUBSCRIPTIONS", 5),
        registries: env_or("WT_REGISTRIES", 10),
        clusters: env_or("WT_CLUSTERS", 100),
    };
    let burst = u32::try_from(env_or("WT_BURST", 40)).unwrap();
    let refill = u32::try_from(env_or("WT_REFILL", 10)).unwrap();
    let latency_ms = env_or("WT_LATENCY_MS", 5) as u64;
    let server = BucketLimit {
        capacity: burst,
        refill_per_sec: refill,
    };
    // As the defaults sit below ARM's: 90 % of the burst and of the refill, and at most the burst less one
    // second of refill (the emulator, like ARM, refills in whole-second steps).
    let client = BucketSpec {
        capacity: (f64::from(burst) * 0.9)
            .min(f64::from(burst.saturating_sub(refill)))
            .max(1.0),
        refill_per_sec: f64::from(refill) * 0.9,
    };
    let emu = estate(shape, server, latency_ms).await;
    let engine = engine(&emu, client);
    let concurrency = engine.config().max_concurrency;
    let (report, wall, writes, throttled) = cold_enforce(&emu, &engine).await;
    assert!(report.complete, "{}", report.inventory);
    let mut per_bucket: BTreeMap<String, u64> = BTreeMap::new();
    for w in &writes {
        *per_bucket.entry(w.subscription.clone()).or_default() += 1;
    }
    let over = |capacity: f64, rate: f64| {
        per_bucket
            .values()
            .map(|&n| (n as f64 - capacity).max(0.0) / rate)
            .fold(0.0, f64::max)
    };
    let latency = latency_ms as f64 / 1000.0;
    let latency_terms =
        |bound: f64| bound.max(writes.len() as f64 * latency / concurrency as f64) + latency;
    let lower_bound = latency_terms(over(f64::from(burst), f64::from(refill)));
    let client_bound = latency_terms(over(client.capacity, client.refill_per_sec));
    let spans = spans(&writes);
    let write_phase = spans.values().map(|s| s.1).fold(0.0, f64::max);
    println!(
        "cold enforce: {} clusters × {} registries in {} subscriptions, {} writes {per_bucket:?}",
        shape.clusters,
        shape.registries,
        shape.subscriptions,
        writes.len()
    );
    println!(
        "  ARM write bucket {burst} + {refill}/s per subscription, client {} + {}/s, {latency_ms} ms latency, {concurrency} slots",
        client.capacity, client.refill_per_sec
    );
    println!(
        "  wall {wall:.2} s (write phase {write_phase:.2} s); lower_bound {lower_bound:.2} s; ratio {:.2} (write phase {:.2}); bound of the client's own margin {client_bound:.2} s; 429s {throttled}",
        wall / lower_bound,
        write_phase / lower_bound
    );
    println!("  per subscription (first, last write): {spans:?}");
    assert_eq!(repaired(&report), writes.len());
    emu.shutdown().await;
}
