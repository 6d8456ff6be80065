//! The HTTP server: one loopback port serving ARM, Resource Graph, Microsoft Graph, the managed-identity token
//! endpoint and the `/_emulator/` control API; plus the Rust handle tests use.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, FaultDecision, PrincipalSpec, lock};
use crate::arm::{self, Outcome, Request, Route};
use crate::bus::EventBus;
use crate::config::{EmulatorConfig, FaultConfig, Settings};
use crate::rbac;
use crate::resource_graph;
use crate::stats::StatsSnapshot;
use crate::store::{Principal, PrincipalKind};
use crate::token;

/// Why the emulator could not start or a control operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind 127.0.0.1:{port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("unknown principal `{0}`")]
    UnknownPrincipal(String),
    #[error("invalid control input: {0}")]
    Invalid(String),
}

/// Entry point: `Emulator::start(config).await`.
pub struct Emulator;

impl Emulator {
    /// Binds 127.0.0.1:`config.port` (0 = a free port) and serves until the returned handle is dropped.
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        Self::start_with_bus(config, EventBus::new()).await
    }

    /// As [`Emulator::start`], publishing ARM events on an existing bus.
    pub async fn start_with_bus(
        config: EmulatorConfig,
        bus: EventBus,
    ) -> Result<RunningEmulator, EmulatorError> {
        let port = config.port;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| EmulatorError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { port, source })?;
        let base_url = format!("http://{addr}");
        let app = App::new(config, base_url, bus);
        let router = router(app.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(RunningEmulator {
            control: EmulatorControl { app },
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    control: EmulatorControl,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    /// `http://127.0.0.1:PORT` — ARM, Resource Graph and Graph are all served here.
    pub fn base_url(&self) -> String {
        self.control.app.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bus(&self) -> EventBus {
        self.control.app.bus.clone()
    }

    /// The environment a handler needs (endpoint variables and the identity header secret).
    pub fn env(&self) -> Vec<(String, String)> {
        let base = self.base_url();
        let app = &self.control.app;
        let mut env = vec![
            ("AUTOATTACH_ARM_ENDPOINT".to_owned(), base.clone()),
            ("AUTOATTACH_GRAPH_ENDPOINT".to_owned(), base.clone()),
            (
                "AUTOATTACH_RESOURCE_GRAPH_ENDPOINT".to_owned(),
                base.clone(),
            ),
            ("IDENTITY_ENDPOINT".to_owned(), format!("{base}/msi/token")),
            ("IDENTITY_HEADER".to_owned(), app.identity_header.clone()),
            (
                "AZURE_TENANT_ID".to_owned(),
                app.config.default_tenant.clone(),
            ),
        ];
        if app.config.handler_user_assigned {
            env.push(("AZURE_CLIENT_ID".to_owned(), app.handler_client_id.clone()));
        }
        env
    }

    /// A cloneable control handle (outlives nothing: it keeps state, not the server, alive).
    pub fn control(&self) -> EmulatorControl {
        self.control.clone()
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Deref for RunningEmulator {
    type Target = EmulatorControl;

    fn deref(&self) -> &EmulatorControl {
        &self.control
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Test and demo controls: principals, tokens, grants, faults, settings, stats, reset.
#[derive(Clone)]
pub struct EmulatorControl {
    app: Arc<App>,
}

impl std::fmt::Debug for EmulatorControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorControl")
            .field("base_url", &self.app.base_url)
            .finish_non_exhaustive()
    }
}

impl EmulatorControl {
    /// Object id of the handler's managed identity.
    pub fn handler_principal_id(&self) -> String {
        self.app.handler_object_id.clone()
    }

    /// Client id of the handler's managed identity.
    pub fn handler_client_id(&self) -> String {
        self.app.handler_client_id.clone()
    }

    /// Object id of the admin user (Owner on every configured subscription).
    pub fn admin_principal_id(&self) -> String {
        self.app.admin_object_id.clone()
    }

    pub fn default_tenant(&self) -> String {
        self.app.config.default_tenant.clone()
    }

    /// The configured subscription ids.
    pub fn subscriptions(&self) -> Vec<String> {
        self.app
            .config
            .subscriptions
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    /// A signed token for `object_id` with audience `audience` (e.g. `https://management.azure.com`).
    pub fn token_for(&self, object_id: &str, audience: &str) -> Result<String, EmulatorError> {
        let principal = self
            .principal(object_id)
            .ok_or_else(|| EmulatorError::UnknownPrincipal(object_id.to_owned()))?;
        Ok(self.app.mint_token(&principal, audience).0)
    }

    /// An ARM token for `object_id`.
    pub fn arm_token(&self, object_id: &str) -> Result<String, EmulatorError> {
        self.token_for(object_id, "https://management.azure.com")
    }

    /// An ARM token for the admin user.
    pub fn admin_token(&self) -> String {
        self.arm_token(&self.app.admin_object_id)
            .unwrap_or_default()
    }

    /// An ARM token for the handler identity.
    pub fn handler_token(&self) -> String {
        self.arm_token(&self.app.handler_object_id)
            .unwrap_or_default()
    }

    pub fn principal(&self, object_id: &str) -> Option<Principal> {
        lock(&self.app.store).principal(object_id).cloned()
    }

    pub fn create_principal(&self, spec: PrincipalSpec) -> Principal {
        self.app.create_principal(spec)
    }

    /// A replicated application service principal (usable by a service-principal cluster).
    pub fn create_service_principal(&self, display_name: &str) -> Principal {
        self.app
            .create_principal(PrincipalSpec::service_principal(display_name))
    }

    /// A replicated user.
    pub fn create_user(&self, display_name: &str) -> Principal {
        self.app.create_principal(PrincipalSpec::user(display_name))
    }

    /// A user-assigned managed identity (e.g. to bring as a cluster's kubelet identity), created now (so it is
    /// inside the replication window).
    pub fn create_user_assigned_identity(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Principal {
        let rid = format!(
            "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        );
        self.app.create_principal(PrincipalSpec {
            managed_identity_resource_id: Some(rid),
            replicated: false,
            ..PrincipalSpec::service_principal(name)
        })
    }

    /// Assigns `role` (a GUID) to `principal` at `scope` directly (setup: no ARM checks, no event).
    pub fn grant(&self, principal: &str, role: &str, scope: &str) -> String {
        let kind = self
            .principal(principal)
            .map_or("ServicePrincipal", |p| p.kind.as_str());
        self.app.grant(principal, role, scope, kind, None)
    }

    /// As [`grant`](Self::grant) with an ABAC condition (version 2.0).
    pub fn grant_with_condition(
        &self,
        principal: &str,
        role: &str,
        scope: &str,
        condition: &str,
    ) -> String {
        let kind = self
            .principal(principal)
            .map_or("ServicePrincipal", |p| p.kind.as_str());
        self.app
            .grant(principal, role, scope, kind, Some(condition.to_owned()))
    }

    /// Creates a custom role (setup) and returns its GUID.
    pub fn create_custom_role(
        &self,
        role_name: &str,
        actions: &[&str],
        data_actions: &[&str],
    ) -> String {
        let guid = self.app.new_id();
        let def = rbac::RoleDefinition {
            name: guid.clone(),
            role_name: role_name.to_owned(),
            description: String::new(),
            built_in: false,
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            not_actions: Vec::new(),
            data_actions: data_actions.iter().map(|s| (*s).to_owned()).collect(),
            not_data_actions: Vec::new(),
            assignable_scopes: vec!["/".to_owned()],
        };
        lock(&self.app.store)
            .role_definitions
            .insert(guid.clone(), def);
        guid
    }

    pub fn faults(&self) -> FaultConfig {
        lock(&self.app.faults).config.clone()
    }

    /// Replaces the fault configuration (and reseeds the RNG from `faults.seed`).
    pub fn set_faults(&self, faults: FaultConfig) {
        *lock(&self.app.faults) = crate::app::FaultState::new(faults);
        lock(&self.app.buckets).clear();
    }

    pub fn update_faults(&self, change: impl FnOnce(&mut FaultConfig)) {
        let mut faults = self.faults();
        change(&mut faults);
        self.set_faults(faults);
    }

    pub fn settings(&self) -> Settings {
        lock(&self.app.settings).clone()
    }

    pub fn set_settings(&self, settings: Settings) {
        *lock(&self.app.settings) = settings;
    }

    pub fn update_settings(&self, change: impl FnOnce(&mut Settings)) {
        change(&mut lock(&self.app.settings));
    }

    pub fn stats(&self) -> StatsSnapshot {
        lock(&self.app.stats).snapshot()
    }

    pub fn reset_stats(&self) {
        lock(&self.app.stats).clear();
    }

    /// Clears everything back to the start state (resources, assignments, directory, limits, stats, settings,
    /// faults).
    pub fn reset(&self) {
        self.app.reset();
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_emulator/stats", get(control_stats))
        .route("/_emulator/stats/reset", post(control_stats_reset))
        .route("/_emulator/reset", post(control_reset))
        .route(
            "/_emulator/faults",
            get(control_get_faults)
                .put(control_put_faults)
                .patch(control_put_faults),
        )
        .route(
            "/_emulator/settings",
            get(control_get_settings)
                .put(control_put_settings)
                .patch(control_put_settings),
        )
        .route(
            "/_emulator/principals",
            get(control_list_principals).post(control_create_principal),
        )
        .route("/_emulator/tokens", post(control_token))
        .route("/_emulator/grants", post(control_grant))
        .route("/_emulator/info", get(control_info))
        .fallback(service)
        .with_state(app)
}

/// Every non-control request: faults, then the service, then stats.
async fn service(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> Response {
    // ARM echoes the caller's correlation id (or makes one); events carry the same id.
    let correlation = headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    if let Ok(v) = HeaderValue::from_str(&correlation) {
        headers.insert(CORRELATION_HEADER, v);
    }
    let path = uri.path().to_owned();
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let query = arm::parse_query(&raw_query);
    let lower = path.to_ascii_lowercase();
    let kind = if lower == "/msi/token" {
        ServiceKind::Token
    } else if lower.starts_with("/v1.0/") {
        ServiceKind::Graph
    } else if lower.trim_end_matches('/') == "/providers/microsoft.resourcegraph/resources" {
        ServiceKind::ResourceGraph
    } else {
        ServiceKind::Arm(arm::parse_route(&path))
    };
    let label = match &kind {
        ServiceKind::Token => "GET token".to_owned(),
        ServiceKind::Graph => "GET graph servicePrincipals".to_owned(),
        ServiceKind::ResourceGraph => "POST resourcegraph".to_owned(),
        ServiceKind::Arm(route) => arm::label(&method, route),
    };
    let (decision, latency) = app.decide_fault();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let peek_caller = || {
        headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|t| {
                app.signer
                    .verify(t, time::OffsetDateTime::now_utc().unix_timestamp())
                    .ok()
            })
            .map(|c| c.oid)
    };
    if !matches!(kind, ServiceKind::Token) {
        match decision {
            FaultDecision::Pass => {}
            FaultDecision::ServerError(status) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                lock(&app.stats).record(&label, status.as_u16(), peek_caller().as_deref());
                let code = if status == StatusCode::SERVICE_UNAVAILABLE {
                    "ServiceUnavailable"
                } else {
                    "InternalServerError"
                };
                return with_correlation(
                    to_response(Outcome::error(
                        status,
                        code,
                        "The service is temporarily unavailable (injected fault). Please retry.",
                    )),
                    &correlation,
                );
            }
            FaultDecision::Reset => {
                lock(&app.stats).record(&label, 0, peek_caller().as_deref());
                return reset_response();
            }
        }
    }
    let req = Request {
        method: &method,
        path: &path,
        query,
        raw_query: &raw_query,
        headers: &headers,
        body: &body,
    };
    let (outcome, caller) = match &kind {
        ServiceKind::Token => (token_endpoint(&app, &req), None),
        ServiceKind::Graph => graph_endpoint(&app, &req),
        ServiceKind::ResourceGraph => resource_graph::handle(&app, &req),
        ServiceKind::Arm(route) => arm::handle(&app, &req, route),
    };
    lock(&app.stats).record(&label, outcome.status.as_u16(), caller.as_deref());
    if !outcome.events.is_empty() {
        app.publish(&outcome.events);
    }
    if let Some((key, generation)) = outcome.provision.clone() {
        let delay = Duration::from_millis(lock(&app.settings).cluster_provisioning_ms);
        let app = app.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let events = arm::complete_cluster(&app, &key, generation);
            app.publish(&events);
        });
    }
    with_correlation(to_response(outcome), &correlation)
}

const CORRELATION_HEADER: &str = "x-ms-correlation-request-id";

fn with_correlation(mut response: Response, correlation: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(correlation) {
        response.headers_mut().insert(CORRELATION_HEADER, v);
    }
    response
}

enum ServiceKind {
    Token,
    Graph,
    ResourceGraph,
    Arm(Route),
}

/// A response whose body fails mid-stream: the client sees the connection drop before a complete answer.
fn reset_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "injected connection reset",
        ))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn to_response(outcome: Outcome) -> Response {
    let mut response = match outcome.body {
        Some(body) => {
            let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        None => Response::new(Body::empty()),
    };
    *response.status_mut() = outcome.status;
    let headers = response.headers_mut();
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-ms-request-id", v);
    }
    for (name, value) in outcome.headers {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(n, v);
        }
    }
    response
}

/// The App Service managed-identity protocol (`IDENTITY_ENDPOINT` + `x-identity-header`).
fn token_endpoint(app: &App, req: &Request<'_>) -> Outcome {
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
    if !token::is_arm_audience(&resource) && !token::is_graph_audience(&resource) {
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

/// Microsoft Graph: `servicePrincipals(appId='…')` and `servicePrincipals/{id}`.
fn graph_endpoint(app: &App, req: &Request<'_>) -> (Outcome, Option<String>) {
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

#[derive(Deserialize)]
struct CallerQuery {
    caller: Option<String>,
}

async fn control_stats(State(app): State<Arc<App>>, Query(q): Query<CallerQuery>) -> Response {
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

async fn control_stats_reset(State(app): State<Arc<App>>) -> StatusCode {
    lock(&app.stats).clear();
    StatusCode::NO_CONTENT
}

async fn control_reset(State(app): State<Arc<App>>) -> StatusCode {
    app.reset();
    StatusCode::NO_CONTENT
}

/// Merges a partial JSON object into a serialisable value.
fn merge<T: serde::Serialize + serde::de::DeserializeOwned>(
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

fn control_error(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"code": "InvalidControlRequest", "message": message}})),
    )
        .into_response()
}

async fn control_get_faults(State(app): State<Arc<App>>) -> Response {
    axum::Json(lock(&app.faults).config.clone()).into_response()
}

async fn control_put_faults(State(app): State<Arc<App>>, body: Bytes) -> Response {
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

async fn control_get_settings(State(app): State<Arc<App>>) -> Response {
    axum::Json(lock(&app.settings).clone()).into_response()
}

async fn control_put_settings(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return control_error(&e.to_string()),
    };
    let current = lock(&app.settings).clone();
    match merge(&current, &patch) {
        Ok(new) => {
            *lock(&app.settings) = new.clone();
            axum::Json(new).into_response()
        }
        Err(e) => control_error(&e),
    }
}

async fn control_list_principals(State(app): State<Arc<App>>) -> Response {
    let principals: Vec<Principal> = lock(&app.store).principals.values().cloned().collect();
    axum::Json(principals).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPrincipal {
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

fn default_kind() -> PrincipalKind {
    PrincipalKind::ServicePrincipal
}

fn default_true() -> bool {
    true
}

async fn control_create_principal(State(app): State<Arc<App>>, body: Bytes) -> Response {
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
struct TokenRequest {
    object_id: String,
    #[serde(default = "default_resource")]
    resource: String,
}

fn default_resource() -> String {
    "https://management.azure.com".to_owned()
}

async fn control_token(State(app): State<Arc<App>>, body: Bytes) -> Response {
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
struct GrantRequest {
    principal_id: String,
    role_definition_id: String,
    scope: String,
    condition: Option<String>,
}

async fn control_grant(State(app): State<Arc<App>>, body: Bytes) -> Response {
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

async fn control_info(State(app): State<Arc<App>>) -> Response {
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
