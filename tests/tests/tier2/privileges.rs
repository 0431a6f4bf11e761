//! The daemon without root: run as an unprivileged uid (no passwd entry needed) with
//! exactly the capabilities the shipped unit grants (`configs/warden.service`:
//! CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON as ambient, inheritable and bounding set), it
//! loads, pins into its own bpffs directory, attaches, counts a tenant, reads its
//! programs' run statistics (kernel.bpf_stats_enabled turned on by the test, as an
//! operator would) and suspends a tenant, writing its database and events log in a
//! state directory it owns. Without any
//! one of the three it refuses to start with an error naming what it lacks, and leaves
//! nothing attached.

use std::os::unix::fs::{chown, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::lab::Proc;
use warden_tests::topology::{addr, token, warden_binary, StandardLab};
use warden_tests::wait::eventually;

use crate::common::{ping_received, xdp_program};
use crate::monitoring::BpfStats;

/// The unit's capabilities, as `setpriv` names them, with the name the daemon's error
/// must give when that one is missing.
const CAPS: [(&str, &str); 3] = [
    ("bpf", "CAP_BPF"),
    ("net_admin", "CAP_NET_ADMIN"),
    ("perfmon", "CAP_PERFMON"),
];

/// A uid (and gid of the same number) that no account or group on this machine has.
fn unused_id() -> Result<u32> {
    for id in 61_000..62_000u32 {
        // SAFETY: getpwuid/getgrgid return a pointer into static storage or null; only
        // the null check reads it, and the tests run one at a time.
        let taken = unsafe { !libc::getpwuid(id).is_null() || !libc::getgrgid(id).is_null() };
        if !taken {
            return Ok(id);
        }
    }
    bail!("no free uid in 61000..62000")
}

/// A directory owned by `id`, mode 0700 (what the unit's StateDirectory= and the
/// ExecStartPre for the bpffs directory make).
fn owned_dir(path: &Path, id: u32) -> Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    chown(path, Some(id), Some(id)).with_context(|| format!("chown {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", path.display()))
}

/// `setpriv` arguments that run the rest as `id` with only `caps`.
fn as_unprivileged(id: u32, caps: &[&str]) -> Vec<String> {
    let set = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".into(),
        format!("--reuid={id}"),
        format!("--regid={id}"),
        "--clear-groups".into(),
        format!("--inh-caps={set}"),
        format!("--ambient-caps={set}"),
        format!("--bounding-set={set}"),
        "--".into(),
    ]
}

/// The lab policy with its bpffs moved to `bpffs` (a directory on the lab's bpf
/// filesystem) and its state directory to `state`, written as `name`.
fn policy(lab: &StandardLab, name: &str, bpffs: &Path, state: &Path) -> Result<PathBuf> {
    let rundir = lab.rundir()?;
    let text = lab.policy_text()?;
    let mut out = text.clone();
    for (key, from, to) in [
        ("bpffs", rundir.join("bpf"), bpffs),
        ("state_dir", rundir.join("state"), state),
    ] {
        let line = |p: &Path| format!("  {key}: {}\n", p.display());
        ensure!(
            out.contains(&line(&from)),
            "lab policy has no {}",
            line(&from)
        );
        out = out.replace(&line(&from), &line(to));
    }
    let path = lab.lab.tempdir().join(name);
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts the daemon in the node namespace as `id` with `caps`.
fn spawn(lab: &StandardLab, id: u32, caps: &[&str], policy: &Path) -> Result<Proc> {
    let warden = warden_binary()?;
    let mut args = as_unprivileged(id, caps);
    args.extend([
        warden.to_str().context("utf-8")?.to_string(),
        "run".into(),
        "-c".into(),
        policy.to_str().context("utf-8")?.to_string(),
        "--detach-on-exit".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.node.spawn(&args)
}

/// The `Uid:` and `CapEff:` lines of a process.
fn identity(pid: u32) -> Result<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("Uid:")?, field("CapEff:")?))
}

/// Echo replies globex gets of 50 echoes to the outside host (bounded: a few seconds).
fn probe(lab: &StandardLab) -> Result<u64> {
    ping_received(
        &lab.globex,
        &["-c", "50", "-i", "0.02", "-W", "1"],
        addr::EXT_WAN1_V4,
    )
}

fn globex(lab: &StandardLab) -> Result<Value> {
    Ok(serde_json::from_str(&lab.get("/api/v1/tenants/globex")?)?)
}

#[test]
fn an_unprivileged_daemon_with_the_units_three_capabilities_enforces_and_one_less_refuses_to_start(
) -> Result<()> {
    let lab = StandardLab::build("wp")?;
    let id = unused_id()?;
    let mount = lab.lab.bpffs()?;
    // As the unit leaves /sys/fs/bpf: root's, searchable but not listable by others.
    std::fs::set_permissions(&mount, std::fs::Permissions::from_mode(0o711))?;
    let rundir = lab.rundir()?;

    // One capability short: refused before anything is attached, with its name.
    for (i, (missing, name)) in CAPS.iter().enumerate() {
        let caps: Vec<&str> = CAPS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| c != missing)
            .collect();
        let bpffs = mount.join(format!("short{i}"));
        let state = rundir.join(format!("state-short{i}"));
        owned_dir(&bpffs, id)?;
        owned_dir(&state, id)?;
        let policy = policy(&lab, &format!("short{i}.yaml"), &bpffs, &state)?;
        let daemon = spawn(&lab, id, &caps, &policy)?;
        let log_path = daemon.log_path().to_path_buf();
        let status = daemon.wait(Duration::from_secs(60))?;
        let log = std::fs::read_to_string(&log_path)?;
        ensure!(
            !status.success(),
            "without {name} the daemon exited {status}:\n{log}"
        );
        ensure!(
            log.contains(name),
            "without {name} the daemon's error does not name it:\n{log}"
        );
        for iface in ["wan0", "lan0", "lan1"] {
            ensure!(
                xdp_program(&lab.node, iface)?.is_none(),
                "without {name}: XDP left attached to {iface}"
            );
        }
        let last = log.lines().rev().find(|l| l.contains(name)).unwrap_or("");
        eprintln!("without {name}: {status}: {last}");
    }

    // All three: the daemon runs as the uid with exactly them and enforces.
    let bpffs = mount.join("warden");
    let state = rundir.join("state-unprivileged");
    owned_dir(&bpffs, id)?;
    owned_dir(&state, id)?;
    let policy = policy(&lab, "unprivileged.yaml", &bpffs, &state)?;
    let caps: Vec<&str> = CAPS.iter().map(|(c, _)| *c).collect();
    let mut daemon = spawn(&lab, id, &caps, &policy)?;
    daemon.wait_log("serving API", Duration::from_secs(60))?;
    let (uid, cap_eff) = identity(daemon.pid())?;
    ensure!(
        uid == format!("{id} {id} {id} {id}"),
        "daemon runs as uid {uid}, not {id}"
    );
    // CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39).
    let want = (1u64 << 12) | (1 << 38) | (1 << 39);
    ensure!(
        u64::from_str_radix(&cap_eff, 16)? == want,
        "daemon's effective capabilities {cap_eff}, not {want:016x}"
    );
    for iface in ["wan0", "lan0", "lan1"] {
        ensure!(
            xdp_program(&lab.node, iface)?.is_some(),
            "no XDP program on {iface}"
        );
    }
    let pinned = std::fs::read_dir(bpffs.join("links").join("xdp"))?.count();
    ensure!(pinned > 0, "nothing pinned under {}", bpffs.display());

    // A tenant's traffic is counted, and (with kernel.bpf_stats_enabled on for the
    // test) the programs' runs, read without CAP_SYS_ADMIN.
    let stats = BpfStats::enable()?;
    let before = globex(&lab)?["out"]["packets"].as_u64().unwrap_or(0);
    let got = probe(&lab)?;
    ensure!(
        got == 50,
        "globex got {got} of 50 replies before suspension"
    );
    let counted = eventually(Duration::from_secs(10), || {
        let n = globex(&lab)?["out"]["packets"].as_u64().unwrap_or(0) - before;
        Ok((n >= 50).then_some(n))
    })
    .context("globex's 50 echoes not counted")?;
    let metrics = lab.get("/metrics")?;
    drop(stats);
    let runs: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("warden_program_runs_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    ensure!(
        metrics.contains("\nwarden_program_stats_enabled 1\n") && runs >= 50.0,
        "program run statistics not read ({runs} runs):\n{metrics}"
    );

    // A suspension (database and events log in the uid's state directory) cuts it.
    let body = serde_json::json!({ "reason": "tier2: unprivileged daemon" }).to_string();
    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/suspend",
        Some(&body),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200, "suspend: {} {}", r.status, r.body);
    let got = probe(&lab)?;
    ensure!(got == 0, "suspended globex got {got} of 50 replies");
    let drops = globex(&lab)?["out"]["drops"]["suspended"]
        .as_u64()
        .unwrap_or(0);
    ensure!(drops >= 50, "{drops} suspended drops for 50 echoes");
    let events = std::fs::read_to_string(state.join("events.jsonl"))
        .context("reading the events log the daemon wrote")?;
    ensure!(
        events.contains("\"tenant_suspended\""),
        "no tenant_suspended line in the events log:\n{events}"
    );
    let exit = daemon.stop()?;
    ensure!(exit.success(), "daemon exit: {exit}");
    ensure!(
        xdp_program(&lab.node, "wan0")?.is_none(),
        "--detach-on-exit left XDP attached"
    );
    eprintln!(
        "uid {id}, CapEff {cap_eff}: {pinned} XDP links pinned, {counted} globex packets \
         counted, {runs} program runs read, suspension dropped {drops}"
    );
    Ok(())
}
