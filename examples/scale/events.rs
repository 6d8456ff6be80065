//! The event path, through the whole loopback topology (emulator, Event Grid, the Functions host simulator
//! running the release handler): what one cluster-create event costs, and a burst of cluster creations.

use std::path::Path;
use std::time::{Duration, Instant};

use acr_autoattach::cli::estate::{self, EstateSpec};
use acr_autoattach::cli::testbed::{Testbed, TestbedOptions};
use anyhow::Context as _;
use azure_emulator::FaultConfig;
use azure_emulator::limits::RequestClass;
use serde::Serialize;

use crate::bound::Requests;

/// Settings every topology of this benchmark shares.
#[derive(Debug, Clone)]
pub struct Pace {
    pub refill_scale: u32,
    pub latency_ms: u64,
}

/// Requests the handler sent for one cluster-create (both deliveries: on accept and on completion).
#[derive(Debug, Clone, Serialize)]
pub struct EventCost {
    pub registries: usize,
    pub subscriptions: usize,
    /// The first cluster after the handler started (cold: token, subscription list).
    pub cold: Requests,
    /// The next cluster (warm process).
    pub warm: Requests,
    pub pairs_attached_cold: u64,
    pub pairs_attached_warm: u64,
    pub deliveries: usize,
    /// N + S + 3, the target of issue 15.
    pub target: u64,
    /// `az aks update --attach-acr` for the same N: 13 requests per registry.
    pub az_attach_acr: u64,
}

/// A burst of cluster creations.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub clusters: usize,
    pub registries: usize,
    pub pairs: usize,
    pub pairs_attached: u64,
    pub all_attached: bool,
    /// From the first PUT to the last cluster ready (all created within a minute when below 60).
    pub last_cluster_ready_s: f64,
    /// From the last cluster ready to the last pair attached.
    pub tail_s: f64,
    /// max over subscriptions of max(0, writes − capacity) / refill, from the start of the burst.
    pub write_bucket_bound_s: f64,
    /// `tail_s ≤ 1.5 × write_bucket_bound_s`; absent when the writes fit in the buckets' burst (bound 0).
    pub tail_within_1_5x_bound: Option<bool>,
    pub invocations: usize,
    pub failed_invocations: usize,
    /// Invocations answered after Event Grid's 30 s.
    pub answered_after_30s: usize,
    pub slowest_invocation_s: f64,
    /// Median and 90th percentile of the invocations' durations as the host measured them.
    pub invocation_p50_s: f64,
    pub invocation_p90_s: f64,
    /// The longest any answered invocation waited between the host's dispatch and the handler taking it up
    /// (the handler's `queuedSeconds`, from `Metadata.sys.UtcNow`), when the handler reports it.
    pub handler_queued_max_s: Option<f64>,
    /// The most connections seen waiting in a loopback listener's accept queue (`NETLINK_SOCK_DIAG`, sampled
    /// every 50 ms): invocations the handler had not taken up yet.
    pub max_accept_backlog: u64,
    /// PUTs the handler sent (a PUT that finds the assignment already there is counted too).
    pub put_requests: u64,
    /// CPU seconds during the burst of the handler process and of this one (emulator, Event Grid, host).
    pub handler_cpu_s: Option<f64>,
    pub benchmark_cpu_s: Option<f64>,
    /// `/proc/loadavg`'s 1-minute figure when the burst began (the machine is shared).
    pub load_average: Option<f64>,
    /// Pull assignments present in the emulator at whole seconds after the first PUT: `(second, count)`.
    pub timeline: Vec<(u64, u64)>,
    pub requests: Requests,
}

/// Role assignments in the emulator's subscriptions now.
fn assignments(control: &azure_emulator::EmulatorControl, subs: &[String]) -> u64 {
    subs.iter()
        .map(|s| control.assignments_in_subscription(s) as u64)
        .sum()
}

/// The pid of the running process whose executable is `binary`.
fn pid_of(binary: &Path) -> Option<String> {
    let wanted = std::fs::canonicalize(binary).ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let exe = std::fs::read_link(entry.path().join("exe")).ok()?;
            (name.bytes().all(|b| b.is_ascii_digit()) && exe == wanted).then_some(name)
        })
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at.min(sorted.len() - 1)].as_secs_f64()
}

async fn topology(
    binary: &Path,
    spec: EstateSpec,
    pace: &Pace,
    clusters: usize,
) -> anyhow::Result<Testbed> {
    // The readiness wait as deployed (20 s, so an event's budget is Event Grid's 27 s), not the tests' 3 s.
    let mut options =
        TestbedOptions::for_tests(vec![binary.display().to_string(), "serve".to_owned()])
            .setting(
                "AUTOATTACH_RATE_LIMIT_SCALE",
                &pace.refill_scale.to_string(),
            )
            .setting("AUTOATTACH_READY_TIMEOUT_SECS", "20");
    let tenant = options.emulator.default_tenant.clone();
    options.emulator.subscriptions = spec.subscription_configs(&tenant);
    let mut faults = FaultConfig::default().with_refill_scale(pace.refill_scale);
    faults.latency_ms = pace.latency_ms;
    options.emulator.faults = faults;
    let wanted = EstateSpec { clusters, ..spec }.max_assignments_per_subscription() + 100;
    let limit = &mut options.emulator.settings.role_assignment_limit;
    *limit = (*limit).max(wanted);
    // Azure's: Event Grid waits 30 s for an answer.
    options.publisher.delivery_timeout = Duration::from_secs(30);
    Testbed::start(options)
        .await
        .context("the loopback topology did not start")
}

/// Builds the registries with Event Grid's subscription removed (and restored after), so the handler process
/// has sent nothing when the first cluster's events arrive: the first event's cost is a cold process's.
async fn registries_unseen(bed: &Testbed, spec: EstateSpec) -> anyhow::Result<()> {
    let subscriptions = bed.publisher.subscriptions();
    for s in &subscriptions {
        bed.publisher.unsubscribe(&s.name);
    }
    let subs = bed.emulator.control().subscriptions();
    estate::build_registries(&bed.admin, &subs, spec.registries).await?;
    for s in subscriptions {
        bed.publisher
            .subscribe(s)
            .await
            .context("Event Grid's subscription could not be restored")?;
    }
    Ok(())
}

fn handler_requests(bed: &Testbed) -> Requests {
    Requests::from_stats(&bed.stats(), &bed.emulator.control().admin_principal_id())
}

async fn settle(bed: &Testbed) -> anyhow::Result<()> {
    if !bed.wait_idle(Duration::from_mins(5)).await {
        anyhow::bail!("Event Grid still had deliveries in flight after 5 minutes");
    }
    Ok(())
}

fn attached(requests: &Requests) -> u64 {
    requests
        .by_kind
        .get("PUT roleAssignments")
        .copied()
        .unwrap_or(0)
}

/// Two clusters created one after the other in an estate of `spec.registries` registries in
/// `spec.subscriptions` subscriptions; the handler's requests for each.
pub async fn event_cost(binary: &Path, spec: EstateSpec, pace: &Pace) -> anyhow::Result<EventCost> {
    let bed = topology(binary, spec, pace, 2).await?;
    let control = bed.emulator.control();
    let subs = control.subscriptions();
    registries_unseen(&bed, spec).await?;
    let mut figures = Vec::new();
    for index in 0..2 {
        control.reset_stats();
        control.refill_limits();
        estate::build_clusters(&bed.admin, &subs, index..index + 1, Duration::from_mins(1)).await?;
        settle(&bed).await?;
        figures.push(handler_requests(&bed));
    }
    let deliveries = bed.host.invocations().len();
    bed.shutdown().await;
    let warm = figures.pop().unwrap_or_default();
    let cold = figures.pop().unwrap_or_default();
    Ok(EventCost {
        registries: spec.registries,
        subscriptions: spec.subscriptions,
        pairs_attached_cold: attached(&cold),
        pairs_attached_warm: attached(&warm),
        cold,
        warm,
        deliveries,
        target: (spec.registries + spec.subscriptions + 3) as u64,
        az_attach_acr: 13 * spec.registries as u64,
    })
}

/// `clusters` clusters PUT as fast as the admin can (32 at a time) into an estate of `spec`'s registries, each
/// attached by the handler through its events.
pub async fn burst(
    binary: &Path,
    spec: EstateSpec,
    clusters: usize,
    pace: &Pace,
) -> anyhow::Result<Burst> {
    let bed = topology(binary, spec, pace, clusters).await?;
    let control = bed.emulator.control();
    let subs = control.subscriptions();
    registries_unseen(&bed, spec).await?;
    control.reset_stats();
    control.refill_limits();
    let before = assignments(&control, &subs);
    let pairs = clusters * spec.registries;
    let load = load_average();
    let handler_pid = pid_of(binary);
    let cpu = |pid: Option<&str>| pid.and_then(crate::handler::cpu_seconds);
    let cpu_before = (cpu(handler_pid.as_deref()), cpu(Some("self")));
    let started = Instant::now();
    // Watch the assignments appear and the handler's accept queue while the clusters are created.
    let watch = {
        let control = bed.emulator.control();
        let subs = subs.clone();
        tokio::spawn(async move {
            let mut timeline = Vec::new();
            let mut max_backlog = 0;
            let mut last_attached = None;
            while started.elapsed() < Duration::from_mins(10) {
                let present = assignments(&control, &subs).saturating_sub(before);
                max_backlog = max_backlog.max(crate::backlog::max_accept_backlog().unwrap_or(0));
                let second = started.elapsed().as_secs();
                if timeline.last().is_none_or(|(s, _)| *s < second) {
                    timeline.push((second, present));
                }
                if present >= pairs as u64 {
                    last_attached = Some(started.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (last_attached, timeline, max_backlog)
        })
    };
    estate::build_clusters(&bed.admin, &subs, 0..clusters, Duration::from_mins(2)).await?;
    let last_ready = started.elapsed();
    let (last_attached, timeline, max_accept_backlog) = watch.await?;
    settle(&bed).await?;
    let since = |after: Option<f64>, before: Option<f64>| after.zip(before).map(|(a, b)| a - b);
    let handler_cpu_s = since(cpu(handler_pid.as_deref()), cpu_before.0);
    let benchmark_cpu_s = since(cpu(Some("self")), cpu_before.1);
    let requests = handler_requests(&bed);
    let faults = control.faults();
    let bound = control
        .bucket_usage()
        .iter()
        .filter(|u| u.class == RequestClass::Write)
        .map(|u| {
            let granted = u.requests.saturating_sub(u.throttled) as f64;
            (granted - f64::from(faults.writes.capacity)).max(0.0)
                / f64::from(faults.writes.refill_per_sec.max(1))
        })
        .fold(0.0, f64::max);
    let invocations = bed.host.invocations();
    let mut durations: Vec<Duration> = invocations.iter().map(|i| i.duration).collect();
    durations.sort();
    let handler_queued_max_s = invocations
        .iter()
        .filter_map(|i| i.return_value.as_ref()?.get("queuedSeconds")?.as_f64())
        .reduce(f64::max);
    let tail = last_attached.map_or(f64::INFINITY, |t| {
        t.saturating_sub(last_ready).as_secs_f64()
    });
    let figures = Burst {
        clusters,
        registries: spec.registries,
        pairs,
        pairs_attached: assignments(&control, &subs).saturating_sub(before),
        all_attached: last_attached.is_some(),
        last_cluster_ready_s: last_ready.as_secs_f64(),
        tail_s: tail,
        write_bucket_bound_s: bound,
        tail_within_1_5x_bound: (bound > 0.0).then_some(tail <= 1.5 * bound),
        invocations: invocations.len(),
        failed_invocations: invocations.iter().filter(|i| !i.succeeded()).count(),
        answered_after_30s: invocations
            .iter()
            .filter(|i| i.duration > Duration::from_secs(30))
            .count(),
        slowest_invocation_s: durations.last().copied().unwrap_or_default().as_secs_f64(),
        invocation_p50_s: percentile(&durations, 0.5),
        invocation_p90_s: percentile(&durations, 0.9),
        handler_queued_max_s,
        max_accept_backlog,
        put_requests: attached(&requests),
        handler_cpu_s,
        benchmark_cpu_s,
        load_average: load,
        timeline,
        requests,
    };
    bed.shutdown().await;
    Ok(figures)
}
