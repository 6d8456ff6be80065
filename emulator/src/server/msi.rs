//! The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`).

use http::{Method, StatusCode};
use serde_json::json;

use crate::app::{App, lock};
use crate::arm::{Outcome, Request};
use crate::token;

/// The App Service managed-identity protocol (`IDENTITY_ENDPOINT` + `x-identity-header`).
pub(super) fn token_endpoint(app: &App, req: &Request<'_>) -> Outcome {
    let bad = |status: StatusCode, error: &str, description: &str| {
        Outcome::json(
            status,
            json!({"error": error, "error_description": description}),
        )
    };
    if *req.method != Method::GET {
        return bad(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "Only GET is supported.",
        );
    }
    let presented = req
        .headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !crate::crypto::constant_time_eq(presented.as_bytes(), app.identity_header.as_bytes()) {
        return bad(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "The x-identity-header header is missing or does not match IDENTITY_HEADER.",
        );
    }
    if req.query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version must be 2019-08-01.",
        );
    }
    let Some(resource) = req.query.get("resource").cloned() else {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The resource parameter is required.",
        );
    };
    if !token::is_arm_audience(&resource)
        && !app.is_graph_audience(&resource)
        && !token::is_monitor_audience(&resource)
    {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            &format!(
                "AADSTS500011: The resource principal named {resource} was not found in the tenant."
            ),
        );
    }
    if app.token_fault() {
        return bad(
            StatusCode::INTERNAL_SERVER_ERROR,
            "service_unavailable",
            "The managed identity endpoint failed (injected fault).",
        );
    }
    let principal = {
        let store = lock(&app.store);
        let handler = store.principal(&app.handler_object_id).cloned();
        if let Some(client_id) = req.query.get("client_id") {
            store
                .principal_by_app_id(client_id)
                .filter(|p| p.service_principal_type == "ManagedIdentity")
                .cloned()
        } else if let Some(object_id) = req
            .query
            .get("object_id")
            .or_else(|| req.query.get("principal_id"))
        {
            store
                .principal(object_id)
                .filter(|p| p.service_principal_type == "ManagedIdentity")
                .cloned()
        } else if let Some(rid) = req
            .query
            .get("mi_res_id")
            .or_else(|| req.query.get("msi_res_id"))
        {
            store.principal_by_resource_id(rid).cloned()
        } else if app.config.handler_user_assigned {
            // Only a user-assigned identity is attached: App Service needs it named.
            None
        } else {
            handler
        }
    };
    let Some(principal) = principal else {
        return bad(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found: the requested identity has not been assigned to this resource.",
        );
    };
    let (access_token, exp) = app.mint_token(&principal, &resource);
    Outcome::json(
        StatusCode::OK,
        json!({
            "access_token": access_token,
            "expires_on": exp.to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": principal.app_id,
        }),
    )
}
