//! Builds the eBPF object (warden-ebpf) with the nightly toolchain and bpf-linker so a
//! plain `cargo build` produces a daemon with its kernel programs embedded.
use anyhow::Context as _;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let pkg = Package {
        name: "warden-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../ebpf/programs"),
        ..Default::default()
    };
    aya_build::build_ebpf([pkg], Toolchain::default())
        .context("building the eBPF programs (run `cargo xtask setup` if a tool is missing)")
}
