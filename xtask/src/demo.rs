//! `cargo xtask demo`: builds the standard lab (configs/demo.yaml's topology), runs the
//! daemon in it, drives traffic for every tenant with iperf3 and ping, has initech run a
//! port scan a third of the way in, and shows a refreshing per-tenant table of rates and
//! the flags the daemon raised. Everything is removed on exit and on Ctrl-C.
//!
//! The tables are the daemon's own CLI (`warden tenants`, `warden flags`, run in the
//! node namespace), as an operator sees them; the checks at the end read the API's
//! JSON. xtask does not link the daemon's crate (see `deps`).

use std::{
    collections::HashMap,
    io::IsTerminal as _,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;
use warden_tests::topology::{addr, warden_binary, LabOptions, StandardLab, API};

/// Options of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// How long to drive traffic and show rates, in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(3..=3600))]
    duration: u64,
}

/// Traffic per tenant: (tenant, netns picker, iperf3 client args besides -c/-p/-t).
struct Flow {
    tenant: &'static str,
    port: &'static str,
    server: &'static str,
    extra: &'static [&'static str],
}

const FLOWS: [Flow; 3] = [
    // acme is the node itself (host mode): UDP at 20 Mbit/s out of wan0.
    Flow {
        tenant: "acme",
        port: "5201",
        server: addr::EXT_WAN0_V4,
        extra: &["-u", "-b", "20M"],
    },
    // globex (gateway mode): a TCP upload capped at 50 Mbit/s.
    Flow {
        tenant: "globex",
        port: "5202",
        server: addr::EXT_WAN1_V4,
        extra: &["-b", "50M"],
    },
    // initech (gateway mode): a TCP download capped at 10 Mbit/s.
    Flow {
        tenant: "initech",
        port: "5203",
        server: addr::EXT_WAN1_V4,
        extra: &["-R", "-b", "10M"],
    },
];

pub fn run(args: DemoArgs) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("installing the Ctrl-C handler")?;
    }
    crate::setup::run()?;
    crate::util::cargo_build(false)?;
    let warden = warden_binary()?;

    println!("==> building the lab (namespaces, veth pairs, addresses, a 5 ms WAN)");
    // A 5 ms WAN between the node and the outside host: TCP behaves as it does across
    // real networks (at the bare lab's microsecond round trips it cannot follow a plan).
    let lab = StandardLab::build_with(
        "wd",
        LabOptions {
            wan_delay_ms: Some(5),
        },
    )?;

    let policy = lab.write_policy()?;
    println!(
        "==> starting the daemon in {} with configs/demo.yaml",
        lab.node.name()
    );
    let daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;

    let secs = args.duration.to_string();
    let mut procs = Vec::new();
    for f in &FLOWS {
        procs.push(lab.ext.spawn(&["iperf3", "-s", "-1", "-p", f.port])?);
    }
    for f in &FLOWS {
        lab.ext
            .wait_tcp_listen(f.port.parse()?, Duration::from_secs(10))?;
    }
    let ns_of = |tenant: &str| match tenant {
        "acme" => &lab.node,
        "globex" => &lab.globex,
        _ => &lab.initech,
    };
    for f in &FLOWS {
        let mut cmd = vec!["iperf3", "-c", f.server, "-p", f.port, "-t", &secs];
        cmd.extend_from_slice(f.extra);
        procs.push(ns_of(f.tenant).spawn(&cmd)?);
    }
    // IPv6 too: a ping per tenant, bounded by count and deadline.
    let count = (args.duration * 5).to_string();
    for (ns, dst) in [
        (&lab.node, addr::EXT_WAN0_V6),
        (&lab.globex, addr::EXT_WAN1_V6),
        (&lab.initech, addr::EXT_WAN1_V6),
    ] {
        procs.push(ns.spawn(&[
            "ping", "-n", "-q", "-i", "0.2", "-c", &count, "-w", &secs, dst,
        ])?);
    }

    let metrics_hint = format!(
        "metrics: http://{API}/metrics inside netns {ns} (try: ip netns exec {ns} curl -s http://{API}/metrics)",
        ns = lab.node.name()
    );
    let console_hint = format!(
        "console: http://{API}/ui/ inside netns {ns} (try: ip netns exec {ns} chromium http://{API}/ui/ ; sign in with token {op})",
        ns = lab.node.name(),
        op = warden_tests::topology::token::OPERATOR,
    );
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let end = start + Duration::from_secs(args.duration);
    let scan_at = start + Duration::from_secs(args.duration / 3);
    let mut scanned = false;
    let mut flags: Vec<Value> = Vec::new();
    let mut peak: HashMap<String, f64> = HashMap::new();
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
        if !scanned && Instant::now() >= scan_at {
            // initech scans 200 ports of the outside host, bounded in time: a scan
            // detection (action `flag` in configs/demo.yaml) with evidence.
            scanned = true;
            procs.push(lab.initech.spawn(&[
                "timeout",
                "20",
                "nmap",
                "-sS",
                "-n",
                "-Pn",
                "-p",
                "1-200",
                addr::EXT_WAN1_V4,
            ])?);
        }
        flags =
            serde_json::from_str(&lab.get("/api/v1/flags")?).context("reading /api/v1/flags")?;
        let tenants: Vec<Value> = serde_json::from_str(&lab.get("/api/v1/tenants")?)
            .context("reading /api/v1/tenants")?;
        for t in &tenants {
            let id = t["id"].as_str().context("a tenant without an id")?;
            let bps = |dir: &str| t[dir]["bps"].as_f64().unwrap_or(0.0);
            let p = peak.entry(id.to_owned()).or_default();
            *p = p.max(bps("out") + bps("in"));
        }
        let tenant_table = cli(&lab, &warden, &["tenants"])?;
        let flag_table = cli(&lab, &warden, &["flags"])?;
        if tty {
            print!("\x1b[H\x1b[2J");
        }
        println!(
            "Warden demo: {}s of {}s  (Ctrl-C stops and cleans up)",
            start.elapsed().as_secs(),
            args.duration
        );
        println!("{metrics_hint}");
        println!("{console_hint}");
        println!();
        print!("{tenant_table}");
        println!();
        if scanned {
            println!(
                "initech scanned 200 ports of {} at {}s",
                addr::EXT_WAN1_V4,
                args.duration / 3
            );
        }
        if flags.is_empty() {
            println!("no flags");
        } else {
            print!("{flag_table}");
        }
        println!();
    }
    drop(procs);
    let log = daemon.log_path().to_path_buf();
    daemon.stop().context("stopping the daemon")?;
    println!(
        "==> daemon stopped (log was {}); removing the lab",
        log.display()
    );
    drop(lab);
    if stop.load(Ordering::SeqCst) {
        println!("interrupted; lab removed");
        return Ok(());
    }
    let idle: Vec<&String> = peak
        .iter()
        .filter(|(_, bps)| **bps <= 0.0)
        .map(|(t, _)| t)
        .collect();
    if peak.is_empty() || !idle.is_empty() {
        bail!("tenants without traffic during the demo: {idle:?}");
    }
    let mut summary: Vec<_> = peak.iter().collect();
    summary.sort_by(|a, b| a.0.cmp(b.0));
    for (t, bps) in summary {
        println!("{t}: peak {:.1} Mbit/s", bps / 1e6);
    }
    let is = |f: &Value, tenant: &str, kind: &str| f["tenant"] == tenant && f["kind"] == kind;
    let Some(caught) = flags.iter().find(|f| is(f, "initech", "scan")) else {
        bail!("initech's port scan was not flagged; flags: {flags:?}");
    };
    let others: Vec<String> = flags
        .iter()
        .filter(|f| f["id"] != caught["id"])
        .map(|f| format!("{} {}", f["tenant"], f["kind"]))
        .collect();
    if !others.is_empty() {
        bail!("flags for ordinary demo traffic: {others:?}");
    }
    println!(
        "initech's scan: flag {} (figures {}); nothing else flagged",
        caught["id"], caught["figures"]
    );
    println!("every demo tenant showed traffic; lab removed");
    Ok(())
}

/// The daemon's CLI run in the node namespace (where the API listens), its output.
fn cli(lab: &StandardLab, warden: &std::path::Path, args: &[&str]) -> Result<String> {
    let bin = warden
        .to_str()
        .context("the warden binary's path is not UTF-8")?;
    let mut argv = vec![bin];
    argv.extend_from_slice(args);
    let out = lab
        .node
        .exec(&argv)
        .with_context(|| format!("warden {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
