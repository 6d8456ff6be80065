//! acr-autoattach: grants AKS kubelet identities pull access to the container registries whose opt-in tag
//! selects them, verifies it continuously and repairs drift.
//!
//! The layers (see `docs/architecture.md`); dependencies point down only:
//! - [`cli`]: argument parsing, the operator commands and their rendering, reports, the demo;
//! - [`runtime`]: the custom-handler contract, the functions, the engine, bootstrap, configuration;
//! - [`azure`] and [`telemetry`]: the Azure client and the exporters;
//! - [`core`]: pure data in, data out (model, roles, events, selectors, planner, explanation, alert planning).

pub mod azure;
pub mod cli;
pub mod core;
pub mod runtime;
pub mod telemetry;
