//! What a person runs: the command line (parsed here), the operator commands and their rendering, the
//! HTML/JSON reports, and — with the default `demo` feature — the demo and the loopback test bed it stands on.
//! The deployable Function App binary is built without that feature and links no emulator.

use clap::{Parser, Subcommand};

#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
pub mod estate;
pub mod explain;
pub mod operator;
pub mod progress;
pub mod report;
#[cfg(feature = "demo")]
pub mod testbed;

/// Attach Azure Container Registries to AKS clusters by opt-in tags, verify continuously, repair drift.
///
/// Registries opt in with a tag (default `acr-autoattach`) whose value selects clusters (`*`, or a label
/// selector over cluster tags such as `env=prod`). Each selected cluster's kubelet identity gets AcrPull
/// (or Container Registry Repository Reader on ABAC registries) on the registry.
#[derive(Debug, Parser)]
#[command(name = "acr-autoattach", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole mission on loopback: the Azure emulator, Event Grid and the Functions host start in this
    /// process, the host launches this binary as its handler, an estate of 2 subscriptions, 3 registries and 6
    /// clusters is built through ARM PUTs, events flow by themselves, and every (cluster, registry) pair is
    /// read back and compared with what it must be. Exit 0 only when every pair ended as expected.
    #[cfg(feature = "demo")]
    Demo {
        /// Print one JSON document (`pairs`, `summary`) instead of the table; progress goes to stderr.
        #[arg(long)]
        json: bool,
    },
    /// Run as the Azure Functions custom handler: an HTTP server on 127.0.0.1 that the Functions host
    /// invokes for OnResourceEvent (Event Grid) and VerifyAttachments (timer).
    ///
    /// The port comes from FUNCTIONS_CUSTOMHANDLER_PORT (set by the host) unless --port is given.
    /// Configuration comes from app settings (environment); `acr-autoattach config` shows it.
    Serve {
        /// Port to listen on (default: $FUNCTIONS_CUSTOMHANDLER_PORT).
        #[arg(long)]
        port: Option<u16>,
    },
    /// Print the effective configuration (from the environment), validated, with secrets redacted.
    Config,
    /// Audit every (cluster, registry) pair in scope and report; never writes.
    ///
    /// Same engine as the timer, in audit mode. Exit 0 when every pair is compliant, 1 when some are not (or a
    /// selector is invalid, or the run stopped at its deadline), 2 on error. `--output html FILE` writes one
    /// self-contained page (clusters × registries matrix). Identity: the `az login` session, or the managed
    /// identity when IDENTITY_ENDPOINT is set (e.g. `eval "$(azure-emulator serve)"`); endpoints and tag come
    /// from AUTOATTACH_* settings.
    Verify(operator::VerifyArgs),
    /// Show what would be created and removed in scope, then do it (unless --dry-run), then show the results.
    ///
    /// Always enforce mode; removes owned assignments that are no longer wanted only with detach
    /// (AUTOATTACH_DETACH or --detach), never an assignment without the ownership mark. Exit 0 when everything
    /// ends compliant (dry run: nothing to do), 1 otherwise, 2 on error.
    Reconcile(operator::ReconcileArgs),
    /// Explain one (cluster, registry) pair step by step; reads only.
    ///
    /// The registry's selector evaluated against the cluster's tags, location, subscription and resource group;
    /// the cluster's opt-out; tenants; the role the registry's mode needs and why; the principal's assignments at
    /// registry, resource-group and subscription scope and whether each covers pull; the verdict. Exit 0 when the
    /// pair is in order, 1 when something is to do, 2 on error.
    Explain(operator::ExplainArgs),
}
