//! `cargo xtask package`: the Debian package, built with `dpkg-deb` from files written
//! here (no cargo-deb: the control files are a few lines, and the man pages and shell
//! completions come from the `warden` binary itself, which xtask runs but never links).
//!
//! Contents: `/usr/bin/warden`; the unit `/lib/systemd/system/warden.service`;
//! `/etc/warden/warden.yaml` (the documented example, a conffile); the token sample and
//! the monitoring configs under `/usr/share/doc/warden/examples/` only (never as live
//! configuration); man pages; bash, zsh and fish completions. `postinst` creates the
//! `warden` system user (no shell, home /var/lib/warden) the unit runs the daemon as, the
//! state and log directories it owns, the token file's directory and an empty token file
//! it can read, and starts nothing (the user stays on purge, as Debian keeps system
//! users: files it owned may remain);
//! `prerm` on removal stops the unit and removes every pinned program (`warden
//! uninstall`), so no enforcement outlives the package.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context as _, Result};

use crate::util;

/// `cargo xtask package` options.
#[derive(clap::Args)]
pub struct PackageArgs {
    /// Package this `warden` binary instead of building the release one.
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Directory for the .deb (default target/package).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

const POSTINST: &str = r#"#!/bin/sh
# The `warden` system user the unit runs the daemon as (with CAP_BPF, CAP_NET_ADMIN and
# CAP_PERFMON only), and the directories of the shipped /etc/warden/warden.yaml, owned by
# it; enforcement is not started: the operator edits the policy, makes tokens, then
# `systemctl enable --now warden`. Every step can run again (upgrades, reinstalls).
set -e
if [ "$1" = configure ]; then
    if ! getent group warden >/dev/null; then
        addgroup --system --quiet warden
    fi
    if ! getent passwd warden >/dev/null; then
        adduser --system --quiet --ingroup warden --home /var/lib/warden \
            --no-create-home --shell /usr/sbin/nologin --gecos "Warden daemon" warden
    fi
    install -d -m 0700 -o warden -g warden /var/lib/warden
    install -d -m 0750 -o warden -g warden /var/log/warden
    # Files a daemon left when it ran as root (before this user) become the user's.
    chown -R warden:warden /var/lib/warden /var/log/warden
    install -d -m 0755 /etc/warden
    if [ ! -e /etc/warden/tokens ]; then
        # No token yet: the API refuses every write until `warden token create` adds one.
        install -m 0640 -g warden /dev/null /etc/warden/tokens
    else
        # Root writes it (`warden token create` appends); the daemon only reads it.
        chgrp warden /etc/warden/tokens
        chmod 0640 /etc/warden/tokens
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    echo "warden: installed, not started. Edit /etc/warden/warden.yaml, run" \
         "'warden token create --name NAME --role admin', then" \
         "'systemctl enable --now warden'." >&2
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
# On removal (not on upgrade, where the pins keep enforcing across the new daemon's
# start): stop the daemon and remove every pinned program, link and map.
set -e
if [ "$1" = remove ]; then
    if [ -d /run/systemd/system ]; then
        systemctl stop warden.service >/dev/null 2>&1 || true
    fi
    # Exit 5: nothing pinned. Anything else is reported and stops the removal, so a
    # package is never gone while its programs still enforce.
    rc=0
    /usr/bin/warden uninstall -c /etc/warden/warden.yaml || rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then
        echo "warden: 'warden uninstall' failed (exit $rc); pins left in place" >&2
        exit 1
    fi
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -f /etc/warden/tokens
    rmdir /etc/warden 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
"#;

/// Builds the package and prints its path.
pub fn run(args: PackageArgs) -> Result<()> {
    let root = util::workspace_root();
    let binary = match args.binary {
        Some(path) => path,
        None => {
            crate::setup::run()?;
            util::run(util::cargo().args(["build", "--release", "--package", "warden"]))?;
            root.join("target/release/warden")
        }
    };
    ensure!(binary.is_file(), "no warden binary at {}", binary.display());
    let out = args.out.unwrap_or_else(|| root.join("target/package"));
    let version = env!("CARGO_PKG_VERSION");
    let arch = util::capture(Command::new("dpkg").arg("--print-architecture"))?;
    let arch = arch.trim();
    let stage = out.join(format!("warden_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    stage_files(&root, &binary, &stage)?;
    control(&stage, version, arch)?;
    let deb = out.join(format!("warden_{version}_{arch}.deb"));
    util::run(
        Command::new("dpkg-deb")
            // zstd: dpkg reads it since 1.21.18 (Debian 12), and it packs a debug build's
            // 160 MB binary in seconds where xz takes minutes.
            .args(["--root-owner-group", "-Zzstd", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    println!("{}", deb.display());
    Ok(())
}

fn stage_files(root: &Path, binary: &Path, stage: &Path) -> Result<()> {
    let configs = root.join("configs");
    copy(binary, &stage.join("usr/bin/warden"), 0o755)?;
    copy(
        &configs.join("warden.service"),
        &stage.join("lib/systemd/system/warden.service"),
        0o644,
    )?;
    copy(
        &configs.join("warden.yaml"),
        &stage.join("etc/warden/warden.yaml"),
        0o644,
    )?;
    let examples = stage.join("usr/share/doc/warden/examples");
    for name in [
        "tokens.yaml",
        "grafana-dashboard.json",
        "prometheus-rules.yaml",
        "warden.yaml",
    ] {
        copy(&configs.join(name), &examples.join(name), 0o644)?;
    }
    copy(
        &root.join("README.md"),
        &stage.join("usr/share/doc/warden/README.md"),
        0o644,
    )?;
    let man = stage.join("usr/share/man/man1");
    util::run(Command::new(binary).arg("man").arg(&man))?;
    for page in fs::read_dir(&man).with_context(|| format!("listing {}", man.display()))? {
        let page = page?.path();
        util::run(Command::new("gzip").args(["-9n"]).arg(&page))?;
    }
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/warden"),
        ("zsh", "usr/share/zsh/vendor-completions/_warden"),
        ("fish", "usr/share/fish/vendor_completions.d/warden.fish"),
    ] {
        let script = util::capture(Command::new(binary).args(["completion", shell]))?;
        write(&stage.join(path), &script, 0o644)?;
    }
    Ok(())
}

fn control(stage: &Path, version: &str, arch: &str) -> Result<()> {
    let size_kib = du_kib(stage)?;
    let debian = stage.join("DEBIAN");
    let text = format!(
        "Package: warden\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: Warden maintainers <warden@localhost>\n\
         Installed-Size: {size_kib}\n\
         Depends: libc6 (>= 2.36), adduser, iproute2\n\
         Section: net\n\
         Priority: optional\n\
         Description: per-tenant network enforcement with eBPF (XDP and tcx)\n \
         Warden polices each tenant's bandwidth in the kernel, binds tenants to their\n \
         addresses and MACs, and detects scanning, floods, spam, proxies and spoofing,\n \
         with an HTTP API, Prometheus metrics and an audited review workflow.\n"
    );
    write(&debian.join("control"), &text, 0o644)?;
    write(
        &debian.join("conffiles"),
        "/etc/warden/warden.yaml\n",
        0o644,
    )?;
    write(&debian.join("postinst"), POSTINST, 0o755)?;
    write(&debian.join("prerm"), PRERM, 0o755)?;
    write(&debian.join("postrm"), POSTRM, 0o755)
}

fn du_kib(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du_kib(&entry.path())? * 1024
        } else {
            meta.len()
        };
    }
    Ok(total.div_ceil(1024))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_bytes(to, &bytes, mode)
}

fn write(to: &Path, text: &str, mode: u32) -> Result<()> {
    write_bytes(to, text.as_bytes(), mode)
}

fn write_bytes(to: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(dir) = to.parent() else {
        bail!("{} has no parent directory", to.display());
    };
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", to.display()))
}
