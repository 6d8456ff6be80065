//! An ARM client for building an estate in the emulator the way a user would (`az` or the portal): PUTs of
//! resource groups, clusters, registries, tags and role assignments with a bearer token. The demo, the
//! integration tests and the benchmarks use it; nothing here reaches past the emulator's public HTTP API.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

pub const CLUSTERS_API: &str = "2026-02-01";
pub const REGISTRIES_API: &str = "2025-11-01";
pub const GROUPS_API: &str = "2024-11-01";
pub const TAGS_API: &str = "2024-11-01";
pub const ASSIGNMENTS_API: &str = "2022-04-01";

/// An ARM call that did not answer 2xx.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{method} {path}: {status} {code}: {message}")]
    Status {
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Transport(String),
    #[error("cluster {0} did not reach Succeeded in time")]
    NotReady(String),
}

/// A client acting as one principal (usually the emulator's admin).
#[derive(Clone)]
pub struct ArmAdmin {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl fmt::Debug for ArmAdmin {
    // The token is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmAdmin")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A managed cluster to create.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: Vec<(String, String)>,
    /// A service-principal cluster: the application (client) id of an application the Graph emulator knows.
    pub service_principal_client_id: Option<String>,
}

impl ClusterSpec {
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
            location: "westeurope".to_owned(),
            tags: Vec::new(),
            service_principal_client_id: None,
        }
    }

    #[must_use]
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn location(mut self, location: &str) -> Self {
        location.clone_into(&mut self.location);
        self
    }

    #[must_use]
    pub fn service_principal(mut self, client_id: &str) -> Self {
        self.service_principal_client_id = Some(client_id.to_owned());
        self
    }

    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    fn body(&self) -> Value {
        let mut properties = json!({
            "dnsPrefix": self.name,
            "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_DS2_v2", "mode": "System", "osType": "Linux"}],
        });
        let identity = match &self.service_principal_client_id {
            Some(client_id) => {
                properties["servicePrincipalProfile"] =
                    json!({"clientId": client_id, "secret": "not-a-real-secret"});
                Value::Null
            }
            None => json!({"type": "SystemAssigned"}),
        };
        let mut body = json!({"location": self.location, "tags": tags_json(&self.tags), "properties": properties});
        if !identity.is_null() {
            body["identity"] = identity;
        }
        body
    }
}

/// A container registry to create.
#[derive(Debug, Clone)]
pub struct RegistrySpec {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: Vec<(String, String)>,
    /// `roleAssignmentMode: AbacRepositoryPermissions`.
    pub abac: bool,
}

impl RegistrySpec {
    pub fn new(subscription: &str, resource_group: &str, name: &str) -> Self {
        Self {
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            name: name.to_owned(),
            location: "westeurope".to_owned(),
            tags: Vec::new(),
            abac: false,
        }
    }

    #[must_use]
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }

    #[must_use]
    pub fn abac(mut self) -> Self {
        self.abac = true;
        self
    }

    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ContainerRegistry/registries/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    fn body(&self) -> Value {
        let mode = if self.abac {
            "AbacRepositoryPermissions"
        } else {
            "LegacyRegistryPermissions"
        };
        json!({
            "location": self.location,
            "tags": tags_json(&self.tags),
            "sku": {"name": "Standard"},
            "properties": {"adminUserEnabled": false, "roleAssignmentMode": mode},
        })
    }
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

impl ArmAdmin {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            base: base_url.into().trim_end_matches('/').to_owned(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends one request; a non-2xx answer is an error carrying ARM's code and message. A 429 is retried after
    /// its `Retry-After` (as `az` does), a few times.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let mut attempt = 0;
        loop {
            match self.call_once(method.clone(), path, body).await {
                Err(AdminError::Status { status: 429, .. }) if attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(AdminError::Status {
                method: method.to_string(),
                path: path.split('?').next().unwrap_or_default().to_owned(),
                status,
                code: value["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                message: value["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            })
        }
    }

    pub async fn put_resource_group(
        &self,
        subscription: &str,
        name: &str,
        location: &str,
    ) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!(
                "/subscriptions/{subscription}/resourcegroups/{name}?api-version={GROUPS_API}"
            ),
            Some(&json!({"location": location})),
        )
        .await
    }

    pub async fn put_cluster(&self, spec: &ClusterSpec) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!("{}?api-version={CLUSTERS_API}", spec.id()),
            Some(&spec.body()),
        )
        .await
    }

    pub async fn put_registry(&self, spec: &RegistrySpec) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::PUT,
            &format!("{}?api-version={REGISTRIES_API}", spec.id()),
            Some(&spec.body()),
        )
        .await
    }

    /// Replaces a resource's tags through the Tags API (`PUT {id}/providers/Microsoft.Resources/tags/default`).
    pub async fn set_tags(
        &self,
        resource_id: &str,
        tags: &[(&str, &str)],
    ) -> Result<Value, AdminError> {
        let tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.call(
            reqwest::Method::PUT,
            &format!(
                "{resource_id}/providers/Microsoft.Resources/tags/default?api-version={TAGS_API}"
            ),
            Some(&json!({"properties": {"tags": tags_json(&tags)}})),
        )
        .await
    }

    pub async fn get_cluster(&self, id: &str) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::GET,
            &format!("{id}?api-version={CLUSTERS_API}"),
            None,
        )
        .await
    }

    pub async fn delete_cluster(&self, id: &str) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{id}?api-version={CLUSTERS_API}"),
            None,
        )
        .await
    }

    pub async fn delete_registry(&self, id: &str) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{id}?api-version={REGISTRIES_API}"),
            None,
        )
        .await
    }

    /// Polls until the cluster is `Succeeded`; returns its body (with the kubelet identity).
    pub async fn wait_cluster_succeeded(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<Value, AdminError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let body = self.get_cluster(id).await?;
            if body["properties"]["provisioningState"] == "Succeeded" {
                return Ok(body);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::NotReady(id.to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a role assignment as a person would (random name, no ownership mark unless `description` has it).
    pub async fn put_role_assignment(
        &self,
        scope: &str,
        role_guid: &str,
        principal_id: &str,
        description: Option<&str>,
    ) -> Result<Value, AdminError> {
        let subscription = scope.split('/').nth(2).unwrap_or_default();
        let mut properties = json!({
            "roleDefinitionId": format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"),
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
        });
        if let Some(d) = description {
            properties["description"] = json!(d);
        }
        let name = uuid::Uuid::new_v4();
        self.call(
            reqwest::Method::PUT,
            &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={ASSIGNMENTS_API}"),
            Some(&json!({"properties": properties})),
        )
        .await
    }

    pub async fn delete_role_assignment(&self, id: &str) -> Result<Value, AdminError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("{id}?api-version={ASSIGNMENTS_API}"),
            None,
        )
        .await
    }

    /// Every role assignment at, above and below `scope` (unfiltered list), following `nextLink`.
    pub async fn list_role_assignments(&self, scope: &str) -> Result<Vec<Value>, AdminError> {
        let mut out = Vec::new();
        let mut path = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version={ASSIGNMENTS_API}"
        );
        loop {
            let page = self.call(reqwest::Method::GET, &path, None).await?;
            out.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str() {
                Some(next) if !next.is_empty() => {
                    path = next.strip_prefix(&self.base).unwrap_or(next).to_owned();
                }
                _ => return Ok(out),
            }
        }
    }
}
