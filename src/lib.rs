//! acr-autoattach: grants AKS kubelet identities pull access to the container registries whose opt-in tag
//! selects them, verifies it continuously and repairs drift.

pub mod alerting;
pub mod azure;
pub mod bootstrap;
pub mod config;
pub mod demo;
pub mod events;
pub mod functions;
pub mod host;
pub mod model;
pub mod ncrontab;
pub mod operator;
pub mod planner;
pub mod reconcile;
pub mod report;
pub mod selector;
pub mod telemetry;
pub mod testbed;
