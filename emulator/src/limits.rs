//! ARM's token buckets and Resource Graph's per-user quota. Pure over an injected `Instant`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::BucketLimit;

/// Which ARM bucket a request draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestClass {
    Read,
    Write,
    Delete,
}

impl RequestClass {
    /// The suffix of `x-ms-ratelimit-remaining-subscription-{…}`.
    pub fn header_suffix(self) -> &'static str {
        match self {
            Self::Read => "reads",
            Self::Write => "writes",
            Self::Delete => "deletes",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }
}

/// A token bucket that refills in whole seconds: `refill` tokens at each full second after the bucket was
/// first used, up to `capacity`. (Whole-second refill makes "N immediate requests" exact.)
#[derive(Clone, Debug)]
struct Bucket {
    tokens: u32,
    tick: Instant,
}

/// The outcome of taking one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    Allowed { remaining: u32 },
    Throttled { retry_after_secs: u64 },
}

#[derive(Default)]
pub struct Buckets {
    buckets: HashMap<(String, String, RequestClass), Bucket>,
    /// Requests that met each bucket (allowed or throttled) since the last [`Buckets::clear_usage`]: what a
    /// benchmark needs to compute the least time ARM's limits allow for a run.
    usage: HashMap<(String, String, RequestClass), BucketUse>,
}

/// How many requests met one bucket, and how many of them were throttled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BucketUse {
    pub requests: u64,
    pub throttled: u64,
}

/// One (principal, subscription, class) bucket's use, as [`Buckets::usage`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketUsage {
    pub principal: String,
    pub subscription: String,
    pub class: RequestClass,
    pub requests: u64,
    pub throttled: u64,
}

impl Buckets {
    pub fn take(
        &mut self,
        principal: &str,
        subscription: &str,
        class: RequestClass,
        limit: BucketLimit,
        now: Instant,
    ) -> Take {
        let key = (
            principal.to_ascii_lowercase(),
            subscription.to_ascii_lowercase(),
            class,
        );
        let take = self.take_key(key.clone(), limit, now);
        let usage = self.usage.entry(key).or_default();
        usage.requests += 1;
        if matches!(take, Take::Throttled { .. }) {
            usage.throttled += 1;
        }
        take
    }

    fn take_key(
        &mut self,
        key: (String, String, RequestClass),
        limit: BucketLimit,
        now: Instant,
    ) -> Take {
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: limit.capacity,
            tick: now,
        });
        let elapsed = now.saturating_duration_since(bucket.tick).as_secs();
        if elapsed > 0 {
            let added = u32::try_from(elapsed.saturating_mul(u64::from(limit.refill_per_sec)))
                .unwrap_or(u32::MAX);
            bucket.tokens = bucket.tokens.saturating_add(added).min(limit.capacity);
            bucket.tick += Duration::from_secs(elapsed);
        }
        if bucket.tokens > 0 {
            bucket.tokens -= 1;
            Take::Allowed {
                remaining: bucket.tokens,
            }
        } else {
            // The next refill comes at the next whole second after `tick`.
            let next = bucket.tick + Duration::from_secs(1);
            let wait = next.saturating_duration_since(now);
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Take::Throttled {
                retry_after_secs: secs.max(1),
            }
        }
    }

    /// Empties the map: every bucket starts full again (usage counters are kept).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }

    /// Requests per bucket since the last [`Buckets::clear_usage`], sorted by principal, subscription, class.
    pub fn usage(&self) -> Vec<BucketUsage> {
        let mut list: Vec<BucketUsage> = self
            .usage
            .iter()
            .map(|((principal, subscription, class), u)| BucketUsage {
                principal: principal.clone(),
                subscription: subscription.clone(),
                class: *class,
                requests: u.requests,
                throttled: u.throttled,
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.principal, &a.subscription, a.class.word()).cmp(&(
                &b.principal,
                &b.subscription,
                b.class.word(),
            ))
        });
        list
    }

    pub fn clear_usage(&mut self) {
        self.usage.clear();
    }
}

/// Resource Graph quota: `quota` queries per fixed window per caller, the window starting at the first query.
#[derive(Default)]
pub struct GraphQuota {
    windows: HashMap<String, (Instant, u32)>,
}

/// The outcome of one Resource Graph query against the quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaTake {
    pub allowed: bool,
    pub remaining: u32,
    pub resets_after: Duration,
}

impl GraphQuota {
    pub fn take(&mut self, caller: &str, quota: u32, window: Duration, now: Instant) -> QuotaTake {
        let entry = self
            .windows
            .entry(caller.to_ascii_lowercase())
            .or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        let resets_after = window.saturating_sub(now.saturating_duration_since(entry.0));
        if entry.1 < quota {
            entry.1 += 1;
            QuotaTake {
                allowed: true,
                remaining: quota - entry.1,
                resets_after,
            }
        } else {
            QuotaTake {
                allowed: false,
                remaining: 0,
                resets_after,
            }
        }
    }

    pub fn clear(&mut self) {
        self.windows.clear();
    }
}

/// `hh:mm:ss` as Resource Graph writes `x-ms-user-quota-resets-after`.
pub fn hh_mm_ss(d: Duration) -> String {
    let total = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    format!(
        "{:02}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_exact_then_refills_per_second() {
        let mut b = Buckets::default();
        let limit = BucketLimit {
            capacity: 250,
            refill_per_sec: 25,
        };
        let t0 = Instant::now();
        let allowed = (0..300)
            .filter(|_| {
                matches!(
                    b.take("p", "s", RequestClass::Read, limit, t0),
                    Take::Allowed { .. }
                )
            })
            .count();
        assert_eq!(allowed, 250);
        assert_eq!(
            b.take("p", "s", RequestClass::Read, limit, t0),
            Take::Throttled {
                retry_after_secs: 1
            }
        );
        // Other principal / subscription / class are independent.
        assert!(matches!(
            b.take("q", "s", RequestClass::Read, limit, t0),
            Take::Allowed { remaining: 249 }
        ));
        assert!(matches!(
            b.take("p", "s", RequestClass::Write, limit, t0),
            Take::Allowed { .. }
        ));
        let t1 = t0 + Duration::from_secs(1);
        let refilled = (0..30)
            .filter(|_| {
                matches!(
                    b.take("p", "s", RequestClass::Read, limit, t1),
                    Take::Allowed { .. }
                )
            })
            .count();
        assert_eq!(refilled, 25);
        let usage = b.usage();
        let read_p_s = usage
            .iter()
            .find(|u| u.principal == "p" && u.subscription == "s" && u.class == RequestClass::Read);
        assert_eq!(read_p_s.map(|u| (u.requests, u.throttled)), Some((331, 56)));
        assert_eq!(usage.len(), 3);
        b.clear_usage();
        assert!(b.usage().is_empty());
    }

    #[test]
    fn graph_quota_window() {
        let mut q = GraphQuota::default();
        let t0 = Instant::now();
        let w = Duration::from_secs(5);
        for i in 0..15 {
            let t = q.take("u", 15, w, t0);
            assert!(t.allowed);
            assert_eq!(t.remaining, 14 - i);
        }
        let denied = q.take("u", 15, w, t0 + Duration::from_secs(2));
        assert!(!denied.allowed);
        assert_eq!(hh_mm_ss(denied.resets_after), "00:00:03");
        assert!(q.take("u", 15, w, t0 + Duration::from_secs(5)).allowed);
    }
}
