//! The Debian package (`cargo xtask package`) on this machine: `dpkg -i` installs the
//! binary, unit, man pages, completions and a checkable /etc/warden/warden.yaml (never
//! the example tokens as live config); the installed `warden` reports its commit and
//! checks the shipped policy; `dpkg -r` removes the programs a daemon left pinned under
//! `daemon.bpffs` of /etc/warden/warden.yaml, so no enforcement outlives the package. The
//! daemon runs in the lab's namespaces and pins in the lab's own bpffs (the test points
//! the installed policy there, as an operator edits it); a guard purges the package.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context as _, Result};
use warden_tests::cmd::{capture, cargo};
use warden_tests::topology::{warden_binary, StandardLab};

use crate::common::xdp_program;

/// The shipped policy's `daemon.bpffs`: installing must not create it.
const SHIPPED_BPFFS: &str = "/sys/fs/bpf/warden";
/// The example tokens' digests: never in /etc/warden.
const EXAMPLE_DIGEST: &str = "c729acda7247ef5b8110de320c732ef8736de7d43f14f859316df99db55e5ac0";

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "warden"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Purges the package, whatever happened (the lab's guard unpins and unmounts its
/// bpffs); removes the state and log directories the package made if they were not
/// there before.
struct Cleanup {
    made: Vec<&'static str>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", "warden"]).output();
        for dir in &self.made {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_deb_installs_checks_its_policy_and_removes_every_pin() -> Result<()> {
    ensure!(
        !installed(),
        "a warden package is already installed here; this test installs and removes its own"
    );
    let shipped_bpffs_before = Path::new(SHIPPED_BPFFS).exists();
    let warden = warden_binary()?;
    let made: Vec<&'static str> = ["/var/lib/warden", "/var/log/warden"]
        .into_iter()
        .filter(|d| !Path::new(d).exists())
        .collect();
    let _cleanup = Cleanup { made };
    let lab = StandardLab::build("wd")?;
    let out_dir = lab.lab.tempdir().join("package");
    let built = capture(
        cargo()
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "package",
                "--binary",
            ])
            .arg(&warden)
            .arg("--out")
            .arg(&out_dir),
    )?;
    let deb = built
        .lines()
        .last()
        .map(PathBuf::from)
        .context("xtask package printed no path")?;
    ensure!(deb.is_file(), "no package at {}", deb.display());

    run_ok(Command::new("dpkg").arg("-i").arg(&deb))?;
    ensure!(installed(), "dpkg -i did not install warden");
    for path in [
        "/usr/bin/warden",
        "/lib/systemd/system/warden.service",
        "/etc/warden/warden.yaml",
        "/usr/share/man/man1/warden.1.gz",
        "/usr/share/man/man1/warden-policy-check.1.gz",
        "/usr/share/bash-completion/completions/warden",
        "/usr/share/zsh/vendor-completions/_warden",
        "/usr/share/fish/vendor_completions.d/warden.fish",
        "/usr/share/doc/warden/examples/tokens.yaml",
        "/var/lib/warden",
        "/var/log/warden",
    ] {
        ensure!(Path::new(path).exists(), "{path} not installed");
    }
    for entry in std::fs::read_dir("/etc/warden")? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        ensure!(
            !text.contains(EXAMPLE_DIGEST),
            "{} holds the example tokens",
            path.display()
        );
    }
    let version = run_ok(Command::new("/usr/bin/warden").arg("--version"))?;
    ensure!(
        version.starts_with("warden ") && version.contains("(commit "),
        "warden --version: {version}"
    );
    let check = run_ok(Command::new("/usr/bin/warden").args([
        "policy",
        "check",
        "/etc/warden/warden.yaml",
    ]))?;
    ensure!(check.contains(": ok ("), "policy check: {check}");
    // Installing started nothing.
    ensure!(
        Path::new(SHIPPED_BPFFS).exists() == shipped_bpffs_before,
        "installing made {SHIPPED_BPFFS}"
    );

    // The operator points the installed policy's bpffs at the lab's; the installed
    // daemon runs in the lab and is stopped without detaching, so its programs stay
    // attached and pinned there.
    let bpffs = lab.lab.bpffs()?;
    let shipped = std::fs::read_to_string("/etc/warden/warden.yaml")?;
    let anchor = format!("  bpffs: {SHIPPED_BPFFS}\n");
    ensure!(
        shipped.contains(&anchor),
        "shipped policy has no `{anchor}`"
    );
    std::fs::write(
        "/etc/warden/warden.yaml",
        shipped.replace(&anchor, &format!("  bpffs: {}\n", bpffs.display())),
    )?;
    let policy = lab.write_policy()?;
    let daemon = lab.start_daemon(Path::new("/usr/bin/warden"), &policy, &[])?;
    daemon.stop()?;
    ensure!(
        xdp_program(&lab.node, "wan0")?.is_some(),
        "the stopped daemon's programs are not attached"
    );
    let mut pins = 0;
    for hook in ["xdp", "tcx-egress"] {
        pins += std::fs::read_dir(bpffs.join("links").join(hook))?.count();
    }
    ensure!(pins > 0, "nothing pinned under {}", bpffs.display());

    run_ok(Command::new("dpkg").args(["-r", "warden"]))?;
    ensure!(!installed(), "dpkg -r left warden installed");
    ensure!(!Path::new("/usr/bin/warden").exists(), "binary left behind");
    for sub in ["links", "progs", "maps"] {
        ensure!(
            !bpffs.join(sub).exists(),
            "{}/{sub} left after dpkg -r",
            bpffs.display()
        );
    }
    for iface in ["wan0", "lan0", "lan1"] {
        ensure!(
            xdp_program(&lab.node, iface)?.is_none(),
            "XDP still attached to {iface} after dpkg -r"
        );
    }
    eprintln!(
        "{}: installed, checked, {pins} pinned links removed by dpkg -r",
        deb.display()
    );
    Ok(())
}
