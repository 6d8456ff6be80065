//! The `acr-autoattach` binary: the Functions custom handler (`serve`) and operator commands.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;

use acr_autoattach::cli::{Cli, Command};
use acr_autoattach::runtime::bootstrap::{self, Settings};
use acr_autoattach::runtime::config::{ConfigError, Env, ProcessEnv};
use acr_autoattach::runtime::contract;
use acr_autoattach::runtime::functions::Handler;
use acr_autoattach::telemetry::{self, ProcessInfo};

/// Exit code for a configuration or usage error.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { port } => serve(port),
        #[cfg(feature = "demo")]
        Command::Demo { json } => demo(json),
        Command::Verify(args) => acr_autoattach::cli::operator::verify(&args),
        Command::Reconcile(args) => acr_autoattach::cli::operator::reconcile(&args),
        Command::Explain(args) => acr_autoattach::cli::explain::explain(&args),
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
        let listener = contract::bind(port)?;
        // Serve at once: the host's readiness probe is answered while the handler is being built.
        let slot: contract::HandlerSlot<Handler> = Arc::new(tokio::sync::SetOnce::new());
        let server = tokio::spawn(contract::serve_slot(
            listener,
            Arc::clone(&slot),
            contract::shutdown_signal(),
        ));
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

#[cfg(feature = "demo")]
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
    let report = runtime.block_on(acr_autoattach::cli::demo::run(
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
                print!("{}", acr_autoattach::cli::demo::render(&report));
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
