//! A uniform estate for scale figures (the `scale` example, `tests/scale_verify.rs`): S subscriptions, M
//! registries opted in for every cluster (`acr-autoattach=*`), N clusters tagged `env=prod`, spread round-robin
//! over the subscriptions. Built through ARM PUTs as the emulator's admin with the emulator's throttling off;
//! clusters provision at once when the emulator's `cluster_provisioning_ms` is small.

use std::time::Duration;

use azure_emulator::SubscriptionConfig;
use azure_emulator::admin::{AdminError, ArmAdmin, ClusterSpec, RegistrySpec};
use futures::StreamExt as _;

/// Resource group of the registries.
pub const REGISTRY_GROUP: &str = "platform";
/// Resource group of the clusters.
pub const CLUSTER_GROUP: &str = "apps";
/// Concurrent PUTs while seeding.
const SEED_CONCURRENCY: usize = 32;

/// The shape of the estate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstateSpec {
    pub clusters: usize,
    pub registries: usize,
    pub subscriptions: usize,
}

impl EstateSpec {
    pub fn pairs(&self) -> usize {
        self.clusters * self.registries
    }

    /// Pull assignments the estate needs in subscription `index` when every pair is attached (assignments
    /// live at registry scope, so in the registry's subscription).
    pub fn assignments_in(&self, index: usize) -> usize {
        self.registries_in(index) * self.clusters
    }

    /// Registries in subscription `index` (round-robin).
    pub fn registries_in(&self, index: usize) -> usize {
        (0..self.registries)
            .filter(|r| r % self.subscriptions.max(1) == index)
            .count()
    }

    /// The most pull assignments any one subscription needs.
    pub fn max_assignments_per_subscription(&self) -> usize {
        (0..self.subscriptions)
            .map(|s| self.assignments_in(s))
            .max()
            .unwrap_or(0)
    }

    /// Deterministic subscription ids (`5ca1e000-…`, `5ca1e001-…`), all in `tenant`.
    pub fn subscription_configs(&self, tenant: &str) -> Vec<SubscriptionConfig> {
        (0..self.subscriptions)
            .map(|i| SubscriptionConfig::new(subscription_id(i), tenant))
            .collect()
    }
}

/// The `index`-th subscription id of [`EstateSpec::subscription_configs`].
pub fn subscription_id(index: usize) -> String {
    format!("5ca1e{:03x}-0000-4000-8000-{index:012x}", index % 0x1000)
}

/// What was built: resource ids.
#[derive(Debug, Clone, Default)]
pub struct Estate {
    pub subscriptions: Vec<String>,
    pub registries: Vec<String>,
    pub clusters: Vec<String>,
}

/// The `index`-th registry of the estate (in subscription `index % S`).
pub fn registry_spec(subscriptions: &[String], index: usize) -> RegistrySpec {
    RegistrySpec::new(
        &subscriptions[index % subscriptions.len()],
        REGISTRY_GROUP,
        &format!("acr{index:04}"),
    )
    .tag("acr-autoattach", "*")
}

/// The `index`-th cluster of the estate (in subscription `index % S`).
pub fn cluster_spec(subscriptions: &[String], index: usize) -> ClusterSpec {
    ClusterSpec::new(
        &subscriptions[index % subscriptions.len()],
        CLUSTER_GROUP,
        &format!("aks{index:05}"),
    )
    .tag("env", "prod")
}

/// Creates the resource groups and registries in every subscription of `subscriptions`.
pub async fn build_registries(
    admin: &ArmAdmin,
    subscriptions: &[String],
    registries: usize,
) -> Result<Vec<String>, AdminError> {
    for sub in subscriptions {
        admin
            .put_resource_group(sub, REGISTRY_GROUP, "westeurope")
            .await?;
        admin
            .put_resource_group(sub, CLUSTER_GROUP, "westeurope")
            .await?;
    }
    let mut ids = Vec::with_capacity(registries);
    for r in 0..registries {
        let spec = registry_spec(subscriptions, r);
        admin.put_registry(&spec).await?;
        ids.push(spec.id());
    }
    Ok(ids)
}

/// PUTs clusters `range` ([`SEED_CONCURRENCY`] at a time) and waits until the last is provisioned. Resource
/// groups must exist ([`build_registries`]).
pub async fn build_clusters(
    admin: &ArmAdmin,
    subscriptions: &[String],
    range: std::ops::Range<usize>,
    ready_within: Duration,
) -> Result<Vec<String>, AdminError> {
    let specs: Vec<ClusterSpec> = range.map(|c| cluster_spec(subscriptions, c)).collect();
    let results: Vec<Result<(), AdminError>> = futures::stream::iter(specs.iter())
        .map(|spec| async move { admin.put_cluster(spec).await.map(|_| ()) })
        .buffer_unordered(SEED_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    if let Some(last) = specs.last() {
        admin
            .wait_cluster_succeeded(&last.id(), ready_within)
            .await?;
    }
    Ok(specs.iter().map(ClusterSpec::id).collect())
}

/// The whole estate of `spec` in `subscriptions` (which must be `spec.subscriptions` long).
pub async fn build(
    admin: &ArmAdmin,
    subscriptions: &[String],
    spec: EstateSpec,
) -> Result<Estate, AdminError> {
    let registries = build_registries(admin, subscriptions, spec.registries).await?;
    let clusters = build_clusters(
        admin,
        subscriptions,
        0..spec.clusters,
        Duration::from_mins(1),
    )
    .await?;
    Ok(Estate {
        subscriptions: subscriptions.to_vec(),
        registries,
        clusters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_ids_are_guids_and_distinct() {
        let spec = EstateSpec {
            clusters: 1,
            registries: 1,
            subscriptions: 300,
        };
        let ids: std::collections::BTreeSet<String> = spec
            .subscription_configs("t")
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids.len(), 300);
        assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
    }

    #[test]
    fn assignments_per_subscription_follow_the_round_robin() {
        let spec = EstateSpec {
            clusters: 10_000,
            registries: 20,
            subscriptions: 5,
        };
        assert_eq!(spec.pairs(), 200_000);
        assert_eq!(spec.registries_in(0), 4);
        assert_eq!(spec.max_assignments_per_subscription(), 40_000);
        let uneven = EstateSpec {
            clusters: 2,
            registries: 3,
            subscriptions: 2,
        };
        assert_eq!((uneven.assignments_in(0), uneven.assignments_in(1)), (4, 2));
    }
}
