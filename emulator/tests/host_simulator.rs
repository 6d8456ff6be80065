//! The Functions host simulator against a recording test handler: the requests the handler receives must match
//! `../shared/docs/functions-host.md` field by field, and the host must react to failures as the real one does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use azure_emulator::functions_host::{
    FunctionsHost, HostError, HostOptions, InvocationRecord, InvocationStatus, OutputStream,
    RunningHost,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const HANDLER: &str = env!("CARGO_BIN_EXE_recording-handler");

struct App {
    dir: tempfile::TempDir,
}

impl App {
    /// An app root with `OnResourceEvent` (Event Grid) and `VerifyAttachments` (timer on `%VERIFY_SCHEDULE%`).
    fn new(host_json: &Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("host.json"), host_json.to_string()).unwrap();
        let app = Self { dir };
        app.function(
            "OnResourceEvent",
            &json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]}),
        );
        app.function(
            "VerifyAttachments",
            &json!({"bindings": [{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "%VERIFY_SCHEDULE%", "runOnStartup": false, "useMonitor": true}]}),
        );
        app
    }

    fn standard() -> Self {
        Self::new(&json!({
            "version": "2.0",
            "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
            "customHandler": {"description": {"defaultExecutablePath": HANDLER, "arguments": ["serve", "--flag=%APP_ARGUMENT%", "%UNSET_VARIABLE_X%"]}, "enableForwardingHttpRequest": false}
        }))
    }

    fn function(&self, name: &str, json: &Value) {
        let folder = self.dir.path().join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("function.json"), json.to_string()).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn recording(&self) -> PathBuf {
        self.dir.path().join("recording.jsonl")
    }

    fn options(&self, extra: &[(&str, &str)]) -> HostOptions {
        let mut options = HostOptions::new(self.path());
        options.run_timers = false;
        options.settings = BTreeMap::from([
            (
                "RECORDING_FILE".to_owned(),
                self.recording().display().to_string(),
            ),
            ("VERIFY_SCHEDULE".to_owned(), "0 0 0 1 1 *".to_owned()),
            ("APP_ARGUMENT".to_owned(), "expanded".to_owned()),
            ("APP_SECRET_SETTING".to_owned(), "s3cret".to_owned()),
        ]);
        for (key, value) in extra {
            options
                .settings
                .insert((*key).to_owned(), (*value).to_owned());
        }
        options
    }

    fn records(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(self.recording())
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|record| record["kind"] == kind)
            .collect()
    }
}

fn shared_fixture(name: &str) -> Option<Value> {
    let path = format!(
        "{}/../../shared/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).unwrap()),
        Err(error) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "shared fixture {path} is missing: {error}"
            );
            eprintln!("skipping: shared fixture {path} is missing ({error})");
            None
        }
    }
}

async fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

async fn post_event(
    host: &RunningHost,
    function: &str,
    event_type: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client.post(host.eventgrid_webhook_url(function)).json(body);
    if let Some(event_type) = event_type {
        request = request.header("aeg-event-type", event_type);
    }
    request.send().await.unwrap()
}

fn assert_host_headers(request: &Value, invocation_id: &str) {
    let headers = &request["headers"];
    assert_eq!(request["method"], "POST");
    assert_eq!(headers["x-azure-functions-invocationid"], invocation_id);
    assert!(
        headers["x-azure-functions-hostversion"]
            .as_str()
            .unwrap()
            .starts_with("4.")
    );
    assert_eq!(
        headers["user-agent"].as_str().unwrap(),
        format!(
            "Azure-Functions-Host/{}",
            headers["x-azure-functions-hostversion"].as_str().unwrap()
        )
    );
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert!(
        headers.get("accept-encoding").is_none(),
        "the host's HttpClient asks for no compression: {headers}"
    );
    assert_eq!(
        headers["transfer-encoding"], "chunked",
        "the body must be sent chunked"
    );
    assert!(
        headers.get("content-length").is_none(),
        "no Content-Length on a chunked body"
    );
    let traceparent = headers["traceparent"].as_str().unwrap();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01")
    );
}

fn assert_sys(metadata: &Value, function: &str) {
    let sys = &metadata["sys"];
    assert_eq!(sys["MethodName"], function);
    let now = OffsetDateTime::parse(sys["UtcNow"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!((OffsetDateTime::now_utc() - now).whole_seconds().abs() < 60);
    uuid::Uuid::parse_str(sys["RandGuid"].as_str().unwrap()).unwrap();
}

#[tokio::test]
async fn timer_invocation_and_process_environment_match_the_host() {
    let app = App::standard();
    let host = FunctionsHost::start(app.options(&[])).await.unwrap();

    let record = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert_eq!(record.status, InvocationStatus::Succeeded);
    assert_eq!(record.http_status, Some(200));
    assert_eq!(
        record.logs,
        vec![format!(
            "recording-handler handled VerifyAttachments {}",
            record.invocation_id
        )]
    );

    let requests = app.records("request");
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["path"], "/VerifyAttachments");
    assert_host_headers(request, &record.invocation_id);
    let body = &request["body"];
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["Data", "Metadata"]
    );
    let timer = &body["Data"]["timer"];
    assert_eq!(timer["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(timer["IsPastDue"], false);
    for field in ["Last", "Next", "LastUpdated"] {
        let text = timer["ScheduleStatus"][field].as_str().unwrap();
        assert!(text.ends_with("+00:00"), "{field}: {text}");
    }
    // Next is the schedule's next occurrence: 1 January, midnight.
    assert!(
        timer["ScheduleStatus"]["Next"]
            .as_str()
            .unwrap()
            .contains("-01-01T00:00:00+00:00")
    );
    assert_eq!(
        body["Metadata"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["sys"]
    );
    assert_sys(&body["Metadata"], "VerifyAttachments");
    assert_eq!(body, &record.request);

    let start = &app.records("start")[0];
    let env = &start["env"];
    assert_eq!(
        env["FUNCTIONS_CUSTOMHANDLER_PORT"],
        env["FUNCTIONS_HTTPWORKER_PORT"]
    );
    env["FUNCTIONS_CUSTOMHANDLER_PORT"]
        .as_str()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    uuid::Uuid::parse_str(env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"].as_str().unwrap()).unwrap();
    assert_eq!(env["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(
        Path::new(env["FUNCTIONS_APP_ROOT_PATH"].as_str().unwrap()),
        app.path()
    );
    assert_eq!(
        env["APP_SECRET_SETTING"], "s3cret",
        "app settings reach the handler"
    );
    assert_eq!(start["args"], json!(["serve", "--flag=expanded", ""]));
    assert_eq!(
        Path::new(start["cwd"].as_str().unwrap())
            .canonicalize()
            .unwrap(),
        app.path().canonicalize().unwrap()
    );

    assert!(wait_until(Duration::from_secs(2), || host.handler_output().len() >= 2).await);
    let output = host.handler_output();
    assert!(
        output
            .iter()
            .any(|l| l.stream == OutputStream::Stdout && l.line.contains("listening on 127.0.0.1"))
    );
    assert!(
        output
            .iter()
            .any(|l| l.stream == OutputStream::Stderr && l.line.contains("goes to stderr"))
    );
    assert!(
        !format!("{:?}", app.options(&[])).contains("s3cret"),
        "Debug must not print settings values"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn eventgrid_webhook_validates_handshakes_and_invokes_once_per_element_in_parallel() {
    let Some(fixture) =
        shared_fixture("docs_subscription-topic_eventgrid-schema_write_success.json")
    else {
        return;
    };
    let Some(validation) = shared_fixture("docs_subscription_validation_event.json") else {
        return;
    };
    let app = App::standard();
    let host =
        FunctionsHost::start(app.options(&[("RECORDING_MODE_OnResourceEvent", "sleep:1000")]))
            .await
            .unwrap();

    assert_eq!(
        post_event(&host, "OnResourceEvent", None, &fixture)
            .await
            .status(),
        400
    );
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Bogus"), &fixture)
            .await
            .status(),
        400
    );
    assert_eq!(
        post_event(&host, "NoSuchFunction", Some("Notification"), &fixture)
            .await
            .status(),
        404
    );
    assert_eq!(
        post_event(&host, "VerifyAttachments", Some("Notification"), &fixture)
            .await
            .status(),
        404
    );

    let answer = post_event(
        &host,
        "OnResourceEvent",
        Some("SubscriptionValidation"),
        &validation,
    )
    .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.json::<Value>().await.unwrap(),
        shared_fixture("docs_subscription_validation_response.json").unwrap()
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let options = client
        .request(
            reqwest::Method::OPTIONS,
            host.eventgrid_webhook_url("OnResourceEvent"),
        )
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), 200);
    assert_eq!(
        options.headers()["webhook-allowed-origin"],
        "eventgrid.azure.net"
    );
    assert!(
        app.records("request").is_empty(),
        "handshakes never reach the handler"
    );

    let mut second = fixture[0].clone();
    second["id"] = json!("second-event");
    let batch = json!([fixture[0].clone(), second.clone()]);
    let started = Instant::now();
    let answer = post_event(&host, "OnResourceEvent", Some("Notification"), &batch).await;
    assert_eq!(answer.status(), 202);
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "two 1 s invocations must run in parallel: {:?}",
        started.elapsed()
    );

    let requests = app.records("request");
    assert_eq!(requests.len(), 2);
    let invocations = host.invocations();
    for expected in [&fixture[0], &second] {
        let request = requests
            .iter()
            .find(|r| r["body"]["Data"]["event"]["id"] == expected["id"])
            .unwrap();
        assert_eq!(request["path"], "/OnResourceEvent");
        let invocation = invocations
            .iter()
            .find(|i| i.request["Data"]["event"]["id"] == expected["id"])
            .unwrap();
        assert_host_headers(request, &invocation.invocation_id);
        assert_eq!(
            &request["body"]["Data"]["event"], expected,
            "the event reaches the handler as a JSON object"
        );
        assert_eq!(request["body"]["Metadata"]["data"], expected["data"]);
        assert_eq!(
            request["body"]["Metadata"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["data", "sys"]
        );
        assert_sys(&request["body"]["Metadata"], "OnResourceEvent");
    }

    // A single (non-array) CloudEvents event is accepted too.
    let Some(cloud) = shared_fixture("specs_cloudevents_resource_write_success.json") else {
        return;
    };
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Notification"), &cloud)
            .await
            .status(),
        202
    );
    assert_eq!(app.records("request").len(), 3);
}

#[tokio::test]
async fn failing_invocation_answers_event_grid_500_and_4xx_is_a_failure() {
    let Some(fixture) =
        shared_fixture("docs_subscription-topic_eventgrid-schema_write_success.json")
    else {
        return;
    };
    let app = App::standard();
    let host = FunctionsHost::start(app.options(&[
        ("RECORDING_MODE_OnResourceEvent", "fail:1"),
        ("RECORDING_MODE_VerifyAttachments", "status:404"),
    ]))
    .await
    .unwrap();
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Notification"), &fixture)
            .await
            .status(),
        500
    );
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Notification"), &fixture)
            .await
            .status(),
        202
    );
    let invocations = host.invocations();
    assert!(
        matches!(&invocations[0].status, InvocationStatus::Failed { reason } if reason.contains("500"))
    );
    assert!(
        invocations[0].logs.is_empty(),
        "Logs of a failed answer are discarded"
    );
    assert!(invocations[1].succeeded());
    let timer = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert_eq!(timer.http_status, Some(404));
    assert!(!timer.succeeded());
    assert_eq!(host.restarts(), 0);
}

#[tokio::test]
async fn crashed_handler_is_restarted() {
    let Some(fixture) =
        shared_fixture("docs_subscription-topic_eventgrid-schema_write_success.json")
    else {
        return;
    };
    let app = App::standard();
    let host = FunctionsHost::start(app.options(&[("RECORDING_MODE", "crash:1")]))
        .await
        .unwrap();
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Notification"), &fixture)
            .await
            .status(),
        500
    );
    assert!(wait_until(Duration::from_secs(10), || host.restarts() == 1).await);
    host.wait_ready().await.unwrap();
    assert_eq!(
        post_event(&host, "OnResourceEvent", Some("Notification"), &fixture)
            .await
            .status(),
        202
    );
    let starts = app.records("start");
    assert_eq!(starts.len(), 2);
    assert_ne!(starts[0]["pid"], starts[1]["pid"]);
    assert_ne!(
        starts[0]["env"]["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"],
        starts[1]["env"]["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]
    );
    assert!(
        host.handler_output()
            .iter()
            .any(|l| l.stream == OutputStream::Stderr
                && l.line.contains("crashing on purpose")
                && l.generation == 1)
    );
    assert_eq!(host.stopped_reason(), None);
}

#[tokio::test]
async fn three_crashes_within_the_window_shut_the_host_down() {
    let app = App::standard();
    let error = FunctionsHost::start(app.options(&[("RECORDING_CRASH_ON_START", "1")]))
        .await
        .unwrap_err();
    let HostError::Stopped(reason) = error else {
        panic!("unexpected error {error}")
    };
    assert!(reason.contains("failed 3 times"), "{reason}");
    assert_eq!(app.records("start").len(), 3);
}

#[tokio::test]
async fn startup_gives_up_when_the_handler_never_listens() {
    let app = App::standard();
    let mut options = app.options(&[("RECORDING_STARTUP_DELAY_MS", "60000")]);
    options.startup_timeout = Duration::from_millis(300);
    options.max_crashes = 1;
    let error = FunctionsHost::start(options).await.unwrap_err().to_string();
    assert!(
        error.contains("Initializing HttpWorker timed out"),
        "{error}"
    );
}

#[tokio::test]
async fn empty_2xx_body_hangs_until_function_timeout_and_the_handler_is_restarted() {
    let app = App::new(&json!({
        "version": "2.0",
        "functionTimeout": "00:00:01",
        "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
        "customHandler": {"description": {"defaultExecutablePath": HANDLER}}
    }));
    let host = FunctionsHost::start(app.options(&[("RECORDING_MODE", "empty:1")]))
        .await
        .unwrap();
    let record = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert_eq!(record.status, InvocationStatus::TimedOut);
    assert!(
        record.duration >= Duration::from_secs(1) && record.duration < Duration::from_secs(3),
        "{:?}",
        record.duration
    );
    assert!(wait_until(Duration::from_secs(10), || host.restarts() == 1).await);
    let next = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert!(next.succeeded(), "{next:?}");
    assert_eq!(app.records("start").len(), 2);
}

#[tokio::test]
async fn timer_fires_on_its_schedule_and_admin_api_runs_it_now() {
    let app = App::standard();
    let mut options = app.options(&[("VERIFY_SCHEDULE", "*/1 * * * * *")]);
    options.run_timers = true;
    let host = FunctionsHost::start(options).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || host.invocations().len() >= 2).await);
    let invocations = host.invocations();
    let first = OffsetDateTime::parse(
        invocations[0].request["Metadata"]["sys"]["UtcNow"]
            .as_str()
            .unwrap(),
        &Rfc3339,
    )
    .unwrap();
    let second = OffsetDateTime::parse(
        invocations[1].request["Metadata"]["sys"]["UtcNow"]
            .as_str()
            .unwrap(),
        &Rfc3339,
    )
    .unwrap();
    assert!(
        second - first >= time::Duration::milliseconds(900),
        "{first} {second}"
    );
    assert_eq!(invocations[1].request["Data"]["timer"]["IsPastDue"], false);
    // A schedule that fires more than once a minute gets no monitor, so no ScheduleStatus.
    assert_eq!(
        invocations[1].request["Data"]["timer"]["ScheduleStatus"],
        Value::Null
    );
    assert_eq!(host.schedule_status("VerifyAttachments"), None);

    let before = host.invocations().len();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer = client
        .post(format!(
            "{}/admin/functions/VerifyAttachments",
            host.base_url()
        ))
        .json(&json!({"input": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let answer = client
        .post(format!("{}/admin/functions/Nope", host.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    assert!(wait_until(Duration::from_secs(3), || host.invocations().len() > before).await);
    let status = client
        .get(format!("{}/admin/host/status", host.base_url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(status["state"], "Running");
}

#[tokio::test]
async fn a_run_missed_while_the_host_was_down_is_past_due() {
    let app = App::standard();
    let state = tempfile::tempdir().unwrap();
    let missed = (OffsetDateTime::now_utc() - time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap();
    let format = |at: OffsetDateTime| at.format(&Rfc3339).unwrap();
    std::fs::write(
        state.path().join("VerifyAttachments.status.json"),
        json!({"Last": format(missed - time::Duration::days(1)), "Next": format(missed), "LastUpdated": format(missed - time::Duration::days(1))}).to_string(),
    )
    .unwrap();
    let mut options = app.options(&[]);
    options.run_timers = true;
    options.schedule_state_dir = Some(state.path().to_owned());
    let host = FunctionsHost::start(options).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || !host.invocations().is_empty()).await);
    let timer = &host.invocations()[0].request["Data"]["timer"];
    assert_eq!(timer["IsPastDue"], true);
    assert_eq!(
        timer["ScheduleStatus"]["Next"].as_str().unwrap(),
        azure_emulator::functions_host::wire::format_datetime_offset(missed)
    );
    // The status is brought up to date and persisted.
    assert!(
        wait_until(Duration::from_secs(2), || host
            .schedule_status("VerifyAttachments")
            .is_some_and(|s| s.next > OffsetDateTime::now_utc()))
        .await
    );
    let status = host.schedule_status("VerifyAttachments").unwrap();
    assert_eq!(status.last_updated, status.last);
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("VerifyAttachments.status.json")).unwrap(),
    )
    .unwrap();
    assert!(
        OffsetDateTime::parse(stored["Next"].as_str().unwrap(), &Rfc3339).unwrap()
            > OffsetDateTime::now_utc()
    );
}

#[tokio::test]
async fn repository_layout_and_invalid_apps() {
    // This repository's layout: host.json at the root, function folders under function-app/.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("host.json"),
        json!({"version": "2.0", "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
               "customHandler": {"description": {"defaultExecutablePath": "does-not-matter"}}})
        .to_string(),
    )
    .unwrap();
    let folder = dir.path().join("function-app").join("OnResourceEvent");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": [{"name": "event", "type": "eventGridTrigger", "direction": "in"}]})
            .to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("local.settings.json"), json!({"IsEncrypted": false, "Values": {"FUNCTIONS_WORKER_RUNTIME": "custom", "FROM_FILE": "yes"}}).to_string()).unwrap();
    let recording = dir.path().join("recording.jsonl");
    let mut options = HostOptions::new(dir.path());
    options.handler_command = Some(vec![HANDLER.to_owned(), "serve".to_owned()]);
    options
        .settings
        .insert("RECORDING_FILE".into(), recording.display().to_string());
    let host = FunctionsHost::start(options.clone()).await.unwrap();
    assert_eq!(
        host.functions()
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["OnResourceEvent"]
    );
    let start: Value = serde_json::from_str(
        std::fs::read_to_string(&recording)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(start["args"], json!(["serve"]));
    drop(host);

    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": [{"name": "q", "type": "queueTrigger", "direction": "in"}]}).to_string(),
    )
    .unwrap();
    let error = FunctionsHost::start(options.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("OnResourceEvent") && error.contains("'queueTrigger' are not registered"),
        "{error}"
    );
    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": []}).to_string(),
    )
    .unwrap();
    let error = FunctionsHost::start(options.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("no trigger binding"), "{error}");
    std::fs::write(folder.join("function.json"), "{not json").unwrap();
    assert!(matches!(
        FunctionsHost::start(options.clone()).await,
        Err(HostError::Config(_))
    ));
    std::fs::write(
        folder.join("function.json"),
        json!({"bindings": [{"name": "event", "type": "eventGridTrigger"}]}).to_string(),
    )
    .unwrap();
    options
        .settings
        .insert("FUNCTIONS_WORKER_RUNTIME".into(), "dotnet".into());
    assert!(matches!(
        FunctionsHost::start(options.clone()).await,
        Err(HostError::WorkerRuntime(_))
    ));
}

#[tokio::test]
async fn this_repository_app_root_loads_with_its_function_app_layout() {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    if !root.join("host.json").is_file() || !root.join("function-app").is_dir() {
        eprintln!("skipping: the repository has no host.json or function-app/ yet");
        return;
    }
    let recording = tempfile::tempdir().unwrap();
    let mut options = HostOptions::new(root);
    options.handler_command = Some(vec![HANDLER.to_owned()]);
    options.run_timers = false;
    options.settings = BTreeMap::from([
        (
            "AUTOATTACH_VERIFY_SCHEDULE".to_owned(),
            "0 */30 * * * *".to_owned(),
        ),
        (
            "RECORDING_FILE".to_owned(),
            recording.path().join("r.jsonl").display().to_string(),
        ),
    ]);
    let host = FunctionsHost::start(options).await.unwrap();
    let mut names: Vec<(&str, &str, &str)> = host
        .functions()
        .iter()
        .map(|f| (f.name.as_str(), f.trigger_type(), f.binding_name.as_str()))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            ("OnResourceEvent", "eventGridTrigger", "event"),
            ("VerifyAttachments", "timerTrigger", "timer")
        ]
    );
    let record = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert!(record.succeeded(), "{record:?}");
    assert!(
        record.request["Data"]["timer"]["ScheduleStatus"]["Next"]
            .as_str()
            .unwrap()
            .contains(":00:00+00:00")
            || record.request["Data"]["timer"]["ScheduleStatus"]["Next"]
                .as_str()
                .unwrap()
                .contains(":30:00+00:00")
    );
}

/// An app whose timer schedule is `%VERIFY_SCHEDULE%`, with the given process environment and no explicit
/// settings: the schedule must come from the environment or local.settings.json, as with the real host.
fn options_without_explicit_settings(app: &App, environment: &[(&str, &str)]) -> HostOptions {
    let mut options = HostOptions::new(app.path());
    options.run_timers = false;
    options
        .environment
        .retain(|name, _| name != "VERIFY_SCHEDULE" && !name.starts_with("APP_"));
    options.environment.insert(
        "RECORDING_FILE".to_owned(),
        app.recording().display().to_string(),
    );
    for (name, value) in environment {
        options
            .environment
            .insert((*name).to_owned(), (*value).to_owned());
    }
    options
}

fn next_month(host: &RunningHost) -> time::Month {
    host.schedule_status("VerifyAttachments")
        .unwrap()
        .next
        .month()
}

#[tokio::test]
async fn app_settings_come_from_the_environment_then_local_settings_json() {
    let app = App::standard();
    assert!(!app.path().join("local.settings.json").exists());

    // Neither source: the start fails with one line naming the setting and how to set it.
    let error = FunctionsHost::start(options_without_explicit_settings(&app, &[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("'%VERIFY_SCHEDULE%' does not resolve")
            && error.contains("export VERIFY_SCHEDULE=")
            && error.contains("local.settings.json")
            && !error.contains('\n'),
        "{error}"
    );

    // The environment alone (no local.settings.json) resolves the timer, and reaches the handler.
    let host = FunctionsHost::start(options_without_explicit_settings(
        &app,
        &[("VERIFY_SCHEDULE", "0 0 0 1 1 *"), ("APP_SOURCE", "env")],
    ))
    .await
    .unwrap();
    assert_eq!(next_month(&host), time::Month::January);
    assert!(
        host.invoke_timer("VerifyAttachments")
            .await
            .unwrap()
            .succeeded()
    );
    assert_eq!(app.records("start")[0]["env"]["APP_SOURCE"], "env");
    host.shutdown().await;

    // local.settings.json alone resolves it.
    std::fs::write(
        app.path().join("local.settings.json"),
        json!({"IsEncrypted": false, "Values": {"VERIFY_SCHEDULE": "0 0 0 1 7 *", "APP_SOURCE": "file", "APP_FILE_ONLY": "file"}}).to_string(),
    )
    .unwrap();
    let host = FunctionsHost::start(options_without_explicit_settings(&app, &[]))
        .await
        .unwrap();
    assert_eq!(next_month(&host), time::Month::July);
    assert_eq!(app.records("start")[1]["env"]["APP_SOURCE"], "file");
    host.shutdown().await;

    // Both: the environment wins, for the schedule and for what the handler sees; the file fills the rest.
    let host = FunctionsHost::start(options_without_explicit_settings(
        &app,
        &[("VERIFY_SCHEDULE", "0 0 0 1 1 *"), ("APP_SOURCE", "env")],
    ))
    .await
    .unwrap();
    assert_eq!(next_month(&host), time::Month::January);
    let start = &app.records("start")[2]["env"];
    assert_eq!(start["APP_SOURCE"], "env");
    assert_eq!(start["APP_FILE_ONLY"], "file");
    host.shutdown().await;

    // An explicit setting (`--setting`) wins over both.
    let mut options =
        options_without_explicit_settings(&app, &[("VERIFY_SCHEDULE", "0 0 0 1 1 *")]);
    options
        .settings
        .insert("VERIFY_SCHEDULE".into(), "0 0 0 1 3 *".into());
    let host = FunctionsHost::start(options).await.unwrap();
    assert_eq!(next_month(&host), time::Month::March);
    host.shutdown().await;
}

/// Sends `body` to `url` with `aeg-event-type: Notification` (and `x-functions-key` when given).
async fn post_to(url: &str, key_header: Option<&str>, body: &Value) -> u16 {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut request = client
        .post(url)
        .header("aeg-event-type", "Notification")
        .json(body);
    if let Some(key) = key_header {
        request = request.header("x-functions-key", key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn webhook_requires_a_key_and_the_exact_function_name() {
    let Some(fixture) =
        shared_fixture("docs_subscription-topic_eventgrid-schema_write_success.json")
    else {
        return;
    };
    let app = App::standard();
    let host = FunctionsHost::start(app.options(&[])).await.unwrap();
    let base = host.base_url();
    let event_key = host.eventgrid_extension_key().to_owned();
    let master = host.master_key().to_owned();
    assert_ne!(event_key, master);
    assert!(event_key.len() >= 32 && master.len() >= 32);
    assert!(
        host.eventgrid_webhook_url("OnResourceEvent")
            .ends_with(&format!("?functionName=OnResourceEvent&code={event_key}"))
    );
    let webhook = |query: &str| format!("{base}/runtime/webhooks/eventgrid?{query}");

    // No key, a wrong key, or another extension's key: 401, before the function name is even looked at.
    assert_eq!(
        post_to(&webhook("functionName=OnResourceEvent"), None, &fixture).await,
        401
    );
    assert_eq!(
        post_to(
            &webhook("functionName=OnResourceEvent&code=nope"),
            None,
            &fixture
        )
        .await,
        401
    );
    assert_eq!(
        post_to(&webhook("functionName=Nope"), None, &fixture).await,
        401
    );
    assert_eq!(
        post_to(
            &format!(
                "{base}/runtime/webhooks/servicebus?functionName=OnResourceEvent&code={event_key}"
            ),
            None,
            &fixture
        )
        .await,
        401
    );
    // x-functions-key wins over code=.
    assert_eq!(
        post_to(
            &webhook(&format!("functionName=OnResourceEvent&code={event_key}")),
            Some("nope"),
            &fixture
        )
        .await,
        401
    );
    assert!(app.records("request").is_empty());

    // The system key or the master key, as code= or x-functions-key; the extension name in any case.
    assert_eq!(
        post_to(
            &webhook(&format!("functionName=OnResourceEvent&code={event_key}")),
            None,
            &fixture
        )
        .await,
        202
    );
    assert_eq!(
        post_to(
            &webhook(&format!("functionName=OnResourceEvent&code={master}")),
            None,
            &fixture
        )
        .await,
        202
    );
    assert_eq!(
        post_to(
            &webhook("functionName=OnResourceEvent"),
            Some(&event_key),
            &fixture
        )
        .await,
        202
    );
    assert_eq!(
        post_to(
            &format!(
                "{base}/runtime/webhooks/EventGrid?functionName=OnResourceEvent&code={event_key}"
            ),
            None,
            &fixture
        )
        .await,
        202
    );
    assert_eq!(app.records("request").len(), 4);

    // The function name is matched exactly; an unknown extension is 404 with the master key.
    assert_eq!(
        post_to(
            &webhook(&format!("functionName=onresourceevent&code={event_key}")),
            None,
            &fixture
        )
        .await,
        404
    );
    assert_eq!(
        post_to(
            &webhook(&format!("functionName=ONRESOURCEEVENT&code={master}")),
            None,
            &fixture
        )
        .await,
        404
    );
    assert_eq!(
        post_to(
            &format!(
                "{base}/runtime/webhooks/servicebus?functionName=OnResourceEvent&code={master}"
            ),
            None,
            &fixture
        )
        .await,
        404
    );
    // The admin API (and the library) still find functions in any case, as the host's function lookup does.
    assert!(
        host.invoke_timer("verifyattachments")
            .await
            .unwrap()
            .succeeded()
    );

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = host.eventgrid_webhook_url("OnResourceEvent");
    // Unsubscribe: 202, nothing invoked.
    let before = app.records("request").len();
    let unsubscribe = client
        .post(&url)
        .header("aeg-event-type", "Unsubscribe")
        .json(&fixture)
        .send()
        .await
        .unwrap();
    assert_eq!(unsubscribe.status(), 202);
    assert_eq!(app.records("request").len(), before);
    // OPTIONS is always 200; only a known Event Grid origin is echoed, and no rate is granted.
    for (origin, allowed) in [
        (None, "eventgrid.azure.net"),
        (Some("eventgrid.azure.us"), "eventgrid.azure.us"),
        (Some("attacker.example"), "eventgrid.azure.net"),
    ] {
        let mut request = client.request(reqwest::Method::OPTIONS, &url);
        if let Some(origin) = origin {
            request = request.header("WebHook-Request-Origin", origin);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 200, "{origin:?}");
        assert_eq!(answer.headers()["webhook-allowed-origin"], allowed);
        assert!(answer.headers().get("webhook-allowed-rate").is_none());
    }
    let options_without_key = client
        .request(
            reqwest::Method::OPTIONS,
            webhook("functionName=OnResourceEvent"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(options_without_key.status(), 401);
    let patch = client.patch(&url).send().await.unwrap();
    assert_eq!(patch.status(), 405);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_outlives_event_grids_timeout_and_the_redelivery_runs_beside_it() {
    use azure_emulator::bus::{ArmEvent, ArmOperationKind, EventBus};
    use azure_emulator::eventgrid::{
        DeliveryOutcome, EventSubscription, Publisher, PublisherConfig,
    };

    let app = App::standard();
    // The first invocation takes 1.5 s; Event Grid gives up after 300 ms and retries 100 ms later.
    let host = FunctionsHost::start(
        app.options(&[("RECORDING_MODE_OnResourceEvent", "sleep-first:1500")]),
    )
    .await
    .unwrap();
    let bus = EventBus::new();
    let publisher = Publisher::start(
        &bus,
        PublisherConfig {
            retry_time_scale: 0.01,
            delivery_timeout: Duration::from_millis(300),
            ..PublisherConfig::default()
        },
    );
    publisher
        .subscribe(EventSubscription::new(
            "overlap",
            host.eventgrid_webhook_url("OnResourceEvent"),
        ))
        .await
        .unwrap();
    bus.publish(&ArmEvent {
        kind: ArmOperationKind::Write,
        resource_uri: "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1".into(),
        operation_name: "Microsoft.ContainerRegistry/registries/write".into(),
        subscription_id: "s1".into(),
        tenant_id: "t1".into(),
        correlation_id: "c1".into(),
        claims: BTreeMap::new(),
        authorization_action: String::new(),
        authorization_scope: String::new(),
        http_method: "PUT".into(),
        url: "https://management.azure.com/x?api-version=2025-04-01".into(),
        time: OffsetDateTime::now_utc(),
        resource_body: None,
    });
    assert!(publisher.wait_idle(Duration::from_secs(10)).await);
    let deliveries = publisher.deliveries();
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    assert_eq!(deliveries[0].outcome, DeliveryOutcome::TimedOut);
    assert_eq!(deliveries[1].outcome, DeliveryOutcome::Delivered);

    // The first invocation was not dropped with Event Grid's request: it ran to completion.
    assert!(
        wait_until(Duration::from_secs(5), || host.invocations().len() == 2).await,
        "{:?}",
        host.invocations()
    );
    let invocations = host.invocations();
    assert!(
        invocations.iter().all(InvocationRecord::succeeded),
        "{invocations:?}"
    );
    let (first, retry) = if invocations[0].started_at <= invocations[1].started_at {
        (&invocations[0], &invocations[1])
    } else {
        (&invocations[1], &invocations[0])
    };
    assert_eq!(
        first.request["Data"]["event"]["id"],
        retry.request["Data"]["event"]["id"]
    );
    assert!(first.duration >= Duration::from_millis(1500));
    let first_end = first.started_at + first.duration;
    assert!(
        retry.started_at < first_end,
        "the redelivery ran while the first invocation was still running: {first:?} {retry:?}"
    );
    // The handler saw both requests, with the same event.
    let requests = app.records("request");
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0]["body"]["Data"]["event"]["id"],
        requests[1]["body"]["Data"]["event"]["id"]
    );
    host.shutdown().await;
}

#[tokio::test]
async fn exit_code_0_is_not_restarted_and_every_invocation_then_fails() {
    let app = App::standard();
    let host = FunctionsHost::start(app.options(&[("RECORDING_MODE_OnResourceEvent", "exit:0")]))
        .await
        .unwrap();
    let first = host
        .invoke_event("OnResourceEvent", json!({"id": "e1", "data": {}}))
        .await
        .unwrap();
    assert!(!first.succeeded());
    // Give a (wrong) restart every chance to happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let timer = host.invoke_timer("VerifyAttachments").await.unwrap();
    assert!(
        matches!(&timer.status, InvocationStatus::Failed { reason } if reason.contains("request to the handler failed")),
        "{timer:?}"
    );
    assert_eq!(host.restarts(), 0);
    assert_eq!(host.stopped_reason(), None, "a clean exit is not a crash");
    assert_eq!(app.records("start").len(), 1);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let status: Value = client
        .get(format!("{}/admin/host/status", host.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "Running");
    host.shutdown().await;
}

#[tokio::test]
async fn exit_code_200_restarts_without_counting_as_a_crash() {
    let app = App::standard();
    let mut options = app.options(&[("RECORDING_MODE_OnResourceEvent", "exit:200")]);
    // One crash would stop the host; exit 200 is not one.
    options.max_crashes = 1;
    let host = FunctionsHost::start(options).await.unwrap();
    for round in 1..=2 {
        let record = host
            .invoke_event(
                "OnResourceEvent",
                json!({"id": format!("e{round}"), "data": {}}),
            )
            .await
            .unwrap();
        assert!(!record.succeeded());
        assert!(wait_until(Duration::from_secs(10), || host.restarts() == round).await);
        host.wait_ready().await.unwrap();
    }
    assert_eq!(host.stopped_reason(), None);
    assert!(
        host.invoke_timer("VerifyAttachments")
            .await
            .unwrap()
            .succeeded()
    );
    assert_eq!(app.records("start").len(), 3);
    host.shutdown().await;

    // The same with any other code is a crash, and max_crashes = 1 stops the host.
    let app = App::standard();
    let mut options = app.options(&[("RECORDING_MODE_OnResourceEvent", "exit:1")]);
    options.max_crashes = 1;
    let host = FunctionsHost::start(options).await.unwrap();
    let record = host
        .invoke_event("OnResourceEvent", json!({"id": "e", "data": {}}))
        .await
        .unwrap();
    assert!(!record.succeeded());
    let reason = tokio::time::timeout(Duration::from_secs(10), host.wait_stopped())
        .await
        .unwrap();
    assert!(reason.contains("failed 1 times"), "{reason}");
}

#[tokio::test]
async fn five_field_schedules_are_accepted_like_the_timer_extension() {
    let app = App::standard();
    // {minute} {hour} {day} {month} {day-of-week}: midnight on 1 January.
    let host = FunctionsHost::start(app.options(&[("VERIFY_SCHEDULE", "0 0 1 1 *")]))
        .await
        .unwrap();
    let next = host.schedule_status("VerifyAttachments").unwrap().next;
    assert_eq!(
        (
            next.month(),
            next.day(),
            next.hour(),
            next.minute(),
            next.second()
        ),
        (time::Month::January, 1, 0, 0, 0)
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_run_on_startup_updates_the_status_with_last_updated_equal_to_last() {
    let app = App::standard();
    app.function(
        "VerifyAttachments",
        &json!({"bindings": [{"name": "timer", "type": "timerTrigger", "direction": "in", "schedule": "%VERIFY_SCHEDULE%", "runOnStartup": true}]}),
    );
    let mut options = app.options(&[]);
    options.run_timers = true;
    let before = OffsetDateTime::now_utc();
    let host = FunctionsHost::start(options).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || host
            .schedule_status("VerifyAttachments")
            .is_some_and(|s| s.last >= before))
        .await,
        "{:?}",
        host.schedule_status("VerifyAttachments")
    );
    let sent = &host.invocations()[0].request["Data"]["timer"];
    assert_eq!(sent["IsPastDue"], false);
    // Before the first run: Last is DateTime's default, LastUpdated the start.
    assert!(
        sent["ScheduleStatus"]["Last"]
            .as_str()
            .unwrap()
            .starts_with("0001-01-01T00:00:00")
    );
    let status = host.schedule_status("VerifyAttachments").unwrap();
    assert_eq!(status.last_updated, status.last);
    assert!(status.last <= OffsetDateTime::now_utc());
    assert_eq!(
        (status.next.month(), status.next.day(), status.next.hour()),
        (time::Month::January, 1, 0)
    );
    assert!(status.next > status.last);
    host.shutdown().await;
}
