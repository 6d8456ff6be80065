//! Tokens straight from the emulator's signer for one principal, without the managed-identity protocol (that
//! protocol is tested on its own: `client_emulator::managed_identity_credential_gets_tokens_from_the_emulator`,
//! `telemetry_entra`). For tests that drive `AzureClient` or `Engine` in process.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_emulator::EmulatorControl;

#[derive(Debug)]
pub struct EmulatorCredential {
    control: EmulatorControl,
    object_id: String,
    /// Hand out this many invalid tokens first (a revoked or corrupted token).
    invalid_first: AtomicU32,
}

impl EmulatorCredential {
    /// Tokens for `object_id` (its Graph app roles travel in the `roles` claim, as the emulator grants them).
    pub fn for_principal(control: EmulatorControl, object_id: &str) -> Self {
        Self {
            control,
            object_id: object_id.to_owned(),
            invalid_first: AtomicU32::new(0),
        }
    }

    /// Tokens for the handler's identity.
    pub fn for_handler(control: EmulatorControl) -> Self {
        let object_id = control.handler_principal_id();
        Self::for_principal(control, &object_id)
    }

    /// The first `n` tokens are not tokens at all (`not.a.token`).
    #[must_use]
    pub fn with_invalid_first(self, n: u32) -> Self {
        self.invalid_first.store(n, Ordering::SeqCst);
        self
    }
}

impl TokenCredential for EmulatorCredential {
    fn get_token<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        scopes: &'life1 [&'life2 str],
        _options: Option<TokenRequestOptions<'life3>>,
    ) -> Pin<Box<dyn Future<Output = azure_core::Result<AccessToken>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let audience = scopes
            .first()
            .map(|s| s.trim_end_matches("/.default").to_owned())
            .unwrap_or_default();
        Box::pin(async move {
            let expires = azure_core::time::OffsetDateTime::now_utc() + Duration::from_hours(1);
            if self
                .invalid_first
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Ok(AccessToken::new("not.a.token", expires));
            }
            let token = self
                .control
                .token_for(&self.object_id, &audience)
                .map_err(|e| {
                    azure_core::Error::with_message(
                        azure_core::error::ErrorKind::Credential,
                        e.to_string(),
                    )
                })?;
            Ok(AccessToken::new(token, expires))
        })
    }
}
