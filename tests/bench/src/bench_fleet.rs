//! The fleet at scale (issue 18's bars), in the Tier 2 fleet lab
//! (`warden_tests::fleetlab`: a 3-member etcd, `warden controller`, 20 host-mode and 2
//! gateway-mode nodes) with release binaries:
//!
//! - policy change: [`CHANGES`] applies through the controller (`warden policy apply`,
//!   each a new default egress plan), timed from the CLI's start (the request start:
//!   `ip netns exec warden --api ... policy apply` is spawned then) to the last of the
//!   20 host nodes whose own API reports its tenant at the new plan (each node polled
//!   every 10 ms by its own thread); bar: p99 < 1 s. The CLI's return is reported beside it.
//! - suspension: a steady probe stream (ping every 10 ms from the outside to the
//!   tenant, `-D` timestamps), `warden suspend` through the controller; figure: from the
//!   CLI's return to the send of the first echo that got no reply (the last reply's
//!   timestamp + the 10 ms interval; no reply may come after it); [`SUSPENSIONS`] runs on
//!   different nodes, each lifted afterwards; bar: worst < 1 s.
//! - scan: a real nmap SYN scan from node 7's tenant; figure: from the flag's first
//!   appearance on node 7's own API to its appearance through the controller
//!   (`GET /api/v1/flags?node=node7`), both polled every 10 ms; bar: < 2 s. One run
//!   (a second scan would update the same open flag). Scan start to the controller is
//!   reported beside it.
//!
//! `warden-bench fleet` runs this part alone.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Barrier},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_tests::{
    fleetlab::{self, FleetLab, Member, HOSTS},
    http,
    topology::{outside, token},
    wait::eventually,
};

use crate::util::median;

/// Bar: policy change to the last node enforcing, p99, ms.
pub const POLICY_BAR_MS: f64 = 1_000.0;
/// Bar: CLI return to the tenant's traffic cut, worst, ms.
pub const SUSPEND_BAR_MS: f64 = 1_000.0;
/// Bar: flag on node 7 to visible through the controller, ms.
pub const SCAN_BAR_MS: f64 = 2_000.0;
/// Policy changes timed.
pub const CHANGES: usize = 20;
/// Suspensions timed (on nodes 2..).
pub const SUSPENSIONS: usize = 5;
/// How often the watchers poll.
const POLL: Duration = Duration::from_millis(10);
/// How long a watcher waits for what it watches.
const WATCH_TIMEOUT: Duration = Duration::from_secs(15);
const METHOD: &str = "the Tier 2 fleet lab with release binaries: a 3-member etcd, warden \
    controller, 20 host-mode nodes (one tenant each) and 2 gateway nodes, each in its own \
    namespace. Policy change: request start (the CLI spawned) to the last host node whose own \
    API shows its tenant's new plan, polled every 10 ms per node. Suspension: CLI return to \
    the send of the first unanswered echo of a 100/s ping stream. Scan: nmap SYN scan from \
    node 7; the flag's first sight on node 7's API to its first sight through the \
    controller, both polled every 10 ms";

/// Options of the fleet part (`cargo xtask bench`, flattened into its arguments).
#[derive(clap::Args, Clone, Debug)]
pub struct FleetOptions {
    /// Skip the fleet case (3-member etcd, controller, 22 release nodes).
    #[arg(long)]
    pub skip_fleet: bool,
}

/// `warden-bench fleet`: the fleet part alone.
#[derive(clap::Args, Clone, Debug)]
pub struct FleetArgs {
    /// Also add the figures to this bench report (e.g. target/bench/report.json) as its
    /// `fleet` section.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The figures of the fleet part, ms.
pub struct FleetBench {
    pub policy_ms: Vec<f64>,
    pub policy_cli_ms: Vec<f64>,
    /// Request start to the first node enforcing (the rest is the nodes sharing the
    /// machine's cores for their applies).
    pub policy_first_ms: Vec<f64>,
    pub suspend_ms: Vec<f64>,
    pub scan_ms: f64,
    pub scan_total_ms: f64,
    pub rss_kib: Vec<u64>,
}

/// Nearest-rank percentile `p` (0-100) of `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// A figure within its bar (a NaN, a figure never measured, is not).
fn within(figure: f64, bar: f64) -> bool {
    figure <= bar
}

fn worst(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

impl FleetBench {
    fn verdicts(&self) -> [(&'static str, f64, f64); 3] {
        [
            (
                "policy change to all 20 nodes, p99",
                percentile(&self.policy_ms, 99.0),
                POLICY_BAR_MS,
            ),
            (
                "suspension: CLI return to traffic cut, worst",
                worst(&self.suspend_ms),
                SUSPEND_BAR_MS,
            ),
            (
                "scan on node 7 to the controller",
                self.scan_ms,
                SCAN_BAR_MS,
            ),
        ]
    }

    /// What `bench` lists for every figure over its bar.
    pub fn failed(&self) -> Vec<String> {
        self.verdicts()
            .iter()
            .filter(|(_, f, bar)| !within(*f, *bar))
            .map(|(name, f, bar)| format!("fleet: {name} {f:.0} ms (bar {bar:.0} ms)"))
            .collect()
    }

    pub fn print_table(&self) {
        println!(
            "\nfleet: 3-member etcd, controller, 20 host + 2 gateway nodes (release), \
             daemons' RSS total {} MiB:",
            self.rss_kib.iter().sum::<u64>() / 1024
        );
        let mut rows: Vec<[String; 4]> = self
            .verdicts()
            .iter()
            .map(|(name, f, bar)| {
                [
                    (*name).to_string(),
                    format!("{f:.1}"),
                    format!("{bar:.0} ms"),
                    if within(*f, *bar) { "PASS" } else { "FAIL" }.into(),
                ]
            })
            .collect();
        for (name, f) in [
            ("policy change, median", median(&self.policy_ms)),
            (
                "policy change: CLI return, median",
                median(&self.policy_cli_ms),
            ),
            (
                "policy change: first node, median",
                median(&self.policy_first_ms),
            ),
            ("suspension, median", median(&self.suspend_ms)),
            ("scan start to the controller", self.scan_total_ms),
        ] {
            rows.push([name.into(), format!("{f:.1}"), "-".into(), String::new()]);
        }
        crate::util::print_aligned(["figure", "ms", "bar", ""], &rows, |i| i == 1);
    }

    pub fn to_json(&self) -> Value {
        let figures: Vec<Value> = self
            .verdicts()
            .iter()
            .map(|(name, f, bar)| json!({"name": name, "ms": f, "bar_ms": bar, "pass": within(*f, *bar)}))
            .collect();
        json!({
            "method": METHOD,
            "binaries": "release",
            "nodes": HOSTS + fleetlab::GATEWAYS,
            "etcd_members": fleetlab::etcd::MEMBERS,
            "figures": figures,
            "policy_change_ms": self.policy_ms,
            "policy_change_p50_ms": median(&self.policy_ms),
            "policy_change_p99_ms": percentile(&self.policy_ms, 99.0),
            "policy_cli_return_ms": self.policy_cli_ms,
            "policy_first_node_ms": self.policy_first_ms,
            "suspension_ms": self.suspend_ms,
            "scan_node_to_controller_ms": self.scan_ms,
            "scan_start_to_controller_ms": self.scan_total_ms,
            "daemons_rss_kib": self.rss_kib,
            "pass": self.failed().is_empty(),
        })
    }
}

/// Measures the fleet part in a fresh fleet lab.
pub fn run() -> Result<FleetBench> {
    println!(
        "==> fleet: 3-member etcd, controller, 20 host + 2 gateway nodes (release): \
         {CHANGES} policy changes, {SUSPENSIONS} suspensions, one scan"
    );
    crate::util::cargo_build(true).context("building the release daemon")?;
    let warden = crate::util::target_dir().join("release/warden");
    ensure!(warden.is_file(), "{} was not built", warden.display());
    let lab = FleetLab::build("wbf", &warden, "  smtp: block\n")?;
    let rss_kib = lab.rss_kib()?;
    let (mut policy_ms, mut policy_cli_ms, mut policy_first_ms) =
        (Vec::new(), Vec::new(), Vec::new());
    for k in 0..CHANGES {
        let (all, cli, first) = policy_change(&lab, 100 + k as u64)
            .with_context(|| format!("policy change {} of {CHANGES}", k + 1))?;
        println!(
            "  change {}: all 20 nodes {all:.1} ms (CLI returned {cli:.1} ms, first node {first:.1} ms)",
            k + 1
        );
        policy_ms.push(all);
        policy_cli_ms.push(cli);
        policy_first_ms.push(first);
    }
    let mut suspend_ms = Vec::new();
    for n in 2..2 + SUSPENSIONS {
        let ms =
            suspension(&lab, lab.node(n)).with_context(|| format!("the suspension of t{n}"))?;
        println!("  suspension of t{n}: cut {ms:.1} ms after the CLI returned");
        suspend_ms.push(ms);
    }
    let (scan_ms, scan_total_ms) = scan(&lab)?;
    println!(
        "  scan: node 7 to the controller {scan_ms:.1} ms (scan start to it {scan_total_ms:.1} ms)"
    );
    Ok(FleetBench {
        policy_ms,
        policy_cli_ms,
        policy_first_ms,
        suspend_ms,
        scan_ms,
        scan_total_ms,
        rss_kib,
    })
}

/// Polls `check` every [`POLL`] from inside `ns` until it holds; when it first did.
fn watch(
    ns: &str,
    start: Arc<Barrier>,
    check: impl Fn() -> Result<bool> + Send + 'static,
) -> thread::JoinHandle<Result<Instant>> {
    let ns = ns.to_owned();
    thread::spawn(move || {
        http::in_netns(&ns, move || {
            start.wait();
            let deadline = Instant::now() + WATCH_TIMEOUT;
            while Instant::now() < deadline {
                if check().unwrap_or(false) {
                    return Ok(Instant::now());
                }
                thread::sleep(POLL);
            }
            bail!("not seen within {WATCH_TIMEOUT:?}")
        })
    })
}

fn node_api() -> SocketAddr {
    "127.0.0.1:9477".parse().expect("a socket address")
}

/// One policy change: every tenant's egress plan to `mbit`; (request start to the last
/// host node enforcing it, to the CLI's return, to the first node enforcing it), ms.
fn policy_change(lab: &FleetLab, mbit: u64) -> Result<(f64, f64, f64)> {
    let path = lab.lab.tempdir().join(format!("bench-{mbit}.yaml"));
    std::fs::write(
        &path,
        fleetlab::policy_yaml(&format!(
            "  smtp: block\n  bandwidth: {{egress: {mbit}Mbit}}\n"
        )),
    )?;
    let path = path.to_str().context("UTF-8 path")?;
    let want = mbit * 1_000_000;
    let barrier = Arc::new(Barrier::new(HOSTS + 1));
    let watchers: Vec<_> = lab
        .nodes
        .iter()
        .map(|m| {
            let route = format!("/api/v1/tenants/{}", m.tenant);
            watch(m.ns.name(), Arc::clone(&barrier), move || {
                let r = http::request(node_api(), "GET", &route, None, None)?;
                let v: Value = serde_json::from_str(&r.body)?;
                Ok(v["out"]["plan_bps"] == want)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    lab.cli_ok(token::OPERATOR, &["policy", "apply", path])?;
    let cli = start.elapsed();
    let (mut last, mut first) = (start, None::<Instant>);
    for (m, w) in lab.nodes.iter().zip(watchers) {
        let seen = w
            .join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))?
            .with_context(|| format!("{} at {mbit}Mbit", m.name))?;
        last = last.max(seen);
        first = Some(first.map_or(seen, |f| f.min(seen)));
    }
    let first = first.context("no host node")?;
    Ok((ms(last - start), ms(cli), ms(first - start)))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn unix_now() -> Result<f64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64())
}

/// One suspension under a 100/s probe stream; CLI return to the cut, ms. Lifted after.
fn suspension(lab: &FleetLab, m: &Member) -> Result<f64> {
    let (out, addr) = (lab.out.clone(), m.addr.clone());
    let pings = thread::spawn(move || {
        out.exec_unchecked(
            &[
                "ping", "-n", "-D", "-c", "400", "-i", "0.01", "-W", "1", &addr,
            ],
            Duration::from_secs(30),
        )
    });
    // The stream runs a second before the suspension (checked below from its replies).
    thread::sleep(Duration::from_secs(1));
    lab.cli_ok(token::ADMIN, &["suspend", &m.tenant, "--reason", "bench"])?;
    let returned = unix_now()?;
    let output = pings
        .join()
        .map_err(|_| anyhow::anyhow!("ping thread panicked"))??;
    let replies = reply_times(&String::from_utf8_lossy(&output.stdout));
    let last = replies.last().copied().context("no reply at all")?;
    let before = replies.iter().filter(|t| **t < returned).count();
    ensure!(before >= 20, "only {before} replies before the suspension");
    ensure!(
        replies.len() < 350,
        "the stream was not cut: {} of 400 echoes answered",
        replies.len()
    );
    lab.cli_ok(token::ADMIN, &["unsuspend", &m.tenant, "--reason", "bench"])?;
    eventually(Duration::from_secs(10), || {
        Ok(fleetlab::ping_replies(&lab.out, &m.addr, 3)? == 3)
    })
    .with_context(|| format!("{} does not flow after its lift", m.tenant))?;
    Ok((last + 0.010 - returned) * 1e3)
}

/// Reply timestamps of `ping -D` output (unix seconds), in order; replies must be
/// contiguous from the first: a reply after a missing one would mean no clean cut.
fn reply_times(text: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// The scan: (flag on node 7 to the controller, scan start to the controller), ms.
fn scan(lab: &FleetLab) -> Result<(f64, f64)> {
    let node7 = lab.node(7);
    let barrier = Arc::new(Barrier::new(3));
    let on_node = watch(node7.ns.name(), Arc::clone(&barrier), || {
        let r = http::request(node_api(), "GET", "/api/v1/flags", None, None)?;
        let v: Value = serde_json::from_str(&r.body)?;
        Ok(v.as_array().is_some_and(|a| !a.is_empty()))
    });
    let controller: SocketAddr = fleetlab::CONTROLLER.parse()?;
    let at_controller = watch(lab.mgmt.name(), Arc::clone(&barrier), move || {
        let r = http::request(
            controller,
            "GET",
            "/api/v1/flags?node=node7",
            None,
            Some(token::VIEWER),
        )?;
        let v: Value = serde_json::from_str(&r.body)?;
        Ok(v.as_array().is_some_and(|a| !a.is_empty()))
    });
    barrier.wait();
    let start = Instant::now();
    let dark = format!("{}-150", outside::dark_v4(1));
    warden_tests::workloads::nmap(
        &node7.ns,
        &["-n", "-Pn", "-sS", "--max-retries", "0", "-p", "22", &dark],
        Duration::from_secs(90),
    )?;
    let join = |h: thread::JoinHandle<Result<Instant>>, what: &str| -> Result<Instant> {
        h.join()
            .map_err(|_| anyhow::anyhow!("watcher panicked"))?
            .with_context(|| format!("the scan flag {what}"))
    };
    let node_seen = join(on_node, "on node 7")?;
    let ctl_seen = join(at_controller, "through the controller")?;
    Ok((
        ms(ctl_seen.saturating_duration_since(node_seen)),
        ms(ctl_seen - start),
    ))
}

/// `warden-bench fleet`: the part alone, its table, then its JSON (and into `--report`).
pub fn print(args: &FleetArgs) -> Result<()> {
    let bench = run()?;
    bench.print_table();
    println!("{}", serde_json::to_string_pretty(&bench.to_json())?);
    if let Some(report) = &args.report {
        add_to_report(report, &bench)?;
        println!("added the fleet section to {}", report.display());
    }
    Ok(())
}

/// Adds the figures to `report` (the bench's report.json) as `fleet`.
pub fn add_to_report(report: &Path, bench: &FleetBench) -> Result<()> {
    crate::util::add_section(report, "fleet", bench.to_json())
}
