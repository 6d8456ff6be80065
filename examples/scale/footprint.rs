//! Start-up and footprint of `acr-autoattach serve`: exec-to-ready (from the spawn to the first accepted
//! connection on the custom-handler port, the moment the Functions host can invoke it) over several fresh
//! processes, the idle RSS of a ready process, and the binary's size.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

/// How many fresh processes the start-up figure is taken over.
pub const STARTS: usize = 20;

#[derive(Debug, Serialize)]
pub struct Footprint {
    pub starts: usize,
    pub ready_ms_min: f64,
    pub ready_ms_median: f64,
    pub ready_ms_max: f64,
    /// `VmRSS` of a ready process after one idle second.
    pub idle_rss_bytes: Option<u64>,
    pub binary_bytes: u64,
    pub binary: String,
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("no free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn vm_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// One fresh `serve`: the time from spawn to ready, and its RSS after an idle second when `idle` is set.
fn one_start(
    binary: &Path,
    env: &[(String, String)],
    idle: bool,
) -> anyhow::Result<(Duration, Option<u64>)> {
    let port = free_port()?;
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let t0 = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let ready = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break t0.elapsed();
        }
        if let Some(status) = child.try_wait()? {
            bail!("`acr-autoattach serve` exited before listening: {status}");
        }
        if t0.elapsed() > Duration::from_secs(20) {
            child.kill().ok();
            bail!("`acr-autoattach serve` did not listen within 20 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let rss = if idle {
        std::thread::sleep(Duration::from_secs(1));
        vm_rss(child.id())
    } else {
        None
    };
    child.kill().ok();
    child.wait().ok();
    Ok((ready, rss))
}

/// [`STARTS`] fresh processes one after another; the last one also gives the idle RSS.
pub fn measure(binary: &Path, env: &[(String, String)]) -> anyhow::Result<Footprint> {
    let mut readies = Vec::with_capacity(STARTS);
    let mut idle_rss_bytes = None;
    for i in 0..STARTS {
        let (ready, rss) = one_start(binary, env, i + 1 == STARTS)?;
        readies.push(ready.as_secs_f64() * 1000.0);
        idle_rss_bytes = idle_rss_bytes.or(rss);
    }
    readies.sort_by(f64::total_cmp);
    let binary_bytes = std::fs::metadata(binary)
        .with_context(|| format!("cannot read {}", binary.display()))?
        .len();
    Ok(Footprint {
        starts: STARTS,
        ready_ms_min: readies.first().copied().unwrap_or_default(),
        ready_ms_median: readies.get(STARTS / 2).copied().unwrap_or_default(),
        ready_ms_max: readies.last().copied().unwrap_or_default(),
        idle_rss_bytes,
        binary_bytes,
        binary: binary.display().to_string(),
    })
}
