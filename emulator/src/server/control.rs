//! The Rust control handle tests and the demo use: principals, tokens, grants, faults, settings, stats, reset.

use std::sync::Arc;

use super::EmulatorError;
use crate::app::{App, PrincipalSpec, lock};
use crate::config::{FaultConfig, Settings};
use crate::limits::BucketUsage;
use crate::rbac;
use crate::stats::StatsSnapshot;
use crate::store::Principal;

/// Test and demo controls: principals, tokens, grants, faults, settings, stats, reset.
#[derive(Clone)]
pub struct EmulatorControl {
    pub(super) app: Arc<App>,
}

impl std::fmt::Debug for EmulatorControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorControl")
            .field("base_url", &self.app.base_url)
            .finish_non_exhaustive()
    }
}

impl EmulatorControl {
    /// Object id of the handler's managed identity.
    pub fn handler_principal_id(&self) -> String {
        self.app.handler_object_id.clone()
    }

    /// Client id of the handler's managed identity.
    pub fn handler_client_id(&self) -> String {
        self.app.handler_client_id.clone()
    }

    /// Object id of the admin user (Owner on every configured subscription).
    pub fn admin_principal_id(&self) -> String {
        self.app.admin_object_id.clone()
    }

    pub fn default_tenant(&self) -> String {
        self.app.config.default_tenant.clone()
    }

    /// The configured subscription ids.
    pub fn subscriptions(&self) -> Vec<String> {
        self.app
            .config
            .subscriptions
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    /// A signed token for `object_id` with audience `audience` (e.g. `https://management.azure.com`).
    pub fn token_for(&self, object_id: &str, audience: &str) -> Result<String, EmulatorError> {
        let principal = self
            .principal(object_id)
            .ok_or_else(|| EmulatorError::UnknownPrincipal(object_id.to_owned()))?;
        Ok(self.app.mint_token(&principal, audience).0)
    }

    /// Checks a token as a service would: issued by this emulator (signature), unexpired, and returns its claims;
    /// the caller checks the audience. In-process fakes of services (an Application Insights ingestion endpoint
    /// with Microsoft Entra authentication) use it.
    pub fn verify_token(
        &self,
        token: &str,
    ) -> Result<crate::token::Claims, crate::token::TokenError> {
        self.app
            .signer
            .verify(token, time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// An ARM token for `object_id`.
    pub fn arm_token(&self, object_id: &str) -> Result<String, EmulatorError> {
        self.token_for(object_id, "https://management.azure.com")
    }

    /// An ARM token for the admin user.
    pub fn admin_token(&self) -> String {
        self.arm_token(&self.app.admin_object_id)
            .unwrap_or_default()
    }

    /// An ARM token for the handler identity.
    pub fn handler_token(&self) -> String {
        self.arm_token(&self.app.handler_object_id)
            .unwrap_or_default()
    }

    pub fn principal(&self, object_id: &str) -> Option<Principal> {
        lock(&self.app.store).principal(object_id).cloned()
    }

    pub fn create_principal(&self, spec: PrincipalSpec) -> Principal {
        self.app.create_principal(spec)
    }

    /// A replicated application service principal (usable by a service-principal cluster).
    pub fn create_service_principal(&self, display_name: &str) -> Principal {
        self.app
            .create_principal(PrincipalSpec::service_principal(display_name))
    }

    /// A replicated user.
    pub fn create_user(&self, display_name: &str) -> Principal {
        self.app.create_principal(PrincipalSpec::user(display_name))
    }

    /// A user-assigned managed identity (e.g. to bring as a cluster's kubelet identity), created now (so it is
    /// inside the replication window).
    pub fn create_user_assigned_identity(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Principal {
        let rid = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        );
        self.app.create_principal(PrincipalSpec {
            managed_identity_resource_id: Some(rid),
            replicated: false,
            ..PrincipalSpec::service_principal(name)
        })
    }

    /// Assigns `role` (a GUID) to `principal` at `scope` directly (setup: no ARM checks, no event).
    pub fn grant(&self, principal: &str, role: &str, scope: &str) -> String {
        let kind = self
            .principal(principal)
            .map_or("ServicePrincipal", |p| p.kind.as_str());
        self.app.grant(principal, role, scope, kind, None)
    }

    /// As [`grant`](Self::grant) with an ABAC condition (version 2.0).
    pub fn grant_with_condition(
        &self,
        principal: &str,
        role: &str,
        scope: &str,
        condition: &str,
    ) -> String {
        let kind = self
            .principal(principal)
            .map_or("ServicePrincipal", |p| p.kind.as_str());
        self.app
            .grant(principal, role, scope, kind, Some(condition.to_owned()))
    }

    /// Creates a custom role (setup) and returns its GUID.
    pub fn create_custom_role(
        &self,
        role_name: &str,
        actions: &[&str],
        data_actions: &[&str],
    ) -> String {
        let guid = self.app.new_id();
        let def = rbac::RoleDefinition {
            name: guid.clone(),
            role_name: role_name.to_owned(),
            description: String::new(),
            built_in: false,
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            not_actions: Vec::new(),
            data_actions: data_actions.iter().map(|s| (*s).to_owned()).collect(),
            not_data_actions: Vec::new(),
            assignable_scopes: vec!["/".to_owned()],
        };
        lock(&self.app.store)
            .role_definitions
            .insert(guid.clone(), def);
        guid
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.app.faults).config.clone()
    }

    /// Replaces the fault configuration (and reseeds the RNG from `faults.seed`).
    pub fn set_faults(&self, faults: FaultConfig) {
        *lock(&self.app.faults) = crate::app::FaultState::new(faults);
        lock(&self.app.buckets).clear();
    }

    pub fn update_faults(&self, change: impl FnOnce(&mut FaultConfig)) {
        let mut faults = self.faults();
        change(&mut faults);
        self.set_faults(faults);
    }

    /// A Microsoft Graph token for `object_id` (its `roles` claim carries the Graph app roles granted to it).
    pub fn graph_token(&self, object_id: &str) -> Result<String, EmulatorError> {
        self.token_for(object_id, "https://graph.microsoft.com")
    }

    /// Grants a Microsoft Graph application permission (e.g. `Group.Create`) to a principal, as an admin's
    /// consent does; tokens minted afterwards carry it.
    pub fn grant_graph_app_role(&self, object_id: &str, role: &str) {
        lock(&self.app.store)
            .graph_app_roles
            .entry(object_id.to_ascii_lowercase())
            .or_default()
            .insert(role.to_owned());
    }

    /// Whether `object_id` can pull from the registry `registry_id` now, as the registry's data plane decides it
    /// (own and group role assignments, group memberships only once past the membership delay). `None` when the
    /// registry does not exist.
    pub fn can_pull(&self, object_id: &str, registry_id: &str) -> Option<bool> {
        lock(&self.app.store).can_pull(object_id, registry_id)
    }

    /// Role assignments in a subscription (what Azure's 4,000 limit counts).
    pub fn assignments_in_subscription(&self, subscription: &str) -> usize {
        lock(&self.app.store).assignments_in_subscription(&subscription.to_ascii_lowercase())
    }

    pub fn settings(&self) -> Settings {
        lock(&self.app.settings).clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        self.app.set_settings(settings);
    }

    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) {
        let mut settings = self.settings();
        change(&mut settings);
        self.app.set_settings(settings);
    }

    pub fn stats(&self) -> StatsSnapshot {
        lock(&self.app.stats).snapshot()
    }

    /// The work of every paged answer since the last [`Self::reset_stats`], oldest first (the latest
    /// [`crate::stats::PAGE_WORK_KEPT`]).
    pub fn page_work(&self) -> Vec<crate::stats::PageWork> {
        lock(&self.app.stats).pages()
    }

    /// Clears the request counters and the per-bucket usage ([`EmulatorControl::bucket_usage`]).
    pub fn reset_stats(&self) {
        lock(&self.app.stats).clear();
        lock(&self.app.buckets).clear_usage();
    }

    /// Requests that met each ARM bucket (principal, subscription, class) since the last
    /// [`EmulatorControl::reset_stats`], throttled ones included. Counted only while throttling is on.
    pub fn bucket_usage(&self) -> Vec<BucketUsage> {
        lock(&self.app.buckets).usage()
    }

    /// Every ARM bucket and Resource Graph window starts afresh (full), as after a long pause.
    pub fn refill_limits(&self) {
        lock(&self.app.buckets).clear();
        lock(&self.app.graph_quota).clear();
    }

    /// Clears everything back to the start state (resources, assignments, directory, limits, stats, settings,
    /// faults).
    pub fn reset(&self) {
        self.app.reset();
    }
}
