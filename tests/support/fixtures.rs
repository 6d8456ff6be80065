//! Builders of core values for integration tests, in one place (unit tests use `src/core/fixtures.rs`;
//! whole estates go through the emulator: `estate.rs`). Include with
//! `#[path = "support/fixtures.rs"] mod fixtures;`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use acr_autoattach::core::model::{PairResult, PairStatus, PullRole, ResourceId};
use serde_json::Value;

/// `/subscriptions/{sub}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/{name}`.
pub fn cluster_id(sub: &str, name: &str) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{sub}/resourceGroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/{name}"
    ))
    .unwrap()
}

/// `/subscriptions/{sub}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/{name}`.
pub fn registry_id(sub: &str, name: &str) -> ResourceId {
    ResourceId::parse(&format!(
        "/subscriptions/{sub}/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/{name}"
    ))
    .unwrap()
}

/// An AcrPull pair result for `principal-{cluster name}`, without reason, assignment or latency.
pub fn pair(cluster: ResourceId, registry: ResourceId, status: PairStatus) -> PairResult {
    PairResult {
        principal_id: Some(format!("principal-{}", cluster.name()).into()),
        cluster_id: cluster,
        registry_id: registry,
        role: Some(PullRole::AcrPull),
        status,
        reason: None,
        assignment_id: None,
        latency_seconds: None,
        failure: None,
    }
}

/// A recorded event from `../shared/fixtures/events/{name}`; `None` (skipped, with a note) when the shared
/// fixtures are not there, which CI does not allow.
pub fn event_fixture(name: &str) -> Option<Value> {
    let path = format!(
        "{}/../shared/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_json::from_str(&text).expect("fixture is JSON")),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "fixture {path} missing under CI: {e}"
            );
            eprintln!("SKIP: fixture {path} not readable: {e}");
            None
        }
    }
}
