//! The benchmark's output: one JSON document (`--json`) or a table for people.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::bound::{LowerBound, Requests};
use crate::events::{Burst, EventCost};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub memory_gib: f64,
}

/// nproc, the CPU model and the memory, from `/proc`.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu,
        memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
    }
}

#[derive(Debug, Serialize)]
pub struct EstateFigures {
    pub clusters: usize,
    pub registries: usize,
    pub subscriptions: usize,
    pub pairs: usize,
    pub latency_ms: u64,
    pub refill_scale: u32,
    pub concurrency: usize,
    pub role_assignment_limit: usize,
    /// Set when the estate needs more than Azure's 4,000 assignments per subscription.
    pub role_assignment_limit_note: Option<String>,
    pub seeding_s: f64,
}

/// The naive baseline's figures for every pair of the estate, from its sample.
#[derive(Debug, Serialize)]
pub struct Extrapolation {
    pub pairs: usize,
    pub wall_s: f64,
    pub requests: u64,
    pub lower_bound_s: f64,
    pub ratio: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct RunFigures {
    pub name: String,
    pub wall_s: f64,
    pub requests: u64,
    pub requests_by_kind: std::collections::BTreeMap<String, u64>,
    pub throttled_429: u64,
    pub handler_peak_rss_mib: Option<f64>,
    /// CPU seconds of the handler process and of this process (the emulator, in-process) during the run: where
    /// the wall time went when the machine, not Azure's limits, was the bottleneck.
    pub handler_cpu_s: Option<f64>,
    pub emulator_cpu_s: Option<f64>,
    pub lower_bound_s: f64,
    /// wall / lower bound (absent when the bound is 0).
    pub ratio: Option<f64>,
    pub lower_bound: LowerBound,
    /// The handler's answer (the timer's summary: complete, counts, inventory source, …).
    pub outcome: Value,
    pub note: Option<String>,
    pub extrapolated: Option<Extrapolation>,
}

impl RunFigures {
    pub fn new(
        name: &str,
        wall_s: f64,
        requests: Requests,
        peak_rss: Option<u64>,
        bound: LowerBound,
        outcome: Value,
    ) -> Self {
        Self {
            name: name.to_owned(),
            wall_s,
            requests: requests.total,
            throttled_429: requests.throttled_429,
            requests_by_kind: requests.by_kind,
            handler_peak_rss_mib: peak_rss
                .map(|b| (b as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
            handler_cpu_s: None,
            emulator_cpu_s: None,
            lower_bound_s: bound.seconds,
            ratio: (bound.seconds > 0.0).then(|| wall_s / bound.seconds),
            lower_bound: bound,
            outcome,
            note: None,
            extrapolated: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Document {
    pub machine: Machine,
    pub command: String,
    pub estate: EstateFigures,
    pub runs: Vec<RunFigures>,
    pub cluster_event: EventCost,
    pub burst: Option<Burst>,
    pub footprint: crate::footprint::Footprint,
    pub total_s: f64,
}

fn opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn outcome_line(outcome: &Value) -> String {
    let counts = outcome
        .get("counts")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    if counts.is_empty() {
        return outcome.to_string();
    }
    format!(
        "complete={} pairs={} ({counts}) inventory={}",
        crate::text(outcome, "complete"),
        crate::text(outcome, "pairs"),
        crate::text(outcome, "inventorySource"),
    )
}

fn runs_table(out: &mut String, runs: &[RunFigures]) {
    let _ = writeln!(
        out,
        "{:<31} {:>8} {:>9} {:>6} {:>8} {:>9} {:>7} {:>13}  bound by",
        "run", "wall s", "requests", "429s", "RSS MiB", "bound s", "ratio", "CPU s h/emu"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<31} {:>8.2} {:>9} {:>6} {:>8} {:>9.2} {:>7} {:>13}  {}{}",
            r.name,
            r.wall_s,
            r.requests,
            r.throttled_429,
            opt(r.handler_peak_rss_mib, 1),
            r.lower_bound_s,
            opt(r.ratio, 2),
            format!("{}/{}", opt(r.handler_cpu_s, 1), opt(r.emulator_cpu_s, 1)),
            r.lower_bound.binding,
            r.lower_bound
                .busiest_bucket
                .as_deref()
                .filter(|_| r.lower_bound.binding == "buckets")
                .map(|b| format!(" ({b})"))
                .unwrap_or_default(),
        );
    }
    for r in runs {
        let kinds: Vec<String> = r
            .requests_by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = writeln!(out, "\n{}: {}", r.name, kinds.join(", "));
        let _ = writeln!(out, "  outcome: {}", outcome_line(&r.outcome));
        if let Some(x) = &r.extrapolated {
            let _ = writeln!(
                out,
                "  every pair ({}): ~{:.0} s, ~{} requests, lower bound {:.1} s, ratio {}",
                x.pairs,
                x.wall_s,
                x.requests,
                x.lower_bound_s,
                opt(x.ratio, 2)
            );
        }
        if let Some(note) = &r.note {
            let _ = writeln!(out, "  note: {note}");
        }
    }
}

fn events_table(out: &mut String, event: &EventCost, burst: Option<&Burst>) {
    let _ = writeln!(
        out,
        "\ncluster-create event, {} matching registries in {} subscriptions ({} deliveries):",
        event.registries, event.subscriptions, event.deliveries
    );
    for (label, cost, attached) in [
        (
            "first (fresh process)",
            &event.cold,
            event.pairs_attached_cold,
        ),
        ("second (warm)", &event.warm, event.pairs_attached_warm),
    ] {
        let _ = writeln!(
            out,
            "  {label}: {} requests, {attached} pairs attached — {}",
            cost.total,
            cost.kinds_line()
        );
    }
    let _ = writeln!(
        out,
        "  target N + S + 3 = {}; az aks update --attach-acr for N registries = {} (13 each)",
        event.target, event.az_attach_acr
    );
    if let Some(b) = burst {
        let _ = writeln!(
            out,
            "\nburst: {} clusters × {} registries = {} pairs; {} attached (all: {}); last cluster ready after {:.1} s",
            b.clusters,
            b.registries,
            b.pairs,
            b.pairs_attached,
            b.all_attached,
            b.last_cluster_ready_s
        );
        let _ = writeln!(
            out,
            "  last ready → last attached {:.1} s; write-bucket bound {:.1} s (1.5× = {:.1} s): {}",
            b.tail_s,
            b.write_bucket_bound_s,
            1.5 * b.write_bucket_bound_s,
            match b.tail_within_1_5x_bound {
                Some(true) => "within",
                Some(false) => "NOT within",
                None => "no bound (the writes fit in the buckets' burst)",
            }
        );
        let _ = writeln!(
            out,
            "  {} invocations, {} failed, {} answered after 30 s, slowest {:.1} s; {} requests, {} 429s",
            b.invocations,
            b.failed_invocations,
            b.answered_after_30s,
            b.slowest_invocation_s,
            b.requests.total,
            b.requests.throttled_429
        );
        let _ = writeln!(
            out,
            "  invocation p50 {:.1} s, p90 {:.1} s; longest wait before the handler took one up {}; \
             accept queue up to {}; {} PUTs",
            b.invocation_p50_s,
            b.invocation_p90_s,
            opt(b.handler_queued_max_s, 1).replace('-', "not reported") + " s",
            b.max_accept_backlog,
            b.put_requests
        );
        let timeline: Vec<String> = b
            .timeline
            .iter()
            .map(|(second, count)| format!("{second}s:{count}"))
            .collect();
        let _ = writeln!(out, "  attached by second: {}", timeline.join(" "));
        let _ = writeln!(out, "  requests: {}", b.requests.kinds_line());
        let _ = writeln!(
            out,
            "  CPU s: handler {}, emulator + Event Grid + host {}; load average {} when it began",
            opt(b.handler_cpu_s, 1),
            opt(b.benchmark_cpu_s, 1),
            opt(b.load_average, 1)
        );
    }
}

/// The human table.
pub fn table(doc: &Document) -> String {
    let mut out = String::new();
    let e = &doc.estate;
    let _ = writeln!(
        out,
        "machine: {} cores, {}, {} GiB",
        doc.machine.nproc, doc.machine.cpu, doc.machine.memory_gib
    );
    let _ = writeln!(
        out,
        "estate: {} clusters × {} registries in {} subscriptions = {} pairs; latency {} ms; refill ×{}; \
         concurrency {}; built in {:.1} s",
        e.clusters,
        e.registries,
        e.subscriptions,
        e.pairs,
        e.latency_ms,
        e.refill_scale,
        e.concurrency,
        e.seeding_s
    );
    if let Some(note) = &e.role_assignment_limit_note {
        let _ = writeln!(out, "note: {note}");
    }
    out.push('\n');
    runs_table(&mut out, &doc.runs);
    events_table(&mut out, &doc.cluster_event, doc.burst.as_ref());
    let f = &doc.footprint;
    let _ = writeln!(
        out,
        "\nserve: exec to ready {:.1} ms median ({:.1}–{:.1} over {} starts); idle RSS {}; binary {:.1} MiB ({})",
        f.ready_ms_median,
        f.ready_ms_min,
        f.ready_ms_max,
        f.starts,
        f.idle_rss_bytes
            .map_or_else(|| "-".to_owned(), |b| format!("{:.1} MiB", mib(b))),
        mib(f.binary_bytes),
        f.binary
    );
    let _ = writeln!(out, "\ntotal {:.1} s", doc.total_s);
    out
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}
