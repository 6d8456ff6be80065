//! The grant-mode settings of issue 16 (`docs/grant-modes.md` §5): `AUTOATTACH_GRANT_MODE`,
//! `AUTOATTACH_GROUP_SETTLE_HOURS`, `AUTOATTACH_ASSIGNMENT_HEADROOM` and `AUTOATTACH_ASSIGNMENT_LIMIT`.

use super::ConfigError;

/// `AUTOATTACH_GRANT_MODE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrantModeSetting {
    /// One assignment per (kubelet principal, registry, pull role): today's behaviour.
    #[default]
    Direct,
    /// One security group per (registry, pull role) holding the pull role; direct assignments only as the fast
    /// path while capacity allows, removed once the membership has settled.
    Group,
}

impl GrantModeSetting {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }
}

/// Default settle window: ~24 h of managed-identity token cache plus margin (`docs/grant-modes.md` §5).
pub const DEFAULT_SETTLE_HOURS: f64 = 26.0;
/// Upper bound of `AUTOATTACH_GROUP_SETTLE_HOURS` (a year; beyond it the direct assignments would never go).
pub const MAX_SETTLE_HOURS: f64 = 8_760.0;
/// Assignments kept free per subscription for people's own (`AUTOATTACH_ASSIGNMENT_HEADROOM`).
pub const DEFAULT_HEADROOM: u32 = 200;
/// Azure's fixed limit of role assignments per subscription (`AUTOATTACH_ASSIGNMENT_LIMIT`).
pub const DEFAULT_LIMIT: u32 = 4_000;

/// The grant settings, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrantSettings {
    pub mode: GrantModeSetting,
    /// How long a membership in the tool's group must be old before it counts as coverage and the direct
    /// assignment it replaces is removed (whole seconds, rounded up from the hours given).
    pub settle_secs: u64,
    /// The hours as configured (for `acr-autoattach config`).
    pub settle_hours: f64,
    pub headroom: u32,
    pub limit: u32,
}

impl Default for GrantSettings {
    fn default() -> Self {
        Self {
            mode: GrantModeSetting::Direct,
            settle_secs: hours_to_secs(DEFAULT_SETTLE_HOURS),
            settle_hours: DEFAULT_SETTLE_HOURS,
            headroom: DEFAULT_HEADROOM,
            limit: DEFAULT_LIMIT,
        }
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "hours are validated to 0 < h <= MAX_SETTLE_HOURS, so the seconds fit"
)]
fn hours_to_secs(hours: f64) -> u64 {
    ((hours * 3_600.0).ceil() as u64).max(1)
}

impl GrantSettings {
    /// Reads the four settings through `get` (trimmed, empty = unset).
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        const MODE: &str = "AUTOATTACH_GRANT_MODE";
        const SETTLE: &str = "AUTOATTACH_GROUP_SETTLE_HOURS";
        const HEADROOM: &str = "AUTOATTACH_ASSIGNMENT_HEADROOM";
        const LIMIT: &str = "AUTOATTACH_ASSIGNMENT_LIMIT";
        let mode = match get(MODE).map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("direct") => GrantModeSetting::Direct,
            Some("group") => GrantModeSetting::Group,
            Some(other) => {
                return Err(ConfigError::new(
                    MODE,
                    format!("`{other}` is not one of: direct, group"),
                ));
            }
        };
        let settle_hours = match get(SETTLE) {
            None => DEFAULT_SETTLE_HOURS,
            Some(v) => {
                let hours = v.parse::<f64>().map_err(|_| {
                    ConfigError::new(
                        SETTLE,
                        format!("`{v}` is not a number of hours (e.g. 26 or 0.5)"),
                    )
                })?;
                if !hours.is_finite() || hours <= 0.0 || hours > MAX_SETTLE_HOURS {
                    return Err(ConfigError::new(
                        SETTLE,
                        format!(
                            "{v} is out of range: more than 0, at most {MAX_SETTLE_HOURS} hours"
                        ),
                    ));
                }
                hours
            }
        };
        let limit = parse_count(get(LIMIT), DEFAULT_LIMIT, LIMIT)?;
        if !(1..=DEFAULT_LIMIT).contains(&limit) {
            return Err(ConfigError::new(
                LIMIT,
                format!(
                    "{limit} is out of range 1..={DEFAULT_LIMIT} (Azure's fixed limit; set it lower only to keep more room)"
                ),
            ));
        }
        let headroom = parse_count(get(HEADROOM), DEFAULT_HEADROOM, HEADROOM)?;
        if headroom >= limit {
            return Err(ConfigError::new(
                HEADROOM,
                format!("{headroom} leaves no room below AUTOATTACH_ASSIGNMENT_LIMIT ({limit})"),
            ));
        }
        Ok(Self {
            mode,
            settle_secs: hours_to_secs(settle_hours),
            settle_hours,
            headroom,
            limit,
        })
    }

    /// `KEY=value` lines for `acr-autoattach config`.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AUTOATTACH_GRANT_MODE", self.mode.as_str().to_owned()),
            (
                "AUTOATTACH_GROUP_SETTLE_HOURS",
                format!("{} ({} s)", self.settle_hours, self.settle_secs),
            ),
            ("AUTOATTACH_ASSIGNMENT_HEADROOM", self.headroom.to_string()),
            ("AUTOATTACH_ASSIGNMENT_LIMIT", self.limit.to_string()),
        ]
    }
}

fn parse_count(
    value: Option<String>,
    default: u32,
    setting: &'static str,
) -> Result<u32, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| ConfigError::new(setting, format!("`{v}` is not a whole number"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<GrantSettings, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        GrantSettings::from_settings(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_direct_26_hours_200_of_4000() {
        let g = parse(&[]).unwrap();
        assert_eq!(g.mode, GrantModeSetting::Direct);
        assert_eq!(g.settle_secs, 26 * 3_600);
        assert_eq!((g.headroom, g.limit), (200, 4_000));
        assert_eq!(g, GrantSettings::default());
    }

    #[test]
    fn fractional_hours_round_up_to_whole_seconds() {
        let g = parse(&[
            ("AUTOATTACH_GRANT_MODE", "Group"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "0.001"),
            ("AUTOATTACH_ASSIGNMENT_HEADROOM", "20"),
            ("AUTOATTACH_ASSIGNMENT_LIMIT", "200"),
        ])
        .unwrap();
        assert_eq!(g.mode, GrantModeSetting::Group);
        assert_eq!(g.settle_secs, 4, "3.6 s rounds up, never down");
        assert_eq!((g.headroom, g.limit), (20, 200));
        assert_eq!(
            parse(&[("AUTOATTACH_GROUP_SETTLE_HOURS", "1e-9")])
                .unwrap()
                .settle_secs,
            1
        );
    }

    #[test]
    fn every_bad_value_names_its_setting() {
        for (key, value) in [
            ("AUTOATTACH_GRANT_MODE", "groups"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "0"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "-1"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "NaN"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "inf"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "8761"),
            ("AUTOATTACH_GROUP_SETTLE_HOURS", "a day"),
            ("AUTOATTACH_ASSIGNMENT_HEADROOM", "-1"),
            ("AUTOATTACH_ASSIGNMENT_HEADROOM", "4000"),
            ("AUTOATTACH_ASSIGNMENT_LIMIT", "0"),
            ("AUTOATTACH_ASSIGNMENT_LIMIT", "4001"),
            ("AUTOATTACH_ASSIGNMENT_LIMIT", "many"),
        ] {
            let err = parse(&[(key, value)]).unwrap_err();
            assert_eq!(err.setting, key, "{key}={value}: {err}");
        }
        // The headroom is checked against the limit actually set.
        let err = parse(&[
            ("AUTOATTACH_ASSIGNMENT_LIMIT", "100"),
            ("AUTOATTACH_ASSIGNMENT_HEADROOM", "100"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "AUTOATTACH_ASSIGNMENT_HEADROOM");
    }
}
