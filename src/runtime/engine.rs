//! The reconciliation engine: observe through the Azure client, plan with the pure planner, apply, read back,
//! and turn the outcome into verification results. One engine serves the event path (OnResourceEvent), the
//! timer (VerifyAttachments) and the operator CLI.
//!
//! Request budget of one event (S = subscriptions in scope holding tagged registries, W = writes):
//! - cluster write: 1 GET cluster (+1 per readiness poll) + S' registry lists (one per subscription in
//!   scope) + S role-assignment lists filtered by the kubelet principal + W PUTs + one read-back list per
//!   registry written to; no term grows with the number of registries except through the writes.
//! - registry write: 1 GET registry + S' cluster lists + 1 role-assignment list at the registry (at and above)
//!   + one Graph lookup per selected service-principal cluster + W writes + (W > 0 ? 1 : 0) read-back.
//! - cluster delete (detach on): 1 GET cluster + S' registry lists + S' cluster lists (shared principals) + one
//!   Graph lookup per service-principal cluster + S unfiltered role-assignment lists + W.
//! - verification (timer, CLI): 1 subscription list + S' own-assignment lists and one role-definition GET per
//!   distinct role the identity holds (the sight check, issue 10 rule 7) + the inventory + W.
//! - everything else: zero requests.
//!
//! The subscription list (for scope and tenants) is cached per process for [`SUBSCRIPTION_CACHE_TTL`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::azure::{
    AssignmentFilter, AzureClient, AzureConnect, AzureError, AzureOps, DeleteOutcome,
    InventoryOptions, PutOutcome, Subscription,
};
use crate::core::events::{Classification, ClassifiedEvent, EventMetadata, seconds_since};
use crate::core::model::{
    Cluster, ClusterPrincipal, InventoryOutcome, LIMIT_REASON_PREFIX, Mode, PairFailure,
    PairResult, PairStatus, ROLE_ASSIGNMENT_LIMIT, Registry, ResourceId, RoleAssignment,
    RoleDefinition, SubscriptionCapacity, VerificationReport, service_principal_resolution,
};
use crate::core::outcome::RunFailure;
pub use crate::core::outcome::{EventOutcome, EventReport};
use crate::core::planner::{
    self, Action, ApplyOutcome, Completeness, Observed, Plan, PlanItem, PlanSettings,
};
use crate::runtime::config::Config;
use crate::runtime::singleflight::SingleFlight;
use crate::telemetry::{AssignmentOutcome, Metrics, pair_span};

/// How long the list of visible subscriptions (scope and tenants) is reused across invocations.
pub const SUBSCRIPTION_CACHE_TTL: Duration = Duration::from_mins(5);
/// Event Grid waits 30 s for the whole delivery; an event invocation never plans past this.
pub const EVENT_HARD_BUDGET: Duration = Duration::from_secs(27);
/// Time reserved after the readiness wait for planning, writes and read-back.
pub const AFTER_READY_RESERVE: Duration = Duration::from_secs(7);
/// The read actions the inventory needs on every subscription it verifies (the acr-autoattach reader role).
pub const INVENTORY_READS: [&str; 3] = [
    "Microsoft.ContainerService/managedClusters/read",
    "Microsoft.ContainerRegistry/registries/read",
    "Microsoft.Authorization/roleAssignments/read",
];
/// A verification run stops issuing writes when less than this is left, so it can still report.
pub const REPORT_RESERVE: Duration = Duration::from_secs(2);

/// Why an engine run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Azure: {0}")]
    Azure(#[from] AzureError),
    /// The run cannot see what it is meant to verify (issue 10, rule 7): a configured subscription that is not
    /// visible, a scope with no subscription, a read right the inventory needs that the identity lacks. Never
    /// reported as compliant; the detail names the missing permission.
    #[error("blind: {detail}")]
    ScopeNotVisible { detail: String },
    #[error(
        "cluster {cluster} not ready after {waited_secs} s (provisioningState {state}); Event Grid will retry"
    )]
    ClusterNotReady {
        cluster: String,
        state: String,
        waited_secs: u64,
    },
}

impl EngineError {
    /// Whether the platform should retry the invocation.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Azure(e) => e.is_transient(),
            Self::ClusterNotReady { .. } => true,
            Self::ScopeNotVisible { .. } => false,
        }
    }

    /// Stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Azure(e) => e.kind(),
            Self::ClusterNotReady { .. } => "cluster_not_ready",
            Self::ScopeNotVisible { .. } => "scope_not_visible",
        }
    }
}

/// What work an event asks for: events with the same key need the same reads and writes (the resource's
/// current state decides, never the event), so concurrent ones share one run. `None`: no Azure work.
pub fn work_key(event: &ClassifiedEvent) -> Option<String> {
    let (kind, id) = match &event.classification {
        Classification::ClusterWrite { cluster, .. } => ("cluster_write", cluster),
        Classification::ClusterDelete { cluster } => ("cluster_delete", cluster),
        Classification::RegistryWrite { registry, .. } => ("registry_write", registry),
        Classification::RegistryDelete { .. } | Classification::Ignored { .. } => return None,
    };
    Some(format!("{kind} {}", id.as_str().to_ascii_lowercase()))
}

/// The report of an event that could not be handled before the delivery deadline: the invocation fails so
/// Event Grid redelivers it.
pub fn unfinished_report(event: &ClassifiedEvent, why: &str) -> EventReport {
    let mut report = EventReport::new(
        event.metadata.id.clone(),
        event.metadata.event_type.clone(),
        event.classification.label().to_owned(),
    );
    report.conclude(Some(RunFailure {
        message: why.to_owned(),
        transient: true,
    }));
    report
}

/// The engine. Cheap to share: one per process. `C` is the real [`AzureClient`] except in unit tests, which
/// script a fake (`fake.rs`).
pub struct Engine<C: AzureConnect = AzureClient> {
    config: Config,
    client: C,
    metrics: Metrics,
    /// The visible subscriptions: filled once per [`SUBSCRIPTION_CACHE_TTL`] however many invocations ask at
    /// once (single flight); a failed fill is shared by the callers that waited for it, never kept.
    subscriptions: SingleFlight<(), Result<Vec<Subscription>, AzureError>>,
    /// Set by a verification run: lists older than this are not reused (its scope is listed anew).
    subscriptions_fresh_after: Mutex<Option<Instant>>,
}

/// `d` before now, or the first instant this process asked for one when it has not been running that long.
pub fn ago(d: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    Instant::now()
        .checked_sub(d)
        .map_or(epoch, |t| t.max(epoch))
}

impl<C: AzureConnect> Engine<C> {
    pub fn new(config: Config, client: C) -> Self {
        Self {
            config,
            client,
            metrics: Metrics::noop(),
            subscriptions: SingleFlight::new(SUBSCRIPTION_CACHE_TTL),
            subscriptions_fresh_after: Mutex::new(None),
        }
    }

    /// Counts every write (`autoattach.assignments`) in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn client(&self) -> &C {
        &self.client
    }

    fn plan_settings(
        &self,
        completeness: Completeness,
        handler_tenant: Option<String>,
    ) -> PlanSettings {
        PlanSettings {
            tag_name: self.config.tag.clone(),
            mode: self.config.mode,
            detach: self.config.detach,
            handler_tenant,
            deleted_clusters: BTreeSet::new(),
            completeness,
        }
    }

    fn in_configured_scope(&self, subscription_id: &str) -> bool {
        self.config.subscriptions.is_empty()
            || self
                .config
                .subscriptions
                .iter()
                .any(|s| s.eq_ignore_ascii_case(subscription_id))
    }

    /// Visible subscriptions, cached for [`SUBSCRIPTION_CACHE_TTL`] and filled by one request however many
    /// callers need them at once.
    async fn visible_subscriptions(&self, azure: &C::Ops) -> Result<Vec<Subscription>, AzureError> {
        let azure = azure.clone();
        let not_before = {
            let fresh_after = self
                .subscriptions_fresh_after
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            fresh_after.map_or_else(
                || ago(SUBSCRIPTION_CACHE_TTL),
                |t| t.max(ago(SUBSCRIPTION_CACHE_TTL)),
            )
        };
        self.subscriptions
            .run((), not_before, Result::is_ok, move || async move {
                azure.list_subscriptions().await
            })
            .await
    }

    /// The next [`Self::visible_subscriptions`] lists them anew (a verification run's own, fresh list).
    fn forget_subscriptions(&self) {
        *self
            .subscriptions_fresh_after
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
    }

    /// Never green while blind (issue 10, rule 7): every subscription to verify is visible and enabled, there is
    /// at least one, and on each the identity holds (directly or through a group, at the subscription or
    /// above) the read rights the inventory needs. Resource Graph and ARM lists silently leave out what the
    /// caller cannot read, so an empty answer proves nothing: the rights are checked from the identity's own
    /// role assignments (one list per subscription, one GET per distinct role).
    async fn check_sight(
        &self,
        azure: &C::Ops,
        subscriptions: &[String],
    ) -> Result<(), EngineError> {
        let object_id = azure.handler_object_id().await;
        let who = object_id
            .clone()
            .unwrap_or_else(|| "(unknown object id)".to_owned());
        let blind = |detail: String| EngineError::ScopeNotVisible { detail };
        if subscriptions.is_empty() {
            return Err(blind(format!(
                "no subscription is visible to the identity {who}: grant it the acr-autoattach reader role \
                 (Microsoft.Resources/subscriptions/read, {}) on the subscriptions to verify",
                INVENTORY_READS.join(", ")
            )));
        }
        let visible = self.visible_subscriptions(azure).await?;
        for sub in subscriptions {
            match visible
                .iter()
                .find(|v| v.subscription_id.eq_ignore_ascii_case(sub))
            {
                None => {
                    return Err(blind(format!(
                        "subscription {sub} is not visible to the identity {who}: it lacks \
                         Microsoft.Resources/subscriptions/read there (grant it the acr-autoattach reader role)"
                    )));
                }
                Some(v) if !v.is_enabled() => {
                    return Err(blind(format!(
                        "subscription {sub} is not enabled (state {})",
                        v.state.as_deref().unwrap_or("unknown")
                    )));
                }
                Some(_) => {}
            }
        }
        let Some(object_id) = object_id else {
            return Err(blind(
                "the identity's token carries no object id (oid): its read rights cannot be checked".into(),
            ));
        };
        let mut definitions: HashMap<String, Option<RoleDefinition>> = HashMap::new();
        let mut problems = Vec::new();
        for sub in subscriptions {
            let scope = format!("/subscriptions/{sub}");
            let held = match azure
                .list_role_assignments(&scope, &AssignmentFilter::AssignedTo(object_id.clone()))
                .await
            {
                Ok(held) => held,
                Err(e @ AzureError::Forbidden { .. }) => {
                    problems.push(format!(
                        "the identity {object_id} lacks Microsoft.Authorization/roleAssignments/read on \
                         subscription {sub} ({e})"
                    ));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let sub_id = ResourceId::parse(&scope).map_err(|e| blind(e.to_string()))?;
            let above: Vec<&RoleAssignment> = held
                .iter()
                .filter(|a| {
                    let s = a.scope.trim();
                    s == "/"
                        || s.to_ascii_lowercase()
                            .starts_with("/providers/microsoft.management/managementgroups/")
                        || sub_id.is_within(s)
                })
                .collect();
            for a in &above {
                if !definitions.contains_key(&a.role_definition_guid) {
                    let def = azure
                        .get_role_definition(&scope, &a.role_definition_guid)
                        .await
                        .ok()
                        .flatten();
                    definitions.insert(a.role_definition_guid.clone(), def);
                }
            }
            let missing: Vec<&str> = INVENTORY_READS
                .iter()
                .copied()
                .filter(|action| {
                    !above.iter().any(|a| {
                        definitions
                            .get(&a.role_definition_guid)
                            .and_then(Option::as_ref)
                            .is_some_and(|d| planner::permits(&d.actions, &d.not_actions, action))
                    })
                })
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "the identity {object_id} lacks {} on subscription {sub} (grant it the acr-autoattach \
                     reader role there); what it cannot read would be reported as absent",
                    missing.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(blind(problems.join("; ")))
        }
    }

    /// Subscriptions in scope (configured ∩ visible, or every enabled visible one) and every visible
    /// subscription's tenant.
    async fn scope(
        &self,
        azure: &C::Ops,
    ) -> Result<(Vec<String>, HashMap<String, String>), AzureError> {
        let subs = self.visible_subscriptions(azure).await?;
        let tenants: HashMap<String, String> = subs
            .iter()
            .filter_map(|s| Some((s.subscription_id.to_ascii_lowercase(), s.tenant_id.clone()?)))
            .collect();
        let scope = subs
            .iter()
            .filter(|s| s.is_enabled() && self.in_configured_scope(&s.subscription_id))
            .map(|s| s.subscription_id.clone())
            .collect();
        Ok((scope, tenants))
    }

    // -----------------------------------------------------------------------------------------------------
    // Events
    // -----------------------------------------------------------------------------------------------------

    /// Handles one classified event, starting the clock at `started` (the invocation's arrival).
    pub async fn handle_event(&self, event: &ClassifiedEvent, started: Instant) -> EventReport {
        let budget = (self.config.ready_timeout + AFTER_READY_RESERVE).min(EVENT_HARD_BUDGET);
        let azure = self.client.until(started + budget);
        let mut report = EventReport::new(
            event.metadata.id.clone(),
            event.metadata.event_type.clone(),
            event.classification.label().to_owned(),
        );
        let result = match &event.classification {
            Classification::Ignored { .. } => {
                // The class already names the reason.
                report.outcome = EventOutcome::Ignored;
                Ok(())
            }
            Classification::ClusterWrite { cluster } => {
                report.resource = Some(cluster.to_string());
                if self.in_configured_scope(cluster.subscription_id()) {
                    self.on_cluster_write(&azure, cluster, &event.metadata, started, &mut report)
                        .await
                } else {
                    out_of_scope(&mut report, cluster);
                    Ok(())
                }
            }
            Classification::RegistryWrite { registry } => {
                report.resource = Some(registry.to_string());
                if self.in_configured_scope(registry.subscription_id()) {
                    self.on_registry_write(&azure, registry, &event.metadata, &mut report)
                        .await
                } else {
                    out_of_scope(&mut report, registry);
                    Ok(())
                }
            }
            Classification::ClusterDelete { cluster } => {
                report.resource = Some(cluster.to_string());
                if !self.config.detach {
                    report.notes.push(
                        "cluster deleted; detach is off (AUTOATTACH_DETACH=false), so its assignments are kept".into(),
                    );
                    Ok(())
                } else if self.in_configured_scope(cluster.subscription_id()) {
                    self.on_cluster_delete(&azure, cluster, &event.metadata, started, &mut report)
                        .await
                } else {
                    out_of_scope(&mut report, cluster);
                    Ok(())
                }
            }
            Classification::RegistryDelete { registry } => {
                report.resource = Some(registry.to_string());
                report.notes.push(
                    "registry deleted: nothing to attach; assignments at a deleted scope grant nothing".into(),
                );
                Ok(())
            }
        };
        report.conclude(result.err().map(|e| RunFailure {
            message: e.to_string(),
            transient: e.is_transient(),
        }));
        report.azure_requests = azure.requests_sent();
        report
    }

    /// Reads the cluster until it is ready (kubelet identity present, provisioning succeeded) or the
    /// readiness budget is spent.
    async fn wait_ready(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        started: Instant,
    ) -> Result<Option<Cluster>, EngineError> {
        let ready_deadline = started + self.config.ready_timeout;
        let mut pause = Duration::from_millis(250);
        loop {
            let Some(cluster) = azure.get_cluster(id).await? else {
                return Ok(None);
            };
            if cluster.is_ready() {
                return Ok(Some(cluster));
            }
            let now = Instant::now();
            if now + pause > ready_deadline {
                return Err(EngineError::ClusterNotReady {
                    cluster: id.to_string(),
                    state: cluster.provisioning_state,
                    waited_secs: (now - started).as_secs(),
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn on_cluster_write(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        started: Instant,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        let Some(cluster) = self.wait_ready(azure, id, started).await? else {
            report
                .notes
                .push("cluster no longer exists; nothing to attach".into());
            return Ok(());
        };
        let (scope, tenants) = self.scope(azure).await?;
        let registries = self.tagged_registries(azure, &scope).await?;
        let mut observed = Observed {
            subscription_tenants: tenants,
            ..Observed::default()
        };
        let Some(principal) = self
            .resolve_principal(azure, &cluster, &mut observed)
            .await?
        else {
            // Unresolved principal: the planner reports each selected pair as pending.
            observed.clusters.push(cluster);
            observed.registries = registries;
            return self
                .plan_apply_report(azure, observed, Completeness::Partial, meta, report)
                .await;
        };
        // Every assignment of the principal (at, above and below each subscription holding a tagged registry):
        // one list per subscription, whatever the number of registries.
        let subs: BTreeSet<String> = registries
            .iter()
            .map(|r| r.id.subscription_id().to_ascii_lowercase())
            .collect();
        let filter = AssignmentFilter::Principal(principal.clone());
        let lists = subs.iter().map(|s| {
            let (scope, filter) = (format!("/subscriptions/{s}"), &filter);
            async move { azure.list_role_assignments(&scope, filter).await }
        });
        for list in futures::future::join_all(lists).await {
            observed.assignments.extend(list?);
        }
        observed.role_definitions = self
            .custom_roles(azure, &observed.assignments, &mut report.notes)
            .await?;
        observed.clusters.push(cluster);
        observed.registries = registries;
        self.plan_apply_report(azure, observed, Completeness::Partial, meta, report)
            .await
    }

    async fn on_registry_write(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        // Read from ARM whatever the event said: its id, tags and roleAssignmentMode decide.
        let Some(registry) = azure.get_registry(id).await? else {
            report
                .notes
                .push("registry no longer exists; nothing to attach".into());
            return Ok(());
        };
        if !registry.tags.contains_key(&self.config.tag) && !self.config.detach {
            report.notes.push(format!(
                "registry has no `{}` tag: not opted in",
                self.config.tag
            ));
            return Ok(());
        }
        let (scope, tenants) = self.scope(azure).await?;
        let mut observed = Observed {
            subscription_tenants: tenants,
            ..Observed::default()
        };
        let lists = scope.iter().map(|s| azure.list_clusters(s));
        for list in futures::future::join_all(lists).await {
            observed.clusters.extend(list?);
        }
        observed.assignments = azure
            .list_role_assignments(registry.id.as_str(), &AssignmentFilter::AtScope)
            .await?;
        observed.role_definitions = self
            .custom_roles(azure, &observed.assignments, &mut report.notes)
            .await?;
        // Only selected service-principal clusters need their object id (one Graph request each).
        let opt_in = crate::core::selector::parse_opt_in(
            registry.tags.get(&self.config.tag).unwrap_or_default(),
        )
        .ok();
        let selected_sp: Vec<Cluster> = observed
            .clusters
            .iter()
            .filter(|c| matches!(c.principal, ClusterPrincipal::ServicePrincipal { .. }))
            .filter(|c| opt_in.as_ref().is_some_and(|o| o.selects(c)))
            .cloned()
            .collect();
        for cluster in &selected_sp {
            self.resolve_principal(azure, cluster, &mut observed)
                .await?;
        }
        observed.registries.push(registry);
        self.plan_apply_report(azure, observed, Completeness::Partial, meta, report)
            .await
    }

    async fn on_cluster_delete(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        started: Instant,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        // Events can be late and reordered: a cluster re-created under the same id is handled as a write.
        if azure.get_cluster(id).await?.is_some() {
            report.notes.push(
                "a cluster with this id exists again (re-created): handled as a write".into(),
            );
            return self
                .on_cluster_write(azure, id, meta, started, report)
                .await;
        }
        let (scope, tenants) = self.scope(azure).await?;
        let registries = self.tagged_registries(azure, &scope).await?;
        let subs: BTreeSet<String> = registries
            .iter()
            .map(|r| r.id.subscription_id().to_ascii_lowercase())
            .collect();
        let mut observed = Observed {
            subscription_tenants: tenants,
            registries,
            ..Observed::default()
        };
        // The live clusters in scope: an assignment named for the deleted cluster stays while another cluster
        // the registry selects uses the same principal (shared, bring-your-own kubelet identities).
        for list in futures::future::join_all(scope.iter().map(|s| azure.list_clusters(s))).await {
            observed.clusters.extend(list?);
        }
        let sp_clusters: Vec<Cluster> = observed
            .clusters
            .iter()
            .filter(|c| matches!(c.principal, ClusterPrincipal::ServicePrincipal { .. }))
            .cloned()
            .collect();
        for cluster in &sp_clusters {
            self.resolve_principal(azure, cluster, &mut observed)
                .await?;
        }
        let lists = subs.iter().map(|s| {
            let scope = format!("/subscriptions/{s}");
            async move {
                azure
                    .list_role_assignments(&scope, &AssignmentFilter::All)
                    .await
            }
        });
        for list in futures::future::join_all(lists).await {
            observed.assignments.extend(
                list?
                    .into_iter()
                    .filter(|a| a.owner_cluster().as_ref() == Some(id)),
            );
        }
        let mut settings = self.plan_settings(Completeness::Partial, None);
        settings.deleted_clusters.insert(id.clone());
        let plan = planner::plan(&observed, &settings);
        if plan.items.is_empty() {
            report
                .notes
                .push("cluster deleted; no assignment of ours names it".into());
        }
        let (pairs, _) = self.apply(azure, &plan, meta.event_time).await;
        report.pairs = pairs;
        Ok(())
    }

    /// Tagged registries in `scope` (ARM lists, one per subscription: always current, unlike Resource Graph).
    async fn tagged_registries(
        &self,
        azure: &C::Ops,
        scope: &[String],
    ) -> Result<Vec<Registry>, AzureError> {
        let lists = scope.iter().map(|s| azure.list_registries(s));
        let mut out = Vec::new();
        for list in futures::future::join_all(lists).await {
            out.extend(
                list?
                    .into_iter()
                    .filter(|r| r.tags.contains_key(&self.config.tag)),
            );
        }
        Ok(out)
    }

    /// The principal that must hold access; a service-principal cluster's object id comes from Graph.
    async fn resolve_principal(
        &self,
        azure: &C::Ops,
        cluster: &Cluster,
        observed: &mut Observed,
    ) -> Result<Option<String>, AzureError> {
        match &cluster.principal {
            ClusterPrincipal::Kubelet { object_id, .. } => Ok(Some(object_id.clone())),
            ClusterPrincipal::NotYetKnown => Ok(None),
            ClusterPrincipal::ServicePrincipal { client_id } => {
                match azure.resolve_service_principal(client_id).await {
                    Ok(lookup) => {
                        let resolved = service_principal_resolution(client_id, Some(lookup));
                        observed
                            .principals
                            .insert(cluster.id.clone(), resolved.clone());
                        Ok(resolved.ok())
                    }
                    Err(e) if e.is_transient() => Err(e),
                    Err(e) => {
                        observed
                            .principals
                            .insert(cluster.id.clone(), Err(e.to_string()));
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Definitions of roles referenced by `assignments` whose pull semantics are not known by GUID.
    async fn custom_roles(
        &self,
        azure: &C::Ops,
        assignments: &[RoleAssignment],
        notes: &mut Vec<String>,
    ) -> Result<HashMap<String, RoleDefinition>, AzureError> {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for a in assignments {
            let guid = a.role_definition_guid.to_ascii_lowercase();
            if crate::core::roles::built_in(&guid).is_none() {
                wanted.entry(guid).or_insert_with(|| a.scope.clone());
            }
        }
        let mut out = HashMap::new();
        for (guid, scope) in wanted {
            match azure.get_role_definition(&scope, &guid).await {
                Ok(Some(def)) => {
                    out.insert(guid, def);
                }
                Ok(None) => notes.push(format!(
                    "role definition {guid} not found; its assignments are not counted"
                )),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => notes.push(format!(
                    "role definition {guid} unreadable ({e}); not counted"
                )),
            }
        }
        Ok(out)
    }

    async fn plan_apply_report(
        &self,
        azure: &C::Ops,
        observed: Observed,
        completeness: Completeness,
        meta: &EventMetadata,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        let handler_tenant = azure.handler_tenant().await;
        let plan = planner::plan(&observed, &self.plan_settings(completeness, handler_tenant));
        if plan.items.is_empty() && plan.registry_results.is_empty() {
            report.notes.push("no registry selects this cluster".into());
        }
        let (pairs, _) = self.apply(azure, &plan, meta.event_time).await;
        report.pairs = pairs;
        report.registry_results = plan.registry_results;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------
    // Apply
    // -----------------------------------------------------------------------------------------------------

    /// Applies the plan's writes with bounded concurrency until the deadline's reserve, reads back what it
    /// created, and returns one result per item plus how many writes were skipped for lack of time.
    pub async fn apply(
        &self,
        azure: &C::Ops,
        plan: &Plan,
        event_time: Option<OffsetDateTime>,
    ) -> (Vec<PairResult>, usize) {
        let mut outcomes: Vec<ApplyOutcome> = vec![ApplyOutcome::NotApplied; plan.items.len()];
        // One span per written pair; it closes with the final status (after read-back) recorded on it.
        let mut spans: Vec<Option<tracing::Span>> = vec![None; plan.items.len()];
        let mut skipped = 0usize;
        // Subscriptions Azure refused a PUT in with RoleAssignmentLimitExceeded: no further PUT goes there.
        let mut full: BTreeSet<String> = BTreeSet::new();
        // PUT only to create: a fresh read of each registry written to settles names the snapshot missed.
        let decided = names_taken(azure, plan).await;
        for (index, outcome) in &decided {
            outcomes[*index] = outcome.clone();
        }
        let mut pending = FuturesUnordered::new();
        let mut next = plan
            .items
            .iter()
            .enumerate()
            .filter(|(index, i)| i.action.needs_write() && !decided.contains_key(index));
        loop {
            while pending.len() < self.config.max_concurrency {
                let Some((index, item)) = next.next() else {
                    break;
                };
                let subscription = item.registry.subscription_id().to_ascii_lowercase();
                if matches!(item.action, Action::Create(_)) && full.contains(&subscription) {
                    outcomes[index] =
                        ApplyOutcome::Failed(limit_failure(item.registry.subscription_id()));
                    continue;
                }
                if azure.deadline().saturating_duration_since(Instant::now()) < REPORT_RESERVE {
                    skipped += 1;
                    outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                        PairFailure::BUDGET_EXHAUSTED,
                        "not applied: the invocation's time budget was exhausted",
                    ));
                    continue;
                }
                let metrics = &self.metrics;
                let span = pair_span(&item.cluster, &item.registry);
                spans[index] = Some(span.clone());
                pending.push(
                    async move { (index, apply_item(azure, item, metrics).await) }.instrument(span),
                );
            }
            match pending.next().await {
                Some((index, outcome)) => {
                    if let ApplyOutcome::Failed(failure) = &outcome
                        && failure.kind == LIMIT_REASON_PREFIX
                    {
                        full.insert(
                            plan.items[index]
                                .registry
                                .subscription_id()
                                .to_ascii_lowercase(),
                        );
                    }
                    outcomes[index] = outcome;
                }
                None => break,
            }
        }
        read_back(azure, plan, &mut outcomes).await;
        let now = OffsetDateTime::now_utc();
        let results = plan
            .items
            .iter()
            .zip(&outcomes)
            .zip(spans)
            .map(|((item, outcome), span)| {
                let mut result = planner::result_for(item, outcome);
                if let Some(t) = event_time
                    && matches!(result.status, PairStatus::Repaired | PairStatus::Compliant)
                {
                    result.latency_seconds = Some(seconds_since(t, now));
                }
                if let Some(span) = span {
                    span.record("autoattach.pair.status", result.status.as_str());
                }
                result
            })
            .collect();
        (results, skipped)
    }

    // -----------------------------------------------------------------------------------------------------
    // Verification (timer and CLI)
    // -----------------------------------------------------------------------------------------------------

    /// Inventories the scope and plans, without writing anything.
    pub async fn observe_and_plan(
        &self,
        azure: &C::Ops,
        subscriptions: &[String],
    ) -> Result<(Plan, Observed, crate::azure::Inventory), EngineError> {
        // A fresh subscription list (one request per run) gives the tenants and, when no subscription is named,
        // the scope, so the inventory need not list subscriptions again; then the run proves it can see what it
        // is meant to verify (issue 10, rule 7).
        self.forget_subscriptions();
        let (scope, tenants) = self.scope(azure).await?;
        let named: Vec<String> = if subscriptions.is_empty() {
            self.config.subscriptions.clone()
        } else {
            subscriptions.to_vec()
        };
        let subscriptions = if named.is_empty() { scope } else { named };
        self.check_sight(azure, &subscriptions).await?;
        let mut options = InventoryOptions::new(subscriptions, self.config.tag.clone());
        options.use_resource_graph = self.config.use_resource_graph;
        let inventory = azure.inventory_with(&options).await?;
        let mut principals = HashMap::new();
        for cluster in &inventory.clusters {
            if let ClusterPrincipal::ServicePrincipal { client_id } = &cluster.principal {
                let resolved = service_principal_resolution(
                    client_id,
                    inventory.service_principals.get(client_id).cloned(),
                );
                principals.insert(cluster.id.clone(), resolved);
            }
        }
        let observed = Observed {
            clusters: inventory.clusters.clone(),
            registries: inventory.registries.clone(),
            assignments: inventory.assignments.clone(),
            role_definitions: inventory
                .role_definitions
                .iter()
                .map(|d| (d.guid.to_ascii_lowercase(), d.clone()))
                .collect(),
            principals,
            subscription_tenants: tenants,
            management_groups: HashMap::new(),
        };
        let handler_tenant = azure.handler_tenant().await;
        let plan = planner::plan(
            &observed,
            &self.plan_settings(Completeness::Full, handler_tenant),
        );
        Ok((plan, observed, inventory))
    }

    /// A full verification run within `budget`: inventory, plan, repair (enforce mode), report.
    pub async fn verify(
        &self,
        budget: Duration,
        subscriptions: &[String],
        mode_override: Option<Mode>,
    ) -> VerificationReport {
        let started = Instant::now();
        let started_at = OffsetDateTime::now_utc();
        let azure = self.client.until(started + budget);
        let subs: Vec<String> = if subscriptions.is_empty() {
            self.config.subscriptions.clone()
        } else {
            subscriptions.to_vec()
        };
        let mode = mode_override.unwrap_or(self.config.mode);
        let mut report = VerificationReport {
            started_at: started_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            duration_seconds: 0.0,
            mode,
            clusters: Vec::new(),
            registries: Vec::new(),
            pairs: Vec::new(),
            registry_results: Vec::new(),
            complete: true,
            unverified_pairs: 0,
            azure_requests: 0,
            inventory: InventoryOutcome::Failed(String::new()),
            capacity: Vec::new(),
        };
        match self.observe_and_plan(&azure, &subs).await {
            Ok((mut plan, observed, inventory)) => {
                if mode == Mode::Audit {
                    plan = audit_only(plan);
                }
                report.inventory = InventoryOutcome::Taken(inventory.source);
                report.clusters = observed.clusters.iter().map(|c| c.id.clone()).collect();
                report.registries = observed.registries.iter().map(|r| r.id.clone()).collect();
                let (pairs, skipped) = self.apply(&azure, &plan, None).await;
                report.capacity = capacity(
                    &observed.registries,
                    &inventory.assignments_per_subscription,
                    &pairs,
                );
                report.pairs = pairs;
                report.registry_results = plan.registry_results;
                if skipped > 0 {
                    report.complete = false;
                    report.unverified_pairs = skipped;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, error.type = e.kind(), "verification run could not inventory the scope");
                report.complete = false;
                report.inventory = InventoryOutcome::Failed(e.to_string());
            }
        }
        report.azure_requests = azure.requests_sent();
        report.duration_seconds = started.elapsed().as_secs_f64();
        report
    }
}

fn out_of_scope(report: &mut EventReport, id: &ResourceId) {
    report.outcome = EventOutcome::Ignored;
    report.notes.push(format!(
        "subscription {} is not in AUTOATTACH_SUBSCRIPTIONS: out of scope",
        id.subscription_id()
    ));
}

/// Turns every write of a plan into the audit equivalent (a CLI `--dry-run` or `audit` override).
pub fn audit_only(mut plan: Plan) -> Plan {
    plan.items
        .retain(|i| !matches!(i.action, Action::Remove { .. }));
    for item in &mut plan.items {
        if let Action::Create(spec) = &item.action {
            item.action = Action::ReportMissing(spec.clone());
        }
    }
    plan
}

async fn apply_item<A: AzureOps>(azure: &A, item: &PlanItem, metrics: &Metrics) -> ApplyOutcome {
    let outcome = write_item(azure, item).await;
    if let Some(role) = item.role {
        let label = match (&item.action, &outcome) {
            (_, ApplyOutcome::Failed { .. }) => Some(AssignmentOutcome::Failed),
            (_, ApplyOutcome::Created { .. }) => Some(AssignmentOutcome::Created),
            (_, ApplyOutcome::AlreadyExists | ApplyOutcome::NameTaken { .. }) => {
                Some(AssignmentOutcome::Exists)
            }
            (_, ApplyOutcome::Removed) => Some(AssignmentOutcome::Removed),
            (_, ApplyOutcome::NotApplied) => None,
        };
        if let Some(label) = label {
            metrics.record_assignment(label, role);
        }
    }
    outcome
}

async fn write_item<A: AzureOps>(azure: &A, item: &PlanItem) -> ApplyOutcome {
    match &item.action {
        Action::Create(spec) => match azure.put_role_assignment(spec).await {
            Ok(PutOutcome::Created(a) | PutOutcome::Unchanged(a)) => ApplyOutcome::Created {
                assignment_id: a.id,
            },
            Ok(PutOutcome::AlreadyExists) => ApplyOutcome::AlreadyExists,
            Err(AzureError::RoleAssignmentLimitExceeded { .. }) => {
                ApplyOutcome::Failed(limit_failure(item.registry.subscription_id()))
            }
            Err(e) => ApplyOutcome::Failed(pair_failure(&e)),
        },
        Action::Remove { assignment, .. } => {
            match azure.delete_role_assignment(&assignment.id).await {
                Ok(DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone) => ApplyOutcome::Removed,
                Err(e) => ApplyOutcome::Failed(pair_failure(&e)),
            }
        }
        _ => ApplyOutcome::NotApplied,
    }
}

/// A failed write as the pair's typed failure: its kind (the metric label) and whether retrying can help.
/// A pair in a full subscription: names the limit and the subscription, and what helps. Not transient.
fn limit_failure(subscription: &str) -> PairFailure {
    PairFailure::permanent(
        LIMIT_REASON_PREFIX,
        format!(
            "subscription {subscription} holds Azure's fixed maximum of {ROLE_ASSIGNMENT_LIMIT} role assignments; no assignment can be created there until some are removed or replaced by group assignments (https://aka.ms/rbac-limits)"
        ),
    )
}

/// Per subscription holding a registry in scope: the assignments the inventory counted against the limit,
/// and whether Azure refused a PUT there for the limit in this run.
pub fn capacity(
    registries: &[Registry],
    counted: &BTreeMap<String, u64>,
    pairs: &[PairResult],
) -> Vec<SubscriptionCapacity> {
    let exhausted: BTreeSet<String> = pairs
        .iter()
        .filter(|p| {
            p.failure
                .as_ref()
                .is_some_and(|f| f.kind == LIMIT_REASON_PREFIX)
        })
        .map(|p| p.registry_id.subscription_id().to_ascii_lowercase())
        .collect();
    registries
        .iter()
        .map(|r| r.id.subscription_id().to_ascii_lowercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|subscription| SubscriptionCapacity {
            assignments: counted.get(&subscription).copied().unwrap_or(0),
            limit: ROLE_ASSIGNMENT_LIMIT,
            exhausted: exhausted.contains(&subscription),
            subscription,
        })
        .collect()
}

fn pair_failure(e: &AzureError) -> PairFailure {
    PairFailure {
        kind: e.kind(),
        transient: e.is_transient(),
        detail: e.to_string(),
    }
}

/// The creates whose deterministic name is already taken at their registry, read fresh from ARM (one list per
/// registry with a create) just before writing: Resource Graph lags, and a PUT under an existing name would
/// rewrite it (e.g. drop a condition a person added). A create whose registry cannot be read is not sent.
async fn names_taken<A: AzureOps>(azure: &A, plan: &Plan) -> HashMap<usize, ApplyOutcome> {
    if azure.deadline().saturating_duration_since(Instant::now()) < REPORT_RESERVE {
        // No write will be sent anyway (see `Engine::apply`).
        return HashMap::new();
    }
    let mut by_registry: HashMap<&ResourceId, Vec<(usize, String)>> = HashMap::new();
    for (index, item) in plan.items.iter().enumerate() {
        if let Action::Create(spec) = &item.action {
            by_registry
                .entry(&item.registry)
                .or_default()
                .push((index, spec.name.to_string()));
        }
    }
    let lists = by_registry.iter().map(|(registry, creates)| async move {
        (
            creates,
            azure
                .list_role_assignments(registry.as_str(), &AssignmentFilter::AtScope)
                .await,
        )
    });
    let mut decided = HashMap::new();
    for (creates, listed) in futures::future::join_all(lists).await {
        match listed {
            Ok(found) => {
                for (index, name) in creates {
                    if let Some(a) = found.iter().find(|a| a.name.eq_ignore_ascii_case(name)) {
                        decided.insert(
                            *index,
                            ApplyOutcome::NameTaken {
                                assignment_id: a.id.clone(),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                for (index, _) in creates {
                    decided.insert(*index, ApplyOutcome::Failed(pair_failure(&e)));
                }
            }
        }
    }
    decided
}

/// Confirms every created assignment through a fresh ARM read: one list per registry written to (at scope),
/// so the read-back grows with the writes, never with the pairs observed.
async fn read_back<A: AzureOps>(azure: &A, plan: &Plan, outcomes: &mut [ApplyOutcome]) {
    let mut by_registry: HashMap<&ResourceId, Vec<usize>> = HashMap::new();
    for (index, outcome) in outcomes.iter().enumerate() {
        if matches!(outcome, ApplyOutcome::Created { .. }) {
            by_registry
                .entry(&plan.items[index].registry)
                .or_default()
                .push(index);
        }
    }
    let lists = by_registry.iter().map(|(registry, indices)| async move {
        (
            indices,
            azure
                .list_role_assignments(registry.as_str(), &AssignmentFilter::AtScope)
                .await,
        )
    });
    for (indices, listed) in futures::future::join_all(lists).await {
        match listed {
            Ok(found) => {
                let ids: HashSet<String> =
                    found.iter().map(|a| a.id.to_ascii_lowercase()).collect();
                for &index in indices {
                    if let ApplyOutcome::Created { assignment_id } = &outcomes[index]
                        && !ids.contains(&assignment_id.to_ascii_lowercase())
                    {
                        outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                            PairFailure::NOT_VISIBLE,
                            "created, but not yet visible on read-back",
                        ));
                    }
                }
            }
            Err(e) => {
                for &index in indices {
                    outcomes[index] = ApplyOutcome::Failed(PairFailure::transient(
                        e.kind(),
                        format!("read-back failed: {e}"),
                    ));
                }
            }
        }
    }
}
