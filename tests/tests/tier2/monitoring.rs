//! Monitoring: the shipped Prometheus rules and Grafana queries are valid, `/metrics`
//! (with the kernel's program statistics on) passes Prometheus' own lint, a real
//! Prometheus server scraping the daemon in the lab sees exactly the kernel's counters,
//! and the top-K bound keeps per-tenant series to K tenants while the all-tenant sums
//! keep every tenant's traffic, removed tenants included.
//!
//! Needs `prometheus` and `promtool` (Debian package `prometheus`, installed by
//! `cargo xtask setup`). Prometheus runs inside the lab's node namespace, next to the
//! daemon, and its guard stops it.

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{anyhow, ensure, Context as _, Result};
use serde_json::Value;
use warden_common::direction;
use warden_tests::{
    http,
    lab::Proc,
    topology::{addr, warden_binary, StandardLab, API},
    wait::{eventually, eventually_every, give_up},
};

use crate::common::*;

/// Where Prometheus listens inside the node namespace.
const PROMETHEUS: &str = "127.0.0.1:9090";
/// How long Prometheus may take to start and to scrape the daemon for the first time.
const PROMETHEUS_START: Duration = Duration::from_secs(60);
/// Deadline of promtool runs.
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(30);

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// `name` from PATH; fails (never skips) when the package is missing.
fn tool(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{name} not found on PATH (Debian package prometheus): run cargo xtask setup")
        })
}

/// Output of a finished promtool run.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program args` with `input` on stdin, killed after `timeout`.
fn run_with_stdin(program: &Path, args: &[&str], input: &str, timeout: Duration) -> Result<Run> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let mut stdin = child.stdin.take().context("child without stdin")?;
    let input = input.to_string();
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let exited = eventually(timeout, || child.try_wait().map_err(give_up));
    if exited.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status =
        exited.with_context(|| format!("{} {args:?} did not finish", program.display()))?;
    // A child that exits without reading all of stdin breaks the pipe: not our error.
    let _ = writer.join();
    Ok(Run {
        success: status.success(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[test]
fn prometheus_rules_pass_promtool_check() -> Result<()> {
    let promtool = tool("promtool")?;
    let rules = configs().join("prometheus-rules.yaml");
    let rules = rules.to_str().context("rules path is not UTF-8")?;
    let run = run_with_stdin(&promtool, &["check", "rules", rules], "", PROMTOOL_TIMEOUT)?;
    ensure!(
        run.success,
        "promtool check rules {rules} failed:\n{}{}",
        run.stdout,
        run.stderr
    );
    eprintln!("{}", run.stdout.trim());
    Ok(())
}

/// Turns on the kernel's program statistics (`kernel.bpf_stats_enabled`, a global
/// sysctl) for a test and puts the previous value back on drop.
pub(crate) struct BpfStats {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(crate) fn enable() -> Result<Self> {
        let previous =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing 1 to {BPF_STATS}"))?;
        Ok(BpfStats { previous })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS, self.previous.trim()) {
            eprintln!("restoring {BPF_STATS}: {e}");
        }
    }
}

#[test]
fn metrics_exposition_passes_promtool_lint() -> Result<()> {
    let promtool = tool("promtool")?;
    let warden = warden_binary()?;
    let lab = StandardLab::build("wmon")?;
    let policy = lab.write_policy()?;
    let _daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;
    // With the kernel's program statistics on, so their families are linted too.
    let stats = BpfStats::enable()?;
    // Traffic in both directions for two tenants, so every series has a value.
    ping(&lab.globex, addr::EXT_WAN1_V4, 10, 56)?;
    ping(&lab.node, addr::EXT_WAN0_V6, 10, 100)?;
    let text = lab.get("/metrics")?;
    drop(stats);
    ensure!(
        text.contains("warden_tenant_bytes_total{tenant=\"globex\",direction=\"out\"}"),
        "/metrics has no globex series:\n{text}"
    );
    let m = samples(&text);
    let get = |series: &str| {
        m.get(series)
            .copied()
            .with_context(|| format!("no {series} in /metrics:\n{text}"))
    };
    // Three tenants, all under the default K, and the all-tenant sums.
    assert_eq!(get("warden_tenants")?, 3.0, "warden_tenants");
    assert_eq!(get("warden_metrics_top_k")?, 1000.0, "warden_metrics_top_k");
    assert_eq!(
        get("warden_tenants_omitted")?,
        0.0,
        "warden_tenants_omitted"
    );
    ensure!(get("warden_tenants_bytes_total{direction=\"out\"}")? > 0.0);
    // Map fill of the management tries: one prefix per family in the lab's policy.
    for (series, v) in [
        ("warden_map_entries{map=\"MANAGEMENT_V4\"}", 1.0),
        ("warden_map_entries{map=\"MANAGEMENT_V6\"}", 1.0),
        ("warden_map_capacity{map=\"MANAGEMENT_V4\"}", 1024.0),
        ("warden_map_entries{map=\"ADDRS_V4\"}", 3.0),
        ("warden_program_stats_enabled", 1.0),
    ] {
        assert_eq!(get(series)?, v, "{series}");
    }
    // The programs that carried the pings ran: globex's XDP on lan0 (from tenant), the
    // node's tcx egress on wan0 (host mode, from tenant) and its XDP there (replies).
    for program in ["xdp_from_tenant", "tc_from_tenant", "xdp_to_tenant"] {
        let runs = get(&format!(
            "warden_program_runs_total{{program=\"{program}\"}}"
        ))?;
        let secs = get(&format!(
            "warden_program_run_seconds_total{{program=\"{program}\"}}"
        ))?;
        ensure!(
            runs >= 10.0 && secs > 0.0,
            "{program}: {runs} runs, {secs} s after 10 pings"
        );
    }
    let run = run_with_stdin(&promtool, &["check", "metrics"], &text, PROMTOOL_TIMEOUT)?;
    // promtool prints lint problems on stdout (and exits non-zero): any output fails.
    ensure!(
        run.success && run.stdout.trim().is_empty() && run.stderr.trim().is_empty(),
        "promtool check metrics found problems in /metrics:\n{}{}\n--- /metrics ---\n{text}",
        run.stdout,
        run.stderr
    );
    Ok(())
}

#[test]
fn prometheus_scrape_of_globex_out_bytes_equals_the_kernel_counters() -> Result<()> {
    let warden = warden_binary()?;
    let lab = StandardLab::build("wmon")?;
    let policy = lab.write_policy()?;
    let daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;
    let kmap = kernel_counter_map(daemon.pid())?;
    let _prometheus = start_prometheus(&lab)?;

    let before = tenant_out(&lab, "globex")?;
    let (count, payload) = (20, 56);
    ping(&lab.globex, addr::EXT_WAN1_V4, count, payload)?;
    let stopped = unix_now();

    // Two scrapes that started after the traffic stopped: the first sees all of it,
    // the second shows the value has settled.
    let series = "warden_tenant_bytes_total{tenant=\"globex\",direction=\"out\"}";
    let first = wait_sample_after(&lab, series, stopped)?;
    let second = wait_sample_after(&lab, series, first)?;
    eprintln!("scrapes at {first:.3} and {second:.3}, traffic stopped at {stopped:.3}");

    let api = tenant_out(&lab, "globex")?;
    let scraped = scalar(&query(&lab, series)?)?;
    let packets = scalar(&query(
        &lab,
        "warden_tenant_packets_total{tenant=\"globex\",direction=\"out\"}",
    )?)?;
    let api_after = tenant_out(&lab, "globex")?;
    ensure!(
        api == api_after,
        "globex out counters moved with no traffic flowing: {api:?} -> {api_after:?}"
    );
    assert_eq!(
        (api.0 - before.0, api.1 - before.1),
        (count, count * ping_frame(false, payload)),
        "globex out (packets, bytes) the pings added, per the API"
    );
    let (index, _) = api_counters(&lab)?["globex"];
    let kernel = kernel_counters(&kmap, index)?[direction::OUT as usize];
    assert_eq!(
        (kernel.packets, kernel.bytes),
        api,
        "globex out (packets, bytes): kernel map vs API"
    );
    // Exact: the daemon reads the same per-CPU counters, and no globex traffic flowed
    // between the scrape and the kernel read (the API read before and after agree).
    assert_eq!(
        (packets, scraped),
        (kernel.packets, kernel.bytes),
        "globex out (packets, bytes): Prometheus vs kernel map"
    );
    eprintln!("globex out: Prometheus {scraped} bytes / {packets} packets = kernel map = API");
    Ok(())
}

#[test]
fn prometheus_evaluates_every_alert_rule_and_dashboard_query_without_error() -> Result<()> {
    let warden = warden_binary()?;
    let lab = StandardLab::build("wmon")?;
    let policy = lab.write_policy()?;
    let _daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;
    let _prometheus = start_prometheus(&lab)?;
    ping(&lab.globex, addr::EXT_WAN1_V4, 10, 56)?;

    // The rules are loaded and each has been evaluated against the live series.
    let rules_text = std::fs::read_to_string(configs().join("prometheus-rules.yaml"))?;
    let declared = rules_text
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let rules = eventually_every(Duration::from_secs(20), Duration::from_millis(250), || {
        let v = prometheus_json(&lab, "/api/v1/rules")?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .context("rules without groups")?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        ensure!(
            rules.len() == declared && rules.iter().all(|r| r["health"] != "unknown"),
            "not all {declared} rules evaluated: {rules:#?}"
        );
        Ok(Some(rules))
    })
    .context("Prometheus did not evaluate the rules")?;
    for r in &rules {
        ensure!(
            r["health"] == "ok",
            "rule {} failed to evaluate: {}",
            r["name"],
            r["lastError"]
        );
    }
    eprintln!("{} rules evaluated, all healthy", rules.len());

    // The dashboard's tenant variable lists the policy's tenants.
    let tenants = query(&lab, "count by (tenant) (warden_tenant_bytes_total)")?;
    let mut names: Vec<&str> = tenants
        .iter()
        .filter_map(|s| s["metric"]["tenant"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["acme", "globex", "initech"], "tenant label values");

    // Every dashboard query parses and evaluates, with Grafana's variables filled in.
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        configs().join("grafana-dashboard.json"),
    )?)
    .context("grafana-dashboard.json is not JSON")?;
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    ensure!(!exprs.is_empty(), "the dashboard has no queries");
    for expr in &exprs {
        let promql = expr
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*")
            .replace("$tenant", ".*");
        let r = prometheus_request(&lab, &format!("/api/v1/query?query={}", urlencode(&promql)))?;
        ensure!(
            r.status == 200,
            "dashboard query {expr:?} failed: {} {}",
            r.status,
            r.body
        );
    }
    eprintln!("{} dashboard queries evaluate", exprs.len());
    every_family_is_watched(&lab, &exprs, &rules_text)
}

/// Families exported but deliberately on no panel and in no rule, each with why.
const UNWATCHED: &[(&str, &str)] = &[(
    "warden_program_stats_enabled",
    "whether kernel.bpf_stats_enabled is on: explains an empty program panel, alerts on nothing",
)];

/// Every metric family the daemon exports is read by a dashboard query or an alert rule,
/// or is listed in [`UNWATCHED`]; and every family in that list is still exported.
fn every_family_is_watched(lab: &StandardLab, exprs: &[String], rules: &str) -> Result<()> {
    let metrics = lab.get("/metrics")?;
    let families: Vec<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    ensure!(
        families.len() > 20,
        "only {} families exported",
        families.len()
    );
    let text = format!("{}\n{rules}", exprs.join("\n"));
    let unwatched: Vec<&str> = families
        .iter()
        .copied()
        .filter(|f| !mentions(&text, f) && !UNWATCHED.iter().any(|(n, _)| n == f))
        .collect();
    ensure!(
        unwatched.is_empty(),
        "exported but on no panel, in no rule and not in UNWATCHED: {unwatched:?}"
    );
    for (name, _) in UNWATCHED {
        ensure!(
            families.contains(name),
            "UNWATCHED lists {name}, no longer exported"
        );
    }
    eprintln!("{} exported families, each watched", families.len());
    Ok(())
}

/// Whether `text` names the family `name` as a metric (itself, or a histogram's
/// `_bucket`, `_sum`, `_count`), not merely as the start of a longer name.
fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(at, _)| {
        let rest = &text[at + name.len()..];
        let before_ok = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let after_ok = rest
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
            || ["_bucket", "_sum", "_count"].iter().any(|s| {
                rest.strip_prefix(s).is_some_and(|r| {
                    r.chars()
                        .next()
                        .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
                })
            });
        before_ok && after_ok
    })
}

/// `/metrics` samples by series (`name{labels}` as the daemon writes it).
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(series, v)| Some((series.to_string(), v.parse().ok()?)))
        .collect()
}

/// The tenants with a `warden_tenant_bytes_total` series.
fn exported_tenants(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("warden_tenant_bytes_total{tenant=\""))
        .filter(|l| l.contains("direction=\"out\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect();
    out.sort();
    out
}

/// `(packets, bytes)` per direction, `[out, in]`.
type Sums = [(u64, u64); 2];

/// `(packets, bytes)` per direction summed over `tenants` of `GET /api/v1/tenants`.
fn api_sum(lab: &StandardLab) -> Result<Sums> {
    let mut sum = [(0, 0); 2];
    for (_, (_, c)) in api_counters(lab)? {
        for d in 0..2 {
            sum[d].0 += c[d].packets;
            sum[d].1 += c[d].bytes;
        }
    }
    Ok(sum)
}

/// `warden_tenants_{packets,bytes}_total` per direction from one `/metrics`.
fn aggregate(m: &std::collections::HashMap<String, f64>) -> Result<Sums> {
    let mut out = [(0, 0); 2];
    for (d, dir) in direction::NAMES.iter().enumerate() {
        for (i, name) in ["warden_tenants_packets_total", "warden_tenants_bytes_total"]
            .iter()
            .enumerate()
        {
            let series = format!("{name}{{direction=\"{dir}\"}}");
            let v = *m.get(&series).with_context(|| format!("no {series}"))? as u64;
            if i == 0 {
                out[d].0 = v;
            } else {
                out[d].1 = v;
            }
        }
    }
    Ok(out)
}

/// The all-tenant sums of `/metrics` and the API's per-tenant sum, read while no
/// counter moved (two `/metrics` reads around the API read agree); tried for a few
/// seconds, since a lab host may send a stray neighbour discovery packet at any time.
fn settled_sums(lab: &StandardLab) -> Result<(Sums, Sums)> {
    eventually_every(Duration::from_secs(6), Duration::from_millis(300), || {
        let first = aggregate(&samples(&lab.get("/metrics")?))?;
        let api = api_sum(lab)?;
        let second = aggregate(&samples(&lab.get("/metrics")?))?;
        ensure!(
            first == second,
            "tenant counters moved: {first:?} -> {second:?}"
        );
        Ok(Some((first, api)))
    })
}

/// The lab's policy with `daemon.metrics_top_k: k`, without the tenants in `drop`.
fn policy_with(lab: &StandardLab, k: usize, drop: &[&str]) -> Result<String> {
    let text = lab.policy_text()?;
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if let Some(id) = line.strip_prefix("  - id: ") {
            skipping = drop.contains(&id.trim());
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
        if line == "daemon:" {
            out.push_str(&format!("  metrics_top_k: {k}\n"));
        }
    }
    ensure!(
        out.contains("metrics_top_k") && drop.iter().all(|t| !out.contains(&format!("id: {t}\n"))),
        "could not edit the lab policy:\n{out}"
    );
    Ok(out)
}

#[test]
fn top_k_bounds_tenant_series_and_the_sums_keep_every_tenant() -> Result<()> {
    let warden = warden_binary()?;
    let lab = StandardLab::build("wmtk")?;
    let path = lab.lab.tempdir().join("warden.yaml");
    std::fs::write(&path, policy_with(&lab, 1, &[])?)?;
    let mut daemon = lab.start_daemon(&warden, &path, &["--detach-on-exit"])?;

    // globex sends the most; initech some; acme (the node) little or nothing.
    ping(&lab.globex, addr::EXT_WAN1_V4, 40, 1000)?;
    ping(&lab.initech, addr::EXT_WAN1_V4, 5, 56)?;
    let text = lab.get("/metrics")?;
    let m = samples(&text);
    assert_eq!(
        exported_tenants(&text),
        ["globex"],
        "per-tenant series at K = 1"
    );
    for (series, v) in [
        ("warden_tenants", 3.0),
        ("warden_metrics_top_k", 1.0),
        ("warden_tenants_omitted", 2.0),
    ] {
        assert_eq!(m.get(series), Some(&v), "{series}");
    }
    for family in [
        "warden_tenant_packets_total{",
        "warden_dropped_packets_total{",
        "warden_detections_total{",
        "warden_tenant_suspended{",
    ] {
        ensure!(
            text.lines()
                .filter(|l| l.starts_with(family))
                .all(|l| l.contains("tenant=\"globex\"")),
            "{family} has another tenant than globex at K = 1"
        );
    }
    // The sums cover all three tenants: exactly the API's (the kernel's) counters.
    let (sums, api) = settled_sums(&lab)?;
    assert_eq!(
        sums, api,
        "all-tenant sums vs the API's tenants, [out, in] (packets, bytes)"
    );
    let initech = api_counters(&lab)?["initech"].1;
    ensure!(initech[0].packets >= 5, "initech out: {:?}", initech[0]);

    // Reload with K = 3 and without initech: K changes without a restart, and the
    // sums keep initech's traffic (they must not fall when a tenant leaves).
    std::fs::write(&path, policy_with(&lab, 3, &["initech"])?)?;
    // SAFETY: signals the daemon we started.
    ensure!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) } == 0);
    let text = eventually(Duration::from_secs(10), || {
        if let Some(status) = daemon.try_wait().map_err(give_up)? {
            return Err(give_up(anyhow!("the daemon exited ({status}) on SIGHUP")));
        }
        let text = lab.get("/metrics")?;
        Ok(text
            .contains("\nwarden_policy_generation 2\n")
            .then_some(text))
    })
    .with_context(|| format!("SIGHUP did not apply generation 2; log:\n{}", daemon.log()))?;
    let m = samples(&text);
    assert_eq!(
        exported_tenants(&text),
        ["acme", "globex"],
        "per-tenant series at K = 3"
    );
    for (series, v) in [
        ("warden_tenants", 2.0),
        ("warden_metrics_top_k", 3.0),
        ("warden_tenants_omitted", 0.0),
        ("warden_policy_generation", 2.0),
    ] {
        assert_eq!(m.get(series), Some(&v), "{series}");
    }
    let (after, api) = settled_sums(&lab)?;
    for d in 0..2 {
        // What the sums hold beyond the current tenants is initech's, read from the
        // API before the reload; initech's host may have sent a stray neighbour
        // discovery frame between that read and the reload (at most 4, 100 B each).
        let retired = (after[d].0 - api[d].0, after[d].1 - api[d].1);
        let final_initech = (initech[d].packets, initech[d].bytes);
        ensure!(
            retired.0 >= final_initech.0
                && retired.1 >= final_initech.1
                && retired.0 - final_initech.0 <= 4
                && retired.1 - final_initech.1 <= 400,
            "direction {}: sums minus current tenants {retired:?}, initech had {final_initech:?}",
            direction::NAMES[d]
        );
        ensure!(
            after[d] >= sums[d],
            "sums fell: {:?} -> {:?}",
            sums[d],
            after[d]
        );
    }
    Ok(())
}

/// Starts Prometheus in the node namespace scraping the daemon every second (job
/// "warden", with the shipped rules loaded) and waits until the target is up.
fn start_prometheus(lab: &StandardLab) -> Result<Proc> {
    let prometheus = tool("prometheus")?;
    let dir = lab.lab.tempdir().join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let rules = configs().join("prometheus-rules.yaml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: warden\n    scrape_interval: 1s\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: ['{API}']\n",
            rules = rules.display()
        ),
    )?;
    let args = [
        prometheus
            .to_str()
            .context("prometheus path is not UTF-8")?
            .to_string(),
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
        format!("--web.listen-address={PROMETHEUS}"),
        "--web.enable-lifecycle".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut proc = lab.node.spawn(&args)?;
    eventually_every(PROMETHEUS_START, Duration::from_millis(250), || {
        if let Some(status) = proc.try_wait().map_err(give_up)? {
            return Err(give_up(anyhow!("prometheus exited ({status})")));
        }
        let up = query(lab, "up{job=\"warden\"}")?;
        ensure!(up.len() == 1 && up[0]["value"][1] == "1", "up is {up:?}");
        Ok(true)
    })
    .with_context(|| {
        format!(
            "prometheus did not report up{{job=\"warden\"}} == 1; log:\n{}",
            proc.log()
        )
    })?;
    Ok(proc)
}

fn prometheus_request(lab: &StandardLab, path: &str) -> Result<http::Response> {
    let addr: SocketAddr = PROMETHEUS.parse().expect("PROMETHEUS is a socket address");
    http::request_in_netns(lab.node.name(), addr, "GET", path, None, None)
}

fn prometheus_json(lab: &StandardLab, path: &str) -> Result<Value> {
    let r = prometheus_request(lab, path)?;
    ensure!(
        r.status == 200,
        "GET {path}: status {}: {}",
        r.status,
        r.body
    );
    let v: Value =
        serde_json::from_str(&r.body).with_context(|| format!("GET {path}: {}", r.body))?;
    ensure!(v["status"] == "success", "GET {path}: {}", r.body);
    Ok(v)
}

/// An instant query's result vector.
fn query(lab: &StandardLab, promql: &str) -> Result<Vec<Value>> {
    let v = prometheus_json(lab, &format!("/api/v1/query?query={}", urlencode(promql)))?;
    v["data"]["result"]
        .as_array()
        .cloned()
        .with_context(|| format!("query {promql}: no result vector"))
}

/// The value of a one-sample result, as an exact integer.
fn scalar(result: &[Value]) -> Result<u64> {
    ensure!(result.len() == 1, "expected one sample, got {result:?}");
    let text = result[0]["value"][1]
        .as_str()
        .context("sample without value")?;
    text.parse()
        .with_context(|| format!("sample value {text:?} is not an integer"))
}

/// Waits until Prometheus holds a sample of `series` scraped after `after` (Unix
/// seconds) and returns its timestamp.
fn wait_sample_after(lab: &StandardLab, series: &str, after: f64) -> Result<f64> {
    eventually_every(Duration::from_secs(15), Duration::from_millis(200), || {
        let r = query(lab, &format!("timestamp({series})"))?;
        Ok(r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|&ts| ts > after))
    })
    .with_context(|| format!("no scrape of {series} after {after:.3}"))
}

/// A tenant's `(packets, bytes)` out, per `GET /api/v1/tenants/{id}`.
fn tenant_out(lab: &StandardLab, tenant: &str) -> Result<(u64, u64)> {
    let v: Value = serde_json::from_str(&lab.get(&format!("/api/v1/tenants/{tenant}"))?)?;
    let field = |k: &str| {
        v["out"][k]
            .as_u64()
            .with_context(|| format!("tenant {tenant}: no out.{k} in {v}"))
    };
    Ok((field("packets")?, field("bytes")?))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
