//! `/metrics` with 10,000 tenants, against the 50 ms bar.
//!
//! The daemon's `GET /metrics` does two things under its lock: it reads every tenant's
//! counters and drops from the kernel (`Dataplane::all_tenant_counters` and
//! `Dataplane::all_drop_counters`, batch lookups of two per-CPU arrays), then formats the
//! snapshot (`warden::metrics::render`, which picks the top K tenants). Both parts are
//! timed here through the daemon's own functions:
//!
//! - read: a `Dataplane` opened on a private bpffs directory (maps only, nothing
//!   attached; removed at the end), 10,000 tenant slots read the way the snapshot
//!   reads them;
//! - render: `metrics::render` on a snapshot of 10,000 tenants with figures in every
//!   field, at the default K (1000) and at the largest K (10,000: every tenant
//!   exported).
//!
//! - daemon: `GET /metrics` of the release daemon running on the standard namespace
//!   lab with a policy of 10,000 tenants (one /32 each), over HTTP from the node
//!   namespace (a fresh connection each time), at the default K.
//!
//! Each is run [`RUNS`] times; the median counts. The bar applies to read + render at
//! the default K, and to the daemon's whole answer.

use crate::util::median;
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{ensure, Context as _, Result};
use serde_json::{json, Value};
use warden::metrics::{self, Snapshot, TenantSeries, TopK};
use warden_common::{reason, Counters, DropCounters};
use warden_dataplane::Dataplane;
use warden_policy::Kind;

/// Tenants in the snapshot.
pub const TENANTS: usize = 10_000;
/// Runs per figure (the median counts).
pub const RUNS: usize = 15;
/// The bar for read + render, ms.
pub const BAR_MS: f64 = 50.0;

/// One timed part.
pub struct Part {
    pub name: String,
    pub top_k: Option<usize>,
    /// Milliseconds, one per run.
    pub runs_ms: Vec<f64>,
    /// Bytes of the exposition (render parts).
    pub bytes: Option<usize>,
}

impl Part {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }
}

/// The figures of the metrics bench.
pub struct MetricsBench {
    pub parts: Vec<Part>,
    /// The cargo profile the figures were measured with.
    pub profile: String,
}

impl MetricsBench {
    /// Read + render at the default K, ms.
    pub fn scrape_ms(&self) -> f64 {
        self.parts
            .iter()
            .filter(|p| {
                p.name == "read"
                    || (p.name == "render" && p.top_k == Some(warden_policy::DEFAULT_TOP_K))
            })
            .map(Part::median_ms)
            .sum()
    }

    /// The real daemon's `GET /metrics`, ms (median).
    pub fn daemon_ms(&self) -> Option<f64> {
        self.parts
            .iter()
            .find(|p| p.name == "daemon")
            .map(Part::median_ms)
    }

    pub fn pass(&self) -> bool {
        self.scrape_ms() <= BAR_MS && self.daemon_ms().is_none_or(|ms| ms <= BAR_MS)
    }

    /// What `bench` lists when the bar is missed.
    pub fn failure(&self) -> String {
        format!("/metrics with {TENANTS} tenants (bar {BAR_MS} ms)")
    }

    pub fn print(&self) {
        println!(
            "\n/metrics with {TENANTS} tenants ({} build, median of {RUNS} runs; bar {BAR_MS} ms for read + render at K = {}):",
            self.profile,
            warden_policy::DEFAULT_TOP_K
        );
        for p in &self.parts {
            let what = match (p.name.as_str(), p.top_k) {
                ("daemon", _) => "GET /metrics of a release daemon on a lab".to_string(),
                (_, Some(k)) => format!("{} (K = {k})", p.name),
                (_, None) => format!("{} (kernel counters of {TENANTS} tenants)", p.name),
            };
            let size = p
                .bytes
                .map(|b| format!(", {:.1} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or_default();
            println!("  {what:<44} {:>8.2} ms{size}", p.median_ms());
        }
        println!(
            "  {:<44} {:>8.2} ms  {}",
            "read + render (default K)",
            self.scrape_ms(),
            if self.pass() { "pass" } else { "OVER THE BAR" }
        );
    }

    pub fn to_json(&self) -> Value {
        json!({
            "method": "read: the daemon's snapshot reads (Dataplane::all_tenant_counters and \
                       all_drop_counters) on maps in a private bpffs directory; render: \
                       metrics::render on a snapshot of every tenant; daemon: GET /metrics \
                       of the release daemon with that many tenants on a namespace lab; \
                       wall-clock ms per run, median",
            "profile": self.profile,
            "tenants": TENANTS,
            "runs": RUNS,
            "bar_ms": BAR_MS,
            "scrape_ms": self.scrape_ms(),
            "daemon_get_ms": self.daemon_ms(),
            "pass": self.pass(),
            "parts": self.parts.iter().map(|p| json!({
                "name": p.name,
                "top_k": p.top_k,
                "median_ms": p.median_ms(),
                "runs_ms": p.runs_ms,
                "bytes": p.bytes,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A snapshot of `n` tenants with a figure in every field, unlike one another, as a
/// busy node would have: the render cost does not depend on the values, but on the
/// digits, so they are large.
pub fn snapshot(n: usize) -> Snapshot {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*: deterministic figures.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16
    };
    let tenants = (0..n)
        .map(|i| {
            let mut drops = [DropCounters::default(); 2];
            for d in &mut drops {
                for r in 0..reason::COUNT {
                    d.packets[r] = next() % 1_000_000;
                }
            }
            TenantSeries {
                id: format!("tenant-{i:05}").into(),
                counters: [0, 1].map(|_| Counters {
                    packets: next() % 10_000_000_000,
                    bytes: next(),
                }),
                drops,
                suspended: i % 97 == 0,
                detections: [0; Kind::ALL.len()].map(|_| next() % 50),
            }
        })
        .collect();
    Snapshot {
        tenants,
        maps: vec![("ADDRS_V4".into(), n as u64, 131_072)],
        ..Default::default()
    }
}

/// Times `metrics::render` at `k`.
fn render_part(base: &Snapshot, k: usize) -> Result<Part> {
    let s = Snapshot {
        top_k: TopK(k),
        ..base.clone()
    };
    let mut runs_ms = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    for _ in 0..RUNS {
        let t = Instant::now();
        let text = metrics::render(&s);
        runs_ms.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = text.len();
        let exported = text
            .lines()
            .filter(|l| l.starts_with("warden_tenant_suspended{"))
            .count();
        ensure!(
            exported == k.min(TENANTS),
            "render at K = {k} exported {exported} tenants"
        );
        std::hint::black_box(text);
    }
    Ok(Part {
        name: "render".into(),
        top_k: Some(k),
        runs_ms,
        bytes: Some(bytes),
    })
}

/// Removes the private bpffs directory on every exit path.
struct BpffsDir(PathBuf);

impl Drop for BpffsDir {
    fn drop(&mut self) {
        if let Err(e) = Dataplane::uninstall(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Times the kernel reads of `TENANTS` tenant slots.
fn read_part(dir: &Path) -> Result<Part> {
    let dp = Dataplane::open(dir).with_context(|| {
        format!(
            "opening the maps in {} (needs root and a bpffs at /sys/fs/bpf)",
            dir.display()
        )
    })?;
    let mut runs_ms = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let c = dp.all_tenant_counters(TENANTS as u32)?;
        let d = dp.all_drop_counters(TENANTS as u32)?;
        runs_ms.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(
            c.len() == TENANTS && d.len() == TENANTS,
            "read {} counters and {} drops of {TENANTS} slots",
            c.len(),
            d.len()
        );
        std::hint::black_box((c, d));
    }
    Ok(Part {
        name: "read".into(),
        top_k: None,
        runs_ms,
        bytes: None,
    })
}

/// Measures in this process (whatever its profile).
fn measure() -> Result<MetricsBench> {
    let dir = BpffsDir(PathBuf::from(format!(
        "/sys/fs/bpf/warden-bench-metrics-{}",
        std::process::id()
    )));
    let read = read_part(&dir.0)?;
    drop(dir);
    let base = snapshot(TENANTS);
    let mut parts = vec![read];
    for k in [warden_policy::DEFAULT_TOP_K, warden_policy::MAX_TOP_K] {
        parts.push(render_part(&base, k)?);
    }
    parts.push(daemon_part()?);
    Ok(MetricsBench {
        parts,
        profile: if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
        .into(),
    })
}

/// `warden-bench metrics`: measures and prints the JSON on stdout.
pub fn print_json() -> Result<()> {
    println!("{}", measure()?.to_json());
    Ok(())
}

/// Measures with the release profile (the daemon's), running this task built with it
/// when warden-bench itself is a debug build, and prints the figures.
/// Times `GET /metrics` of a real daemon (the release build next to this executable)
/// with `TENANTS` tenants on the standard namespace lab, over HTTP from the node
/// namespace: lock, kernel reads, render and transfer.
fn daemon_part() -> Result<Part> {
    use std::fmt::Write as _;
    use warden_tests::topology::StandardLab;
    let bin = std::env::current_exe()
        .context("locating warden-bench")?
        .with_file_name("warden");
    ensure!(
        bin.is_file(),
        "no release daemon at {} (cargo build --release -p warden)",
        bin.display()
    );
    let lab = StandardLab::build("wbm")?;
    let mut policy = lab.policy_header()?;
    policy.push_str("tenants:\n");
    for i in 0..TENANTS as u32 {
        // 198.18.64.0 + i: inside 198.18.0.0/15, clear of the lab's own hosts.
        let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 64, 0)) + i);
        let _ = writeln!(policy, "  - id: t{i:05}\n    addresses: [{a}/32]");
    }
    let path = lab.write_policy_as("metrics-bench.yaml", &policy)?;
    let _daemon = lab.start_daemon(&bin, &path, &["--detach-on-exit"])?;
    let first = lab.get("/metrics")?;
    ensure!(
        first.contains(&format!("\nwarden_tenants {TENANTS}\n")),
        "the daemon does not report {TENANTS} tenants"
    );
    let mut runs_ms = Vec::with_capacity(RUNS);
    let mut bytes = first.len();
    for _ in 0..RUNS {
        let t = Instant::now();
        let text = lab.get("/metrics")?;
        runs_ms.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = text.len();
    }
    Ok(Part {
        name: "daemon".into(),
        top_k: Some(warden_policy::DEFAULT_TOP_K),
        runs_ms,
        bytes: Some(bytes),
    })
}

pub fn run() -> Result<MetricsBench> {
    println!("==> /metrics: kernel reads and render of {TENANTS} tenants, median of {RUNS} (release build)");
    let bench = if cfg!(debug_assertions) {
        let v = crate::util::run_release_task("metrics")?;
        from_json(&v)?
    } else {
        measure()?
    };
    bench.print();
    Ok(bench)
}

fn from_json(v: &Value) -> Result<MetricsBench> {
    let parts = v["parts"]
        .as_array()
        .context("no parts")?
        .iter()
        .map(|p| {
            Ok(Part {
                name: p["name"].as_str().context("part without name")?.to_owned(),
                top_k: p["top_k"].as_u64().map(|k| k as usize),
                runs_ms: p["runs_ms"]
                    .as_array()
                    .context("part without runs")?
                    .iter()
                    .map(|r| r.as_f64().context("run is not a number"))
                    .collect::<Result<_>>()?,
                bytes: p["bytes"].as_u64().map(|b| b as usize),
            })
        })
        .collect::<Result<_>>()?;
    Ok(MetricsBench {
        parts,
        profile: v["profile"].as_str().unwrap_or("unknown").to_owned(),
    })
}

/// Adds the figures to `report` (the bench's report.json) as `metrics_render`.
pub fn add_to_report(report: &Path, bench: &MetricsBench) -> Result<()> {
    crate::util::add_section(report, "metrics_render", bench.to_json())
}
