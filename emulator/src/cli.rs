//! `azure-emulator serve [--port P] [flags]`: the ARM / Graph / token / Resource Graph emulator on one loopback
//! port. Prints the `export K=V` lines a handler needs, then `ready`, then serves until Ctrl-C.

use std::io::Write as _;

use crate::config::{
    BucketLimit, ClusterEventTiming, EmulatorConfig, HandlerRights, SubscriptionConfig,
};
use crate::server::{Emulator, EmulatorError};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Loopback port (0 = a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Tenant of the default identities and of subscriptions given without one.
    #[arg(long, default_value = crate::config::DEFAULT_TENANT)]
    pub tenant: String,
    /// A subscription, `ID[@TENANT][:DISPLAY NAME]` (repeatable; default: two subscriptions in the tenant).
    #[arg(long = "subscription")]
    pub subscriptions: Vec<String>,
    /// Locations offered in error messages (repeatable).
    #[arg(long = "location")]
    pub locations: Vec<String>,
    /// Rights of the handler identity on each subscription.
    #[arg(long, value_enum, default_value = "least-privilege")]
    pub handler_rights: HandlerRightsArg,
    /// Give the handler a user-assigned identity (exports AZURE_CLIENT_ID; token requests must name it).
    #[arg(long)]
    pub handler_user_assigned: bool,
    /// Seed of generated identifiers (object and client ids).
    #[arg(long, default_value_t = 1)]
    pub id_seed: u64,
    /// Time from an accepted cluster PUT to Succeeded, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    pub cluster_provisioning_ms: u64,
    /// When a cluster PUT publishes its write event.
    #[arg(long, value_enum, default_value = "both")]
    pub cluster_event_timing: EventTimingArg,
    /// Directory replication window for new principals, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub principal_replication_ms: u64,
    /// Resource Graph freshness lag, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub resource_graph_lag_ms: u64,
    /// Page size of ARM lists (clusters, registries, resource groups, subscriptions, role definitions).
    #[arg(long, default_value_t = 1_000)]
    pub list_page_size: usize,
    /// Page size of role-assignment lists.
    #[arg(long, default_value_t = 1_000)]
    pub role_assignment_page_size: usize,
    /// Role assignments per subscription.
    #[arg(long, default_value_t = 4_000)]
    pub role_assignment_limit: usize,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3_600)]
    pub token_lifetime_secs: u64,
    /// Seed of every random fault decision.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Latency added to every request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Random extra latency 0..=N milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_jitter_ms: u64,
    /// Probability (0..1) of an injected 5xx on ARM, Graph and Resource Graph.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Status of injected 5xx answers.
    #[arg(long, default_value_t = 503)]
    pub error_status: u16,
    /// Probability (0..1) that a connection is dropped mid-answer.
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Probability (0..1) that the token endpoint answers 500.
    #[arg(long, default_value_t = 0.0)]
    pub token_failure_rate: f64,
    /// Turn ARM's token-bucket throttling off (it is on by default, as in Azure).
    #[arg(long)]
    pub no_throttling: bool,
    /// ARM read bucket per principal per subscription, `CAPACITY/REFILL_PER_SECOND`.
    #[arg(long, default_value = "250/25", value_parser = parse_bucket)]
    pub reads: BucketLimit,
    /// ARM write bucket, `CAPACITY/REFILL_PER_SECOND`.
    #[arg(long, default_value = "200/10", value_parser = parse_bucket)]
    pub writes: BucketLimit,
    /// ARM delete bucket, `CAPACITY/REFILL_PER_SECOND`.
    #[arg(long, default_value = "200/10", value_parser = parse_bucket)]
    pub deletes: BucketLimit,
    /// Serve HTTPS with a certificate signed by a CA made at start; its file is exported as
    /// AZURE_EMULATOR_CA_FILE (and SSL_CERT_FILE / REQUESTS_CA_BUNDLE for a handler or azure-cli).
    #[arg(long)]
    pub tls: bool,
    /// Folder for the CA file with --tls (default: a fresh folder under the temp dir, removed on exit).
    #[arg(long, requires = "tls")]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Resource Graph queries per 5 s per caller.
    #[arg(long, default_value_t = 15)]
    pub resource_graph_quota: u32,
    /// Refill every ARM bucket K times faster and shorten Resource Graph's window K times (capacities and the
    /// quota stay): Azure's shape of limits, K times the pace (benchmarks).
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub refill_scale: u32,
}

fn parse_bucket(text: &str) -> Result<BucketLimit, String> {
    let (capacity, refill) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not CAPACITY/REFILL"))?;
    let capacity = capacity
        .trim()
        .parse()
        .map_err(|_| format!("`{capacity}` is not a count"))?;
    let refill_per_sec = refill
        .trim()
        .parse()
        .map_err(|_| format!("`{refill}` is not a count"))?;
    Ok(BucketLimit {
        capacity,
        refill_per_sec,
    })
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum HandlerRightsArg {
    LeastPrivilege,
    /// As infra deploys it with `enableGroupMode`: pull roles may also go to groups.
    LeastPrivilegeGroups,
    ReadOnly,
    None,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EventTimingArg {
    OnAccept,
    OnCompletion,
    Both,
}

impl ServeArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> Result<EmulatorConfig, String> {
        let mut config = EmulatorConfig {
            port: self.port,
            id_seed: self.id_seed,
            ..EmulatorConfig::default()
        };
        if uuid::Uuid::parse_str(&self.tenant).is_err() {
            return Err(format!("--tenant `{}` is not a GUID", self.tenant));
        }
        config.default_tenant = self.tenant.to_ascii_lowercase();
        if self.subscriptions.is_empty() {
            for sub in &mut config.subscriptions {
                sub.tenant_id.clone_from(&config.default_tenant);
            }
        } else {
            config.subscriptions = self
                .subscriptions
                .iter()
                .map(|raw| SubscriptionConfig::parse_flag(raw, &config.default_tenant))
                .collect::<Result<_, _>>()?;
        }
        if !self.locations.is_empty() {
            config.locations.clone_from(&self.locations);
        }
        config.handler_rights = match self.handler_rights {
            HandlerRightsArg::LeastPrivilege => HandlerRights::LeastPrivilege,
            HandlerRightsArg::LeastPrivilegeGroups => HandlerRights::LeastPrivilegeGroups,
            HandlerRightsArg::ReadOnly => HandlerRights::ReadOnly,
            HandlerRightsArg::None => HandlerRights::None,
        };
        config.handler_user_assigned = self.handler_user_assigned;
        config.tls = self.tls;
        config.tls_dir.clone_from(&self.tls_dir);
        let s = &mut config.settings;
        s.cluster_provisioning_ms = self.cluster_provisioning_ms;
        s.cluster_event_timing = match self.cluster_event_timing {
            EventTimingArg::OnAccept => ClusterEventTiming::OnAccept,
            EventTimingArg::OnCompletion => ClusterEventTiming::OnCompletion,
            EventTimingArg::Both => ClusterEventTiming::Both,
        };
        s.principal_replication_ms = self.principal_replication_ms;
        s.resource_graph_lag_ms = self.resource_graph_lag_ms;
        s.list_page_size = self.list_page_size.max(1);
        s.role_assignment_page_size = self.role_assignment_page_size.max(1);
        s.role_assignment_limit = self.role_assignment_limit;
        s.token_lifetime_secs = self.token_lifetime_secs.max(1);
        let f = &mut config.faults;
        for (name, rate) in [
            ("--error-rate", self.error_rate),
            ("--reset-rate", self.reset_rate),
            ("--token-failure-rate", self.token_failure_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if !(500..=599).contains(&self.error_status) {
            return Err("--error-status must be a 5xx status".into());
        }
        f.seed = self.seed;
        f.latency_ms = self.latency_ms;
        f.latency_jitter_ms = self.latency_jitter_ms;
        f.error_rate = self.error_rate;
        f.error_status = self.error_status;
        f.reset_rate = self.reset_rate;
        f.token_failure_rate = self.token_failure_rate;
        f.throttling = !self.no_throttling;
        f.resource_graph_quota = self.resource_graph_quota;
        f.reads = self.reads;
        f.writes = self.writes;
        f.deletes = self.deletes;
        config.faults = config.faults.clone().with_refill_scale(self.refill_scale);
        Ok(config)
    }
}

/// Why `serve` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Start(#[from] EmulatorError),
    #[error("cannot write to stdout: {0}")]
    Stdout(#[from] std::io::Error),
}

/// Runs the emulator until Ctrl-C.
pub async fn run(args: ServeArgs) -> Result<(), ServeError> {
    let config = args.config().map_err(ServeError::Config)?;
    let emulator = Emulator::start(config).await?;
    let mut out = std::io::stdout().lock();
    for (key, value) in emulator.env() {
        writeln!(out, "export {key}={value}")?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let _ = tokio::signal::ctrl_c().await;
    emulator.shutdown().await;
    Ok(())
}
