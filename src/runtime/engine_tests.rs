//! The engine against a scripted Azure (`fake_azure`): the readiness back-off, the apply budget reserve,
//! the read-back and transient handling, each in milliseconds (the tokio clock is paused, so waits are
//! instant and their lengths exact).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tokio::time::Instant;

use crate::azure::{AssignmentFilter, AzureConnect, AzureError, PutOutcome, Subscription};
use crate::core::events::{Classification, ClassifiedEvent, EventMetadata, EventSchema};
use crate::core::fixtures::{PRINCIPAL, SUB, assignment, cluster, observed, registry, settings};
use crate::core::model::{Cluster, PairStatus, RoleAssignmentMode};
use crate::core::outcome::{Answer, EventOutcome, answer};
use crate::core::planner::{self, Action, Plan};
use crate::runtime::config::{Config, MapEnv};
use crate::runtime::engine::{Engine, Observation, REPORT_RESERVE};
use crate::runtime::fake_azure::{Call, FakeAzure, Reply};

fn engine(fake: &FakeAzure, ready_timeout: Duration) -> Engine<FakeAzure> {
    let mut config = Config::from_env(&MapEnv::default()).unwrap();
    config.ready_timeout = ready_timeout;
    Engine::new(config, fake.clone())
}

fn cluster_write(c: &Cluster) -> ClassifiedEvent {
    ClassifiedEvent {
        metadata: EventMetadata {
            id: "e1".into(),
            event_type: "Microsoft.Resources.ResourceWriteSuccess".into(),
            schema: EventSchema::EventGrid,
            event_time: None,
            subject: Some(c.id.to_string()),
            subscription_id: Some(SUB.into()),
            tenant_id: None,
            correlation_id: None,
            operation_name: None,
        },
        classification: Classification::ClusterWrite {
            cluster: c.id.clone(),
        },
    }
}

fn creating() -> Cluster {
    let mut c = cluster(&[]);
    c.provisioning_state = "Creating".into();
    c
}

fn subscription() -> Subscription {
    Subscription {
        subscription_id: SUB.into(),
        tenant_id: None,
        display_name: None,
        state: None,
    }
}

/// One cluster, one tagged registry, no assignment: the plan creates one.
fn create_plan() -> Plan {
    let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
    let plan = planner::plan(&observed(cluster(&[]), r, Vec::new()), &settings(false));
    assert!(
        matches!(plan.items[0].action, Action::Create(_)),
        "{plan:?}"
    );
    plan
}

fn put_call(plan: &Plan) -> Call {
    let Action::Create(spec) = &plan.items[0].action else {
        unreachable!("create_plan checks the action");
    };
    Call::PutRoleAssignment(
        spec.scope.to_string(),
        spec.principal_id.clone(),
        spec.role_definition_id.clone(),
    )
}

/// The assignment the create plan asks for, as ARM answers the PUT.
fn created() -> crate::core::model::RoleAssignment {
    assignment(
        &registry_scope(),
        "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        Some(&cluster(&[])),
    )
}

/// The fresh read of the registry just before a create (PUT only to create): the name is free.
fn free_name_call() -> Call {
    Call::ListRoleAssignments(registry_scope(), AssignmentFilter::AtScope)
}

fn free_name() -> Reply {
    Reply::Assignments(Ok(Vec::new()))
}

fn registry_scope() -> String {
    registry(None, RoleAssignmentMode::LegacyRegistryPermissions)
        .id
        .to_string()
}

/// The calls of a cluster write whose cluster is ready, up to (not including) the write.
fn ready_cluster_write_script(fake: FakeAzure) -> FakeAzure {
    let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
    fake.expect(
        Call::GetCluster(cluster(&[]).id.to_string()),
        Reply::Cluster(Ok(Some(cluster(&[])))),
    )
    .expect(
        Call::ListSubscriptions,
        Reply::Subscriptions(Ok(vec![subscription()])),
    )
    .expect(
        Call::RegistriesFromResourceGraph(vec![SUB.into()]),
        Reply::Registries(Ok(vec![r])),
    )
    .expect(
        Call::ListRoleAssignments(
            format!("/subscriptions/{SUB}"),
            AssignmentFilter::Principal(PRINCIPAL.into()),
        ),
        Reply::Assignments(Ok(Vec::new())),
    )
    .expect(Call::HandlerTenant, Reply::Tenant(None))
}

#[tokio::test(start_paused = true)]
async fn readiness_reads_at_0_1_3_7_15_s_and_retries_the_event_when_the_budget_is_spent() {
    let c = creating();
    let mut fake = FakeAzure::new();
    for _ in 0..5 {
        fake = fake.expect(
            Call::GetCluster(c.id.to_string()),
            Reply::Cluster(Ok(Some(creating()))),
        );
    }
    let started = Instant::now();
    let report = engine(&fake, Duration::from_secs(20))
        .handle_event(&cluster_write(&c), started)
        .await;
    fake.verify();
    let offsets: Vec<u128> = fake
        .calls()
        .iter()
        .map(|(_, at)| (*at - started).as_millis())
        .collect();
    assert_eq!(
        offsets,
        [0, 1_000, 3_000, 7_000, 15_000],
        "the sixth read would end past the 20 s budget"
    );
    assert_eq!(report.outcome, EventOutcome::Retry);
    let reason = report.retry_reason.clone().unwrap();
    assert!(
        reason.contains("not ready after 15 s (provisioningState Creating)"),
        "{reason}"
    );
    assert_eq!(answer(&[report]), Answer::Retry { reason });
}

#[tokio::test(start_paused = true)]
async fn a_cluster_that_becomes_ready_during_the_wait_is_attached() {
    let c = creating();
    let fake = FakeAzure::new().expect(
        Call::GetCluster(c.id.to_string()),
        Reply::Cluster(Ok(Some(creating()))),
    );
    let fake = ready_cluster_write_script(fake);
    let plan = create_plan();
    let created = created();
    // The principal's list (fresh from ARM, in the script) was the pre-create check, and the PUT's answer is
    // the verifying read: no list of the registry before or after.
    let fake = fake.expect(
        put_call(&plan),
        Reply::Put(Ok(PutOutcome::Created(created.clone()))),
    );
    let started = Instant::now();
    let report = engine(&fake, Duration::from_secs(10))
        .handle_event(&cluster_write(&c), started)
        .await;
    fake.verify();
    assert_eq!(report.outcome, EventOutcome::Done, "{report:?}");
    assert_eq!(report.pairs.len(), 1);
    assert_eq!(report.pairs[0].status, PairStatus::Repaired);
    assert_eq!(report.pairs[0].assignment_id, Some(created.id));
    assert_eq!(
        fake.calls()
            .iter()
            .filter(|(call, _)| matches!(call, Call::GetCluster(_)))
            .map(|(_, at)| (*at - started).as_millis())
            .collect::<Vec<_>>(),
        [0, 1_000],
        "read at arrival and once more a second later"
    );
    assert_eq!(report.azure_requests, 7);
    assert_eq!(answer(&[report]), Answer::Succeed);
}

#[tokio::test(start_paused = true)]
async fn the_apply_sends_no_write_inside_the_report_reserve() {
    let plan = create_plan();
    let fake = FakeAzure::new();
    let e = engine(&fake, Duration::from_secs(10));
    let azure = fake.until(Instant::now() + REPORT_RESERVE - Duration::from_millis(1));
    let (pairs, skipped) = e.apply(&azure, &plan, None, Observation::Inventory).await;
    fake.verify();
    assert!(fake.calls().is_empty(), "no request inside the reserve");
    assert_eq!(skipped, 1);
    assert_eq!(pairs[0].status, PairStatus::Failed);
    let failure = pairs[0].failure.clone().unwrap();
    assert_eq!(
        (failure.kind, failure.transient),
        ("budget_exhausted", true)
    );
    assert_eq!(
        pairs[0].reason.as_deref(),
        Some("transient: not applied: the invocation's time budget was exhausted")
    );

    // Just outside the reserve, the write goes out.
    let fake = FakeAzure::new()
        .expect(free_name_call(), free_name())
        .expect(put_call(&plan), Reply::Put(Ok(PutOutcome::AlreadyExists)));
    let e = engine(&fake, Duration::from_secs(10));
    let azure = fake.until(Instant::now() + REPORT_RESERVE + Duration::from_millis(1));
    let (pairs, skipped) = e.apply(&azure, &plan, None, Observation::Inventory).await;
    fake.verify();
    assert_eq!((skipped, pairs[0].status), (0, PairStatus::Compliant));
}

#[tokio::test(start_paused = true)]
async fn the_read_back_confirms_a_created_assignment_or_fails_the_pair_transiently() {
    let plan = create_plan();
    let created = created();
    let read_back = Call::ListRoleAssignments(registry_scope(), AssignmentFilter::AtScope);
    let cases = [
        (
            Reply::Assignments(Ok(vec![created.clone()])),
            PairStatus::Repaired,
            None,
        ),
        (
            Reply::Assignments(Ok(Vec::new())),
            PairStatus::Failed,
            Some(("not_visible", true)),
        ),
        (
            Reply::Assignments(Err(AzureError::Timeout)),
            PairStatus::Failed,
            Some(("timeout", true)),
        ),
    ];
    for (listed, status, failure) in cases {
        let fake = FakeAzure::new()
            .expect(free_name_call(), free_name())
            .expect(
                put_call(&plan),
                Reply::Put(Ok(PutOutcome::Created(created.clone()))),
            )
            .expect(read_back.clone(), listed);
        let e = engine(&fake, Duration::from_secs(10));
        let azure = fake.until(Instant::now() + Duration::from_secs(20));
        let (pairs, _) = e.apply(&azure, &plan, None, Observation::Inventory).await;
        fake.verify();
        assert_eq!(pairs[0].status, status);
        assert_eq!(
            pairs[0].failure.as_ref().map(|f| (f.kind, f.transient)),
            failure
        );
    }
}

/// A cluster event finds its registries through one Resource Graph query; when that fails (here: throttled,
/// its quota is 15 queries per 5 s) it lists them through ARM, one list per subscription, and carries on.
#[tokio::test(start_paused = true)]
async fn a_cluster_event_lists_registries_through_arm_when_resource_graph_fails() {
    let c = cluster(&[]);
    let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
    let plan = create_plan();
    let fake = FakeAzure::new()
        .expect(
            Call::GetCluster(c.id.to_string()),
            Reply::Cluster(Ok(Some(cluster(&[])))),
        )
        .expect(
            Call::ListSubscriptions,
            Reply::Subscriptions(Ok(vec![subscription()])),
        )
        .expect(
            Call::RegistriesFromResourceGraph(vec![SUB.into()]),
            Reply::Registries(Err(AzureError::Throttled { retry_after: None })),
        )
        .expect(
            Call::ListRegistries(SUB.into()),
            Reply::Registries(Ok(vec![r])),
        )
        .expect(
            Call::ListRoleAssignments(
                format!("/subscriptions/{SUB}"),
                AssignmentFilter::Principal(PRINCIPAL.into()),
            ),
            Reply::Assignments(Ok(Vec::new())),
        )
        .expect(Call::HandlerTenant, Reply::Tenant(None))
        .expect(
            put_call(&plan),
            Reply::Put(Ok(PutOutcome::Created(created()))),
        );
    let report = engine(&fake, Duration::from_secs(10))
        .handle_event(&cluster_write(&c), Instant::now())
        .await;
    fake.verify();
    assert_eq!(report.outcome, EventOutcome::Done, "{report:?}");
    assert_eq!(report.pairs[0].status, PairStatus::Repaired);
}

/// A plan observed fresh from ARM (the event path) sends no list before or after its PUT: ARM's answer is the
/// verifying read, and an answer that is not the assignment asked for (here: carrying a condition) fails the
/// pair transiently, so the event is retried and read afresh.
#[tokio::test(start_paused = true)]
async fn a_fresh_plan_is_verified_by_the_put_answer_alone() {
    let plan = create_plan();
    let mut conditioned = created();
    conditioned.condition = Some("@Resource[x] StringStartsWith 'team-a/'".into());
    let mut elsewhere = created();
    elsewhere.scope = format!("/subscriptions/{SUB}/resourceGroups/rg").into();
    let cases = [
        (created(), PairStatus::Repaired, None),
        (conditioned, PairStatus::Failed, Some(("not_visible", true))),
        (elsewhere, PairStatus::Failed, Some(("not_visible", true))),
    ];
    for (answered, status, failure) in cases {
        let fake = FakeAzure::new().expect(
            put_call(&plan),
            Reply::Put(Ok(PutOutcome::Created(answered))),
        );
        let e = engine(&fake, Duration::from_secs(10));
        let azure = fake.until(Instant::now() + Duration::from_secs(20));
        let (pairs, _) = e.apply(&azure, &plan, None, Observation::FreshArm).await;
        fake.verify();
        assert_eq!(fake.calls().len(), 1, "the PUT alone");
        assert_eq!(pairs[0].status, status);
        assert_eq!(
            pairs[0].failure.as_ref().map(|f| (f.kind, f.transient)),
            failure
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_throttled_write_retries_the_event_and_a_forbidden_one_does_not() {
    let plan = create_plan();
    let c = cluster(&[]);
    for (error, outcome, kind, transient) in [
        (
            AzureError::Throttled { retry_after: None },
            EventOutcome::Retry,
            "throttled",
            true,
        ),
        (
            AzureError::Forbidden {
                code: "AuthorizationFailed".into(),
                message: "no write".into(),
            },
            EventOutcome::Done,
            "forbidden",
            false,
        ),
    ] {
        let fake = ready_cluster_write_script(FakeAzure::new())
            .expect(put_call(&plan), Reply::Put(Err(error)));
        let report = engine(&fake, Duration::from_secs(10))
            .handle_event(&cluster_write(&c), Instant::now())
            .await;
        fake.verify();
        assert_eq!(report.outcome, outcome, "{report:?}");
        let failure = report.pairs[0].failure.clone().unwrap();
        assert_eq!((failure.kind, failure.transient), (kind, transient));
        let reason = report.pairs[0].reason.clone().unwrap();
        assert!(
            reason.starts_with(if transient {
                "transient: "
            } else {
                "forbidden: "
            }),
            "the human reason keeps its wording: {reason}"
        );
        assert_eq!(matches!(answer(&[report]), Answer::Retry { .. }), transient);
    }
}

/// Issue 10, rule 7: a verification run that cannot see its scope fails, naming what is missing, and never
/// reaches the inventory.
#[tokio::test(start_paused = true)]
async fn a_blind_verification_fails_before_its_inventory() {
    let other = "0badc0de-0000-4000-8000-000000000000";
    let oid = "00000000-0000-4000-8000-0000000000ee";
    let own_assignments = Call::ListRoleAssignments(
        format!("/subscriptions/{SUB}"),
        AssignmentFilter::AssignedTo(oid.into()),
    );
    // A named subscription that the identity cannot see.
    let fake = FakeAzure::new()
        .expect(
            Call::ListSubscriptions,
            Reply::Subscriptions(Ok(vec![subscription()])),
        )
        .expect(Call::HandlerObjectId, Reply::ObjectId(Some(oid.into())));
    let report = engine(&fake, Duration::from_secs(3))
        .verify(Duration::from_secs(30), &[SUB.into(), other.into()], None)
        .await;
    fake.verify();
    let failure = report.inventory.failure().unwrap().to_owned();
    assert!(
        failure.contains(&format!("subscription {other} is not visible"))
            && failure.contains("Microsoft.Resources/subscriptions/read"),
        "{failure}"
    );
    assert!(!report.all_compliant());

    // A visible subscription on which the identity holds nothing that reads clusters and registries.
    let fake = FakeAzure::new()
        .expect(
            Call::ListSubscriptions,
            Reply::Subscriptions(Ok(vec![subscription()])),
        )
        .expect(Call::HandlerObjectId, Reply::ObjectId(Some(oid.into())))
        .expect(own_assignments.clone(), Reply::Assignments(Ok(Vec::new())));
    let report = engine(&fake, Duration::from_secs(3))
        .verify(Duration::from_secs(30), &[], None)
        .await;
    fake.verify();
    let failure = report.inventory.failure().unwrap().to_owned();
    assert!(
        failure.contains("lacks Microsoft.ContainerService/managedClusters/read, Microsoft.ContainerRegistry/registries/read, Microsoft.Authorization/roleAssignments/read"),
        "{failure}"
    );

    // A 403 on the identity's own assignments names the right to list them.
    let fake = FakeAzure::new()
        .expect(
            Call::ListSubscriptions,
            Reply::Subscriptions(Ok(vec![subscription()])),
        )
        .expect(Call::HandlerObjectId, Reply::ObjectId(Some(oid.into())))
        .expect(
            own_assignments,
            Reply::Assignments(Err(AzureError::Forbidden {
                code: "AuthorizationFailed".into(),
                message: "no".into(),
            })),
        );
    let report = engine(&fake, Duration::from_secs(3))
        .verify(Duration::from_secs(30), &[], None)
        .await;
    fake.verify();
    assert!(
        report
            .inventory
            .failure()
            .is_some_and(|f| f.contains("lacks Microsoft.Authorization/roleAssignments/read")),
        "{:?}",
        report.inventory
    );
}
