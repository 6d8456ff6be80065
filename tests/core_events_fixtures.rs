//! Microsoft's published sample events (../shared/fixtures/events/) parse in every delivery shape and classify
//! as this project must; AKS/ACR variants built from them by changing only resourceUri/subject/operationName/ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;

use acr_autoattach::core::events::{
    Classification, ClassifiedEvent, EventSchema, IgnoreReason, IncomingEvent, classify,
    parse_trigger,
};
use fixtures::event_fixture as fixture;
use proptest::prelude::*;
use serde_json::{Value, json};

/// The fixture as a single event object (arrays hold exactly one here).
fn single(value: &Value) -> Value {
    match value {
        Value::Array(items) => {
            assert_eq!(items.len(), 1);
            items[0].clone()
        }
        other => other.clone(),
    }
}

/// Every delivery shape: object, array, both as a JSON string.
fn shapes(event: &Value) -> Vec<Value> {
    let array = json!([event]);
    vec![
        event.clone(),
        array.clone(),
        Value::String(event.to_string()),
        Value::String(array.to_string()),
    ]
}

fn classify_all_shapes(event: &Value) -> ClassifiedEvent {
    let mut seen: Option<ClassifiedEvent> = None;
    for shape in shapes(event) {
        let parsed = parse_trigger(&shape).expect("trigger value usable");
        assert_eq!(parsed.len(), 1, "one event in {shape}");
        let incoming: &IncomingEvent = parsed[0].as_ref().expect("event parses");
        let c = classify(incoming);
        if let Some(prev) = &seen {
            assert_eq!(prev, &c, "every shape classifies alike");
        }
        seen = Some(c);
    }
    seen.unwrap()
}

const ALL_FIXTURES: [&str; 7] = [
    "docs_subscription-topic_eventgrid-schema_action_success.json",
    "docs_subscription-topic_eventgrid-schema_delete_success.json",
    "docs_subscription-topic_eventgrid-schema_write_success.json",
    "docs_subscription_validation_event.json",
    "specs_arn_resources_created_or_updated.json",
    "specs_cloudevents_resource_write_success.json",
    "specs_eventgrid-schema_resource_write_success.json",
];

#[test]
fn every_published_sample_parses_in_every_shape_and_is_ignored_precisely() {
    let expected = [
        IgnoreReason::ResourceAction,
        IgnoreReason::OtherResourceType,
        IgnoreReason::OtherResourceType,
        IgnoreReason::SubscriptionValidation,
        IgnoreReason::OtherResourceType,
        IgnoreReason::OtherResourceType,
        IgnoreReason::OtherResourceType,
    ];
    for (name, reason) in ALL_FIXTURES.iter().zip(expected) {
        let Some(raw) = fixture(name) else { return };
        let c = classify_all_shapes(&single(&raw));
        assert_eq!(
            c.classification,
            Classification::Ignored { reason },
            "{name}"
        );
        assert!(!c.metadata.id.is_empty(), "{name}");
    }
}

#[test]
fn sample_metadata_is_extracted() {
    let Some(raw) = fixture("docs_subscription-topic_eventgrid-schema_delete_success.json") else {
        return;
    };
    let c = classify_all_shapes(&single(&raw));
    assert_eq!(c.metadata.id, "19a69642-1aad-4a96-a5ab-8d05494513ce");
    assert_eq!(
        c.metadata.event_type,
        "Microsoft.Resources.ResourceDeleteSuccess"
    );
    assert_eq!(c.metadata.schema, EventSchema::EventGrid);
    assert_eq!(
        c.metadata.subscription_id.as_deref(),
        Some("{subscription-id}")
    );
    assert_eq!(c.metadata.tenant_id.as_deref(), Some("{tenant-id}"));
    assert_eq!(c.metadata.correlation_id.as_deref(), Some("{ID}"));
    assert_eq!(
        c.metadata.operation_name.as_deref(),
        Some("Microsoft.Storage/storageAccounts/delete")
    );
    let t = c.metadata.event_time.expect("eventTime parses");
    assert_eq!(
        (t.year(), t.hour(), t.minute(), t.second()),
        (2018, 19, 24, 12)
    );

    let Some(ce) = fixture("specs_cloudevents_resource_write_success.json") else {
        return;
    };
    let c = classify_all_shapes(&ce);
    assert_eq!(c.metadata.schema, EventSchema::CloudEvents);
    assert!(c.metadata.event_time.is_some());
}

const CLUSTER_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg-aks/providers/Microsoft.ContainerService/managedClusters/aks-prod-1";
const REGISTRY_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acrprod";

/// A published sample with only resourceUri, subject, operationName (and authorization) swapped.
fn variant(raw: &Value, uri: &str, operation: &str) -> Value {
    let mut e = single(raw);
    e["subject"] = json!(uri);
    e["data"]["resourceUri"] = json!(uri);
    e["data"]["operationName"] = json!(operation);
    e["data"]["authorization"]["scope"] = json!(uri);
    e["data"]["authorization"]["action"] = json!(operation);
    e
}

#[test]
fn aks_and_acr_variants_of_the_samples_classify() {
    let Some(write) = fixture("docs_subscription-topic_eventgrid-schema_write_success.json") else {
        return;
    };
    let Some(delete) = fixture("docs_subscription-topic_eventgrid-schema_delete_success.json")
    else {
        return;
    };
    let Some(ce) = fixture("specs_cloudevents_resource_write_success.json") else {
        return;
    };
    let Some(eg_single) = fixture("specs_eventgrid-schema_resource_write_success.json") else {
        return;
    };

    for base in [&write, &ce, &eg_single] {
        let c = classify_all_shapes(&variant(
            base,
            CLUSTER_ID,
            "Microsoft.ContainerService/managedClusters/write",
        ));
        match c.classification {
            Classification::ClusterWrite { cluster } => {
                assert_eq!(cluster.as_str(), CLUSTER_ID);
            }
            other => panic!("expected a cluster write, got {other:?}"),
        }

        let c = classify_all_shapes(&variant(
            base,
            &REGISTRY_ID.to_uppercase(),
            "microsoft.containerregistry/REGISTRIES/write",
        ));
        assert!(
            matches!(&c.classification, Classification::RegistryWrite { registry, .. } if registry.as_str().eq_ignore_ascii_case(REGISTRY_ID))
        );

        let tags_uri = format!("{CLUSTER_ID}/providers/Microsoft.Resources/tags/default");
        let c = classify_all_shapes(&variant(base, &tags_uri, "Microsoft.Resources/tags/write"));
        assert!(
            matches!(&c.classification, Classification::ClusterWrite { cluster, .. } if cluster.as_str() == CLUSTER_ID),
            "{c:?}"
        );
        // The Tags API may also name the resource itself.
        let c = classify_all_shapes(&variant(
            base,
            REGISTRY_ID,
            "Microsoft.Resources/tags/write",
        ));
        assert!(matches!(
            c.classification,
            Classification::RegistryWrite { .. }
        ));

        let c = classify_all_shapes(&variant(
            base,
            &format!("{CLUSTER_ID}/agentPools/nodepool1"),
            "Microsoft.ContainerService/managedClusters/agentPools/write",
        ));
        assert_eq!(
            c.classification,
            Classification::Ignored {
                reason: IgnoreReason::ChildResource
            }
        );
        let c = classify_all_shapes(&variant(
            base,
            &format!(
                "{REGISTRY_ID}/providers/Microsoft.Authorization/roleAssignments/5c2e1a4f-7e1d-5a8b-9c3d-2f1e0a9b8c7d"
            ),
            "Microsoft.Authorization/roleAssignments/write",
        ));
        assert_eq!(
            c.classification,
            Classification::Ignored {
                reason: IgnoreReason::RoleAssignment
            }
        );
    }

    let c = classify_all_shapes(&variant(
        &delete,
        CLUSTER_ID,
        "Microsoft.ContainerService/managedClusters/delete",
    ));
    assert!(
        matches!(&c.classification, Classification::ClusterDelete { cluster } if cluster.as_str() == CLUSTER_ID)
    );
    let c = classify_all_shapes(&variant(
        &delete,
        REGISTRY_ID,
        "Microsoft.ContainerRegistry/registries/delete",
    ));
    assert!(matches!(
        c.classification,
        Classification::RegistryDelete { .. }
    ));
}

#[test]
fn resource_notification_variant_names_the_cluster_and_nothing_more() {
    let Some(raw) = fixture("specs_arn_resources_created_or_updated.json") else {
        return;
    };
    // Keep the sample's stray space after the subscription segment: it must be cleaned, not rejected.
    let spaced = CLUSTER_ID.replacen("/resourcegroups", " /resourcegroups", 1);
    let mut e = raw.clone();
    e["subject"] = json!(spaced);
    e["data"]["resourceInfo"]["id"] = json!(spaced);
    e["data"]["resourceInfo"]["type"] = json!("Microsoft.ContainerService/managedClusters");
    e["data"]["resourceInfo"]["tags"] = json!({"env": "prod"});
    let c = classify_all_shapes(&e);
    // The body (tags, properties) is not handed on: the engine reads the cluster from ARM.
    let Classification::ClusterWrite { cluster } = c.classification else {
        panic!("expected a cluster write, got {:?}", c.classification)
    };
    assert_eq!(cluster.as_str(), CLUSTER_ID);
    assert_eq!(
        c.metadata.subscription_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );

    let mut deleted = raw;
    deleted["type"] = json!("Microsoft.ResourceNotifications.Resources.Deleted");
    deleted["data"]["resourceInfo"]["id"] = json!(REGISTRY_ID);
    let c = classify_all_shapes(&deleted);
    assert!(matches!(
        c.classification,
        Classification::RegistryDelete { .. }
    ));
}

#[test]
fn a_batch_mixing_samples_and_garbage_keeps_the_good_ones() {
    let Some(write) = fixture("docs_subscription-topic_eventgrid-schema_write_success.json") else {
        return;
    };
    let good = variant(
        &write,
        CLUSTER_ID,
        "Microsoft.ContainerService/managedClusters/write",
    );
    let batch = json!([good, "not json", null, good]);
    let parsed = parse_trigger(&batch).unwrap();
    assert_eq!(parsed.len(), 4);
    assert!(parsed[0].is_ok() && parsed[3].is_ok());
    assert!(parsed[1].is_err() && parsed[2].is_err());
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        // Strings shaped like the fields that matter, to reach deep branches.
        prop_oneof![
            Just("Microsoft.Resources.ResourceWriteSuccess"),
            Just("Microsoft.Resources.ResourceDeleteSuccess"),
            Just("Microsoft.ResourceNotifications.Resources.CreatedOrUpdated"),
            Just("Microsoft.ResourceNotifications.Resources.Deleted"),
            Just("Microsoft.Resources/tags/write"),
            Just("Microsoft.ContainerService/managedClusters/write"),
            Just("/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a"),
            Just("/providers/Microsoft.Resources/tags/default"),
            Just("1.0"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    let keys = prop_oneof![
        Just("id".to_owned()),
        Just("eventType".to_owned()),
        Just("type".to_owned()),
        Just("specversion".to_owned()),
        Just("data".to_owned()),
        Just("subject".to_owned()),
        Just("operationName".to_owned()),
        Just("resourceUri".to_owned()),
        Just("resourceInfo".to_owned()),
        Just("eventTime".to_owned()),
        "[a-zA-Z]{1,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn exercise(value: &Value) {
    if let Ok(events) = parse_trigger(value) {
        for event in events.into_iter().flatten() {
            let c = classify(&event);
            let _ = c.classification.label();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_json_value_panics(value in arb_json()) {
        exercise(&value);
        exercise(&Value::String(value.to_string()));
        exercise(&json!([value]));
    }

    #[test]
    fn no_string_panics(text in ".{0,200}") {
        exercise(&Value::String(text));
    }
}
