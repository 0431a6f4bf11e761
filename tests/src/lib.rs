//! Warden's test harness, shared by the privileged test tiers and `cargo xtask demo`/`bench`.
//!
//! - [`lab`]: network namespaces, veth pairs and processes inside them, all removed on drop.
//! - [`packets`]: frame builders for BPF_PROG_TEST_RUN fixtures.

pub mod lab;
pub mod packets;
