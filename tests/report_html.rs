//! The HTML verification report rendered by a real browser: a 200 × 20 report is opened in headless Chromium,
//! which must produce a screenshot and a DOM with exactly one cell per pair carrying the right status, and in
//! which text from Azure (names, reasons) stays text.
//!
//! Needs Debian's `chromium` (installed by `.ci/run`). Without it the test fails under `CI=true` and is skipped
//! with a notice otherwise. `REPORT_HTML_ARTIFACTS=<dir>` keeps the page and the screenshot there.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use acr_autoattach::cli::report::render_html;
use acr_autoattach::core::model::{
    Mode, PairResult, PairStatus, PullRole, RegistryResult, RegistryStatus, ResourceId,
    VerificationReport,
};

const CLUSTERS: usize = 200;
const REGISTRIES: usize = 20;
/// The registry whose selector is invalid: it selects nothing.
const INVALID_REGISTRY: usize = 7;
const CHROMIUM_TIMEOUT: Duration = Duration::from_mins(3);
/// Injected into names and reasons; if the page ever executed it the title would change.
const EVIL_REASON: &str =
    "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\"> & more";

/// The status of pair (i, j), or `None` when the registry does not select the cluster: deterministic and
/// mostly compliant, like a real estate, with every status present.
fn status_of(i: usize, j: usize) -> Option<PairStatus> {
    if j == INVALID_REGISTRY {
        return None;
    }
    match (i * 31 + j * 17 + (i * j) % 11) % 20 {
        0..=9 => Some(PairStatus::Compliant),
        10 | 11 => Some(PairStatus::Repaired),
        12 => Some(PairStatus::Missing),
        13 => Some(PairStatus::Pending),
        14 => Some(PairStatus::Failed),
        15 => Some(PairStatus::Detached),
        _ => None,
    }
}

fn cluster_id(i: usize) -> ResourceId {
    let envs = ["prod", "staging", "dev", "test"];
    let regions = ["weu", "neu", "eus2", "sea"];
    // Cluster 3 carries markup in its name (ARM names cannot hold `/`, but quotes and angle brackets reach us
    // through tags, reasons and other providers' ids).
    let name = if i == 3 {
        "aks-\"q\"<img src=x onerror=alert(1)>".to_owned()
    } else {
        format!(
            "aks-{}-{}-{i:03}",
            envs[i % envs.len()],
            regions[(i / 4) % regions.len()]
        )
    };
    ResourceId::parse(&format!(
        "/subscriptions/0000000{}-aaaa-bbbb-cccc-000000000000/resourceGroups/rg-platform-{}/providers/Microsoft.ContainerService/managedClusters/{name}",
        i % 5,
        i % 13
    ))
    .unwrap()
}

fn registry_id(j: usize) -> ResourceId {
    let teams = ["payments", "search", "identity", "data", "web"];
    ResourceId::parse(&format!(
        "/subscriptions/00000009-aaaa-bbbb-cccc-000000000000/resourceGroups/rg-acr/providers/Microsoft.ContainerRegistry/registries/acr{}{j:02}",
        teams[j % teams.len()]
    ))
    .unwrap()
}

fn fixture() -> VerificationReport {
    let clusters: Vec<ResourceId> = (0..CLUSTERS).map(cluster_id).collect();
    let registries: Vec<ResourceId> = (0..REGISTRIES).map(registry_id).collect();
    let mut pairs = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        for (j, r) in registries.iter().enumerate() {
            let Some(status) = status_of(i, j) else {
                continue;
            };
            let reason = match status {
                PairStatus::Failed if i % 2 == 0 => Some(EVIL_REASON.to_owned()),
                PairStatus::Failed => {
                    Some("PUT roleAssignments: 403 AuthorizationFailed".to_owned())
                }
                PairStatus::Missing => {
                    Some("audit mode: no AcrPull at registry, group or subscription".to_owned())
                }
                PairStatus::Pending => Some("provisioningState Updating".to_owned()),
                PairStatus::Detached => Some("registry no longer selects the cluster".to_owned()),
                _ => None,
            };
            pairs.push(PairResult {
                cluster_id: c.clone(),
                registry_id: r.clone(),
                principal_id: Some(format!("{i:08x}-0000-0000-0000-{j:012x}").into()),
                role: Some(if j % 4 == 3 {
                    PullRole::RepositoryReader
                } else {
                    PullRole::AcrPull
                }),
                status,
                reason,
                assignment_id: None,
                latency_seconds: None,
                failure: None,
            });
        }
    }
    VerificationReport {
        started_at: "2026-11-30T05:00:00Z".into(),
        duration_seconds: 84.2,
        mode: Mode::Enforce,
        clusters,
        registries: registries.clone(),
        pairs,
        registry_results: vec![RegistryResult {
            registry_id: registries[INVALID_REGISTRY].clone(),
            status: RegistryStatus::InvalidSelector,
            reason: format!("selector `env in (prod` does not parse {EVIL_REASON}"),
        }],
        complete: false,
        unverified_pairs: 37,
        azure_requests: 173,
        inventory: acr_autoattach::core::model::InventoryOutcome::Taken(
            acr_autoattach::core::model::InventorySource::ResourceGraph,
        ),
        capacity: Vec::new(),
    }
}

fn find_chromium() -> Option<PathBuf> {
    let fixed = Path::new("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
}

/// Runs Chromium on `page` with the extra `args`, stdout to `stdout`; kills its whole process group when it
/// outlives the timeout (renderer and GPU helpers would otherwise linger).
fn run_chromium(
    bin: &Path,
    profile: &Path,
    args: &[String],
    page: &Path,
    stdout: &Path,
) -> ExitStatus {
    use std::os::unix::process::CommandExt;
    let stderr_path = stdout.with_extension("stderr");
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Containers often have a tiny /dev/shm; without this the renderer can crash on a big page.
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(stdout).unwrap())
        .stderr(File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            if !status.success() {
                eprintln!(
                    "chromium stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            return status;
        }
        if started.elapsed() > CHROMIUM_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The attributes of every start tag named `tag` in serialised HTML (as Chromium's `--dump-dom` writes it:
/// double-quoted values, entities for `&` and `"`).
fn start_tags(html: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let open = format!("<{tag}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        rest = &rest[at + open.len()..];
        if !rest.starts_with([' ', '>', '\n', '\t']) {
            continue; // `<tdx`, `<thead` for `<th`, …
        }
        let mut attrs = HashMap::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('>') {
                rest = r;
                break;
            }
            let name_end = rest
                .find(|c: char| c == '=' || c == '>' || c.is_whitespace())
                .expect("unterminated tag");
            let name = rest[..name_end].to_ascii_lowercase();
            rest = &rest[name_end..];
            let value = if let Some(r) = rest.strip_prefix("=\"") {
                let end = r.find('"').expect("unterminated attribute");
                rest = &r[end + 1..];
                unescape(&r[..end])
            } else {
                String::new()
            };
            attrs.insert(name, value);
        }
        out.push(attrs);
    }
    out
}

/// The serialised DOM with every quoted attribute value removed, so that only real markup is left to search
/// (Chromium may leave `<` unescaped inside attribute values).
fn without_attribute_values(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let (mut in_tag, mut in_value) = (false, false);
    for c in html.chars() {
        match (in_tag, in_value, c) {
            (true, true, '"') => in_value = false,
            (true, true, _) => {}
            (true, false, '"') => in_value = true,
            (true, false, '>') => {
                in_tag = false;
                out.push(c);
            }
            (false, _, '<') => {
                in_tag = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn chromium_or_skip() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium is required under CI=true (install the Debian package `chromium`; .ci/run does)"
        );
        eprintln!(
            "NOTICE: chromium not found (/usr/bin/chromium or PATH): skipping the HTML report browser test"
        );
    }
    found
}

#[test]
fn html_report_renders_in_chromium_with_one_cell_per_pair() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let report = fixture();
    let html = render_html(&report);
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();

    // (1) Screenshot: a real 1600×1200 PNG with content (a blank page compresses to a few KB).
    let png = dir.path().join("report.png");
    let status = run_chromium(
        &chromium,
        &dir.path().join("profile-shot"),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1600,1200".to_owned(),
        ],
        &page,
        &dir.path().join("shot.out"),
    );
    assert!(status.success(), "chromium --screenshot failed: {status}");
    let bytes = std::fs::read(&png).expect("no screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (1600, 1200));
    assert!(
        bytes.len() > 30_000,
        "screenshot looks blank: {} bytes",
        bytes.len()
    );

    if let Some(keep) = std::env::var_os("REPORT_HTML_ARTIFACTS") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&page, keep.join("report.html")).unwrap();
        std::fs::copy(&png, keep.join("report.png")).unwrap();
    }

    // (2) The DOM as the browser built it: one cell per (cluster, registry) with the input's status.
    let dom_path = dir.path().join("dom.html");
    let status = run_chromium(
        &chromium,
        &dir.path().join("profile-dom"),
        &["--dump-dom".to_owned()],
        &page,
        &dom_path,
    );
    assert!(status.success(), "chromium --dump-dom failed: {status}");
    let dom = std::fs::read_to_string(&dom_path).unwrap();

    let expected: HashMap<(String, String), &str> = (0..CLUSTERS)
        .flat_map(|i| (0..REGISTRIES).map(move |j| (i, j)))
        .map(|(i, j)| {
            (
                (cluster_id(i).key(), registry_id(j).key()),
                status_of(i, j).map_or("not_selected", PairStatus::as_str),
            )
        })
        .collect();
    assert_eq!(expected.len(), CLUSTERS * REGISTRIES);

    let cells: Vec<HashMap<String, String>> = start_tags(&dom, "td")
        .into_iter()
        .filter(|a| {
            a.get("class")
                .is_some_and(|c| c.split(' ').any(|k| k == "cell"))
        })
        .collect();
    assert_eq!(cells.len(), CLUSTERS * REGISTRIES, "one cell per pair");
    let mut seen: HashMap<(String, String), &str> = HashMap::new();
    for cell in &cells {
        let key = (
            cell["data-cluster"].to_ascii_lowercase(),
            cell["data-registry"].to_ascii_lowercase(),
        );
        let want = expected
            .get(&key)
            .unwrap_or_else(|| panic!("cell for an unknown pair {key:?}"));
        assert_eq!(cell["data-status"], *want, "status of {key:?}");
        assert!(
            cell["class"].split(' ').any(|k| k == format!("s-{want}")),
            "class of {key:?}: {}",
            cell["class"]
        );
        assert!(!cell["title"].is_empty(), "every cell has a hover text");
        assert!(
            seen.insert(key.clone(), want).is_none(),
            "duplicate cell {key:?}"
        );
    }

    // Markup from Azure stayed text: no element was created from it, nothing ran, and the text survives intact
    // in the hover of the cells whose reason carried it.
    let markup = without_attribute_values(&dom);
    assert!(!markup.contains("<script"), "a script element was injected");
    assert!(!markup.contains("<img"), "an img element was injected");
    assert!(dom.contains("<title>acr-autoattach verification"));
    assert!(!dom.contains("pwned</title>"));
    let evil_cells = cells
        .iter()
        .filter(|c| c["title"].contains(EVIL_REASON))
        .count();
    let evil_expected = (0..CLUSTERS)
        .step_by(2)
        .flat_map(|i| (0..REGISTRIES).map(move |j| (i, j)))
        .filter(|&(i, j)| status_of(i, j) == Some(PairStatus::Failed))
        .count();
    assert!(evil_expected > 0);
    // Plus every cell of the invalid registry's column, whose hover carries the selector error.
    assert_eq!(evil_cells, evil_expected + CLUSTERS);
    let rows = start_tags(&dom, "th");
    assert!(rows.iter().any(|a| {
        a.get("data-cluster")
            .is_some_and(|c| c.ends_with("aks-\"q\"<img src=x onerror=alert(1)>"))
    }));

    // The invalid selector is flagged on its column and the partial run is announced.
    let invalid_headers: Vec<_> = rows
        .iter()
        .filter(|a| a.get("class").is_some_and(|c| c.contains("invalid")))
        .collect();
    assert_eq!(invalid_headers.len(), 1);
    assert_eq!(
        invalid_headers[0]["data-registry"].to_ascii_lowercase(),
        registry_id(INVALID_REGISTRY).key()
    );
    assert!(dom.contains("class=\"banner partial\""));

    // (3) Readable when scrolled: in a small window scrolled right and down, the registry headers stay at the
    // top and the cluster names at the left. A probe script (test copy only; the report has none) measures.
    let probe_page = dir.path().join("probe.html");
    std::fs::write(&probe_page, html.replace("</body>", STICKY_PROBE)).unwrap();
    let probe_dom = dir.path().join("probe-dom.html");
    let status = run_chromium(
        &chromium,
        &dir.path().join("profile-probe"),
        &[
            "--window-size=500,800".to_owned(),
            "--virtual-time-budget=5000".to_owned(),
            "--dump-dom".to_owned(),
        ],
        &probe_page,
        &probe_dom,
    );
    assert!(status.success(), "chromium probe failed: {status}");
    let probed = std::fs::read_to_string(&probe_dom).unwrap();
    let body = start_tags(&probed, "body");
    let probe = body
        .first()
        .and_then(|a| a.get("data-probe"))
        .expect("the probe did not run");
    let m: HashMap<&str, f64> = probe
        .split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    assert!(
        m["scrollY"] > 1000.0 && m["scrollX"] > 50.0,
        "did not scroll: {probe}"
    );
    assert!(
        m["headerTop"].abs() < 1.0,
        "registry header not sticky: {probe}"
    );
    assert!(
        m["rowHeaderLeft"].abs() < 1.0,
        "cluster column not sticky: {probe}"
    );
}

/// Scrolls the page right and down, then records where a registry header and a cluster row header sit.
const STICKY_PROBE: &str = "<script>addEventListener('load', () => { scrollTo(200, 2500); \
    requestAnimationFrame(() => { \
    const head = document.querySelector('thead th.reg').getBoundingClientRect(); \
    const row = document.querySelectorAll('tbody th.cl')[150].getBoundingClientRect(); \
    document.body.setAttribute('data-probe', `scrollX=${scrollX} scrollY=${scrollY} headerTop=${head.top} rowHeaderLeft=${row.left}`); \
    }); });</script></body>";
