//! When to try a request again, and how long to wait first. Pure: the clock and the random source are
//! passed in, so every decision is unit-tested without sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::error::AzureError;

/// Retry settings. Cheap to clone; clones share the random source.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts per request (first try included) for 429, 5xx, timeouts, connection and token errors.
    pub max_attempts: u32,
    /// Back-off base: attempt n waits a uniformly random time in `[0, min(max_delay, base_delay * 2^n)]`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Attempts of a role-assignment PUT answered `PrincipalNotFound` (a principal still replicating).
    pub principal_not_found_attempts: u32,
    pub principal_not_found_base_delay: Duration,
    /// Upper bound of one attempt; the deadline shortens it further.
    pub per_request_timeout: Duration,
    rng: Arc<Mutex<StdRng>>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field(
                "principal_not_found_attempts",
                &self.principal_not_found_attempts,
            )
            .field(
                "principal_not_found_base_delay",
                &self.principal_not_found_base_delay,
            )
            .field("per_request_timeout", &self.per_request_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            principal_not_found_attempts: 8,
            principal_not_found_base_delay: Duration::from_secs(1),
            per_request_timeout: Duration::from_secs(30),
            rng: Arc::new(Mutex::new(StdRng::from_os_rng())),
        }
    }
}

impl RetryPolicy {
    /// The same policy with a seeded random source, for reproducible jitter in tests.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed)));
        self
    }

    /// A policy that never retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            principal_not_found_attempts: 1,
            ..Self::default()
        }
    }

    fn unit_random(&self) -> f64 {
        // A poisoned lock only means another thread panicked mid-draw; the generator state is still usable.
        let mut rng = self
            .rng
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rng.random_range(0.0..=1.0)
    }

    /// Decides what to do after `attempt` (1-based) failed with `error` at `now`.
    pub fn decide(
        &self,
        error: &AzureError,
        attempt: u32,
        now: Instant,
        deadline: Instant,
    ) -> Decision {
        decide(self, error, attempt, now, deadline, self.unit_random())
    }
}

/// What the retry loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RetryAfter(Duration),
    GiveUp,
}

/// Full-jitter exponential back-off: `unit` in [0, 1] scales the capped exponential window.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let window = base.saturating_mul(1u32 << exp).min(max);
    window.mul_f64(unit.clamp(0.0, 1.0))
}

/// The pure decision: `unit` is the random draw for the jitter.
pub fn decide(
    policy: &RetryPolicy,
    error: &AzureError,
    attempt: u32,
    now: Instant,
    deadline: Instant,
    unit: f64,
) -> Decision {
    // Checked: a server may ask for any wait, and an overflowing instant must mean "does not fit".
    let fits = |wait: Duration| now.checked_add(wait).is_some_and(|at| at < deadline);
    match error {
        AzureError::Throttled { retry_after } => {
            if attempt >= policy.max_attempts {
                return Decision::GiveUp;
            }
            let wait = retry_after.unwrap_or_else(|| {
                backoff_delay(attempt, policy.base_delay, policy.max_delay, unit)
            });
            if fits(wait) {
                Decision::RetryAfter(wait)
            } else {
                Decision::GiveUp
            }
        }
        AzureError::PrincipalNotFound { .. } => {
            if attempt >= policy.principal_not_found_attempts {
                return Decision::GiveUp;
            }
            let wait = backoff_delay(
                attempt,
                policy.principal_not_found_base_delay,
                policy.max_delay,
                // Never retry at once: replication takes a while, the floor spreads the tries out.
                0.5 + unit / 2.0,
            );
            if fits(wait) {
                Decision::RetryAfter(wait)
            } else {
                Decision::GiveUp
            }
        }
        AzureError::Server { .. }
        | AzureError::Timeout
        | AzureError::Connect(_)
        | AzureError::Token(_) => {
            if attempt >= policy.max_attempts {
                return Decision::GiveUp;
            }
            let wait = backoff_delay(attempt, policy.base_delay, policy.max_delay, unit);
            if fits(wait) {
                Decision::RetryAfter(wait)
            } else {
                Decision::GiveUp
            }
        }
        _ => Decision::GiveUp,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (IMF-fixdate), relative to `now`. A date in the past means
/// "now". Unparsable values are ignored (the caller falls back to back-off).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    if let Ok(secs) = value.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    let at: SystemTime = at.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn backoff_is_exponential_capped_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        assert_eq!(backoff_delay(1, base, max, 1.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(3, base, max, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(10, base, max, 1.0), max);
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_millis(200));
        assert_eq!(backoff_delay(3, base, max, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(u32::MAX, base, max, 1.0), max);
    }

    #[test]
    fn seeded_jitter_is_reproducible_and_bounded() {
        let a = RetryPolicy::default().with_seed(7);
        let b = RetryPolicy::default().with_seed(7);
        let now = Instant::now();
        let deadline = now + Duration::from_mins(1);
        let err = AzureError::Server {
            status: 503,
            code: None,
            message: None,
        };
        for attempt in 1..5 {
            let da = a.decide(&err, attempt, now, deadline);
            assert_eq!(da, b.decide(&err, attempt, now, deadline));
            let Decision::RetryAfter(d) = da else {
                panic!("expected a retry")
            };
            assert!(d <= backoff_delay(attempt, a.base_delay, a.max_delay, 1.0));
        }
        assert_eq!(
            a.decide(&err, a.max_attempts, now, deadline),
            Decision::GiveUp
        );
    }

    #[test]
    fn throttling_honours_retry_after_only_when_it_fits_the_deadline() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let err = AzureError::Throttled {
            retry_after: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            decide(&p, &err, 1, now, now + Duration::from_secs(6), 0.3),
            Decision::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            decide(&p, &err, 1, now, now + Duration::from_secs(5), 0.3),
            Decision::GiveUp
        );
        let no_header = AzureError::Throttled { retry_after: None };
        assert_eq!(
            decide(&p, &no_header, 2, now, now + Duration::from_mins(1), 1.0),
            Decision::RetryAfter(Duration::from_millis(500))
        );
    }

    #[test]
    fn client_errors_are_not_retried_but_principal_not_found_is_bounded() {
        let p = RetryPolicy::default();
        let now = Instant::now();
        let far = now + Duration::from_mins(10);
        for e in [
            AzureError::Forbidden {
                code: "AuthorizationFailed".into(),
                message: String::new(),
            },
            AzureError::NotFound { code: None },
            AzureError::BadRequest {
                code: "X".into(),
                message: String::new(),
            },
            AzureError::Unauthorized {
                code: None,
                message: None,
            },
            AzureError::Conflict {
                code: "RoleAssignmentUpdateNotPermitted".into(),
                message: String::new(),
            },
        ] {
            assert_eq!(decide(&p, &e, 1, now, far, 0.5), Decision::GiveUp, "{e}");
        }
        let pnf = AzureError::PrincipalNotFound {
            message: String::new(),
        };
        let Decision::RetryAfter(d) = decide(&p, &pnf, 1, now, far, 0.0) else {
            panic!()
        };
        assert!(d >= Duration::from_millis(500));
        assert_eq!(
            decide(&p, &pnf, p.principal_not_found_attempts, now, far, 0.0),
            Decision::GiveUp
        );
        // Not enough time left for the back-off: give up rather than overrun.
        assert_eq!(
            decide(&p, &pnf, 1, now, now + Duration::from_millis(100), 0.0),
            Decision::GiveUp
        );
    }

    proptest::proptest! {
        /// Any `Retry-After` a server sends (seconds, fractions, dates, garbage) and any wait in a 429 error
        /// is decided on without panicking; a wait that does not fit the deadline gives up.
        #[test]
        fn hostile_retry_after_never_panics(
            text in "\\PC{0,40}",
            secs in proptest::prelude::any::<u64>(),
            nanos in 0u32..1_000_000_000,
            attempt in 0u32..10,
        ) {
            let now_wall = SystemTime::now();
            let _ = parse_retry_after(&text, now_wall);
            let _ = parse_retry_after(&secs.to_string(), now_wall);
            let p = RetryPolicy::default();
            let now = Instant::now();
            let err = AzureError::Throttled { retry_after: Some(Duration::new(secs, nanos)) };
            match decide(&p, &err, attempt, now, now + Duration::from_secs(30), 0.5) {
                Decision::RetryAfter(w) => proptest::prop_assert!(w < Duration::from_secs(30)),
                Decision::GiveUp => {}
            }
        }
    }
}
