//! The event path: one classified event, read from Azure (the event only names the resource), planned for
//! its pairs, applied and read back within the delivery deadline.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C: AzureConnect> Engine<C> {
    /// Handles one classified event, starting the clock at `started`: when the host dispatched the invocation
    /// (Event Grid's 30 s run from about then), or its arrival when the host's time is not known.
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
    /// readiness budget is spent: at arrival, then after [`READY_FIRST_PAUSE`] and pauses doubling from there
    /// (0, 1, 3, 7, 15 s), so a cluster that becomes ready within a second of its event costs two reads and the
    /// 20 s budget at most five (docs/operations.md, "Readiness"). Each read takes a turn among the process's
    /// event runs (`admission.rs`), given back during the pauses; the ready cluster comes with its turn.
    pub(super) async fn wait_ready(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        started: Instant,
    ) -> Result<Option<(Cluster, tokio::sync::SemaphorePermit<'_>)>, EngineError> {
        let ready_deadline = started + self.config.ready_timeout;
        let mut pause = READY_FIRST_PAUSE;
        loop {
            // Everything this run decides is read from its turn on: deliveries that arrived during its pause or
            // its wait for a turn (the completion event of a cluster whose accept-time event is waiting) share
            // it (single flight).
            let turn = self.admit(azure).await?;
            let Some(cluster) = azure.get_cluster(id).await? else {
                return Ok(None);
            };
            if cluster.is_ready() {
                return Ok(Some((cluster, turn)));
            }
            drop(turn);
            let now = Instant::now();
            if now + pause > ready_deadline {
                return Err(EngineError::ClusterNotReady {
                    cluster: id.to_string(),
                    state: cluster.provisioning_state,
                    waited_secs: (now - started).as_secs(),
                });
            }
            crate::runtime::singleflight::nothing_read_decides();
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }

    pub(super) async fn on_cluster_write(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        started: Instant,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        let Some((cluster, _turn)) = self.wait_ready(azure, id, started).await? else {
            report
                .notes
                .push("cluster no longer exists; nothing to attach".into());
            return Ok(());
        };
        let (scope, tenants) = self.event_scope(azure, id.subscription_id()).await?;
        let registries = self.shared_registries(azure, &scope, started).await?;
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
        // one list per subscription, whatever the number of registries. Fresh from ARM, it shows every
        // assignment that could bear a name this event would create, so it is the pre-create check too
        // (`Observation::FreshArm`).
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

    pub(super) async fn on_registry_write(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        let _turn = self.admit(azure).await?;
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
        let (scope, tenants) = self
            .event_scope(azure, registry.id.subscription_id())
            .await?;
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

    pub(super) async fn on_cluster_delete(
        &self,
        azure: &C::Ops,
        id: &ResourceId,
        meta: &EventMetadata,
        started: Instant,
        report: &mut EventReport,
    ) -> Result<(), EngineError> {
        let turn = self.admit(azure).await?;
        // Events can be late and reordered: a cluster re-created under the same id is handled as a write.
        if azure.get_cluster(id).await?.is_some() {
            report.notes.push(
                "a cluster with this id exists again (re-created): handled as a write".into(),
            );
            drop(turn);
            return self
                .on_cluster_write(azure, id, meta, started, report)
                .await;
        }
        let (scope, tenants) = self.event_scope(azure, id.subscription_id()).await?;
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
        // The observed assignments are only the deleted cluster's, so a create this plan holds for a live
        // cluster was not checked against that cluster's own: it takes the fresh per-registry check.
        let (pairs, _) = self
            .apply(azure, &plan, meta.event_time, Observation::Inventory)
            .await;
        report.pairs = pairs;
        Ok(())
    }

    /// Tagged registries in `scope` (ARM lists, one per subscription: always current, unlike Resource Graph).
    pub(super) async fn tagged_registries(
        &self,
        azure: &C::Ops,
        scope: &[String],
    ) -> Result<Vec<Registry>, AzureError> {
        tagged_registries(azure, scope, &self.config.tag).await
    }

    /// The principal that must hold access; a service-principal cluster's object id comes from Graph.
    pub(super) async fn resolve_principal(
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
    pub(super) async fn custom_roles(
        &self,
        azure: &C::Ops,
        assignments: &[RoleAssignment],
        notes: &mut Vec<String>,
    ) -> Result<HashMap<String, RoleDefinition>, AzureError> {
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for a in assignments {
            let guid = a.role_definition_guid.to_ascii_lowercase();
            if crate::core::roles::built_in(&guid).is_none() {
                wanted.entry(guid).or_insert_with(|| a.scope.to_string());
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
}

/// Tagged registries in `scope` for a cluster event: one Resource Graph query whatever the number of
/// subscriptions, or ARM lists (one per subscription) with `AUTOATTACH_USE_RESOURCE_GRAPH=false` or when
/// Resource Graph fails or does not answer within [`RESOURCE_GRAPH_EVENT_BUDGET`] (e.g. its quota is
/// spent). Resource Graph lags ARM (most changes within ~30 s): what that means for an event is in
/// docs/operations.md ("What one event costs") and docs/security.md (rule 2).
pub(super) async fn registries_for_cluster_event<A: AzureOps>(
    azure: &A,
    scope: &[String],
    use_resource_graph: bool,
    tag: &str,
) -> Result<Vec<Registry>, AzureError> {
    if use_resource_graph && !scope.is_empty() {
        let query = azure.registries_from_resource_graph(scope);
        match tokio::time::timeout(RESOURCE_GRAPH_EVENT_BUDGET, query).await {
            Ok(Ok(registries)) => {
                return Ok(registries
                    .into_iter()
                    .filter(|r| r.tags.contains_key(tag))
                    .collect());
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registries from Resource Graph failed; listing them through ARM");
            }
            Err(_) => {
                tracing::warn!(
                    "Resource Graph did not answer within {RESOURCE_GRAPH_EVENT_BUDGET:?}; listing registries through ARM"
                );
            }
        }
    }
    tagged_registries(azure, scope, tag).await
}

/// Tagged registries in `scope` (ARM lists, one per subscription: always current, unlike Resource Graph).
async fn tagged_registries<A: AzureOps>(
    azure: &A,
    scope: &[String],
    tag: &str,
) -> Result<Vec<Registry>, AzureError> {
    let lists = scope.iter().map(|s| azure.list_registries(s));
    let mut out = Vec::new();
    for list in futures::future::join_all(lists).await {
        out.extend(list?.into_iter().filter(|r| r.tags.contains_key(tag)));
    }
    Ok(out)
}
