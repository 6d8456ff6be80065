//! `lower_bound_s`: the least time Azure's documented limits allow for a run's requests at its concurrency and
//! latency (derivation in BENCHMARKS.md, "How lower_bound_s is computed"), and the figures of one measured run.

use std::collections::BTreeMap;
use std::time::Duration;

use azure_emulator::limits::{BucketUsage, RequestClass};
use azure_emulator::{BucketLimit, FaultConfig, StatsSnapshot};
use serde::Serialize;

/// The limits a run met: the emulator's (already refill-scaled) buckets and window, latency, concurrency.
#[derive(Debug, Clone)]
pub struct Limits {
    pub reads: BucketLimit,
    pub writes: BucketLimit,
    pub deletes: BucketLimit,
    pub graph_quota: u32,
    pub graph_window: Duration,
    pub latency: Duration,
    pub concurrency: usize,
}

impl Limits {
    pub fn new(faults: &FaultConfig, concurrency: usize) -> Self {
        Self {
            reads: faults.reads,
            writes: faults.writes,
            deletes: faults.deletes,
            graph_quota: faults.resource_graph_quota,
            graph_window: Duration::from_millis(faults.resource_graph_window_ms),
            latency: Duration::from_millis(faults.latency_ms),
            concurrency: concurrency.max(1),
        }
    }

    fn bucket(&self, class: RequestClass) -> BucketLimit {
        match class {
            RequestClass::Read => self.reads,
            RequestClass::Write => self.writes,
            RequestClass::Delete => self.deletes,
        }
    }
}

/// The three terms and the bound (their maximum).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LowerBound {
    pub seconds: f64,
    /// max over (principal, subscription, class) buckets of max(0, granted − capacity) / refill.
    pub buckets_s: f64,
    /// The bucket that sets `buckets_s` (`writes 5ca1e000-…`).
    pub busiest_bucket: Option<String>,
    /// (ceil(queries / quota) − 1) × window.
    pub resource_graph_s: f64,
    /// latency × ceil(requests / concurrency).
    pub latency_s: f64,
    /// Which term is the bound: `buckets`, `resource_graph` or `latency`.
    pub binding: &'static str,
}

/// The bound for a run that sent `requests` requests (`graph_queries` of them answered Resource Graph queries)
/// and drew `usage` from ARM's buckets, everything multiplied by `factor` (1 for a measured run; pairs / sample
/// for an extrapolated one).
pub fn lower_bound(
    limits: &Limits,
    usage: &[BucketUsage],
    graph_queries: u64,
    requests: u64,
    factor: f64,
) -> LowerBound {
    let mut buckets_s = 0.0_f64;
    let mut busiest = None;
    for u in usage {
        let limit = limits.bucket(u.class);
        let granted = (u.requests.saturating_sub(u.throttled)) as f64 * factor;
        let over = (granted - f64::from(limit.capacity)).max(0.0);
        let seconds = if limit.refill_per_sec == 0 {
            if over > 0.0 { f64::INFINITY } else { 0.0 }
        } else {
            over / f64::from(limit.refill_per_sec)
        };
        if seconds > buckets_s {
            buckets_s = seconds;
            busiest = Some(format!("{}s {}", u.class.word(), u.subscription));
        }
    }
    let queries = (graph_queries as f64 * factor).ceil();
    let windows = (queries / f64::from(limits.graph_quota.max(1))).ceil() - 1.0;
    let resource_graph_s = windows.max(0.0) * limits.graph_window.as_secs_f64();
    let rounds = (requests as f64 * factor / limits.concurrency as f64).ceil();
    let latency_s = rounds * limits.latency.as_secs_f64();
    let (seconds, binding) = [
        (buckets_s, "buckets"),
        (resource_graph_s, "resource_graph"),
        (latency_s, "latency"),
    ]
    .into_iter()
    .fold(
        (0.0, "latency"),
        |best, term| {
            if term.0 > best.0 { term } else { best }
        },
    );
    LowerBound {
        seconds,
        buckets_s,
        busiest_bucket: busiest,
        resource_graph_s,
        latency_s,
        binding,
    }
}

/// What the emulator saw during one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Requests {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub throttled_429: u64,
    /// Resource Graph queries answered (not refused by the quota).
    pub graph_queries: u64,
}

impl Requests {
    /// Every request in `stats` except those of `exclude` (the emulator's admin, who builds the estate).
    pub fn from_stats(stats: &StatsSnapshot, exclude: &str) -> Self {
        let mut by_kind = BTreeMap::new();
        let mut total = 0;
        let mut throttled_429 = 0;
        let mut graph_queries = 0;
        for e in &stats.entries {
            if e.caller
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(exclude))
            {
                continue;
            }
            *by_kind.entry(e.operation.clone()).or_insert(0) += e.count;
            total += e.count;
            if e.status == 429 {
                throttled_429 += e.count;
            } else if e.operation == "POST resourcegraph" {
                graph_queries += e.count;
            }
        }
        Self {
            total,
            by_kind,
            throttled_429,
            graph_queries,
        }
    }

    /// `kind=n, …` for the table.
    pub fn kinds_line(&self) -> String {
        self.by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::new(&FaultConfig::default().with_refill_scale(20), 16)
    }

    fn writes(sub: &str, requests: u64) -> BucketUsage {
        BucketUsage {
            principal: "p".into(),
            subscription: sub.into(),
            class: RequestClass::Write,
            requests,
            throttled: 0,
        }
    }

    #[test]
    fn the_busiest_write_bucket_bounds_a_cold_enforce() {
        // 4,000 writes in each of 5 subscriptions: (4,000 − 200) / (10 × 20) = 19 s.
        let usage: Vec<_> = (0..5).map(|s| writes(&format!("s{s}"), 4_000)).collect();
        let b = lower_bound(&limits(), &usage, 0, 20_000, 1.0);
        assert!((b.buckets_s - 19.0).abs() < 1e-9, "{b:?}");
        assert_eq!(b.binding, "buckets");
        assert!((b.seconds - 19.0).abs() < 1e-9);
    }

    #[test]
    fn latency_and_resource_graph_terms() {
        let mut l = limits();
        l.latency = Duration::from_millis(5);
        // 100 requests at 16 concurrent: 7 rounds of 5 ms; 31 queries at 15 per 250 ms: 2 more windows.
        let b = lower_bound(&l, &[], 31, 100, 1.0);
        assert!((b.latency_s - 0.035).abs() < 1e-9, "{b:?}");
        assert!((b.resource_graph_s - 0.5).abs() < 1e-9, "{b:?}");
        assert_eq!(b.binding, "resource_graph");
        // Extrapolation multiplies every count.
        let x = lower_bound(&l, &[writes("s", 300)], 0, 100, 10.0);
        assert!(
            (x.buckets_s - (3_000.0 - 200.0) / 200.0).abs() < 1e-9,
            "{x:?}"
        );
    }
}
