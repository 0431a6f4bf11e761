//! `cargo xtask setup`: installs and verifies what a fresh Debian 12 machine lacks to
//! build, test and run Warden. Every item is checked first and installed only when
//! missing, so a set-up machine costs a fraction of a second. One line per item; a
//! failure names the missing piece and the command that fixes it.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::util;

/// Debian packages: LLVM for bpf-linker, and the tools the namespace lab and the demo
/// drive (iproute2 for `ip`, traffic generators, capture, nftables for gateway tests).
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "iperf3",
    "hping3",
    "nmap",
    // The Tier 2 scan sweeps and the ARP spoofing test.
    "masscan",
    "dsniff",
    "tcpdump",
    "arping",
    "iputils-ping",
    "netcat-openbsd",
    "socat",
    "sqlite3",
    "ethtool",
    "nftables",
    // `sysctl`, which the lab uses to configure namespaces.
    "procps",
    // `prometheus` and `promtool`: the monitoring tests check the shipped rules and scrape the daemon.
    "prometheus",
    // HTTP from inside lab namespaces (the flags test fetches a pcap with it).
    "curl",
    // The detection labs' servers and clients (tests/src/workloads.rs): a web server
    // (busybox httpd), an SMTP sink and client, a SOCKS proxy, a DNS server and client.
    // None of them starts a service on installation.
    "busybox",
    "python3-aiosmtpd",
    "swaks",
    "microsocks",
    // The proxy tests' HTTP proxy (tinyproxy) and SOCKS5 server (danted). Both packages
    // enable a system service; setup stops and disables it ([`QUIET_SERVICES`]): the
    // tests start their own inside lab namespaces, with their own configuration.
    "tinyproxy",
    "dante-server",
    "dnsmasq-base",
    "bind9-dnsutils",
    // `systemd-analyze verify` and `security --offline` on the shipped unit (Tier 2
    // operations test); installing it starts nothing where systemd is not PID 1.
    "systemd",
    // Fleet mode (issue 18): the etcd v3 server and `etcdctl` the fleet tests and lab
    // start, and `protoc`, which the etcd-client crate's build script needs for etcd's
    // gRPC definitions.
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    // Certificates for the fleet's TLS test (a CA, etcd's server and clients' certificates).
    "openssl",
    // The console's browser test (issue 21): headless Chromium driven over WebDriver.
    "chromium",
    "chromium-driver",
    // `bpftool prog run` on the daemon's pinned program, and `bpftool net show` to find
    // it: the bench's case of the daemon's own program (tests/bench/src/bench/daemon.rs).
    "bpftool",
];

/// Services that packages of [`PACKAGES`] enable on installation and that must not run on
/// the machine: the tests start the daemons themselves, in lab namespaces only.
const QUIET_SERVICES: &[&str] = &["tinyproxy.service", "danted.service"];

/// The LLVM that bpf-linker is built against; its `llvm-config` must come first on PATH.
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const BPF_LINKER_SERIES: &str = "0.13.";
const BPF_LINKER_INSTALL: &str = "PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker \
     --version '^0.13' --no-default-features --features llvm-22";

const BPFFS: &str = "/sys/fs/bpf";

/// Capabilities the daemon and the privileged tests use, by bit number (linux/capability.h).
const CAPABILITIES: &[(u32, &str)] = &[
    (12, "CAP_NET_ADMIN"),
    (13, "CAP_NET_RAW"),
    (21, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];

/// What `setup` may assume about the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything, including the bpffs mount and the root check.
    Full,
    /// Only what builds and unprivileged tests need (`cargo xtask test --skip-privileged`).
    Unprivileged,
}

/// Full setup: everything the privileged tests and the daemon need.
pub fn run() -> Result<()> {
    run_scoped(Scope::Full)
}

/// Setup restricted to `scope`.
pub fn run_scoped(scope: Scope) -> Result<()> {
    item("debian packages", packages)?;
    item("rust toolchains", toolchains)?;
    item("bpf-linker 0.13", bpf_linker)?;
    match scope {
        Scope::Full => {
            item("bpffs at /sys/fs/bpf", bpffs)?;
            item("root and capabilities", privileges)?;
        }
        Scope::Unprivileged => {
            item("bpffs at /sys/fs/bpf", || {
                Ok("skipped (unprivileged)".into())
            })?;
            item("root and capabilities", || {
                Ok("skipped (unprivileged)".into())
            })?;
        }
    }
    Ok(())
}

/// Checks (and if need be installs) one item and prints its line; a failure names it.
fn item(name: &str, check: impl FnOnce() -> Result<String>) -> Result<()> {
    let status = check().with_context(|| format!("setup: {name} is not ready"))?;
    println!("setup: {name:<24} {status}");
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn packages() -> Result<String> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        quiet_services()?;
        return Ok(format!("ok ({} packages)", PACKAGES.len()));
    }
    let list = missing.join(" ");
    if !is_root() {
        bail!(
            "missing Debian packages: {list}; installing them needs root: \
             run `cargo xtask setup` as root, or `apt-get install -y {list}`"
        );
    }
    println!("setup: installing Debian packages: {list}");
    util::run(apt().arg("update"))
        .with_context(|| format!("apt-get update before installing {list}"))?;
    util::run(apt().args(["install", "-y"]).args(&missing))
        .with_context(|| format!("installing Debian packages {list}"))?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!(
            "Debian packages still missing after apt-get install: {}",
            still.join(" ")
        );
    }
    quiet_services()?;
    Ok(format!("installed {list}"))
}

/// Stops and disables [`QUIET_SERVICES`] where systemd runs (elsewhere nothing started
/// them: Debian's invoke-rc.d starts services through systemd or init scripts only at
/// installation, and a container's policy-rc.d refuses).
fn quiet_services() -> Result<()> {
    if !Path::new("/run/systemd/system").exists() {
        return Ok(());
    }
    let present: Vec<&str> = QUIET_SERVICES
        .iter()
        .copied()
        .filter(|unit| {
            Command::new("systemctl")
                .args(["cat", unit])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    util::run(
        Command::new("systemctl")
            .args(["disable", "--now"])
            .args(&present),
    )
    .with_context(|| format!("stopping and disabling {}", present.join(" ")))
}

fn apt() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    cmd
}

/// Packages from [`PACKAGES`] that dpkg does not report as installed.
fn missing_packages() -> Result<Vec<String>> {
    // dpkg-query exits non-zero when some package is unknown but still prints the
    // others, so read stdout regardless of the status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(PACKAGES)
        .stdin(Stdio::null())
        .output()
        .context("running dpkg-query (is this a Debian machine?)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter(|line| line.ends_with(" install ok installed"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    Ok(PACKAGES
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| p.to_string())
        .collect())
}

/// Stable with rustfmt and clippy (fmt and clippy steps), nightly with rust-src
/// (`-Z build-std=core` for the eBPF crate) and clippy (linting the eBPF crate).
fn toolchains() -> Result<String> {
    if util::probe(Command::new("rustup").arg("--version")).is_none() {
        bail!(
            "rustup could not be run (not on PATH?); install it from https://rustup.rs \
             or put it on PATH with `. ~/.cargo/env`"
        );
    }
    let mut done = Vec::new();

    let stable = installed_components(None)?
        .context("the default Rust toolchain is not installed; run `rustup default stable`")?;
    let missing: Vec<&str> = ["rustfmt", "clippy"]
        .into_iter()
        .filter(|c| !has_component(&stable, c))
        .collect();
    if !missing.is_empty() {
        util::run(
            Command::new("rustup")
                .args(["component", "add"])
                .args(&missing),
        )
        .context("adding rustfmt/clippy to the default toolchain")?;
        done.push(format!(
            "added {} to the default toolchain",
            missing.join(", ")
        ));
    }

    match installed_components(Some("nightly"))? {
        None => {
            util::run(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src,clippy",
            ]))
            .context("installing the nightly toolchain")?;
            done.push("installed nightly with rust-src, clippy".into());
        }
        Some(nightly) => {
            let missing: Vec<&str> = ["rust-src", "clippy"]
                .into_iter()
                .filter(|c| !has_component(&nightly, c))
                .collect();
            if !missing.is_empty() {
                util::run(
                    Command::new("rustup")
                        .args(["component", "add", "--toolchain", "nightly"])
                        .args(&missing),
                )
                .context("adding components to the nightly toolchain")?;
                done.push(format!("added {} to nightly", missing.join(", ")));
            }
        }
    }
    if done.is_empty() {
        Ok("ok (stable: rustfmt, clippy; nightly: rust-src, clippy)".into())
    } else {
        Ok(done.join("; "))
    }
}

/// Installed components of `toolchain` (the active one for None), or None when the
/// toolchain itself is not installed.
fn installed_components(toolchain: Option<&str>) -> Result<Option<Vec<String>>> {
    let mut cmd = Command::new("rustup");
    cmd.current_dir(util::workspace_root())
        .args(["component", "list", "--installed"]);
    if let Some(toolchain) = toolchain {
        cmd.args(["--toolchain", toolchain]);
    }
    let out = util::probe(&mut cmd).context("running rustup component list")?;
    if !out.status.success() {
        return Ok(None);
    }
    Ok(Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    ))
}

/// Components are listed with their target triple (`clippy-x86_64-...`) except
/// target-independent ones (`rust-src`).
fn has_component(installed: &[String], name: &str) -> bool {
    let with_target = format!("{name}-");
    installed
        .iter()
        .any(|c| c == name || c.starts_with(&with_target))
}

fn bpf_linker_version() -> Option<String> {
    let out = util::probe(Command::new("bpf-linker").arg("--version"))?;
    if !out.status.success() {
        return None;
    }
    // "bpf-linker 0.13.0"
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).map(str::to_owned)
}

fn bpf_linker() -> Result<String> {
    let before = bpf_linker_version();
    if let Some(version) = &before {
        if version.starts_with(BPF_LINKER_SERIES) {
            return Ok(format!("ok ({version})"));
        }
    }
    if !Path::new(LLVM_BIN).join("llvm-config").exists() {
        bail!("bpf-linker needs LLVM 22 ({LLVM_BIN}/llvm-config missing); install llvm-22-dev");
    }
    let found = before.as_deref().unwrap_or("not found");
    println!(
        "setup: bpf-linker is {found}; building 0.13 with cargo install against LLVM 22 \
         (this compiles for several minutes)"
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![LLVM_BIN.into()];
    paths.extend(std::env::split_paths(&path));
    let path = std::env::join_paths(paths).context("building PATH for cargo install")?;
    util::run(
        util::cargo()
            .env("PATH", path)
            .stdin(Stdio::null())
            .args(["install", "bpf-linker", "--version", "^0.13", "--force"])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )
    .with_context(|| format!("installing bpf-linker; to retry by hand: {BPF_LINKER_INSTALL}"))?;
    match bpf_linker_version() {
        Some(version) if version.starts_with(BPF_LINKER_SERIES) => {
            Ok(format!("installed ({version})"))
        }
        Some(version) => bail!(
            "`bpf-linker` on PATH is still {version} after installing 0.13: an older one \
             shadows ~/.cargo/bin; remove it or put ~/.cargo/bin first on PATH"
        ),
        None => bail!(
            "bpf-linker was installed but is not on PATH; add ~/.cargo/bin (`. ~/.cargo/env`)"
        ),
    }
}

fn bpffs_mounted() -> Result<bool> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_src, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(BPFFS) && fstype == Some("bpf")
    }))
}

fn bpffs() -> Result<String> {
    if bpffs_mounted()? {
        return Ok("ok".into());
    }
    if !is_root() {
        bail!("{BPFFS} is not a bpf filesystem and mounting it needs root: `mount -t bpf bpf {BPFFS}`");
    }
    util::capture(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
        .with_context(|| format!("mounting the bpf filesystem at {BPFFS}"))?;
    if !bpffs_mounted()? {
        bail!("mounted bpffs at {BPFFS} but /proc/mounts does not show it");
    }
    Ok(format!("mounted (mount -t bpf bpf {BPFFS})"))
}

fn privileges() -> Result<String> {
    if !is_root() {
        bail!(
            "not running as root: loading eBPF programs and building namespace labs needs \
             root; run `cargo xtask ...` as root (or `cargo xtask test --skip-privileged`)"
        );
    }
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .context("no CapEff line in /proc/self/status")?;
    let missing: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(bit, _)| effective & (1 << bit) == 0)
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        bail!(
            "running as root but without {}: run in a privileged container or on the host",
            missing.join(", ")
        );
    }
    Ok("ok (euid 0, CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN CAP_PERFMON CAP_BPF)".into())
}
