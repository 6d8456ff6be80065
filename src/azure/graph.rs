//! Microsoft Graph: only to turn a service-principal cluster's client id into the object id to grant.

use reqwest::Method;

use super::ScopedClient;
use super::error::AzureError;
use super::http::{Audience, Call, Operation, join};

impl ScopedClient {
    /// `GET /v1.0/servicePrincipals(appId='{app_id}')` → its object id; `None` when no such principal.
    pub async fn resolve_service_principal(
        &self,
        app_id: &str,
    ) -> Result<Option<String>, AzureError> {
        let app_id = app_id.trim();
        // Client ids are GUIDs; anything else must not be spliced into an OData key.
        if app_id.is_empty() || !app_id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(AzureError::InvalidRequest(format!(
                "not an application id: `{app_id}`"
            )));
        }
        let url = join(
            &self.inner().graph,
            &format!("/v1.0/servicePrincipals(appId='{app_id}')"),
        )?;
        let call = Call {
            op: Operation::GraphServicePrincipal,
            method: Method::GET,
            url,
            body: None,
            audience: Audience::Graph,
            retry_principal_not_found: false,
        };
        match self.execute(&call).await {
            Ok(reply) => {
                let v = reply.json(call.op)?;
                let id = v
                    .get("id")
                    .and_then(serde_json::Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty());
                id.map(|s| Some(s.to_owned()))
                    .ok_or_else(|| AzureError::Decode {
                        operation: call.op.as_str(),
                        message: "service principal without `id`".into(),
                    })
            }
            Err(AzureError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
