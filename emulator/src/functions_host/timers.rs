//! Timer triggers: fire on the NCRONTAB schedule, keep `ScheduleStatus` as the host's schedule monitor does,
//! and mark a run missed while the host was down as `IsPastDue`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{FunctionDefinition, InvocationRecord, Shared, Trigger, lock, wire};
use wire::ScheduleStatus;

/// Runs a timer now (admin API): the current status, `IsPastDue: false`, no status update.
pub(super) async fn invoke_now(shared: &Shared, function: &FunctionDefinition) -> InvocationRecord {
    let status = current_status(shared, function);
    shared
        .invoke(
            function,
            wire::timer_value(status.as_ref(), false),
            Map::new(),
        )
        .await
}

fn current_status(shared: &Shared, function: &FunctionDefinition) -> Option<ScheduleStatus> {
    match &function.trigger {
        Trigger::Timer {
            use_monitor: true, ..
        } => lock(&shared.schedule_status).get(&function.name).copied(),
        _ => None,
    }
}

pub(super) fn start(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let now = OffsetDateTime::now_utc();
    let mut tasks = Vec::new();
    for function in &shared.functions {
        let Trigger::Timer {
            schedule,
            use_monitor,
            run_on_startup,
            ..
        } = &function.trigger
        else {
            continue;
        };
        let Some(next) = schedule.next_after(now) else {
            tracing::warn!(function = %function.name, %schedule, "the schedule never fires");
            continue;
        };
        let stored = if *use_monitor {
            read_status(shared, &function.name)
        } else {
            None
        };
        // A stored `Next` in the past means a run was missed while the host was down.
        let past_due = stored.filter(|status| status.next < now);
        if *use_monitor {
            let status = stored.unwrap_or(ScheduleStatus {
                last: OffsetDateTime::UNIX_EPOCH
                    .replace_year(1)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                next,
                last_updated: now,
            });
            lock(&shared.schedule_status).insert(function.name.clone(), status);
        }
        tracing::info!(function = %function.name, %schedule, next = %next.format(&Rfc3339).unwrap_or_default(), "timer scheduled");
        if !shared.options.run_timers {
            continue;
        }
        tasks.push(tokio::spawn(run_timer(
            Arc::clone(shared),
            function.clone(),
            past_due.is_some(),
            *run_on_startup,
            shutdown.clone(),
        )));
    }
    tasks
}

async fn run_timer(
    shared: Arc<Shared>,
    function: FunctionDefinition,
    past_due: bool,
    run_on_startup: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let Trigger::Timer {
        schedule,
        use_monitor,
        ..
    } = &function.trigger
    else {
        return;
    };
    // A past-due run and a `runOnStartup` run go through the same path as a scheduled one (the timer
    // listener's `InvokeJobFunction`), so they update the status too.
    if past_due || run_on_startup {
        let fired = OffsetDateTime::now_utc();
        let status = current_status(&shared, &function);
        shared
            .invoke(
                &function,
                wire::timer_value(status.as_ref(), past_due),
                Map::new(),
            )
            .await;
        update_status(&shared, &function, *use_monitor, fired, schedule);
    }
    loop {
        let now = OffsetDateTime::now_utc();
        let Some(next) = schedule.next_after(now) else {
            return;
        };
        let wait = Duration::try_from(next - now).unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = super::shutdown_signalled(&mut shutdown) => return,
        }
        // A timer that fires a little early counts as firing at its occurrence, so `Next` never repeats.
        let fired = OffsetDateTime::now_utc().max(next);
        let status = current_status(&shared, &function);
        shared
            .invoke(
                &function,
                wire::timer_value(status.as_ref(), false),
                Map::new(),
            )
            .await;
        update_status(&shared, &function, *use_monitor, fired, schedule);
    }
}

/// After a run the timer listener stores `Last = LastUpdated = invocation time` and `Next = the occurrence after
/// it` (azure-webjobs-sdk-extensions, `TimerListener.InvokeJobFunction`).
fn update_status(
    shared: &Shared,
    function: &FunctionDefinition,
    use_monitor: bool,
    fired: OffsetDateTime,
    schedule: &super::ncrontab::CronSchedule,
) {
    if !use_monitor {
        return;
    }
    let status = ScheduleStatus {
        last: fired,
        next: schedule.next_after(fired).unwrap_or(fired),
        last_updated: fired,
    };
    lock(&shared.schedule_status).insert(function.name.clone(), status);
    write_status(shared, &function.name, &status);
}

fn status_path(shared: &Shared, function: &str) -> Option<PathBuf> {
    shared
        .options
        .schedule_state_dir
        .as_ref()
        .map(|dir| dir.join(format!("{function}.status.json")))
}

fn read_status(shared: &Shared, function: &str) -> Option<ScheduleStatus> {
    let text = std::fs::read_to_string(status_path(shared, function)?).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    let field = |name: &str| {
        value
            .get(name)?
            .as_str()
            .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
    };
    Some(ScheduleStatus {
        last: field("Last")?,
        next: field("Next")?,
        last_updated: field("LastUpdated")?,
    })
}

fn write_status(shared: &Shared, function: &str, status: &ScheduleStatus) {
    let Some(path) = status_path(shared, function) else {
        return;
    };
    let format = |at: OffsetDateTime| at.format(&Rfc3339).unwrap_or_default();
    let body = json!({"Last": format(status.last), "Next": format(status.next), "LastUpdated": format(status.last_updated)});
    if let Err(error) = std::fs::write(&path, body.to_string()) {
        tracing::warn!(path = %path.display(), %error, "cannot persist the schedule status");
    }
}
