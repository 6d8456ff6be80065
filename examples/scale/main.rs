//! The scale benchmark (issue 15; figures and method in BENCHMARKS.md):
//!
//! `cargo run --release --example scale -- --clusters N --registries M --subscriptions S --latency-ms L
//! [--refill-scale K] [--burst B] [--json]`
//!
//! Builds the estate in the emulator (ARM throttling per principal per subscription, Resource Graph's quota,
//! `L` ms on every request, refills `K` times Azure's), then runs the release handler as its own process,
//! side by side: audit, cold enforce (every pair missing), steady state through Resource Graph and through ARM
//! lists, and the naive per-pair baseline (`explain` once per pair, on a capped sample). For each: wall
//! seconds, requests by kind, 429s, the handler's peak RSS, `lower_bound_s` and `ratio`. Then the cost of one
//! cluster-create event and, with `--burst B`, B clusters created at once, through Event Grid and the
//! Functions host simulator.

mod backlog;
mod bound;
mod events;
mod footprint;
mod handler;
mod report;

use std::path::Path;
use std::time::{Duration, Instant};

use acr_autoattach::cli::estate::{self, EstateSpec};
use anyhow::Context as _;
use azure_emulator::admin::ArmAdmin;
use azure_emulator::{Emulator, EmulatorConfig, FaultConfig, RunningEmulator};
use clap::Parser;
use futures::StreamExt as _;
use serde_json::Value;

use bound::{Limits, Requests, lower_bound};
use report::{Document, Extrapolation, RunFigures};

/// Role assignments Azure allows per subscription.
const AZURE_ASSIGNMENT_LIMIT: usize = 4_000;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "scale",
    about = "Scale benchmark of acr-autoattach against the emulator"
)]
pub struct Args {
    #[arg(long, default_value_t = 2_000)]
    pub clusters: usize,
    #[arg(long, default_value_t = 10)]
    pub registries: usize,
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub subscriptions: u16,
    /// Latency added to every emulator request, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub latency_ms: u64,
    /// ARM buckets refill K times faster and Resource Graph's window is K times shorter (handler and emulator).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub refill_scale: u32,
    /// The handler's concurrent Azure requests (AUTOATTACH_MAX_CONCURRENCY).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The naive baseline checks at most this many pairs (one `explain` process each) and extrapolates.
    #[arg(long, default_value_t = 100)]
    pub naive_pairs: usize,
    /// Also create B clusters at once through Event Grid and the Functions host (0: off).
    #[arg(long, default_value_t = 0)]
    pub burst: usize,
    /// The handler's verification budget (AUTOATTACH_VERIFY_BUDGET_SECS).
    #[arg(long, default_value_t = 540)]
    pub budget_secs: u64,
    /// One JSON document on stdout instead of the table (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Skip the timer runs and the naive baseline: only the event path (and `--burst`), for a quick look.
    #[arg(long)]
    pub events_only: bool,
}

impl Args {
    fn spec(&self) -> EstateSpec {
        EstateSpec {
            clusters: self.clusters,
            registries: self.registries,
            subscriptions: usize::from(self.subscriptions),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let document = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", report::table(&document));
    }
    Ok(())
}

/// The emulator for the measured runs, and the note when the assignment limit had to be raised.
fn emulator_config(args: &Args) -> (EmulatorConfig, usize, Option<String>) {
    let spec = args.spec();
    let mut config = EmulatorConfig::for_tests();
    let tenant = config.default_tenant.clone();
    config.subscriptions = spec.subscription_configs(&tenant);
    config.settings.cluster_provisioning_ms = 1;
    let mut faults = FaultConfig::default().with_refill_scale(args.refill_scale);
    faults.throttling = false;
    config.faults = faults;
    // The handler identity's own rights are assignments too (two per subscription).
    let needed = spec.max_assignments_per_subscription() + 2;
    let mut note = None;
    if needed > AZURE_ASSIGNMENT_LIMIT {
        config.settings.role_assignment_limit = needed + 100;
        note = Some(format!(
            "this estate needs {needed} role assignments in one subscription, more than the {AZURE_ASSIGNMENT_LIMIT} \
             Azure allows: the emulator's limit was raised to {} (on Azure, group assignments or more \
             subscriptions are required)",
            needed + 100
        ));
    }
    let limit = config.settings.role_assignment_limit;
    (config, limit, note)
}

async fn run(args: &Args) -> anyhow::Result<Document> {
    let total = Instant::now();
    let binary = handler::locate()?;
    let spec = args.spec();
    let (config, assignment_limit, limit_note) = emulator_config(args);
    let emulator = Emulator::start(config)
        .await
        .context("the emulator did not start")?;
    let control = emulator.control();
    let admin = ArmAdmin::new(emulator.base_url(), control.admin_token());
    eprintln!(
        "scale: building {} clusters × {} registries in {} subscriptions",
        spec.clusters, spec.registries, spec.subscriptions
    );
    let seeding = Instant::now();
    let built = estate::build(&admin, &control.subscriptions(), spec).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seeding_s = seeding.elapsed().as_secs_f64();
    control.update_faults(|f| {
        f.throttling = true;
        f.latency_ms = args.latency_ms;
    });
    let limits = Limits::new(&control.faults(), args.concurrency);
    let base_env = handler_env(&emulator, args);
    eprintln!("scale: start-up and footprint of `serve`");
    let footprint = {
        let binary = binary.clone();
        let env = base_env.clone();
        tokio::task::spawn_blocking(move || footprint::measure(&binary, &env)).await??
    };
    let mut runs = Vec::new();
    let timer_runs: &[(&str, &str, bool)] = if args.events_only {
        &[]
    } else {
        &[
            ("audit (Resource Graph)", "audit", true),
            ("audit (ARM lists)", "audit", false),
            ("cold enforce", "enforce", true),
            ("steady state (Resource Graph)", "enforce", true),
            ("steady state (ARM lists)", "enforce", false),
        ]
    };
    for &(name, mode, graph) in timer_runs {
        eprintln!("scale: {name}");
        let mut env = base_env.clone();
        env.push(("AUTOATTACH_MODE".into(), mode.into()));
        env.push(("AUTOATTACH_USE_RESOURCE_GRAPH".into(), graph.to_string()));
        runs.push(timer_figures(&emulator, &binary, &env, &limits, name, args).await?);
    }
    if !args.events_only {
        eprintln!("scale: naive per-pair baseline");
        runs.push(naive(&emulator, &binary, &base_env, &limits, &built, args).await?);
    }
    emulator.shutdown().await;

    let pace = events::Pace {
        refill_scale: args.refill_scale,
        latency_ms: args.latency_ms,
    };
    eprintln!("scale: one cluster-create event");
    let cluster_event = events::event_cost(&binary, spec, &pace).await?;
    let burst = if args.burst > 0 {
        eprintln!("scale: burst of {} clusters", args.burst);
        Some(events::burst(&binary, spec, args.burst, &pace).await?)
    } else {
        None
    };
    Ok(Document {
        machine: report::machine(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        estate: report::EstateFigures {
            clusters: spec.clusters,
            registries: spec.registries,
            subscriptions: spec.subscriptions,
            pairs: spec.pairs(),
            latency_ms: args.latency_ms,
            refill_scale: args.refill_scale,
            concurrency: args.concurrency,
            role_assignment_limit: assignment_limit,
            role_assignment_limit_note: limit_note,
            seeding_s,
        },
        runs,
        cluster_event,
        burst,
        footprint,
        total_s: total.elapsed().as_secs_f64(),
    })
}

/// The handler's app settings: the emulator's endpoints and identity, and the benchmark's pace.
fn handler_env(emulator: &RunningEmulator, args: &Args) -> Vec<(String, String)> {
    let mut env = emulator.env();
    for (k, v) in [
        ("AUTOATTACH_RATE_LIMIT_SCALE", args.refill_scale.to_string()),
        ("AUTOATTACH_MAX_CONCURRENCY", args.concurrency.to_string()),
        (
            "AUTOATTACH_VERIFY_BUDGET_SECS",
            args.budget_secs.to_string(),
        ),
        ("AUTOATTACH_VERIFY_SCHEDULE", "0 0 0 1 1 *".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ] {
        env.push((k.to_owned(), v));
    }
    env
}

/// One VerifyAttachments invocation of a fresh handler process, with full buckets.
async fn timer_figures(
    emulator: &RunningEmulator,
    binary: &Path,
    env: &[(String, String)],
    limits: &Limits,
    name: &str,
    args: &Args,
) -> anyhow::Result<RunFigures> {
    let control = emulator.control();
    control.refill_limits();
    control.reset_stats();
    let timeout = Duration::from_secs(args.budget_secs + 120);
    let emulator_cpu = handler::cpu_seconds("self");
    let run = handler::timer_run(binary, env, timeout).await?;
    let emulator_cpu_s = handler::cpu_seconds("self")
        .zip(emulator_cpu)
        .map(|(after, before)| after - before);
    let requests = Requests::from_stats(&control.stats(), &control.admin_principal_id());
    let bound = lower_bound(
        limits,
        &control.bucket_usage(),
        requests.graph_queries,
        requests.total,
        1.0,
    );
    let mut outcome = run.summary;
    if run.http_status != 200 {
        outcome = serde_json::json!({"httpStatus": run.http_status, "answer": outcome});
    }
    let mut figures = RunFigures::new(
        name,
        run.wall.as_secs_f64(),
        requests,
        run.peak_rss,
        bound,
        outcome,
    );
    figures.handler_cpu_s = run.cpu_s;
    figures.emulator_cpu_s = emulator_cpu_s;
    Ok(figures)
}

/// `explain` once per pair for the first `--naive-pairs` pairs, `--concurrency` at a time, then the figures
/// for every pair extrapolated from the sample.
async fn naive(
    emulator: &RunningEmulator,
    binary: &Path,
    env: &[(String, String)],
    limits: &Limits,
    built: &estate::Estate,
    args: &Args,
) -> anyhow::Result<RunFigures> {
    let control = emulator.control();
    control.refill_limits();
    control.reset_stats();
    let all = built.clusters.len() * built.registries.len();
    let sample: Vec<(&str, &str)> = built
        .clusters
        .iter()
        .flat_map(|c| {
            built
                .registries
                .iter()
                .map(move |r| (c.as_str(), r.as_str()))
        })
        .take(args.naive_pairs)
        .collect();
    let started = Instant::now();
    let results: Vec<anyhow::Result<(Option<i32>, Option<u64>)>> =
        futures::stream::iter(sample.iter())
            .map(|(c, r)| handler::explain(binary, env, c, r))
            .buffer_unordered(args.concurrency.max(1))
            .collect()
            .await;
    let wall = started.elapsed().as_secs_f64();
    let mut in_order = 0;
    let mut peak = None;
    for result in results {
        let (code, rss) = result?;
        in_order += usize::from(code == Some(0));
        peak = peak.max(rss);
    }
    let requests = Requests::from_stats(&control.stats(), &control.admin_principal_id());
    let usage = control.bucket_usage();
    let checked = sample.len().max(1);
    let factor = all as f64 / checked as f64;
    let bound = lower_bound(limits, &usage, requests.graph_queries, requests.total, 1.0);
    let whole = lower_bound(
        limits,
        &usage,
        requests.graph_queries,
        requests.total,
        factor,
    );
    let outcome = serde_json::json!({
        "pairsChecked": sample.len(),
        "pairsInOrder": in_order,
        "pairsInEstate": all,
        "tool": "acr-autoattach explain --json, one process per pair",
    });
    let mut figures = RunFigures::new(
        "naive per-pair baseline",
        wall,
        requests.clone(),
        peak,
        bound,
        outcome,
    );
    figures.note = Some(format!(
        "capped at {} of {all} pairs (--naive-pairs); the extrapolation multiplies the sample by {factor:.1}; \
         peak RSS is the largest of one explain process, sampled every 2 ms",
        sample.len()
    ));
    figures.extrapolated = Some(Extrapolation {
        pairs: all,
        wall_s: wall * factor,
        requests: (requests.total as f64 * factor).round() as u64,
        lower_bound_s: whole.seconds,
        ratio: (whole.seconds > 0.0).then(|| wall * factor / whole.seconds),
    });
    Ok(figures)
}

/// A JSON value's field as text, for the table.
pub fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}
