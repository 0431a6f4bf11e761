//! Warden's test harness, shared by the privileged test tiers and `cargo xtask demo`/`bench`.
//!
//! - [`cmd`]: running the workspace's commands (builds, tools) with clear errors.
//! - [`console`]: the console's queue of many flags in a browser, timed the same way
//!   by the Tier 2 test and the bench.
//! - [`delayline`]: a userspace delay line that gives the lab's links a WAN's round-trip time.
//! - [`evidence`]: what the daemon concluded: flags and their evidence, metric series.
//! - [`fleetlab`]: the fleet lab: a 3-member etcd, the controller, 20 host-mode and 2
//!   gateway-mode fleet nodes, each in its own namespace, and a shared outside.
//! - [`http`]: a tiny HTTP client that runs inside a lab namespace.
//! - [`lab`]: network namespaces, veth pairs and processes inside them, all removed on drop.
//! - [`model`]: a reference model of the programs' verdicts and counters, for the
//!   differential test.
//! - [`packets`]: frame builders for BPF_PROG_TEST_RUN fixtures.
//! - [`rawframe`]: crafted frames sent from a namespace and counted where they arrive.
//! - [`topology`]: the standard lab of `configs/demo.yaml`, optionally with an outside
//!   network of many hosts.
//! - [`wait`]: [`wait::eventually`], polling a condition until it holds or a timeout
//!   passes (the tests' only way to wait for something to happen).
//! - [`workloads`]: servers, clients and attack tools for the detection labs.

pub mod cmd;
pub mod console;
pub mod delayline;
pub mod evidence;
pub mod fleetlab;
pub mod http;
pub mod lab;
pub mod model;
pub mod noise;
pub mod packets;
pub mod pki;
pub mod rawframe;
pub mod topology;
pub mod wait;
pub mod webdriver;
pub mod workloads;
