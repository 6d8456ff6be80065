//! The Azure client's Microsoft Graph calls of group mode against the emulator (docs/grant-modes.md): the tool's
//! group created once and found again by mark and owner (never a look-alike), members added and removed
//! idempotently and listed across pages, `transitiveMemberOf` through a nested group, and Graph's 403 naming the
//! missing permission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/credential.rs"]
mod credential;

use std::sync::Arc;
use std::time::Duration;

use acr_autoattach::azure::{
    AzureClient, AzureError, ClientOptions, GroupOutcome, MemberChange, Operation, RetryPolicy,
};
use acr_autoattach::core::groups::GroupSpec;
use acr_autoattach::core::model::{PullRole, ResourceId};
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use credential::EmulatorCredential;
use serde_json::{Value, json};
use tokio::time::Instant;
use url::Url;

/// What group mode asks a directory administrator to consent (docs/grant-modes.md §5, and `GroupMember.Read.All`
/// to find the group by its nickname).
const GROUP_MODE_ROLES: [&str; 3] = [
    "Group.Create",
    "GroupMember.Read.All",
    "Application.Read.All",
];

fn client_for(emu: &RunningEmulator, object_id: &str, page_size: u16) -> AzureClient {
    let base = Url::parse(&emu.base_url()).unwrap();
    let credential = Arc::new(EmulatorCredential::for_principal(emu.control(), object_id));
    let mut options = ClientOptions::new(base.clone(), base, credential);
    options.retry = RetryPolicy::default().with_seed(7);
    options.retry.base_delay = Duration::from_millis(10);
    options.graph_page_size = page_size;
    AzureClient::new(options).unwrap()
}

async fn start(roles: &[&str]) -> RunningEmulator {
    let config = EmulatorConfig {
        handler_graph_roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        ..EmulatorConfig::for_tests()
    };
    let emu = Emulator::start(config).await.unwrap();
    emu.update_settings(|s| s.group_membership_delay_ms = 0);
    emu
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn spec(emu: &RunningEmulator) -> GroupSpec {
    let sub = &emu.subscriptions()[0];
    GroupSpec::new(
        ResourceId::parse(&format!(
            "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1"
        ))
        .unwrap(),
        PullRole::AcrPull,
    )
}

/// Raw Graph calls as the directory administrator (who holds `Directory.ReadWrite.All`).
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
            token: emu.graph_token(&emu.admin_principal_id()).unwrap(),
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// A security group with these name, nickname, description and owners.
    async fn group(
        &self,
        name: &str,
        nickname: &str,
        description: &str,
        owners: &[&str],
    ) -> String {
        let owners: Vec<String> = owners
            .iter()
            .map(|o| format!("https://graph.microsoft.com/v1.0/servicePrincipals/{o}"))
            .collect();
        let body = json!({"displayName": name, "mailNickname": nickname, "description": description,
            "mailEnabled": false, "securityEnabled": true, "owners@odata.bind": owners});
        let g = self
            .send(reqwest::Method::POST, "/v1.0/groups", Some(body))
            .await;
        g["id"].as_str().unwrap().to_owned()
    }

    async fn add(&self, group: &str, member: &str) {
        let body = json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{member}")});
        self.send(
            reqwest::Method::POST,
            &format!("/v1.0/groups/{group}/members/$ref"),
            Some(body),
        )
        .await;
    }

    async fn ids(&self, path: &str) -> Vec<String> {
        let v = self.send(reqwest::Method::GET, path, None).await;
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn the_group_is_created_once_then_found_by_mark_and_owner_never_a_look_alike() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let admin = Admin::new(&emu);
    let handler = emu.handler_principal_id();
    let spec = spec(&emu);
    let stranger = emu.create_service_principal("someone else").object_id;
    // Same name and nickname but no mark; the exact mark but another owner; the exact mark, our identity as
    // owner, but a person's extra text after it. None of them is the tool's group.
    let no_mark = admin
        .group(
            &spec.display_name(),
            &spec.mail_nickname(),
            "pull for acr1",
            &[&handler],
        )
        .await;
    let other_owner = admin
        .group(
            &spec.display_name(),
            &spec.mail_nickname(),
            &spec.description(),
            &[&stranger],
        )
        .await;
    let near_miss = admin
        .group(
            &spec.display_name(),
            &spec.mail_nickname(),
            &format!("{} (copy)", spec.description()),
            &[&handler],
        )
        .await;

    let client = client_for(&emu, &handler, 999);
    let azure = client.with_deadline(soon());
    let created = azure.ensure_own_group(&spec).await.unwrap();
    let GroupOutcome::Created(group) = created else {
        panic!("expected a new group, got {created:?}");
    };
    assert!(![&no_mark, &other_owner, &near_miss].contains(&&group.id));
    assert_eq!(
        group.display_name.as_deref(),
        Some("acr-autoattach pull acr1 (AcrPull)")
    );
    assert_eq!(
        group.description.as_deref(),
        Some(spec.description().as_str())
    );

    let seen = admin
        .send(
            reqwest::Method::GET,
            &format!("/v1.0/groups/{}", group.id),
            None,
        )
        .await;
    assert_eq!(seen["securityEnabled"], true);
    assert_eq!(seen["mailEnabled"], false);
    assert_eq!(seen["mailNickname"], spec.mail_nickname());
    let owners = admin
        .ids(&format!("/v1.0/groups/{}/owners", group.id))
        .await;
    assert_eq!(
        owners,
        vec![handler.clone()],
        "owned by the handler's own service principal"
    );

    // Found again: by this handle, and by a fresh client (nothing remembered in the process).
    assert_eq!(
        azure.ensure_own_group(&spec).await.unwrap(),
        GroupOutcome::Found(group.clone())
    );
    let fresh = client_for(&emu, &handler, 999);
    let again = fresh
        .with_deadline(soon())
        .ensure_own_group(&spec)
        .await
        .unwrap();
    assert_eq!(again, GroupOutcome::Found(group.clone()));
    assert_eq!(client.stats().operation(Operation::GraphCreateGroup), 1);

    // Another role on the same registry is another group.
    let reader = GroupSpec::new(spec.registry.clone(), PullRole::RepositoryReader);
    let other = azure.ensure_own_group(&reader).await.unwrap();
    assert!(matches!(other, GroupOutcome::Created(ref g) if g.id != group.id));
    assert_eq!(
        other.group().display_name.as_deref(),
        Some("acr-autoattach pull acr1 (Container Registry Repository Reader)")
    );
}

#[tokio::test]
async fn members_are_added_and_removed_idempotently_and_listed_across_pages() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let handler = emu.handler_principal_id();
    let client = client_for(&emu, &handler, 2);
    let azure = client.with_deadline(soon());
    let group = azure
        .ensure_own_group(&spec(&emu))
        .await
        .unwrap()
        .group()
        .clone();
    let kubelets: Vec<String> = (0..5)
        .map(|i| {
            emu.create_service_principal(&format!("kubelet-{i}"))
                .object_id
        })
        .collect();
    for k in &kubelets {
        assert_eq!(
            azure.add_group_member(&group.id, k).await.unwrap(),
            MemberChange::Changed
        );
    }
    assert_eq!(
        azure
            .add_group_member(&group.id, &kubelets[0])
            .await
            .unwrap(),
        MemberChange::AlreadyThere,
        "Graph's 400 'already exist' is success"
    );

    let before = client.stats().operation(Operation::GraphListMembers);
    let mut members: Vec<String> = azure
        .list_group_members(&group.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            assert_eq!(
                m.odata_type.as_deref(),
                Some("#microsoft.graph.servicePrincipal")
            );
            m.id
        })
        .collect();
    members.sort();
    let mut expected = kubelets.clone();
    expected.sort();
    assert_eq!(members, expected);
    assert_eq!(
        client.stats().operation(Operation::GraphListMembers) - before,
        3,
        "5 members in pages of 2"
    );

    assert_eq!(
        azure
            .remove_group_member(&group.id, &kubelets[1])
            .await
            .unwrap(),
        MemberChange::Changed
    );
    assert_eq!(
        azure
            .remove_group_member(&group.id, &kubelets[1])
            .await
            .unwrap(),
        MemberChange::AlreadyThere,
        "404 when not a member is success"
    );
    let left = azure.list_group_members(&group.id).await.unwrap();
    assert_eq!(left.len(), 4);
    assert!(left.iter().all(|m| m.id != kubelets[1]));

    // A member that does not exist in the directory is an error, not "already there".
    let ghost = "00000000-0000-4000-8000-00000000dead";
    let err = azure.add_group_member(&group.id, ghost).await.unwrap_err();
    assert_eq!(err.kind(), "not_found", "{err}");
}

#[tokio::test]
async fn transitive_member_of_sees_a_nested_group_and_server_errors_are_retried() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let admin = Admin::new(&emu);
    let kubelet = emu.create_service_principal("kubelet").object_id;
    let outer = admin
        .group("platform pullers", "platform-pullers", "", &[])
        .await;
    let inner = admin.group("team pullers", "team-pullers", "", &[]).await;
    let unrelated = admin.group("unrelated", "unrelated", "", &[]).await;
    admin.add(&outer, &inner).await;
    admin.add(&inner, &kubelet).await;

    let client = client_for(&emu, &emu.handler_principal_id(), 1);
    emu.update_faults(|f| f.fail_next = 2);
    let azure = client.with_deadline(soon());
    let mut groups: Vec<String> = azure
        .transitive_member_of(&kubelet)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.id)
        .collect();
    groups.sort();
    let mut expected = vec![outer, inner];
    expected.sort();
    assert_eq!(
        groups, expected,
        "nested groups count, as Azure RBAC counts them"
    );
    assert!(!groups.contains(&unrelated));
    let stats = client.stats();
    assert_eq!(stats.retries, 2, "two injected 5xx retried: {stats:?}");
    assert!(
        stats.operation(Operation::GraphTransitiveMemberOf) >= 4,
        "pages of 1 plus retries"
    );
    assert!(
        azure
            .transitive_member_of(&emu.create_service_principal("lonely").object_id)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn graph_403_names_the_missing_permission_and_never_a_secret() {
    let emu = start(&[]).await;
    let handler = emu.handler_principal_id();
    let spec = spec(&emu);
    let kubelet = emu.create_service_principal("kubelet").object_id;
    let azure = client_for(&emu, &handler, 999).with_deadline(soon());

    let err = azure.ensure_own_group(&spec).await.unwrap_err();
    assert!(
        matches!(err, AzureError::GraphPermissionMissing { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), "graph_permission_missing");
    assert!(err.to_string().contains("GroupMember.Read.All"), "{err}");
    assert!(!err.is_transient());

    let err = azure.transitive_member_of(&kubelet).await.unwrap_err();
    assert!(err.to_string().contains("Application.Read.All"), "{err}");

    // May find (read) but not create.
    emu.grant_graph_app_role(&handler, "GroupMember.Read.All");
    let azure = client_for(&emu, &handler, 999).with_deadline(soon());
    let err = azure.ensure_own_group(&spec).await.unwrap_err();
    assert!(err.to_string().contains("Group.Create"), "{err}");

    // A group the handler does not own, without GroupMember.ReadWrite.All: the member change names it.
    let admin = Admin::new(&emu);
    let foreign = admin.group("theirs", "theirs", "", &[]).await;
    let err = azure
        .add_group_member(&foreign, &kubelet)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("GroupMember.ReadWrite.All"),
        "{err}"
    );
    let err = azure
        .remove_group_member(&foreign, &kubelet)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AzureError::GraphPermissionMissing { .. }),
        "{err:?}"
    );

    let token = emu.graph_token(&handler).unwrap();
    for e in [err.to_string(), format!("{err:?}")] {
        assert!(
            !e.contains(&token) && !e.contains("eyJ"),
            "no token in errors: {e}"
        );
    }
}

#[tokio::test]
async fn ids_are_checked_before_they_reach_graph() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let client = client_for(&emu, &emu.handler_principal_id(), 999);
    let azure = client.with_deadline(soon());
    for bad in ["x'/../groups", "a b", ""] {
        assert_eq!(
            azure.add_group_member(bad, "0f").await.unwrap_err().kind(),
            "invalid_request"
        );
        assert_eq!(
            azure.transitive_member_of(bad).await.unwrap_err().kind(),
            "invalid_request"
        );
    }
    assert_eq!(client.stats().total(), 0, "nothing sent");
}

/// A Graph stand-in that answers the first request 429 with `Retry-After: 1` (Graph's throttling), then a page with
/// one group and one directory role. The emulator has no Graph throttling, so this one test uses its own server.
async fn throttling_graph() -> (String, Arc<std::sync::atomic::AtomicU32>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = vec![0_u8; 16 * 1024];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => read += k,
                }
            }
            let (status, extra, body) = if n == 0 {
                (
                    "429 Too Many Requests",
                    "Retry-After: 1\r\n",
                    r#"{"error":{"code":"TooManyRequests","message":"Too many requests"}}"#
                        .to_owned(),
                )
            } else {
                (
                    "200 OK",
                    "",
                    json!({"value": [
                        {"@odata.type": "#microsoft.graph.group", "id": "0a1b", "securityEnabled": true},
                        {"@odata.type": "#microsoft.graph.directoryRole", "id": "0c2d"},
                        {"@odata.type": "#microsoft.graph.group", "id": "0e3f", "securityEnabled": false},
                        {"@odata.type": "#microsoft.graph.group", "id": "0f40", "securityEnabled": null}
                    ]})
                    .to_string(),
                )
            };
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, requests)
}

#[tokio::test]
async fn graph_throttling_is_retried_after_its_retry_after_and_only_security_groups_count() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let (graph, requests) = throttling_graph().await;
    let credential = Arc::new(EmulatorCredential::for_handler(emu.control()));
    let mut options = ClientOptions::new(
        Url::parse(&emu.base_url()).unwrap(),
        Url::parse(&graph).unwrap(),
        credential,
    );
    options.retry = RetryPolicy::default().with_seed(7);
    let client = AzureClient::new(options).unwrap();
    let started = std::time::Instant::now();
    let groups = client
        .with_deadline(soon())
        .transitive_member_of("0123-abcd")
        .await
        .unwrap();
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(
        ids,
        ["0a1b", "0f40"],
        "directory roles and non-security groups left out"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited Retry-After"
    );
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
    let stats = client.stats();
    assert_eq!(stats.retries, 1, "{stats:?}");
    assert_eq!(stats.throttled(), 1, "{stats:?}");
}

/// A group's members through nested groups in one paged listing (`transitiveMembers`): the way verification
/// learns who holds a group's pull role without a request per principal; a group the caller may not read is
/// Graph's 403 named as the missing permission.
#[tokio::test]
async fn transitive_members_of_a_group_are_listed_across_pages() {
    let emu = start(&GROUP_MODE_ROLES).await;
    let admin = Admin::new(&emu);
    let outer = admin
        .group("platform pullers", "platform-pullers", "", &[])
        .await;
    let inner = admin.group("team pullers", "team-pullers", "", &[]).await;
    admin.add(&outer, &inner).await;
    let mut expected = vec![inner.clone()];
    for i in 0..4 {
        let sp = emu
            .create_service_principal(&format!("kubelet-{i}"))
            .object_id;
        admin
            .add(if i % 2 == 0 { &outer } else { &inner }, &sp)
            .await;
        expected.push(sp);
    }
    let client = client_for(&emu, &emu.handler_principal_id(), 2);
    let azure = client.with_deadline(soon());
    let members = azure.list_group_transitive_members(&outer).await.unwrap();
    let mut ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    expected.sort();
    assert_eq!(ids, expected);
    assert!(
        members
            .iter()
            .any(|m| m.id == inner && m.odata_type.as_deref() == Some("#microsoft.graph.group"))
    );
    assert_eq!(
        client.stats().operation(Operation::GraphTransitiveMembers),
        3,
        "5 objects in pages of 2"
    );

    let none = emu.create_service_principal("no-rights").object_id;
    let denied = client_for(&emu, &none, 999)
        .with_deadline(soon())
        .list_group_transitive_members(&outer)
        .await
        .unwrap_err();
    assert!(
        matches!(denied, AzureError::GraphPermissionMissing { needs, .. } if needs.contains("GroupMember.Read.All")),
        "{denied:?}"
    );
}
