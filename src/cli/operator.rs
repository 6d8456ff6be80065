//! The operator commands: `verify`, `reconcile` and `explain`, on the same engine as the function app, from an
//! operator's machine (an `az login` session) or against the emulator (its `export …` lines set the endpoints
//! and a managed-identity endpoint).
//!
//! Exit codes: 0 everything is in order, 1 something is not (a pair not compliant, changes to make, a failed
//! write), 2 the command could not do its job (configuration, credential, Azure unreachable, file not written).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::azure::AzureError;
use crate::cli::progress::Progress;
use crate::cli::report;
use crate::cli::report::terminal_safe;
use crate::core::model::{Mode, PairStatus, PullRole, ResourceIdError, VerificationReport};
use crate::core::planner::{Action, GroupAction, Meanwhile, Plan};
use crate::runtime::bootstrap::{self, Identity, Settings};
use crate::runtime::config::{Config, ConfigError, Env, ProcessEnv};
use crate::runtime::engine::{Engine, EngineError, Observation};

use crate::telemetry::Metrics;

/// Exit code: everything is in order.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and found something not in order.
pub const EXIT_NOT_IN_ORDER: u8 = 1;
/// Exit code: the command could not do its job.
pub const EXIT_ERROR: u8 = 2;

/// Time budget of `explain` (a handful of reads).
pub(crate) const EXPLAIN_BUDGET: Duration = Duration::from_mins(1);

/// Why an operator command could not do its job (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("Azure: {0}")]
    Azure(#[from] AzureError),
    #[error("{0}")]
    Engine(#[from] EngineError),
    #[error("not a resource id: {0}")]
    ResourceId(#[from] ResourceIdError),
    #[error("{0}")]
    NotFound(String),
    #[error("the scope could not be inventoried: {0}")]
    Inventory(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Usage(String),
}

// ---------------------------------------------------------------------------------------------------------------
// Arguments

/// Whose token the command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IdentityChoice {
    /// The managed identity when IDENTITY_ENDPOINT is set (e.g. the emulator's exports), else the `az login`
    /// session.
    Auto,
    /// The managed identity (IDENTITY_ENDPOINT and IDENTITY_HEADER; AZURE_CLIENT_ID for a user-assigned one).
    Managed,
    /// The developer tools' session (`az login`, `azd auth login`).
    Cli,
}

impl IdentityChoice {
    /// The identity `auto` stands for in `env`.
    pub fn resolve(self, env: &dyn Env) -> Identity {
        match self {
            Self::Managed => Identity::ManagedIdentity,
            Self::Cli => Identity::DeveloperTools,
            Self::Auto => {
                if env
                    .var("IDENTITY_ENDPOINT")
                    .is_some_and(|v| !v.trim().is_empty())
                {
                    Identity::ManagedIdentity
                } else {
                    Identity::DeveloperTools
                }
            }
        }
    }
}

/// Options every command shares. Endpoints, tag, scope and detach come from the usual settings
/// (AUTOATTACH_ARM_ENDPOINT, AUTOATTACH_TAG, AUTOATTACH_SUBSCRIPTIONS, AUTOATTACH_DETACH, …).
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// Whose token to use: `auto` picks the managed identity when IDENTITY_ENDPOINT is set (as the emulator's
    /// exports do), else the `az login` session.
    #[arg(long, value_enum, default_value_t = IdentityChoice::Auto)]
    pub identity: IdentityChoice,
    /// Stop issuing requests after this many seconds and report what was reached
    /// (default: AUTOATTACH_VERIFY_BUDGET_SECS, 540).
    #[arg(long, value_name = "SECS")]
    pub budget_secs: Option<u64>,
}

/// Report formats of `verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One row per pair and a summary line.
    Table,
    /// The report with a computed summary.
    Json,
    /// One self-contained page: the clusters × registries matrix coloured by status.
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Subscription to verify (repeatable, or comma-separated). Default: AUTOATTACH_SUBSCRIPTIONS, else every
    /// subscription the identity can see.
    #[arg(long = "subscription", value_name = "ID", value_delimiter = ',')]
    pub subscriptions: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The report file, as in `--output html FILE` (same as --out).
    #[arg(value_name = "FILE", conflicts_with = "out")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

impl VerifyArgs {
    fn destination(&self) -> Option<&Path> {
        self.out.as_deref().or(self.file.as_deref())
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReconcileArgs {
    /// Show what would be created and removed, write nothing (exit 1 when there is something to do).
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove owned assignments that are no longer wanted (default: AUTOATTACH_DETACH).
    #[arg(long)]
    pub detach: bool,
    /// Subscription to reconcile (repeatable, or comma-separated). Default: AUTOATTACH_SUBSCRIPTIONS, else
    /// every subscription the identity can see.
    #[arg(long = "subscription", value_name = "ID", value_delimiter = ',')]
    pub subscriptions: Vec<String>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The cluster's resource id (/subscriptions/…/providers/Microsoft.ContainerService/managedClusters/NAME).
    #[arg(long, value_name = "ID")]
    pub cluster: String,
    /// The registry's resource id (/subscriptions/…/providers/Microsoft.ContainerRegistry/registries/NAME).
    #[arg(long, value_name = "ID")]
    pub registry: String,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

// ---------------------------------------------------------------------------------------------------------------
// Entry points (the binary's dispatch lines)

/// `acr-autoattach verify`.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    block_on(run_verify(args, &ProcessEnv))
}

/// `acr-autoattach reconcile`.
pub fn reconcile(args: &ReconcileArgs) -> ExitCode {
    block_on(run_reconcile(args, &ProcessEnv))
}

pub(crate) fn block_on(run: impl Future<Output = Result<u8, OperatorError>>) -> ExitCode {
    let code = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run),
        Err(e) => Err(OperatorError::Runtime(e)),
    };
    match code {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("acr-autoattach: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// The engine for a command, with `adjust` applied to the configuration read from `env`.
pub(crate) fn engine(
    connection: &ConnectionArgs,
    env: &dyn Env,
    adjust: impl FnOnce(&mut Config),
) -> Result<(Engine, Duration), OperatorError> {
    let mut config = Settings::from_env(env)?.config;
    adjust(&mut config);
    let budget = connection
        .budget_secs
        .map_or(config.verify_budget, Duration::from_secs)
        .clamp(
            Duration::from_secs(1),
            Duration::from_secs(crate::runtime::config::MAX_VERIFY_BUDGET_SECS),
        );
    let credential = bootstrap::credential(&config, env, connection.identity.resolve(env))?;
    let client = bootstrap::azure_client(&config, credential, &Metrics::noop())?;
    Ok((Engine::new(config, client), budget))
}

// ---------------------------------------------------------------------------------------------------------------
// verify

/// Audits the scope (never writes) and renders the report. 0: every pair compliant; 1: some are not (or the run
/// stopped early, or a selector is invalid); 2: the scope could not be inventoried or the report not written.
pub async fn run_verify(args: &VerifyArgs, env: &dyn Env) -> Result<u8, OperatorError> {
    let (engine, budget) = engine(&args.connection, env, |_| {})?;
    let mut progress = Progress::start(engine.client().clone());
    progress.stage(
        "verify: inventory, plan and audit of the scope (read only)",
        None,
    );
    let report = engine
        .verify(budget, &args.subscriptions, Some(Mode::Audit))
        .await;
    progress.finish().await;
    eprintln!("{}", summary_line(&report));
    for capacity in &report.capacity {
        eprintln!("{}", capacity.line());
    }
    if let Some(reason) = report.inventory.failure() {
        return Err(OperatorError::Inventory(reason.to_owned()));
    }
    if let (OutputFormat::Json, Some(path)) = (args.output, args.destination()) {
        write_json_file(&report, path)?;
        return Ok(if report.all_compliant() {
            EXIT_OK
        } else {
            EXIT_NOT_IN_ORDER
        });
    }
    let rendered = match args.output {
        OutputFormat::Table => report::render_table(&report),
        OutputFormat::Json => report::render_json(&report),
        OutputFormat::Html => report::render_html(&report),
    };
    emit(args.destination(), &rendered)?;
    Ok(if report.all_compliant() {
        EXIT_OK
    } else {
        EXIT_NOT_IN_ORDER
    })
}

/// The JSON report streamed to `path` (the same bytes as [`emit`] of [`report::render_json`]).
fn write_json_file(report: &VerificationReport, path: &Path) -> Result<(), OperatorError> {
    let error = |source| OperatorError::Write {
        path: path.display().to_string(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(error)?);
    report::write_json(report, &mut out).map_err(error)?;
    std::io::Write::flush(&mut out).map_err(error)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

fn emit(destination: Option<&Path>, text: &str) -> Result<(), OperatorError> {
    if let Some(path) = destination {
        std::fs::write(path, text).map_err(|source| OperatorError::Write {
            path: path.display().to_string(),
            source,
        })?;
        eprintln!("report written to {}", path.display());
    } else {
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }
    Ok(())
}

fn summary_line(report: &VerificationReport) -> String {
    let summary = report::summarize(report);
    let counts: Vec<String> = PairStatus::ALL
        .iter()
        .filter(|s| summary.counts.get(**s) > 0)
        .map(|s| format!("{} {}", summary.counts.get(*s), s.as_str()))
        .collect();
    format!(
        "{} clusters × {} registries: {} pairs ({}); {} invalid selector(s); coverage {:.1}%{}; {:.1} s, {} Azure requests ({})",
        report.clusters.len(),
        report.registries.len(),
        summary.pairs,
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        },
        summary.invalid_selectors,
        (summary.coverage * 1000.0).floor() / 10.0,
        if report.complete {
            String::new()
        } else {
            format!(
                " (partial: {} pairs not reached before the deadline)",
                report.unverified_pairs
            )
        },
        report.duration_seconds,
        report.azure_requests,
        report.inventory,
    )
}

// ---------------------------------------------------------------------------------------------------------------
// reconcile

/// Plans the scope in enforce mode, prints the creates and removals, then (unless dry-run) applies them and prints
/// the results. 0: nothing to do, or everything applied and compliant; 1: changes pending (dry run) or some pair
/// not compliant after the run; 2: error.
pub async fn run_reconcile(args: &ReconcileArgs, env: &dyn Env) -> Result<u8, OperatorError> {
    let detach_flag = args.detach;
    let (engine, budget) = engine(&args.connection, env, |config| {
        // Reconciling means repairing, whatever the function app's AUTOATTACH_MODE says.
        config.mode = Mode::Enforce;
        config.detach |= detach_flag;
    })?;
    let started = Instant::now();
    let started_at = OffsetDateTime::now_utc();
    let azure = engine.client().with_deadline(started + budget);
    let subscriptions = if args.subscriptions.is_empty() {
        engine.config().subscriptions.clone()
    } else {
        args.subscriptions.clone()
    };
    let mut progress = Progress::start(engine.client().clone());
    progress.stage("reconcile: inventory and plan", None);
    let planned = engine.observe_and_plan(&azure, &subscriptions).await;
    let (plan, observed, inventory) = match planned {
        Ok(p) => p,
        Err(e) => {
            progress.finish().await;
            return Err(e.into());
        }
    };
    let writes = plan.writes().count() as u64;
    // The plan goes to stdout with no bar drawn over it.
    progress.finish().await;
    println!(
        "{}",
        render_plan(&plan, engine.config().detach, args.dry_run)
    );
    if args.dry_run {
        println!("dry run: nothing was written");
        let clean = writes == 0
            && plan.registry_results.is_empty()
            && plan.items.iter().all(|i| {
                matches!(
                    i.action,
                    Action::AlreadyCovered { .. } | Action::Exists { .. }
                )
            });
        return Ok(if clean { EXIT_OK } else { EXIT_NOT_IN_ORDER });
    }
    let mut progress = Progress::start(engine.client().clone());
    progress.stage(format!("reconcile: applying {writes} writes"), Some(writes));
    let (pairs, skipped) = engine
        .apply(&azure, &plan, None, Observation::Inventory)
        .await;
    progress.finish().await;
    let capacity = crate::runtime::engine::capacity(
        &observed.registries,
        &inventory.assignments_per_subscription,
        &pairs,
        u64::from(engine.config().grant.limit),
    );
    let report = VerificationReport {
        started_at: started_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        duration_seconds: started.elapsed().as_secs_f64(),
        mode: Mode::Enforce,
        clusters: observed.clusters.iter().map(|c| c.id.clone()).collect(),
        registries: observed.registries.iter().map(|r| r.id.clone()).collect(),
        pairs,
        registry_results: plan.registry_results,
        complete: skipped == 0,
        unverified_pairs: skipped,
        azure_requests: azure.requests_sent(),
        inventory: crate::core::model::InventoryOutcome::Taken(inventory.source),
        capacity,
    };
    println!("results:");
    print!("{}", report::render_table(&report));
    eprintln!("{}", summary_line(&report));
    Ok(if report.all_compliant() {
        EXIT_OK
    } else {
        EXIT_NOT_IN_ORDER
    })
}

/// The plan as an operator reads it: creates (`+`) and removals (`-`) one per line, then counts of the rest.
pub fn render_plan(plan: &Plan, detach: bool, dry_run: bool) -> String {
    let mut out = String::new();
    let mut creates = 0usize;
    let mut removes = 0usize;
    let mut covered = 0usize;
    let mut pending = 0usize;
    let mut refused = 0usize;
    for item in &plan.items {
        let pair = format!(
            "{} → {}",
            terminal_safe(item.cluster.name()),
            terminal_safe(item.registry.name())
        );
        match &item.action {
            Action::Create(spec) | Action::ReportMissing(spec) => {
                creates += 1;
                let _ = writeln!(
                    out,
                    "  + create {} on {pair} (principal {}, assignment {})",
                    spec.role, spec.principal_id, spec.name
                );
            }
            Action::Remove { assignment, reason } => {
                removes += 1;
                let role = PullRole::from_definition_guid(&assignment.role_definition_guid)
                    .map_or("?", PullRole::display_name);
                let _ = writeln!(
                    out,
                    "  - remove {role} on {pair}: {reason} (assignment {})",
                    assignment.name
                );
            }
            Action::AlreadyCovered { .. } | Action::Exists { .. } => covered += 1,
            Action::Join { meanwhile, .. } => {
                let principal = item.principal_id.as_deref().unwrap_or("?");
                match meanwhile {
                    Meanwhile::FastPath(spec) => {
                        creates += 1;
                        let _ = writeln!(
                            out,
                            "  + join {pair}: add {principal} to the tool's group, then create {} at once (fast path, assignment {})",
                            spec.role, spec.name
                        );
                    }
                    Meanwhile::Covered { assignment_id } => {
                        covered += 1;
                        let _ = writeln!(
                            out,
                            "  + join {pair}: add {principal} to the tool's group ({} covers it meanwhile)",
                            terminal_safe(assignment_id)
                        );
                    }
                    Meanwhile::Pending { reason } => {
                        pending += 1;
                        let _ = writeln!(
                            out,
                            "  + join {pair}: add {principal} to the tool's group; pending: {}",
                            terminal_safe(&reason.to_string())
                        );
                    }
                }
            }
            Action::Pending { reason } => {
                pending += 1;
                let _ = writeln!(
                    out,
                    "  … pending {pair}: {}",
                    terminal_safe(&reason.to_string())
                );
            }
            Action::Refused { reason } => {
                refused += 1;
                let _ = writeln!(
                    out,
                    "  ! refused {pair}: {}",
                    terminal_safe(&reason.to_string())
                );
            }
        }
    }
    for g in &plan.groups {
        let _ = writeln!(
            out,
            "  * group {} on {} ({}): {}",
            g.action.as_str(),
            terminal_safe(g.registry.name()),
            g.role.display_name(),
            group_detail(&g.action)
        );
    }
    for r in &plan.registry_results {
        let _ = writeln!(
            out,
            "  ! invalid selector on {}: {}",
            terminal_safe(r.registry_id.name()),
            terminal_safe(&r.reason)
        );
    }
    let verb = if dry_run { "would" } else { "will" };
    let header = format!(
        "plan: {verb} create {creates}, {verb} remove {removes}; {covered} already compliant, {pending} pending, {refused} refused, {} invalid selector(s) (detach {})",
        plan.registry_results.len(),
        if detach { "on" } else { "off" }
    );
    if out.is_empty() {
        header
    } else {
        format!("{header}\n{}", out.trim_end())
    }
}

/// One line of detail for a group action of a plan.
fn group_detail(action: &GroupAction) -> String {
    match action {
        GroupAction::EnsureGroup { assign } => format!(
            "find or create the tool's group{}",
            if *assign {
                ", then assign it the pull role"
            } else {
                ""
            }
        ),
        GroupAction::AssignGroup { group_id, spec } => {
            format!(
                "assign {} to group {group_id} (assignment {})",
                spec.role, spec.name
            )
        }
        GroupAction::Leave {
            group_id,
            principal_id,
            reason,
            ..
        } => format!("remove {principal_id} from group {group_id}: {reason}"),
        GroupAction::RemoveAssignment {
            group_id,
            assignment,
            reason,
        } => format!(
            "remove group {group_id}'s assignment {}: {reason}",
            terminal_safe(&assignment.name)
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::core::fixtures::*;
    use crate::core::model::RoleAssignmentMode;
    use crate::core::planner;
    use crate::runtime::config::MapEnv;

    #[test]
    fn plan_rendering_lists_creates_and_removals() {
        let c = cluster(&[]);
        let tagged = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let plan = planner::plan(&observed(c, tagged, vec![]), &settings(true));
        let text = render_plan(&plan, true, true);
        assert!(
            text.starts_with("plan: would create 1, would remove 0"),
            "{text}"
        );
        assert!(text.contains("+ create AcrPull on aks1 → acr1"), "{text}");
    }

    #[test]
    fn identity_auto_follows_identity_endpoint() {
        let with = MapEnv::new([("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")]);
        let without = MapEnv::new([("X", "y")]);
        assert_eq!(
            IdentityChoice::Auto.resolve(&with),
            Identity::ManagedIdentity
        );
        assert_eq!(
            IdentityChoice::Auto.resolve(&without),
            Identity::DeveloperTools
        );
        assert_eq!(IdentityChoice::Cli.resolve(&with), Identity::DeveloperTools);
    }
}
