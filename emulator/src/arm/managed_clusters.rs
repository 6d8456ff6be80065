//! `Microsoft.ContainerService/managedClusters`: PUT (accepted, then provisioned after a delay).

use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::generic::location_and_tags;
use super::{Outcome, Request, check_write, event, item_id, parse_body};
use crate::app::{App, ClusterOperation, PendingWrite, lock, str_at};
use crate::bus::{ArmEvent, ArmOperationKind};
use crate::config::ClusterEventTiming;
use crate::rbac;
use crate::store::{
    GraphTable, Principal, PrincipalKind, Resource, ResourceKind, Store, resource_graph_row,
    rfc3339,
};
use crate::token::Claims;

/// `PUT …/managedClusters/{name}`: validate, resolve identities, build the resource, store it, publish the event.
/// The store lock is taken only to read what validation needs and around each mutation.
pub(super) fn put_cluster(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    sub: &str,
    rg: &str,
    name: &str,
) -> Outcome {
    let spec = match ClusterSpec::parse(req.body) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let target = match validate_cluster_put(app, claims, &spec, sub, rg, name) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let identities = match resolve_identities(app, &spec, &target, name) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let resource = build_cluster(app, spec, &target, identities, name);
    if let Err(e) = store_cluster(app, &target, resource.clone()) {
        return e;
    }
    publish_cluster_write(app, req, claims, &target, resource)
}

const CLUSTER_WRITE: &str = "Microsoft.ContainerService/managedClusters/write";

/// What the PUT body asks for, checked for shape (no store access).
struct ClusterSpec {
    location: String,
    tags: Value,
    properties: Map<String, Value>,
    /// The `identity` block, when the body has one.
    identity: Option<Value>,
    /// A service principal's client id (`servicePrincipalProfile.clientId`, not `msi`).
    sp_client: Option<String>,
    /// A brought kubelet identity (`identityProfile.kubeletidentity`).
    kubelet: Option<Value>,
    sku: Option<Value>,
}

impl ClusterSpec {
    fn parse(body: &[u8]) -> Result<Self, Outcome> {
        let mut input = parse_body(body)?;
        let (location, tags) = location_and_tags(&input)?;
        let properties = input
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .map(std::mem::take)
            .unwrap_or_default();
        let identity = input.get("identity").cloned().filter(Value::is_object);
        // Managed identity unless the PUT names a service principal (and no identity).
        let sp_client = properties
            .get("servicePrincipalProfile")
            .and_then(|p| str_at(p, &["clientId"]))
            .filter(|c| !c.eq_ignore_ascii_case("msi"))
            .map(str::to_owned)
            .filter(|_| identity.is_none());
        let kubelet = properties
            .get("identityProfile")
            .and_then(|p| p.get("kubeletidentity"))
            .cloned();
        Ok(Self {
            location,
            tags,
            properties,
            identity,
            sp_client,
            kubelet,
            sku: input.get("sku").cloned(),
        })
    }
}

/// Where the cluster goes and what is there now (read under the store lock).
struct ClusterTarget {
    sub: String,
    rg_name: String,
    id: String,
    key: String,
    tenant: String,
    existing: Option<Resource>,
    /// The brought kubelet identity's resource id.
    byo_kubelet: Option<String>,
}

/// Authorization, the resource group, the existing cluster's location and running operation, and the service
/// principal's existence — in ARM's and AKS's order.
fn validate_cluster_put(
    app: &App,
    claims: &Claims,
    spec: &ClusterSpec,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<ClusterTarget, Outcome> {
    let sub_l = sub.to_ascii_lowercase();
    let store = lock(&app.store);
    let rg_name = check_write(
        &store,
        claims,
        &sub_l,
        rg,
        CLUSTER_WRITE,
        &item_id(&sub_l, rg, ResourceKind::Cluster, name),
    )?;
    let id = item_id(&sub_l, &rg_name, ResourceKind::Cluster, name);
    let key = id.to_ascii_lowercase();
    let existing = store.resources.get(&key).cloned();
    if let Some(existing) = &existing {
        let old = str_at(&existing.body, &["location"]).unwrap_or_default();
        if !old.eq_ignore_ascii_case(&spec.location) {
            return Err(Outcome::error(
                StatusCode::BAD_REQUEST,
                "LocationNotAvailableForResourceType",
                format!(
                    "The cluster already exists in location '{old}'; its location cannot change to '{}'.",
                    spec.location
                ),
            ));
        }
        if let Some(conflict) = operation_in_progress(existing) {
            return Err(conflict);
        }
    }
    let tenant = store
        .subscription(&sub_l)
        .map(|s| s.tenant_id.clone())
        .unwrap_or_default();
    if let Some(client) = &spec.sp_client
        && store.principal_by_app_id(client).is_none()
    {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "ServicePrincipalNotFound",
            format!(
                "Service principal clientID: {client} not found in Active Directory tenant {tenant}, Please see https://aka.ms/aks-sp-help for more details."
            ),
        ));
    }
    let byo_kubelet = match &spec.kubelet {
        None => None,
        Some(kubelet) => Some(
            str_at(kubelet, &["resourceId"])
                .map(str::to_owned)
                .ok_or_else(|| {
                    Outcome::error(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameter",
                        "identityProfile.kubeletidentity.resourceId is required.",
                    )
                })?,
        ),
    };
    Ok(ClusterTarget {
        byo_kubelet,
        sub: sub_l,
        rg_name,
        id,
        key,
        tenant,
        existing,
    })
}

/// AKS refuses a PUT while another operation on the cluster is still running.
fn operation_in_progress(existing: &Resource) -> Option<Outcome> {
    let state = str_at(&existing.body, &["properties", "provisioningState"]).unwrap_or_default();
    let operation = match state {
        "Creating" => "create",
        "Updating" => "update",
        _ => return None,
    };
    Some(Outcome::error(
        StatusCode::CONFLICT,
        "OperationNotAllowed",
        format!(
            "Operation is not allowed because there's an in progress {operation} managed cluster operation. Please wait for it to finish before starting a new operation."
        ),
    ))
}

/// The cluster's identities, resolved to directory principals.
struct ClusterIdentities {
    /// The answer's `identity` block (absent for a service-principal cluster).
    identity: Option<Value>,
    service_principal_profile: Value,
    /// A brought kubelet identity: its `identityProfile.kubeletidentity` value and object id.
    byo_kubelet: Option<(Value, String)>,
}

/// Resolves (and where AKS would, creates) the control-plane and brought kubelet identities.
fn resolve_identities(
    app: &App,
    spec: &ClusterSpec,
    target: &ClusterTarget,
    name: &str,
) -> Result<ClusterIdentities, Outcome> {
    let mut store = lock(&app.store);
    let tenant = &target.tenant;
    let (identity, service_principal_profile) = if let Some(client) = &spec.sp_client {
        (None, json!({"clientId": client}))
    } else {
        let id_value = spec
            .identity
            .clone()
            .unwrap_or_else(|| json!({"type": "SystemAssigned"}));
        let id_type = str_at(&id_value, &["type"]).unwrap_or("SystemAssigned");
        let resolved = if id_type.eq_ignore_ascii_case("SystemAssigned") {
            let oid = target
                .existing
                .as_ref()
                .and_then(|e| e.control_plane_object_id.clone())
                .unwrap_or_else(|| {
                    new_identity_principal(app, &mut store, name, None, tenant).object_id
                });
            json!({"type": "SystemAssigned", "principalId": oid, "tenantId": tenant})
        } else if id_type.eq_ignore_ascii_case("UserAssigned") {
            user_assigned_identities(app, &mut store, &id_value, tenant)?
        } else {
            return Err(Outcome::error(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                format!("The identity type '{id_type}' is not supported."),
            ));
        };
        (Some(resolved), json!({"clientId": "msi"}))
    };
    let byo_kubelet = target.byo_kubelet.as_ref().map(|rid| {
        let p = identity_by_resource_id(app, &mut store, rid, tenant);
        (
            json!({"resourceId": rid, "clientId": p.app_id, "objectId": p.object_id}),
            p.object_id,
        )
    });
    Ok(ClusterIdentities {
        identity,
        service_principal_profile,
        byo_kubelet,
    })
}

fn user_assigned_identities(
    app: &App,
    store: &mut Store,
    id_value: &Value,
    tenant: &str,
) -> Result<Value, Outcome> {
    let mut filled = Map::new();
    if let Some(map) = id_value
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
    {
        for rid in map.keys() {
            let p = identity_by_resource_id(app, store, rid, tenant);
            filled.insert(
                rid.clone(),
                json!({"clientId": p.app_id, "principalId": p.object_id}),
            );
        }
    }
    if filled.is_empty() {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "The identity type UserAssigned requires userAssignedIdentities.",
        ));
    }
    Ok(json!({"type": "UserAssigned", "userAssignedIdentities": filled}))
}

/// The principal of a user-assigned identity, created on first use (as when the identity resource exists).
fn identity_by_resource_id(app: &App, store: &mut Store, rid: &str, tenant: &str) -> Principal {
    store
        .principal_by_resource_id(rid)
        .cloned()
        .unwrap_or_else(|| {
            new_identity_principal(
                app,
                store,
                rid.rsplit('/').next().unwrap_or(rid),
                Some(rid.to_owned()),
                tenant,
            )
        })
}

/// The stored resource: the body AKS answers with (defaults filled, secrets dropped, provisioning started).
fn build_cluster(
    app: &App,
    spec: ClusterSpec,
    target: &ClusterTarget,
    identities: ClusterIdentities,
    name: &str,
) -> Resource {
    let existing = target.existing.as_ref();
    let mut properties = spec.properties;
    properties.insert(
        "servicePrincipalProfile".into(),
        identities.service_principal_profile,
    );
    fill_cluster_properties(
        app,
        &mut properties,
        existing,
        &target.rg_name,
        name,
        &spec.location,
    );
    // Keep the kubelet identity across updates; a BYO identity replaces it.
    let mut kubelet_oid = existing.and_then(|e| e.kubelet_object_id.clone());
    properties.remove("identityProfile");
    if let Some((value, oid)) = identities.byo_kubelet {
        properties.insert("identityProfile".into(), json!({"kubeletidentity": value}));
        kubelet_oid = Some(oid);
    } else if let Some(previous) =
        existing.and_then(|e| e.body["properties"].get("identityProfile").cloned())
    {
        properties.insert("identityProfile".into(), previous);
    }
    let mut body = json!({
        "id": target.id,
        "name": name,
        "type": "Microsoft.ContainerService/managedClusters",
        "location": spec.location,
        "tags": spec.tags,
        "sku": spec.sku.unwrap_or_else(|| json!({"name": "Base", "tier": "Free"})),
        "properties": Value::Object(properties),
    });
    if let Some(identity) = identities.identity {
        body["identity"] = identity;
    }
    let control_plane_object_id = body
        .get("identity")
        .and_then(|i| str_at(i, &["principalId"]))
        .map(str::to_owned);
    Resource {
        body,
        subscription: target.sub.clone(),
        resource_group: target.rg_name.clone(),
        kind: ResourceKind::Cluster,
        generation: existing.map_or(0, |e| e.generation + 1),
        kubelet_object_id: kubelet_oid,
        control_plane_object_id,
    }
}

/// The properties AKS fills in: versions, DNS, FQDN, node resource group, provisioning and power state.
fn fill_cluster_properties(
    app: &App,
    properties: &mut Map<String, Value>,
    existing: Option<&Resource>,
    rg_name: &str,
    name: &str,
    location: &str,
) {
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
    let state = if existing.is_some() {
        "Updating"
    } else {
        "Creating"
    };
    properties.insert("provisioningState".into(), json!(state));
    properties.insert("powerState".into(), json!({"code": "Running"}));
    properties.insert("kubernetesVersion".into(), json!(k8s));
    properties.insert("currentKubernetesVersion".into(), json!(k8s));
    properties.insert("dnsPrefix".into(), json!(dns_prefix));
    properties.insert(
        "fqdn".into(),
        existing
            .and_then(|e| e.body["properties"].get("fqdn").cloned())
            .unwrap_or_else(|| {
                json!(format!(
                    "{dns_prefix}-{fqdn_suffix}.hcp.{location}.azmk8s.io"
                ))
            }),
    );
    properties.insert("nodeResourceGroup".into(), json!(node_rg));
    fill_network_profile(properties);
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
            pool.insert("provisioningState".into(), json!(state));
            pool.insert("orchestratorVersion".into(), json!(k8s));
            pool.insert("currentOrchestratorVersion".into(), json!(k8s));
        }
    }
}

/// AKS always answers a `networkProfile`: what the PUT gave, with AKS's defaults (Azure CNI overlay, standard load
/// balancer) for what it left out.
fn fill_network_profile(properties: &mut Map<String, Value>) {
    let given = properties
        .get("networkProfile")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let plugin = given
        .get("networkPlugin")
        .and_then(Value::as_str)
        .unwrap_or("azure")
        .to_owned();
    let mut profile = Map::new();
    profile.insert("networkPlugin".into(), json!(plugin));
    if plugin == "azure" {
        profile.insert("networkPluginMode".into(), json!("overlay"));
    }
    for (key, value) in [
        ("podCidr", json!("10.244.0.0/16")),
        ("serviceCidr", json!("10.0.0.0/16")),
        ("dnsServiceIP", json!("10.0.0.10")),
        ("outboundType", json!("loadBalancer")),
        ("loadBalancerSku", json!("standard")),
        (
            "loadBalancerProfile",
            json!({"managedOutboundIPs": {"count": 1}, "backendPoolType": "nodeIPConfiguration"}),
        ),
        ("podCidrs", json!(["10.244.0.0/16"])),
        ("serviceCidrs", json!(["10.0.0.0/16"])),
        ("ipFamilies", json!(["IPv4"])),
    ] {
        profile.insert(key.to_owned(), value);
    }
    for (key, value) in given {
        profile.insert(key, value);
    }
    properties.insert("networkProfile".into(), Value::Object(profile));
}

/// Stores the cluster and its Resource Graph row. A concurrent PUT that got in since validation wins: this one
/// is refused as AKS refuses a PUT during a running operation.
fn store_cluster(app: &App, target: &ClusterTarget, resource: Resource) -> Result<(), Outcome> {
    let keep = app.graph_keep();
    let mut store = lock(&app.store);
    let now_generation = store.resources.get(&target.key).map(|r| r.generation);
    let seen_generation = target.existing.as_ref().map(|r| r.generation);
    if now_generation != seen_generation {
        let current = store.resources.get(&target.key).cloned();
        return Err(current
            .as_ref()
            .and_then(operation_in_progress)
            .unwrap_or_else(|| {
                Outcome::error(
                    StatusCode::CONFLICT,
                    "OperationNotAllowed",
                    "Another operation on the managed cluster changed it; retry the request.",
                )
            }));
    }
    store.graph_write(
        GraphTable::Resources,
        &target.id,
        Some(resource_graph_row(&resource, &target.tenant)),
        Instant::now(),
        keep,
    );
    store.resources.insert(target.key.clone(), resource);
    Ok(())
}

/// The answer, the write event (unless events wait for completion) and the pending provisioning.
fn publish_cluster_write(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    target: &ClusterTarget,
    resource: Resource,
) -> Outcome {
    let timing = lock(&app.settings).cluster_event_timing;
    let status = if target.existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let location = str_at(&resource.body, &["location"])
        .unwrap_or_default()
        .to_owned();
    let mut outcome = Outcome::json(status, resource.body.clone());
    if timing != ClusterEventTiming::OnCompletion {
        outcome.events.push(event(
            app,
            req,
            claims,
            ArmOperationKind::Write,
            &target.id,
            CLUSTER_WRITE,
            Some(resource.body),
        ));
    }
    outcome.provision = Some((target.key.clone(), resource.generation));
    let operation = uuid::Uuid::new_v4().to_string();
    lock(&app.operations).insert(
        operation.clone(),
        ClusterOperation {
            key: target.key.clone(),
            generation: resource.generation,
            subscription: target.sub.clone(),
            started: OffsetDateTime::now_utc(),
            ended: None,
        },
    );
    outcome = outcome
        .header(
            "Azure-AsyncOperation",
            format!(
                "{}/subscriptions/{}/providers/Microsoft.ContainerService/locations/{location}/operations/{operation}?api-version=2016-03-30",
                req.origin, target.sub
            ),
        )
        .header("Retry-After", "1");
    // Remember who asked, so the completion event carries the same claims and request.
    lock(&app.pending).insert(
        target.key.clone(),
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

pub(super) fn new_identity_principal(
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
    for op in lock(&app.operations)
        .values_mut()
        .filter(|op| op.key == key && op.generation == generation)
    {
        op.ended = Some(OffsetDateTime::now_utc());
    }
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

/// `GET /subscriptions/{s}/providers/Microsoft.ContainerService/locations/{l}/operations/{id}`: a cluster PUT's
/// status, `InProgress` until its provisioning completes.
pub(super) fn get_operation(app: &App, sub: &str, id: &str) -> Outcome {
    let operation = lock(&app.operations).get(&id.to_ascii_lowercase()).cloned();
    let Some(operation) = operation.filter(|op| op.subscription.eq_ignore_ascii_case(sub)) else {
        return Outcome::error(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("Operation '{id}' was not found."),
        );
    };
    let state = {
        let store = lock(&app.store);
        match store.resources.get(&operation.key) {
            Some(r) if r.generation == operation.generation => {
                str_at(&r.body, &["properties", "provisioningState"])
                    .unwrap_or("Succeeded")
                    .to_owned()
            }
            // A later write could only start after this one finished.
            Some(_) => "Succeeded".to_owned(),
            None => "Canceled".to_owned(),
        }
    };
    let status = match state.as_str() {
        "Creating" | "Updating" => "InProgress",
        other => other,
    };
    let mut body = json!({
        "name": id,
        "status": status,
        "startTime": rfc3339(operation.started),
    });
    if status != "InProgress" {
        body["endTime"] = json!(rfc3339(
            operation.ended.unwrap_or_else(OffsetDateTime::now_utc)
        ));
        return Outcome::json(StatusCode::OK, body);
    }
    Outcome::json(StatusCode::OK, body).header("Retry-After", "1")
}
