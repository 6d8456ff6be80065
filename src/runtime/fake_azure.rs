//! A scripted Azure for the engine's unit tests, in the style of kube-rs controller-rs's `ApiServerVerifier`:
//! the test lists the calls it expects, in order, each with its canned answer; every call the engine makes
//! is checked against the next expectation (operation and arguments), and [`FakeAzure::verify`] fails the
//! test if an expected call was never made. Nothing touches the network, so a test runs in milliseconds.
#![allow(clippy::panic, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::azure::{
    AssignmentFilter, AzureConnect, AzureError, AzureOps, DeleteOutcome, Inventory,
    InventoryOptions, PutOutcome, Subscription,
};
use crate::core::model::{Cluster, Registry, ResourceId, RoleAssignment, RoleDefinition};
use crate::core::planner::AssignmentSpec;

/// One expected call: the operation and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    HandlerTenant,
    HandlerObjectId,
    ListSubscriptions,
    GetCluster(String),
    ListClusters(String),
    GetRegistry(String),
    ListRegistries(String),
    RegistriesFromResourceGraph(Vec<String>),
    ListRoleAssignments(String, AssignmentFilter),
    GetRoleDefinition(String, String),
    ResolveServicePrincipal(String),
    /// Scope (the registry), principal, role definition id.
    PutRoleAssignment(String, String, String),
    DeleteRoleAssignment(String),
    Inventory(Vec<String>),
}

/// The canned answer of one expected call (one variant per operation of [`AzureOps`], used or not yet).
#[derive(Debug)]
#[allow(dead_code)]
pub enum Reply {
    Tenant(Option<String>),
    ObjectId(Option<String>),
    Subscriptions(Result<Vec<Subscription>, AzureError>),
    Cluster(Result<Option<Cluster>, AzureError>),
    Clusters(Result<Vec<Cluster>, AzureError>),
    Registry(Result<Option<Registry>, AzureError>),
    Registries(Result<Vec<Registry>, AzureError>),
    Assignments(Result<Vec<RoleAssignment>, AzureError>),
    RoleDefinition(Result<Option<RoleDefinition>, AzureError>),
    Principal(Result<Option<String>, AzureError>),
    Put(Result<PutOutcome, AzureError>),
    Delete(Result<DeleteOutcome, AzureError>),
    Inventory(Box<Result<Inventory, AzureError>>),
}

#[derive(Default)]
struct Script {
    expected: VecDeque<(Call, Reply)>,
    made: Vec<(Call, Instant)>,
}

/// The scripted Azure. Clones share the script; [`AzureConnect::until`] binds a clone to a deadline.
#[derive(Clone)]
pub struct FakeAzure {
    script: Arc<Mutex<Script>>,
    sent: Arc<AtomicU64>,
    deadline: Instant,
}

impl FakeAzure {
    pub fn new() -> Self {
        Self {
            script: Arc::default(),
            sent: Arc::default(),
            deadline: Instant::now(),
        }
    }

    /// Expects `call` next, answered with `reply`.
    #[must_use]
    pub fn expect(self, call: Call, reply: Reply) -> Self {
        self.lock().expected.push_back((call, reply));
        self
    }

    /// Every call made so far, with the (test) clock's time it was made at.
    pub fn calls(&self) -> Vec<(Call, Instant)> {
        self.lock().made.clone()
    }

    /// Fails the test unless every expected call was made.
    pub fn verify(&self) {
        let script = self.lock();
        let left: Vec<&Call> = script.expected.iter().map(|(c, _)| c).collect();
        assert!(left.is_empty(), "expected calls never made: {left:?}");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn next(&self, call: Call) -> Reply {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let mut script = self.lock();
        let Some((expected, reply)) = script.expected.pop_front() else {
            panic!("unexpected call {call:?}: the script is finished");
        };
        assert_eq!(expected, call, "calls out of script");
        script.made.push((call, Instant::now()));
        reply
    }
}

impl AzureConnect for FakeAzure {
    type Ops = FakeAzure;
    fn until(&self, deadline: Instant) -> FakeAzure {
        Self {
            deadline,
            ..self.clone()
        }
    }
}

macro_rules! answer {
    ($reply:expr, $variant:ident) => {
        match $reply {
            Reply::$variant(r) => r,
            other => panic!(
                "scripted reply {other:?} does not fit {}",
                stringify!($variant)
            ),
        }
    };
}

impl AzureOps for FakeAzure {
    fn deadline(&self) -> Instant {
        self.deadline
    }
    fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    async fn handler_tenant(&self) -> Option<String> {
        answer!(self.next(Call::HandlerTenant), Tenant)
    }
    async fn handler_object_id(&self) -> Option<String> {
        answer!(self.next(Call::HandlerObjectId), ObjectId)
    }
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, AzureError> {
        answer!(self.next(Call::ListSubscriptions), Subscriptions)
    }
    async fn get_cluster(&self, id: &ResourceId) -> Result<Option<Cluster>, AzureError> {
        answer!(self.next(Call::GetCluster(id.to_string())), Cluster)
    }
    async fn list_clusters(&self, subscription_id: &str) -> Result<Vec<Cluster>, AzureError> {
        answer!(
            self.next(Call::ListClusters(subscription_id.into())),
            Clusters
        )
    }
    async fn get_registry(&self, id: &ResourceId) -> Result<Option<Registry>, AzureError> {
        answer!(self.next(Call::GetRegistry(id.to_string())), Registry)
    }
    async fn list_registries(&self, subscription_id: &str) -> Result<Vec<Registry>, AzureError> {
        answer!(
            self.next(Call::ListRegistries(subscription_id.into())),
            Registries
        )
    }
    async fn registries_from_resource_graph(
        &self,
        subscriptions: &[String],
    ) -> Result<Vec<Registry>, AzureError> {
        answer!(
            self.next(Call::RegistriesFromResourceGraph(subscriptions.to_vec())),
            Registries
        )
    }
    async fn list_role_assignments(
        &self,
        scope: &str,
        filter: &AssignmentFilter,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        answer!(
            self.next(Call::ListRoleAssignments(scope.into(), filter.clone())),
            Assignments
        )
    }
    async fn get_role_definition(
        &self,
        scope: &str,
        guid: &str,
    ) -> Result<Option<RoleDefinition>, AzureError> {
        answer!(
            self.next(Call::GetRoleDefinition(scope.into(), guid.into())),
            RoleDefinition
        )
    }
    async fn resolve_service_principal(&self, app_id: &str) -> Result<Option<String>, AzureError> {
        answer!(
            self.next(Call::ResolveServicePrincipal(app_id.into())),
            Principal
        )
    }
    async fn put_role_assignment(&self, new: &AssignmentSpec) -> Result<PutOutcome, AzureError> {
        answer!(
            self.next(Call::PutRoleAssignment(
                new.scope.to_string(),
                new.principal_id.clone(),
                new.role_definition_id.clone(),
            )),
            Put
        )
    }
    async fn delete_role_assignment(&self, id: &str) -> Result<DeleteOutcome, AzureError> {
        answer!(self.next(Call::DeleteRoleAssignment(id.into())), Delete)
    }
    async fn inventory_with(&self, options: &InventoryOptions) -> Result<Inventory, AzureError> {
        *answer!(
            self.next(Call::Inventory(options.subscriptions.clone())),
            Inventory
        )
    }
}
