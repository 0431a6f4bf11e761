//! Builds the eBPF objects (warden-ebpf) with the nightly toolchain and bpf-linker so a
//! plain `cargo build` produces a daemon with its kernel programs embedded: `warden`,
//! which the daemon embeds and loads, and `warden-bench`, the benchmark's, whose path
//! goes to the crates that depend on this one as `DEP_WARDEN_OBJECTS_BENCH` (see
//! `links` in Cargo.toml; tests/bench embeds it).
use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let pkg = Package {
        name: "warden-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/programs"),
        ..Default::default()
    };
    aya_build::build_ebpf([pkg], Toolchain::default())
        .context("building the eBPF programs (run `cargo xtask setup` if a tool is missing)")?;
    let out = std::env::var("OUT_DIR").context("OUT_DIR is not set")?;
    println!("cargo::metadata=bench={out}/warden-bench");
    Ok(())
}
