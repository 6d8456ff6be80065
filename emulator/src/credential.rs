//! An `azure_core` token credential that speaks the App Service managed-identity protocol to a given
//! endpoint: what `azure_identity::ManagedIdentityCredential` does, minus reading the process environment.
//!
//! `ManagedIdentityCredential` takes `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` from the process environment only,
//! and edition 2024 makes setting the environment `unsafe` (forbidden here), so in-process tests and the demo
//! use this credential against the emulator; spawned handler processes use the real one.

use std::fmt;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::error::{Error, ErrorKind};
use serde::Deserialize;
use time::OffsetDateTime;

/// Tokens from an App Service style identity endpoint (the emulator's).
#[derive(Clone)]
pub struct AppServiceCredential {
    endpoint: String,
    header: String,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for AppServiceCredential {
    // The identity header is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppServiceCredential")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_on: String,
}

impl AppServiceCredential {
    /// `endpoint` and `header` as `IDENTITY_ENDPOINT` and `IDENTITY_HEADER`; `client_id` selects a user-assigned
    /// identity.
    pub fn new(
        endpoint: impl Into<String>,
        header: impl Into<String>,
        client_id: Option<String>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            header: header.into(),
            client_id,
            http: reqwest::Client::new(),
        }
    }

    /// From the `export` variables a running emulator hands out (`RunningEmulator::env`).
    pub fn from_env_pairs(env: &[(String, String)]) -> Option<Self> {
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        Some(Self::new(
            get("IDENTITY_ENDPOINT")?,
            get("IDENTITY_HEADER")?,
            get("AZURE_CLIENT_ID"),
        ))
    }
}

#[async_trait::async_trait]
impl TokenCredential for AppServiceCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let scope = scopes
            .first()
            .ok_or_else(|| Error::with_message(ErrorKind::Credential, "no scope requested"))?;
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut query = vec![("api-version", "2019-08-01"), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let url = url::Url::parse_with_params(&self.endpoint, &query).map_err(|e| {
            Error::with_message(ErrorKind::Credential, format!("bad identity endpoint: {e}"))
        })?;
        let response = self
            .http
            .get(url)
            .header("x-identity-header", &self.header)
            .send()
            .await
            .map_err(|e| {
                Error::with_message(
                    ErrorKind::Credential,
                    format!("token endpoint unreachable: {e}"),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::with_message(
                ErrorKind::Credential,
                format!("token endpoint answered {status}"),
            ));
        }
        let answer: TokenAnswer = response.json().await.map_err(|e| {
            Error::with_message(
                ErrorKind::Credential,
                format!("token answer unreadable: {e}"),
            )
        })?;
        let expires = answer
            .expires_on
            .trim()
            .parse::<i64>()
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| {
                Error::with_message(ErrorKind::Credential, "expires_on is not unix seconds")
            })?;
        Ok(AccessToken::new(answer.access_token, expires))
    }
}
