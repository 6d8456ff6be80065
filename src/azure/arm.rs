//! ARM operations (arm.md: paths and api-versions).

use std::collections::HashSet;

use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::ScopedClient;
use super::error::AzureError;
use super::http::{Audience, Call, Operation, join, same_origin, set_query};
use super::wire::{self, Subscription};
use crate::core::model::{
    ArmKind, Cluster, PullRole, Registry, ResourceId, RoleAssignment, RoleDefinition,
    assignment_name,
};
use crate::core::planner::AssignmentSpec;

pub mod api_versions {
    pub const MANAGED_CLUSTERS: &str = "2026-02-01";
    pub const REGISTRIES: &str = "2025-11-01";
    pub const AUTHORIZATION: &str = "2022-04-01";
    pub const SUBSCRIPTIONS: &str = "2022-12-01";
    pub const RESOURCE_GRAPH: &str = "2024-04-01";
}

const ROLE_ASSIGNMENTS: &str = "/providers/Microsoft.Authorization/roleAssignments";

/// Which role assignments to list at a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentFilter {
    /// `atScope()`: at the scope or above it.
    AtScope,
    /// `principalId eq '{id}'`: at, above or below the scope.
    Principal(String),
    /// `assignedTo('{id}')`: the principal's assignments, including those it holds through groups.
    AssignedTo(String),
    /// No filter: at, above and below.
    All,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201: created now.
    Created(RoleAssignment),
    /// 200: an identical assignment with this name was already there.
    Unchanged(RoleAssignment),
    /// 409 `RoleAssignmentExists`: the same principal, role and scope exist under another name.
    AlreadyExists,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// 204/404: nothing to delete.
    AlreadyGone,
}

fn is_guid_like(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A scope we are willing to put in a URL: a subscription-rooted id or a management group.
fn check_scope(scope: &str) -> Result<&str, AzureError> {
    let s = scope.trim().trim_end_matches('/');
    let lower = s.to_ascii_lowercase();
    let rooted = lower.starts_with("/subscriptions/")
        || lower.starts_with("/providers/microsoft.management/managementgroups/");
    if !rooted
        || s.contains(['?', '#', ' '])
        || s.split('/')
            .skip(1)
            .any(|seg| seg.is_empty() || seg == "..")
    {
        return Err(AzureError::InvalidRequest(format!(
            "not an ARM scope: `{scope}`"
        )));
    }
    Ok(s)
}

impl ScopedClient {
    pub(crate) fn arm_url(
        &self,
        path: &str,
        api_version: &str,
        extra: &[(&str, &str)],
    ) -> Result<Url, AzureError> {
        let mut url = join(&self.inner().arm, path)?;
        let mut pairs = vec![("api-version", api_version)];
        pairs.extend_from_slice(extra);
        set_query(&mut url, &pairs);
        Ok(url)
    }

    async fn get_json(&self, op: Operation, url: Url) -> Result<Value, AzureError> {
        let call = Call {
            op,
            method: Method::GET,
            url,
            body: None,
            audience: Audience::Arm,
            retry_principal_not_found: false,
        };
        self.execute(&call).await?.json(op)
    }

    /// GET an ARM object; 404 becomes `None`.
    async fn get_optional(&self, op: Operation, url: Url) -> Result<Option<Value>, AzureError> {
        match self.get_json(op, url).await {
            Ok(v) => Ok(Some(v)),
            Err(AzureError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list (following `nextLink` to the end, bounded, never to another origin), converted by
    /// `parse` page by page: a page's JSON is dropped as soon as its items are
    /// converted. One odd item must not hide the others: it is logged and skipped, not fatal.
    pub(crate) async fn get_all_parsed<T>(
        &self,
        op: Operation,
        first: Url,
        mut parse: impl FnMut(&Value) -> Result<T, wire::WireError>,
    ) -> Result<Vec<T>, AzureError> {
        let mut items = Vec::new();
        self.for_each_page(op, first, |page| {
            items.reserve(page.len());
            for v in page {
                match parse(&v) {
                    Ok(t) => items.push(t),
                    Err(e) => {
                        tracing::warn!(azure.operation = op.as_str(), error = %e, "skipping an item Azure returned");
                    }
                }
            }
        })
        .await?;
        Ok(items)
    }

    /// Follows `nextLink` from `first`, handing each page's items to `on_page` before asking for the next.
    async fn for_each_page(
        &self,
        op: Operation,
        first: Url,
        mut on_page: impl FnMut(Vec<Value>),
    ) -> Result<(), AzureError> {
        let mut url = first.clone();
        let mut seen = HashSet::new();
        for _ in 0..self.inner().max_pages {
            let page = self.get_json(op, url.clone()).await?;
            let (values, next) = wire::take_list_page(page).ok_or_else(|| AzureError::Decode {
                operation: op.as_str(),
                message: "no `value` array".into(),
            })?;
            on_page(values);
            let Some(next) = next else { return Ok(()) };
            let next = Url::parse(&next).map_err(|e| AzureError::Decode {
                operation: op.as_str(),
                message: format!("bad nextLink: {e}"),
            })?;
            if !same_origin(&first, &next) {
                return Err(AzureError::Decode {
                    operation: op.as_str(),
                    message: "nextLink points to another host".into(),
                });
            }
            if !seen.insert(next.as_str().to_owned()) {
                return Err(AzureError::Decode {
                    operation: op.as_str(),
                    message: "nextLink loops".into(),
                });
            }
            url = next;
        }
        Err(AzureError::Decode {
            operation: op.as_str(),
            message: format!("more than {} pages", self.inner().max_pages),
        })
    }

    /// The cluster, or `None` when it does not exist (any more).
    pub async fn get_cluster(&self, id: &ResourceId) -> Result<Option<Cluster>, AzureError> {
        if !id.is_exact(ArmKind::ManagedCluster) {
            return Err(AzureError::InvalidRequest(format!(
                "not a managed cluster id: `{id}`"
            )));
        }
        let url = self.arm_url(
            check_scope(id.as_str())?,
            api_versions::MANAGED_CLUSTERS,
            &[],
        )?;
        let Some(v) = self.get_optional(Operation::GetCluster, url).await? else {
            return Ok(None);
        };
        wire::cluster_from_arm(&v)
            .map(Some)
            .map_err(|e| AzureError::Decode {
                operation: Operation::GetCluster.as_str(),
                message: e.to_string(),
            })
    }

    pub async fn list_clusters(&self, subscription_id: &str) -> Result<Vec<Cluster>, AzureError> {
        let path = format!(
            "{}/providers/Microsoft.ContainerService/managedClusters",
            subscription_path(subscription_id)?
        );
        let url = self.arm_url(&path, api_versions::MANAGED_CLUSTERS, &[])?;
        self.get_all_parsed(Operation::ListClusters, url, wire::cluster_from_arm)
            .await
    }

    pub async fn get_registry(&self, id: &ResourceId) -> Result<Option<Registry>, AzureError> {
        if !id.is_exact(ArmKind::Registry) {
            return Err(AzureError::InvalidRequest(format!(
                "not a registry id: `{id}`"
            )));
        }
        let url = self.arm_url(check_scope(id.as_str())?, api_versions::REGISTRIES, &[])?;
        let Some(v) = self.get_optional(Operation::GetRegistry, url).await? else {
            return Ok(None);
        };
        wire::registry_from_arm(&v)
            .map(Some)
            .map_err(|e| AzureError::Decode {
                operation: Operation::GetRegistry.as_str(),
                message: e.to_string(),
            })
    }

    pub async fn list_registries(
        &self,
        subscription_id: &str,
    ) -> Result<Vec<Registry>, AzureError> {
        let path = format!(
            "{}/providers/Microsoft.ContainerRegistry/registries",
            subscription_path(subscription_id)?
        );
        let url = self.arm_url(&path, api_versions::REGISTRIES, &[])?;
        self.get_all_parsed(Operation::ListRegistries, url, wire::registry_from_arm)
            .await
    }

    /// The subscriptions the identity can see (all states; see [`Subscription::is_enabled`]).
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, AzureError> {
        let url = self.arm_url("/subscriptions", api_versions::SUBSCRIPTIONS, &[])?;
        self.get_all_parsed(
            Operation::ListSubscriptions,
            url,
            wire::subscription_from_arm,
        )
        .await
    }

    pub async fn list_role_assignments(
        &self,
        scope: &str,
        filter: &AssignmentFilter,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        let path = format!("{}{ROLE_ASSIGNMENTS}", check_scope(scope)?);
        let filter_text = match filter {
            AssignmentFilter::AtScope => Some("atScope()".to_owned()),
            AssignmentFilter::Principal(id) => {
                if !is_guid_like(id) {
                    return Err(AzureError::InvalidRequest(format!(
                        "not a principal id: `{id}`"
                    )));
                }
                Some(format!("principalId eq '{id}'"))
            }
            AssignmentFilter::AssignedTo(id) => {
                if !is_guid_like(id) {
                    return Err(AzureError::InvalidRequest(format!(
                        "not a principal id: `{id}`"
                    )));
                }
                Some(format!("assignedTo('{id}')"))
            }
            AssignmentFilter::All => None,
        };
        let extra: Vec<(&str, &str)> = filter_text
            .as_deref()
            .map(|f| ("$filter", f))
            .into_iter()
            .collect();
        let url = self.arm_url(&path, api_versions::AUTHORIZATION, &extra)?;
        let mut reader = wire::RoleAssignmentReader::default();
        self.get_all_parsed(Operation::ListRoleAssignments, url, |v| reader.read(v))
            .await
    }

    /// PUT a role assignment. The last line of defence (issue 10, rule 1), on top of the planner's: only the
    /// two pull roles, only at a registry's own scope (its exact ARM id), only with the role's id in the
    /// registry's subscription and the deterministic name. `PrincipalNotFound` is retried with back-off,
    /// bounded.
    pub async fn put_role_assignment(
        &self,
        new: &AssignmentSpec,
    ) -> Result<PutOutcome, AzureError> {
        let Some(role) = PullRole::from_definition_guid(&new.role_definition_id) else {
            return Err(AzureError::InvalidRequest(format!(
                "refusing to assign role `{}`: only AcrPull and Container Registry Repository Reader are allowed",
                new.role_definition_id
            )));
        };
        if !new.scope.is_exact(ArmKind::Registry) {
            return Err(AzureError::InvalidRequest(format!(
                "refusing to assign at `{}`: only at a registry's own scope",
                new.scope
            )));
        }
        if !new
            .role_definition_id
            .eq_ignore_ascii_case(&role.definition_id(new.scope.subscription_id()))
            || new.name != assignment_name(&new.scope, &new.principal_id, role)
        {
            return Err(AzureError::InvalidRequest(format!(
                "refusing assignment `{}`: not the deterministic name and role id for its registry and principal",
                new.name
            )));
        }
        if !is_guid_like(&new.principal_id) {
            return Err(AzureError::InvalidRequest(format!(
                "not a principal id: `{}`",
                new.principal_id
            )));
        }
        let path = format!(
            "{}{ROLE_ASSIGNMENTS}/{}",
            check_scope(new.scope.as_str())?,
            new.name
        );
        let url = self.arm_url(&path, api_versions::AUTHORIZATION, &[])?;
        let body = new.request_body();
        let call = Call {
            op: Operation::PutRoleAssignment,
            method: Method::PUT,
            url,
            body: Some(&body),
            audience: Audience::Arm,
            retry_principal_not_found: true,
        };
        match self.execute(&call).await {
            Ok(reply) => {
                let assignment =
                    wire::role_assignment_from_arm(&reply.json(call.op)?).map_err(|e| {
                        AzureError::Decode {
                            operation: call.op.as_str(),
                            message: e.to_string(),
                        }
                    })?;
                Ok(if reply.status == 201 {
                    PutOutcome::Created(assignment)
                } else {
                    PutOutcome::Unchanged(assignment)
                })
            }
            Err(AzureError::Conflict { code, .. })
                if code.eq_ignore_ascii_case("RoleAssignmentExists") =>
            {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(e),
        }
    }

    /// DELETE a role assignment by its full id (nothing but a role assignment id is accepted).
    pub async fn delete_role_assignment(
        &self,
        assignment_id: &str,
    ) -> Result<DeleteOutcome, AzureError> {
        let id = check_scope(assignment_id)?;
        let lower = id.to_ascii_lowercase();
        let marker = "/providers/microsoft.authorization/roleassignments/";
        let is_assignment = lower.rfind(marker).is_some_and(|p| {
            let name = &id[p + marker.len()..];
            is_guid_like(name)
        });
        if !is_assignment {
            return Err(AzureError::InvalidRequest(format!(
                "not a role assignment id: `{assignment_id}`"
            )));
        }
        // The last line of defence (issue 10, rule 3): this project only ever removes at a registry's scope.
        let at_registry = lower.rfind(marker).is_some_and(|p| {
            ResourceId::parse(&id[..p]).is_ok_and(|scope| scope.is_exact(ArmKind::Registry))
        });
        if !at_registry {
            return Err(AzureError::InvalidRequest(format!(
                "refusing to delete `{assignment_id}`: not at a registry's own scope"
            )));
        }
        let url = self.arm_url(id, api_versions::AUTHORIZATION, &[])?;
        let call = Call {
            op: Operation::DeleteRoleAssignment,
            method: Method::DELETE,
            url,
            body: None,
            audience: Audience::Arm,
            retry_principal_not_found: false,
        };
        match self.execute(&call).await {
            Ok(reply) if reply.status == 204 => Ok(DeleteOutcome::AlreadyGone),
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(AzureError::NotFound { .. }) => Ok(DeleteOutcome::AlreadyGone),
            Err(e) => Err(e),
        }
    }

    /// A role definition by GUID, read at `scope` (a subscription for custom roles); `None` when unknown.
    pub async fn get_role_definition(
        &self,
        scope: &str,
        guid: &str,
    ) -> Result<Option<RoleDefinition>, AzureError> {
        if !is_guid_like(guid) {
            return Err(AzureError::InvalidRequest(format!(
                "not a role definition GUID: `{guid}`"
            )));
        }
        let path = format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
            check_scope(scope)?
        );
        let url = self.arm_url(&path, api_versions::AUTHORIZATION, &[])?;
        let Some(v) = self.get_optional(Operation::GetRoleDefinition, url).await? else {
            return Ok(None);
        };
        wire::role_definition_from_arm(&v)
            .map(Some)
            .map_err(|e| AzureError::Decode {
                operation: Operation::GetRoleDefinition.as_str(),
                message: e.to_string(),
            })
    }
}

fn subscription_path(subscription_id: &str) -> Result<String, AzureError> {
    if !is_guid_like(subscription_id) {
        return Err(AzureError::InvalidRequest(format!(
            "not a subscription id: `{subscription_id}`"
        )));
    }
    Ok(format!("/subscriptions/{subscription_id}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn new_assignment_body_follows_arm_md() {
        let cluster = ResourceId::parse("/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/aks").unwrap();
        let registry = ResourceId::parse("/subscriptions/s2/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr").unwrap();
        let a = AssignmentSpec::new(
            &registry,
            " 0000-oid ",
            PullRole::RepositoryReader,
            &cluster,
        );
        assert_eq!(
            a.name,
            crate::core::model::assignment_name(&registry, "0000-oid", PullRole::RepositoryReader)
        );
        assert_eq!(
            a.request_body(),
            json!({"properties": {
                "roleDefinitionId": "/subscriptions/s2/providers/Microsoft.Authorization/roleDefinitions/b93aa761-3e63-49ed-ac28-beffa264f7ac",
                "principalId": "0000-oid",
                "principalType": "ServicePrincipal",
                "description": format!("managed-by: acr-autoattach cluster={cluster}"),
            }})
        );
        assert!(a.assignment_id().starts_with(registry.as_str()));
        assert!(a.assignment_id().ends_with(&a.name.to_string()));
    }

    #[test]
    fn scopes_are_checked_before_they_reach_a_url() {
        assert!(check_scope("/subscriptions/s/resourceGroups/rg").is_ok());
        assert!(check_scope("/providers/Microsoft.Management/managementGroups/mg").is_ok());
        for bad in [
            "",
            "/",
            "subscriptions/s",
            "/subscriptions/s?x",
            "/subscriptions//x",
            "/subscriptions/s/../t",
            "/other/x",
        ] {
            assert!(check_scope(bad).is_err(), "{bad}");
        }
        assert!(is_guid_like("7f951dda-4ed3-4680-a7ca-43fe172d538d"));
        assert!(!is_guid_like("x' or 1 eq 1"));
    }
}
