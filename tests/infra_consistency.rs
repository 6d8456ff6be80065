//! The Bicep in `infra/` and the code agree (issue 13, point 5), checked without Azure:
//! - every app setting the binary reads is set by the Bicep, and the Bicep sets no `AUTOATTACH_*` the code ignores;
//! - every name an alert rule queries is one the code emits (or is listed as pending, with its issue);
//! - the event subscription's operation names are exactly those the event classifier turns into work;
//! - the role-assignment condition names exactly AcrPull and Container Registry Repository Reader, for service
//!   principals, on every conditioned assignment, and no Bicep file grants a broad built-in role;
//! - the custom role's actions are exactly those of the Azure operations the client performs.
//!
//! Source files are found by scanning `src/**/*.rs`, never by a fixed path, so moving modules does not break this.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use acr_autoattach::core::events::{Classification, classify, parse_trigger};
use serde_json::{Value, json};

const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
const REPOSITORY_READER: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn infra(rel: &str) -> String {
    read(&repo().join("infra").join(rel))
}

/// Every file under `dir` with extension `ext`, sorted.
fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rust_sources() -> Vec<(PathBuf, String)> {
    let files = files_with_ext(&repo().join("src"), "rs");
    assert!(!files.is_empty(), "no Rust sources found under src/");
    files.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

fn bicep_files() -> Vec<(PathBuf, String)> {
    let files = files_with_ext(&repo().join("infra"), "bicep");
    assert!(!files.is_empty(), "no Bicep files found under infra/");
    files.into_iter().map(|p| (p.clone(), read(&p))).collect()
}

/// The contents of the string literals of a Rust source (plain, escaped and raw), comments skipped. Escapes are
/// kept as written: the names compared here contain none.
fn rust_string_literals(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let start = j + 1;
                let mut k = start;
                loop {
                    if k >= b.len() {
                        break;
                    }
                    if b[k] == b'"'
                        && b[k + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == b'#')
                            .count()
                            == hashes
                    {
                        break;
                    }
                    k += 1;
                }
                out.push(String::from_utf8_lossy(&b[start..k.min(b.len())]).into_owned());
                i = k + 1 + hashes;
            }
            b'"' => {
                let start = i + 1;
                let mut k = start;
                while k < b.len() && b[k] != b'"' {
                    if b[k] == b'\\' {
                        k += 1;
                    }
                    k += 1;
                }
                out.push(String::from_utf8_lossy(&b[start..k.min(b.len())]).into_owned());
                i = k + 1;
            }
            b'\'' => {
                // A char literal ('"', '\'', '\u{..}') or a lifetime.
                if b.get(i + 1) == Some(&b'\\') {
                    let mut k = i + 2;
                    while k < b.len() && b[k] != b'\'' {
                        k += 1;
                    }
                    i = k + 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// Field names of `tracing` macros written as identifiers (`registry.id = %id`, `status = ?s`): an exported log
/// record's attribute keys. Matches `name(.name)* = %` and `= ?`.
fn tracing_field_names(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !(b[i] == b'='
            && b.get(i + 1) != Some(&b'=')
            && i > 0
            && b[i - 1] != b'='
            && b[i - 1] != b'!')
        {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        if !matches!(b.get(j), Some(b'%' | b'?')) {
            i += 1;
            continue;
        }
        let mut end = i;
        while end > 0 && b[end - 1] == b' ' {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && (is_ident(b[start - 1]) || b[start - 1] == b'.') {
            start -= 1;
        }
        if start < end {
            out.push(String::from_utf8_lossy(&b[start..end]).into_owned());
        }
        i += 1;
    }
    out
}

/// Every name the code can emit: its string literals and its tracing field names.
fn all_source_literals() -> BTreeSet<String> {
    rust_sources()
        .iter()
        .flat_map(|(_, text)| {
            let mut names = rust_string_literals(text);
            names.extend(tracing_field_names(text));
            names
        })
        .collect()
}

fn is_setting_name(s: &str) -> bool {
    let upper = s
        .bytes()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    upper
        && (s == "RUST_LOG"
            || ["AUTOATTACH_", "APPLICATIONINSIGHTS_", "AZURE_", "OTEL_"]
                .iter()
                .any(|p| s.starts_with(p) && s.len() > p.len()))
}

/// Object keys (`NAME: value` lines) of a Bicep text that look like app settings.
fn bicep_setting_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let t = line.trim_start();
            let (key, _) = t.split_once(':')?;
            is_setting_name(key).then(|| key.to_owned())
        })
        .collect()
}

/// `%NAME%` references of a function.json (resolved by the host from app settings).
fn percent_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else { break };
        let name = &after[..end];
        if !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            out.insert(name.to_owned());
            rest = &after[end + 1..];
        } else {
            rest = after;
        }
    }
    out
}

/// Settings the binary reads that the Bicep deliberately leaves unset, by prefix, with the reason.
const NOT_SET_BY_BICEP: &[(&str, &str)] = &[
    (
        "OTEL_EXPORTER_OTLP_",
        "an optional second exporter (an OpenTelemetry collector); unset means off, and an operator adds \
         OTEL_EXPORTER_OTLP_* through the `extraAppSettings` parameter (docs/deploy.md)",
    ),
    (
        "AUTOATTACH_RATE_LIMIT_SCALE",
        "the scale benchmark's pace against an emulator that refills K times faster (BENCHMARKS.md); against \
         Azure it must stay at its default 1, so a deployment never sets it",
    ),
];

#[test]
fn every_setting_the_binary_reads_is_set_by_the_bicep() {
    let literals = all_source_literals();
    let read_by_code: BTreeSet<String> = literals
        .iter()
        .filter(|s| is_setting_name(s))
        .cloned()
        .collect();
    assert!(
        read_by_code.contains("AUTOATTACH_VERIFY_SCHEDULE")
            && read_by_code.contains("AUTOATTACH_TAG"),
        "the source scan found no AUTOATTACH_* settings: is the scanner broken? found {read_by_code:?}"
    );

    let app = infra("modules/app.bicep");
    let set_by_app = bicep_setting_keys(&app);

    let mut problems = Vec::new();
    for name in &read_by_code {
        if set_by_app.contains(name) {
            continue;
        }
        if NOT_SET_BY_BICEP
            .iter()
            .any(|(prefix, _)| name.starts_with(prefix))
        {
            continue;
        }
        problems.push(format!(
            "{name} is read by the binary (a string literal in src/) but infra/modules/app.bicep does not set it: add \
             it to `handlerDefaults` with the handler's default, or to NOT_SET_BY_BICEP in this test with a reason"
        ));
    }
    for (prefix, reason) in NOT_SET_BY_BICEP {
        if !read_by_code.iter().any(|n| n.starts_with(prefix)) {
            problems.push(format!(
                "NOT_SET_BY_BICEP lists {prefix}* ({reason}) but no source reads such a setting any more: remove it"
            ));
        }
    }

    // The other direction: a handler setting the Bicep sets (in app.bicep or passed by an entry file) that no
    // source reads is a typo or a removed setting.
    for (path, text) in bicep_files() {
        for key in bicep_setting_keys(&text) {
            let host_owned = key.starts_with("APPLICATIONINSIGHTS_AUTHENTICATION_STRING");
            if (key.starts_with("AUTOATTACH_") || key.starts_with("OTEL_") || key == "RUST_LOG")
                && !host_owned
                && !read_by_code.contains(&key)
            {
                problems.push(format!(
                    "{} sets {key}, which no source file reads: a typo, or a setting the code no longer has",
                    path.display()
                ));
            }
        }
    }

    // The host resolves %NAME% in function.json from app settings; unresolved, the function does not load.
    for fj in files_with_ext(&repo().join("function-app"), "json") {
        for name in percent_references(&read(&fj)) {
            if !set_by_app.contains(&name) {
                problems.push(format!(
                    "{} refers to %{name}% but infra/modules/app.bicep does not set {name}: the host could not \
                     resolve it",
                    fj.display()
                ));
            }
        }
    }

    assert!(
        problems.is_empty(),
        "app settings out of step:\n- {}",
        problems.join("\n- ")
    );
}

/// `'''…'''` blocks of a Bicep text (the alert queries).
fn multiline_strings(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("'''") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("'''") else { break };
        out.push(after[..end].to_owned());
        rest = &after[end + 3..];
    }
    out
}

fn double_quoted(text: &str) -> Vec<String> {
    text.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Names an alert rule queries that the code does not emit yet, each with the issue that asks for it. The
/// rule is deployed ahead of the code; this list keeps that visible. None today.
const PENDING_TELEMETRY: &[(&str, &str)] = &[];

#[test]
fn every_name_an_alert_rule_queries_is_one_the_code_emits() {
    let alerts = infra("modules/alerts.bicep");
    let queries = multiline_strings(&alerts);
    assert!(
        queries.len() >= 4,
        "expected the four alert queries as '''…''' strings in infra/modules/alerts.bicep, found {}",
        queries.len()
    );
    for id in [
        "pairs",
        "invalid-selectors",
        "role-assignment-capacity",
        "verification-not-completed",
    ] {
        assert!(
            alerts.contains(&format!("id: '{id}'")),
            "infra/modules/alerts.bicep has no rule with id '{id}' (issue 13: failed/missing pairs, invalid \
             selectors, role-assignment capacity, no completed verification run)"
        );
    }

    let literals = all_source_literals();
    let mut problems = Vec::new();
    let mut queried = BTreeSet::new();
    for query in &queries {
        for name in double_quoted(query) {
            queried.insert(name.clone());
            if literals.contains(&name) {
                continue;
            }
            if PENDING_TELEMETRY.iter().any(|(n, _)| *n == name) {
                continue;
            }
            problems.push(format!(
                "an alert query in infra/modules/alerts.bicep uses \"{name}\", which no source file emits (no such \
                 string literal in src/): the rule would never match. Query:\n{query}"
            ));
        }
    }
    for (name, why) in PENDING_TELEMETRY {
        if literals.contains(*name) {
            problems.push(format!(
                "\"{name}\" is now emitted by the code: remove it from PENDING_TELEMETRY ({why}) and check that the \
                 alert query matches the emitted shape"
            ));
        }
        if !queried.contains(*name) {
            problems.push(format!(
                "PENDING_TELEMETRY lists \"{name}\" but no alert query uses it: remove it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "alert queries out of step with the telemetry:\n- {}",
        problems.join("\n- ")
    );
}

/// The single-quoted strings of the Bicep array `var NAME = [ … ]`.
fn bicep_string_array(text: &str, var: &str) -> Vec<String> {
    let anchor = format!("var {var} = [");
    let start = text
        .find(&anchor)
        .unwrap_or_else(|| panic!("`{anchor}` not found: the test reads the list from there"));
    let body = &text[start + anchor.len()..];
    let end = body.find(']').expect("unterminated array");
    body[..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('\'') && l.ends_with('\''))
        .map(|l| l.trim_matches('\'').to_owned())
        .collect()
}

fn resource_event(event_type: &str, operation: &str, uri: &str) -> Value {
    json!({
        "id": "00000000-0000-4000-8000-000000000001",
        "topic": "/subscriptions/11111111-1111-4111-8111-111111111111",
        "subject": uri,
        "eventType": event_type,
        "eventTime": "2026-01-04T10:15:00Z",
        "dataVersion": "2",
        "metadataVersion": "1",
        "data": {
            "operationName": operation,
            "resourceUri": uri,
            "subscriptionId": "11111111-1111-4111-8111-111111111111",
            "tenantId": "22222222-2222-4222-8222-222222222222",
            "status": "Succeeded",
            "resourceProvider": operation.split('/').next().unwrap_or_default(),
        }
    })
}

/// Whether the classifier turns some ResourceWriteSuccess / ResourceDeleteSuccess event with this operation name,
/// on a cluster or a registry (directly or through the Tags API), into work.
fn classifier_handles(operation: &str) -> bool {
    let base = "/subscriptions/11111111-1111-4111-8111-111111111111/resourceGroups/rg/providers";
    let cluster = format!("{base}/Microsoft.ContainerService/managedClusters/aks1");
    let registry = format!("{base}/Microsoft.ContainerRegistry/registries/acr1");
    let uris = [
        cluster.clone(),
        registry.clone(),
        format!("{cluster}/providers/Microsoft.Resources/tags/default"),
        format!("{registry}/providers/Microsoft.Resources/tags/default"),
    ];
    let types = [
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceDeleteSuccess",
    ];
    types.iter().any(|t| {
        uris.iter().any(|uri| {
            let parsed =
                parse_trigger(&resource_event(t, operation, uri)).expect("a well-formed event");
            parsed.iter().flatten().any(|event| {
                !matches!(
                    classify(event).classification,
                    Classification::Ignored { .. }
                )
            })
        })
    })
}

#[test]
fn event_subscription_filters_exactly_the_operations_the_classifier_handles() {
    let module = infra("modules/event-subscription.bicep");
    let filtered = bicep_string_array(&module, "handledOperations");
    assert!(
        !filtered.is_empty(),
        "handledOperations in infra/modules/event-subscription.bicep is empty"
    );

    // Candidates: the filter's own names, plus every resource type and operation the classifier's source names,
    // with each verb ARM events carry.
    let events_sources: Vec<(PathBuf, String)> = rust_sources()
        .into_iter()
        .filter(|(p, _)| p.file_name().is_some_and(|n| n == "events.rs"))
        .collect();
    assert!(
        !events_sources.is_empty(),
        "no src/**/events.rs found: where did the event classifier go?"
    );
    let mut candidates: BTreeSet<String> =
        filtered.iter().map(|s| s.to_ascii_lowercase()).collect();
    for (_, text) in &events_sources {
        for lit in rust_string_literals(text) {
            let l = lit.to_ascii_lowercase();
            if !(l.starts_with("microsoft.") && l.contains('/'))
                || l.contains(' ')
                || l.starts_with('/')
            {
                continue;
            }
            let base = ["/write", "/delete", "/action"]
                .iter()
                .find_map(|v| l.strip_suffix(v))
                .unwrap_or(&l)
                .to_owned();
            for verb in ["write", "delete", "action"] {
                candidates.insert(format!("{base}/{verb}"));
            }
        }
    }
    assert!(
        candidates.contains("microsoft.containerservice/managedclusters/agentpools/write")
            || candidates.len() > filtered.len(),
        "the scan of events.rs found no operation names besides the filter's: is the scanner broken?"
    );

    let handled: BTreeSet<String> = candidates
        .iter()
        .filter(|op| classifier_handles(op))
        .cloned()
        .collect();
    let in_filter: BTreeSet<String> = filtered.iter().map(|s| s.to_ascii_lowercase()).collect();
    let missing: Vec<_> = handled.difference(&in_filter).collect();
    let extra: Vec<_> = in_filter.difference(&handled).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the event subscription's operation filter (handledOperations in infra/modules/event-subscription.bicep) \
         differs from what the classifier acts on.\n  handled but not delivered (events would be lost): {missing:?}\n  \
         delivered but ignored (wasted invocations): {extra:?}"
    );

    // Both event types that carry them, within the documented per-filter limits, with retries and dead-letter.
    for needle in [
        "'Microsoft.Resources.ResourceWriteSuccess'",
        "'Microsoft.Resources.ResourceDeleteSuccess'",
        "operatorType: 'StringIn'",
        "key: 'data.operationName'",
        "@maxValue(25)\nparam maxValuesPerFilter int = 25",
        "retryPolicy:",
        "deadLetterWithResourceIdentity:",
        "endpointType: 'AzureFunction'",
        "param functionName string = 'OnResourceEvent'",
    ] {
        assert!(
            module.contains(needle),
            "infra/modules/event-subscription.bicep lacks `{needle}`"
        );
    }
    let trigger = read(&repo().join("function-app/OnResourceEvent/function.json"));
    let trigger: Value =
        serde_json::from_str(&trigger).expect("OnResourceEvent/function.json is JSON");
    assert_eq!(
        trigger["bindings"][0]["type"], "eventGridTrigger",
        "the event subscription's destination function OnResourceEvent must be Event Grid-triggered"
    );
}

fn guids(text: &str) -> Vec<String> {
    let is_hex = |s: &str| s.bytes().all(|c| c.is_ascii_hexdigit());
    let mut out = Vec::new();
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(35) {
        let cand = &text[i..i + 36];
        let parts: Vec<&str> = cand.split('-').collect();
        if parts.len() == 5
            && parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
            && parts.iter().all(|p| is_hex(p))
            && (i == 0 || !b[i - 1].is_ascii_hexdigit())
        {
            out.push(cand.to_ascii_lowercase());
        }
    }
    out
}

#[test]
fn the_condition_allows_exactly_the_two_pull_roles_for_service_principals() {
    let condition = infra("modules/attach-condition.txt");
    let ids = guids(&condition);
    let distinct: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        distinct,
        BTreeSet::from([ACR_PULL, REPOSITORY_READER]),
        "infra/modules/attach-condition.txt must name exactly AcrPull and Container Registry Repository Reader"
    );
    for id in [ACR_PULL, REPOSITORY_READER] {
        assert_eq!(
            ids.iter().filter(|g| *g == id).count(),
            2,
            "{id} must appear once in the write block (@Request) and once in the delete block (@Resource)"
        );
    }
    for needle in [
        "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})",
        "!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})",
        "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals",
        "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals",
        "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}",
        "@Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}",
    ] {
        assert!(
            condition.contains(needle),
            "infra/modules/attach-condition.txt lacks `{needle}`"
        );
    }

    // The two ids are the ones the handler assigns.
    let literals = all_source_literals();
    for id in [ACR_PULL, REPOSITORY_READER] {
        assert!(
            literals.iter().any(|l| l.to_ascii_lowercase().contains(id)),
            "no source file names role {id}: the condition and the handler disagree on the pull roles"
        );
    }

    // Every file that defines the attach role assigns it with the condition; no file grants a broad role.
    let broad = [
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
        (
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
            "User Access Administrator",
        ),
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
        (
            "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
            "Role Based Access Control Administrator (unconditioned)",
        ),
    ];
    let mut users = 0;
    for (path, text) in bicep_files() {
        for (id, role) in broad {
            assert!(
                !text.to_ascii_lowercase().contains(id),
                "{} grants {role} ({id})",
                path.display()
            );
        }
        if text.contains("loadJsonContent('attach-role.json')") {
            users += 1;
            for needle in [
                // Direct mode's condition unless group mode is switched on (off by default).
                "param enableGroupMode bool = false",
                "condition: enableGroupMode ? loadTextContent('attach-condition-groups.txt') : loadTextContent('attach-condition.txt')",
                "conditionVersion: '2.0'",
            ] {
                assert!(
                    text.contains(needle),
                    "{} defines the attach role but its assignment lacks `{needle}`",
                    path.display()
                );
            }
            assert!(
                text.contains("principalType: 'ServicePrincipal'"),
                "{} must assign the attach role with principalType ServicePrincipal",
                path.display()
            );
        }
    }
    assert!(
        users >= 2,
        "expected the subscription and management-group modules to use attach-role.json"
    );
}

fn without_whitespace(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Group mode (issue 16, docs/deploy.md "Group mode (optional)"): the widened condition differs from direct mode's
/// only by the `Group` principal type, still names exactly the two pull roles (so it can never grant Owner or
/// Contributor), is what the emulator enforces, and is used only when `enableGroupMode` is true (false by default
/// in both entry points).
#[test]
fn the_group_mode_condition_only_adds_the_group_principal_type() {
    let direct = infra("modules/attach-condition.txt");
    let groups = infra("modules/attach-condition-groups.txt");
    assert_eq!(
        groups,
        direct.replace("{'ServicePrincipal'}", "{'ServicePrincipal', 'Group'}"),
        "attach-condition-groups.txt must be attach-condition.txt with only the Group principal type added"
    );
    assert_eq!(
        groups.matches("{'ServicePrincipal', 'Group'}").count(),
        2,
        "write and delete blocks"
    );
    let ids = guids(&groups);
    assert_eq!(
        ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from([ACR_PULL, REPOSITORY_READER])
    );
    assert_eq!(
        ids.len(),
        4,
        "each pull role once in @Request and once in @Resource"
    );
    assert!(
        !direct.contains("'Group'"),
        "direct mode never allows groups"
    );

    // The emulator enforces these very texts (whitespace aside).
    assert_eq!(
        without_whitespace(&direct),
        without_whitespace(&azure_emulator::rbac::pull_roles_only_condition())
    );
    assert_eq!(
        without_whitespace(&groups),
        without_whitespace(&azure_emulator::rbac::pull_roles_to_principals_and_groups_condition())
    );

    // Only the group-mode variant names the Group principal type; it is chosen only behind the switch.
    for (path, text) in bicep_files() {
        assert!(
            !text.contains("'Group'"),
            "{} names the Group principal type",
            path.display()
        );
        if text.contains("attach-condition-groups.txt") {
            assert!(
                text.contains("enableGroupMode ? loadTextContent('attach-condition-groups.txt')"),
                "{} uses the group-mode condition outside the enableGroupMode switch",
                path.display()
            );
        }
    }
    for entry in ["main.bicep", "main.mg.bicep"] {
        let text = infra(entry);
        assert!(
            text.contains("param enableGroupMode bool = false"),
            "{entry}: group mode must be off by default"
        );
        assert!(
            text.contains("enableGroupMode: enableGroupMode"),
            "{entry} must pass the switch on"
        );
    }
    // The Graph permissions are a separate step for a directory administrator, never part of the Bicep.
    let script = infra("grant-graph-permissions.sh");
    for role in [
        "Group.Create",
        "GroupMember.Read.All",
        "Application.Read.All",
    ] {
        assert!(
            script.contains(role),
            "grant-graph-permissions.sh lacks {role}"
        );
    }
    for broad in [
        "Application.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.ReadWrite.All",
    ] {
        assert!(
            !script.contains(broad),
            "grant-graph-permissions.sh must not grant {broad}"
        );
    }
}

/// What an Azure operation of the client needs from the app's identity.
enum Needs {
    /// These Azure RBAC actions.
    Actions(&'static [&'static str]),
    /// Not an Azure RBAC permission (Microsoft Graph: an Entra ID application permission, docs/deploy.md).
    NotAzureRbac,
    /// An operation this test does not know yet.
    Unknown,
}

/// The RBAC actions each Azure operation of the client needs (arm.md).
fn actions_of(operation: &str) -> Needs {
    match operation {
        "GetCluster" | "ListClusters" => {
            Needs::Actions(&["Microsoft.ContainerService/managedClusters/read"])
        }
        "GetRegistry" | "ListRegistries" => {
            Needs::Actions(&["Microsoft.ContainerRegistry/registries/read"])
        }
        "ListRoleAssignments" => Needs::Actions(&["Microsoft.Authorization/roleAssignments/read"]),
        "PutRoleAssignment" => Needs::Actions(&["Microsoft.Authorization/roleAssignments/write"]),
        "DeleteRoleAssignment" => {
            Needs::Actions(&["Microsoft.Authorization/roleAssignments/delete"])
        }
        "GetRoleDefinition" => Needs::Actions(&["Microsoft.Authorization/roleDefinitions/read"]),
        "ListSubscriptions" => Needs::Actions(&["Microsoft.Resources/subscriptions/read"]),
        // Resource Graph needs read access to what it returns (the actions above), no action of its own.
        "ResourceGraph" => Needs::Actions(&[]),
        // Microsoft Graph: application permissions, not Azure RBAC (docs/grant-modes.md §3).
        "GraphServicePrincipal"
        | "GraphFindGroup"
        | "GraphCreateGroup"
        | "GraphGroupOwners"
        | "GraphAddMember"
        | "GraphRemoveMember"
        | "GraphListMembers"
        | "GraphTransitiveMembers"
        | "GraphTransitiveMemberOf" => Needs::NotAzureRbac,
        _ => Needs::Unknown,
    }
}

#[test]
fn the_custom_role_holds_exactly_the_actions_of_the_client_operations() {
    let (path, text) = rust_sources()
        .into_iter()
        .find(|(_, t)| t.contains("pub enum Operation {"))
        .expect("no `pub enum Operation {` in src/**: where are the Azure client's operations?");
    let body = &text[text.find("pub enum Operation {").unwrap()..];
    let body = &body[..body.find('}').unwrap()];
    let variants: Vec<&str> = body
        .lines()
        .skip(1)
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with('#'))
        .collect();
    assert!(
        variants.len() >= 5,
        "could not read the variants of Operation in {}",
        path.display()
    );

    let mut wanted = BTreeSet::new();
    for v in &variants {
        match actions_of(v) {
            Needs::Unknown => panic!(
                "Operation::{v} ({}) is new: map it to the RBAC actions it needs in this test and in \
                 infra/modules/attach-role.json",
                path.display()
            ),
            Needs::Actions(actions) => wanted.extend(actions.iter().map(|a| (*a).to_owned())),
            Needs::NotAzureRbac => {}
        }
    }
    let role: Value =
        serde_json::from_str(&infra("modules/attach-role.json")).expect("attach-role.json is JSON");
    let granted: BTreeSet<String> = role["actions"]
        .as_array()
        .expect("attach-role.json has an `actions` array")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_owned())
        .collect();
    let missing: Vec<_> = wanted.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&wanted).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "infra/modules/attach-role.json must hold exactly the actions of the client's operations.\n  missing (calls \
         would get 403): {missing:?}\n  extra (privilege the handler does not use): {extra:?}"
    );
    assert!(
        !granted.iter().any(|a| a.contains('*')),
        "attach-role.json must not use wildcards"
    );
}

#[test]
fn the_scanners_find_what_they_look_for() {
    // Guards for the helpers above, so a scanner bug cannot make the checks pass vacuously.
    let lits = rust_string_literals(
        "let a = \"X_ONE\"; // \"NOT_THIS\"\n let c = '\"'; let b = r#\"RAW\"#; fn f<'a>() {} /* \"NOPE\" */ \"TWO\"",
    );
    assert_eq!(lits, vec!["X_ONE", "RAW", "TWO"]);
    assert_eq!(
        tracing_field_names("warn!(registry.id = %r, status = ?s, x == y, \"m\"); let a = b;"),
        vec!["registry.id", "status"]
    );
    assert_eq!(
        bicep_setting_keys("  AUTOATTACH_TAG: 'x'\n  name: y\n  RUST_LOG: 'info'\n"),
        BTreeSet::from(["AUTOATTACH_TAG".to_owned(), "RUST_LOG".to_owned()])
    );
    assert_eq!(
        percent_references("{\"schedule\": \"%AUTOATTACH_VERIFY_SCHEDULE%\", \"x\": \"50%\"}"),
        BTreeSet::from(["AUTOATTACH_VERIFY_SCHEDULE".to_owned()])
    );
    assert!(classifier_handles(
        "Microsoft.ContainerService/managedClusters/write"
    ));
    assert!(!classifier_handles(
        "Microsoft.ContainerService/managedClusters/agentPools/write"
    ));
    assert_eq!(guids(&format!("x {ACR_PULL},{REPOSITORY_READER}")).len(), 2);
}
