//! The running handler: the custom-handler contract (HTTP), the functions behind it, the engine that reads
//! Azure and applies plans, and how the process is configured and assembled.

pub mod alerting;
pub mod bootstrap;
pub mod config;
pub mod contract;
pub mod engine;
#[cfg(test)]
mod engine_tests;
#[cfg(test)]
pub(crate) mod fake_azure;
pub mod functions;
pub mod pair_records;
pub mod singleflight;
