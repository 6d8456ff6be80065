//! Microsoft Graph: the directory look-ups the handler and azure-cli make — a service principal by app id or
//! object id, the service-principal list filtered by name, a user, and `directoryObjects/getByIds`. Security
//! groups and memberships are in `graph_groups`.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::app::{App, lock};
use crate::arm::{self, Outcome, Request};
use crate::store::{PrincipalKind, Store};

use super::graph_common::{CONTEXT, directory_object, not_found};
use super::graph_groups;

/// The stats label of a Graph request.
pub(super) fn label(method: &Method, path: &str) -> String {
    let rest = path.get("/v1.0/".len()..).unwrap_or_default();
    let noun = rest
        .split(['/', '(', '?'])
        .next()
        .unwrap_or_default()
        .to_owned();
    let sub = [
        "members",
        "owners",
        "transitiveMembers",
        "transitiveMemberOf",
    ]
    .into_iter()
    .find(|s| rest.split(['/', '?']).nth(2) == Some(*s));
    match (noun.as_str(), sub) {
        (_, Some(sub)) => format!("{method} graph {noun}/{sub}"),
        ("servicePrincipals", None) if *method == Method::GET => {
            "GET graph servicePrincipals".to_owned()
        }
        _ => format!("{method} graph {noun}"),
    }
}

/// Microsoft Graph, authenticated with a Graph token.
pub(super) fn graph_endpoint(app: &App, req: &Request<'_>) -> (Outcome, Option<String>) {
    let claims = match arm::authenticate(app, req.headers, true) {
        Ok(c) => c,
        Err(e) => return (e, None),
    };
    let caller = Some(claims.oid.clone());
    let rest = req.path["/v1.0/".len()..].trim_end_matches('/');
    if let Some(outcome) = graph_groups::route(app, req, &claims, rest) {
        return (outcome, caller);
    }
    let store = lock(&app.store);
    let outcome = match (req.method.clone(), rest) {
        (Method::POST, "directoryObjects/getByIds") => get_by_ids(&store, req.body),
        (Method::GET, "servicePrincipals") => list_service_principals(&store, req),
        (Method::GET, _) => get_object(&store, rest),
        _ => arm::graph_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Request_BadRequest",
            &format!(
                "The method '{}' is not supported for '{rest}' by this emulator.",
                req.method
            ),
        ),
    };
    (outcome, caller)
}

/// `servicePrincipals(appId='…')`, `servicePrincipals/{id}`, `users/{id}`, `directoryObjects/{id}`.
fn get_object(store: &Store, rest: &str) -> Outcome {
    let (found, key, entity) = if let Some(inner) = rest
        .strip_prefix("servicePrincipals(appId=")
        .and_then(|r| r.strip_suffix(')'))
    {
        let app_id = inner.trim_matches('\'').trim_matches('"').to_owned();
        let found = store
            .principal_by_app_id(&app_id)
            .filter(|p| p.kind == PrincipalKind::ServicePrincipal);
        (found, app_id, "servicePrincipals")
    } else if let Some(id) = rest.strip_prefix("servicePrincipals/") {
        let found = store
            .principal(id)
            .filter(|p| p.kind == PrincipalKind::ServicePrincipal);
        (found, id.to_owned(), "servicePrincipals")
    } else if let Some(id) = rest.strip_prefix("users/") {
        let found = store
            .principal(id)
            .filter(|p| p.kind == PrincipalKind::User);
        (found, id.to_owned(), "users")
    } else if let Some(id) = rest.strip_prefix("directoryObjects/") {
        (store.principal(id), id.to_owned(), "directoryObjects")
    } else {
        return arm::graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Resource not found for the segment '{}'.",
                rest.split('/').next().unwrap_or_default()
            ),
        );
    };
    match found {
        Some(p) => {
            let mut body = directory_object(store, p);
            body["@odata.context"] = json!(format!("{CONTEXT}#{entity}/$entity"));
            Outcome::json(StatusCode::OK, body)
        }
        None => not_found(&key),
    }
}

/// `GET /v1.0/servicePrincipals?$filter=…`: `servicePrincipalNames/any(c:c eq '…')`, `appId eq '…'` or
/// `displayName eq '…'`.
fn list_service_principals(store: &Store, req: &Request<'_>) -> Outcome {
    let Some(filter) = req.query.get("$filter") else {
        return unsupported_filter("(none)");
    };
    let Some((field, value)) = parse_sp_filter(filter) else {
        return unsupported_filter(filter);
    };
    let value_l = value.to_ascii_lowercase();
    let items: Vec<Value> = store
        .principals
        .values()
        .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
        .filter(|p| match field {
            SpFilter::Name | SpFilter::AppId => p.app_id == value_l,
            SpFilter::DisplayName => p.display_name == value,
        })
        .map(|p| directory_object(store, p))
        .collect();
    Outcome::json(
        StatusCode::OK,
        json!({"@odata.context": format!("{CONTEXT}#servicePrincipals"), "value": items}),
    )
}

#[derive(Clone, Copy)]
enum SpFilter {
    Name,
    AppId,
    DisplayName,
}

fn parse_sp_filter(filter: &str) -> Option<(SpFilter, String)> {
    let f = filter.trim();
    let quoted = |s: &str| {
        let s = s.trim();
        (s.len() >= 2 && s.starts_with('\'') && s.ends_with('\''))
            .then(|| s[1..s.len() - 1].replace("''", "'"))
    };
    if let Some(inner) = f
        .strip_prefix("servicePrincipalNames/any(")
        .and_then(|r| r.strip_suffix(')'))
    {
        // `c:c eq 'name'` with any lambda variable.
        let (var, cond) = inner.split_once(':')?;
        let value = cond
            .trim()
            .strip_prefix(var.trim())?
            .trim()
            .strip_prefix("eq ")?;
        return Some((SpFilter::Name, quoted(value)?));
    }
    let (field, value) = f.split_once(" eq ")?;
    let field = match field.trim() {
        "appId" => SpFilter::AppId,
        "displayName" => SpFilter::DisplayName,
        _ => return None,
    };
    Some((field, quoted(value)?))
}

fn unsupported_filter(filter: &str) -> Outcome {
    arm::graph_error(
        StatusCode::BAD_REQUEST,
        "Request_UnsupportedQuery",
        &format!(
            "Unsupported query '{filter}'. This emulator supports servicePrincipalNames/any(c:c eq '…'), appId eq '…' and displayName eq '…'."
        ),
    )
}

/// `POST /v1.0/directoryObjects/getByIds` with `{"ids": […], "types": […]}`: the objects that exist, in the
/// order asked (unknown ids are left out, as Graph does).
fn get_by_ids(store: &Store, body: &[u8]) -> Outcome {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(ids) = parsed
        .as_ref()
        .and_then(|v| v.get("ids"))
        .and_then(Value::as_array)
    else {
        return arm::graph_error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "The request body must be a JSON object with an `ids` array.",
        );
    };
    let types: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v.get("types"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let items: Vec<Value> = ids
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|id| store.principal(id))
        .filter(|p| {
            let ty = match p.kind {
                PrincipalKind::ServicePrincipal => "serviceprincipal",
                PrincipalKind::User => "user",
                PrincipalKind::Group => "group",
            };
            types.is_empty() || types.iter().any(|t| t == ty)
        })
        .map(|p| directory_object(store, p))
        .collect();
    Outcome::json(
        StatusCode::OK,
        json!({"@odata.context": format!("{CONTEXT}#directoryObjects"), "value": items}),
    )
}
