//! The Azure client against the ARM emulator: tokens from `ManagedIdentityCredential`, paging, role
//! assignments, Microsoft Graph, throttling (honoured 429s and a limiter that avoids them), server errors,
//! deadlines, and the inventory's request counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/credential.rs"]
mod credential;

use std::sync::Arc;
use std::time::Duration;

use acr_autoattach::azure::{
    AssignmentFilter, AzureClient, AzureError, BucketSpec, ClientOptions, DeleteOutcome,
    InventoryOptions, InventorySource, ManagedIdentityOptions, Operation, PutOutcome, RateLimits,
    RetryPolicy, WindowSpec,
};
use acr_autoattach::core::model::{
    ACR_PULL_GUID, ClusterPrincipal, PullRole, ResourceId, RoleAssignmentMode,
};
use acr_autoattach::core::planner::AssignmentSpec;
use azure_emulator::{BucketLimit, Emulator, EmulatorConfig, HandlerRights, RunningEmulator};
use credential::EmulatorCredential;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing_subscriber::layer::SubscriberExt;
use url::Url;

const OWNER_GUID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

fn options_for(emu: &RunningEmulator, object_id: &str) -> ClientOptions {
    options_with_invalid_tokens(emu, object_id, 0)
}

fn options_with_invalid_tokens(
    emu: &RunningEmulator,
    object_id: &str,
    invalid_first: u32,
) -> ClientOptions {
    let base = Url::parse(&emu.base_url()).unwrap();
    let credential = Arc::new(
        EmulatorCredential::for_principal(emu.control(), object_id)
            .with_invalid_first(invalid_first),
    );
    let mut options = ClientOptions::new(base.clone(), base, credential);
    options.retry = RetryPolicy::default().with_seed(42);
    options
}

fn handler_client(emu: &RunningEmulator) -> AzureClient {
    AzureClient::new(options_for(emu, &emu.handler_principal_id())).unwrap()
}

fn soon(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// ARM PUTs as the admin user, as a person would create the estate.
struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    fn new(emu: &RunningEmulator) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: emu.base_url(),
            token: emu.admin_token(),
        }
    }

    async fn put(&self, path: &str, api_version: &str, body: Value) -> Value {
        let response = self
            .http
            .put(format!("{}{path}?api-version={api_version}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "PUT {path}: {status} {body}");
        body
    }

    async fn resource_group(&self, sub: &str, rg: &str) {
        self.put(
            &format!("/subscriptions/{sub}/resourceGroups/{rg}"),
            "2021-04-01",
            json!({"location": "eastus"}),
        )
        .await;
    }

    async fn cluster(&self, sub: &str, rg: &str, name: &str, tags: Value) -> String {
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"
        );
        let body = json!({"location": "eastus", "tags": tags, "identity": {"type": "SystemAssigned"},
            "properties": {"dnsPrefix": name, "agentPoolProfiles": [{"name": "np1", "count": 1, "vmSize": "Standard_DS2_v2", "mode": "System"}]}});
        self.put(&id, "2026-02-01", body).await;
        id
    }

    async fn sp_cluster(&self, sub: &str, rg: &str, name: &str, client_id: &str) -> String {
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"
        );
        let body = json!({"location": "westeurope", "tags": {},
            "properties": {"dnsPrefix": name, "servicePrincipalProfile": {"clientId": client_id, "secret": "s3cret"},
                "agentPoolProfiles": [{"name": "np1", "count": 1, "vmSize": "Standard_DS2_v2", "mode": "System"}]}});
        self.put(&id, "2026-02-01", body).await;
        id
    }

    async fn registry(&self, sub: &str, rg: &str, name: &str, tags: Value, abac: bool) -> String {
        let id = format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}"
        );
        let mode = if abac {
            "AbacRepositoryPermissions"
        } else {
            "LegacyRegistryPermissions"
        };
        let body = json!({"location": "eastus", "sku": {"name": "Standard"}, "tags": tags, "properties": {"roleAssignmentMode": mode}});
        self.put(&id, "2025-11-01", body).await;
        id
    }
}

async fn start(config: EmulatorConfig) -> RunningEmulator {
    Emulator::start(config).await.unwrap()
}

/// Waits until every cluster has its kubelet identity (the emulator provisions in the background).
async fn wait_provisioned(client: &AzureClient, ids: &[String]) {
    let azure = client.with_deadline(soon(20));
    for id in ids {
        let id = ResourceId::parse(id).unwrap();
        loop {
            let c = azure.get_cluster(&id).await.unwrap().unwrap();
            if c.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tokens through azure_identity's ManagedIdentityCredential (App Service protocol), in a child process.

const CHILD_FLAG: &str = "CLIENT_EMULATOR_CHILD";

async fn managed_identity_child() {
    let env = |k: &str| std::env::var(k).ok();
    let arm = Url::parse(&env("AUTOATTACH_ARM_ENDPOINT").unwrap()).unwrap();
    let graph = Url::parse(&env("AUTOATTACH_GRAPH_ENDPOINT").unwrap()).unwrap();
    let identity = ManagedIdentityOptions {
        no_retry: true,
        ..ManagedIdentityOptions::from_env(env)
    };
    let mut options = ClientOptions::managed_identity(arm, graph, &identity).unwrap();
    options.retry.base_delay = Duration::from_millis(20);
    let client = AzureClient::new(options).unwrap();
    // The parent made the token endpoint fail twice: azure_identity (no retry of its own) reports it, our
    // policy retries with back-off, the third token request succeeds.
    let subs = client
        .with_deadline(soon(20))
        .list_subscriptions()
        .await
        .unwrap();
    assert_eq!(subs.len(), 2, "{subs:?}");
    let stats = client.stats();
    assert_eq!(stats.retries, 2, "{stats:?}");
    assert_eq!(stats.total(), 1, "token failures send no ARM request");
    let claims = client.identity(soon(20)).await.unwrap();
    assert_eq!(
        claims.object_id,
        env("EXPECTED_OID"),
        "token issued to the handler identity"
    );
    assert_eq!(claims.tenant_id, env("AZURE_TENANT_ID"));
    println!("child ok: {} subscriptions", subs.len());
}

#[tokio::test]
async fn managed_identity_credential_gets_tokens_from_the_emulator() {
    if std::env::var(CHILD_FLAG).is_ok() {
        managed_identity_child().await;
        return;
    }
    for user_assigned in [false, true] {
        let emu = start(EmulatorConfig {
            handler_user_assigned: user_assigned,
            ..EmulatorConfig::for_tests()
        })
        .await;
        emu.update_faults(|f| f.token_fail_next = 2);
        let env = emu.env();
        assert_eq!(
            env.iter().any(|(k, _)| k == "AZURE_CLIENT_ID"),
            user_assigned
        );
        let output = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "managed_identity_credential_gets_tokens_from_the_emulator",
                "--exact",
                "--nocapture",
            ])
            .env_remove("AZURE_CLIENT_ID")
            .envs(env)
            .env(CHILD_FLAG, "1")
            .env("EXPECTED_OID", emu.handler_principal_id())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("child ok: 2 subscriptions"),
            "user_assigned={user_assigned}\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(emu.stats().count_status("GET token", 500), 2);
        assert_eq!(
            emu.stats().count_status("GET token", 200),
            1,
            "one token, cached"
        );
    }
}

// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn clusters_and_registries_are_read_and_lists_are_paged() {
    let emu = start(EmulatorConfig::for_tests()).await;
    emu.update_settings(|s| s.list_page_size = 2);
    let sub = emu.subscriptions()[0].clone();
    let admin = Admin::new(&emu);
    admin.resource_group(&sub, "rg").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            admin
                .cluster(
                    &sub,
                    "rg",
                    &format!("aks{i}"),
                    json!({"env": if i % 2 == 0 { "prod" } else { "dev" }}),
                )
                .await,
        );
    }
    let sp = emu.create_service_principal("legacy-sp");
    let sp_cluster = admin.sp_cluster(&sub, "rg", "akssp", &sp.app_id).await;
    let legacy = admin
        .registry(
            &sub,
            "rg",
            "acrlegacy",
            json!({"acr-autoattach": "env=prod"}),
            false,
        )
        .await;
    let abac = admin
        .registry(&sub, "rg", "acrabac", json!({"acr-autoattach": "*"}), true)
        .await;
    let client = handler_client(&emu);
    wait_provisioned(&client, &ids).await;

    let azure = client.with_deadline(soon(20));
    let before = client.stats().operation(Operation::ListClusters);
    let clusters = azure.list_clusters(&sub).await.unwrap();
    assert_eq!(clusters.len(), 5);
    // 5 clusters, 2 per page: 3 pages, each one request.
    assert_eq!(
        client.stats().operation(Operation::ListClusters) - before,
        3
    );
    for c in &clusters {
        match &c.principal {
            ClusterPrincipal::Kubelet { object_id, .. } => {
                let p = emu
                    .principal(object_id)
                    .expect("kubelet identity is a directory principal");
                assert!(
                    p.managed_identity_resource_id.is_some(),
                    "never the control-plane identity"
                );
            }
            ClusterPrincipal::ServicePrincipal { client_id } => assert_eq!(client_id, &sp.app_id),
            ClusterPrincipal::NotYetKnown => panic!("provisioned clusters have a principal: {c:?}"),
        }
    }
    let aks0 = azure
        .get_cluster(&ResourceId::parse(&ids[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(aks0.tags.get("env"), Some("prod"));
    assert_eq!(aks0.location, "eastus");
    let sp_read = azure
        .get_cluster(&ResourceId::parse(&sp_cluster).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sp_read.principal,
        ClusterPrincipal::ServicePrincipal {
            client_id: sp.app_id.clone()
        }
    );
    let missing = ResourceId::parse(&format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/nope")).unwrap();
    assert_eq!(azure.get_cluster(&missing).await.unwrap(), None);
    let missing_rg = ResourceId::parse(&format!("/subscriptions/{sub}/resourceGroups/norg/providers/Microsoft.ContainerService/managedClusters/nope")).unwrap();
    assert_eq!(azure.get_cluster(&missing_rg).await.unwrap(), None);

    let registries = azure.list_registries(&sub).await.unwrap();
    assert_eq!(registries.len(), 2);
    let abac_read = azure
        .get_registry(&ResourceId::parse(&abac).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        abac_read.mode,
        RoleAssignmentMode::AbacRepositoryPermissions
    );
    assert_eq!(abac_read.tags.get("ACR-AUTOATTACH"), Some("*"));
    let legacy_read = azure
        .get_registry(&ResourceId::parse(&legacy).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        legacy_read.mode,
        RoleAssignmentMode::LegacyRegistryPermissions
    );

    // Microsoft Graph: the SP cluster's client id resolves to the object id to grant.
    assert_eq!(
        azure.resolve_service_principal(&sp.app_id).await.unwrap(),
        Some(sp.object_id.clone())
    );
    assert_eq!(
        azure
            .resolve_service_principal("00000000-0000-0000-0000-00000000dead")
            .await
            .unwrap(),
        None
    );

    let subs = azure.list_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 2);
    assert!(
        subs.iter()
            .all(|s| s.tenant_id.as_deref() == Some(emu.default_tenant().as_str()))
    );

    // The client's accounting matches the emulator's, request for request.
    assert_eq!(
        client.stats().total(),
        emu.stats().for_caller(&emu.handler_principal_id()).total()
    );
}

#[tokio::test]
async fn role_assignments_are_created_listed_and_deleted() {
    let emu = start(EmulatorConfig::for_tests()).await;
    emu.update_settings(|s| s.role_assignment_page_size = 1);
    let sub = emu.subscriptions()[0].clone();
    let admin = Admin::new(&emu);
    admin.resource_group(&sub, "rg").await;
    let cluster = admin.cluster(&sub, "rg", "aks1", json!({})).await;
    let registry = admin
        .registry(&sub, "rg", "acrone", json!({"acr-autoattach": "*"}), false)
        .await;
    let client = handler_client(&emu);
    wait_provisioned(&client, std::slice::from_ref(&cluster)).await;
    let azure = client.with_deadline(soon(30));
    let cluster_id = ResourceId::parse(&cluster).unwrap();
    let registry_id = ResourceId::parse(&registry).unwrap();
    let ClusterPrincipal::Kubelet { object_id, .. } = azure
        .get_cluster(&cluster_id)
        .await
        .unwrap()
        .unwrap()
        .principal
    else {
        panic!("kubelet identity expected")
    };

    let new = AssignmentSpec::new(&registry_id, &object_id, PullRole::AcrPull, &cluster_id);
    let PutOutcome::Created(created) = azure.put_role_assignment(&new).await.unwrap() else {
        panic!("201 expected")
    };
    assert_eq!(created.name, new.name.to_string());
    assert_eq!(created.role_definition_guid, ACR_PULL_GUID);
    assert_eq!(created.principal_type.as_deref(), Some("ServicePrincipal"));
    assert!(created.is_owned());
    assert_eq!(created.owner_cluster(), Some(cluster_id.clone()));
    assert!(registry_id.is_within(&created.scope));
    // Same name again: 200, unchanged.
    assert!(matches!(
        azure.put_role_assignment(&new).await.unwrap(),
        PutOutcome::Unchanged(_)
    ));
    // Another name for the same principal, role and scope is refused at the edge before any request (the
    // deterministic name is part of "provably ours"); the emulator's 409 for it is tested in its own suite.
    let other_name = AssignmentSpec {
        name: uuid::Uuid::new_v4(),
        ..new.clone()
    };
    let before = azure.requests_sent();
    assert!(matches!(
        azure.put_role_assignment(&other_name).await,
        Err(AzureError::InvalidRequest(_))
    ));
    assert_eq!(azure.requests_sent(), before);
    // The hard allow-list: any other role is refused before a request is sent.
    let sent = azure.requests_sent();
    let owner = AssignmentSpec {
        role_definition_id: format!(
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{OWNER_GUID}"
        ),
        ..new.clone()
    };
    assert!(matches!(
        azure.put_role_assignment(&owner).await,
        Err(AzureError::InvalidRequest(_))
    ));
    assert_eq!(azure.requests_sent(), sent);

    // A human-made AcrPull at the resource group shows up at the registry (atScope = at or above).
    let human = emu.create_user("alice");
    emu.grant(
        &human.object_id,
        ACR_PULL_GUID,
        &format!("/subscriptions/{sub}/resourceGroups/rg"),
    );
    let before = client.stats().operation(Operation::ListRoleAssignments);
    let at_registry = azure
        .list_role_assignments(registry_id.as_str(), &AssignmentFilter::AtScope)
        .await
        .unwrap();
    let pages = client.stats().operation(Operation::ListRoleAssignments) - before;
    assert!(
        at_registry
            .iter()
            .any(|a| a.id.eq_ignore_ascii_case(&created.id))
    );
    assert!(
        at_registry
            .iter()
            .any(|a| a.principal_id == human.object_id && !a.is_owned())
    );
    assert!(
        pages >= at_registry.len() as u64,
        "page size 1: one request per assignment ({pages})"
    );
    let mine = azure
        .list_role_assignments(
            &format!("/subscriptions/{sub}"),
            &AssignmentFilter::Principal(object_id.clone()),
        )
        .await
        .unwrap();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let everything = azure
        .list_role_assignments(&format!("/subscriptions/{sub}"), &AssignmentFilter::All)
        .await
        .unwrap();
    assert!(everything.len() >= 3);

    assert_eq!(
        azure.delete_role_assignment(&created.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    // Gone already: 204. (Asked as the admin: the handler's conditioned RBAC Administrator role cannot be
    // evaluated on an assignment that no longer exists, and the emulator answers it 403.)
    let as_admin = AzureClient::new(options_for(&emu, &emu.admin_principal_id()))
        .unwrap()
        .with_deadline(soon(10));
    assert_eq!(
        as_admin.delete_role_assignment(&created.id).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert!(matches!(
        azure.delete_role_assignment(&registry).await,
        Err(AzureError::InvalidRequest(_))
    ));
    let after = azure
        .list_role_assignments(registry_id.as_str(), &AssignmentFilter::AtScope)
        .await
        .unwrap();
    assert!(!after.iter().any(|a| a.id.eq_ignore_ascii_case(&created.id)));

    // A custom role is read as a definition with its actions.
    let custom = emu.create_custom_role(
        "puller",
        &["Microsoft.ContainerRegistry/registries/pull/read"],
        &[],
    );
    let def = azure
        .get_role_definition(&format!("/subscriptions/{sub}"), &custom)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(def.role_name, "puller");
    assert_eq!(
        def.actions,
        vec!["Microsoft.ContainerRegistry/registries/pull/read"]
    );
}

#[tokio::test]
async fn missing_write_permission_is_a_forbidden_error_with_code_and_message() {
    let emu = start(EmulatorConfig {
        handler_rights: HandlerRights::ReadOnly,
        ..EmulatorConfig::for_tests()
    })
    .await;
    let sub = emu.subscriptions()[0].clone();
    let admin = Admin::new(&emu);
    admin.resource_group(&sub, "rg").await;
    let registry =
        ResourceId::parse(&admin.registry(&sub, "rg", "acrone", json!({}), false).await).unwrap();
    let cluster = ResourceId::parse(&format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/x")).unwrap();
    let azure = handler_client(&emu).with_deadline(soon(10));
    let someone = emu.create_service_principal("someone");
    let err = azure
        .put_role_assignment(&AssignmentSpec::new(
            &registry,
            &someone.object_id,
            PullRole::AcrPull,
            &cluster,
        ))
        .await
        .unwrap_err();
    let AzureError::Forbidden { code, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(code, "AuthorizationFailed");
    assert!(message.contains("roleAssignments/write"), "{message}");
    assert!(!err.is_transient());
    // Not retried: exactly one request.
    assert_eq!(azure.requests_sent(), 1);
}

#[tokio::test]
async fn throttling_is_honoured_through_retry_after() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let admin = Admin::new(&emu);
    admin.resource_group(&sub, "rg").await;
    admin.registry(&sub, "rg", "acrone", json!({}), false).await;
    emu.update_faults(|f| {
        f.reads = BucketLimit {
            capacity: 2,
            refill_per_sec: 1,
        }
    });
    // No client-side limiting: the server's 429s must be met with waits, not failures.
    let mut options = options_for(&emu, &emu.handler_principal_id());
    options.rate_limits = RateLimits::disabled();
    let client = AzureClient::new(options).unwrap();
    let azure = client.with_deadline(soon(30));
    let started = Instant::now();
    for _ in 0..5 {
        assert_eq!(azure.list_registries(&sub).await.unwrap().len(), 1);
    }
    let stats = client.stats();
    let throttled = emu.stats().count_status("LIST registries", 429);
    assert!(throttled >= 1, "the burst exceeded the bucket");
    assert_eq!(stats.throttled(), throttled);
    assert_eq!(stats.by_class("2xx"), 5);
    // 5 reads from a bucket of 2 refilling 1/s cannot finish in under ~3 s when Retry-After is honoured.
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    // A Retry-After that does not fit the deadline fails at once as Throttled.
    let azure = client.with_deadline(Instant::now() + Duration::from_millis(300));
    let mut last = Ok(Vec::new());
    for _ in 0..4 {
        last = azure.list_registries(&sub).await;
        if last.is_err() {
            break;
        }
    }
    let err = last.unwrap_err();
    assert!(
        matches!(
            err,
            AzureError::Throttled {
                retry_after: Some(_)
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_rate_limiter_prevents_429s_on_a_burst() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let admin = Admin::new(&emu);
    admin.resource_group(&sub, "rg").await;
    admin.registry(&sub, "rg", "acrone", json!({}), false).await;
    emu.update_faults(|f| {
        f.reads = BucketLimit {
            capacity: 20,
            refill_per_sec: 10,
        }
    });
    let mut options = options_for(&emu, &emu.handler_principal_id());
    // A margin below the server's bucket, as the defaults are below ARM's.
    // (capacity <= server capacity - server refill: safe against the emulator's whole-second refill).
    options.rate_limits.reads = BucketSpec {
        capacity: 10.0,
        refill_per_sec: 8.0,
    };
    options.max_concurrency = 8;
    let client = AzureClient::new(options).unwrap();
    let azure = client.with_deadline(soon(30));
    let started = Instant::now();
    let results = futures::future::join_all((0..40).map(|_| azure.list_registries(&sub))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        emu.stats().count_status("LIST registries", 429),
        0,
        "no 429 at all"
    );
    assert_eq!(client.stats().throttled(), 0);
    assert!(
        client.stats().rate_limited_waits > 0,
        "the limiter made callers wait"
    );
    // 40 reads at 10 + 8/s: at least (40 - 10) / 8 = 3.75 s.
    assert!(
        started.elapsed() >= Duration::from_millis(3600),
        "{:?}",
        started.elapsed()
    );
    // A deadline the bucket cannot meet fails fast, without sending.
    let short = client.with_deadline(Instant::now() + Duration::from_millis(50));
    let burst = futures::future::join_all((0..20).map(|_| short.list_registries(&sub))).await;
    assert!(
        burst
            .iter()
            .any(|r| matches!(r, Err(AzureError::DeadlineExceeded { .. })))
    );
    assert_eq!(emu.stats().count_status("LIST registries", 429), 0);
}

/// Resource Graph's quota belongs to the identity, not the process: a fresh process whose identity already
/// spent most of the window learns what is left from its first answer (`x-ms-user-quota-remaining`) and holds
/// concurrent queries back until the reset instead of meeting 429s.
#[tokio::test]
async fn a_fresh_client_learns_resource_graphs_remaining_quota_from_its_first_answer() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let subs = emu.subscriptions();
    emu.update_faults(|f| {
        f.resource_graph_quota = 15;
        f.resource_graph_window_ms = 2_000;
    });
    let client = |window_ms: u64| {
        let mut options = options_for(&emu, &emu.handler_principal_id());
        options.rate_limits.resource_graph = WindowSpec {
            limit: 15,
            window: Duration::from_millis(window_ms),
        };
        options.retry.max_attempts = 1;
        AzureClient::new(options).unwrap()
    };
    let query = "resources | where type =~ 'microsoft.containerregistry/registries' | project id | order by id asc";
    // Another process of the identity spends 12 of the 15.
    let first = client(2_000);
    let spent = first.with_deadline(soon(20));
    for _ in 0..12 {
        spent.resource_graph(&subs, query).await.unwrap();
    }
    // A fresh process: its own window is empty, the identity's is not.
    let fresh = client(2_000);
    let azure = fresh.with_deadline(soon(20));
    let started = Instant::now();
    // Its first query learns that 2 are left; the next five go at once (an inventory's three listings do):
    // only two may go before the reset.
    azure.resource_graph(&subs, query).await.unwrap();
    let results =
        futures::future::join_all((0..5).map(|_| azure.resource_graph(&subs, query))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        emu.stats().count_status("POST resourcegraph", 429),
        0,
        "the fresh client waited for the reset instead"
    );
    assert!(
        fresh.stats().rate_limited_waits > 0,
        "the fresh client's limiter made it wait"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_errors_and_resets_are_retried_with_bounded_backoff() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let mut options = options_for(&emu, &emu.handler_principal_id());
    options.retry.base_delay = Duration::from_millis(20);
    options.retry.max_attempts = 4;
    let client = AzureClient::new(options).unwrap();
    let azure = client.with_deadline(soon(20));
    emu.update_faults(|f| f.fail_next = 2);
    assert_eq!(azure.list_clusters(&sub).await.unwrap().len(), 0);
    assert_eq!(client.stats().retries, 2);
    assert_eq!(client.stats().by_class("5xx"), 2);

    emu.update_faults(|f| f.fail_next = 10);
    let err = azure.list_clusters(&sub).await.unwrap_err();
    assert!(
        matches!(err, AzureError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(
        client.stats().by_class("5xx"),
        2 + 4,
        "exactly max_attempts tries"
    );

    emu.update_faults(|f| {
        f.fail_next = 0;
        f.reset_rate = 1.0;
    });
    let err = azure.list_clusters(&sub).await.unwrap_err();
    assert!(matches!(err, AzureError::Connect(_)), "{err:?}");
    assert_eq!(client.stats().by_class("no_response"), 4);
}

#[tokio::test]
async fn every_call_ends_before_its_deadline() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let client = handler_client(&emu);
    // Warm the token so only the slow request is measured.
    client
        .with_deadline(soon(10))
        .list_clusters(&sub)
        .await
        .unwrap();
    emu.update_faults(|f| f.latency_ms = 3_000);
    let started = Instant::now();
    let err = client
        .with_deadline(Instant::now() + Duration::from_millis(400))
        .list_clusters(&sub)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AzureError::DeadlineExceeded { .. }),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // An expired deadline sends nothing.
    let before = client.stats().total();
    let err = client
        .with_deadline(Instant::now())
        .list_clusters(&sub)
        .await
        .unwrap_err();
    assert!(matches!(err, AzureError::DeadlineExceeded { .. }));
    assert_eq!(client.stats().total(), before);
}

#[tokio::test]
async fn inventory_request_count_does_not_grow_with_pairs() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let subs = emu.subscriptions();
    let admin = Admin::new(&emu);
    let mut clusters = Vec::new();
    for sub in &subs {
        admin.resource_group(sub, "rg").await;
    }
    admin
        .registry(
            &subs[0],
            "rg",
            "acrtagged",
            json!({"acr-autoattach": "*"}),
            false,
        )
        .await;
    admin
        .registry(
            &subs[1],
            "rg",
            "acrabac",
            json!({"acr-autoattach": "env=prod"}),
            true,
        )
        .await;
    admin
        .registry(&subs[1], "rg", "acruntagged", json!({"team": "x"}), false)
        .await;
    let custom = emu.create_custom_role(
        "puller",
        &["Microsoft.ContainerRegistry/registries/pull/read"],
        &[],
    );
    let someone = emu.create_service_principal("someone");
    emu.grant(
        &someone.object_id,
        &custom,
        &format!("/subscriptions/{}/resourceGroups/rg", subs[0]),
    );
    let client = handler_client(&emu);

    let mut counts = Vec::new();
    for round in 0..2 {
        for i in 0..6 {
            let sub = &subs[i % 2];
            clusters.push(
                admin
                    .cluster(
                        sub,
                        "rg",
                        &format!("aks{round}x{i}"),
                        json!({"env": "prod"}),
                    )
                    .await,
            );
        }
        wait_provisioned(&client, &clusters).await;
        let azure = client.with_deadline(soon(30));
        let inventory = azure.inventory(&subs, "acr-autoattach").await.unwrap();
        assert_eq!(inventory.source, InventorySource::ResourceGraph);
        assert_eq!(inventory.clusters.len(), clusters.len());
        assert_eq!(inventory.registries.len(), 2, "only tagged registries");
        assert!(inventory.clusters.iter().all(|c| c.tenant_id.is_some()));
        // The custom role at the RG above a tagged registry, and the handler's own custom reader role at
        // the subscriptions: custom roles are read once each; the built-in ones are known.
        let guids: Vec<&str> = inventory
            .role_definitions
            .iter()
            .map(|d| d.guid.as_str())
            .collect();
        assert!(guids.contains(&custom.as_str()), "{guids:?}");
        assert_eq!(guids.len(), 2, "{guids:?}");
        assert_eq!(inventory.requests, azure.requests_sent());
        counts.push(inventory.requests);
    }
    // 3 Resource Graph queries + 2 custom role definitions, for 6 and 12 clusters alike.
    assert_eq!(counts, vec![5, 5]);

    // Resource Graph unavailable (an endpoint that answers 404): the same picture from ARM lists.
    let mut options = options_for(&emu, &emu.handler_principal_id());
    options.resource_graph_endpoint =
        Some(Url::parse(&format!("{}/no-resource-graph/", emu.base_url())).unwrap());
    let fallback_client = AzureClient::new(options).unwrap();
    let azure = fallback_client.with_deadline(soon(30));
    let inventory = azure
        .inventory_with(&InventoryOptions::new(subs.clone(), "acr-autoattach"))
        .await
        .unwrap();
    assert_eq!(inventory.source, InventorySource::Arm);
    assert!(inventory.fallback_reason.is_some());
    assert_eq!(inventory.clusters.len(), 12);
    assert_eq!(inventory.registries.len(), 2);
    assert!(
        inventory
            .clusters
            .iter()
            .all(|c| c.tenant_id.as_deref() == Some(emu.default_tenant().as_str()))
    );
    assert_eq!(inventory.role_definitions.len(), 2);
    // 1 to 3 failed queries (they run concurrently), 1 subscription list, 3 lists per subscription, 2 role
    // definitions.
    assert!(
        (1 + 1 + 3 * 2 + 2..=3 + 1 + 3 * 2 + 2).contains(&inventory.requests),
        "{}",
        inventory.requests
    );
}

/// Issue 6's figure: 500 and 1,000 clusters × 10 registries in 5 subscriptions. The inventory's requests do
/// not depend on the number of pairs (only on subscriptions, pages and custom roles).
#[tokio::test]
async fn inventory_at_scale_costs_the_same_for_500_and_1000_clusters() {
    let tenant = azure_emulator::config::DEFAULT_TENANT;
    let subs: Vec<String> = (1..=5)
        .map(|i| format!("{i:08}-0000-4000-8000-00000000000{i}"))
        .collect();
    let config = EmulatorConfig {
        subscriptions: subs
            .iter()
            .map(|s| azure_emulator::SubscriptionConfig::new(s.clone(), tenant))
            .collect(),
        ..EmulatorConfig::for_tests()
    };
    let emu = start(config).await;
    // Setup is not what is measured: no throttling while the estate is built.
    emu.update_faults(|f| f.throttling = false);
    let admin = Admin::new(&emu);
    for sub in &subs {
        admin.resource_group(sub, "rg").await;
        for r in 0..2 {
            admin
                .registry(
                    sub,
                    "rg",
                    &format!("acr{}x{r}", &sub[..4]),
                    json!({"acr-autoattach": "*"}),
                    r == 1,
                )
                .await;
        }
    }
    let client = handler_client(&emu);
    let mut figures = Vec::new();
    let mut created = 0usize;
    for target in [500usize, 1000] {
        let names: Vec<(String, String)> = (created..target)
            .map(|i| (subs[i % 5].clone(), format!("aks{i}")))
            .collect();
        for chunk in names.chunks(50) {
            futures::future::join_all(
                chunk
                    .iter()
                    .map(|(sub, name)| admin.cluster(sub, "rg", name, json!({"env": "prod"}))),
            )
            .await;
        }
        created = target;
        emu.update_faults(|f| f.throttling = true);
        let rg = client
            .with_deadline(soon(60))
            .inventory(&subs, "acr-autoattach")
            .await
            .unwrap();
        assert_eq!(rg.source, InventorySource::ResourceGraph);
        assert_eq!(rg.clusters.len(), target);
        assert_eq!(rg.registries.len(), 10);

        let mut options = options_for(&emu, &emu.handler_principal_id());
        options.resource_graph_endpoint = None;
        let arm_only = AzureClient::new(options).unwrap();
        let mut arm_options = InventoryOptions::new(subs.clone(), "acr-autoattach");
        arm_options.use_resource_graph = false;
        let arm = arm_only
            .with_deadline(soon(60))
            .inventory_with(&arm_options)
            .await
            .unwrap();
        assert_eq!(arm.source, InventorySource::Arm);
        assert_eq!(arm.clusters.len(), target);
        assert_eq!(emu.stats().count_status("LIST managedClusters", 429), 0);
        println!(
            "inventory {target} clusters x 10 registries, 5 subscriptions ({} pairs): Resource Graph {} requests, ARM lists {} requests",
            target * 10,
            rg.requests,
            arm.requests
        );
        figures.push((rg.requests, arm.requests));
        emu.update_faults(|f| f.throttling = false);
    }
    assert_eq!(
        figures[0], figures[1],
        "doubling the pairs does not change the request count"
    );
    // Resource Graph: 3 queries (one page each at $top 1000 for up to 1000 rows) + the custom reader role.
    assert_eq!(figures[0].0, 3 + 1);
    // ARM: subscriptions list + 3 lists per subscription + the custom reader role.
    assert_eq!(figures[0].1, 1 + 3 * 5 + 1);
}

/// Span fields and observer calls, as telemetry consumes them.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<SpanFields>>>);

type SpanFields = Vec<(String, String)>;

struct FieldVisitor<'a>(&'a mut Vec<(String, String)>);

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S> tracing_subscriber::Layer<S> for Captured
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() != "azure.request" {
            return;
        }
        let mut fields = vec![("span.id".to_owned(), id.into_u64().to_string())];
        attrs.record(&mut FieldVisitor(&mut fields));
        self.0.lock().unwrap().push(fields);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut spans = self.0.lock().unwrap();
        let key = id.into_u64().to_string();
        if let Some(fields) = spans.iter_mut().find(|f| f[0].1 == key) {
            values.record(&mut FieldVisitor(fields));
        }
    }
}

#[derive(Default)]
struct Tally(std::sync::Mutex<Vec<(&'static str, Option<u16>, bool)>>);

impl acr_autoattach::azure::RequestObserver for Tally {
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        throttled: bool,
        _elapsed: Duration,
    ) {
        self.0.lock().unwrap().push((operation, status, throttled));
    }
}

#[tokio::test]
async fn each_request_is_a_span_with_http_semantics_and_an_observer_call() {
    // tracing caches per-callsite interest process-wide; with other tests hitting the same callsites on
    // other threads, a thread-scoped subscriber may miss spans. Run alone in a child process.
    if std::env::var(CHILD_FLAG).is_err() {
        let output = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "each_request_is_a_span_with_http_semantics_and_an_observer_call",
                "--exact",
                "--nocapture",
            ])
            .env(CHILD_FLAG, "1")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let tally = Arc::new(Tally::default());
    let mut options = options_for(&emu, &emu.handler_principal_id());
    options.observer = Some(tally.clone());
    options.retry.base_delay = Duration::from_millis(10);
    let client = AzureClient::new(options).unwrap();
    emu.update_faults(|f| f.fail_next = 1);
    let azure = client.with_deadline(soon(10));
    azure
        .list_role_assignments(&format!("/subscriptions/{sub}"), &AssignmentFilter::AtScope)
        .await
        .unwrap();

    let calls = tally.0.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            ("list_role_assignments", Some(503), false),
            ("list_role_assignments", Some(200), false)
        ]
    );
    let spans = captured.0.lock().unwrap().clone();
    assert_eq!(spans.len(), 2, "one span per HTTP request: {spans:?}");
    let field = |span: &Vec<(String, String)>, name: &str| {
        span.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let port = Url::parse(&emu.base_url())
        .unwrap()
        .port()
        .unwrap()
        .to_string();
    for (i, span) in spans.iter().enumerate() {
        assert_eq!(field(span, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(field(span, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(field(span, "server.port"), Some(port.clone()));
        assert_eq!(
            field(span, "azure.operation").as_deref(),
            Some("list_role_assignments")
        );
        assert_eq!(
            field(span, "http.request.resend_count"),
            Some(i.to_string())
        );
        // url.full: every query value but api-version redacted (the filter could name a principal).
        let full = field(span, "url.full").unwrap();
        assert!(
            full.starts_with(&format!(
                "{}/subscriptions/{sub}/providers/Microsoft.Authorization/roleAssignments?api-version=",
                emu.base_url().trim_end_matches('/')
            )),
            "{full}"
        );
        assert!(full.contains("filter=REDACTED"), "{full}");
        assert!(!full.contains("atScope"), "{full}");
        assert!(!span.iter().any(|(_, v)| v.contains("Bearer")));
    }
    assert_eq!(
        field(&spans[0], "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(field(&spans[0], "error.type").as_deref(), Some("503"));
    assert_eq!(
        field(&spans[1], "http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_then_401_is_final() {
    let emu = start(EmulatorConfig::for_tests()).await;
    let sub = emu.subscriptions()[0].clone();
    let client = AzureClient::new(options_with_invalid_tokens(
        &emu,
        &emu.handler_principal_id(),
        1,
    ))
    .unwrap();
    client
        .with_deadline(soon(10))
        .list_clusters(&sub)
        .await
        .unwrap();
    let stats = client.stats();
    assert_eq!(
        (stats.by_class("4xx"), stats.by_class("2xx"), stats.retries),
        (1, 1, 1)
    );

    let client = AzureClient::new(options_with_invalid_tokens(
        &emu,
        &emu.handler_principal_id(),
        5,
    ))
    .unwrap();
    let err = client
        .with_deadline(soon(10))
        .list_clusters(&sub)
        .await
        .unwrap_err();
    let AzureError::Unauthorized { code, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(code.as_deref(), Some("InvalidAuthenticationToken"));
    assert!(!err.is_transient());
    assert!(
        !err.to_string().contains("not.a.token"),
        "no token in errors"
    );
    assert_eq!(
        client.stats().total(),
        2,
        "one retry with a fresh token, no more"
    );
}
