//! Coalescing of concurrent work on one key (single flight). A caller asks for "a run of this work that
//! began at or after `not_before`": it joins a run in flight or queued that qualifies, reuses a finished
//! one that qualifies, or queues a new run behind the one in flight. So a burst of N identical requests
//! costs at most two runs (the one in flight when the burst began and one trailing run that every later
//! arrival joins), and no caller is ever answered from a run that began before its own `not_before`: a
//! burst is never answered from a state read before its event happened.
//!
//! Runs are driven by whoever awaits them (no task is spawned), so a run keeps the invocation's task-local
//! accounting; a run whose every caller went away stops and is resumed by the next caller.
//!
//! A run that pauses before reading afresh everything its answer depends on (the event path waiting for a
//! cluster to be ready) says so ([`nothing_read_decides`], then [`reading_again`]): while it waits, callers that
//! arrive join it as they would join a queued run, since its answer will come from reads made after they arrived.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use tokio::time::Instant;

type Run<V> = Shared<BoxFuture<'static, V>>;

/// When a run began reading what decides its answer; `None` while it waits for the run before it, or pauses
/// with nothing read so far deciding its answer.
type ReadingSince = Arc<Mutex<Option<Instant>>>;

tokio::task_local! {
    static READING_SINCE: ReadingSince;
}

fn lock_since(since: &ReadingSince) -> std::sync::MutexGuard<'_, Option<Instant>> {
    since
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Called by a run's work before a pause after which it reads again everything its answer depends on: callers
/// arriving from now until [`reading_again`] may join the run. No effect outside a run.
pub fn nothing_read_decides() {
    let _ = READING_SINCE.try_with(|since| *lock_since(since) = None);
}

/// Called by a run's work as it starts reading again: callers arriving from now on no longer join the run.
pub fn reading_again() {
    let _ = READING_SINCE.try_with(|since| *lock_since(since) = Some(Instant::now()));
}

struct Flight<V> {
    /// When the work began reading what decides its answer (see [`ReadingSince`]).
    began: ReadingSince,
    run: Run<V>,
    /// Set once the run finished and its value may be reused.
    done: Option<V>,
}

/// Finished runs of other keys than the caller's are forgotten at most this often: sweeping every key on every
/// call made a burst of N events cost N² lock operations (3.6 % of the handler's CPU in a 1,000-cluster burst).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Flights<K, V> {
    by_key: HashMap<K, Vec<Flight<V>>>,
    /// When every key was last swept of its expired runs.
    swept: Option<Instant>,
}

/// Single flight per key; see the module documentation.
pub struct SingleFlight<K, V> {
    flights: Mutex<Flights<K, V>>,
    /// Finished runs older than this are forgotten (never reused, whenever the sweep runs).
    keep: Duration,
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(keep: Duration) -> Self {
        Self {
            flights: Mutex::new(Flights {
                by_key: HashMap::new(),
                swept: None,
            }),
            keep,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flights<K, V>> {
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value of a run of `work` that began at or after `not_before`. `reusable` says whether a finished
    /// run's value may serve later callers (e.g. not an error); a value that may not is still shared with
    /// every caller that joined the run while it was in flight.
    pub async fn run<F>(
        &self,
        key: K,
        not_before: Instant,
        reusable: fn(&V) -> bool,
        work: impl FnOnce() -> F,
    ) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let run = {
            let mut guard = self.lock();
            let now = Instant::now();
            let keep = self.keep;
            let live = |f: &Flight<V>| {
                f.done.is_none() || lock_since(&f.began).is_some_and(|b| now - b < keep)
            };
            let state = &mut *guard;
            if state.swept.is_none_or(|at| now - at >= SWEEP_EVERY) {
                state.by_key.retain(|_, flights| {
                    flights.retain(live);
                    !flights.is_empty()
                });
                state.swept = Some(now);
            }
            let flights = state.by_key.entry(key.clone()).or_default();
            flights.retain(live);
            // Newest first: a queued run, or one that began late enough.
            let found = flights.iter().rev().find(|f| match *lock_since(&f.began) {
                None => true,
                Some(began) => began >= not_before,
            });
            match found {
                Some(Flight {
                    done: Some(value), ..
                }) => return value.clone(),
                Some(flight) => flight.run.clone(),
                None => {
                    let previous = flights.last().map(|f| f.run.clone());
                    let began: ReadingSince = Arc::new(Mutex::new(None));
                    let mark = Arc::clone(&began);
                    let work = READING_SINCE.scope(Arc::clone(&began), work());
                    let run = async move {
                        if let Some(previous) = previous {
                            previous.await;
                        }
                        *lock_since(&mark) = Some(Instant::now());
                        work.await
                    }
                    .boxed()
                    .shared();
                    flights.push(Flight {
                        began,
                        run: run.clone(),
                        done: None,
                    });
                    run
                }
            }
        };
        let value = run.clone().await;
        let mut guard = self.lock();
        let map = &mut guard.by_key;
        let mut emptied = false;
        let key_flights = map.get_mut(&key).and_then(|flights| {
            flights
                .iter()
                .position(|f| f.run.ptr_eq(&run))
                .map(|i| (flights, i))
        });
        if let Some((flights, index)) = key_flights {
            if reusable(&value) {
                flights[index].done = Some(value.clone());
                // Older finished runs can no longer be the best answer for anyone.
                let mut i = 0usize;
                flights.retain(|f| {
                    let keep = i >= index || f.done.is_none();
                    i += 1;
                    keep
                });
            } else {
                flights.remove(index);
                emptied = flights.is_empty();
            }
        }
        if emptied {
            map.remove(&key);
        }
        value
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[allow(clippy::trivially_copy_pass_by_ref)]
    fn always(_: &u32) -> bool {
        true
    }

    fn counting(
        runs: &Arc<AtomicU32>,
        pause: Duration,
    ) -> impl FnOnce() -> BoxFuture<'static, u32> + use<> {
        let runs = Arc::clone(runs);
        move || {
            async move {
                let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(pause).await;
                n
            }
            .boxed()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_costs_one_run_and_late_arrivals_one_trailing_run() {
        let flight: Arc<SingleFlight<&str, u32>> =
            Arc::new(SingleFlight::new(Duration::from_mins(1)));
        let runs = Arc::new(AtomicU32::new(0));
        let t0 = Instant::now();
        let first: Vec<_> = (0..500)
            .map(|_| {
                let (flight, runs) = (Arc::clone(&flight), Arc::clone(&runs));
                tokio::spawn(async move {
                    flight
                        .run("k", t0, always, counting(&runs, Duration::from_millis(100)))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        // These arrive while the first run is in flight: they must not take its (older) answer.
        let t1 = Instant::now();
        let late: Vec<_> = (0..500)
            .map(|_| {
                let (flight, runs) = (Arc::clone(&flight), Arc::clone(&runs));
                tokio::spawn(async move {
                    flight
                        .run("k", t1, always, counting(&runs, Duration::from_millis(100)))
                        .await
                })
            })
            .collect();
        for h in first {
            assert_eq!(h.await.unwrap(), 1);
        }
        for h in late {
            assert_eq!(h.await.unwrap(), 2);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A finished run that began after `not_before` is reused; one that began before is not.
        let again = flight
            .run("k", t1, always, counting(&runs, Duration::ZERO))
            .await;
        assert_eq!(again, 2);
        let fresh = flight
            .run("k", Instant::now(), always, counting(&runs, Duration::ZERO))
            .await;
        assert_eq!(fresh, 3);
        // Another key is independent.
        let other = flight
            .run("other", t0, always, counting(&runs, Duration::ZERO))
            .await;
        assert_eq!(other, 4);
    }

    /// A caller arriving while a run pauses with nothing read deciding its answer joins it; one arriving after
    /// the run read again does not.
    #[tokio::test(start_paused = true)]
    async fn a_run_waiting_before_it_reads_again_is_joined() {
        let flight: Arc<SingleFlight<&str, u32>> =
            Arc::new(SingleFlight::new(Duration::from_mins(1)));
        let runs = Arc::new(AtomicU32::new(0));
        let work = |runs: &Arc<AtomicU32>| {
            let runs = Arc::clone(runs);
            move || {
                async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    nothing_read_decides();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    reading_again();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    n
                }
                .boxed()
            }
        };
        let t0 = Instant::now();
        let first = {
            let (flight, w) = (Arc::clone(&flight), work(&runs));
            tokio::spawn(async move { flight.run("k", t0, always, w).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (waiting, w) = (Instant::now(), work(&runs));
        let joined = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move { flight.run("k", waiting, always, w).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (reading, w) = (Instant::now(), work(&runs));
        let late = {
            let flight = Arc::clone(&flight);
            tokio::spawn(async move { flight.run("k", reading, always, w).await })
        };
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(joined.await.unwrap(), 1, "arrived during the pause: joins");
        assert_eq!(late.await.unwrap(), 2, "arrived after the run read again");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn unreusable_values_are_shared_in_flight_but_not_kept() {
        let flight: SingleFlight<u8, u32> = SingleFlight::new(Duration::from_mins(1));
        let runs = Arc::new(AtomicU32::new(0));
        let t0 = Instant::now();
        let never = |_: &u32| false;
        let (a, b) = tokio::join!(
            flight.run(1, t0, never, counting(&runs, Duration::from_millis(5))),
            flight.run(1, t0, never, counting(&runs, Duration::from_millis(5))),
        );
        assert_eq!((a, b), (1, 1));
        let c = flight
            .run(1, t0, never, counting(&runs, Duration::ZERO))
            .await;
        assert_eq!(c, 2, "a failure is not served to later callers");
    }
    /// A finished run older than `keep` is never reused, though the sweep of every key runs only every
    /// [`SWEEP_EVERY`]; the sweep forgets other keys' expired runs.
    #[tokio::test(start_paused = true)]
    async fn expired_runs_are_not_reused_between_sweeps_and_are_swept() {
        let flight: SingleFlight<&str, u32> = SingleFlight::new(Duration::from_millis(100));
        let runs = Arc::new(AtomicU32::new(0));
        let t0 = Instant::now();
        assert_eq!(
            flight
                .run("k", t0, always, counting(&runs, Duration::ZERO))
                .await,
            1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            flight
                .run("k", t0, always, counting(&runs, Duration::ZERO))
                .await,
            1
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            flight
                .run("k", t0, always, counting(&runs, Duration::ZERO))
                .await,
            2,
            "older than keep: a new run, although no sweep ran since"
        );
        assert_eq!(flight.lock().by_key.len(), 1);
        tokio::time::sleep(SWEEP_EVERY).await;
        assert_eq!(
            flight
                .run("other", t0, always, counting(&runs, Duration::ZERO))
                .await,
            3
        );
        let keys: Vec<&str> = flight.lock().by_key.keys().copied().collect();
        assert_eq!(keys, vec!["other"], "the sweep forgot the expired run of k");
    }
}
