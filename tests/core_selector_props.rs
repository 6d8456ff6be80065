//! Properties of the opt-in selector language: print/parse round trip, no input panics, an unparsable value
//! selects nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use acr_autoattach::core::model::{Cluster, ClusterPrincipal, ResourceId, Tags};
use acr_autoattach::core::selector::{
    FORBIDDEN_TAG_KEY_CHARS, Key, Operator, OptIn, Requirement, Selector, cluster_opted_out,
    parse_opt_in,
};
use proptest::prelude::*;

/// Text mixing the selector's own punctuation, whitespace, quotes, escapes and arbitrary Unicode.
fn text(min: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(&format!("[a-zA-Z0-9 ,=!()\"\\\\@._:-]{{{min},10}}"))
            .unwrap(),
        proptest::string::string_regex(&format!("\\PC{{{min},8}}")).unwrap(),
        proptest::string::string_regex(&format!("[a-z]{{{},6}}", min.max(1))).unwrap(),
    ]
}

fn tag_key() -> impl Strategy<Value = String> {
    text(1).prop_filter("Azure tag key", |k| {
        !k.is_empty() && !k.contains(FORBIDDEN_TAG_KEY_CHARS)
    })
}

fn value_set() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(text(0), 1..4)
}

fn requirement() -> impl Strategy<Value = Requirement> {
    let pseudo = prop_oneof![
        Just(Key::Subscription),
        Just(Key::ResourceGroup),
        Just(Key::Location)
    ];
    let valued = prop_oneof![
        text(0).prop_map(Operator::Equals),
        text(0).prop_map(Operator::NotEquals),
        value_set().prop_map(Operator::In),
        value_set().prop_map(Operator::NotIn),
    ];
    let any_op = prop_oneof![
        4 => valued.clone(),
        1 => Just(Operator::Exists),
        1 => Just(Operator::DoesNotExist),
    ];
    prop_oneof![
        (tag_key(), any_op).prop_map(|(k, operator)| Requirement {
            key: Key::Tag(k),
            operator
        }),
        (pseudo, valued).prop_map(|(key, operator)| Requirement { key, operator }),
    ]
}

fn selector() -> impl Strategy<Value = Selector> {
    prop::collection::vec(requirement(), 1..5).prop_map(|r| Selector::new(r).unwrap())
}

fn cluster() -> impl Strategy<Value = Cluster> {
    let tags = prop::collection::btree_map(
        prop_oneof![
            text(1),
            Just("env".to_owned()),
            Just("acr-autoattach".to_owned())
        ],
        prop_oneof![text(0), Just("prod".to_owned()), Just("off".to_owned())],
        0..5,
    );
    (tags, "[a-z0-9-]{1,8}", "[A-Za-z-]{1,8}", "[a-z ]{1,10}").prop_map(|(tags, sub, rg, loc)| {
        Cluster {
            id: ResourceId::parse(&format!(
                "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/c"
            ))
            .unwrap(),
            location: loc,
            tenant_id: None,
            tags: Tags::new(tags),
            provisioning_state: "Succeeded".into(),
            principal: ClusterPrincipal::NotYetKnown,
        }
    })
}

/// Strings near the grammar, so that the parser's deeper paths are reached.
fn selector_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("env".to_owned()),
        Just("=".to_owned()),
        Just("==".to_owned()),
        Just("!=".to_owned()),
        Just("!".to_owned()),
        Just(" in ".to_owned()),
        Just(" notin ".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just(",".to_owned()),
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("@location".to_owned()),
        Just("@nope".to_owned()),
        Just(" ".to_owned()),
        text(0),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
}

/// The fail-closed rule as callers apply it: an error selects nothing.
fn selects(value: &str, cluster: &Cluster) -> bool {
    parse_opt_in(value).is_ok_and(|o| o.selects(cluster))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_selectors_parse_back_equal(s in selector()) {
        let printed = s.to_string();
        match parse_opt_in(&printed) {
            Ok(OptIn::Selector(back)) => prop_assert_eq!(back, s),
            other => prop_assert!(false, "{printed} parsed as {other:?}"),
        }
    }

    #[test]
    fn canonical_form_is_a_fixed_point(input in selector_like()) {
        if let Ok(OptIn::Selector(s)) = parse_opt_in(&input) {
            let printed = s.to_string();
            let again = parse_opt_in(&printed).unwrap();
            prop_assert_eq!(again.to_string(), printed);
        }
    }

    #[test]
    fn no_input_panics_and_errors_select_nothing(
        input in prop_oneof![selector_like(), ".{0,60}".prop_map(String::from)],
        c in cluster()
    ) {
        match parse_opt_in(&input) {
            Ok(o) => { let _ = o.selects(&c); let _ = o.to_string(); }
            Err(e) => {
                prop_assert!(!selects(&input, &c));
                prop_assert!(!e.to_string().is_empty());
            }
        }
        let _ = cluster_opted_out(&c, &input);
    }

    #[test]
    fn explain_agrees_with_matches(s in selector(), c in cluster()) {
        let outcomes = s.explain(&c);
        prop_assert_eq!(outcomes.len(), s.requirements().len());
        prop_assert_eq!(outcomes.iter().all(|o| o.passed), s.matches(&c));
    }
}
