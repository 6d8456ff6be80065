//! The README's local runner, as written there, with the real handler: `azure-emulator up --app-root . --
//! target/…/acr-autoattach serve` with the timer schedule exported in the shell. The host simulator resolves
//! `%AUTOATTACH_VERIFY_SCHEDULE%` from the environment (no `local.settings.json` in a fresh clone), starts the
//! handler, and a timer run through the admin API is answered by it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

const HANDLER: &str = env!("CARGO_BIN_EXE_acr-autoattach");

/// `azure-emulator` beside this test's own executable (`cargo test --workspace` builds every member's binaries
/// into the same target directory).
fn emulator_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let candidate = dir.join("azure-emulator");
    candidate.is_file().then_some(candidate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_local_runner_serves_the_real_handler() {
    let Some(emulator) = emulator_binary() else {
        assert!(
            std::env::var("CI").is_err(),
            "azure-emulator is not built beside the tests (run `cargo test --workspace`)"
        );
        eprintln!("skipping: azure-emulator is not built beside the tests");
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut child = tokio::process::Command::new(&emulator)
        .args(["up", "--app-root"])
        .arg(&root)
        .args(["--host-port", "0", "--", HANDLER, "serve"])
        .env("AUTOATTACH_VERIFY_SCHEDULE", "0 0 0 1 1 *")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Drain stderr on its own task, so a chatty log can never fill the pipe and stall `up`.
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (log_tx, mut log) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = stderr_lines.next_line().await {
            if log_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(Duration::from_mins(1), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line == "ready";
            seen.push(line);
            if done {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        let _ = child.start_kill();
        let mut stderr = Vec::new();
        while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), log.recv()).await {
            stderr.push(line);
        }
        panic!("`up` never printed ready: {seen:?}\n{}", stderr.join("\n"));
    }
    let base = seen
        .iter()
        .find_map(|l| l.strip_prefix("# Functions host simulator: "))
        .unwrap_or_else(|| panic!("no host address in {seen:?}"))
        .to_owned();

    // A timer run through the host's admin API reaches the real handler, which verifies the (empty) estate.
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .post(format!("{base}/admin/functions/VerifyAttachments"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);

    // The host logs the invocation's end as the real host does; the real handler must have answered 200.
    let succeeded = tokio::time::timeout(Duration::from_mins(1), async {
        let mut tail = Vec::new();
        while let Some(line) = log.recv().await {
            if line.contains("Executed 'Functions.VerifyAttachments' (Succeeded)") {
                return Ok(());
            }
            if line.contains("Executed 'Functions.VerifyAttachments' (Failed)") {
                tail.push(line);
                return Err(tail);
            }
            tail.push(line);
            if tail.len() > 200 {
                tail.remove(0);
            }
        }
        Err(tail)
    })
    .await;
    let _ = child.start_kill();
    match succeeded {
        Ok(Ok(())) => {}
        Ok(Err(tail)) => panic!("the timer run did not succeed:\n{}", tail.join("\n")),
        Err(elapsed) => panic!("no end of the timer run within 60 s ({elapsed})"),
    }
}
