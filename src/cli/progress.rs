//! Progress on stderr for long operator commands: a stage label and the writes sent so far, drawn only on a
//! terminal and only after a short delay.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::azure::{AzureClient, Operation};

/// The progress bar appears only for runs longer than this.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);

/// Progress on stderr: plain stage lines when stderr is not a terminal; on a terminal, an indicatif bar (writes
/// done / writes planned) or spinner (requests sent) that appears once the run has lasted [`PROGRESS_DELAY`].
pub(crate) struct Progress {
    terminal: bool,
    state: Arc<Mutex<StageState>>,
    done: Arc<AtomicBool>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct StageState {
    label: String,
    total_writes: Option<u64>,
    writes_before: u64,
}

fn writes_sent(client: &AzureClient) -> u64 {
    let stats = client.stats();
    stats.operation(Operation::PutRoleAssignment) + stats.operation(Operation::DeleteRoleAssignment)
}

impl Progress {
    pub(crate) fn start(client: AzureClient) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(StageState {
            label: String::new(),
            total_writes: None,
            writes_before: 0,
        }));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = terminal.then(|| {
            let (state, done) = (state.clone(), done.clone());
            tokio::spawn(async move { tick(client, state, done).await })
        });
        Self {
            terminal,
            state,
            done,
            ticker,
        }
    }

    pub(crate) fn stage(&self, label: impl Into<String>, total_writes: Option<u64>) {
        let label = label.into();
        if !self.terminal {
            eprintln!("{label}");
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.label = label;
        state.total_writes = total_writes;
        state.writes_before = u64::MAX; // set by the ticker on its next look
    }

    pub(crate) async fn finish(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.await;
        }
    }
}

async fn tick(client: AzureClient, state: Arc<Mutex<StageState>>, done: Arc<AtomicBool>) {
    let started = Instant::now();
    let requests_before = client.stats().total();
    let mut bar: Option<(indicatif::ProgressBar, Option<u64>)> = None;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    while !done.load(Ordering::Relaxed) {
        interval.tick().await;
        let (label, total, writes_done) = {
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.writes_before == u64::MAX {
                s.writes_before = writes_sent(&client);
            }
            (
                s.label.clone(),
                s.total_writes,
                writes_sent(&client).saturating_sub(s.writes_before),
            )
        };
        if started.elapsed() < PROGRESS_DELAY {
            continue;
        }
        let requests = client.stats().total().saturating_sub(requests_before);
        // A new bar when the stage switches between spinner and bar.
        if bar.as_ref().is_none_or(|(_, t)| *t != total) {
            if let Some((old, _)) = bar.take() {
                old.finish_and_clear();
            }
            let pb = match total {
                Some(n) => indicatif::ProgressBar::new(n).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {msg} [{bar:30}] {pos}/{len} writes ({elapsed})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar = Some((pb, total));
        }
        if let Some((pb, total)) = &bar {
            if total.is_some() {
                pb.set_message(label);
                pb.set_position(writes_done);
            } else {
                pb.set_message(format!("{label}: {requests} requests"));
                pb.tick();
            }
        }
    }
    if let Some((pb, _)) = bar {
        pb.finish_and_clear();
    }
}
