//! The shared state behind every route, and the operations the control API and the Rust handle use.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::Value;
use time::OffsetDateTime;

use crate::bus::{ArmEvent, EventBus};
use crate::config::{EmulatorConfig, FaultConfig, HandlerRights, Settings};
use crate::cursors::Cursors;
use crate::limits::{Buckets, GraphQuota};
use crate::rbac;
use crate::stats::Stats;
use crate::store::{
    GraphTable, Principal, PrincipalKind, RoleAssignment, Store, Subscription, assignment_graph_row,
};
use crate::token::{Claims, TokenSigner};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked while holding it; the data is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Faults plus the RNG and counters they consume.
pub(crate) struct FaultState {
    pub config: FaultConfig,
    pub rng: StdRng,
}

impl FaultState {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
        }
    }
}

/// What the fault injector decided for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultDecision {
    Pass,
    ServerError(u16),
    Reset,
}

pub(crate) struct App {
    pub store: Mutex<Store>,
    pub settings: Mutex<Settings>,
    pub faults: Mutex<FaultState>,
    pub buckets: Mutex<Buckets>,
    pub graph_quota: Mutex<GraphQuota>,
    pub stats: Mutex<Stats>,
    /// Paging cursors of role-assignment lists and of Resource Graph queries (`cursors.rs`).
    pub list_cursors: Mutex<Cursors>,
    pub graph_cursors: Mutex<Cursors>,
    /// Cluster PUTs still provisioning: the request behind each, for the completion event.
    pub pending: Mutex<std::collections::HashMap<String, PendingWrite>>,
    /// Cluster PUTs' long-running operations by id (what `Azure-AsyncOperation` URLs name).
    pub operations: Mutex<std::collections::HashMap<String, ClusterOperation>>,
    pub ids: Mutex<StdRng>,
    pub signer: TokenSigner,
    pub identity_header: String,
    pub base_url: String,
    pub bus: EventBus,
    pub config: EmulatorConfig,
    pub handler_object_id: String,
    pub handler_client_id: String,
    pub admin_object_id: String,
}

impl App {
    pub fn new(config: EmulatorConfig, base_url: String, bus: EventBus) -> Arc<Self> {
        let mut key = [0u8; 32];
        rand::rng().fill(&mut key);
        let mut header_bytes = [0u8; 16];
        rand::rng().fill(&mut header_bytes);
        let identity_header = crate::crypto::hex(&header_bytes);
        let mut ids = StdRng::seed_from_u64(config.id_seed);
        let handler_object_id = random_uuid(&mut ids);
        let handler_client_id = random_uuid(&mut ids);
        let admin_object_id = random_uuid(&mut ids);
        let app = Arc::new(Self {
            store: Mutex::new(Store::new()),
            settings: Mutex::new(config.settings.clone()),
            faults: Mutex::new(FaultState::new(config.faults.clone())),
            buckets: Mutex::new(Buckets::default()),
            graph_quota: Mutex::new(GraphQuota::default()),
            stats: Mutex::new(Stats::default()),
            list_cursors: Mutex::new(Cursors::default()),
            graph_cursors: Mutex::new(Cursors::default()),
            pending: Mutex::new(std::collections::HashMap::new()),
            operations: Mutex::new(std::collections::HashMap::new()),
            ids: Mutex::new(ids),
            signer: TokenSigner::new(key),
            identity_header,
            base_url,
            bus,
            config,
            handler_object_id,
            handler_client_id,
            admin_object_id,
        });
        app.bootstrap();
        app
    }

    /// (Re)creates the start state: subscriptions, the handler and admin identities and their rights.
    pub fn bootstrap(&self) {
        let mut store = lock(&self.store);
        *store = Store::new();
        let long_ago = Instant::now()
            .checked_sub(Duration::from_hours(24))
            .unwrap_or_else(Instant::now);
        let created_time = OffsetDateTime::now_utc() - time::Duration::days(1);
        for sub in &self.config.subscriptions {
            store.subscriptions.insert(
                sub.id.to_ascii_lowercase(),
                Subscription {
                    id: sub.id.to_ascii_lowercase(),
                    tenant_id: sub.tenant_id.clone(),
                    display_name: sub.display_name.clone(),
                    tags: std::collections::BTreeMap::new(),
                },
            );
        }
        let tenant = self.config.default_tenant.clone();
        let handler_resource = self.config.handler_user_assigned.then(|| {
            format!(
                "/subscriptions/{}/resourceGroups/acr-autoattach/providers/Microsoft.ManagedIdentity/userAssignedIdentities/acr-autoattach",
                self.config.subscriptions.first().map_or("00000000-0000-0000-0000-000000000000", |s| s.id.as_str())
            )
        });
        store.principals.insert(
            self.handler_object_id.clone(),
            Principal {
                object_id: self.handler_object_id.clone(),
                app_id: self.handler_client_id.clone(),
                display_name: "acr-autoattach".into(),
                kind: PrincipalKind::ServicePrincipal,
                service_principal_type: "ManagedIdentity".into(),
                tenant_id: tenant.clone(),
                managed_identity_resource_id: handler_resource,
                created_time,
                created_at: long_ago,
            },
        );
        store.principals.insert(
            self.admin_object_id.clone(),
            Principal {
                object_id: self.admin_object_id.clone(),
                app_id: String::new(),
                display_name: "admin".into(),
                kind: PrincipalKind::User,
                service_principal_type: String::new(),
                tenant_id: tenant,
                managed_identity_resource_id: None,
                created_time,
                created_at: long_ago,
            },
        );
        // The admin user stands for a directory administrator: its delegated Graph rights cover the directory.
        store.graph_app_roles.insert(
            self.admin_object_id.clone(),
            std::collections::BTreeSet::from(["Directory.ReadWrite.All".to_owned()]),
        );
        if !self.config.handler_graph_roles.is_empty() {
            store.graph_app_roles.insert(
                self.handler_object_id.clone(),
                self.config.handler_graph_roles.iter().cloned().collect(),
            );
        }
        store.membership_delay =
            Duration::from_millis(lock(&self.settings).group_membership_delay_ms);
        let reader = rbac::handler_reader_role();
        store.role_definitions.insert(reader.name.clone(), reader);
        let subs: Vec<(String, String)> = self
            .config
            .subscriptions
            .iter()
            .map(|s| (s.id.to_ascii_lowercase(), s.tenant_id.clone()))
            .collect();
        drop(store);
        for (sub, _) in &subs {
            let scope = format!("/subscriptions/{sub}");
            self.grant(&self.admin_object_id, rbac::OWNER, &scope, "User", None);
            match self.config.handler_rights {
                HandlerRights::LeastPrivilege | HandlerRights::LeastPrivilegeGroups => {
                    self.grant(
                        &self.handler_object_id,
                        rbac::HANDLER_READER,
                        &scope,
                        "ServicePrincipal",
                        None,
                    );
                    let condition = if self.config.handler_rights == HandlerRights::LeastPrivilege {
                        rbac::pull_roles_only_condition()
                    } else {
                        rbac::pull_roles_to_principals_and_groups_condition()
                    };
                    self.grant(
                        &self.handler_object_id,
                        rbac::RBAC_ADMINISTRATOR,
                        &scope,
                        "ServicePrincipal",
                        Some(condition),
                    );
                }
                HandlerRights::ReadOnly => {
                    self.grant(
                        &self.handler_object_id,
                        rbac::HANDLER_READER,
                        &scope,
                        "ServicePrincipal",
                        None,
                    );
                }
                HandlerRights::None => {}
            }
        }
    }

    pub fn new_id(&self) -> String {
        random_uuid(&mut lock(&self.ids))
    }

    /// Creates a role assignment directly (setup; no ARM checks, no event). Returns its name.
    pub fn grant(
        &self,
        principal_id: &str,
        role_guid: &str,
        scope: &str,
        principal_type: &str,
        condition: Option<String>,
    ) -> String {
        let name = self.new_id();
        let now = OffsetDateTime::now_utc();
        let assignment = RoleAssignment {
            name: name.clone(),
            scope: canonical_scope(scope),
            role_guid: role_guid.to_ascii_lowercase(),
            principal_id: principal_id.to_ascii_lowercase(),
            principal_type: principal_type.to_owned(),
            description: None,
            condition_version: condition.as_ref().map(|_| "2.0".to_owned()),
            condition,
            delegated_managed_identity_resource_id: None,
            created_on: now,
            updated_on: now,
            created_by: self.admin_object_id.clone(),
            updated_by: self.admin_object_id.clone(),
        };
        let keep = self.graph_keep();
        let mut store = lock(&self.store);
        let tenant = self.tenant_of_scope(&store, &assignment.scope);
        let row = assignment_graph_row(&assignment, &tenant);
        store.graph_write(
            GraphTable::AuthorizationResources,
            &assignment.id(),
            Some(row),
            Instant::now(),
            keep,
        );
        store.insert_assignment(Arc::new(assignment));
        name
    }

    /// Whether `audience` names Microsoft Graph: Graph's own ids, or this emulator's origin (a client such as
    /// azure-cli, registered with the emulator as its Graph endpoint, asks for tokens for that URL).
    pub fn is_graph_audience(&self, audience: &str) -> bool {
        crate::token::is_graph_audience(audience)
            || audience.trim_end_matches('/') == self.base_url.trim_end_matches('/')
    }

    /// Replaces the run-time settings, keeping the store's copy of the group-membership delay in step.
    pub fn set_settings(&self, settings: Settings) {
        let delay = Duration::from_millis(settings.group_membership_delay_ms);
        *lock(&self.settings) = settings;
        lock(&self.store).membership_delay = delay;
    }

    pub fn graph_keep(&self) -> Duration {
        Duration::from_millis(lock(&self.settings).resource_graph_lag_ms)
    }

    pub fn tenant_of_scope(&self, store: &Store, scope: &str) -> String {
        rbac::subscription_of(scope)
            .and_then(|s| store.subscription(&s).map(|s| s.tenant_id.clone()))
            .unwrap_or_else(|| self.config.default_tenant.clone())
    }

    /// Adds a principal to the directory. `replicated` back-dates it past the replication window.
    pub fn create_principal(&self, spec: PrincipalSpec) -> Principal {
        let object_id = spec
            .object_id
            .map_or_else(|| self.new_id(), |s| s.to_ascii_lowercase());
        let app_id = match spec.kind {
            PrincipalKind::ServicePrincipal => spec
                .app_id
                .map_or_else(|| self.new_id(), |s| s.to_ascii_lowercase()),
            _ => String::new(),
        };
        let (created_at, created_time) = if spec.replicated {
            (
                Instant::now()
                    .checked_sub(Duration::from_hours(24))
                    .unwrap_or_else(Instant::now),
                OffsetDateTime::now_utc() - time::Duration::days(1),
            )
        } else {
            (Instant::now(), OffsetDateTime::now_utc())
        };
        let principal = Principal {
            object_id: object_id.clone(),
            app_id,
            display_name: spec.display_name,
            kind: spec.kind,
            service_principal_type: match spec.kind {
                PrincipalKind::ServicePrincipal if spec.managed_identity_resource_id.is_some() => {
                    "ManagedIdentity".into()
                }
                PrincipalKind::ServicePrincipal => "Application".into(),
                _ => String::new(),
            },
            tenant_id: spec
                .tenant_id
                .unwrap_or_else(|| self.config.default_tenant.clone()),
            managed_identity_resource_id: spec.managed_identity_resource_id,
            created_time,
            created_at,
        };
        lock(&self.store)
            .principals
            .insert(object_id, principal.clone());
        principal
    }

    /// Mints a token for a principal and audience (no fault injection; the control API and tests use it).
    pub fn mint_token(&self, principal: &Principal, audience: &str) -> (String, i64) {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lifetime = i64::try_from(lock(&self.settings).token_lifetime_secs).unwrap_or(3600);
        let exp = now + lifetime;
        let claims = Claims {
            aud: audience.to_owned(),
            iss: format!("https://sts.windows.net/{}/", principal.tenant_id),
            tid: principal.tenant_id.clone(),
            oid: principal.object_id.clone(),
            sub: principal.object_id.clone(),
            appid: if principal.app_id.is_empty() {
                "04b07795-8ddb-461a-bbee-02f9e1bf7b46".to_owned()
            } else {
                principal.app_id.clone()
            },
            iat: now,
            nbf: now,
            exp,
            idtyp: if principal.kind == PrincipalKind::User {
                "user".into()
            } else {
                "app".into()
            },
            xms_mirid: principal.managed_identity_resource_id.clone(),
            roles: if self.is_graph_audience(audience) {
                lock(&self.store)
                    .graph_app_roles
                    .get(&principal.object_id.to_ascii_lowercase())
                    .map(|r| r.iter().cloned().collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
        };
        (self.signer.sign(&claims), exp)
    }

    /// Decides the fault for one service request (consumes `fail_next` and RNG draws).
    pub fn decide_fault(&self) -> (FaultDecision, Duration) {
        let mut guard = lock(&self.faults);
        let FaultState { config, rng } = &mut *guard;
        let jitter = if config.latency_jitter_ms > 0 {
            rng.random_range(0..=config.latency_jitter_ms)
        } else {
            0
        };
        let latency = config.latency_ms + jitter;
        let status = config.error_status;
        let decision = if config.fail_next > 0 {
            config.fail_next -= 1;
            FaultDecision::ServerError(status)
        } else if config.error_rate > 0.0 && rng.random_bool(config.error_rate.clamp(0.0, 1.0)) {
            FaultDecision::ServerError(status)
        } else if config.reset_rate > 0.0 && rng.random_bool(config.reset_rate.clamp(0.0, 1.0)) {
            FaultDecision::Reset
        } else {
            FaultDecision::Pass
        };
        (decision, Duration::from_millis(latency))
    }

    /// Whether this token request fails.
    pub fn token_fault(&self) -> bool {
        let mut faults = lock(&self.faults);
        if faults.config.token_fail_next > 0 {
            faults.config.token_fail_next -= 1;
            return true;
        }
        let rate = faults.config.token_failure_rate.clamp(0.0, 1.0);
        rate > 0.0 && faults.rng.random_bool(rate)
    }

    pub fn publish(&self, events: &[ArmEvent]) {
        for event in events {
            self.bus.publish(event);
        }
    }

    /// Clears all state (resources, assignments, directory, limits, stats) back to the start state.
    pub fn reset(&self) {
        self.bootstrap();
        lock(&self.buckets).clear();
        lock(&self.buckets).clear_usage();
        lock(&self.graph_quota).clear();
        lock(&self.stats).clear();
        lock(&self.list_cursors).clear();
        lock(&self.graph_cursors).clear();
        lock(&self.operations).clear();
        self.set_settings(self.config.settings.clone());
        *lock(&self.faults) = FaultState::new(self.config.faults.clone());
    }
}

/// The request behind a cluster PUT still provisioning.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub claims: Claims,
    pub method: String,
    pub url: String,
    pub correlation_id: Option<String>,
}

/// A cluster PUT's long-running operation: which write of which cluster, and when it started and ended.
#[derive(Clone, Debug)]
pub(crate) struct ClusterOperation {
    /// The cluster's store key.
    pub key: String,
    pub generation: u64,
    pub subscription: String,
    pub started: OffsetDateTime,
    pub ended: Option<OffsetDateTime>,
}

/// What a new directory principal looks like.
#[derive(Clone, Debug)]
pub struct PrincipalSpec {
    pub display_name: String,
    pub kind: PrincipalKind,
    pub object_id: Option<String>,
    pub app_id: Option<String>,
    pub tenant_id: Option<String>,
    pub managed_identity_resource_id: Option<String>,
    /// Back-date the principal so it is past the replication window.
    pub replicated: bool,
}

impl PrincipalSpec {
    pub fn service_principal(display_name: impl Into<String>) -> Self {
        Self {
            display_name: display_name.into(),
            kind: PrincipalKind::ServicePrincipal,
            object_id: None,
            app_id: None,
            tenant_id: None,
            managed_identity_resource_id: None,
            replicated: true,
        }
    }

    pub fn user(display_name: impl Into<String>) -> Self {
        Self {
            kind: PrincipalKind::User,
            ..Self::service_principal(display_name)
        }
    }
}

pub(crate) fn random_uuid(rng: &mut StdRng) -> String {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A scope with a leading `/` and no trailing one; the root is `/`.
pub(crate) fn canonical_scope(scope: &str) -> String {
    let trimmed = scope.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{trimmed}")
    }
}

/// Reads a JSON value's string at a dotted path.
pub(crate) fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_str()
}
