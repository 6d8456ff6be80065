//! The api-versions each resource type accepts, and ARM's api-version check.

use std::collections::BTreeMap;

use http::StatusCode;

use super::{Outcome, Route};
use crate::store::ResourceKind;

pub const CLUSTER_API_VERSIONS: &[&str] = &[
    "2025-10-01",
    "2026-01-01",
    "2026-02-01",
    "2026-06-01",
    "2026-10-01",
];

/// The api-versions of AKS's operation-status URL (the one its `Azure-AsyncOperation` header names first).
pub const CLUSTER_OPERATION_API_VERSIONS: &[&str] = &[
    "2016-03-30",
    "2025-10-01",
    "2026-01-01",
    "2026-02-01",
    "2026-06-01",
    "2026-10-01",
];
pub const REGISTRY_API_VERSIONS: &[&str] = &[
    "2025-04-01",
    "2025-11-01",
    "2026-03-01-preview",
    "2026-09-01-preview",
];

pub const ROLE_ASSIGNMENT_API_VERSIONS: &[&str] = &[
    "2015-07-01",
    "2018-01-01-preview",
    "2018-09-01-preview",
    "2020-03-01-preview",
    "2020-04-01-preview",
    "2020-08-01-preview",
    "2020-10-01-preview",
    "2022-01-01-preview",
    "2022-04-01",
];

pub const ROLE_DEFINITION_API_VERSIONS: &[&str] = &[
    "2015-07-01",
    "2018-01-01-preview",
    "2022-04-01",
    "2022-05-01-preview",
];

pub const RESOURCES_API_VERSIONS: &[&str] = &[
    "2019-10-01",
    "2020-06-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-04-01",
];

pub const SUBSCRIPTION_API_VERSIONS: &[&str] = &[
    "2016-06-01",
    "2020-01-01",
    "2021-01-01",
    "2022-01-01",
    "2022-12-01",
];

pub const RESOURCE_GRAPH_API_VERSIONS: &[&str] = &["2021-03-01", "2022-10-01", "2024-04-01"];

pub(super) fn api_versions(route: &Route) -> (&'static [&'static str], Option<&'static str>) {
    match route {
        Route::Subscriptions | Route::Subscription { .. } => (SUBSCRIPTION_API_VERSIONS, None),
        Route::ResourceGroups { .. }
        | Route::ResourceGroup { .. }
        | Route::GenericResources { .. }
        | Route::Tags { .. }
        | Route::Unknown => (RESOURCES_API_VERSIONS, None),
        Route::ClusterOperation { .. } => {
            (CLUSTER_OPERATION_API_VERSIONS, Some("locations/operations"))
        }
        Route::Collection { kind, .. } | Route::Item { kind, .. } => match kind {
            ResourceKind::Cluster => (CLUSTER_API_VERSIONS, Some("managedClusters")),
            ResourceKind::Registry => (REGISTRY_API_VERSIONS, Some("registries")),
            ResourceKind::ResourceGroup => (RESOURCES_API_VERSIONS, None),
        },
        Route::RoleAssignments { .. } | Route::RoleAssignment { .. } => {
            (ROLE_ASSIGNMENT_API_VERSIONS, Some("roleAssignments"))
        }
        Route::RoleDefinitions { .. } | Route::RoleDefinition { .. } => {
            (ROLE_DEFINITION_API_VERSIONS, Some("roleDefinitions"))
        }
    }
}

/// ARM's api-version check: `MissingApiVersionParameter`, then `InvalidApiVersionParameter` for
/// Microsoft.Resources types and `NoRegisteredProviderFound` for resource-provider types.
pub(crate) fn check_api_version(
    query: &BTreeMap<String, String>,
    supported: &[&str],
    provider_type: Option<&str>,
    location: &str,
    locations: &[String],
) -> Result<(), Outcome> {
    let Some(version) = query.get("api-version") else {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&version.as_str()) {
        return Ok(());
    }
    let mut listed: Vec<&str> = supported.to_vec();
    listed.reverse();
    Err(match provider_type {
        Some(ty) => Outcome::error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{location}' and API version '{version}' for type '{ty}'. The supported api-versions are '{}'. The supported locations are '{}'.",
                supported.join(", "),
                locations.join(", ")
            ),
        ),
        None => Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                listed.join(",")
            ),
        ),
    })
}
