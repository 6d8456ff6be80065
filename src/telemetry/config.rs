//! Telemetry configuration read through an environment lookup (so tests need no process environment).
//! Secrets held here (OTLP header values, the Application Insights connection string) never reach `Debug`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "acr-autoattach";
/// OTLP's per-request timeout when `OTEL_EXPORTER_OTLP_TIMEOUT` is unset (the specification's default).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an invocation waits for telemetry to flush before answering anyway.
const DEFAULT_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelemetryConfigError {
    #[error(
        "{variable}: unsupported OTLP protocol `{value}` (expected http/protobuf, http/json or grpc)"
    )]
    UnsupportedProtocol {
        variable: &'static str,
        value: String,
    },
    #[error("{variable}: `{value}` is not a number of milliseconds in 1..=60000")]
    BadTimeout {
        variable: &'static str,
        value: String,
    },
    // The value may hold a key: only the variable is named.
    #[error("{variable}: malformed value (expected comma-separated key=value pairs)")]
    MalformedList { variable: &'static str },
    #[error("APPLICATIONINSIGHTS_CONNECTION_STRING has no InstrumentationKey")]
    ConnectionStringWithoutKey,
}

/// The OTLP wire protocol (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
    Grpc,
}

impl OtlpProtocol {
    fn parse(variable: &'static str, value: &str) -> Result<Self, TelemetryConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            "grpc" => Ok(Self::Grpc),
            _ => Err(TelemetryConfigError::UnsupportedProtocol {
                variable,
                value: value.to_owned(),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::HttpJson => "http/json",
            Self::Grpc => "grpc",
        }
    }
}

/// The three OTel signals, each with its own `OTEL_EXPORTER_OTLP_{SIGNAL}_*` variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    fn env_infix(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
            Self::Logs => "LOGS",
        }
    }

    /// The path appended to the generic `OTEL_EXPORTER_OTLP_ENDPOINT` for HTTP.
    fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
            Self::Logs => "v1/logs",
        }
    }
}

/// Where and how one signal is exported over OTLP.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpSignalConfig {
    /// The full URL for HTTP (per-signal variable as given, or the generic endpoint plus `/v1/{signal}`);
    /// the gRPC endpoint as given.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Header values may be credentials: redacted in `Debug`.
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl fmt::Debug for OtlpSignalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<String> = self
            .headers
            .iter()
            .map(|(k, _)| format!("{k}=<redacted>"))
            .collect();
        f.debug_struct("OtlpSignalConfig")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("protocol", &self.protocol.as_str())
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// OTLP export per signal; a signal without an endpoint is not exported over OTLP.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpConfig {
    pub traces: Option<OtlpSignalConfig>,
    pub metrics: Option<OtlpSignalConfig>,
    pub logs: Option<OtlpSignalConfig>,
}

impl OtlpConfig {
    pub fn is_empty(&self) -> bool {
        self.traces.is_none() && self.metrics.is_none() && self.logs.is_none()
    }

    pub fn signal(&self, signal: Signal) -> Option<&OtlpSignalConfig> {
        match signal {
            Signal::Traces => self.traces.as_ref(),
            Signal::Metrics => self.metrics.as_ref(),
            Signal::Logs => self.logs.as_ref(),
        }
    }
}

/// An Application Insights connection string. The whole string is treated as a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct AppInsightsConnectionString(String);

impl AppInsightsConnectionString {
    pub fn parse(raw: &str) -> Result<Self, TelemetryConfigError> {
        let raw = raw.trim();
        let has_key = connection_string_fields(raw)
            .any(|(k, v)| k.eq_ignore_ascii_case("InstrumentationKey") && !v.trim().is_empty());
        if has_key {
            Ok(Self(raw.to_owned()))
        } else {
            Err(TelemetryConfigError::ConnectionStringWithoutKey)
        }
    }

    /// The raw string, for the exporter only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The `Authorization` field, when the string has one (`ikey`, or `AAD` for Microsoft Entra authentication).
    pub fn authorization(&self) -> Option<&str> {
        self.field("Authorization")
    }

    /// The string the exporter parses under Microsoft Entra authentication: every field but `Authorization`
    /// (opentelemetry-application-insights 0.46 refuses any value but `ikey`) and `AADAudience` (ours to use),
    /// and no empty field (a trailing `;` would fail its parser).
    pub fn for_entra_exporter(&self) -> String {
        connection_string_fields(&self.0)
            .filter(|(k, _)| {
                !k.eq_ignore_ascii_case("Authorization") && !k.eq_ignore_ascii_case("AADAudience")
            })
            .map(|(k, v)| format!("{k}={}", v.trim()))
            .collect::<Vec<_>>()
            .join(";")
    }

    fn field(&self, name: &str) -> Option<&str> {
        connection_string_fields(&self.0)
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `IngestionEndpoint`, when the string names one.
    pub fn ingestion_endpoint(&self) -> Option<&str> {
        self.field("IngestionEndpoint")
    }
}

/// The audience of Application Insights ingestion in the Azure public cloud (Microsoft Learn, "Microsoft Entra
/// authentication for Application Insights", Token audience); a connection string's `AADAudience` overrides it.
pub const DEFAULT_INGESTION_AUDIENCE: &str = "https://monitor.azure.com/";

/// How the Application Insights exporter authenticates, from the connection string and
/// `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` (the setting the Functions host and the Azure Monitor SDKs read:
/// `Authorization=AAD` for the system-assigned identity, `Authorization=AAD;ClientId=<id>` for a user-assigned one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AppInsightsAuth {
    /// The instrumentation key alone (local authentication), posted to `/v2/track`.
    #[default]
    InstrumentationKey,
    /// A Microsoft Entra token of the managed identity, posted to `/v2.1/track`.
    Entra {
        /// The user-assigned identity's client id; `None` = the system-assigned identity. Not a secret.
        client_id: Option<String>,
        /// The token scope: the audience (`AADAudience`, or the public cloud's) followed by `/.default`.
        scope: String,
    },
    /// An `Authorization` value this handler does not know: the Application Insights exporter stays off.
    Unsupported(String),
}

impl AppInsightsAuth {
    /// Microsoft Entra when either string says `Authorization=AAD` (the authentication string wins, and names
    /// the identity); otherwise the connection string's `Authorization` decides (`ikey` or none: the key).
    pub fn resolve(cs: &AppInsightsConnectionString, authentication: Option<&str>) -> Self {
        let auth_fields: Vec<(&str, &str)> = authentication
            .map(|a| connection_string_fields(a).collect())
            .unwrap_or_default();
        let auth_field = |name: &str| {
            auth_fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let is_aad = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("AAD"));
        if is_aad(auth_field("Authorization")) || is_aad(cs.authorization()) {
            let audience = cs
                .field("AADAudience")
                .unwrap_or(DEFAULT_INGESTION_AUDIENCE);
            return Self::Entra {
                client_id: auth_field("ClientId").map(str::to_owned),
                scope: format!("{audience}/.default"),
            };
        }
        match cs.authorization() {
            Some(v) if !v.eq_ignore_ascii_case("ikey") => Self::Unsupported(v.to_owned()),
            _ => Self::InstrumentationKey,
        }
    }
}

fn connection_string_fields(raw: &str) -> impl Iterator<Item = (&str, &str)> {
    raw.split(';')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v))
}

impl fmt::Debug for AppInsightsConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Endpoints are not secret and help diagnose a wrong region; every other field may be a key.
        let shown: Vec<String> = connection_string_fields(&self.0)
            .map(|(k, v)| {
                if k.to_ascii_lowercase().ends_with("endpoint") {
                    format!("{k}={}", redact_url(v))
                } else {
                    format!("{k}=<redacted>")
                }
            })
            .collect();
        write!(f, "AppInsightsConnectionString({})", shown.join(";"))
    }
}

/// Everything `telemetry::init` needs, read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded, in the order given.
    pub resource_attributes: Vec<(String, String)>,
    pub otlp: OtlpConfig,
    pub app_insights: Option<AppInsightsConnectionString>,
    /// How the Application Insights exporter authenticates (meaningless without `app_insights`).
    pub app_insights_auth: AppInsightsAuth,
    /// The log filter for stdout and exported logs (`RUST_LOG`, default `info`).
    pub log_filter: String,
    /// Upper bound on how long `TelemetryGuard::flush` waits (`AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS`).
    pub flush_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            resource_attributes: Vec::new(),
            otlp: OtlpConfig::default(),
            app_insights: None,
            app_insights_auth: AppInsightsAuth::InstrumentationKey,
            log_filter: "info".to_owned(),
            flush_timeout: DEFAULT_FLUSH_TIMEOUT,
        }
    }
}

impl TelemetryConfig {
    /// Reads the standard OpenTelemetry variables and `APPLICATIONINSIGHTS_CONNECTION_STRING` through `env`.
    /// Empty values count as unset (App Service turns a cleared setting into an empty one).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Self, TelemetryConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());

        let service_name = get("OTEL_SERVICE_NAME")
            .map_or_else(|| DEFAULT_SERVICE_NAME.to_owned(), |v| v.trim().to_owned());
        let resource_attributes = match get("OTEL_RESOURCE_ATTRIBUTES") {
            Some(v) => parse_key_value_list("OTEL_RESOURCE_ATTRIBUTES", &v)?,
            None => Vec::new(),
        };

        let mut otlp = OtlpConfig::default();
        for signal in [Signal::Traces, Signal::Metrics, Signal::Logs] {
            let resolved = resolve_signal(&get, signal)?;
            match signal {
                Signal::Traces => otlp.traces = resolved,
                Signal::Metrics => otlp.metrics = resolved,
                Signal::Logs => otlp.logs = resolved,
            }
        }

        let app_insights = get("APPLICATIONINSIGHTS_CONNECTION_STRING")
            .map(|v| AppInsightsConnectionString::parse(&v))
            .transpose()?;
        let app_insights_auth = app_insights
            .as_ref()
            .map_or_else(AppInsightsAuth::default, |cs| {
                AppInsightsAuth::resolve(
                    cs,
                    get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING").as_deref(),
                )
            });
        let log_filter = get("RUST_LOG").unwrap_or_else(|| "info".to_owned());
        let flush_timeout = match get("AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS") {
            Some(v) => parse_millis("AUTOATTACH_TELEMETRY_FLUSH_TIMEOUT_MS", &v)?,
            None => DEFAULT_FLUSH_TIMEOUT,
        };

        Ok(Self {
            service_name,
            resource_attributes,
            otlp,
            app_insights,
            app_insights_auth,
            log_filter,
            flush_timeout,
        })
    }

    /// True when some exporter is configured (otherwise telemetry is JSON logs on stdout only).
    pub fn exports(&self) -> bool {
        !self.otlp.is_empty() || self.app_insights.is_some()
    }
}

fn signal_var(signal: Signal, suffix: &str) -> String {
    format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.env_infix())
}

// The variable names are built at run time, but errors want `&'static str`: map to the known set.
fn static_name(name: &str) -> &'static str {
    const NAMES: [&str; 12] = [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("OTEL_EXPORTER_OTLP_*")
}

/// Per the OTLP exporter specification: a per-signal variable wins over the generic one; a per-signal
/// endpoint is used as is, the generic one gets `/v1/{signal}` appended for HTTP.
fn resolve_signal(
    get: &dyn Fn(&str) -> Option<String>,
    signal: Signal,
) -> Result<Option<OtlpSignalConfig>, TelemetryConfigError> {
    let pick = |suffix: &str| -> (String, Option<String>) {
        let specific = signal_var(signal, suffix);
        if let Some(v) = get(&specific) {
            return (specific, Some(v));
        }
        let generic = format!("OTEL_EXPORTER_OTLP_{suffix}");
        let v = get(&generic);
        (generic, v)
    };

    let (protocol_var, protocol_value) = pick("PROTOCOL");
    let protocol = match protocol_value {
        Some(v) => OtlpProtocol::parse(static_name(&protocol_var), &v)?,
        None => OtlpProtocol::HttpProtobuf,
    };

    let endpoint = if let Some(v) = get(&signal_var(signal, "ENDPOINT")) {
        v.trim().to_owned()
    } else if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        let base = v.trim();
        if protocol == OtlpProtocol::Grpc {
            base.to_owned()
        } else {
            format!("{}/{}", base.trim_end_matches('/'), signal.http_path())
        }
    } else {
        return Ok(None);
    };

    let (headers_var, headers_value) = pick("HEADERS");
    let headers = match headers_value {
        Some(v) => parse_key_value_list(static_name(&headers_var), &v)?,
        None => Vec::new(),
    };
    let (timeout_var, timeout_value) = pick("TIMEOUT");
    let timeout = match timeout_value {
        Some(v) => parse_millis(static_name(&timeout_var), &v)?,
        None => DEFAULT_EXPORT_TIMEOUT,
    };

    Ok(Some(OtlpSignalConfig {
        endpoint,
        protocol,
        headers,
        timeout,
    }))
}

/// Upper bound of every telemetry timeout setting (a flush or an export must not hold an invocation longer).
pub const MAX_TIMEOUT_MS: u64 = 60_000;

fn parse_millis(variable: &'static str, value: &str) -> Result<Duration, TelemetryConfigError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
        .map(Duration::from_millis)
        .ok_or_else(|| TelemetryConfigError::BadTimeout {
            variable,
            value: value.to_owned(),
        })
}

/// `k1=v1,k2=v2` with percent-encoded values (the W3C Baggage-like format both `OTEL_RESOURCE_ATTRIBUTES`
/// and `OTEL_EXPORTER_OTLP_HEADERS` use). Later duplicates win.
pub(crate) fn parse_key_value_list(
    variable: &'static str,
    raw: &str,
) -> Result<Vec<(String, String)>, TelemetryConfigError> {
    let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (i, item) in raw.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let (k, v) = item
            .split_once('=')
            .ok_or(TelemetryConfigError::MalformedList { variable })?;
        let key = percent_decode(k.trim());
        if key.is_empty() {
            return Err(TelemetryConfigError::MalformedList { variable });
        }
        out.insert(key, (i, percent_decode(v.trim())));
    }
    let mut ordered: Vec<(usize, String, String)> =
        out.into_iter().map(|(k, (i, v))| (i, k, v)).collect();
    ordered.sort_by_key(|(i, _, _)| *i);
    Ok(ordered.into_iter().map(|(_, k, v)| (k, v)).collect())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A URL for display: scheme, host, port and path; user info, query and fragment (where keys live) dropped.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            let had_secret_parts =
                !u.username().is_empty() || u.password().is_some() || u.query().is_some();
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            if had_secret_parts {
                format!("{u}<redacted>")
            } else {
                u.to_string()
            }
        }
        Err(_) => "<unparseable url>".to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_configured_means_stdout_only() {
        let c = TelemetryConfig::from_env(&env_of(&[])).unwrap();
        assert_eq!(c.service_name, "acr-autoattach");
        assert!(!c.exports());
        assert_eq!(c.flush_timeout, Duration::from_secs(3));
    }

    #[test]
    fn generic_endpoint_gets_signal_paths_and_specific_ones_are_kept() {
        let c = TelemetryConfig::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                "http://logs.example:9000/custom",
            ),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-tenant=t1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1500"),
        ]))
        .unwrap();
        let t = c.otlp.traces.unwrap();
        assert_eq!(t.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(t.timeout, Duration::from_millis(1500));
        assert_eq!(
            t.headers,
            vec![
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("x-tenant".to_owned(), "t1".to_owned())
            ]
        );
        let m = c.otlp.metrics.unwrap();
        assert_eq!(m.protocol, OtlpProtocol::HttpJson);
        assert_eq!(m.endpoint, "http://127.0.0.1:4318/v1/metrics");
        assert_eq!(
            c.otlp.logs.unwrap().endpoint,
            "http://logs.example:9000/custom"
        );
    }

    #[test]
    fn grpc_endpoint_is_not_suffixed_and_bad_protocol_is_refused() {
        let c = TelemetryConfig::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .unwrap();
        assert_eq!(c.otlp.traces.unwrap().endpoint, "http://127.0.0.1:4317");
        let err = TelemetryConfig::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
        ]))
        .unwrap_err();
        assert!(matches!(
            err,
            TelemetryConfigError::UnsupportedProtocol {
                variable: "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                ..
            }
        ));
    }

    #[test]
    fn only_a_per_signal_endpoint_exports_only_that_signal() {
        let c = TelemetryConfig::from_env(&env_of(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:1/v1/traces",
        )]))
        .unwrap();
        assert!(c.otlp.traces.is_some() && c.otlp.metrics.is_none() && c.otlp.logs.is_none());
    }

    #[test]
    fn resource_attributes_are_decoded() {
        let c = TelemetryConfig::from_env(&env_of(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,team=platform%20eng",
            ),
            ("OTEL_SERVICE_NAME", "attach-prod"),
        ]))
        .unwrap();
        assert_eq!(c.service_name, "attach-prod");
        assert_eq!(
            c.resource_attributes,
            vec![
                ("deployment.environment".to_owned(), "prod".to_owned()),
                ("team".to_owned(), "platform eng".to_owned())
            ]
        );
        assert!(matches!(
            TelemetryConfig::from_env(&env_of(&[("OTEL_RESOURCE_ATTRIBUTES", "novalue")])),
            Err(TelemetryConfigError::MalformedList { .. })
        ));
    }

    #[test]
    fn debug_redacts_headers_and_connection_string_keys() {
        let c = TelemetryConfig::from_env(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://user:pw@otlp.example/?token=qsecret"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=hdrsecret"),
            (
                "APPLICATIONINSIGHTS_CONNECTION_STRING",
                "InstrumentationKey=ikeysecret;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://westeurope.livediagnostics.monitor.azure.com/;ApplicationId=appsecret",
            ),
        ]))
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["hdrsecret", "ikeysecret", "appsecret", "qsecret", "pw@"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("api-key=<redacted>"));
        assert!(shown.contains("westeurope-5.in.applicationinsights.azure.com"));
        assert_eq!(
            c.app_insights.unwrap().ingestion_endpoint(),
            Some("https://westeurope-5.in.applicationinsights.azure.com/")
        );
    }

    #[test]
    fn entra_is_chosen_by_the_authentication_string_or_the_connection_string() {
        let cs = "InstrumentationKey=k-123456;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/";
        let c = TelemetryConfig::from_env(&env_of(&[
            ("APPLICATIONINSIGHTS_CONNECTION_STRING", cs),
            (
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
                "ClientId=0c1d2e3f-0000-4000-8000-000000000001;Authorization=AAD",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.app_insights_auth,
            AppInsightsAuth::Entra {
                client_id: Some("0c1d2e3f-0000-4000-8000-000000000001".to_owned()),
                scope: "https://monitor.azure.com//.default".to_owned(),
            }
        );
        // Only the connection string asks: the system-assigned identity; `AADAudience` sets the audience.
        let aad = AppInsightsConnectionString::parse(&format!(
            "{cs};Authorization=AAD;AADAudience=https://monitor.azure.us;"
        ))
        .unwrap();
        assert_eq!(
            AppInsightsAuth::resolve(&aad, None),
            AppInsightsAuth::Entra {
                client_id: None,
                scope: "https://monitor.azure.us/.default".to_owned(),
            }
        );
        assert_eq!(
            aad.for_entra_exporter(),
            "InstrumentationKey=k-123456;IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/"
        );
        // No authentication string, `ikey` or none: the key, as before; anything else is refused.
        let plain = AppInsightsConnectionString::parse(cs).unwrap();
        assert_eq!(
            AppInsightsAuth::resolve(&plain, Some("Authorization=ikey")),
            AppInsightsAuth::InstrumentationKey
        );
        let other =
            AppInsightsConnectionString::parse(&format!("{cs};Authorization=SharedKey")).unwrap();
        assert_eq!(
            AppInsightsAuth::resolve(&other, None),
            AppInsightsAuth::Unsupported("SharedKey".to_owned())
        );
        // Without a connection string there is nothing to authenticate.
        let none = TelemetryConfig::from_env(&env_of(&[(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
            "Authorization=AAD",
        )]))
        .unwrap();
        assert!(none.app_insights.is_none());
    }

    #[test]
    fn connection_string_without_key_is_refused_without_echoing_it() {
        let err =
            AppInsightsConnectionString::parse("IngestionEndpoint=https://x/;Foo=bar").unwrap_err();
        assert_eq!(err, TelemetryConfigError::ConnectionStringWithoutKey);
    }
}
