//! The operator commands: `verify`, `reconcile` and `explain`, on the same engine as the function app, from an
//! operator's machine (an `az login` session) or against the emulator (its `export …` lines set the endpoints
//! and a managed-identity endpoint).
//!
//! Exit codes: 0 everything is in order, 1 something is not (a pair not compliant, changes to make, a failed
//! write), 2 the command could not do its job (configuration, credential, Azure unreachable, file not written).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::azure::inventory::KNOWN_BUILT_IN_ROLES;
use crate::azure::{AssignmentFilter, AzureClient, AzureError, Operation, ScopedClient};
use crate::bootstrap::{self, Identity, Settings};
use crate::config::{Config, ConfigError, Env, ProcessEnv};
use crate::model::{
    ClusterPrincipal, Mode, PairStatus, PullRole, ResourceId, ResourceIdError, RoleAssignment,
    RoleAssignmentMode, RoleDefinition, VerificationReport,
};
use crate::planner::{self, Action, Inventory, Observed, Plan, PlanSettings, ScopeLevel};
use crate::reconcile::{Engine, EngineError};
use crate::report;
use crate::selector::{OptIn, RequirementOutcome, cluster_opted_out, parse_opt_in};
use crate::telemetry::Metrics;

/// Exit code: everything is in order.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and found something not in order.
pub const EXIT_NOT_IN_ORDER: u8 = 1;
/// Exit code: the command could not do its job.
pub const EXIT_ERROR: u8 = 2;

/// Time budget of `explain` (a handful of reads).
const EXPLAIN_BUDGET: Duration = Duration::from_mins(1);
/// The progress bar appears only for runs longer than this.
const PROGRESS_DELAY: Duration = Duration::from_secs(1);

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

/// `acr-autoattach explain`.
pub fn explain(args: &ExplainArgs) -> ExitCode {
    block_on(run_explain(args, &ProcessEnv))
}

fn block_on(run: impl Future<Output = Result<u8, OperatorError>>) -> ExitCode {
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
fn engine(
    connection: &ConnectionArgs,
    env: &dyn Env,
    adjust: impl FnOnce(&mut Config),
) -> Result<(Engine, Duration), OperatorError> {
    let mut config = Settings::from_env(env)?.config;
    adjust(&mut config);
    let budget = connection
        .budget_secs
        .map_or(config.verify_budget, Duration::from_secs)
        .max(Duration::from_secs(1));
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
    if let Some(reason) = report.inventory_source.strip_prefix("failed: ") {
        return Err(OperatorError::Inventory(reason.to_owned()));
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
        report.inventory_source,
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
            && plan
                .items
                .iter()
                .all(|i| matches!(i.action, Action::AlreadyCovered { .. }));
        return Ok(if clean { EXIT_OK } else { EXIT_NOT_IN_ORDER });
    }
    let mut progress = Progress::start(engine.client().clone());
    progress.stage(format!("reconcile: applying {writes} writes"), Some(writes));
    let (pairs, skipped) = engine.apply(&azure, &plan, None).await;
    progress.finish().await;
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
        inventory_source: match inventory.source {
            crate::azure::InventorySource::ResourceGraph => "resource_graph".into(),
            crate::azure::InventorySource::Arm => "arm".into(),
        },
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
            Action::AlreadyCovered { .. } => covered += 1,
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

// ---------------------------------------------------------------------------------------------------------------
// explain

/// Reads the pair and prints why it is (or is not) attached. 0: compliant, or not selected with nothing to
/// remove; 1: something to do or a problem (missing, pending, refused, invalid selector, removal due); 2: error.
pub async fn run_explain(args: &ExplainArgs, env: &dyn Env) -> Result<u8, OperatorError> {
    let cluster_id = ResourceId::parse(&args.cluster)?;
    let registry_id = ResourceId::parse(&args.registry)?;
    let (engine, _) = engine(&args.connection, env, |_| {})?;
    let azure = engine
        .client()
        .with_deadline(Instant::now() + EXPLAIN_BUDGET);
    let (observed, notes) = observe_pair(&engine, &azure, &cluster_id, &registry_id).await?;
    let handler_tenant = engine
        .client()
        .identity(azure.deadline())
        .await
        .ok()
        .and_then(|c| c.tenant_id);
    let config = engine.config();
    let settings = PlanSettings {
        tag_name: config.tag.clone(),
        // Explain says what reconcile would do.
        mode: Mode::Enforce,
        detach: config.detach,
        handler_tenant,
        deleted_clusters: std::collections::BTreeSet::new(),
        inventory: Inventory::Partial,
    };
    let mut explanation = explain_pair(&observed, &settings)
        .ok_or_else(|| OperatorError::NotFound("cluster or registry not observed".into()))?;
    explanation.notes.extend(notes);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&explanation).unwrap_or_default()
        );
    } else {
        print!("{}", render_explanation(&explanation));
    }
    Ok(if explanation.verdict.in_order {
        EXIT_OK
    } else {
        EXIT_NOT_IN_ORDER
    })
}

/// Everything the planner needs to judge one pair: the cluster, the registry, the principal's assignments (one
/// list at the registry's subscription with the principal filter: at, above and below), custom role definitions
/// and tenants.
async fn observe_pair(
    engine: &Engine,
    azure: &ScopedClient,
    cluster_id: &ResourceId,
    registry_id: &ResourceId,
) -> Result<(Observed, Vec<String>), OperatorError> {
    let (cluster, registry, subscriptions) = futures::try_join!(
        azure.get_cluster(cluster_id),
        azure.get_registry(registry_id),
        azure.list_subscriptions(),
    )?;
    let cluster =
        cluster.ok_or_else(|| OperatorError::NotFound(format!("no cluster {cluster_id}")))?;
    let registry =
        registry.ok_or_else(|| OperatorError::NotFound(format!("no registry {registry_id}")))?;
    let mut notes = Vec::new();
    let mut observed = Observed {
        subscription_tenants: subscriptions
            .iter()
            .filter_map(|s| Some((s.subscription_id.to_ascii_lowercase(), s.tenant_id.clone()?)))
            .collect(),
        ..Observed::default()
    };
    let principal = match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } => Some(object_id.clone()),
        ClusterPrincipal::NotYetKnown => None,
        ClusterPrincipal::ServicePrincipal { client_id } => {
            let resolved = match azure.resolve_service_principal(client_id).await {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err(format!(
                    "no service principal with appId {client_id} in the directory"
                )),
                Err(e) => Err(e.to_string()),
            };
            observed
                .principals
                .insert(cluster.id.clone(), resolved.clone());
            resolved.ok()
        }
    };
    observed.assignments = if let Some(p) = &principal {
        azure
            .list_role_assignments(
                &registry.id.subscription_scope(),
                &AssignmentFilter::Principal(p.clone()),
            )
            .await?
    } else {
        notes.push(
            "the cluster's principal is not known yet: listing every assignment at or above the registry"
                .into(),
        );
        azure
            .list_role_assignments(registry.id.as_str(), &AssignmentFilter::AtScope)
            .await?
    };
    let mut custom: Vec<&str> = observed
        .assignments
        .iter()
        .map(|a| a.role_definition_guid.as_str())
        .filter(|g| !KNOWN_BUILT_IN_ROLES.contains(g))
        .collect();
    custom.sort_unstable();
    custom.dedup();
    let mut definitions: HashMap<String, RoleDefinition> = HashMap::new();
    for guid in custom {
        match azure
            .get_role_definition(&registry.id.subscription_scope(), guid)
            .await
        {
            Ok(Some(d)) => {
                definitions.insert(guid.to_ascii_lowercase(), d);
            }
            Ok(None) => notes.push(format!("role definition {guid} not found; not counted")),
            Err(e) => notes.push(format!(
                "role definition {guid} unreadable ({e}); not counted"
            )),
        }
    }
    observed.role_definitions = definitions;
    notes.push(
        "assignments at management-group scope are not counted (their ancestry is not read)".into(),
    );
    if engine.config().detach {
        notes.push(
            "detach is on (AUTOATTACH_DETACH): owned assignments no longer wanted are removed"
                .into(),
        );
    }
    observed.clusters.push(cluster);
    observed.registries.push(registry);
    Ok((observed, notes))
}

/// The answer of `explain`: every step, as data (printed by [`render_explanation`], or as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub cluster: ClusterFacts,
    pub registry: RegistryFacts,
    pub selection: Selection,
    /// The cluster carries the opt-in tag with `off`/`false`.
    pub cluster_opted_out: bool,
    /// The registry selects the cluster (and the cluster did not opt out).
    pub selected: bool,
    pub tenants: Tenants,
    /// The role this registry's mode requires, and why.
    pub role: PullRole,
    pub role_reason: String,
    /// The principal that must hold pull, or why it is unknown.
    pub principal_id: Option<String>,
    pub principal_note: Option<String>,
    /// Assignments of the principal at the registry or an ancestor, from the registry outwards.
    pub assignments: Vec<ScopedAssignment>,
    /// Assignments of the principal elsewhere (other registries, other resources).
    pub assignments_elsewhere: usize,
    pub verdict: Verdict,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterFacts {
    pub id: ResourceId,
    pub subscription: String,
    pub resource_group: Option<String>,
    pub location: String,
    pub tags: Vec<(String, String)>,
    pub provisioning_state: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistryFacts {
    pub id: ResourceId,
    pub role_assignment_mode: String,
    pub tag_name: String,
    /// The opt-in tag's value (`None`: absent).
    pub tag_value: Option<String>,
}

/// How the registry's tag value reads.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selection {
    /// No opt-in tag, or `off`/`false`: the registry selects no cluster.
    NotOptedIn,
    /// `*`: every cluster.
    All,
    /// A selector, requirement by requirement.
    Selector {
        canonical: String,
        steps: Vec<RequirementOutcome>,
    },
    /// The value does not parse: the registry selects nothing and nothing is granted or removed on it.
    Invalid { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenants {
    pub cluster: Option<String>,
    pub registry: Option<String>,
    pub handler: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScopedAssignment {
    pub level: ScopeLevel,
    pub scope: String,
    pub id: String,
    pub role: String,
    pub principal_id: String,
    pub owned: bool,
    /// How it covers pull on this registry (`None`: it does not).
    pub covers_pull: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// `compliant`, `missing`, `pending`, `refused`, `not_selected`, `remove`, `invalid_selector`.
    pub status: &'static str,
    pub text: String,
    /// Nothing to do and nothing wrong.
    pub in_order: bool,
}

/// Explains the only (cluster, registry) pair of `observed`, using the planner itself for the verdict (so the
/// explanation cannot disagree with what reconcile does). `None` when `observed` lacks the cluster or registry.
pub fn explain_pair(observed: &Observed, settings: &PlanSettings) -> Option<Explanation> {
    let cluster = observed.clusters.first()?;
    let registry = observed.registries.first()?;
    let tag_value = registry.tags.get(&settings.tag_name).map(str::to_owned);
    let parsed = tag_value.as_deref().map(parse_opt_in);
    let selection = match &parsed {
        None | Some(Ok(OptIn::NotOptedIn)) => Selection::NotOptedIn,
        Some(Ok(OptIn::All)) => Selection::All,
        Some(Ok(OptIn::Selector(s))) => Selection::Selector {
            canonical: s.to_string(),
            steps: s.explain(cluster),
        },
        Some(Err(e)) => Selection::Invalid {
            error: e.to_string(),
        },
    };
    let opted_out = cluster_opted_out(cluster, &settings.tag_name);
    let selects = matches!(&parsed, Some(Ok(o)) if o.selects(cluster));
    let role = PullRole::for_mode(registry.mode);
    let mode_name = mode_name(registry.mode);
    let role_reason = match registry.mode {
        RoleAssignmentMode::LegacyRegistryPermissions => format!(
            "the registry's roleAssignmentMode is {mode_name}: AcrPull grants pull on every repository"
        ),
        RoleAssignmentMode::AbacRepositoryPermissions => format!(
            "the registry's roleAssignmentMode is {mode_name}: AcrPull is not honoured there; Container Registry Repository Reader (without a condition) grants pull on every repository"
        ),
    };
    let tenant = |own: Option<&String>, id: &ResourceId| {
        own.cloned().or_else(|| {
            observed
                .subscription_tenants
                .get(&id.subscription_id().to_ascii_lowercase())
                .cloned()
        })
    };
    let (principal_id, principal_note) = match &cluster.principal {
        ClusterPrincipal::Kubelet { object_id, .. } => (
            Some(object_id.clone()),
            Some("the kubelet identity (identityProfile.kubeletidentity)".to_owned()),
        ),
        ClusterPrincipal::NotYetKnown => (
            None,
            Some(format!(
                "no kubelet identity yet (provisioningState {})",
                cluster.provisioning_state
            )),
        ),
        ClusterPrincipal::ServicePrincipal { client_id } => {
            match observed.principals.get(&cluster.id) {
                Some(Ok(id)) => (
                    Some(id.clone()),
                    Some(format!("the service principal of appId {client_id}")),
                ),
                Some(Err(reason)) => (None, Some(reason.clone())),
                None => (None, Some("service principal not looked up".to_owned())),
            }
        }
    };
    let principal_key = principal_id.as_deref().map(str::to_ascii_lowercase);
    let mut assignments = Vec::new();
    let mut elsewhere = 0usize;
    for a in &observed.assignments {
        if principal_key
            .as_deref()
            .is_some_and(|p| !a.principal_id.trim().eq_ignore_ascii_case(p))
        {
            continue;
        }
        let Some(level) = planner::scope_level(&a.scope, &registry.id, &[]) else {
            elsewhere += 1;
            continue;
        };
        assignments.push(ScopedAssignment {
            level,
            scope: a.scope.clone(),
            id: a.id.clone(),
            role: role_label(a, &observed.role_definitions),
            principal_id: a.principal_id.clone(),
            owned: a.is_owned(),
            covers_pull: planner::pull_coverage(a, registry, &observed.role_definitions, &[])
                .map(|c| c.to_string()),
        });
    }
    assignments.sort_by(|a, b| (a.level, &a.id).cmp(&(b.level, &b.id)));
    let plan = planner::plan(observed, settings);
    let verdict = verdict(&plan, selects && !opted_out, parsed.as_ref());
    Some(Explanation {
        cluster: ClusterFacts {
            id: cluster.id.clone(),
            subscription: cluster.id.subscription_id().to_owned(),
            resource_group: cluster.id.resource_group().map(str::to_owned),
            location: cluster.location.clone(),
            tags: cluster
                .tags
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            provisioning_state: cluster.provisioning_state.clone(),
        },
        registry: RegistryFacts {
            id: registry.id.clone(),
            role_assignment_mode: mode_name.to_owned(),
            tag_name: settings.tag_name.clone(),
            tag_value,
        },
        selection,
        cluster_opted_out: opted_out,
        selected: selects && !opted_out,
        tenants: Tenants {
            cluster: tenant(cluster.tenant_id.as_ref(), &cluster.id),
            registry: tenant(registry.tenant_id.as_ref(), &registry.id),
            handler: settings.handler_tenant.clone(),
        },
        role,
        role_reason,
        principal_id,
        principal_note,
        assignments,
        assignments_elsewhere: elsewhere,
        verdict,
        notes: Vec::new(),
    })
}

fn mode_name(mode: RoleAssignmentMode) -> &'static str {
    match mode {
        RoleAssignmentMode::LegacyRegistryPermissions => "LegacyRegistryPermissions",
        RoleAssignmentMode::AbacRepositoryPermissions => "AbacRepositoryPermissions",
    }
}

fn role_label(a: &RoleAssignment, definitions: &HashMap<String, RoleDefinition>) -> String {
    let guid = a.role_definition_guid.to_ascii_lowercase();
    if let Some(role) = PullRole::from_definition_guid(&guid) {
        return role.display_name().to_owned();
    }
    if let Some(d) = definitions.get(&guid) {
        return d.role_name.clone();
    }
    let known = [
        ("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush"),
        (
            "2a1e307c-b015-4ebd-883e-5b7698a07328",
            "Container Registry Repository Writer",
        ),
        (
            "2efddaa5-3f1f-4df3-97df-af3f13818f4c",
            "Container Registry Repository Contributor",
        ),
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("b24988ac-6180-42a0-ab88-20f7382dd24c", "Contributor"),
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
        (
            "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
            "Role Based Access Control Administrator",
        ),
        (
            "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
            "User Access Administrator",
        ),
    ];
    known
        .iter()
        .find(|(g, _)| *g == guid)
        .map_or_else(|| format!("role {guid}"), |(_, n)| (*n).to_owned())
}

fn verdict(
    plan: &Plan,
    selected: bool,
    parsed: Option<&Result<OptIn, crate::selector::SelectorError>>,
) -> Verdict {
    let v = |status, text: String, in_order| Verdict {
        status,
        text,
        in_order,
    };
    if let Some(Err(e)) = parsed {
        return v(
            "invalid_selector",
            format!(
                "the registry's tag does not parse ({e}): it selects no cluster, and nothing is granted or removed on it until it is fixed"
            ),
            false,
        );
    }
    if let Some((assignment, reason)) = plan.items.iter().find_map(|i| match &i.action {
        Action::Remove { assignment, reason } => Some((assignment, reason)),
        _ => None,
    }) {
        return v(
            "remove",
            format!(
                "reconcile (detach on) removes the owned assignment {}: {reason}",
                assignment.name
            ),
            false,
        );
    }
    let Some(item) = plan.items.first() else {
        return if selected {
            v(
                "unknown",
                "the planner produced nothing for this pair".into(),
                false,
            )
        } else {
            v(
                "not_selected",
                "not selected: the cluster needs no access to this registry, and nothing of ours is to remove"
                    .into(),
                true,
            )
        };
    };
    match &item.action {
        Action::AlreadyCovered { how, .. } => v(
            "compliant",
            format!("compliant: pull is covered by {how}; nothing to create"),
            true,
        ),
        Action::Create(spec) | Action::ReportMissing(spec) => v(
            "missing",
            format!(
                "missing: no assignment gives pull; reconcile creates {} at the registry for principal {} (assignment {})",
                spec.role, spec.principal_id, spec.name
            ),
            false,
        ),
        Action::Pending { reason } => v("pending", format!("pending: {reason}"), false),
        Action::Refused { reason } => v("refused", reason.to_string(), false),
        Action::Remove { .. } => v(
            "remove",
            "an owned assignment is due for removal".into(),
            false,
        ),
    }
}

/// The explanation as numbered steps for a terminal (values from Azure neutralised).
pub fn render_explanation(e: &Explanation) -> String {
    let clean = terminal_safe;
    let mut out = String::new();
    let _ = writeln!(out, "cluster  {}", clean(e.cluster.id.as_str()));
    let _ = writeln!(out, "registry {}", clean(e.registry.id.as_str()));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "1. cluster: subscription {}, resource group {}, location {}, provisioningState {}",
        clean(&e.cluster.subscription),
        clean(e.cluster.resource_group.as_deref().unwrap_or("?")),
        clean(&e.cluster.location),
        clean(&e.cluster.provisioning_state)
    );
    let tags: Vec<String> = e
        .cluster
        .tags
        .iter()
        .map(|(k, v)| format!("{}={}", clean(k), clean(v)))
        .collect();
    let _ = writeln!(
        out,
        "   tags: {}",
        if tags.is_empty() {
            "(none)".to_owned()
        } else {
            tags.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "2. registry tag `{}`: {}",
        clean(&e.registry.tag_name),
        e.registry
            .tag_value
            .as_deref()
            .map_or_else(|| "absent".to_owned(), |v| format!("`{}`", clean(v)))
    );
    match &e.selection {
        Selection::NotOptedIn => {
            let _ = writeln!(out, "   → not opted in: the registry selects no cluster");
        }
        Selection::All => {
            let _ = writeln!(out, "   → `*`: every cluster in scope is selected");
        }
        Selection::Selector { canonical, steps } => {
            let _ = writeln!(out, "   selector {}", clean(canonical));
            for step in steps {
                let _ = writeln!(
                    out,
                    "   {} {:<30} cluster's {} = {}",
                    if step.passed { "✓" } else { "✗" },
                    clean(&step.requirement),
                    clean(&step.key),
                    step.cluster_value
                        .as_deref()
                        .map_or_else(|| "(absent)".to_owned(), clean)
                );
            }
        }
        Selection::Invalid { error } => {
            let _ = writeln!(out, "   ✗ invalid selector: {}", clean(error));
        }
    }
    let _ = writeln!(
        out,
        "3. cluster opt-out (`{}=off`): {}",
        clean(&e.registry.tag_name),
        if e.cluster_opted_out {
            "yes: never selected"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "   → {}",
        if e.selected {
            "selected"
        } else {
            "not selected"
        }
    );
    let tenant = |t: &Option<String>| t.as_deref().map_or_else(|| "unknown".to_owned(), clean);
    let _ = writeln!(
        out,
        "4. tenants: cluster {}, registry {}, handler {}",
        tenant(&e.tenants.cluster),
        tenant(&e.tenants.registry),
        tenant(&e.tenants.handler)
    );
    let _ = writeln!(out, "5. role: {} ({})", e.role, e.role_reason);
    let _ = writeln!(
        out,
        "6. principal: {}{}",
        e.principal_id
            .as_deref()
            .map_or_else(|| "unknown".to_owned(), clean),
        e.principal_note
            .as_deref()
            .map(|n| format!(" — {}", clean(n)))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "7. assignments at the registry and above:");
    for level in [
        ScopeLevel::Registry,
        ScopeLevel::ResourceGroup,
        ScopeLevel::Subscription,
        ScopeLevel::ManagementGroup,
        ScopeLevel::Root,
    ] {
        let here: Vec<&ScopedAssignment> =
            e.assignments.iter().filter(|a| a.level == level).collect();
        if here.is_empty() && matches!(level, ScopeLevel::ManagementGroup | ScopeLevel::Root) {
            continue;
        }
        let _ = writeln!(out, "   {} scope:", level.as_str());
        if here.is_empty() {
            let _ = writeln!(out, "     (none)");
        }
        for a in here {
            let _ = writeln!(
                out,
                "     {}{} for {} — {} [{}]",
                clean(&a.role),
                if a.owned { " (ours)" } else { "" },
                clean(&a.principal_id),
                a.covers_pull.as_deref().map_or_else(
                    || "does not grant pull here".to_owned(),
                    |c| format!("covers pull: {}", clean(c))
                ),
                clean(&a.id)
            );
        }
    }
    if e.assignments_elsewhere > 0 {
        let _ = writeln!(
            out,
            "   ({} more assignment(s) of the principal on other resources)",
            e.assignments_elsewhere
        );
    }
    let _ = writeln!(out, "8. verdict: {}", clean(&e.verdict.text));
    for note in &e.notes {
        let _ = writeln!(out, "   note: {}", clean(note));
    }
    out
}

/// Control characters (ESC, CR, newlines, …) escaped, so text from Azure cannot drive the operator's terminal.
fn terminal_safe(text: &str) -> String {
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

// ---------------------------------------------------------------------------------------------------------------
// Progress

/// Progress on stderr: plain stage lines when stderr is not a terminal; on a terminal, an indicatif bar (writes
/// done / writes planned) or spinner (requests sent) that appears once the run has lasted [`PROGRESS_DELAY`].
struct Progress {
    terminal: bool,
    state: Arc<Mutex<StageState>>,
    done: Arc<AtomicBool>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

struct StageState {
    label: String,
    total_writes: Option<u64>,
    writes_before: u64,
}

fn writes_sent(client: &AzureClient) -> u64 {
    let stats = client.stats();
    stats.operation(Operation::PutRoleAssignment) + stats.operation(Operation::DeleteRoleAssignment)
}

impl Progress {
    fn start(client: AzureClient) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(StageState {
            label: String::new(),
            total_writes: None,
            writes_before: 0,
        }));
        let done = Arc::new(AtomicBool::new(false));
        let ticker = terminal.then(|| {
            let (state, done) = (state.clone(), done.clone());
            tokio::spawn(async move { tick(client, state, done).await })
        });
        Self {
            terminal,
            state,
            done,
            ticker,
        }
    }

    fn stage(&self, label: impl Into<String>, total_writes: Option<u64>) {
        let label = label.into();
        if !self.terminal {
            eprintln!("{label}");
        }
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.label = label;
        state.total_writes = total_writes;
        state.writes_before = u64::MAX; // set by the ticker on its next look
    }

    async fn finish(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.await;
        }
    }
}

async fn tick(client: AzureClient, state: Arc<Mutex<StageState>>, done: Arc<AtomicBool>) {
    let started = Instant::now();
    let requests_before = client.stats().total();
    let mut bar: Option<(indicatif::ProgressBar, Option<u64>)> = None;
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    while !done.load(Ordering::Relaxed) {
        interval.tick().await;
        let (label, total, writes_done) = {
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if s.writes_before == u64::MAX {
                s.writes_before = writes_sent(&client);
            }
            (
                s.label.clone(),
                s.total_writes,
                writes_sent(&client).saturating_sub(s.writes_before),
            )
        };
        if started.elapsed() < PROGRESS_DELAY {
            continue;
        }
        let requests = client.stats().total().saturating_sub(requests_before);
        // A new bar when the stage switches between spinner and bar.
        if bar.as_ref().is_none_or(|(_, t)| *t != total) {
            if let Some((old, _)) = bar.take() {
                old.finish_and_clear();
            }
            let pb = match total {
                Some(n) => indicatif::ProgressBar::new(n).with_style(
                    indicatif::ProgressStyle::with_template(
                        "{spinner} {msg} [{bar:30}] {pos}/{len} writes ({elapsed})",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                ),
                None => indicatif::ProgressBar::new_spinner().with_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                ),
            };
            pb.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            bar = Some((pb, total));
        }
        if let Some((pb, total)) = &bar {
            if total.is_some() {
                pb.set_message(label);
                pb.set_position(writes_done);
            } else {
                pb.set_message(format!("{label}: {requests} requests"));
                pb.tick();
            }
        }
    }
    if let Some((pb, _)) = bar {
        pb.finish_and_clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::MapEnv;
    use crate::model::{Cluster, Registry, Tags, ownership_description};

    const SUB: &str = "11111111-1111-4111-8111-111111111111";
    const PRINCIPAL: &str = "0000aaaa-0000-4000-8000-000000000001";

    fn cluster(tags: &[(&str, &str)]) -> Cluster {
        Cluster {
            id: ResourceId::parse(&format!(
                "/subscriptions/{SUB}/resourceGroups/apps/providers/Microsoft.ContainerService/managedClusters/aks1"
            ))
            .unwrap(),
            location: "westeurope".into(),
            tenant_id: None,
            tags: tags.iter().copied().collect::<Tags>(),
            provisioning_state: "Succeeded".into(),
            principal: ClusterPrincipal::Kubelet {
                object_id: PRINCIPAL.into(),
                client_id: None,
            },
        }
    }

    fn registry(tag: Option<&str>, mode: RoleAssignmentMode) -> Registry {
        Registry {
            id: ResourceId::parse(&format!(
                "/subscriptions/{SUB}/resourceGroups/platform/providers/Microsoft.ContainerRegistry/registries/acr1"
            ))
            .unwrap(),
            location: "westeurope".into(),
            tenant_id: None,
            tags: tag
                .map(|v| vec![("acr-autoattach", v)])
                .unwrap_or_default()
                .into_iter()
                .collect::<Tags>(),
            mode,
        }
    }

    fn assignment(scope: &str, role: &str, owned_by: Option<&Cluster>) -> RoleAssignment {
        RoleAssignment {
            id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/x-{role}"),
            name: format!("x-{role}"),
            scope: scope.to_owned(),
            role_definition_guid: role.to_owned(),
            principal_id: PRINCIPAL.to_owned(),
            principal_type: Some("ServicePrincipal".into()),
            description: owned_by.map(|c| ownership_description(&c.id)),
            condition: None,
        }
    }

    fn settings(detach: bool) -> PlanSettings {
        let mut s = PlanSettings::new("acr-autoattach");
        s.detach = detach;
        s
    }

    fn observed(c: Cluster, r: Registry, assignments: Vec<RoleAssignment>) -> Observed {
        Observed {
            clusters: vec![c],
            registries: vec![r],
            assignments,
            ..Observed::default()
        }
    }

    #[test]
    fn selector_steps_show_each_requirement_with_the_clusters_value() {
        let o = observed(
            cluster(&[("env", "prod")]),
            registry(
                Some("env=prod,team=web"),
                RoleAssignmentMode::LegacyRegistryPermissions,
            ),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        let Selection::Selector { steps, .. } = &e.selection else {
            panic!("{:?}", e.selection)
        };
        assert_eq!(steps.len(), 2);
        assert!(steps[0].passed && !steps[1].passed);
        assert_eq!(steps[1].cluster_value, None);
        assert!(!e.selected);
        assert_eq!(e.verdict.status, "not_selected");
        assert!(e.verdict.in_order);
        let text = render_explanation(&e);
        assert!(text.contains("✗ team=web"), "{text}");
        assert!(text.contains("(absent)"), "{text}");
    }

    #[test]
    fn human_pull_at_resource_group_is_compliant_and_listed_at_its_level() {
        let r = registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions);
        let rg_scope = r.id.resource_group_scope().unwrap();
        let o = observed(
            cluster(&[]),
            r,
            vec![assignment(&rg_scope, crate::model::ACR_PULL_GUID, None)],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(e.verdict.status, "compliant", "{:?}", e.verdict);
        assert_eq!(e.assignments.len(), 1);
        assert_eq!(e.assignments[0].level, ScopeLevel::ResourceGroup);
        assert!(e.assignments[0].covers_pull.is_some());
        assert!(render_explanation(&e).contains("resource_group scope:\n     AcrPull for"));
    }

    #[test]
    fn abac_registry_explains_the_role_and_that_acrpull_does_not_cover() {
        let r = registry(Some("*"), RoleAssignmentMode::AbacRepositoryPermissions);
        let scope = r.id.as_str().to_owned();
        let o = observed(
            cluster(&[]),
            r,
            vec![assignment(&scope, crate::model::ACR_PULL_GUID, None)],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(e.role, PullRole::RepositoryReader);
        assert!(e.role_reason.contains("AbacRepositoryPermissions"));
        assert_eq!(e.verdict.status, "missing");
        assert!(e.assignments[0].covers_pull.is_none());
    }

    #[test]
    fn owned_assignment_on_an_untagged_registry_is_due_for_removal_with_detach() {
        let c = cluster(&[]);
        let r = registry(None, RoleAssignmentMode::LegacyRegistryPermissions);
        let scope = r.id.as_str().to_owned();
        let a = assignment(&scope, crate::model::ACR_PULL_GUID, Some(&c));
        let o = observed(c, r, vec![a]);
        assert_eq!(
            explain_pair(&o, &settings(true)).unwrap().verdict.status,
            "remove"
        );
        let kept = explain_pair(&o, &settings(false)).unwrap();
        assert_eq!(kept.verdict.status, "not_selected");
    }

    #[test]
    fn invalid_selector_and_opt_out_are_reported() {
        let o = observed(
            cluster(&[]),
            registry(
                Some("env in (prod"),
                RoleAssignmentMode::LegacyRegistryPermissions,
            ),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert!(matches!(e.selection, Selection::Invalid { .. }));
        assert_eq!(e.verdict.status, "invalid_selector");
        assert!(!e.verdict.in_order);

        let o = observed(
            cluster(&[("acr-autoattach", "off")]),
            registry(Some("*"), RoleAssignmentMode::LegacyRegistryPermissions),
            vec![],
        );
        let e = explain_pair(&o, &settings(false)).unwrap();
        assert!(e.cluster_opted_out && !e.selected);
        assert_eq!(e.verdict.status, "not_selected");
    }

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
