//! Fleet at scale (issue 18): 100,000 tenants in etcd and 10,000 published flags,
//! against the bars: a node's cold start to its first enforced packet under 5 s
//! (a gateway node holding every tenant, and a host node holding its one), a
//! one-tenant change enforced on the gateway node under 1 s after its commit, and the
//! controller's `GET /api/v1/flags` over 10,000 flags under 200 ms.
//!
//! Everything runs in one standard namespace lab (`warden_tests::topology`): a real
//! single-member `etcd` (Debian's `etcd-server`) with its data in the lab's temporary
//! directory, a release `warden controller`, and release `warden run` nodes, all in the
//! lab's node namespace. The bench writes the fleet's state as a controller and nodes
//! would, through `warden-fleet` from a thread in that namespace: the policy (the demo's
//! three tenants and [`TENANTS`] more, each a /32 of 198.18.64.0 onwards on its own
//! policed plan) as one staged apply, and [`FLAGS`] flags published under 20 node names
//! (every 4th a `spam`, the others `scan`), each with its evidence.
//!
//! - cold start: from spawning `warden run --detach-on-exit` (a fresh state directory
//!   and bpffs: nothing saved, nothing pinned) to the first packet the kernel counts for
//!   a tenant of the fleet policy: one echo request at a time (each bounded to 1 s), then
//!   that tenant's counters read through the node's API, until they moved. Gateway
//!   node: the demo's interfaces (two gateway-mode ports: every tenant), the probe from
//!   globex's server behind lan0. Host node: `wan0` bound to acme (`mode: host, tenant:
//!   acme`: the node reads acme alone, checked: it holds one tenant), the probe from the
//!   node itself. The gateway node is checked to hold every tenant.
//! - one-tenant change: on the running gateway node, one tenant's plan changed and
//!   applied to the fleet (the whole 100,000-tenant policy submitted, as `warden policy
//!   apply` does: the apply writes one tenant's version). Timed from the commit (the
//!   bench's own watch of `policy/generation` seeing it) to the node's API reporting
//!   the next local policy generation (the apply is in the kernel's tables and
//!   active), polled every 5 ms; then the tenant's plan is checked on the node.
//! - controller flags: `GET /api/v1/flags?limit=50` (the queue's first page), with
//!   `kind=spam` and with `node=n07`, from the lab's node namespace on a fresh
//!   connection each, [`API_RUNS`] of each, interleaved; each answer is checked.
//!
//! Bars on the median (cold starts: one run each, the figure itself).
//! `warden-bench fleet-scale` runs this part alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use warden_fleet::records::FlagRecord;
use warden_fleet::{Connect, Fleet, Layout, Scope, DEFAULT_PREFIX};
use warden_policy::flag::{Flag, FlagState};
use warden_policy::fragments::{fragments, Fragments};
use warden_tests::{
    lab::{Netns, Proc},
    topology::{addr, token, StandardLab},
    wait::{eventually, eventually_every},
};

use crate::util::median;

/// Tenants of the fleet policy besides the demo's three.
pub const TENANTS: u32 = 100_000;
/// Flags published to the fleet.
pub const FLAGS: u32 = 10_000;
/// Bar: a node's cold start to its first enforced packet, ms.
pub const COLD_START_BAR_MS: f64 = 5_000.0;
/// Bar: a one-tenant change from its commit to the node enforcing it, median, ms.
pub const CHANGE_BAR_MS: f64 = 1_000.0;
/// Bar: the controller's `GET /api/v1/flags` over [`FLAGS`] flags, median, ms.
pub const FLAGS_BAR_MS: f64 = 200.0;
/// Requests of each flags query.
pub const API_RUNS: usize = 15;
/// The tenant whose plan the changes move.
const CHANGED: u32 = 50_000;
const ETCD_CLIENT: &str = "http://127.0.0.1:23790";
const ETCD_PEER: &str = "http://127.0.0.1:23800";
const CONTROLLER: &str = "127.0.0.1:9480";
const METHOD: &str = "one standard namespace lab: a single-member etcd (Debian's \
    etcd-server), a release `warden controller` and release `warden run` nodes in the \
    node namespace; the fleet policy (100,003 tenants, each a /32 on its own plan) \
    written as one staged apply and 10,000 flags published under 20 node names, through \
    warden-fleet. Cold start: spawn of `warden run` (nothing saved, nothing pinned) to \
    the first echo request counted for a tenant (one at a time, then its counters read \
    through the node's API); gateway node: every tenant, probe from behind lan0; host \
    node: wan0 bound to acme, probe from the node. One-tenant change on the gateway \
    node: the commit, seen by the bench's watch of policy/generation, to the node's API \
    reporting the next policy generation (polled every 5 ms), the plan then checked. \
    Controller: GET /api/v1/flags?limit=50, with kind=spam and with node=n07, a fresh \
    connection each, interleaved; bars on the median";

/// Options of the fleet-scale part (`cargo xtask bench`, flattened into its arguments).
#[derive(clap::Args, Clone, Debug)]
pub struct FleetScaleOptions {
    /// Skip the fleet-scale case (100,000 tenants in etcd: cold starts, a one-tenant
    /// change, the controller's flags over 10,000).
    #[arg(long)]
    pub skip_fleet_scale: bool,
    /// One-tenant changes timed on the gateway node (median and worst reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub fleet_scale_changes: u32,
}

/// `warden-bench fleet-scale`: this part alone.
#[derive(clap::Args, Clone, Debug)]
pub struct FleetScaleArgs {
    /// One-tenant changes timed on the gateway node.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    changes: u32,
    /// Also add the section to this report.json.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One figure: its runs and its bar.
pub struct Figure {
    pub name: &'static str,
    pub bar_ms: f64,
    pub runs_ms: Vec<f64>,
}

impl Figure {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn worst_ms(&self) -> f64 {
        self.runs_ms.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn pass(&self) -> bool {
        self.median_ms() <= self.bar_ms
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "bar_ms": self.bar_ms,
            "runs_ms": self.runs_ms,
            "median_ms": self.median_ms(),
            "worst_ms": self.worst_ms(),
            "pass": self.pass(),
        })
    }
}

/// The part's figures.
pub struct FleetScaleBench {
    pub figures: Vec<Figure>,
    /// The one-tenant changes' applies, start to return (the controller's share), ms.
    pub apply_ms: Vec<f64>,
}

impl FleetScaleBench {
    pub fn failed(&self) -> Vec<String> {
        self.figures
            .iter()
            .filter(|f| !f.pass())
            .map(|f| format!("fleet scale: {} (bar {} ms)", f.name, f.bar_ms))
            .collect()
    }

    pub fn print_table(&self) {
        println!(
            "\nfleet scale: {} tenants in etcd, {FLAGS} published flags, release daemon \
             and controller (bars on the median):",
            TENANTS + 3
        );
        let rows: Vec<[String; 5]> = self
            .figures
            .iter()
            .map(|f| {
                [
                    f.name.to_string(),
                    format!("{:.1}", f.median_ms()),
                    format!("{:.1}", f.worst_ms()),
                    format!("{:.0} ms", f.bar_ms),
                    if f.pass() { "PASS" } else { "FAIL" }.to_string(),
                ]
            })
            .collect();
        crate::util::print_aligned(["figure", "median ms", "worst ms", "bar", ""], &rows, |i| {
            (1..=3).contains(&i)
        });
    }

    pub fn to_json(&self) -> Value {
        json!({
            "method": METHOD,
            "daemon": "release",
            "tenants": TENANTS + 3,
            "flags": FLAGS,
            "figures": self.figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
            "change_apply_ms": self.apply_ms,
            "pass": self.failed().is_empty(),
        })
    }
}

/// The fleet policy: the demo's tenants and [`TENANTS`] more, tenant [`CHANGED`] on
/// `changed_mbit`.
fn fleet_policy(changed_mbit: u32) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(TENANTS as usize * 90);
    s.push_str(
        "defaults:\n  smtp: block\ntenants:\n\
         \x20 - {id: acme, addresses: [198.18.1.1/32, \"2001:db8:1::1/128\"]}\n\
         \x20 - {id: globex, addresses: [198.18.2.10/32, \"2001:db8:2:1::10/128\"]}\n\
         \x20 - {id: initech, addresses: [198.18.2.130/32, \"2001:db8:2:2::10/128\"]}\n",
    );
    let first = u32::from(std::net::Ipv4Addr::new(198, 18, 64, 0));
    for i in 0..TENANTS {
        let mbit = if i == CHANGED { changed_mbit } else { 100 };
        let a = std::net::Ipv4Addr::from(first + i);
        let _ = writeln!(
            s,
            "  - {{id: t{i:06}, addresses: [{a}/32], bandwidth: {{egress: {mbit}Mbit}}}}"
        );
    }
    s
}

type FleetFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>;

/// Runs `f` with a fleet client on a thread in netns `ns` (where etcd listens).
fn with_fleet<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce(Fleet) -> FleetFuture<T> + Send + 'static,
) -> Result<T> {
    warden_tests::http::in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut connect = Connect::plain(vec![ETCD_CLIENT.to_owned()]);
            connect.timeout = Duration::from_secs(5);
            let fleet = Fleet::connect(&connect, Layout::new(DEFAULT_PREFIX)?).await?;
            f(fleet).await
        })
    })
}

fn start_etcd(lab: &StandardLab) -> Result<Proc> {
    let proc = warden_tests::fleetlab::etcd::spawn_single(
        &lab.node,
        lab.lab.tempdir(),
        ETCD_CLIENT,
        ETCD_PEER,
        None,
    )?;
    eventually(Duration::from_secs(30), || {
        with_fleet(lab.node.name(), |fleet| {
            Box::pin(async move {
                Ok(fleet
                    .read_policy_in(Scope::Tenants(Default::default()))
                    .await
                    .is_ok())
            })
        })
    })
    .context("etcd did not answer")?;
    Ok(proc)
}

/// `warden controller` in the node namespace on [`CONTROLLER`], with the lab's tokens.
fn start_controller(lab: &StandardLab, warden: &Path) -> Result<Proc> {
    let header = lab.policy_header()?;
    let at = header.find("\ninterfaces:").context("no interfaces")?;
    let text = format!(
        "{}\n  fleet:\n    endpoints: [\"{ETCD_CLIENT}\"]\n    node: controller-1\n",
        header[..at].replacen(
            "listen: 127.0.0.1:9477",
            &format!("listen: {CONTROLLER}"),
            1
        )
    );
    let path = lab.lab.tempdir().join("controller.yaml");
    std::fs::write(&path, text)?;
    let warden = warden.to_str().context("UTF-8 path")?;
    let path = path.to_str().context("UTF-8 path")?;
    let mut proc = lab.node.spawn(&[warden, "controller", "-c", path])?;
    proc.wait_log("controller serving API", Duration::from_secs(60))?;
    Ok(proc)
}

/// A node's own file: the demo's `daemon` section with `daemon.fleet` (node `node`,
/// its state in `state`), then `interfaces` (the demo's when `None`).
fn node_file(
    lab: &StandardLab,
    node: &str,
    state: &str,
    interfaces: Option<&str>,
) -> Result<PathBuf> {
    let header = lab.policy_header()?;
    let at = header.find("\ninterfaces:").context("no interfaces")?;
    let rundir = lab.rundir()?.display().to_string();
    let daemon = header[..at].replacen(
        &format!("state_dir: {rundir}/state"),
        &format!("state_dir: {rundir}/{state}"),
        1,
    );
    let interfaces = interfaces.unwrap_or(&header[at + 1..]);
    let text = format!(
        "{daemon}\n  fleet:\n    endpoints: [\"{ETCD_CLIENT}\"]\n    node: {node}\n{interfaces}"
    );
    let path = lab.lab.tempdir().join(format!("{node}.yaml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn api_json(lab: &StandardLab, path: &str) -> Result<Value> {
    Ok(serde_json::from_str(&lab.get(path)?)?)
}

/// Starts a node on `file` and times spawn to the first packet counted for `tenant`,
/// sent by `probe` (one echo request to `dst` at a time). Returns the node and ms.
fn cold_start(
    lab: &StandardLab,
    warden: &Path,
    file: &Path,
    (tenant, probe, dst): (&str, &Netns, &str),
) -> Result<(Proc, f64)> {
    let started = Instant::now();
    let daemon = lab.start_daemon(warden, file, &["--detach-on-exit"])?;
    let counted = |v: &Value| v["out"]["packets"].as_u64().unwrap_or(0) > 0;
    eventually_every(Duration::from_secs(120), Duration::from_millis(20), || {
        probe.exec_unchecked(
            &["ping", "-n", "-q", "-c", "1", "-W", "1", dst],
            Duration::from_secs(5),
        )?;
        Ok(counted(&api_json(
            lab,
            &format!("/api/v1/tenants/{tenant}"),
        )?))
    })
    .with_context(|| format!("no packet of {tenant} counted"))?;
    Ok((daemon, started.elapsed().as_secs_f64() * 1e3))
}

/// Publishes [`FLAGS`] flags under 20 node names, 16 writers at a time.
fn seed_flags(lab: &StandardLab) -> Result<()> {
    with_fleet(lab.node.name(), |fleet| {
        Box::pin(async move {
            let mut writers = tokio::task::JoinSet::new();
            for w in 0..16u32 {
                let fleet = fleet.clone();
                writers.spawn(async move {
                    for i in (w..FLAGS).step_by(16) {
                        fleet.publish_flag(&flag_record(i)).await?;
                    }
                    anyhow::Ok(())
                });
            }
            while let Some(r) = writers.join_next().await {
                r.context("flag writer")??;
            }
            Ok(())
        })
    })
}

/// Flag `i` as node `n{i % 20}` publishes it: a scan (every 4th a spam) on tenant `i`.
fn flag_record(i: u32) -> FlagRecord {
    let kind = if i.is_multiple_of(4) {
        warden_policy::Kind::Spam
    } else {
        warden_policy::Kind::Scan
    };
    let at = warden_policy::time::system_clock() - i64::from(FLAGS - i);
    FlagRecord {
        node: format!("n{:02}", i % 20),
        flag: Flag {
            id: i64::from(i / 20 + 1),
            tenant: format!("t{i:06}"),
            kind,
            state: FlagState::Open,
            first_seen: at,
            last_seen: at,
            policy_generation: 1,
            thresholds: json!({"targets": 100}),
            figures: json!({"targets": 120 + i % 50, "failure_ratio": 0.9}),
            top_targets: json!([[{"addr": "198.18.3.254", "port": null}, 120]]),
            deadline: None,
            state_reason: None,
            node: None,
        },
        actions: Vec::new(),
        samples: 0,
    }
}

/// A flags query and what each flag of its answer must be.
type Query = (&'static str, fn(&Value) -> bool);

/// The controller's flags queries, [`API_RUNS`] of each, interleaved, each answer checked.
fn time_flags(lab: &StandardLab) -> Result<[Vec<f64>; 3]> {
    let addr = CONTROLLER.parse()?;
    warden_tests::http::in_netns(lab.node.name(), move || {
        let queries: [Query; 3] = [
            ("/api/v1/flags?limit=50", |_| true),
            ("/api/v1/flags?kind=spam&limit=50", |f| f["kind"] == "spam"),
            ("/api/v1/flags?node=n07&limit=50", |f| f["node"] == "n07"),
        ];
        let mut out: [Vec<f64>; 3] = Default::default();
        for _ in 0..API_RUNS {
            for ((path, fits), times) in queries.iter().zip(out.iter_mut()) {
                let t = Instant::now();
                let r = warden_tests::http::request(addr, "GET", path, None, Some(token::VIEWER))?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                ensure!(r.status == 200, "GET {path}: {} {}", r.status, r.body);
                let v: Value = serde_json::from_str(&r.body)?;
                let flags = v.as_array().context("a flags list")?;
                ensure!(
                    flags.len() == 50 && flags.iter().all(fits),
                    "GET {path}: {} flags, or not the ones asked for",
                    flags.len()
                );
            }
        }
        Ok(out)
    })
}

/// One one-tenant change on the running gateway node: ms from the commit to the node's
/// next policy generation, and the apply's own ms.
fn one_change(lab: &StandardLab, parts: Fragments, mbit: u32) -> Result<(f64, f64)> {
    let status = api_json(lab, "/api/v1/status")?;
    let before = status["policy_generation"]
        .as_u64()
        .context("policy_generation")?;
    let ns = lab.node.name().to_owned();
    let applier = std::thread::spawn(move || {
        with_fleet(&ns, move |fleet| {
            Box::pin(async move {
                let gen_key = fleet.layout().generation();
                let now = fleet
                    .read_policy_in(Scope::Tenants(Default::default()))
                    .await?;
                let mut watch = fleet.watch(&gen_key, now.revision).await?;
                let writer = fleet.clone();
                let started = Instant::now();
                let apply = tokio::spawn(async move {
                    writer
                        .apply_policy(&parts, None, "bench", warden_policy::time::system_clock())
                        .await
                });
                loop {
                    let changes = watch.next().await?;
                    if changes.iter().any(|c| c.key == gen_key) {
                        break;
                    }
                }
                let committed = Instant::now();
                let applied = apply.await.context("apply task")??;
                ensure!(
                    applied.changed == 1,
                    "the apply changed {} tenants",
                    applied.changed
                );
                Ok((started, committed, started.elapsed()))
            })
        })
    });
    let addr = lab.api();
    let seen = warden_tests::http::in_netns(lab.node.name(), move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = warden_tests::http::request(addr, "GET", "/api/v1/status", None, None)?;
            let v: Value = serde_json::from_str(&r.body)?;
            if v["policy_generation"].as_u64().unwrap_or(0) > before {
                return Ok(Instant::now());
            }
            ensure!(
                Instant::now() < deadline,
                "the node did not apply the change within 60 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    })?;
    let (_, committed, apply) = applier
        .join()
        .map_err(|_| anyhow::anyhow!("applier thread panicked"))??;
    let tenant = api_json(lab, &format!("/api/v1/tenants/t{CHANGED:06}"))?;
    let plan = tenant["out"]["plan_bps"].as_u64();
    ensure!(
        plan == Some(u64::from(mbit) * 1_000_000),
        "t{CHANGED:06}'s plan on the node is {plan:?}, not {mbit} Mbit/s"
    );
    let ms = seen.saturating_duration_since(committed).as_secs_f64() * 1e3;
    Ok((ms, apply.as_secs_f64() * 1e3))
}

pub fn run(changes: u32) -> Result<FleetScaleBench> {
    println!(
        "==> fleet scale: {} tenants in etcd, {FLAGS} flags (release daemon and controller)",
        TENANTS + 3
    );
    crate::util::cargo_build(true).context("building the release daemon")?;
    let warden = crate::util::target_dir().join("release/warden");
    ensure!(warden.is_file(), "{} was not built", warden.display());
    let lab = StandardLab::build("wfs")?;
    let etcd = start_etcd(&lab)?;
    let (_, parts) =
        fragments(&fleet_policy(100), "fleet-scale").map_err(|d| anyhow::anyhow!("{d}"))?;
    with_fleet(lab.node.name(), move |fleet| {
        Box::pin(async move {
            let at = warden_policy::time::system_clock();
            fleet.init_layout(at).await?;
            let t = Instant::now();
            let applied = fleet.apply_policy(&parts, None, "bench", at).await?;
            println!(
                "  policy of {} tenants applied to etcd in {:.1} s",
                applied.changed,
                t.elapsed().as_secs_f64()
            );
            Ok(())
        })
    })?;
    let controller = start_controller(&lab, &warden)?;
    seed_flags(&lab)?;
    let [first, spam, node] = time_flags(&lab)?;
    println!(
        "  controller over {FLAGS} flags, median ms: first page {:.1}, kind=spam {:.1}, node=n07 {:.1}",
        median(&first),
        median(&spam),
        median(&node)
    );

    let file = node_file(&lab, "gw1", "state-gw1", None)?;
    let (gateway, cold_gateway) = cold_start(
        &lab,
        &warden,
        &file,
        ("globex", &lab.globex, addr::EXT_WAN1_V4),
    )?;
    let status = api_json(&lab, "/api/v1/status")?;
    ensure!(
        status["tenants"].as_u64() == Some(u64::from(TENANTS) + 3),
        "the gateway node holds {} tenants",
        status["tenants"]
    );
    println!("  gateway node: cold start to the first enforced packet {cold_gateway:.0} ms");
    let mut change_ms = Vec::new();
    let mut apply_ms = Vec::new();
    for k in 0..changes {
        let mbit = 7 + k;
        let (_, parts) =
            fragments(&fleet_policy(mbit), "fleet-scale").map_err(|d| anyhow::anyhow!("{d}"))?;
        let (ms, apply) = one_change(&lab, parts, mbit)?;
        println!(
            "  one-tenant change {}: commit to enforced {ms:.1} ms (apply {apply:.0} ms)",
            k + 1
        );
        change_ms.push(ms);
        apply_ms.push(apply);
    }
    // Where the node's start and applies went (its own log: start, read, parse, enforce
    // by phase, save).
    for line in gateway.log().lines().filter(|l| {
        [
            "fleet mode: starting",
            "serving API",
            "fleet: policy read",
            "policy apply phases",
            "fleet state applied",
        ]
        .iter()
        .any(|w| l.contains(w))
    }) {
        println!("  node: {}", line.trim());
    }
    gateway.stop().context("stopping the gateway node")?;

    let host = "interfaces:\n  - {name: wan0, mode: host, tenant: acme}\n";
    let file = node_file(&lab, "host1", "state-host1", Some(host))?;
    let (host_node, cold_host) =
        cold_start(&lab, &warden, &file, ("acme", &lab.node, addr::EXT_WAN0_V4))?;
    let status = api_json(&lab, "/api/v1/status")?;
    ensure!(
        status["tenants"].as_u64() == Some(1),
        "the host node bound to acme holds {} tenants",
        status["tenants"]
    );
    println!("  host node: cold start to the first enforced packet {cold_host:.0} ms");
    host_node.stop().context("stopping the host node")?;
    drop(controller);
    drop(etcd);
    Ok(FleetScaleBench {
        figures: vec![
            Figure {
                name: "gateway node (all tenants): cold start to the first enforced packet",
                bar_ms: COLD_START_BAR_MS,
                runs_ms: vec![cold_gateway],
            },
            Figure {
                name: "host node (one tenant): cold start to the first enforced packet",
                bar_ms: COLD_START_BAR_MS,
                runs_ms: vec![cold_host],
            },
            Figure {
                name: "one-tenant change: commit to enforced on the gateway node",
                bar_ms: CHANGE_BAR_MS,
                runs_ms: change_ms,
            },
            Figure {
                name: "controller: GET /api/v1/flags?limit=50",
                bar_ms: FLAGS_BAR_MS,
                runs_ms: first,
            },
            Figure {
                name: "controller: GET /api/v1/flags?kind=spam&limit=50",
                bar_ms: FLAGS_BAR_MS,
                runs_ms: spam,
            },
            Figure {
                name: "controller: GET /api/v1/flags?node=n07&limit=50",
                bar_ms: FLAGS_BAR_MS,
                runs_ms: node,
            },
        ],
        apply_ms,
    })
}

pub fn print(args: &FleetScaleArgs) -> Result<()> {
    let bench = run(args.changes)?;
    bench.print_table();
    println!("{}", serde_json::to_string_pretty(&bench.to_json())?);
    if let Some(report) = &args.report {
        add_to_report(report, &bench)?;
        println!("added the fleet_scale section to {}", report.display());
    }
    Ok(())
}

pub fn add_to_report(report: &Path, bench: &FleetScaleBench) -> Result<()> {
    crate::util::add_section(report, "fleet_scale", bench.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_policy_is_valid_and_moves_one_tenant() {
        let (a, one) = fragments(&fleet_policy(7), "a").expect("valid");
        let (_, other) = fragments(&fleet_policy(8), "b").expect("valid");
        assert_eq!(a.tenants.len(), TENANTS as usize + 3);
        let differ = one
            .tenants
            .iter()
            .zip(&other.tenants)
            .filter(|(x, y)| x != y)
            .count();
        assert_eq!(differ, 1);
    }
}
