//! Turning one ARM operation into the event Azure's subscription system topic raises, in each delivery schema:
//! Event Grid schema, CloudEvents 1.0, and Azure Resource Notifications. Pure: data in, JSON out.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::bus::{ArmEvent, ArmOperationKind};

/// The Owner role's well-known id; the bus carries no RBAC evidence, so events name the role ARM would report for
/// a caller allowed to write (the emulator has already authorised the call).
const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const TAGS_SUFFIX: &str = "/providers/microsoft.resources/tags/default";

pub fn event_type(kind: ArmOperationKind) -> &'static str {
    match kind {
        ArmOperationKind::Write => "Microsoft.Resources.ResourceWriteSuccess",
        ArmOperationKind::Delete => "Microsoft.Resources.ResourceDeleteSuccess",
        ArmOperationKind::Action => "Microsoft.Resources.ResourceActionSuccess",
    }
}

/// .NET round-trip UTC time with seven fractional digits, as Event Grid writes `eventTime`.
pub fn format_event_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 100
    )
}

/// `Microsoft.Storage/storageAccounts/write` → `Microsoft.Storage`.
fn resource_provider(operation_name: &str) -> &str {
    operation_name.split('/').next().unwrap_or_default()
}

fn claim<'a>(event: &'a ArmEvent, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| event.claims.get(*name))
        .map(String::as_str)
}

/// The `data` object of a `Microsoft.Resources.*` event.
pub fn resource_event_data(event: &ArmEvent) -> Value {
    let principal_id = claim(
        event,
        &[
            "oid",
            "http://schemas.microsoft.com/identity/claims/objectidentifier",
        ],
    )
    .unwrap_or_default();
    // App-only tokens carry `idtyp: app` (v2) or no user name claims; users carry `upn`/`unique_name`.
    let principal_type = if claim(event, &["idtyp"]) == Some("app")
        || claim(event, &["upn", "unique_name", "name"]).is_none()
    {
        "ServicePrincipal"
    } else {
        "User"
    };
    let subscription_scope = format!("/subscriptions/{}", event.subscription_id);
    let assignment_id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("{subscription_scope}|{principal_id}").as_bytes(),
    )
    .simple()
    .to_string();
    let mut data = Map::new();
    data.insert(
        "authorization".into(),
        json!({
            "scope": event.authorization_scope,
            "action": event.authorization_action,
            "evidence": {
                "role": "Owner",
                "roleAssignmentScope": subscription_scope,
                "roleAssignmentId": assignment_id,
                "roleDefinitionId": OWNER_ROLE_ID.replace('-', ""),
                "principalId": principal_id.replace('-', ""),
                "principalType": principal_type,
            }
        }),
    );
    data.insert("claims".into(), json!(event.claims));
    data.insert("correlationId".into(), json!(event.correlation_id));
    data.insert(
        "httpRequest".into(),
        json!({
            "clientRequestId": event.correlation_id,
            "clientIpAddress": "127.0.0.1",
            "method": event.http_method,
            "url": event.url,
        }),
    );
    data.insert(
        "resourceProvider".into(),
        json!(resource_provider(&event.operation_name)),
    );
    data.insert("resourceUri".into(), json!(event.resource_uri));
    data.insert("operationName".into(), json!(event.operation_name));
    data.insert("status".into(), json!("Succeeded"));
    data.insert("subscriptionId".into(), json!(event.subscription_id));
    data.insert("tenantId".into(), json!(event.tenant_id));
    Value::Object(data)
}

/// Event Grid schema, as a subscription system topic publishes it.
pub fn event_grid_event(event: &ArmEvent, id: &str) -> Value {
    json!({
        "id": id,
        "topic": format!("/subscriptions/{}", event.subscription_id),
        "subject": event.resource_uri,
        "eventType": event_type(event.kind),
        "eventTime": format_event_time(event.time),
        "data": resource_event_data(event),
        "dataVersion": "2",
        "metadataVersion": "1",
    })
}

/// CloudEvents 1.0 (structured mode).
pub fn cloud_event(event: &ArmEvent, id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "type": event_type(event.kind),
        "source": format!("/subscriptions/{}", event.subscription_id),
        "id": id,
        "time": format_event_time(event.time),
        "subject": event.resource_uri,
        "data": resource_event_data(event),
    })
}

/// Azure Resource Notifications (`Microsoft.ResourceNotifications.Resources.*`), in CloudEvents 1.0 form. Only
/// resource writes and deletes raise them, not actions. A Tags API write is a change of the tagged resource: its
/// subject is the resource, not `…/providers/Microsoft.Resources/tags/default`, and it needs the resource's body
/// (which the bus carries for resources; subscription tags raise nothing).
pub fn resource_notification(event: &ArmEvent, id: &str) -> Option<Value> {
    let lower = event.resource_uri.to_ascii_lowercase();
    let subject = match lower.strip_suffix(TAGS_SUFFIX) {
        Some(resource) => {
            let body = event.resource_body.as_ref()?;
            let is_resource = body.get("type").and_then(Value::as_str).is_some_and(|t| {
                !t.eq_ignore_ascii_case("Microsoft.Resources/tags") && !t.is_empty()
            }) && body.get("id").is_some();
            if !is_resource {
                return None;
            }
            event.resource_uri[..resource.len()].to_owned()
        }
        None => event.resource_uri.clone(),
    };
    let (event_type, resource_info) = match event.kind {
        ArmOperationKind::Write => {
            let body = event.resource_body.as_ref()?.as_object()?;
            let mut info = Map::new();
            for key in ["tags", "id", "name", "type", "location", "properties"] {
                if let Some(value) = body.get(key) {
                    info.insert(key.to_owned(), value.clone());
                }
            }
            info.entry("id").or_insert_with(|| json!(subject));
            info.entry("tags").or_insert_with(|| json!({}));
            (
                "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
                Value::Object(info),
            )
        }
        ArmOperationKind::Delete => {
            let name = event.resource_uri.rsplit('/').next().unwrap_or_default();
            let resource_type = event.operation_name.rsplit_once('/').map_or("", |(t, _)| t);
            (
                "Microsoft.ResourceNotifications.Resources.Deleted",
                json!({"id": event.resource_uri, "name": name, "type": resource_type}),
            )
        }
        ArmOperationKind::Action => return None,
    };
    let api_version = url::Url::parse(&event.url).ok().and_then(|url| {
        url.query_pairs()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.into_owned())
    });
    Some(json!({
        "specversion": "1.0",
        "type": event_type,
        "source": format!("/subscriptions/{}", event.subscription_id),
        "id": id,
        "time": format_event_time(event.time),
        "subject": subject,
        "data": {
            "resourceInfo": resource_info,
            "operationalInfo": {"resourceEventTime": format_event_time(event.time)},
            "apiVersion": api_version.unwrap_or_default(),
        },
    }))
}

/// The validation event sent to a webhook when a subscription is created.
pub fn validation_event(subscription_name: &str, code: &str, now: OffsetDateTime) -> Value {
    json!([{
        "id": uuid::Uuid::new_v4().to_string(),
        "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
        "subject": "",
        "data": {
            "validationCode": code,
            "validationUrl": format!("https://127.0.0.1/eventsubscriptions/{subscription_name}/validate?id={code}"),
        },
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": format_event_time(now),
        "metadataVersion": "1",
        "dataVersion": "1",
    }])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    pub(crate) fn sample(kind: ArmOperationKind, uri: &str, operation: &str) -> ArmEvent {
        ArmEvent {
            kind,
            resource_uri: uri.to_owned(),
            operation_name: operation.to_owned(),
            subscription_id: "sub-1".into(),
            tenant_id: "tenant-1".into(),
            correlation_id: "corr-1".into(),
            claims: BTreeMap::from([
                ("oid".to_owned(), "0000-1111".to_owned()),
                ("appid".to_owned(), "app".to_owned()),
            ]),
            authorization_action: operation.to_owned(),
            authorization_scope: uri.to_owned(),
            http_method: "PUT".into(),
            url: format!("https://management.azure.com{uri}?api-version=2025-02-01"),
            time: datetime!(2026-01-04 10:15:00.123_456_7 UTC),
            resource_body: Some(
                json!({"id": uri, "name": "c1", "type": "Microsoft.ContainerService/managedClusters", "location": "westeurope", "tags": {"env": "prod"}, "properties": {"provisioningState": "Succeeded"}}),
            ),
        }
    }

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn event_grid_event_has_the_published_shape() {
        let uri = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1";
        let event = event_grid_event(
            &sample(
                ArmOperationKind::Write,
                uri,
                "Microsoft.ContainerService/managedClusters/write",
            ),
            "id-1",
        );
        assert_eq!(
            keys(&event),
            [
                "data",
                "dataVersion",
                "eventTime",
                "eventType",
                "id",
                "metadataVersion",
                "subject",
                "topic"
            ]
        );
        assert_eq!(event["topic"], "/subscriptions/sub-1");
        assert_eq!(event["subject"], uri);
        assert_eq!(
            event["eventType"],
            "Microsoft.Resources.ResourceWriteSuccess"
        );
        assert_eq!(event["eventTime"], "2026-01-04T10:15:00.1234567Z");
        let data = &event["data"];
        assert_eq!(
            keys(data),
            [
                "authorization",
                "claims",
                "correlationId",
                "httpRequest",
                "operationName",
                "resourceProvider",
                "resourceUri",
                "status",
                "subscriptionId",
                "tenantId"
            ]
        );
        assert_eq!(data["resourceProvider"], "Microsoft.ContainerService");
        assert_eq!(
            data["operationName"],
            "Microsoft.ContainerService/managedClusters/write"
        );
        assert_eq!(data["status"], "Succeeded");
        assert_eq!(
            keys(&data["authorization"]["evidence"]),
            [
                "principalId",
                "principalType",
                "role",
                "roleAssignmentId",
                "roleAssignmentScope",
                "roleDefinitionId"
            ]
        );
        assert_eq!(
            data["authorization"]["evidence"]["principalType"],
            "ServicePrincipal"
        );
        assert_eq!(
            keys(&data["httpRequest"]),
            ["clientIpAddress", "clientRequestId", "method", "url"]
        );
        assert_eq!(data["claims"]["oid"], "0000-1111");
    }

    #[test]
    fn cloud_event_and_resource_notification() {
        let uri = "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c1";
        let write = sample(
            ArmOperationKind::Write,
            uri,
            "Microsoft.ContainerService/managedClusters/write",
        );
        let cloud = cloud_event(&write, "id-2");
        assert_eq!(
            keys(&cloud),
            [
                "data",
                "id",
                "source",
                "specversion",
                "subject",
                "time",
                "type"
            ]
        );
        let arn = resource_notification(&write, "id-3").unwrap();
        assert_eq!(
            arn["type"],
            "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated"
        );
        assert_eq!(arn["data"]["resourceInfo"]["tags"]["env"], "prod");
        assert_eq!(
            arn["data"]["resourceInfo"]["properties"]["provisioningState"],
            "Succeeded"
        );
        assert_eq!(arn["data"]["apiVersion"], "2025-02-01");
        let mut delete = sample(
            ArmOperationKind::Delete,
            uri,
            "Microsoft.ContainerService/managedClusters/delete",
        );
        delete.resource_body = None;
        let deleted = resource_notification(&delete, "id-4").unwrap();
        assert_eq!(
            deleted["type"],
            "Microsoft.ResourceNotifications.Resources.Deleted"
        );
        assert_eq!(
            deleted["data"]["resourceInfo"]["type"],
            "Microsoft.ContainerService/managedClusters"
        );
        let mut tags = sample(
            ArmOperationKind::Write,
            &format!("{uri}/providers/Microsoft.Resources/tags/default"),
            "Microsoft.Resources/tags/write",
        );
        let retagged = resource_notification(&tags, "id-5").unwrap();
        assert_eq!(
            retagged["subject"], uri,
            "a tags write is a change of the tagged resource"
        );
        assert_eq!(retagged["data"]["resourceInfo"]["tags"]["env"], "prod");
        tags.resource_body =
            Some(json!({"id": "/subscriptions/sub-1", "subscriptionId": "sub-1", "tags": {}}));
        assert!(
            resource_notification(&tags, "id-6").is_none(),
            "subscription tags raise nothing"
        );
    }
    /// The check made before building an event decides as [`EventSubscription::matches`] decides of the built
    /// event, for every kind, operation (in any case) and filter shape of the two ARM schemas.
    #[test]
    fn the_check_before_building_agrees_with_the_built_event() {
        use crate::eventgrid::{EventSchema, EventSubscription};
        let url = "http://127.0.0.1:1/api/events";
        let infra = EventSubscription::as_infra_configures("infra", url);
        let every = EventSubscription::new("every", url);
        let writes_only = EventSubscription {
            included_event_types: vec!["microsoft.resources.resourcewritesuccess".to_owned()],
            ..EventSubscription::new("writes", url)
        };
        let operations_only = EventSubscription {
            operation_name_filter: Some(vec![
                "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE".to_owned(),
            ]),
            ..EventSubscription::new("ops", url)
        };
        let uri = "/subscriptions/sub-1/resourceGroups/apps/providers/Microsoft.ContainerService/managedClusters/c1";
        let mut checked = 0;
        for subscription in [infra, every, writes_only, operations_only] {
            for schema in [
                EventSchema::EventGridSchema,
                EventSchema::CloudEventSchemaV1_0,
            ] {
                let subscription = EventSubscription {
                    schema,
                    ..subscription.clone()
                };
                for kind in [
                    ArmOperationKind::Write,
                    ArmOperationKind::Delete,
                    ArmOperationKind::Action,
                ] {
                    for operation in [
                        "Microsoft.ContainerService/managedClusters/write",
                        "microsoft.containerservice/MANAGEDCLUSTERS/delete",
                        "Microsoft.Authorization/roleAssignments/write",
                        "",
                    ] {
                        let event = sample(kind, uri, operation);
                        let built = match schema {
                            EventSchema::CloudEventSchemaV1_0 => cloud_event(&event, "id"),
                            _ => event_grid_event(&event, "id"),
                        };
                        assert_eq!(
                            subscription.may_match_arm(&event),
                            subscription.matches(&built),
                            "{} {schema:?} {kind:?} {operation}",
                            subscription.name
                        );
                        checked += usize::from(subscription.matches(&built));
                    }
                }
            }
        }
        assert!(checked > 0, "some events match");
    }
}
