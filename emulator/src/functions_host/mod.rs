//! The Functions host simulator: reproduces what the Azure Functions v4 host does with a custom handler
//! (`../shared/docs/functions-host.md`): reads `host.json` and the function definitions, starts and supervises
//! the handler process, fires timers on their NCRONTAB schedule, exposes the Event Grid webhook and the admin
//! API, and sends every invocation in the host's wire format.

pub mod cli;
pub mod config;
pub mod ncrontab;
mod process;
mod server;
mod timers;
pub mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{ConfigError, FunctionDefinition, Trigger};
pub use wire::ScheduleStatus;

/// How to run the host. `HostOptions::new(app_root)` gives the real host's defaults.
#[derive(Clone)]
pub struct HostOptions {
    pub app_root: PathBuf,
    /// Port of the host's own HTTP endpoint (Event Grid webhook, admin API); 0 picks a free one.
    pub port: u16,
    /// Program and arguments; overrides host.json's `defaultExecutablePath` and `arguments`.
    pub handler_command: Option<Vec<String>>,
    /// Explicit app settings (`--setting K=V`); they win over the environment and local.settings.json and
    /// reach the handler as environment variables.
    pub settings: BTreeMap<String, String>,
    /// The process environment the host runs in: `HostOptions::new` takes this process's environment, as the
    /// real host reads its app settings from its environment. Tests may change it instead of the real one; the
    /// handler is started with it (plus the app settings).
    pub environment: BTreeMap<String, String>,
    /// The `local.settings.json` to read (`None`: `APP_ROOT/local.settings.json` when present). Its `Values`
    /// apply where the environment does not already set a non-empty value, as with Core Tools.
    pub local_settings_file: Option<PathBuf>,
    /// Overrides host.json's `functionTimeout`; `Some(None)` means unlimited.
    pub function_timeout: Option<Option<Duration>>,
    /// How long the handler may take to answer its first `GET /` (30 s in the real host).
    pub startup_timeout: Duration,
    /// Readiness polling interval (25 ms in the real host).
    pub readiness_interval: Duration,
    /// The host shuts down after this many handler crashes within `crash_window` (3 in 30 minutes).
    pub max_crashes: usize,
    pub crash_window: Duration,
    /// Fire timers on their schedule (the admin API works either way).
    pub run_timers: bool,
    /// When set, each timer's `ScheduleStatus` is kept in `{dir}/{function}.status.json` across host runs (the
    /// real host keeps it in storage), so a run missed while the host was down fires at start with
    /// `IsPastDue: true`.
    pub schedule_state_dir: Option<PathBuf>,
}

impl HostOptions {
    pub fn new(app_root: impl Into<PathBuf>) -> Self {
        Self {
            app_root: app_root.into(),
            port: 0,
            handler_command: None,
            settings: BTreeMap::new(),
            environment: process_environment(),
            local_settings_file: None,
            function_timeout: None,
            startup_timeout: Duration::from_secs(30),
            readiness_interval: Duration::from_millis(25),
            max_crashes: 3,
            crash_window: Duration::from_mins(30),
            run_timers: true,
            schedule_state_dir: None,
        }
    }
}

/// This process's environment; variables whose name or value is not UTF-8 are left out (the handler still
/// inherits them).
pub fn process_environment() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect()
}

impl fmt::Debug for HostOptions {
    // App settings hold secrets (connection strings, keys): print only their names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostOptions")
            .field("app_root", &self.app_root)
            .field("port", &self.port)
            .field("handler_command", &self.handler_command)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .field("local_settings_file", &self.local_settings_file)
            .field("function_timeout", &self.function_timeout)
            .field("startup_timeout", &self.startup_timeout)
            .field("max_crashes", &self.max_crashes)
            .field("crash_window", &self.crash_window)
            .field("run_timers", &self.run_timers)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "no handler to start: host.json has no customHandler.description.defaultExecutablePath and no handler command was given"
    )]
    NoHandler,
    #[error("FUNCTIONS_WORKER_RUNTIME is '{0}'; a custom handler needs 'custom'")]
    WorkerRuntime(String),
    #[error("cannot bind the host endpoint on 127.0.0.1:{port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("the host stopped: {0}")]
    Stopped(String),
    #[error("no function named '{0}'")]
    UnknownFunction(String),
    #[error("function '{function}' has a {actual}, not a {expected}")]
    WrongTrigger {
        function: String,
        expected: &'static str,
        actual: &'static str,
    },
}

/// The outcome of one invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum InvocationStatus {
    Succeeded,
    Failed {
        reason: String,
    },
    /// `functionTimeout` passed (a slow handler or an empty 2xx body); the handler was killed and restarted.
    TimedOut,
}

/// One invocation as the host saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationRecord {
    pub function: String,
    pub invocation_id: String,
    pub trigger: &'static str,
    pub status: InvocationStatus,
    /// The handler's HTTP status, when it answered.
    pub http_status: Option<u16>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub duration: Duration,
    /// `Logs` of the answer, relayed as log lines of the invocation (discarded on a non-2xx answer).
    pub logs: Vec<String>,
    pub return_value: Option<Value>,
    pub outputs: Map<String, Value>,
    /// The body that was sent (`{"Data":…, "Metadata":…}`).
    pub request: Value,
}

impl InvocationRecord {
    pub fn succeeded(&self) -> bool {
        self.status == InvocationStatus::Succeeded
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line the handler wrote (stdout is logged at Information, stderr at Error, as the host does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandlerOutputLine {
    pub stream: OutputStream,
    pub line: String,
    /// Which start of the handler wrote it (1 = the first).
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WorkerState {
    Starting,
    Ready { port: u16, generation: u64 },
    Stopped { reason: String },
}

/// What the supervisor runs each time it (re)starts the handler.
#[derive(Clone)]
struct LaunchSpec {
    program: PathBuf,
    args: Vec<String>,
    working_directory: PathBuf,
    /// Variables of this process the host's environment does not have.
    env_remove: Vec<String>,
    env: Vec<(String, String)>,
}

impl fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("working_directory", &self.working_directory)
            .finish_non_exhaustive()
    }
}

const MAX_KEPT_OUTPUT_LINES: usize = 20_000;

/// The host keys, generated at start (the real host keeps them in its secrets store). Never printed by `Debug`.
#[derive(Clone)]
pub(crate) struct HostKeys {
    /// `_master`: admin level, accepted everywhere.
    pub(crate) master: String,
    /// The `eventgrid_extension` system key of `/runtime/webhooks/eventgrid`.
    pub(crate) eventgrid_extension: String,
}

impl HostKeys {
    fn generate() -> Self {
        use base64::Engine as _;
        let key =
            || base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        Self {
            master: key(),
            eventgrid_extension: key(),
        }
    }

    /// Whether `presented` opens the webhook of `extension` (the extension's system key, or the master key).
    pub(crate) fn allows_webhook(&self, extension: &str, presented: &str) -> bool {
        let matches =
            |key: &str| crate::crypto::constant_time_eq(key.as_bytes(), presented.as_bytes());
        matches(&self.master)
            || (extension.eq_ignore_ascii_case("eventgrid") && matches(&self.eventgrid_extension))
    }
}

impl fmt::Debug for HostKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HostKeys(..)")
    }
}

struct Shared {
    functions: Vec<FunctionDefinition>,
    function_timeout: Option<Duration>,
    options: HostOptions,
    worker: watch::Sender<WorkerState>,
    /// Asks the supervisor to kill a given generation of the handler (after a `functionTimeout`).
    kill: mpsc::UnboundedSender<u64>,
    invocations: Mutex<Vec<InvocationRecord>>,
    output: Mutex<Vec<HandlerOutputLine>>,
    restarts: AtomicU32,
    schedule_status: Mutex<BTreeMap<String, ScheduleStatus>>,
    client: reqwest::Client,
    started: Instant,
    keys: HostKeys,
}

/// Resolves once the shutdown flag is set (or its sender is gone), without holding the watch guard.
async fn shutdown_signalled(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Poisoning only means another thread panicked while holding the lock; the data is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// The admin API and the library look functions up case-insensitively, as the host's function lookup does.
    fn function(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
    }

    /// The Event Grid extension keeps its listeners in a case-sensitive dictionary: only the exact name matches.
    fn eventgrid_function(&self, name: &str) -> Option<&FunctionDefinition> {
        self.functions
            .iter()
            .find(|f| f.name == name && matches!(f.trigger, Trigger::EventGrid))
    }

    fn push_output(&self, line: HandlerOutputLine) {
        let mut output = lock(&self.output);
        if output.len() >= MAX_KEPT_OUTPUT_LINES {
            output.remove(0);
        }
        output.push(line);
    }

    /// Waits until the handler is ready (or the host stopped).
    async fn ready_worker(&self) -> Result<(u16, u64), String> {
        let mut state = self.worker.subscribe();
        let wait = state.wait_for(|state| !matches!(state, WorkerState::Starting));
        // Restarts take at most the startup timeout each; after that something is wrong.
        let limit = self.options.startup_timeout * 2 + Duration::from_secs(5);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(state)) => match &*state {
                WorkerState::Ready { port, generation } => Ok((*port, *generation)),
                WorkerState::Stopped { reason } => Err(format!("host stopped: {reason}")),
                WorkerState::Starting => Err("handler not ready".to_owned()),
            },
            Ok(Err(_)) => Err("host stopped".to_owned()),
            Err(_) => Err("handler did not become ready".to_owned()),
        }
    }

    /// Sends one invocation and records it.
    async fn invoke(
        &self,
        function: &FunctionDefinition,
        value: Value,
        metadata: Map<String, Value>,
    ) -> InvocationRecord {
        let invocation_id = uuid::Uuid::new_v4();
        let started_at = OffsetDateTime::now_utc();
        let start = Instant::now();
        let sys = wire::sys_metadata(&function.name, started_at, uuid::Uuid::new_v4());
        let request = wire::envelope(&function.binding_name, value, metadata, sys);
        let mut record = InvocationRecord {
            function: function.name.clone(),
            invocation_id: invocation_id.to_string(),
            trigger: function.trigger_type(),
            status: InvocationStatus::Succeeded,
            http_status: None,
            started_at,
            duration: Duration::ZERO,
            logs: Vec::new(),
            return_value: None,
            outputs: Map::new(),
            request,
        };
        tracing::info!(function = %function.name, invocation_id = %invocation_id, "Executing 'Functions.{}'", function.name);
        record.status = match self.ready_worker().await {
            Err(reason) => InvocationStatus::Failed { reason },
            Ok((port, generation)) => self.send(&mut record, port, generation, start).await,
        };
        record.duration = start.elapsed();
        match &record.status {
            InvocationStatus::Succeeded => {
                tracing::info!(function = %record.function, invocation_id = %record.invocation_id, duration_ms = record.duration.as_millis(), "Executed 'Functions.{}' (Succeeded)", record.function);
            }
            InvocationStatus::Failed { reason } => {
                tracing::error!(function = %record.function, invocation_id = %record.invocation_id, %reason, "Executed 'Functions.{}' (Failed)", record.function);
            }
            InvocationStatus::TimedOut => {
                tracing::error!(function = %record.function, invocation_id = %record.invocation_id, "Timeout value of {:?} exceeded by function 'Functions.{}'", self.function_timeout, record.function);
            }
        }
        lock(&self.invocations).push(record.clone());
        record
    }

    async fn send(
        &self,
        record: &mut InvocationRecord,
        port: u16,
        generation: u64,
        start: Instant,
    ) -> InvocationStatus {
        let body = match serde_json::to_vec(&record.request) {
            Ok(body) => body,
            Err(error) => {
                return InvocationStatus::Failed {
                    reason: format!("cannot encode the request: {error}"),
                };
            }
        };
        // A stream body is sent with `Transfer-Encoding: chunked` and no Content-Length, as the host does.
        let chunk =
            futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(body)) });
        let trace = wire::traceparent(rand::random(), rand::random::<u64>().max(1));
        let request = self
            .client
            .post(format!("http://127.0.0.1:{port}/{}", record.function))
            .header("X-Azure-Functions-InvocationId", &record.invocation_id)
            .header("X-Azure-Functions-HostVersion", wire::HOST_VERSION)
            .header(http::header::USER_AGENT, wire::user_agent())
            .header(
                http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .header("traceparent", trace)
            .body(reqwest::Body::wrap_stream(chunk));
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|error| format!("request to the handler failed: {error}"))?;
            let status = response.status().as_u16();
            let body = response
                .bytes()
                .await
                .map_err(|error| format!("reading the handler's answer failed: {error}"))?;
            Ok::<_, String>((status, body))
        };
        let deadline = self
            .function_timeout
            // A timeout too large to represent is no timeout at all.
            .and_then(|timeout| tokio::time::Instant::from_std(start).checked_add(timeout));
        let outcome = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, exchange).await.ok(),
            None => Some(exchange.await),
        };
        let Some(outcome) = outcome else {
            self.kill_for_timeout(generation);
            return InvocationStatus::TimedOut;
        };
        let (status, body) = match outcome {
            Ok(answer) => answer,
            Err(reason) => return InvocationStatus::Failed { reason },
        };
        record.http_status = Some(status);
        match wire::read_answer(status, &body) {
            wire::HandlerAnswer::Succeeded {
                logs,
                outputs,
                return_value,
            } => {
                for line in &logs {
                    tracing::info!(function = %record.function, invocation_id = %record.invocation_id, "{line}");
                }
                record.logs = logs;
                record.outputs = outputs;
                record.return_value = return_value;
                InvocationStatus::Succeeded
            }
            wire::HandlerAnswer::Failed { status } => InvocationStatus::Failed {
                reason: format!("the handler answered HTTP {status}"),
            },
            wire::HandlerAnswer::Unreadable { reason } => InvocationStatus::Failed {
                reason: format!("the handler's answer is unreadable: {reason}"),
            },
            wire::HandlerAnswer::EmptyBody => {
                // The real host waits for a body that never comes, until functionTimeout.
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => futures::future::pending::<()>().await,
                }
                self.kill_for_timeout(generation);
                InvocationStatus::TimedOut
            }
        }
    }

    fn kill_for_timeout(&self, generation: u64) {
        // The supervisor may be gone when the host is shutting down; nothing left to kill then.
        let _ = self.kill.send(generation);
    }
}

/// A running host simulator. Dropping it stops the handler process and the host's endpoint.
pub struct RunningHost {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RunningHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningHost")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Entry point: `FunctionsHost::start(options)`.
pub struct FunctionsHost;

impl FunctionsHost {
    /// Loads the app, starts the host endpoint and the handler, and returns once the handler answered its first
    /// readiness probe (or fails when the host gave up on it).
    pub async fn start(options: HostOptions) -> Result<RunningHost, HostError> {
        let app_root =
            std::path::absolute(&options.app_root).unwrap_or_else(|_| options.app_root.clone());
        let host_config =
            config::parse_host_json(&config::read_json(&app_root.join("host.json"))?)?;
        let settings_file = options
            .local_settings_file
            .clone()
            .unwrap_or_else(|| app_root.join("local.settings.json"));
        let local_settings = if options.local_settings_file.is_some() || settings_file.is_file() {
            config::parse_local_settings(&config::read_json(&settings_file)?)?
        } else {
            BTreeMap::new()
        };
        let settings =
            config::compose_settings(&options.environment, &local_settings, &options.settings);
        match config::lookup_ci(&settings, "FUNCTIONS_WORKER_RUNTIME") {
            Some(runtime) if !runtime.eq_ignore_ascii_case("custom") => {
                return Err(HostError::WorkerRuntime(runtime.to_owned()));
            }
            _ => {}
        }
        let functions = config::load_functions(&app_root, &host_config, &settings)?;
        if let Some(zone) = config::lookup_ci(&settings, "WEBSITE_TIME_ZONE")
            .filter(|zone| !zone.is_empty() && !zone.eq_ignore_ascii_case("UTC"))
        {
            tracing::warn!(%zone, "WEBSITE_TIME_ZONE is not supported by the simulator: timers run in UTC");
        }
        let launch = process::launch_spec(
            &app_root,
            &host_config,
            options.handler_command.as_deref(),
            &settings,
            process_environment()
                .into_keys()
                .filter(|name| !options.environment.contains_key(name))
                .collect(),
        )?;
        let function_timeout = options
            .function_timeout
            .unwrap_or(host_config.function_timeout);

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .map_err(|source| HostError::Bind {
                port: options.port,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| HostError::Bind {
            port: options.port,
            source,
        })?;

        let (worker, _) = watch::channel(WorkerState::Starting);
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let client = reqwest::Client::builder()
            .no_proxy()
            // The host's HttpClient asks for no compression: no `Accept-Encoding` at all.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            // The real host's HTTP timeout is functionTimeout + 1 minute; functionTimeout is enforced separately.
            .timeout(
                function_timeout.map_or(Duration::from_hours(365 * 24), |t| {
                    t.saturating_add(Duration::from_mins(1))
                }),
            )
            .build()
            .map_err(|error| HostError::Stopped(format!("cannot build an HTTP client: {error}")))?;
        let shared = Arc::new(Shared {
            functions,
            function_timeout,
            options: HostOptions {
                app_root,
                ..options
            },
            worker,
            kill: kill_tx,
            invocations: Mutex::new(Vec::new()),
            output: Mutex::new(Vec::new()),
            restarts: AtomicU32::new(0),
            schedule_status: Mutex::new(BTreeMap::new()),
            client,
            started: Instant::now(),
            keys: HostKeys::generate(),
        });
        let tasks = vec![
            tokio::spawn(server::serve(
                listener,
                Arc::clone(&shared),
                shutdown_rx.clone(),
            )),
            tokio::spawn(process::supervise(
                Arc::clone(&shared),
                launch,
                kill_rx,
                shutdown_rx.clone(),
            )),
        ];
        let host = RunningHost {
            shared,
            address,
            shutdown,
            tasks,
        };

        host.shared
            .ready_worker()
            .await
            .map_err(HostError::Stopped)?;
        let mut host = host;
        let timer_tasks = timers::start(&host.shared, &shutdown_rx);
        host.tasks.extend(timer_tasks);
        Ok(host)
    }
}

impl RunningHost {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The Event Grid webhook of one function with its key, as Azure builds an `AzureFunction` destination's
    /// URL: `/runtime/webhooks/eventgrid?functionName=X&code={eventgrid_extension key}`. The URL holds a
    /// secret: do not log it.
    pub fn eventgrid_webhook_url(&self, function: &str) -> String {
        format!(
            "{}/runtime/webhooks/eventgrid?functionName={}&code={}",
            self.base_url(),
            url::form_urlencoded::byte_serialize(function.as_bytes()).collect::<String>(),
            self.shared.keys.eventgrid_extension
        )
    }

    /// The `eventgrid_extension` system key (generated at start); `/runtime/webhooks/eventgrid` requires it or
    /// the master key, as `code=` or `x-functions-key`.
    pub fn eventgrid_extension_key(&self) -> &str {
        &self.shared.keys.eventgrid_extension
    }

    /// The master (admin) key (generated at start); it opens every webhook too.
    pub fn master_key(&self) -> &str {
        &self.shared.keys.master
    }

    pub fn functions(&self) -> &[FunctionDefinition] {
        &self.shared.functions
    }

    /// Runs a timer function now, as `POST /admin/functions/{name}` does, and waits for its outcome.
    pub async fn invoke_timer(&self, name: &str) -> Result<InvocationRecord, HostError> {
        let function = self
            .shared
            .function(name)
            .ok_or_else(|| HostError::UnknownFunction(name.to_owned()))?;
        if !matches!(function.trigger, Trigger::Timer { .. }) {
            return Err(HostError::WrongTrigger {
                function: function.name.clone(),
                expected: "timerTrigger",
                actual: function.trigger_type(),
            });
        }
        Ok(timers::invoke_now(&self.shared, function).await)
    }

    /// Invokes an Event Grid function with one event, as the webhook does for each array element.
    pub async fn invoke_event(
        &self,
        name: &str,
        event: Value,
    ) -> Result<InvocationRecord, HostError> {
        let function = self
            .shared
            .function(name)
            .ok_or_else(|| HostError::UnknownFunction(name.to_owned()))?;
        if !matches!(function.trigger, Trigger::EventGrid) {
            return Err(HostError::WrongTrigger {
                function: function.name.clone(),
                expected: "eventGridTrigger",
                actual: function.trigger_type(),
            });
        }
        let metadata = wire::event_grid_metadata(&event);
        Ok(self.shared.invoke(function, event, metadata).await)
    }

    /// Every invocation so far, oldest first.
    pub fn invocations(&self) -> Vec<InvocationRecord> {
        lock(&self.shared.invocations).clone()
    }

    /// The handler's stdout and stderr lines so far.
    pub fn handler_output(&self) -> Vec<HandlerOutputLine> {
        lock(&self.shared.output).clone()
    }

    /// How many times the handler was restarted (after a crash or a `functionTimeout`).
    pub fn restarts(&self) -> u32 {
        self.shared.restarts.load(Ordering::SeqCst)
    }

    /// `None` while running; the reason once the host gave up (e.g. three crashes within 30 minutes).
    pub fn stopped_reason(&self) -> Option<String> {
        match &*self.shared.worker.borrow() {
            WorkerState::Stopped { reason } => Some(reason.clone()),
            _ => None,
        }
    }

    /// Waits until the handler is ready again (e.g. after a restart).
    pub async fn wait_ready(&self) -> Result<(), HostError> {
        self.shared
            .ready_worker()
            .await
            .map(|_| ())
            .map_err(HostError::Stopped)
    }

    /// Waits until the host has stopped by itself, returning the reason.
    pub async fn wait_stopped(&self) -> String {
        let mut state = self.shared.worker.subscribe();
        match state
            .wait_for(|state| matches!(state, WorkerState::Stopped { .. }))
            .await
        {
            Ok(state) => match &*state {
                WorkerState::Stopped { reason } => reason.clone(),
                _ => String::new(),
            },
            Err(_) => "host dropped".to_owned(),
        }
    }

    /// The current `ScheduleStatus` of a timer (`None` before it has one or when `useMonitor` is false).
    pub fn schedule_status(&self, function: &str) -> Option<ScheduleStatus> {
        lock(&self.shared.schedule_status).get(function).copied()
    }

    /// Stops the endpoint, timers and handler, and waits for the handler process to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for task in std::mem::take(&mut self.tasks) {
            // Each task ends on the shutdown signal; one that does not within a second is aborted.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for task in &self.tasks {
            // Aborting the supervisor drops the child process handle, which kills it (`kill_on_drop`).
            task.abort();
        }
    }
}
