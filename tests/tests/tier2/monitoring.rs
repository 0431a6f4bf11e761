//! Monitoring: the shipped Prometheus rules and Grafana queries are valid, `/metrics`
//! passes Prometheus' own lint, and a real Prometheus server scraping the daemon in the
//! lab sees exactly the counters the API reports.
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
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_common::direction;
use warden_tests::{
    http,
    lab::Proc,
    topology::{addr, warden_binary, StandardLab, API},
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
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} {args:?} still ran after {timeout:?}", program.display());
        }
        thread::sleep(Duration::from_millis(20));
    };
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

#[test]
fn metrics_exposition_passes_promtool_lint() -> Result<()> {
    let promtool = tool("promtool")?;
    let warden = warden_binary()?;
    let lab = StandardLab::build("wmon")?;
    let policy = lab.write_policy()?;
    let _daemon = lab.start_daemon(&warden, &policy, &["--detach-on-exit"])?;
    // Traffic in both directions for two tenants, so every series has a value.
    ping(&lab.globex, addr::EXT_WAN1_V4, 10, 56)?;
    ping(&lab.node, addr::EXT_WAN0_V6, 10, 100)?;
    let text = lab.get("/metrics")?;
    ensure!(
        text.contains("warden_tenant_bytes_total{tenant=\"globex\",direction=\"out\"}"),
        "/metrics has no globex series:\n{text}"
    );
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
fn prometheus_scrape_of_globex_out_bytes_equals_the_api_counter() -> Result<()> {
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
    assert_eq!(
        (packets, scraped),
        api,
        "globex out (packets, bytes): Prometheus vs API"
    );
    eprintln!("globex out: Prometheus {scraped} bytes / {packets} packets = API = kernel map");
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
    let deadline = Instant::now() + Duration::from_secs(20);
    let rules = loop {
        let v = prometheus_json(&lab, "/api/v1/rules")?;
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .context("rules without groups")?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        if rules.len() == declared && rules.iter().all(|r| r["health"] != "unknown") {
            break rules;
        }
        ensure!(
            Instant::now() < deadline,
            "Prometheus did not evaluate all {declared} rules within 20s: {rules:#?}"
        );
        thread::sleep(Duration::from_millis(250));
    };
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
    let deadline = Instant::now() + PROMETHEUS_START;
    loop {
        if let Some(status) = proc.try_wait()? {
            bail!(
                "prometheus exited ({status}) during start-up; log:\n{}",
                proc.log()
            );
        }
        let up = query(lab, "up{job=\"warden\"}").ok();
        if let Some(up) = up {
            if up.len() == 1 && up[0]["value"][1] == "1" {
                return Ok(proc);
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "prometheus did not report up{{job=\"warden\"}} == 1 within {PROMETHEUS_START:?}; log:\n{}",
                proc.log()
            );
        }
        thread::sleep(Duration::from_millis(250));
    }
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
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = query(lab, &format!("timestamp({series})"))?;
        if let Some(ts) = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|t| t.parse::<f64>().ok())
        {
            if ts > after {
                return Ok(ts);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no scrape of {series} after {after:.3} within 15s"
        );
        thread::sleep(Duration::from_millis(200));
    }
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
