//! The reconciliation engine: observe through the Azure client, plan with the pure planner, apply, read back,
//! and turn the outcome into verification results. One engine serves the event path (OnResourceEvent), the
//! timer (VerifyAttachments) and the operator CLI.
//!
//! Request budget of one event (S = subscriptions holding tagged registries, S' = subscriptions in scope,
//! W = writes; docs/operations.md "What one event costs"):
//! - cluster write: 1 GET cluster (+1 per readiness poll: 1 s, then doubling) + 1 Resource Graph query for the
//!   registries (S' ARM lists with `AUTOATTACH_USE_RESOURCE_GRAPH=false` or when it fails) + S role-assignment
//!   lists filtered by the kubelet principal, fresh from ARM, which are also the pre-create check (a PUT only
//!   creates) + W PUTs, each verified by ARM's own answer: at most W + S + 3 with one readiness poll.
//! - registry write: 1 GET registry + S' cluster lists + 1 role-assignment list at the registry (at and above)
//!   + one Graph lookup per selected service-principal cluster + W writes.
//! - cluster delete (detach on): 1 GET cluster + S' registry lists + S' cluster lists (shared principals) + one
//!   Graph lookup per service-principal cluster + S unfiltered role-assignment lists + W (+ a fresh list and a
//!   read-back per registry with a create: its lists hold only the deleted cluster's assignments).
//! - verification (timer, CLI): 1 subscription list + S' own-assignment lists and one role-definition GET per
//!   distinct role the identity holds (the sight check, issue 10 rule 7) + the inventory + W + one fresh list
//!   per registry with a create before it and one read-back list after (the inventory may lag).
//! - everything else: zero requests.
//!
//! The subscription list (for scope and tenants) is cached per process for [`SUBSCRIPTION_CACHE_TTL`] (+1 when
//! it is refilled), and the token per audience until shortly before it expires (one fetch per process).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::time::Instant;

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
mod admission;
mod apply;
mod event_path;
mod group_apply;
mod groups;
mod schedule;
mod sight;

pub use admission::{ADMISSION_RESERVE, event_runs};
pub use apply::Observation;
pub use apply::capacity;
use apply::{names_taken, read_back};
use group_apply::JoinCtx;
pub use groups::GroupCache;

/// How long events reuse the list of visible subscriptions: longer than the default timer period (30 min), so in
/// a process that runs the timer (whose verification runs always list anew, rule 7) an event finds a list at
/// most one period old and pays no request for it. A list that does not hold the event's own subscription is
/// refilled at once ([`Engine::event_scope`]).
pub const SUBSCRIPTION_CACHE_TTL: Duration = Duration::from_mins(35);
/// Event Grid waits 30 s for the whole delivery; an event invocation never plans past this.
pub const EVENT_HARD_BUDGET: Duration = Duration::from_secs(27);
/// The first pause before reading a cluster that was not ready again; each further pause doubles.
pub const READY_FIRST_PAUSE: Duration = Duration::from_secs(1);
/// How long a cluster event waits for Resource Graph's registry query before listing through ARM instead.
pub const RESOURCE_GRAPH_EVENT_BUDGET: Duration = Duration::from_secs(3);
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
    /// Turns of the process's event runs and the registry reads they share (`admission.rs`).
    gate: admission::EventGate,
    /// Group mode: what this process knows of the tool's groups, their members and capacity (`groups.rs`).
    groups: Mutex<GroupCache>,
    /// Held while an event fills what the cache lacks, so a burst fills it once.
    group_fill: tokio::sync::Mutex<()>,
}

/// `d` before now, or the first instant this process asked for one when it has not been running that long;
/// never after now (tests run runtimes with paused clocks side by side, each its own "now").
pub fn ago(d: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let now = Instant::now();
    now.checked_sub(d).map_or(epoch, |t| t.max(epoch)).min(now)
}

impl<C: AzureConnect> Engine<C> {
    pub fn new(config: Config, client: C) -> Self {
        Self {
            gate: admission::EventGate::new(config.max_concurrency),
            config,
            client,
            metrics: Metrics::noop(),
            subscriptions: SingleFlight::new(SUBSCRIPTION_CACHE_TTL),
            subscriptions_fresh_after: Mutex::new(None),
            groups: Mutex::new(GroupCache::default()),
            group_fill: tokio::sync::Mutex::new(()),
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
            grant: self.grant_mode(),
            now_unix: groups::now_unix(),
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

    /// [`Self::scope`] for an event about a resource in `subscription`: the cached list, listed anew when it
    /// does not hold that subscription (made visible since the list was filled).
    async fn event_scope(
        &self,
        azure: &C::Ops,
        subscription: &str,
    ) -> Result<(Vec<String>, HashMap<String, String>), AzureError> {
        let known = self
            .visible_subscriptions(azure)
            .await?
            .iter()
            .any(|s| s.subscription_id.eq_ignore_ascii_case(subscription));
        if !known {
            self.forget_subscriptions();
        }
        self.scope(azure).await
    }

    // -----------------------------------------------------------------------------------------------------
    // Events
    // -----------------------------------------------------------------------------------------------------

    async fn plan_apply_report(
        &self,
        azure: &C::Ops,
        mut observed: Observed,
        completeness: Completeness,
        meta: &EventMetadata,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        self.observe_groups_event(azure, &mut observed, &mut report.notes)
            .await?;
        let handler_tenant = azure.handler_tenant().await;
        let plan = planner::plan(&observed, &self.plan_settings(completeness, handler_tenant));
        if plan.items.is_empty() && plan.registry_results.is_empty() {
            report.notes.push("no registry selects this cluster".into());
        }
        let (pairs, _, notes) = self
            .apply_noted(azure, &plan, meta.event_time, Observation::FreshArm)
            .await;
        report.pairs = pairs;
        report.notes.extend(notes);
        report.registry_results = plan.registry_results;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------
    // Apply
    // -----------------------------------------------------------------------------------------------------

    /// Applies the plan's writes with bounded concurrency until the deadline's reserve, interleaved across
    /// ARM's buckets (`schedule.rs`), confirms what it created (how depends on `observation`), and returns one
    /// result per item plus how many writes were skipped for lack of time.
    pub async fn apply(
        &self,
        azure: &C::Ops,
        plan: &Plan,
        event_time: Option<OffsetDateTime>,
        observation: Observation,
    ) -> (Vec<PairResult>, usize) {
        let (results, skipped, notes) =
            self.apply_noted(azure, plan, event_time, observation).await;
        for note in notes {
            tracing::info!("{note}");
        }
        (results, skipped)
    }

    /// [`Self::apply`], with group mode's actions (the group and its assignment before the pairs, removals from
    /// the tool's groups after them) and a note for each of those.
    pub async fn apply_noted(
        &self,
        azure: &C::Ops,
        plan: &Plan,
        event_time: Option<OffsetDateTime>,
        observation: Observation,
    ) -> (Vec<PairResult>, usize, Vec<String>) {
        let mut notes = Vec::new();
        let ids = self.apply_group_setup(azure, plan, &mut notes).await;
        let mut outcomes: Vec<ApplyOutcome> = vec![ApplyOutcome::NotApplied; plan.items.len()];
        // One span per written pair; it closes with the final status (after read-back) recorded on it.
        let mut spans: Vec<Option<tracing::Span>> = vec![None; plan.items.len()];
        // PUT only to create: a plan made from an inventory that may lag reads each registry written to afresh,
        // to settle names the snapshot missed; a plan made from fresh ARM lists already saw them.
        let mut decided = match observation {
            Observation::Inventory => names_taken(azure, plan).await,
            Observation::FreshArm => HashMap::new(),
        };
        // A join whose fast-path name is taken still joins; it only does not PUT.
        let mut ctx = JoinCtx {
            ids,
            cache: &self.groups,
            settings: self.grant_mode().group(),
            taken: HashMap::new(),
            pending: Mutex::new(HashMap::new()),
        };
        decided.retain(
            |index, outcome| match (&plan.items[*index].action, &*outcome) {
                (
                    Action::Join {
                        meanwhile: planner::Meanwhile::FastPath(spec),
                        ..
                    },
                    ApplyOutcome::NameTaken { assignment_id },
                ) => {
                    ctx.taken
                        .insert(spec.name.to_string(), assignment_id.clone());
                    false
                }
                _ => true,
            },
        );
        for (index, outcome) in &decided {
            outcomes[*index] = outcome.clone();
        }
        let skipped = self
            .send_writes(azure, plan, &decided, &mut outcomes, &mut spans, &ctx)
            .await;
        let overrides = ctx
            .pending
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.count_pair_writes(plan, &outcomes);
        if observation == Observation::Inventory {
            read_back(azure, plan, &mut outcomes).await;
        }
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
            .collect::<Vec<PairResult>>();
        let mut results = results;
        for (index, reason) in overrides {
            let r = &mut results[index];
            r.status = PairStatus::Pending;
            r.reason = Some(reason.to_string());
            r.failure = None;
            r.latency_seconds = None;
        }
        let (removal_notes, left) = self.apply_group_removals(azure, plan).await;
        notes.extend(removal_notes);
        results.extend(left);
        (results, skipped, notes)
    }

    // -----------------------------------------------------------------------------------------------------
    // Verification (timer and CLI)
    // -----------------------------------------------------------------------------------------------------

    /// Inventories the scope and plans, without writing anything. The inventory's role assignments — the bulk of
    /// it at scale — and the clusters are moved into the returned [`Observed`], not copied: the returned
    /// inventory's `assignments` and `clusters` are empty.
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
        let mut inventory = azure.inventory_with(&options).await?;
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
        let mut observed = Observed {
            // Moved: the returned inventory's `clusters` is empty too.
            clusters: std::mem::take(&mut inventory.clusters),
            registries: inventory.registries.clone(),
            assignments: std::mem::take(&mut inventory.assignments),
            role_definitions: inventory
                .role_definitions
                .iter()
                .map(|d| (d.guid.to_ascii_lowercase(), d.clone()))
                .collect(),
            principals,
            subscription_tenants: tenants,
            management_groups: HashMap::new(),
            ..Observed::default()
        };
        // The tool's groups (both modes: direct mode drains them), other groups' members (group mode) and the
        // usage per subscription. A Graph gap is reported with the inventory's warnings, never fatal.
        let gaps = self
            .observe_groups_timer(
                azure,
                &mut observed,
                &inventory.assignments_per_subscription,
            )
            .await?;
        inventory.warnings.extend(gaps);
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
        self.verify_noted(budget, subscriptions, mode_override)
            .await
            .0
    }

    /// [`Self::verify`], with notes: group mode's gaps (a missing Graph permission) and group actions.
    pub async fn verify_noted(
        &self,
        budget: Duration,
        subscriptions: &[String],
        mode_override: Option<Mode>,
    ) -> (VerificationReport, Vec<String>) {
        let mut notes = Vec::new();
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
                // The snapshot has been planned: only the registries (for capacity) outlive the writes.
                let registries = observed.registries;
                drop((observed.clusters, observed.assignments, inventory.clusters));
                notes.extend(
                    inventory
                        .warnings
                        .iter()
                        .filter(|w| w.starts_with("group mode"))
                        .cloned(),
                );
                let (pairs, skipped, applied) = self
                    .apply_noted(&azure, &plan, None, Observation::Inventory)
                    .await;
                notes.extend(applied);
                report.capacity = capacity(
                    &registries,
                    &inventory.assignments_per_subscription,
                    &pairs,
                    u64::from(self.config.grant.limit),
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
        (report, notes)
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
