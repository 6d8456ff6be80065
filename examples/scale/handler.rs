//! The handler as a separate process, so that its peak RSS is its own: the release `acr-autoattach` binary,
//! found next to this example (or at `$ACR_AUTOATTACH_BIN`) and built first with `cargo build`, run as
//! `serve` and invoked as the Functions host invokes VerifyAttachments; and `explain` once per pair for the
//! naive baseline. Peak RSS is `VmHWM` from `/proc/<pid>/status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use azure_emulator::functions_host::wire;
use serde_json::{Map, Value};
use tokio::process::{Child, Command};

/// The handler binary for this example's profile, built (or found up to date) by cargo.
pub fn locate() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ACR_AUTOATTACH_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("ACR_AUTOATTACH_BIN={} is not a file", path.display());
        }
        return Ok(path);
    }
    // target/<profile>/examples/scale → target/<profile>/acr-autoattach
    let exe = std::env::current_exe().context("cannot find this example's own path")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("this example does not run from a cargo target directory")?;
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    let binary = profile_dir.join("acr-autoattach");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = std::process::Command::new(&cargo);
    build
        .args([
            "build",
            "--quiet",
            "--bin",
            "acr-autoattach",
            "--manifest-path",
        ])
        .arg(&manifest);
    // The target directory this example was built into (also when run directly, without cargo's environment).
    if let Some(target_dir) = profile_dir.parent() {
        build.arg("--target-dir").arg(target_dir);
    }
    if release {
        build.arg("--release");
    }
    eprintln!(
        "scale: building the handler ({}cargo build --bin acr-autoattach)",
        if release { "release, " } else { "" }
    );
    let built = build.status();
    match built {
        Ok(status) if status.success() => {}
        Ok(status) if binary.is_file() => eprintln!(
            "scale: `cargo build` failed ({status}); using the existing {}",
            binary.display()
        ),
        Err(e) if binary.is_file() => eprintln!(
            "scale: cannot run cargo ({e}); using the existing {}",
            binary.display()
        ),
        other => bail!(
            "the handler binary {} is missing and `cargo build{} --bin acr-autoattach` did not make it ({other:?}); \
             build it first, or point ACR_AUTOATTACH_BIN at it",
            binary.display(),
            if release { " --release" } else { "" }
        ),
    }
    if !binary.is_file() {
        bail!("{} is missing after the build", binary.display());
    }
    Ok(binary)
}

/// `VmHWM` of a live process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) a process has used so far: fields 14 and 15 of `/proc/<pid>/stat`, in clock
/// ticks (100 per second on Linux).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are plain.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// One timer invocation of a fresh `serve` process.
pub struct TimerRun {
    pub wall: Duration,
    /// The handler's CPU seconds during the invocation.
    pub cpu_s: Option<f64>,
    pub peak_rss: Option<u64>,
    pub http_status: u16,
    /// The answer's `ReturnValue` (the run's summary) or the whole answer when it has none.
    pub summary: Value,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn spawn(binary: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<Child> {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

/// Starts `serve`, waits until it listens, invokes VerifyAttachments once (as the host does) and stops it.
/// The wall time is the invocation's alone; the peak RSS is read while the process still lives.
pub async fn timer_run(
    binary: &Path,
    env: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<TimerRun> {
    let port = free_port()?;
    let mut env = env.to_vec();
    env.push(("FUNCTIONS_CUSTOMHANDLER_PORT".into(), port.to_string()));
    let mut child = spawn(binary, &["serve"], &env)?;
    let pid = child.id().context("the handler exited at once")?;
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if let Some(status) = child.try_wait()? {
            bail!("`acr-autoattach serve` exited before listening: {status}");
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("`acr-autoattach serve` did not listen on {port} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let now = time::OffsetDateTime::now_utc();
    let body = wire::envelope(
        "timer",
        wire::timer_value(None, false),
        Map::new(),
        wire::sys_metadata("VerifyAttachments", now, uuid::Uuid::new_v4()),
    );
    let http = reqwest::Client::builder().timeout(timeout).build()?;
    let cpu_before = cpu_seconds(&pid.to_string());
    let t0 = Instant::now();
    let answer = http
        .post(format!("http://127.0.0.1:{port}/VerifyAttachments"))
        .header(
            "X-Azure-Functions-InvocationId",
            uuid::Uuid::new_v4().to_string(),
        )
        .json(&body)
        .send()
        .await
        .context("the VerifyAttachments invocation failed")?;
    let http_status = answer.status().as_u16();
    let value: Value = answer.json().await.unwrap_or(Value::Null);
    let wall = t0.elapsed();
    let peak_rss = peak_rss(pid);
    let cpu_s = cpu_seconds(&pid.to_string())
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    child.start_kill().ok();
    child.wait().await.ok();
    let summary = value
        .get("ReturnValue")
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or(value);
    Ok(TimerRun {
        wall,
        cpu_s,
        peak_rss,
        http_status,
        summary,
    })
}

/// `acr-autoattach explain --cluster C --registry R --json` for one pair: exit code and the largest `VmHWM`
/// sampled every 2 ms while it ran (a short process may grow a little after the last sample).
pub async fn explain(
    binary: &Path,
    env: &[(String, String)],
    cluster: &str,
    registry: &str,
) -> anyhow::Result<(Option<i32>, Option<u64>)> {
    let mut child = spawn(
        binary,
        &[
            "explain",
            "--cluster",
            cluster,
            "--registry",
            registry,
            "--json",
        ],
        env,
    )?;
    let pid = child.id();
    let mut peak = None;
    loop {
        if let Some(rss) = pid.and_then(peak_rss) {
            peak = peak.max(Some(rss));
        }
        if let Some(status) = child.try_wait()? {
            return Ok((status.code(), peak));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
