//! `Microsoft.ContainerRegistry/registries`: PUT and PATCH.

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::generic::location_and_tags;
use super::tags::tags_of;
use super::{Outcome, Request, check_write, event, item_id, parse_body, resource_not_found};
use crate::app::{App, lock, str_at};
use crate::bus::ArmOperationKind;
use crate::store::{GraphTable, Resource, ResourceKind, Store, resource_graph_row, rfc3339};
use crate::token::Claims;

pub(super) const REGISTRY_SKUS: [&str; 3] = ["Basic", "Standard", "Premium"];

pub(super) const ROLE_ASSIGNMENT_MODES: [&str; 2] =
    ["AbacRepositoryPermissions", "LegacyRegistryPermissions"];

/// `PUT …/registries/{name}`: validate the body, check and store under the lock, publish the event.
pub(super) fn put_registry(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    name: &str,
) -> Outcome {
    let spec = match RegistrySpec::parse(req.body) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let sub_l = sub.to_ascii_lowercase();
    let (id, body, created) = {
        let mut store = lock(&app.store);
        let rg_name = match check_write(
            &store,
            claims,
            &sub_l,
            rg,
            REGISTRY_WRITE,
            &item_id(&sub_l, rg, ResourceKind::Registry, name),
        ) {
            Ok(n) => n,
            Err(e) => return e,
        };
        // ARM finds the resource group before the provider validates the name.
        if let Err(e) = check_registry_name(name) {
            return e;
        }
        let id = item_id(&sub_l, &rg_name, ResourceKind::Registry, name);
        let existing = store.resources.get(&id.to_ascii_lowercase()).cloned();
        let creation = existing
            .as_ref()
            .and_then(|e| str_at(&e.body, &["properties", "creationDate"]).map(str::to_owned))
            .unwrap_or_else(|| rfc3339(OffsetDateTime::now_utc()));
        let body = registry_body(&spec, &id, name, &creation);
        let resource = Resource {
            body: body.clone(),
            subscription: sub_l,
            resource_group: rg_name,
            kind: ResourceKind::Registry,
            generation: existing.as_ref().map_or(0, |e| e.generation + 1),
            kubelet_object_id: None,
            control_plane_object_id: None,
        };
        store_registry(app, &mut store, resource);
        (id, body, existing.is_none())
    };
    // The create answer shows `Creating`, as the spec's example does; the registry is ready at once.
    let mut answer = body.clone();
    let status = if created {
        answer["properties"]["provisioningState"] = json!("Creating");
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut outcome = Outcome::json(status, answer);
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &id,
        REGISTRY_WRITE,
        Some(body),
    ));
    outcome
}

const REGISTRY_WRITE: &str = "Microsoft.ContainerRegistry/registries/write";

/// What a registry PUT body asks for, validated.
struct RegistrySpec {
    location: String,
    tags: Value,
    sku: &'static str,
    mode: &'static str,
    admin_user_enabled: bool,
    anonymous_pull_enabled: bool,
}

impl RegistrySpec {
    fn parse(body: &[u8]) -> Result<Self, Outcome> {
        let input = parse_body(body)?;
        let (location, tags) = location_and_tags(&input)?;
        let sku = str_at(&input, &["sku", "name"])
            .and_then(registry_sku)
            .ok_or_else(invalid_sku)?;
        let properties = input
            .get("properties")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mode = match properties.get("roleAssignmentMode") {
            None | Some(Value::Null) => "LegacyRegistryPermissions",
            Some(v) => role_assignment_mode(v)?,
        };
        let flag = |key: &str| {
            properties
                .get(key)
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        Ok(Self {
            location,
            tags,
            sku,
            mode,
            admin_user_enabled: flag("adminUserEnabled"),
            anonymous_pull_enabled: flag("anonymousPullEnabled"),
        })
    }
}

/// ACR's name rule: 5 to 50 alphanumeric characters.
fn check_registry_name(name: &str) -> Result<(), Outcome> {
    if (5..=50).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(Outcome::error(
        StatusCode::BAD_REQUEST,
        "InvalidParameter",
        format!(
            "Registry name '{name}' is invalid: it may contain only alpha numeric characters and be between 5 and 50 characters long."
        ),
    ))
}

fn registry_sku(name: &str) -> Option<&'static str> {
    REGISTRY_SKUS
        .iter()
        .find(|k| k.eq_ignore_ascii_case(name))
        .copied()
}

fn invalid_sku() -> Outcome {
    Outcome::error(
        StatusCode::BAD_REQUEST,
        "InvalidParameter",
        "The value of parameter sku.name is invalid. Allowed values: Basic, Standard, Premium.",
    )
}

fn role_assignment_mode(v: &Value) -> Result<&'static str, Outcome> {
    v.as_str()
        .and_then(|m| {
            ROLE_ASSIGNMENT_MODES
                .iter()
                .find(|x| x.eq_ignore_ascii_case(m))
                .copied()
        })
        .ok_or_else(|| {
            Outcome::error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!(
                    "The value '{v}' of properties.roleAssignmentMode is invalid. Allowed values: AbacRepositoryPermissions, LegacyRegistryPermissions."
                ),
            )
        })
}

/// The registry as ACR answers it.
fn registry_body(spec: &RegistrySpec, id: &str, name: &str, creation: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "type": "Microsoft.ContainerRegistry/registries",
        "location": spec.location,
        "tags": spec.tags,
        "sku": {"name": spec.sku, "tier": spec.sku},
        "properties": {
            "loginServer": format!("{}.azurecr.io", name.to_ascii_lowercase()),
            "creationDate": creation,
            "provisioningState": "Succeeded",
            "adminUserEnabled": spec.admin_user_enabled,
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
            "anonymousPullEnabled": spec.anonymous_pull_enabled,
            "roleAssignmentMode": spec.mode,
        }
    })
}

/// Stores a registry and its Resource Graph row.
fn store_registry(app: &App, store: &mut Store, resource: Resource) {
    let tenant = store
        .subscription(&resource.subscription)
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
    store.resources.insert(id.to_ascii_lowercase(), resource);
}

/// `PATCH …/registries/{name}`: tags, SKU and the updatable properties of an existing registry.
pub(super) fn patch_registry(
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
    let body = {
        let mut store = lock(&app.store);
        let rg_name = match check_write(
            &store,
            claims,
            &sub_l,
            rg,
            REGISTRY_WRITE,
            &item_id(&sub_l, rg, ResourceKind::Registry, name),
        ) {
            Ok(n) => n,
            Err(e) => return e,
        };
        let key = item_id(&sub_l, &rg_name, ResourceKind::Registry, name).to_ascii_lowercase();
        let Some(mut resource) = store.resources.get(&key).cloned() else {
            return resource_not_found(ResourceKind::Registry, rg, name);
        };
        if let Err(e) = apply_registry_patch(&mut resource.body, &input) {
            return e;
        }
        resource.generation += 1;
        let body = resource.body.clone();
        store_registry(app, &mut store, resource);
        body
    };
    let id = str_at(&body, &["id"]).unwrap_or_default().to_owned();
    let mut outcome = Outcome::json(StatusCode::OK, body.clone());
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Write,
        &id,
        REGISTRY_WRITE,
        Some(body),
    ));
    outcome
}

/// The properties a PATCH may change (others are ignored, as ACR ignores read-only ones).
const PATCHABLE: [&str; 5] = [
    "adminUserEnabled",
    "anonymousPullEnabled",
    "publicNetworkAccess",
    "networkRuleBypassOptions",
    "zoneRedundancy",
];

fn apply_registry_patch(body: &mut Value, input: &Value) -> Result<(), Outcome> {
    if input.get("tags").is_some() {
        body["tags"] = tags_of(input)?;
    }
    if let Some(sku) = str_at(input, &["sku", "name"]) {
        let sku = registry_sku(sku).ok_or_else(invalid_sku)?;
        body["sku"] = json!({"name": sku, "tier": sku});
    }
    if let Some(props) = input.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            if k == "roleAssignmentMode" {
                body["properties"][k] = json!(role_assignment_mode(v)?);
            } else if PATCHABLE.contains(&k.as_str()) {
                body["properties"][k] = v.clone();
            }
        }
    }
    Ok(())
}
