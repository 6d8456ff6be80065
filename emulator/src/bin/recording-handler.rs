//! A test custom handler for the Functions host simulator: it records every request it receives (method, path,
//! headers, body) as one JSON line in `$RECORDING_FILE` and answers as told by app settings, so tests can check
//! the host's wire format and its reaction to failures.
//!
//! Behaviour per function: `RECORDING_MODE_{FunctionName}` (else `RECORDING_MODE`, else `ok`):
//! `ok` · `fail:N` (HTTP 500 for the first N invocations) · `status:CODE` (always CODE) · `empty[:N]` (200 with
//! an empty body) · `crash[:N]` (exit the process with code 3) · `exit:CODE` (exit the process with CODE, e.g. 0
//! or 200, without answering) · `sleep:MS` (answer after MS) · `sleep-first:MS` (only the first invocation
//! answers after MS). Counts survive restarts
//! because they are read back from the recording file. `RECORDING_CRASH_ON_START=1` exits at start-up;
//! `RECORDING_STARTUP_DELAY_MS` delays listening.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

struct Recorder {
    file: Option<PathBuf>,
    lock: Mutex<()>,
}

impl Recorder {
    /// Appends one record and returns how many request records for `function` the file now holds.
    fn append(&self, record: &Value, function: Option<&str>) -> usize {
        let Some(path) = &self.file else { return 1 };
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "{record}");
        }
        let Some(function) = function else { return 0 };
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|r| r["kind"] == "request" && r["path"] == format!("/{function}"))
            .count()
    }
}

fn mode_for(function: &str) -> String {
    std::env::var(format!("RECORDING_MODE_{function}"))
        .or_else(|_| std::env::var("RECORDING_MODE"))
        .unwrap_or_else(|_| "ok".to_owned())
}

/// `(name, limit)`: `fail:2` → ("fail", Some(2)).
fn parse_mode(mode: &str) -> (&str, Option<u64>) {
    match mode.split_once(':') {
        Some((name, value)) => (name, value.parse().ok()),
        None => (mode, None),
    }
}

async fn handle(
    recorder: Arc<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::GET && uri.path() == "/" {
        return StatusCode::OK.into_response();
    }
    let function = uri.path().trim_start_matches('/').to_owned();
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                Value::String(value.to_str().unwrap_or("<binary>").to_owned()),
            )
        })
        .collect();
    let text = String::from_utf8_lossy(&body).into_owned();
    let record = json!({
        "kind": "request",
        "pid": std::process::id(),
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": header_map,
        "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        "body_text": text,
    });
    let count = recorder.append(&record, Some(&function)) as u64;
    let mode = mode_for(&function);
    let (name, limit) = parse_mode(&mode);
    let within = |limit: Option<u64>| limit.is_none_or(|n| count <= n);
    let invocation_id = headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ok = || {
        let body = json!({"Outputs": {}, "Logs": [format!("recording-handler handled {function} {invocation_id}")], "ReturnValue": null});
        ([("content-type", "application/json")], body.to_string()).into_response()
    };
    match name {
        "fail" if within(limit) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"Logs": ["failing on purpose"]}).to_string(),
        )
            .into_response(),
        "status" => StatusCode::from_u16(limit.and_then(|c| u16::try_from(c).ok()).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        "empty" if within(limit) => StatusCode::OK.into_response(),
        "crash" if within(limit) => {
            eprintln!("recording-handler: crashing on purpose in {function}");
            std::process::exit(3);
        }
        "exit" => {
            eprintln!("recording-handler: exiting on purpose in {function}");
            std::process::exit(limit.and_then(|code| i32::try_from(code).ok()).unwrap_or(0));
        }
        "sleep-first" => {
            if count == 1 {
                tokio::time::sleep(Duration::from_millis(limit.unwrap_or(0))).await;
            }
            ok()
        }
        "sleep" => {
            tokio::time::sleep(Duration::from_millis(limit.unwrap_or(0))).await;
            ok()
        }
        _ => ok(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let recorder = Arc::new(Recorder {
        file: std::env::var_os("RECORDING_FILE").map(PathBuf::from),
        lock: Mutex::new(()),
    });
    let env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("FUNCTIONS_") || k.starts_with("RECORDING_") || k.starts_with("APP_")
        })
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    recorder.append(
        &json!({"kind": "start", "pid": std::process::id(), "env": env, "args": args, "cwd": cwd}),
        None,
    );
    if std::env::var("RECORDING_CRASH_ON_START").is_ok_and(|v| v == "1") {
        eprintln!("recording-handler: crashing at start-up on purpose");
        std::process::exit(2);
    }
    if let Some(delay) = std::env::var("RECORDING_STARTUP_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let port: u16 = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .context("FUNCTIONS_CUSTOMHANDLER_PORT is not set")?
        .parse()
        .context("FUNCTIONS_CUSTOMHANDLER_PORT is not a port")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("bind")?;
    println!("recording-handler: listening on 127.0.0.1:{port}");
    eprintln!("recording-handler: this line goes to stderr");
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let recorder = Arc::clone(&recorder);
            async move { handle(recorder, method, uri, headers, body).await }
        },
    );
    axum::serve(listener, app).await.context("serve")?;
    Ok(())
}
