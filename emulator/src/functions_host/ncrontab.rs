//! NCRONTAB as the Functions timer trigger reads it: six fields (`{second} {minute} {hour} {day} {month}
//! {day-of-week}`), or five without the seconds (`{minute} {hour} {day} {month} {day-of-week}`, second 0): the
//! timer extension parses with `IncludingSeconds` unless the expression has exactly five fields
//! (azure-webjobs-sdk-extensions, `CronSchedule.TryCreate`). `*`, single values, ranges `a-b`, lists `a,b`,
//! steps `*/n`, `a-b/n` and `a/n`, month and day names. Day-of-month and day-of-week must both match (NCrontab's
//! rule, unlike Vixie cron's "either").

use std::fmt;

use time::{Date, Duration, OffsetDateTime, Time};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "'{expression}' is not a valid NCRONTAB expression: expected 6 fields ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}}) or 5 without the seconds, found {found}"
    )]
    FieldCount { expression: String, found: usize },
    #[error("'{expression}' is not a valid NCRONTAB expression: {field} field '{value}': {reason}")]
    Field {
        expression: String,
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// A set of allowed values for one field, as a bitmask (every field's values are below 64).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ValueSet(u64);

impl ValueSet {
    fn contains(self, value: u8) -> bool {
        value < 64 && self.0 & (1 << value) != 0
    }

    fn first_at_or_after(self, value: u8, max: u8) -> Option<u8> {
        (value..=max).find(|v| self.contains(*v))
    }
}

struct FieldSpec {
    name: &'static str,
    min: u8,
    max: u8,
    names: &'static [&'static str],
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed schedule. All times are UTC.
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    expression: String,
    seconds: ValueSet,
    minutes: ValueSet,
    hours: ValueSet,
    days: ValueSet,
    months: ValueSet,
    days_of_week: ValueSet,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CronSchedule")
            .field(&self.expression)
            .finish()
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl CronSchedule {
    pub fn parse(expression: &str) -> Result<Self, CronError> {
        let mut fields: Vec<&str> = expression.split_whitespace().collect();
        match fields.len() {
            6 => {}
            5 => fields.insert(0, "0"),
            found => {
                return Err(CronError::FieldCount {
                    expression: expression.to_owned(),
                    found,
                });
            }
        }
        let parse = |text: &str, spec: &FieldSpec| {
            parse_field(text, spec).map_err(|reason| CronError::Field {
                expression: expression.to_owned(),
                field: spec.name,
                value: text.to_owned(),
                reason,
            })
        };
        Ok(Self {
            expression: expression.split_whitespace().collect::<Vec<_>>().join(" "),
            seconds: parse(fields[0], &SECOND)?,
            minutes: parse(fields[1], &MINUTE)?,
            hours: parse(fields[2], &HOUR)?,
            days: parse(fields[3], &DAY)?,
            months: parse(fields[4], &MONTH)?,
            days_of_week: parse(fields[5], &DAY_OF_WEEK)?,
        })
    }

    /// The first occurrence strictly after `after` (sub-second parts are dropped first), or `None` when the
    /// schedule never fires within the next eight years (e.g. `0 0 0 31 2 *`).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let start = after.replace_nanosecond(0).ok()? + Duration::SECOND;
        let mut date = start.date();
        let mut earliest = Some(start.time());
        // Eight years covers every leap-day and weekday combination.
        let last = date.checked_add(Duration::days(366 * 8))?;
        while date <= last {
            if self.date_matches(date)
                && let Some(time) = self.first_time_at_or_after(earliest.unwrap_or(Time::MIDNIGHT))
            {
                return Some(date.with_time(time).assume_utc());
            }
            date = date.next_day()?;
            earliest = None;
        }
        None
    }

    /// Whether the schedule fires more than once a minute: every field but the seconds allows every value and
    /// more than one second matches. The timer extension then turns `useMonitor` off
    /// (`TimerSchedule.ShouldDisableScheduleMonitor`), so such a timer gets no `ScheduleStatus`.
    pub fn fires_more_than_once_a_minute(&self) -> bool {
        let full = |set: ValueSet, spec: &FieldSpec| (spec.min..=spec.max).all(|v| set.contains(v));
        full(self.minutes, &MINUTE)
            && full(self.hours, &HOUR)
            && full(self.days, &DAY)
            && full(self.months, &MONTH)
            && full(self.days_of_week, &DAY_OF_WEEK)
            && self.seconds.0.count_ones() > 1
    }

    fn date_matches(&self, date: Date) -> bool {
        self.months.contains(u8::from(date.month()))
            && self.days.contains(date.day())
            && self
                .days_of_week
                .contains(date.weekday().number_days_from_sunday())
    }

    fn first_time_at_or_after(&self, from: Time) -> Option<Time> {
        let (h0, m0, s0) = from.as_hms();
        for hour in (h0..=23).filter(|h| self.hours.contains(*h)) {
            let minute_from = if hour == h0 { m0 } else { 0 };
            for minute in (minute_from..=59).filter(|m| self.minutes.contains(*m)) {
                let second_from = if hour == h0 && minute == m0 { s0 } else { 0 };
                if let Some(second) = self.seconds.first_at_or_after(second_from, 59) {
                    return Time::from_hms(hour, minute, second).ok();
                }
            }
        }
        None
    }
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<ValueSet, String> {
    let mut set = 0u64;
    for part in text.split(',') {
        if part.is_empty() {
            return Err("empty list element".to_owned());
        }
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u8 = step
                    .parse()
                    .map_err(|_| format!("step '{step}' is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".to_owned());
                }
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((low, high)) = range.split_once('-') {
            (parse_value(low, spec)?, parse_value(high, spec)?)
        } else {
            let value = parse_value(range, spec)?;
            // `a/n` runs from a to the end of the field, as in NCrontab.
            (value, if step.is_some() { spec.max } else { value })
        };
        if low > high {
            return Err(format!("range {low}-{high} is reversed"));
        }
        let step = step.unwrap_or(1);
        let mut value = low;
        while value <= high {
            set |= 1 << value;
            value = match value.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
    }
    Ok(ValueSet(set))
}

fn parse_value(text: &str, spec: &FieldSpec) -> Result<u8, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(index) = spec.names.iter().position(|name| *name == lower) {
        // Month names start at 1, day names at 0; `min` is exactly that offset.
        return u8::try_from(index)
            .map(|i| i + spec.min)
            .map_err(|_| "name out of range".to_owned());
    }
    let value: u8 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number or a known name"))?;
    if value < spec.min || value > spec.max {
        return Err(format!("{value} is outside {}-{}", spec.min, spec.max));
    }
    Ok(value)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn next(expr: &str, after: OffsetDateTime) -> OffsetDateTime {
        CronSchedule::parse(expr)
            .unwrap()
            .next_after(after)
            .unwrap()
    }

    #[test]
    fn every_thirty_minutes() {
        assert_eq!(
            next("0 */30 * * * *", datetime!(2026-01-04 10:15:00 UTC)),
            datetime!(2026-01-04 10:30:00 UTC)
        );
        assert_eq!(
            next("0 */30 * * * *", datetime!(2026-01-04 10:30:00 UTC)),
            datetime!(2026-01-04 11:00:00 UTC)
        );
        assert_eq!(
            next("0 */30 * * * *", datetime!(2026-01-04 23:59:59.9 UTC)),
            datetime!(2026-01-05 00:00:00 UTC)
        );
    }

    #[test]
    fn every_second_and_steps() {
        assert_eq!(
            next("* * * * * *", datetime!(2026-01-04 10:15:00.5 UTC)),
            datetime!(2026-01-04 10:15:01 UTC)
        );
        assert_eq!(
            next("*/5 * * * * *", datetime!(2026-01-04 10:15:03 UTC)),
            datetime!(2026-01-04 10:15:05 UTC)
        );
        assert_eq!(
            next("10/20 * * * * *", datetime!(2026-01-04 10:15:31 UTC)),
            datetime!(2026-01-04 10:15:50 UTC)
        );
        assert_eq!(
            next("0 5-10/5 * * * *", datetime!(2026-01-04 10:11:00 UTC)),
            datetime!(2026-01-04 11:05:00 UTC)
        );
    }

    #[test]
    fn lists_ranges_and_names() {
        // 09:30 on weekdays
        let schedule = "0 30 9 * * Mon-Fri";
        assert_eq!(
            next(schedule, datetime!(2026-01-02 09:30:00 UTC)),
            datetime!(2026-01-05 09:30:00 UTC)
        ); // Fri -> Mon
        assert_eq!(
            next("0 0 8,12,18 * * *", datetime!(2026-01-02 12:00:00 UTC)),
            datetime!(2026-01-02 18:00:00 UTC)
        );
        assert_eq!(
            next("0 0 0 1 jan,JUL *", datetime!(2026-01-02 00:00:00 UTC)),
            datetime!(2026-07-01 00:00:00 UTC)
        );
        assert_eq!(
            next("0 0 0 29 2 *", datetime!(2026-03-01 00:00:00 UTC)),
            datetime!(2028-02-29 00:00:00 UTC)
        );
    }

    #[test]
    fn day_and_weekday_must_both_match() {
        // Friday the 13th
        assert_eq!(
            next("0 0 0 13 * 5", datetime!(2026-01-01 00:00:00 UTC)),
            datetime!(2026-02-13 00:00:00 UTC)
        );
    }

    #[test]
    fn impossible_schedule_has_no_occurrence() {
        let schedule = CronSchedule::parse("0 0 0 31 2 *").unwrap();
        assert_eq!(
            schedule.next_after(datetime!(2026-01-01 00:00:00 UTC)),
            None
        );
    }

    /// Minute-by-minute search: the obviously correct (slow) answer.
    fn brute_force_next(schedule: &CronSchedule, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = after.replace_nanosecond(0).unwrap() + Duration::SECOND;
        let mut minute = start.replace_second(0).unwrap();
        for _ in 0..(60 * 24 * 9) {
            let (hour, min) = (minute.hour(), minute.minute());
            if schedule.date_matches(minute.date())
                && schedule.hours.contains(hour)
                && schedule.minutes.contains(min)
            {
                let from = if minute.date() == start.date()
                    && hour == start.hour()
                    && min == start.minute()
                {
                    start.second()
                } else {
                    0
                };
                if let Some(second) = schedule.seconds.first_at_or_after(from, 59) {
                    return Some(minute.replace_second(second).unwrap());
                }
            }
            minute += Duration::MINUTE;
        }
        None
    }

    #[test]
    fn agrees_with_a_brute_force_search() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut field = |max: u8| -> String {
            match rng.random_range(0..5) {
                0 => "*".to_owned(),
                1 => format!("*/{}", rng.random_range(1..=max.max(1))),
                2 => rng.random_range(0..=max).to_string(),
                3 => {
                    let low = rng.random_range(0..=max);
                    format!("{low}-{}", rng.random_range(low..=max))
                }
                _ => format!(
                    "{},{}",
                    rng.random_range(0..=max),
                    rng.random_range(0..=max)
                ),
            }
        };
        for case in 0..150 {
            let expression = format!("{} {} {} * * {}", field(59), field(59), field(23), field(6));
            let schedule = CronSchedule::parse(&expression).unwrap();
            let after = datetime!(2026-01-01 00:00:00 UTC)
                + Duration::seconds(i64::from(case) * 7_919 * 61);
            assert_eq!(
                schedule.next_after(after),
                brute_force_next(&schedule, after),
                "{expression} after {after}"
            );
        }
    }

    #[test]
    fn rejects_malformed_expressions() {
        for bad in [
            "0 */30 * *",
            "0 0 */30 * * * *",
            "60 * * * * *",
            "* * 24 * * *",
            "* * * 0 * *",
            "* * * * 13 *",
            "* * * * * 7",
            "*/0 * * * * *",
            "5-1 * * * * *",
            "a * * * * *",
            ",1 * * * * *",
            "",
            "%AUTOATTACH_VERIFY_SCHEDULE%",
        ] {
            assert!(
                CronSchedule::parse(bad).is_err(),
                "{bad} should be rejected"
            );
        }
        let message = CronSchedule::parse("0 */30 * *").unwrap_err().to_string();
        assert!(message.contains("expected 6 fields"), "{message}");
    }

    #[test]
    fn sub_minute_schedules_are_recognised() {
        for (expression, sub_minute) in [
            ("*/10 * * * * *", true),
            ("* * * * * *", true),
            ("0,30 * * * * *", true),
            ("0 * * * * *", false),
            ("*/10 * 9 * * *", false),
            ("*/10 * * * * Mon", false),
            ("* * * * *", false),
        ] {
            assert_eq!(
                CronSchedule::parse(expression)
                    .unwrap()
                    .fires_more_than_once_a_minute(),
                sub_minute,
                "{expression}"
            );
        }
    }

    #[test]
    fn five_fields_are_minutes_without_seconds() {
        // Every five minutes, on the minute.
        assert_eq!(
            next("*/5 * * * *", datetime!(2026-01-04 10:15:30 UTC)),
            datetime!(2026-01-04 10:20:00 UTC)
        );
        // 09:30 on weekdays.
        assert_eq!(
            next("30 9 * * Mon-Fri", datetime!(2026-01-02 09:30:00 UTC)),
            datetime!(2026-01-05 09:30:00 UTC)
        );
        let five = CronSchedule::parse("15 */2 1-7 * Sun").unwrap();
        let six = CronSchedule::parse("0 15 */2 1-7 * Sun").unwrap();
        let mut at = datetime!(2026-01-01 00:00:00 UTC);
        for _ in 0..50 {
            let expected = six.next_after(at);
            assert_eq!(five.next_after(at), expected);
            at = expected.unwrap();
        }
        assert!(
            CronSchedule::parse("60 * * * *").is_err(),
            "the first of five fields is the minute"
        );
        assert_eq!(
            CronSchedule::parse("*/5  *  * * *").unwrap().to_string(),
            "*/5 * * * *"
        );
    }
}
