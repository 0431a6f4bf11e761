//! Warden: per-tenant network enforcement.
//!
//! Data flows one way: [`policy`] (parse, validate, compile) -> [`dataplane`] (the only
//! module that touches aya) -> [`detect`] (facts to detections) -> [`enforce`] (the
//! ladder) -> [`store`] (flags, evidence, suspensions); [`watch`] is the pipeline that
//! carries kernel events and counters through them; [`metrics`] and [`api`] read the
//! state. [`suspension`] keeps suspensions above policy and store loss (pure logic);
//! [`state`] checks and restores the state database's suspensions. [`daemon`] wires them together for `warden run`; [`cli`] is the command line.

pub mod api;
pub mod auth;
pub mod cli;
pub mod daemon;
pub mod memory;
pub mod metrics;
pub mod state;
pub mod views;

/// The dataplane layer under its old path, for the Tier 1 tests, which name it through
/// this crate (`warden::dataplane::loader`); everything else uses `warden_dataplane`.
pub use warden_dataplane as dataplane;
