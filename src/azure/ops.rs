//! The seam between the engine and Azure: the operations the engine uses, as traits. The real client
//! implements them by delegating to its inherent methods; the engine's unit tests script a fake
//! (`runtime::fake_azure`) in the style of kube-rs controller-rs's `ApiServerVerifier`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::ratelimit::{LimitKey, RequestClass};
use super::{
    AssignmentFilter, AzureClient, AzureError, DeleteOutcome, DirectoryObject, GraphGroup,
    GroupOutcome, Inventory, InventoryOptions, MemberChange, PutOutcome, ScopedClient,
    Subscription,
};
use crate::core::groups::GroupSpec;
use crate::core::model::{Cluster, Registry, ResourceId, RoleAssignment, RoleDefinition};
use crate::core::planner::AssignmentSpec;

/// Where the engine gets a deadline-bound view of Azure from (the real [`AzureClient`], or a fake).
pub trait AzureConnect: Send + Sync {
    type Ops: AzureOps + Clone + 'static;
    /// Operations bound to one invocation's deadline; they count the requests they send.
    fn until(&self, deadline: Instant) -> Self::Ops;
}

/// The Azure operations of one invocation (bound to its deadline), as the engine uses them.
pub trait AzureOps: Send + Sync {
    fn deadline(&self) -> Instant;
    /// Requests sent so far through this view.
    fn requests_sent(&self) -> u64;
    /// The tenant of the handler's own identity (from its token), when it can be read.
    fn handler_tenant(&self) -> impl Future<Output = Option<String>> + Send;
    /// The object id (`oid`) of the handler's own identity (from its token), when it can be read.
    fn handler_object_id(&self) -> impl Future<Output = Option<String>> + Send;
    fn list_subscriptions(
        &self,
    ) -> impl Future<Output = Result<Vec<Subscription>, AzureError>> + Send;
    fn get_cluster(
        &self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<Option<Cluster>, AzureError>> + Send;
    fn list_clusters(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<Cluster>, AzureError>> + Send;
    fn get_registry(
        &self,
        id: &ResourceId,
    ) -> impl Future<Output = Result<Option<Registry>, AzureError>> + Send;
    fn list_registries(
        &self,
        subscription_id: &str,
    ) -> impl Future<Output = Result<Vec<Registry>, AzureError>> + Send;
    /// Every registry in `subscriptions` through one Resource Graph query (paged), whatever their number.
    fn registries_from_resource_graph(
        &self,
        subscriptions: &[String],
    ) -> impl Future<Output = Result<Vec<Registry>, AzureError>> + Send;
    fn list_role_assignments(
        &self,
        scope: &str,
        filter: &AssignmentFilter,
    ) -> impl Future<Output = Result<Vec<RoleAssignment>, AzureError>> + Send;
    fn get_role_definition(
        &self,
        scope: &str,
        guid: &str,
    ) -> impl Future<Output = Result<Option<RoleDefinition>, AzureError>> + Send;
    fn resolve_service_principal(
        &self,
        app_id: &str,
    ) -> impl Future<Output = Result<Option<String>, AzureError>> + Send;
    fn put_role_assignment(
        &self,
        new: &AssignmentSpec,
    ) -> impl Future<Output = Result<PutOutcome, AzureError>> + Send;
    fn delete_role_assignment(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<DeleteOutcome, AzureError>> + Send;
    fn inventory_with(
        &self,
        options: &InventoryOptions,
    ) -> impl Future<Output = Result<Inventory, AzureError>> + Send;
    /// Group mode (Microsoft Graph, `graph_groups.rs`): the tool's group for `spec`, found (mark and owner) or
    /// created. A fake without Graph answers `GraphPermissionMissing`, as a tenant without consent would.
    fn ensure_own_group(
        &self,
        _spec: &GroupSpec,
    ) -> impl Future<Output = Result<GroupOutcome, AzureError>> + Send {
        std::future::ready(Err(no_graph("ensure_own_group")))
    }
    /// The tool's group for `spec` if it exists (never creates).
    fn find_own_group(
        &self,
        _spec: &GroupSpec,
    ) -> impl Future<Output = Result<Option<GraphGroup>, AzureError>> + Send {
        std::future::ready(Err(no_graph("find_own_group")))
    }
    /// The object ids of a group's owners.
    fn group_owners(
        &self,
        _group_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, AzureError>> + Send {
        std::future::ready(Err(no_graph("group_owners")))
    }
    fn add_group_member(
        &self,
        _group_id: &str,
        _member_id: &str,
    ) -> impl Future<Output = Result<MemberChange, AzureError>> + Send {
        std::future::ready(Err(no_graph("add_group_member")))
    }
    fn remove_group_member(
        &self,
        _group_id: &str,
        _member_id: &str,
    ) -> impl Future<Output = Result<MemberChange, AzureError>> + Send {
        std::future::ready(Err(no_graph("remove_group_member")))
    }
    /// A group's direct members, every page.
    fn list_group_members(
        &self,
        _group_id: &str,
    ) -> impl Future<Output = Result<Vec<DirectoryObject>, AzureError>> + Send {
        std::future::ready(Err(no_graph("list_group_members")))
    }
    /// A group's members through nested groups, every page.
    fn list_group_transitive_members(
        &self,
        _group_id: &str,
    ) -> impl Future<Output = Result<Vec<DirectoryObject>, AzureError>> + Send {
        std::future::ready(Err(no_graph("list_group_transitive_members")))
    }
    /// The caller's object id as its Graph token names it.
    fn graph_caller_id(&self) -> impl Future<Output = Result<String, AzureError>> + Send {
        std::future::ready(Err(no_graph("graph_caller_id")))
    }
    /// The client-side budget of ARM's write and delete buckets, so the engine can order its writes across
    /// them. `None`: nothing to consult (no client-side limits, e.g. a scripted fake); writes then go round
    /// robin across buckets.
    fn write_budget(&self) -> impl Future<Output = Option<WriteBudget>> + Send {
        std::future::ready(None)
    }
}

/// What a fake without Microsoft Graph answers to a group call.
fn no_graph(operation: &'static str) -> AzureError {
    AzureError::GraphPermissionMissing {
        operation,
        needs: "Microsoft Graph (not available to this client)",
    }
}

/// The handler identity's ARM buckets in one client, as the engine's write scheduler sees them: a token taken
/// here ([`WriteBudget::reserve`]) is spent by the next request of that bucket instead of reserving again.
#[derive(Clone)]
pub struct WriteBudget {
    client: AzureClient,
    principal: Option<String>,
}

impl WriteBudget {
    /// Takes one token of the bucket a `class` request to `subscription` draws from when it comes within
    /// `max_wait`: `Ok(wait)`, send after `wait`; `Err(wait)`, nothing taken, ask again after `wait`.
    pub fn reserve(
        &self,
        subscription: &str,
        class: RequestClass,
        max_wait: Duration,
    ) -> Result<Duration, Duration> {
        let key = LimitKey::arm(self.principal.as_deref(), subscription, class);
        self.client.limiter().prepay(&key, Instant::now(), max_wait)
    }
}

impl AzureConnect for AzureClient {
    type Ops = ScopedClient;
    fn until(&self, deadline: Instant) -> ScopedClient {
        self.with_deadline(deadline)
    }
}

impl AzureOps for ScopedClient {
    fn deadline(&self) -> Instant {
        ScopedClient::deadline(self)
    }
    fn requests_sent(&self) -> u64 {
        ScopedClient::requests_sent(self)
    }
    async fn handler_tenant(&self) -> Option<String> {
        self.client()
            .identity(ScopedClient::deadline(self))
            .await
            .ok()
            .and_then(|c| c.tenant_id)
    }
    async fn handler_object_id(&self) -> Option<String> {
        self.client()
            .identity(ScopedClient::deadline(self))
            .await
            .ok()
            .and_then(|c| c.object_id)
    }
    async fn list_subscriptions(&self) -> Result<Vec<Subscription>, AzureError> {
        ScopedClient::list_subscriptions(self).await
    }
    async fn get_cluster(&self, id: &ResourceId) -> Result<Option<Cluster>, AzureError> {
        ScopedClient::get_cluster(self, id).await
    }
    async fn list_clusters(&self, subscription_id: &str) -> Result<Vec<Cluster>, AzureError> {
        ScopedClient::list_clusters(self, subscription_id).await
    }
    async fn get_registry(&self, id: &ResourceId) -> Result<Option<Registry>, AzureError> {
        ScopedClient::get_registry(self, id).await
    }
    async fn list_registries(&self, subscription_id: &str) -> Result<Vec<Registry>, AzureError> {
        ScopedClient::list_registries(self, subscription_id).await
    }
    async fn registries_from_resource_graph(
        &self,
        subscriptions: &[String],
    ) -> Result<Vec<Registry>, AzureError> {
        ScopedClient::registries_from_resource_graph(self, subscriptions).await
    }
    async fn list_role_assignments(
        &self,
        scope: &str,
        filter: &AssignmentFilter,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        ScopedClient::list_role_assignments(self, scope, filter).await
    }
    async fn get_role_definition(
        &self,
        scope: &str,
        guid: &str,
    ) -> Result<Option<RoleDefinition>, AzureError> {
        ScopedClient::get_role_definition(self, scope, guid).await
    }
    async fn resolve_service_principal(&self, app_id: &str) -> Result<Option<String>, AzureError> {
        ScopedClient::resolve_service_principal(self, app_id).await
    }
    async fn put_role_assignment(&self, new: &AssignmentSpec) -> Result<PutOutcome, AzureError> {
        ScopedClient::put_role_assignment(self, new).await
    }
    async fn delete_role_assignment(&self, id: &str) -> Result<DeleteOutcome, AzureError> {
        ScopedClient::delete_role_assignment(self, id).await
    }
    async fn inventory_with(&self, options: &InventoryOptions) -> Result<Inventory, AzureError> {
        ScopedClient::inventory_with(self, options).await
    }
    async fn ensure_own_group(&self, spec: &GroupSpec) -> Result<GroupOutcome, AzureError> {
        ScopedClient::ensure_own_group(self, spec).await
    }
    async fn find_own_group(&self, spec: &GroupSpec) -> Result<Option<GraphGroup>, AzureError> {
        let caller = ScopedClient::graph_caller_id(self).await?;
        ScopedClient::find_own_group(self, spec, &caller).await
    }
    async fn group_owners(&self, group_id: &str) -> Result<Vec<String>, AzureError> {
        ScopedClient::group_owners(self, group_id).await
    }
    async fn add_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<MemberChange, AzureError> {
        ScopedClient::add_group_member(self, group_id, member_id).await
    }
    async fn remove_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<MemberChange, AzureError> {
        ScopedClient::remove_group_member(self, group_id, member_id).await
    }
    async fn list_group_members(&self, group_id: &str) -> Result<Vec<DirectoryObject>, AzureError> {
        ScopedClient::list_group_members(self, group_id).await
    }
    async fn list_group_transitive_members(
        &self,
        group_id: &str,
    ) -> Result<Vec<DirectoryObject>, AzureError> {
        ScopedClient::list_group_transitive_members(self, group_id).await
    }
    async fn graph_caller_id(&self) -> Result<String, AzureError> {
        ScopedClient::graph_caller_id(self).await
    }
    async fn write_budget(&self) -> Option<WriteBudget> {
        // The same principal the requests' buckets are keyed by (the ARM token's object id).
        let claims = self
            .client()
            .identity(ScopedClient::deadline(self))
            .await
            .ok()?;
        Some(WriteBudget {
            client: self.client().clone(),
            principal: claims.object_id,
        })
    }
}
