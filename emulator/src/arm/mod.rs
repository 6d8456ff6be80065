//! ARM request handling: routing by path as `management.azure.com` does, authentication, api-version checks,
//! throttling, authorization, and the semantics of each resource type — one module per resource provider,
//! the shared request plumbing (errors, authorization, scopes, events) here.

mod auth;
mod generic;
mod managed_clusters;
mod metadata;
mod paging;
mod registries;
mod resource_groups;
mod role_assignments;
mod role_definitions;
mod routes;
mod subscriptions;
mod tags;
mod versions;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::app::{App, lock, str_at};
use crate::bus::{ArmEvent, ArmOperationKind};
use crate::limits::{RequestClass, Take};
use crate::rbac;
use crate::store::{ResourceKind, Store};
use crate::token::Claims;

use generic::{delete_resource, get_resource, list_generic_resources, list_resources};
use managed_clusters::{get_operation, put_cluster};
use registries::{patch_registry, put_registry};
use resource_groups::{delete_resource_group, put_resource_group};
use role_assignments::{
    delete_role_assignment, get_role_assignment, list_role_assignments, put_role_assignment,
};
use role_definitions::{get_role_definition, list_role_definitions, put_role_definition};
use routes::{request_class, route_subscription};
use subscriptions::{get_subscription, list_subscriptions};
use tags::{get_tags, put_tags};
use versions::api_versions;

pub(crate) use auth::{authenticate, graph_error};
pub(crate) use managed_clusters::complete_cluster;
pub(crate) use metadata::metadata_endpoints;
pub(crate) use routes::{Route, label, parse_route};
pub(crate) use versions::check_api_version;
pub use versions::{
    CLUSTER_API_VERSIONS, REGISTRY_API_VERSIONS, RESOURCE_GRAPH_API_VERSIONS,
    RESOURCES_API_VERSIONS, ROLE_ASSIGNMENT_API_VERSIONS, ROLE_DEFINITION_API_VERSIONS,
    SUBSCRIPTION_API_VERSIONS,
};

/// The result of one ARM request, before it becomes an HTTP response.
pub(crate) struct Outcome {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(String, String)>,
    pub events: Vec<ArmEvent>,
    pub provision: Option<(String, u64)>,
}

impl Outcome {
    pub fn json(status: StatusCode, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
            events: Vec::new(),
            provision: None,
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            headers: Vec::new(),
            events: Vec::new(),
            provision: None,
        }
    }

    pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            json!({"error": {"code": code, "message": message.into()}}),
        )
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// Everything about the request the handlers need.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: BTreeMap<String, String>,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// `scheme://host[:port]` as the client addressed the emulator (`X-Forwarded-Proto` / `X-Forwarded-Host`,
    /// else `Host`, else the listener's own address): links in answers (`nextLink`, `Azure-AsyncOperation`) use it.
    pub origin: String,
}

/// The origin a request was addressed to: forwarded headers first, then `Host`; the listener's scheme unless a
/// proxy says otherwise. A header that is not a plain host (and optional port) is ignored.
pub(crate) fn request_origin(headers: &HeaderMap, base_url: &str) -> String {
    let (own_scheme, own_host) = base_url.split_once("://").unwrap_or(("http", base_url));
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let plain_host = |h: &&str| {
        h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    let scheme = header("x-forwarded-proto")
        .filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"))
        .map_or_else(|| own_scheme.to_owned(), str::to_ascii_lowercase);
    let host = header("x-forwarded-host")
        .filter(plain_host)
        .or_else(|| header("host").filter(plain_host))
        .unwrap_or(own_host);
    format!("{scheme}://{host}")
}

pub(crate) fn parse_query(raw: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect()
}

fn authorization_failed(claims: &Claims, action: &str, scope: &str) -> Outcome {
    Outcome::error(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
            oid = claims.oid
        ),
    )
}

/// Handles one ARM request. Returns the outcome and the caller's object id (for stats).
pub(crate) fn handle(
    app: &Arc<App>,
    req: &Request<'_>,
    route: &Route,
) -> (Outcome, Option<String>) {
    let claims = match authenticate(app, req.headers, false) {
        Ok(c) => c,
        Err(outcome) => return (outcome, None),
    };
    let caller = Some(claims.oid.clone());
    let outcome = handle_authenticated(app, req, route, &claims);
    (outcome, caller)
}

fn handle_authenticated(
    app: &Arc<App>,
    req: &Request<'_>,
    route: &Route,
    claims: &Claims,
) -> Outcome {
    if *route == Route::Unknown {
        // ARM answers an unknown path under a subscription with the provider's error; keep it honest and simple.
        return Outcome::error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!(
                "The resource type could not be found for the path '{}' (this emulator serves clusters, registries, resource groups, tags, role assignments and role definitions).",
                req.path
            ),
        );
    }
    let location = {
        let store = lock(&app.store);
        existing_location(&store, route)
            .unwrap_or_else(|| body_location(req.body).unwrap_or_else(|| "global".to_owned()))
    };
    let (versions, provider_type) = api_versions(route);
    if let Err(e) = check_api_version(
        &req.query,
        versions,
        provider_type,
        &location,
        &app.config.locations,
    ) {
        return e;
    }
    let mut headers = Vec::new();
    if let Some(sub) = route_subscription(route) {
        if let Err(e) = check_subscription_tenant(app, claims, &sub) {
            return e;
        }
        match throttle(app, req, claims, &sub) {
            Ok(Some(header)) => headers.push(header),
            Ok(None) => {}
            Err(e) => return e,
        }
    }
    let mut outcome = dispatch(app, req, route, claims);
    outcome.headers.extend(headers);
    outcome
}

/// 404 for an unknown subscription; 401 when the token's tenant is not the subscription's.
fn check_subscription_tenant(app: &App, claims: &Claims, sub: &str) -> Result<(), Outcome> {
    let store = lock(&app.store);
    let Some(subscription) = store.subscription(sub) else {
        return Err(Outcome::error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    };
    if subscription.tenant_id.eq_ignore_ascii_case(&claims.tid) {
        return Ok(());
    }
    Err(Outcome::error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationTokenTenant",
        format!(
            "The access token is from the wrong issuer 'https://sts.windows.net/{}/'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
            claims.tid, subscription.tenant_id, subscription.tenant_id
        ),
    ))
}

/// ARM's token buckets per principal and subscription: the remaining-count header, or 429 when empty.
fn throttle(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
) -> Result<Option<(String, String)>, Outcome> {
    let faults = lock(&app.faults).config.clone();
    if !faults.throttling {
        return Ok(None);
    }
    let class = request_class(req.method);
    let limit = match class {
        RequestClass::Read => faults.reads,
        RequestClass::Write => faults.writes,
        RequestClass::Delete => faults.deletes,
    };
    let header = format!(
        "x-ms-ratelimit-remaining-subscription-{}",
        class.header_suffix()
    );
    match lock(&app.buckets).take(&claims.oid, sub, class, limit, Instant::now()) {
        Take::Allowed { remaining } => Ok(Some((header, remaining.to_string()))),
        Take::Throttled { retry_after_secs } => Err(Outcome::error(
            StatusCode::TOO_MANY_REQUESTS,
            "SubscriptionRequestsThrottled",
            format!(
                "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                class.word(),
                claims.oid
            ),
        )
        .header("Retry-After", retry_after_secs.to_string())
        .header(&header, "0")),
    }
}

fn existing_location(store: &Store, route: &Route) -> Option<String> {
    let id = match route {
        Route::Item {
            sub,
            rg,
            kind,
            name,
        } => item_id(sub, rg, *kind, name),
        Route::ResourceGroup { sub, rg } => Store::resource_group_id(sub, rg),
        _ => return None,
    };
    store
        .resources
        .get(&id.to_ascii_lowercase())
        .and_then(|r| str_at(&r.body, &["location"]).map(str::to_owned))
}

fn body_location(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("location").and_then(Value::as_str).map(str::to_owned))
}

fn item_id(sub: &str, rg: &str, kind: ResourceKind, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/{}/{name}",
        kind.arm_type()
    )
}

fn dispatch(app: &Arc<App>, req: &Request<'_>, route: &Route, claims: &Claims) -> Outcome {
    match (req.method.clone(), route) {
        (Method::GET, Route::Subscriptions) => list_subscriptions(app, req, claims),
        (Method::GET, Route::Subscription { sub }) => get_subscription(app, claims, sub),
        (Method::GET, Route::ResourceGroups { sub }) => {
            list_resources(app, req, claims, sub, None, ResourceKind::ResourceGroup)
        }
        (Method::GET, Route::ResourceGroup { sub, rg }) => get_resource(
            app,
            claims,
            &Store::resource_group_id(sub, rg),
            ResourceKind::ResourceGroup,
            rg,
        ),
        (Method::PUT, Route::ResourceGroup { sub, rg }) => {
            put_resource_group(app, req, claims, sub, rg)
        }
        (Method::DELETE, Route::ResourceGroup { sub, rg }) => {
            delete_resource_group(app, req, claims, sub, rg)
        }
        (Method::GET, Route::Collection { sub, rg, kind }) => {
            list_resources(app, req, claims, sub, rg.as_deref(), *kind)
        }
        (
            Method::GET,
            Route::Item {
                sub,
                rg,
                kind,
                name,
            },
        ) => {
            if let Some(e) = require_rg(
                app,
                claims,
                sub,
                rg,
                &format!("{}/read", kind.action_prefix()),
                &item_id(sub, rg, *kind, name),
            ) {
                return e;
            }
            get_resource(app, claims, &item_id(sub, rg, *kind, name), *kind, name)
        }
        (
            Method::PUT,
            Route::Item {
                sub,
                rg,
                kind: ResourceKind::Cluster,
                name,
            },
        ) => put_cluster(app, req, claims, sub, rg, name),
        (
            Method::PUT,
            Route::Item {
                sub,
                rg,
                kind: ResourceKind::Registry,
                name,
            },
        ) => put_registry(app, req, claims, sub, rg, name),
        (
            Method::PATCH,
            Route::Item {
                sub,
                rg,
                kind: ResourceKind::Registry,
                name,
            },
        ) => patch_registry(app, req, claims, sub, rg, name),
        (
            Method::DELETE,
            Route::Item {
                sub,
                rg,
                kind,
                name,
            },
        ) => delete_resource(app, req, claims, sub, rg, *kind, name),
        (Method::PUT | Method::PATCH, Route::Tags { scope }) => put_tags(app, req, claims, scope),
        (Method::GET, Route::Tags { scope }) => get_tags(app, claims, scope),
        (Method::GET, Route::RoleAssignments { scope }) => {
            list_role_assignments(app, req, claims, scope)
        }
        (Method::GET, Route::RoleAssignment { scope, name }) => {
            get_role_assignment(app, claims, scope, name)
        }
        (Method::PUT, Route::RoleAssignment { scope, name }) => {
            put_role_assignment(app, req, claims, scope, name)
        }
        (Method::DELETE, Route::RoleAssignment { scope, name }) => {
            delete_role_assignment(app, req, claims, scope, name)
        }
        (Method::GET, Route::GenericResources { sub, rg }) => {
            list_generic_resources(app, req, claims, sub, rg.as_deref())
        }
        (Method::GET, Route::RoleDefinitions { scope }) => {
            list_role_definitions(app, req, claims, scope)
        }
        (Method::GET, Route::RoleDefinition { scope, guid }) => {
            get_role_definition(app, claims, scope, guid)
        }
        (Method::PUT, Route::RoleDefinition { scope, guid }) => {
            put_role_definition(app, req, claims, scope, guid)
        }
        (Method::GET, Route::ClusterOperation { sub, id }) => get_operation(app, sub, id),
        (method, _) => Outcome::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!(
                "The requested method '{method}' is not allowed for the resource path '{}'.",
                req.path
            ),
        ),
    }
}

/// 403 unless allowed; then 404 `ResourceGroupNotFound` when the group does not exist.
fn require_rg(
    app: &App,
    claims: &Claims,
    sub: &str,
    rg: &str,
    action: &str,
    scope: &str,
) -> Option<Outcome> {
    let store = lock(&app.store);
    if !store.is_allowed(&claims.oid, action, scope, None, None) {
        return Some(authorization_failed(claims, action, scope));
    }
    if store.resource_group(sub, rg).is_none() {
        return Some(rg_not_found(rg));
    }
    None
}

fn rg_not_found(rg: &str) -> Outcome {
    Outcome::error(
        StatusCode::NOT_FOUND,
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

fn resource_not_found(kind: ResourceKind, rg: &str, name: &str) -> Outcome {
    Outcome::error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!(
            "The Resource '{}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            kind.arm_type()
        ),
    )
}

fn parse_body(body: &[u8]) -> Result<Value, Outcome> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!(
                "The request content was invalid and could not be deserialized: '{}'.",
                e.to_string().replace('\'', "")
            ),
        )
    })?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'the body must be a JSON object'.",
        ))
    }
}

/// Builds the event for a successful write or delete.
fn event(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    kind: ArmOperationKind,
    resource_uri: &str,
    operation: &str,
    body: Option<Value>,
) -> ArmEvent {
    let sub = rbac::subscription_of(resource_uri).unwrap_or_default();
    let tenant = {
        let store = lock(&app.store);
        store
            .subscription(&sub)
            .map_or_else(|| claims.tid.clone(), |s| s.tenant_id.clone())
    };
    let correlation_id = req
        .headers
        .get("x-ms-correlation-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let url = if req.raw_query.is_empty() {
        format!("{}{}", app.base_url, req.path)
    } else {
        format!("{}{}?{}", app.base_url, req.path, req.raw_query)
    };
    ArmEvent {
        kind,
        resource_uri: resource_uri.to_owned(),
        operation_name: operation.to_owned(),
        subscription_id: sub,
        tenant_id: tenant,
        correlation_id,
        claims: claims.as_event_claims(),
        authorization_action: operation.to_owned(),
        authorization_scope: resource_uri.to_owned(),
        http_method: req.method.to_string(),
        url,
        time: OffsetDateTime::now_utc(),
        resource_body: body,
    }
}

/// Checks the resource group (authorization first, as ARM does) for a write into it.
fn check_write(
    store: &Store,
    claims: &Claims,
    sub: &str,
    rg: &str,
    action: &str,
    id: &str,
) -> Result<String, Outcome> {
    if !store.is_allowed(&claims.oid, action, id, None, None) {
        return Err(authorization_failed(claims, action, id));
    }
    let Some(group) = store.resource_group(sub, rg) else {
        return Err(rg_not_found(rg));
    };
    Ok(str_at(&group.body, &["name"]).unwrap_or(rg).to_owned())
}

/// 404s for a role-assignment scope whose subscription, group or (known-type) resource does not exist.
fn check_scope_exists(store: &Store, scope: &str) -> Option<Outcome> {
    let Some(sub) = rbac::subscription_of(scope) else {
        return Some(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidScope",
            format!(
                "The scope '{scope}' is not supported by this emulator: use a subscription, resource group or resource scope."
            ),
        ));
    };
    if store.subscription(&sub).is_none() {
        return Some(Outcome::error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    }
    if let Some(rg) = rbac::resource_group_of(scope) {
        if store.resource_group(&sub, &rg).is_none() {
            return Some(rg_not_found(&rg));
        }
        if let Route::Item { rg, kind, name, .. } = parse_route(scope) {
            let key = item_id(&sub, &rg, kind, &name).to_ascii_lowercase();
            if !store.resources.contains_key(&key) {
                return Some(resource_not_found(kind, &rg, &name));
            }
        }
    }
    None
}
