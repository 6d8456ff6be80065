//! Alert planning (pure): which alerts a run's results fire and which of Alertmanager's active alerts they
//! resolve, and the generic JSON message. Delivery lives in `runtime::alerting`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::core::model::{
    LIMIT_REASON_PREFIX, PairResult, PairStatus, ROLE_ASSIGNMENT_LIMIT, RegistryResult,
    RegistryStatus, ResourceId, SubscriptionCapacity,
};

/// The `alertname` of every alert this project sends.
pub const ALERT_NAME: &str = "AcrAutoAttach";
/// The `service` label, so routes can match all of them.
pub const SERVICE_LABEL: &str = "acr-autoattach";

/// How often an Azure operation failed in a run, by HTTP status (`None`: no response).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureFailureCount {
    pub operation: String,
    pub status: Option<u16>,
    pub count: u32,
}

/// Everything one run found, as the alerter needs it.
#[derive(Clone, Debug)]
pub struct AlertRun<'a> {
    pub invocation_id: &'a str,
    pub pairs: &'a [PairResult],
    pub registries: &'a [RegistryResult],
    pub azure_failures: &'a [AzureFailureCount],
    /// Role assignments counted per registry subscription (a verification run; empty for events).
    pub capacity: &'a [SubscriptionCapacity],
    /// True for a run that verified the whole scope (the timer): an active alert whose subject it did not
    /// report is then resolved too (the cluster or registry is gone or no longer selected). Event runs see a
    /// few pairs only and resolve only what they saw healthy.
    pub complete_scope: bool,
    /// Why the run could not see what it is meant to verify (issue 10, rule 7: a subscription not visible, a
    /// read right missing, a 403 on an inventory list): fires a critical `blind` alert naming it.
    pub blind: Option<&'a str>,
    pub now: OffsetDateTime,
}

impl<'a> AlertRun<'a> {
    /// A run from a verification report (the timer's): complete scope when the report is complete.
    pub fn from_report(
        report: &'a crate::core::model::VerificationReport,
        invocation_id: &'a str,
        azure_failures: &'a [AzureFailureCount],
        now: OffsetDateTime,
    ) -> Self {
        Self {
            invocation_id,
            pairs: &report.pairs,
            registries: &report.registry_results,
            azure_failures,
            capacity: &report.capacity,
            complete_scope: report.complete,
            blind: report.inventory.failure(),
            now,
        }
    }
}

/// One alert in Alertmanager's v2 shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

impl Alert {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The label set without empty values (Alertmanager treats an empty label as absent).
    pub fn identity(&self) -> BTreeMap<&str, &str> {
        self.labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

fn severity_rank(status: PairStatus) -> u8 {
    match status {
        PairStatus::Failed => 3,
        PairStatus::Missing => 2,
        PairStatus::Pending => 1,
        PairStatus::Compliant | PairStatus::Repaired | PairStatus::Detached => 0,
    }
}

/// The operator command that walks through one pair (`explain` takes both ids).
fn explain_command(cluster: &ResourceId, registry: &ResourceId) -> String {
    format!("acr-autoattach explain --cluster {cluster} --registry {registry}")
}

fn base_labels(status: &str, severity: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_owned(), ALERT_NAME.to_owned()),
        ("service".to_owned(), SERVICE_LABEL.to_owned()),
        ("status".to_owned(), status.to_owned()),
        ("severity".to_owned(), severity.to_owned()),
    ])
}

/// The alerts that fire for `run` (pure). Pairs `failed`/`missing`, registries `invalid_selector`, Azure
/// operations answered 403 (`forbidden`) and operations failing transiently `threshold` times or more
/// (`transient`). Duplicate results for one pair yield one alert, for the worst status.
pub fn plan_firing(run: &AlertRun<'_>, transient_threshold: u32) -> Vec<Alert> {
    let mut alerts = pair_alerts(run);
    alerts.extend(registry_alerts(run));
    alerts.extend(capacity_alerts(run));
    alerts.extend(blind_alert(run));
    alerts.extend(azure_alerts(run, transient_threshold));
    alerts
}

/// One alert per `failed`/`missing` pair, for its worst status.
fn pair_alerts(run: &AlertRun<'_>) -> Vec<Alert> {
    // At most one alert per pair: keyed by the lower-cased ids, keeping the worst status.
    let mut worst: BTreeMap<(String, String), &PairResult> = BTreeMap::new();
    for p in run.pairs {
        if !matches!(p.status, PairStatus::Failed | PairStatus::Missing) {
            continue;
        }
        let key = (p.cluster_id.key(), p.registry_id.key());
        match worst.get(&key) {
            Some(existing) if severity_rank(existing.status) >= severity_rank(p.status) => {}
            _ => {
                worst.insert(key, p);
            }
        }
    }

    let mut alerts = Vec::new();
    for ((cluster, registry), p) in &worst {
        let severity = if p.status == PairStatus::Failed {
            "critical"
        } else {
            "warning"
        };
        let mut labels = base_labels(p.status.as_str(), severity);
        labels.insert("cluster".to_owned(), cluster.clone());
        labels.insert("registry".to_owned(), registry.clone());
        let reason = p
            .reason
            .clone()
            .unwrap_or_else(|| "no reason recorded".to_owned());
        let annotations = BTreeMap::from([
            (
                "summary".to_owned(),
                format!(
                    "AKS cluster {} cannot pull from registry {}: {}",
                    p.cluster_id.name(),
                    p.registry_id.name(),
                    p.status
                ),
            ),
            ("reason".to_owned(), reason),
            (
                "explain".to_owned(),
                explain_command(&p.cluster_id, &p.registry_id),
            ),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }
    alerts
}

/// One alert per registry with an invalid selector.
fn registry_alerts(run: &AlertRun<'_>) -> Vec<Alert> {
    let mut alerts = Vec::new();
    let mut seen_registries = BTreeSet::new();
    for r in run.registries {
        if !seen_registries.insert(r.registry_id.key()) {
            continue;
        }
        let RegistryStatus::InvalidSelector = r.status;
        let mut labels = base_labels("invalid_selector", "warning");
        labels.insert("registry".to_owned(), r.registry_id.key());
        let annotations = BTreeMap::from([
            (
                "summary".to_owned(),
                format!(
                    "Registry {} has an opt-in tag that does not parse: it selects no cluster",
                    r.registry_id.name()
                ),
            ),
            ("reason".to_owned(), r.reason.clone()),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }
    alerts
}

/// The critical alert of a run that could not see what it must verify (issue 10, rule 7).
fn blind_alert(run: &AlertRun<'_>) -> Option<Alert> {
    let reason = run.blind?;
    let summary = format!(
        "acr-autoattach cannot see what it must verify; nothing in its scope is known to be compliant: {reason}"
    );
    Some(Alert {
        labels: base_labels("blind", "critical"),
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary),
            ("reason".to_owned(), reason.to_owned()),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]),
        starts_at: None,
        ends_at: None,
    })
}

/// One alert per Azure operation answered 403, or failing transiently `transient_threshold` times or more.
fn azure_alerts(run: &AlertRun<'_>, transient_threshold: u32) -> Vec<Alert> {
    let mut alerts = Vec::new();
    // Sum per (operation, kind): a run reports counts per status, the alert is per operation.
    let mut per_operation: BTreeMap<(String, &'static str), u32> = BTreeMap::new();
    for f in run.azure_failures {
        let kind = match f.status {
            Some(403) => "forbidden",
            Some(429 | 500..=599) | None => "transient",
            Some(_) => continue,
        };
        *per_operation
            .entry((f.operation.clone(), kind))
            .or_default() += f.count;
    }
    for ((operation, kind), count) in per_operation {
        let fires = match kind {
            "forbidden" => count >= 1,
            _ => count >= transient_threshold,
        };
        if !fires {
            continue;
        }
        let severity = if kind == "forbidden" {
            "critical"
        } else {
            "warning"
        };
        let mut labels = base_labels(kind, severity);
        labels.insert("operation".to_owned(), operation.clone());
        let summary = if kind == "forbidden" {
            format!(
                "Azure refused `{operation}` with 403 {count} time(s): the handler's identity lacks a permission"
            )
        } else {
            format!(
                "Azure `{operation}` failed transiently {count} time(s) in one run (throttling, 5xx or timeouts)"
            )
        };
        let annotations = BTreeMap::from([
            ("summary".to_owned(), summary.clone()),
            ("reason".to_owned(), summary),
            ("invocation_id".to_owned(), run.invocation_id.to_owned()),
        ]);
        alerts.push(Alert {
            labels,
            annotations,
            starts_at: None,
            ends_at: None,
        });
    }
    alerts
}

/// One alert per subscription at or above 90 % of Azure's role-assignment limit (warning), or where Azure
/// refused a PUT for the limit in this run (critical; known from the run's counts or its failed pairs).
fn capacity_alerts(run: &AlertRun<'_>) -> Vec<Alert> {
    let mut near: BTreeMap<String, SubscriptionCapacity> = BTreeMap::new();
    for c in run.capacity.iter().filter(|c| c.near_limit()) {
        near.insert(c.subscription.to_ascii_lowercase(), c.clone());
    }
    for p in run.pairs {
        if p.status == PairStatus::Failed
            && p.reason
                .as_deref()
                .is_some_and(|r| r.starts_with(LIMIT_REASON_PREFIX))
        {
            let sub = p.registry_id.subscription_id().to_ascii_lowercase();
            near.entry(sub.clone())
                .or_insert_with(|| SubscriptionCapacity {
                    subscription: sub,
                    assignments: ROLE_ASSIGNMENT_LIMIT,
                    limit: ROLE_ASSIGNMENT_LIMIT,
                    exhausted: true,
                })
                .exhausted = true;
        }
    }
    near.into_iter()
        .map(|(subscription, c)| {
            let severity = if c.exhausted { "critical" } else { "warning" };
            let mut labels = base_labels("role_assignment_limit", severity);
            labels.insert("subscription".to_owned(), subscription.clone());
            let summary = if c.exhausted {
                format!(
                    "Subscription {subscription} is at Azure's limit of {} role assignments: new attachments there fail",
                    c.limit
                )
            } else {
                format!(
                    "Subscription {subscription} holds {} of Azure's {} role assignments ({}%)",
                    c.assignments,
                    c.limit,
                    c.percent()
                )
            };
            let annotations = BTreeMap::from([
                ("summary".to_owned(), summary),
                ("reason".to_owned(), c.line()),
                ("invocation_id".to_owned(), run.invocation_id.to_owned()),
            ]);
            Alert {
                labels,
                annotations,
                starts_at: None,
                ends_at: None,
            }
        })
        .collect()
}

/// Which of Alertmanager's `active` alerts (ours, by `alertname`) this run resolves (pure): those whose label
/// set is not firing now and whose subject the run covered — a pair it reported, a registry it reported or
/// whose pairs it reported, or anything at all when `complete_scope`.
pub fn plan_resolutions(run: &AlertRun<'_>, firing: &[Alert], active: &[Alert]) -> Vec<Alert> {
    let firing_ids: BTreeSet<BTreeMap<&str, &str>> = firing.iter().map(Alert::identity).collect();
    let seen_pairs: BTreeSet<(String, String)> = run
        .pairs
        .iter()
        .map(|p| (p.cluster_id.key(), p.registry_id.key()))
        .collect();
    let seen_registries: BTreeSet<String> = run
        .pairs
        .iter()
        .map(|p| p.registry_id.key())
        .chain(run.registries.iter().map(|r| r.registry_id.key()))
        .collect();
    let now = format_time(run.now);

    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for a in active {
        if a.label("alertname") != Some(ALERT_NAME) {
            continue;
        }
        let id = a.identity();
        if firing_ids.contains(&id) || !done.insert(id) {
            continue;
        }
        let covered = run.complete_scope
            || match (a.label("cluster"), a.label("registry")) {
                (Some(c), Some(r)) => {
                    seen_pairs.contains(&(c.to_ascii_lowercase(), r.to_ascii_lowercase()))
                }
                (None, Some(r)) => seen_registries.contains(&r.to_ascii_lowercase()),
                _ => false,
            };
        if covered {
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.starts_at.clone(),
                ends_at: Some(now.clone()),
            });
        }
    }
    out
}

pub fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The generic JSON body (`AUTOATTACH_ALERT_FORMAT=json`): top-level strings `title` and `text` for
/// Slack/Teams workflow variables, plus the structured `alerts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonAlertMessage {
    pub source: String,
    pub title: String,
    pub text: String,
    pub invocation_id: String,
    pub time: String,
    pub alerts: Vec<JsonAlert>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonAlert {
    pub status: String,
    pub severity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    pub summary: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<String>,
}

/// Builds the JSON message for the firing alerts; `None` when nothing fires (the json format reports problems
/// only).
pub fn json_message(run: &AlertRun<'_>, firing: &[Alert]) -> Option<JsonAlertMessage> {
    if firing.is_empty() {
        return None;
    }
    let alerts: Vec<JsonAlert> = firing
        .iter()
        .map(|a| {
            let get = |k: &str| a.label(k).map(str::to_owned);
            let ann = |k: &str| a.annotations.get(k).cloned();
            JsonAlert {
                status: get("status").unwrap_or_default(),
                severity: get("severity").unwrap_or_default(),
                cluster: get("cluster"),
                registry: get("registry"),
                operation: get("operation"),
                summary: ann("summary").unwrap_or_default(),
                reason: ann("reason").unwrap_or_default(),
                explain: ann("explain"),
            }
        })
        .collect();
    let text = alerts
        .iter()
        .map(|a| match &a.explain {
            Some(cmd) => format!("- [{}] {}: {} (run `{cmd}`)", a.status, a.summary, a.reason),
            None => format!("- [{}] {}", a.status, a.summary),
        })
        .collect::<Vec<_>>()
        .join("\n");
    Some(JsonAlertMessage {
        source: SERVICE_LABEL.to_owned(),
        title: format!("acr-autoattach: {} problem(s) need attention", alerts.len()),
        text,
        invocation_id: run.invocation_id.to_owned(),
        time: format_time(run.now),
        alerts,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::model::PullRole;
    use time::macros::datetime;

    fn cluster(n: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ContainerService/managedClusters/{n}"
        ))
        .unwrap()
    }
    fn registry(n: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/S1/resourceGroups/RG/providers/Microsoft.ContainerRegistry/registries/{n}"
        ))
        .unwrap()
    }
    fn pair(c: &str, r: &str, status: PairStatus) -> PairResult {
        PairResult {
            cluster_id: cluster(c),
            registry_id: registry(r),
            principal_id: Some("p".into()),
            role: Some(PullRole::AcrPull),
            status,
            reason: Some(format!("{c}/{r} is {status}")),
            assignment_id: None,
            latency_seconds: None,
            failure: None,
        }
    }
    fn run<'a>(
        pairs: &'a [PairResult],
        registries: &'a [RegistryResult],
        failures: &'a [AzureFailureCount],
        complete: bool,
    ) -> AlertRun<'a> {
        AlertRun {
            invocation_id: "inv",
            capacity: &[],
            pairs,
            registries,
            azure_failures: failures,
            complete_scope: complete,
            blind: None,
            now: datetime!(2026-11-30 06:00 UTC),
        }
    }

    #[test]
    fn fires_for_failed_missing_invalid_selector_forbidden_and_repeated_transients() {
        let pairs = [
            pair("a", "r", PairStatus::Missing),
            pair("A", "R", PairStatus::Failed), // same pair, other spelling: one alert, the worst
            pair("b", "r", PairStatus::Compliant),
            pair("c", "r", PairStatus::Pending),
        ];
        let regs = [RegistryResult {
            registry_id: registry("bad"),
            status: RegistryStatus::InvalidSelector,
            reason: "env in (prod".into(),
        }];
        let fails = [
            AzureFailureCount {
                operation: "role_assignments.create".into(),
                status: Some(403),
                count: 1,
            },
            AzureFailureCount {
                operation: "arm.get_cluster".into(),
                status: Some(429),
                count: 2,
            },
            AzureFailureCount {
                operation: "arm.get_cluster".into(),
                status: Some(503),
                count: 1,
            },
            AzureFailureCount {
                operation: "graph.sp".into(),
                status: None,
                count: 2,
            },
            AzureFailureCount {
                operation: "arm.x".into(),
                status: Some(404),
                count: 9,
            },
        ];
        let firing = plan_firing(&run(&pairs, &regs, &fails, false), 3);
        let statuses: Vec<&str> = firing.iter().map(|a| a.labels["status"].as_str()).collect();
        assert_eq!(
            statuses,
            ["failed", "invalid_selector", "transient", "forbidden"]
        );
        let pair_alert = &firing[0];
        assert_eq!(pair_alert.labels["severity"], "critical");
        assert_eq!(pair_alert.labels["cluster"], cluster("a").key());
        assert!(pair_alert.annotations["explain"].starts_with("acr-autoattach explain --cluster "));
        assert!(
            !firing[1].annotations.contains_key("explain"),
            "`explain` needs a cluster: none for a registry alert"
        );
        assert_eq!(firing[2].labels["operation"], "arm.get_cluster");
    }

    #[test]
    fn resolves_only_what_the_run_covered_and_is_no_longer_firing() {
        let healthy = [
            pair("a", "r", PairStatus::Repaired),
            pair("b", "r", PairStatus::Failed),
        ];
        let firing = plan_firing(&run(&healthy, &[], &[], false), 3);
        let mk = |c: &str, r: &str, status: &str| {
            let mut labels = base_labels(status, "warning");
            labels.insert("cluster".into(), cluster(c).key());
            labels.insert("registry".into(), registry(r).key());
            Alert {
                labels,
                annotations: BTreeMap::new(),
                starts_at: Some("2026-11-30T05:00:00Z".into()),
                ends_at: None,
            }
        };
        let mut b_failed = mk("b", "r", "failed");
        b_failed.labels.insert("severity".into(), "critical".into());
        let active = vec![
            mk("a", "r", "missing"), // healthy now → resolved
            b_failed,                // still failing → kept
            mk("b", "r", "missing"), // same pair, status changed → resolved
            mk("z", "r", "missing"), // not seen by this event run → kept
        ];
        let resolved = plan_resolutions(&run(&healthy, &[], &[], false), &firing, &active);
        let got: Vec<(&str, &str)> = resolved
            .iter()
            .map(|a| {
                (
                    a.labels["cluster"].rsplit('/').next().unwrap(),
                    a.labels["status"].as_str(),
                )
            })
            .collect();
        assert_eq!(got, [("a", "missing"), ("b", "missing")]);
        assert_eq!(resolved[0].ends_at.as_deref(), Some("2026-11-30T06:00:00Z"));
        assert_eq!(
            resolved[0].starts_at.as_deref(),
            Some("2026-11-30T05:00:00Z")
        );

        let resolved = plan_resolutions(&run(&healthy, &[], &[], true), &firing, &active);
        assert_eq!(
            resolved.len(),
            3,
            "a complete run also resolves pairs it no longer sees"
        );
    }

    #[test]
    fn json_message_only_for_problems() {
        let ok = [pair("a", "r", PairStatus::Compliant)];
        let r = run(&ok, &[], &[], true);
        assert!(json_message(&r, &plan_firing(&r, 3)).is_none());
        let bad = [pair("a", "r", PairStatus::Failed)];
        let r = run(&bad, &[], &[], true);
        let m = json_message(&r, &plan_firing(&r, 3)).unwrap();
        assert_eq!(m.alerts.len(), 1);
        assert!(m.text.contains("acr-autoattach explain --cluster"));
        assert_eq!(m.title, "acr-autoattach: 1 problem(s) need attention");
    }

    #[test]
    fn capacity_alerts_at_ninety_percent_and_when_azure_refused_for_the_limit() {
        let cap = |sub: &str, n: u64| SubscriptionCapacity {
            subscription: sub.into(),
            assignments: n,
            limit: ROLE_ASSIGNMENT_LIMIT,
            exhausted: false,
        };
        let capacity = [cap("s-low", 3_599), cap("s-near", 3_600)];
        let mut refused = pair("a", "r", PairStatus::Failed);
        refused.reason = Some(format!(
            "{LIMIT_REASON_PREFIX}: subscription S1 holds Azure's fixed maximum"
        ));
        let pairs = [refused];
        let mut r = run(&pairs, &[], &[], true);
        r.capacity = &capacity;
        let alerts = plan_firing(&r, 3);
        let limit: Vec<(&str, &str)> = alerts
            .iter()
            .filter(|a| a.label("status") == Some("role_assignment_limit"))
            .map(|a| {
                (
                    a.label("subscription").unwrap(),
                    a.label("severity").unwrap(),
                )
            })
            .collect();
        assert_eq!(limit, [("s-near", "warning"), ("s1", "critical")]);
        let s1 = alerts
            .iter()
            .find(|a| a.label("subscription") == Some("s1"))
            .unwrap();
        assert!(
            s1.annotations["summary"].contains("limit of 4000"),
            "{s1:?}"
        );
        // The pair itself alerts too, with the reason naming the limit and the subscription.
        assert!(alerts.iter().any(|a| a.label("status") == Some("failed")
            && a.annotations["reason"].contains("subscription S1")));
    }
}
