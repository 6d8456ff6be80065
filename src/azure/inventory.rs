//! The whole estate in a number of requests that grows with subscriptions, registries and result pages,
//! never with (cluster, registry) pairs: Resource Graph first, ARM lists per subscription when Resource
//! Graph fails or is throttled beyond the time it was given.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use futures::future::{join_all, try_join_all};
use serde::Serialize;
use tokio::time::Instant;

use super::ScopedClient;
use super::arm::AssignmentFilter;
use super::error::AzureError;
use super::resource_graph::queries;
use super::wire::{self, Subscription};
use crate::core::model::{Cluster, ClusterPrincipal, Registry, RoleAssignment, RoleDefinition};

pub use crate::core::model::InventorySource;

#[derive(Debug, Clone)]
pub struct InventoryOptions {
    /// Subscriptions in scope; empty = every enabled subscription the identity can see.
    pub subscriptions: Vec<String>,
    /// The opt-in tag: only registries carrying it (any value) are returned.
    pub tag_name: String,
    /// Try Resource Graph first (default). Off: ARM lists only.
    pub use_resource_graph: bool,
    /// Share of the remaining time Resource Graph may use before the ARM fallback takes over.
    pub resource_graph_time_share: f64,
    /// Resolve service-principal clusters' object ids through Microsoft Graph (one request per such cluster).
    pub resolve_service_principals: bool,
}

impl InventoryOptions {
    pub fn new(subscriptions: Vec<String>, tag_name: impl Into<String>) -> Self {
        Self {
            subscriptions,
            tag_name: tag_name.into(),
            use_resource_graph: true,
            resource_graph_time_share: 0.5,
            resolve_service_principals: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The subscriptions inventoried.
    pub subscriptions: Vec<String>,
    pub clusters: Vec<Cluster>,
    /// Registries carrying the opt-in tag (whatever its value: the selector decides), and registries without it
    /// that hold an owned assignment (so that detach can remove it).
    pub registries: Vec<Registry>,
    /// Assignments at or above any registry in scope (tagged or not), plus every assignment carrying the
    /// ownership mark wherever it is (detach needs them).
    pub assignments: Vec<RoleAssignment>,
    /// Definitions of the roles (other than the built-in role table (`core::roles`)) assigned at or above a tagged registry.
    pub role_definitions: Vec<RoleDefinition>,
    /// Service-principal clusters: client id → object id (`None`: no such principal in the directory).
    pub service_principals: BTreeMap<String, Option<String>>,
    pub source: InventorySource,
    /// Why Resource Graph was not used, when it was tried and failed.
    pub fallback_reason: Option<String>,
    /// HTTP requests this inventory sent (retries included).
    pub requests: u64,
    /// Non-fatal problems: items that did not parse, definitions or principals that could not be read.
    pub warnings: Vec<String>,
    /// Per inventoried subscription (lower-case id): every role assignment at the subscription, its resource
    /// groups and resources — what counts against Azure's 4,000 per-subscription limit.
    pub assignments_per_subscription: BTreeMap<String, u64>,
}

struct Raw {
    clusters: Vec<Cluster>,
    registries: Vec<Registry>,
    assignments: Vec<RoleAssignment>,
    warnings: Vec<String>,
}

/// An id compared and hashed ignoring ASCII case, without a lower-cased copy.
struct Caseless<'a>(&'a str);

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Caseless<'_> {}

impl std::hash::Hash for Caseless<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

/// Keeps the first of assignments with the same id (any case), in order.
fn dedupe(assignments: Vec<RoleAssignment>) -> Vec<RoleAssignment> {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(assignments.len());
        assignments
            .iter()
            .map(|a| seen.insert(Caseless(&a.id)))
            .collect()
    };
    assignments
        .into_iter()
        .zip(keep)
        .filter_map(|(a, keep)| keep.then_some(a))
        .collect()
}

/// Assignments counted against each subscription's limit: scoped at the subscription or below it
/// (management-group assignments, which lists also return, do not count).
fn count_per_subscription(
    subscriptions: &[String],
    assignments: &[RoleAssignment],
) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = subscriptions
        .iter()
        .map(|s| (s.to_ascii_lowercase(), 0))
        .collect();
    for a in assignments {
        let mut segments = a.scope.trim_start_matches('/').split('/');
        if let (Some(first), Some(sub)) = (segments.next(), segments.next())
            && first.eq_ignore_ascii_case("subscriptions")
            && let Some(n) = counts.get_mut(&sub.to_ascii_lowercase())
        {
            *n += 1;
        }
    }
    counts
}

impl ScopedClient {
    /// [`ScopedClient::inventory_with`] with default options.
    pub async fn inventory(
        &self,
        subscriptions: &[String],
        tag_name: &str,
    ) -> Result<Inventory, AzureError> {
        self.inventory_with(&InventoryOptions::new(subscriptions.to_vec(), tag_name))
            .await
    }

    pub async fn inventory_with(
        &self,
        options: &InventoryOptions,
    ) -> Result<Inventory, AzureError> {
        let sent_before = self.requests_sent();
        let mut tenants: HashMap<String, Option<String>> = HashMap::new();
        let subscriptions: Vec<String> = if options.subscriptions.is_empty() {
            let subs = self.list_subscriptions().await?;
            subs.iter()
                .filter(|s| s.is_enabled())
                .map(|s| {
                    tenants.insert(s.subscription_id.to_ascii_lowercase(), s.tenant_id.clone());
                    s.subscription_id.clone()
                })
                .collect()
        } else {
            options.subscriptions.clone()
        };

        let mut fallback_reason = None;
        let mut raw = None;
        if options.use_resource_graph && !subscriptions.is_empty() {
            let share = options.resource_graph_time_share.clamp(0.05, 1.0);
            let rg = self.narrowed(Instant::now() + self.context().remaining().mul_f64(share));
            match rg.inventory_from_resource_graph(&subscriptions).await {
                Ok(r) => raw = Some((r, InventorySource::ResourceGraph)),
                Err(e) => {
                    tracing::warn!(error = %e, error.type = e.kind(), "Resource Graph inventory failed; falling back to ARM lists");
                    fallback_reason = Some(e.to_string());
                }
            }
        }
        let (mut raw, source) = if let Some(r) = raw {
            r
        } else {
            if tenants.is_empty() && !subscriptions.is_empty() {
                // ARM resources do not carry their tenant; the subscription list does (one request).
                match self.list_subscriptions().await {
                    Ok(subs) => tenants.extend(
                        subs.into_iter()
                            .map(|s| (s.subscription_id.to_ascii_lowercase(), s.tenant_id)),
                    ),
                    Err(e) if !e.is_transient() => {
                        tracing::warn!(error = %e, "cannot list subscriptions for tenant ids");
                    }
                    Err(e) => return Err(e),
                }
            }
            (
                self.inventory_from_arm(&subscriptions, &tenants).await?,
                InventorySource::Arm,
            )
        };

        // Keep what matters: tagged registries, assignments that can cover any registry, owned ones anywhere.
        // A registry holding an owned assignment is kept even without the tag (it was removed): detach judges
        // that assignment against the registry's current state, which now selects nothing.
        let all_registries = std::mem::take(&mut raw.registries);
        let owned_scopes: HashSet<String> = raw
            .assignments
            .iter()
            .filter(|a| a.is_owned())
            .filter_map(|a| crate::core::model::ResourceId::parse(&a.scope).ok())
            .map(|id| id.key())
            .collect();
        let registries: Vec<Registry> = all_registries
            .iter()
            .filter(|r| {
                r.tags.contains_key(&options.tag_name) || owned_scopes.contains(&r.id.key())
            })
            .cloned()
            .collect();
        let unique = dedupe(std::mem::take(&mut raw.assignments));
        let assignments_per_subscription = count_per_subscription(&subscriptions, &unique);
        let mut assignments: Vec<RoleAssignment> = unique
            .into_iter()
            .filter(|a| a.is_owned() || all_registries.iter().any(|r| r.id.is_within(&a.scope)))
            .collect();
        assignments.shrink_to_fit();

        let mut warnings = raw.warnings;
        let role_definitions = self
            .custom_role_definitions(&registries, &assignments, &mut warnings)
            .await?;
        let service_principals = if options.resolve_service_principals {
            self.service_principals_of(&raw.clusters, &mut warnings)
                .await?
        } else {
            BTreeMap::new()
        };

        Ok(Inventory {
            subscriptions,
            clusters: raw.clusters,
            registries,
            assignments,
            role_definitions,
            service_principals,
            source,
            fallback_reason,
            requests: self.requests_sent() - sent_before,
            warnings,
            assignments_per_subscription,
        })
    }

    /// Every registry in `subscriptions` from one Resource Graph query (paged). Resource Graph lags ARM (most
    /// changes within ~30 s): callers that must see a change made just now list through ARM instead. Rows that
    /// do not parse are skipped, as in the inventory.
    pub async fn registries_from_resource_graph(
        &self,
        subscriptions: &[String],
    ) -> Result<Vec<Registry>, AzureError> {
        let (registries, warnings) = self
            .resource_graph_parsed(
                subscriptions,
                queries::REGISTRIES,
                "registry",
                wire::registry_from_arm,
            )
            .await?;
        for warning in warnings {
            tracing::warn!(%warning, "resource graph registry row skipped");
        }
        Ok(registries)
    }

    /// The three queries, each page converted to the compact model as it arrives.
    async fn inventory_from_resource_graph(
        &self,
        subscriptions: &[String],
    ) -> Result<Raw, AzureError> {
        let ((clusters, mut w1), (registries, mut w2), (assignments, mut w3)) = futures::try_join!(
            self.resource_graph_parsed(
                subscriptions,
                queries::CLUSTERS,
                "cluster",
                wire::cluster_from_arm
            ),
            self.resource_graph_parsed(
                subscriptions,
                queries::REGISTRIES,
                "registry",
                wire::registry_from_arm
            ),
            self.resource_graph_role_assignments(subscriptions, queries::ROLE_ASSIGNMENTS),
        )?;
        let mut warnings = Vec::new();
        for w in [&mut w1, &mut w2, &mut w3] {
            warnings.append(w);
        }
        Ok(Raw {
            clusters,
            registries,
            assignments,
            warnings,
        })
    }

    async fn inventory_from_arm(
        &self,
        subscriptions: &[String],
        tenants: &HashMap<String, Option<String>>,
    ) -> Result<Raw, AzureError> {
        let per_sub = try_join_all(subscriptions.iter().map(|sub| async move {
            let scope = format!("/subscriptions/{sub}");
            let (mut clusters, mut registries, assignments) = futures::try_join!(
                self.list_clusters(sub),
                self.list_registries(sub),
                self.list_role_assignments(&scope, &AssignmentFilter::All),
            )?;
            let tenant = tenants.get(&sub.to_ascii_lowercase()).cloned().flatten();
            for c in &mut clusters {
                c.tenant_id = c.tenant_id.take().or_else(|| tenant.clone());
            }
            for r in &mut registries {
                r.tenant_id = r.tenant_id.take().or_else(|| tenant.clone());
            }
            Ok::<_, AzureError>((clusters, registries, assignments))
        }))
        .await?;
        let mut raw = Raw {
            clusters: Vec::new(),
            registries: Vec::new(),
            assignments: Vec::new(),
            warnings: Vec::new(),
        };
        for (c, r, a) in per_sub {
            raw.clusters.extend(c);
            raw.registries.extend(r);
            raw.assignments.extend(a);
        }
        Ok(raw)
    }

    /// One GET per distinct unknown role assigned at or above a tagged registry.
    async fn custom_role_definitions(
        &self,
        registries: &[Registry],
        assignments: &[RoleAssignment],
        warnings: &mut Vec<String>,
    ) -> Result<Vec<RoleDefinition>, AzureError> {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new(); // guid → subscription to read it in
        for a in assignments {
            if crate::core::roles::built_in(&a.role_definition_guid).is_some()
                || wanted.contains_key(a.role_definition_guid.as_str())
            {
                continue;
            }
            if let Some(r) = registries.iter().find(|r| r.id.is_within(&a.scope)) {
                wanted.insert(
                    a.role_definition_guid.to_string(),
                    r.id.subscription_scope(),
                );
            }
        }
        let fetched = join_all(wanted.iter().map(|(guid, scope)| async move {
            (guid, self.get_role_definition(scope, guid).await)
        }))
        .await;
        let mut definitions = Vec::new();
        for (guid, result) in fetched {
            match result {
                Ok(Some(d)) => definitions.push(d),
                Ok(None) => warnings.push(format!("role definition {guid} not found")),
                Err(e @ AzureError::DeadlineExceeded { .. }) => return Err(e),
                Err(e) => warnings.push(format!("role definition {guid} unreadable: {e}")),
            }
        }
        Ok(definitions)
    }

    async fn service_principals_of(
        &self,
        clusters: &[Cluster],
        warnings: &mut Vec<String>,
    ) -> Result<BTreeMap<String, Option<String>>, AzureError> {
        let client_ids: BTreeSet<&str> = clusters
            .iter()
            .filter_map(|c| match &c.principal {
                ClusterPrincipal::ServicePrincipal { client_id } => Some(client_id.as_str()),
                _ => None,
            })
            .collect();
        let resolved = join_all(
            client_ids
                .into_iter()
                .map(|id| async move { (id, self.resolve_service_principal(id).await) }),
        )
        .await;
        let mut map = BTreeMap::new();
        for (id, result) in resolved {
            match result {
                Ok(object_id) => {
                    map.insert(id.to_owned(), object_id);
                }
                Err(e @ AzureError::DeadlineExceeded { .. }) => return Err(e),
                Err(e) => warnings.push(format!("service principal {id} unresolved: {e}")),
            }
        }
        Ok(map)
    }
}

/// Subscriptions that are enabled, for callers that list them themselves.
pub fn enabled(subscriptions: &[Subscription]) -> Vec<String> {
    subscriptions
        .iter()
        .filter(|s| s.is_enabled())
        .map(|s| s.subscription_id.clone())
        .collect()
}
