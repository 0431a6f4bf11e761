//! The fleet at scale (issue 18): a 3-member etcd, `warden controller`, 20 host-mode
//! nodes (one tenant each) and 2 gateway-mode nodes, each in its own namespace
//! ([`warden_tests::fleetlab`]), with real traffic from the shared outside. Through the
//! controller and the CLI, as an operator would: a policy change reaches every node and
//! is enforced; a suspension cuts only its tenant; the etcd leader is killed during
//! traffic and writes without losing an acknowledged write or changing enforcement; a
//! real scan on node 7 reaches `warden flags` with its evidence and an ack there reaches
//! node 7; a node's own etcd certificate is denied the fleet's writes (etcd takes only
//! TLS clients with certificates, auth on, roles from `warden fleet init`).
//! Probes are bounded in count (10-250 echoes) and time.

use std::{thread, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_fleet::{
    records::NodeRecord, Connect, Fleet, FleetError, Layout, TlsFiles, DEFAULT_PREFIX,
};
use warden_tests::{
    fleetlab::{self, etcd, ping_replies, tcp_connects, FleetLab, Member},
    topology::{outside, token, warden_binary},
    wait::eventually,
    workloads::{nmap, require, smtp_sink},
};

const PROBES: u32 = 10;
/// Tenants suspended while the etcd leader is killed.
const WRITES: [usize; 6] = [11, 12, 13, 14, 15, 16];

/// Pings every listed member's tenant from the outside at once; (tenant, replies).
fn probe_all<'a>(
    lab: &FleetLab,
    members: impl Iterator<Item = &'a Member>,
) -> Result<Vec<(String, u64)>> {
    let out = &lab.out;
    thread::scope(|s| {
        let handles: Vec<_> = members
            .map(|m| {
                let (tenant, addr) = (m.tenant.clone(), m.addr.clone());
                s.spawn(move || ping_replies(out, &addr, PROBES).map(|n| (tenant, n)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("ping thread panicked"))?
            })
            .collect()
    })
}

/// Every member's tenant answers every probe, except those in `cut`, which answer none.
fn enforcement_is(lab: &FleetLab, cut: &[&str]) -> Result<()> {
    let got = probe_all(lab, lab.members())?;
    for (tenant, n) in &got {
        let want = if cut.contains(&tenant.as_str()) {
            0
        } else {
            u64::from(PROBES)
        };
        ensure!(
            *n == want,
            "{tenant}: {n} of {PROBES} replies, want {want} ({got:?})"
        );
    }
    Ok(())
}

fn metric(m: &Member, name: &str) -> Result<f64> {
    let text = m.get("/metrics")?;
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .with_context(|| format!("{}: no {name} in /metrics", m.name))?;
    Ok(line[name.len() + 1..].trim().parse()?)
}

#[test]
fn a_fleet_of_22_nodes_follows_the_controller_through_an_etcd_leader_kill_and_reports_a_scan(
) -> Result<()> {
    require("nmap")?;
    let warden = warden_binary()?;
    let lab = FleetLab::build("fs", &warden, "  smtp: allow\n")?;
    let rss = lab.rss_kib()?;
    eprintln!(
        "fleet lab: 22 daemons, RSS total {} MiB, max {} MiB",
        rss.iter().sum::<u64>() / 1024,
        rss.iter().max().copied().unwrap_or(0) / 1024
    );
    enforcement_is(&lab, &[])?;
    let _sink = smtp_sink(&lab.out)?;
    let smtp_nodes = [lab.node(3), lab.node(11), lab.node(20), &lab.gateways[0]];
    for m in smtp_nodes {
        ensure!(
            tcp_connects(m.tenant_ns(), fleetlab::OUTSIDE, 25)?,
            "{}: SMTP refused while the fleet allows it",
            m.tenant
        );
    }

    policy_change_reaches_every_node(&lab, &smtp_nodes)?;
    lab.cli_ok(
        token::ADMIN,
        &["suspend", "t5", "--reason", "tier2: fleet scale"],
    )?;
    eventually(Duration::from_secs(10), || {
        Ok(ping_replies(&lab.out, &lab.node(5).addr, PROBES)? == 0)
    })
    .context("t5's suspension through the controller was not enforced on node5")?;
    enforcement_is(&lab, &["t5"])?;

    let lab = leader_kill_during_traffic_and_writes(lab)?;
    scan_on_node7_reaches_the_controller(&lab)?;
    a_nodes_credentials_cannot_write_the_fleet(&lab)?;
    Ok(())
}

/// SMTP blocked by the fleet's defaults: every node reports the new generation (to
/// the controller and in its own metrics), and SMTP from several nodes' tenants is cut.
fn policy_change_reaches_every_node(lab: &FleetLab, smtp_nodes: &[&Member]) -> Result<()> {
    let before = lab.generation()?;
    lab.apply("  smtp: block\n")?;
    let generation = lab.generation()?;
    ensure!(
        generation == before + 1,
        "generation {before} -> {generation}"
    );
    lab.wait_generation(generation, Duration::from_secs(10))?;
    for m in lab.members() {
        let g = metric(m, "warden_fleet_policy_generation")?;
        ensure!(
            g == generation as f64,
            "{}: generation {g}, want {generation}",
            m.name
        );
    }
    for m in smtp_nodes {
        ensure!(
            !tcp_connects(m.tenant_ns(), fleetlab::OUTSIDE, 25)?,
            "{}: SMTP still connects after the fleet blocked it",
            m.tenant
        );
    }
    Ok(())
}

/// `warden ARGS` through the controller, retried (bounded) as an operator would after
/// an etcd member died: the client library may still try the dead member's endpoint
/// for a request now and then, and the controller answers that request with a 500
/// naming etcd (counted in `failures`, reported).
fn cli_retrying(lab: &FleetLab, token: &str, args: &[&str], failures: &mut u32) -> Result<String> {
    let mut last = String::new();
    for _ in 0..20 {
        let out = lab.cli(token, args)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        *failures += 1;
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        ensure!(last.contains("etcd"), "warden {args:?}: {last}");
        thread::sleep(Duration::from_millis(250));
    }
    bail!("warden {args:?} still failing after 20 attempts: {last}")
}

/// `warden suspend TENANT` retried as an operator would while etcd elects a leader
/// (bounded): Ok(true) when acknowledged, Ok(false) when a retry finds it already
/// suspended (an earlier attempt committed without an answer).
fn suspend_retrying(lab: &FleetLab, tenant: &str, failures: &mut u32) -> Result<bool> {
    let mut last = String::new();
    for _ in 0..20 {
        let out = lab.cli(
            token::ADMIN,
            &["suspend", tenant, "--reason", "leader kill"],
        )?;
        if out.status.success() {
            return Ok(true);
        }
        *failures += 1;
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        if last.contains("already suspended") {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(250));
    }
    bail!("warden suspend {tenant} still failing after 20 attempts: {last}")
}

/// Pings t1 (flowing), g2 (flowing, behind a gateway) and t5 (suspended) for 5 s
/// while six suspensions are written and the etcd leader is killed after the second.
/// Afterwards every acknowledged suspension is in etcd and enforced, and nothing else
/// changed.
fn leader_kill_during_traffic_and_writes(mut lab: FleetLab) -> Result<FleetLab> {
    const COUNT: u32 = 250;
    let watched = [
        (lab.node(1).addr.clone(), COUNT),
        (lab.gateways[1].addr.clone(), COUNT),
        (lab.node(5).addr.clone(), 0),
    ];
    let out = lab.out.clone();
    let pings: Vec<_> = watched
        .iter()
        .map(|(addr, _)| {
            let (out, addr) = (out.clone(), addr.clone());
            thread::spawn(move || ping_replies(&out, &addr, COUNT))
        })
        .collect();
    let mut acknowledged = Vec::new();
    let (mut killed, mut failures) = (None, 0);
    for (n, i) in WRITES.iter().enumerate() {
        if n == 2 {
            killed = Some(lab.etcd.kill_leader()?);
        }
        let tenant = format!("t{i}");
        if suspend_retrying(&lab, &tenant, &mut failures)? {
            acknowledged.push(tenant);
        }
    }
    for ((addr, want), h) in watched.iter().zip(pings) {
        let got = h
            .join()
            .map_err(|_| anyhow::anyhow!("ping thread panicked"))??;
        ensure!(
            got == u64::from(*want),
            "{addr} during the leader kill: {got} of {COUNT} replies, want {want}"
        );
    }
    let leader = lab.etcd.wait_quorum()?;
    let tenants: Value = serde_json::from_str(&cli_retrying(
        &lab,
        token::VIEWER,
        &["tenants", "--json"],
        &mut failures,
    )?)?;
    eprintln!(
        "etcd member {:?} killed, member {leader} leads; {} of {} suspensions acknowledged; \
         {failures} CLI attempts failed and were retried",
        killed,
        acknowledged.len(),
        WRITES.len()
    );
    let suspended: Vec<&str> = tenants
        .as_array()
        .context("a tenants list")?
        .iter()
        .filter(|t| t["state"] == "suspended")
        .filter_map(|t| t["id"].as_str())
        .collect();
    for t in &acknowledged {
        ensure!(
            suspended.contains(&t.as_str()),
            "acknowledged {t} was lost: {suspended:?}"
        );
    }
    let mut cut: Vec<String> = WRITES.iter().map(|i| format!("t{i}")).collect();
    cut.push("t5".into());
    let mut want = cut.clone();
    want.sort();
    let mut have: Vec<String> = suspended.iter().map(|s| (*s).to_owned()).collect();
    have.sort();
    ensure!(
        have == want,
        "suspended after the kill: {have:?}, want {want:?}"
    );
    let cut: Vec<&str> = cut.iter().map(String::as_str).collect();
    // A node whose watch broke on the dead member reconnects with its backoff (up to
    // 30 s between attempts).
    eventually(Duration::from_secs(45), || {
        enforcement_is(&lab, &cut).map(|()| true)
    })
    .with_context(|| {
        let logs: Vec<String> = WRITES
            .iter()
            .map(|&i| lab.node(i))
            .map(|m| format!("--- {}:\n{}", m.name, m.log_tail(25)))
            .collect();
        format!(
            "enforcement after the leader kill is not {cut:?} cut; the written nodes' logs:\n{}",
            logs.join("\n")
        )
    })?;
    lab.wait_generation(lab.generation()?, Duration::from_secs(20))?;
    Ok(lab)
}

/// A real SYN scan from node 7's tenant (nmap, 150 hosts that do not answer) is
/// flagged on node 7, listed through the controller with its evidence, and an ack
/// through the controller changes the flag's state on node 7's own API.
fn scan_on_node7_reaches_the_controller(lab: &FleetLab) -> Result<()> {
    let node7 = lab.node(7);
    let dark = format!("{}-150", outside::dark_v4(1));
    nmap(
        &node7.ns,
        &["-n", "-Pn", "-sS", "--max-retries", "0", "-p", "22", &dark],
        Duration::from_secs(90),
    )?;
    let listed = eventually(Duration::from_secs(20), || {
        let flags: Value = serde_json::from_str(
            &lab.cli_ok(token::VIEWER, &["flags", "--node", "node7", "--json"])?,
        )?;
        let list = flags.as_array().context("a flags list")?.clone();
        Ok((!list.is_empty()).then_some(list))
    })
    .context("node7's scan never reached the controller")?;
    ensure!(listed.len() == 1, "node7's flags: {listed:?}");
    let flag = &listed[0];
    let targets = flag["figures"]["failed_targets_in_window"]
        .as_f64()
        .unwrap_or(0.0);
    let top = flag["top_targets"].as_array().map_or(0, Vec::len);
    ensure!(
        flag["tenant"] == "t7"
            && flag["kind"] == "scan"
            && flag["node"] == "node7"
            && targets >= 100.0
            && top > 0,
        "the scan flag's evidence through the controller: {flag}"
    );
    let mut failures = 0;
    let others: Value = serde_json::from_str(&cli_retrying(
        lab,
        token::VIEWER,
        &["flags", "--json"],
        &mut failures,
    )?)?;
    ensure!(
        others.as_array().map(Vec::len) == Some(1),
        "flags through the controller: {others}"
    );
    let id = flag["id"].as_i64().context("fleet flag id")?.to_string();
    cli_retrying(lab, token::OPERATOR, &["flag", "ack", &id], &mut failures)?;
    eventually(Duration::from_secs(10), || {
        let own: Value = serde_json::from_str(&node7.get("/api/v1/flags")?)?;
        let own = own.as_array().context("node7's flags")?;
        ensure!(own.len() == 1, "node7's own flags: {own:?}");
        Ok(own[0]["state"] == "acked")
    })
    .context("the controller's ack did not reach node7")?;
    eprintln!(
        "scan flag {id} through the controller: {targets} failed targets, {top} top targets; \
         {failures} CLI retries"
    );
    Ok(())
}

/// node7's own etcd credentials, its client certificate (CN `warden-node-node7`, the
/// user `warden fleet init` made with node7's role), with etcd's auth on as the lab runs
/// it: it may read policy and register node7, and is denied writing policy, a suspension
/// and node8's registration.
fn a_nodes_credentials_cannot_write_the_fleet(lab: &FleetLab) -> Result<()> {
    let cert = lab.pki.client(&warden_fleet::rbac::node_user("node7"))?;
    let tls = TlsFiles {
        ca: cert.ca,
        cert: cert.cert,
        key: cert.key,
    };
    let endpoints: Vec<String> = lab.etcd.alive().into_iter().map(etcd::client_url).collect();
    warden_tests::http::in_netns(lab.mgmt.name(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(as_node7(endpoints, tls))
    })
}

async fn as_node7(endpoints: Vec<String>, tls: TlsFiles) -> Result<()> {
    let mut connect = Connect::plain(endpoints);
    connect.timeout = Duration::from_secs(5);
    connect.tls = Some(tls);
    let node = Fleet::connect(&connect, Layout::new(DEFAULT_PREFIX)?).await?;
    node.read_policy().await.context("node7 reads policy")?;
    let own = NodeRecord {
        node: "node7".into(),
        version: "0".into(),
        started_at: 0,
        heartbeat: 0,
        applied_generation: 0,
        applied_revision: 0,
        attached: true,
        interfaces: vec![],
    };
    node.register(&own, 5)
        .await
        .context("node7 registers itself")?;
    let denied = |r: Result<(), FleetError>, what: &str| match r {
        Err(FleetError::PermissionDenied { .. }) => Ok(()),
        other => bail!("{what} with node7's credentials: {other:?}, want permission denied"),
    };
    let (_, parts) = warden_policy::fragments::fragments(&fleetlab::policy_yaml(""), "x.yaml")
        .map_err(|d| anyhow::anyhow!("{d:?}"))?;
    denied(
        node.apply_policy(&parts, None, "node7", 1).await.map(drop),
        "policy apply",
    )?;
    denied(
        node.suspend("t8", vec![], "x", "node7", 1).await.map(drop),
        "suspend",
    )?;
    let other = NodeRecord {
        node: "node8".into(),
        ..own
    };
    denied(
        node.register(&other, 5).await.map(drop),
        "node8's registration",
    )
}
