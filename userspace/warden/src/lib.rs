//! warden: the daemon and the CLI, wiring the layer crates together.
//!
//! Data flows one way, and the crate graph enforces it: `warden_policy` (the policy file
//! and the shared vocabulary) -> `warden_dataplane` (the only aya user) and
//! `warden_detect` (detectors, ladder, pipeline; pure) and `warden_store` (the only
//! rusqlite user), which know nothing of each other. This crate composes them:
//! [`daemon`] runs them as owners for `warden run`, [`api`] serves the HTTP API from the
//! [`api::Backend`] the daemon implements (and [`controller`], the fleet's API, too), [`views`] are the documents it serves and the
//! CLI reads, [`metrics`] writes every Prometheus family, [`state`] checks and restores
//! the state database's suspensions, [`auth`] reads the token file, and [`cli`] is the
//! command line.

/// This build: the crate version and the git commit it was built from (build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WARDEN_GIT_COMMIT"),
    ")"
);

pub mod api;
pub mod auth;
pub mod cli;
pub mod controller;
pub mod daemon;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod privileges;
pub mod state;
pub mod views;

/// The dataplane layer under its old path, for the Tier 1 tests, which name it through
/// this crate (`warden::dataplane::loader`); everything else uses `warden_dataplane`.
pub use warden_dataplane as dataplane;
