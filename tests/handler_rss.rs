//! Peak memory of the handler during a steady-state verification at scale (issue 15, point 2): the estate is
//! built in the in-process emulator (clusters through ARM, every pair's AcrPull granted directly), then the
//! handler binary runs `verify --output json` (written to a file) as its own process (so the emulator's memory is not counted) through Resource
//! Graph and through ARM lists, and its peak RSS is printed — the kernel's figure from `/usr/bin/time -f %M`
//! when that exists, else the last `VmHWM` polled from `/proc/<pid>/status`.
//!
//! Ignored (it takes minutes and a few hundred MB): run it with
//! `cargo test --release --test handler_rss -- --ignored --nocapture`. `RSS_CLUSTERS` (10,000),
//! `RSS_REGISTRIES` (20), `RSS_PATHS` (`graph,arm`) and `RSS_HANDLER` (handler binaries to measure,
//! comma-separated, side by side on one estate, instead of this build's) adjust it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator, SubscriptionConfig};
use futures::StreamExt;

const SUBSCRIPTIONS: usize = 5;
const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Clusters × registries, every pair granted AcrPull at the registry (the steady state).
async fn steady_estate(clusters: usize, registries: usize) -> RunningEmulator {
    let mut config = EmulatorConfig::for_tests();
    let tenant = config.default_tenant.clone();
    config.subscriptions = (1..=SUBSCRIPTIONS)
        .map(|i| {
            SubscriptionConfig::new(
                format!("{i}{i}{i}{i}{i}{i}{i}{i}-0000-4000-8000-00000000000{i}"),
                &tenant,
            )
        })
        .collect();
    config.settings.cluster_provisioning_ms = 1;
    config.faults.throttling = false;
    // Memory, not throttling, is measured here: Resource Graph's quota would only add waiting.
    config.faults.resource_graph_quota = 1_000_000;
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
    let registry_ids: Vec<String> = (0..registries)
        .map(|r| {
            RegistrySpec::new(&subs[r % SUBSCRIPTIONS], "platform", &format!("acr{r:02}"))
                .tag("acr-autoattach", "*")
        })
        .map(|spec| {
            let id = spec.id();
            let admin = admin.clone();
            async move {
                admin.put_registry(&spec).await.unwrap();
                id
            }
        })
        .collect::<futures::stream::FuturesOrdered<_>>()
        .collect()
        .await;
    let specs: Vec<ClusterSpec> = (0..clusters)
        .map(|c| {
            ClusterSpec::new(&subs[c % SUBSCRIPTIONS], "apps", &format!("aks{c:05}"))
                .tag("env", "prod")
        })
        .collect();
    let admin_ref = &admin;
    futures::stream::iter(specs.iter())
        .for_each_concurrent(32, |spec| async move {
            admin_ref.put_cluster(spec).await.unwrap();
        })
        .await;
    let kubelets: Vec<String> = futures::stream::iter(specs.iter())
        .map(|spec| async move {
            let body = admin_ref
                .wait_cluster_succeeded(&spec.id(), Duration::from_mins(2))
                .await
                .unwrap();
            body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let control = emu.control();
    for kubelet in &kubelets {
        for registry in &registry_ids {
            control.grant(kubelet, ACR_PULL, registry);
        }
    }
    emu
}

/// Peak RSS in KiB of `handler verify` against the emulator, and its wall time.
async fn measure(emu: &RunningEmulator, handler: &str, resource_graph: bool) -> (u64, f64) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let timed = Path::new("/usr/bin/time").exists();
    let mut command = if timed {
        let mut c = tokio::process::Command::new("/usr/bin/time");
        c.args(["-f", "peak-rss-kib=%M", handler]);
        c
    } else {
        tokio::process::Command::new(handler)
    };
    command
        .args([
            "verify",
            "--output",
            "json",
            "--budget-secs",
            "900",
            "--out",
        ])
        .arg(out.path())
        .envs(emu.env())
        .env(
            "AUTOATTACH_USE_RESOURCE_GRAPH",
            if resource_graph { "true" } else { "false" },
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text)
            .await
            .unwrap();
        text
    });
    let mut polled = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        // Without GNU time: the handler's own high-water mark, read while it runs (its process is the
        // grandchild's only when timed, so this is the fallback only).
        if !timed
            && let Some(pid) = child.id()
            && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            polled = kib;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    let stderr = reader.await.unwrap();
    // The summary line: "{c} clusters × {r} registries: {n} pairs ({n} compliant); …" and nothing partial.
    let summary = stderr
        .lines()
        .find(|l| l.contains(" pairs ("))
        .unwrap_or_else(|| panic!("no summary ({status}):\n{stderr}"));
    let pairs = summary
        .split(": ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default();
    assert!(
        summary.contains(&format!("({pairs} compliant)")) && !summary.contains("partial"),
        "{status}: {summary}\n{stderr}"
    );
    let peak = if timed {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("peak-rss-kib="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no figure from /usr/bin/time: {stderr}"))
    } else {
        polled
    };
    (peak, seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes and hundreds of MB: run with --ignored --nocapture"]
async fn steady_state_verification_peak_rss() {
    let clusters = env_number("RSS_CLUSTERS", 10_000);
    let registries = env_number("RSS_REGISTRIES", 20);
    let handlers: Vec<String> = std::env::var("RSS_HANDLER").map_or_else(
        |_| vec![env!("CARGO_BIN_EXE_acr-autoattach").to_owned()],
        |list| list.split(',').map(str::to_owned).collect(),
    );
    let seeding = Instant::now();
    let emu = steady_estate(clusters, registries).await;
    println!(
        "estate: {clusters} clusters × {registries} registries in {SUBSCRIPTIONS} subscriptions = {} pairs, all granted ({:.0} s to build)",
        clusters * registries,
        seeding.elapsed().as_secs_f64()
    );
    let paths = std::env::var("RSS_PATHS").unwrap_or_else(|_| "graph,arm".into());
    for (label, resource_graph) in [("Resource Graph", true), ("ARM lists", false)] {
        if !paths.contains(if resource_graph { "graph" } else { "arm" }) {
            continue;
        }
        for handler in &handlers {
            let (kib, seconds) = measure(&emu, handler, resource_graph).await;
            println!(
                "steady-state verify through {label:<14}: handler peak RSS {:>6.1} MiB, {seconds:.1} s ({handler})",
                kib as f64 / 1024.0
            );
        }
    }
    emu.shutdown().await;
}
