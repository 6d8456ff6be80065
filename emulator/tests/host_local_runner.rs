//! The local runner as the README shows it (`azure-emulator up --app-root . -- <handler>`), run as a process:
//! app settings come from the real process environment (then local.settings.json), as with the real host, so a
//! fresh clone without local.settings.json works once the schedule setting is exported, and fails with one clear
//! line when it is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const EMULATOR: &str = env!("CARGO_BIN_EXE_azure-emulator");
const HANDLER: &str = env!("CARGO_BIN_EXE_recording-handler");

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A started `azure-emulator` process, stopped with SIGTERM (the graceful path that also stops the handler it
/// started) when dropped.
struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Running {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(EMULATOR);
        command
            .args(args)
            .env_remove("AUTOATTACH_VERIFY_SCHEDULE")
            .env_remove("VERIFY_SCHEDULE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, stdout }
    }

    /// Stdout lines up to and including the first one `done` accepts.
    async fn read_until(&mut self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        let read = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                let finished = done(&line);
                lines.push(line);
                if finished {
                    return true;
                }
            }
            false
        };
        let found = tokio::time::timeout(Duration::from_mins(1), read)
            .await
            .unwrap_or(false);
        assert!(found, "stdout ended or stalled: {lines:?}");
        lines
    }

    /// Waits for the process to end by itself and returns its exit code and stderr.
    async fn exit(mut self) -> (Option<i32>, String) {
        let status = tokio::time::timeout(Duration::from_mins(1), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            pipe.read_to_string(&mut stderr).await.unwrap();
        }
        (status.code(), stderr)
    }

    /// SIGTERM, as Ctrl-C in a terminal would, then waits for the end.
    async fn terminate(mut self) -> Option<i32> {
        terminate(&self.child);
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap()
            .unwrap();
        status.code()
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // By process id, only the process this test started.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave the handler behind: SIGTERM lets `up` stop it.
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(&self.child);
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn recorded(path: &Path, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["kind"] == kind)
        .collect()
}

fn process_is_gone(pid: u64) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}

/// `azure-emulator up --app-root <repository> --host-port 0 -- <handler>`: the README command with a free host
/// port and the recording handler in place of the release binary (not built by this crate's tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_local_runner_reads_the_schedule_from_the_environment() {
    let root = repository_root();
    if !root.join("host.json").is_file() || !root.join("function-app").is_dir() {
        eprintln!("skipping: the repository has no host.json or function-app/");
        return;
    }
    let root_arg = root.display().to_string();
    let args = [
        "up",
        "--app-root",
        root_arg.as_str(),
        "--host-port",
        "0",
        "--",
        HANDLER,
    ];

    if root.join("local.settings.json").exists() {
        eprintln!(
            "local.settings.json exists at the repository root: skipping the fresh-clone failure"
        );
    } else {
        // A fresh clone with nothing exported: one line naming the setting and how to set it.
        let (code, stderr) = Running::spawn(&args, &[]).exit().await;
        assert_ne!(code, Some(0));
        let line = stderr
            .lines()
            .find(|line| line.contains("AUTOATTACH_VERIFY_SCHEDULE"))
            .unwrap_or_else(|| panic!("no line names the setting: {stderr}"));
        assert!(
            line.contains("'%AUTOATTACH_VERIFY_SCHEDULE%' does not resolve")
                && line.contains("export AUTOATTACH_VERIFY_SCHEDULE=")
                && line.contains("local.settings.json"),
            "{line}"
        );
    }

    // Exported in the shell (the process environment), as the README says: it works.
    let recording = tempfile::tempdir().unwrap();
    let recording_file = recording.path().join("r.jsonl");
    let recording_arg = recording_file.display().to_string();
    let mut up = Running::spawn(
        &args,
        &[
            ("AUTOATTACH_VERIFY_SCHEDULE", "0 0 0 1 1 *"),
            ("RECORDING_FILE", recording_arg.as_str()),
        ],
    );
    let lines = up.read_until(|line| line == "ready").await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("export AUTOATTACH_ARM_ENDPOINT=http://127.0.0.1:")),
        "{lines:?}"
    );
    let base = lines
        .iter()
        .find_map(|l| l.strip_prefix("# Functions host simulator: "))
        .unwrap()
        .to_owned();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("VerifyAttachments (timerTrigger)")),
        "{lines:?}"
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .post(format!("{base}/admin/functions/VerifyAttachments"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let mut invoked = false;
    for _ in 0..200 {
        if recorded(&recording_file, "request")
            .iter()
            .any(|r| r["path"] == "/VerifyAttachments")
        {
            invoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(invoked, "the timer function was not invoked");
    let request = &recorded(&recording_file, "request")[0];
    assert!(
        request["body"]["Data"]["timer"]["ScheduleStatus"]["Next"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00+00:00"),
        "the schedule is the exported one: {request}"
    );
    let handler_pid = recorded(&recording_file, "start")[0]["pid"]
        .as_u64()
        .unwrap();

    // SIGTERM stops everything, the handler included.
    assert_eq!(up.terminate().await, Some(0));
    let mut gone = false;
    for _ in 0..100 {
        if process_is_gone(handler_pid) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the handler {handler_pid} outlived `up`");
}

/// `azure-emulator functions-host`: the process environment wins over local.settings.json, which fills in
/// what the environment does not set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_host_prefers_the_environment_over_local_settings_json() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("host.json"),
        json!({"version": "2.0", "customHandler": {"description": {"defaultExecutablePath": HANDLER}}})
            .to_string(),
    )
    .unwrap();
    let folder = app.path().join("VerifyAttachments");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": [{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "%VERIFY_SCHEDULE%"}]})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        app.path().join("local.settings.json"),
        json!({"IsEncrypted": false, "Values": {"VERIFY_SCHEDULE": "0 0 0 1 7 *", "APP_FROM_FILE": "file", "APP_BOTH": "file"}})
            .to_string(),
    )
    .unwrap();
    let recording_file = app.path().join("r.jsonl");
    let recording_arg = recording_file.display().to_string();
    let app_arg = app.path().display().to_string();
    let args = [
        "functions-host",
        "--app-root",
        app_arg.as_str(),
        "--port",
        "0",
        "--no-timers",
    ];

    let mut host = Running::spawn(
        &args,
        &[
            ("VERIFY_SCHEDULE", "0 0 0 1 1 *"),
            ("APP_BOTH", "env"),
            ("RECORDING_FILE", recording_arg.as_str()),
        ],
    );
    let lines = host
        .read_until(|line| line.contains("VerifyAttachments: timerTrigger"))
        .await;
    assert!(
        lines.last().unwrap().contains("timerTrigger (0 0 0 1 1 *)"),
        "the environment's schedule wins: {lines:?}"
    );
    let env = &recorded(&recording_file, "start")[0]["env"];
    assert_eq!(env["APP_BOTH"], "env");
    assert_eq!(env["APP_FROM_FILE"], "file");
    assert_eq!(host.terminate().await, Some(0));

    // Without the environment variable the file's schedule applies.
    let mut host = Running::spawn(&args, &[("RECORDING_FILE", recording_arg.as_str())]);
    let lines = host
        .read_until(|line| line.contains("VerifyAttachments: timerTrigger"))
        .await;
    assert!(
        lines.last().unwrap().contains("timerTrigger (0 0 0 1 7 *)"),
        "{lines:?}"
    );
    assert_eq!(host.terminate().await, Some(0));
}
