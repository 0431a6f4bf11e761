//! Detection latency for `cargo xtask bench`: from the start of an attack to its flag
//! in the API and, where the action drops traffic, to the first drop, median over
//! runs. The `detect_latency` harness (`tests/src/bin/detect_latency.rs`) measures it
//! in the standard namespace lab with the real daemon, hping3 and nmap; this module
//! builds the harness and the daemon, runs it, and reads its JSON.
//!
//! The bar (issue 4): floods and default-speed scans are detected within [`BAR_MS`] of
//! their start, median over the runs; a case whose action drops traffic must also drop
//! within the bar. A median is missing when most runs saw nothing within the timeout.

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::util;

/// The most the median may take from the attack's start to the flag (and first drop).
pub const BAR_MS: f64 = 1_000.0;

/// How [`run`] measures.
#[derive(Clone, Debug)]
pub struct LatencyOptions {
    /// Runs per case (each on a fresh daemon); the figures are their medians.
    pub runs: u32,
    /// How long a run waits for the flag and the first drop, in seconds.
    pub timeout_s: u32,
    /// Measure the release build of the daemon instead of the debug build.
    pub release: bool,
}

impl Default for LatencyOptions {
    fn default() -> Self {
        LatencyOptions {
            runs: 5,
            timeout_s: 5,
            release: false,
        }
    }
}

/// One case's figures, in milliseconds from the attack's start.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseLatency {
    /// `syn_flood_out`, `udp_flood_in`, `scan`.
    pub case: String,
    /// The detection kind of the flag.
    pub kind: String,
    /// The tenant the flag names.
    pub tenant: String,
    /// The policy's action for the kind.
    pub action: String,
    /// Per run, the time to the flag (`None`: not within the timeout).
    pub flag_ms: Vec<Option<f64>>,
    /// Per run, the time to the first drop; `None` for an action that drops nothing.
    pub drop_ms: Option<Vec<Option<f64>>>,
    /// Median of `flag_ms`, missed runs counting as later than any detection.
    pub median_flag_ms: Option<f64>,
    /// Median of `drop_ms`, likewise.
    pub median_drop_ms: Option<f64>,
}

impl CaseLatency {
    /// Whether the medians are within [`BAR_MS`].
    pub fn pass(&self) -> bool {
        let within = |m: Option<f64>| m.is_some_and(|m| m <= BAR_MS);
        within(self.median_flag_ms) && (self.drop_ms.is_none() || within(self.median_drop_ms))
    }

    fn from_json(v: &Value) -> Result<CaseLatency> {
        let text = |key: &str| {
            v[key]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("case without `{key}`: {v}"))
        };
        let figures = |key: &str| crate::report::ms_runs(v, key);
        let drop_ms = match &v["drop_ms"] {
            Value::Null => None,
            _ => Some(figures("drop_ms")?),
        };
        Ok(CaseLatency {
            case: text("case")?,
            kind: text("kind")?,
            tenant: text("tenant")?,
            action: text("action")?,
            flag_ms: figures("flag_ms")?,
            drop_ms,
            median_flag_ms: v["median_flag_ms"].as_f64(),
            median_drop_ms: v["median_drop_ms"].as_f64(),
        })
    }
}

/// What the harness measured.
#[derive(Clone, Debug)]
pub struct LatencyReport {
    /// Per case, in the harness's order.
    pub cases: Vec<CaseLatency>,
    /// How long a run waited, in seconds.
    pub timeout_s: f64,
    /// The harness's whole report (attack rates, poll gaps, method).
    raw: Value,
}

impl LatencyReport {
    /// Reads the harness's JSON report.
    pub fn from_json(raw: Value) -> Result<LatencyReport> {
        let cases = raw["cases"]
            .as_array()
            .context("latency report without a `cases` list")?
            .iter()
            .map(CaseLatency::from_json)
            .collect::<Result<Vec<_>>>()?;
        let timeout_s = raw["timeout_s"]
            .as_f64()
            .context("latency report without `timeout_s`")?;
        Ok(LatencyReport {
            cases,
            timeout_s,
            raw,
        })
    }

    /// Names of the cases over the bar.
    pub fn failed(&self) -> Vec<&str> {
        self.cases
            .iter()
            .filter(|c| !c.pass())
            .map(|c| c.case.as_str())
            .collect()
    }

    /// The report for `report.json`: the harness's, with the bar and each case's verdict.
    pub fn to_json(&self) -> Value {
        let mut v = self.raw.clone();
        v["bar_ms"] = json!(BAR_MS);
        if let Some(cases) = v["cases"].as_array_mut() {
            for (raw, case) in cases.iter_mut().zip(&self.cases) {
                raw["pass"] = json!(case.pass());
            }
        }
        v
    }

    /// An aligned table: one row per case, medians and every run.
    pub fn print_table(&self) {
        let missed = format!("> {} s", self.timeout_s);
        let cell = |m: Option<f64>| m.map_or_else(|| missed.clone(), |m| format!("{m:.0}"));
        let runs = |r: &[Option<f64>]| r.iter().map(|m| cell(*m)).collect::<Vec<_>>().join(" ");
        let headers = [
            "case",
            "kind",
            "action",
            "flag ms",
            "drop ms",
            "flag runs",
            "drop runs",
            "bar",
        ];
        let rows: Vec<Vec<String>> = self
            .cases
            .iter()
            .map(|c| {
                vec![
                    c.case.clone(),
                    c.kind.clone(),
                    c.action.clone(),
                    cell(c.median_flag_ms),
                    c.drop_ms
                        .as_ref()
                        .map_or_else(|| "-".into(), |_| cell(c.median_drop_ms)),
                    runs(&c.flag_ms),
                    c.drop_ms.as_deref().map_or_else(|| "-".into(), runs),
                    format!(
                        "{} (median <= {BAR_MS} ms)",
                        if c.pass() { "PASS" } else { "FAIL" }
                    ),
                ]
            })
            .collect();
        print!("{}", warden::cli::table(&headers, &rows));
    }
}

/// Builds the daemon and the harness, runs every case, and returns the figures. The
/// harness's progress goes to stderr; its report is kept at `target/bench/latency.json`.
/// Needs root (it builds a namespace lab), hping3 and nmap (`cargo xtask setup`).
pub fn run(opts: &LatencyOptions) -> Result<LatencyReport> {
    let _every_cpu = EveryCpu::widen()?;
    util::cargo_build(opts.release).context("building the daemon and the latency harness")?;
    let target = target_dir();
    let bin = target.join(if opts.release { "release" } else { "debug" });
    let harness = existing(bin.join("detect_latency"))?;
    let warden = existing(bin.join("warden"))?;
    let dir = target.join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let out = dir.join("latency.json");
    // A stale report must not pass for this run's.
    if out.exists() {
        fs::remove_file(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    println!(
        "detection latency: {} runs per case, {} s timeout, {} daemon",
        opts.runs,
        opts.timeout_s,
        if opts.release { "release" } else { "debug" }
    );
    let mut cmd = Command::new(&harness);
    cmd.args(["--runs", &opts.runs.to_string()])
        .args(["--timeout-s", &opts.timeout_s.to_string()])
        .arg("--out")
        .arg(&out)
        .env("WARDEN_BIN", &warden)
        .stdin(Stdio::null());
    util::run(&mut cmd)?;
    let text = fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let raw: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))?;
    LatencyReport::from_json(raw).with_context(|| format!("reading {}", out.display()))
}

/// Lets the calling thread, and so every process it starts (the build, the harness, the
/// daemon, the attack tools), run on every online CPU until dropped, then restores the
/// affinity it had: the per-packet bench pins itself to one CPU, and a latency
/// measured with the daemon, the attacker and the kernel's work for both on one CPU
/// would measure that CPU's queue.
pub(crate) struct EveryCpu {
    saved: libc::cpu_set_t,
}

impl EveryCpu {
    pub(crate) fn widen() -> Result<EveryCpu> {
        // SAFETY: cpu_set_t is plain data; sched_getaffinity writes inside the one we own.
        let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; pid 0 is the calling thread.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&saved), &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the CPU affinity");
        }
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let online = usize::try_from(online)
            .unwrap_or(1)
            .clamp(1, libc::CPU_SETSIZE as usize);
        // SAFETY: plain data; CPU_SET writes inside the set (bounds checked by libc).
        let mut every: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in 0..online {
            // SAFETY: as above.
            unsafe { libc::CPU_SET(cpu, &mut every) };
        }
        // SAFETY: a valid set of the size given; pid 0 is the calling thread.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&every), &every) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("allowing the task all {online} CPUs"));
        }
        Ok(EveryCpu { saved })
    }
}

impl Drop for EveryCpu {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity filled in; pid 0 is this thread.
        let rc =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.saved), &self.saved) };
        if rc != 0 {
            eprintln!(
                "latency: could not restore the CPU affinity: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Where cargo puts its output: `$CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{} was not built", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Value {
        json!({
            "timeout_s": 5.0,
            "cases": [
                {"case": "syn_flood_out", "kind": "flood_out", "tenant": "globex",
                 "action": "block", "flag_ms": [120.5, null, 80.0],
                 "drop_ms": [130.0, null, 90.0], "median_flag_ms": 120.5,
                 "median_drop_ms": 130.0},
                {"case": "scan", "kind": "scan", "tenant": "globex", "action": "flag",
                 "flag_ms": [null, null, 900.0], "drop_ms": null,
                 "median_flag_ms": null, "median_drop_ms": null},
                {"case": "udp_flood_in", "kind": "flood_in", "tenant": "acme",
                 "action": "block", "flag_ms": [200.0, 300.0, 250.0],
                 "drop_ms": [null, null, 1200.0], "median_flag_ms": 250.0,
                 "median_drop_ms": null},
            ],
        })
    }

    #[test]
    fn a_case_passes_only_when_every_median_it_has_is_within_the_bar() -> Result<()> {
        let r = LatencyReport::from_json(report())?;
        assert_eq!(r.cases[0].flag_ms, [Some(120.5), None, Some(80.0)]);
        assert!(r.cases[0].pass());
        assert_eq!(r.cases[1].drop_ms, None);
        assert!(!r.cases[1].pass(), "a missing flag median fails");
        assert!(
            !r.cases[2].pass(),
            "a missing drop median fails a block case"
        );
        assert_eq!(r.failed(), ["scan", "udp_flood_in"]);
        let v = r.to_json();
        assert_eq!(v["bar_ms"], json!(BAR_MS));
        assert_eq!(v["cases"][0]["pass"], json!(true));
        assert_eq!(v["cases"][1]["pass"], json!(false));
        Ok(())
    }

    #[test]
    fn a_malformed_report_is_an_error_not_a_pass() {
        let mut bad = report();
        bad["cases"][0]["flag_ms"] = json!(["soon"]);
        assert!(LatencyReport::from_json(bad).is_err());
        assert!(LatencyReport::from_json(json!({"timeout_s": 5.0})).is_err());
        let mut no_kind = report();
        no_kind["cases"][1]
            .as_object_mut()
            .map(|c| c.remove("kind"));
        assert!(LatencyReport::from_json(no_kind).is_err());
    }
}
