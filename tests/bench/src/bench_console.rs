//! The console with 10,000 flags in a real browser, against issue 21's bars: the
//! queue's first page in under 1 s, a filter change in under 300 ms.
//!
//! A release `warden run` on the standard namespace lab (three tenants) gets
//! [`console::MANY`] flags written into its database (`warden_tests::console::seed_flags`,
//! the Tier 2 test's flags: every 4th a `spam`, every 10th acked). Headless Chromium
//! (ChromeDriver, both in the lab's node namespace) then makes `runs` runs, each a
//! fresh load of `/ui/` with no session (`warden_tests::console::queue_run`, the
//! measurement the Tier 2 test prints):
//!
//! - first page: the sign-in click to the frame after the queue's first 50 rows are in
//!   the page (the token check, both API calls of the queue, the render), timed in the
//!   page with `performance.now()`; the page's own fetch-and-render time is reported
//!   beside it;
//! - kind filter change (any kind to `spam`) and state filter change (any state to
//!   `acked`, kind still `spam`): the change to the frame after the new rows.
//!
//! Every timed step is checked (the range the pager shows, the rows' kind or state,
//! the counts per state), so a figure is the page it names. The first run meets the
//! browser's empty cache; the others revalidate the console's files (`no-cache`).
//!
//! The server alone: `GET /api/v1/flags?limit=50` and `GET /api/v1/flags/summary`, the
//! two calls of a queue load, from the node namespace on a fresh connection each
//! ([`API_RUNS`] each, interleaved), so a reader can tell the browser's share from the
//! server's.
//!
//! Bars: the median over the runs (the worst is reported beside it). `warden-bench
//! console` runs this part alone.

use crate::util::median;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Value};
use warden_tests::{
    console::{self, ApiRuns, QueueRun},
    topology::{token, StandardLab},
    webdriver::{self, Browser},
};

/// Bar: sign-in click to the first page's rows, median, ms.
pub const FIRST_PAGE_BAR_MS: f64 = 1_000.0;
/// Bar: a filter change to the new rows, median, ms.
pub const FILTER_BAR_MS: f64 = 300.0;
/// Requests of each API route timed alone.
pub const API_RUNS: usize = 15;
/// Where ChromeDriver listens inside the lab's node namespace.
const DRIVER_PORT: u16 = 9515;
/// The tenants of the seeded flags, on the standard lab's addresses.
const POLICY: &str = "defaults:
  smtp: block
tenants:
  - id: acme
    addresses: [198.18.1.1/32, 2001:db8:1::1/128]
  - id: globex
    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]
  - id: initech
    addresses: [198.18.2.130/32, 2001:db8:2:2::10/128]
";
const METHOD: &str = "a release `warden run` on a namespace lab with 10,000 flags written \
    into its database; headless Chromium through ChromeDriver in the lab's node namespace; \
    each run a fresh load of /ui/ without a session, then: the sign-in click to the frame \
    after the first page's 50 rows (token check, both API calls, render), the kind filter \
    set to spam, then the state filter set to acked, each to the frame after the new rows; \
    times taken in the page (performance.now()), every step checked (pager range, rows' \
    kind or state, counts per state); the first run meets an empty browser cache. Server \
    alone: GET /api/v1/flags?limit=50 and GET /api/v1/flags/summary from the node \
    namespace, a fresh connection each; bars on the median over the runs";

/// Options of the console part (`cargo xtask bench`, flattened into its arguments).
#[derive(clap::Args, Clone, Debug)]
pub struct ConsoleOptions {
    /// Skip the console case (headless Chromium on a queue of 10,000 flags).
    #[arg(long)]
    pub skip_console: bool,
    /// Fresh page loads of the console case (median and worst reported).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(5..))]
    pub console_runs: u32,
}

/// `warden-bench console`: the console part alone.
#[derive(clap::Args, Clone, Debug)]
pub struct ConsoleArgs {
    /// Fresh page loads (median and worst reported).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(5..))]
    runs: u32,
    /// Also add the figures to this bench report (e.g. target/bench/report.json) as
    /// its `console` section; `cargo xtask bench-report` then writes BENCHMARKS.md.
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One reported figure: ms per run, with its bar if it has one.
pub struct Figure {
    pub name: &'static str,
    pub bar_ms: Option<f64>,
    pub runs_ms: Vec<f64>,
}

impl Figure {
    pub fn median_ms(&self) -> f64 {
        median(&self.runs_ms)
    }

    pub fn worst_ms(&self) -> f64 {
        self.runs_ms.iter().copied().fold(f64::NAN, f64::max)
    }

    /// No bar: no verdict.
    pub fn pass(&self) -> Option<bool> {
        self.bar_ms.map(|bar| self.median_ms() <= bar)
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

/// The figures of the console part.
pub struct ConsoleBench {
    pub flags: u32,
    /// The browser's figures, in the order of a run.
    pub browser: Vec<Figure>,
    /// The API routes alone.
    pub server: Vec<Figure>,
}

impl ConsoleBench {
    fn new(flags: u32, runs: &[QueueRun], api: ApiRuns) -> ConsoleBench {
        let of = |f: fn(&QueueRun) -> f64| runs.iter().map(f).collect();
        ConsoleBench {
            flags,
            browser: vec![
                Figure {
                    name: "first page: sign-in click to the rows shown",
                    bar_ms: Some(FIRST_PAGE_BAR_MS),
                    runs_ms: of(|r| r.first_page.ms),
                },
                Figure {
                    name: "first page: its API calls and render (the page's account)",
                    bar_ms: None,
                    runs_ms: of(|r| r.first_page.fetch_render_ms),
                },
                Figure {
                    name: "kind filter change to the new rows",
                    bar_ms: Some(FILTER_BAR_MS),
                    runs_ms: of(|r| r.kind_change_ms),
                },
                Figure {
                    name: "state filter change to the new rows",
                    bar_ms: Some(FILTER_BAR_MS),
                    runs_ms: of(|r| r.state_change_ms),
                },
            ],
            server: vec![
                Figure {
                    name: "server: GET /api/v1/flags?limit=50",
                    bar_ms: None,
                    runs_ms: api.flags_page_ms,
                },
                Figure {
                    name: "server: GET /api/v1/flags/summary",
                    bar_ms: None,
                    runs_ms: api.summary_ms,
                },
            ],
        }
    }

    fn figures(&self) -> impl Iterator<Item = &Figure> {
        self.browser.iter().chain(&self.server)
    }

    /// What `bench` lists for every figure over its bar.
    pub fn failed(&self) -> Vec<String> {
        self.figures()
            .filter(|f| f.pass() == Some(false))
            .map(|f| {
                format!(
                    "console, {} flags: {} (bar {} ms)",
                    self.flags,
                    f.name,
                    f.bar_ms.unwrap_or_default()
                )
            })
            .collect()
    }

    pub fn print_table(&self) {
        println!(
            "\nconsole: queue of {} flags in headless Chromium, release daemon, {} fresh \
             page loads (bars on the median):",
            self.flags,
            self.browser.first().map_or(0, |f| f.runs_ms.len())
        );
        let rows: Vec<[String; 5]> = self
            .figures()
            .map(|f| {
                [
                    f.name.to_string(),
                    format!("{:.1}", f.median_ms()),
                    format!("{:.1}", f.worst_ms()),
                    f.bar_ms
                        .map_or_else(|| "-".into(), |b| format!("{b:.0} ms")),
                    match f.pass() {
                        None => String::new(),
                        Some(true) => "PASS".into(),
                        Some(false) => "FAIL".into(),
                    },
                ]
            })
            .collect();
        crate::util::print_aligned(["figure", "median ms", "worst ms", "bar", ""], &rows, |i| {
            (1..=3).contains(&i)
        });
    }

    pub fn to_json(&self) -> Value {
        let list = |v: &[Figure]| v.iter().map(Figure::to_json).collect::<Vec<_>>();
        json!({
            "method": METHOD,
            "daemon": "release",
            "flags": self.flags,
            "runs": self.browser.first().map_or(0, |f| f.runs_ms.len()),
            "api_runs": self.server.first().map_or(0, |f| f.runs_ms.len()),
            "first_page_bar_ms": FIRST_PAGE_BAR_MS,
            "filter_bar_ms": FILTER_BAR_MS,
            "browser": list(&self.browser),
            "server": list(&self.server),
            "pass": self.failed().is_empty(),
        })
    }
}

/// Fails before anything is measured when the browser is missing: `cargo xtask bench`
/// checks this first, so a long run does not end on it.
pub fn preflight(opts: &ConsoleOptions) -> Result<()> {
    if opts.skip_console {
        return Ok(());
    }
    webdriver::check_installed().context("the console case (--skip-console leaves it out)")
}

/// Measures the console part: `runs` fresh page loads, then the API alone.
pub fn run(runs: u32) -> Result<ConsoleBench> {
    println!(
        "==> console: a queue of {} flags in headless Chromium, {runs} fresh page loads \
         (release daemon)",
        console::MANY
    );
    webdriver::check_installed().context("the console case (--skip-console leaves it out)")?;
    crate::util::cargo_build(true).context("building the release daemon")?;
    let warden = crate::util::target_dir().join("release/warden");
    anyhow::ensure!(warden.is_file(), "{} was not built", warden.display());
    let lab = StandardLab::build("wbc")?;
    let policy = format!("{}{POLICY}", lab.policy_header()?);
    let path = lab.write_policy_as("console-bench.yaml", &policy)?;
    let daemon = lab.start_daemon(&warden, &path, &[])?;
    let db = lab.rundir()?.join("state").join(warden_store::DB_FILE);
    let seeded = console::seed_flags(&lab.node, &db, console::MANY)?;
    let browser = Browser::start(&lab.node, DRIVER_PORT, &lab.rundir()?.join("chromium"))?;
    let mut done = Vec::new();
    for i in 0..runs {
        let run = console::queue_run(&browser, lab.api(), token::OPERATOR, &seeded)
            .with_context(|| format!("console run {} of {runs}", i + 1))?;
        println!(
            "  run {}: first page {:.1} ms (API calls and render {:.1} ms), kind filter \
             {:.1} ms, state filter {:.1} ms",
            i + 1,
            run.first_page.ms,
            run.first_page.fetch_render_ms,
            run.kind_change_ms,
            run.state_change_ms
        );
        done.push(run);
    }
    drop(browser);
    let api = console::time_api(&lab.node, lab.api(), token::VIEWER, &seeded, API_RUNS)?;
    daemon
        .stop()
        .context("stopping the console case's daemon")?;
    Ok(ConsoleBench::new(seeded.total, &done, api))
}

/// `warden-bench console`: the part alone, its table, then its JSON (and into
/// `--report` when given).
pub fn print(args: &ConsoleArgs) -> Result<()> {
    let bench = run(args.runs)?;
    bench.print_table();
    println!("{}", serde_json::to_string_pretty(&bench.to_json())?);
    if let Some(report) = &args.report {
        add_to_report(report, &bench)?;
        println!("added the console section to {}", report.display());
    }
    Ok(())
}

/// Adds the figures to `report` (the bench's report.json) as `console`.
pub fn add_to_report(report: &Path, bench: &ConsoleBench) -> Result<()> {
    crate::util::add_section(report, "console", bench.to_json())
}
