//! Helpers shared by the end-to-end tests: the testbed with this crate's handler binary, and estate
//! assertions read back from ARM as a person would.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use acr_autoattach::cli::testbed::{Testbed, TestbedOptions};
use acr_autoattach::core::model::{ACR_PULL_GUID, OWNERSHIP_MARK, REPOSITORY_READER_GUID};
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_acr-autoattach");

pub fn options() -> TestbedOptions {
    TestbedOptions::for_tests(vec![BIN.to_owned(), "serve".to_owned()])
}

pub async fn start(options: TestbedOptions) -> Testbed {
    Testbed::start(options).await.expect("testbed starts")
}

pub fn sub(bed: &Testbed, index: usize) -> String {
    bed.emulator.control().subscriptions()[index].clone()
}

pub async fn rg(bed: &Testbed, subscription: &str, name: &str) {
    bed.admin
        .put_resource_group(subscription, name, "westeurope")
        .await
        .unwrap();
}

pub async fn registry(bed: &Testbed, spec: RegistrySpec) -> String {
    bed.admin.put_registry(&spec).await.unwrap();
    spec.id()
}

/// Creates a cluster and waits until it is provisioned; returns (id, kubelet object id).
pub async fn cluster(bed: &Testbed, spec: ClusterSpec) -> (String, String) {
    bed.admin.put_cluster(&spec).await.unwrap();
    let body = bed
        .admin
        .wait_cluster_succeeded(&spec.id(), Duration::from_secs(20))
        .await
        .unwrap();
    let object_id = body["properties"]["identityProfile"]["kubeletidentity"]["objectId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (spec.id(), object_id)
}

/// Waits for Event Grid to go idle (every delivery and retry done).
pub async fn settle(bed: &Testbed) {
    assert!(
        bed.wait_idle(Duration::from_mins(1)).await,
        "event grid did not go idle"
    );
}

/// Role assignments at exactly `scope`.
pub async fn assignments_at(bed: &Testbed, scope: &str) -> Vec<Value> {
    bed.admin
        .list_role_assignments(scope)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| {
            a["properties"]["scope"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(scope))
        })
        .collect()
}

pub fn role_guid(a: &Value) -> String {
    a["properties"]["roleDefinitionId"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub fn principal(a: &Value) -> String {
    a["properties"]["principalId"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub fn is_owned(a: &Value) -> bool {
    a["properties"]["description"]
        .as_str()
        .is_some_and(|d| d.starts_with(OWNERSHIP_MARK))
}

/// The pull assignments of `principal_id` at `registry`: (role guid, owned).
pub async fn pulls(bed: &Testbed, registry: &str, principal_id: &str) -> Vec<(String, bool)> {
    assignments_at(bed, registry)
        .await
        .iter()
        .filter(|a| principal(a) == principal_id.to_ascii_lowercase())
        .filter(|a| [ACR_PULL_GUID, REPOSITORY_READER_GUID].contains(&role_guid(a).as_str()))
        .map(|a| (role_guid(a), is_owned(a)))
        .collect()
}

/// Prints what the host saw (for failing tests).
pub fn dump(bed: &Testbed) {
    for inv in bed.host.invocations() {
        eprintln!("invocation {inv:?}");
    }
    for line in bed.host.handler_output() {
        eprintln!("handler: {line:?}");
    }
}

/// Exactly one pull assignment of `principal_id` at `registry`: ours (ownership mark), with `role_guid`.
pub async fn assert_attached(bed: &Testbed, registry: &str, principal_id: &str, role_guid: &str) {
    assert_eq!(
        pulls(bed, registry, principal_id).await,
        vec![(role_guid.to_owned(), true)],
        "{principal_id} at {registry}"
    );
}
