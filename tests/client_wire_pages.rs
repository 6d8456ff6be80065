//! A Resource Graph page of role assignments read straight from its bytes
//! (`wire::read_resource_graph_page`) gives exactly what the general path gives (the page parsed as a JSON tree,
//! `take_resource_graph_page`, each row converted by `RoleAssignmentReader::read`, a row that does not convert
//! skipped with the same warning): for generated pages with keys in any case, missing, null and non-string
//! fields, escapes, unknown members and rows that are not objects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use acr_autoattach::azure::wire::{
    AssignmentSink, RoleAssignmentReader, convert_rows, read_resource_graph_page,
    take_resource_graph_page,
};
use acr_autoattach::core::model::RoleAssignment;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// What a page gave: rows, warnings, next token.
type Read = (Vec<RoleAssignment>, Vec<String>, Option<String>);

fn typed(body: &[u8]) -> Read {
    let (mut reader, mut rows, mut warnings) = (RoleAssignmentReader::default(), vec![], vec![]);
    let end = read_resource_graph_page(
        body,
        &mut AssignmentSink {
            reader: &mut reader,
            rows: &mut rows,
            warnings: &mut warnings,
        },
    )
    .unwrap();
    assert!(end.had_data);
    (rows, warnings, end.skip_token)
}

fn general(body: &[u8]) -> Read {
    let page: Value = serde_json::from_slice(body).unwrap();
    let (data, token) = take_resource_graph_page(page).unwrap();
    let mut reader = RoleAssignmentReader::default();
    let (mut rows, mut warnings) = (vec![], vec![]);
    convert_rows(
        data,
        "role assignment",
        |v| reader.read(v),
        &mut rows,
        &mut warnings,
    );
    (rows, warnings, token)
}

/// A key spelt exactly, upper-cased or with its first letter flipped.
fn spelling(key: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(key.to_owned()),
        1 => Just(key.to_ascii_uppercase()),
        1 => Just({
            let mut k = key.to_owned();
            let first = k.remove(0);
            let flipped = if first.is_ascii_lowercase() { first.to_ascii_uppercase() } else { first.to_ascii_lowercase() };
            format!("{flipped}{k}")
        }),
    ]
}

/// A field's value: usually a string (with escapes or padding now and then), sometimes anything else.
fn field(text: &'static str) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        8 => Just(Some(json!(text))),
        1 => Just(Some(json!(format!("  {text}\t")))),
        1 => Just(Some(json!(format!("{text}\"é\\n")))),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(42))),
        1 => Just(Some(json!({"nested": [text]}))),
        1 => Just(Some(json!(""))),
        1 => Just(None),
    ]
}

fn object(fields: Vec<(String, Option<Value>)>) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k, v);
        }
    }
    m.insert("unknown".into(), json!({"a": [1, 2, {"b": null}]}));
    Value::Object(m)
}

fn row() -> impl Strategy<Value = Value> {
    let id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/roleAssignments/n1";
    let props = (
        (spelling("scope"), field("/subscriptions/s/resourceGroups/rg")),
        (spelling("roleDefinitionId"), field("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D")),
        (spelling("principalId"), field("p1")),
        (spelling("principalType"), field("ServicePrincipal")),
        (spelling("description"), field("managed-by: acr-autoattach cluster=/x")),
        (spelling("condition"), field("@Resource[x] StringEquals 'y'")),
    )
        .prop_map(|(a, b, c, d, e, f)| object(vec![a, b, c, d, e, f]));
    let properties = prop_oneof![
        6 => props.prop_map(Some),
        1 => Just(Some(Value::Null)),
        1 => Just(None),
    ];
    prop_oneof![
        12 => ((spelling("id"), field(id)), (spelling("name"), field("n1")), spelling("properties"), properties)
            .prop_map(|(i, n, pk, p)| object(vec![i, n, (pk, p)])),
        1 => Just(Value::Null),
        1 => Just(json!("a string")),
        1 => Just(json!([1, 2])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn read_from_bytes_equals_the_general_path(rows in proptest::collection::vec(row(), 0..8), token in prop_oneof![Just(None), Just(Some(" t1 ")), Just(Some(""))]) {
        let mut page = json!({"totalRecords": 9, "count": rows.len(), "data": rows, "facets": []});
        if let Some(t) = token {
            page["$skipToken"] = json!(t);
        }
        let body = serde_json::to_vec(&page).unwrap();
        prop_assert_eq!(typed(&body), general(&body));
    }
}

#[test]
fn the_table_format_takes_the_general_path_and_reads_the_same() {
    let page = json!({
        "data": {
            "columns": [{"name": "id"}, {"name": "name"}, {"name": "properties"}],
            "rows": [["/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/n9", "n9",
                      {"roleDefinitionId": "/x/roleDefinitions/ABC", "principalId": "p9"}],
                     ["/subscriptions/s/providers/Microsoft.Compute/virtualMachines/vm", "vm", {}]]
        },
        "$skipToken": "next"
    });
    let body = serde_json::to_vec(&page).unwrap();
    let read = typed(&body);
    assert_eq!(read, general(&body));
    assert_eq!(read.0.len(), 1);
    assert_eq!(read.0[0].scope, "/subscriptions/s");
    assert_eq!(read.0[0].role_definition_guid, "abc");
    assert_eq!(read.1.len(), 1, "{:?}", read.1);
    assert_eq!(read.2.as_deref(), Some("next"));
}

#[test]
fn an_exactly_spelt_key_wins_over_one_matched_ignoring_case() {
    let body = br#"{"data": [{"ID": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/wrong",
        "id": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/right",
        "properties": {"PrincipalId": "p-other", "principalId": "p", "roleDefinitionId": "/r/7f951dda-4ed3-4680-a7ca-43fe172d538d"}}]}"#;
    let (rows, warnings, token) = typed(body);
    assert!(warnings.is_empty() && token.is_none());
    assert_eq!(rows[0].name, "right");
    assert_eq!(rows[0].principal_id, "p");
}

#[test]
fn a_page_that_is_not_json_or_has_no_data_is_refused() {
    let (mut reader, mut rows, mut warnings) = (RoleAssignmentReader::default(), vec![], vec![]);
    let mut sink = AssignmentSink {
        reader: &mut reader,
        rows: &mut rows,
        warnings: &mut warnings,
    };
    assert!(read_resource_graph_page(b"{\"data\": [", &mut sink).is_err());
    assert!(read_resource_graph_page(b"<html>", &mut sink).is_err());
    let end = read_resource_graph_page(br#"{"value": []}"#, &mut sink).unwrap();
    assert!(!end.had_data);
}
