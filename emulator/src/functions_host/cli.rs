//! `azure-emulator functions-host --app-root DIR [--port P] -- <handler command…>`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{FunctionsHost, HostError, HostOptions, Trigger};

#[derive(Debug, Clone, clap::Args)]
pub struct FunctionsHostArgs {
    /// The function app root (host.json; function folders beside it or under function-app/).
    #[arg(long)]
    pub app_root: PathBuf,
    /// Port of the host endpoint (0 = a free one).
    #[arg(long, default_value_t = 7071)]
    pub port: u16,
    /// App settings in local.settings.json form (default: APP_ROOT/local.settings.json when present); the
    /// process environment wins over its Values, as with Core Tools.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Extra app settings, KEY=VALUE (repeatable); they win over the environment and the settings file.
    #[arg(long = "setting", value_parser = parse_key_value)]
    pub extra_settings: Vec<(String, String)>,
    /// Do not fire timers on their schedule (the admin API still runs them).
    #[arg(long)]
    pub no_timers: bool,
    /// The handler command; overrides host.json's executable and arguments.
    #[arg(last = true)]
    pub handler: Vec<String>,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))
}

impl FunctionsHostArgs {
    pub fn host_options(&self) -> Result<HostOptions, HostError> {
        let mut options = HostOptions::new(&self.app_root);
        options.port = self.port;
        options.handler_command = (!self.handler.is_empty()).then(|| self.handler.clone());
        options.run_timers = !self.no_timers;
        options.local_settings_file.clone_from(&self.settings);
        options.settings = self
            .extra_settings
            .iter()
            .cloned()
            .collect::<BTreeMap<_, _>>();
        Ok(options)
    }
}

/// Runs the host until Ctrl-C or until it gives up on the handler.
pub async fn run(args: FunctionsHostArgs) -> Result<(), HostError> {
    init_logging();
    // Listen for SIGTERM before anything is printed: a caller that reads the output and then stops us must
    // reach the graceful path (which stops the handler too), not the default action.
    let stop = termination();
    let host = FunctionsHost::start(args.host_options()?).await?;
    println!("Functions host simulator listening on {}", host.base_url());
    for function in host.functions() {
        match &function.trigger {
            Trigger::EventGrid => println!(
                "  {}: eventGridTrigger  {}",
                function.name,
                host.eventgrid_webhook_url(&function.name)
            ),
            Trigger::Timer { schedule, .. } => println!(
                "  {}: timerTrigger ({schedule})  run now: curl -X POST {}/admin/functions/{} -d '{{}}'",
                function.name,
                host.base_url(),
                function.name
            ),
        }
    }
    let result = tokio::select! {
        () = stop => Ok(()),
        reason = host.wait_stopped() => Err(HostError::Stopped(reason)),
    };
    host.shutdown().await;
    result
}

/// `azure-emulator up --app-root DIR -- <handler…>`: the ARM emulator, the Event Grid publisher subscribed (as
/// infra configures it) to every Event Grid function of the app, and the Functions host simulator, together.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub emulator: crate::cli::ServeArgs,
    /// The function app root (host.json; function folders beside it or under function-app/).
    #[arg(long)]
    pub app_root: PathBuf,
    /// Port of the Functions host simulator (0 = a free one).
    #[arg(long, default_value_t = 7071)]
    pub host_port: u16,
    /// App settings in local.settings.json form (default: APP_ROOT/local.settings.json when present); the
    /// process environment wins over its Values, as with Core Tools.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Extra app settings, KEY=VALUE (repeatable); they win over the environment and the settings file.
    #[arg(long = "setting", value_parser = parse_key_value)]
    pub extra_settings: Vec<(String, String)>,
    /// Do not fire timers on their schedule (the admin API still runs them).
    #[arg(long)]
    pub no_timers: bool,
    /// Multiplies Event Grid's retry schedule and event time-to-live (1 = Azure's timings).
    #[arg(long, default_value_t = 1.0)]
    pub eg_retry_time_scale: f64,
    /// Event Grid delivery timeout in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub eg_delivery_timeout_secs: f64,
    /// Probability (0..1) that Event Grid delivers an event twice.
    #[arg(long, default_value_t = 0.0)]
    pub eg_duplicate_rate: f64,
    /// Let events overtake each other (random first-delivery delay up to 200 ms).
    #[arg(long)]
    pub eg_reorder: bool,
    /// Seed of duplicate and reorder decisions.
    #[arg(long, default_value_t = 0)]
    pub eg_seed: u64,
    /// Port of the Event Grid admin endpoint (/_emulator/deadletter, /_emulator/deliveries); 0 = a free one.
    #[arg(long, default_value_t = 0)]
    pub eg_admin_port: u16,
    /// The handler command; overrides host.json's executable and arguments.
    #[arg(last = true)]
    pub handler: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Emulator(#[from] crate::EmulatorError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Publisher(#[from] crate::eventgrid::PublisherError),
    #[error("cannot write to stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs everything until Ctrl-C or until the host gives up on the handler.
pub async fn run_up(args: UpArgs) -> Result<(), UpError> {
    use crate::eventgrid::{EventSubscription, Publisher, PublisherConfig};
    use std::io::Write as _;

    init_logging();
    let stop = termination();

    if !(0.0..=1.0).contains(&args.eg_duplicate_rate) {
        return Err(UpError::Config(
            "--eg-duplicate-rate must be between 0 and 1".into(),
        ));
    }
    if !(args.eg_retry_time_scale.is_finite() && args.eg_retry_time_scale > 0.0) {
        return Err(UpError::Config(
            "--eg-retry-time-scale must be a positive number".into(),
        ));
    }
    let timeout =
        std::time::Duration::try_from_secs_f64(args.eg_delivery_timeout_secs).map_err(|_| {
            UpError::Config("--eg-delivery-timeout-secs must be a positive number".into())
        })?;
    let config = args.emulator.config().map_err(UpError::Config)?;
    let emulator = crate::Emulator::start(config).await?;
    let publisher = Publisher::start(
        &emulator.bus(),
        PublisherConfig {
            retry_time_scale: args.eg_retry_time_scale,
            delivery_timeout: timeout,
            duplicate_rate: args.eg_duplicate_rate,
            reorder: args.eg_reorder,
            seed: args.eg_seed,
            ..PublisherConfig::default()
        },
    );
    let admin = publisher.serve_admin(args.eg_admin_port).await?;

    let host_args = FunctionsHostArgs {
        app_root: args.app_root.clone(),
        port: args.host_port,
        settings: args.settings.clone(),
        extra_settings: args.extra_settings.clone(),
        no_timers: args.no_timers,
        handler: args.handler.clone(),
    };
    let mut options = host_args.host_options()?;
    // The handler reaches the emulated ARM, Graph and token endpoints through these; explicit settings win.
    for (key, value) in emulator.env() {
        options.settings.entry(key).or_insert(value);
    }
    let host = FunctionsHost::start(options).await?;
    for function in host
        .functions()
        .iter()
        .filter(|f| matches!(f.trigger, Trigger::EventGrid))
    {
        let name: String = function
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        publisher
            .subscribe(EventSubscription::as_infra_configures(
                name,
                host.eventgrid_webhook_url(&function.name),
            ))
            .await?;
    }

    let mut out = std::io::stdout().lock();
    for (key, value) in emulator.env() {
        writeln!(out, "export {key}={value}")?;
    }
    writeln!(out, "# Functions host simulator: {}", host.base_url())?;
    for function in host.functions() {
        writeln!(
            out,
            "#   {} ({}): POST {}/admin/functions/{} runs it now",
            function.name,
            function.trigger_type(),
            host.base_url(),
            function.name
        )?;
    }
    writeln!(
        out,
        "# Event Grid dead letters: http://{admin}/_emulator/deadletter (deliveries: /_emulator/deliveries)"
    )?;
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);

    let result = tokio::select! {
        () = stop => Ok(()),
        reason = host.wait_stopped() => Err(UpError::Host(HostError::Stopped(reason))),
    };
    host.shutdown().await;
    drop(publisher);
    emulator.shutdown().await;
    result
}

/// Ctrl-C or SIGTERM: both must stop the handler process too, which only a graceful shutdown does. The signal
/// handlers are installed when this is called, not when the future is first polled.
fn termination() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::terminate())
            .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
            .ok()
    };
    async move {
        #[cfg(unix)]
        if let Some((mut term, mut interrupt)) = listeners {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The host's log (invocations, the handler's relayed stdout and stderr) goes to stderr, so stdout stays the
/// machine-readable `export` lines. `RUST_LOG` filters it (default `info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A subscriber installed by the caller wins.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
