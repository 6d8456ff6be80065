//! The binary's edges: configuration errors exit 2 naming the setting; `serve` binds loopback and answers the
//! readiness probe; SIGTERM stops it cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_acr-autoattach");

fn clean_command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn every_bad_setting_exits_2_naming_it() {
    let cases = [
        ("AUTOATTACH_TAG", "bad/tag"),
        ("AUTOATTACH_MODE", "sometimes"),
        ("AUTOATTACH_SUBSCRIPTIONS", "sub-1"),
        ("AUTOATTACH_DETACH", "maybe"),
        ("AUTOATTACH_READY_TIMEOUT_SECS", "30"),
        ("AUTOATTACH_VERIFY_SCHEDULE", "0 0 * * *"),
        ("AUTOATTACH_ARM_ENDPOINT", "http://management.example.com"),
        ("AUTOATTACH_GRAPH_ENDPOINT", "::"),
        ("AZURE_CLIENT_ID", "not-a-guid"),
        ("AUTOATTACH_MAX_CONCURRENCY", "1000"),
        ("AUTOATTACH_VERIFY_BUDGET_SECS", "-1"),
        ("AUTOATTACH_USE_RESOURCE_GRAPH", "sure"),
        ("AUTOATTACH_PAIR_RECORDS", "some"),
        ("AUTOATTACH_SNAPSHOT_HOURS", "0"),
        ("AUTOATTACH_ALERT_WEBHOOK", "not a url"),
        ("AUTOATTACH_ALERT_FORMAT", "pager"),
        ("AUTOATTACH_ALERT_TRANSIENT_THRESHOLD", "many"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon"),
    ];
    for subcommand in [&["config"][..], &["serve", "--port", "1"][..]] {
        for (key, value) in cases {
            // Alert settings are read when a webhook is configured.
            let out = clean_command()
                .args(subcommand)
                .env("AUTOATTACH_ALERT_WEBHOOK", "http://127.0.0.1:9093")
                .env(key, value)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{subcommand:?} {key}={value}: {stderr}"
            );
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            assert!(stderr.contains(key), "{key} not named in: {stderr}");
        }
    }
}

#[test]
fn serve_without_a_port_exits_2_naming_the_setting() {
    let out = clean_command().arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
}

#[test]
fn config_prints_the_effective_configuration() {
    let out = clean_command()
        .arg("config")
        .env("AUTOATTACH_MODE", "audit")
        .env("AUTOATTACH_TAG", "pull-from")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("AUTOATTACH_MODE=audit"), "{stdout}");
    assert!(stdout.contains("AUTOATTACH_TAG=pull-from"), "{stdout}");
}

#[test]
fn help_explains_each_subcommand() {
    let out = clean_command().arg("--help").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("serve") && stdout.contains("config"),
        "{stdout}"
    );
    let out = clean_command().args(["serve", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("FUNCTIONS_CUSTOMHANDLER_PORT"));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn serve_answers_readiness_on_loopback_and_stops_on_sigterm() {
    let port = free_port();
    let started = Instant::now();
    let mut child = clean_command()
        .arg("serve")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("AUTOATTACH_ARM_ENDPOINT", "http://127.0.0.1:9")
        .spawn()
        .unwrap();
    let answer = loop {
        if let Some(a) = http_get(port, "/") {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no readiness answer"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Only loopback: the listener is bound to 127.0.0.1, not 0.0.0.0.
    let listening = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let hex_port = format!(":{port:04X}");
    for line in listening
        .lines()
        .filter(|l| l.contains(&hex_port) && l.contains(" 0A "))
    {
        assert!(
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .starts_with("0100007F"),
            "{line}"
        );
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}
