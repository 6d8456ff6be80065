//! The real handler's telemetry, decoded from exported OTLP protobuf: against the in-process emulator, a timer
//! run whose role-assignment PUT is refused (the handler lost its write right) exports a `PUT roleAssignments`
//! client span in ERROR with `error.type` 403, built by the Azure client itself; a timer run that cannot
//! inventory (every ARM request answers 503) ends its invocation span ERROR with `error.type`
//! `inventory_failed` and the 200 the host saw.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/telemetry_receivers.rs"]
mod receivers;

use std::sync::Arc;
use std::time::Duration;

use acr_autoattach::runtime::bootstrap::{Settings, handler_with_credential};
use acr_autoattach::runtime::config::MapEnv;
use acr_autoattach::runtime::contract::{FunctionName, Invocation, InvocationRequest};
use acr_autoattach::telemetry::{self, ProcessInfo};
use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::credential::AppServiceCredential;
use azure_emulator::rbac::RBAC_ADMINISTRATOR;
use azure_emulator::{Emulator, EmulatorConfig};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::Span;

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn timer_invocation(id: &str) -> Invocation {
    Invocation {
        function: FunctionName::VerifyAttachments,
        invocation_id: id.to_owned(),
        traceparent: None,
        request: InvocationRequest::from_body(
            br#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":null,"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"VerifyAttachments","UtcNow":"2026-12-01T06:30:00.004Z","RandGuid":"x"}}}"#,
        ),
    }
}

fn spans(receiver: &receivers::TelemetryReceiver) -> Vec<Span> {
    receiver
        .traces()
        .into_iter()
        .flat_map(|t| t.resource_spans)
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans)
        .collect()
}

// Current-thread runtime: the scoped subscriber sees every span the handler makes.
#[tokio::test(flavor = "current_thread")]
async fn the_real_handler_exports_a_403_client_span_and_a_failed_run() {
    let receiver = receivers::TelemetryReceiver::start();
    let emulator = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let admin = ArmAdmin::new(emulator.base_url(), emulator.control().admin_token());
    let s1 = emulator.control().subscriptions()[0].clone();
    admin
        .put_resource_group(&s1, "rg", "westeurope")
        .await
        .unwrap();
    admin
        .put_registry(&RegistrySpec::new(&s1, "rg", "acrshared").tag("acr-autoattach", "*"))
        .await
        .unwrap();
    let cluster = ClusterSpec::new(&s1, "rg", "aks-1");
    admin.put_cluster(&cluster).await.unwrap();
    admin
        .wait_cluster_succeeded(&cluster.id(), Duration::from_secs(20))
        .await
        .unwrap();
    // The handler loses its write right: the repair PUT is refused with 403.
    let handler = emulator
        .control()
        .handler_principal_id()
        .to_ascii_lowercase();
    let scope = format!("/subscriptions/{s1}");
    for a in admin.list_role_assignments(&scope).await.unwrap() {
        let principal = a["properties"]["principalId"].as_str().unwrap_or_default();
        let role = a["properties"]["roleDefinitionId"]
            .as_str()
            .unwrap_or_default();
        if principal.eq_ignore_ascii_case(&handler) && role.ends_with(RBAC_ADMINISTRATOR) {
            admin
                .delete_role_assignment(a["id"].as_str().unwrap())
                .await
                .unwrap();
        }
    }

    let mut env = emulator.env();
    env.push(("AUTOATTACH_VERIFY_BUDGET_SECS".into(), "4".into()));
    env.push(("AUTOATTACH_TOKEN_NO_RETRY".into(), "true".into()));
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.url()));
    let settings = Settings::from_env(&MapEnv::new(env.clone())).unwrap();
    let (guard, _subscriber) = telemetry::init_scoped(
        &settings.telemetry,
        &ProcessInfo::from_env(&|k| match k {
            "WEBSITE_SITE_NAME" => Some("func-attach".to_owned()),
            _ => None,
        }),
        std::io::sink,
    )
    .unwrap();
    let guard = Arc::new(guard);
    let credential = Arc::new(AppServiceCredential::from_env_pairs(&env).unwrap());
    let handler = handler_with_credential(&settings, credential, Some(guard.clone())).unwrap();

    let answer = handler.invoke(timer_invocation("inv-403")).await;
    assert!(answer.is_ok(), "{answer:?}");
    let all = spans(&receiver);
    let put = all
        .iter()
        .find(|s| s.name == "PUT roleAssignments")
        .unwrap_or_else(|| panic!("{:?}", all.iter().map(|s| &s.name).collect::<Vec<_>>()));
    assert_eq!(put.kind, 3, "client");
    assert!(matches!(
        attr(&put.attributes, "http.response.status_code"),
        Some(Value::IntValue(403))
    ));
    assert!(matches!(
        attr(&put.attributes, "error.type"),
        Some(Value::StringValue(s)) if s == "403"
    ));
    assert_eq!(put.status.as_ref().map(|s| s.code), Some(2), "ERROR");
    assert!(matches!(
        attr(&put.attributes, "server.port"),
        Some(Value::IntValue(_))
    ));
    let url = match attr(&put.attributes, "url.full") {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(url.contains("api-version="), "{url}");
    let run = all
        .iter()
        .find(|s| s.name == "func-attach/VerifyAttachments")
        .expect("invocation span");
    assert_eq!(put.trace_id, run.trace_id);
    assert!(matches!(
        attr(&run.attributes, "faas.time"),
        Some(Value::StringValue(s)) if s.starts_with("2026-12-01T06:30:00")
    ));

    // Every ARM request fails: the run cannot inventory, so it fails the invocation (500: never green while
    // blind, issue 10 rule 7) and says why on its span.
    emulator.control().update_faults(|f| f.error_rate = 1.0);
    let answer = handler.invoke(timer_invocation("inv-down")).await;
    assert!(answer.is_err(), "{answer:?}");
    let down = spans(&receiver)
        .into_iter()
        .find(|s| {
            s.name == "func-attach/VerifyAttachments"
                && matches!(attr(&s.attributes, "faas.invocation_id"), Some(Value::StringValue(i)) if i == "inv-down")
        })
        .expect("the failed run's span");
    assert_eq!(down.status.as_ref().map(|s| s.code), Some(2), "ERROR");
    assert!(matches!(
        attr(&down.attributes, "error.type"),
        Some(Value::StringValue(s)) if s == "inventory_failed"
    ));
    assert!(matches!(
        attr(&down.attributes, "http.response.status_code"),
        Some(Value::IntValue(500))
    ));
    emulator.shutdown().await;
}
