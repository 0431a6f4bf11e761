//! warden-fleet: Warden's fleet state in etcd v3 (docs/fleet-design.md).
//!
//! - [`keys`]: the key layout under one prefix (default `/warden/v1/`);
//! - [`records`]: the JSON values stored at those keys;
//! - [`rbac`]: the etcd roles and users `warden fleet init` writes;
//! - [`Fleet`]: a connection to etcd and the operations on the fleet's state: policy
//!   as per-tenant keys with a generation, suspensions, the audit log, node
//!   registrations, published flags and review decisions. Every write that decides on
//!   what it read is one etcd transaction with compare-and-swap on the revisions read;
//!   a lost race is [`FleetError::Conflict`] naming the key that changed.
//!
//! A policy is stored as versions per generation (`policy/tenants/<id>/<generation>`)
//! under a committed generation (`policy/generation`): an apply of any size stages its
//! versions in batches under a lease-bound lock, then commits them with one small
//! compare-and-swap transaction on the generation. Readers take, per tenant, the
//! newest version at or below the committed generation, so a node sees a whole apply
//! or none of it, and a crashed applier's staging is never in force (the next apply
//! deletes it). See `stage.rs` and docs/fleet-design.md, "Staged applies".
//!
//! No aya, rusqlite or warden-dataplane here: the daemon wires the fleet to the rest.

mod client;
mod error;
mod health;
pub mod keys;
mod policy;
pub mod rbac;
pub mod records;
mod review;
mod stage;
mod suspensions;
mod watch;

pub use client::{Connect, Fleet, TlsFiles};
pub use error::FleetError;
pub use keys::{Layout, DEFAULT_PREFIX};
pub use policy::{PolicySnapshot, Scope};
pub use review::{PublishedFlag, Registration};
pub use stage::Applied;
pub use watch::{Change, Watch};
