//! Six-field NCRONTAB expressions (`{second} {minute} {hour} {day} {month} {day-of-week}`), as the Functions
//! timer trigger takes them. The handler only needs to validate its schedule setting at start-up (a schedule
//! the host would refuse must stop the deployment early, with the setting named), so this parses into field
//! sets and answers whether a time matches.

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected 6 fields (second minute hour day month day-of-week), found {0}")]
    FieldCount(usize),
    #[error("{field} field `{text}`: {reason}")]
    Field {
        field: &'static str,
        text: String,
        reason: String,
    },
}

/// A parsed schedule: for each field, the bitmask of allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    fields: [u64; 6],
}

const FIELDS: [(&str, u32, u32); 6] = [
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(ScheduleError::FieldCount(parts.len()));
        }
        let mut fields = [0u64; 6];
        for (i, part) in parts.iter().enumerate() {
            let (name, min, max) = FIELDS[i];
            fields[i] = parse_field(part, i, min, max).map_err(|reason| ScheduleError::Field {
                field: name,
                text: (*part).to_owned(),
                reason,
            })?;
        }
        Ok(Self { fields })
    }

    /// True when `t` (to the second) is an occurrence.
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let values = [
            u32::from(t.second()),
            u32::from(t.minute()),
            u32::from(t.hour()),
            u32::from(t.day()),
            u32::from(u8::from(t.month())),
            u32::from(t.weekday().number_days_from_sunday()),
        ];
        values
            .iter()
            .zip(self.fields)
            .all(|(v, mask)| mask & (1u64 << v) != 0)
    }
}

fn parse_value(text: &str, index: usize, min: u32, max: u32) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match index {
        4 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|p| p as u32 + 1),
        5 => DAYS.iter().position(|d| *d == lower).map(|p| p as u32),
        _ => None,
    };
    let v = match named {
        Some(v) => v,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("`{text}` is not a number"))?,
    };
    if v < min || v > max {
        return Err(format!("{v} is outside {min}-{max}"));
    }
    Ok(v)
}

fn parse_field(text: &str, index: usize, min: u32, max: u32) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step = s
                    .parse::<u32>()
                    .map_err(|_| format!("step `{s}` is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".into());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = parse_value(a, index, min, max)?;
            let hi = parse_value(b, index, min, max)?;
            if lo > hi {
                return Err(format!("range {lo}-{hi} is reversed"));
            }
            (lo, hi)
        } else {
            let v = parse_value(range, index, min, max)?;
            // `5/15` means from 5 to the end in steps of 15.
            (v, if item.contains('/') { max } else { v })
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_and_matches() {
        let s = Schedule::parse("0 */30 * * * *").unwrap();
        assert!(s.matches(datetime!(2026-01-04 10:30:00 UTC)));
        assert!(!s.matches(datetime!(2026-01-04 10:31:00 UTC)));
        let s = Schedule::parse("30 5 9-17 * Jan-Mar mon-fri").unwrap();
        assert!(s.matches(datetime!(2026-01-05 09:05:30 UTC)));
        assert!(!s.matches(datetime!(2026-01-04 09:05:30 UTC)));
    }

    #[test]
    fn rejects() {
        for bad in [
            "* * * * *",
            "60 * * * * *",
            "0 0 0 0 * *",
            "0 */0 * * * *",
            "0 5-1 * * * *",
            "0 a * * * *",
            "0 1,,2 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}
