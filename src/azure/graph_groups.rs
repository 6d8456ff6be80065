//! Microsoft Graph calls of group mode (`docs/grant-modes.md` §2, §5): find or create the tool's security group per
//! (registry, pull role), add and remove members, list members, and a principal's groups (`transitiveMemberOf`).
//!
//! The tool's group is found by its deterministic `mailNickname`, then taken only when its `description` is
//! exactly the ownership mark ([`GroupSpec::is_marked`]) **and** the handler's identity is among its owners.
//! Display names are not unique in Entra ID; a look-alike (same name, no mark, or another owner) is never taken.
//! Graph's 403 `Authorization_RequestDenied` becomes [`AzureError::GraphPermissionMissing`] naming the permission.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};
use url::Url;

use super::ScopedClient;
use super::error::AzureError;
use super::http::{Audience, Call, Operation, join, same_origin, set_query};
use super::token::GRAPH_SCOPE;
use crate::core::groups::GroupSpec;

/// The message Graph answers (400) when the member already is one (`docs/grant-modes.md` §2).
const ALREADY_MEMBER: &str = "One or more added object references already exist";

/// A group as Graph returns it; `description` and `display_name` are `None` when the caller may not read them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphGroup {
    pub id: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// `createdDateTime` as Graph wrote it (RFC 3339), the tie-breaker between duplicates.
    pub created: Option<String>,
    /// `None` when Graph returned the group with limited information.
    pub security_enabled: Option<bool>,
}

/// What [`ScopedClient::ensure_own_group`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOutcome {
    Found(GraphGroup),
    Created(GraphGroup),
}

impl GroupOutcome {
    pub fn group(&self) -> &GraphGroup {
        match self {
            Self::Found(g) | Self::Created(g) => g,
        }
    }
}

/// What adding or removing a member did; both are success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Changed,
    /// Added: it already was a member. Removed: it was not (any more).
    AlreadyThere,
}

/// A member of a group: its object id and `@odata.type` (e.g. `#microsoft.graph.servicePrincipal`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryObject {
    pub id: String,
    pub odata_type: Option<String>,
}

/// Object ids go into URL paths and OData strings: GUID characters only.
fn check_object_id<'a>(what: &str, id: &'a str) -> Result<&'a str, AzureError> {
    let id = id.trim();
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(AzureError::InvalidRequest(format!(
            "not a directory object id ({what}): `{id}`"
        )));
    }
    Ok(id)
}

/// Graph's 403 as the permission that would allow `op`; every other error unchanged.
fn permission(e: AzureError, op: Operation, needs: &'static str) -> AzureError {
    match e {
        AzureError::Forbidden { code, .. }
            if code.eq_ignore_ascii_case("Authorization_RequestDenied") =>
        {
            AzureError::GraphPermissionMissing {
                operation: op.as_str(),
                needs,
            }
        }
        other => other,
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn group_from(op: Operation, v: &Value) -> Result<GraphGroup, AzureError> {
    Ok(GraphGroup {
        id: text(v, "id").ok_or_else(|| AzureError::Decode {
            operation: op.as_str(),
            message: "group without `id`".into(),
        })?,
        display_name: text(v, "displayName"),
        description: v
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        created: text(v, "createdDateTime"),
        security_enabled: v.get("securityEnabled").and_then(Value::as_bool),
    })
}

fn object_from(op: Operation, v: &Value) -> Result<DirectoryObject, AzureError> {
    Ok(DirectoryObject {
        id: text(v, "id").ok_or_else(|| AzureError::Decode {
            operation: op.as_str(),
            message: "directory object without `id`".into(),
        })?,
        odata_type: text(v, "@odata.type"),
    })
}

impl ScopedClient {
    /// `$top` for Graph lists ([`super::ClientOptions::graph_page_size`]; Graph's default is 100, its maximum 999).
    fn graph_top(&self) -> String {
        self.inner().graph_page_size.to_string()
    }

    fn graph_url(&self, path: &str, query: &[(&str, &str)]) -> Result<Url, AzureError> {
        let mut url = join(&self.inner().graph, path)?;
        if !query.is_empty() {
            set_query(&mut url, query);
        }
        Ok(url)
    }

    async fn graph_send(
        &self,
        op: Operation,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<super::http::Reply, AzureError> {
        let call = Call {
            op,
            method,
            url,
            body,
            audience: Audience::Graph,
            retry_principal_not_found: false,
        };
        self.execute(&call).await
    }

    /// Every item of a Graph list, following `@odata.nextLink` (bounded; never to another origin).
    async fn graph_all_pages(&self, op: Operation, first: Url) -> Result<Vec<Value>, AzureError> {
        let decode = |message: String| AzureError::Decode {
            operation: op.as_str(),
            message,
        };
        let mut items = Vec::new();
        let mut url = first.clone();
        let mut seen = HashSet::new();
        for _ in 0..self.inner().max_pages {
            let page = self
                .graph_send(op, Method::GET, url.clone(), None)
                .await?
                .json(op)?;
            let values = page
                .get("value")
                .and_then(Value::as_array)
                .ok_or_else(|| decode("no `value` array".into()))?;
            items.extend(values.iter().cloned());
            let Some(next) = page.get("@odata.nextLink").and_then(Value::as_str) else {
                return Ok(items);
            };
            let next = Url::parse(next).map_err(|e| decode(format!("bad @odata.nextLink: {e}")))?;
            if !same_origin(&first, &next) {
                return Err(decode("@odata.nextLink points to another host".into()));
            }
            if !seen.insert(next.as_str().to_owned()) {
                return Err(decode("@odata.nextLink loops".into()));
            }
            url = next;
        }
        Err(decode(format!(
            "more than {} pages",
            self.inner().max_pages
        )))
    }

    /// The caller's own object id, as its Graph token names it (the owner the tool's groups are bound to).
    pub async fn graph_caller_id(&self) -> Result<String, AzureError> {
        let (_, claims) = self
            .inner()
            .transport
            .tokens
            .token(GRAPH_SCOPE, self.deadline())
            .await?;
        claims
            .object_id
            .filter(|id| !id.trim().is_empty())
            .ok_or_else(|| AzureError::Token("the Graph token names no object id (`oid`)".into()))
    }

    /// The object ids of a group's owners (`GET /groups/{id}/owners`, paged).
    pub async fn group_owners(&self, group_id: &str) -> Result<Vec<String>, AzureError> {
        let op = Operation::GraphGroupOwners;
        let group_id = check_object_id("group", group_id)?;
        let url = self.graph_url(&format!("/v1.0/groups/{group_id}/owners"), &[])?;
        let items = self
            .graph_all_pages(op, url)
            .await
            .map_err(|e| permission(e, op, "Group.Read.All (or ownership of the group)"))?;
        items
            .iter()
            .map(|v| object_from(op, v).map(|o| o.id))
            .collect()
    }

    /// The tool's group for `spec`: same `mailNickname`, exactly the mark, and `caller` among its owners; the
    /// oldest (then lowest id) when concurrent creates made more than one. `None` when there is none.
    pub async fn find_own_group(
        &self,
        spec: &GroupSpec,
        caller: &str,
    ) -> Result<Option<GraphGroup>, AzureError> {
        let top = self.graph_top();
        let op = Operation::GraphFindGroup;
        let filter = format!("mailNickname eq '{}'", spec.mail_nickname());
        let url = self.graph_url("/v1.0/groups", &[("$filter", &filter), ("$top", &top)])?;
        let items = self
            .graph_all_pages(op, url)
            .await
            .map_err(|e| permission(e, op, "GroupMember.Read.All (or Group.Read.All)"))?;
        let mut candidates = Vec::new();
        for v in &items {
            let g = group_from(op, v)?;
            if g.security_enabled == Some(true) && spec.is_marked(g.description.as_deref()) {
                candidates.push(g);
            }
        }
        candidates.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
        for g in candidates {
            let owners = self.group_owners(&g.id).await?;
            if owners.iter().any(|o| o.eq_ignore_ascii_case(caller)) {
                return Ok(Some(g));
            }
        }
        Ok(None)
    }

    /// Finds the tool's group for `spec`, or creates it: a security group (`mailEnabled: false`), named and
    /// marked by [`GroupSpec`], owned by the caller (`owners@odata.bind`; without an owner a group created with
    /// `Group.Create` could never be changed again).
    pub async fn ensure_own_group(&self, spec: &GroupSpec) -> Result<GroupOutcome, AzureError> {
        let caller = self.graph_caller_id().await?;
        let caller = check_object_id("caller", &caller)?.to_owned();
        if let Some(g) = self.find_own_group(spec, &caller).await? {
            return Ok(GroupOutcome::Found(g));
        }
        let op = Operation::GraphCreateGroup;
        let owner = self.graph_url(&format!("/v1.0/servicePrincipals/{caller}"), &[])?;
        let body = json!({
            "displayName": spec.display_name(),
            "description": spec.description(),
            "mailNickname": spec.mail_nickname(),
            "mailEnabled": false,
            "securityEnabled": true,
            "owners@odata.bind": [owner.as_str()],
        });
        let url = self.graph_url("/v1.0/groups", &[])?;
        let reply = self
            .graph_send(op, Method::POST, url, Some(&body))
            .await
            .map_err(|e| permission(e, op, "Group.Create"))?;
        Ok(GroupOutcome::Created(group_from(op, &reply.json(op)?)?))
    }

    /// `POST /groups/{id}/members/$ref`; Graph's 400 "already exist" is [`MemberChange::AlreadyThere`].
    pub async fn add_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<MemberChange, AzureError> {
        let op = Operation::GraphAddMember;
        let group_id = check_object_id("group", group_id)?;
        let member_id = check_object_id("member", member_id)?;
        let reference = self.graph_url(&format!("/v1.0/directoryObjects/{member_id}"), &[])?;
        let body = json!({ "@odata.id": reference.as_str() });
        let url = self.graph_url(&format!("/v1.0/groups/{group_id}/members/$ref"), &[])?;
        match self.graph_send(op, Method::POST, url, Some(&body)).await {
            Ok(_) => Ok(MemberChange::Changed),
            Err(AzureError::BadRequest { message, .. }) if message.contains(ALREADY_MEMBER) => {
                Ok(MemberChange::AlreadyThere)
            }
            Err(e) => Err(permission(e, op, MEMBER_WRITE)),
        }
    }

    /// `DELETE /groups/{id}/members/{member}/$ref`; 404 (not a member, or gone) is [`MemberChange::AlreadyThere`].
    pub async fn remove_group_member(
        &self,
        group_id: &str,
        member_id: &str,
    ) -> Result<MemberChange, AzureError> {
        let op = Operation::GraphRemoveMember;
        let group_id = check_object_id("group", group_id)?;
        let member_id = check_object_id("member", member_id)?;
        let url = self.graph_url(
            &format!("/v1.0/groups/{group_id}/members/{member_id}/$ref"),
            &[],
        )?;
        match self.graph_send(op, Method::DELETE, url, None).await {
            Ok(_) => Ok(MemberChange::Changed),
            Err(AzureError::NotFound { .. }) => Ok(MemberChange::AlreadyThere),
            Err(e) => Err(permission(e, op, MEMBER_WRITE)),
        }
    }

    /// The direct members of a group, every page.
    pub async fn list_group_members(
        &self,
        group_id: &str,
    ) -> Result<Vec<DirectoryObject>, AzureError> {
        self.group_member_listing(Operation::GraphListMembers, group_id, "members")
            .await
    }

    /// The members of a group, directly or through nested groups (the nested groups included, each object
    /// once), every page: `GET /groups/{id}/transitiveMembers`. One listing per group answers "who holds this
    /// group's roles" for every principal at once, instead of one `transitiveMemberOf` per principal.
    pub async fn list_group_transitive_members(
        &self,
        group_id: &str,
    ) -> Result<Vec<DirectoryObject>, AzureError> {
        self.group_member_listing(
            Operation::GraphTransitiveMembers,
            group_id,
            "transitiveMembers",
        )
        .await
    }

    /// `GET /groups/{id}/{relation}`, every page, as directory objects (both member listings).
    async fn group_member_listing(
        &self,
        op: Operation,
        group_id: &str,
        relation: &str,
    ) -> Result<Vec<DirectoryObject>, AzureError> {
        let top = self.graph_top();
        let group_id = check_object_id("group", group_id)?;
        let url = self.graph_url(
            &format!("/v1.0/groups/{group_id}/{relation}"),
            &[("$top", &top)],
        )?;
        let items = self
            .graph_all_pages(op, url)
            .await
            .map_err(|e| permission(e, op, "GroupMember.Read.All (or ownership of the group)"))?;
        items.iter().map(|v| object_from(op, v)).collect()
    }

    /// The security groups `principal_id` belongs to, directly or nested (`transitiveMemberOf`, every page).
    /// Directory roles and groups Graph reports as not security-enabled are left out; a group returned with
    /// limited information (the caller may not read it) is kept, since an Azure role can only be held by a
    /// security group anyway.
    pub async fn transitive_member_of(
        &self,
        principal_id: &str,
    ) -> Result<Vec<GraphGroup>, AzureError> {
        let top = self.graph_top();
        let op = Operation::GraphTransitiveMemberOf;
        let principal_id = check_object_id("principal", principal_id)?;
        let url = self.graph_url(
            &format!("/v1.0/servicePrincipals/{principal_id}/transitiveMemberOf"),
            &[("$top", &top)],
        )?;
        let items = self
            .graph_all_pages(op, url)
            .await
            .map_err(|e| permission(e, op, "Application.Read.All"))?;
        let mut groups = Vec::new();
        for v in &items {
            let is_group = v
                .get("@odata.type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("#microsoft.graph.group"));
            if !is_group {
                continue;
            }
            let g = group_from(op, v)?;
            if g.security_enabled != Some(false) {
                groups.push(g);
            }
        }
        Ok(groups)
    }
}

/// What allows changing a group's members when the caller does not own it (`docs/grant-modes.md` §3).
const MEMBER_WRITE: &str = "GroupMember.ReadWrite.All and, for service-principal members, \
Application.ReadWrite.All (or ownership of the group)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_checked_before_they_reach_a_url() {
        assert!(check_object_id("g", "0f3a-BC").is_ok());
        for bad in ["", "x/../y", "a'b", "a b", "abc?x=1", "g$ref"] {
            assert!(matches!(
                check_object_id("g", bad),
                Err(AzureError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn graph_403_names_the_permission() {
        let denied = AzureError::Forbidden {
            code: "Authorization_RequestDenied".into(),
            message: "Insufficient privileges to complete the operation.".into(),
        };
        let e = permission(denied, Operation::GraphCreateGroup, "Group.Create");
        assert_eq!(e.kind(), "graph_permission_missing");
        assert!(!e.is_transient());
        assert!(e.to_string().contains("Group.Create"));
        assert_eq!(e.code(), Some("Authorization_RequestDenied"));
        let arm = AzureError::Forbidden {
            code: "AuthorizationFailed".into(),
            message: String::new(),
        };
        assert_eq!(
            permission(arm.clone(), Operation::GraphCreateGroup, "x"),
            arm
        );
    }
}
