//! Fleet mode on one node (issue 18), with a controller: the policy and the suspensions come from a real
//! etcd (in the node's namespace), the node enforces them with real traffic, and keeps
//! enforcing the last applied state through an etcd outage and a SIGKILL + restart.
//! Writes go through `warden controller` with the CLI (`--api`), as an operator would.
//! etcd takes only TLS clients with a certificate of the lab's CA, with authentication
//! on after `warden fleet init`: the controller is `warden-controller`, the node
//! `warden-node-node7`, each with its own certificate.
//! Probes: 50 echoes each, bounded in count and time.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use crate::common::ping_received;
use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_fleet::{Connect, Fleet, Layout, DEFAULT_PREFIX};
use warden_tests::{
    fleetlab::etcd,
    lab::{Netns, Proc},
    pki::{ClientFiles, Pki},
    topology::{addr, token, warden_binary, StandardLab},
    wait::eventually,
    webdriver::Browser,
};

const PROBES: u64 = 50;
const ETCD_CLIENT: &str = "https://127.0.0.1:23790";
/// The same etcd on a second loopback address, the node's only endpoint: a firewall
/// rule on it cuts the node off while the controller (on [`ETCD_CLIENT`]) still writes.
const ETCD_NODE_CLIENT: &str = "https://127.0.0.2:23790";
const ETCD_PEER: &str = "http://127.0.0.1:23800";
const NODE: &str = "node7";
const CONTROLLER: &str = "http://127.0.0.1:9480";

fn probe(ns: &Netns) -> Result<u64> {
    let count = PROBES.to_string();
    ping_received(
        ns,
        &["-c", &count, "-i", "0.02", "-W", "1"],
        addr::EXT_WAN1_V4,
    )
}

/// Runs `f` against the fleet from a thread inside `ns` (etcd listens on its loopback),
/// connected with certificate `cert`.
fn with_fleet<T: Send + 'static>(
    ns: &Netns,
    cert: &ClientFiles,
    f: impl FnOnce(Fleet) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>
        + Send
        + 'static,
) -> Result<T> {
    let ns_path = PathBuf::from("/run/netns").join(ns.name());
    let tls = warden_fleet::TlsFiles {
        ca: cert.ca.clone(),
        cert: cert.cert.clone(),
        key: cert.key.clone(),
    };
    std::thread::spawn(move || -> Result<T> {
        let file =
            File::open(&ns_path).with_context(|| format!("opening {}", ns_path.display()))?;
        // SAFETY: setns on this thread only; the fd is valid for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns: {}", std::io::Error::last_os_error());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut connect = Connect::plain(vec![ETCD_CLIENT.to_owned()]);
            connect.timeout = Duration::from_secs(2);
            connect.tls = Some(tls);
            let fleet = Fleet::connect(&connect, Layout::new(DEFAULT_PREFIX)?).await?;
            f(fleet).await
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("fleet thread panicked"))?
}

/// The lab's CA, etcd's server certificate (for 127.0.0.1 and .2) and the root client
/// certificate.
fn make_pki(lab: &StandardLab) -> Result<Pki> {
    let pki = Pki::new(&lab.lab.tempdir().join("pki"), &["127.0.0.1", "127.0.0.2"])?;
    pki.client("root")?;
    Ok(pki)
}

/// etcd (TLS clients with a certificate only) in the node's namespace, once it answers
/// the root certificate.
fn start_etcd(lab: &StandardLab, pki: &Pki) -> Result<Proc> {
    let proc = etcd::spawn_single(
        &lab.node,
        lab.lab.tempdir(),
        &format!("{ETCD_CLIENT},{ETCD_NODE_CLIENT}"),
        ETCD_PEER,
        Some(pki),
    )?;
    let root = pki.client("root")?;
    eventually(Duration::from_secs(20), || {
        with_fleet(&lab.node, &root, |fleet| {
            Box::pin(async move { Ok(fleet.read_policy().await.is_ok()) })
        })
    })
    .context("etcd did not answer")?;
    Ok(proc)
}

/// `warden --api CONTROLLER --token TOKEN ARGS` in the node's namespace.
fn cli(lab: &StandardLab, warden: &Path, token: &str, args: &[&str]) -> Result<Output> {
    let warden = warden.to_str().context("UTF-8 path")?;
    let mut cmd = vec![warden, "--api", CONTROLLER, "--token", token];
    cmd.extend_from_slice(args);
    lab.node.exec_unchecked(&cmd, Duration::from_secs(30))
}

fn cli_ok(lab: &StandardLab, warden: &Path, token: &str, args: &[&str]) -> Result<String> {
    warden_tests::cmd::succeeded(&format!("warden {args:?}"), cli(lab, warden, token, args)?)
}

/// The demo policy's `defaults` and `tenants` with `from` replaced by `to`, applied to
/// the fleet through the controller (`warden policy apply`).
fn apply(lab: &StandardLab, warden: &Path, from: &str, to: &str) -> Result<()> {
    let text = lab.policy_text()?;
    ensure!(text.contains(from), "no {from:?} in the demo policy");
    let text = text.replacen(from, to, 1);
    let start = text.find("\ndefaults:").context("no defaults")?;
    let path = lab.lab.tempdir().join("fleet-policy.yaml");
    std::fs::write(&path, &text[start..])?;
    let path = path.to_str().context("UTF-8 path")?;
    cli_ok(lab, warden, token::OPERATOR, &["policy", "apply", path])?;
    Ok(())
}

/// `daemon.fleet` (etcd at `endpoint`, node `node`, certificate `cn`) as lines to
/// append to the lab's `daemon` section.
fn fleet_section(pki: &Pki, endpoint: &str, node: &str, cn: &str) -> Result<String> {
    Ok(format!(
        "\n  fleet:\n    endpoints: [\"{endpoint}\"]\n    node: {node}\n    tls: {}\n",
        pki.client(cn)?.yaml()
    ))
}

/// The controller's config (`name`.yaml): the lab's `daemon` section on port 9480, and
/// the fleet with certificate `cn`.
fn controller_config(lab: &StandardLab, pki: &Pki, name: &str, cn: &str) -> Result<PathBuf> {
    let header = lab.policy_header()?;
    let at = header.find("\ninterfaces:").context("no interfaces")?;
    ensure!(
        header.contains("listen: 127.0.0.1:9477"),
        "the lab listens elsewhere"
    );
    let text = format!(
        "{}{}",
        header[..at].replacen("listen: 127.0.0.1:9477", "listen: 127.0.0.1:9480", 1),
        fleet_section(pki, ETCD_CLIENT, "controller-1", cn)?
    );
    let path = lab.lab.tempdir().join(format!("{name}.yaml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `warden fleet init --node node7` with etcd's root certificate, then etcd's auth on
/// (as docs/fleet-design.md tells an operator).
fn fleet_init(lab: &StandardLab, pki: &Pki, warden: &Path) -> Result<()> {
    let config = controller_config(lab, pki, "fleet-init", "root")?;
    let (warden, config) = (
        warden.to_str().context("UTF-8 path")?,
        config.to_str().context("UTF-8 path")?,
    );
    let out = lab.node.exec_unchecked(
        &[warden, "fleet", "init", "-c", config, "--node", NODE],
        Duration::from_secs(30),
    )?;
    ensure!(
        out.status.success(),
        "warden fleet init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    etcd::enable_auth(&lab.node, &[ETCD_CLIENT.to_owned()], &pki.client("root")?)
}

/// `warden controller` in the node's namespace on port 9480, with the lab's tokens.
fn start_controller(lab: &StandardLab, pki: &Pki, warden: &Path) -> Result<Proc> {
    let path = controller_config(lab, pki, "controller", warden_fleet::rbac::CONTROLLER_USER)?;
    let warden = warden.to_str().context("UTF-8 path")?;
    let path = path.to_str().context("UTF-8 path")?;
    let mut proc = lab.node.spawn(&[warden, "controller", "-c", path])?;
    proc.wait_log("controller serving API", Duration::from_secs(30))?;
    Ok(proc)
}

fn local_policy(lab: &StandardLab, pki: &Pki) -> Result<PathBuf> {
    let header = lab.policy_header()?;
    let at = header.find("\ninterfaces:").context("no interfaces")?;
    let text = format!(
        "{}{}{}",
        &header[..at],
        fleet_section(
            pki,
            ETCD_NODE_CLIENT,
            NODE,
            &warden_fleet::rbac::node_user(NODE)
        )?
        .trim_end(),
        &header[at..]
    );
    let path = lab.lab.tempdir().join("node.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

fn tenant(lab: &StandardLab, id: &str) -> Result<Value> {
    Ok(serde_json::from_str(
        &lab.get(&format!("/api/v1/tenants/{id}"))?,
    )?)
}

fn metric(lab: &StandardLab, name: &str) -> Result<f64> {
    let text = lab.get("/metrics")?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .with_context(|| format!("no {name} in /metrics"))?;
    Ok(line[name.len() + 1..].trim().parse()?)
}

fn kill9(daemon: Proc) -> Result<()> {
    ensure!(
        // SAFETY: kill only sends a signal to the daemon this test started.
        unsafe { libc::kill(daemon.pid() as i32, libc::SIGKILL) } == 0,
        "kill -9 failed"
    );
    drop(daemon);
    Ok(())
}

#[test]
fn a_fleet_node_follows_the_controller_keeps_enforcing_through_an_etcd_outage_and_a_sigkill_and_publishes_its_outage_flag_once(
) -> Result<()> {
    let lab = StandardLab::build("fl")?;
    let warden = warden_binary()?;
    let pki = make_pki(&lab)?;
    let etcd = start_etcd(&lab, &pki)?;
    fleet_init(&lab, &pki, &warden)?;
    let _controller = start_controller(&lab, &pki, &warden)?;
    apply(&lab, &warden, "egress: 30Mbit", "egress: 30Mbit")?;
    let local = local_policy(&lab, &pki)?;
    let daemon = lab.start_daemon(&warden, &local, &["--detach-on-exit"])?;

    // The fleet's tenants are enforced: initech flows, its plan as the fleet says.
    eventually(Duration::from_secs(10), || {
        Ok(metric(&lab, "warden_fleet_connected")? == 1.0)
    })?;
    eventually(Duration::from_secs(10), || {
        Ok(tenant(&lab, "initech").is_ok())
    })?;
    ensure!(probe(&lab.initech)? == PROBES, "initech does not flow");
    ensure!(
        probe(&lab.globex)? == PROBES,
        "globex does not flow before its suspension"
    );

    // A suspension through the controller cuts the tenant's traffic on the node; the
    // node's own API refuses writes that belong to the fleet.
    cli_ok(
        &lab,
        &warden,
        token::ADMIN,
        &["suspend", "globex", "--reason", "tier2: fleet"],
    )?;
    eventually(Duration::from_secs(10), || Ok(probe(&lab.globex)? == 0))
        .context("the fleet's suspension was not enforced")?;
    ensure!(
        probe(&lab.initech)? == PROBES,
        "initech cut by globex's suspension"
    );
    let body = serde_json::json!({"reason": "local"}).to_string();
    let r = lab.request(
        "POST",
        "/api/v1/tenants/initech/suspend",
        Some(&body),
        Some(token::ADMIN),
    )?;
    ensure!(
        r.status == 400 && r.body.contains("fleet"),
        "node suspend: {} {}",
        r.status,
        r.body
    );

    // A policy change reaches the node.
    apply(
        &lab,
        &warden,
        "  - id: initech\n",
        "  - id: initech\n    bandwidth: {egress: 10Mbit}\n",
    )?;
    eventually(Duration::from_secs(10), || {
        Ok(tenant(&lab, "initech")?["out"]["plan_bps"] == 10_000_000)
    })
    .context("the fleet's policy change did not reach the node")?;
    // The controller serves the fleet's policy (GET /api/v1/policy): its defaults and
    // tenants only, from the generation's author; it has no file to go back to.
    let shown = cli_ok(&lab, &warden, token::VIEWER, &["policy", "show"])?;
    ensure!(
        shown.starts_with("# policy generation 2 (fleet by lab-operator at ")
            && shown.contains("  - id: initech\n")
            && shown.contains("      egress: 10Mbit\n")
            && !shown.contains("\ndaemon:")
            && !shown.contains("\ninterfaces:"),
        "controller's policy show:\n{shown}"
    );
    let effective: Value = serde_json::from_str(&cli_ok(
        &lab,
        &warden,
        token::VIEWER,
        &["policy", "show", "--effective", "--json"],
    )?)?;
    ensure!(
        effective["policy"]["tenants"][2]["detectors"]["scan"]["action"] == "flag"
            && effective["policy"].get("daemon").is_none(),
        "controller's effective policy: {effective}"
    );
    let out = cli(
        &lab,
        &warden,
        token::OPERATOR,
        &["policy", "apply", "--from-file"],
    )?;
    ensure!(
        out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stderr).contains("no policy file of its own"),
        "--from-file at the controller: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let nodes: Value =
        serde_json::from_str(&cli_ok(&lab, &warden, token::VIEWER, &["nodes", "--json"])?)?;
    eventually(Duration::from_secs(10), || {
        let nodes: Value =
            serde_json::from_str(&cli_ok(&lab, &warden, token::VIEWER, &["nodes", "--json"])?)?;
        Ok(nodes[0]["node"] == NODE && nodes[0]["applied_generation"] == 2 && nodes[0]["lag"] == 0)
    })
    .with_context(|| format!("warden nodes: {nodes}"))?;
    let audit: Value = serde_json::from_str(&cli_get(&lab, "/api/v1/audit")?)?;
    let actions: Vec<&str> = audit
        .as_array()
        .context("audit list")?
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    ensure!(
        actions.contains(&"tenant.suspend")
            && actions.iter().filter(|a| **a == "policy.apply").count() == 2,
        "fleet audit: {actions:?}"
    );

    // Two applies on the same base revision: one wins, the other gets 409 and writes
    // nothing; the node enforces the winner whole.
    let plan = two_applies_on_one_base(&lab, &warden)?;

    // etcd down: the controller refuses at once, nothing half-done; the node says it is
    // alone and keeps enforcing; SIGKILL + restart keeps it all.
    etcd.stop()?;
    let started = Instant::now();
    let out = cli(
        &lab,
        &warden,
        token::ADMIN,
        &["suspend", "initech", "--reason", "outage"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && stderr.contains("etcd is unreachable"),
        "suspend with etcd down: {} {stderr}",
        out.status
    );
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        started.elapsed()
    );
    eventually(Duration::from_secs(20), || {
        Ok(metric(&lab, "warden_fleet_connected")? == 0.0)
    })?;
    kill9(daemon)?;
    let daemon = lab.start_daemon(&warden, &local, &["--detach-on-exit"])?;
    let flag = seed_flag(&lab)?;
    ensure!(
        metric(&lab, "warden_fleet_connected")? == 0.0,
        "connected without etcd"
    );
    ensure!(
        probe(&lab.globex)? == 0,
        "globex flows after a restart during the outage"
    );
    ensure!(
        probe(&lab.initech)? == PROBES,
        "initech cut after a restart during the outage"
    );
    ensure!(
        tenant(&lab, "initech")?["out"]["plan_bps"] == plan,
        "the restart forgot the fleet's last policy"
    );

    // etcd back: the node reconnects and follows a lift through the controller.
    let _etcd = start_etcd(&lab, &pki)?;
    eventually(Duration::from_secs(30), || {
        Ok(metric(&lab, "warden_fleet_connected")? == 1.0)
    })?;
    ensure!(
        probe(&lab.initech)? == PROBES,
        "the refused suspend of initech was half-done"
    );

    // The flag raised during the outage reaches the controller once, with its evidence;
    // an ack there reaches the node.
    let listed = eventually(Duration::from_secs(10), || {
        let flags: Value =
            serde_json::from_str(&cli_ok(&lab, &warden, token::VIEWER, &["flags", "--json"])?)?;
        let list = flags.as_array().context("flags list")?.clone();
        Ok((!list.is_empty()).then_some(list))
    })
    .context("the outage's flag never reached the controller")?;
    ensure!(
        listed.len() == 1,
        "flags through the controller: {listed:?}"
    );
    ensure!(
        listed[0]["tenant"] == "globex" && listed[0]["figures"]["targets"] == 120,
        "evidence: {}",
        listed[0]
    );
    let fleet_id = listed[0]["id"].as_i64().context("flag id")?.to_string();
    cli_ok(&lab, &warden, token::OPERATOR, &["flag", "ack", &fleet_id])?;
    eventually(Duration::from_secs(10), || {
        let f: Value = serde_json::from_str(&lab.get(&format!("/api/v1/flags/{flag}"))?)?;
        Ok(f["state"] == "acked")
    })
    .context("the controller's ack did not reach the node")?;
    let again: Value =
        serde_json::from_str(&cli_ok(&lab, &warden, token::VIEWER, &["flags", "--json"])?)?;
    ensure!(
        again.as_array().map(Vec::len) == Some(1) && again[0]["state"] == "acked",
        "after the ack: {again}"
    );
    // Its captured frames stay on the node: the controller says where (404, exit 5).
    let pcap = lab.lab.tempdir().join("fleet-flag.pcap");
    let pcap = pcap.to_str().context("UTF-8 path")?;
    let out = cli(
        &lab,
        &warden,
        token::VIEWER,
        &["flag", "show", &fleet_id, "--pcap", pcap],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(5)
            && stderr.contains(&format!("stay on node {NODE}, as its flag {flag}")),
        "warden flag show {fleet_id} --pcap through the controller: {:?} {stderr}",
        out.status
    );
    flags_by_node(&lab, &warden, flag)?;
    console_names_the_node(&lab)?;
    cli_ok(
        &lab,
        &warden,
        token::ADMIN,
        &["unsuspend", "globex", "--reason", "tier2: resolved"],
    )?;
    eventually(
        Duration::from_secs(10),
        || Ok(probe(&lab.globex)? == PROBES),
    )
    .context("the fleet's lift was not enforced")?;
    partitions(&lab, &warden, &pki, &daemon)?;
    drop(daemon);
    Ok(())
}

/// `warden_fleet_resyncs_total{reason="REASON"}` on the node.
fn resyncs(lab: &StandardLab, reason: &str) -> Result<f64> {
    metric(
        lab,
        &format!("warden_fleet_resyncs_total{{reason=\"{reason}\"}}"),
    )
}

/// Cuts the node off etcd (its endpoint only: the controller still writes) until
/// `heal`; waits until the node says it is alone.
fn cut_node_off(lab: &StandardLab) -> Result<()> {
    for rule in [
        "add table inet partition",
        "add chain inet partition out { type filter hook output priority 0 ; }",
        "add rule inet partition out ip daddr 127.0.0.2 tcp dport 23790 reject with tcp reset",
    ] {
        let mut cmd = vec!["nft"];
        cmd.extend(rule.split(' '));
        lab.node.exec(&cmd)?;
    }
    eventually(Duration::from_secs(20), || {
        Ok(metric(lab, "warden_fleet_connected")? == 0.0)
    })
    .context("the node did not notice the partition")
}

fn heal(lab: &StandardLab) -> Result<()> {
    lab.node
        .exec(&["nft", "delete", "table", "inet", "partition"])?;
    eventually(Duration::from_secs(30), || {
        Ok(metric(lab, "warden_fleet_connected")? == 1.0)
    })
    .context("the node did not reconnect after the partition")
}

/// The node partitioned away while the fleet changes: it resumes its watch from the
/// revision it last saw (no full read) and applies what it missed; with that revision
/// compacted meanwhile, it reads everything again (counted as `compacted`).
fn partitions(lab: &StandardLab, warden: &Path, pki: &Pki, daemon: &Proc) -> Result<()> {
    let plan = |mbit: u64| -> Result<()> {
        apply(
            lab,
            warden,
            "  - id: initech\n",
            &format!("  - id: initech\n    bandwidth: {{egress: {mbit}Mbit}}\n"),
        )
    };
    let enforced = |mbit: u64| {
        eventually(Duration::from_secs(20), || {
            Ok(tenant(lab, "initech")?["out"]["plan_bps"] == mbit * 1_000_000)
        })
        .with_context(|| format!("initech at {mbit}Mbit after the partition"))
    };
    let (reconnects, compactions) = (resyncs(lab, "reconnect")?, resyncs(lab, "compacted")?);
    let resumed = |log: &str| {
        log.matches("fleet: resuming from the revision last watched")
            .count()
    };
    let before = resumed(&daemon.log());

    cut_node_off(lab)?;
    plan(12)?;
    heal(lab)?;
    enforced(12)?;
    ensure!(
        resumed(&daemon.log()) == before + 1
            && resyncs(lab, "reconnect")? == reconnects
            && resyncs(lab, "compacted")? == compactions,
        "after a partition without compaction: resumed {} times (before {before}), \
         reconnect resyncs {} (before {reconnects}), compacted {} (before {compactions})",
        resumed(&daemon.log()),
        resyncs(lab, "reconnect")?,
        resyncs(lab, "compacted")?
    );

    cut_node_off(lab)?;
    plan(14)?;
    let root = pki.client("root")?;
    let endpoints = [ETCD_CLIENT.to_owned()];
    let status = etcd::etcdctl(
        &lab.node,
        &endpoints,
        &root,
        &["endpoint", "status", "-w", "json"],
    )?;
    let status: Value = serde_json::from_slice(&status.stdout).with_context(|| {
        format!(
            "etcdctl endpoint status: {}",
            String::from_utf8_lossy(&status.stderr)
        )
    })?;
    let revision = status[0]["Status"]["header"]["revision"]
        .as_i64()
        .with_context(|| format!("no revision in {status}"))?;
    let out = etcd::etcdctl(
        &lab.node,
        &endpoints,
        &root,
        &["compact", &revision.to_string()],
    )?;
    ensure!(
        out.status.success(),
        "etcdctl compact {revision}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    heal(lab)?;
    enforced(14)?;
    eventually(Duration::from_secs(10), || {
        Ok(resyncs(lab, "compacted")? == compactions + 1.0)
    })
    .with_context(|| {
        format!("the node's compacted revision (etcd compacted at {revision}) was not counted")
    })?;
    Ok(())
}

/// Two `warden policy apply --base REV` at once, each giving initech another plan:
/// exactly one succeeds, the other is refused with 409; the node gets the winner's plan,
/// which is returned.
fn two_applies_on_one_base(lab: &StandardLab, warden: &Path) -> Result<u64> {
    let status: Value =
        serde_json::from_str(&cli_ok(lab, warden, token::VIEWER, &["status", "--json"])?)?;
    let base = status["policy_revision"]
        .as_i64()
        .context("the controller's status has no policy_revision")?
        .to_string();
    let text = lab.policy_text()?;
    let start = text.find("\ndefaults:").context("no defaults")?;
    let mut procs = Vec::new();
    for (name, egress) in [("a", "20Mbit"), ("b", "40Mbit")] {
        let body = text[start..].replacen(
            "  - id: initech\n",
            &format!("  - id: initech\n    bandwidth: {{egress: {egress}}}\n"),
            1,
        );
        let path = lab.lab.tempdir().join(format!("race-{name}.yaml"));
        std::fs::write(&path, body)?;
        let path = path.to_str().context("UTF-8 path")?.to_owned();
        let w = warden.to_str().context("UTF-8 path")?;
        let args = [
            w,
            "--api",
            CONTROLLER,
            "--token",
            token::OPERATOR,
            "policy",
            "apply",
            &path,
            "--base",
            &base,
        ];
        procs.push((egress, lab.node.spawn(&args)?));
    }
    let mut won = Vec::new();
    for (egress, proc) in procs {
        let log_path = proc.log_path().to_path_buf();
        let status = proc.wait(Duration::from_secs(30))?;
        let log = std::fs::read_to_string(&log_path)?;
        if status.success() {
            won.push(egress);
        } else {
            // PRODUCT.md: a conflict exits 6.
            ensure!(
                status.code() == Some(6)
                    && log.contains("409")
                    && log.contains("policy/generation"),
                "the loser's answer: {status:?} {log}"
            );
        }
    }
    ensure!(
        won.len() == 1,
        "{} of 2 applies on one base succeeded",
        won.len()
    );
    let plan = if won[0] == "20Mbit" {
        20_000_000
    } else {
        40_000_000
    };
    eventually(Duration::from_secs(10), || {
        Ok(tenant(lab, "initech")?["out"]["plan_bps"] == plan)
    })
    .context("the node did not enforce the winning apply")?;
    Ok(plan)
}

/// The flag carries the node that raised it, and a node filter keeps that node's flags
/// and no other's: through the controller (API and CLI) and on the node's own API.
fn flags_by_node(lab: &StandardLab, warden: &Path, local_id: i64) -> Result<()> {
    let list = |text: &str| -> Result<Vec<Value>> {
        let v: Value = serde_json::from_str(text)?;
        Ok(v.as_array().context("a flags list")?.clone())
    };
    let mine = list(&cli_get(lab, &format!("/api/v1/flags?node={NODE}"))?)?;
    ensure!(
        mine.len() == 1 && mine[0]["node"] == NODE && mine[0]["tenant"] == "globex",
        "controller ?node={NODE}: {mine:?}"
    );
    let id = mine[0]["id"].as_i64().context("fleet id")?;
    let one: Value = serde_json::from_str(&cli_get(lab, &format!("/api/v1/flags/{id}"))?)?;
    ensure!(one["node"] == NODE, "controller flag {id}: {one}");
    let other = list(&cli_get(lab, "/api/v1/flags?node=node8")?)?;
    ensure!(other.is_empty(), "controller ?node=node8: {other:?}");
    for (node, total) in [(NODE, 1), ("node8", 0)] {
        let s: Value = serde_json::from_str(&cli_get(
            lab,
            &format!("/api/v1/flags/summary?node={node}"),
        )?)?;
        ensure!(s["total"] == total, "controller summary ?node={node}: {s}");
    }

    let json = |node: &str| -> Result<Vec<Value>> {
        list(&cli_ok(
            lab,
            warden,
            token::VIEWER,
            &["flags", "--node", node, "--json"],
        )?)
    };
    let mine = json(NODE)?;
    ensure!(
        mine.len() == 1 && mine[0]["node"] == NODE,
        "warden flags --node {NODE}: {mine:?}"
    );
    // A node of the fleet with no flags (here: none of that kind) is an empty list; a
    // name the fleet does not know is "not found" (exit 5), not an empty list.
    let none = list(&cli_ok(
        lab,
        warden,
        token::VIEWER,
        &["flags", "--node", NODE, "--kind", "spam", "--json"],
    )?)?;
    ensure!(
        none.is_empty(),
        "warden flags --node {NODE} --kind spam: {none:?}"
    );
    let unknown = cli(lab, warden, token::VIEWER, &["flags", "--node", "node8"])?;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    ensure!(
        unknown.status.code() == Some(5) && stderr.contains("no node `node8`"),
        "warden flags --node node8: {} {stderr}",
        unknown.status
    );
    let table = cli_ok(lab, warden, token::VIEWER, &["flags", "--node", NODE])?;
    let mut lines = table.lines();
    let (header, row) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    ensure!(
        header.contains("NODE") && row.split_whitespace().nth(2) == Some(NODE),
        "warden flags --node {NODE}:\n{table}"
    );

    // The node's own API: its flags carry its name; another name keeps none.
    let own = list(&lab.get(&format!("/api/v1/flags?node={NODE}"))?)?;
    ensure!(
        own.len() == 1 && own[0]["id"] == local_id && own[0]["node"] == NODE,
        "node ?node={NODE}: {own:?}"
    );
    let other = list(&lab.get("/api/v1/flags?node=node8")?)?;
    ensure!(other.is_empty(), "node ?node=node8: {other:?}");
    Ok(())
}

/// The controller's console: the queue has a Node column naming the flag's node, its
/// node filter keeps that node's flags and no other's, and the flag page names the node.
fn console_names_the_node(lab: &StandardLab) -> Result<()> {
    use crate::console::{shot, DRIVER_PORT, PAGE_TIMEOUT};
    use warden_tests::console::set_filter;
    let profile = lab.rundir()?.join("chromium");
    let b = Browser::start(&lab.node, DRIVER_PORT, &profile)?;
    b.goto(&format!("{CONTROLLER}/ui/"))?;
    b.type_into("#token", token::VIEWER)?;
    b.click("#sign-in-button")?;
    b.wait_text("#page-range", "1–1 of 1", PAGE_TIMEOUT)?;
    let heads = b.text("#queue thead")?;
    let row = b.text("#queue tbody tr")?;
    ensure!(
        heads.contains("Node") && row.contains(NODE),
        "the controller's queue: {heads} / {row}"
    );
    shot(&b, "11-fleet-queue.png")?;
    let page = b.text("#page")?;
    ensure!(!page.contains("null"), "the viewer's queue: {page}");
    set_filter(&b, "#f-node", "node8")?;
    b.wait_text("#page-range", "0–0 of 0", PAGE_TIMEOUT)?;
    set_filter(&b, "#f-node", NODE)?;
    b.wait_text("#page-range", "1–1 of 1", PAGE_TIMEOUT)?;
    b.click("#queue tbody a[href^='#/flag/']")?;
    b.wait_text("#flag-node", NODE, PAGE_TIMEOUT)?;
    shot(&b, "12-fleet-flag.png")?;
    let page = b.text("#page")?;
    ensure!(!page.contains("null"), "the viewer's flag page: {page}");
    Ok(())
}

/// A scan flag on globex, written into the node's database as detection would (the
/// detection labs raise real ones; here the flag's way to the fleet is what is tested).
fn seed_flag(lab: &StandardLab) -> Result<i64> {
    let state = lab.rundir()?.join("state");
    let store = warden_store::Store::open(&state)?;
    let now = warden_policy::time::system_clock();
    let f = store.create_flag(warden_policy::flag::NewFlag {
        tenant: "globex".into(),
        kind: warden_policy::Kind::Scan,
        seen: now,
        policy_generation: 2,
        thresholds: serde_json::json!({"targets": 100}),
        figures: serde_json::json!({"targets": 120, "failure_ratio": 0.95}),
        top_targets: serde_json::json!([[{"addr": "198.18.3.254", "port": null}, 120]]),
        deadline: None,
    })?;
    Ok(f.id)
}

/// GET from the controller in the node's namespace.
fn cli_get(lab: &StandardLab, path: &str) -> Result<String> {
    let addr = CONTROLLER.trim_start_matches("http://").parse()?;
    warden_tests::http::get_in_netns(lab.node.name(), addr, path)
}
