//! `Microsoft.Resources/tags`: the Tags API at subscription, resource group and resource scope.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::routes::{Route, parse_route};
use super::{
    Outcome, Request, authorization_failed, event, item_id, parse_body, resource_not_found,
    rg_not_found,
};
use crate::app::{App, lock, str_at};
use crate::bus::ArmOperationKind;
use crate::rbac;
use crate::store::{GraphTable, ResourceKind, Store, resource_graph_row};
use crate::token::Claims;

/// The `tags` of a PUT or PATCH body: an object of strings that ARM accepts (see [`check_tags`]).
pub(super) fn tags_of(value: &Value) -> Result<Value, Outcome> {
    match value.get("tags") {
        None | Some(Value::Null) => Ok(json!({})),
        Some(Value::Object(map)) => {
            check_tags(map)?;
            Ok(Value::Object(map.clone()))
        }
        Some(_) => Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'tags must be an object'.",
        )),
    }
}

/// ARM's limits on tag names and values.
pub(super) const MAX_TAG_NAME_CHARS: usize = 512;
pub(super) const MAX_TAG_VALUE_CHARS: usize = 256;

/// What ARM refuses in a set of tags: values that are not strings, names over 512 and values over 256 characters,
/// and two names that differ only in case (tag names are case-insensitive, so one resource cannot hold both).
pub(super) fn check_tags(tags: &Map<String, Value>) -> Result<(), Outcome> {
    let bad =
        |code: &str, message: String| Err(Outcome::error(StatusCode::BAD_REQUEST, code, message));
    let mut seen: Vec<&str> = Vec::with_capacity(tags.len());
    for (name, value) in tags {
        let Some(value) = value.as_str() else {
            return bad(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'tag values must be strings'."
                    .to_owned(),
            );
        };
        if name.chars().count() > MAX_TAG_NAME_CHARS {
            return bad(
                "InvalidTagNameLength",
                format!(
                    "The tag name '{name}' exceeds the maximum length of '{MAX_TAG_NAME_CHARS}' characters."
                ),
            );
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            return bad(
                "InvalidTagValueLength",
                format!(
                    "The tag value '{value}' exceeds the maximum length of '{MAX_TAG_VALUE_CHARS}' characters."
                ),
            );
        }
        if let Some(other) = seen.iter().find(|s| s.eq_ignore_ascii_case(name)) {
            return bad(
                "InvalidRequestContent",
                format!(
                    "The request content was invalid and could not be deserialized: 'tag names are case-insensitive: '{other}' and '{name}' name the same tag'."
                ),
            );
        }
        seen.push(name);
    }
    Ok(())
}

/// Resolves a tag target scope to (stored body, kind) or an error.
pub(super) fn tag_target(
    store: &Store,
    scope: &str,
) -> Result<Option<(String, ResourceKind)>, Outcome> {
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

pub(super) fn tags_body(scope: &str, tags: &Value) -> Value {
    json!({
        "id": format!("{scope}/providers/Microsoft.Resources/tags/default"),
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": tags},
    })
}

pub(super) fn get_tags(app: &App, claims: &Claims, scope: &str) -> Outcome {
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

pub(super) fn put_tags(app: &Arc<App>, req: &Request<'_>, claims: &Claims, scope: &str) -> Outcome {
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
    if let Err(e) = check_tags(&new_tags) {
        return e;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

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
