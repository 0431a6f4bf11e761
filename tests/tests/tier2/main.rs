//! Tier 2: the daemon on the standard namespace lab (host and gateway mode), real
//! traffic from real tools, exact counts, enforcement, and detection of attacks (with
//! their benign look-alikes).
//!
//! Needs root. Run with `cargo test -p warden-tests --test tier2 -- --test-threads=1`
//! after `cargo build -p warden` (`cargo xtask test` does both).

mod api;
mod api_limits;
mod benign;
mod common;
mod console;
mod containment;
mod detection;
mod enforcement;
mod flags;
mod fleet;
mod fleet_scale;
mod hardening;
mod metering;
mod monitoring;
mod operations;
mod package;
mod policy_input;
mod ports;
mod privileges;
mod proxies;
mod review;
mod shaping;
mod spam;
mod spoofing;
mod start;
mod suspension;
