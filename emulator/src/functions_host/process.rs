//! Starting and supervising the handler process as the host does: environment, readiness polling, output relay,
//! restart after a crash or a `functionTimeout`, and giving up after too many crashes.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

use super::config::{self, HostConfig};
use super::{HandlerOutputLine, HostError, LaunchSpec, OutputStream, Shared, WorkerState};

/// Resolves the command line and environment the handler is started with. `settings` already holds the host's
/// environment (see `config::compose_settings`); `removed` names variables of this process that the host's
/// environment does not have.
pub(super) fn launch_spec(
    app_root: &Path,
    host: &HostConfig,
    handler_command: Option<&[String]>,
    settings: &BTreeMap<String, String>,
    removed: Vec<String>,
) -> Result<LaunchSpec, HostError> {
    let lookup =
        |name: &str| -> Option<String> { config::lookup_ci(settings, name).map(str::to_owned) };
    let (program, args, working_directory) = match handler_command {
        Some([program, args @ ..]) => (program.clone(), args.to_vec(), String::new()),
        Some([]) => return Err(HostError::NoHandler),
        None => {
            let handler = host.custom_handler.as_ref().ok_or(HostError::NoHandler)?;
            let args = handler
                .arguments
                .iter()
                .map(|arg| config::expand_environment(arg, &lookup))
                .collect();
            (
                config::expand_environment(&handler.default_executable_path, &lookup),
                args,
                handler.working_directory.clone(),
            )
        }
    };
    // A relative executable path is joined to the app root if that file exists; otherwise PATH decides.
    let in_app_root = app_root.join(&program);
    let program = if Path::new(&program).is_relative() && in_app_root.is_file() {
        in_app_root
    } else {
        program.into()
    };
    let working_directory = if working_directory.is_empty() {
        app_root.to_owned()
    } else {
        app_root.join(working_directory)
    };
    let mut env: Vec<(String, String)> = settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("FUNCTIONS_WORKER_RUNTIME".into(), "custom".into()));
    env.push((
        "FUNCTIONS_APP_ROOT_PATH".into(),
        app_root.to_string_lossy().into_owned(),
    ));
    Ok(LaunchSpec {
        program,
        args,
        working_directory,
        env_remove: removed,
        env,
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// The real host's exit codes (`WorkerConstants` in azure-functions-host): 0 is a clean exit, which it does not
/// restart; 200 asks for a restart, which does not count as an error.
const SUCCESS_EXIT_CODE: i32 = 0;
const INTENTIONAL_RESTART_EXIT_CODE: i32 = 200;

enum Ended {
    Crashed(String),
    /// Exit code 200: restart, not counted against `max_crashes`.
    RestartRequested,
    Killed,
    Shutdown,
}

/// Runs the handler until the host shuts down or gives up.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    launch: LaunchSpec,
    mut kill: mpsc::UnboundedReceiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    let mut generation = 0u64;
    loop {
        generation += 1;
        shared.worker.send_replace(WorkerState::Starting);
        let ended = run_once(&shared, &launch, generation, &mut kill, &mut shutdown).await;
        match ended {
            Ended::Shutdown => {
                shared.worker.send_replace(WorkerState::Stopped {
                    reason: "host shut down".into(),
                });
                return;
            }
            Ended::Killed => {
                tracing::warn!(
                    generation,
                    "restarting the handler after a function timeout"
                );
            }
            Ended::RestartRequested => {
                tracing::info!(
                    generation,
                    "Language Worker Process exited and needs to be restarted."
                );
                // A handler that always exits 200 is restarted for ever, as by the real host; not in a hot loop.
                tokio::time::sleep(shared.options.readiness_interval).await;
            }
            Ended::Crashed(reason) => {
                let now = Instant::now();
                crashes.push_back(now);
                while crashes
                    .front()
                    .is_some_and(|at| now.duration_since(*at) > shared.options.crash_window)
                {
                    crashes.pop_front();
                }
                tracing::error!(generation, %reason, crashes = crashes.len(), "the handler process failed");
                if crashes.len() >= shared.options.max_crashes {
                    let reason = format!(
                        "the handler failed {} times within {:?} (last: {reason}); the host shut down",
                        crashes.len(),
                        shared.options.crash_window
                    );
                    tracing::error!("{reason}");
                    shared.worker.send_replace(WorkerState::Stopped { reason });
                    return;
                }
            }
        }
        shared.restarts.fetch_add(1, Ordering::SeqCst);
    }
}

async fn run_once(
    shared: &Arc<Shared>,
    launch: &LaunchSpec,
    generation: u64,
    kill: &mut mpsc::UnboundedReceiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let port = match free_port() {
        Ok(port) => port,
        Err(error) => return Ended::Crashed(format!("no free port: {error}")),
    };
    let mut command = Command::new(&launch.program);
    command
        .args(&launch.args)
        .current_dir(&launch.working_directory);
    for name in &launch.env_remove {
        command.env_remove(name);
    }
    command
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_HTTPWORKER_PORT", port.to_string())
        .env(
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
            uuid::Uuid::new_v4().to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Ended::Crashed(format!(
                "cannot start '{}': {error}",
                launch.program.display()
            ));
        }
    };
    tracing::info!(generation, port, program = %launch.program.display(), "started the custom handler");
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(relay(
            Arc::clone(shared),
            stdout,
            OutputStream::Stdout,
            generation,
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(relay(
            Arc::clone(shared),
            stderr,
            OutputStream::Stderr,
            generation,
        ));
    }

    // Stale kill requests (for an earlier generation) must not kill this one.
    while kill.try_recv().is_ok() {}

    let timed_out = || {
        Ended::Crashed(format!(
            "Initializing HttpWorker timed out after {:?}",
            shared.options.startup_timeout
        ))
    };
    let ready = wait_ready(shared, port);
    tokio::pin!(ready);
    tokio::select! {
        ready = &mut ready => {
            if !ready {
                stop(&mut child).await;
                return timed_out();
            }
        }
        status = child.wait() => {
            match exit_code(&status) {
                Some(INTENTIONAL_RESTART_EXIT_CODE) => return Ended::RestartRequested,
                // Not restarted: nothing answers the readiness probe, so start-up times out.
                Some(SUCCESS_EXIT_CODE) => {
                    tokio::select! {
                        ready = &mut ready => if !ready { return timed_out() },
                        () = super::shutdown_signalled(shutdown) => return Ended::Shutdown,
                    }
                }
                _ => return Ended::Crashed(describe_exit(status)),
            }
        }
        () = super::shutdown_signalled(shutdown) => {
            stop(&mut child).await;
            return Ended::Shutdown;
        }
    }
    shared
        .worker
        .send_replace(WorkerState::Ready { port, generation });
    let mut exited = false;
    loop {
        tokio::select! {
            status = child.wait(), if !exited => match exit_code(&status) {
                Some(INTENTIONAL_RESTART_EXIT_CODE) => return Ended::RestartRequested,
                Some(SUCCESS_EXIT_CODE) => {
                    // The real host only closes the process: no restart, no error. Invocations keep going to the
                    // dead port and fail until the host recycles (here: a function timeout or a new start).
                    tracing::warn!(generation, "the handler exited with code 0; it is not restarted and every invocation fails until the host restarts");
                    exited = true;
                }
                _ => return Ended::Crashed(describe_exit(status)),
            },
            request = kill.recv() => match request {
                Some(target) if target == generation => {
                    shared.worker.send_replace(WorkerState::Starting);
                    stop(&mut child).await;
                    return Ended::Killed;
                }
                Some(_) => {}
                None => {
                    stop(&mut child).await;
                    return Ended::Shutdown;
                }
            },
            () = super::shutdown_signalled(shutdown) => {
                stop(&mut child).await;
                return Ended::Shutdown;
            }
        }
    }
}

fn exit_code(status: &std::io::Result<std::process::ExitStatus>) -> Option<i32> {
    status
        .as_ref()
        .ok()
        .and_then(std::process::ExitStatus::code)
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => format!("the handler process exited ({status})"),
        Err(error) => format!("waiting for the handler process failed: {error}"),
    }
}

async fn stop(child: &mut Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// `GET http://127.0.0.1:{port}/` until any HTTP answer, every `readiness_interval`, up to `startup_timeout`.
async fn wait_ready(shared: &Shared, port: u16) -> bool {
    let deadline = Instant::now() + shared.options.startup_timeout;
    let url = format!("http://127.0.0.1:{port}/");
    while Instant::now() < deadline {
        let probe = shared
            .client
            .get(&url)
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if probe.is_ok() {
            return true;
        }
        tokio::time::sleep(shared.options.readiness_interval).await;
    }
    false
}

async fn relay(
    shared: Arc<Shared>,
    stream: impl AsyncRead + Unpin,
    kind: OutputStream,
    generation: u64,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match kind {
            OutputStream::Stdout => tracing::info!(target: "functions_host::handler", "{line}"),
            OutputStream::Stderr => tracing::error!(target: "functions_host::handler", "{line}"),
        }
        shared.push_output(HandlerOutputLine {
            stream: kind,
            line,
            generation,
        });
    }
}
