//! Configuration of the emulator: what exists at start (tenants, subscriptions, the handler and admin
//! identities), the behaviour knobs that can change at run time ([`Settings`]) and the injected faults
//! ([`FaultConfig`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default tenant of the default subscriptions and identities.
pub const DEFAULT_TENANT: &str = "72f988bf-0000-4000-8000-00000000a0a0";
/// The default subscriptions, both in [`DEFAULT_TENANT`].
pub const DEFAULT_SUBSCRIPTIONS: [&str; 2] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
];

/// A subscription that exists from the start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionConfig {
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
}

impl SubscriptionConfig {
    pub fn new(id: impl Into<String>, tenant_id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            display_name: format!("subscription {}", id.chars().take(8).collect::<String>()),
            id,
            tenant_id: tenant_id.into(),
        }
    }

    /// Parses the `--subscription` flag form `ID[@TENANT][:DISPLAY NAME]`.
    pub fn parse_flag(raw: &str, default_tenant: &str) -> Result<Self, String> {
        let (ids, name) = match raw.split_once(':') {
            Some((ids, name)) => (ids, Some(name)),
            None => (raw, None),
        };
        let (id, tenant) = match ids.split_once('@') {
            Some((id, tenant)) => (id, tenant),
            None => (ids, default_tenant),
        };
        for (what, value) in [("subscription id", id), ("tenant id", tenant)] {
            if uuid::Uuid::parse_str(value).is_err() {
                return Err(format!("{what} `{value}` is not a GUID"));
            }
        }
        let mut sub = Self::new(id.to_ascii_lowercase(), tenant.to_ascii_lowercase());
        if let Some(name) = name {
            name.clone_into(&mut sub.display_name);
        }
        Ok(sub)
    }
}

/// When a cluster PUT publishes its `managedClusters/write` event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterEventTiming {
    /// Once, when the PUT is accepted (the cluster is still `Creating`).
    OnAccept,
    /// Once, when provisioning completes.
    OnCompletion,
    /// Twice, as Azure does: on accept and on completion.
    #[default]
    Both,
}

/// Which rights the handler identity gets on each configured subscription at start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandlerRights {
    /// The least-privilege set of the design: a custom read-only role plus Role Based Access Control
    /// Administrator.
    #[default]
    LeastPrivilege,
    /// The least-privilege set as infra deploys it for group mode (`enableGroupMode`): the attach role's
    /// condition also allows the `Group` principal type (`rbac::pull_roles_to_principals_and_groups_condition`).
    LeastPrivilegeGroups,
    /// Only the custom read-only role (audit mode).
    ReadOnly,
    /// Nothing: tests grant what they need.
    None,
}

/// Behaviour that can change while the emulator runs (`/_emulator/settings`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// Time from an accepted cluster PUT to `Succeeded` (and the kubelet identity).
    pub cluster_provisioning_ms: u64,
    pub cluster_event_timing: ClusterEventTiming,
    /// A principal younger than this is unknown to role-assignment PUTs that do not say
    /// `principalType: ServicePrincipal` (directory replication delay).
    pub principal_replication_ms: u64,
    /// Resource Graph shows a resource's state as it was this long ago (eventual consistency).
    pub resource_graph_lag_ms: u64,
    /// Page size of ARM list operations other than role assignments.
    pub list_page_size: usize,
    /// Page size of role-assignment lists.
    pub role_assignment_page_size: usize,
    /// Role assignments per subscription (Azure: 4,000).
    pub role_assignment_limit: usize,
    /// Lifetime of issued access tokens.
    pub token_lifetime_secs: u64,
    /// Resource Graph default page size when `$top` is absent (Azure: 100), and its maximum (1,000).
    pub resource_graph_default_top: usize,
    /// How long a change of group membership (added or removed) takes to count for Azure RBAC, modelling the
    /// managed-identity token cache (Azure: up to ~24 h; see `docs/grant-modes.md`). Scaled down by default.
    pub group_membership_delay_ms: u64,
    /// Microsoft Graph page size of member and `transitiveMemberOf` lists without `$top` (Graph: 100; `$top`
    /// may ask up to 999).
    pub graph_page_size: usize,
    /// Whether an application that owns a group may read it and manage its members with no group permission
    /// beyond `Group.Create` (observed in Azure, not documented for applications: `docs/grant-modes.md`).
    pub graph_owners_manage_members: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_provisioning_ms: 2_000,
            cluster_event_timing: ClusterEventTiming::Both,
            principal_replication_ms: 5_000,
            resource_graph_lag_ms: 0,
            list_page_size: 1_000,
            role_assignment_page_size: 1_000,
            role_assignment_limit: 4_000,
            token_lifetime_secs: 3_600,
            resource_graph_default_top: 100,
            group_membership_delay_ms: 60_000,
            graph_page_size: 100,
            graph_owners_manage_members: true,
        }
    }
}

/// ARM token-bucket limits (per principal, per subscription, per class).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketLimit {
    pub capacity: u32,
    pub refill_per_sec: u32,
}

/// Injected faults and limits (`/_emulator/faults`). Everything random draws from one RNG seeded by `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct FaultConfig {
    pub seed: u64,
    /// Added to every ARM, Graph, Resource Graph and token request.
    pub latency_ms: u64,
    /// Extra random latency, uniformly 0..=jitter.
    pub latency_jitter_ms: u64,
    /// Probability (0..=1) that an ARM/Graph/Resource Graph request answers a 5xx.
    pub error_rate: f64,
    /// Status used for injected 5xx (500, 502, 503 or 504).
    pub error_status: u16,
    /// The next N ARM/Graph/Resource Graph requests answer the injected 5xx (deterministic).
    pub fail_next: u32,
    /// Probability that a request's connection is dropped before a complete answer.
    pub reset_rate: f64,
    /// Probability that the token endpoint answers 500.
    pub token_failure_rate: f64,
    /// The next N token requests answer 500 (deterministic).
    pub token_fail_next: u32,
    /// ARM token buckets on/off (Azure's behaviour: on).
    pub throttling: bool,
    pub reads: BucketLimit,
    pub writes: BucketLimit,
    pub deletes: BucketLimit,
    /// Resource Graph: queries per window per caller.
    pub resource_graph_quota: u32,
    pub resource_graph_window_ms: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            latency_ms: 0,
            latency_jitter_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            fail_next: 0,
            reset_rate: 0.0,
            token_failure_rate: 0.0,
            token_fail_next: 0,
            throttling: true,
            reads: BucketLimit {
                capacity: 250,
                refill_per_sec: 25,
            },
            writes: BucketLimit {
                capacity: 200,
                refill_per_sec: 10,
            },
            deletes: BucketLimit {
                capacity: 200,
                refill_per_sec: 10,
            },
            resource_graph_quota: 15,
            resource_graph_window_ms: 5_000,
        }
    }
}

impl FaultConfig {
    /// ARM's and Resource Graph's limits with their refill `scale` times faster: every bucket refills
    /// `refill_per_sec × scale` tokens per second and Resource Graph's window is `window / scale`; capacities
    /// and the quota per window stay. Benchmarks use it to run Azure-sized estates in minutes while the shape
    /// of the limits (a burst, then a steady rate) stays Azure's. A scale below 1 is taken as 1.
    #[must_use]
    pub fn with_refill_scale(mut self, scale: u32) -> Self {
        let scale = scale.max(1);
        for bucket in [&mut self.reads, &mut self.writes, &mut self.deletes] {
            bucket.refill_per_sec = bucket.refill_per_sec.saturating_mul(scale);
        }
        self.resource_graph_window_ms = (self.resource_graph_window_ms / u64::from(scale)).max(1);
        self
    }
}

/// Everything the emulator needs to start.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// 0 picks a free port. The server always binds 127.0.0.1.
    pub port: u16,
    pub default_tenant: String,
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Locations offered (used in error messages; any location is accepted in a PUT).
    pub locations: Vec<String>,
    pub handler_rights: HandlerRights,
    /// A user-assigned identity for the handler: `AZURE_CLIENT_ID` is exported and tokens need `client_id`.
    pub handler_user_assigned: bool,
    /// Microsoft Graph application permissions (app roles such as `Group.Create`) consented for the handler
    /// identity at start: they appear in the `roles` claim of its Graph tokens. None by default.
    pub handler_graph_roles: Vec<String>,
    pub settings: Settings,
    pub faults: FaultConfig,
    /// Seed of the identifiers the emulator generates (object ids, client ids).
    pub id_seed: u64,
    /// Serve HTTPS with a certificate from a CA made at start (see `tls.rs`).
    pub tls: bool,
    /// Where the CA's `ca.pem` is written (default: a fresh folder under the system temp dir, removed on stop).
    pub tls_dir: Option<std::path::PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            port: 0,
            default_tenant: DEFAULT_TENANT.to_owned(),
            subscriptions: DEFAULT_SUBSCRIPTIONS
                .iter()
                .map(|id| SubscriptionConfig::new(*id, DEFAULT_TENANT))
                .collect(),
            locations: ["eastus", "westeurope", "westus2", "northeurope"]
                .map(str::to_owned)
                .to_vec(),
            handler_rights: HandlerRights::LeastPrivilege,
            handler_user_assigned: false,
            handler_graph_roles: Vec::new(),
            settings: Settings::default(),
            faults: FaultConfig::default(),
            id_seed: 1,
            tls: false,
            tls_dir: None,
        }
    }
}

impl EmulatorConfig {
    /// Settings suited to tests: clusters provision in 50 ms, principals replicate in 200 ms.
    pub fn for_tests() -> Self {
        let mut config = Self::default();
        config.settings.cluster_provisioning_ms = 50;
        config.settings.principal_replication_ms = 200;
        config
    }

    pub fn cluster_provisioning(&self) -> Duration {
        Duration::from_millis(self.settings.cluster_provisioning_ms)
    }
}
