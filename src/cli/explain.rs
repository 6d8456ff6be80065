//! `acr-autoattach explain`: observes one pair through the Azure client, explains it with
//! [`crate::core::explain`] and renders the answer for a terminal.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use tokio::time::Instant;

use super::operator::{
    EXIT_NOT_IN_ORDER, EXIT_OK, EXPLAIN_BUDGET, ExplainArgs, OperatorError, block_on, engine,
};
use crate::azure::{AssignmentFilter, ScopedClient};
use crate::cli::report::terminal_safe;
use crate::core::explain::{Explanation, ScopedAssignment, Selection, explain_pair};
use crate::core::model::{
    ClusterPrincipal, Mode, ResourceId, RoleDefinition, service_principal_resolution,
};
use crate::core::planner::{Completeness, Observed, PlanSettings, ScopeLevel};
use crate::runtime::config::{Env, ProcessEnv};
use crate::runtime::engine::Engine;

/// `acr-autoattach explain`.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    block_on(run_explain(args, &ProcessEnv))
}

/// Reads the pair and prints why it is (or is not) attached. 0: compliant, or not selected with nothing to
/// remove; 1: something to do or a problem (missing, pending, refused, invalid selector, removal due); 2: error.
pub async fn run_explain(args: &ExplainArgs, env: &dyn Env) -> Result<u8, OperatorError> {
    let cluster_id = ResourceId::parse(&args.cluster)?;
    let registry_id = ResourceId::parse(&args.registry)?;
    let (engine, _) = engine(&args.connection, env, |_| {})?;
    let azure = engine
        .client()
        .with_deadline(Instant::now() + EXPLAIN_BUDGET);
    let (observed, notes) = observe_pair(&engine, &azure, &cluster_id, &registry_id).await?;
    let handler_tenant = engine
        .client()
        .identity(azure.deadline())
        .await
        .ok()
        .and_then(|c| c.tenant_id);
    let config = engine.config();
    let settings = PlanSettings {
        tag_name: config.tag.clone(),
        // Explain says what reconcile would do.
        mode: Mode::Enforce,
        detach: config.detach,
        handler_tenant,
        deleted_clusters: std::collections::BTreeSet::new(),
        completeness: Completeness::Partial,
        grant: engine.grant_mode(),
        now_unix: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    let mut explanation = explain_pair(&observed, &settings)
        .ok_or_else(|| OperatorError::NotFound("cluster or registry not observed".into()))?;
    explanation.notes.extend(notes);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).unwrap_or_default()
        );
    } else {
        print!("{}", render_explanation(&explanation));
    }
    Ok(if explanation.verdict.in_order {
        EXIT_OK
    } else {
        EXIT_NOT_IN_ORDER
    })
}

/// Everything the planner needs to judge one pair: the cluster, the registry, the principal's assignments (one
/// list at the registry's subscription with the principal filter: at, above and below), custom role definitions
/// and tenants.
async fn observe_pair(
    engine: &Engine,
    azure: &ScopedClient,
    cluster_id: &ResourceId,
    registry_id: &ResourceId,
) -> Result<(Observed, Vec<String>), OperatorError> {
    let (cluster, registry, subscriptions) = futures::try_join!(
        azure.get_cluster(cluster_id),
        azure.get_registry(registry_id),
        azure.list_subscriptions(),
    )?;
    let cluster =
        cluster.ok_or_else(|| OperatorError::NotFound(format!("no cluster {cluster_id}")))?;
    let registry =
        registry.ok_or_else(|| OperatorError::NotFound(format!("no registry {registry_id}")))?;
    let mut notes = Vec::new();
    let mut observed = Observed {
        subscription_tenants: subscriptions
            .iter()
            .filter_map(|s| Some((s.subscription_id.to_ascii_lowercase(), s.tenant_id.clone()?)))
            .collect(),
        ..Observed::default()
    };
    let principal = match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } => Some(object_id.clone()),
        ClusterPrincipal::NotYetKnown => None,
        ClusterPrincipal::ServicePrincipal { client_id } => {
            let resolved = match azure.resolve_service_principal(client_id).await {
                Ok(lookup) => service_principal_resolution(client_id, Some(lookup)),
                Err(e) => Err(e.to_string()),
            };
            observed
                .principals
                .insert(cluster.id.clone(), resolved.clone());
            resolved.ok()
        }
    };
    observed.assignments = if let Some(p) = &principal {
        azure
            .list_role_assignments(
                &registry.id.subscription_scope(),
                &AssignmentFilter::Principal(p.clone()),
            )
            .await?
    } else {
        notes.push(
            "the cluster's principal is not known yet: listing every assignment at or above the registry"
                .into(),
        );
        azure
            .list_role_assignments(registry.id.as_str(), &AssignmentFilter::AtScope)
            .await?
    };
    let mut custom: Vec<&str> = observed
        .assignments
        .iter()
        .map(|a| a.role_definition_guid.as_str())
        .filter(|g| crate::core::roles::built_in(g).is_none())
        .collect();
    custom.sort_unstable();
    custom.dedup();
    let mut definitions: HashMap<String, RoleDefinition> = HashMap::new();
    for guid in custom {
        match azure
            .get_role_definition(&registry.id.subscription_scope(), guid)
            .await
        {
            Ok(Some(d)) => {
                definitions.insert(guid.to_ascii_lowercase(), d);
            }
            Ok(None) => notes.push(format!("role definition {guid} not found; not counted")),
            Err(e) => notes.push(format!(
                "role definition {guid} unreadable ({e}); not counted"
            )),
        }
    }
    observed.role_definitions = definitions;
    if let Some(p) = &principal {
        observe_groups(engine, azure, &mut observed, p, &registry, &mut notes).await?;
    }
    notes.push(
        "assignments at management-group scope are not counted (their ancestry is not read)".into(),
    );
    if engine.config().detach {
        notes.push(
            "detach is on (AUTOATTACH_DETACH): owned assignments no longer wanted are removed"
                .into(),
        );
    }
    observed.clusters.push(cluster);
    observed.registries.push(registry);
    Ok((observed, notes))
}

/// The principal's groups (`transitiveMemberOf`, nested included) and the assignments those groups hold at or
/// above the registry, so the explanation shows a group path; and the tool's own group for the registry. A
/// missing Graph permission is a note, never an error: the explanation then rests on what ARM shows.
async fn observe_groups(
    engine: &Engine,
    azure: &ScopedClient,
    observed: &mut Observed,
    principal: &str,
    registry: &crate::core::model::Registry,
    notes: &mut Vec<String>,
) -> Result<(), OperatorError> {
    let groups = match azure.transitive_member_of(principal).await {
        Ok(groups) => groups,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => {
            notes.push(format!(
                "the principal's groups were not read ({e}): a pull held through a group is not shown"
            ));
            return Ok(());
        }
    };
    let ids: Vec<String> = groups.iter().map(|g| g.id.to_ascii_lowercase()).collect();
    observed.memberships.insert(principal, &ids);
    if !ids.is_empty() {
        let above = azure
            .list_role_assignments(registry.id.as_str(), &AssignmentFilter::AtScope)
            .await?;
        observed.assignments.extend(
            above
                .into_iter()
                .filter(|a| ids.contains(&a.principal_id.to_ascii_lowercase())),
        );
    }
    let role = crate::core::model::PullRole::for_mode(registry.mode);
    let spec = crate::core::groups::GroupSpec::new(registry.id.clone(), role);
    let caller = azure.graph_caller_id().await;
    match caller {
        Ok(caller) => match azure.find_own_group(&spec, &caller).await {
            Ok(Some(g)) => {
                observed
                    .own_groups
                    .insert((registry.id.clone(), role), g.id.to_ascii_lowercase());
            }
            Ok(None) => {}
            Err(e) => notes.push(format!("the tool's group was not looked up ({e})")),
        },
        Err(e) => notes.push(format!("the tool's group was not looked up ({e})")),
    }
    if engine.config().grant.mode == crate::runtime::config::GrantModeSetting::Group {
        notes.push(
            "group mode: when a membership in the tool's group began is read from the fast-path assignment's \
             member-since mark only (a one-shot explain holds no process memory)"
                .into(),
        );
    }
    Ok(())
}

/// The explanation as numbered steps for a terminal (values from Azure neutralised).
pub fn render_explanation(e: &Explanation) -> String {
    let clean = terminal_safe;
    let mut out = String::new();
    let _ = writeln!(out, "cluster  {}", clean(e.cluster.id.as_str()));
    let _ = writeln!(out, "registry {}", clean(e.registry.id.as_str()));
    let _ = writeln!(out);
    explain_cluster(&mut out, e);
    explain_selection(&mut out, e);
    let tenant = |t: &Option<String>| t.as_deref().map_or_else(|| "unknown".to_owned(), clean);
    let _ = writeln!(
        out,
        "4. tenants: cluster {}, registry {}, handler {}",
        tenant(&e.tenants.cluster),
        tenant(&e.tenants.registry),
        tenant(&e.tenants.handler)
    );
    let _ = writeln!(out, "5. role: {} ({})", e.role, e.role_reason);
    let _ = writeln!(
        out,
        "6. principal: {}{}",
        e.principal_id
            .as_deref()
            .map_or_else(|| "unknown".to_owned(), clean),
        e.principal_note
            .as_deref()
            .map(|n| format!(" — {}", clean(n)))
            .unwrap_or_default()
    );
    explain_assignments(&mut out, e);
    explain_group_paths(&mut out, e);
    let _ = writeln!(out, "8. verdict: {}", clean(&e.verdict.text));
    for note in &e.notes {
        let _ = writeln!(out, "   note: {}", clean(note));
    }
    out
}

/// Step 1: the cluster's facts and tags.
fn explain_cluster(out: &mut String, e: &Explanation) {
    let clean = terminal_safe;
    let _ = writeln!(
        out,
        "1. cluster: subscription {}, resource group {}, location {}, provisioningState {}",
        clean(&e.cluster.subscription),
        clean(e.cluster.resource_group.as_deref().unwrap_or("?")),
        clean(&e.cluster.location),
        clean(&e.cluster.provisioning_state)
    );
    let tags: Vec<String> = e
        .cluster
        .tags
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect();
    let _ = writeln!(
        out,
        "   tags: {}",
        if tags.is_empty() {
            "(none)".to_owned()
        } else {
            tags.join(", ")
        }
    );
}

/// Steps 2 and 3: the registry's tag, its selector step by step, the cluster's opt-out, the selection.
fn explain_selection(out: &mut String, e: &Explanation) {
    let clean = terminal_safe;
    let _ = writeln!(
        out,
        "2. registry tag `{}`: {}",
        clean(&e.registry.tag_name),
        e.registry
            .tag_value
            .as_deref()
            .map_or_else(|| "absent".to_owned(), |v| format!("`{}`", clean(v)))
    );
    match &e.selection {
        Selection::NotOptedIn => {
            let _ = writeln!(out, "   → not opted in: the registry selects no cluster");
        }
        Selection::All => {
            let _ = writeln!(out, "   → `*`: every cluster in scope is selected");
        }
        Selection::Selector { canonical, steps } => {
            let _ = writeln!(out, "   selector {}", clean(canonical));
            for step in steps {
                let _ = writeln!(
                    out,
                    "   {} {:<30} cluster's {} = {}",
                    if step.passed { "✓" } else { "✗" },
                    clean(&step.requirement),
                    clean(&step.key),
                    step.cluster_value
                        .as_deref()
                        .map_or_else(|| "(absent)".to_owned(), clean)
                );
            }
        }
        Selection::Invalid { error } => {
            let _ = writeln!(out, "   ✗ invalid selector: {}", clean(error));
        }
    }
    let _ = writeln!(
        out,
        "3. cluster opt-out (`{}=off`): {}",
        clean(&e.registry.tag_name),
        if e.cluster_opted_out {
            "yes: never selected"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "   → {}",
        if e.selected {
            "selected"
        } else {
            "not selected"
        }
    );
}

/// Step 7: the assignments at the registry and above, level by level.
fn explain_assignments(out: &mut String, e: &Explanation) {
    let clean = terminal_safe;
    let _ = writeln!(out, "7. assignments at the registry and above:");
    for level in [
        ScopeLevel::Registry,
        ScopeLevel::ResourceGroup,
        ScopeLevel::Subscription,
        ScopeLevel::ManagementGroup,
        ScopeLevel::Root,
    ] {
        let here: Vec<&ScopedAssignment> =
            e.assignments.iter().filter(|a| a.level == level).collect();
        if here.is_empty() && matches!(level, ScopeLevel::ManagementGroup | ScopeLevel::Root) {
            continue;
        }
        let _ = writeln!(out, "   {} scope:", level.as_str());
        if here.is_empty() {
            let _ = writeln!(out, "     (none)");
        }
        for a in here {
            let _ = writeln!(
                out,
                "     {}{} for {} — {} [{}]",
                clean(&a.role),
                if a.owned { " (ours)" } else { "" },
                clean(&a.principal_id),
                a.covers_pull.as_deref().map_or_else(
                    || "does not grant pull here".to_owned(),
                    |c| format!("covers pull: {}", clean(c))
                ),
                clean(&a.id)
            );
        }
    }
    if e.assignments_elsewhere > 0 {
        let _ = writeln!(
            out,
            "   ({} more assignment(s) of the principal on other resources)",
            e.assignments_elsewhere
        );
    }
}

/// Step 7, continued: each group through which the principal may hold pull (principal → group → … → the
/// group's assignment), whether it counts now, and for the tool's own group when the membership settles.
fn explain_group_paths(out: &mut String, e: &Explanation) {
    let clean = terminal_safe;
    if e.group_paths.is_empty() {
        return;
    }
    let _ = writeln!(out, "   through groups (grant mode {}):", e.grant_mode);
    for g in &e.group_paths {
        let path: Vec<String> = g.path.iter().map(|id| clean(id)).collect();
        let _ = writeln!(
            out,
            "     {} → {} {} [{}]{}",
            path.join(" → "),
            clean(&g.assignment.role),
            if g.counts {
                "counts"
            } else {
                "does not count yet"
            },
            clean(&g.assignment.id),
            if g.own { " (the tool's group)" } else { "" },
        );
        if let Some(m) = &g.membership {
            let at = |t: Option<i64>| {
                t.and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| "unknown".to_owned())
            };
            let _ = writeln!(
                out,
                "       member since {} ({}), settles {}",
                at(m.since),
                m.evidence,
                at(m.settles_at)
            );
        }
        if !g.note.is_empty() {
            let _ = writeln!(out, "       {}", clean(&g.note));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::explain::explain_pair;
    use crate::core::fixtures::*;
    use crate::core::model::{PullRole, RoleAssignmentMode};

    #[test]
    fn selector_steps_show_each_requirement_with_the_clusters_value() {
        let o = observed(
            cluster(&[("env", "prod")]),
            registry(
                Some("env=prod,team=web"),
                RoleAssignmentMode::LegacyRegistryPermissions,
            ),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        let Selection::Selector { steps, .. } = &e.selection else {
            panic!("{:?}", e.selection)
        };
        assert_eq!(steps.len(), 2);
        assert!(steps[0].passed && !steps[1].passed);
        assert_eq!(steps[1].cluster_value, None);
        assert!(!e.selected);
        assert_eq!(e.verdict.status, "not_selected");
        assert!(e.verdict.in_order);
        let text = render_explanation(&e);
        assert!(text.contains("✗ team=web"), "{text}");
        assert!(text.contains("(absent)"), "{text}");
    }

    #[test]
    fn human_pull_at_resource_group_is_compliant_and_listed_at_its_level() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let rg_scope = r.id.resource_group_scope().unwrap();
        let o = observed(
            cluster(&[]),
            r,
            vec![assignment(
                &rg_scope,
                crate::core::model::ACR_PULL_GUID,
                None,
            )],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(e.verdict.status, "compliant", "{:?}", e.verdict);
        assert_eq!(e.assignments.len(), 1);
        assert_eq!(e.assignments[0].level, ScopeLevel::ResourceGroup);
        assert!(e.assignments[0].covers_pull.is_some());
        assert!(render_explanation(&e).contains("resource_group scope:\n     AcrPull for"));
    }

    #[test]
    fn abac_registry_explains_the_role_and_that_acrpull_does_not_cover() {
        let r = registry(Some("*"), RoleAssignmentMode::AbacRepositoryPermissions);
        let scope = r.id.as_str().to_owned();
        let o = observed(
            cluster(&[]),
            r,
            vec![assignment(&scope, crate::core::model::ACR_PULL_GUID, None)],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(e.role, PullRole::RepositoryReader);
        assert!(e.role_reason.contains("AbacRepositoryPermissions"));
        assert_eq!(e.verdict.status, "missing");
        assert!(e.assignments[0].covers_pull.is_none());
    }

    #[test]
    fn owned_assignment_on_an_untagged_registry_is_due_for_removal_with_detach() {
        let c = cluster(&[]);
        let r = registry(None, RoleAssignmentMode::LegacyRegistryPermissions);
        let scope = r.id.as_str().to_owned();
        let a = assignment(&scope, crate::core::model::ACR_PULL_GUID, Some(&c));
        let o = observed(c, r, vec![a]);
        assert_eq!(
            explain_pair(&o, &settings(true)).unwrap().verdict.status,
            "remove"
        );
        let kept = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(kept.verdict.status, "not_selected");
    }

    #[test]
    fn invalid_selector_and_opt_out_are_reported() {
        let o = observed(
            cluster(&[]),
            registry(
                Some("env in (prod"),
                RoleAssignmentMode::LegacyRegistryPermissions,
            ),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert!(matches!(e.selection, Selection::Invalid { .. }));
        assert_eq!(e.verdict.status, "invalid_selector");
        assert!(!e.verdict.in_order);

        let o = observed(
            cluster(&[("acr-autoattach", "off")]),
            registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert!(e.cluster_opted_out && !e.selected);
        assert_eq!(e.verdict.status, "not_selected");
    }

    #[test]
    fn the_group_path_is_rendered_with_its_membership_age() {
        use crate::core::groups::{GrantMode, GroupSettings};
        const OURS: &str = "9999aaaa-0000-4000-8000-0000000000cc";
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let held = crate::core::fixtures::group_assignment(&r, OURS);
        let mut o = observed(cluster(&[]), r.clone(), vec![held]);
        o.memberships.insert(PRINCIPAL, [OURS]);
        o.own_groups
            .insert((r.id.clone(), PullRole::AcrPull), OURS.into());
        o.set_membership_since(PRINCIPAL, OURS, 1_000);
        let mut s = settings(false);
        s.now_unix = 1_500;
        s.grant = GrantMode::Group(GroupSettings {
            settle_secs: 1_000,
            headroom: 0,
            limit: 4_000,
        });
        let text = render_explanation(&explain_pair(&o, &s).unwrap());
        assert!(
            text.contains("through groups (grant mode group):"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{PRINCIPAL} → {OURS} → AcrPull does not count yet"
            )),
            "{text}"
        );
        assert!(text.contains("(the tool's group)"), "{text}");
        assert!(
            text.contains("member since 1970-01-01T00:16:40Z")
                && text.contains("settles 1970-01-01T00:33:20Z"),
            "{text}"
        );
        s.now_unix = 2_000;
        let text = render_explanation(&explain_pair(&o, &s).unwrap());
        assert!(text.contains("→ AcrPull counts"), "{text}");
    }
}
