//! Access tokens: JWTs (`header.claims.signature`, base64url) signed with HS256 under a key made fresh for each
//! run, so a token from another run, an edited token or a hand-made one is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::crypto::{constant_time_eq, hmac_sha256};

pub const ARM_AUDIENCES: [&str; 4] = [
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];
pub const GRAPH_AUDIENCES: [&str; 3] = [
    "https://graph.microsoft.com",
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000",
];

/// Azure Monitor ingestion (Application Insights with Microsoft Entra authentication), public cloud.
pub const MONITOR_AUDIENCES: [&str; 2] =
    ["https://monitor.azure.com", "https://monitor.azure.com/"];

/// The claims the emulator puts into (and reads from) a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: String,
    pub iss: String,
    pub tid: String,
    pub oid: String,
    pub sub: String,
    pub appid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default)]
    pub idtyp: String,
    #[serde(default)]
    pub xms_mirid: Option<String>,
    /// Application permissions (app roles) of the token's audience granted to the principal, as Entra ID puts
    /// them into an app-only token (e.g. `Group.Create` for Microsoft Graph).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Claims {
    /// The claims as the string map Event Grid puts into `data.claims`.
    pub fn as_event_claims(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        map.insert("aud".to_owned(), self.aud.clone());
        map.insert("iss".to_owned(), self.iss.clone());
        map.insert("iat".to_owned(), self.iat.to_string());
        map.insert("nbf".to_owned(), self.nbf.to_string());
        map.insert("exp".to_owned(), self.exp.to_string());
        map.insert("appid".to_owned(), self.appid.clone());
        map.insert(
            "http://schemas.microsoft.com/identity/claims/objectidentifier".to_owned(),
            self.oid.clone(),
        );
        map.insert(
            "http://schemas.microsoft.com/identity/claims/tenantid".to_owned(),
            self.tid.clone(),
        );
        map.insert("oid".to_owned(), self.oid.clone());
        map.insert("tid".to_owned(), self.tid.clone());
        if let Some(mirid) = &self.xms_mirid {
            map.insert("xms_mirid".to_owned(), mirid.clone());
        }
        map
    }
}

/// Why a presented token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token expired at {exp}")]
    Expired { exp: i64 },
    #[error("the token is not valid before {nbf}")]
    NotYetValid { nbf: i64 },
}

/// Tokens whose signature was verified, kept at most this many: clients present the same token on every request
/// until it expires, so the HMAC and the claims' decoding run once per token, not once per request.
const VERIFIED_CAPACITY: usize = 4096;

/// Signs and verifies tokens. `Debug` never shows the key. Clones share the key and the verified tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: [u8; 32],
    /// Token text → its claims, for tokens whose signature checked out (the text is the whole token, signature
    /// included, so an edited token is never found here). The validity window is checked on every use.
    verified: Arc<Mutex<HashMap<String, Claims>>>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner { key: <redacted> }")
    }
}

impl TokenSigner {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key,
            verified: Arc::default(),
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{body}");
        let signature = URL_SAFE_NO_PAD.encode(hmac_sha256(&self.key, signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Checks shape, signature and validity window (at `now`, unix seconds, with no clock skew allowance).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let known = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned();
        let claims = if let Some(claims) = known {
            claims
        } else {
            let claims = self.verify_signature(token)?;
            let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), claims.clone());
            claims
        };
        if claims.exp <= now {
            return Err(TokenError::Expired { exp: claims.exp });
        }
        if claims.nbf > now {
            return Err(TokenError::NotYetValid { nbf: claims.nbf });
        }
        Ok(claims)
    }

    /// The claims of a well-formed token signed with this key, whatever its validity window.
    fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        let expected = hmac_sha256(&self.key, format!("{header}.{body}").as_bytes());
        if !constant_time_eq(&signature, &expected) {
            return Err(TokenError::BadSignature);
        }
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&body).map_err(|_| TokenError::Malformed)
    }
}

/// Reads a token's claims without verifying it (as azure-cli does to learn the tenant).
pub fn decode_unverified(token: &str) -> Option<Claims> {
    let body = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
}

pub fn is_arm_audience(aud: &str) -> bool {
    ARM_AUDIENCES.contains(&aud)
}

pub fn is_graph_audience(aud: &str) -> bool {
    GRAPH_AUDIENCES.contains(&aud)
}

pub fn is_monitor_audience(aud: &str) -> bool {
    MONITOR_AUDIENCES.contains(&aud)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            aud: "https://management.azure.com".into(),
            iss: "https://sts.windows.net/t/".into(),
            tid: "t".into(),
            oid: "o".into(),
            sub: "o".into(),
            appid: "a".into(),
            iat: 100,
            nbf: 100,
            exp,
            idtyp: "app".into(),
            xms_mirid: None,
            roles: Vec::new(),
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let signer = TokenSigner::new([7; 32]);
        let token = signer.sign(&claims(200));
        assert_eq!(signer.verify(&token, 150).unwrap(), claims(200));
        assert_eq!(decode_unverified(&token).unwrap().oid, "o");
        assert_eq!(
            signer.verify(&token, 200),
            Err(TokenError::Expired { exp: 200 })
        );
        assert_eq!(
            signer.verify(&token, 50),
            Err(TokenError::NotYetValid { nbf: 100 })
        );
        let other = TokenSigner::new([8; 32]);
        assert_eq!(other.verify(&token, 150), Err(TokenError::BadSignature));
        // Editing the claims (e.g. another oid) breaks the signature.
        let forged_body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                oid: "x".into(),
                ..claims(200)
            })
            .unwrap(),
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_body;
        assert_eq!(
            signer.verify(&parts.join("."), 150),
            Err(TokenError::BadSignature)
        );
        assert_eq!(signer.verify("abc", 150), Err(TokenError::Malformed));
    }
    /// A verified token is remembered by its whole text: its window is still checked on every use, and a token
    /// with the same header and claims but another signature is refused after the genuine one was seen.
    #[test]
    fn a_remembered_token_is_still_checked() {
        let signer = TokenSigner::new([7; 32]);
        let token = signer.sign(&claims(200));
        assert_eq!(signer.verify(&token, 150).unwrap(), claims(200));
        assert_eq!(signer.verified.lock().unwrap().len(), 1);
        assert_eq!(signer.verify(&token, 150).unwrap(), claims(200));
        assert_eq!(
            signer.verify(&token, 250),
            Err(TokenError::Expired { exp: 200 })
        );
        assert_eq!(
            signer.verify(&token, 50),
            Err(TokenError::NotYetValid { nbf: 100 })
        );
        let (signing_input, _) = token.rsplit_once('.').unwrap();
        let resigned = TokenSigner::new([8; 32]).sign(&claims(200));
        let (_, other_signature) = resigned.rsplit_once('.').unwrap();
        let forged = format!("{signing_input}.{other_signature}");
        assert_eq!(signer.verify(&forged, 150), Err(TokenError::BadSignature));
        // A clone shares what was verified; the memory stays bounded.
        let clone = signer.clone();
        for exp in 0..=VERIFIED_CAPACITY {
            let t = clone.sign(&claims(1_000 + i64::try_from(exp).unwrap()));
            assert!(clone.verify(&t, 150).is_ok());
        }
        assert!(signer.verified.lock().unwrap().len() <= VERIFIED_CAPACITY);
        assert_eq!(signer.verify(&token, 150).unwrap(), claims(200));
    }
}
