//! What the Microsoft Graph routes share: directory objects as Graph returns them, its error bodies, the
//! application permissions (app roles in the token's `roles` claim) each kind of call accepts, and `$top` /
//! `$skiptoken` paging with `@odata.nextLink`.

use http::StatusCode;
use serde_json::{Value, json};

use crate::arm::{self, Outcome, Request};
use crate::groups::Group;
use crate::store::{Principal, PrincipalKind, Store, rfc3339};
use crate::token::Claims;

pub(super) const CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata";

/// Application permissions that read groups (properties and memberships).
pub(super) const READ_GROUPS: &[&str] = &[
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// Application permissions that create groups.
pub(super) const CREATE_GROUPS: &[&str] = &[
    "Group.Create",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Application permissions that change any group's members.
pub(super) const WRITE_MEMBERS: &[&str] = &[
    "GroupMember.ReadWrite.All",
    "Group.ReadWrite.All",
    "Directory.ReadWrite.All",
];
/// Application permissions that read service principals.
pub(super) const READ_APPS: &[&str] = &[
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];
/// What Graph documents besides a member permission for adding or removing a service-principal member.
pub(super) const WRITE_APPS: &[&str] = &["Application.ReadWrite.All", "Directory.ReadWrite.All"];
/// Application permissions that read users.
pub(super) const READ_USERS: &[&str] = &[
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
];

/// Whether the token carries one of `accepted` (app roles compare case-insensitively).
pub(super) fn has_role(claims: &Claims, accepted: &[&str]) -> bool {
    claims
        .roles
        .iter()
        .any(|r| accepted.iter().any(|a| a.eq_ignore_ascii_case(r)))
}

/// Graph's 403 for a caller whose token lacks the permission.
pub(super) fn denied() -> Outcome {
    arm::graph_error(
        StatusCode::FORBIDDEN,
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
}

pub(super) fn not_found(key: &str) -> Outcome {
    arm::graph_error(
        StatusCode::NOT_FOUND,
        "Request_ResourceNotFound",
        &format!(
            "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
        ),
    )
}

pub(super) fn bad_request(message: &str) -> Outcome {
    arm::graph_error(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
}

/// A group as Graph returns it.
pub(super) fn group_json(g: &Group) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.group",
        "id": g.id,
        "deletedDateTime": null,
        "classification": null,
        "createdDateTime": rfc3339(g.created),
        "description": g.description,
        "displayName": g.display_name,
        "groupTypes": [],
        "isAssignableToRole": null,
        "mail": null,
        "mailEnabled": g.mail_enabled,
        "mailNickname": g.mail_nickname,
        "membershipRule": null,
        "securityEnabled": g.security_enabled,
        "visibility": null,
    })
}

/// A principal as Graph returns it (service principal, user or group), with its `@odata.type`.
pub(super) fn directory_object(store: &Store, p: &Principal) -> Value {
    match p.kind {
        PrincipalKind::ServicePrincipal => json!({
            "@odata.type": "#microsoft.graph.servicePrincipal",
            "id": p.object_id,
            "appId": p.app_id,
            "displayName": p.display_name,
            "servicePrincipalType": p.service_principal_type,
            "accountEnabled": true,
            "appOwnerOrganizationId": p.tenant_id,
            "alternativeNames": p.managed_identity_resource_id.iter().collect::<Vec<_>>(),
            "servicePrincipalNames": [p.app_id],
        }),
        PrincipalKind::User => json!({
            "@odata.type": "#microsoft.graph.user",
            "id": p.object_id,
            "displayName": p.display_name,
            "userPrincipalName": format!("{}@emulator.invalid", p.display_name.replace(' ', ".")),
            "accountEnabled": true,
        }),
        PrincipalKind::Group => store.groups.get(&p.object_id).map_or_else(
            || {
                json!({
                    "@odata.type": "#microsoft.graph.group",
                    "id": p.object_id,
                    "displayName": p.display_name,
                    "securityEnabled": true,
                })
            },
            group_json,
        ),
    }
}

/// What Graph returns for an object the caller may not read: its type and id, every other property null.
pub(super) fn limited(full: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(map) = full.as_object() {
        for (k, v) in map {
            let keep = k == "@odata.type" || k == "id";
            out.insert(k.clone(), if keep { v.clone() } else { Value::Null });
        }
    }
    Value::Object(out)
}

/// One page of `items` for `GET {path}` with Graph's paging: `$top` (1..=999, default `default_top`) and an
/// opaque `$skiptoken` in `@odata.nextLink`.
pub(super) fn page(
    req: &Request<'_>,
    context: &str,
    items: Vec<Value>,
    default_top: usize,
) -> Outcome {
    let top = match req.query.get("$top") {
        None => default_top.clamp(1, 999),
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=999).contains(&n) => n,
            _ => {
                return arm::graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    &format!(
                        "Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive."
                    ),
                );
            }
        },
    };
    let skip = match req.query.get("$skiptoken") {
        None => 0,
        Some(token) => match token.strip_prefix("X'").and_then(|t| t.strip_suffix('\'')) {
            Some(hex) => match usize::from_str_radix(hex, 16) {
                Ok(n) => n,
                Err(_) => return bad_skiptoken(),
            },
            None => return bad_skiptoken(),
        },
    };
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
    let mut body = json!({"@odata.context": context, "value": value});
    if skip + top < total {
        let next = format!(
            "{}{}?$top={top}&$skiptoken=X'{:X}'",
            req.origin,
            req.path,
            skip + top
        );
        body["@odata.nextLink"] = json!(next);
    }
    Outcome::json(StatusCode::OK, body)
}

fn bad_skiptoken() -> Outcome {
    arm::graph_error(
        StatusCode::BAD_REQUEST,
        "Directory_ExpiredPageToken",
        "The specified page token value has expired and can no longer be included in your request.",
    )
}
