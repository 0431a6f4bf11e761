//! Operations: the daemon under a service manager and a log shipper, with no systemd
//! needed. A test listener stands in for systemd's NOTIFY_SOCKET: READY=1 arrives only
//! once the policy is enforced, WATCHDOG=1 keeps arriving, STOPPING=1 on SIGTERM; with
//! `daemon.log_format: json` every line after the policy is read is one JSON object, and
//! aya's debug output stays out by default. The shipped unit passes `systemd-analyze
//! verify` and scores at most 2.5 on `systemd-analyze security --offline`.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::topology::{warden_binary, StandardLab};
use warden_tests::wait::eventually;

use crate::common::xdp_program;

/// The datagrams received so far (each one `KEY=VALUE` lines), without blocking.
fn drain(socket: &UnixDatagram, into: &mut Vec<String>) -> Result<()> {
    let mut buf = [0u8; 4096];
    loop {
        match socket.recv(&mut buf) {
            Ok(n) => into.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e).context("reading the notify socket"),
        }
    }
}

#[test]
fn readiness_follows_enforcement_the_watchdog_pings_and_json_logs_parse() -> Result<()> {
    let lab = StandardLab::build("wn")?;
    let warden = warden_binary()?;
    let w = warden.to_str().context("utf-8")?;
    let text = lab.policy_text()?;
    let anchor = "  open_metrics: true\n";
    ensure!(
        text.contains(anchor),
        "demo policy has no open_metrics line"
    );
    let json_policy = text.replace(anchor, &format!("{anchor}  log_format: json\n"));
    let policy = lab.lab.tempdir().join("json-logs.yaml");
    std::fs::write(&policy, json_policy)?;
    let policy_s = policy.to_str().context("utf-8")?;

    // A path socket: reachable from the node namespace (abstract ones are per namespace).
    let sock_path = lab.lab.tempdir().join("notify.sock");
    let socket = UnixDatagram::bind(&sock_path).context("binding the notify socket")?;
    socket.set_nonblocking(true)?;
    let notify_env = format!("NOTIFY_SOCKET={}", sock_path.display());
    // 2 s: a ping every second.
    let mut daemon = lab.node.spawn(&[
        "env",
        &notify_env,
        "WATCHDOG_USEC=2000000",
        "RUST_LOG=",
        w,
        "run",
        "-c",
        policy_s,
        "--detach-on-exit",
    ])?;

    // READY=1: at the moment it arrives, the programs are attached and the policy is in
    // force (generation 1 over the API). Nothing but READY may come first.
    let mut got = Vec::new();
    let started = Instant::now();
    loop {
        drain(&socket, &mut got)?;
        if got.iter().any(|d| d.lines().any(|l| l == "READY=1")) {
            break;
        }
        if let Some(status) = daemon.try_wait()? {
            bail!("daemon exited {status} before READY=1:\n{}", daemon.log());
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "no READY=1 within 60 s: {got:?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for iface in ["wan0", "lan0", "lan1"] {
        ensure!(
            xdp_program(&lab.node, iface)?.is_some(),
            "READY=1 sent before XDP was attached to {iface}"
        );
    }
    let status: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
    ensure!(
        status["policy_generation"] == 1,
        "READY=1 before the policy was in force: {status}"
    );
    let ready = &got[0];
    ensure!(
        ready.lines().next() == Some("READY=1")
            && ready.contains("STATUS=enforcing policy generation 1"),
        "first datagram: {got:?}"
    );

    // The watchdog: at least three pings, each a datagram of its own.
    let pings = eventually(Duration::from_secs(10), || {
        drain(&socket, &mut got)?;
        let n = got.iter().filter(|d| d.as_str() == "WATCHDOG=1").count();
        Ok((n >= 3).then_some(n))
    })
    .with_context(|| format!("watchdog pings: {got:?}"))?;

    // SIGTERM: STOPPING=1 before the exit.
    let log_path = daemon.log_path().to_path_buf();
    let exit = daemon.stop()?;
    ensure!(exit.success(), "daemon exit: {exit}");
    drain(&socket, &mut got)?;
    ensure!(
        got.iter().any(|d| d == "STOPPING=1"),
        "no STOPPING=1: {got:?}"
    );
    eprintln!("notify datagrams: READY first, {pings}+ watchdog pings, STOPPING=1");

    json_log_lines(&log_path)
}

/// After the policy is read, every line is a JSON object with timestamp, level, target
/// and message; no aya debug line (default filter).
fn json_log_lines(log: &Path) -> Result<()> {
    let text = std::fs::read_to_string(log)?;
    let mut json = 0;
    let mut after_switch = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(v) => {
                after_switch = true;
                json += 1;
                for key in ["timestamp", "level", "target"] {
                    ensure!(v[key].is_string(), "no {key} in {line}");
                }
                ensure!(
                    v["level"] != "DEBUG" && v["level"] != "TRACE",
                    "debug line by default: {line}"
                );
            }
            Err(_) if !after_switch => {}
            Err(e) => bail!("a text line after the switch to JSON ({e}): {line}"),
        }
    }
    ensure!(
        text.contains("\"message\":\"serving API and /metrics\""),
        "no JSON `serving API` line:\n{text}"
    );
    ensure!(json >= 3, "only {json} JSON lines:\n{text}");
    Ok(())
}

/// `systemd-analyze` on the shipped unit, when the tool is installed (Debian's `systemd`
/// package, which `cargo xtask setup` installs): `verify` clean (the binary path pointed
/// at this build), and `security --offline` at most 2.5.
#[test]
fn the_shipped_unit_verifies_and_scores_at_most_2_5() -> Result<()> {
    let which = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .context("systemd-analyze not found: `cargo xtask setup` installs Debian's systemd")?;
    ensure!(which.status.success(), "systemd-analyze --version failed");
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/warden.service");
    let text = std::fs::read_to_string(&unit)?;
    let warden = warden_binary()?;
    let dir = TempDir::new("warden-unit")?;
    let copy = dir.0.join("warden.service");
    std::fs::write(
        &copy,
        text.replace("/usr/bin/warden", warden.to_str().context("utf-8")?),
    )?;
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{stderr}",
        out.status
    );
    let out = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let score: f64 = stdout
        .lines()
        .find_map(|l| l.split("exposure level for warden.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no score in:\n{stdout}"))?;
    eprintln!("systemd-analyze security --offline: {score}");
    ensure!(score <= 2.5, "exposure {score} > 2.5:\n{stdout}");
    Ok(())
}

/// A directory of this process, removed on drop (also when the test fails).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
