//! Microsoft Graph: the service-principal look-ups the handler makes.

use http::{Method, StatusCode};
use serde_json::json;

use crate::app::{App, lock};
use crate::arm::{self, Outcome, Request};
use crate::store::PrincipalKind;

/// Microsoft Graph: `servicePrincipals(appId='…')` and `servicePrincipals/{id}`.
pub(super) fn graph_endpoint(app: &App, req: &Request<'_>) -> (Outcome, Option<String>) {
    let claims = match arm::authenticate(app, req.headers, true) {
        Ok(c) => c,
        Err(e) => return (e, None),
    };
    let caller = Some(claims.oid.clone());
    if *req.method != Method::GET {
        return (
            arm::graph_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "Request_BadRequest",
                "Only GET is supported by this emulator.",
            ),
            caller,
        );
    }
    let rest = &req.path["/v1.0/".len()..];
    let store = lock(&app.store);
    let (found, key) = if let Some(inner) = rest
        .strip_prefix("servicePrincipals(appId=")
        .and_then(|r| r.strip_suffix(')'))
    {
        let app_id = inner.trim_matches('\'').trim_matches('"').to_owned();
        (
            store
                .principal_by_app_id(&app_id)
                .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
                .cloned(),
            app_id,
        )
    } else if let Some(id) = rest.strip_prefix("servicePrincipals/") {
        let id = id.trim_end_matches('/').to_owned();
        (
            store
                .principal(&id)
                .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
                .cloned(),
            id,
        )
    } else {
        return (
            arm::graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!(
                    "Resource not found for the segment '{}'.",
                    rest.split('/').next().unwrap_or_default()
                ),
            ),
            caller,
        );
    };
    drop(store);
    match found {
        Some(p) => (
            Outcome::json(
                StatusCode::OK,
                json!({
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#servicePrincipals/$entity",
                    "id": p.object_id,
                    "appId": p.app_id,
                    "displayName": p.display_name,
                    "servicePrincipalType": p.service_principal_type,
                    "accountEnabled": true,
                    "appOwnerOrganizationId": p.tenant_id,
                    "alternativeNames": p.managed_identity_resource_id.iter().collect::<Vec<_>>(),
                    "servicePrincipalNames": [p.app_id],
                }),
            ),
            caller,
        ),
        None => (
            arm::graph_error(
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                &format!(
                    "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
                ),
            ),
            caller,
        ),
    }
}
