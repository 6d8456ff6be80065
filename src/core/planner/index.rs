//! What planning looks up per pair, computed once per snapshot so a plan costs O(pairs + assignments): the
//! clusters and registries deduplicated and sorted, each cluster's principal, tenant and opt-out, each
//! registry's opt-in and which clusters it selects (the selector is evaluated once per (registry, cluster)),
//! the assignments by principal and scope, by name, and the clusters by principal.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::core::selector::SelectorError;

/// A principal's assignments that may cover some registry of the snapshot: at a registry's own scope, its
/// resource group or its subscription (by scope number, see [`Index::new`]), and at the root or a management
/// group (or any scope [`scope_level`] might read another way). Assignments at any other scope cannot cover a
/// registry here and are left out.
#[derive(Default)]
pub(super) struct PrincipalAssignments<'a> {
    by_scope: HashMap<u32, Vec<&'a RoleAssignment>>,
    elsewhere: Vec<&'a RoleAssignment>,
}

impl<'a> PrincipalAssignments<'a> {
    /// Every assignment of the principal that may cover `registry`: a superset of those [`pull_coverage`]
    /// accepts (which the caller then asks).
    pub(super) fn candidates<'s>(
        &'s self,
        registry: &'s RegistryIndex<'_>,
    ) -> impl Iterator<Item = &'a RoleAssignment> + 's {
        registry
            .scopes
            .iter()
            .flatten()
            .filter_map(|scope| self.by_scope.get(scope))
            .flatten()
            .chain(&self.elsewhere)
            .copied()
    }
}

/// One registry as planning reads it.
pub(super) struct RegistryIndex<'a> {
    pub(super) registry: &'a Registry,
    /// An error: the opt-in tag does not parse (no pair action; see the planner's module doc).
    pub(super) opt_in: Result<OptIn, SelectorError>,
    /// Per cluster (same order as [`Index::clusters`]): the registry's selector selects it (opt-out aside);
    /// empty when the opt-in does not parse.
    pub(super) selects: Vec<bool>,
    /// Some selected, not opted-out cluster has a service principal whose object id is not known (it may
    /// use any principal, so detach keeps every assignment of this registry it would otherwise remove).
    pub(super) selects_unresolved: bool,
    pub(super) tenant: Option<&'a str>,
    pub(super) management_groups: &'a [String],
    /// The numbers of its own scope, its resource group's and its subscription's.
    scopes: [Option<u32>; 3],
}

pub(super) struct Index<'a> {
    /// Deduplicated (first seen wins) and sorted by id.
    pub(super) clusters: Vec<&'a Cluster>,
    pub(super) cluster_at: HashMap<&'a ResourceId, usize>,
    /// Per cluster: the principal that must hold pull access, or why it is not known.
    pub(super) principals: Vec<Result<String, PendingReason>>,
    pub(super) opted_out: Vec<bool>,
    pub(super) cluster_tenants: Vec<Option<&'a str>>,
    /// Deduplicated and sorted by id, invalid selectors included.
    pub(super) registries: Vec<RegistryIndex<'a>>,
    pub(super) registry_at: HashMap<&'a ResourceId, usize>,
    /// Deduplicated by id (case-insensitive, first seen wins), in observed order.
    pub(super) assignments: Vec<&'a RoleAssignment>,
    /// The assignments of each principal that holds any that may cover a registry.
    held_by: Vec<PrincipalAssignments<'a>>,
    /// Per cluster: its principal's entry in `held_by`.
    held: Vec<Option<usize>>,
    /// Key: assignment name lower-cased; the first in `observed.assignments` order.
    pub(super) by_name: HashMap<String, &'a RoleAssignment>,
    /// Clusters whose principal is known, by principal (lower-cased).
    pub(super) clusters_by_principal: HashMap<String, Vec<usize>>,
    /// Subscriptions (lower-cased) the inventory covered: any with a known tenant, cluster or registry.
    pub(super) inventoried: HashSet<String>,
}

impl<'a> Index<'a> {
    /// The assignments of cluster `c`'s principal that may cover some registry, if any.
    pub(super) fn held(&self, c: usize) -> Option<&PrincipalAssignments<'a>> {
        self.held[c].map(|slot| &self.held_by[slot])
    }

    pub(super) fn new(observed: &'a Observed, settings: &PlanSettings) -> Self {
        let mut seen = HashSet::new();
        let mut clusters: Vec<&Cluster> = observed
            .clusters
            .iter()
            .filter(|c| seen.insert(&c.id))
            .collect();
        clusters.sort_by(|a, b| a.id.cmp(&b.id));
        let cluster_at = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.id, i))
            .collect();
        let principals: Vec<_> = clusters
            .iter()
            .map(|c| current_principal(c, observed))
            .collect();
        let opted_out: Vec<bool> = clusters
            .iter()
            .map(|c| cluster_opted_out(c, &settings.tag_name))
            .collect();
        let cluster_tenants = clusters
            .iter()
            .map(|c| tenant_of(c.tenant_id.as_ref(), &c.id, observed))
            .collect();
        let mut clusters_by_principal: HashMap<String, Vec<usize>> = HashMap::new();
        // Service-principal clusters whose object id is not known (they may use any principal).
        let mut unresolved = Vec::new();
        for (i, principal) in principals.iter().enumerate() {
            match principal {
                Ok(p) => clusters_by_principal
                    .entry(p.to_ascii_lowercase())
                    .or_default()
                    .push(i),
                Err(
                    PendingReason::ServicePrincipalUnresolved { .. }
                    | PendingReason::ServicePrincipalNotLookedUp,
                ) => unresolved.push(i),
                Err(_) => {}
            }
        }

        let mut seen = HashSet::new();
        let mut sorted: Vec<&Registry> = observed
            .registries
            .iter()
            .filter(|r| seen.insert(&r.id))
            .collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        let mut registries: Vec<RegistryIndex> = sorted
            .into_iter()
            .map(|registry| {
                let opt_in = registry_opt_in(&registry.tags, &settings.tag_name);
                let selects: Vec<bool> = opt_in.as_ref().map_or_else(
                    |_| Vec::new(),
                    |o| clusters.iter().map(|c| o.selects(c)).collect(),
                );
                let selects_unresolved = unresolved
                    .iter()
                    .any(|&c| selects.get(c).is_some_and(|s| *s && !opted_out[c]));
                RegistryIndex {
                    registry,
                    opt_in,
                    selects,
                    selects_unresolved,
                    tenant: tenant_of(registry.tenant_id.as_ref(), &registry.id, observed),
                    management_groups: management_groups_of(registry, observed),
                    scopes: [None; 3],
                }
            })
            .collect();
        let registry_at = registries
            .iter()
            .enumerate()
            .map(|(i, r)| (&r.registry.id, i))
            .collect();

        let mut seen = HashSet::new();
        let assignments: Vec<&RoleAssignment> = observed
            .assignments
            .iter()
            .filter(|a| seen.insert(a.id.to_ascii_lowercase()))
            .collect();
        let (slots, held_by) = held_by_principal(&mut registries, &assignments);
        let held = principals
            .iter()
            .map(|p| {
                p.as_ref()
                    .ok()
                    .and_then(|p| slots.get(&p.to_ascii_lowercase()).copied())
            })
            .collect();
        let mut by_name = HashMap::new();
        for a in &observed.assignments {
            by_name.entry(a.name.to_ascii_lowercase()).or_insert(a);
        }
        let inventoried = observed
            .subscription_tenants
            .keys()
            .map(String::as_str)
            .chain(clusters.iter().map(|c| c.id.subscription_id()))
            .chain(registries.iter().map(|r| r.registry.id.subscription_id()))
            .map(str::to_ascii_lowercase)
            .collect();
        Self {
            clusters,
            cluster_at,
            principals,
            opted_out,
            cluster_tenants,
            registries,
            registry_at,
            assignments,
            held_by,
            held,
            by_name,
            clusters_by_principal,
            inventoried,
        }
    }
}

/// The assignments that may cover some registry of the snapshot, per principal (`slots`: key, the principal
/// id trimmed and lower-cased), and each registry's scope numbers.
fn held_by_principal<'a>(
    registries: &mut [RegistryIndex<'_>],
    assignments: &[&'a RoleAssignment],
) -> (HashMap<String, usize>, Vec<PrincipalAssignments<'a>>) {
    // Every scope that can cover a registry here, numbered: the registries' own, their resource groups',
    // their subscriptions' (key: trimmed, without trailing `/`, lower-cased, as `scope_level` compares).
    let mut scope_numbers: HashMap<String, u32> = HashMap::new();
    for r in registries.iter_mut() {
        let id = &r.registry.id;
        let keys = [
            Some(id.key()),
            id.resource_group_scope().map(|s| s.to_ascii_lowercase()),
            Some(id.subscription_scope().to_ascii_lowercase()),
        ];
        for (slot, key) in r.scopes.iter_mut().zip(keys) {
            *slot = key.map(|key| {
                let next = scope_numbers.len() as u32;
                *scope_numbers.entry(key).or_insert(next)
            });
        }
    }
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut held_by: Vec<PrincipalAssignments> = Vec::new();
    for a in assignments {
        let scope = a.scope.trim();
        let key = scope.trim_end_matches('/').to_ascii_lowercase();
        let number = scope_numbers.get(&key);
        if number.is_none() && scope != "/" && key.starts_with("/subscriptions/") {
            // Neither a registry's scope nor above one: it covers no registry of this snapshot.
            continue;
        }
        let slot = *slots
            .entry(a.principal_id.trim().to_ascii_lowercase())
            .or_insert_with(|| {
                held_by.push(PrincipalAssignments::default());
                held_by.len() - 1
            });
        let held = &mut held_by[slot];
        match number {
            Some(&n) => held.by_scope.entry(n).or_default().push(a),
            None => held.elsewhere.push(a),
        }
    }
    (slots, held_by)
}
