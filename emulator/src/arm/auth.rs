//! Bearer-token authentication for ARM and Microsoft Graph, with each service's 401 bodies.

use http::{HeaderMap, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::Outcome;
use crate::app::App;
use crate::store::rfc3339;
use crate::token::{self, Claims, TokenError};

/// Authenticates a bearer token for ARM (or Graph). Errors are ARM's 401 bodies.
pub(crate) fn authenticate(app: &App, headers: &HeaderMap, graph: bool) -> Result<Claims, Outcome> {
    let raw = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if raw.is_empty() {
        return Err(if graph {
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token is empty.",
            )
        } else {
            Outcome::error(
                StatusCode::UNAUTHORIZED,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        });
    }
    let Some(token) = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("bearer "))
    else {
        return Err(Outcome::error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailedInvalidHeader",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        ));
    };
    let now = OffsetDateTime::now_utc();
    match app.signer.verify(token.trim(), now.unix_timestamp()) {
        Ok(claims) => {
            let audience_ok = if graph {
                app.is_graph_audience(&claims.aud)
            } else {
                token::is_arm_audience(&claims.aud)
            };
            if audience_ok {
                Ok(claims)
            } else if graph {
                Err(graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "Access token validation failure. Invalid audience.",
                ))
            } else {
                Err(Outcome::error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationTokenAudience",
                    format!(
                        "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences {}.",
                        claims.aud,
                        token::ARM_AUDIENCES
                            .iter()
                            .map(|a| format!("'{a}'"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                ))
            }
        }
        Err(TokenError::Expired { exp }) => {
            let expired = OffsetDateTime::from_unix_timestamp(exp)
                .map(rfc_us)
                .unwrap_or_default();
            Err(if graph {
                graph_error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired.",
                )
            } else {
                Outcome::error(
                    StatusCode::UNAUTHORIZED,
                    "ExpiredAuthenticationToken",
                    format!(
                        "The access token expiry UTC time '{expired}' is earlier than current UTC time '{}'.",
                        rfc_us(now)
                    ),
                )
            })
        }
        Err(_) => Err(if graph {
            graph_error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            )
        } else {
            Outcome::error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
        }),
    }
}

pub(super) fn rfc_us(t: OffsetDateTime) -> String {
    format!(
        "{:02}/{:02}/{} {:02}:{:02}:{:02}",
        u8::from(t.month()),
        t.day(),
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Outcome {
    Outcome::json(
        status,
        json!({"error": {"code": code, "message": message, "innerError": {
            "date": rfc3339(OffsetDateTime::now_utc()),
            "request-id": uuid::Uuid::new_v4().to_string(),
            "client-request-id": uuid::Uuid::new_v4().to_string(),
        }}}),
    )
}
