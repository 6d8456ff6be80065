//! Tracked resources in general: list and get by type, delete, and the generic `/resources` list.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde_json::{Map, Value};

use super::paging::page;
use super::tags::tags_of;
use super::{
    Outcome, Request, authorization_failed, check_write, event, item_id, resource_not_found,
    rg_not_found,
};
use crate::app::{App, lock, str_at};
use crate::bus::ArmOperationKind;
use crate::rbac;
use crate::store::{GraphTable, Resource, ResourceKind, Store};
use crate::token::Claims;

pub(super) fn list_resources(
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
    page(req, &items, size)
}

pub(super) fn get_resource(
    app: &App,
    claims: &Claims,
    id: &str,
    kind: ResourceKind,
    name: &str,
) -> Outcome {
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

pub(super) fn delete_resource(
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
pub(super) fn remove_owned_identities(store: &mut Store, r: &Resource) {
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

/// The `location` (required, lower-cased) and `tags` of a tracked resource's PUT body.
pub(super) fn location_and_tags(input: &Value) -> Result<(String, Value), Outcome> {
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

pub(super) fn split_and(raw: &str) -> Vec<&str> {
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

pub(super) fn generic_matches(body: &Value, filters: &[ResourceFilter]) -> bool {
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
pub(super) fn list_generic_resources(
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
    page(req, &items, size)
}
