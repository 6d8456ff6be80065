//! `Microsoft.Authorization/roleDefinitions`: list, get, create custom roles.

use http::StatusCode;
use serde_json::Value;

use super::paging::page;
use super::{Outcome, Request, authorization_failed, check_scope_exists, parse_body};
use crate::app::{App, canonical_scope, lock};
use crate::rbac;
use crate::store::Store;
use crate::token::Claims;

pub(super) fn role_definition_prefix(scope: &str) -> String {
    match rbac::subscription_of(scope) {
        Some(sub) => format!("/subscriptions/{sub}"),
        None => String::new(),
    }
}

pub(super) fn role_definitions_readable(
    store: &Store,
    claims: &Claims,
    scope: &str,
) -> Result<(), Outcome> {
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

pub(super) fn get_role_definition(app: &App, claims: &Claims, scope: &str, guid: &str) -> Outcome {
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

pub(super) fn list_role_definitions(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
) -> Outcome {
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
    page(req, &items, size)
}

pub(super) fn put_role_definition(
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
