//! What concurrent event runs of one process share: a bounded number of turns, and the tagged-registry read.
//!
//! A burst of cluster creations brings thousands of deliveries at once. Every run draws on the same per-process
//! Azure client (its concurrency slots, ARM's buckets, Resource Graph's quota), so running them all at once only
//! makes every one of them late: each run's requests queue behind everyone else's, and runs that reach their
//! deadline have spent requests for nothing. So a run waits for a turn ([`Engine::admit`]): at most
//! [`event_runs`] at once, the others wait in line with nothing read (later deliveries about the same resource
//! join them, single flight), and a run that gets no turn before [`ADMISSION_RESERVE`] is left before its
//! deadline fails transiently without sending a request: the invocation answers 500 in time, Event Grid
//! redelivers it, and the timer's verification repairs what every retry missed. A run waiting for a cluster to
//! be ready gives its turn back while it sleeps.
//!
//! Concurrent cluster events in the same scope need the same registries: they share one read
//! ([`Engine::shared_registries`]) that began after the event was dispatched, never an older one.

#[allow(clippy::wildcard_imports)]
use super::*;
use tokio::sync::{Semaphore, SemaphorePermit};

/// A run is not started with less than this left before its deadline: enough for its reads, its writes and
/// the answer, so a late turn is not spent on writes cut off half way.
pub const ADMISSION_RESERVE: Duration = Duration::from_secs(5);

/// Event runs one process does at once: twice the Azure client's concurrent requests, so its slots stay busy
/// while some runs plan or wait for an answer.
pub fn event_runs(max_concurrency: usize) -> usize {
    max_concurrency.saturating_mul(2).max(1)
}

/// The shared state of a process's event runs.
pub struct EventGate {
    turns: Semaphore,
    registries: SingleFlight<String, Result<Vec<Registry>, AzureError>>,
}

impl EventGate {
    pub fn new(max_concurrency: usize) -> Self {
        Self {
            turns: Semaphore::new(event_runs(max_concurrency)),
            registries: SingleFlight::new(EVENT_HARD_BUDGET),
        }
    }
}

/// The error of a run that got no turn in time: transient, so the delivery is retried.
fn no_turn() -> EngineError {
    EngineError::Azure(AzureError::DeadlineExceeded {
        during: "waiting for a turn among this process's event runs (deferred to Event Grid's retry)",
    })
}

impl<C: AzureConnect> Engine<C> {
    /// Waits for a turn until [`ADMISSION_RESERVE`] before the run's deadline. Nothing read so far decides the
    /// run's answer while it waits (deliveries arriving meanwhile join it); it reads afresh once admitted.
    pub(super) async fn admit(&self, azure: &C::Ops) -> Result<SemaphorePermit<'_>, EngineError> {
        let by = azure
            .deadline()
            .checked_sub(ADMISSION_RESERVE)
            .unwrap_or_else(Instant::now);
        crate::runtime::singleflight::nothing_read_decides();
        let turn = tokio::time::timeout_at(by, self.gate.turns.acquire()).await;
        crate::runtime::singleflight::reading_again();
        match turn {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(no_turn()),
        }
    }

    /// The tagged registries of `scope` for a cluster event that started at `started`: from a read (Resource
    /// Graph, or ARM lists) that began at or after `started`, shared by every concurrent cluster event of the
    /// same scope.
    pub(super) async fn shared_registries(
        &self,
        azure: &C::Ops,
        scope: &[String],
        started: Instant,
    ) -> Result<Vec<Registry>, AzureError> {
        let key = scope
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",");
        let (azure, scope) = (azure.clone(), scope.to_vec());
        let (graph, tag) = (self.config.use_resource_graph, self.config.tag.clone());
        self.gate
            .registries
            .run(key, started, Result::is_ok, move || async move {
                event_path::registries_for_cluster_event(&azure, &scope, graph, &tag).await
            })
            .await
    }
}
