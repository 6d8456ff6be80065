//! `Microsoft.Resources/resourceGroups`: create or update, delete (with what it contains).

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde_json::{Value, json};

use super::generic::remove_owned_identities;
use super::tags::tags_of;
use super::{Outcome, Request, authorization_failed, event, parse_body, rg_not_found};
use crate::app::{App, lock, str_at};
use crate::bus::ArmOperationKind;
use crate::store::{GraphTable, Resource, ResourceKind, Store};
use crate::token::Claims;

pub(super) fn put_resource_group(
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

pub(super) fn delete_resource_group(
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
