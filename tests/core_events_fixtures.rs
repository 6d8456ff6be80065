//! Microsoft's published sample events (../shared/fixtures/events/) parse in every delivery shape and classify
//! as this project must; AKS/ACR variants built from them by changing only resourceUri/subject/operationName/ids.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/fixtures.rs"]
mod fixtures;

use acr_autoattach::core::events::{
    Classification, ClassifiedEvent, EventRejection, EventSchema, IgnoreReason, IncomingEvent,
    classify, classify_trigger, parse_trigger,
};
use fixtures::event_fixture as fixture;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
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

/// The reference: every element parsed into the typed models, then classified.
fn full_way(value: &Value) -> Result<Vec<Result<ClassifiedEvent, EventRejection>>, EventRejection> {
    parse_trigger(value).map(|events| {
        events
            .into_iter()
            .map(|event| event.map(|e| classify(&e)))
            .collect()
    })
}

/// The fast way (a borrowed look, nothing copied) agrees with the full way, in every delivery shape.
fn assert_same(event: &Value) -> Result<(), TestCaseError> {
    for shape in shapes(event) {
        prop_assert_eq!(classify_trigger(&shape), full_way(&shape), "{}", shape);
    }
    Ok(())
}

/// Values of the types the envelope and `data` fields hold, and of the wrong types.
fn arb_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop_oneof![
            Just("Microsoft.Resources.ResourceWriteSuccess"),
            Just(" microsoft.resources.resourcedeletesuccess "),
            Just("Microsoft.Resources.ResourceActionSuccess"),
            Just("Microsoft.Resources.ResourceWriteFailure"),
            Just("Microsoft.ResourceNotifications.Resources.CreatedOrUpdated"),
            Just("Microsoft.ResourceNotifications.Resources.Deleted"),
            Just("Microsoft.EventGrid.SubscriptionValidationEvent"),
            Just("Microsoft.Storage.BlobCreated"),
            Just("Microsoft.ContainerService/managedClusters/write"),
            Just("MICROSOFT.CONTAINERREGISTRY/registries/delete"),
            Just("Microsoft.Resources/tags/write"),
            Just("Microsoft.Authorization/roleAssignments/write"),
            Just("Microsoft.Storage/storageAccounts/write"),
            Just(CLUSTER_ID),
            Just(REGISTRY_ID),
            Just("/subscriptions/00000000-0000-0000-0000-000000000001 /resourceGroups/ rg /providers/Microsoft.ContainerRegistry/registries/acr"),
            Just("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a/providers/Microsoft.Resources/tags/default"),
            Just("/subscriptions/s1/resourceGroups/rg"),
            Just("2026-01-04T10:15:00.1234567Z"),
            Just("2026-01-04T10:15:00"),
            Just("1.0"),
            Just(" 1.0 "),
            Just(""),
            Just("  "),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(json!(["a", 1])),
        1 => Just(json!({"id": REGISTRY_ID})),
    ]
}

/// Objects with any subset of `keys`, each holding an [`arb_field`].
fn arb_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::weighted(0.7, arb_field()), keys.len()).prop_map(
        move |values| {
            Value::Object(
                keys.iter()
                    .zip(values)
                    .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
                    .collect(),
            )
        },
    )
}

const TEXTS: &[&str] = &[
    "x",
    " 2026-01-04T10:15:00.1234567Z ",
    "2026-01-04T10:15:00",
    "/subscriptions/00000000-0000-0000-0000-000000000001",
    "/subscriptions/00000000-0000-0000-0000-000000000002/resourceGroups/rg",
];

/// Objects with any subset of `keys`, each mostly a string of [`TEXTS`] (as the envelope's optional fields
/// usually are), sometimes any [`arb_field`].
fn arb_optional(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec(prop::option::of(mostly(TEXTS)), keys.len()).prop_map(move |values| {
        Value::Object(
            keys.iter()
                .zip(values)
                .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), v)))
                .collect(),
        )
    })
}

/// Mostly a string from `choices`, sometimes any [`arb_field`].
fn mostly(choices: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(choices).prop_map(|s| Value::String(s.to_owned())),
        1 => arb_field(),
    ]
}

// Repeated entries weigh more: the relevant shapes are the ones where the two ways could differ.
const EVENT_TYPES: &[&str] = &[
    "Microsoft.Resources.ResourceWriteSuccess",
    "Microsoft.Resources.ResourceWriteSuccess",
    "microsoft.resources.resourcedeletesuccess",
    "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
    "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
    "Microsoft.ResourceNotifications.Resources.Deleted",
    "Microsoft.ResourceNotifications.Resources.Deleted",
    "Microsoft.Resources.ResourceActionSuccess",
    "Microsoft.Resources.ResourceDeleteCancel",
    "Microsoft.EventGrid.SubscriptionValidationEvent",
    "Microsoft.Storage.BlobCreated",
];
const OPERATIONS: &[&str] = &[
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerService/managedClusters/write",
    "Microsoft.ContainerService/managedClusters/delete",
    "MICROSOFT.CONTAINERREGISTRY/registries/write",
    "MICROSOFT.CONTAINERREGISTRY/registries/write",
    "Microsoft.ContainerRegistry/registries/delete",
    "Microsoft.ContainerService/managedClusters/agentPools/write",
    "Microsoft.Resources/tags/write",
    "Microsoft.Resources/tags/delete",
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Resources/deployments/write",
    "Microsoft.Storage/storageAccounts/write",
    "nowrite",
];
const IDS: &[&str] = &[
    CLUSTER_ID,
    CLUSTER_ID,
    CLUSTER_ID,
    REGISTRY_ID,
    REGISTRY_ID,
    REGISTRY_ID,
    " /subscriptions/00000000-0000-0000-0000-000000000001 /resourceGroups/ rg /providers/Microsoft.ContainerRegistry/registries/acr ",
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a/providers/Microsoft.Resources/tags/default",
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa",
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr",
    "/subscriptions/00000000-0000-0000-0000-000000000001",
    "not-an-id",
];

/// Event Grid and CloudEvents envelopes (required fields mostly right) whose `data` is a resource event's or a
/// notification's, or not an object at all; every field sometimes of the wrong type or missing.
fn arb_event() -> impl Strategy<Value = Value> {
    let some = |p: f64, s: BoxedStrategy<Value>| prop::option::weighted(p, s);
    let resource_info = prop_oneof![
        3 => (some(0.8, mostly(IDS).boxed()), arb_object(&["name", "type", "tags", "properties"]))
            .prop_map(|(id, mut info)| {
                if let (Some(id), Value::Object(map)) = (id, &mut info) {
                    map.insert("id".to_owned(), id);
                }
                info
            }),
        1 => arb_field(),
        1 => prop::collection::vec(mostly(IDS), 0..8).prop_map(Value::Array),
    ];
    let resource_data = (
        some(0.9, mostly(OPERATIONS).boxed()),
        some(0.8, mostly(IDS).boxed()),
        arb_optional(&[
            "subscriptionId",
            "tenantId",
            "correlationId",
            "status",
            "claims",
        ]),
    )
        .prop_map(|(op, uri, mut d)| {
            if let Value::Object(map) = &mut d {
                op.map(|v| map.insert("operationName".to_owned(), v));
                uri.map(|v| map.insert("resourceUri".to_owned(), v));
            }
            d
        });
    let data = prop_oneof![
        4 => resource_data,
        3 => (arb_object(&["apiVersion", "operationalInfo"]), some(0.9, resource_info.boxed()))
            .prop_map(|(mut d, info)| {
                if let (Value::Object(map), Some(info)) = (&mut d, info) {
                    map.insert("resourceInfo".to_owned(), info);
                }
                d
            }),
        1 => arb_field(),
        1 => prop::collection::vec(mostly(IDS), 0..12).prop_map(Value::Array),
    ];
    let event_grid = (
        some(0.95, mostly(&["e1"]).boxed()),
        some(0.95, mostly(EVENT_TYPES).boxed()),
        some(0.8, mostly(IDS).boxed()),
        arb_optional(&["topic", "eventTime", "dataVersion", "metadataVersion"]),
    )
        .prop_map(|(id, t, subject, mut e)| {
            if let Value::Object(map) = &mut e {
                id.map(|v| map.insert("id".to_owned(), v));
                // Present (any value) makes it an Event Grid event.
                map.insert("eventType".to_owned(), t.unwrap_or(Value::Null));
                subject.map(|v| map.insert("subject".to_owned(), v));
            }
            e
        });
    let cloud = (
        some(0.95, mostly(&["1.0", " 1.0 ", "0.3"]).boxed()),
        some(0.95, mostly(&["c1"]).boxed()),
        some(0.95, mostly(EVENT_TYPES).boxed()),
        some(0.8, mostly(IDS).boxed()),
        arb_optional(&["source", "time", "dataschema", "datacontenttype"]),
    )
        .prop_map(|(version, id, t, subject, mut e)| {
            if let Value::Object(map) = &mut e {
                map.insert("specversion".to_owned(), version.unwrap_or(Value::Null));
                id.map(|v| map.insert("id".to_owned(), v));
                t.map(|v| map.insert("type".to_owned(), v));
                subject.map(|v| map.insert("subject".to_owned(), v));
            }
            e
        });
    (prop_oneof![event_grid, cloud], some(0.9, data.boxed())).prop_map(|(mut e, data)| {
        if let (Value::Object(map), Some(data)) = (&mut e, data) {
            map.insert("data".to_owned(), data);
        }
        e
    })
}

/// A published sample with one field (envelope or `data`) replaced by an [`arb_field`] or removed.
fn arb_sample_variant() -> impl Strategy<Value = Option<Value>> {
    const PATHS: [&[&str]; 12] = [
        &["id"],
        &["eventType"],
        &["type"],
        &["specversion"],
        &["subject"],
        &["topic"],
        &["source"],
        &["eventTime"],
        &["data"],
        &["data", "operationName"],
        &["data", "resourceUri"],
        &["data", "resourceInfo"],
    ];
    (
        prop::sample::select(ALL_FIXTURES.to_vec()),
        prop::sample::select(PATHS.to_vec()),
        prop::option::of(arb_field()),
    )
        .prop_map(|(name, path, value)| {
            let mut event = single(&fixture(name)?);
            let (last, parents) = path.split_last()?;
            let mut target = &mut event;
            for key in parents {
                target = target.get_mut(*key)?;
            }
            let map = target.as_object_mut()?;
            match value {
                Some(v) => map.insert((*last).to_owned(), v),
                None => map.remove(*last),
            };
            Some(event)
        })
}

#[test]
fn the_fast_way_agrees_with_the_full_way_on_every_published_sample() {
    for name in ALL_FIXTURES {
        let Some(raw) = fixture(name) else { return };
        assert_same(&single(&raw)).unwrap();
        assert_same(&raw).unwrap();
    }
    let batch =
        json!([CLUSTER_ID, null, 5, {"id": "x"}, {"specversion": 1.0, "id": "y", "type": "t"}]);
    assert_same(&batch).unwrap();
}

/// The random events of [`arb_event`] reach the relevant classes, so the agreement checked on them is not only
/// about rejections and malformed data.
#[test]
fn random_events_reach_every_class() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_event();
    let mut labels = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let event = strategy.new_tree(&mut runner).unwrap().current();
        for c in classify_trigger(&event)
            .unwrap_or_default()
            .into_iter()
            .flatten()
        {
            labels.insert(c.classification.label());
        }
    }
    for wanted in [
        "cluster_write",
        "cluster_delete",
        "registry_write",
        "registry_delete",
        "malformed_data",
        "invalid_resource_id",
        "other_resource_type",
        "child_resource",
    ] {
        assert!(labels.contains(wanted), "{wanted} missing from {labels:?}");
    }
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


    #[test]
    fn the_fast_way_classifies_altered_samples_as_the_full_way(event in arb_sample_variant()) {
        if let Some(event) = event {
            assert_same(&event)?;
        }
    }

    #[test]
    fn the_fast_way_agrees_on_any_json(value in arb_json()) {
        assert_same(&value)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Issue 15: `classify_trigger` (borrowed look) == `parse_trigger` + `classify` (typed models).
    #[test]
    fn the_fast_way_classifies_random_events_as_the_full_way(event in arb_event()) {
        assert_same(&event)?;
    }
}
