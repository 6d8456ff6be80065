//! Access tokens: the credential flavours (managed identity in Azure, developer tools on an operator's
//! machine), a small per-audience cache, and the unverified JWT claims (`oid`, `tid`) that ARM itself
//! throttles and authorizes by. A token never appears in `Debug`, errors or logs.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions as CoreClientOptions, RetryOptions};
use azure_identity::{
    DeveloperToolsCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId,
};
use base64::Engine;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{AzureError, truncate};

/// The ARM audience. Always this one, also against the emulator (it issues tokens for this audience).
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";
/// The Microsoft Graph audience.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// Azure Monitor ingestion (Application Insights with Microsoft Entra authentication): the scope the Azure
/// Monitor exporters of azure-sdk-for-python and -js request (audience `https://monitor.azure.com/`).
pub const MONITOR_SCOPE: &str = "https://monitor.azure.com//.default";

/// How to build a managed-identity credential.
#[derive(Debug, Clone, Default)]
pub struct ManagedIdentityOptions {
    /// The user-assigned identity's client id (`AZURE_CLIENT_ID`); `None` = system-assigned.
    pub user_assigned_client_id: Option<String>,
    /// Disable azure_identity's own retry policy (8 retries over ~60 s), e.g. in fault-injection tests where
    /// our retry policy and deadline must be the only ones at work.
    pub no_retry: bool,
}

impl ManagedIdentityOptions {
    /// Reads `AZURE_CLIENT_ID` through `lookup` (an environment abstraction, so tests need no process env).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            user_assigned_client_id: lookup("AZURE_CLIENT_ID").filter(|s| !s.trim().is_empty()),
            no_retry: false,
        }
    }
}

/// `ManagedIdentityCredential`: on Functions/App Service it speaks the App Service protocol through
/// `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, which azure_identity reads from the process environment once.
pub fn managed_identity_credential(
    options: &ManagedIdentityOptions,
) -> Result<Arc<dyn TokenCredential>, AzureError> {
    let mut client_options = CoreClientOptions::default();
    if options.no_retry {
        client_options.retry = RetryOptions::none();
    }
    let credential = ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
        user_assigned_id: options
            .user_assigned_client_id
            .clone()
            .map(UserAssignedId::ClientId),
        client_options,
    }))
    .map_err(|e| AzureError::Token(truncate(&e.to_string(), 300)))?;
    Ok(credential)
}

/// `DeveloperToolsCredential` (Azure CLI, then Azure Developer CLI) for operator commands.
pub fn developer_tools_credential() -> Result<Arc<dyn TokenCredential>, AzureError> {
    let credential = DeveloperToolsCredential::new(None)
        .map_err(|e| AzureError::Token(truncate(&e.to_string(), 300)))?;
    Ok(credential)
}

/// Who the token says we are (decoded without verification, as azure-cli does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenClaims {
    pub object_id: Option<String>,
    pub tenant_id: Option<String>,
    pub app_id: Option<String>,
}

impl TokenClaims {
    /// The claims of a JWT, or empty claims when it is not one.
    pub fn from_jwt(token: &str) -> Self {
        let Some(payload) = token.split('.').nth(1) else {
            return Self::default();
        };
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Ok(bytes) = engine.decode(payload.trim_end_matches('=')) else {
            return Self::default();
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Self::default();
        };
        let claim = |k: &str| {
            value
                .get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        Self {
            object_id: claim("oid"),
            tenant_id: claim("tid"),
            app_id: claim("appid").or_else(|| claim("azp")),
        }
    }
}

#[derive(Clone)]
struct CachedToken {
    secret: Secret,
    /// Refresh before this.
    refresh_at: Instant,
    claims: TokenClaims,
}

/// Tokens per audience, cached until shortly before they expire; fetches bounded by the caller's deadline.
pub struct TokenSource {
    credential: Arc<dyn TokenCredential>,
    cache: Mutex<HashMap<String, CachedToken>>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").finish_non_exhaustive()
    }
}

/// Refresh this long before expiry, so a token never expires mid-request.
const REFRESH_MARGIN: Duration = Duration::from_mins(5);

impl TokenSource {
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self {
            credential,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A bearer token for `scope`, and its claims.
    pub async fn token(
        &self,
        scope: &str,
        deadline: Instant,
    ) -> Result<(Secret, TokenClaims), AzureError> {
        // Held across the fetch on purpose: concurrent callers wait for one fetch instead of stampeding.
        let mut cache = tokio::time::timeout_at(deadline, self.cache.lock())
            .await
            .map_err(|_| AzureError::DeadlineExceeded {
                during: "waiting for an access token",
            })?;
        let now = Instant::now();
        if let Some(cached) = cache.get(scope)
            && now < cached.refresh_at
        {
            return Ok((cached.secret.clone(), cached.claims.clone()));
        }
        let fetched = tokio::time::timeout_at(deadline, self.credential.get_token(&[scope], None))
            .await
            .map_err(|_| AzureError::DeadlineExceeded {
                during: "getting an access token",
            })?
            .map_err(|e| AzureError::Token(truncate(&e.to_string(), 300)))?;
        let claims = TokenClaims::from_jwt(fetched.token.secret());
        let lifetime = fetched.expires_on - azure_core::time::OffsetDateTime::now_utc();
        let lifetime = Duration::try_from(lifetime).unwrap_or(Duration::ZERO);
        let cached = CachedToken {
            secret: fetched.token.clone(),
            refresh_at: now + lifetime.saturating_sub(REFRESH_MARGIN),
            claims: claims.clone(),
        };
        cache.insert(scope.to_owned(), cached);
        Ok((fetched.token, claims))
    }

    /// Forget a token Azure refused (401), so the next call fetches a fresh one.
    pub async fn invalidate(&self, scope: &str) {
        self.cache.lock().await.remove(scope);
    }

    /// The claims of the cached ARM token, when one was fetched already.
    pub async fn cached_claims(&self, scope: &str) -> Option<TokenClaims> {
        self.cache.lock().await.get(scope).map(|c| c.claims.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_unverified_jwts() {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = engine.encode(
            br#"{"oid":"o-1","tid":"t-1","appid":"a-1","aud":"https://management.azure.com"}"#,
        );
        let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let c = TokenClaims::from_jwt(&jwt);
        assert_eq!(c.object_id.as_deref(), Some("o-1"));
        assert_eq!(c.tenant_id.as_deref(), Some("t-1"));
        assert_eq!(c.app_id.as_deref(), Some("a-1"));
        assert_eq!(TokenClaims::from_jwt("opaque"), TokenClaims::default());
        assert_eq!(TokenClaims::from_jwt("a.!!!.c"), TokenClaims::default());
    }

    #[test]
    fn client_id_comes_from_the_environment_abstraction() {
        let o = ManagedIdentityOptions::from_env(|k| {
            (k == "AZURE_CLIENT_ID").then(|| "cid".to_owned())
        });
        assert_eq!(o.user_assigned_client_id.as_deref(), Some("cid"));
        let o = ManagedIdentityOptions::from_env(|_| Some("  ".to_owned()));
        assert_eq!(o.user_assigned_client_id, None);
    }
}
