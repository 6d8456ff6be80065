//! Client-side rate limiting: token buckets per (principal, subscription, class) sized a margin below ARM's
//! own buckets, and a sliding window per principal for Resource Graph. Callers *wait* for capacity instead of
//! sending into a 429. The bucket arithmetic is pure (time is an argument); [`RateLimiter`] adds the map and
//! the waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::error::AzureError;

/// The longest pause any server-sent number (`Retry-After`, `retry-after-ms`, a quota reset) can impose on
/// the client. ARM asks for seconds, Resource Graph for at most its 5 s window; a larger value is a broken or
/// hostile answer, and obeying it would wedge every later request of the subscription.
pub const MAX_SERVER_PAUSE: Duration = Duration::from_mins(2);

/// `now + pause`, capped at [`MAX_SERVER_PAUSE`], never overflowing.
pub fn pause_end(now: Instant, pause: Duration) -> Instant {
    now.checked_add(pause.min(MAX_SERVER_PAUSE)).unwrap_or(now)
}

/// ARM's throttling classes (arm.md): reads, writes and deletes are counted in separate buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestClass {
    Read,
    Write,
    Delete,
}

impl RequestClass {
    pub fn for_method(method: &reqwest::Method) -> Self {
        match *method {
            reqwest::Method::DELETE => Self::Delete,
            reqwest::Method::PUT | reqwest::Method::PATCH | reqwest::Method::POST => Self::Write,
            _ => Self::Read,
        }
    }

    /// The suffix of ARM's `x-ms-ratelimit-remaining-subscription-*` header for this class.
    pub fn remaining_header(self) -> &'static str {
        match self {
            Self::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Self::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Self::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSpec {
    pub capacity: f64,
    pub refill_per_sec: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSpec {
    pub limit: usize,
    pub window: Duration,
}

/// Limits per (principal, subscription). Defaults stay 10 % below ARM's published buckets
/// (250 + 25/s reads, 200 + 10/s writes and deletes) and Resource Graph's 15 queries per 5 s. A capacity of
/// at most (ARM capacity - ARM refill per second) keeps the limiter under ARM even when ARM refills in
/// whole-second steps; the defaults meet that.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    pub enabled: bool,
    pub reads: BucketSpec,
    pub writes: BucketSpec,
    pub deletes: BucketSpec,
    pub resource_graph: WindowSpec,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            reads: BucketSpec {
                capacity: 225.0,
                refill_per_sec: 22.5,
            },
            writes: BucketSpec {
                capacity: 180.0,
                refill_per_sec: 9.0,
            },
            deletes: BucketSpec {
                capacity: 180.0,
                refill_per_sec: 9.0,
            },
            resource_graph: WindowSpec {
                limit: 13,
                window: Duration::from_secs(5),
            },
        }
    }
}

impl RateLimits {
    /// No client-side limiting at all (429s are still honoured by the retry policy).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    fn spec(&self, class: RequestClass) -> BucketSpec {
        match class {
            RequestClass::Read => self.reads,
            RequestClass::Write => self.writes,
            RequestClass::Delete => self.deletes,
        }
    }
}

/// A token bucket that hands out reservations: a caller takes a token now and waits until the moment it
/// would have been available, so waiters are served in order and never spin.
///
/// A bucket made by [`TokenBucket::unconfirmed`] does not trust its own full start: another process of the
/// same identity may have drained Azure's bucket a moment ago. It lets one request (the probe) go and holds
/// everyone else until the probe's answer says how much Azure has left ([`TokenBucket::observe_answer`]).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    spec: BucketSpec,
    /// May go negative: tokens already promised to waiting callers.
    tokens: f64,
    /// Refill is accounted up to this instant.
    last: Instant,
    /// No refill before this instant (after a 429, or after Azure reported fewer tokens than we assumed).
    refill_from: Instant,
    /// An answer from Azure has been seen since the bucket was made (or it was made trusting its start).
    confirmed: bool,
    /// While unconfirmed: the probe in flight, and when another may go if it never gets an answer.
    probe_until: Option<Instant>,
    /// Tokens reserved ahead by [`TokenBucket::prepay`], each with the instant it may be spent: the next
    /// request under this bucket spends the oldest instead of reserving again.
    prepaid: VecDeque<Instant>,
}

/// How long an unanswered probe holds the other callers of an unconfirmed bucket before another may go.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// After Azure reports fewer remaining tokens than we assumed, assume no refill for this long: ARM may
/// refill in whole-second steps, and our continuous refill must not run ahead of it.
const CLAMP_REFILL_PAUSE: Duration = Duration::from_secs(1);

impl TokenBucket {
    /// A bucket that starts full and trusts it (no probe).
    pub fn new(spec: BucketSpec, now: Instant) -> Self {
        Self {
            spec,
            tokens: spec.capacity,
            last: now,
            refill_from: now,
            confirmed: true,
            probe_until: None,
            prepaid: VecDeque::new(),
        }
    }

    /// A bucket that lets one probe go and waits for its answer before it spends the rest of its burst.
    pub fn unconfirmed(spec: BucketSpec, now: Instant) -> Self {
        Self {
            confirmed: false,
            ..Self::new(spec, now)
        }
    }

    /// While a probe is in flight and unanswered: how long until another caller may become the probe.
    /// `None`: the bucket may be reserved from.
    pub fn awaiting_probe(&self, now: Instant) -> Option<Duration> {
        match self.probe_until {
            Some(until) if !self.confirmed && now < until => Some(until - now),
            _ => None,
        }
    }

    /// An answer arrived: Azure's remaining count (when the answer carried one) bounds the bucket, and the
    /// bucket is confirmed. An answer without the count confirms the full start (as before the probe).
    pub fn observe_answer(&mut self, now: Instant, remaining: Option<f64>) {
        self.confirmed = true;
        self.probe_until = None;
        if let Some(remaining) = remaining {
            self.observe_remaining(now, remaining);
        }
    }

    /// A request of this bucket got no answer (connection error, timeout, never sent): if it was the probe,
    /// the next caller becomes the probe.
    pub fn probe_failed(&mut self) {
        if !self.confirmed {
            self.probe_until = None;
        }
    }

    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Reserves a token for a request sent later by someone else (the engine's write scheduler, which
    /// orders writes across buckets): the request's own turn at the bucket spends it
    /// ([`TokenBucket::take_prepaid`]). Same answers as [`TokenBucket::reserve`].
    pub fn prepay(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let wait = self.reserve(now, max_wait)?;
        self.prepaid.push_back(now.checked_add(wait).unwrap_or(now));
        Ok(wait)
    }

    /// The oldest prepaid token, as the wait until it may be spent.
    pub fn take_prepaid(&mut self, now: Instant) -> Option<Duration> {
        self.prepaid
            .pop_front()
            .map(|at| at.saturating_duration_since(now))
    }

    fn refill(&mut self, now: Instant) {
        let start = self.last.max(self.refill_from);
        if now > start {
            let gained = (now - start).as_secs_f64() * self.spec.refill_per_sec;
            self.tokens = (self.tokens + gained).min(self.spec.capacity);
        }
        if now > self.last {
            self.last = now;
        }
    }

    /// Reserves one token. `Ok(wait)`: go after `wait`. `Err(wait)`: it would take longer than `max_wait`;
    /// nothing was reserved.
    /// An unconfirmed bucket with its probe in flight reserves nothing: `Err` with the time the probe may
    /// still take (see [`TokenBucket::awaiting_probe`]).
    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        if let Some(left) = self.awaiting_probe(now) {
            return Err(left);
        }
        self.refill(now);
        let deficit = 1.0 - self.tokens;
        let wait = if deficit <= 0.0 {
            Duration::ZERO
        } else if self.spec.refill_per_sec > 0.0 {
            let resume = now.max(self.refill_from);
            // Checked all the way: an absurd deficit is a wait longer than anyone allows, never a panic.
            let Ok(refill) = Duration::try_from_secs_f64(deficit / self.spec.refill_per_sec) else {
                return Err(Duration::MAX);
            };
            resume
                .checked_add(refill)
                .map_or(Duration::MAX, |at| at.saturating_duration_since(now))
        } else {
            // A bucket that never refills: nothing more will come.
            return Err(Duration::MAX);
        };
        if wait > max_wait {
            return Err(wait);
        }
        self.tokens -= 1.0;
        if !self.confirmed {
            let sent = now.checked_add(wait).unwrap_or(now);
            self.probe_until = Some(pause_end(sent, PROBE_TIMEOUT));
        }
        Ok(wait)
    }

    /// Azure said how much is left (`x-ms-ratelimit-remaining-*`): never believe we have more than that.
    /// A value that is not a finite number is ignored; a negative one counts as none left (it must not
    /// put the bucket into a debt that would take forever to repay).
    pub fn observe_remaining(&mut self, now: Instant, remaining: f64) {
        if !remaining.is_finite() {
            return;
        }
        let remaining = remaining.max(0.0);
        self.refill(now);
        if remaining < self.tokens {
            self.tokens = remaining;
            self.refill_from = self.refill_from.max(now + CLAMP_REFILL_PAUSE);
        }
    }

    /// Azure answered 429 with `Retry-After`: nothing goes out before `until` (at most
    /// [`MAX_SERVER_PAUSE`] from `now`).
    pub fn block_until(&mut self, now: Instant, until: Instant) {
        let until = until.min(pause_end(now, MAX_SERVER_PAUSE));
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
        self.refill_from = self.refill_from.max(until);
    }

    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }
}

/// At most `limit` requests in any `window` (Resource Graph's quota is a window, not a bucket).
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    spec: WindowSpec,
    /// Start times of requests sent or promised, non-decreasing.
    starts: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl SlidingWindow {
    pub fn new(spec: WindowSpec) -> Self {
        Self {
            spec,
            starts: VecDeque::new(),
            blocked_until: None,
        }
    }

    pub fn reserve(&mut self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        while self
            .starts
            .front()
            .is_some_and(|&t| t + self.spec.window <= now)
        {
            self.starts.pop_front();
        }
        let mut at = now;
        if let Some(b) = self.blocked_until {
            at = at.max(b);
        }
        if let Some(&last) = self.starts.back() {
            at = at.max(last);
        }
        let limit = self.spec.limit.max(1);
        if self.starts.len() >= limit {
            // The request `limit` places back must have left the window first.
            let idx = self.starts.len() - limit;
            at = at.max(self.starts[idx] + self.spec.window);
        }
        let wait = at.saturating_duration_since(now);
        if wait > max_wait {
            return Err(wait);
        }
        self.starts.push_back(at);
        Ok(wait)
    }

    pub fn block_until(&mut self, until: Instant) {
        if self.blocked_until.is_none_or(|b| b < until) {
            self.blocked_until = Some(until);
        }
    }

    /// Resource Graph said how many queries are left (`x-ms-user-quota-remaining`) until its window resets
    /// (`x-ms-user-quota-resets-after`): never believe more are left. The quota is the identity's, shared with
    /// every other process of it, so a fresh process's empty window may be wrong from its first answer on.
    /// The difference is held by placeholder starts that leave the window when the server's resets.
    pub fn observe_quota(&mut self, now: Instant, remaining: usize, resets_after: Duration) {
        let window = self.spec.window;
        while self.starts.front().is_some_and(|&t| t + window <= now) {
            self.starts.pop_front();
        }
        let limit = self.spec.limit.max(1);
        let believed = limit.saturating_sub(self.starts.len());
        let Some(excess) = believed.checked_sub(remaining).filter(|&n| n > 0) else {
            return;
        };
        // A start at `leaves - window` counts until `leaves`; a reset further than a window away is capped.
        let leaves = now + resets_after.min(window);
        let at = leaves.checked_sub(window).unwrap_or(now);
        let position = self.starts.partition_point(|&t| t <= at);
        for _ in 0..excess {
            self.starts.insert(position, at);
        }
    }
}

/// What to wait for before sending.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LimitKey {
    Arm {
        principal: String,
        subscription: String,
        class: RequestClass,
    },
    ResourceGraph {
        principal: String,
    },
}

impl LimitKey {
    /// ARM's bucket of `principal` (the token's object id; `unknown` without one) in `subscription`.
    pub fn arm(principal: Option<&str>, subscription: &str, class: RequestClass) -> Self {
        Self::Arm {
            principal: principal.unwrap_or("unknown").to_ascii_lowercase(),
            subscription: subscription.to_ascii_lowercase(),
            class,
        }
    }
}

/// All buckets of one client.
#[derive(Debug)]
pub struct RateLimiter {
    limits: RateLimits,
    buckets: Mutex<HashMap<LimitKey, Limiter>>,
    /// Woken when a probe of an unconfirmed bucket is answered or lost: its waiters look again.
    probed: tokio::sync::Notify,
}

#[derive(Debug)]
enum Limiter {
    Bucket(TokenBucket),
    Window(SlidingWindow),
}

/// What a caller of the limiter may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go after this wait (a token is reserved for it).
    After(Duration),
    /// The bucket's probe is in flight: wait for its answer (at most this long) and ask again.
    AwaitProbe(Duration),
}

/// How often the write scheduler looks again at a bucket whose probe another caller sent.
const PROBE_RECHECK: Duration = Duration::from_millis(25);

impl RateLimiter {
    pub fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            probed: tokio::sync::Notify::new(),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    fn with<R>(&self, key: &LimitKey, now: Instant, f: impl FnOnce(&mut Limiter) -> R) -> R {
        let mut map = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let limiter = map.entry(key.clone()).or_insert_with(|| match key {
            // ARM's buckets are shared with every other process of the same identity: learn what is left
            // from the first answer before spending the burst.
            LimitKey::Arm { class, .. } => {
                Limiter::Bucket(TokenBucket::unconfirmed(self.limits.spec(*class), now))
            }
            LimitKey::ResourceGraph { .. } => {
                Limiter::Window(SlidingWindow::new(self.limits.resource_graph))
            }
        });
        f(limiter)
    }

    /// Reserves capacity, without waiting: the wait the caller must observe (a token prepaid for it by
    /// [`RateLimiter::prepay`] first), the probe to wait for, or `DeadlineExceeded` at once when the wait
    /// would end after `deadline`.
    pub fn reserve(
        &self,
        key: &LimitKey,
        now: Instant,
        deadline: Instant,
    ) -> Result<Admission, AzureError> {
        if !self.limits.enabled {
            return Ok(Admission::After(Duration::ZERO));
        }
        let max_wait = deadline.saturating_duration_since(now);
        self.with(key, now, |l| match l {
            Limiter::Bucket(b) => {
                if let Some(wait) = b.take_prepaid(now) {
                    return Ok(Admission::After(wait));
                }
                if let Some(left) = b.awaiting_probe(now) {
                    return Ok(Admission::AwaitProbe(left));
                }
                b.reserve(now, max_wait).map(Admission::After)
            }
            Limiter::Window(w) => w.reserve(now, max_wait).map(Admission::After),
        })
        .map_err(|_| AzureError::DeadlineExceeded {
            during: "waiting for the client-side rate limit",
        })
    }

    /// Waits until a request under `key` may go, or fails when that would pass the deadline. Returns the
    /// time waited.
    pub async fn acquire(&self, key: &LimitKey, deadline: Instant) -> Result<Duration, AzureError> {
        let started = Instant::now();
        loop {
            // Registered before the look, so an answer arriving in between still wakes this caller.
            let probed = self.probed.notified();
            let now = Instant::now();
            match self.reserve(key, now, deadline)? {
                Admission::After(wait) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    return Ok(now.saturating_duration_since(started) + wait);
                }
                Admission::AwaitProbe(left) => {
                    let until = pause_end(now, left).min(deadline);
                    if tokio::time::timeout_at(until, probed).await.is_err() && until >= deadline {
                        return Err(AzureError::DeadlineExceeded {
                            during: "waiting for the client-side rate limit",
                        });
                    }
                }
            }
        }
    }

    /// Takes a token of `key` for a request the caller will send within `max_wait` (it spends the token
    /// when it reaches the limiter): `Ok(wait)` to send after, `Err(wait)` when nothing was taken because
    /// the next token is further away (or the bucket's probe is still out; ask again after `wait`).
    pub fn prepay(
        &self,
        key: &LimitKey,
        now: Instant,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        if !self.limits.enabled {
            return Ok(Duration::ZERO);
        }
        self.with(key, now, |l| match l {
            Limiter::Bucket(b) => match b.awaiting_probe(now) {
                Some(left) => Err(left.min(PROBE_RECHECK)),
                None => b.prepay(now, max_wait),
            },
            Limiter::Window(w) => w.reserve(now, max_wait),
        })
    }

    /// An answer under `key` arrived, with Azure's remaining count when it carried one.
    pub fn observe_answer(&self, key: &LimitKey, now: Instant, remaining: Option<f64>) {
        if !self.limits.enabled {
            return;
        }
        let was_probing = self.with(key, now, |l| match l {
            Limiter::Bucket(b) => {
                let probing = !b.is_confirmed();
                b.observe_answer(now, remaining);
                probing
            }
            Limiter::Window(_) => false,
        });
        if was_probing {
            self.probed.notify_waiters();
        }
    }

    /// A request under `key` ended without an answer: when it was a probe, the next caller probes.
    pub fn no_answer(&self, key: &LimitKey, now: Instant) {
        if !self.limits.enabled {
            return;
        }
        let was_probing = self.with(key, now, |l| match l {
            Limiter::Bucket(b) => {
                let probing = b.awaiting_probe(now).is_some();
                b.probe_failed();
                probing
            }
            Limiter::Window(_) => false,
        });
        if was_probing {
            self.probed.notify_waiters();
        }
    }

    pub fn observe_remaining(&self, key: &LimitKey, now: Instant, remaining: f64) {
        if !self.limits.enabled {
            return;
        }
        self.with(key, now, |l| {
            if let Limiter::Bucket(b) = l {
                b.observe_remaining(now, remaining);
            }
        });
    }

    /// Resource Graph's answer said `remaining` queries are left until `resets_after` ([`SlidingWindow::observe_quota`]).
    pub fn observe_window_quota(
        &self,
        key: &LimitKey,
        now: Instant,
        remaining: usize,
        resets_after: Duration,
    ) {
        if !self.limits.enabled {
            return;
        }
        self.with(key, now, |l| {
            if let Limiter::Window(w) = l {
                w.observe_quota(now, remaining, resets_after);
            }
        });
    }

    /// Applies a server-side pause (429 `Retry-After`, or Resource Graph's exhausted quota) to everyone.
    pub fn block_until(&self, key: &LimitKey, now: Instant, until: Instant) {
        if !self.limits.enabled {
            return;
        }
        let until = until.min(pause_end(now, MAX_SERVER_PAUSE));
        self.with(key, now, |l| match l {
            Limiter::Bucket(b) => b.block_until(now, until),
            Limiter::Window(w) => w.block_until(until),
        });
    }
}

/// Resource Graph's `x-ms-user-quota-resets-after` (`hh:mm:ss`), capped at [`MAX_SERVER_PAUSE`]. Any
/// number in it may be absurd: the arithmetic is checked and saturates at the cap.
pub fn parse_quota_resets_after(value: &str) -> Option<Duration> {
    let mut parts = value.trim().split(':');
    let h: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !s.is_finite() || s < 0.0 {
        return None;
    }
    let whole = h
        .checked_mul(3600)
        .and_then(|h| m.checked_mul(60).and_then(|m| h.checked_add(m)))
        .map(Duration::from_secs);
    let secs = Duration::try_from_secs_f64(s).ok();
    let total = whole
        .zip(secs)
        .and_then(|(a, b)| a.checked_add(b))
        .unwrap_or(MAX_SERVER_PAUSE);
    Some(total.min(MAX_SERVER_PAUSE))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SPEC: BucketSpec = BucketSpec {
        capacity: 3.0,
        refill_per_sec: 2.0,
    };
    const FAR: Duration = Duration::from_hours(1);

    #[test]
    fn bucket_serves_a_burst_then_paces_at_the_refill_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(SPEC, t0);
        for _ in 0..3 {
            assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        }
        // Fourth, fifth: one token every 500 ms, reservations queue up behind each other.
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_millis(500)));
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_secs(1)));
        // Too long a wait: refused and nothing reserved.
        assert_eq!(
            b.reserve(t0, Duration::from_millis(1200)),
            Err(Duration::from_millis(1500))
        );
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_millis(1500)));
        // Much later the bucket is full again, but never above capacity.
        let later = t0 + Duration::from_secs(100);
        assert!((b.available(later) - 3.0).abs() < 1e-9);
    }

    #[test]
    fn bucket_never_issues_more_than_capacity_plus_refill() {
        let t0 = Instant::now();
        let spec = BucketSpec {
            capacity: 10.0,
            refill_per_sec: 5.0,
        };
        let mut b = TokenBucket::new(spec, t0);
        // Simulate 200 callers arriving over 4 s; count how many may go within the first 2 s.
        let mut go_times = Vec::new();
        for i in 0..200u64 {
            let now = t0 + Duration::from_millis(i * 20);
            let wait = b.reserve(now, FAR).unwrap();
            go_times.push(now + wait);
        }
        let within = |secs: u64| {
            go_times
                .iter()
                .filter(|&&t| t <= t0 + Duration::from_secs(secs))
                .count()
        };
        assert!(within(2) <= 10 + 10 + 1, "{}", within(2));
        assert!(within(10) <= 10 + 50 + 1);
        assert!(go_times.windows(2).all(|w| w[0] <= w[1]), "served in order");
    }

    #[test]
    fn remaining_header_and_retry_after_lower_the_bucket() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(SPEC, t0);
        b.observe_remaining(t0, 1.0);
        assert_eq!(
            b.reserve(t0, FAR),
            Ok(Duration::ZERO),
            "what Azure says is left is usable now"
        );
        // Then no refill for the pause (ARM may refill in whole seconds), then the normal pace.
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_millis(1500)));
        let mut b = TokenBucket::new(SPEC, t0);
        b.observe_remaining(t0, 500.0); // more than we think: ignored
        assert!((b.available(t0) - 3.0).abs() < 1e-9);
        b.block_until(t0, t0 + Duration::from_secs(4));
        let w = b.reserve(t0 + Duration::from_secs(1), FAR).unwrap();
        assert!(w >= Duration::from_secs(3), "{w:?}");
        assert!(w <= Duration::from_millis(3500), "{w:?}");
    }

    /// ARM may refill in whole-second steps (the emulator does). With capacity <= server capacity - server
    /// refill and a slower refill, the limiter never sends a request the server has no token for.
    #[test]
    fn defaults_stay_under_a_whole_second_refill_server() {
        for (ours, server_capacity, server_refill) in [
            (RateLimits::default().reads, 250u32, 25u32),
            (RateLimits::default().writes, 200, 10),
            (RateLimits::default().deletes, 200, 10),
        ] {
            let t0 = Instant::now();
            let mut bucket = TokenBucket::new(ours, t0);
            let mut server_tokens = server_capacity;
            let mut server_tick = 0u64;
            // A greedy caller: always asks for the next token, sends the moment it is granted.
            let mut now = t0;
            for _ in 0..2_000 {
                let wait = bucket.reserve(now, FAR).unwrap();
                now += wait;
                let secs = (now - t0).as_secs();
                if secs > server_tick {
                    let add =
                        u32::try_from((secs - server_tick) * u64::from(server_refill)).unwrap();
                    server_tokens = (server_tokens + add).min(server_capacity);
                    server_tick = secs;
                }
                assert!(server_tokens > 0, "would be throttled at {:?}", now - t0);
                server_tokens -= 1;
                bucket.observe_remaining(now, f64::from(server_tokens));
            }
        }
    }

    #[test]
    fn a_window_believes_the_quota_resource_graph_reports() {
        let t0 = Instant::now();
        let spec = WindowSpec {
            limit: 15,
            window: Duration::from_secs(5),
        };
        // A fresh process: another process of the identity already spent 12 of the 15; the window resets in 2 s.
        let mut w = SlidingWindow::new(spec);
        w.observe_quota(t0, 3, Duration::from_secs(2));
        for _ in 0..3 {
            assert_eq!(w.reserve(t0, FAR), Ok(Duration::ZERO));
        }
        assert_eq!(w.reserve(t0, FAR), Ok(Duration::from_secs(2)));
        // Once reset, the rest of the window is free again (12 placeholders gone, 4 real starts).
        let later = t0 + Duration::from_secs(2);
        for _ in 0..11 {
            assert_eq!(w.reserve(later, FAR), Ok(Duration::ZERO));
        }
        assert!(w.reserve(later, FAR).unwrap() > Duration::ZERO);

        // An answer saying more is left than the window believes changes nothing.
        let mut w = SlidingWindow::new(spec);
        for _ in 0..14 {
            w.reserve(t0, FAR).unwrap();
        }
        w.observe_quota(t0, 10, Duration::from_secs(5));
        assert_eq!(w.reserve(t0, FAR), Ok(Duration::ZERO));
        assert_eq!(w.reserve(t0, FAR), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn sliding_window_allows_limit_per_window() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(WindowSpec {
            limit: 3,
            window: Duration::from_secs(5),
        });
        assert_eq!(w.reserve(t0, FAR), Ok(Duration::ZERO));
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(1), FAR),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(2), FAR),
            Ok(Duration::ZERO)
        );
        // The fourth must wait until the first leaves the window (t0 + 5 s).
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(2), FAR),
            Ok(Duration::from_secs(3))
        );
        // The fifth until the second leaves (t0 + 6 s).
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(2), FAR),
            Ok(Duration::from_secs(4))
        );
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(2), Duration::from_secs(1)),
            Err(Duration::from_secs(5))
        );
        w.block_until(t0 + Duration::from_mins(1));
        assert_eq!(
            w.reserve(t0 + Duration::from_secs(59), FAR),
            Ok(Duration::from_secs(1))
        );
    }

    #[test]
    fn limiter_keys_are_independent_and_deadline_is_enforced() {
        let limits = RateLimits {
            reads: BucketSpec {
                capacity: 1.0,
                refill_per_sec: 1.0,
            },
            ..RateLimits::default()
        };
        let l = RateLimiter::new(limits);
        let t0 = Instant::now();
        let k = |sub: &str| LimitKey::Arm {
            principal: "p".into(),
            subscription: sub.into(),
            class: RequestClass::Read,
        };
        let go = |a| Ok(Admission::After(a));
        assert_eq!(l.reserve(&k("a"), t0, t0 + FAR), go(Duration::ZERO));
        assert_eq!(l.reserve(&k("b"), t0, t0 + FAR), go(Duration::ZERO));
        // Both are probes: nothing more goes until an answer.
        assert_eq!(
            l.reserve(&k("a"), t0, t0 + FAR),
            Ok(Admission::AwaitProbe(PROBE_TIMEOUT))
        );
        l.observe_answer(&k("a"), t0, None);
        let e = l
            .reserve(&k("a"), t0, t0 + Duration::from_millis(10))
            .unwrap_err();
        assert_eq!(e.kind(), "deadline_exceeded");
        assert_eq!(l.reserve(&k("a"), t0, t0 + FAR), go(Duration::from_secs(1)));
        let off = RateLimiter::new(RateLimits::disabled());
        for _ in 0..1000 {
            assert_eq!(off.reserve(&k("a"), t0, t0), go(Duration::ZERO));
        }
    }

    #[test]
    fn quota_reset_parses() {
        assert_eq!(
            parse_quota_resets_after("00:00:03"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            parse_quota_resets_after("00:01:03.5"),
            Some(Duration::from_secs_f64(63.5))
        );
        assert_eq!(
            parse_quota_resets_after("01:02:03.5"),
            Some(MAX_SERVER_PAUSE),
            "capped"
        );
        assert_eq!(parse_quota_resets_after("3"), None);
    }

    fn hostile_f64() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            Just(f64::MIN),
            Just(-1.0),
            Just(-0.0),
            Just(1e300),
            Just(-1e300),
            any::<f64>(),
            0.0..500.0,
        ]
    }

    proptest::proptest! {
        /// Whatever ARM says is left, the bucket neither panics nor wedges: once the hostile value is
        /// observed, the next request may go within the clamp pause plus one refill interval, and every
        /// answer is a wait no longer than the caller allows.
        #[test]
        fn hostile_remaining_headers_never_panic_or_wedge(
            values in proptest::collection::vec(hostile_f64(), 1..20),
            max_wait_ms in 0u64..10_000,
        ) {
            let t0 = Instant::now();
            let limiter = RateLimiter::new(RateLimits::default());
            let key = LimitKey::Arm {
                principal: "p".into(),
                subscription: "s".into(),
                class: RequestClass::Read,
            };
            let max_wait = Duration::from_millis(max_wait_ms);
            for (i, v) in values.iter().enumerate() {
                let now = t0 + Duration::from_millis(i as u64 * 10);
                limiter.observe_answer(&key, now, Some(*v));
                if let Ok(admission) = limiter.reserve(&key, now, now + max_wait) {
                    proptest::prop_assert!(matches!(admission, Admission::After(w) if w <= max_wait));
                }
            }
            let later = t0 + Duration::from_millis(values.len() as u64 * 10);
            let wait = limiter.reserve(&key, later, later + Duration::from_secs(3));
            proptest::prop_assert!(matches!(wait, Ok(Admission::After(_))), "wedged: {wait:?}");
        }

        /// A 429's pause, a Resource Graph quota reset or a Retry-After of any size blocks for at most
        /// MAX_SERVER_PAUSE, without overflowing an instant.
        #[test]
        fn server_pauses_are_capped(
            secs in proptest::prelude::any::<u64>(),
            h in proptest::prelude::any::<u64>(),
            m in proptest::prelude::any::<u64>(),
            s in hostile_f64(),
        ) {
            let t0 = Instant::now();
            let limiter = RateLimiter::new(RateLimits::default());
            let key = LimitKey::ResourceGraph { principal: "p".into() };
            let until = pause_end(t0, Duration::from_secs(secs));
            limiter.block_until(&key, t0, until);
            let after = t0 + MAX_SERVER_PAUSE;
            proptest::prop_assert!(limiter.reserve(&key, after, after).is_ok());
            if let Some(d) = parse_quota_resets_after(&format!("{h}:{m}:{s}")) {
                proptest::prop_assert!(d <= MAX_SERVER_PAUSE);
            }
            let bucket_key = LimitKey::Arm {
                principal: "p".into(),
                subscription: "s".into(),
                class: RequestClass::Write,
            };
            limiter.block_until(&bucket_key, t0, until);
            let w = limiter.reserve(&bucket_key, t0, t0 + Duration::from_hours(1));
            proptest::prop_assert!(
                matches!(w, Ok(Admission::After(w)) if w <= MAX_SERVER_PAUSE + Duration::from_secs(1))
            );
        }
    }

    /// Concurrent callers of one bucket are served in the order they asked (FIFO), whatever their number: a
    /// reservation fixes each caller's turn, and a caller whose turn would come after its deadline is refused
    /// at once without taking a turn from anyone.
    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_are_served_first_come_first_served() {
        let limiter = std::sync::Arc::new(RateLimiter::new(RateLimits {
            reads: BucketSpec {
                capacity: 2.0,
                refill_per_sec: 10.0,
            },
            ..RateLimits::default()
        }));
        let key = LimitKey::Arm {
            principal: "p".into(),
            subscription: "s".into(),
            class: RequestClass::Read,
        };
        // A confirmed bucket (an answer came): the FIFO order of reservations, not the probe, is under test.
        limiter.observe_answer(&key, Instant::now(), None);
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let far = Instant::now() + Duration::from_mins(1);
        let mut tasks = Vec::new();
        for i in 0..50usize {
            let (limiter, key, order) = (limiter.clone(), key.clone(), order.clone());
            // An impatient caller in the middle: refused, and the others keep their turns.
            let deadline = if i == 25 {
                Instant::now() + Duration::from_millis(1)
            } else {
                far
            };
            tasks.push(tokio::spawn(async move {
                if limiter.acquire(&key, deadline).await.is_ok() {
                    order.lock().unwrap().push(i);
                }
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let expected: Vec<usize> = (0..50).filter(|i| *i != 25).collect();
        assert_eq!(order, expected);
    }

    /// A fresh process does not trust a full bucket: one probe goes, the rest wait for its answer, and the
    /// answer's remaining count is what the burst may spend.
    #[test]
    fn an_unconfirmed_bucket_sends_one_probe_and_learns_what_is_left() {
        let t0 = Instant::now();
        let mut b = TokenBucket::unconfirmed(SPEC, t0);
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO), "the probe");
        assert_eq!(b.awaiting_probe(t0), Some(PROBE_TIMEOUT));
        assert_eq!(
            b.reserve(t0, FAR),
            Err(PROBE_TIMEOUT),
            "held for the answer"
        );
        // Another process drained Azure's bucket: nothing left. No refill for the clamp pause, then 2/s.
        b.observe_answer(t0, Some(0.0));
        assert!(b.is_confirmed());
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_millis(1500)));

        // An answer without a count confirms the full start.
        let mut b = TokenBucket::unconfirmed(SPEC, t0);
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        b.observe_answer(t0, None);
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::from_millis(500)));

        // A probe lost without an answer (or unanswered for PROBE_TIMEOUT): the next caller probes.
        let mut b = TokenBucket::unconfirmed(SPEC, t0);
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        b.probe_failed();
        assert_eq!(b.reserve(t0, FAR), Ok(Duration::ZERO));
        assert!(b.reserve(t0, FAR).is_err());
        let late = t0 + PROBE_TIMEOUT;
        assert_eq!(b.reserve(late, FAR), Ok(Duration::ZERO));
        assert!(!b.is_confirmed());
    }

    /// A token prepaid by the write scheduler is spent by the next request of its bucket, at its instant,
    /// instead of a second reservation.
    #[test]
    fn prepaid_tokens_are_spent_by_the_next_request() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(RateLimits {
            writes: SPEC,
            ..RateLimits::default()
        });
        let key = LimitKey::arm(Some("P"), "S", RequestClass::Write);
        assert_eq!(limiter.prepay(&key, t0, Duration::ZERO), Ok(Duration::ZERO));
        // The probe is out: the scheduler is told to look again soon, nothing is taken.
        assert_eq!(
            limiter.prepay(&key, t0, FAR),
            Err(PROBE_RECHECK),
            "held for the probe"
        );
        assert_eq!(
            limiter.reserve(&key, t0, t0 + FAR).unwrap(),
            Admission::After(Duration::ZERO),
            "the probe's request spends the prepaid token"
        );
        // Azure has one left (we assumed two): one now.
        limiter.observe_answer(&key, t0, Some(1.0));
        assert_eq!(limiter.prepay(&key, t0, Duration::ZERO), Ok(Duration::ZERO));
        // Empty now (and no refill for the clamp pause): a token 1.5 s away is refused within 1 s.
        assert_eq!(
            limiter.prepay(&key, t0, Duration::from_secs(1)),
            Err(Duration::from_millis(1500))
        );
        assert_eq!(
            limiter.prepay(&key, t0, FAR),
            Ok(Duration::from_millis(1500))
        );
        let later = t0 + Duration::from_millis(100);
        let spent: Vec<Admission> = (0..2)
            .map(|_| limiter.reserve(&key, later, later + FAR).unwrap())
            .collect();
        assert_eq!(
            spent,
            [
                Admission::After(Duration::ZERO),
                Admission::After(Duration::from_millis(1400)),
            ]
        );
        // No credit left: a normal reservation behind the prepaid ones.
        assert_eq!(
            limiter.reserve(&key, later, later + FAR).unwrap(),
            Admission::After(Duration::from_millis(1900))
        );
    }

    /// Callers of a fresh bucket wait for the probe's answer (woken by it, not by a timer), then share what
    /// Azure said is left; a probe that gets no answer hands the probe to the next caller.
    #[tokio::test(start_paused = true)]
    async fn callers_of_a_fresh_bucket_wait_for_the_probes_answer() {
        let limiter = std::sync::Arc::new(RateLimiter::new(RateLimits {
            writes: SPEC,
            ..RateLimits::default()
        }));
        let key = LimitKey::arm(Some("p"), "s", RequestClass::Write);
        let t0 = Instant::now();
        let far = t0 + Duration::from_mins(1);
        let gone = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4usize {
            let (limiter, key, gone) = (limiter.clone(), key.clone(), gone.clone());
            tasks.push(tokio::spawn(async move {
                limiter.acquire(&key, far).await.unwrap();
                gone.lock().unwrap().push((i, Instant::now() - t0));
            }));
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(gone.lock().unwrap().len(), 1, "only the probe went");
        // The probe's request never got an answer: the next caller probes.
        limiter.no_answer(&key, Instant::now());
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(gone.lock().unwrap().len(), 2);
        // Its answer: one token left in Azure's bucket.
        limiter.observe_answer(&key, Instant::now(), Some(1.0));
        for t in tasks {
            t.await.unwrap();
        }
        let mut times: Vec<u128> = gone
            .lock()
            .unwrap()
            .iter()
            .map(|(_, d)| d.as_millis())
            .collect();
        times.sort_unstable();
        // probe, second probe after the loss, the one token left at once, then the clamp pause and 2/s.
        assert_eq!(times, [0, 30, 60, 60 + 1500]);
    }

    #[test]
    fn quota_reset_overflow_is_capped() {
        assert_eq!(
            parse_quota_resets_after("18446744073709551615:0:0"),
            Some(MAX_SERVER_PAUSE)
        );
        assert_eq!(
            parse_quota_resets_after("0:0:1e300"),
            Some(MAX_SERVER_PAUSE)
        );
        assert_eq!(parse_quota_resets_after("0:0:NaN"), None);
    }
}
