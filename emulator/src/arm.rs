//! ARM request handling: routing by path as `management.azure.com` does, authentication, api-version checks,
//! throttling, authorization, and the semantics of each resource type.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::app::{App, canonical_scope, lock, str_at};
use crate::bus::{ArmEvent, ArmOperationKind};
use crate::config::ClusterEventTiming;
use crate::limits::{RequestClass, Take};
use crate::rbac;
use crate::store::{
    GraphTable, Principal, PrincipalKind, Resource, ResourceKind, RoleAssignment, Store,
    assignment_graph_row, resource_graph_row, rfc3339,
};
use crate::token::{self, Claims, TokenError};

pub const CLUSTER_API_VERSIONS: &[&str] = &[
    "2025-10-01",
    "2026-01-01",
    "2026-02-01",
    "2026-06-01",
    "2026-10-01",
];
pub const REGISTRY_API_VERSIONS: &[&str] = &[
    "2025-04-01",
    "2025-11-01",
    "2026-03-01-preview",
    "2026-09-01-preview",
];
pub const ROLE_ASSIGNMENT_API_VERSIONS: &[&str] = &[
    "2015-07-01",
    "2018-01-01-preview",
    "2018-09-01-preview",
    "2020-03-01-preview",
    "2020-04-01-preview",
    "2020-08-01-preview",
    "2020-10-01-preview",
    "2022-01-01-preview",
    "2022-04-01",
];
pub const ROLE_DEFINITION_API_VERSIONS: &[&str] = &[
    "2015-07-01",
    "2018-01-01-preview",
    "2022-04-01",
    "2022-05-01-preview",
];
pub const RESOURCES_API_VERSIONS: &[&str] = &[
    "2019-10-01",
    "2020-06-01",
    "2021-04-01",
    "2022-09-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-04-01",
];
pub const SUBSCRIPTION_API_VERSIONS: &[&str] = &[
    "2016-06-01",
    "2020-01-01",
    "2021-01-01",
    "2022-01-01",
    "2022-12-01",
];
pub const RESOURCE_GRAPH_API_VERSIONS: &[&str] = &["2021-03-01", "2022-10-01", "2024-04-01"];

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

/// A parsed ARM path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The generic resource list (`/subscriptions/{s}[/resourceGroups/{rg}]/resources`).
    GenericResources {
        sub: String,
        rg: Option<String>,
    },
    Subscriptions,
    Subscription {
        sub: String,
    },
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    Collection {
        sub: String,
        rg: Option<String>,
        kind: ResourceKind,
    },
    Item {
        sub: String,
        rg: String,
        kind: ResourceKind,
        name: String,
    },
    Tags {
        scope: String,
    },
    RoleAssignments {
        scope: String,
    },
    RoleAssignment {
        scope: String,
        name: String,
    },
    RoleDefinitions {
        scope: String,
    },
    RoleDefinition {
        scope: String,
        guid: String,
    },
    Unknown,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn kind_of(namespace: &str, ty: &str) -> Option<ResourceKind> {
    if eq(namespace, "Microsoft.ContainerService") && eq(ty, "managedClusters") {
        Some(ResourceKind::Cluster)
    } else if eq(namespace, "Microsoft.ContainerRegistry") && eq(ty, "registries") {
        Some(ResourceKind::Registry)
    } else {
        None
    }
}

pub(crate) fn parse_route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // Extension resources (role assignments and definitions, tags) hang off any scope: find the last
    // `providers/Microsoft.Authorization|Microsoft.Resources` pair.
    if let Some(i) = (0..segs.len().saturating_sub(1)).rev().find(|&i| {
        eq(segs[i], "providers")
            && (eq(segs[i + 1], "Microsoft.Authorization")
                || eq(segs[i + 1], "Microsoft.Resources"))
    }) {
        let scope = canonical_scope(&segs[..i].join("/"));
        let rest = &segs[i + 1..];
        return match rest {
            [ns, t] if eq(ns, "Microsoft.Authorization") && eq(t, "roleAssignments") => {
                Route::RoleAssignments { scope }
            }
            [ns, t, name] if eq(ns, "Microsoft.Authorization") && eq(t, "roleAssignments") => {
                Route::RoleAssignment {
                    scope,
                    name: (*name).to_owned(),
                }
            }
            [ns, t] if eq(ns, "Microsoft.Authorization") && eq(t, "roleDefinitions") => {
                Route::RoleDefinitions { scope }
            }
            [ns, t, guid] if eq(ns, "Microsoft.Authorization") && eq(t, "roleDefinitions") => {
                Route::RoleDefinition {
                    scope,
                    guid: (*guid).to_owned(),
                }
            }
            [ns, t, d]
                if eq(ns, "Microsoft.Resources")
                    && eq(t, "tags")
                    && eq(d, "default")
                    && scope != "/" =>
            {
                Route::Tags { scope }
            }
            _ => Route::Unknown,
        };
    }
    match segs.as_slice() {
        [s] if eq(s, "subscriptions") => Route::Subscriptions,
        [s, sub] if eq(s, "subscriptions") => Route::Subscription {
            sub: (*sub).to_owned(),
        },
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resources") => Route::GenericResources {
            sub: (*sub).to_owned(),
            rg: None,
        },
        [s, sub, g, rg, r]
            if eq(s, "subscriptions") && eq(g, "resourcegroups") && eq(r, "resources") =>
        {
            Route::GenericResources {
                sub: (*sub).to_owned(),
                rg: Some((*rg).to_owned()),
            }
        }
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resourcegroups") => Route::ResourceGroups {
            sub: (*sub).to_owned(),
        },
        [s, sub, r, rg] if eq(s, "subscriptions") && eq(r, "resourcegroups") => {
            Route::ResourceGroup {
                sub: (*sub).to_owned(),
                rg: (*rg).to_owned(),
            }
        }
        [s, sub, p, ns, ty] if eq(s, "subscriptions") && eq(p, "providers") => {
            match kind_of(ns, ty) {
                Some(kind) => Route::Collection {
                    sub: (*sub).to_owned(),
                    rg: None,
                    kind,
                },
                None => Route::Unknown,
            }
        }
        [s, sub, r, rg, p, ns, ty]
            if eq(s, "subscriptions") && eq(r, "resourcegroups") && eq(p, "providers") =>
        {
            match kind_of(ns, ty) {
                Some(kind) => Route::Collection {
                    sub: (*sub).to_owned(),
                    rg: Some((*rg).to_owned()),
                    kind,
                },
                None => Route::Unknown,
            }
        }
        [s, sub, r, rg, p, ns, ty, name]
            if eq(s, "subscriptions") && eq(r, "resourcegroups") && eq(p, "providers") =>
        {
            match kind_of(ns, ty) {
                Some(kind) => Route::Item {
                    sub: (*sub).to_owned(),
                    rg: (*rg).to_owned(),
                    kind,
                    name: (*name).to_owned(),
                },
                None => Route::Unknown,
            }
        }
        _ => Route::Unknown,
    }
}

/// The stats label of a request (`GET managedClusters`, `LIST registries`, `PUT roleAssignments`, …).
pub(crate) fn label(method: &Method, route: &Route) -> String {
    let m = method.as_str();
    let (verb, noun) = match route {
        Route::Subscriptions => ("LIST", "subscriptions"),
        Route::Subscription { .. } => (m, "subscriptions"),
        Route::ResourceGroups { .. } => ("LIST", "resourceGroups"),
        Route::ResourceGroup { .. } => (m, "resourceGroups"),
        Route::Collection { kind, .. } => ("LIST", kind.label()),
        Route::Item { kind, .. } => (m, kind.label()),
        Route::Tags { .. } => (m, "tags"),
        Route::RoleAssignments { .. } => ("LIST", "roleAssignments"),
        Route::RoleAssignment { .. } => (m, "roleAssignments"),
        Route::RoleDefinitions { .. } => ("LIST", "roleDefinitions"),
        Route::RoleDefinition { .. } => (m, "roleDefinitions"),
        Route::GenericResources { .. } => ("LIST", "resources"),
        Route::Unknown => (m, "unknown"),
    };
    let verb = if verb == "GET"
        && matches!(
            route,
            Route::Subscriptions
                | Route::ResourceGroups { .. }
                | Route::Collection { .. }
                | Route::RoleAssignments { .. }
                | Route::RoleDefinitions { .. }
        ) {
        "LIST"
    } else {
        verb
    };
    format!("{verb} {noun}")
}

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
                token::is_graph_audience(&claims.aud)
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

fn rfc_us(t: OffsetDateTime) -> String {
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

/// Everything about the request the handlers need.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: BTreeMap<String, String>,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub(crate) fn parse_query(raw: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect()
}

fn api_versions(route: &Route) -> (&'static [&'static str], Option<&'static str>) {
    match route {
        Route::Subscriptions | Route::Subscription { .. } => (SUBSCRIPTION_API_VERSIONS, None),
        Route::ResourceGroups { .. }
        | Route::ResourceGroup { .. }
        | Route::GenericResources { .. }
        | Route::Tags { .. }
        | Route::Unknown => (RESOURCES_API_VERSIONS, None),
        Route::Collection { kind, .. } | Route::Item { kind, .. } => match kind {
            ResourceKind::Cluster => (CLUSTER_API_VERSIONS, Some("managedClusters")),
            ResourceKind::Registry => (REGISTRY_API_VERSIONS, Some("registries")),
            ResourceKind::ResourceGroup => (RESOURCES_API_VERSIONS, None),
        },
        Route::RoleAssignments { .. } | Route::RoleAssignment { .. } => {
            (ROLE_ASSIGNMENT_API_VERSIONS, Some("roleAssignments"))
        }
        Route::RoleDefinitions { .. } | Route::RoleDefinition { .. } => {
            (ROLE_DEFINITION_API_VERSIONS, Some("roleDefinitions"))
        }
    }
}

/// ARM's api-version check: `MissingApiVersionParameter`, then `InvalidApiVersionParameter` for
/// Microsoft.Resources types and `NoRegisteredProviderFound` for resource-provider types.
pub(crate) fn check_api_version(
    query: &BTreeMap<String, String>,
    supported: &[&str],
    provider_type: Option<&str>,
    location: &str,
    locations: &[String],
) -> Result<(), Outcome> {
    let Some(version) = query.get("api-version") else {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&version.as_str()) {
        return Ok(());
    }
    let mut listed: Vec<&str> = supported.to_vec();
    listed.reverse();
    Err(match provider_type {
        Some(ty) => Outcome::error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            format!(
                "No registered resource provider found for location '{location}' and API version '{version}' for type '{ty}'. The supported api-versions are '{}'. The supported locations are '{}'.",
                supported.join(", "),
                locations.join(", ")
            ),
        ),
        None => Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                listed.join(",")
            ),
        ),
    })
}

fn route_subscription(route: &Route) -> Option<String> {
    match route {
        Route::Subscriptions | Route::Unknown => None,
        Route::Subscription { sub }
        | Route::ResourceGroups { sub }
        | Route::GenericResources { sub, .. }
        | Route::ResourceGroup { sub, .. }
        | Route::Collection { sub, .. }
        | Route::Item { sub, .. } => Some(sub.to_ascii_lowercase()),
        Route::Tags { scope }
        | Route::RoleAssignments { scope }
        | Route::RoleAssignment { scope, .. }
        | Route::RoleDefinitions { scope }
        | Route::RoleDefinition { scope, .. } => rbac::subscription_of(scope),
    }
}

fn request_class(method: &Method) -> RequestClass {
    match *method {
        Method::GET | Method::HEAD => RequestClass::Read,
        Method::DELETE => RequestClass::Delete,
        _ => RequestClass::Write,
    }
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
    let sub = route_subscription(route);
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
    if let Some(sub) = &sub {
        {
            let store = lock(&app.store);
            let Some(subscription) = store.subscription(sub) else {
                return Outcome::error(
                    StatusCode::NOT_FOUND,
                    "SubscriptionNotFound",
                    format!("The subscription '{sub}' could not be found."),
                );
            };
            if !subscription.tenant_id.eq_ignore_ascii_case(&claims.tid) {
                return Outcome::error(
                    StatusCode::UNAUTHORIZED,
                    "InvalidAuthenticationTokenTenant",
                    format!(
                        "The access token is from the wrong issuer 'https://sts.windows.net/{}/'. It must match the tenant 'https://sts.windows.net/{}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
                        claims.tid, subscription.tenant_id, subscription.tenant_id
                    ),
                );
            }
        }
        let faults = lock(&app.faults).config.clone();
        if faults.throttling {
            let class = request_class(req.method);
            let limit = match class {
                RequestClass::Read => faults.reads,
                RequestClass::Write => faults.writes,
                RequestClass::Delete => faults.deletes,
            };
            match lock(&app.buckets).take(&claims.oid, sub, class, limit, Instant::now()) {
                Take::Allowed { remaining } => {
                    headers.push((
                        format!(
                            "x-ms-ratelimit-remaining-subscription-{}",
                            class.header_suffix()
                        ),
                        remaining.to_string(),
                    ));
                }
                Take::Throttled { retry_after_secs } => {
                    return Outcome::error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "SubscriptionRequestsThrottled",
                        format!(
                            "Number of '{}' requests for subscription '{sub}' actor '{}' exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                            class.word(),
                            claims.oid
                        ),
                    )
                    .header("Retry-After", retry_after_secs.to_string())
                    .header(&format!("x-ms-ratelimit-remaining-subscription-{}", class.header_suffix()), "0");
                }
            }
        }
    }
    let mut outcome = dispatch(app, req, route, claims);
    outcome.headers.extend(headers);
    outcome
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

/// The `nextLink` URL for a page starting at `offset`.
fn next_link(app: &App, req: &Request<'_>, offset: usize) -> String {
    let token = URL_SAFE_NO_PAD.encode(format!("offset:{offset}"));
    let kept: Vec<String> = url::form_urlencoded::parse(req.raw_query.as_bytes())
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skipToken"))
        .map(|(k, v)| format!("{}={}", encode(&k), encode(&v)))
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    format!("{}{}?{query}$skipToken={token}", app.base_url, req.path)
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%24", "$")
}

fn skip_offset(req: &Request<'_>) -> Result<usize, Outcome> {
    match req.query.get("$skiptoken") {
        None => Ok(0),
        Some(token) => URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidSkipToken",
                    "The provided skip token is invalid.",
                )
            }),
    }
}

fn page(app: &App, req: &Request<'_>, items: &[Value], page_size: usize) -> Outcome {
    let offset = match skip_offset(req) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let size = page_size.max(1);
    let end = offset.saturating_add(size).min(items.len());
    let slice: Vec<Value> = items
        .get(offset.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let mut body = json!({ "value": slice });
    if end < items.len() {
        body["nextLink"] = json!(next_link(app, req, end));
    }
    Outcome::json(StatusCode::OK, body)
}

fn list_subscriptions(app: &App, req: &Request<'_>, claims: &Claims) -> Outcome {
    let items: Vec<Value> = {
        let store = lock(&app.store);
        store
            .subscriptions
            .values()
            .filter(|s| {
                s.tenant_id.eq_ignore_ascii_case(&claims.tid)
                    && store.has_any_access(&claims.oid, &format!("/subscriptions/{}", s.id))
            })
            .map(crate::store::Subscription::to_arm)
            .collect()
    };
    let size = lock(&app.settings).list_page_size;
    let mut outcome = page(app, req, &items, size);
    if let Some(body) = outcome.body.as_mut() {
        let count = body["value"].as_array().map_or(0, Vec::len);
        body["count"] = json!({"type": "Total", "value": count});
    }
    outcome
}

fn get_subscription(app: &App, claims: &Claims, sub: &str) -> Outcome {
    let store = lock(&app.store);
    let scope = format!("/subscriptions/{}", sub.to_ascii_lowercase());
    let Some(s) = store.subscription(sub) else {
        return Outcome::error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        );
    };
    if !store.has_any_access(&claims.oid, &scope) {
        return authorization_failed(claims, "Microsoft.Resources/subscriptions/read", &scope);
    }
    Outcome::json(StatusCode::OK, s.to_arm())
}

fn list_resources(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: Option<&str>,
    kind: ResourceKind,
) -> Outcome {
    let sub_l = sub.to_ascii_lowercase();
    let scope = match rg {
        Some(rg) => Store::resource_group_id(&sub_l, rg),
        None => format!("/subscriptions/{sub_l}"),
    };
    let action = format!("{}/read", kind.action_prefix());
    let items: Vec<Value> = {
        let store = lock(&app.store);
        if let Some(rg) = rg {
            if !store.is_allowed(&claims.oid, &action, &scope, None, None) {
                return authorization_failed(claims, &action, &scope);
            }
            if store.resource_group(&sub_l, rg).is_none() {
                return rg_not_found(rg);
            }
        }
        let whole = store.is_allowed(&claims.oid, &action, &scope, None, None);
        if !whole && !store.has_any_access(&claims.oid, &scope) {
            return authorization_failed(claims, &action, &scope);
        }
        store
            .resources
            .values()
            .filter(|r| r.kind == kind && r.subscription == sub_l)
            .filter(|r| rg.is_none_or(|rg| r.resource_group.eq_ignore_ascii_case(rg)))
            .filter(|r| {
                whole
                    || store.is_allowed(
                        &claims.oid,
                        &action,
                        str_at(&r.body, &["id"]).unwrap_or_default(),
                        None,
                        None,
                    )
            })
            .map(|r| r.body.clone())
            .collect()
    };
    let size = lock(&app.settings).list_page_size;
    page(app, req, &items, size)
}

fn get_resource(app: &App, claims: &Claims, id: &str, kind: ResourceKind, name: &str) -> Outcome {
    let store = lock(&app.store);
    let action = format!("{}/read", kind.action_prefix());
    if !store.is_allowed(&claims.oid, &action, id, None, None) {
        return authorization_failed(claims, &action, id);
    }
    match store.resources.get(&id.to_ascii_lowercase()) {
        Some(r) => Outcome::json(StatusCode::OK, r.body.clone()),
        None if kind == ResourceKind::ResourceGroup => rg_not_found(name),
        None => resource_not_found(
            kind,
            rbac::resource_group_of(id).as_deref().unwrap_or_default(),
            name,
        ),
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

/// The `location` (required, lower-cased) and `tags` of a tracked resource's PUT body.
fn location_and_tags(input: &Value) -> Result<(String, Value), Outcome> {
    let Some(location) = input
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
    else {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    };
    Ok((location, tags_of(input)?))
}

fn tags_of(value: &Value) -> Result<Value, Outcome> {
    match value.get("tags") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(map)) => {
            if map.values().all(Value::is_string) {
                Ok(Value::Object(map.clone()))
            } else {
                Err(Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: 'tag values must be strings'.",
                ))
            }
        }
        Some(_) => Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'tags must be an object'.",
        )),
    }
}

fn put_resource_group(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
) -> Outcome {
    let body = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let sub_l = sub.to_ascii_lowercase();
    let id = Store::resource_group_id(&sub_l, rg);
    let action = "Microsoft.Resources/subscriptions/resourceGroups/write";
    let Some(location) = body
        .get("location")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "LocationRequired",
            "The location property is required for this definition.",
        );
    };
    let tags = match tags_of(&body) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let keep = app.graph_keep();
    let (status, stored) = {
        let mut store = lock(&app.store);
        if !store.is_allowed(&claims.oid, action, &id, None, None) {
            return authorization_failed(claims, action, &id);
        }
        let existing = store.resources.get(&id.to_ascii_lowercase()).cloned();
        if let Some(existing) = &existing {
            let old = str_at(&existing.body, &["location"]).unwrap_or_default();
            if !old.eq_ignore_ascii_case(&location) {
                return Outcome::error(
                    StatusCode::CONFLICT,
                    "InvalidResourceGroupLocation",
                    format!(
                        "Invalid resource group location '{location}'. The Resource group already exists in location '{old}'."
                    ),
                );
            }
        }
        let name = existing
            .as_ref()
            .and_then(|e| str_at(&e.body, &["name"]).map(str::to_owned))
            .unwrap_or_else(|| rg.to_owned());
        let stored_id = Store::resource_group_id(&sub_l, &name);
        let value = json!({
            "id": stored_id,
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location.to_ascii_lowercase(),
            "tags": tags,
            "properties": {"provisioningState": "Succeeded"},
        });
        let resource = Resource {
            body: value.clone(),
            subscription: sub_l.clone(),
            resource_group: name.clone(),
            kind: ResourceKind::ResourceGroup,
            generation: existing.as_ref().map_or(0, |e| e.generation + 1),
            kubelet_object_id: None,
            control_plane_object_id: None,
        };
        store.resources.insert(id.to_ascii_lowercase(), resource);
        (
            if existing.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            value,
        )
    };
    let _ = keep;
    let mut outcome = Outcome::json(status, stored.clone());
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &id,
        "Microsoft.Resources/subscriptions/resourceGroups/write",
        Some(stored),
    ));
    outcome
}

fn delete_resource_group(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
) -> Outcome {
    let sub_l = sub.to_ascii_lowercase();
    let id = Store::resource_group_id(&sub_l, rg);
    let action = "Microsoft.Resources/subscriptions/resourceGroups/delete";
    let keep = app.graph_keep();
    let mut events = Vec::new();
    {
        let mut store = lock(&app.store);
        if !store.is_allowed(&claims.oid, action, &id, None, None) {
            return authorization_failed(claims, action, &id);
        }
        if store.resource_group(&sub_l, rg).is_none() {
            return rg_not_found(rg);
        }
        // Deleting a group deletes what it contains (each with its own delete event).
        let contained: Vec<String> = store
            .resources
            .iter()
            .filter(|(_, r)| {
                r.kind != ResourceKind::ResourceGroup
                    && r.subscription == sub_l
                    && r.resource_group.eq_ignore_ascii_case(rg)
            })
            .map(|(k, _)| k.clone())
            .collect();
        let now = Instant::now();
        for key in contained {
            if let Some(r) = store.resources.remove(&key) {
                let rid = str_at(&r.body, &["id"]).unwrap_or_default().to_owned();
                remove_owned_identities(&mut store, &r);
                store.graph_write(GraphTable::Resources, &rid, None, now, keep);
                events.push((rid, r.kind));
            }
        }
        store.resources.remove(&id.to_ascii_lowercase());
    }
    let mut outcome = Outcome::empty(StatusCode::ACCEPTED);
    for (rid, kind) in events {
        outcome.events.push(event(
            app,
            req,
            claims,
            ArmOperationKind::Delete,
            &rid,
            &format!("{}/delete", kind.action_prefix()),
            None,
        ));
    }
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Delete,
        &id,
        action,
        None,
    ));
    outcome
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

fn put_cluster(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    name: &str,
) -> Outcome {
    let mut input = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let sub_l = sub.to_ascii_lowercase();
    let action = "Microsoft.ContainerService/managedClusters/write";
    let (location, tags) = match location_and_tags(&input) {
        Ok(lt) => lt,
        Err(e) => return e,
    };
    let mut store = lock(&app.store);
    let rg_name = match check_write(
        &store,
        claims,
        &sub_l,
        rg,
        action,
        &item_id(&sub_l, rg, ResourceKind::Cluster, name),
    ) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let id = item_id(&sub_l, &rg_name, ResourceKind::Cluster, name);
    let key = id.to_ascii_lowercase();
    let existing = store.resources.get(&key).cloned();
    if let Some(existing) = &existing {
        let old = str_at(&existing.body, &["location"]).unwrap_or_default();
        if !old.eq_ignore_ascii_case(&location) {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "LocationNotAvailableForResourceType",
                format!(
                    "The cluster already exists in location '{old}'; its location cannot change to '{location}'."
                ),
            );
        }
        // AKS refuses a PUT while another operation on the cluster is still running.
        let state =
            str_at(&existing.body, &["properties", "provisioningState"]).unwrap_or_default();
        if state == "Creating" || state == "Updating" {
            let operation = if state == "Creating" {
                "create"
            } else {
                "update"
            };
            return Outcome::error(
                StatusCode::CONFLICT,
                "OperationNotAllowed",
                format!(
                    "Operation is not allowed because there's an in progress {operation} managed cluster operation. Please wait for it to finish before starting a new operation."
                ),
            );
        }
    }
    let tenant = store
        .subscription(&sub_l)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let mut properties = input
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut identity = input.get("identity").cloned().filter(Value::is_object);
    // Managed identity unless the PUT names a service principal (and no identity).
    let sp_client = str_at(
        &Value::Object(properties.clone()),
        &["servicePrincipalProfile", "clientId"],
    )
    .filter(|c| !c.eq_ignore_ascii_case("msi"))
    .map(str::to_owned);
    let is_sp_cluster = identity.is_none() && sp_client.is_some();
    if is_sp_cluster {
        let client = sp_client.clone().unwrap_or_default();
        if store.principal_by_app_id(&client).is_none() {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "ServicePrincipalNotFound",
                format!(
                    "Service principal clientID: {client} not found in Active Directory tenant {tenant}, Please see https://aka.ms/aks-sp-help for more details."
                ),
            );
        }
        properties.insert(
            "servicePrincipalProfile".into(),
            json!({"clientId": client}),
        );
    } else {
        properties.insert("servicePrincipalProfile".into(), json!({"clientId": "msi"}));
        let mut id_value = identity
            .take()
            .unwrap_or_else(|| json!({"type": "SystemAssigned"}));
        let id_type = str_at(&id_value, &["type"])
            .unwrap_or("SystemAssigned")
            .to_owned();
        if id_type.eq_ignore_ascii_case("SystemAssigned") {
            let oid = existing
                .as_ref()
                .and_then(|e| e.control_plane_object_id.clone())
                .unwrap_or_else(|| {
                    let p = new_identity_principal(app, &mut store, name, None, &tenant);
                    p.object_id
                });
            id_value = json!({"type": "SystemAssigned", "principalId": oid, "tenantId": tenant});
        } else if id_type.eq_ignore_ascii_case("UserAssigned") {
            let mut filled = Map::new();
            if let Some(map) = id_value
                .get("userAssignedIdentities")
                .and_then(Value::as_object)
            {
                for rid in map.keys() {
                    let p = store
                        .principal_by_resource_id(rid)
                        .cloned()
                        .unwrap_or_else(|| {
                            new_identity_principal(
                                app,
                                &mut store,
                                rid.rsplit('/').next().unwrap_or(rid),
                                Some(rid.clone()),
                                &tenant,
                            )
                        });
                    filled.insert(
                        rid.clone(),
                        json!({"clientId": p.app_id, "principalId": p.object_id}),
                    );
                }
            }
            if filled.is_empty() {
                return Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    "The identity type UserAssigned requires userAssignedIdentities.",
                );
            }
            id_value = json!({"type": "UserAssigned", "userAssignedIdentities": filled});
        } else {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!("The identity type '{id_type}' is not supported."),
            );
        }
        identity = Some(id_value);
    }
    // Bring-your-own kubelet identity: resolve it to a directory principal now.
    let mut byo_kubelet: Option<(Value, String)> = None;
    if let Some(kubelet) = properties
        .get("identityProfile")
        .and_then(|p| p.get("kubeletidentity"))
        .cloned()
    {
        let Some(rid) = str_at(&kubelet, &["resourceId"]).map(str::to_owned) else {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "identityProfile.kubeletidentity.resourceId is required.",
            );
        };
        let p = store
            .principal_by_resource_id(&rid)
            .cloned()
            .unwrap_or_else(|| {
                new_identity_principal(
                    app,
                    &mut store,
                    rid.rsplit('/').next().unwrap_or(&rid),
                    Some(rid.clone()),
                    &tenant,
                )
            });
        byo_kubelet = Some((
            json!({"resourceId": rid, "clientId": p.app_id, "objectId": p.object_id}),
            p.object_id,
        ));
    }
    let node_rg = properties
        .get("nodeResourceGroup")
        .and_then(Value::as_str)
        .map_or_else(|| format!("MC_{rg_name}_{name}_{location}"), str::to_owned);
    let k8s = properties
        .get("kubernetesVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or("1.33.2")
        .to_owned();
    let dns_prefix = properties
        .get("dnsPrefix")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{name}-dns"), str::to_owned);
    let fqdn_suffix = &app.new_id()[..8];
    properties.insert(
        "provisioningState".into(),
        json!(if existing.is_some() {
            "Updating"
        } else {
            "Creating"
        }),
    );
    properties.insert("powerState".into(), json!({"code": "Running"}));
    properties.insert("kubernetesVersion".into(), json!(k8s));
    properties.insert("currentKubernetesVersion".into(), json!(k8s));
    properties.insert("dnsPrefix".into(), json!(dns_prefix));
    properties.insert(
        "fqdn".into(),
        existing
            .as_ref()
            .and_then(|e| e.body["properties"].get("fqdn").cloned())
            .unwrap_or_else(|| {
                json!(format!(
                    "{dns_prefix}-{fqdn_suffix}.hcp.{location}.azmk8s.io"
                ))
            }),
    );
    properties.insert("nodeResourceGroup".into(), json!(node_rg));
    properties.entry("enableRBAC").or_insert(json!(true));
    properties.entry("maxAgentPools").or_insert(json!(100));
    if let Some(windows) = properties
        .get_mut("windowsProfile")
        .and_then(Value::as_object_mut)
    {
        windows.remove("adminPassword");
    }
    if let Some(pools) = properties
        .get_mut("agentPoolProfiles")
        .and_then(Value::as_array_mut)
    {
        for pool in pools.iter_mut().filter_map(Value::as_object_mut) {
            pool.insert(
                "provisioningState".into(),
                json!(if existing.is_some() {
                    "Updating"
                } else {
                    "Creating"
                }),
            );
            pool.insert("orchestratorVersion".into(), json!(k8s));
            pool.insert("currentOrchestratorVersion".into(), json!(k8s));
        }
    }
    // Keep the kubelet identity across updates; a BYO identity replaces it.
    let mut kubelet_oid = existing.as_ref().and_then(|e| e.kubelet_object_id.clone());
    properties.remove("identityProfile");
    if let Some((value, oid)) = &byo_kubelet {
        properties.insert("identityProfile".into(), json!({"kubeletidentity": value}));
        kubelet_oid = Some(oid.clone());
    } else if let Some(previous) = existing
        .as_ref()
        .and_then(|e| e.body["properties"].get("identityProfile").cloned())
    {
        properties.insert("identityProfile".into(), previous);
    }
    let mut body = json!({
        "id": id,
        "name": name,
        "type": "Microsoft.ContainerService/managedClusters",
        "location": location,
        "tags": tags,
        "sku": input.get("sku").cloned().unwrap_or_else(|| json!({"name": "Base", "tier": "Free"})),
        "properties": Value::Object(properties),
    });
    if let Some(identity) = identity {
        body["identity"] = identity;
    }
    let generation = existing.as_ref().map_or(0, |e| e.generation + 1);
    let resource = Resource {
        body: body.clone(),
        subscription: sub_l.clone(),
        resource_group: rg_name,
        kind: ResourceKind::Cluster,
        generation,
        kubelet_object_id: kubelet_oid,
        control_plane_object_id: body
            .get("identity")
            .and_then(|i| str_at(i, &["principalId"]))
            .map(str::to_owned),
    };
    let keep = app.graph_keep();
    store.graph_write(
        GraphTable::Resources,
        &id,
        Some(resource_graph_row(&resource, &tenant)),
        Instant::now(),
        keep,
    );
    store.resources.insert(key.clone(), resource);
    drop(store);
    let timing = lock(&app.settings).cluster_event_timing;
    let mut outcome = Outcome::json(
        if existing.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        body.clone(),
    );
    if timing != ClusterEventTiming::OnCompletion {
        outcome.events.push(event(
            app,
            req,
            claims,
            ArmOperationKind::Write,
            &id,
            action,
            Some(body),
        ));
    }
    outcome.provision = Some((key, generation));
    // Remember who asked, so the completion event carries the same claims and request.
    lock(&app.pending).insert(
        outcome.provision.clone().unwrap_or_default().0,
        PendingWrite {
            claims: claims.clone(),
            method: req.method.to_string(),
            url: format!("{}{}?{}", app.base_url, req.path, req.raw_query),
            correlation_id: req
                .headers
                .get("x-ms-correlation-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        },
    );
    outcome
}

/// The request behind a cluster PUT still provisioning.
#[derive(Clone, Debug)]
pub(crate) struct PendingWrite {
    pub claims: Claims,
    pub method: String,
    pub url: String,
    pub correlation_id: Option<String>,
}

fn new_identity_principal(
    app: &App,
    store: &mut Store,
    display: &str,
    resource_id: Option<String>,
    tenant: &str,
) -> Principal {
    let principal = Principal {
        object_id: app.new_id(),
        app_id: app.new_id(),
        display_name: display.to_owned(),
        kind: PrincipalKind::ServicePrincipal,
        service_principal_type: "ManagedIdentity".into(),
        tenant_id: tenant.to_owned(),
        managed_identity_resource_id: resource_id,
        created_time: OffsetDateTime::now_utc(),
        created_at: Instant::now(),
    };
    store
        .principals
        .insert(principal.object_id.clone(), principal.clone());
    principal
}

/// Completes a cluster's provisioning (called after the configured delay). Returns the events to publish.
pub(crate) fn complete_cluster(app: &App, key: &str, generation: u64) -> Vec<ArmEvent> {
    let keep = app.graph_keep();
    let mut store = lock(&app.store);
    let Some(resource) = store.resources.get(key).cloned() else {
        return Vec::new();
    };
    if resource.generation != generation {
        return Vec::new();
    }
    let tenant = store
        .subscription(&resource.subscription)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let mut resource = resource;
    let is_msi = str_at(
        &resource.body,
        &["properties", "servicePrincipalProfile", "clientId"],
    ) == Some("msi");
    if is_msi && resource.body["properties"].get("identityProfile").is_none() {
        let name = str_at(&resource.body, &["name"])
            .unwrap_or_default()
            .to_owned();
        let node_rg = str_at(&resource.body, &["properties", "nodeResourceGroup"])
            .unwrap_or_default()
            .to_owned();
        let rid = format!(
            "/subscriptions/{}/resourcegroups/{node_rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}-agentpool",
            resource.subscription
        );
        let p = new_identity_principal(
            app,
            &mut store,
            &format!("{name}-agentpool"),
            Some(rid.clone()),
            &tenant,
        );
        resource.body["properties"]["identityProfile"] = json!({"kubeletidentity": {"resourceId": rid, "clientId": p.app_id, "objectId": p.object_id}});
        resource.kubelet_object_id = Some(p.object_id);
    }
    resource.body["properties"]["provisioningState"] = json!("Succeeded");
    if let Some(pools) = resource.body["properties"]
        .get_mut("agentPoolProfiles")
        .and_then(Value::as_array_mut)
    {
        for pool in pools.iter_mut().filter_map(Value::as_object_mut) {
            pool.insert("provisioningState".into(), json!("Succeeded"));
        }
    }
    let id = str_at(&resource.body, &["id"])
        .unwrap_or_default()
        .to_owned();
    store.graph_write(
        GraphTable::Resources,
        &id,
        Some(resource_graph_row(&resource, &tenant)),
        Instant::now(),
        keep,
    );
    let body = resource.body.clone();
    store.resources.insert(key.to_owned(), resource);
    drop(store);
    let pending = lock(&app.pending).remove(key);
    let timing = lock(&app.settings).cluster_event_timing;
    if timing == ClusterEventTiming::OnAccept {
        return Vec::new();
    }
    let Some(pending) = pending else {
        return Vec::new();
    };
    let sub = rbac::subscription_of(&id).unwrap_or_default();
    vec![ArmEvent {
        kind: ArmOperationKind::Write,
        resource_uri: id.clone(),
        operation_name: "Microsoft.ContainerService/managedClusters/write".into(),
        subscription_id: sub,
        tenant_id: tenant,
        correlation_id: pending
            .correlation_id
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        claims: pending.claims.as_event_claims(),
        authorization_action: "Microsoft.ContainerService/managedClusters/write".into(),
        authorization_scope: id,
        http_method: pending.method,
        url: pending.url,
        time: OffsetDateTime::now_utc(),
        resource_body: Some(body),
    }]
}

const REGISTRY_SKUS: [&str; 3] = ["Basic", "Standard", "Premium"];
const ROLE_ASSIGNMENT_MODES: [&str; 2] = ["AbacRepositoryPermissions", "LegacyRegistryPermissions"];

fn put_registry(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    name: &str,
) -> Outcome {
    let input = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let sub_l = sub.to_ascii_lowercase();
    let action = "Microsoft.ContainerRegistry/registries/write";
    let (location, tags) = match location_and_tags(&input) {
        Ok(lt) => lt,
        Err(e) => return e,
    };
    let Some(sku) = str_at(&input, &["sku", "name"])
        .and_then(|s| REGISTRY_SKUS.iter().find(|k| k.eq_ignore_ascii_case(s)))
    else {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "The value of parameter sku.name is invalid. Allowed values: Basic, Standard, Premium.",
        );
    };
    if !(5..=50).contains(&name.len()) || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            format!(
                "Registry name '{name}' is invalid: it may contain only alpha numeric characters and be between 5 and 50 characters long."
            ),
        );
    }
    let properties_in = input
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mode = match properties_in.get("roleAssignmentMode") {
        None | Some(Value::Null) => "LegacyRegistryPermissions",
        Some(v) => match v.as_str().and_then(|m| {
            ROLE_ASSIGNMENT_MODES
                .iter()
                .find(|x| x.eq_ignore_ascii_case(m))
        }) {
            Some(m) => m,
            None => {
                return Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    format!(
                        "The value '{v}' of properties.roleAssignmentMode is invalid. Allowed values: AbacRepositoryPermissions, LegacyRegistryPermissions."
                    ),
                );
            }
        },
    };
    let mut store = lock(&app.store);
    let rg_name = match check_write(
        &store,
        claims,
        &sub_l,
        rg,
        action,
        &item_id(&sub_l, rg, ResourceKind::Registry, name),
    ) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let id = item_id(&sub_l, &rg_name, ResourceKind::Registry, name);
    let key = id.to_ascii_lowercase();
    let existing = store.resources.get(&key).cloned();
    let creation = existing
        .as_ref()
        .and_then(|e| str_at(&e.body, &["properties", "creationDate"]).map(str::to_owned))
        .unwrap_or_else(|| rfc3339(OffsetDateTime::now_utc()));
    let admin = properties_in
        .get("adminUserEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let body = json!({
        "id": id,
        "name": name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": location,
        "tags": tags,
        "sku": {"name": sku, "tier": sku},
        "properties": {
            "loginServer": format!("{}.azurecr.io", name.to_ascii_lowercase()),
            "creationDate": creation,
            "provisioningState": "Succeeded",
            "adminUserEnabled": admin,
            "networkRuleSet": {"defaultAction": "Allow", "ipRules": []},
            "policies": {
                "quarantinePolicy": {"status": "disabled"},
                "trustPolicy": {"type": "Notary", "status": "disabled"},
                "retentionPolicy": {"days": 7, "lastUpdatedTime": creation, "status": "disabled"},
                "exportPolicy": {"status": "enabled"},
                "azureADAuthenticationAsArmPolicy": {"status": "enabled"}
            },
            "encryption": {"status": "disabled"},
            "status": null,
            "dataEndpointEnabled": false,
            "dataEndpointHostNames": [],
            "privateEndpointConnections": [],
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "networkRuleBypassAllowedForTasks": false,
            "zoneRedundancy": "Disabled",
            "anonymousPullEnabled": properties_in.get("anonymousPullEnabled").and_then(Value::as_bool).unwrap_or(false),
            "roleAssignmentMode": mode,
        }
    });
    let tenant = store
        .subscription(&sub_l)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let resource = Resource {
        body: body.clone(),
        subscription: sub_l,
        resource_group: rg_name,
        kind: ResourceKind::Registry,
        generation: existing.as_ref().map_or(0, |e| e.generation + 1),
        kubelet_object_id: None,
        control_plane_object_id: None,
    };
    store.graph_write(
        GraphTable::Resources,
        &id,
        Some(resource_graph_row(&resource, &tenant)),
        Instant::now(),
        app.graph_keep(),
    );
    store.resources.insert(key, resource);
    drop(store);
    // The create answer shows `Creating`, as the spec's example does; the registry is ready at once.
    let mut answer = body.clone();
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        answer["properties"]["provisioningState"] = json!("Creating");
        StatusCode::CREATED
    };
    let mut outcome = Outcome::json(status, answer);
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &id,
        action,
        Some(body),
    ));
    outcome
}

fn patch_registry(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    name: &str,
) -> Outcome {
    let input = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let sub_l = sub.to_ascii_lowercase();
    let action = "Microsoft.ContainerRegistry/registries/write";
    let mut store = lock(&app.store);
    let rg_name = match check_write(
        &store,
        claims,
        &sub_l,
        rg,
        action,
        &item_id(&sub_l, rg, ResourceKind::Registry, name),
    ) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let key = item_id(&sub_l, &rg_name, ResourceKind::Registry, name).to_ascii_lowercase();
    let Some(mut resource) = store.resources.get(&key).cloned() else {
        return resource_not_found(ResourceKind::Registry, rg, name);
    };
    if input.get("tags").is_some() {
        match tags_of(&input) {
            Ok(t) => resource.body["tags"] = t,
            Err(e) => return e,
        }
    }
    if let Some(sku) = str_at(&input, &["sku", "name"]) {
        let Some(sku) = REGISTRY_SKUS.iter().find(|k| k.eq_ignore_ascii_case(sku)) else {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                "The value of parameter sku.name is invalid. Allowed values: Basic, Standard, Premium.",
            );
        };
        resource.body["sku"] = json!({"name": sku, "tier": sku});
    }
    if let Some(props) = input.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            if k == "roleAssignmentMode" {
                let Some(mode) = v.as_str().and_then(|m| {
                    ROLE_ASSIGNMENT_MODES
                        .iter()
                        .find(|x| x.eq_ignore_ascii_case(m))
                }) else {
                    return Outcome::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameter",
                        format!(
                            "The value '{v}' of properties.roleAssignmentMode is invalid. Allowed values: AbacRepositoryPermissions, LegacyRegistryPermissions."
                        ),
                    );
                };
                resource.body["properties"][k] = json!(mode);
            } else if [
                "adminUserEnabled",
                "anonymousPullEnabled",
                "publicNetworkAccess",
                "networkRuleBypassOptions",
                "zoneRedundancy",
            ]
            .contains(&k.as_str())
            {
                resource.body["properties"][k] = v.clone();
            }
        }
    }
    resource.generation += 1;
    let tenant = store
        .subscription(&sub_l)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    let id = str_at(&resource.body, &["id"])
        .unwrap_or_default()
        .to_owned();
    store.graph_write(
        GraphTable::Resources,
        &id,
        Some(resource_graph_row(&resource, &tenant)),
        Instant::now(),
        app.graph_keep(),
    );
    let body = resource.body.clone();
    store.resources.insert(key, resource);
    drop(store);
    let mut outcome = Outcome::json(StatusCode::OK, body.clone());
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &id,
        action,
        Some(body),
    ));
    outcome
}

fn delete_resource(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    kind: ResourceKind,
    name: &str,
) -> Outcome {
    let sub_l = sub.to_ascii_lowercase();
    let action = format!("{}/delete", kind.action_prefix());
    let id = item_id(&sub_l, rg, kind, name);
    let removed = {
        let mut store = lock(&app.store);
        if let Err(e) = check_write(&store, claims, &sub_l, rg, &action, &id) {
            return e;
        }
        let removed = store.resources.remove(&id.to_ascii_lowercase());
        if let Some(r) = &removed {
            // The kubelet identity goes with its cluster; assignments to it stay listed, as in Azure.
            remove_owned_identities(&mut store, r);
            let rid = str_at(&r.body, &["id"]).unwrap_or(&id).to_owned();
            store.graph_write(
                GraphTable::Resources,
                &rid,
                None,
                Instant::now(),
                app.graph_keep(),
            );
        }
        removed
    };
    let Some(removed) = removed else {
        return Outcome::empty(StatusCode::NO_CONTENT);
    };
    lock(&app.pending).remove(&id.to_ascii_lowercase());
    let rid = str_at(&removed.body, &["id"]).unwrap_or(&id).to_owned();
    let status = if kind == ResourceKind::Cluster {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut outcome = Outcome::empty(status);
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Delete,
        &rid,
        &action,
        None,
    ));
    outcome
}

/// Deleting a cluster deletes the identities AKS made for it (the kubelet identity in the node resource group,
/// the system-assigned control-plane identity); a brought identity survives. Assignments stay listed.
fn remove_owned_identities(store: &mut Store, r: &Resource) {
    if let Some(kubelet) = &r.kubelet_object_id
        && r.body["properties"]["identityProfile"]["kubeletidentity"]["resourceId"]
            .as_str()
            .is_some_and(|rid| rid.to_ascii_lowercase().contains("/resourcegroups/mc_"))
    {
        store.principals.remove(kubelet);
    }
    if let Some(cp) = &r.control_plane_object_id
        && str_at(&r.body, &["identity", "type"]) == Some("SystemAssigned")
    {
        store.principals.remove(cp);
    }
}

/// Resolves a tag target scope to (stored body, kind) or an error.
fn tag_target(store: &Store, scope: &str) -> Result<Option<(String, ResourceKind)>, Outcome> {
    match parse_route(scope) {
        Route::Subscription { sub } => {
            if store.subscription(&sub).is_some() {
                Ok(None)
            } else {
                Err(Outcome::error(
                    StatusCode::NOT_FOUND,
                    "SubscriptionNotFound",
                    format!("The subscription '{sub}' could not be found."),
                ))
            }
        }
        Route::ResourceGroup { sub, rg } => {
            let key = Store::resource_group_id(&sub.to_ascii_lowercase(), &rg).to_ascii_lowercase();
            if store.resources.contains_key(&key) {
                Ok(Some((key, ResourceKind::ResourceGroup)))
            } else {
                Err(rg_not_found(&rg))
            }
        }
        Route::Item {
            sub,
            rg,
            kind,
            name,
        } => {
            if store
                .resource_group(&sub.to_ascii_lowercase(), &rg)
                .is_none()
            {
                return Err(rg_not_found(&rg));
            }
            let key = item_id(&sub.to_ascii_lowercase(), &rg, kind, &name).to_ascii_lowercase();
            if store.resources.contains_key(&key) {
                Ok(Some((key, kind)))
            } else {
                Err(resource_not_found(kind, &rg, &name))
            }
        }
        _ => Err(Outcome::error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!(
                "The resource '{scope}' was not found (this emulator tags subscriptions, resource groups, clusters and registries)."
            ),
        )),
    }
}

fn tags_body(scope: &str, tags: &Value) -> Value {
    json!({
        "id": format!("{scope}/providers/Microsoft.Resources/tags/default"),
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": tags},
    })
}

fn get_tags(app: &App, claims: &Claims, scope: &str) -> Outcome {
    let store = lock(&app.store);
    let action = "Microsoft.Resources/tags/read";
    if !store.is_allowed(&claims.oid, action, scope, None, None) {
        return authorization_failed(claims, action, scope);
    }
    match tag_target(&store, scope) {
        Err(e) => e,
        Ok(None) => {
            let tags = store
                .subscription(&rbac::subscription_of(scope).unwrap_or_default())
                .map_or_else(|| json!({}), |s| json!(s.tags));
            Outcome::json(StatusCode::OK, tags_body(scope, &tags))
        }
        Ok(Some((key, _))) => {
            let tags = store.resources.get(&key).map_or_else(
                || json!({}),
                |r| r.body.get("tags").cloned().unwrap_or_else(|| json!({})),
            );
            Outcome::json(StatusCode::OK, tags_body(scope, &tags))
        }
    }
}

fn put_tags(app: &Arc<App>, req: &Request<'_>, claims: &Claims, scope: &str) -> Outcome {
    let input = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some(new_tags) = input
        .get("properties")
        .and_then(|p| p.get("tags"))
        .and_then(Value::as_object)
        .cloned()
    else {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'properties.tags is required'.",
        );
    };
    if !new_tags.values().all(Value::is_string) {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'tag values must be strings'.",
        );
    }
    let operation = if *req.method == Method::PATCH {
        match input.get("operation").and_then(Value::as_str) {
            Some(op)
                if ["Merge", "Replace", "Delete"]
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(op)) =>
            {
                op.to_ascii_lowercase()
            }
            _ => {
                return Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: 'operation must be Merge, Replace or Delete'.",
                );
            }
        }
    } else {
        "replace".to_owned()
    };
    let action = "Microsoft.Resources/tags/write";
    let keep = app.graph_keep();
    let (tags, resource_body) = {
        let mut store = lock(&app.store);
        if !store.is_allowed(&claims.oid, action, scope, None, None) {
            return authorization_failed(claims, action, scope);
        }
        let target = match tag_target(&store, scope) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let current: Map<String, Value> = match &target {
            None => store
                .subscription(&rbac::subscription_of(scope).unwrap_or_default())
                .map(|s| s.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
                .unwrap_or_default(),
            Some((key, _)) => store
                .resources
                .get(key)
                .and_then(|r| r.body.get("tags").and_then(Value::as_object).cloned())
                .unwrap_or_default(),
        };
        let merged = apply_tag_operation(current, &new_tags, &operation);
        let tags = Value::Object(merged.clone());
        let resource_body = match target {
            None => {
                let sub = rbac::subscription_of(scope).unwrap_or_default();
                if let Some(s) = store.subscriptions.get_mut(&sub) {
                    s.tags = merged
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect();
                }
                store
                    .subscription(&sub)
                    .map(crate::store::Subscription::to_arm)
            }
            Some((key, kind)) => {
                let tenant = app.tenant_of_scope(&store, scope);
                let Some(resource) = store.resources.get_mut(&key) else {
                    return rg_not_found(scope);
                };
                resource.body["tags"] = tags.clone();
                let body = resource.body.clone();
                let row = resource_graph_row(resource, &tenant);
                if kind != ResourceKind::ResourceGroup {
                    let rid = str_at(&body, &["id"]).unwrap_or_default().to_owned();
                    store.graph_write(GraphTable::Resources, &rid, Some(row), Instant::now(), keep);
                }
                Some(body)
            }
        };
        (tags, resource_body)
    };
    let mut outcome = Outcome::json(StatusCode::OK, tags_body(scope, &tags));
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &format!("{scope}/providers/Microsoft.Resources/tags/default"),
        action,
        resource_body,
    ));
    outcome
}

/// The Tags API's `Merge` / `Replace` / `Delete` (delete removes keys whose value matches, or any value when empty).
pub(crate) fn apply_tag_operation(
    mut current: Map<String, Value>,
    new_tags: &Map<String, Value>,
    operation: &str,
) -> Map<String, Value> {
    match operation {
        "merge" => {
            for (k, v) in new_tags {
                // Tag names compare case-insensitively: a merge replaces the existing spelling.
                current.retain(|existing, _| !existing.eq_ignore_ascii_case(k));
                current.insert(k.clone(), v.clone());
            }
            current
        }
        "delete" => {
            current.retain(|k, v| {
                !new_tags.iter().any(|(nk, nv)| {
                    nk.eq_ignore_ascii_case(k) && (nv.as_str() == Some("") || nv == v)
                })
            });
            current
        }
        _ => new_tags.clone(),
    }
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

/// One clause of the generic resource list's `$filter`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ResourceFilter {
    ResourceType(String),
    Name(String),
    TagName(String),
    TagValue(String),
}

/// Parses `resourceType eq '…'`, `name eq '…'`, `tagName eq '…'`, `tagValue eq '…'` joined by `and`.
pub(crate) fn parse_resource_filter(raw: Option<&String>) -> Result<Vec<ResourceFilter>, String> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let mut clauses = Vec::new();
    for part in split_and(raw) {
        let part = part.trim();
        let (field, value) = part
            .split_once(" eq ")
            .map(|(f, v)| (f.trim().to_ascii_lowercase(), v.trim()))
            .filter(|(_, v)| v.len() >= 2 && v.starts_with('\'') && v.ends_with('\''))
            .ok_or_else(|| format!("The filter clause '{part}' is not supported."))?;
        let value = value[1..value.len() - 1].to_owned();
        clauses.push(match field.as_str() {
            "resourcetype" => ResourceFilter::ResourceType(value),
            "name" => ResourceFilter::Name(value),
            "tagname" => ResourceFilter::TagName(value),
            "tagvalue" => ResourceFilter::TagValue(value),
            _ => return Err(format!("The filter field '{field}' is not supported.")),
        });
    }
    if clauses
        .iter()
        .any(|c| matches!(c, ResourceFilter::TagValue(_)))
        && !clauses
            .iter()
            .any(|c| matches!(c, ResourceFilter::TagName(_)))
    {
        return Err("tagValue needs tagName.".into());
    }
    Ok(clauses)
}

fn split_and(raw: &str) -> Vec<&str> {
    // ASCII lower-casing keeps byte offsets, so positions found in `lower` index `raw`.
    let lower = raw.to_ascii_lowercase();
    let mut parts = Vec::new();
    let mut start = 0;
    while let Some(i) = lower[start..].find(" and ") {
        parts.push(&raw[start..start + i]);
        start += i + 5;
    }
    parts.push(&raw[start..]);
    parts
}

fn generic_matches(body: &Value, filters: &[ResourceFilter]) -> bool {
    let tags = body.get("tags").and_then(Value::as_object);
    let tag_name = filters.iter().find_map(|f| match f {
        ResourceFilter::TagName(n) => Some(n),
        _ => None,
    });
    filters.iter().all(|f| match f {
        ResourceFilter::ResourceType(t) => {
            str_at(body, &["type"]).is_some_and(|x| x.eq_ignore_ascii_case(t))
        }
        ResourceFilter::Name(n) => {
            str_at(body, &["name"]).is_some_and(|x| x.eq_ignore_ascii_case(n))
        }
        ResourceFilter::TagName(n) => {
            tags.is_some_and(|t| t.keys().any(|k| k.eq_ignore_ascii_case(n)))
        }
        ResourceFilter::TagValue(v) => tags.is_some_and(|t| {
            t.iter().any(|(k, x)| {
                tag_name.is_some_and(|n| k.eq_ignore_ascii_case(n))
                    && x.as_str() == Some(v.as_str())
            })
        }),
    })
}

/// `GET /subscriptions/{s}[/resourceGroups/{rg}]/resources[?$filter=…]`: the generic list (no `properties`), only
/// what the caller may read.
fn list_generic_resources(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: Option<&str>,
) -> Outcome {
    let filters = match parse_resource_filter(req.query.get("$filter")) {
        Ok(f) => f,
        Err(message) => {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "UnsupportedFilter",
                format!(
                    "{message} Supported: resourceType, name, tagName, tagValue with eq, joined by and."
                ),
            );
        }
    };
    let sub_l = sub.to_ascii_lowercase();
    let items: Vec<Value> = {
        let store = lock(&app.store);
        if let Some(rg) = rg {
            let scope = Store::resource_group_id(&sub_l, rg);
            if !store.has_any_access(&claims.oid, &scope) {
                return authorization_failed(
                    claims,
                    "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
                    &scope,
                );
            }
            if store.resource_group(&sub_l, rg).is_none() {
                return rg_not_found(rg);
            }
        }
        store
            .resources
            .values()
            .filter(|r| r.kind != ResourceKind::ResourceGroup && r.subscription == sub_l)
            .filter(|r| rg.is_none_or(|rg| r.resource_group.eq_ignore_ascii_case(rg)))
            .filter(|r| {
                store.is_allowed(
                    &claims.oid,
                    &format!("{}/read", r.kind.action_prefix()),
                    str_at(&r.body, &["id"]).unwrap_or_default(),
                    None,
                    None,
                )
            })
            .filter(|r| generic_matches(&r.body, &filters))
            .map(|r| {
                let mut item = Map::new();
                for key in [
                    "id", "name", "type", "sku", "kind", "location", "identity", "tags",
                ] {
                    if let Some(v) = r.body.get(key) {
                        item.insert(key.to_owned(), v.clone());
                    }
                }
                Value::Object(item)
            })
            .collect()
    };
    let size = lock(&app.settings).list_page_size;
    page(app, req, &items, size)
}

/// The role-assignment list filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AssignmentFilter {
    All,
    AtScope,
    Principal(String),
}

pub(crate) fn parse_assignment_filter(raw: Option<&String>) -> Result<AssignmentFilter, String> {
    let Some(raw) = raw else {
        return Ok(AssignmentFilter::All);
    };
    let f = raw.trim();
    if f.eq_ignore_ascii_case("atScope()") {
        return Ok(AssignmentFilter::AtScope);
    }
    let lower = f.to_ascii_lowercase();
    for prefix in ["principalid eq ", "assignedto("] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let id = rest
                .trim_end_matches(')')
                .trim()
                .trim_matches('\'')
                .trim_matches('"');
            if uuid::Uuid::parse_str(id).is_ok() {
                return Ok(AssignmentFilter::Principal(id.to_owned()));
            }
        }
    }
    Err(format!(
        "The filter '{f}' is not supported. Supported filters: atScope(), principalId eq '{{objectId}}', assignedTo('{{objectId}}')."
    ))
}

fn list_role_assignments(app: &App, req: &Request<'_>, claims: &Claims, scope: &str) -> Outcome {
    let filter = match parse_assignment_filter(req.query.get("$filter")) {
        Ok(f) => f,
        Err(message) => {
            return Outcome::error(StatusCode::BAD_REQUEST, "UnsupportedQuery", message);
        }
    };
    let action = "Microsoft.Authorization/roleAssignments/read";
    let items: Vec<Value> = {
        let store = lock(&app.store);
        // Authorization first, then existence, as ARM does.
        if !store.is_allowed(&claims.oid, action, scope, None, None) {
            return authorization_failed(claims, action, scope);
        }
        if let Some(e) = check_scope_exists(&store, scope) {
            return e;
        }
        let target = rbac::normalize_scope(scope);
        let mut list: Vec<&RoleAssignment> = store
            .role_assignments
            .values()
            .filter(|a| {
                let s = a.scope_key();
                let above = rbac::is_at_or_above(&s, &target);
                let below = rbac::is_at_or_above(&target, &s);
                match &filter {
                    AssignmentFilter::All => above || below,
                    AssignmentFilter::AtScope => above,
                    AssignmentFilter::Principal(p) => {
                        (above || below) && a.principal_id.eq_ignore_ascii_case(p)
                    }
                }
            })
            .collect();
        list.sort_by_key(|a| a.id().to_ascii_lowercase());
        list.into_iter().map(RoleAssignment::to_arm).collect()
    };
    let size = lock(&app.settings).role_assignment_page_size;
    page(app, req, &items, size)
}

fn find_assignment<'a>(store: &'a Store, scope: &str, name: &str) -> Option<&'a RoleAssignment> {
    store
        .role_assignments
        .get(&name.to_ascii_lowercase())
        .filter(|a| a.scope_key() == rbac::normalize_scope(scope))
}

fn get_role_assignment(app: &App, claims: &Claims, scope: &str, name: &str) -> Outcome {
    let store = lock(&app.store);
    let action = "Microsoft.Authorization/roleAssignments/read";
    // Authorization first, then existence, as ARM does.
    if !store.is_allowed(&claims.oid, action, scope, None, None) {
        return authorization_failed(claims, action, scope);
    }
    if let Some(e) = check_scope_exists(&store, scope) {
        return e;
    }
    match find_assignment(&store, scope, name) {
        Some(a) => Outcome::json(StatusCode::OK, a.to_arm()),
        None => Outcome::error(
            StatusCode::NOT_FOUND,
            "RoleAssignmentNotFound",
            format!("The role assignment '{name}' is not found."),
        ),
    }
}

const PRINCIPAL_TYPES: [&str; 4] = ["User", "Group", "ServicePrincipal", "ForeignGroup"];

/// A role-assignment PUT body, validated against `RoleAssignmentCreateParameters` of the 2022-04-01 spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AssignmentBody {
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub delegated_managed_identity_resource_id: Option<String>,
}

/// Validates a role-assignment PUT body against the OpenAPI schema (required `properties`, required
/// `roleDefinitionId` and `principalId`, string types, the `principalType` enum). Returns ARM's 400 on failure.
pub(crate) fn validate_assignment_body(body: &[u8]) -> Result<AssignmentBody, (String, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            "InvalidRequestContent".to_owned(),
            format!(
                "The request content was invalid and could not be deserialized: '{}'.",
                e.to_string().replace('\'', "")
            ),
        )
    })?;
    let bad = |message: String| {
        (
            "InvalidRequestContent".to_owned(),
            format!("The request content was invalid and could not be deserialized: '{message}'."),
        )
    };
    let Some(root) = value.as_object() else {
        return Err(bad("the body must be a JSON object".into()));
    };
    let Some(props) = root.get("properties") else {
        return Err((
            "MissingRequiredProperty".into(),
            "The request body is missing the required property 'properties'.".into(),
        ));
    };
    let Some(props) = props.as_object() else {
        return Err(bad("properties must be an object".into()));
    };
    let string = |name: &str| -> Result<Option<String>, (String, String)> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!(
                "properties.{name} must be a string, found {other}"
            ))),
        }
    };
    let role_definition_id = string("roleDefinitionId")?.ok_or_else(|| {
        (
            "MissingRequiredProperty".to_owned(),
            "The request body is missing the required property 'properties.roleDefinitionId'."
                .to_owned(),
        )
    })?;
    let principal_id = string("principalId")?.ok_or_else(|| {
        (
            "MissingRequiredProperty".to_owned(),
            "The request body is missing the required property 'properties.principalId'."
                .to_owned(),
        )
    })?;
    let principal_type = string("principalType")?;
    if let Some(t) = &principal_type
        && !PRINCIPAL_TYPES.contains(&t.as_str())
    {
        {
            return Err((
                "InvalidPrincipalType".into(),
                format!(
                    "The value '{t}' of principalType is not valid. Allowed values: User, Group, ServicePrincipal, ForeignGroup."
                ),
            ));
        }
    }
    let condition = string("condition")?;
    let condition_version = string("conditionVersion")?;
    if let Some(v) = &condition_version
        && (v != "2.0" || condition.is_none())
    {
        {
            return Err((
                "InvalidConditionVersion".into(),
                "The conditionVersion must be '2.0' and requires a condition.".into(),
            ));
        }
    }
    if uuid::Uuid::parse_str(&principal_id).is_err() {
        return Err((
            "InvalidPrincipalId".into(),
            "A valid principal ID must be provided for role assignment.".into(),
        ));
    }
    if rbac::role_definition_guid(&role_definition_id).is_none()
        || !role_definition_id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.authorization/roledefinitions/")
    {
        return Err((
            "InvalidRoleDefinitionId".into(),
            format!("The role definition ID '{role_definition_id}' is not valid."),
        ));
    }
    Ok(AssignmentBody {
        role_definition_id,
        principal_id: principal_id.to_ascii_lowercase(),
        principal_type,
        description: string("description")?,
        condition,
        condition_version,
        delegated_managed_identity_resource_id: string("delegatedManagedIdentityResourceId")?,
    })
}

fn put_role_assignment(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
    name: &str,
) -> Outcome {
    if uuid::Uuid::parse_str(name).is_err() {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        );
    }
    let body = match validate_assignment_body(req.body) {
        Ok(b) => b,
        Err((code, message)) => return Outcome::error(StatusCode::BAD_REQUEST, &code, message),
    };
    let role_guid = rbac::role_definition_guid(&body.role_definition_id).unwrap_or_default();
    let action = "Microsoft.Authorization/roleAssignments/write";
    let replication = Duration::from_millis(lock(&app.settings).principal_replication_ms);
    let limit = lock(&app.settings).role_assignment_limit;
    let keep = app.graph_keep();
    let now = OffsetDateTime::now_utc();
    let (status, value, existing_same) = {
        let mut store = lock(&app.store);
        // Authorization first, then existence, as ARM does.
        if !store.is_allowed(&claims.oid, action, scope, Some(&role_guid), None) {
            return authorization_failed(claims, action, scope);
        }
        if let Some(e) = check_scope_exists(&store, scope) {
            return e;
        }
        if !store.role_definitions.contains_key(&role_guid) {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "RoleDefinitionDoesNotExist",
                format!(
                    "The specified role definition with ID '{}' does not exist.",
                    role_guid.replace('-', "")
                ),
            );
        }
        let sub = rbac::subscription_of(scope).unwrap_or_default();
        let tenant = store
            .subscription(&sub)
            .map(|s| s.tenant_id.clone())
            .unwrap_or_default();
        let scope_key = rbac::normalize_scope(scope);
        // Names are unique tenant-wide: the same name with another principal, role or scope cannot be updated.
        if let Some(existing) = store.role_assignments.get(&name.to_ascii_lowercase()) {
            let same = existing
                .principal_id
                .eq_ignore_ascii_case(&body.principal_id)
                && existing.role_guid == role_guid
                && existing.scope_key() == scope_key;
            if !same {
                return Outcome::error(
                    StatusCode::CONFLICT,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                );
            }
        } else if store.role_assignments.values().any(|a| {
            a.principal_id.eq_ignore_ascii_case(&body.principal_id)
                && a.role_guid == role_guid
                && a.scope_key() == scope_key
        }) {
            return Outcome::error(
                StatusCode::CONFLICT,
                "RoleAssignmentExists",
                "The role assignment already exists.",
            );
        }
        // The directory look-up ARM does unless principalType says ServicePrincipal.
        let known = store.principal(&body.principal_id).cloned();
        let resolved_type = match (&body.principal_type, &known) {
            (Some(t), _) if t == "ServicePrincipal" => t.clone(),
            (declared, Some(p)) if p.created_at.elapsed() >= replication => {
                if let Some(d) = declared
                    && d != p.kind.as_str()
                    && d != "ForeignGroup"
                {
                    {
                        return Outcome::error(
                            StatusCode::BAD_REQUEST,
                            "UnmatchedPrincipalType",
                            format!(
                                "The PrincipalId '{}' has type '{}' , which is different from specified PrincipalType '{d}'.",
                                body.principal_id.replace('-', ""),
                                p.kind.as_str()
                            ),
                        );
                    }
                }
                declared
                    .clone()
                    .unwrap_or_else(|| p.kind.as_str().to_owned())
            }
            _ => {
                return Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "PrincipalNotFound",
                    format!(
                        "Principal {} does not exist in the directory {tenant}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                        body.principal_id.replace('-', "")
                    ),
                );
            }
        };
        let existing = store
            .role_assignments
            .get(&name.to_ascii_lowercase())
            .cloned();
        if existing.is_none() && store.assignments_in_subscription(&sub) >= limit {
            return Outcome::error(
                StatusCode::BAD_REQUEST,
                "RoleAssignmentLimitExceeded",
                format!(
                    "No more role assignments can be created in subscription '{sub}': the limit of {limit} role assignments per subscription has been reached. See https://aka.ms/rbac-limits"
                ),
            );
        }
        let assignment = RoleAssignment {
            name: existing
                .as_ref()
                .map_or_else(|| name.to_ascii_lowercase(), |e| e.name.clone()),
            scope: existing
                .as_ref()
                .map_or_else(|| canonical_scope(scope), |e| e.scope.clone()),
            role_guid: role_guid.clone(),
            principal_id: body.principal_id.clone(),
            principal_type: resolved_type,
            description: body.description.clone(),
            condition: body.condition.clone(),
            condition_version: body.condition_version.clone(),
            delegated_managed_identity_resource_id: body
                .delegated_managed_identity_resource_id
                .clone(),
            created_on: existing.as_ref().map_or(now, |e| e.created_on),
            updated_on: now,
            created_by: existing
                .as_ref()
                .map_or_else(|| claims.oid.clone(), |e| e.created_by.clone()),
            updated_by: claims.oid.clone(),
        };
        let unchanged = existing.as_ref().is_some_and(|e| {
            e.description == assignment.description
                && e.condition == assignment.condition
                && e.principal_type == assignment.principal_type
        });
        let stored = if unchanged {
            existing.clone().unwrap_or(assignment)
        } else {
            assignment
        };
        store.graph_write(
            GraphTable::AuthorizationResources,
            &stored.id(),
            Some(assignment_graph_row(&stored, &tenant)),
            Instant::now(),
            keep,
        );
        let value = stored.to_arm();
        store
            .role_assignments
            .insert(name.to_ascii_lowercase(), stored);
        (
            if existing.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            value,
            unchanged,
        )
    };
    let mut outcome = Outcome::json(status, value.clone());
    if !existing_same {
        let id = str_at(&value, &["id"]).unwrap_or_default().to_owned();
        outcome.events.push(event(
            app,
            req,
            claims,
            ArmOperationKind::Write,
            &id,
            action,
            Some(value),
        ));
    }
    outcome
}

fn delete_role_assignment(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
    name: &str,
) -> Outcome {
    let action = "Microsoft.Authorization/roleAssignments/delete";
    let removed = {
        let mut store = lock(&app.store);
        if let Some(e) = check_scope_exists(&store, scope) {
            return e;
        }
        let existing_role = find_assignment(&store, scope, name).map(|a| a.role_guid.clone());
        if !store.is_allowed(&claims.oid, action, scope, None, existing_role.as_deref()) {
            return authorization_failed(claims, action, scope);
        }
        if existing_role.is_none() {
            return Outcome::empty(StatusCode::NO_CONTENT);
        }
        let removed = store.role_assignments.remove(&name.to_ascii_lowercase());
        if let Some(a) = &removed {
            store.graph_write(
                GraphTable::AuthorizationResources,
                &a.id(),
                None,
                Instant::now(),
                app.graph_keep(),
            );
        }
        removed
    };
    let Some(removed) = removed else {
        return Outcome::empty(StatusCode::NO_CONTENT);
    };
    let value = removed.to_arm();
    let mut outcome = Outcome::json(StatusCode::OK, value);
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Delete,
        &removed.id(),
        action,
        None,
    ));
    outcome
}

fn role_definition_prefix(scope: &str) -> String {
    match rbac::subscription_of(scope) {
        Some(sub) => format!("/subscriptions/{sub}"),
        None => String::new(),
    }
}

fn role_definitions_readable(store: &Store, claims: &Claims, scope: &str) -> Result<(), Outcome> {
    let action = "Microsoft.Authorization/roleDefinitions/read";
    if scope == "/" {
        // Built-in definitions are readable tenant-wide by any authenticated caller.
        return Ok(());
    }
    if let Some(e) = check_scope_exists(store, scope) {
        return Err(e);
    }
    if store.is_allowed(&claims.oid, action, scope, None, None)
        || store.has_any_access(&claims.oid, scope)
    {
        Ok(())
    } else {
        Err(authorization_failed(claims, action, scope))
    }
}

fn get_role_definition(app: &App, claims: &Claims, scope: &str, guid: &str) -> Outcome {
    let store = lock(&app.store);
    if let Err(e) = role_definitions_readable(&store, claims, scope) {
        return e;
    }
    let key = uuid::Uuid::parse_str(guid)
        .map(|g| g.to_string())
        .unwrap_or_default();
    match store.role_definitions.get(&key) {
        Some(def) => Outcome::json(StatusCode::OK, def.to_arm(&role_definition_prefix(scope))),
        None => Outcome::error(
            StatusCode::NOT_FOUND,
            "RoleDefinitionDoesNotExist",
            format!(
                "The specified role definition with ID '{}' does not exist.",
                guid.replace('-', "")
            ),
        ),
    }
}

fn list_role_definitions(app: &App, req: &Request<'_>, claims: &Claims, scope: &str) -> Outcome {
    let store = lock(&app.store);
    if let Err(e) = role_definitions_readable(&store, claims, scope) {
        return e;
    }
    let name_filter = match req.query.get("$filter").map(|f| f.trim().to_owned()) {
        None => None,
        Some(f) => {
            let lower = f.to_ascii_lowercase();
            match lower.strip_prefix("rolename eq ") {
                Some(rest) => Some(rest.trim().trim_matches('\'').to_owned()),
                None if lower.starts_with("type eq") => None,
                None => {
                    return Outcome::error(
                        StatusCode::BAD_REQUEST,
                        "UnsupportedQuery",
                        format!(
                            "The filter '{f}' is not supported. Supported filters: roleName eq '{{name}}'."
                        ),
                    );
                }
            }
        }
    };
    let prefix = role_definition_prefix(scope);
    let items: Vec<Value> = store
        .role_definitions
        .values()
        .filter(|d| {
            name_filter
                .as_deref()
                .is_none_or(|n| d.role_name.eq_ignore_ascii_case(n))
        })
        .map(|d| d.to_arm(&prefix))
        .collect();
    drop(store);
    let size = lock(&app.settings).list_page_size;
    page(app, req, &items, size)
}

fn put_role_definition(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
    guid: &str,
) -> Outcome {
    let Ok(guid) = uuid::Uuid::parse_str(guid).map(|g| g.to_string()) else {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleDefinitionId",
            format!("The role definition ID '{guid}' is not valid. It must be a GUID."),
        );
    };
    let input = match parse_body(req.body) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let props = input.get("properties").cloned().unwrap_or_default();
    let Some(role_name) = props
        .get("roleName")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleDefinitionName",
            "The role definition name (properties.roleName) is required.",
        );
    };
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let permission = props
        .get("permissions")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .cloned()
        .unwrap_or_default();
    let assignable = {
        let s = strings(props.get("assignableScopes"));
        if s.is_empty() {
            vec![canonical_scope(scope)]
        } else {
            s
        }
    };
    let action = "Microsoft.Authorization/roleDefinitions/write";
    let mut store = lock(&app.store);
    for target in &assignable {
        if !store.is_allowed(&claims.oid, action, target, None, None) {
            return authorization_failed(claims, action, target);
        }
    }
    if store
        .role_definitions
        .get(&guid)
        .is_some_and(|d| d.built_in)
    {
        return Outcome::error(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionUpdateNotPermitted",
            "Built-in role definitions cannot be updated.",
        );
    }
    if store
        .role_definitions
        .values()
        .any(|d| d.name != guid && d.role_name.eq_ignore_ascii_case(&role_name))
    {
        return Outcome::error(
            StatusCode::CONFLICT,
            "RoleDefinitionWithSameNameExists",
            format!(
                "A custom role with the same name '{role_name}' already exists in this directory."
            ),
        );
    }
    let existed = store.role_definitions.contains_key(&guid);
    let def = rbac::RoleDefinition {
        name: guid.clone(),
        role_name,
        description: props
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        built_in: false,
        actions: strings(permission.get("actions")),
        not_actions: strings(permission.get("notActions")),
        data_actions: strings(permission.get("dataActions")),
        not_data_actions: strings(permission.get("notDataActions")),
        assignable_scopes: assignable,
    };
    let value = def.to_arm(&role_definition_prefix(scope));
    store.role_definitions.insert(guid, def);
    Outcome::json(
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        value,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/subscriptions"), Route::Subscriptions);
        assert_eq!(
            parse_route(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
            ),
            Route::Item {
                sub: "s".into(),
                rg: "rg".into(),
                kind: ResourceKind::Cluster,
                name: "c".into()
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/providers/Microsoft.ContainerRegistry/registries"),
            Route::Collection {
                sub: "s".into(),
                rg: None,
                kind: ResourceKind::Registry
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/roleAssignments/x"),
            Route::RoleAssignment { scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r".into(), name: "x".into() }
        );
        assert_eq!(
            parse_route("/providers/Microsoft.Authorization/roleDefinitions/g"),
            Route::RoleDefinition {
                scope: "/".into(),
                guid: "g".into()
            }
        );
        assert_eq!(
            parse_route(
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Resources/tags/default"
            ),
            Route::Tags {
                scope: "/subscriptions/s/resourcegroups/rg".into()
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/providers/Microsoft.Compute/virtualMachines"),
            Route::Unknown
        );
    }

    #[test]
    fn filters() {
        assert_eq!(parse_assignment_filter(None), Ok(AssignmentFilter::All));
        assert_eq!(
            parse_assignment_filter(Some(&"atScope()".to_owned())),
            Ok(AssignmentFilter::AtScope)
        );
        let id = "ce2ce14e-85d7-4629-bdbc-454d0519d987";
        assert_eq!(
            parse_assignment_filter(Some(&format!("principalId eq '{id}'"))),
            Ok(AssignmentFilter::Principal(id.into()))
        );
        assert!(parse_assignment_filter(Some(&"roleDefinitionId eq 'x'".to_owned())).is_err());
    }

    #[test]
    fn tag_operations() {
        let current: Map<String, Value> =
            serde_json::from_value(json!({"a": "1", "Env": "prod"})).unwrap_or_default();
        let new: Map<String, Value> =
            serde_json::from_value(json!({"env": "dev", "b": "2"})).unwrap_or_default();
        let merged = apply_tag_operation(current.clone(), &new, "merge");
        assert_eq!(
            Value::Object(merged),
            json!({"a": "1", "env": "dev", "b": "2"})
        );
        let del: Map<String, Value> =
            serde_json::from_value(json!({"env": ""})).unwrap_or_default();
        assert_eq!(
            Value::Object(apply_tag_operation(current.clone(), &del, "delete")),
            json!({"a": "1"})
        );
        assert_eq!(
            Value::Object(apply_tag_operation(current, &new, "replace")),
            json!({"env": "dev", "b": "2"})
        );
    }
}
