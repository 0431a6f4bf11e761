//! `BENCHMARKS.md` and its charts, generated from the bench's `report.json`.
//!
//! `cargo xtask bench` measures and writes `target/bench/report.json`, then calls
//! [`generate`]; `cargo xtask bench-report` calls it on an existing report without
//! measuring. The document says how each part is measured, describes the machine
//! (read from `/proc` and `uname` when the document is generated, with the date and
//! the git commit), lists every figure with its bar and verdict, and links the charts,
//! which are plain SVG written here (no external tool) into `docs/bench/`.
//!
//! A section the report lacks (the latency labs skipped, a part not run) is written
//! as "not measured in this run"; nothing is ever filled in. A section present but
//! malformed is an error naming the key, not a silently shorter document.

//!
//! The files: [`machine`] (the machine, and the machine and method sections),
//! [`fields`] (reading the report's fields, formatting figures and tables), one file per
//! measured part's section ([`kernel`], [`throughput`], [`daemon`] for detection latency
//! and `/metrics`, [`scale`], [`console`](mod@console), [`fleet`]) and [`svg`] (the bar charts).

mod console;
mod daemon;
mod fields;
mod fleet;
mod fleet_scale;
mod kernel;
mod machine;
mod scale;
mod svg;
#[cfg(test)]
mod tests;
mod throughput;

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::util;
pub use fields::ms_runs;

use console::console_section;
use daemon::{latency_section, metrics_section};
use fields::{pass_fail, table};
use fleet::fleet_section;
use fleet_scale::fleet_scale_section;
use kernel::kernel_section;
use machine::{machine_section, method_section, utc, Machine};
use scale::scale_section;
use throughput::throughput_section;

/// The document, at the workspace root.
pub const DOCUMENT: &str = "BENCHMARKS.md";
/// The charts' directory, relative to the workspace root.
pub const CHART_DIR: &str = "docs/bench";
/// Every chart the generator writes, by file name in [`CHART_DIR`].
const CHARTS: [&str; 4] = [KERNEL_CHART, THROUGHPUT_CHART, LATENCY_CHART, APPLY_CHART];
const KERNEL_CHART: &str = "kernel-micro.svg";
const THROUGHPUT_CHART: &str = "throughput.svg";
const LATENCY_CHART: &str = "detection-latency.svg";
const APPLY_CHART: &str = "policy-apply.svg";
/// Written when a section is absent from the report.
const NOT_MEASURED: &str = "Not measured in this run.";

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The bench report to read (default: `target/bench/report.json` under
    /// `CARGO_TARGET_DIR` or the workspace's `target`).
    #[arg(long)]
    input: Option<PathBuf>,
}

/// `cargo xtask bench-report`: regenerates the document from an existing report.
pub fn run(args: ReportArgs) -> Result<()> {
    let input = args.input.unwrap_or_else(default_report_path);
    if !input.exists() {
        bail!(
            "{} does not exist: run `cargo xtask bench` first (it measures and writes it)",
            input.display()
        );
    }
    for path in generate(&input)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Where `cargo xtask bench` writes its report.
pub fn default_report_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
        .join("bench")
        .join("report.json")
}

/// Reads `report`, writes `BENCHMARKS.md` and the charts into the workspace, and
/// returns the paths written.
pub fn generate(report: &Path) -> Result<Vec<PathBuf>> {
    let text =
        fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", report.display()))?;
    let measured_at = fs::metadata(report)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| utc(d.as_secs()));
    let machine = Machine::read(measured_at);
    let doc = render(&value, &machine).with_context(|| {
        format!(
            "writing {DOCUMENT} from {} (the report itself is kept: `cargo xtask bench-report` \
             reads it again)",
            report.display()
        )
    })?;

    write_document(&util::workspace_root(), &doc)
}

/// Writes `doc` under `root`: the charts into [`CHART_DIR`] (removing those of
/// sections it lacks), then [`DOCUMENT`]. Returns the paths written.
fn write_document(root: &Path, doc: &Document) -> Result<Vec<PathBuf>> {
    let chart_dir = root.join(CHART_DIR);
    fs::create_dir_all(&chart_dir).with_context(|| format!("creating {}", chart_dir.display()))?;
    let mut written = Vec::new();
    // A chart of a section this report lacks would describe another run: removed.
    for stale in CHARTS
        .iter()
        .filter(|f| !doc.charts.iter().any(|c| c.file == **f))
    {
        let path = chart_dir.join(stale);
        match fs::remove_file(&path) {
            Ok(()) => println!("removed {} (not measured in this run)", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    for chart in &doc.charts {
        let path = chart_dir.join(&chart.file);
        fs::write(&path, &chart.svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    let path = root.join(DOCUMENT);
    fs::write(&path, &doc.markdown).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    Ok(written)
}

/// The generated document and its charts.
pub struct Document {
    pub markdown: String,
    pub charts: Vec<Chart>,
}

/// One SVG chart, written to `docs/bench/<file>`.
pub struct Chart {
    pub file: String,
    pub svg: String,
}

/// One verdict for the summary: what, the bar, the figure, its outcome.
struct Verdict {
    what: String,
    bar: String,
    figure: String,
    outcome: Outcome,
}

/// A figure within its bar, over it, or not measured at all (the figure then says why):
/// a figure that could not be measured is neither a pass nor a measured failure.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outcome {
    Pass,
    Fail,
    NotMeasured,
}

impl From<bool> for Outcome {
    fn from(pass: bool) -> Self {
        if pass {
            Outcome::Pass
        } else {
            Outcome::Fail
        }
    }
}

impl Outcome {
    /// The verdict column's text.
    fn text(self) -> &'static str {
        match self {
            Outcome::Pass => pass_fail(true),
            Outcome::Fail => pass_fail(false),
            Outcome::NotMeasured => "**not measured**",
        }
    }
}

/// Renders the document for `report` on `machine`.
pub fn render(report: &Value, machine: &Machine) -> Result<Document> {
    let report = report.as_object().context("report.json is not an object")?;
    let section = |key: &str| report.get(key).filter(|v| !v.is_null());
    let mut body = String::new();
    let mut charts = Vec::new();
    let mut verdicts = Vec::new();

    let kernel = section("cases")
        .map(|_| kernel_section(report))
        .transpose()
        .context("the kernel micro-benchmarks (`cases`)")?;
    let throughput = section("throughput")
        .map(throughput_section)
        .transpose()
        .context("the throughput section (`throughput`)")?;
    let latency = section("detection_latency")
        .map(latency_section)
        .transpose()
        .context("the detection latency section (`detection_latency`)")?;
    let metrics = section("metrics_render")
        .map(metrics_section)
        .transpose()
        .context("the /metrics section (`metrics_render`)")?;
    let scale = section("scale")
        .map(scale_section)
        .transpose()
        .context("the scale section (`scale`)")?;

    let console = section("console")
        .map(console_section)
        .transpose()
        .context("the console section (`console`)")?;
    let fleet_scale = section("fleet_scale")
        .map(fleet_scale_section)
        .transpose()
        .context("the fleet-scale section (`fleet_scale`)")?;

    let fleet = section("fleet")
        .map(fleet_section)
        .transpose()
        .context("the fleet section (`fleet`)")?;

    let parts: [(&str, Option<Part>); 8] = [
        ("Per-packet cost (kernel micro-benchmarks)", kernel),
        ("Throughput on live frames", throughput),
        ("Detection latency", latency),
        ("`/metrics` with many tenants", metrics),
        ("Scale: policy apply, counter reads, daemon memory", scale),
        ("Console: a queue of 10,000 flags in a browser", console),
        (
            "Fleet: 3-member etcd, controller, 20 host and 2 gateway nodes",
            fleet,
        ),
        ("Fleet at scale: 100,000 tenants in etcd", fleet_scale),
    ];
    for (title, part) in parts {
        writeln!(body, "\n## {title}\n")?;
        match part {
            None => writeln!(body, "{NOT_MEASURED}")?,
            Some(p) => {
                body.push_str(&p.markdown);
                verdicts.extend(p.verdicts);
                for c in p.charts {
                    writeln!(body, "\n![{}]({CHART_DIR}/{})", c.0, c.1.file)?;
                    charts.push(c.1);
                }
            }
        }
    }

    let mut md = String::new();
    writeln!(md, "# Benchmarks\n")?;
    writeln!(
        md,
        "Generated by `cargo xtask bench` (measures, writes `target/bench/report.json`, then \
         this document and the charts in `{CHART_DIR}/`); `cargo xtask bench-report` \
         regenerates them from an existing `report.json` without measuring. Do not edit by \
         hand.\n"
    )?;
    writeln!(
        md,
        "Every figure below comes from one run of `cargo xtask bench` on the machine \
         described under [Machine](#machine){}; figures from another machine, or from \
         another run on this one, differ. Baselines are measured in the same run as the \
         figures they are compared with.\n",
        if machine.virtual_machine {
            " (a virtual machine, whose host may run other work)"
        } else {
            ""
        }
    )?;
    writeln!(md, "## Summary\n")?;
    if verdicts.is_empty() {
        writeln!(md, "No figure with a bar was measured in this run.")?;
    } else {
        let count = |o: Outcome| verdicts.iter().filter(|v| v.outcome == o).count();
        let (failed, unmeasured) = (count(Outcome::Fail), count(Outcome::NotMeasured));
        writeln!(
            md,
            "{} of {} figures within their bar{}{}.\n",
            count(Outcome::Pass),
            verdicts.len(),
            if failed == 0 {
                String::new()
            } else {
                format!("; **{failed} over**")
            },
            if unmeasured == 0 {
                String::new()
            } else {
                format!("; **{unmeasured} not measured**")
            }
        )?;
        md.push_str(&table(
            &["figure", "bar", "measured", "verdict"],
            verdicts
                .iter()
                .map(|v| {
                    vec![
                        v.what.clone(),
                        v.bar.clone(),
                        v.figure.clone(),
                        v.outcome.text().to_string(),
                    ]
                })
                .collect(),
        ));
    }
    md.push_str(&machine_section(report, machine));
    md.push_str(&method_section(report));
    md.push_str(&body);
    Ok(Document {
        markdown: md,
        charts,
    })
}

/// One section of the document.
struct Part {
    markdown: String,
    verdicts: Vec<Verdict>,
    /// (alt text, chart).
    charts: Vec<(String, Chart)>,
}

impl Part {
    /// A section without charts, once its JSON's overall `pass` agrees with `verdicts`
    /// (a report whose `pass` says otherwise than its figures is refused).
    fn checked(v: &serde_json::Value, markdown: String, verdicts: Vec<Verdict>) -> Result<Part> {
        let overall = fields::flag(v, "pass")?;
        if overall != verdicts.iter().all(|v| v.outcome == Outcome::Pass) {
            bail!(
                "`pass` is {overall} but the figures say otherwise: {}",
                fields::short(v)
            );
        }
        Ok(Part {
            markdown,
            verdicts,
            charts: Vec::new(),
        })
    }
}
