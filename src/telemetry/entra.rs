//! Microsoft Entra authentication of the Application Insights exporter: a bearer token of the managed identity
//! for the ingestion audience, cached until shortly before it expires (the Azure client's [`TokenSource`]: one
//! fetch per audience while the token is valid, concurrent callers wait for that one fetch), fetched on a
//! runtime of its own because the exporter posts from the SDK's plain threads.
//!
//! A failure never blocks an invocation (exports run on the SDK's threads; a fetch is bounded by
//! [`FETCH_BUDGET`]) and never crashes: it is counted, logged once per outage (no token, no key in the line), and
//! the next export tries again, at most one fetch per [`RETRY_AFTER`]. Facts and sources: docs/telemetry.md,
//! "Application Insights with Microsoft Entra authentication".

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use azure_core::credentials::{Secret, TokenCredential};

use crate::azure::TokenSource;

use super::counting::Counters;

/// Longest wait for one token (azure_identity's own retries included): an export is held this long at most.
pub(crate) const FETCH_BUDGET: Duration = Duration::from_secs(5);
/// After a failed fetch, exports fail fast (no fetch) for this long; the exporter's own retries and the next
/// batches then try again.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The log target of the two warnings below (kept out of the OTel log bridge, like the exporters' own targets).
pub(crate) const LOG_TARGET: &str = "acr_autoattach::telemetry::entra";

#[derive(Debug, Default)]
struct State {
    /// No fetch before this instant (set after a failure).
    retry_at: Option<Instant>,
    /// The current outage of the token source was logged already.
    token_failure_logged: bool,
    /// The current run of ingestion refusals (401/403) was logged already.
    refusal_logged: bool,
}

/// Tokens for the ingestion scope, with the failure accounting above.
pub(crate) struct EntraAuth {
    scope: String,
    tokens: Arc<TokenSource>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    state: Mutex<State>,
    counters: Arc<Counters>,
    /// Where the two warnings go: the subscriber of the setup that built this (the SDK's export threads have no
    /// subscriber of their own when it is thread-scoped). Weak: the subscriber owns the exporters, which own this.
    log: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl std::fmt::Debug for EntraAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraAuth")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Drop for EntraAuth {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // The one way to drop a runtime that is allowed inside async code.
            rt.shutdown_background();
        }
    }
}

impl EntraAuth {
    pub(crate) fn new(
        credential: Arc<dyn TokenCredential>,
        scope: String,
        counters: Arc<Counters>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("telemetry-token")
            .enable_all()
            .build()?;
        Ok(Self {
            scope,
            tokens: Arc::new(TokenSource::new(credential)),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            state: Mutex::new(State::default()),
            counters,
            log: OnceLock::new(),
        })
    }

    /// Sends the warnings to `dispatch` from now on.
    pub(crate) fn log_to(&self, dispatch: &tracing::Dispatch) {
        let _ = self.log.set(dispatch.downgrade());
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn warn(&self, emit: impl FnOnce()) {
        match self
            .log
            .get()
            .and_then(tracing::dispatcher::WeakDispatch::upgrade)
        {
            Some(dispatch) => tracing::dispatcher::with_default(&dispatch, emit),
            None => emit(),
        }
    }

    /// The bearer token for the next post, or why there is none. Blocks the calling (export) thread for at most
    /// [`FETCH_BUDGET`]; call it from a thread that is not running async code.
    pub(crate) fn bearer(&self) -> Result<Secret, String> {
        if let Some(at) = self.state().retry_at
            && Instant::now() < at
        {
            return Err(
                "no Microsoft Entra token for Application Insights yet (the last attempt failed)"
                    .to_owned(),
            );
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let tokens = self.tokens.clone();
        let scope = self.scope.clone();
        self.handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + FETCH_BUDGET;
            let _ = tx.send(
                tokens
                    .token(&scope, deadline)
                    .await
                    .map(|(secret, _)| secret),
            );
        });
        match rx.recv_timeout(FETCH_BUDGET + Duration::from_secs(1)) {
            Ok(Ok(secret)) => {
                let mut state = self.state();
                state.retry_at = None;
                state.token_failure_logged = false;
                Ok(secret)
            }
            Ok(Err(e)) => Err(self.token_failed(&e.to_string())),
            Err(_) => Err(self.token_failed("the token request did not finish in time")),
        }
    }

    fn token_failed(&self, detail: &str) -> String {
        self.counters.auth_failure();
        let first = {
            let mut state = self.state();
            state.retry_at = Some(Instant::now() + RETRY_AFTER);
            !std::mem::replace(&mut state.token_failure_logged, true)
        };
        if first {
            self.warn(|| {
                tracing::warn!(
                    target: LOG_TARGET,
                    scope = %self.scope,
                    error = %detail,
                    retry_after_secs = RETRY_AFTER.as_secs(),
                    "Application Insights export: the managed identity gave no Microsoft Entra token; \
                     telemetry to Application Insights waits and the exporter keeps trying (OTLP and the \
                     handler are not affected)"
                );
            });
        }
        format!("no Microsoft Entra token for Application Insights: {detail}")
    }

    /// What ingestion answered a post made with our token. 401 drops the cached token (the next post fetches a
    /// fresh one); 401 and 403 are counted and logged once per run of refusals.
    pub(crate) fn observe(&self, status: u16) {
        if (200..300).contains(&status) {
            self.state().refusal_logged = false;
            return;
        }
        if status != 401 && status != 403 {
            return;
        }
        self.counters.auth_failure();
        if status == 401 {
            let tokens = self.tokens.clone();
            let scope = self.scope.clone();
            self.handle
                .spawn(async move { tokens.invalidate(&scope).await });
        }
        let first = !std::mem::replace(&mut self.state().refusal_logged, true);
        if first {
            let hint = if status == 403 {
                "the identity needs the Monitoring Metrics Publisher role on the Application Insights resource"
            } else {
                "the token was not accepted (wrong audience, expired, or not issued for this tenant)"
            };
            self.warn(|| {
                tracing::warn!(
                    target: LOG_TARGET,
                    status,
                    scope = %self.scope,
                    "Application Insights refused the managed identity's token: {hint}; telemetry to \
                     Application Insights is dropped until it is accepted"
                );
            });
        }
    }
}
