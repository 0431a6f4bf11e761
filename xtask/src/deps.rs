//! xtask must build on a machine without the eBPF toolchain, since it is what installs
//! it: no crate in its normal or build dependency tree may build eBPF. Those that do are
//! `aya-build`, the crate whose build script calls it (`warden-dataplane`, which embeds
//! the object), the crates that depend on that one (`warden`, the daemon) and the eBPF
//! crate itself. `cargo xtask test` runs [`check`] first.

use anyhow::{bail, Context as _, Result};

use crate::util;

/// Crates that build eBPF (or embed what was built), by package name.
const BUILDS_EBPF: &[&str] = &["aya-build", "warden-dataplane", "warden", "warden-ebpf"];

/// Fails naming every crate of xtask's dependency tree that builds eBPF.
pub fn check() -> Result<()> {
    let tree = util::capture(util::cargo().args([
        "tree",
        "--package",
        "xtask",
        "--edges",
        "normal,build",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]))
    .context("listing xtask's dependency tree")?;
    let found = builds_ebpf(&tree);
    if !found.is_empty() {
        bail!(
            "xtask depends on {}, which build(s) eBPF: on a fresh machine xtask could then \
             not be built to install the eBPF toolchain; move the code that needs it into \
             a crate xtask runs after setup (tests/bench is one)",
            found.join(", ")
        );
    }
    let crates = tree.lines().filter(|l| !l.trim().is_empty()).count();
    println!("xtask's dependency tree: {crates} crates, none of {BUILDS_EBPF:?}");
    Ok(())
}

/// The crates of `cargo tree --prefix none --format {p}` output that are in
/// [`BUILDS_EBPF`], each once, in order of appearance.
fn builds_ebpf(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for line in tree.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if BUILDS_EBPF.contains(&name) && !found.iter().any(|f| f == name) {
            found.push(name.to_owned());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_ebpf_builders_passes() {
        let tree = "xtask v0.1.0 (/w/xtask)\nanyhow v1.0.100\nwarden-tests v0.1.0 (/w/tests)\n\
                    warden-common v0.1.0 (/w/ebpf/common)\naya v0.14.0\n";
        assert!(builds_ebpf(tree).is_empty());
    }

    #[test]
    fn warden_and_aya_build_are_found_by_exact_name_once() {
        let tree = "xtask v0.1.0 (/w/xtask)\nwarden v0.1.0 (/w/userspace/warden)\n\
                    warden-dataplane v0.1.0 (/w/userspace/dataplane)\naya-build v0.2.0\n\
                    warden v0.1.0 (/w/userspace/warden) (*)\nwarden-ebpf v0.1.0 (/w/ebpf/programs)\n";
        assert_eq!(
            builds_ebpf(tree),
            ["warden", "warden-dataplane", "aya-build", "warden-ebpf"]
        );
    }

    #[test]
    fn the_layer_crates_without_the_dataplane_pass() {
        let tree = "xtask v0.1.0 (/w/xtask)\nwarden-policy v0.1.0 (/w/userspace/policy)\n\
                    warden-store v0.1.0 (/w/userspace/store)\nwarden-detect v0.1.0 (/w/userspace/detect)\n";
        assert!(builds_ebpf(tree).is_empty());
    }
}
