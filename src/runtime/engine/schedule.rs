//! The order a plan's writes go out in. ARM throttles writes per principal, subscription and class (writes,
//! deletes): a plan sorted by registry would put one subscription's writes first, and every concurrency slot
//! would wait on that one bucket while the other subscriptions' buckets sit full. Here each bucket has its
//! own queue (plan order within it); a free slot goes to the bucket whose next token comes first, ties served
//! round robin, and a slot is only taken by a write whose token comes within [`HORIZON`] — otherwise the
//! caller waits (and keeps its slots) until the earliest token.
//!
//! Pure: the buckets' state is asked through a closure (`reserve`), so the decisions are unit-tested
//! without a clock or a client.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::azure::ratelimit::RequestClass;

/// A write waits at most this long for its token while holding a slot; a later token is waited for with
/// the slot free.
pub const HORIZON: Duration = Duration::from_millis(20);

/// The ARM bucket a write draws from (the principal is the handler's, the same for all).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// Lower case.
    pub subscription: String,
    pub class: RequestClass,
}

impl Bucket {
    pub fn new(subscription: &str, class: RequestClass) -> Self {
        Self {
            subscription: subscription.to_ascii_lowercase(),
            class,
        }
    }
}

/// What to do with a free slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Send item `index` after `after` (its token is taken).
    Send { index: usize, after: Duration },
    /// No bucket with work has a token within the horizon: look again after this long.
    WaitFor(Duration),
    /// Nothing left to send.
    Done,
}

/// The writes not yet sent, one queue per bucket in the order buckets first appear in the plan.
#[derive(Debug, Default)]
pub struct WriteQueue {
    queues: Vec<(Bucket, VecDeque<usize>)>,
    /// Where the next round-robin look starts.
    cursor: usize,
}

impl WriteQueue {
    /// `items`: (plan index, bucket) in plan order.
    pub fn new(items: impl IntoIterator<Item = (usize, Bucket)>) -> Self {
        let mut queues: Vec<(Bucket, VecDeque<usize>)> = Vec::new();
        let mut position: HashMap<Bucket, usize> = HashMap::new();
        for (index, bucket) in items {
            let at = *position.entry(bucket.clone()).or_insert_with(|| {
                queues.push((bucket, VecDeque::new()));
                queues.len() - 1
            });
            queues[at].1.push_back(index);
        }
        Self { queues, cursor: 0 }
    }

    /// Picks the write for a free slot. `reserve(bucket, max_wait)` takes one token of `bucket` when it comes
    /// within `max_wait` (`Ok(wait)`), else takes nothing and says when it comes (`Err(wait)`).
    ///
    /// First a bucket with a token now, looking round robin from after the last bucket served; else the
    /// bucket whose token comes first (the earliest in round-robin order among equals), if within
    /// `horizon`; else wait for it.
    pub fn next(
        &mut self,
        horizon: Duration,
        mut reserve: impl FnMut(&Bucket, Duration) -> Result<Duration, Duration>,
    ) -> Next {
        let n = self.queues.len();
        let mut earliest: Option<(Duration, usize)> = None;
        for k in 0..n {
            let at = (self.cursor + k) % n;
            let (bucket, queue) = &self.queues[at];
            if queue.is_empty() {
                continue;
            }
            match reserve(bucket, Duration::ZERO) {
                Ok(after) => return self.pop(at, after),
                Err(wait) => {
                    if earliest.is_none_or(|(w, _)| wait < w) {
                        earliest = Some((wait, at));
                    }
                }
            }
        }
        let Some((wait, at)) = earliest else {
            return Next::Done;
        };
        if wait > horizon {
            return Next::WaitFor(wait);
        }
        match reserve(&self.queues[at].0, horizon) {
            Ok(after) => self.pop(at, after),
            Err(wait) => Next::WaitFor(wait),
        }
    }

    fn pop(&mut self, at: usize, after: Duration) -> Next {
        self.cursor = (at + 1) % self.queues.len().max(1);
        match self.queues[at].1.pop_front() {
            Some(index) => Next::Send { index, after },
            None => Next::Done,
        }
    }

    /// Takes out every write still queued in the buckets `matches` selects (e.g. creates in a subscription
    /// that is full), in bucket then plan order.
    pub fn take_where(&mut self, matches: impl Fn(&Bucket) -> bool) -> Vec<usize> {
        self.queues
            .iter_mut()
            .filter(|(b, _)| matches(b))
            .flat_map(|(_, q)| q.drain(..))
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::azure::ratelimit::{BucketSpec, TokenBucket};
    use tokio::time::Instant;

    fn bucket(sub: &str) -> Bucket {
        Bucket::new(sub, RequestClass::Write)
    }

    /// A plan sorted by registry: all of subscription a's writes first, then b's, then c's.
    fn sorted_plan(per_sub: usize) -> WriteQueue {
        WriteQueue::new(
            ["a", "b", "c"]
                .iter()
                .flat_map(|s| std::iter::repeat_n(bucket(s), per_sub))
                .enumerate(),
        )
    }

    /// With free budget everywhere the writes go round robin across buckets, plan order within each.
    #[test]
    fn ready_buckets_are_served_round_robin() {
        let mut q = sorted_plan(3);
        let mut sent = Vec::new();
        while let Next::Send { index, after } = q.next(HORIZON, |_, _| Ok(Duration::ZERO)) {
            assert_eq!(after, Duration::ZERO);
            sent.push(index);
        }
        assert_eq!(sent, [0, 3, 6, 1, 4, 7, 2, 5, 8]);
        assert_eq!(q.next(HORIZON, |_, _| Ok(Duration::ZERO)), Next::Done);
    }

    /// Simulated time, one token bucket per subscription as the client keeps them, the greedy caller the
    /// engine is: among the first writes every subscription appears, and each bucket is drained at its own
    /// rate in parallel, so the last write goes when the busiest bucket allows, not at the sum of them.
    #[test]
    fn buckets_drain_in_parallel_at_their_own_rates() {
        let spec = BucketSpec {
            capacity: 5.0,
            refill_per_sec: 10.0,
        };
        let t0 = Instant::now();
        let mut buckets: HashMap<String, TokenBucket> = ["a", "b", "c"]
            .iter()
            .map(|s| ((*s).to_owned(), TokenBucket::new(spec, t0)))
            .collect();
        let mut q = sorted_plan(25);
        let mut now = t0;
        let mut sent: Vec<(usize, Instant)> = Vec::new();
        loop {
            let next = q.next(HORIZON, |b, max_wait| {
                buckets
                    .get_mut(&b.subscription)
                    .unwrap()
                    .reserve(now, max_wait)
            });
            match next {
                Next::Send { index, after } => {
                    assert!(after <= HORIZON);
                    sent.push((index, now + after));
                }
                Next::WaitFor(wait) => {
                    assert!(wait > HORIZON, "{wait:?} is within the horizon: take it");
                    now += wait;
                }
                Next::Done => break,
            }
        }
        assert_eq!(sent.len(), 75);
        let subs_in_first_six: std::collections::BTreeSet<usize> =
            sent[..6].iter().map(|(i, _)| i / 25).collect();
        assert_eq!(subs_in_first_six.len(), 3, "{sent:?}");
        // Each bucket: 5 at once, then 20 at 10/s = 2 s. In sequence it would be 6 s.
        let last = sent.iter().map(|(_, t)| *t).max().unwrap() - t0;
        assert!(last <= Duration::from_millis(2_001), "{last:?}");
        assert!(last >= Duration::from_millis(1_999), "{last:?}");
    }

    /// A bucket Azure paused (429, or a drained bucket another process used) does not hold the slots: the
    /// others are served first, and the paused one when its token comes.
    #[test]
    fn a_paused_bucket_does_not_hold_the_others() {
        let mut q = sorted_plan(2);
        // a: nothing for 5 s; b, c: free.
        let mut sent = Vec::new();
        while let Next::Send { index, .. } = q.next(HORIZON, |b, max_wait| {
            if b.subscription == "a" {
                let wait = Duration::from_secs(5);
                if wait <= max_wait {
                    Ok(wait)
                } else {
                    Err(wait)
                }
            } else {
                Ok(Duration::ZERO)
            }
        }) {
            sent.push(index);
        }
        assert_eq!(sent, [2, 4, 3, 5]);
        assert_eq!(
            q.next(HORIZON, |_, _| Err(Duration::from_secs(5))),
            Next::WaitFor(Duration::from_secs(5))
        );
        // Its token comes within the horizon: taken with the wait.
        assert_eq!(
            q.next(HORIZON, |_, max_wait| if max_wait.is_zero() {
                Err(Duration::from_millis(7))
            } else {
                Ok(Duration::from_millis(7))
            }),
            Next::Send {
                index: 0,
                after: Duration::from_millis(7)
            }
        );
    }

    /// Among buckets with no token now, the earliest is taken first, whatever the round-robin order.
    #[test]
    fn the_earliest_token_wins() {
        let mut q = sorted_plan(1);
        let waits = |b: &Bucket| match b.subscription.as_str() {
            "a" => Duration::from_millis(15),
            "b" => Duration::from_millis(5),
            _ => Duration::from_millis(10),
        };
        let mut order = Vec::new();
        for _ in 0..3 {
            match q.next(HORIZON, |b, max_wait| {
                let w = waits(b);
                if w <= max_wait { Ok(w) } else { Err(w) }
            }) {
                Next::Send { index, after } => order.push((index, after.as_millis())),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(order, [(1, 5), (2, 10), (0, 15)]);
    }

    #[test]
    fn a_full_subscription_is_taken_out_whole() {
        let mut q = WriteQueue::new([
            (0, bucket("A")),
            (1, Bucket::new("a", RequestClass::Delete)),
            (2, bucket("b")),
            (3, bucket("a")),
        ]);
        let taken = q.take_where(|b| b.subscription == "a" && b.class == RequestClass::Write);
        assert_eq!(taken, [0, 3]);
        let mut rest = Vec::new();
        while let Next::Send { index, .. } = q.next(HORIZON, |_, _| Ok(Duration::ZERO)) {
            rest.push(index);
        }
        assert_eq!(rest, [1, 2]);
    }
}
