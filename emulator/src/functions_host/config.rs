//! Reading the app root the way the Functions host does: `host.json`, one `function.json` per function folder,
//! and `local.settings.json`. Everything here is pure (paths in, data out) apart from reading those files.
//!
//! Layout: the real host reads `DIR/*/function.json`. This repository keeps its function folders under
//! `DIR/function-app/`; when that folder holds at least one `function.json`, functions are read from there
//! instead (the function name is still the folder name, e.g. `OnResourceEvent`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::ncrontab::CronSchedule;

/// Why an app root cannot be hosted. Messages follow the real host's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("host.json: {0}")]
    Host(String),
    #[error("function '{function}': {message}")]
    Function { function: String, message: String },
    /// A `%Setting%` binding expression names an app setting that neither the environment, local.settings.json
    /// nor the explicit settings define. The real host marks the function in error ("'%X%' does not resolve to a
    /// value."); it has no default.
    #[error(
        "function '{function}': '%{setting}%' does not resolve to a value: app setting {setting} is not set; export it (e.g. export {setting}='{example}'), add it to \"Values\" in local.settings.json beside host.json, or pass --setting {setting}=..."
    )]
    UnresolvedSetting {
        function: String,
        setting: String,
        example: &'static str,
    },
    #[error("{0}")]
    Settings(String),
}

/// The `customHandler` section of host.json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHandler {
    pub default_executable_path: String,
    pub arguments: Vec<String>,
    pub working_directory: String,
    pub enable_forwarding_http_request: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub custom_handler: Option<CustomHandler>,
    /// `None` for `-1` (no limit).
    pub function_timeout: Option<Duration>,
    pub has_extension_bundle: bool,
}

/// The real host's default for Consumption plans, which is where this app runs.
pub const DEFAULT_FUNCTION_TIMEOUT: Duration = Duration::from_mins(5);

#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    Timer {
        /// As written in function.json (may be `%Setting%`).
        schedule_expression: String,
        schedule: CronSchedule,
        run_on_startup: bool,
        use_monitor: bool,
    },
    EventGrid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDefinition {
    /// The folder name, which is also the handler path (`POST /{name}`).
    pub name: String,
    pub folder: PathBuf,
    /// The trigger binding's `name` (the key inside `Data`).
    pub binding_name: String,
    pub trigger: Trigger,
}

impl FunctionDefinition {
    pub fn trigger_type(&self) -> &'static str {
        match self.trigger {
            Trigger::Timer { .. } => "timerTrigger",
            Trigger::EventGrid => "eventGridTrigger",
        }
    }
}

pub fn read_json(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    // host.json and function.json may start with a UTF-8 BOM when written by Windows tools.
    serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|source| ConfigError::Json {
        path: path.to_owned(),
        source,
    })
}

pub fn parse_host_json(value: &Value) -> Result<HostConfig, ConfigError> {
    let object = value
        .as_object()
        .ok_or_else(|| ConfigError::Host("the file must hold a JSON object".into()))?;
    match object.get("version").and_then(Value::as_str) {
        Some("2.0") => {}
        Some(other) => {
            return Err(ConfigError::Host(format!(
                "'{other}' is an invalid value for host.json 'version' property. Only '2.0' is supported"
            )));
        }
        None => {
            return Err(ConfigError::Host(
                "the host.json file is missing the required 'version' property".into(),
            ));
        }
    }
    let function_timeout = match get_ci(object, "functionTimeout") {
        None | Some(Value::Null) => Some(DEFAULT_FUNCTION_TIMEOUT),
        Some(Value::String(text)) => parse_timespan(text).map_err(|reason| {
            ConfigError::Host(format!("functionTimeout '{text}' is invalid: {reason}"))
        })?,
        Some(other) => {
            return Err(ConfigError::Host(format!(
                "functionTimeout must be a string, found {other}"
            )));
        }
    };
    let custom_handler = match get_ci(object, "customHandler") {
        None | Some(Value::Null) => None,
        Some(Value::Object(section)) => {
            let description = get_ci(section, "description")
                .and_then(Value::as_object)
                .ok_or_else(|| ConfigError::Host("customHandler.description is required".into()))?;
            let default_executable_path = get_ci(description, "defaultExecutablePath")
                .and_then(Value::as_str)
                .filter(|path| !path.trim().is_empty())
                .ok_or_else(|| {
                    ConfigError::Host(
                        "customHandler.description.defaultExecutablePath is required".into(),
                    )
                })?
                .to_owned();
            let arguments = match get_ci(description, "arguments") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| {
                        item.as_str().map(str::to_owned).ok_or_else(|| {
                            ConfigError::Host(
                                "customHandler.description.arguments must be strings".into(),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(ConfigError::Host(
                        "customHandler.description.arguments must be an array".into(),
                    ));
                }
            };
            let working_directory = get_ci(description, "workingDirectory")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let enable_forwarding_http_request = get_ci(section, "enableForwardingHttpRequest")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some(CustomHandler {
                default_executable_path,
                arguments,
                working_directory,
                enable_forwarding_http_request,
            })
        }
        Some(_) => return Err(ConfigError::Host("customHandler must be an object".into())),
    };
    let has_extension_bundle = get_ci(object, "extensionBundle")
        .and_then(Value::as_object)
        .and_then(|bundle| get_ci(bundle, "id"))
        .and_then(Value::as_str)
        .is_some_and(|id| id == "Microsoft.Azure.Functions.ExtensionBundle");
    Ok(HostConfig {
        custom_handler,
        function_timeout,
        has_extension_bundle,
    })
}

/// `hh:mm:ss` or `d.hh:mm:ss` (.NET TimeSpan) or `-1`; `None` means unlimited.
pub fn parse_timespan(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text == "-1" {
        return Ok(None);
    }
    let (days, rest) = match text.split_once('.') {
        Some((days, rest)) if rest.contains(':') && !days.contains(':') => (
            days.parse::<u64>()
                .map_err(|_| "bad day count".to_owned())?,
            rest,
        ),
        _ => (0, text),
    };
    let parts: Vec<&str> = rest.split(':').collect();
    if parts.len() != 3 {
        return Err("expected hh:mm:ss".into());
    }
    let hours: u64 = parts[0].parse().map_err(|_| "bad hours".to_owned())?;
    let minutes: u64 = parts[1].parse().map_err(|_| "bad minutes".to_owned())?;
    let seconds: f64 = parts[2].parse().map_err(|_| "bad seconds".to_owned())?;
    if minutes > 59 || !(0.0..60.0).contains(&seconds) || hours > 23 && days > 0 {
        return Err("value out of range".into());
    }
    let whole_seconds = days
        .checked_mul(24)
        .and_then(|h| h.checked_add(hours))
        .and_then(|h| h.checked_mul(3600))
        .and_then(|s| s.checked_add(minutes * 60))
        .ok_or_else(|| "value out of range".to_owned())?;
    let total = Duration::from_secs(whole_seconds).saturating_add(Duration::from_secs_f64(seconds));
    if total.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(Some(total))
}

/// Where function folders live: `DIR/function-app/` when it holds any function.json, else `DIR/`.
pub fn functions_dir(app_root: &Path) -> PathBuf {
    let repository_layout = app_root.join("function-app");
    let has_functions = std::fs::read_dir(&repository_layout).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.path().join("function.json").is_file())
    });
    if has_functions {
        repository_layout
    } else {
        app_root.to_owned()
    }
}

/// Loads every function of the app root; any invalid function fails the whole load (the real host would run
/// the others and mark that one in error; here a broken definition should stop a test or a demo loudly).
pub fn load_functions(
    app_root: &Path,
    host: &HostConfig,
    settings: &BTreeMap<String, String>,
) -> Result<Vec<FunctionDefinition>, ConfigError> {
    let dir = functions_dir(app_root);
    let entries = std::fs::read_dir(&dir).map_err(|source| ConfigError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join("function.json").is_file())
        .collect();
    folders.sort();
    let mut functions = Vec::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let json = read_json(&folder.join("function.json"))?;
        if let Some(function) = parse_function_json(&name, &folder, &json, host, settings)? {
            functions.push(function);
        }
    }
    Ok(functions)
}

/// Parses one function.json; `Ok(None)` when the function is disabled.
pub fn parse_function_json(
    name: &str,
    folder: &Path,
    json: &Value,
    host: &HostConfig,
    settings: &BTreeMap<String, String>,
) -> Result<Option<FunctionDefinition>, ConfigError> {
    let fail = |message: String| ConfigError::Function {
        function: name.to_owned(),
        message,
    };
    if !is_valid_function_name(name) {
        return Err(fail(format!("'{name}' is not a valid function name")));
    }
    let object = json
        .as_object()
        .ok_or_else(|| fail("function.json must hold a JSON object".into()))?;
    if is_disabled(name, object, settings) {
        return Ok(None);
    }
    let Some(Value::Array(bindings)) = get_ci(object, "bindings") else {
        return Err(fail("function.json has no 'bindings' array".into()));
    };
    let mut trigger = None;
    for binding in bindings {
        let binding = binding
            .as_object()
            .ok_or_else(|| fail("every binding must be an object".into()))?;
        let binding_type = get_ci(binding, "type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if binding_type.is_empty() {
            return Err(fail("a binding has no 'type'".into()));
        }
        let binding_name = get_ci(binding, "name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !is_valid_binding_name(binding_name) {
            return Err(fail(format!(
                "the binding name '{binding_name}' is invalid; please assign a valid name to the binding"
            )));
        }
        if !binding_type.to_ascii_lowercase().ends_with("trigger") {
            // Output and input bindings: the host would need extensions this simulator does not have.
            return Err(fail(format!(
                "the binding type(s) '{binding_type}' are not registered. Please ensure the type is correct and the binding extension is installed"
            )));
        }
        if trigger.is_some() {
            return Err(fail("multiple trigger bindings defined. A function can only have a single trigger binding".into()));
        }
        let direction = get_ci(binding, "direction")
            .and_then(Value::as_str)
            .unwrap_or("in");
        if !direction.eq_ignore_ascii_case("in") {
            return Err(fail(format!(
                "trigger binding '{binding_name}' must have direction 'in'"
            )));
        }
        let parsed = if binding_type.eq_ignore_ascii_case("timerTrigger") {
            let expression = get_ci(binding, "schedule")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let resolved = resolve_setting_expression(expression, settings).map_err(|setting| {
                ConfigError::UnresolvedSetting {
                    function: name.to_owned(),
                    setting,
                    example: "0 */30 * * * *",
                }
            })?;
            let schedule = CronSchedule::parse(&resolved).map_err(|error| {
                fail(format!(
                    "the schedule expression '{resolved}' was not recognized as a valid cron expression or timespan string ({error})"
                ))
            })?;
            // The timer extension turns the monitor off for schedules that fire more than once a minute.
            let use_monitor = get_ci(binding, "useMonitor")
                .and_then(Value::as_bool)
                .unwrap_or(true)
                && !schedule.fires_more_than_once_a_minute();
            Trigger::Timer {
                schedule_expression: expression.to_owned(),
                schedule,
                run_on_startup: get_ci(binding, "runOnStartup")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                use_monitor,
            }
        } else if binding_type.eq_ignore_ascii_case("eventGridTrigger") {
            if !host.has_extension_bundle {
                return Err(fail(
                    "the binding type(s) 'eventGridTrigger' are not registered: host.json needs the extensionBundle 'Microsoft.Azure.Functions.ExtensionBundle'".into(),
                ));
            }
            Trigger::EventGrid
        } else {
            return Err(fail(format!(
                "the binding type(s) '{binding_type}' are not registered. Please ensure the type is correct and the binding extension is installed (this simulator runs timerTrigger and eventGridTrigger)"
            )));
        };
        trigger = Some((binding_name.to_owned(), parsed));
    }
    let (binding_name, trigger) = trigger.ok_or_else(|| {
        fail("no trigger binding specified. A function must have a trigger input binding".into())
    })?;
    Ok(Some(FunctionDefinition {
        name: name.to_owned(),
        folder: folder.to_owned(),
        binding_name,
        trigger,
    }))
}

fn is_disabled(
    name: &str,
    object: &serde_json::Map<String, Value>,
    settings: &BTreeMap<String, String>,
) -> bool {
    let truthy = |text: &str| text.eq_ignore_ascii_case("true") || text == "1";
    let setting = format!("AzureWebJobs.{name}.Disabled");
    let by_setting = settings
        .iter()
        .any(|(key, value)| key.eq_ignore_ascii_case(&setting) && truthy(value));
    let by_json = match get_ci(object, "disabled") {
        Some(Value::Bool(disabled)) => *disabled,
        Some(Value::String(text)) => truthy(text),
        _ => false,
    };
    by_setting || by_json
}

/// Function names: a letter, then letters, digits, `_` or `-`, up to 128 characters (the host's rule).
pub fn is_valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_valid_binding_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A whole-value `%Setting%` is looked up in the app settings (case-insensitively); anything else is literal.
/// The error is the name of the setting that is not set.
pub fn resolve_setting_expression(
    expression: &str,
    settings: &BTreeMap<String, String>,
) -> Result<String, String> {
    let trimmed = expression.trim();
    match trimmed
        .strip_prefix('%')
        .and_then(|rest| rest.strip_suffix('%'))
    {
        Some(name) if !name.is_empty() && !name.contains('%') => lookup_ci(settings, name)
            .map(str::to_owned)
            .ok_or_else(|| name.to_owned()),
        _ => Ok(trimmed.to_owned()),
    }
}

/// The app settings as the host sees them, from lowest to highest precedence:
/// - `local.settings.json` `Values`, skipped for a name the process environment already sets to a non-empty
///   value (Core Tools' `func start` loads them into its environment that way, warning "Skipping 'X' from local
///   settings as it's already defined in current environment variables");
/// - the process environment (in Azure, app settings *are* environment variables of the host);
/// - `explicit`: the simulator's own `--setting K=V` / `HostOptions::settings`, which win over both.
pub fn compose_settings(
    environment: &BTreeMap<String, String>,
    local_settings: &BTreeMap<String, String>,
    explicit: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut settings = environment.clone();
    for (key, value) in local_settings {
        if key.is_empty() || environment.get(key).is_some_and(|set| !set.is_empty()) {
            continue;
        }
        settings.insert(key.clone(), value.clone());
    }
    settings.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
    settings
}

/// `%VAR%` expansion in custom-handler arguments: unset variables expand to empty.
pub fn expand_environment(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after.find('%') {
            Some(end) if end > 0 => {
                out.push_str(&lookup(&after[..end]).unwrap_or_default());
                rest = &after[end + 1..];
            }
            Some(_) => {
                // `%%` is a literal percent sign's escape in neither Windows nor the host; keep it as written.
                out.push('%');
                rest = after;
            }
            None => {
                out.push('%');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads `local.settings.json` (`{"IsEncrypted": false, "Values": {...}}`). Non-string values are rendered as
/// JSON text, as Core Tools does.
pub fn parse_local_settings(value: &Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let object = value
        .as_object()
        .ok_or_else(|| ConfigError::Settings("local.settings.json must hold an object".into()))?;
    if get_ci(object, "IsEncrypted").and_then(Value::as_bool) == Some(true) {
        return Err(ConfigError::Settings(
            "local.settings.json is encrypted; this simulator reads plain settings only".into(),
        ));
    }
    let mut settings = BTreeMap::new();
    if let Some(values) = get_ci(object, "Values").and_then(Value::as_object) {
        for (key, value) in values {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            settings.insert(key.clone(), text);
        }
    }
    Ok(settings)
}

pub fn get_ci<'a>(object: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

pub fn lookup_ci<'a>(settings: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    settings
        .get(key)
        .or_else(|| {
            settings
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .map(String::as_str)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host() -> HostConfig {
        parse_host_json(&json!({"version": "2.0", "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
            "customHandler": {"description": {"defaultExecutablePath": "handler", "arguments": ["serve"]}}})).unwrap()
    }

    #[test]
    fn host_json_is_read_and_checked() {
        let parsed = host();
        assert_eq!(parsed.function_timeout, Some(DEFAULT_FUNCTION_TIMEOUT));
        assert!(parsed.has_extension_bundle);
        assert_eq!(parsed.custom_handler.unwrap().arguments, vec!["serve"]);
        let custom =
            parse_host_json(&json!({"version": "2.0", "functionTimeout": "00:00:02"})).unwrap();
        assert_eq!(custom.function_timeout, Some(Duration::from_secs(2)));
        assert!(
            parse_host_json(&json!({"functionTimeout": "00:00:02"}))
                .unwrap_err()
                .to_string()
                .contains("version")
        );
        assert!(parse_host_json(&json!({"version": "1.0"})).is_err());
        assert!(parse_host_json(&json!({"version": "2.0", "functionTimeout": "soon"})).is_err());
        assert!(
            parse_host_json(&json!({"version": "2.0", "customHandler": {"description": {}}}))
                .is_err()
        );
        assert_eq!(parse_timespan("-1").unwrap(), None);
        assert!(parse_timespan("18446744073709551615:00:00").is_err());
        assert!(parse_timespan("999999999999999.00:00:00").is_err());
        assert_eq!(
            parse_timespan("1.00:00:00").unwrap(),
            Some(Duration::from_hours(24))
        );
    }

    #[test]
    fn functions_are_validated_like_the_host() {
        let settings = BTreeMap::from([("SCHEDULE".to_owned(), "0 */5 * * * *".to_owned())]);
        let folder = Path::new("/x");
        let timer = json!({"bindings": [{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "%SCHEDULE%"}]});
        let parsed = parse_function_json("Verify", folder, &timer, &host(), &settings)
            .unwrap()
            .unwrap();
        assert_eq!(parsed.binding_name, "timer");
        assert!(matches!(
            parsed.trigger,
            Trigger::Timer {
                use_monitor: true,
                run_on_startup: false,
                ..
            }
        ));
        let every_ten_seconds =
            BTreeMap::from([("SCHEDULE".to_owned(), "*/10 * * * * *".to_owned())]);
        let parsed = parse_function_json("Verify", folder, &timer, &host(), &every_ten_seconds)
            .unwrap()
            .unwrap();
        assert!(
            matches!(
                parsed.trigger,
                Trigger::Timer {
                    use_monitor: false,
                    ..
                }
            ),
            "a sub-minute schedule has no monitor"
        );

        let reject = |json: Value| {
            parse_function_json("F", folder, &json, &host(), &settings)
                .unwrap_err()
                .to_string()
        };
        assert!(reject(json!({})).contains("bindings"));
        assert!(reject(json!({"bindings": []})).contains("no trigger binding"));
        assert!(
            reject(json!({"bindings": [{"name": "q", "type": "queueTrigger", "direction": "in"}]}))
                .contains("not registered")
        );
        let unresolved = reject(
            json!({"bindings": [{"name": "t", "type": "timerTrigger", "schedule": "%MISSING%"}]}),
        );
        assert!(
            unresolved.contains("'%MISSING%' does not resolve")
                && unresolved.contains("export MISSING=")
                && unresolved.contains("local.settings.json")
                && unresolved.contains("--setting MISSING=")
                && !unresolved.contains('\n'),
            "{unresolved}"
        );
        assert!(
            reject(
                json!({"bindings": [{"name": "t", "type": "timerTrigger", "schedule": "0 * * *"}]})
            )
            .contains("cron")
        );
        assert!(
            reject(json!({"bindings": [{"type": "eventGridTrigger"}]})).contains("binding name")
        );
        assert!(reject(json!({"bindings": [{"name": "a", "type": "eventGridTrigger"}, {"name": "b", "type": "eventGridTrigger"}]})).contains("multiple"));
        let no_bundle = parse_host_json(&json!({"version": "2.0"})).unwrap();
        let event =
            json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]});
        assert!(parse_function_json("E", folder, &event, &no_bundle, &settings).is_err());
        assert!(parse_function_json("9bad", folder, &event, &host(), &settings).is_err());
        let disabled = BTreeMap::from([("AzureWebJobs.E.Disabled".to_owned(), "true".to_owned())]);
        assert_eq!(
            parse_function_json("E", folder, &event, &host(), &disabled).unwrap(),
            None
        );
    }

    #[test]
    fn environment_expansion() {
        let lookup = |name: &str| (name == "HOME").then(|| "/home/x".to_owned());
        assert_eq!(expand_environment("%HOME%/bin", &lookup), "/home/x/bin");
        assert_eq!(expand_environment("a%UNSET%b", &lookup), "ab");
        assert_eq!(expand_environment("100%", &lookup), "100%");
        assert_eq!(expand_environment("serve", &lookup), "serve");
    }

    #[test]
    fn settings_precedence_follows_core_tools() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let environment = map(&[("FROM_ENV", "env"), ("BOTH", "env"), ("EMPTY", "")]);
        let local = map(&[
            ("FROM_FILE", "file"),
            ("BOTH", "file"),
            ("EMPTY", "file"),
            ("", "nameless"),
        ]);
        let explicit = map(&[("BOTH", "explicit-loses-nothing"), ("ONLY_EXPLICIT", "x")]);
        let composed = compose_settings(&environment, &local, &BTreeMap::new());
        assert_eq!(composed["FROM_ENV"], "env");
        assert_eq!(composed["FROM_FILE"], "file");
        assert_eq!(composed["BOTH"], "env", "a set environment variable wins");
        assert_eq!(composed["EMPTY"], "file", "an empty one does not");
        assert!(!composed.contains_key(""));
        let composed = compose_settings(&environment, &local, &explicit);
        assert_eq!(composed["BOTH"], "explicit-loses-nothing");
        assert_eq!(composed["ONLY_EXPLICIT"], "x");
    }

    #[test]
    fn local_settings() {
        let settings =
            parse_local_settings(&json!({"IsEncrypted": false, "Values": {"A": "1", "B": true}}))
                .unwrap();
        assert_eq!(settings["A"], "1");
        assert_eq!(settings["B"], "true");
        assert!(parse_local_settings(&json!({"IsEncrypted": true, "Values": {}})).is_err());
    }
}
