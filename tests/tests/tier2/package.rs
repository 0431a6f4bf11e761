//! The Debian package (`cargo xtask package`) on this machine: `dpkg -i` installs the
//! binary, unit, man pages, completions and a checkable /etc/warden/warden.yaml (never
//! the example tokens as live config); the installed `warden` reports its commit and
//! checks the shipped policy; the postinst made the `warden` system user, which owns the
//! state and log directories, and the installed daemon runs as it with only the unit's
//! capabilities; `dpkg -r` removes the programs a daemon left pinned under
//! `daemon.bpffs` of /etc/warden/warden.yaml, so no enforcement outlives the package. The
//! daemon runs in the lab's namespaces and pins in the lab's own bpffs (the test points
//! the installed policy there, as an operator edits it); a guard purges the package and
//! removes the user if the test made it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use warden_tests::cmd::{capture, cargo};
use warden_tests::lab::Proc;
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
    /// Whether the `warden` user was there before (the package keeps it on purge, as
    /// Debian keeps system users; the test removes the one it made).
    had_user: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", "warden"]).output();
        for dir in &self.made {
            let _ = std::fs::remove_dir(dir);
        }
        if !self.had_user {
            let _ = Command::new("deluser")
                .args(["--system", "--quiet", "warden"])
                .output();
            let _ = Command::new("delgroup")
                .args(["--system", "--quiet", "warden"])
                .output();
        }
    }
}

/// `getent DATABASE KEY`, if there is such an entry.
fn getent(database: &str, key: &str) -> Option<String> {
    let out = Command::new("getent").args([database, key]).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `warden` system user the postinst made: (uid, gid), after checking it is a
/// system account in group `warden` with no shell and home /var/lib/warden, and that
/// it owns the state and log directories and can read (not write) the token file.
fn check_system_user() -> Result<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let entry = getent("passwd", "warden").context("postinst made no warden user")?;
    let f: Vec<&str> = entry.split(':').collect();
    ensure!(f.len() == 7, "passwd entry: {entry}");
    let (uid, gid): (u32, u32) = (f[2].parse()?, f[3].parse()?);
    ensure!(
        uid > 0 && uid < 1000,
        "warden is not a system user: {entry}"
    );
    ensure!(
        f[5] == "/var/lib/warden" && f[6] == "/usr/sbin/nologin",
        "warden's home and shell: {entry}"
    );
    let group = getent("group", "warden").context("postinst made no warden group")?;
    ensure!(
        group.split(':').nth(2) == Some(gid.to_string().as_str()),
        "warden's primary group is not `warden`: {entry} / {group}"
    );
    for dir in ["/var/lib/warden", "/var/log/warden"] {
        let m = std::fs::metadata(dir)?;
        ensure!(
            (m.uid(), m.gid()) == (uid, gid),
            "{dir} is owned by {}:{}",
            m.uid(),
            m.gid()
        );
    }
    let m = std::fs::metadata("/etc/warden/tokens")?;
    ensure!(
        (m.uid(), m.gid(), m.mode() & 0o777) == (0, gid, 0o640),
        "/etc/warden/tokens: owner {}:{} mode {:o}, not root:warden 0640",
        m.uid(),
        m.gid(),
        m.mode() & 0o777
    );
    Ok((uid, gid))
}

/// The installed unit's capabilities as `setpriv` names them (`bpf,net_admin,...`),
/// after checking that its ambient and bounding sets are the same and that it runs the
/// daemon as the warden user.
fn unit_capabilities() -> Result<String> {
    let unit = std::fs::read_to_string("/lib/systemd/system/warden.service")?;
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .with_context(|| format!("the installed unit has no {key}"))
    };
    ensure!(
        value("User=")? == "warden" && value("Group=")? == "warden",
        "the installed unit does not run as warden"
    );
    let ambient = value("AmbientCapabilities=")?;
    ensure!(
        ambient == value("CapabilityBoundingSet=")?,
        "ambient and bounding sets differ in the installed unit"
    );
    Ok(ambient
        .split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect::<Vec<_>>()
        .join(","))
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
    let had_user = getent("passwd", "warden").is_some();
    let _cleanup = Cleanup { made, had_user };
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
    let (uid, gid) = check_system_user()?;
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
    // daemon runs in the lab as the unit runs it (the warden user, the unit's
    // capabilities only) and is stopped without detaching, so its programs stay
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
    let daemon = start_as_warden(&lab, &policy, (uid, gid))?;
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
        "{}: installed, user warden ({uid}), daemon ran as it, {pins} pinned links \
         removed by dpkg -r",
        deb.display()
    );
    Ok(())
}

/// `/usr/bin/warden run -c POLICY` in the lab's node namespace as the warden user with
/// the installed unit's capabilities (what systemd does with User= and
/// AmbientCapabilities=), its state directory the user's as StateDirectory= makes it;
/// waits until it serves and checks who it runs as.
fn start_as_warden(lab: &StandardLab, policy: &Path, (uid, gid): (u32, u32)) -> Result<Proc> {
    let caps = format!("-all,+{}", unit_capabilities()?.replace(',', ",+"));
    let state = lab.rundir()?.join("state");
    std::fs::create_dir_all(&state)?;
    std::os::unix::fs::chown(&state, Some(uid), Some(gid))?;
    let policy = policy.to_str().context("utf-8")?;
    let mut daemon = lab.node.spawn(&[
        "setpriv",
        "--reuid=warden",
        "--regid=warden",
        "--init-groups",
        &format!("--inh-caps={caps}"),
        &format!("--ambient-caps={caps}"),
        &format!("--bounding-set={caps}"),
        "--",
        "/usr/bin/warden",
        "run",
        "-c",
        policy,
    ])?;
    daemon
        .wait_log("serving API", Duration::from_secs(60))
        .context("the installed daemon did not start as the warden user")?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .context("no Uid line")?;
    ensure!(
        line.split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "the daemon runs as {line}, not warden ({uid})"
    );
    Ok(daemon)
}
