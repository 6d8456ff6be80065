//! Microsoft Graph security groups in the emulator: create, get, list with `$filter`, owners, members with
//! paging, `transitiveMemberOf`; the application permissions each call needs (docs/grant-modes.md); Azure RBAC
//! counting a group's role assignments for its (nested) members once the membership delay has passed; and a group
//! assignment counting once against the per-subscription limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::time::Duration;

use arm_common::{ASSIGNMENTS, Answer, Harness, REGISTRIES};
use azure_emulator::EmulatorConfig;
use serde_json::{Value, json};

const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

async fn harness(delay_ms: u64) -> Harness {
    let h = Harness::start(EmulatorConfig::for_tests()).await;
    h.emu
        .update_settings(|s| s.group_membership_delay_ms = delay_ms);
    h
}

/// A Graph token for a principal (its Graph app roles in the `roles` claim).
fn graph(h: &Harness, object_id: &str) -> String {
    h.emu.graph_token(object_id).unwrap()
}

/// The admin user's Graph token (a directory administrator: `Directory.ReadWrite.All`).
fn admin_graph(h: &Harness) -> String {
    graph(h, &h.emu.admin_principal_id())
}

/// A service principal holding the given Graph app roles.
fn app_with(h: &Harness, name: &str, roles: &[&str]) -> String {
    let sp = h.emu.create_service_principal(name).object_id;
    for r in roles {
        h.emu.grant_graph_app_role(&sp, r);
    }
    sp
}

fn reference(id: &str) -> Value {
    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/directoryObjects/{id}")})
}

async fn create_group(h: &Harness, token: &str, name: &str, owners: &[&str]) -> Answer {
    let owners: Vec<String> = owners
        .iter()
        .map(|o| format!("https://graph.microsoft.com/v1.0/servicePrincipals/{o}"))
        .collect();
    let mut body = json!({
        "displayName": name,
        "description": format!("managed-by: acr-autoattach {name}"),
        "mailEnabled": false,
        "mailNickname": name.replace([' ', '(', ')'], "-"),
        "securityEnabled": true,
    });
    if !owners.is_empty() {
        body["owners@odata.bind"] = json!(owners);
    }
    h.post(token, "/v1.0/groups", &body).await
}

async fn add(h: &Harness, token: &str, group: &str, member: &str) -> Answer {
    h.post(
        token,
        &format!("/v1.0/groups/{group}/members/$ref"),
        &reference(member),
    )
    .await
}

async fn remove(h: &Harness, token: &str, group: &str, member: &str) -> Answer {
    h.delete(
        token,
        &format!("/v1.0/groups/{group}/members/{member}/$ref"),
    )
    .await
}

/// Every page of a Graph list, following `@odata.nextLink`; returns the ids and the number of pages.
async fn all_pages(h: &Harness, token: &str, first: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut next) = (Vec::new(), 0, Some(first.to_owned()));
    while let Some(url) = next {
        let a = h.get(token, &url).await;
        assert_eq!(a.status, 200, "{}", a.body);
        pages += 1;
        for v in a.body["value"].as_array().unwrap() {
            ids.push(v["id"].as_str().unwrap().to_owned());
        }
        next = a.body["@odata.nextLink"].as_str().map(str::to_owned);
    }
    (ids, pages)
}

async fn assign(
    h: &Harness,
    principal: &str,
    principal_type: &str,
    role: &str,
    scope: &str,
) -> Answer {
    let name = uuid::Uuid::new_v4();
    h.put(
        &h.admin(),
        &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"),
        &json!({"properties": {
            "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", h.sub),
            "principalId": principal,
            "principalType": principal_type,
        }}),
    )
    .await
}

#[tokio::test]
async fn create_get_filter_and_owners() {
    let h = harness(0).await;
    let handler = h.emu.handler_principal_id();
    h.emu.grant_graph_app_role(&handler, "Group.Create");
    let token = graph(&h, &handler);
    let created = create_group(
        &h,
        &token,
        "acr-autoattach pull acrone (AcrPull)",
        &[&handler],
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["securityEnabled"], true);
    assert_eq!(created.body["mailEnabled"], false);
    create_group(
        &h,
        &admin_graph(&h),
        "acr-autoattach pull acrtwo (AcrPull)",
        &[],
    )
    .await;
    create_group(&h, &admin_graph(&h), "someone else's", &[]).await;

    // The owner reads its own group; Group.Create alone does not list or read other groups.
    let own = h.get(&token, &format!("/v1.0/groups/{id}")).await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(
        own.body["description"],
        "managed-by: acr-autoattach acr-autoattach pull acrone (AcrPull)"
    );
    let listed = h
        .get(&token, "/v1.0/groups?$filter=displayName eq 'x'")
        .await;
    assert_eq!(
        (listed.status, listed.code()),
        (403, "Authorization_RequestDenied")
    );

    let admin = admin_graph(&h);
    let eq = h
        .get(
            &admin,
            "/v1.0/groups?$filter=displayName eq 'ACR-AUTOATTACH pull acrone (AcrPull)'",
        )
        .await;
    assert_eq!(eq.status, 200, "{}", eq.body);
    assert_eq!(
        eq.body["value"].as_array().unwrap().len(),
        1,
        "eq ignores case"
    );
    assert_eq!(eq.body["value"][0]["id"], id.as_str());
    let prefix = h
        .get(
            &admin,
            "/v1.0/groups?$filter=startswith(displayName,'acr-autoattach pull ')",
        )
        .await;
    assert_eq!(prefix.body["value"].as_array().unwrap().len(), 2);
    let bad = h
        .get(&admin, "/v1.0/groups?$filter=securityEnabled eq true")
        .await;
    assert_eq!((bad.status, bad.code()), (400, "Request_UnsupportedQuery"));

    let owners = h.get(&admin, &format!("/v1.0/groups/{id}/owners")).await;
    assert_eq!(owners.body["value"][0]["id"], handler.as_str());
    assert_eq!(
        owners.body["value"][0]["@odata.type"],
        "#microsoft.graph.servicePrincipal"
    );
    let missing = h
        .get(&admin, &format!("/v1.0/groups/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (404, "Request_ResourceNotFound")
    );
    let invalid = h
        .post(
            &admin,
            "/v1.0/groups",
            &json!({"displayName": "x", "mailEnabled": false, "securityEnabled": true}),
        )
        .await;
    assert_eq!(
        (invalid.status, invalid.code()),
        (400, "Request_BadRequest")
    );
    assert!(
        invalid.message().contains("mailNickname"),
        "{}",
        invalid.message()
    );
}

#[tokio::test]
async fn members_page_and_transitive_member_of_follows_nesting() {
    let h = harness(0).await;
    h.emu.update_settings(|s| s.graph_page_size = 2);
    let admin = admin_graph(&h);
    let inner = create_group(&h, &admin, "inner", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outer = create_group(&h, &admin, "outer", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sps = Vec::new();
    for i in 0..5 {
        let sp = h
            .emu
            .create_service_principal(&format!("kubelet-{i}"))
            .object_id;
        assert_eq!(add(&h, &admin, &inner, &sp).await.status, 204);
        sps.push(sp);
    }
    let again = add(&h, &admin, &inner, &sps[0]).await;
    assert_eq!(again.status, 400);
    assert_eq!(
        again.message(),
        "One or more added object references already exist for the following modified properties: 'members'."
    );
    let (mut ids, pages) = all_pages(&h, &admin, &format!("/v1.0/groups/{inner}/members")).await;
    ids.sort();
    sps.sort();
    assert_eq!((ids.clone(), pages), (sps.clone(), 3));
    let (top, top_pages) = all_pages(
        &h,
        &admin,
        &format!("/v1.0/groups/{inner}/members?$top=999"),
    )
    .await;
    assert_eq!((top.len(), top_pages), (5, 1));

    assert_eq!(add(&h, &admin, &outer, &inner).await.status, 204);
    let (of, _) = all_pages(
        &h,
        &admin,
        &format!("/v1.0/servicePrincipals/{}/transitiveMemberOf", sps[1]),
    )
    .await;
    let mut expected = vec![inner.clone(), outer.clone()];
    expected.sort();
    let mut of = of;
    of.sort();
    assert_eq!(of, expected);
    // Application.Read.All alone sees the groups' ids and types only.
    let reader = app_with(&h, "reader", &["Application.Read.All"]);
    let limited = h
        .get(
            &graph(&h, &reader),
            &format!("/v1.0/servicePrincipals/{}/transitiveMemberOf", sps[1]),
        )
        .await;
    assert_eq!(limited.status, 200, "{}", limited.body);
    assert!(limited.body["value"][0]["displayName"].is_null());
    let none = app_with(&h, "none", &[]);
    let denied = h
        .get(
            &graph(&h, &none),
            &format!("/v1.0/servicePrincipals/{}/transitiveMemberOf", sps[1]),
        )
        .await;
    assert_eq!(denied.status, 403);

    assert_eq!(remove(&h, &admin, &inner, &sps[0]).await.status, 204);
    let gone = remove(&h, &admin, &inner, &sps[0]).await;
    assert_eq!(
        (gone.status, gone.code()),
        (404, "Request_ResourceNotFound")
    );
    let (left, _) = all_pages(&h, &admin, &format!("/v1.0/groups/{inner}/members")).await;
    assert_eq!(left.len(), 4);
}

#[tokio::test]
async fn permissions_are_enforced_from_the_token_roles() {
    let h = harness(0).await;
    let admin = admin_graph(&h);
    let kubelet = h.emu.create_service_principal("kubelet").object_id;

    let nobody = app_with(&h, "nobody", &[]);
    let refused = create_group(&h, &graph(&h, &nobody), "x", &[]).await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "Authorization_RequestDenied")
    );

    // Group.Create: owns what it creates and may manage those members, nobody else's.
    let creator = app_with(&h, "creator", &["Group.Create"]);
    let token = graph(&h, &creator);
    let own = create_group(&h, &token, "own", &[&creator]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = create_group(&h, &admin, "foreign", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(add(&h, &token, &own, &kubelet).await.status, 204);
    let other = add(&h, &token, &foreign, &kubelet).await;
    assert_eq!(
        (other.status, other.code()),
        (403, "Authorization_RequestDenied")
    );
    assert_eq!(remove(&h, &token, &own, &kubelet).await.status, 204);
    // Naming another service principal as owner needs a permission that reads service principals.
    let with_other_owner = create_group(&h, &token, "two owners", &[&creator, &kubelet]).await;
    assert_eq!(with_other_owner.status, 403);
    // Anonymous: created without owners, the group cannot be changed by its creator.
    let anonymous = create_group(&h, &token, "anonymous", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(add(&h, &token, &anonymous, &kubelet).await.status, 403);
    // The owner path is observed behaviour, behind a setting: off, Group.Create manages nothing.
    h.emu
        .update_settings(|s| s.graph_owners_manage_members = false);
    assert_eq!(add(&h, &token, &own, &kubelet).await.status, 403);
    h.emu
        .update_settings(|s| s.graph_owners_manage_members = true);

    // GroupMember.ReadWrite.All: any group, but a service-principal member also needs Application.ReadWrite.All.
    let members_only = app_with(&h, "members", &["GroupMember.ReadWrite.All"]);
    assert_eq!(
        add(&h, &graph(&h, &members_only), &foreign, &kubelet)
            .await
            .status,
        403
    );
    let user = h.emu.create_user("someone").object_id;
    assert_eq!(
        add(&h, &graph(&h, &members_only), &foreign, &user)
            .await
            .status,
        204
    );
    let both = app_with(
        &h,
        "both",
        &["GroupMember.ReadWrite.All", "Application.ReadWrite.All"],
    );
    assert_eq!(
        add(&h, &graph(&h, &both), &foreign, &kubelet).await.status,
        204
    );
    assert_eq!(
        h.get(
            &graph(&h, &members_only),
            "/v1.0/groups?$filter=displayName eq 'foreign'"
        )
        .await
        .status,
        200
    );
    let absent = add(&h, &admin, &foreign, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        (absent.status, absent.code()),
        (404, "Request_ResourceNotFound")
    );
}

#[tokio::test]
async fn rbac_counts_group_membership_after_the_delay_transitively() {
    let h = harness(400).await;
    h.create_rg("rg").await;
    assert!(matches!(
        h.create_registry("rg", "acrone", json!({})).await.status,
        200 | 201
    ));
    let registry = h.registry_id("rg", "acrone");
    let admin = admin_graph(&h);
    let pullers = create_group(&h, &admin, "pullers", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let nested = create_group(&h, &admin, "nested", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        assign(&h, &pullers, "Group", ACR_PULL, &registry)
            .await
            .status,
        201
    );
    assert_eq!(
        assign(&h, &pullers, "Group", READER, &h.rg_id("rg"))
            .await
            .status,
        201
    );
    let direct = h.emu.create_service_principal("direct").object_id;
    let deep = h.emu.create_service_principal("deep").object_id;
    assert_eq!(h.emu.can_pull(&direct, &registry), Some(false));
    add(&h, &admin, &pullers, &direct).await;
    add(&h, &admin, &nested, &deep).await;
    add(&h, &admin, &pullers, &nested).await;
    // Graph lists the membership at once; RBAC does not count it yet (the token cache).
    assert_eq!(h.emu.can_pull(&direct, &registry), Some(false));
    assert_eq!(h.emu.can_pull(&deep, &registry), Some(false));
    let arm_token = h.emu.arm_token(&direct).unwrap();
    let read = |t: String| {
        let url = format!("{registry}?api-version={REGISTRIES}");
        let h = &h;
        async move { h.get(&t, &url).await.status }
    };
    assert_eq!(read(arm_token.clone()).await, 403);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.emu.can_pull(&direct, &registry), Some(true));
    assert_eq!(
        h.emu.can_pull(&deep, &registry),
        Some(true),
        "nested membership counts"
    );
    assert_eq!(
        read(arm_token).await,
        200,
        "ARM authorizes through the group"
    );
    // A removal also reaches the token only after the delay.
    assert_eq!(remove(&h, &admin, &pullers, &direct).await.status, 204);
    assert_eq!(h.emu.can_pull(&direct, &registry), Some(true));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.emu.can_pull(&direct, &registry), Some(false));
    assert_eq!(h.emu.can_pull(&deep, &registry), Some(true));

    // On an ABAC registry AcrPull through the group is not pull.
    let abac = h
        .put(
            &h.admin(),
            &format!("{}?api-version={REGISTRIES}", h.registry_id("rg", "acrabac")),
            &json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"roleAssignmentMode": "AbacRepositoryPermissions"}}),
        )
        .await;
    assert!(matches!(abac.status, 200 | 201), "{}", abac.body);
    let abac_id = h.registry_id("rg", "acrabac");
    assert_eq!(
        assign(&h, &pullers, "Group", ACR_PULL, &abac_id)
            .await
            .status,
        201
    );
    assert_eq!(h.emu.can_pull(&deep, &abac_id), Some(false));
    assert_eq!(h.emu.can_pull(&deep, &format!("{abac_id}x")), None);
}

#[tokio::test]
async fn a_group_assignment_counts_once_against_the_limit() {
    let h = harness(0).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrone", json!({})).await;
    let registry = h.registry_id("rg", "acrone");
    let admin = admin_graph(&h);
    let group = create_group(&h, &admin, "pullers", &[]).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = h.emu.assignments_in_subscription(&h.sub);
    h.emu
        .update_settings(|s| s.role_assignment_limit = before + 1);
    let mut members = Vec::new();
    for i in 0..10 {
        let sp = h
            .emu
            .create_service_principal(&format!("kubelet-{i}"))
            .object_id;
        assert_eq!(add(&h, &admin, &group, &sp).await.status, 204);
        members.push(sp);
    }
    assert_eq!(
        assign(&h, &group, "Group", ACR_PULL, &registry)
            .await
            .status,
        201
    );
    assert_eq!(h.emu.assignments_in_subscription(&h.sub), before + 1);
    for m in &members {
        assert_eq!(h.emu.can_pull(m, &registry), Some(true));
    }
    let over = assign(&h, &members[0], "ServicePrincipal", ACR_PULL, &registry).await;
    assert_eq!(
        (over.status, over.code()),
        (400, "RoleAssignmentLimitExceeded")
    );
}

#[tokio::test]
async fn control_api_grants_graph_roles_and_answers_can_pull() {
    let h = harness(0).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrone", json!({})).await;
    let registry = h.registry_id("rg", "acrone");
    let sp = h.emu.create_service_principal("app").object_id;
    let refused = create_group(&h, &graph(&h, &sp), "g", &[&sp]).await;
    assert_eq!(refused.status, 403);
    let granted = h
        .http
        .post(h.url("/_emulator/graph-app-roles"))
        .json(&json!({"principalId": sp, "role": "Group.Create"}))
        .send()
        .await
        .unwrap();
    assert_eq!(granted.status(), 204);
    let created = create_group(&h, &graph(&h, &sp), "g", &[&sp]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let group = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(add(&h, &graph(&h, &sp), &group, &sp).await.status, 204);
    assert_eq!(
        assign(&h, &group, "Group", ACR_PULL, &registry)
            .await
            .status,
        201
    );
    let can = |registry: String| {
        let h = &h;
        let sp = sp.clone();
        async move {
            let r = h
                .http
                .get(h.url(&format!(
                    "/_emulator/can-pull?principalId={sp}&registryId={registry}"
                )))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = can(registry.clone()).await;
    assert_eq!((status, body["canPull"].as_bool()), (200, Some(true)));
    assert_eq!(can(format!("{registry}nope")).await.0, 404);
}

/// The handler's conditioned right (infra/modules/attach-condition.txt) assigns the pull roles to service
/// principals only: a group needs the condition widened (group mode's infrastructure).
#[tokio::test]
async fn the_handler_condition_decides_whether_a_group_may_get_the_pull_role() {
    let h = harness(0).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrone", json!({})).await;
    let registry = h.registry_id("rg", "acrone");
    let group = create_group(&h, &admin_graph(&h), "pullers", &[])
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |principal: String, principal_type: &'static str| {
        let h = &h;
        let registry = registry.clone();
        async move {
            let name = uuid::Uuid::new_v4();
            h.put(
                &h.emu.handler_token(),
                &format!("{registry}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"),
                &json!({"properties": {
                    "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{ACR_PULL}", h.sub),
                    "principalId": principal,
                    "principalType": principal_type,
                }}),
            )
            .await
        }
    };
    let refused = put(group.clone(), "Group").await;
    assert_eq!(
        (refused.status, refused.code()),
        (403, "AuthorizationFailed")
    );
    let kubelet = h.emu.create_service_principal("kubelet").object_id;
    assert_eq!(put(kubelet, "ServicePrincipal").await.status, 201);
    h.emu.grant_with_condition(
        &h.emu.handler_principal_id(),
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        &format!("/subscriptions/{}", h.sub),
        &azure_emulator::rbac::pull_roles_to_principals_and_groups_condition(),
    );
    assert_eq!(put(group, "Group").await.status, 201);
}

/// `GET /groups/{id}/transitiveMembers` lists the members through nested groups (the nested groups included),
/// paged like `members`, each object once even in a cycle; reading it needs what reading the group needs.
#[tokio::test]
async fn transitive_members_follow_nesting_and_page() {
    let h = harness(0).await;
    h.emu.update_settings(|s| s.graph_page_size = 2);
    let admin = admin_graph(&h);
    let id = |a: Answer| a.body["id"].as_str().unwrap().to_owned();
    let outer = id(create_group(&h, &admin, "outer", &[]).await);
    let inner = id(create_group(&h, &admin, "inner", &[]).await);
    let mut expected = vec![inner.clone()];
    for i in 0..3 {
        let sp = h.emu.create_service_principal(&format!("sp-{i}")).object_id;
        let group = if i == 0 { &outer } else { &inner };
        assert_eq!(add(&h, &admin, group, &sp).await.status, 204);
        expected.push(sp);
    }
    assert_eq!(add(&h, &admin, &outer, &inner).await.status, 204);
    // A cycle back to the root ends there.
    assert_eq!(add(&h, &admin, &inner, &outer).await.status, 204);
    let (mut ids, pages) = all_pages(
        &h,
        &admin,
        &format!("/v1.0/groups/{outer}/transitiveMembers"),
    )
    .await;
    ids.sort();
    expected.sort();
    assert_eq!((ids, pages), (expected, 2));
    let (direct, _) = all_pages(&h, &admin, &format!("/v1.0/groups/{outer}/members")).await;
    assert_eq!(direct.len(), 2, "sp-0 and inner");
    // A removed member leaves the transitive list at once (Graph lists changes immediately).
    let first_inner = h.emu.create_service_principal("late").object_id;
    assert_eq!(add(&h, &admin, &inner, &first_inner).await.status, 204);
    assert_eq!(remove(&h, &admin, &inner, &first_inner).await.status, 204);
    let (after, _) = all_pages(
        &h,
        &admin,
        &format!("/v1.0/groups/{outer}/transitiveMembers?$top=999"),
    )
    .await;
    assert!(!after.contains(&first_inner));
    let stranger = app_with(&h, "stranger", &["Application.Read.All"]);
    let denied = h
        .get(
            &graph(&h, &stranger),
            &format!("/v1.0/groups/{outer}/transitiveMembers"),
        )
        .await;
    assert_eq!(denied.status, 403);
    let missing = h
        .get(
            &admin,
            "/v1.0/groups/00000000-0000-0000-0000-00000000beef/transitiveMembers",
        )
        .await;
    assert_eq!(missing.status, 404);
    let stats = h.emu.stats();
    assert!(
        stats.count("GET graph groups/transitiveMembers") >= 4,
        "{:?}",
        stats.by_operation()
    );
}

/// `HandlerRights::LeastPrivilegeGroups` is the handler's right as infra deploys it with `enableGroupMode`: the
/// pull role may go to a group, and still nothing else.
#[tokio::test]
async fn least_privilege_with_groups_lets_the_handler_give_pull_to_a_group_only() {
    let mut config = EmulatorConfig::for_tests();
    config.handler_rights = azure_emulator::HandlerRights::LeastPrivilegeGroups;
    let h = Harness::start(config).await;
    h.create_rg("rg").await;
    h.create_registry("rg", "acrone", json!({})).await;
    let registry = h.registry_id("rg", "acrone");
    let group = create_group(&h, &admin_graph(&h), "pullers", &[])
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let put = |role: &'static str| {
        let (h, registry, group) = (&h, registry.clone(), group.clone());
        async move {
            let name = uuid::Uuid::new_v4();
            h.put(
                &h.emu.handler_token(),
                &format!("{registry}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS}"),
                &json!({"properties": {
                    "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", h.sub),
                    "principalId": group,
                    "principalType": "Group",
                }}),
            )
            .await
        }
    };
    assert_eq!(put(ACR_PULL).await.status, 201);
    let reader = put(READER).await;
    assert_eq!((reader.status, reader.code()), (403, "AuthorizationFailed"));
}
