//! A faithful local stand-in for the Azure services acr-autoattach talks to and is driven by: ARM, Microsoft
//! Graph, the App Service managed-identity endpoint, Resource Graph, Event Grid delivery and the Azure
//! Functions host. Every server binds 127.0.0.1 only.

pub mod admin;
mod app;
pub mod arm;
pub mod bus;
pub mod cli;
pub mod config;
pub mod credential;
mod crypto;
mod cursors;
pub mod eventgrid;
pub mod functions_host;
pub mod groups;
pub mod limits;
pub mod rbac;
pub mod resource_graph;
mod server;
pub mod stats;
pub mod store;
pub mod tls;
pub mod token;

pub use app::PrincipalSpec;
pub use config::{
    BucketLimit, ClusterEventTiming, EmulatorConfig, FaultConfig, HandlerRights, Settings,
    SubscriptionConfig,
};
pub use server::{Emulator, EmulatorControl, EmulatorError, RunningEmulator};
pub use stats::{PageWork, StatEntry, StatsSnapshot};
pub use store::{Principal, PrincipalKind};
