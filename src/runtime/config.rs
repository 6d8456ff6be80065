//! Configuration from app settings (environment variables), validated once at start-up.
//!
//! Settings are read through [`Env`] so tests build configurations from a map instead of the process
//! environment. A bad value is a [`ConfigError`] naming the setting and the reason; the binary turns it into
//! exit code 2.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use url::Url;

use crate::core::model::Mode;
use crate::core::ncrontab::Schedule;
use crate::runtime::pair_records::{DEFAULT_SNAPSHOT_HOURS, MAX_SNAPSHOT_HOURS, PairRecords};

mod grant;
pub use grant::{GrantModeSetting, GrantSettings};

/// Where settings come from.
pub trait Env {
    fn var(&self, key: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

/// A fixed set of settings (tests, `local.settings.json`).
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub BTreeMap<String, String>);

impl MapEnv {
    pub fn new<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

/// A setting with a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

pub const DEFAULT_TAG: &str = "acr-autoattach";
pub const DEFAULT_SCHEDULE: &str = "0 */30 * * * *";
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
pub const DEFAULT_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com";
/// Event Grid waits 30 s for an answer; the readiness wait must leave room for the rest of the invocation.
pub const MAX_READY_TIMEOUT_SECS: u64 = 24;
/// Upper bound of `AUTOATTACH_VERIFY_BUDGET_SECS` (a day: longer than any Functions plan lets a run last;
/// without a bound a huge value overflowed the run's deadline and panicked).
pub const MAX_VERIFY_BUDGET_SECS: u64 = 86_400;
/// Upper bound of `AUTOATTACH_RATE_LIMIT_SCALE` (the emulator's `--refill-scale` accepts the same range).
pub const MAX_RATE_LIMIT_SCALE: u64 = 10_000;

/// Validated handler configuration.
#[derive(Clone)]
pub struct Config {
    /// The opt-in tag's name (registries) and opt-out tag's name (clusters).
    pub tag: String,
    pub mode: Mode,
    /// Subscriptions in scope; empty means every subscription the identity can read.
    pub subscriptions: Vec<String>,
    /// Remove owned assignments that are no longer wanted.
    pub detach: bool,
    /// How long one event invocation waits for a cluster to become ready before failing so Event Grid retries.
    pub ready_timeout: Duration,
    /// Six-field NCRONTAB schedule of the verification timer.
    pub verify_schedule: String,
    pub arm_endpoint: Url,
    pub graph_endpoint: Url,
    /// Use Azure Resource Graph for the timer's inventory and a cluster event's registry discovery (both fall
    /// back to ARM lists when it fails).
    pub use_resource_graph: bool,
    /// A user-assigned managed identity's client id; `None` uses the system-assigned identity.
    pub managed_identity_client_id: Option<String>,
    /// Time budget of one verification run; it stops cleanly and reports partial coverage when exceeded.
    pub verify_budget: Duration,
    /// Upper bound on concurrent Azure requests of one invocation.
    pub max_concurrency: usize,
    /// Which `AttachmentVerification` records a timer run emits (`AUTOATTACH_PAIR_RECORDS`).
    pub pair_records: PairRecords,
    /// Width of the window with one full snapshot of pair records in `changes` mode
    /// (`AUTOATTACH_SNAPSHOT_HOURS`).
    pub snapshot_hours: u64,
    /// The client-side limiter refills this many times faster than Azure's published ARM buckets and Resource
    /// Graph window (`AUTOATTACH_RATE_LIMIT_SCALE`, default 1). Only for an emulator started with the same
    /// refill scale (benchmarks); against Azure leave it at 1.
    pub rate_limit_scale: u32,
    /// `AUTOATTACH_GRANT_MODE` and the group-mode settings (`docs/grant-modes.md` §5).
    pub grant: GrantSettings,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No field is secret today; keep the hand-written Debug so that adding one cannot leak it by accident.
        f.debug_struct("Config")
            .field("tag", &self.tag)
            .field("mode", &self.mode)
            .field("subscriptions", &self.subscriptions)
            .field("detach", &self.detach)
            .field("ready_timeout", &self.ready_timeout)
            .field("verify_schedule", &self.verify_schedule)
            .field("arm_endpoint", &self.arm_endpoint.as_str())
            .field("graph_endpoint", &self.graph_endpoint.as_str())
            .field("use_resource_graph", &self.use_resource_graph)
            .field(
                "managed_identity_client_id",
                &self.managed_identity_client_id,
            )
            .field("verify_budget", &self.verify_budget)
            .field("max_concurrency", &self.max_concurrency)
            .field("pair_records", &self.pair_records)
            .field("snapshot_hours", &self.snapshot_hours)
            .field("rate_limit_scale", &self.rate_limit_scale)
            .field("grant", &self.grant)
            .finish()
    }
}

impl Config {
    /// Reads and validates every setting; the first bad one is returned.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            env.var(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let tag = get("AUTOATTACH_TAG").unwrap_or_else(|| DEFAULT_TAG.to_owned());
        validate_tag_name(&tag).map_err(|r| ConfigError::new("AUTOATTACH_TAG", r))?;

        let mode = match get("AUTOATTACH_MODE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("enforce") => Mode::Enforce,
            Some("audit") => Mode::Audit,
            Some(other) => {
                return Err(ConfigError::new(
                    "AUTOATTACH_MODE",
                    format!("`{other}` is not one of: enforce, audit"),
                ));
            }
        };

        let subscriptions = match get("AUTOATTACH_SUBSCRIPTIONS") {
            None => Vec::new(),
            Some(list) => parse_subscriptions(&list)
                .map_err(|r| ConfigError::new("AUTOATTACH_SUBSCRIPTIONS", r))?,
        };

        let detach = match get("AUTOATTACH_DETACH") {
            None => false,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                ConfigError::new(
                    "AUTOATTACH_DETACH",
                    format!("`{v}` is not a boolean (true/false)"),
                )
            })?,
        };

        let ready_secs = parse_u64(
            get("AUTOATTACH_READY_TIMEOUT_SECS"),
            20,
            "AUTOATTACH_READY_TIMEOUT_SECS",
        )?;
        if ready_secs == 0 || ready_secs > MAX_READY_TIMEOUT_SECS {
            return Err(ConfigError::new(
                "AUTOATTACH_READY_TIMEOUT_SECS",
                format!(
                    "{ready_secs} is out of range 1..={MAX_READY_TIMEOUT_SECS} (Event Grid waits 30 s for the whole invocation)"
                ),
            ));
        }

        let verify_schedule =
            get("AUTOATTACH_VERIFY_SCHEDULE").unwrap_or_else(|| DEFAULT_SCHEDULE.to_owned());
        Schedule::parse(&verify_schedule)
            .map_err(|e| ConfigError::new("AUTOATTACH_VERIFY_SCHEDULE", e.to_string()))?;

        let arm_endpoint = parse_endpoint(get("AUTOATTACH_ARM_ENDPOINT"), DEFAULT_ARM_ENDPOINT)
            .map_err(|r| ConfigError::new("AUTOATTACH_ARM_ENDPOINT", r))?;
        let graph_endpoint =
            parse_endpoint(get("AUTOATTACH_GRAPH_ENDPOINT"), DEFAULT_GRAPH_ENDPOINT)
                .map_err(|r| ConfigError::new("AUTOATTACH_GRAPH_ENDPOINT", r))?;

        let use_resource_graph = match get("AUTOATTACH_USE_RESOURCE_GRAPH") {
            None => true,
            Some(v) => parse_bool(&v).ok_or_else(|| {
                ConfigError::new(
                    "AUTOATTACH_USE_RESOURCE_GRAPH",
                    format!("`{v}` is not a boolean (true/false)"),
                )
            })?,
        };

        let managed_identity_client_id = match get("AZURE_CLIENT_ID") {
            None => None,
            Some(id) if is_guid(&id) => Some(id),
            Some(id) => {
                return Err(ConfigError::new(
                    "AZURE_CLIENT_ID",
                    format!("`{id}` is not a GUID (the client id of a user-assigned identity)"),
                ));
            }
        };

        let budget_secs = parse_u64(
            get("AUTOATTACH_VERIFY_BUDGET_SECS"),
            540,
            "AUTOATTACH_VERIFY_BUDGET_SECS",
        )?;
        if !(1..=MAX_VERIFY_BUDGET_SECS).contains(&budget_secs) {
            return Err(ConfigError::new(
                "AUTOATTACH_VERIFY_BUDGET_SECS",
                format!("{budget_secs} is out of range 1..={MAX_VERIFY_BUDGET_SECS}"),
            ));
        }

        let max_concurrency = parse_u64(
            get("AUTOATTACH_MAX_CONCURRENCY"),
            16,
            "AUTOATTACH_MAX_CONCURRENCY",
        )?;
        if !(1..=256).contains(&max_concurrency) {
            return Err(ConfigError::new(
                "AUTOATTACH_MAX_CONCURRENCY",
                format!("{max_concurrency} is out of range 1..=256"),
            ));
        }

        let pair_records = match get("AUTOATTACH_PAIR_RECORDS") {
            None => PairRecords::default(),
            Some(v) => PairRecords::parse(&v).ok_or_else(|| {
                ConfigError::new(
                    "AUTOATTACH_PAIR_RECORDS",
                    format!("`{v}` is not one of: changes, all"),
                )
            })?,
        };
        let snapshot_hours = parse_snapshot_hours(get("AUTOATTACH_SNAPSHOT_HOURS"))?;

        Ok(Self {
            tag,
            mode,
            subscriptions,
            detach,
            ready_timeout: Duration::from_secs(ready_secs),
            verify_schedule,
            arm_endpoint,
            graph_endpoint,
            use_resource_graph,
            managed_identity_client_id,
            verify_budget: Duration::from_secs(budget_secs),
            max_concurrency: max_concurrency as usize,
            pair_records,
            snapshot_hours,
            rate_limit_scale: parse_rate_limit_scale(get("AUTOATTACH_RATE_LIMIT_SCALE"))?,
            grant: GrantSettings::from_settings(get)?,
        })
    }

    /// The effective configuration as `KEY=value` lines, for `acr-autoattach config`. Nothing here is secret;
    /// settings that are (alert webhook, connection strings) are shown only as set/unset by their owners.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let mut lines = vec![
            ("AUTOATTACH_TAG", self.tag.clone()),
            (
                "AUTOATTACH_MODE",
                match self.mode {
                    Mode::Enforce => "enforce".into(),
                    Mode::Audit => "audit".into(),
                },
            ),
            (
                "AUTOATTACH_SUBSCRIPTIONS",
                if self.subscriptions.is_empty() {
                    "(all visible to the identity)".into()
                } else {
                    self.subscriptions.join(",")
                },
            ),
            ("AUTOATTACH_DETACH", self.detach.to_string()),
            (
                "AUTOATTACH_READY_TIMEOUT_SECS",
                self.ready_timeout.as_secs().to_string(),
            ),
            ("AUTOATTACH_VERIFY_SCHEDULE", self.verify_schedule.clone()),
            (
                "AUTOATTACH_VERIFY_BUDGET_SECS",
                self.verify_budget.as_secs().to_string(),
            ),
            (
                "AUTOATTACH_MAX_CONCURRENCY",
                self.max_concurrency.to_string(),
            ),
            (
                "AUTOATTACH_USE_RESOURCE_GRAPH",
                self.use_resource_graph.to_string(),
            ),
            (
                "AUTOATTACH_PAIR_RECORDS",
                self.pair_records.as_str().to_owned(),
            ),
            ("AUTOATTACH_SNAPSHOT_HOURS", self.snapshot_hours.to_string()),
            (
                "AUTOATTACH_RATE_LIMIT_SCALE",
                self.rate_limit_scale.to_string(),
            ),
            ("AUTOATTACH_ARM_ENDPOINT", self.arm_endpoint.to_string()),
            ("AUTOATTACH_GRAPH_ENDPOINT", self.graph_endpoint.to_string()),
            (
                "AZURE_CLIENT_ID",
                self.managed_identity_client_id
                    .clone()
                    .unwrap_or_else(|| "(system-assigned identity)".into()),
            ),
        ];
        lines.extend(self.grant.describe());
        lines
    }
}

/// `AUTOATTACH_SNAPSHOT_HOURS`: [`DEFAULT_SNAPSHOT_HOURS`] when unset, else 1..=[`MAX_SNAPSHOT_HOURS`].
fn parse_snapshot_hours(value: Option<String>) -> Result<u64, ConfigError> {
    const KEY: &str = "AUTOATTACH_SNAPSHOT_HOURS";
    let hours = parse_u64(value, DEFAULT_SNAPSHOT_HOURS, KEY)?;
    if !(1..=MAX_SNAPSHOT_HOURS).contains(&hours) {
        return Err(ConfigError::new(
            KEY,
            format!("{hours} is out of range 1..={MAX_SNAPSHOT_HOURS}"),
        ));
    }
    Ok(hours)
}

/// `AUTOATTACH_RATE_LIMIT_SCALE`: 1 when unset, else 1..=[`MAX_RATE_LIMIT_SCALE`].
fn parse_rate_limit_scale(value: Option<String>) -> Result<u32, ConfigError> {
    const KEY: &str = "AUTOATTACH_RATE_LIMIT_SCALE";
    let scale = parse_u64(value, 1, KEY)?;
    if !(1..=MAX_RATE_LIMIT_SCALE).contains(&scale) {
        return Err(ConfigError::new(
            KEY,
            format!("{scale} is out of range 1..={MAX_RATE_LIMIT_SCALE}"),
        ));
    }
    Ok(scale as u32)
}

fn parse_u64(
    value: Option<String>,
    default: u64,
    setting: &'static str,
) -> Result<u64, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse::<u64>().map_err(|_| {
            ConfigError::new(
                setting,
                format!("`{v}` is not a whole number of seconds/items"),
            )
        }),
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}

fn parse_subscriptions(list: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let id = raw.trim();
        if id.is_empty() {
            continue;
        }
        if !is_guid(id) {
            return Err(format!("`{id}` is not a subscription id (a GUID)"));
        }
        if !out.iter().any(|s| s.eq_ignore_ascii_case(id)) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

/// Azure tag names: 1..=512 characters, none of `<>%&\?/`.
fn validate_tag_name(tag: &str) -> Result<(), String> {
    if tag.chars().count() > 512 {
        return Err("longer than 512 characters (Azure's limit for tag names)".into());
    }
    if let Some(c) = tag
        .chars()
        .find(|c| "<>%&\\?/".contains(*c) || c.is_control())
    {
        return Err(format!(
            "contains `{}`, which Azure does not allow in tag names",
            c.escape_default()
        ));
    }
    Ok(())
}

/// HTTPS always; plain HTTP only to a loopback host (the emulator), so a token is never sent in clear text.
fn parse_endpoint(value: Option<String>, default: &str) -> Result<Url, String> {
    let raw = value.unwrap_or_else(|| default.to_owned());
    let url = Url::parse(&raw).map_err(|e| format!("`{raw}` is not a URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(format!(
                "`{raw}` uses plain http to a non-loopback host; tokens would travel in clear text"
            ));
        }
        other => return Err(format!("scheme `{other}` is not http(s)")),
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_env(&MapEnv::new(pairs.iter().copied()))
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.tag, "acr-autoattach");
        assert_eq!(c.mode, Mode::Enforce);
        assert!(c.subscriptions.is_empty());
        assert!(!c.detach);
        assert_eq!(c.ready_timeout, Duration::from_secs(20));
        assert_eq!(c.verify_schedule, "0 */30 * * * *");
        assert_eq!(c.arm_endpoint.as_str(), "https://management.azure.com/");
        assert!(c.use_resource_graph);
        assert_eq!(c.pair_records, PairRecords::Changes);
        assert_eq!(c.snapshot_hours, 24);
        assert_eq!(c.rate_limit_scale, 1);
        assert_eq!(
            cfg(&[("AUTOATTACH_RATE_LIMIT_SCALE", "20")])
                .unwrap()
                .rate_limit_scale,
            20
        );
        let all = cfg(&[
            ("AUTOATTACH_PAIR_RECORDS", "all"),
            ("AUTOATTACH_SNAPSHOT_HOURS", "6"),
        ])
        .unwrap();
        assert_eq!(
            (all.pair_records, all.snapshot_hours),
            (PairRecords::All, 6)
        );
    }

    #[test]
    fn every_bad_value_names_its_setting() {
        let cases: &[(&str, &str)] = &[
            ("AUTOATTACH_TAG", "a/b"),
            ("AUTOATTACH_MODE", "yolo"),
            ("AUTOATTACH_SUBSCRIPTIONS", "not-a-guid"),
            ("AUTOATTACH_DETACH", "maybe"),
            ("AUTOATTACH_READY_TIMEOUT_SECS", "25"),
            ("AUTOATTACH_READY_TIMEOUT_SECS", "0"),
            ("AUTOATTACH_READY_TIMEOUT_SECS", "ten"),
            ("AUTOATTACH_VERIFY_SCHEDULE", "*/5 * * * *"),
            ("AUTOATTACH_VERIFY_SCHEDULE", "0 61 * * * *"),
            ("AUTOATTACH_ARM_ENDPOINT", "http://management.example.com"),
            ("AUTOATTACH_ARM_ENDPOINT", "not a url"),
            ("AUTOATTACH_GRAPH_ENDPOINT", "ftp://127.0.0.1"),
            ("AZURE_CLIENT_ID", "abc"),
            ("AUTOATTACH_MAX_CONCURRENCY", "0"),
            ("AUTOATTACH_USE_RESOURCE_GRAPH", "perhaps"),
            ("AUTOATTACH_VERIFY_BUDGET_SECS", "0"),
            ("AUTOATTACH_VERIFY_BUDGET_SECS", "86401"),
            ("AUTOATTACH_VERIFY_BUDGET_SECS", "18446744073709551615"),
            ("AUTOATTACH_PAIR_RECORDS", "some"),
            ("AUTOATTACH_SNAPSHOT_HOURS", "0"),
            ("AUTOATTACH_SNAPSHOT_HOURS", "169"),
            ("AUTOATTACH_SNAPSHOT_HOURS", "daily"),
            ("AUTOATTACH_RATE_LIMIT_SCALE", "0"),
            ("AUTOATTACH_RATE_LIMIT_SCALE", "10001"),
        ];
        for (key, value) in cases {
            let err = cfg(&[(key, value)]).unwrap_err();
            assert_eq!(err.setting, *key, "{key}={value}: {err}");
            assert!(err.to_string().starts_with(key), "{err}");
        }
    }

    #[test]
    fn good_values() {
        let c = cfg(&[
            ("AUTOATTACH_TAG", "Team Pull"),
            ("AUTOATTACH_MODE", "AUDIT"),
            (
                "AUTOATTACH_SUBSCRIPTIONS",
                " 00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002,,00000000-0000-0000-0000-000000000001",
            ),
            ("AUTOATTACH_DETACH", "true"),
            ("AUTOATTACH_READY_TIMEOUT_SECS", "24"),
            ("AUTOATTACH_VERIFY_SCHEDULE", "0 0 */2 * * 1-5"),
            ("AUTOATTACH_ARM_ENDPOINT", "http://127.0.0.1:8080"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ])
        .unwrap();
        assert_eq!(c.tag, "Team Pull");
        assert_eq!(c.mode, Mode::Audit);
        assert_eq!(c.subscriptions.len(), 2);
        assert!(c.detach);
        assert_eq!(c.arm_endpoint.as_str(), "http://127.0.0.1:8080/");
    }

    proptest::proptest! {
        /// Any number in a bounded setting is accepted inside its bounds and refused, naming the setting and
        /// the bound, outside them; an accepted budget never overflows a deadline.
        #[test]
        fn verify_budget_is_bounded(secs in proptest::prelude::any::<u64>()) {
            match cfg(&[("AUTOATTACH_VERIFY_BUDGET_SECS", &secs.to_string())]) {
                Ok(c) => {
                    proptest::prop_assert!((1..=MAX_VERIFY_BUDGET_SECS).contains(&secs));
                    proptest::prop_assert!(tokio::time::Instant::now().checked_add(c.verify_budget).is_some());
                }
                Err(e) => {
                    proptest::prop_assert!(!(1..=MAX_VERIFY_BUDGET_SECS).contains(&secs));
                    proptest::prop_assert_eq!(e.setting, "AUTOATTACH_VERIFY_BUDGET_SECS");
                    proptest::prop_assert!(e.to_string().contains("86400"), "{}", e);
                }
            }
        }
    }
}
