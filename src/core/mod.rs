//! The pure core: data in, data out. Nothing here performs I/O or names a layer above it
//! (`tests/layers.rs` keeps it that way).

pub mod alerts;
pub mod events;
pub mod explain;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod groups;
pub mod model;
pub mod ncrontab;
pub mod outcome;
pub mod planner;
pub mod roles;
pub mod selector;
