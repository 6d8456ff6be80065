//! The operator commands as an operator runs them: the `acr-autoattach` binary against an in-process emulator,
//! with the emulator's exports (`emulator.env()`) as the whole environment of the child process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use acr_autoattach::core::model::OWNERSHIP_MARK;
use azure_emulator::admin::{ArmAdmin, ClusterSpec, RegistrySpec};
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_acr-autoattach");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(emu: &RunningEmulator, extra_env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .envs(emu.env())
        .env("AUTOATTACH_TOKEN_NO_RETRY", "true");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(
        Duration::from_mins(1),
        command.args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("the command finishes within a minute")
    .expect("the binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Table rows (one per pair) with `status`.
fn rows(table: &str, status: &str) -> usize {
    table
        .lines()
        .filter(|l| l.starts_with("aks-") && l.contains(&format!(" {status} ")))
        .count()
}

struct Estate {
    emu: RunningEmulator,
    admin: ArmAdmin,
    cluster: String,
    dev_cluster: String,
    registry: String,
    prod_registry: String,
}

/// One registry for every cluster, one for `env=prod` clusters; a prod and a dev cluster; nothing attached.
async fn estate() -> Estate {
    let emu = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let admin = ArmAdmin::new(emu.base_url(), emu.control().admin_token());
    let s1 = emu.control().subscriptions()[0].clone();
    admin
        .put_resource_group(&s1, "platform", "westeurope")
        .await
        .unwrap();
    admin
        .put_resource_group(&s1, "apps", "westeurope")
        .await
        .unwrap();
    let all = RegistrySpec::new(&s1, "platform", "acrshared").tag("acr-autoattach", "*");
    let prod = RegistrySpec::new(&s1, "platform", "acrprod").tag("acr-autoattach", "env=prod");
    admin.put_registry(&all).await.unwrap();
    admin.put_registry(&prod).await.unwrap();
    let aks = ClusterSpec::new(&s1, "apps", "aks-prod").tag("env", "prod");
    let dev = ClusterSpec::new(&s1, "apps", "aks-dev").tag("env", "dev");
    for spec in [&aks, &dev] {
        admin.put_cluster(spec).await.unwrap();
        admin
            .wait_cluster_succeeded(&spec.id(), Duration::from_secs(20))
            .await
            .unwrap();
    }
    Estate {
        emu,
        admin,
        cluster: aks.id(),
        dev_cluster: dev.id(),
        registry: all.id(),
        prod_registry: prod.id(),
    }
}

async fn owned_count(e: &Estate) -> usize {
    let s1 = e.emu.control().subscriptions()[0].clone();
    e.admin
        .list_role_assignments(&format!("/subscriptions/{s1}"))
        .await
        .unwrap()
        .iter()
        .filter(|a| {
            a["properties"]["description"]
                .as_str()
                .is_some_and(|d| d.starts_with(OWNERSHIP_MARK))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reconcile_and_explain_against_the_emulator() {
    let estate = estate().await;

    // verify: audit only, 3 selected pairs missing → exit 1; nothing written.
    let verified = run(&estate.emu, &[], &["verify"]).await;
    assert_eq!(verified.code, 1, "{}\n{}", verified.stdout, verified.stderr);
    assert_eq!(rows(&verified.stdout, "missing"), 3, "{}", verified.stdout);
    assert!(
        verified.stderr.contains("3 pairs (3 missing)"),
        "{}",
        verified.stderr
    );
    assert_eq!(owned_count(&estate).await, 0);

    // JSON and HTML (the issue's `--output html FILE` form).
    let json_run = run(&estate.emu, &[], &["verify", "--output", "json"]).await;
    assert_eq!(json_run.code, 1, "{}", json_run.stderr);
    let doc: Value = serde_json::from_str(&json_run.stdout).unwrap();
    assert_eq!(doc["summary"]["counts"]["missing"], 3);
    assert_eq!(doc["mode"], "audit");
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let html_run = run(
        &estate.emu,
        &[],
        &["verify", "--output", "html", page.to_str().unwrap()],
    )
    .await;
    assert_eq!(html_run.code, 1, "{}", html_run.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<html") && html.matches("data-status=\"missing\"").count() >= 3);

    // reconcile --dry-run: shows the creates, writes nothing, exit 1 (there is something to do).
    let dry = run(&estate.emu, &[], &["reconcile", "--dry-run"]).await;
    assert_eq!(dry.code, 1, "{}\n{}", dry.stdout, dry.stderr);
    assert!(
        dry.stdout.contains("plan: would create 3, would remove 0"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout
            .contains("+ create AcrPull on aks-prod → acrprod"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("dry run: nothing was written"));
    assert_eq!(owned_count(&estate).await, 0);

    // reconcile: creates them and reports them repaired; a second verify finds everything compliant.
    let applied = run(&estate.emu, &[], &["reconcile"]).await;
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert!(
        applied.stdout.contains("plan: will create 3"),
        "{}",
        applied.stdout
    );
    assert_eq!(rows(&applied.stdout, "repaired"), 3, "{}", applied.stdout);
    assert_eq!(owned_count(&estate).await, 3);
    let verified = run(
        &estate.emu,
        &[],
        &[
            "verify",
            "--subscription",
            &estate.emu.control().subscriptions()[0],
        ],
    )
    .await;
    assert_eq!(verified.code, 0, "{}\n{}", verified.stdout, verified.stderr);

    // explain: a compliant pair, with the assignment at registry scope, ours.
    let explained = run(
        &estate.emu,
        &[],
        &[
            "explain",
            "--cluster",
            &estate.cluster,
            "--registry",
            &estate.prod_registry,
        ],
    )
    .await;
    assert_eq!(
        explained.code, 0,
        "{}\n{}",
        explained.stdout, explained.stderr
    );
    assert!(
        explained.stdout.contains("✓ env=prod"),
        "{}",
        explained.stdout
    );
    assert!(
        explained
            .stdout
            .contains("registry scope:\n     AcrPull (ours)"),
        "{}",
        explained.stdout
    );
    assert!(
        explained
            .stdout
            .contains("covers pull: AcrPull at registry scope"),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains("8. verdict: compliant"),
        "{}",
        explained.stdout
    );
    // A pair the selector rejects: the failing requirement and the cluster's value are shown.
    let explained = run(
        &estate.emu,
        &[],
        &[
            "explain",
            "--cluster",
            &estate.dev_cluster,
            "--registry",
            &estate.prod_registry,
        ],
    )
    .await;
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    assert!(
        explained.stdout.contains("✗ env=prod") && explained.stdout.contains("cluster's env = dev"),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains("verdict: not selected"),
        "{}",
        explained.stdout
    );
    let explained = run(
        &estate.emu,
        &[],
        &[
            "explain",
            "--json",
            "--cluster",
            &estate.dev_cluster,
            "--registry",
            &estate.registry,
        ],
    )
    .await;
    let doc: Value = serde_json::from_str(&explained.stdout).unwrap();
    assert_eq!(doc["verdict"]["status"], "compliant");
    assert_eq!(doc["selection"]["kind"], "all");

    // Drift then detach through reconcile: remove the prod registry's tag; with --detach its owned
    // assignment goes (dry run first shows it).
    estate
        .admin
        .set_tags(&estate.prod_registry, &[("team", "x")])
        .await
        .unwrap();
    let dry = run(&estate.emu, &[], &["reconcile", "--dry-run", "--detach"]).await;
    assert!(
        dry.stdout.contains("would remove 1")
            && dry
                .stdout
                .contains("- remove AcrPull on aks-prod → acrprod"),
        "{}",
        dry.stdout
    );
    let applied = run(&estate.emu, &[], &["reconcile", "--detach"]).await;
    assert_eq!(applied.code, 0, "{}\n{}", applied.stdout, applied.stderr);
    assert_eq!(owned_count(&estate).await, 2);
    estate.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2_and_help_explains_each_command() {
    let e = estate().await;
    // A configuration error.
    let bad = run(&e.emu, &[("AUTOATTACH_MODE", "sometimes")], &["verify"]).await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("AUTOATTACH_MODE"), "{}", bad.stderr);
    // Azure unreachable (nothing listens on the port the emulator had).
    let base = e.emu.base_url();
    let env = e.emu.env();
    e.emu.shutdown().await;
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .envs(env)
        .env("AUTOATTACH_TOKEN_NO_RETRY", "true")
        .args(["verify", "--budget-secs", "5"]);
    let out = command.output().await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{base}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An id that is not one.
    let emu = Emulator::start(EmulatorConfig::for_tests()).await.unwrap();
    let x = run(
        &emu,
        &[],
        &["explain", "--cluster", "aks-prod", "--registry", "acr"],
    )
    .await;
    assert_eq!(x.code, 2, "{}", x.stderr);
    assert!(x.stderr.contains("not a resource id"), "{}", x.stderr);

    for (command, words) in [
        ("verify", ["audit", "--output", "Exit 0"]),
        ("reconcile", ["--dry-run", "ownership mark", "Exit 0"]),
        ("explain", ["selector", "role", "verdict"]),
    ] {
        let help = run(&emu, &[], &[command, "--help"]).await;
        assert_eq!(help.code, 0);
        for word in words {
            assert!(
                help.stdout.contains(word),
                "{command} --help lacks `{word}`:\n{}",
                help.stdout
            );
        }
    }
    emu.shutdown().await;
}
