//! What an event led to, and the one decision an invocation's answer comes from (the kube-rs `error_policy`
//! idea): succeed, or fail so the platform redelivers. Pure: the engine fills the reports, the contract
//! turns the answer into HTTP.

use serde::Serialize;

use crate::core::model::{PairResult, PairStatus, RegistryResult};

/// What became of one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// Not ours to act on (the class or a note says why).
    Ignored,
    /// Handled: whatever could be done was done, failures included that retrying cannot fix.
    Done,
    /// A transient failure: the invocation must fail so Event Grid redelivers.
    Retry,
    /// A failure that retrying cannot fix.
    Failed,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignored => "ignored",
            Self::Done => "done",
            Self::Retry => "retry",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for EventOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one event led to.
#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub event_id: String,
    pub event_type: String,
    /// `cluster_write`, `registry_write`, …, or the ignore reason.
    pub class: String,
    pub outcome: EventOutcome,
    pub resource: Option<String>,
    pub notes: Vec<String>,
    pub pairs: Vec<PairResult>,
    pub registry_results: Vec<RegistryResult>,
    /// Why the invocation must be retried, when it must.
    pub retry_reason: Option<String>,
    pub azure_requests: u64,
}

/// Why an engine run stopped before it finished, as the outcome decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    pub message: String,
    pub transient: bool,
}

impl EventReport {
    /// A report for an event that has not been handled yet (outcome `done` until something says otherwise).
    pub fn new(event_id: String, event_type: String, class: String) -> Self {
        Self {
            event_id,
            event_type,
            class,
            outcome: EventOutcome::Done,
            resource: None,
            notes: Vec::new(),
            pairs: Vec::new(),
            registry_results: Vec::new(),
            retry_reason: None,
            azure_requests: 0,
        }
    }

    /// Settles the outcome once the engine is done: a run failure decides (retry when transient, failed
    /// otherwise); else a pair that failed transiently makes the event retry; else it stays as it is.
    pub fn conclude(&mut self, failure: Option<RunFailure>) {
        if let Some(failure) = failure {
            self.outcome = if failure.transient {
                EventOutcome::Retry
            } else {
                EventOutcome::Failed
            };
            if failure.transient {
                self.retry_reason = Some(failure.message.clone());
            }
            self.notes.push(failure.message);
            return;
        }
        if self.outcome != EventOutcome::Done {
            return;
        }
        let transient = self.pairs.iter().find(|p| {
            p.status == PairStatus::Failed && p.failure.as_ref().is_some_and(|f| f.transient)
        });
        if let Some(p) = transient {
            self.outcome = EventOutcome::Retry;
            self.retry_reason = Some(format!(
                "transient failure on {} → {}: {}",
                p.cluster_id.name(),
                p.registry_id.name(),
                p.reason.clone().unwrap_or_default()
            ));
        }
    }
}

/// The answer an invocation owes the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Success: every event was handled (or cannot be helped by a retry).
    Succeed,
    /// Failure, so the platform redelivers the whole batch; the reason of the first event that needs it.
    Retry { reason: String },
}

/// The one decision from an invocation's reports to its answer.
pub fn answer(reports: &[EventReport]) -> Answer {
    reports
        .iter()
        .find(|r| r.outcome == EventOutcome::Retry)
        .map_or(Answer::Succeed, |r| Answer::Retry {
            reason: r
                .retry_reason
                .clone()
                .unwrap_or_else(|| format!("event {} must be retried", r.event_id)),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::model::{PairFailure, ResourceId};

    fn report() -> EventReport {
        EventReport::new("e1".into(), "t".into(), "cluster_write".into())
    }

    fn pair(failure: Option<PairFailure>) -> PairResult {
        PairResult {
            cluster_id: ResourceId::parse(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/aks",
            )
            .unwrap(),
            registry_id: ResourceId::parse(
                "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerRegistry/registries/acr",
            )
            .unwrap(),
            principal_id: None,
            role: None,
            status: if failure.is_some() {
                PairStatus::Failed
            } else {
                PairStatus::Repaired
            },
            reason: failure.as_ref().map(PairFailure::reason),
            assignment_id: None,
            latency_seconds: None,
            failure,
        }
    }

    #[test]
    fn a_transient_pair_failure_makes_the_event_retry_and_the_invocation_fail() {
        let mut r = report();
        r.pairs = vec![
            pair(None),
            pair(Some(PairFailure::transient("throttled", "429 slow down"))),
        ];
        r.conclude(None);
        assert_eq!(r.outcome, EventOutcome::Retry);
        let reason = r.retry_reason.clone().unwrap();
        assert_eq!(
            reason,
            "transient failure on aks → acr: transient: 429 slow down"
        );
        assert_eq!(answer(&[report(), r]), Answer::Retry { reason });
    }

    #[test]
    fn a_permanent_pair_failure_is_done_and_the_invocation_succeeds() {
        let mut r = report();
        r.pairs = vec![pair(Some(PairFailure::permanent("forbidden", "403")))];
        r.conclude(None);
        assert_eq!(r.outcome, EventOutcome::Done);
        assert_eq!(r.pairs[0].reason.as_deref(), Some("forbidden: 403"));
        assert_eq!(answer(&[r]), Answer::Succeed);
    }

    #[test]
    fn a_run_failure_decides_over_the_pairs() {
        let mut failed = report();
        failed.pairs = vec![pair(Some(PairFailure::transient("timeout", "t")))];
        failed.conclude(Some(RunFailure {
            message: "Azure: 403".into(),
            transient: false,
        }));
        assert_eq!(failed.outcome, EventOutcome::Failed);
        assert_eq!(failed.retry_reason, None);
        assert_eq!(answer(std::slice::from_ref(&failed)), Answer::Succeed);

        let mut retry = report();
        retry.conclude(Some(RunFailure {
            message: "not ready".into(),
            transient: true,
        }));
        assert_eq!(retry.outcome, EventOutcome::Retry);
        assert_eq!(retry.notes, ["not ready"]);
        assert_eq!(
            answer(&[failed, retry]),
            Answer::Retry {
                reason: "not ready".into()
            }
        );
    }

    #[test]
    fn an_ignored_event_stays_ignored_and_serialises_as_before() {
        let mut r = report();
        r.outcome = EventOutcome::Ignored;
        r.conclude(None);
        assert_eq!(r.outcome, EventOutcome::Ignored);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["outcome"], "ignored");
        assert_eq!(answer(&[r]), Answer::Succeed);
    }
}
