//! Renderers for a [`VerificationReport`]: a terminal table, JSON with a computed summary, and one self-contained
//! HTML page (a clusters × registries matrix). Pure: data in, `String` out; writing the file is the caller's job.
//!
//! Everything that comes from Azure (resource names, reasons) is untrusted: the HTML escapes it, the table
//! neutralises control characters so a crafted name cannot move the cursor or recolour the operator's terminal.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::core::model::{PairResult, PairStatus, RegistryResult, ResourceId, VerificationReport};

/// Pairs per status, every status present (zero included).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    pub compliant: usize,
    pub repaired: usize,
    pub missing: usize,
    pub pending: usize,
    pub failed: usize,
    pub detached: usize,
}

impl StatusCounts {
    pub fn get(&self, status: PairStatus) -> usize {
        match status {
            PairStatus::Compliant => self.compliant,
            PairStatus::Repaired => self.repaired,
            PairStatus::Missing => self.missing,
            PairStatus::Pending => self.pending,
            PairStatus::Failed => self.failed,
            PairStatus::Detached => self.detached,
        }
    }

    fn slot(&mut self, status: PairStatus) -> &mut usize {
        match status {
            PairStatus::Compliant => &mut self.compliant,
            PairStatus::Repaired => &mut self.repaired,
            PairStatus::Missing => &mut self.missing,
            PairStatus::Pending => &mut self.pending,
            PairStatus::Failed => &mut self.failed,
            PairStatus::Detached => &mut self.detached,
        }
    }
}

/// The numbers every rendering leads with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    pub counts: StatusCounts,
    /// Pair results in the report (verified pairs).
    pub pairs: usize,
    /// The run's verdict ([`VerificationReport::all_compliant`]): what the CLI's exit code is made from.
    pub compliant: bool,
    /// Pairs that end the run healthy (compliant, repaired, detached).
    pub healthy: usize,
    /// Pairs in scope the run did not reach.
    pub unverified_pairs: usize,
    /// Verified pairs / pairs in scope, in `0.0..=1.0`; `1.0` for an empty scope.
    pub coverage: f64,
    pub invalid_selectors: usize,
}

/// Computes the summary of `report`.
pub fn summarize(report: &VerificationReport) -> ReportSummary {
    let mut counts = StatusCounts::default();
    for pair in &report.pairs {
        *counts.slot(pair.status) += 1;
    }
    let pairs = report.pairs.len();
    let in_scope = pairs.saturating_add(report.unverified_pairs);
    let coverage = if in_scope == 0 {
        1.0
    } else {
        pairs as f64 / in_scope as f64
    };
    ReportSummary {
        counts,
        pairs,
        compliant: report.all_compliant(),
        healthy: report
            .pairs
            .iter()
            .filter(|p| p.status.is_healthy())
            .count(),
        unverified_pairs: report.unverified_pairs,
        coverage,
        invalid_selectors: report.registry_results.len(),
    }
}

/// Coverage as a percentage, rounded down so a partial run never shows `100.0%`.
fn percent(coverage: f64) -> String {
    let tenths = (coverage * 1000.0).floor() / 10.0;
    format!("{tenths:.1}%")
}

// ---------------------------------------------------------------------------------------------------------------
// JSON

#[derive(Serialize)]
struct JsonReport<'a> {
    #[serde(flatten)]
    report: &'a VerificationReport,
    summary: ReportSummary,
}

/// [`render_json`]'s text written to `out` as it is made (a report of 200,000 pairs is over 100 MB of JSON:
/// `verify --output json --out FILE` does not hold it in memory).
pub fn write_json(report: &VerificationReport, out: impl std::io::Write) -> std::io::Result<()> {
    let doc = JsonReport {
        report,
        summary: summarize(report),
    };
    serde_json::to_writer_pretty(out, &doc).map_err(std::io::Error::other)
}

/// The report as pretty JSON (its serde form) with an added `summary` object ([`ReportSummary`]).
pub fn render_json(report: &VerificationReport) -> String {
    let doc = JsonReport {
        report,
        summary: summarize(report),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_else(|e| {
        // Unreachable with these types (string keys only), but a renderer must not panic.
        serde_json::json!({ "error": format!("cannot serialise the report: {e}") }).to_string()
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Names

/// Short display labels for `ids`, in the same order: the resource name when it is unique among `ids`, else
/// `resourceGroup/name`, else the full id (same group and name in different subscriptions).
fn short_labels(ids: &[&ResourceId]) -> Vec<String> {
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_group_name: HashMap<String, usize> = HashMap::new();
    for id in ids {
        *by_name.entry(id.name().to_ascii_lowercase()).or_default() += 1;
        *by_group_name
            .entry(group_name(id).to_ascii_lowercase())
            .or_default() += 1;
    }
    ids.iter()
        .map(|id| {
            if by_name.get(&id.name().to_ascii_lowercase()) == Some(&1) {
                id.name().to_owned()
            } else if by_group_name.get(&group_name(id).to_ascii_lowercase()) == Some(&1) {
                group_name(id)
            } else {
                id.as_str().to_owned()
            }
        })
        .collect()
}

fn group_name(id: &ResourceId) -> String {
    format!("{}/{}", id.resource_group().unwrap_or("-"), id.name())
}

/// Clusters and registries of the report, de-duplicated (ids compare case-insensitively), sorted by name, and
/// widened by any id that only appears in a result, so every result has a row and a column.
struct Axes<'a> {
    clusters: Vec<&'a ResourceId>,
    registries: Vec<&'a ResourceId>,
}

impl<'a> Axes<'a> {
    fn of(report: &'a VerificationReport) -> Self {
        fn collect<'a>(ids: impl Iterator<Item = &'a ResourceId>) -> Vec<&'a ResourceId> {
            let mut seen = HashSet::new();
            let mut out: Vec<&ResourceId> = ids.filter(|id| seen.insert(*id)).collect();
            // Operators look resources up by name; the id breaks ties deterministically.
            out.sort_by_cached_key(|id| (id.name().to_ascii_lowercase(), id.key()));
            out
        }
        Self {
            clusters: collect(
                report
                    .clusters
                    .iter()
                    .chain(report.pairs.iter().map(|p| &p.cluster_id)),
            ),
            registries: collect(
                report
                    .registries
                    .iter()
                    .chain(report.pairs.iter().map(|p| &p.registry_id))
                    .chain(report.registry_results.iter().map(|r| &r.registry_id)),
            ),
        }
    }
}

/// Position of each id on its axis, for ordering results the way the axes are ordered.
fn rank<'a>(axis: &[&'a ResourceId]) -> HashMap<&'a ResourceId, usize> {
    axis.iter().enumerate().map(|(i, id)| (*id, i)).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Table

/// Widest a name column gets; longer names are cut with `…` (the full id is in the JSON and HTML outputs).
const NAME_COLUMN_MAX: usize = 40;

/// Replaces control characters (ESC, CR, newlines, …) with their `\u{..}` escape so text from Azure cannot
/// drive the terminal or break the row layout.
pub(crate) fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn fit(text: &str, width: usize) -> String {
    let len = text.chars().count();
    if len <= width {
        let mut s = text.to_owned();
        s.extend(std::iter::repeat_n(' ', width - len));
        s
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Plain text for a terminal: one row per pair (cluster, registry, status, role, reason), sorted by cluster then
/// registry, then registries with an invalid selector, then a summary line (counts by status, coverage, duration,
/// requests).
pub fn render_table(report: &VerificationReport) -> String {
    let axes = Axes::of(report);
    let cluster_labels: HashMap<&ResourceId, String> = axes
        .clusters
        .iter()
        .copied()
        .zip(short_labels(&axes.clusters))
        .collect();
    let registry_labels: HashMap<&ResourceId, String> = axes
        .registries
        .iter()
        .copied()
        .zip(short_labels(&axes.registries))
        .collect();
    let label = |labels: &HashMap<&ResourceId, String>, id: &ResourceId| {
        terminal_safe(labels.get(id).map_or(id.as_str(), String::as_str))
    };

    let cluster_rank = rank(&axes.clusters);
    let registry_rank = rank(&axes.registries);
    let mut pairs: Vec<&PairResult> = report.pairs.iter().collect();
    pairs.sort_by_key(|p| {
        (
            cluster_rank.get(&p.cluster_id),
            registry_rank.get(&p.registry_id),
        )
    });
    let rows: Vec<[String; 5]> = pairs
        .iter()
        .map(|p| {
            [
                label(&cluster_labels, &p.cluster_id),
                label(&registry_labels, &p.registry_id),
                p.status.as_str().to_owned(),
                p.role
                    .map_or_else(|| "-".to_owned(), |r| r.display_name().to_owned()),
                p.reason
                    .as_deref()
                    .map_or_else(|| "-".to_owned(), terminal_safe),
            ]
        })
        .collect();

    let headers = ["CLUSTER", "REGISTRY", "STATUS", "ROLE", "REASON"];
    let mut widths = headers.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    widths[0] = widths[0].min(NAME_COLUMN_MAX);
    widths[1] = widths[1].min(NAME_COLUMN_MAX);

    let mut out = String::new();
    let mut push_row = |cells: [&str; 5]| {
        let line: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            // The last column is not padded: trailing blanks only wrap narrow terminals.
            .map(|(i, (c, w))| if i == 4 { (*c).to_owned() } else { fit(c, w) })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    };
    push_row(headers);
    for row in &rows {
        push_row([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    if rows.is_empty() {
        out.push_str("(no pairs in scope)\n");
    }

    for r in &report.registry_results {
        let _ = writeln!(
            out,
            "registry {}: {}: {}",
            label(&registry_labels, &r.registry_id),
            registry_status_str(r),
            terminal_safe(&r.reason)
        );
    }

    let summary = summarize(report);
    if !report.complete {
        let _ = writeln!(
            out,
            "PARTIAL: the run stopped early; {} pair(s) in scope were not verified",
            report.unverified_pairs
        );
    }
    let counts: Vec<String> = PairStatus::ALL
        .iter()
        .map(|s| format!("{} {}", s.as_str(), summary.counts.get(*s)))
        .collect();
    let _ = writeln!(
        out,
        "{} | pairs {} | invalid selectors {} | coverage {} | duration {:.1}s | requests {} | {}",
        counts.join(", "),
        summary.pairs,
        summary.invalid_selectors,
        percent(summary.coverage),
        report.duration_seconds,
        report.azure_requests,
        if summary.compliant {
            "all compliant"
        } else {
            "NOT compliant"
        }
    );
    out
}

fn registry_status_str(r: &RegistryResult) -> &'static str {
    match r.status {
        crate::core::model::RegistryStatus::InvalidSelector => "invalid_selector",
    }
}

// ---------------------------------------------------------------------------------------------------------------
// HTML

/// Escapes text for HTML element content and double- or single-quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Other control characters are invalid in HTML text; newlines and tabs stay (tooltips use them).
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// `data-status` / class suffix of a cell without a result: the registry's selector does not pick the cluster.
pub const NOT_SELECTED: &str = "not_selected";

/// The glyph drawn in a cell, so statuses stay distinguishable without colour (and in grey-scale prints).
fn glyph(status: Option<PairStatus>) -> &'static str {
    match status {
        Some(PairStatus::Compliant) => "✓",
        Some(PairStatus::Repaired) => "+",
        Some(PairStatus::Missing) => "✗",
        Some(PairStatus::Pending) => "…",
        Some(PairStatus::Failed) => "!",
        Some(PairStatus::Detached) => "−",
        None => "",
    }
}

fn describe(status: Option<PairStatus>) -> &'static str {
    match status {
        Some(PairStatus::Compliant) => "pull access in place",
        Some(PairStatus::Repaired) => "missing access created by this run",
        Some(PairStatus::Missing) => "access missing (audit mode or not repaired)",
        Some(PairStatus::Pending) => "cluster not ready yet",
        Some(PairStatus::Failed) => "verification or repair failed",
        Some(PairStatus::Detached) => "owned assignment removed",
        None => "the registry does not select this cluster",
    }
}

const STYLE: &str = r"
:root{--c-compliant:#2e7d32;--c-repaired:#1565c0;--c-missing:#ef6c00;--c-pending:#f9a825;--c-failed:#c62828;
--c-detached:#78909c;--c-none:#eceff1;--line:#cfd8dc}
*{box-sizing:border-box}
body{margin:0;font:13px/1.35 system-ui,-apple-system,'Segoe UI','DejaVu Sans',Arial,sans-serif;color:#1c2329;
background:#fff}
header{padding:12px 16px 8px;border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0 0 4px}
.meta{color:#546e7a;margin:0 0 8px}
.meta span+span:before{content:' · ';color:#b0bec5}
.verdict{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600;color:#fff}
.verdict.ok{background:var(--c-compliant)}.verdict.bad{background:var(--c-failed)}
.banner{margin:8px 0 0;padding:8px 12px;border-radius:4px;background:#fff3e0;border:1px solid #ffb74d;
color:#5d4037;font-weight:600}
.banner.invalid{background:#ffebee;border-color:#e57373;color:#b71c1c}
.banner ul{margin:4px 0 0;padding-left:20px;font-weight:400}
.summary{display:flex;flex-wrap:wrap;gap:6px 18px;margin:4px 0 0;padding:0;list-style:none}
.summary li{display:flex;align-items:center;gap:6px}
.summary b{font-size:15px}
.sw{display:inline-block;width:18px;height:16px;border-radius:2px;text-align:center;line-height:16px;
font-size:11px;font-weight:700;color:#fff}
main{padding:0 16px 16px}
table.matrix{border-collapse:separate;border-spacing:0;margin-top:8px}
.matrix th{background:#fff;font-weight:600;z-index:1}
.matrix thead th{position:sticky;top:0;z-index:2;vertical-align:bottom;padding:4px 0;border-bottom:1px solid
var(--line)}
.matrix thead th.corner{left:0;z-index:3;text-align:left;padding:4px 8px;color:#546e7a;font-weight:400}
.matrix th.reg>div{writing-mode:vertical-rl;transform:rotate(180deg);max-height:11em;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap;margin:0 auto;font-size:12px}
.matrix th.reg.invalid{background:#ffebee;color:#b71c1c}
.matrix th.reg .flag{display:block;font-size:13px;line-height:14px}
.matrix th.cl{position:sticky;left:0;text-align:right;padding:0 8px;white-space:nowrap;max-width:22em;
overflow:hidden;text-overflow:ellipsis;font-size:12px;border-right:1px solid var(--line)}
.matrix tbody tr:hover th.cl{background:#e3f2fd}
td.cell{width:24px;min-width:24px;height:18px;padding:0;text-align:center;font-size:11px;font-weight:700;
color:#fff;border-right:1px solid #fff;border-bottom:1px solid #fff;cursor:default}
td.cell:hover{outline:2px solid #263238;outline-offset:-2px}
.s-compliant{background:var(--c-compliant)}.s-repaired{background:var(--c-repaired)}
.s-missing{background:var(--c-missing)}.s-pending{background:var(--c-pending);color:#3e2723}
.s-failed{background:var(--c-failed)}.s-detached{background:var(--c-detached)}
.s-not_selected{background:var(--c-none);color:#90a4ae}
td.cell.s-not_selected.inv{background:repeating-linear-gradient(45deg,#ffebee 0 4px,#fff 4px 8px)}
section.issues{margin-top:16px}
section.issues summary{font-weight:600;cursor:pointer}
table.list{border-collapse:collapse;margin-top:6px;font-size:12px}
table.list th,table.list td{border-bottom:1px solid var(--line);padding:2px 8px;text-align:left;vertical-align:top}
table.list td.reason{white-space:pre-wrap;max-width:70em}
footer{padding:8px 16px;color:#90a4ae;font-size:11px}
";

/// One self-contained HTML page (inline CSS, no script, no external asset): summary counts, a legend, banners for
/// partial coverage and invalid selectors, the clusters × registries matrix (every cell carries `data-cluster`,
/// `data-registry`, `data-status` and a `title` with the reason), then the list of pairs that need attention.
/// The HTML report: one self-contained page (head and run facts, legend with counts, banners, the
/// cluster × registry matrix, the pairs that need attention).
pub fn render_html(report: &VerificationReport) -> String {
    let axes = Axes::of(report);
    let summary = summarize(report);
    let cluster_labels = short_labels(&axes.clusters);
    let registry_labels = short_labels(&axes.registries);
    let labels = Labels {
        clusters: axes
            .clusters
            .iter()
            .copied()
            .zip(cluster_labels.iter().map(String::as_str))
            .collect(),
        registries: axes
            .registries
            .iter()
            .copied()
            .zip(registry_labels.iter().map(String::as_str))
            .collect(),
    };
    let invalid: HashMap<&ResourceId, &RegistryResult> = report
        .registry_results
        .iter()
        .map(|r| (&r.registry_id, r))
        .collect();
    // A duplicated result keeps the later one: the engine appends a pair's final state last.
    let results: HashMap<(&ResourceId, &ResourceId), &PairResult> = report
        .pairs
        .iter()
        .map(|p| ((&p.cluster_id, &p.registry_id), p))
        .collect();
    let cell_count = axes.clusters.len() * axes.registries.len();

    let mut h = String::with_capacity(4096 + cell_count * 420);
    html_head(&mut h, report, &summary, &axes);
    html_legend(&mut h, &summary, cell_count.saturating_sub(results.len()));
    html_banners(&mut h, report, &summary, &labels);
    h.push_str("</header>\n<main>\n");
    html_matrix(
        &mut h,
        &axes,
        (&cluster_labels, &registry_labels),
        &invalid,
        &results,
    );
    html_attention(&mut h, report, &axes, &labels);
    h.push_str(
        "</main>\n<footer>Generated by acr-autoattach verify. Hover a cell for its status and reason, a \
         header for the full resource id.</footer>\n</body>\n</html>\n",
    );
    h
}

/// Short labels by id, for the lists outside the matrix.
struct Labels<'a> {
    clusters: HashMap<&'a ResourceId, &'a str>,
    registries: HashMap<&'a ResourceId, &'a str>,
}

impl Labels<'_> {
    fn cluster(&self, id: &ResourceId) -> &str {
        self.clusters.get(id).copied().unwrap_or_default()
    }
    fn registry(&self, id: &ResourceId) -> &str {
        self.registries.get(id).copied().unwrap_or_default()
    }
}

/// The document head, the verdict and the run facts.
fn html_head(
    h: &mut String,
    report: &VerificationReport,
    summary: &ReportSummary,
    axes: &Axes<'_>,
) {
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>acr-autoattach verification · {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n",
        escape_html(&report.started_at)
    );

    // Title and run facts.
    let _ = writeln!(
        h,
        "<h1>ACR attachment verification <span class=\"verdict {}\" data-compliant=\"{}\">{}</span></h1>",
        if summary.compliant { "ok" } else { "bad" },
        summary.compliant,
        if summary.compliant {
            "all compliant"
        } else {
            "not compliant"
        }
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>started {}</span><span>mode {}</span><span>{} clusters × {} registries</span>\
         <span>duration {:.1} s</span><span>{} Azure requests</span><span>inventory: {}</span></p>",
        escape_html(&report.started_at),
        match report.mode {
            crate::core::model::Mode::Enforce => "enforce",
            crate::core::model::Mode::Audit => "audit",
        },
        axes.clusters.len(),
        axes.registries.len(),
        report.duration_seconds,
        report.azure_requests,
        escape_html(&report.inventory.to_string()),
    );
}

/// Summary counts, which double as the legend.
fn html_legend(h: &mut String, summary: &ReportSummary, not_selected: usize) {
    // Summary counts, which double as the legend.
    h.push_str("<ul class=\"summary legend\" aria-label=\"legend and counts\">\n");
    for status in PairStatus::ALL {
        let _ = writeln!(
            h,
            "<li data-status=\"{s}\" title=\"{d}\"><span class=\"sw s-{s}\">{g}</span>{s} <b data-count=\"{s}\">{n}</b></li>",
            s = status.as_str(),
            d = describe(Some(status)),
            g = glyph(Some(status)),
            n = summary.counts.get(status),
        );
    }
    let _ = writeln!(
        h,
        "<li data-status=\"{NOT_SELECTED}\" title=\"{}\"><span class=\"sw s-{NOT_SELECTED}\"></span>not selected \
         <b data-count=\"{NOT_SELECTED}\">{}</b></li>",
        describe(None),
        not_selected,
    );
    let _ = writeln!(
        h,
        "<li>pairs <b data-count=\"pairs\">{}</b></li><li>coverage <b data-count=\"coverage\">{}</b></li>\
         <li>invalid selectors <b data-count=\"invalid_selector\">{}</b></li>\n</ul>",
        summary.pairs,
        percent(summary.coverage),
        summary.invalid_selectors,
    );
}

/// The partial-coverage and invalid-selector banners.
fn html_banners(
    h: &mut String,
    report: &VerificationReport,
    summary: &ReportSummary,
    labels: &Labels<'_>,
) {
    if !report.complete {
        let _ = writeln!(
            h,
            "<div class=\"banner partial\" role=\"alert\">Partial coverage: the run stopped before verifying \
             every pair ({} pair(s) not verified, coverage {}). Cells of pairs it did not reach show as not \
             selected.</div>",
            report.unverified_pairs,
            percent(summary.coverage),
        );
    }
    if !report.registry_results.is_empty() {
        h.push_str(
            "<div class=\"banner invalid\" role=\"alert\">Registries with an invalid selector (nothing is \
             written for them):<ul>\n",
        );
        for r in &report.registry_results {
            let _ = writeln!(
                h,
                "<li data-registry=\"{}\"><b>{}</b>: {}</li>",
                escape_html(r.registry_id.as_str()),
                escape_html(labels.registry(&r.registry_id)),
                escape_html(&r.reason),
            );
        }
        h.push_str("</ul></div>\n");
    }
}

/// The cluster × registry matrix.
fn html_matrix(
    h: &mut String,
    axes: &Axes<'_>,
    (cluster_labels, registry_labels): (&[String], &[String]),
    invalid: &HashMap<&ResourceId, &RegistryResult>,
    results: &HashMap<(&ResourceId, &ResourceId), &PairResult>,
) {
    // The matrix.
    let _ = write!(
        h,
        "<table class=\"matrix\" data-clusters=\"{}\" data-registries=\"{}\">\n<thead><tr>\
         <th class=\"corner\">cluster \\ registry</th>",
        axes.clusters.len(),
        axes.registries.len()
    );
    for (reg, label) in axes.registries.iter().zip(registry_labels) {
        let (class, flag, note) = match invalid.get(reg) {
            Some(r) => (
                "reg invalid",
                "<span class=\"flag\">⚠</span>",
                format!("\ninvalid selector: {}", r.reason),
            ),
            None => ("reg", "", String::new()),
        };
        let _ = write!(
            h,
            "<th class=\"{class}\" scope=\"col\" data-registry=\"{id}\" title=\"{title}\"><div>{label}</div>{flag}</th>",
            id = escape_html(reg.as_str()),
            title = escape_html(&format!("{reg}{note}")),
            label = escape_html(label),
        );
    }
    h.push_str("</tr></thead>\n<tbody>\n");
    for (cluster, cluster_label) in axes.clusters.iter().zip(cluster_labels) {
        let cluster_id = escape_html(cluster.as_str());
        let _ = write!(
            h,
            "<tr><th class=\"cl\" scope=\"row\" data-cluster=\"{cluster_id}\" title=\"{cluster_id}\">{}</th>",
            escape_html(cluster_label)
        );
        for (reg, reg_label) in axes.registries.iter().zip(registry_labels) {
            let result = results.get(&(*cluster, *reg)).copied();
            let status = result.map(|p| p.status);
            let status_str = status.map_or(NOT_SELECTED, PairStatus::as_str);
            let title = cell_title(
                (cluster_label, reg_label),
                result,
                invalid.get(reg).copied(),
            );
            let inv = if status.is_none() && invalid.contains_key(reg) {
                " inv"
            } else {
                ""
            };
            let _ = write!(
                h,
                "<td class=\"cell s-{status_str}{inv}\" data-cluster=\"{cluster_id}\" data-registry=\"{}\" \
                 data-status=\"{status_str}\" title=\"{}\">{}</td>",
                escape_html(reg.as_str()),
                escape_html(&title),
                glyph(status),
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody>\n</table>\n");
}

/// A cell's hover text: the pair, its status and role, and why.
fn cell_title(
    (cluster_label, reg_label): (&str, &str),
    result: Option<&PairResult>,
    invalid: Option<&RegistryResult>,
) -> String {
    let status = result.map(|p| p.status);
    let status_str = status.map_or(NOT_SELECTED, PairStatus::as_str);
    let mut title = format!("{cluster_label} × {reg_label}\n{status_str}");
    match result {
        Some(p) => {
            if let Some(role) = p.role {
                let _ = write!(title, " ({role})");
            }
            let _ = write!(
                title,
                "\n{}",
                p.reason.as_deref().unwrap_or(describe(status))
            );
        }
        None => match invalid {
            Some(r) => {
                let _ = write!(title, "\ninvalid selector, nothing written: {}", r.reason);
            }
            None => {
                let _ = write!(title, "\n{}", describe(None));
            }
        },
    }
    title
}

/// Pairs that need attention, with the reason readable without hovering.
fn html_attention(
    h: &mut String,
    report: &VerificationReport,
    axes: &Axes<'_>,
    labels: &Labels<'_>,
) {
    // Pairs that need attention, with the reason readable without hovering.
    let mut attention: Vec<&PairResult> = report
        .pairs
        .iter()
        .filter(|p| !p.status.is_healthy())
        .collect();
    let cluster_rank = rank(&axes.clusters);
    let registry_rank = rank(&axes.registries);
    attention.sort_by_key(|p| {
        (
            p.status,
            cluster_rank.get(&p.cluster_id),
            registry_rank.get(&p.registry_id),
        )
    });
    if !attention.is_empty() {
        let _ = writeln!(
            h,
            "<section class=\"issues\"><details open><summary>{} pair(s) need attention</summary>\n\
             <table class=\"list\"><thead><tr><th>status</th><th>cluster</th><th>registry</th><th>role</th>\
             <th>reason</th></tr></thead><tbody>",
            attention.len()
        );
        for p in attention {
            let _ = writeln!(
                h,
                "<tr data-status=\"{s}\"><td><span class=\"sw s-{s}\">{g}</span> {s}</td>\
                 <td title=\"{cid}\">{cl}</td><td title=\"{rid}\">{rl}</td><td>{role}</td><td class=\"reason\">{reason}</td></tr>",
                s = p.status.as_str(),
                g = glyph(Some(p.status)),
                cid = escape_html(p.cluster_id.as_str()),
                cl = escape_html(labels.cluster(&p.cluster_id)),
                rid = escape_html(p.registry_id.as_str()),
                rl = escape_html(labels.registry(&p.registry_id)),
                role = p.role.map_or("-", |r| r.display_name()),
                reason = escape_html(p.reason.as_deref().unwrap_or("-")),
            );
        }
        h.push_str("</tbody></table></details></section>\n");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::model::{Mode, PullRole, RegistryStatus};

    fn cluster(rg: &str, name: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/s1/resourceGroups/{rg}/providers/Microsoft.ContainerService/managedClusters/{name}"
        ))
        .unwrap()
    }

    fn registry(name: &str) -> ResourceId {
        ResourceId::parse(&format!(
            "/subscriptions/s1/resourceGroups/acr/providers/Microsoft.ContainerRegistry/registries/{name}"
        ))
        .unwrap()
    }

    fn pair(
        c: &ResourceId,
        r: &ResourceId,
        status: PairStatus,
        reason: Option<&str>,
    ) -> PairResult {
        PairResult {
            cluster_id: c.clone(),
            registry_id: r.clone(),
            principal_id: Some("p".into()),
            role: Some(PullRole::AcrPull),
            status,
            reason: reason.map(str::to_owned),
            assignment_id: None,
            latency_seconds: None,
            failure: None,
        }
    }

    fn report(pairs: Vec<PairResult>) -> VerificationReport {
        let mut clusters: Vec<ResourceId> = pairs.iter().map(|p| p.cluster_id.clone()).collect();
        clusters.dedup();
        let mut registries: Vec<ResourceId> = pairs.iter().map(|p| p.registry_id.clone()).collect();
        registries.sort();
        registries.dedup();
        VerificationReport {
            started_at: "2026-11-30T05:00:00Z".into(),
            duration_seconds: 12.34,
            mode: Mode::Enforce,
            clusters,
            registries,
            pairs,
            registry_results: vec![],
            complete: true,
            unverified_pairs: 0,
            azure_requests: 42,
            inventory: crate::core::model::InventoryOutcome::Taken(
                crate::core::model::InventorySource::ResourceGraph,
            ),
            capacity: Vec::new(),
        }
    }

    fn mixed() -> VerificationReport {
        let (a, b) = (cluster("rg", "aks-a"), cluster("rg", "aks-b"));
        let (x, y) = (registry("acrx"), registry("acry"));
        report(vec![
            pair(&a, &x, PairStatus::Compliant, None),
            pair(&a, &y, PairStatus::Repaired, None),
            pair(&b, &x, PairStatus::Failed, Some("403 AuthorizationFailed")),
            pair(&b, &y, PairStatus::Compliant, None),
        ])
    }

    #[test]
    fn summary_counts_every_status_and_coverage() {
        let mut r = mixed();
        let s = summarize(&r);
        assert_eq!(
            s.counts,
            StatusCounts {
                compliant: 2,
                repaired: 1,
                failed: 1,
                ..StatusCounts::default()
            }
        );
        assert_eq!((s.pairs, s.healthy), (4, 3));
        assert!(!s.compliant);
        assert!((s.coverage - 1.0).abs() < f64::EPSILON);

        r.pairs.remove(2);
        r.complete = false;
        r.unverified_pairs = 5;
        let s = summarize(&r);
        assert!((s.coverage - 3.0 / 8.0).abs() < 1e-12);
        assert!(!s.compliant, "a partial run is never compliant");
        assert_eq!(percent(s.coverage), "37.5%");
        assert_eq!(percent(999.0 / 1000.5), "99.8%");
        assert_eq!(
            percent(0.99999),
            "99.9%",
            "partial coverage never rounds up to 100%"
        );
    }

    #[test]
    fn empty_scope_has_full_coverage() {
        let r = report(vec![]);
        let s = summarize(&r);
        assert_eq!(s.pairs, 0);
        assert!((s.coverage - 1.0).abs() < f64::EPSILON);
        assert!(s.compliant);
        assert!(render_table(&r).contains("(no pairs in scope)"));
        assert!(render_html(&r).contains("<tbody>\n</tbody>"));
    }

    #[test]
    fn json_is_the_report_plus_a_summary() {
        let r = mixed();
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        let back: VerificationReport = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, r, "the report's own fields round-trip");
        let s: ReportSummary = serde_json::from_value(v["summary"].clone()).unwrap();
        assert_eq!(s, summarize(&r));
        assert_eq!(v["summary"]["counts"]["compliant"], 2);
        assert_eq!(v["summary"]["counts"]["detached"], 0);
        assert_eq!(v["summary"]["pairs"], 4);
        assert_eq!(v["summary"]["compliant"], false);
        assert_eq!(v["summary"]["coverage"], 1.0);
        assert_eq!(v["pairs"][2]["status"], "failed");
    }

    #[test]
    fn table_has_one_row_per_pair_and_a_summary_line() {
        let mut r = mixed();
        r.registry_results.push(RegistryResult {
            registry_id: registry("acrz"),
            status: RegistryStatus::InvalidSelector,
            reason: "unknown operator".into(),
        });
        r.complete = false;
        r.unverified_pairs = 4;
        let t = render_table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("CLUSTER"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["aks-a", "acrx", "compliant", "AcrPull", "-"]
        );
        assert_eq!(
            lines[3],
            format!(
                "{:<7}  {:<8}  {:<9}  {:<7}  {}",
                "aks-b", "acrx", "failed", "AcrPull", "403 AuthorizationFailed"
            )
        );
        assert_eq!(
            lines[5],
            "registry acrz: invalid_selector: unknown operator"
        );
        assert!(lines[6].starts_with("PARTIAL") && lines[6].contains("4 pair(s)"));
        assert_eq!(
            lines[7],
            "compliant 2, repaired 1, missing 0, pending 0, failed 1, detached 0 | pairs 4 | invalid selectors 1 \
             | coverage 50.0% | duration 12.3s | requests 42 | NOT compliant"
        );
        assert_eq!(lines.len(), 8);
        // Columns line up: the status column starts at the same offset on every row.
        let at = lines[0].find("STATUS").unwrap();
        for l in &lines[1..5] {
            assert!(l[at..].starts_with(|c: char| c.is_ascii_lowercase()), "{l}");
        }
    }

    #[test]
    fn table_neutralises_terminal_control_sequences() {
        let a = cluster("rg", "aks-a");
        let x = registry("acrx");
        let r = report(vec![pair(
            &a,
            &x,
            PairStatus::Failed,
            Some("boom\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nnext"),
        )]);
        let t = render_table(&r);
        assert!(!t.contains('\u{1b}') && !t.contains('\r') && !t.contains('\u{7}'));
        assert!(t.contains("boom\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\r\\nnext"));
        assert_eq!(
            t.lines().count(),
            3,
            "a newline in a reason cannot add a row"
        );
    }

    #[test]
    fn same_names_are_disambiguated() {
        let a1 = cluster("rg1", "aks");
        let a2 = cluster("rg2", "aks");
        let other = ResourceId::parse(
            "/subscriptions/s2/resourceGroups/rg1/providers/Microsoft.ContainerService/managedClusters/aks",
        )
        .unwrap();
        let solo = cluster("rg1", "solo");
        let labels = short_labels(&[&a1, &a2, &other, &solo]);
        assert_eq!(labels[1], "rg2/aks");
        assert_eq!(labels[0], a1.as_str());
        assert_eq!(labels[2], other.as_str());
        assert_eq!(labels[3], "solo");
    }

    #[test]
    fn long_names_are_cut_in_the_table() {
        let long = "a".repeat(60);
        let a = cluster("rg", &long);
        let r = report(vec![pair(
            &a,
            &registry("acrx"),
            PairStatus::Compliant,
            None,
        )]);
        let row = render_table(&r).lines().nth(1).unwrap().to_owned();
        assert!(row.starts_with(&format!("{}…  acrx", "a".repeat(NAME_COLUMN_MAX - 1))));
    }

    #[test]
    fn html_escapes_everything_from_azure() {
        let evil = cluster("rg", "x\"onmouseover=alert(1)");
        let x = registry("acrx");
        let mut r = report(vec![pair(
            &evil,
            &x,
            PairStatus::Failed,
            Some("<script>alert('r')</script> & <img src=x onerror=alert(2)>"),
        )]);
        r.registry_results.push(RegistryResult {
            registry_id: registry("acr<b>z"),
            status: RegistryStatus::InvalidSelector,
            reason: "<script>alert(3)</script>".into(),
        });
        r.inventory = crate::core::model::InventoryOutcome::Failed("<i>arm</i>".into());
        r.started_at = "</title><script>alert(4)</script>".into();
        let h = render_html(&r);
        assert!(!h.contains("<script"), "no script element can be injected");
        assert!(!h.contains("<img") && !h.contains("<b>z") && !h.contains("<i>arm"));
        assert!(
            !h.contains("\"onmouseover"),
            "an attribute value cannot be closed early"
        );
        assert!(h.contains("&lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt; &amp; &lt;img src=x"));
        assert!(h.contains("x&quot;onmouseover=alert(1)"));
        assert!(h.contains("&lt;script&gt;alert(3)&lt;/script&gt;"));
    }

    #[test]
    fn html_cells_cover_the_full_matrix() {
        let mut r = mixed();
        let c = cluster("rg", "aks-c");
        r.clusters.push(c.clone());
        let z = registry("acrz");
        r.registry_results.push(RegistryResult {
            registry_id: z.clone(),
            status: RegistryStatus::InvalidSelector,
            reason: "bad <op>".into(),
        });
        r.complete = false;
        r.unverified_pairs = 2;
        let h = render_html(&r);
        // 3 clusters × 3 registries: the invalid-selector registry gets a column even though only
        // registry_results names it.
        assert_eq!(h.matches("<td class=\"cell ").count(), 9);
        assert_eq!(h.matches("<td class=\"cell s-not_selected").count(), 5);
        assert_eq!(h.matches("class=\"cell s-not_selected inv\"").count(), 3);
        assert!(h.contains("class=\"reg invalid\""));
        assert!(
            h.contains("acrz\nnot_selected\ninvalid selector, nothing written: bad &lt;op&gt;\"")
        );
        assert!(h.contains("class=\"banner partial\""));
        assert!(h.contains("<b data-count=\"failed\">1</b>"));
        assert!(h.contains("<b data-count=\"not_selected\">5</b>"));
        assert!(h.contains("<b data-count=\"coverage\">66.6%</b>"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no external asset"
        );
        let complete = render_html(&mixed());
        assert!(!complete.contains("banner partial") && !complete.contains("banner invalid"));
    }
}
