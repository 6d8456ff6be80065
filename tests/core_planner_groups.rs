//! Group mode (issue 16 point 2): the planner's group rules, one test per rule, and properties over generated
//! estates — including a plan → apply → plan simulation over direct → group → direct that never leaves a
//! selected pair without pull.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::{BTreeMap, HashMap};

use acr_autoattach::core::groups::{GrantMode, GroupMemberships, GroupSettings, GroupSpec};
use acr_autoattach::core::model::{
    ACR_PULL_GUID, Cluster, ClusterPrincipal, Mode, PullRole, Registry, ResourceId, RoleAssignment,
    RoleAssignmentMode, assignment_name, member_since_description, ownership_description,
};
use acr_autoattach::core::planner::{
    Action, AssignmentSpec, Completeness, GroupAction, Meanwhile, Observed, PendingReason, Plan,
    PlanItem, PlanSettings, RemovalReason, plan, provably_ours,
};
use fixtures::{cluster_id, registry_id};
use proptest::prelude::*;

const TAG: &str = "acr-autoattach";
const SUB: &str = "11111111-1111-1111-1111-111111111111";
const SUB2: &str = "22222222-2222-2222-2222-222222222222";
const GROUP: &str = "9999aaaa-0000-4000-8000-0000000000aa";
const OTHER_GROUP: &str = "9999aaaa-0000-4000-8000-0000000000bb";
const NOW: i64 = 1_800_000_000;
const SETTLE: u64 = 1_000;

// ----- builders ------------------------------------------------------------------------------------------

/// A ready managed-identity cluster whose kubelet object id is `kubelet-{name}`.
fn cluster(name: &str, tags: &[(&str, &str)]) -> Cluster {
    Cluster {
        id: cluster_id(SUB, name),
        location: "westeurope".into(),
        tenant_id: None,
        tags: tags.iter().copied().collect(),
        provisioning_state: "Succeeded".into(),
        principal: ClusterPrincipal::Kubelet {
            object_id: format!("kubelet-{name}"),
            client_id: None,
        },
    }
}

fn principal(c: &Cluster) -> String {
    match &c.principal {
        ClusterPrincipal::Kubelet { object_id, .. } => object_id.clone(),
        _ => panic!("kubelet cluster expected"),
    }
}

fn registry(name: &str, opt_in: &str) -> Registry {
    Registry {
        id: registry_id(SUB, name),
        location: "westeurope".into(),
        tenant_id: None,
        tags: [(TAG, opt_in)].into_iter().collect(),
        mode: RoleAssignmentMode::LegacyRegistryPermissions,
    }
}

/// An assignment as ARM lists it, made from the spec the planner asked for.
fn from_spec(spec: &AssignmentSpec) -> RoleAssignment {
    RoleAssignment {
        id: spec.assignment_id(),
        name: spec.name.to_string(),
        scope: spec.scope.to_string(),
        role_definition_guid: spec.role.definition_guid().into(),
        principal_id: spec.principal_id.clone(),
        principal_type: Some(spec.principal_type.into()),
        description: Some(spec.description.clone()),
        condition: None,
    }
}

/// The pair's own direct assignment (plain mark).
fn direct(r: &Registry, c: &Cluster) -> RoleAssignment {
    from_spec(&AssignmentSpec::new(
        &r.id,
        &principal(c),
        PullRole::AcrPull,
        &c.id,
    ))
}

/// The pair's own direct assignment with the group-mode mark.
fn direct_since(r: &Registry, c: &Cluster, since: i64) -> RoleAssignment {
    RoleAssignment {
        description: Some(member_since_description(&c.id, since)),
        ..direct(r, c)
    }
}

/// The tool's group's assignment at the registry.
fn group_assignment(r: &Registry, group: &str) -> RoleAssignment {
    from_spec(&AssignmentSpec::for_group(&r.id, group, PullRole::AcrPull))
}

fn group_settings(headroom: u32, limit: u32) -> PlanSettings {
    let mut s = PlanSettings::new(TAG);
    s.grant = GrantMode::Group(GroupSettings {
        settle_secs: SETTLE,
        headroom,
        limit,
    });
    s.now_unix = NOW;
    s
}

fn direct_settings() -> PlanSettings {
    let mut s = PlanSettings::new(TAG);
    s.now_unix = NOW;
    s
}

fn observed(
    clusters: Vec<Cluster>,
    registries: Vec<Registry>,
    assignments: Vec<RoleAssignment>,
) -> Observed {
    let mut o = Observed {
        clusters,
        registries,
        assignments,
        ..Observed::default()
    };
    for r in &o.registries {
        o.subscription_usage
            .insert(r.id.subscription_id().to_ascii_lowercase(), 10);
    }
    o
}

/// `o` with the tool's group for its first registry, and `members` in it (since `since`, process-held).
fn with_group(mut o: Observed, members: &[(&Cluster, Option<i64>)]) -> Observed {
    let r = o.registries[0].id.clone();
    o.own_groups
        .insert((r, PullRole::AcrPull), GROUP.to_owned());
    for c in o.clusters.clone() {
        let member = members.iter().find(|(m, _)| m.id == c.id);
        o.memberships.insert(
            &principal(&c),
            member.map(|_| GROUP).into_iter().collect::<Vec<_>>(),
        );
        if let Some((_, Some(since))) = member {
            o.set_membership_since(&principal(&c), GROUP, *since);
        }
    }
    o
}

fn pair<'p>(p: &'p Plan, c: &Cluster) -> &'p PlanItem {
    let items: Vec<_> = p
        .items
        .iter()
        .filter(|i| i.cluster == c.id && !matches!(i.action, Action::Remove { .. }))
        .collect();
    assert_eq!(items.len(), 1, "{:#?}", p.items);
    items[0]
}

fn removals(p: &Plan) -> Vec<(&RoleAssignment, &RemovalReason)> {
    p.items
        .iter()
        .filter_map(|i| match &i.action {
            Action::Remove { assignment, reason } => Some((assignment, reason)),
            _ => None,
        })
        .collect()
}

fn group_kinds(p: &Plan) -> Vec<&'static str> {
    p.groups.iter().map(|g| g.action.as_str()).collect()
}

// ----- the mark ----------------------------------------------------------------------------------------

#[test]
fn both_mark_shapes_are_provably_ours_and_only_those() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let plain = direct(&r, &c);
    let since = direct_since(&r, &c, 1_700_000_000);
    assert_eq!(plain.member_since(), None);
    assert_eq!(since.member_since(), Some(1_700_000_000));
    for a in [&plain, &since] {
        let (owner, role, at) = provably_ours(a).expect("ours");
        assert_eq!(
            (owner, role, at),
            (c.id.clone(), PullRole::AcrPull, r.id.clone())
        );
    }
    for odd in [
        format!("{} member-since=", ownership_description(&c.id)),
        format!("{} member-since=12 ", ownership_description(&c.id)),
        format!("{} member-since=1 by=alice", ownership_description(&c.id)),
        format!("{} note", ownership_description(&c.id)),
    ] {
        let a = RoleAssignment {
            description: Some(odd.clone()),
            ..plain.clone()
        };
        assert!(provably_ours(&a).is_none(), "{odd}");
        assert_eq!(a.member_since(), None, "{odd}");
    }
}

#[test]
fn the_group_assignment_spec_names_the_group_and_its_type() {
    let r = registry("acr1", "*");
    let spec = AssignmentSpec::for_group(&r.id, GROUP, PullRole::AcrPull);
    assert_eq!(spec.name, assignment_name(&r.id, GROUP, PullRole::AcrPull));
    assert_eq!(spec.principal_type, "Group");
    assert_eq!(
        spec.description,
        GroupSpec::new(r.id.clone(), PullRole::AcrPull).description()
    );
    let body = spec.request_body();
    assert_eq!(body["properties"]["principalType"], "Group");
    assert_eq!(body["properties"]["principalId"], GROUP);
    // The kubelet's PUT body is unchanged.
    let c = cluster("aks1", &[]);
    let kubelet = AssignmentSpec::new(&r.id, &principal(&c), PullRole::AcrPull, &c.id);
    assert_eq!(
        kubelet.request_body()["properties"]["principalType"],
        "ServicePrincipal"
    );
    let marked = kubelet.with_member_since(&c.id, 42);
    assert_eq!(marked.name, kubelet.name, "same deterministic name");
    assert_eq!(marked.description, member_since_description(&c.id, 42));
}

// ----- coverage through groups ---------------------------------------------------------------------------

#[test]
fn a_persons_group_covers_in_both_modes_the_tools_only_once_settled_in_group_mode() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    // A person's group holding AcrPull at the registry.
    let mut theirs = group_assignment(&r, OTHER_GROUP);
    theirs.description = Some("made by the platform team".into());
    let mut o = observed(vec![c.clone()], vec![r.clone()], vec![theirs.clone()]);
    o.memberships.insert(&principal(&c), [OTHER_GROUP]);
    for s in [direct_settings(), group_settings(0, 4000)] {
        let p = plan(&o, &s);
        match &pair(&p, &c).action {
            Action::AlreadyCovered { assignment_id, how } => {
                assert_eq!(assignment_id, &theirs.id);
                assert_eq!(how.via_group.as_deref(), Some(OTHER_GROUP));
            }
            other => panic!("{other:?}"),
        }
        assert!(p.groups.is_empty(), "{:?}", p.groups);
    }

    // The tool's own group, membership settled: covers in group mode only.
    let o = with_group(
        observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![group_assignment(&r, GROUP)],
        ),
        &[(&c, Some(NOW - 5_000))],
    );
    assert!(matches!(
        &pair(&plan(&o, &direct_settings()), &c).action,
        Action::Create(_)
    ));
    match &pair(&plan(&o, &group_settings(0, 4000)), &c).action {
        Action::AlreadyCovered { how, .. } => assert_eq!(how.via_group.as_deref(), Some(GROUP)),
        other => panic!("{other:?}"),
    }
    // Not settled yet, or its start unknown: not covered by the group.
    for since in [Some(NOW - 10), None] {
        let o = with_group(
            observed(
                vec![c.clone()],
                vec![r.clone()],
                vec![group_assignment(&r, GROUP)],
            ),
            &[(&c, since)],
        );
        let p = plan(&o, &group_settings(0, 4000));
        assert!(
            matches!(&pair(&p, &c).action, Action::Create(_)),
            "{since:?}"
        );
    }
}

// ----- joining and the fast path -------------------------------------------------------------------------

#[test]
fn a_new_cluster_joins_and_gets_its_direct_assignment_at_once() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let o = observed(vec![c.clone()], vec![r.clone()], vec![]);
    let p = plan(&o, &group_settings(200, 4000));
    assert_eq!(group_kinds(&p), ["ensure_group"]);
    assert!(matches!(
        p.groups[0].action,
        GroupAction::EnsureGroup { assign: true }
    ));
    match &pair(&p, &c).action {
        Action::Join {
            group_id: None,
            meanwhile: Meanwhile::FastPath(spec),
        } => {
            assert_eq!(
                spec,
                &AssignmentSpec::new(&r.id, &principal(&c), PullRole::AcrPull, &c.id),
                "the plain mark: the engine adds member-since after the member add"
            );
        }
        other => panic!("{other:?}"),
    }
    // With the group there (without its assignment yet): AssignGroup, and the Join names the group.
    let o = with_group(observed(vec![c.clone()], vec![r.clone()], vec![]), &[]);
    let p = plan(&o, &group_settings(200, 4000));
    assert_eq!(group_kinds(&p), ["assign_group"]);
    match &p.groups[0].action {
        GroupAction::AssignGroup { group_id, spec } => {
            assert_eq!(group_id, GROUP);
            assert_eq!(
                spec,
                &AssignmentSpec::for_group(&r.id, GROUP, PullRole::AcrPull)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &pair(&p, &c).action,
        Action::Join { group_id: Some(g), meanwhile: Meanwhile::FastPath(_) } if g == GROUP
    ));
    // With its assignment too: nothing to do at group level.
    let o = with_group(
        observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![group_assignment(&r, GROUP)],
        ),
        &[],
    );
    assert!(plan(&o, &group_settings(200, 4000)).groups.is_empty());
}

#[test]
fn the_group_assignment_takes_capacity_before_any_fast_path() {
    let r = registry("acr1", "*");
    let clusters: Vec<Cluster> = (0..5).map(|i| cluster(&format!("aks{i}"), &[])).collect();
    let mut o = with_group(observed(clusters.clone(), vec![r.clone()], vec![]), &[]);
    // limit 100, headroom 10: fast paths while used + 1 <= 90. 87 in use: the group's assignment takes one
    // (88), then two fast paths (89, 90), then none.
    o.subscription_usage.insert(SUB.into(), 87);
    let p = plan(&o, &group_settings(10, 100));
    assert_eq!(group_kinds(&p), ["assign_group"]);
    let fast: Vec<bool> = clusters
        .iter()
        .map(|c| {
            matches!(
                pair(&p, c).action,
                Action::Join {
                    meanwhile: Meanwhile::FastPath(_),
                    ..
                }
            )
        })
        .collect();
    assert_eq!(fast, [true, true, false, false, false]);
    match &pair(&p, &clusters[4]).action {
        Action::Join {
            meanwhile: Meanwhile::Pending { reason },
            ..
        } => assert_eq!(
            reason,
            &PendingReason::CapacityReserved {
                subscription: SUB.into(),
                used: Some(90),
                limit: 100,
                headroom: 10
            }
        ),
        other => panic!("{other:?}"),
    }
    // At the limit itself: not even the group's assignment.
    o.subscription_usage.insert(SUB.into(), 100);
    let p = plan(&o, &group_settings(10, 100));
    assert!(p.groups.is_empty(), "{:?}", p.groups);
    // Unknown usage: no fast path, but the group's assignment is written (one write; Azure refuses when full).
    o.subscription_usage.clear();
    let p = plan(&o, &group_settings(10, 100));
    assert_eq!(group_kinds(&p), ["assign_group"]);
    assert!(clusters.iter().all(|c| matches!(
        &pair(&p, c).action,
        Action::Join {
            meanwhile: Meanwhile::Pending {
                reason: PendingReason::CapacityReserved { used: None, .. }
            },
            ..
        }
    )));
}

#[test]
fn a_principal_shared_by_two_clusters_is_one_fast_path_write() {
    let r = registry("acr1", "*");
    let a = cluster("aks1", &[]);
    let mut b = cluster("aks2", &[]);
    b.principal = a.principal.clone();
    let mut o = with_group(
        observed(
            vec![a.clone(), b.clone()],
            vec![r.clone()],
            vec![group_assignment(&r, GROUP)],
        ),
        &[],
    );
    // Room for exactly one more.
    o.subscription_usage.insert(SUB.into(), 89);
    let p = plan(&o, &group_settings(10, 100));
    for c in [&a, &b] {
        assert!(matches!(
            pair(&p, c).action,
            Action::Join {
                meanwhile: Meanwhile::FastPath(_),
                ..
            }
        ));
    }
}

// ----- settling ------------------------------------------------------------------------------------------

#[test]
fn the_direct_assignment_covers_until_the_membership_settles_then_goes() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let base = |own: RoleAssignment, since: Option<i64>| {
        with_group(
            observed(
                vec![c.clone()],
                vec![r.clone()],
                vec![own, group_assignment(&r, GROUP)],
            ),
            &[(&c, since)],
        )
    };
    // Not settled: covered by the direct assignment, nothing removed.
    let own = direct_since(&r, &c, NOW - 10);
    let p = plan(&base(own.clone(), Some(NOW - 10)), &group_settings(0, 4000));
    assert!(
        matches!(&pair(&p, &c).action, Action::AlreadyCovered { assignment_id, .. } if *assignment_id == own.id)
    );
    assert!(removals(&p).is_empty());
    // Exactly at the settle time: settled; the direct assignment goes (either mark shape), detach or not.
    for own in [direct(&r, &c), direct_since(&r, &c, NOW - 5)] {
        let p = plan(
            &base(own.clone(), Some(NOW - SETTLE as i64)),
            &group_settings(0, 4000),
        );
        assert!(
            matches!(&pair(&p, &c).action, Action::AlreadyCovered { how, .. } if how.via_group.as_deref() == Some(GROUP))
        );
        assert_eq!(removals(&p), [(&own, &RemovalReason::SettledInGroup)]);
    }
    // One second short: kept.
    let p = plan(
        &base(direct(&r, &c), Some(NOW - SETTLE as i64 + 1)),
        &group_settings(0, 4000),
    );
    assert!(removals(&p).is_empty());
    // Settled, but the group holds no assignment: the direct one stays, the group's is written.
    let mut o = base(direct(&r, &c), Some(NOW - 5_000));
    o.assignments.pop();
    let p = plan(&o, &group_settings(0, 4000));
    assert!(removals(&p).is_empty());
    assert_eq!(group_kinds(&p), ["assign_group"]);
    // A person's assignment under a look-alike mark is never removed.
    let mut person = direct(&r, &c);
    person.description = Some(format!("{} (kept by alice)", ownership_description(&c.id)));
    let p = plan(&base(person, Some(NOW - 5_000)), &group_settings(0, 4000));
    assert!(removals(&p).is_empty());
    // Audit mode removes nothing.
    let mut audit = group_settings(0, 4000);
    audit.mode = Mode::Audit;
    let p = plan(&base(direct(&r, &c), Some(NOW - 5_000)), &audit);
    assert!(removals(&p).is_empty() && p.groups.is_empty());
}

#[test]
fn the_mark_dates_the_membership_only_when_the_process_has_no_record() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let own = direct_since(&r, &c, NOW - 5_000);
    // No process record (e.g. after a restart): the durable mark says settled.
    let o = with_group(
        observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![own.clone(), group_assignment(&r, GROUP)],
        ),
        &[(&c, None)],
    );
    assert_eq!(removals(&plan(&o, &group_settings(0, 4000))).len(), 1);
    // The process saw the membership begin later (it was re-added): the process record wins.
    let o = with_group(
        observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![own, group_assignment(&r, GROUP)],
        ),
        &[(&c, Some(NOW - 10))],
    );
    assert!(removals(&plan(&o, &group_settings(0, 4000))).is_empty());
}

#[test]
fn a_member_without_a_direct_assignment_gets_it_again_dated_by_its_membership() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let o = with_group(
        observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![group_assignment(&r, GROUP)],
        ),
        &[(&c, Some(NOW - 10))],
    );
    let p = plan(&o, &group_settings(0, 4000));
    match &pair(&p, &c).action {
        Action::Create(spec) => {
            assert_eq!(spec.description, member_since_description(&c.id, NOW - 10));
        }
        other => panic!("{other:?}"),
    }
    // Without capacity: pending until the membership counts, with when.
    let mut o = o;
    o.subscription_usage.insert(SUB.into(), 3_999);
    let p = plan(&o, &group_settings(200, 4000));
    assert_eq!(
        pair(&p, &c).action,
        Action::Pending {
            reason: PendingReason::GroupMembershipSettling {
                settles_at: Some(NOW - 10 + SETTLE as i64)
            }
        }
    );
}

#[test]
fn switching_to_group_mode_joins_behind_the_existing_direct_assignment() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let own = direct(&r, &c);
    let o = observed(vec![c.clone()], vec![r.clone()], vec![own.clone()]);
    // Direct mode: covered, nothing else.
    let p = plan(&o, &direct_settings());
    assert!(matches!(pair(&p, &c).action, Action::AlreadyCovered { .. }));
    // Group mode: join, nothing PUT for the pair.
    let p = plan(&o, &group_settings(0, 4000));
    assert_eq!(
        pair(&p, &c).action,
        Action::Join {
            group_id: None,
            meanwhile: Meanwhile::Covered {
                assignment_id: own.id.clone()
            }
        }
    );
    assert_eq!(group_kinds(&p), ["ensure_group"]);
    // A person's grant: no join at all.
    let mut person = direct(&r, &c);
    person.name = "aaaaaaaa-0000-4000-8000-000000000001".into();
    person.id = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}",
        r.id, person.name
    );
    person.description = None;
    let p = plan(
        &observed(vec![c.clone()], vec![r.clone()], vec![person]),
        &group_settings(0, 4000),
    );
    assert!(matches!(pair(&p, &c).action, Action::AlreadyCovered { .. }));
    assert!(p.groups.is_empty());
}

// ----- leaving and draining ------------------------------------------------------------------------------

fn leaves(p: &Plan) -> Vec<(String, RemovalReason)> {
    p.groups
        .iter()
        .filter_map(|g| match &g.action {
            GroupAction::Leave {
                principal_id,
                reason,
                ..
            } => Some((principal_id.clone(), reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn members_leave_under_the_detach_rules() {
    let r = registry("acr1", "env=prod");
    let prod = cluster("aks1", &[("env", "prod")]);
    let dev = cluster("aks2", &[("env", "dev")]);
    let out = cluster("aks3", &[("env", "prod"), (TAG, "off")]);
    let mut shared = cluster("aks4", &[("env", "dev")]);
    shared.principal = prod.principal.clone();
    let o = with_group(
        observed(
            vec![prod.clone(), dev.clone(), out.clone(), shared.clone()],
            vec![r.clone()],
            vec![group_assignment(&r, GROUP)],
        ),
        &[(&prod, Some(NOW)), (&dev, Some(NOW)), (&out, Some(NOW))],
    );
    let mut s = group_settings(0, 4000);
    // Detach off: nobody leaves.
    assert!(leaves(&plan(&o, &s)).is_empty());
    s.detach = true;
    let mut got = leaves(&plan(&o, &s));
    got.sort_by(|a, b| a.0.cmp(&b.0));
    // The principal `prod` shares with the unselected `shared` stays: a selected cluster uses it.
    assert_eq!(
        got,
        [
            (principal(&dev), RemovalReason::NoLongerSelected),
            (principal(&out), RemovalReason::ClusterOptedOut),
        ]
    );
}

#[test]
fn a_member_no_cluster_uses_leaves_by_its_mark_or_on_a_full_inventory() {
    let r = registry("acr1", "*");
    let live = cluster("aks1", &[]);
    let gone = cluster("aks9", &[]);
    let mut s = group_settings(0, 4000);
    s.detach = true;
    let make = |extra: Vec<RoleAssignment>| {
        let mut o = with_group(
            observed(vec![live.clone(), gone.clone()], vec![r.clone()], extra),
            &[(&live, Some(NOW)), (&gone, Some(NOW))],
        );
        o.clusters.retain(|c| c.id != gone.id);
        o
    };
    // Partial snapshot, no mark left: kept (it may belong to a cluster not in this snapshot).
    let o = make(vec![group_assignment(&r, GROUP)]);
    assert!(leaves(&plan(&o, &s)).is_empty());
    // The deleted cluster's mark attributes it.
    let mut deleted = s.clone();
    deleted.deleted_clusters.insert(gone.id.clone());
    let o = make(vec![
        group_assignment(&r, GROUP),
        direct_since(&r, &gone, NOW),
    ]);
    assert_eq!(
        leaves(&plan(&o, &deleted)),
        [(principal(&gone), RemovalReason::ClusterDeleted)]
    );
    // A full inventory: unused.
    let mut full = s.clone();
    full.completeness = Completeness::Full;
    let o = make(vec![group_assignment(&r, GROUP)]);
    assert_eq!(
        leaves(&plan(&o, &full)),
        [(principal(&gone), RemovalReason::PrincipalUnused)]
    );
}

#[test]
fn direct_mode_drains_the_tools_group_once_direct_assignments_exist() {
    let r = registry("acr1", "*");
    let a = cluster("aks1", &[]);
    let b = cluster("aks2", &[]);
    let c = cluster("aks3", &[]);
    let mut s = direct_settings();
    s.completeness = Completeness::Full;
    // a: direct assignment (plain) → leaves; b: none yet → Create, stays a member; c: a member-since mark →
    // stays (leaving would make the mark stale).
    let o = with_group(
        observed(
            vec![a.clone(), b.clone(), c.clone()],
            vec![r.clone()],
            vec![
                direct(&r, &a),
                direct_since(&r, &c, NOW - 5),
                group_assignment(&r, GROUP),
            ],
        ),
        &[
            (&a, Some(NOW - 5)),
            (&b, Some(NOW - 5_000)),
            (&c, Some(NOW - 5)),
        ],
    );
    let p = plan(&o, &s);
    assert_eq!(leaves(&p), [(principal(&a), RemovalReason::DirectMode)]);
    assert!(
        matches!(pair(&p, &b).action, Action::Create(_)),
        "the tool's group never covers in direct mode"
    );
    assert!(!group_kinds(&p).contains(&"remove_group_assignment"));

    // Nobody left in the group, every pair covered directly: the group's assignment goes (full inventory
    // only); the group itself is kept (no action names it).
    let o = with_group(
        observed(
            vec![a.clone(), b.clone()],
            vec![r.clone()],
            vec![direct(&r, &a), direct(&r, &b), group_assignment(&r, GROUP)],
        ),
        &[],
    );
    let p = plan(&o, &s);
    assert_eq!(group_kinds(&p), ["remove_group_assignment"]);
    match &p.groups[0].action {
        GroupAction::RemoveAssignment {
            assignment, reason, ..
        } => {
            assert_eq!(assignment, &group_assignment(&r, GROUP));
            assert_eq!(reason, &RemovalReason::GroupDrained);
        }
        other => panic!("{other:?}"),
    }
    let mut partial = s.clone();
    partial.completeness = Completeness::Partial;
    assert!(plan(&o, &partial).groups.is_empty());
    // Not while a pair still lacks its direct assignment, nor when memberships were not read, nor in group
    // mode.
    let mut missing = o.clone();
    missing.assignments.remove(1);
    assert!(!group_kinds(&plan(&missing, &s)).contains(&"remove_group_assignment"));
    let mut unread = o.clone();
    unread.memberships = GroupMemberships::new();
    assert!(plan(&unread, &s).groups.is_empty());
    let mut group_full = group_settings(0, 4000);
    group_full.completeness = Completeness::Full;
    assert!(plan(&o, &group_full).groups.is_empty());
}
