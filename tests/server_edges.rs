//! The server's edges (issue 10, point 6) over real sockets: header and body read timeouts, a bounded number of
//! open connections, and `Logs` lines that no event field can break.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use acr_autoattach::runtime::bootstrap::{self, Settings};
use acr_autoattach::runtime::config::MapEnv;
use acr_autoattach::runtime::contract::{
    self, Functions, Invocation, InvocationAnswer, InvocationFailure, ServeLimits,
};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Stub;

impl Functions for Stub {
    async fn invoke(&self, _: Invocation) -> Result<InvocationAnswer, InvocationFailure> {
        Ok(InvocationAnswer::default())
    }
}

/// Serves `router` on a fresh loopback port with `limits`; the server stops when the test's runtime ends.
async fn start(router: axum::Router, limits: ServeLimits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(contract::serve_router(
        listener,
        router,
        std::future::pending(),
        limits,
    ));
    addr
}

fn limits(header_secs: u64, body_secs: u64, max_connections: usize) -> ServeLimits {
    ServeLimits {
        header_read_timeout: Duration::from_secs(header_secs),
        body_read_timeout: Duration::from_secs(body_secs),
        max_connections,
    }
}

/// Sends `bytes` one per second until the peer closes; returns when it closed (from `start`), if it did.
async fn trickle(stream: TcpStream, bytes: &[u8], start: Instant) -> (Option<Duration>, Vec<u8>) {
    let (mut read, mut write) = stream.into_split();
    let reader = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        (start.elapsed(), answer)
    });
    for b in bytes {
        if write.write_all(&[*b]).await.is_err() || reader.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match tokio::time::timeout(Duration::from_secs(1), reader).await {
        Ok(Ok((at, answer))) => (Some(at), answer),
        _ => (None, Vec::new()),
    }
}

#[tokio::test]
async fn a_connection_sending_one_byte_a_second_is_closed() {
    let addr = start(contract::app(Arc::new(Stub)), limits(2, 20, 16)).await;
    let start = Instant::now();
    let stream = TcpStream::connect(addr).await.unwrap();
    let request =
        b"POST /OnResourceEvent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}";
    let (closed, _) = trickle(stream, request, start).await;
    let closed = closed.expect("the server closed the connection");
    eprintln!("slow headers: closed after {closed:?}");
    assert!(closed < Duration::from_secs(4), "{closed:?}");
}

#[tokio::test]
async fn a_body_sent_one_byte_a_second_is_answered_408() {
    let addr = start(contract::app(Arc::new(Stub)), limits(10, 2, 16)).await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /OnResourceEvent HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n",
        )
        .await
        .unwrap();
    let (closed, answer) = trickle(stream, &[b' '; 100], start).await;
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("slow body: answered after {closed:?}: {answer:.40}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed.unwrap() < Duration::from_secs(5));
}

#[tokio::test]
async fn open_connections_are_bounded() {
    let addr = start(contract::app(Arc::new(Stub)), limits(10, 10, 2)).await;
    let idle_a = TcpStream::connect(addr).await.unwrap();
    let _idle_b = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.unwrap(); // in the backlog: not served yet
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served beside two open ones"
    );
    drop(idle_a);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// The handler's listener queues a burst's connections in the kernel instead of dropping them past 128 (the
/// std/mio default), which the host's TCP stack would retry only after 1, 2, 4, … s.
#[tokio::test]
async fn the_listener_queues_a_bursts_connections() {
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(128);
    let wanted = 400.min(somaxconn.saturating_sub(1));
    let listener = contract::bind(0).unwrap(); // never accepts: every connection waits in its queue
    let addr = listener.local_addr().unwrap();
    let mut open = Vec::new();
    for i in 0..wanted {
        let connect = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(addr));
        let stream = connect
            .await
            .unwrap_or_else(|_| panic!("connection {i} was not queued"));
        open.push(stream.unwrap());
    }
    eprintln!("{} connections queued (somaxconn {somaxconn})", open.len());
}

/// Near the limit, a connection is not kept alive after its answer: an idle keep-alive connection would hold
/// its slot while a burst's invocations wait in the backlog.
#[tokio::test]
async fn near_the_limit_a_connection_serves_one_request_and_closes() {
    let addr = start(contract::app(Arc::new(Stub)), limits(10, 10, 4)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut last = TcpStream::connect(addr).await.unwrap();
    last.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), last.read_to_end(&mut answer)).await;
    assert!(
        closed.is_ok(),
        "the connection was kept alive with no slot to spare"
    );
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    drop(idle);
}

#[tokio::test]
async fn a_newline_in_an_event_field_cannot_forge_a_host_log_line() {
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let mut env: Vec<(String, String)> = emulator.env();
    env.push(("AUTOATTACH_MODE".into(), "audit".into()));
    let settings = Settings::from_env(&MapEnv::new(env.clone())).unwrap();
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    let handler =
        Arc::new(bootstrap::handler_with_credential(&settings, credential, None).unwrap());
    let addr = start(contract::app(handler), ServeLimits::default()).await;
    let forged = "e1\n2026-11-30T06:00:00Z [Information] Executed 'Functions.OnResourceEvent' (Succeeded)\r\u{1b}[2K";
    let event = json!({
        "id": forged, "topic": "/subscriptions/x", "subject": "s\nforged",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess\nforged", "eventTime": "2026-11-30T06:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": "Microsoft.Storage/storageAccounts/write\n[Error] forged",
                 "resourceUri": "/subscriptions/x/resourceGroups/r\n/providers/Microsoft.Storage/storageAccounts/a"}
    });
    let body = json!({"Data": {"event": event}, "Metadata": {}});
    let answer: Value = reqwest::Client::new()
        .post(format!("http://{addr}/OnResourceEvent"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let logs: Vec<&str> = answer["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    eprintln!("{logs:#?}");
    assert!(!logs.is_empty());
    for line in &logs {
        assert!(
            !line.chars().any(char::is_control),
            "a control character reached a Logs line: {line:?}"
        );
    }
    assert!(
        logs.iter().any(|l| l.contains("e1\\u{a}2026")),
        "the id is kept, escaped: {logs:?}"
    );
    emulator.shutdown().await;
}
