//! Group mode (issue 16 point 2): the planner's group rules, one test per rule, and properties over generated
//! estates — including a plan → apply → plan simulation over direct → group → direct that never leaves a
//! selected pair without pull.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::many_single_char_names
)]

#[path = "support/fixtures.rs"]
mod fixtures;

use std::collections::{BTreeMap, HashMap, HashSet};

use acr_autoattach::core::groups::{GrantMode, GroupMemberships, GroupSettings, GroupSpec};
use acr_autoattach::core::model::{
    Cluster, ClusterPrincipal, Mode, PullRole, Registry, ResourceId, RoleAssignment,
    RoleAssignmentMode, assignment_name, member_since_description, ownership_description,
};
use acr_autoattach::core::planner::{
    Action, ApplyOutcome, AssignmentSpec, Completeness, GroupAction, Meanwhile, Observed,
    PendingReason, Plan, PlanItem, PlanSettings, RemovalReason, group_result_for, plan,
    provably_ours, result_for,
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
const SETTLE_SECS: i64 = 1_000;

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
        id: spec.assignment_id().into(),
        name: spec.name.to_string(),
        scope: spec.scope.to_string().into(),
        role_definition_guid: spec.role.definition_guid().into(),
        principal_id: spec.principal_id.clone().into(),
        principal_type: Some(spec.principal_type.into()),
        description: Some(spec.description.clone().into()),
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
        description: Some(member_since_description(&c.id, since).into()),
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
            description: Some(odd.clone().into()),
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
    for own in [direct(&r, &c), direct_since(&r, &c, NOW - SETTLE_SECS)] {
        let p = plan(
            &base(own.clone(), Some(NOW - SETTLE_SECS)),
            &group_settings(0, 4000),
        );
        assert!(
            matches!(&pair(&p, &c).action, Action::AlreadyCovered { how, .. } if how.via_group.as_deref() == Some(GROUP))
        );
        assert_eq!(removals(&p), [(&own, &RemovalReason::SettledInGroup)]);
    }
    // One second short: kept.
    let p = plan(
        &base(direct(&r, &c), Some(NOW - SETTLE_SECS + 1)),
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
    person.description = Some(format!("{} (kept by alice)", ownership_description(&c.id)).into());
    let p = plan(&base(person, Some(NOW - 5_000)), &group_settings(0, 4000));
    assert!(removals(&p).is_empty());
    // Audit mode removes nothing.
    let mut audit = group_settings(0, 4000);
    audit.mode = Mode::Audit;
    let p = plan(&base(direct(&r, &c), Some(NOW - 5_000)), &audit);
    assert!(removals(&p).is_empty() && p.groups.is_empty());
}

#[test]
fn the_mark_dates_the_membership_before_the_process_record() {
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let make = |own: RoleAssignment, member: bool, process: Option<i64>| {
        let o = observed(
            vec![c.clone()],
            vec![r.clone()],
            vec![own, group_assignment(&r, GROUP)],
        );
        if member {
            with_group(o, &[(&c, process)])
        } else {
            with_group(o, &[])
        }
    };
    // The process saw the membership only recently (e.g. after a restart): the durable mark says settled.
    let p = plan(
        &make(direct_since(&r, &c, NOW - 5_000), true, Some(NOW - 10)),
        &group_settings(0, 4000),
    );
    assert_eq!(removals(&p).len(), 1);
    // A young mark is not overridden by an older process record either.
    let p = plan(
        &make(direct_since(&r, &c, NOW - 10), true, Some(NOW - 5_000)),
        &group_settings(0, 4000),
    );
    assert!(removals(&p).is_empty());
    // A plain mark: the process record decides.
    let p = plan(
        &make(direct(&r, &c), true, Some(NOW - 5_000)),
        &group_settings(0, 4000),
    );
    assert_eq!(removals(&p).len(), 1);
    // Not a member, yet a member-since mark (the member was removed by hand): the pair is not rejoined, as the
    // stale date would settle the new membership at once; its direct assignment keeps covering it.
    let own = direct_since(&r, &c, NOW - 5_000);
    let p = plan(&make(own.clone(), false, None), &group_settings(0, 4000));
    assert!(
        matches!(&pair(&p, &c).action, Action::AlreadyCovered { assignment_id, .. } if *assignment_id == own.id)
    );
    assert!(removals(&p).is_empty() && p.groups.is_empty());
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
                settles_at: Some(NOW - 10 + SETTLE_SECS)
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
    )
    .into();
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

// ----- properties ----------------------------------------------------------------------------------------

const SELECTORS: [&str; 4] = ["*", "env=prod", "env in (prod, dev)", "env!=prod"];

/// A generated estate in either mode: clusters (some sharing a principal, some not ready or opted out), two
/// registries in two subscriptions, the tool's groups with members (some settled), direct assignments of both
/// mark shapes, group assignments, usage and limits.
#[allow(clippy::type_complexity)]
fn arb_estate() -> impl Strategy<Value = (Observed, PlanSettings)> {
    let clusters = prop::collection::vec(
        (
            prop::sample::select(vec![None, Some("prod"), Some("dev")]),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.85),
            0..4usize,
        ),
        1..7,
    );
    let registries = prop::collection::vec(
        (
            prop::sample::select(SELECTORS.to_vec()),
            any::<bool>(),
            any::<bool>(),
        ),
        1..3,
    );
    // Per principal slot: member of the group of registry 0/1, since offset, direct (none/plain/since).
    let principals = prop::collection::vec(
        (
            any::<bool>(),
            any::<bool>(),
            prop::option::of(-3_000i64..10),
            0..3u8,
            0..3u8,
            any::<bool>(),
        ),
        5,
    );
    let knobs = (
        any::<bool>(),
        prop::bool::weighted(0.15),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u32..40),
        0u32..8,
        20u32..45,
        any::<bool>(),
    );
    (clusters, registries, principals, knobs).prop_map(
        |(clusters, registries, principals, knobs)| {
            let (group, audit, detach, full, usage, headroom, limit, deleted) = knobs;
            let clusters: Vec<Cluster> = clusters
                .into_iter()
                .enumerate()
                .map(|(i, (env, opt_out, ready, p))| {
                    let mut tags: Vec<(&str, &str)> = env.map(|e| ("env", e)).into_iter().collect();
                    if opt_out {
                        tags.push((TAG, "off"));
                    }
                    let mut c = cluster(&format!("aks{i}"), &tags);
                    c.principal = ClusterPrincipal::Kubelet {
                        object_id: format!("kubelet-p{p}"),
                        client_id: None,
                    };
                    if !ready {
                        c.provisioning_state = "Creating".into();
                    }
                    c
                })
                .collect();
            let registries: Vec<Registry> = registries
                .into_iter()
                .enumerate()
                .map(|(i, (sel, _, _))| {
                    let mut r = registry(&format!("acr{i}"), sel);
                    if i == 1 {
                        r.id = registry_id(SUB2, "acr1");
                    }
                    r
                })
                .collect();
            let mut o = Observed {
                clusters: clusters.clone(),
                registries: registries.clone(),
                ..Observed::default()
            };
            let groups: Vec<String> = (0..registries.len())
                .map(|i| format!("{GROUP}{i}"))
                .collect();
            for (i, r) in registries.iter().enumerate() {
                // The first registry always has the tool's group; the second only sometimes.
                if i == 0 || group {
                    o.own_groups
                        .insert((r.id.clone(), PullRole::AcrPull), groups[i].clone());
                    if i == 0 || detach {
                        o.assignments.push(group_assignment(r, &groups[i]));
                    }
                }
                if let Some(u) = usage {
                    o.subscription_usage
                        .insert(r.id.subscription_id().to_ascii_lowercase(), u);
                }
            }
            for (p, (in0, in1, since, direct0, direct1, ghost)) in
                principals.into_iter().enumerate()
            {
                let id = if ghost && p == 4 {
                    "kubelet-ghost".to_owned()
                } else {
                    format!("kubelet-p{p}")
                };
                let mut member_of = Vec::new();
                for (i, (inside, kind)) in [(in0, direct0), (in1, direct1)].into_iter().enumerate()
                {
                    let Some(r) = registries.get(i) else { continue };
                    if inside {
                        member_of.push(groups[i].clone());
                        if let Some(off) = since {
                            o.set_membership_since(&id, &groups[i], NOW + off);
                        }
                    }
                    // A direct assignment of ours, made for the first cluster using the principal (or a gone one).
                    let owner = clusters
                        .iter()
                        .find(|c| principal(c) == id)
                        .map_or_else(|| cluster_id(SUB, "aks-gone"), |c| c.id.clone());
                    let spec = AssignmentSpec::new(&r.id, &id, PullRole::AcrPull, &owner);
                    match kind {
                        1 => o.assignments.push(from_spec(&spec)),
                        2 => o.assignments.push(from_spec(
                            &spec.with_member_since(&owner, NOW + since.unwrap_or(-2_000)),
                        )),
                        _ => {}
                    }
                }
                o.memberships.insert(&id, member_of);
            }
            let mut s = if group {
                group_settings(headroom, limit)
            } else {
                direct_settings()
            };
            if audit {
                s.mode = Mode::Audit;
            }
            s.detach = detach;
            if full {
                s.completeness = Completeness::Full;
            }
            if deleted {
                s.deleted_clusters.insert(cluster_id(SUB, "aks-gone"));
            }
            (o, s)
        },
    )
}

/// The start of `principal`'s membership in `group` as the planner may read it (the mark, else the process
/// record).
fn since_of(o: &Observed, principal: &str, group: &str, registry: &ResourceId) -> Option<i64> {
    let name = assignment_name(registry, principal, PullRole::AcrPull).to_string();
    o.assignments
        .iter()
        .find(|a| a.name == name && a.is_owned())
        .and_then(RoleAssignment::member_since)
        .or_else(|| o.membership_since_of(principal, group))
}

fn used_by_selected(
    o: &Observed,
    s: &PlanSettings,
    registry: &ResourceId,
    principal_id: &str,
) -> bool {
    let r = o.registries.iter().find(|r| r.id == *registry).unwrap();
    let opt_in = acr_autoattach::core::selector::registry_opt_in(&r.tags, &s.tag_name).unwrap();
    o.clusters.iter().any(|c| {
        principal(c).eq_ignore_ascii_case(principal_id)
            && opt_in.selects(c)
            && !acr_autoattach::core::selector::cluster_opted_out(c, &s.tag_name)
    })
}

/// Per subscription: (new assignments this plan writes, of which fast paths).
fn writes_per_subscription(p: &Plan) -> BTreeMap<String, (u32, u32)> {
    let mut out: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut names = HashSet::new();
    for g in &p.groups {
        if matches!(
            g.action,
            GroupAction::EnsureGroup { assign: true } | GroupAction::AssignGroup { .. }
        ) {
            out.entry(g.registry.subscription_id().to_ascii_lowercase())
                .or_default()
                .0 += 1;
        }
    }
    for i in &p.items {
        let (Action::Create(spec)
        | Action::Join {
            meanwhile: Meanwhile::FastPath(spec),
            ..
        }) = &i.action
        else {
            continue;
        };
        if names.insert(spec.name) {
            let e = out
                .entry(i.registry.subscription_id().to_ascii_lowercase())
                .or_default();
            e.0 += 1;
            e.1 += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn group_plans_keep_every_invariant((o, s) in arb_estate()) {
        let p = plan(&o, &s);
        let mut reversed = o.clone();
        reversed.clusters.reverse();
        reversed.registries.reverse();
        reversed.assignments.reverse();
        prop_assert_eq!(&plan(&reversed, &s), &p, "deterministic");
        let gs = s.grant.group();
        let own_ids: Vec<String> = o.own_groups.values().cloned().collect();

        if s.mode == Mode::Audit {
            prop_assert!(p.groups.is_empty());
            prop_assert!(p.writes().next().is_none(), "audit writes nothing");
        }
        // Capacity: never more new assignments than the limit, fast paths only below the headroom, none with
        // usage unknown; direct mode is not capacity-managed.
        if let Some(gs) = gs {
            for (sub, (all, fast)) in writes_per_subscription(&p) {
                let Some(&used) = o.subscription_usage.get(&sub) else {
                    prop_assert_eq!(fast, 0, "usage unknown: no fast path");
                    continue;
                };
                {
                        prop_assert!(used + all <= gs.limit.max(used), "{sub}: {used} + {all} > {}", gs.limit);
                        if fast > 0 {
                            prop_assert!(used + all <= gs.limit - gs.headroom, "{sub}: fast paths past the headroom");
                            // The group's assignment came first: no registry of the subscription waits for it.
                            for g in &p.groups {
                                if g.registry.subscription_id().eq_ignore_ascii_case(&sub) {
                                    prop_assert!(!matches!(g.action, GroupAction::EnsureGroup { assign: false }), "a new group without capacity for its assignment");
                                }
                            }
                            for r in o.registries.iter().filter(|r| r.id.subscription_id().eq_ignore_ascii_case(&sub)) {
                                let Some(gid) = o.own_group(&r.id, PullRole::AcrPull) else { continue };
                                let needs = p.items.iter().any(|i| i.registry == r.id && matches!(i.action, Action::Join { .. } | Action::Create(_)));
                                let held = o.assignments.iter().any(|a| a.principal_id == gid && a.scope == r.id.as_str());
                                let assigned = p.groups.iter().any(|g| g.registry == r.id && matches!(g.action, GroupAction::AssignGroup { .. }));
                                prop_assert!(!needs || held || assigned, "{}: fast path before the group's assignment", r.id);
                            }
                        }
                    }

            }
        } else {
            prop_assert!(!p.items.iter().any(|i| matches!(i.action, Action::Join { .. })), "no join in direct mode");
            prop_assert!(!p.groups.iter().any(|g| matches!(g.action, GroupAction::EnsureGroup { .. } | GroupAction::AssignGroup { .. })), "no group made in direct mode");
        }
        for item in &p.items {
            match &item.action {
                // The tool's group covers only once settled, and never in direct mode.
                Action::AlreadyCovered { how, .. } => {
                    if let Some(g) = how.via_group.as_deref().filter(|g| own_ids.iter().any(|o| o.eq_ignore_ascii_case(g))) {
                        prop_assert!(gs.is_some(), "the tool's group never covers in direct mode");
                        let principal = item.principal_id.as_deref().unwrap();
                        let since = since_of(&o, principal, g, &item.registry).expect("a known start");
                        prop_assert!(since + SETTLE_SECS <= NOW);
                    }
                }
                // No settled removal before the settle time, and only of ours.
                Action::Remove { assignment, reason: RemovalReason::SettledInGroup } => {
                    prop_assert!(gs.is_some(), "group mode");
                    prop_assert!(provably_ours(assignment).is_some());
                    let gid = o.own_group(&item.registry, PullRole::AcrPull).unwrap();
                    prop_assert!(o.memberships.is_member(&assignment.principal_id, gid));
                    let since = since_of(&o, &assignment.principal_id, gid, &item.registry).unwrap();
                    prop_assert!(since + SETTLE_SECS <= NOW, "removed before settling");
                    prop_assert!(o.assignments.iter().any(|a| a.principal_id == gid), "the group grants pull");
                }
                Action::Remove { assignment, .. } => {
                    prop_assert!(s.detach && provably_ours(assignment).is_some());
                    prop_assert!(!used_by_selected(&o, &s, &item.registry, &assignment.principal_id));
                }
                _ => {}
            }
        }
        for g in &p.groups {
            if let GroupAction::Leave { group_id, principal_id, reason, .. } = &g.action {
                prop_assert_eq!(Some(group_id.as_str()), o.own_group(&g.registry, g.role));
                prop_assert!(o.memberships.is_member(principal_id, group_id));
                if used_by_selected(&o, &s, &g.registry, principal_id) {
                    // Only direct mode drains a needed principal, and only once its pair is covered without the
                    // tool's groups.
                    prop_assert!(gs.is_none() && *reason == RemovalReason::DirectMode, "{reason:?}");
                    prop_assert!(p.items.iter().any(|i| i.registry == g.registry
                        && i.principal_id.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(principal_id))
                        && matches!(i.action, Action::AlreadyCovered { .. })), "drained while not covered");
                } else {
                    prop_assert!(s.detach, "{reason:?} without detach");
                }
            }
        }
    }
}

// ----- simulation: plan → apply → plan over direct → group → direct --------------------------------------

const SIM_SETTLE: u64 = 100;
const SIM_SETTLE_SECS: i64 = 100;

/// A tiny Azure: assignments, the tool's group and its members with the time each was really added, and the
/// engine's process-held "first seen" record of memberships (lost on a restart).
struct World {
    registry: Registry,
    clusters: Vec<Cluster>,
    assignments: Vec<RoleAssignment>,
    group: Option<String>,
    members: HashMap<String, i64>,
    seen: HashMap<String, i64>,
    limit: u32,
}

impl World {
    fn observe(&mut self, now: i64, restart: bool) -> Observed {
        if restart {
            self.seen.clear();
        }
        let mut o = Observed {
            clusters: self.clusters.clone(),
            registries: vec![self.registry.clone()],
            assignments: self.assignments.clone(),
            ..Observed::default()
        };
        o.subscription_usage
            .insert(SUB.into(), u32::try_from(self.assignments.len()).unwrap());
        if let Some(g) = &self.group {
            o.own_groups
                .insert((self.registry.id.clone(), PullRole::AcrPull), g.clone());
        }
        let mut principals: Vec<String> = self.clusters.iter().map(principal).collect();
        principals.extend(self.members.keys().cloned());
        for p in principals {
            let member = self.members.contains_key(&p);
            o.memberships
                .insert(&p, self.group.iter().filter(|_| member));
            if member && let Some(g) = &self.group {
                let first = *self.seen.entry(p.clone()).or_insert(now);
                o.set_membership_since(&p, g, first);
            }
        }
        o
    }

    fn put(&mut self, spec: &AssignmentSpec) {
        if self
            .assignments
            .iter()
            .all(|a| a.name != spec.name.to_string())
        {
            self.assignments.push(from_spec(spec));
        }
    }

    fn join(&mut self, p: &str, now: i64) {
        self.members.entry(p.to_owned()).or_insert(now);
    }

    /// Applies `plan` at `now`; `fails` says, write by write, which ones Azure refuses.
    fn apply(&mut self, plan: &Plan, now: i64, fails: &mut impl Iterator<Item = bool>) {
        for g in &plan.groups {
            if fails.next().unwrap_or(false) {
                continue;
            }
            match &g.action {
                GroupAction::EnsureGroup { assign } => {
                    let id = format!("{GROUP}-made");
                    self.group = Some(id.clone());
                    if *assign {
                        self.put(&AssignmentSpec::for_group(&g.registry, &id, g.role));
                    }
                }
                GroupAction::AssignGroup { spec, .. } => self.put(spec),
                GroupAction::Leave { principal_id, .. } => {
                    self.members.remove(principal_id);
                    self.seen.remove(principal_id);
                }
                GroupAction::RemoveAssignment { assignment, .. } => {
                    self.assignments.retain(|a| a.id != assignment.id);
                }
            }
        }
        for item in &plan.items {
            let p = item.principal_id.clone().unwrap_or_default();
            match &item.action {
                Action::Create(spec) if !fails.next().unwrap_or(false) => self.put(spec),
                Action::Remove { assignment, .. } if !fails.next().unwrap_or(false) => {
                    self.assignments.retain(|a| a.id != assignment.id);
                }
                Action::Join { meanwhile, .. } => {
                    // The member add first; then the fast path, marked only when the add succeeded.
                    let added = self.group.is_some() && !fails.next().unwrap_or(false);
                    if added {
                        self.join(&p, now);
                    }
                    if let Meanwhile::FastPath(spec) = meanwhile
                        && !fails.next().unwrap_or(false)
                    {
                        if added {
                            self.put(&spec.with_member_since(&item.cluster, now));
                        } else {
                            self.put(spec);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether `p` can pull now: its own pull assignment, or a membership older than the real RBAC delay
    /// (taken as the whole settle window, the worst case) in a group holding the pull role.
    fn can_pull(&self, p: &str, now: i64) -> bool {
        let direct = self.assignments.iter().any(|a| {
            a.principal_id == p && a.role_definition_guid == PullRole::AcrPull.definition_guid()
        });
        let through_group = self.group.as_ref().is_some_and(|g| {
            self.assignments.iter().any(|a| a.principal_id == *g)
                && self
                    .members
                    .get(p)
                    .is_some_and(|since| since + SIM_SETTLE_SECS <= now)
        });
        direct || through_group
    }

    fn owned_direct(&self) -> usize {
        self.assignments
            .iter()
            .filter(|a| a.principal_type.as_deref() == Some("ServicePrincipal") && a.is_owned())
            .count()
    }
}

/// One step of the simulation: observe, plan, check, apply, check.
struct Sim {
    world: World,
    now: i64,
    covered: HashSet<String>,
}

impl Sim {
    fn check(&mut self, when: &str) -> Result<(), TestCaseError> {
        for c in &self.world.clusters {
            let p = principal(c);
            let ok = self.world.can_pull(&p, self.now);
            prop_assert!(
                ok || !self.covered.contains(&p),
                "{} lost pull {when} at {}",
                c.id.name(),
                self.now
            );
            if ok {
                self.covered.insert(p);
            }
        }
        Ok(())
    }

    fn step(
        &mut self,
        mode: GrantMode,
        dt: i64,
        restart: bool,
        detach: bool,
        fails: &mut impl Iterator<Item = bool>,
    ) -> Result<(), TestCaseError> {
        self.now += dt;
        self.check("over time")?;
        let o = self.world.observe(self.now, restart);
        let mut s = PlanSettings::new(TAG);
        s.grant = mode;
        s.now_unix = self.now;
        s.detach = detach;
        s.completeness = Completeness::Full;
        let p = plan(&o, &s);
        self.world.apply(&p, self.now, fails);
        self.check("after a plan was applied")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn switching_direct_group_direct_never_leaves_a_pair_without_pull(
        shares in prop::collection::vec(0..6usize, 3..7),
        arrivals in prop::collection::vec((0..8usize, 0..6usize), 0..4),
        steps in prop::collection::vec((0i64..80, prop::bool::weighted(0.2)), 4..10),
        back in prop::collection::vec((0i64..80, prop::bool::weighted(0.2)), 2..6),
        fails in prop::collection::vec(prop::bool::weighted(0.2), 1..40),
        headroom in 0u32..4,
        detach in any::<bool>(),
        settle_first in any::<bool>(),
    ) {
        let kubelet = |i: usize, p: usize| {
            let mut c = cluster(&format!("aks{i}"), &[]);
            c.principal = ClusterPrincipal::Kubelet { object_id: format!("kubelet-p{p}"), client_id: None };
            c
        };
        let clusters: Vec<Cluster> = shares.iter().enumerate().map(|(i, p)| kubelet(i, *p)).collect();
        let total = u32::try_from(clusters.len() + arrivals.len()).unwrap();
        let group = GrantMode::Group(GroupSettings { settle_secs: SIM_SETTLE, headroom, limit: total + 2 + headroom / 2 });
        let mut sim = Sim {
            world: World {
                registry: registry("acr1", "*"),
                clusters,
                assignments: Vec::new(),
                group: None,
                members: HashMap::new(),
                seen: HashMap::new(),
                limit: total + 2,
            },
            now: NOW,
            covered: HashSet::new(),
        };
        let mut never = std::iter::repeat(false);
        let mut fails = fails.into_iter().cycle();
        // Direct mode converges.
        sim.step(GrantMode::Direct, 0, false, detach, &mut never)?;
        prop_assert_eq!(sim.covered.len(), sim.world.clusters.iter().map(principal).collect::<HashSet<_>>().len());
        // Group mode, with failures, restarts and new clusters arriving.
        for (n, (dt, restart)) in steps.iter().enumerate() {
            if let Some((_, p)) = arrivals.get(n) {
                let c = kubelet(100 + n, *p);
                sim.world.clusters.push(c);
            }
            sim.step(group, *dt, *restart, detach, &mut fails)?;
        }
        if settle_first {
            for _ in 0..4 {
                sim.step(group, SIM_SETTLE_SECS + 1, false, detach, &mut never)?;
            }
            // Steady state: every cluster pulls through the group; no direct assignment of the tool's is left.
            prop_assert!(sim.world.clusters.iter().all(|c| sim.world.can_pull(&principal(c), sim.now)));
            prop_assert_eq!(sim.world.owned_direct(), 0);
            prop_assert!(u32::try_from(sim.world.assignments.len()).unwrap() <= sim.world.limit);
        }
        // Back to direct mode (before or after settling), with failures and restarts; then converged.
        for (dt, restart) in &back {
            sim.step(GrantMode::Direct, *dt, *restart, detach, &mut fails)?;
        }
        for _ in 0..3 {
            sim.step(GrantMode::Direct, 1, false, detach, &mut never)?;
        }
        for c in &sim.world.clusters {
            let p = principal(c);
            prop_assert!(sim.world.assignments.iter().any(|a| a.principal_id == p), "{} has its direct assignment again", c.id.name());
        }
        if settle_first {
            for c in &sim.world.clusters {
                prop_assert!(!sim.world.members.contains_key(&principal(c)), "{} drained from the group", c.id.name());
            }
            let group_id = sim.world.group.clone().unwrap();
            prop_assert!(!sim.world.assignments.iter().any(|a| a.principal_id == group_id), "the drained group's assignment goes");
        }
        // And to group mode once more, restarts included (a stale member-since mark would show here).
        for (dt, restart) in back {
            sim.step(group, dt * 2, restart, detach, &mut fails)?;
        }
        for _ in 0..3 {
            sim.step(group, SIM_SETTLE_SECS / 2, true, detach, &mut never)?;
        }
    }
}

// ----- results -------------------------------------------------------------------------------------------

#[test]
fn join_and_leave_outcomes_map_to_pair_statuses() {
    use acr_autoattach::core::model::{PairFailure, PairStatus};
    let r = registry("acr1", "*");
    let c = cluster("aks1", &[]);
    let spec = AssignmentSpec::new(&r.id, &principal(&c), PullRole::AcrPull, &c.id);
    let join = |meanwhile| PlanItem {
        cluster: c.id.clone(),
        registry: r.id.clone(),
        principal_id: Some(principal(&c).into()),
        role: Some(PullRole::AcrPull),
        action: Action::Join {
            group_id: Some(GROUP.into()),
            meanwhile,
        },
    };
    let fast = join(Meanwhile::FastPath(spec.clone()));
    let created = ApplyOutcome::Joined {
        fast_path: Some(spec.assignment_id().into()),
    };
    assert_eq!(result_for(&fast, &created).status, PairStatus::Repaired);
    // The member add failed, the plain-marked PUT went in: pull now.
    let put_only = ApplyOutcome::Created {
        assignment_id: spec.assignment_id().into(),
    };
    assert_eq!(result_for(&fast, &put_only).status, PairStatus::Repaired);
    let failed = ApplyOutcome::Failed(PairFailure::transient("throttled", "429"));
    assert_eq!(result_for(&fast, &failed).status, PairStatus::Failed);
    assert_eq!(
        result_for(&fast, &ApplyOutcome::Joined { fast_path: None }).status,
        PairStatus::Failed,
        "a fast path that was not created"
    );
    let covered = join(Meanwhile::Covered {
        assignment_id: spec.assignment_id().into(),
    });
    assert_eq!(
        result_for(&covered, &ApplyOutcome::Joined { fast_path: None }).status,
        PairStatus::Compliant
    );
    let reason = PendingReason::CapacityReserved {
        subscription: SUB.into(),
        used: Some(3),
        limit: 4,
        headroom: 1,
    };
    let pending = join(Meanwhile::Pending {
        reason: reason.clone(),
    });
    let result = result_for(&pending, &ApplyOutcome::Joined { fast_path: None });
    assert_eq!(result.status, PairStatus::Pending);
    assert_eq!(result.reason, Some(reason.to_string()));
    assert_eq!(reason.as_str(), "capacity_reserved");

    let leave = |cluster| acr_autoattach::core::planner::GroupItem {
        registry: r.id.clone(),
        role: PullRole::AcrPull,
        action: GroupAction::Leave {
            group_id: GROUP.into(),
            principal_id: principal(&c),
            cluster,
            reason: RemovalReason::NoLongerSelected,
        },
    };
    let left = group_result_for(&leave(Some(c.id.clone())), &ApplyOutcome::Removed).unwrap();
    assert_eq!(
        (left.status, left.cluster_id),
        (PairStatus::Detached, c.id.clone())
    );
    assert_eq!(
        group_result_for(&leave(Some(c.id.clone())), &failed)
            .unwrap()
            .status,
        PairStatus::Failed
    );
    assert!(
        group_result_for(&leave(None), &ApplyOutcome::Removed).is_none(),
        "no cluster, no pair"
    );
}
