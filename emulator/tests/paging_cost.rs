//! Paging costs O(page) (issue 15, point 3): a 200,000-row role-assignment list and the same rows through
//! Resource Graph are read to the end, and the emulator's own work counter (rows of the store examined, rows
//! serialised: `PageWork`) shows one pass for the whole listing — the first page builds the snapshot, every later
//! page costs its own rows. Before cursors, every page re-scanned, re-filtered, re-sorted and re-serialised the
//! whole store (about 400,000 rows of work per page here), which the per-page bound below refuses.
//! Also: a `$skipToken` continues only its caller's query, and garbage is refused as ARM and Resource Graph do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod arm_common;

use std::collections::HashSet;

use arm_common::Harness;
use azure_emulator::{EmulatorConfig, PageWork, rbac};
use serde_json::{Value, json};

const ROWS: usize = 200_000;
const PAGE: u64 = 1_000;
const RG: &str = "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01";
const ASSIGNMENTS_Q: &str = "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' | project id, name, properties | order by id asc";

fn config() -> EmulatorConfig {
    let mut config = EmulatorConfig::for_tests();
    // The cost of a page is measured here, not the quota (arm_resource_graph.rs covers throttling).
    config.faults.resource_graph_quota = 1_000_000;
    config.faults.throttling = false;
    config
}

/// `rows` AcrPull assignments over 20 registry scopes in the harness's subscription, granted directly.
fn seed(h: &Harness, rows: usize) {
    for i in 0..rows {
        let principal = format!("{i:08x}-0000-4000-8000-{i:012x}");
        let registry = h.registry_id("rg", &format!("acr{:02}", i % 20));
        h.emu.grant(&principal, rbac::ACR_PULL, &registry);
    }
}

/// The page records of one operation since the last reset.
fn work_of(h: &Harness, operation: &str) -> Vec<PageWork> {
    h.emu
        .page_work()
        .into_iter()
        .filter(|w| w.operation == operation)
        .collect()
}

/// One pass: the first page opens the snapshot, every later page costs at most its rows twice over, the last
/// page is within 2× the first, and the whole listing is a few passes over the rows, not a few per page.
fn assert_flat(label: &str, work: &[PageWork], rows: usize) {
    let (first, rest) = work.split_first().unwrap();
    let last = work.last().unwrap();
    let total: u64 = work.iter().map(PageWork::total).sum();
    println!(
        "{label}: {} pages; work of the first page {} (snapshot), of the last {}, of the whole listing {} for {rows} rows",
        work.len(),
        first.total(),
        last.total(),
        total
    );
    assert!(first.opened_snapshot, "{label}: {first:?}");
    assert!(
        last.total() <= 2 * first.total(),
        "{label}: last page {last:?} vs first {first:?}"
    );
    for (i, w) in rest.iter().enumerate() {
        assert!(!w.opened_snapshot, "{label} page {}: {w:?}", i + 2);
        assert!(
            w.total() <= 2 * PAGE,
            "{label} page {}: {w:?} is not O(page)",
            i + 2
        );
    }
    // One scan of the store, one pass per operator (filter, sort) and each row served once: 5n at most; before
    // cursors it was that much per page.
    assert!(
        total <= 5 * rows as u64,
        "{label}: {total} rows of work for {rows} rows is not one pass"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200000_row_listing_costs_one_pass() {
    let h = Harness::start(config()).await;
    seed(&h, ROWS);
    let admin = h.admin();

    // ARM: the subscription's role-assignment list, nextLink to the end.
    h.emu.reset_stats();
    let mut names = HashSet::new();
    let mut next = Some(format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
        h.sub
    ));
    while let Some(url) = next {
        let page = h.get(&admin, &url).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for item in page.body["value"].as_array().unwrap() {
            assert!(names.insert(item["name"].as_str().unwrap().to_owned()));
        }
        next = page.body["nextLink"].as_str().map(str::to_owned);
    }
    assert!(names.len() > ROWS, "{} rows listed", names.len());
    let arm = work_of(&h, "list_role_assignments");
    assert_eq!(arm.len(), names.len().div_ceil(PAGE as usize));
    assert_flat("ARM role-assignment list", &arm, names.len());

    // Resource Graph: the handler's query, $skipToken to the end.
    h.emu.reset_stats();
    let mut ids = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut options = json!({"$top": PAGE});
        if let Some(t) = &token {
            options["$skipToken"] = json!(t);
        }
        let page = h
            .post(
                &admin,
                RG,
                &json!({"subscriptions": [h.sub], "query": ASSIGNMENTS_Q, "options": options}),
            )
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.body["totalRecords"], json!(names.len()));
        for row in page.body["data"].as_array().unwrap() {
            assert!(ids.insert(row["id"].as_str().unwrap().to_owned()));
        }
        token = page.body["$skipToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(ids.len(), names.len());
    let graph = work_of(&h, "resource_graph");
    assert_eq!(graph.len(), ids.len().div_ceil(PAGE as usize));
    assert_flat("Resource Graph", &graph, ids.len());
}

#[tokio::test]
async fn a_skip_token_continues_only_its_callers_query() {
    let h = Harness::start(config()).await;
    h.emu.update_settings(|s| s.role_assignment_page_size = 2);
    seed(&h, 10);
    let admin = h.admin();
    let handler = h.emu.handler_token();
    let list = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01",
        h.sub
    );
    let first = h.get(&admin, &list).await;
    let next = first.body["nextLink"].as_str().unwrap().to_owned();
    // The same link again (a retry) gives the same page; another caller, a forged token, garbage: refused.
    let a = h.get(&admin, &next).await;
    let b = h.get(&admin, &next).await;
    assert_eq!((a.status, &a.body), (200, &b.body));
    let foreign = h.get(&handler, &next).await;
    assert_eq!(
        (foreign.status, foreign.code()),
        (400, "InvalidSkipToken"),
        "{}",
        foreign.body
    );
    let other_filter = format!("{}&$filter=atScope()", next.replace(&h.emu.base_url(), ""));
    assert_eq!(h.get(&admin, &other_filter).await.status, 400);
    for bad in ["garbage", "b2Zmc2V0OjI", "Y3Vyc29yOjk5OjI"] {
        let answer = h.get(&admin, &format!("{list}&$skipToken={bad}")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "InvalidSkipToken"),
            "{bad}: {}",
            answer.body
        );
    }

    // Resource Graph: the token belongs to the caller, its subscriptions and its query.
    let ask = |token: String, body: Value| {
        let h = &h;
        async move { h.post(&token, RG, &body).await }
    };
    let first = ask(
        admin.clone(),
        json!({"subscriptions": [h.sub], "query": ASSIGNMENTS_Q, "options": {"$top": 3}}),
    )
    .await;
    let token = first.body["$skipToken"].as_str().unwrap().to_owned();
    let again = json!({"subscriptions": [h.sub], "query": ASSIGNMENTS_Q, "options": {"$top": 3, "$skipToken": token}});
    assert_eq!(ask(admin.clone(), again.clone()).await.status, 200);
    let foreign = ask(handler, again).await;
    assert_eq!(foreign.status, 400, "{}", foreign.body);
    assert_eq!(
        foreign.body["error"]["details"][0]["code"],
        "InvalidSkipToken"
    );
    let all_subscriptions =
        json!({"query": ASSIGNMENTS_Q, "options": {"$top": 3, "$skipToken": token}});
    assert_eq!(ask(admin, all_subscriptions).await.status, 400);
}
