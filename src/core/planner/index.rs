//! What planning looks up per pair, computed once per snapshot so a plan costs O(pairs + assignments): the
//! clusters and registries deduplicated and sorted, each cluster's principal, tenant and opt-out, each
//! registry's opt-in and which clusters it selects (the selector is evaluated once per (registry, cluster)),
//! the assignments by principal and scope, by name, and the clusters by principal.

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::core::selector::SelectorError;

/// A string compared and hashed ignoring ASCII case, borrowed: the key of the index's maps over assignment ids
/// and names, so the index holds no lower-cased copy of them (200,000 of each at scale).
#[derive(Clone, Copy)]
pub(super) struct NoCase<'a>(pub(super) &'a str);

impl PartialEq for NoCase<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}
impl Eq for NoCase<'_> {}
impl std::hash::Hash for NoCase<'_> {
    /// The length and the last (at most) 64 bytes lower-cased: consistent with the case-insensitive equality,
    /// and enough to tell assignment ids apart (they end in their name, a GUID, after long shared prefixes)
    /// while hashing a third of their bytes.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let bytes = self.0.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        let mut lower = [0u8; 64];
        let lower = &mut lower[..tail.len()];
        lower.copy_from_slice(tail);
        lower.make_ascii_lowercase();
        state.write_usize(bytes.len());
        state.write(lower);
    }
}

/// A principal's assignments that may cover some registry of the snapshot: at a registry's own scope, its
/// resource group or its subscription (by scope number, see [`Index::new`]), and at the root or a management
/// group (or any scope [`scope_level`] might read another way). Assignments at any other scope cannot cover a
/// registry here and are left out.
#[derive(Default)]
pub(super) struct PrincipalAssignments<'a> {
    /// (scope number, assignment), sorted by scope number, in observed order within a scope: one flat vector
    /// per principal (a map of small vectors cost about 2 KB per principal at scale).
    by_scope: Vec<(u32, &'a RoleAssignment)>,
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
            .flat_map(|&scope| {
                let start = self.by_scope.partition_point(|(n, _)| *n < scope);
                self.by_scope[start..]
                    .iter()
                    .take_while(move |(n, _)| *n == scope)
                    .map(|(_, a)| *a)
            })
            .chain(self.elsewhere.iter().copied())
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
    pub(super) principals: Vec<Result<SharedStr, PendingReason>>,
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
    /// Key: assignment name (ignoring case); the first in `observed.assignments` order. Built when first asked
    /// ([`Index::named`]).
    by_name: std::cell::OnceCell<HashMap<NoCase<'a>, &'a RoleAssignment>>,
    /// `observed.assignments`, for `by_name`.
    all_assignments: &'a [RoleAssignment],
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

    /// The first observed assignment named `name` (as ARM spells a name: the hyphenated GUID, any case). The
    /// map by name is built on the first call: a plan in which every pair is covered never needs it.
    pub(super) fn named(&self, name: Uuid) -> Option<&'a RoleAssignment> {
        let by_name = self.by_name.get_or_init(|| {
            let mut by_name = HashMap::with_capacity(self.all_assignments.len());
            for a in self.all_assignments {
                by_name.entry(NoCase(&a.name)).or_insert(a);
            }
            by_name
        });
        let mut buffer = Uuid::encode_buffer();
        let text = name.hyphenated().encode_lower(&mut buffer);
        by_name.get(&NoCase(text)).copied()
    }

    /// How many items the plan has for selected pairs: one per (registry with a valid selector, cluster it
    /// selects that did not opt out).
    pub(super) fn selected_pairs(&self) -> usize {
        self.registries
            .iter()
            .filter(|r| r.opt_in.is_ok())
            .map(|r| {
                r.selects
                    .iter()
                    .zip(&self.opted_out)
                    .filter(|(selects, out)| **selects && !**out)
                    .count()
            })
            .sum()
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
            .filter(|a| seen.insert(NoCase(&a.id)))
            .collect();
        drop(seen);
        let (slots, held_by) = held_by_principal(&mut registries, &assignments);
        let held = principals
            .iter()
            .map(|p| p.as_ref().ok().and_then(|p| slots.get(&NoCase(p)).copied()))
            .collect();
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
            by_name: std::cell::OnceCell::new(),
            all_assignments: &observed.assignments,
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
) -> (HashMap<NoCase<'a>, usize>, Vec<PrincipalAssignments<'a>>) {
    // Every scope that can cover a registry here, numbered: the registries' own, their resource groups',
    // their subscriptions' (compared trimmed, without trailing `/`, ignoring case, as `scope_level` compares).
    let keys: Vec<[Option<String>; 3]> = registries
        .iter()
        .map(|r| {
            let id = &r.registry.id;
            [
                Some(id.as_str().to_owned()),
                id.resource_group_scope(),
                Some(id.subscription_scope()),
            ]
        })
        .collect();
    let mut scope_numbers: HashMap<NoCase<'_>, u32> = HashMap::new();
    for (r, keys) in registries.iter_mut().zip(&keys) {
        for (slot, key) in r.scopes.iter_mut().zip(keys) {
            *slot = key.as_deref().map(|key| {
                let next = scope_numbers.len() as u32;
                *scope_numbers.entry(NoCase(key)).or_insert(next)
            });
        }
    }
    let mut slots: HashMap<NoCase<'a>, usize> = HashMap::new();
    let mut held_by: Vec<PrincipalAssignments> = Vec::new();
    for a in assignments {
        let scope = a.scope.trim();
        let key = scope.trim_end_matches('/');
        let number = scope_numbers.get(&NoCase(key));
        let below_subscriptions = key
            .get(.."/subscriptions/".len())
            .is_some_and(|head| head.eq_ignore_ascii_case("/subscriptions/"));
        if number.is_none() && scope != "/" && below_subscriptions {
            // Neither a registry's scope nor above one: it covers no registry of this snapshot.
            continue;
        }
        let slot = *slots
            .entry(NoCase(a.principal_id.trim()))
            .or_insert_with(|| {
                held_by.push(PrincipalAssignments::default());
                held_by.len() - 1
            });
        let held = &mut held_by[slot];
        match number {
            Some(&n) => held.by_scope.push((n, a)),
            None => held.elsewhere.push(a),
        }
    }
    for held in &mut held_by {
        // Stable: observed order within a scope, as the candidates were always given.
        held.by_scope.sort_by_key(|(n, _)| *n);
        held.by_scope.shrink_to_fit();
        held.elsewhere.shrink_to_fit();
    }
    (slots, held_by)
}
