//! The one error type of the Azure client. Each variant doubles as a metric label ([`AzureError::kind`]) and
//! says whether retrying later can help ([`AzureError::is_transient`]). No variant ever carries a token.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AzureError {
    /// 429 and the advertised wait did not fit before the deadline (or attempts ran out).
    #[error("throttled by Azure{}", retry_after.map(|d| format!(" (retry after {} s)", d.as_secs())).unwrap_or_default())]
    Throttled { retry_after: Option<Duration> },
    /// 5xx after the retries allowed.
    #[error("Azure answered {status}{}", fmt_code(code.as_deref(), message.as_deref()))]
    Server {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// One attempt exceeded the per-request timeout (and the retries did too).
    #[error("request timed out")]
    Timeout,
    /// The invocation's deadline passed (or the next step could not finish before it).
    #[error("deadline exceeded while {during}")]
    DeadlineExceeded { during: &'static str },
    /// The TCP/TLS connection could not be made.
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("unauthorized (401){}", fmt_code(code.as_deref(), message.as_deref()))]
    Unauthorized {
        code: Option<String>,
        message: Option<String>,
    },
    /// 403, e.g. `AuthorizationFailed`: the caller lacks a permission at that scope.
    #[error("forbidden (403){}", fmt_code(Some(code), Some(message)))]
    Forbidden { code: String, message: String },
    #[error("not found (404){}", fmt_code(code.as_deref(), None))]
    NotFound { code: Option<String> },
    #[error("conflict (409){}", fmt_code(Some(code), Some(message)))]
    Conflict { code: String, message: String },
    /// 400 `PrincipalNotFound`: the principal has not replicated to the directory yet (transient).
    #[error("principal not found in the directory yet: {message}")]
    PrincipalNotFound { message: String },
    /// 400 `RoleAssignmentLimitExceeded`: the subscription holds Azure's fixed maximum of role assignments
    /// (4,000; it cannot be raised). Retrying cannot help until assignments are removed.
    #[error("role assignment limit exceeded (400): {message}")]
    RoleAssignmentLimitExceeded { message: String },
    /// Microsoft Graph's 403 `Authorization_RequestDenied`: the application lacks a Graph permission (an app role,
    /// granted only with a directory administrator's consent). `needs` names what would allow the call.
    #[error(
        "Microsoft Graph refused {operation} (403 Authorization_RequestDenied): the identity needs the Graph application permission {needs}"
    )]
    GraphPermissionMissing {
        operation: &'static str,
        needs: &'static str,
    },
    #[error("bad request (400){}", fmt_code(Some(code), Some(message)))]
    BadRequest { code: String, message: String },
    /// Any other 4xx.
    #[error("Azure answered {status}{}", fmt_code(code.as_deref(), message.as_deref()))]
    Http {
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// The credential could not produce a token. The message never contains a token.
    #[error("could not get an access token: {0}")]
    Token(String),
    /// The answer could not be understood.
    #[error("could not decode the answer of {operation}: {message}")]
    Decode {
        operation: &'static str,
        message: String,
    },
    /// The caller asked for something that cannot be sent safely (e.g. an id that is not a role assignment).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn fmt_code(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) if !m.is_empty() => format!(": {c}: {m}"),
        (Some(c), _) => format!(": {c}"),
        (None, Some(m)) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

impl AzureError {
    /// A stable, low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::Server { .. } => "server",
            Self::Timeout => "timeout",
            Self::DeadlineExceeded { .. } => "deadline_exceeded",
            Self::Connect(_) => "connect",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::PrincipalNotFound { .. } => "principal_not_found",
            Self::RoleAssignmentLimitExceeded { .. } => "role_assignment_limit_exceeded",
            Self::GraphPermissionMissing { .. } => "graph_permission_missing",
            Self::BadRequest { .. } => "bad_request",
            Self::Http { .. } => "http",
            Self::Token(_) => "token",
            Self::Decode { .. } => "decode",
            Self::InvalidRequest(_) => "invalid_request",
        }
    }

    /// True when the same call may succeed later (the invocation should fail so the platform retries);
    /// false when retrying cannot help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. }
                | Self::Server { .. }
                | Self::Timeout
                | Self::DeadlineExceeded { .. }
                | Self::Connect(_)
                | Self::PrincipalNotFound { .. }
                | Self::Token(_)
        )
    }

    /// The ARM error code, when the answer carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Http { code, .. }
            | Self::NotFound { code } => code.as_deref(),
            Self::Forbidden { code, .. }
            | Self::Conflict { code, .. }
            | Self::BadRequest { code, .. } => Some(code),
            Self::PrincipalNotFound { .. } => Some("PrincipalNotFound"),
            Self::RoleAssignmentLimitExceeded { .. } => Some("RoleAssignmentLimitExceeded"),
            Self::GraphPermissionMissing { .. } => Some("Authorization_RequestDenied"),
            _ => None,
        }
    }
}

/// `{"error": {"code", "message"}}`, the error body of ARM, Resource Graph and Microsoft Graph.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

impl ErrorBody {
    pub fn parse(body: &[u8]) -> Self {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Self::default();
        };
        let err = value.get("error").unwrap_or(&value);
        let text = |k: &str| {
            err.get(k)
                .and_then(serde_json::Value::as_str)
                .map(|s| truncate(s, 500))
        };
        Self {
            code: text("code"),
            message: text("message"),
        }
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Maps a non-success status and its body to the error. 429 and 5xx are mapped too, for the retry loop.
pub fn error_from_status(status: u16, body: &[u8], retry_after: Option<Duration>) -> AzureError {
    let ErrorBody { code, message } = ErrorBody::parse(body);
    match status {
        429 => AzureError::Throttled { retry_after },
        500..=599 => AzureError::Server {
            status,
            code,
            message,
        },
        401 => AzureError::Unauthorized { code, message },
        403 => AzureError::Forbidden {
            code: code.unwrap_or_else(|| "Forbidden".into()),
            message: message.unwrap_or_default(),
        },
        404 => AzureError::NotFound { code },
        409 => AzureError::Conflict {
            code: code.unwrap_or_else(|| "Conflict".into()),
            message: message.unwrap_or_default(),
        },
        400 if code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("PrincipalNotFound")) =>
        {
            AzureError::PrincipalNotFound {
                message: message.unwrap_or_default(),
            }
        }
        400 if code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("RoleAssignmentLimitExceeded")) =>
        {
            AzureError::RoleAssignmentLimitExceeded {
                message: message.unwrap_or_default(),
            }
        }
        400 => AzureError::BadRequest {
            code: code.unwrap_or_else(|| "BadRequest".into()),
            message: message.unwrap_or_default(),
        },
        _ => AzureError::Http {
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_error_bodies_map_to_variants() {
        let forbidden = br#"{"error":{"code":"AuthorizationFailed","message":"The client 'x' does not have authorization"}}"#;
        let e = error_from_status(403, forbidden, None);
        assert_eq!(
            e,
            AzureError::Forbidden {
                code: "AuthorizationFailed".into(),
                message: "The client 'x' does not have authorization".into()
            }
        );
        assert!(!e.is_transient());
        assert_eq!(e.kind(), "forbidden");
        assert_eq!(e.code(), Some("AuthorizationFailed"));

        let pnf = error_from_status(
            400,
            br#"{"error":{"code":"PrincipalNotFound","message":"no"}}"#,
            None,
        );
        assert!(matches!(pnf, AzureError::PrincipalNotFound { .. }));
        assert!(pnf.is_transient());

        let bad = error_from_status(
            400,
            br#"{"error":{"code":"InvalidApiVersionParameter","message":"m"}}"#,
            None,
        );
        assert_eq!(bad.code(), Some("InvalidApiVersionParameter"));
        assert!(!bad.is_transient());

        let exists = error_from_status(
            409,
            br#"{"error":{"code":"RoleAssignmentExists","message":"m"}}"#,
            None,
        );
        assert_eq!(exists.code(), Some("RoleAssignmentExists"));

        let server = error_from_status(503, b"not json", None);
        assert_eq!(
            server,
            AzureError::Server {
                status: 503,
                code: None,
                message: None
            }
        );
        assert!(server.is_transient());

        let throttled = error_from_status(429, b"", Some(Duration::from_secs(3)));
        assert!(throttled.is_transient());
        assert_eq!(
            throttled.to_string(),
            "throttled by Azure (retry after 3 s)"
        );
        assert_eq!(error_from_status(418, b"{}", None).kind(), "http");

        let full = error_from_status(
            400,
            br#"{"error":{"code":"RoleAssignmentLimitExceeded","message":"No more role assignments can be created in subscription 's1'"}}"#,
            None,
        );
        assert_eq!(full.kind(), "role_assignment_limit_exceeded");
        assert!(!full.is_transient(), "retrying cannot help");
        assert!(!matches!(full, AzureError::BadRequest { .. }));
        assert_eq!(full.code(), Some("RoleAssignmentLimitExceeded"));
    }

    #[test]
    fn long_messages_are_truncated_on_char_boundaries() {
        let long = "é".repeat(400);
        let body = serde_json::json!({"error": {"code": "X", "message": long}}).to_string();
        let parsed = ErrorBody::parse(body.as_bytes());
        assert!(parsed.message.is_some_and(|m| m.len() <= 504));
    }
}
