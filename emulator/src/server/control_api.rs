//! The HTTP control API under `/_emulator/`: stats, reset, faults, settings, principals, tokens, grants, info.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{App, PrincipalSpec, lock};
use crate::rbac;
use crate::store::{Principal, PrincipalKind};

#[derive(Deserialize)]
pub(super) struct CallerQuery {
    caller: Option<String>,
}

pub(super) async fn control_stats(
    State(app): State<Arc<App>>,
    Query(q): Query<CallerQuery>,
) -> Response {
    let snapshot = lock(&app.stats).snapshot();
    let snapshot = match &q.caller {
        Some(c) => snapshot.for_caller(c),
        None => snapshot,
    };
    axum::Json(json!({
        "total": snapshot.total(),
        "byOperation": snapshot.by_operation(),
        "byStatus": snapshot.by_status().into_iter().map(|(k, v)| (k.to_string(), v)).collect::<std::collections::BTreeMap<_, _>>(),
        "entries": snapshot.entries,
    }))
    .into_response()
}

pub(super) async fn control_stats_reset(State(app): State<Arc<App>>) -> StatusCode {
    lock(&app.stats).clear();
    StatusCode::NO_CONTENT
}

pub(super) async fn control_reset(State(app): State<Arc<App>>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

/// Merges a partial JSON object into a serialisable value.
pub(super) fn merge<T: serde::Serialize + serde::de::DeserializeOwned>(
    current: &T,
    patch: &Value,
) -> Result<T, String> {
    let mut value = serde_json::to_value(current).map_err(|e| e.to_string())?;
    let (Some(target), Some(patch)) = (value.as_object_mut(), patch.as_object()) else {
        return Err("the body must be a JSON object".into());
    };
    for (k, v) in patch {
        target.insert(k.clone(), v.clone());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

pub(super) fn control_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"code": "InvalidControlRequest", "message": message}})),
    )
        .into_response()
}

pub(super) async fn control_get_faults(State(app): State<Arc<App>>) -> Response {
    axum::Json(lock(&app.faults).config.clone()).into_response()
}

pub(super) async fn control_put_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let current = lock(&app.faults).config.clone();
    match merge(&current, &patch) {
        Ok(new) => {
            let reseed = new.seed != current.seed;
            let mut faults = lock(&app.faults);
            if reseed {
                *faults = crate::app::FaultState::new(new.clone());
            } else {
                faults.config = new.clone();
            }
            drop(faults);
            axum::Json(new).into_response()
        }
        Err(e) => control_error(&e),
    }
}

pub(super) async fn control_get_settings(State(app): State<Arc<App>>) -> Response {
    axum::Json(lock(&app.settings).clone()).into_response()
}

pub(super) async fn control_put_settings(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let current = lock(&app.settings).clone();
    match merge(&current, &patch) {
        Ok(new) => {
            app.set_settings(new.clone());
            axum::Json(new).into_response()
        }
        Err(e) => control_error(&e),
    }
}

pub(super) async fn control_list_principals(State(app): State<Arc<App>>) -> Response {
    let principals: Vec<Principal> = lock(&app.store).principals.values().cloned().collect();
    axum::Json(principals).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewPrincipal {
    display_name: String,
    #[serde(default = "default_kind")]
    kind: PrincipalKind,
    object_id: Option<String>,
    app_id: Option<String>,
    tenant_id: Option<String>,
    managed_identity_resource_id: Option<String>,
    #[serde(default = "default_true")]
    replicated: bool,
}

pub(super) fn default_kind() -> PrincipalKind {
    PrincipalKind::ServicePrincipal
}

pub(super) fn default_true() -> bool {
    true
}

pub(super) async fn control_create_principal(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let spec: NewPrincipal = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    for id in [&spec.object_id, &spec.app_id, &spec.tenant_id]
        .into_iter()
        .flatten()
    {
        if uuid::Uuid::parse_str(id).is_err() {
            return control_error(&format!("`{id}` is not a GUID"));
        }
    }
    let principal = app.create_principal(PrincipalSpec {
        display_name: spec.display_name,
        kind: spec.kind,
        object_id: spec.object_id,
        app_id: spec.app_id,
        tenant_id: spec.tenant_id,
        managed_identity_resource_id: spec.managed_identity_resource_id,
        replicated: spec.replicated,
    });
    (StatusCode::CREATED, axum::Json(principal)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenRequest {
    object_id: String,
    #[serde(default = "default_resource")]
    resource: String,
}

pub(super) fn default_resource() -> String {
    "https://management.azure.com".to_owned()
}

pub(super) async fn control_token(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request: TokenRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let principal = lock(&app.store).principal(&request.object_id).cloned();
    let Some(principal) = principal else {
        return control_error("unknown principal");
    };
    let (token, exp) = app.mint_token(&principal, &request.resource);
    axum::Json(
        json!({"access_token": token, "expires_on": exp.to_string(), "resource": request.resource}),
    )
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GrantRequest {
    principal_id: String,
    role_definition_id: String,
    scope: String,
    condition: Option<String>,
}

pub(super) async fn control_grant(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request: GrantRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let Some(role) = rbac::role_definition_guid(&request.role_definition_id) else {
        return control_error("roleDefinitionId must be or end in a GUID");
    };
    let kind = lock(&app.store)
        .principal(&request.principal_id)
        .map_or("ServicePrincipal", |p| p.kind.as_str());
    let name = app.grant(
        &request.principal_id,
        &role,
        &request.scope,
        kind,
        request.condition,
    );
    (StatusCode::CREATED, axum::Json(json!({"name": name}))).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GraphRoleRequest {
    principal_id: String,
    role: String,
}

/// `POST /_emulator/graph-app-roles`: a Microsoft Graph application permission consented for a principal.
pub(super) async fn control_graph_app_role(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let request: GraphRoleRequest = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let mut store = lock(&app.store);
    if store.principal(&request.principal_id).is_none() {
        return control_error("unknown principal");
    }
    store
        .graph_app_roles
        .entry(request.principal_id.to_ascii_lowercase())
        .or_default()
        .insert(request.role);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CanPullQuery {
    principal_id: String,
    registry_id: String,
}

/// `GET /_emulator/can-pull?principalId=…&registryId=…`: `{"canPull": bool}` as the registry's data plane would
/// decide now; 404 for an unknown registry.
pub(super) async fn control_can_pull(
    State(app): State<Arc<App>>,
    axum::extract::Query(q): axum::extract::Query<CanPullQuery>,
) -> Response {
    match lock(&app.store).can_pull(&q.principal_id, &q.registry_id) {
        Some(can) => axum::Json(json!({"canPull": can})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "unknown registry"})),
        )
            .into_response(),
    }
}

pub(super) async fn control_info(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({
        "baseUrl": app.base_url,
        "tenantId": app.config.default_tenant,
        "subscriptions": app.config.subscriptions,
        "handlerPrincipalId": app.handler_object_id,
        "handlerClientId": app.handler_client_id,
        "adminPrincipalId": app.admin_object_id,
    }))
    .into_response()
}
