//! The `acr-autoattach` binary: the Functions custom handler (`serve`) and operator commands.

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use acr_autoattach::bootstrap::{self, Settings};
use acr_autoattach::config::{ConfigError, Env, ProcessEnv};
use acr_autoattach::host;
use acr_autoattach::telemetry::{self, ProcessInfo};

/// Attach Azure Container Registries to AKS clusters by opt-in tags, verify continuously, repair drift.
///
/// Registries opt in with a tag (default `acr-autoattach`) whose value selects clusters (`*`, or a label
/// selector over cluster tags such as `env=prod`). Each selected cluster's kubelet identity gets AcrPull
/// (or Container Registry Repository Reader on ABAC registries) on the registry.
#[derive(Debug, Parser)]
#[command(name = "acr-autoattach", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole mission on loopback: the Azure emulator, Event Grid and the Functions host start in this
    /// process, the host launches this binary as its handler, an estate of 2 subscriptions, 3 registries and 6
    /// clusters is built through ARM PUTs, events flow by themselves, and every (cluster, registry) pair is
    /// read back and compared with what it must be. Exit 0 only when every pair ended as expected.
    Demo {
        /// Print one JSON document (`pairs`, `summary`) instead of the table; progress goes to stderr.
        #[arg(long)]
        json: bool,
    },
    /// Run as the Azure Functions custom handler: an HTTP server on 127.0.0.1 that the Functions host
    /// invokes for OnResourceEvent (Event Grid) and VerifyAttachments (timer).
    ///
    /// The port comes from FUNCTIONS_CUSTOMHANDLER_PORT (set by the host) unless --port is given.
    /// Configuration comes from app settings (environment); `acr-autoattach config` shows it.
    Serve {
        /// Port to listen on (default: $FUNCTIONS_CUSTOMHANDLER_PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Print the effective configuration (from the environment), validated, with secrets redacted.
    Config,
    /// Audit every (cluster, registry) pair in scope and report; never writes.
    ///
    /// Same engine as the timer, in audit mode. Exit 0 when every pair is compliant, 1 when some are not (or a
    /// selector is invalid, or the run stopped at its deadline), 2 on error. `--output html FILE` writes one
    /// self-contained page (clusters × registries matrix). Identity: the `az login` session, or the managed
    /// identity when IDENTITY_ENDPOINT is set (e.g. `eval "$(azure-emulator serve)"`); endpoints and tag come
    /// from AUTOATTACH_* settings.
    Verify(acr_autoattach::operator::VerifyArgs),
    /// Show what would be created and removed in scope, then do it (unless --dry-run), then show the results.
    ///
    /// Always enforce mode; removes owned assignments that are no longer wanted only with detach
    /// (AUTOATTACH_DETACH or --detach), never an assignment without the ownership mark. Exit 0 when everything
    /// ends compliant (dry run: nothing to do), 1 otherwise, 2 on error.
    Reconcile(acr_autoattach::operator::ReconcileArgs),
    /// Explain one (cluster, registry) pair step by step; reads only.
    ///
    /// The registry's selector evaluated against the cluster's tags, location, subscription and resource group;
    /// the cluster's opt-out; tenants; the role the registry's mode needs and why; the principal's assignments at
    /// registry, resource-group and subscription scope and whether each covers pull; the verdict. Exit 0 when the
    /// pair is in order, 1 when something is to do, 2 on error.
    Explain(acr_autoattach::operator::ExplainArgs),
}

/// Exit code for a configuration or usage error.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { port } => serve(port),
        Command::Demo { json } => demo(json),
        Command::Verify(args) => acr_autoattach::operator::verify(&args),
        Command::Reconcile(args) => acr_autoattach::operator::reconcile(&args),
        Command::Explain(args) => acr_autoattach::operator::explain(&args),
        Command::Config => match load_settings(&ProcessEnv) {
            Ok(settings) => {
                for (key, value) in settings.config.describe() {
                    println!("{key}={value}");
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

fn load_settings(env: &dyn Env) -> Result<Settings, ExitCode> {
    Settings::from_env(env).map_err(|e: ConfigError| {
        eprintln!("acr-autoattach: configuration error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn serve_port(flag: Option<u16>, env: &dyn Env) -> Result<u16, ConfigError> {
    if let Some(p) = flag {
        return Ok(p);
    }
    for key in ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"] {
        if let Some(raw) = env.var(key).filter(|v| !v.trim().is_empty()) {
            return raw
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or(ConfigError {
                    setting: "FUNCTIONS_CUSTOMHANDLER_PORT",
                    reason: format!("`{raw}` is not a port number"),
                });
        }
    }
    Err(ConfigError {
        setting: "FUNCTIONS_CUSTOMHANDLER_PORT",
        reason: "not set (the Functions host sets it); pass --port to run by hand".into(),
    })
}

fn serve(port_flag: Option<u16>) -> ExitCode {
    let env = ProcessEnv;
    let port = match serve_port(port_flag, &env) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("acr-autoattach: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let settings = match load_settings(&env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acr-autoattach: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async move {
        // Bind before anything slow: the host's readiness probe starts at once.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        // Serve at once: the host's readiness probe is answered while the handler is being built.
        let slot: host::HandlerSlot = Arc::new(tokio::sync::SetOnce::new());
        let server = tokio::spawn(host::serve_slot(listener, Arc::clone(&slot), host::shutdown_signal()));
        let lookup = |k: &str| env.var(k);
        let guard = match telemetry::init(&settings.telemetry, &ProcessInfo::from_env(&lookup)) {
            Ok(g) => Some(Arc::new(g)),
            Err(e) => {
                eprintln!("acr-autoattach: telemetry disabled: {e}");
                None
            }
        };
        tracing::info!(port, mode = ?settings.config.mode, "acr-autoattach handler listening on 127.0.0.1");
        let handler = Arc::new(bootstrap::handler(&settings, &env, guard.clone())?);
        if slot.set(handler).is_err() {
            anyhow::bail!("the handler was built twice");
        }
        server.await??;
        if let Some(guard) = guard {
            // Last flush on the way out (SIGTERM); bounded by the exporters' own timeout.
            let _ = tokio::task::spawn_blocking(move || guard.flush()).await;
        }
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acr-autoattach: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo(json: bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(p) => p.to_string_lossy().into_owned(),
        Err(e) => {
            eprintln!("acr-autoattach: cannot find this executable for the host to launch: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acr-autoattach: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let say = move |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    let report = runtime.block_on(acr_autoattach::demo::run(
        vec![exe, "serve".to_owned()],
        &say,
    ));
    match report {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("acr-autoattach: {e}"),
                }
            } else {
                print!("{}", acr_autoattach::demo::render(&report));
            }
            if report.all_as_expected() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("acr-autoattach demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}
