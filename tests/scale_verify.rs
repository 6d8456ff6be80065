//! Scale figures: a verification run over 500 and 1000 clusters × 10 registries in 5 subscriptions, with the
//! number of Azure requests printed for each. The inventory grows with subscriptions, registries and result pages,
//! never with (cluster, registry) pairs: doubling the pairs adds only the extra pages.
//!
//! The estate is seeded fast (throttling off for the seeding, clusters provisioned at once, the steady state's
//! assignments granted directly); the measured runs go through the real engine and client against the emulator
//! with ARM's throttling on, and only the handler identity's requests are counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/credential.rs"]
mod credential;

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_autoattach::azure::{AzureClient, ClientOptions};
use acr_autoattach::cli::estate::{self, EstateSpec};
use acr_autoattach::core::model::{ACR_PULL_GUID, Mode, PairStatus, VerificationReport};
use acr_autoattach::runtime::config::{Config, MapEnv};
use acr_autoattach::runtime::engine::Engine;
use azure_emulator::admin::ArmAdmin;
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use credential::EmulatorCredential;
use url::Url;

const SUBSCRIPTIONS: usize = 5;
const REGISTRIES: usize = 10;

struct Figures {
    clusters: usize,
    pairs: usize,
    /// (label, run) in a fixed order, the same for every estate size.
    runs: Vec<(&'static str, Run)>,
}

struct Run {
    engine_requests: u64,
    emulator_requests: u64,
    /// 429 answers (ARM's buckets are on): the client's limiter should keep this at zero.
    throttled: u64,
    by_operation: String,
    seconds: f64,
}

async fn estate(clusters: usize) -> RunningEmulator {
    let spec = EstateSpec {
        clusters,
        registries: REGISTRIES,
        subscriptions: SUBSCRIPTIONS,
    };
    let mut config = EmulatorConfig::for_tests();
    config.subscriptions = spec.subscription_configs(&config.default_tenant.clone());
    config.settings.cluster_provisioning_ms = 1;
    config.faults.throttling = false;
    let emu = Emulator::start(config).await.unwrap();
    let admin = ArmAdmin::new(emu.base_url(), emu.control().admin_token());
    estate::build(&admin, &emu.control().subscriptions(), spec)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Measured runs meet ARM's real buckets.
    emu.control().update_faults(|f| f.throttling = true);
    emu
}

fn engine(emu: &RunningEmulator, resource_graph: bool) -> Engine {
    let base = emu.base_url();
    let config = Config::from_env(&MapEnv::new([
        ("AUTOATTACH_ARM_ENDPOINT", base.as_str()),
        ("AUTOATTACH_GRAPH_ENDPOINT", base.as_str()),
        (
            "AUTOATTACH_USE_RESOURCE_GRAPH",
            if resource_graph { "true" } else { "false" },
        ),
    ]))
    .unwrap();
    let url = Url::parse(&base).unwrap();
    let mut options = ClientOptions::new(
        url.clone(),
        url,
        Arc::new(EmulatorCredential::for_handler(emu.control())),
    );
    options.max_concurrency = config.max_concurrency;
    Engine::new(config, AzureClient::new(options).unwrap())
}

async fn measured(emu: &RunningEmulator, engine: &Engine, mode: Mode) -> (VerificationReport, Run) {
    emu.control().reset_stats();
    let started = Instant::now();
    let report = engine.verify(Duration::from_mins(5), &[], Some(mode)).await;
    let seconds = started.elapsed().as_secs_f64();
    let stats = emu
        .control()
        .stats()
        .for_caller(&emu.control().handler_principal_id());
    let by_operation = stats
        .by_operation()
        .iter()
        .map(|(op, n)| format!("{op}={n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let run = Run {
        engine_requests: report.azure_requests,
        emulator_requests: stats.total(),
        throttled: stats.by_status().get(&429).copied().unwrap_or_default(),
        by_operation,
        seconds,
    };
    (report, run)
}

fn count(report: &VerificationReport, status: PairStatus) -> usize {
    report.pairs.iter().filter(|p| p.status == status).count()
}

async fn figures(clusters: usize) -> Figures {
    let emu = estate(clusters).await;
    let (with_graph, arm_only) = (engine(&emu, true), engine(&emu, false));
    let pairs = clusters * REGISTRIES;
    let mut runs = Vec::new();

    // Nothing attached yet: an audit run finds every pair missing (Resource Graph, then ARM lists).
    let mut missing = Vec::new();
    for (label, engine) in [
        ("audit, Resource Graph", &with_graph),
        ("audit, ARM lists", &arm_only),
    ] {
        let (report, run) = measured(&emu, engine, Mode::Audit).await;
        assert!(report.complete, "{}", report.inventory);
        assert_eq!(count(&report, PairStatus::Missing), pairs);
        runs.push((label, run));
        missing = report.pairs;
    }

    // Steady state: every pair holds AcrPull (granted directly, as if earlier runs had made them).
    let control = emu.control();
    for pair in &missing {
        control.grant(
            pair.principal_id.as_deref().unwrap(),
            ACR_PULL_GUID,
            pair.registry_id.as_str(),
        );
    }
    for (label, engine) in [
        ("enforce, steady, Resource Graph", &with_graph),
        ("enforce, steady, ARM lists", &arm_only),
    ] {
        let (report, steady) = measured(&emu, engine, Mode::Enforce).await;
        assert!(report.complete, "{}", report.inventory);
        assert_eq!(count(&report, PairStatus::Compliant), pairs);
        assert!(
            !steady.by_operation.contains("PUT"),
            "a compliant estate needs no write: {}",
            steady.by_operation
        );
        runs.push((label, steady));
    }
    emu.shutdown().await;
    Figures {
        clusters,
        pairs,
        runs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_requests_do_not_grow_with_pairs() {
    let mut all = Vec::new();
    for clusters in [500, 1000] {
        all.push(figures(clusters).await);
    }
    println!(
        "verification of {REGISTRIES} registries in {SUBSCRIPTIONS} subscriptions (handler's requests):"
    );
    for f in &all {
        for (label, run) in &f.runs {
            println!(
                "  {:>4} clusters × {REGISTRIES} = {:>5} pairs, {label:<31}: {:>3} requests (emulator saw {:>3}) in {:.1} s — {}",
                f.clusters,
                f.pairs,
                run.engine_requests,
                run.emulator_requests,
                run.seconds,
                run.by_operation
            );
        }
    }
    let (small, large) = (&all[0], &all[1]);
    for ((label, s), (_, l)) in small.runs.iter().zip(&large.runs) {
        assert_eq!((s.throttled, l.throttled), (0, 0), "{label}: throttled");
        // The engine's own count is what the emulator saw (nothing hidden).
        assert_eq!(s.engine_requests, s.emulator_requests, "{label}");
        assert_eq!(l.engine_requests, l.emulator_requests, "{label}");
        // Twice the pairs: at most a few more result pages (1,000 rows each), never a request per pair.
        assert!(
            l.engine_requests <= s.engine_requests + 10,
            "{label}: {} → {} requests for {} → {} pairs",
            s.engine_requests,
            l.engine_requests,
            small.pairs,
            large.pairs
        );
        assert!(
            l.engine_requests < 50,
            "{label}: {} requests for {} pairs",
            l.engine_requests,
            large.pairs
        );
    }
}
