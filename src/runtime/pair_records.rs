//! Which `AttachmentVerification` records a timer run emits (`AUTOATTACH_PAIR_RECORDS`), so the cost of
//! telemetry scales with what changes rather than with the estate (docs/telemetry.md, "Volume").
//!
//! The handler keeps no state between invocations, so "changed since the last run" is not computed from a
//! stored previous status. Instead, in `changes` mode:
//! - every pair that is not `compliant` is reported in every run (`repaired` and `detached` are the pairs
//!   the run wrote; `missing`, `failed`, `pending` the ones that need attention), so alert queries and the
//!   "latest record per pair" of a broken pair stay exactly as in `all` mode;
//! - a `compliant` pair the run did not write is left out: it is the unchanged majority;
//! - every registry the run covered gets a `RegistryVerification` summary (`status` = `summary`), so a query
//!   can tell "not reported in this run" (compliant now) from "not covered by this run";
//! - the first run of each `AUTOATTACH_SNAPSHOT_HOURS` window (UTC, aligned to the epoch) reports every pair,
//!   so the full set of pairs is in the store at least once per window.

use time::OffsetDateTime;

use crate::core::model::PairStatus;
use crate::core::ncrontab::Schedule;

/// `AUTOATTACH_PAIR_RECORDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PairRecords {
    /// One record per pair result in every run.
    All,
    /// Problems and writes in every run, everything once per snapshot window (the default).
    #[default]
    Changes,
}

impl PairRecords {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "all" => Some(Self::All),
            "changes" => Some(Self::Changes),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Changes => "changes",
        }
    }
}

/// Default of `AUTOATTACH_SNAPSHOT_HOURS`.
pub const DEFAULT_SNAPSHOT_HOURS: u64 = 24;
/// Upper bound of `AUTOATTACH_SNAPSHOT_HOURS` (a week: Log Analytics keeps 30 days or more by default).
pub const MAX_SNAPSHOT_HOURS: u64 = 168;

/// Whether a run of `mode` emits the record of a pair with `status`.
pub fn emits(mode: PairRecords, snapshot: bool, status: PairStatus) -> bool {
    match mode {
        PairRecords::All => true,
        PairRecords::Changes => snapshot || status != PairStatus::Compliant,
    }
}

fn window_of(t: OffsetDateTime, hours: u64) -> i64 {
    let width = i64::try_from(hours.max(1) * 3600).unwrap_or(i64::MAX);
    t.unix_timestamp().div_euclid(width)
}

/// Whether the timer run that fired at `fired` is the snapshot run of its window: the first run whose fire
/// time falls in a new `hours`-wide window. `last` is the previous occurrence as the host's schedule monitor
/// recorded it (`ScheduleStatus.Last`); without it, the run is the snapshot run when `schedule` has no
/// earlier occurrence in the window (a stateless answer from the schedule alone). With neither, every run
/// is a snapshot run (nothing is lost, only volume).
pub fn is_snapshot_run(
    fired: OffsetDateTime,
    last: Option<OffsetDateTime>,
    schedule: Option<&Schedule>,
    hours: u64,
) -> bool {
    let window = window_of(fired, hours);
    if let Some(last) = last
        && last < fired
    {
        return window_of(last, hours) != window;
    }
    let Some(schedule) = schedule else {
        return true;
    };
    let width = i64::try_from(hours.max(1) * 3600).unwrap_or(i64::MAX);
    let start = window.saturating_mul(width);
    let fired_second = fired.unix_timestamp();
    // Every second of the window before the fire time (at most `hours` × 3600 cheap checks).
    !(start..fired_second)
        .any(|s| OffsetDateTime::from_unix_timestamp(s).is_ok_and(|t| schedule.matches(t)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn changes_mode_keeps_problems_and_writes_and_drops_unchanged_compliant_pairs() {
        for status in PairStatus::ALL {
            assert!(emits(PairRecords::All, false, status));
            assert!(emits(PairRecords::Changes, true, status));
            assert_eq!(
                emits(PairRecords::Changes, false, status),
                status != PairStatus::Compliant,
                "{status:?}"
            );
        }
        assert_eq!(PairRecords::parse(" Changes "), Some(PairRecords::Changes));
        assert_eq!(PairRecords::parse("some"), None);
        assert_eq!(PairRecords::default(), PairRecords::Changes);
    }

    #[test]
    fn the_first_run_of_each_window_is_the_snapshot() {
        let schedule = Schedule::parse("0 */30 * * * *").unwrap();
        // From the host's ScheduleStatus.Last.
        let midnight = datetime!(2026-12-01 00:00:00.004 UTC);
        assert!(is_snapshot_run(
            midnight,
            Some(datetime!(2026-11-30 23:30:00 UTC)),
            None,
            24
        ));
        assert!(!is_snapshot_run(
            datetime!(2026-12-01 00:30:00 UTC),
            Some(datetime!(2026-12-01 00:00:00 UTC)),
            None,
            24
        ));
        // From the schedule alone.
        assert!(is_snapshot_run(midnight, None, Some(&schedule), 24));
        assert!(!is_snapshot_run(
            datetime!(2026-12-01 06:30:00 UTC),
            None,
            Some(&schedule),
            24
        ));
        // Six-hour windows: 06:00 opens one.
        assert!(is_snapshot_run(
            datetime!(2026-12-01 06:00:00 UTC),
            None,
            Some(&schedule),
            6
        ));
        // Nothing known: always a snapshot.
        assert!(is_snapshot_run(midnight, None, None, 24));
        // Over a day of half-hourly runs, exactly one snapshot.
        let snapshots = (0..48)
            .map(|i| datetime!(2026-12-01 00:00:00 UTC) + time::Duration::minutes(30 * i))
            .filter(|t| is_snapshot_run(*t, Some(*t - time::Duration::minutes(30)), None, 24))
            .count();
        assert_eq!(snapshots, 1);
    }
}
