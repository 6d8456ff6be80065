//! Issue 10 ("trust nothing, widen nothing") end to end: forged, stale and odd inputs through the Functions host
//! simulator and the real handler binary against the ARM emulator; every verdict read back from ARM as a person
//! would, and from the emulator's own request counters. docs/security.md maps each rule to these tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;
#[path = "support/telemetry_receivers.rs"]
mod receivers;

use acr_autoattach::cli::testbed::Testbed;
use acr_autoattach::core::model::{ACR_PULL_GUID, REPOSITORY_READER_GUID};
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use azure_emulator::functions_host::InvocationRecord;
use estate::*;
use serde_json::{Value, json};

/// Requests the handler's identity made with `operation` (emulator label), any status.
fn handler_count(bed: &Testbed, operation: &str) -> u64 {
    let handler = bed.emulator.control().handler_principal_id();
    bed.stats().for_caller(&handler).count(operation)
}

fn handler_total(bed: &Testbed) -> u64 {
    let handler = bed.emulator.control().handler_principal_id();
    bed.stats().for_caller(&handler).total()
}

/// Stops Event Grid deliveries to the handler: from here on only what a test sends (or the timer) acts.
async fn events_off(bed: &Testbed) {
    settle(bed).await;
    assert!(bed.publisher.unsubscribe("acr-autoattach"));
}

async fn send(bed: &Testbed, event: Value) -> InvocationRecord {
    bed.host
        .invoke_event("OnResourceEvent", json!([event]))
        .await
        .unwrap()
}

/// A Resource Notifications `CreatedOrUpdated` event (CloudEvents) carrying `resource_info` as its body.
fn notification(id: &str, resource_info: Value) -> Value {
    let mut info = resource_info;
    info["id"] = json!(id);
    json!({
        "specversion": "1.0", "id": format!("forged-{}", uuid::Uuid::new_v4()), "source": "/subscriptions/x",
        "type": "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated", "time": "2026-11-30T06:00:00Z",
        "subject": id, "data": {"resourceInfo": info, "apiVersion": "2026-02-01"}
    })
}

/// An Event Grid schema `ResourceWriteSuccess` for `operation` on `uri`.
fn write_event(subscription: &str, operation: &str, uri: &str) -> Value {
    json!({
        "id": format!("eg-{}", uuid::Uuid::new_v4()), "topic": format!("/subscriptions/{subscription}"), "subject": uri,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-11-30T06:00:00Z",
        "dataVersion": "2", "metadataVersion": "1",
        "data": {"operationName": operation, "resourceUri": uri, "subscriptionId": subscription, "status": "Succeeded"}
    })
}

fn logs_contain(inv: &InvocationRecord, needle: &str) -> bool {
    inv.logs.iter().any(|l| l.contains(needle))
}

// ---------------------------------------------------------------------------------------------------------------
// Rule 1: events are hints, for every schema

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_resource_notification_body_grants_nothing() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let tagged = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrtagged").tag("acr-autoattach", "*"),
    )
    .await;
    let plain = registry(&bed, RegistrySpec::new(&s1, "rg", "acrplain")).await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    events_off(&bed).await;
    assert_attached(&bed, &tagged, &kubelet, ACR_PULL_GUID).await;
    let mallory = bed.emulator.control().create_user("mallory");
    bed.emulator.control().reset_stats();

    // The cluster's body claims a kubelet identity that is a user's object id.
    let forged_cluster = notification(
        &aks,
        json!({"name": "aks1", "type": "Microsoft.ContainerService/managedClusters", "location": "westeurope",
               "identity": {"type": "SystemAssigned"}, "tags": {},
               "properties": {"provisioningState": "Succeeded",
                   "identityProfile": {"kubeletidentity": {"objectId": mallory.object_id, "clientId": mallory.object_id}}}}),
    );
    let inv = send(&bed, forged_cluster).await;
    assert!(inv.succeeded(), "{inv:?}");
    // The registry's body claims the opt-in tag that ARM does not have.
    let forged_registry = notification(
        &plain,
        json!({"name": "acrplain", "type": "Microsoft.ContainerRegistry/registries", "location": "westeurope",
               "tags": {"acr-autoattach": "*"}, "properties": {"roleAssignmentMode": "LegacyRegistryPermissions"}}),
    );
    let inv = send(&bed, forged_registry).await;
    assert!(inv.succeeded(), "{inv:?}");
    assert!(
        logs_contain(&inv, "not opted in"),
        "the registry was read from ARM: {:#?}",
        inv.logs
    );

    assert!(pulls(&bed, &tagged, &mallory.object_id).await.is_empty());
    assert!(pulls(&bed, &plain, &kubelet).await.is_empty());
    assert_attached(&bed, &tagged, &kubelet, ACR_PULL_GUID).await;
    assert_eq!(handler_count(&bed, "PUT roleAssignments"), 0);
    // The cluster and the registry were read from ARM.
    assert!(handler_count(&bed, "GET managedClusters") >= 1);
    assert!(handler_count(&bed, "GET registries") >= 1);
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_ids_outside_the_exact_arm_shape_are_ignored_at_no_cost() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrtagged").tag("acr-autoattach", "*"),
    )
    .await;
    cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    events_off(&bed).await;
    bed.emulator.control().reset_stats();
    let base = format!("/subscriptions/{s1}/resourceGroups/rg/providers");
    let odd = [
        // a nested provider under a storage account
        format!(
            "{base}/Microsoft.Storage/storageAccounts/st/providers/Microsoft.ContainerRegistry/registries/acrtagged"
        ),
        // a subscription-level path
        format!("/subscriptions/{s1}/providers/Microsoft.ContainerRegistry/registries/acrtagged"),
        // a registry under the resource group scope of another provider
        format!(
            "{base}/Microsoft.ContainerRegistry/registries/acrtagged/providers/Microsoft.ContainerRegistry/registries/x"
        ),
    ];
    for uri in &odd {
        for event in [
            write_event(&s1, "Microsoft.ContainerRegistry/registries/write", uri),
            write_event(&s1, "Microsoft.Resources/tags/write", uri),
            notification(
                uri,
                json!({"type": "Microsoft.ContainerRegistry/registries", "tags": {"acr-autoattach": "*"}}),
            ),
        ] {
            let inv = send(&bed, event).await;
            assert!(inv.succeeded(), "{inv:?}");
            assert!(
                logs_contain(&inv, "invalid_resource_id") && logs_contain(&inv, "→ ignored"),
                "{uri}: {:#?}",
                inv.logs
            );
        }
    }
    assert_eq!(handler_total(&bed), 0, "odd ids cost Azure requests");
    bed.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Rule 2: never rewrite an assignment

async fn run_timer(bed: &Testbed) -> InvocationRecord {
    let inv = bed.run_timer().await.expect("timer runs");
    if !inv.succeeded() {
        dump(bed);
    }
    inv
}

/// The log line of the pair's result (`{status} cluster=… registry=…`).
fn pair_line<'a>(inv: &'a InvocationRecord, cluster: &str, registry: &str) -> &'a str {
    let (c, r) = (
        format!("cluster={cluster} "),
        format!("registry={registry} "),
    );
    inv.logs
        .iter()
        .find(|l| l.contains(&c) && l.contains(&r))
        .unwrap_or_else(|| panic!("no result for {cluster} → {registry} in {:#?}", inv.logs))
}

/// PUTs a role assignment with a condition as a person would (ABAC condition version 2.0).
async fn put_conditioned(
    bed: &Testbed,
    assignment_id: &str,
    role_guid: &str,
    principal_id: &str,
    description: Option<&str>,
) {
    let subscription = assignment_id.split('/').nth(2).unwrap();
    let mut properties = json!({
        "roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
        "principalId": principal_id,
        "principalType": "ServicePrincipal",
        "condition": "((!(ActionMatches{'Microsoft.ContainerRegistry/registries/repositories/content/read'})) OR (@Resource[Microsoft.ContainerRegistry/registries/repositories:name] StringStartsWithIgnoreCase 'team-a/'))",
        "conditionVersion": "2.0",
    });
    if let Some(d) = description {
        properties["description"] = json!(d);
    }
    bed.admin
        .call(
            reqwest::Method::PUT,
            &format!("{assignment_id}?api-version=2022-04-01"),
            Some(&json!({ "properties": properties })),
        )
        .await
        .unwrap();
}

fn condition_of(assignments: &[Value], id: &str) -> Option<String> {
    assignments
        .iter()
        .find(|a| a["id"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        .and_then(|a| a["properties"]["condition"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_added_to_our_own_assignment_is_never_rewritten() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrabac")
            .tag("acr-autoattach", "*")
            .abac(),
    )
    .await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    events_off(&bed).await;
    assert_attached(&bed, &acr, &kubelet, REPOSITORY_READER_GUID).await;
    let ours = assignments_at(&bed, &acr).await;
    let ours = ours
        .iter()
        .find(|a| principal(a) == kubelet.to_ascii_lowercase())
        .unwrap();
    let id = ours["id"].as_str().unwrap().to_owned();
    let description = ours["properties"]["description"]
        .as_str()
        .map(str::to_owned);
    // A person narrows the tool's own Repository Reader assignment to some repositories.
    put_conditioned(
        &bed,
        &id,
        REPOSITORY_READER_GUID,
        &kubelet,
        description.as_deref(),
    )
    .await;
    bed.emulator.control().reset_stats();

    let inv = run_timer(&bed).await;
    assert!(inv.succeeded(), "{inv:?}");
    let line = pair_line(&inv, &aks, &acr);
    assert!(
        line.starts_with("compliant ")
            && line.contains("restricted by a condition")
            && line.contains(&format!(
                "az role assignment list --assignee {kubelet} --scope {acr}"
            )),
        "{line}"
    );
    assert_eq!(handler_count(&bed, "PUT roleAssignments"), 0, "re-PUT");
    let now = assignments_at(&bed, &acr).await;
    assert_eq!(now.len(), 1, "{now:#?}");
    assert!(
        condition_of(&now, &id).is_some_and(|c| c.contains("team-a/")),
        "the person's condition is gone: {now:#?}"
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_inventory_never_rewrites_an_assignment_made_since() {
    use acr_autoattach::core::model::{
        PullRole, ResourceId, assignment_name, ownership_description,
    };
    let mut opts = options();
    // Resource Graph shows the estate as it was 3 s ago (Azure: usually within ~30 s, no upper bound).
    opts.emulator.settings.resource_graph_lag_ms = 3_000;
    let bed = start(opts).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    events_off(&bed).await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrabac")
            .tag("acr-autoattach", "*")
            .abac(),
    )
    .await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    // Just now, under the very name the tool would use, an assignment narrowed by a condition appears (made by
    // the tool's last event and narrowed by a person at once): Resource Graph does not show it yet.
    let registry_id = ResourceId::parse(&acr).unwrap();
    let cluster_id = ResourceId::parse(&aks).unwrap();
    let name = assignment_name(&registry_id, &kubelet, PullRole::RepositoryReader);
    let id = format!("{acr}/providers/Microsoft.Authorization/roleAssignments/{name}");
    put_conditioned(
        &bed,
        &id,
        REPOSITORY_READER_GUID,
        &kubelet,
        Some(&ownership_description(&cluster_id)),
    )
    .await;
    bed.emulator.control().reset_stats();
    let inv = run_timer(&bed).await;
    assert!(inv.succeeded(), "{inv:?}");
    assert_eq!(
        handler_count(&bed, "PUT roleAssignments"),
        0,
        "{:#?}",
        inv.logs
    );
    let line = pair_line(&inv, &aks, &acr);
    assert!(
        line.starts_with("compliant ") && line.contains("never rewritten"),
        "{line}"
    );
    let now = assignments_at(&bed, &acr).await;
    assert!(
        condition_of(&now, &id).is_some_and(|c| c.contains("team-a/")),
        "the condition is gone: {now:#?}"
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditioned_grant_by_a_person_is_left_and_nothing_broader_is_added() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(&bed, RegistrySpec::new(&s1, "rg", "acrabac").abac()).await;
    let (aks, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    settle(&bed).await;
    let id = format!(
        "{acr}/providers/Microsoft.Authorization/roleAssignments/{}",
        uuid::Uuid::new_v4()
    );
    put_conditioned(
        &bed,
        &id,
        REPOSITORY_READER_GUID,
        &kubelet,
        Some("alice: team-a only"),
    )
    .await;
    bed.emulator.control().reset_stats();
    // The registry opts in: its event selects the cluster.
    bed.admin
        .set_tags(&acr, &[("acr-autoattach", "*")])
        .await
        .unwrap();
    settle(&bed).await;
    assert_eq!(handler_count(&bed, "PUT roleAssignments"), 0);
    let now = assignments_at(&bed, &acr).await;
    assert_eq!(now.len(), 1, "a broader assignment was added: {now:#?}");
    let line = bed
        .host
        .invocations()
        .iter()
        .flat_map(|i| i.logs.clone())
        .find(|l| l.contains(&format!("cluster={aks} ")) && l.contains(&format!("registry={acr} ")))
        .unwrap_or_default();
    assert!(
        line.starts_with("compliant ") && line.contains("restricted by a condition"),
        "{line}"
    );
    bed.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Rule 3: detach removes only what is provably ours

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detach_leaves_marked_look_alikes_at_other_scopes_names_and_marks() {
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrtagged").tag("acr-autoattach", "*"),
    )
    .await;
    let other = registry(&bed, RegistrySpec::new(&s1, "rg", "acrother")).await;
    let third = registry(&bed, RegistrySpec::new(&s1, "rg", "acrthird")).await;
    let (gone, kubelet) = cluster(&bed, ClusterSpec::new(&s1, "rg", "aks-gone")).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet, ACR_PULL_GUID).await;
    let mark = format!("managed-by: acr-autoattach cluster={gone}");
    let group = format!("/subscriptions/{s1}/resourceGroups/rg");
    let subscription = format!("/subscriptions/{s1}");
    // Look-alikes made by people: the exact mark at a resource group and at the subscription (the tool never
    // writes there), a malformed mark at a registry, the exact mark under a random name at a registry.
    for (scope, description) in [
        (group.as_str(), mark.clone()),
        (subscription.as_str(), mark.clone()),
        (
            other.as_str(),
            format!("managed-by: acr-autoattachcluster={gone}"),
        ),
        (third.as_str(), mark.clone()),
    ] {
        bed.admin
            .put_role_assignment(scope, ACR_PULL_GUID, &kubelet, Some(&description))
            .await
            .unwrap();
    }
    let count = |all: &[Value]| {
        all.iter()
            .filter(|a| principal(a) == kubelet.to_ascii_lowercase())
            .count()
    };
    let before = count(
        &bed.admin
            .list_role_assignments(&subscription)
            .await
            .unwrap(),
    );
    assert_eq!(before, 5);

    // The event path: the cluster is deleted.
    bed.admin.delete_cluster(&gone).await.unwrap();
    settle(&bed).await;
    assert!(pulls(&bed, &acr, &kubelet).await.is_empty(), "ours went");
    let after = bed
        .admin
        .list_role_assignments(&subscription)
        .await
        .unwrap();
    assert_eq!(count(&after), 4, "{after:#?}");
    // And the timer agrees.
    bed.publisher.unsubscribe("acr-autoattach");
    let inv = run_timer(&bed).await;
    assert!(inv.succeeded(), "{inv:?}");
    let after = bed
        .admin
        .list_role_assignments(&subscription)
        .await
        .unwrap();
    assert_eq!(count(&after), 4, "{after:#?}");
    assert_eq!(handler_count(&bed, "DELETE roleAssignments"), 1);
    bed.shutdown().await;
}

/// A cluster with a bring-your-own (user-assigned) kubelet identity, created through ARM and provisioned.
async fn byo_cluster(bed: &Testbed, s: &str, group: &str, name: &str, kubelet_rid: &str) -> String {
    let id = ClusterSpec::new(s, group, name).id();
    let control = format!(
        "/subscriptions/{s}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-cp"
    );
    let body = json!({
        "location": "westeurope", "tags": {},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {control: {}}},
        "properties": {
            "dnsPrefix": name,
            "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_DS2_v2", "mode": "System", "osType": "Linux"}],
            "identityProfile": {"kubeletidentity": {"resourceId": kubelet_rid}},
        }
    });
    bed.admin
        .call(
            reqwest::Method::PUT,
            &format!("{id}?api-version=2026-02-01"),
            Some(&body),
        )
        .await
        .unwrap();
    bed.admin
        .wait_cluster_succeeded(&id, std::time::Duration::from_secs(20))
        .await
        .unwrap();
    id
}

async fn wait_gone(bed: &Testbed, id: &str) {
    for _ in 0..200 {
        if bed.admin.get_cluster(id).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{id} not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_kubelet_identity_keeps_its_assignment_while_a_selected_cluster_uses_it() {
    let bed = start(options().setting("AUTOATTACH_DETACH", "true")).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "rg").await;
    let acr = registry(
        &bed,
        RegistrySpec::new(&s1, "rg", "acrshared").tag("acr-autoattach", "*"),
    )
    .await;
    let kubelet =
        bed.emulator
            .control()
            .create_user_assigned_identity(&s1, "rg", "blue-green-kubelet");
    let rid = format!(
        "/subscriptions/{s1}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/blue-green-kubelet"
    );
    let blue = byo_cluster(&bed, &s1, "rg", "aks-blue", &rid).await;
    let green = byo_cluster(&bed, &s1, "rg", "aks-green", &rid).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet.object_id, ACR_PULL_GUID).await;
    let ours = assignments_at(&bed, &acr).await;
    let named = ours[0]["properties"]["description"]
        .as_str()
        .unwrap()
        .to_owned();
    let (first, second) = if named.ends_with(&blue) {
        (blue, green)
    } else {
        (green, blue)
    };

    // The cluster the description names goes; the other still uses the identity: the event keeps it.
    bed.admin.delete_cluster(&first).await.unwrap();
    wait_gone(&bed, &first).await;
    settle(&bed).await;
    assert_attached(&bed, &acr, &kubelet.object_id, ACR_PULL_GUID).await;
    // So does the timer.
    bed.publisher.unsubscribe("acr-autoattach");
    let inv = run_timer(&bed).await;
    assert!(inv.succeeded(), "{inv:?}");
    assert_attached(&bed, &acr, &kubelet.object_id, ACR_PULL_GUID).await;
    assert!(pair_line(&inv, &second, &acr).starts_with("compliant "));
    assert_eq!(handler_count(&bed, "DELETE roleAssignments"), 0);

    // When no selected cluster uses it any more, it goes.
    bed.admin.delete_cluster(&second).await.unwrap();
    wait_gone(&bed, &second).await;
    let inv = run_timer(&bed).await;
    assert!(inv.succeeded(), "{inv:?}");
    assert!(pulls(&bed, &acr, &kubelet.object_id).await.is_empty());
    bed.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------------------
// Rule 7: never green while blind

/// An estate with one attached pair (so a blind run that says "0 × 0, all compliant" is plainly wrong).
async fn attached_estate(bed: &Testbed) -> (String, String) {
    let s1 = sub(bed, 0);
    rg(bed, &s1, "rg").await;
    let acr = registry(
        bed,
        RegistrySpec::new(&s1, "rg", "acrseen").tag("acr-autoattach", "*"),
    )
    .await;
    let (aks, kubelet) = cluster(bed, ClusterSpec::new(&s1, "rg", "aks1")).await;
    events_off(bed).await;
    assert_attached(bed, &acr, &kubelet, ACR_PULL_GUID).await;
    (aks, acr)
}

/// Deletes every role assignment the handler identity holds (at, above or below each subscription), as a
/// person would: its read role and its write role (Role Based Access Control Administrator, whose `*/read`
/// also lets it read).
async fn revoke_all(bed: &Testbed) {
    let handler = bed.emulator.control().handler_principal_id();
    for s in bed.emulator.control().subscriptions() {
        for a in bed
            .admin
            .list_role_assignments(&format!("/subscriptions/{s}"))
            .await
            .unwrap()
        {
            if principal(&a) == handler.to_ascii_lowercase() {
                bed.admin
                    .delete_role_assignment(a["id"].as_str().unwrap())
                    .await
                    .unwrap();
            }
        }
    }
}

struct Cli {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The operator CLI with the emulator's exports as its whole environment.
async fn cli(bed: &Testbed, env: &[(&str, &str)], args: &[&str]) -> Cli {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .envs(bed.emulator.env())
        .env("AUTOATTACH_TOKEN_NO_RETRY", "true");
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_mins(1),
        command.args(args).kill_on_drop(true).output(),
    )
    .await
    .unwrap()
    .unwrap();
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const READER: &str = azure_emulator::rbac::HANDLER_READER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timer_fails_and_alerts_when_the_handler_lost_its_read_rights() {
    let am = receivers::FakeAlertmanager::start();
    let bed = start(
        options()
            .setting("AUTOATTACH_ALERT_WEBHOOK", &am.url())
            .setting("AUTOATTACH_ALERT_FORMAT", "alertmanager"),
    )
    .await;
    attached_estate(&bed).await;
    revoke_all(&bed).await;
    let inv = run_timer(&bed).await;
    // A failed invocation for the host (500; the host discards the answer's Logs, as the real one does) ...
    assert!(!inv.succeeded(), "a blind run answered success: {inv:#?}");
    assert_eq!(inv.http_status, Some(500), "{inv:#?}");
    // ... whose reason names the missing permission in the handler's log ...
    let output: Vec<String> = bed
        .host
        .handler_output()
        .into_iter()
        .map(|l| l.line)
        .collect();
    assert!(
        output
            .iter()
            .any(|l| l.contains("no subscription is visible")
                && l.contains("Microsoft.ContainerService/managedClusters/read")),
        "{output:#?}"
    );
    // ... and a critical alert.
    let blind: Vec<Value> = am
        .all()
        .into_iter()
        .filter(|a| a["labels"]["status"] == "blind")
        .collect();
    assert_eq!(blind.len(), 1, "{:#?}", am.all());
    assert!(
        blind[0]["annotations"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Microsoft.Resources/subscriptions/read")),
        "{blind:#?}"
    );
    bed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_and_reconcile_exit_2_when_blind() {
    let bed = start(options()).await;
    attached_estate(&bed).await;
    let s1 = sub(&bed, 0);
    let unknown = "0badc0de-0000-4000-8000-000000000000";

    // A configured subscription the identity cannot see (not in its subscription list).
    for args in [&["verify"][..], &["reconcile"][..]] {
        let run = cli(
            &bed,
            &[("AUTOATTACH_SUBSCRIPTIONS", &format!("{s1},{unknown}"))],
            args,
        )
        .await;
        assert_eq!(run.code, 2, "{args:?}\n{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr
                .contains(&format!("subscription {unknown} is not visible"))
                && run
                    .stderr
                    .contains("Microsoft.Resources/subscriptions/read"),
            "{}",
            run.stderr
        );
    }
    // The identity keeps sight of the subscription and of role assignments, but not of clusters and
    // registries: Resource Graph and ARM lists would silently leave them out.
    revoke_all(&bed).await;
    let handler = bed.emulator.control().handler_principal_id();
    let auditor = bed.emulator.control().create_custom_role(
        "assignments auditor",
        &[
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleDefinitions/read",
        ],
        &[],
    );
    bed.emulator
        .control()
        .grant(&handler, &auditor, &format!("/subscriptions/{s1}"));
    for args in [&["verify"][..], &["reconcile", "--dry-run"][..]] {
        let run = cli(&bed, &[], args).await;
        assert_eq!(run.code, 2, "{args:?}\n{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("lacks Microsoft.ContainerService/managedClusters/read, Microsoft.ContainerRegistry/registries/read")
                && run.stderr.contains(&s1),
            "{}",
            run.stderr
        );
    }
    // A 403 on a list the inventory needs: only a resource group's read is left, so the subscription's role
    // assignments cannot be listed.
    revoke_all(&bed).await;
    bed.emulator.control().grant(
        &handler,
        READER,
        &format!("/subscriptions/{s1}/resourceGroups/rg"),
    );
    let run = cli(&bed, &[], &["verify"]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("lacks Microsoft.Authorization/roleAssignments/read"),
        "{}",
        run.stderr
    );
    // No subscription at all in scope.
    revoke_all(&bed).await;
    let run = cli(&bed, &[], &["verify"]).await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("no subscription is visible"),
        "{}",
        run.stderr
    );
    bed.shutdown().await;
}
