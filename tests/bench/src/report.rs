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

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::util;

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

/// The machine the document describes.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs online.
    pub cpus: usize,
    /// Whether the CPU flags say a hypervisor runs this machine.
    pub virtual_machine: bool,
    /// `uname`: system, release, version, machine.
    pub kernel: String,
    pub memory_kib: Option<u64>,
    /// When the document was generated (UTC).
    pub generated_at: String,
    /// When `report.json` was last written (UTC), if known.
    pub measured_at: Option<String>,
    /// `git rev-parse HEAD` of the checkout, with a note on uncommitted changes.
    pub commit: String,
}

impl Machine {
    /// Reads this machine: `/proc/cpuinfo`, `/proc/meminfo`, `uname`, git, the clock.
    pub fn read(measured_at: Option<String>) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim() == name).then(|| v.trim().to_string())
            })
        };
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count();
        let memory_kib = fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Machine {
            cpu_model: field("model name").unwrap_or_else(|| "unknown (no /proc/cpuinfo)".into()),
            cpus,
            virtual_machine: field("flags")
                .is_some_and(|f| f.split(' ').any(|x| x == "hypervisor")),
            kernel: uname(),
            memory_kib,
            generated_at: utc(now),
            measured_at,
            commit: git_commit(),
        }
    }
}

fn uname() -> String {
    // SAFETY: uname fills the struct we own; its fields are NUL-terminated.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::uname(&mut u) } != 0 {
        return format!("unknown ({})", std::io::Error::last_os_error());
    }
    let s = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {} {}",
        s(&u.sysname),
        s(&u.release),
        s(&u.version),
        s(&u.machine)
    )
}

fn git_commit() -> String {
    let root = util::workspace_root();
    let git = |args: &[&str]| {
        util::capture(Command::new("git").arg("-C").arg(&root).args(args))
            .map(|s| s.trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        // The bench's own outputs (this document, its charts) are not the code measured.
        Ok(head) => match git(&[
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ".",
            ":!BENCHMARKS.md",
            ":!docs/bench",
        ]) {
            Ok(s) if s.is_empty() => head,
            Ok(_) => format!("{head} (with uncommitted changes)"),
            Err(_) => head,
        },
        Err(e) => format!("unknown ({e:#})"),
    }
}

/// `secs` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

/// One verdict for the summary: what, the bar, the figure, pass.
struct Verdict {
    what: String,
    bar: String,
    figure: String,
    pass: bool,
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

    let parts: [(&str, Option<Part>); 5] = [
        ("Per-packet cost (kernel micro-benchmarks)", kernel),
        ("Throughput on live frames", throughput),
        ("Detection latency", latency),
        ("`/metrics` with many tenants", metrics),
        ("Scale: policy apply, counter reads, daemon memory", scale),
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
        let failed = verdicts.iter().filter(|v| !v.pass).count();
        writeln!(
            md,
            "{} of {} figures within their bar{}.\n",
            verdicts.len() - failed,
            verdicts.len(),
            if failed == 0 {
                String::new()
            } else {
                format!("; **{failed} over**")
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
                        pass_fail(v.pass).to_string(),
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

fn machine_section(report: &serde_json::Map<String, Value>, m: &Machine) -> String {
    let mut rows = vec![
        vec!["CPU".into(), m.cpu_model.clone()],
        vec![
            "Logical CPUs".into(),
            format!(
                "{}{}",
                m.cpus,
                if m.virtual_machine {
                    " (virtual machine: the CPU flags name a hypervisor)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "Memory".into(),
            m.memory_kib.map_or_else(
                || "unknown (no /proc/meminfo)".into(),
                |k| format!("{:.1} GiB", k as f64 / (1024.0 * 1024.0)),
            ),
        ],
        vec!["Kernel (uname)".into(), m.kernel.clone()],
    ];
    if let Some(k) = report.get("kernel").and_then(Value::as_str) {
        if !m.kernel.contains(k) {
            rows.push(vec![
                "Kernel of the measurement".into(),
                format!("{k} (differs from the one generating this document)"),
            ]);
        }
    }
    if let Some(cpu) = report.get("cpu").and_then(Value::as_u64) {
        rows.push(vec![
            "Micro-benchmark CPU".into(),
            format!("{cpu} (the kernel micro-benchmarks run pinned to it)"),
        ]);
    }
    rows.push(vec!["Git commit".into(), m.commit.clone()]);
    rows.push(vec![
        "report.json written".into(),
        m.measured_at.clone().unwrap_or_else(|| "unknown".into()),
    ]);
    rows.push(vec!["Document generated".into(), m.generated_at.clone()]);
    format!(
        "\n## Machine\n\nRead from `/proc/cpuinfo`, `/proc/meminfo` and `uname` when this \
         document was generated.\n\n{}",
        table(&["what", "value"], rows)
    )
}

fn method_section(report: &serde_json::Map<String, Value>) -> String {
    // A part's own account of its method, as its section of the report states it.
    let stated = |key: &str| match report.get(key).filter(|v| !v.is_null()) {
        None => " Not measured in this run.".to_string(),
        Some(v) => v
            .get("method")
            .and_then(Value::as_str)
            .map(|m| {
                let stop = if m.ends_with('.') { "" } else { "." };
                format!(" As the report states it: {m}{stop}")
            })
            .unwrap_or_default(),
    };
    format!(
        "\n## Method\n\n\
         - **Per-packet cost (kernel micro-benchmarks).** Each enforcement path runs through \
         `BPF_PROG_TEST_RUN` on one frame, `repeat` times per call; the kernel reports the \
         mean time per repetition. Every case is measured in interleaved pairs with the \
         `XDP_PASS` baseline program in the same run (ABBA order: baseline then case, case \
         then baseline, ...) on one pinned CPU, so drift in clock speed or background load \
         hits both sides alike. A case's pairs are taken in rounds over all the cases \
         (`rounds` in the report), so a noisy stretch of a shared machine touches every \
         case a little rather than a few cases wholly. Each case is run once and checked (verdict and the counter \
         it must move) before it is timed, and every timed run is checked again. Reported: \
         the median of each side, and the cost as the median of the per-pair differences. \
         The maps hold a large policy written by the daemon's own code.{}\n\
         - **Throughput on live frames.** Frames sent over a veth pair into the programs, \
         in millions of packets per second, against baselines measured in the same run on \
         the same pair.{}\n\
         - **Detection latency.** Namespace labs with the real daemon and real attack tools \
         (hping3, nmap): each run starts a fresh daemon over empty state, takes `t0` just \
         before the attack tool starts, and polls the daemon's API for the flag and the \
         drop counter. A figure is `t0` to the first reply that showed it (late by at most \
         one poll); the median over the runs counts, a missed run counting as later than \
         any detection.{}\n\
         - **`/metrics`.** Wall-clock time per run, median.{}\n\
         - **Scale.** Policy apply, counter reads and daemon memory with large policies, \
         through the daemon's own code.{}\n",
        if report.get("cases").is_some_and(|c| !c.is_null()) {
            ""
        } else {
            " Not measured in this run."
        },
        stated("throughput"),
        stated("detection_latency"),
        stated("metrics_render"),
        stated("scale"),
    )
}

/// Markdown table; `|` in cells escaped.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let mut out = String::new();
    out.push_str(&format!(
        "| {} |\n",
        header
            .iter()
            .map(|h| esc(h))
            .collect::<Vec<_>>()
            .join(" | ")
    ));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for row in rows {
        out.push_str(&format!(
            "| {} |\n",
            row.iter().map(|c| esc(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    out
}

fn pass_fail(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "**FAIL**"
    }
}

fn num(v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("no number `{key}` in {}", short(v)))
}

fn opt_num(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .with_context(|| format!("`{key}` is {x}, not a number")),
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("no text `{key}` in {}", short(v)))
}

fn flag(v: &Value, key: &str) -> Result<bool> {
    v.get(key)
        .and_then(Value::as_bool)
        .with_context(|| format!("no true/false `{key}` in {}", short(v)))
}

fn list<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("no list `{key}` in {}", short(v)))
}

/// A value, cut short for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}...", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}

/// A list of milliseconds where `null` is a missed run.
pub fn ms_runs(v: &Value, key: &str) -> Result<Vec<Option<f64>>> {
    list(v, key)?
        .iter()
        .map(|x| match x {
            Value::Null => Ok(None),
            x => x
                .as_f64()
                .map(Some)
                .with_context(|| format!("`{key}` holds {x}, not milliseconds")),
        })
        .collect()
}

fn kernel_section(report: &serde_json::Map<String, Value>) -> Result<Part> {
    let top = Value::Object(report.clone());
    let cases = list(&top, "cases")?;
    let mut md = String::new();
    writeln!(
        md,
        "{} pairs per case, {} repetitions per `BPF_PROG_TEST_RUN` call (new-flow cases \
         fewer: each repetition is a first contact); {} tenants. Bar: {} ns over the \
         baseline for every path, {} ns for a new flow. ns are the kernel's integer mean \
         per repetition.\n",
        num(&top, "pairs")?,
        thousands(num(&top, "repeat")?),
        top.get("tenants")
            .and_then(|t| t.get("count"))
            .and_then(Value::as_f64)
            .map_or_else(|| "an unrecorded number of".into(), thousands),
        num(&top, "bar_ns")?,
        num(&top, "new_flow_bar_ns")?,
    )?;
    if let Some(policies) = top
        .get("tenants")
        .and_then(|t| t.get("policies"))
        .and_then(Value::as_array)
    {
        let rows = policies
            .iter()
            .map(|p| -> Result<Vec<String>> {
                let lens = |key: &str| -> Result<String> {
                    Ok(list(p, key)?
                        .iter()
                        .map(|l| format!("/{l}"))
                        .collect::<Vec<_>>()
                        .join(" "))
                };
                Ok(vec![
                    text(p, "label")?.to_string(),
                    format!("{}", num(p, "generation")?),
                    lens("v4_lens")?,
                    lens("v6_lens")?,
                    thousands(num(p, "bound_macs")?),
                    thousands(num(p, "tenants_on_short_prefixes")?),
                ])
            })
            .collect::<Result<Vec<_>>>()
            .context("`tenants.policies`")?;
        md.push_str("The policies, each measured in turn:\n\n");
        md.push_str(&table(
            &[
                "policy",
                "generation",
                "IPv4 lengths",
                "IPv6 lengths",
                "bound MACs",
                "tenants on the shorter prefixes",
            ],
            rows,
        ));
        md.push('\n');
    }
    if let Some(new_flow) = top.get("new_flow").and_then(Value::as_str) {
        writeln!(md, "New-flow case: {new_flow}.\n")?;
    }
    if let Some(event) = top.get("detection_event").and_then(Value::as_str) {
        writeln!(md, "Detection-event case: {event}.\n")?;
    }
    if let Some(t) = top.get("tracked_remotes").filter(|t| t.is_object()) {
        writeln!(
            md,
            "Tracked remotes: {} remotes contacted by {} tenants before the cases ({}). \
             Contact filter: {} of {} words set; pending table: {} of {} slots hold a \
             tracked remote's attempt; sketch: {} counters live after the load. Filter \
             false positives at this load: {} of {} fresh remotes ({:.2}%); new-flow \
             repetitions the loaded filter took for known remotes: {} of {}.\n",
            thousands(num(t, "remotes")?),
            thousands(num(t, "tenants")?),
            text(t, "meaning")?,
            thousands(num(t, "filter_words_set")?),
            thousands(num(t, "filter_words")?),
            thousands(num(t, "pending_slots_tracked")?),
            thousands(num(t, "pending_slots")?),
            thousands(num(t, "sketch_counters_live_after_load")?),
            thousands(num(t, "false_positives")?),
            thousands(num(t, "false_positive_probes")?),
            num(t, "false_positive_rate")? * 100.0,
            thousands(num(t, "new_flow_repetitions_seen_as_known")?),
            thousands(num(t, "new_flow_repetitions")?),
        )?;
    }
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    // One chart group per policy, in the report's order.
    let mut groups: Vec<BarGroup> = Vec::new();
    for c in cases {
        let name = text(c, "name")?;
        let lengths = text(c, "prefix_lengths")?;
        let delta = num(c, "delta_ns")?;
        let bar = num(c, "bar_ns")?;
        let pass = flag(c, "pass")?;
        rows.push(vec![
            name.to_string(),
            lengths.to_string(),
            text(c, "program")?.to_string(),
            format!("{} B", num(c, "frame_bytes")?),
            format!("{:.1}", num(c, "median_case_ns")?),
            format!("{:.1}", num(c, "median_baseline_ns")?),
            format!("{delta:+.1}"),
            format!("{:.2}", num(c, "ratio")?),
            format!("{} ns", bar),
            pass_fail(pass).to_string(),
        ]);
        verdicts.push(Verdict {
            what: format!("per-packet cost: {name} [{lengths}]"),
            bar: format!("<= {bar} ns over XDP_PASS"),
            figure: format!("{delta:+.1} ns"),
            pass,
        });
        let title = format!("policy {lengths}");
        if groups.last().is_none_or(|g| g.title != title) {
            groups.push(BarGroup {
                title,
                rows: Vec::new(),
            });
        }
        let group = groups.last_mut().expect("pushed above when empty");
        group.rows.push(BarRow {
            label: name.to_string(),
            value: Some(delta),
            value_text: format!("{delta:+.0} ns"),
            limit: Some(bar),
            style: if pass { Style::Pass } else { Style::Fail },
        });
    }
    md.push_str(&table(
        &[
            "case", "lengths", "program", "frame", "case ns", "base ns", "delta ns", "ratio",
            "bar", "verdict",
        ],
        rows,
    ));
    let svg = bar_chart(
        "Per-packet cost over the XDP_PASS baseline (median of per-pair differences)",
        "ns over baseline",
        &groups,
    );
    Ok(Part {
        markdown: md,
        verdicts,
        charts: vec![(
            "Per-packet cost over the XDP_PASS baseline, ns".into(),
            Chart {
                file: KERNEL_CHART.into(),
                svg,
            },
        )],
    })
}

fn latency_section(v: &Value) -> Result<Part> {
    let bar = num(v, "bar_ms")?;
    let timeout = num(v, "timeout_s")?;
    let mut md = String::new();
    writeln!(
        md,
        "{} runs per case, each waiting at most {timeout} s. Bar: median at most {bar} ms from \
         the attack's start to the flag and, for an action that drops, to the first drop. \
         \"missed\" is a run that saw nothing within the timeout.\n",
        v.get("runs")
            .and_then(Value::as_u64)
            .map_or_else(|| "Several".into(), |n| n.to_string()),
    )?;
    let cell =
        |m: Option<f64>| m.map_or_else(|| format!("missed (> {timeout} s)"), |m| format!("{m:.0}"));
    let runs = |r: &[Option<f64>]| {
        r.iter()
            .map(|m| m.map_or_else(|| "missed".into(), |m| format!("{m:.0}")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let mut groups = Vec::new();
    for c in list(v, "cases")? {
        let case = text(c, "case")?;
        let flag_ms = ms_runs(c, "flag_ms")?;
        let drop_ms = match c.get("drop_ms") {
            None | Some(Value::Null) => None,
            Some(_) => Some(ms_runs(c, "drop_ms")?),
        };
        let median_flag = opt_num(c, "median_flag_ms")?;
        let median_drop = opt_num(c, "median_drop_ms")?;
        let pass = flag(c, "pass")?;
        rows.push(vec![
            case.to_string(),
            c.get("attack")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            text(c, "kind")?.to_string(),
            text(c, "action")?.to_string(),
            cell(median_flag),
            drop_ms
                .as_ref()
                .map_or_else(|| "-".into(), |_| cell(median_drop)),
            runs(&flag_ms),
            drop_ms.as_deref().map_or_else(|| "-".into(), runs),
            format!("{bar} ms"),
            pass_fail(pass).to_string(),
        ]);
        verdicts.push(Verdict {
            what: format!("detection latency: {case}"),
            bar: format!("median <= {bar} ms"),
            figure: match &drop_ms {
                None => format!("flag {}", cell(median_flag)),
                Some(_) => format!("flag {} / drop {}", cell(median_flag), cell(median_drop)),
            },
            pass,
        });
        let mut bars = Vec::new();
        let row = |what: &str, i: usize, m: Option<f64>| BarRow {
            label: format!("{what}, run {}", i + 1),
            value: m,
            value_text: m.map_or_else(
                || format!("missed (> {timeout} s)"),
                |m| format!("{m:.0} ms"),
            ),
            limit: Some(bar),
            style: match m {
                Some(m) if m <= bar => Style::Pass,
                _ => Style::Fail,
            },
        };
        for (i, m) in flag_ms.iter().enumerate() {
            bars.push(row("flag", i, *m));
        }
        for (i, m) in drop_ms.iter().flatten().enumerate() {
            bars.push(row("first drop", i, *m));
        }
        groups.push(BarGroup {
            title: format!("{case} ({})", text(c, "action")?),
            rows: bars,
        });
    }
    md.push_str(&table(
        &[
            "case",
            "attack",
            "kind",
            "action",
            "flag ms",
            "drop ms",
            "flag runs",
            "drop runs",
            "bar",
            "verdict",
        ],
        rows,
    ));
    Ok(Part {
        markdown: md,
        verdicts,
        charts: vec![(
            "Detection latency per run and case, ms".into(),
            Chart {
                file: LATENCY_CHART.into(),
                svg: bar_chart(
                    "Detection latency per run: attack start to flag and to first drop",
                    "ms",
                    &groups,
                ),
            },
        )],
    })
}

fn metrics_section(v: &Value) -> Result<Part> {
    let bar = num(v, "bar_ms")?;
    let tenants = num(v, "tenants")?;
    let mut md = String::new();
    writeln!(
        md,
        "{tenants} tenants, {} runs per part ({} build), median. Bar: {bar} ms for the \
         snapshot read plus the render at the default K, and for the daemon's whole answer.\n",
        num(v, "runs")?,
        v.get("profile")
            .and_then(Value::as_str)
            .unwrap_or("unrecorded"),
    )?;
    let mut rows = Vec::new();
    for p in list(v, "parts")? {
        let name = text(p, "name")?;
        let what = match (name, opt_num(p, "top_k")?) {
            ("daemon", _) => "GET /metrics of a release daemon on a lab".to_string(),
            (n, Some(k)) => format!("{n} (K = {k})"),
            (n, None) => format!("{n} (kernel counters of every tenant)"),
        };
        rows.push(vec![
            what,
            format!("{:.2}", num(p, "median_ms")?),
            opt_num(p, "bytes")?.map_or_else(
                || "-".into(),
                |b| format!("{:.1} MiB", b / f64::from(1 << 20)),
            ),
        ]);
    }
    let scrape = num(v, "scrape_ms")?;
    rows.push(vec![
        "read + render (default K)".into(),
        format!("{scrape:.2}"),
        "-".into(),
    ]);
    md.push_str(&table(&["part", "median ms", "exposition"], rows));
    let mut verdicts = vec![Verdict {
        what: format!("/metrics read + render, {tenants} tenants"),
        bar: format!("<= {bar} ms"),
        figure: format!("{scrape:.1} ms"),
        pass: scrape <= bar,
    }];
    if let Some(daemon) = opt_num(v, "daemon_get_ms")? {
        verdicts.push(Verdict {
            what: format!("GET /metrics of the daemon, {tenants} tenants"),
            bar: format!("<= {bar} ms"),
            figure: format!("{daemon:.1} ms"),
            pass: daemon <= bar,
        });
    }
    let overall = flag(v, "pass")?;
    if overall != verdicts.iter().all(|v| v.pass) {
        bail!(
            "`pass` is {overall} but the figures say otherwise: {}",
            short(v)
        );
    }
    Ok(Part {
        markdown: md,
        verdicts,
        charts: Vec::new(),
    })
}

fn throughput_section(v: &Value) -> Result<Part> {
    let mut md = String::new();
    writeln!(
        md,
        "{} interleaved (baseline, case) pairs per comparison, {} CPUs online. In a run \
         each generator thread sends for {} ms ({} frames per `BPF_PROG_TEST_RUN` call, \
         call after call until the time has passed), and the run's rate is the sum over \
         its threads of their receive queue's arrivals over their own time. A figure is \
         the median over the pairs; the ratio is the median of the per-pair ratios (case \
         over its own baseline), so it is not always the ratio of the two medians shown. \
         Bars are ratios: the case must reach at least that fraction (or multiple) of its \
         baseline.\n",
        num(v, "pairs")?,
        num(v, "cpus")?,
        num(v, "ms_per_generator_run")?,
        thousands(num(v, "frames_per_call")?),
    )?;
    for limit in list(v, "limits")? {
        let limit = limit
            .as_str()
            .with_context(|| format!("`limits` holds {limit}, not text"))?;
        writeln!(md, "- Note: {limit}")?;
    }
    let mut rows = Vec::new();
    let mut sides = Vec::new();
    let mut verdicts = Vec::new();
    let mut groups = Vec::new();
    for c in list(v, "cases")? {
        let name = text(c, "name")?;
        let case = c
            .get("case")
            .with_context(|| format!("no `case` in {}", short(c)))?;
        let base = c
            .get("baseline")
            .with_context(|| format!("no `baseline` in {}", short(c)))?;
        let ratio = num(c, "ratio")?;
        let bar_text = text(c, "bar_text")?;
        let pass = flag(c, "pass")?;
        // A comparison without a bar is a reference: reported, not judged.
        let bar = opt_num(c, "bar")?;
        if let Some(bar) = bar {
            if pass != (ratio >= bar) {
                bail!("`pass` of {name} is {pass} but its ratio and bar say otherwise");
            }
        }
        let case_mpps = num(case, "median_mpps")?;
        let base_mpps = num(base, "median_mpps")?;
        rows.push(vec![
            name.to_string(),
            text(case, "label")?.to_string(),
            format!("{case_mpps:.3}"),
            text(base, "label")?.to_string(),
            format!("{base_mpps:.3}"),
            format!("{ratio:.2}"),
            bar_text.to_string(),
            match bar {
                Some(_) => pass_fail(pass).to_string(),
                None => "reference, no bar".into(),
            },
        ]);
        if bar.is_some() {
            verdicts.push(Verdict {
                what: format!("throughput: {name}"),
                bar: bar_text.to_string(),
                figure: format!("{ratio:.2} x ({case_mpps:.3} vs {base_mpps:.3} Mpps)"),
                pass,
            });
        }
        for (role, side) in [("case", case), ("baseline", base)] {
            let runs = list(side, "mpps")?
                .iter()
                .map(|m| {
                    m.as_f64()
                        .map(|m| format!("{m:.2}"))
                        .with_context(|| format!("`mpps` holds {m}, not a rate"))
                })
                .collect::<Result<Vec<_>>>()?;
            sides.push(vec![
                name.to_string(),
                role.to_string(),
                text(side, "receiver")?.to_string(),
                text(side, "generator")?.to_string(),
                format!("{} B", num(side, "frame_bytes")?),
                format!("{}", num(side, "cores")?),
                thousands(num(side, "median_packets")?.round()),
                format!("{:.3}", num(side, "median_seconds")?),
                thousands(num(side, "median_refused_by_ring")?.round()),
                opt_num(side, "median_cpu_share")?
                    .map_or_else(|| "-".into(), |c| format!("{c:.2}")),
                runs.join(", "),
            ]);
        }
        groups.push(BarGroup {
            title: name.to_string(),
            rows: vec![
                BarRow {
                    label: text(case, "label")?.to_string(),
                    value: Some(case_mpps),
                    value_text: format!("{case_mpps:.2} Mpps ({ratio:.2} x)"),
                    limit: None,
                    style: match (bar, pass) {
                        (None, _) => Style::Plain,
                        (Some(_), true) => Style::Pass,
                        (Some(_), false) => Style::Fail,
                    },
                },
                BarRow {
                    label: text(base, "label")?.to_string(),
                    value: Some(base_mpps),
                    value_text: format!("{base_mpps:.2} Mpps"),
                    limit: None,
                    style: Style::Baseline,
                },
            ],
        });
    }
    md.push('\n');
    md.push_str(&table(
        &[
            "comparison",
            "case",
            "case Mpps",
            "baseline",
            "baseline Mpps",
            "ratio",
            "bar",
            "verdict",
        ],
        rows,
    ));
    writeln!(
        md,
        "\nEach side in detail (medians over the pairs; \"refused by ring\": frames the \
         receiving ring could not take because the generator outran it; \"seconds\": from \
         the first generator thread's start to the last one's return; \"CPU share\": CPU \
         time the generator threads got (with the softirq work run in their context) over \
         their own time, below 1 when the scheduler gave part of the run to other work \
         (other tasks, ksoftirqd when the kernel defers receive work); arrivals per receive queue and each thread's \
         frames and time are in `report.json`):\n"
    )?;
    md.push_str(&table(
        &[
            "comparison",
            "side",
            "receiver",
            "generator",
            "frame",
            "cores",
            "packets",
            "seconds",
            "refused by ring",
            "CPU share",
            "Mpps per run",
        ],
        sides,
    ));
    let charts = if groups.is_empty() {
        Vec::new()
    } else {
        vec![(
            "Throughput against baselines, Mpps".into(),
            Chart {
                file: THROUGHPUT_CHART.into(),
                svg: bar_chart(
                    "Throughput on veth live frames against baselines of the same run (grey)",
                    "million packets per second (median)",
                    &groups,
                ),
            },
        )]
    };
    Ok(Part {
        markdown: md,
        verdicts,
        charts,
    })
}

/// The phases of a policy apply, in the order the daemon runs them.
const APPLY_PHASES: [&str; 8] = crate::bench_scale::ApplyRun::PHASES;

fn scale_section(v: &Value) -> Result<Part> {
    let mut md = String::new();
    writeln!(
        md,
        "{} build. Policy: {}.\n",
        v.get("profile")
            .and_then(Value::as_str)
            .unwrap_or("unrecorded"),
        v.get("policy")
            .and_then(Value::as_str)
            .unwrap_or("unrecorded"),
    )?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for c in list(v, "cases")? {
        let case = text(c, "case")?;
        let unit = text(c, "unit")?;
        let figure = opt_num(c, "figure")?;
        let bar = opt_num(c, "bar")?;
        let pass = match c.get("pass") {
            None | Some(Value::Null) => None,
            Some(_) => Some(flag(c, "pass")?),
        };
        let shown = figure.map_or_else(|| "not measured".into(), |f| format!("{f:.1} {unit}"));
        rows.push(vec![
            case.to_string(),
            shown.clone(),
            bar.map_or_else(|| "-".into(), |b| format!("<= {b} {unit}")),
            pass.map_or_else(|| "no bar".into(), |p| pass_fail(p).to_string()),
        ]);
        if let (Some(bar), Some(pass)) = (bar, pass) {
            verdicts.push(Verdict {
                what: format!("scale: {case}"),
                bar: format!("<= {bar} {unit}"),
                figure: shown,
                pass,
            });
        }
    }
    md.push_str(&table(&["case", "measured", "bar", "verdict"], rows));

    let apply = list(v, "apply")?;
    let mut groups = Vec::new();
    if !apply.is_empty() {
        writeln!(
            md,
            "\nPolicy apply by phase, median ms (the total is parse start to the first \
             packet's counter read back, so it includes the gaps between phases):\n"
        )?;
        let mut header = vec!["tenants", "runs"];
        header.extend(APPLY_PHASES);
        header.push("total");
        let mut rows = Vec::new();
        for a in apply {
            let tenants = num(a, "tenants")?;
            let phases = a
                .get("phases")
                .with_context(|| format!("no `phases` in {}", short(a)))?;
            let median = |p: &str| -> Result<Option<f64>> {
                let key = format!("{p}_ms");
                let phase = phases
                    .get(&key)
                    .with_context(|| format!("no `{key}` in {}", short(phases)))?;
                opt_num(phase, "median")
            };
            let mut row = vec![thousands(tenants), format!("{}", num(a, "runs")?)];
            let mut bars = Vec::new();
            for p in APPLY_PHASES.iter().chain(&["total"]) {
                let m = median(p)?;
                row.push(m.map_or_else(|| "-".into(), precise));
                bars.push(BarRow {
                    label: p.replace('_', " "),
                    value: m,
                    value_text: m
                        .map_or_else(|| "not measured".into(), |m| format!("{} ms", precise(m))),
                    limit: None,
                    style: if *p == "total" {
                        Style::Plain
                    } else {
                        Style::Baseline
                    },
                });
            }
            rows.push(row);
            groups.push(BarGroup {
                title: format!("{} tenants", thousands(tenants)),
                rows: bars,
            });
        }
        md.push_str(&table(&header, rows));
    }
    match v.get("daemon") {
        None | Some(Value::Null) => writeln!(md, "\nDaemon memory: not measured in this run.")?,
        Some(d) => {
            let kib = |key: &str| -> Result<String> {
                Ok(opt_num(d, key)?.map_or_else(
                    || "not measured".into(),
                    |k| format!("{:.1} MiB", k / 1024.0),
                ))
            };
            writeln!(
                md,
                "\nThe release daemon with {} tenants on a namespace lab:\n",
                thousands(num(d, "tenants")?)
            )?;
            let ms = |key: &str| -> Result<String> {
                Ok(opt_num(d, key)?.map_or_else(|| "-".into(), |m| format!("{m:.0} ms")))
            };
            md.push_str(&table(
                &["what", "value"],
                vec![
                    vec!["start to serving".into(), ms("start_ms")?],
                    vec![
                        "resident after load (VmRSS, highest at rest)".into(),
                        kib("rss_loaded_kib")?,
                    ],
                    vec![
                        "resident after load (VmRSS, lowest, between counter samples)".into(),
                        kib("rss_loaded_low_kib")?,
                    ],
                    vec!["peak after load (VmHWM)".into(), kib("hwm_loaded_kib")?],
                    vec![
                        "second policy".into(),
                        format!(
                            "{} bytes, PUT /api/v1/policy status {} in {}; applied via {}",
                            thousands(num(d, "policy_bytes")?),
                            d.get("put_status")
                                .filter(|v| !v.is_null())
                                .map_or_else(|| "-".into(), Value::to_string),
                            ms("put_ms")?,
                            d.get("applied_via").and_then(Value::as_str).unwrap_or("-"),
                        ),
                    ],
                    vec!["reload (SIGHUP)".into(), ms("reload_ms")?],
                    vec![
                        "resident after apply (VmRSS, highest at rest)".into(),
                        kib("rss_applied_kib")?,
                    ],
                    vec![
                        "resident after apply (VmRSS, lowest, between counter samples)".into(),
                        kib("rss_applied_low_kib")?,
                    ],
                    vec!["peak after apply (VmHWM)".into(), kib("hwm_applied_kib")?],
                ],
            ));
        }
    }
    let charts = if groups.is_empty() {
        Vec::new()
    } else {
        vec![(
            "Policy apply by phase and size, ms".into(),
            Chart {
                file: APPLY_CHART.into(),
                svg: bar_chart("Policy apply by phase, median ms", "ms", &groups),
            },
        )]
    };
    Ok(Part {
        markdown: md,
        verdicts,
        charts,
    })
}

/// A figure with two decimals below 10, one above: small phases stay visible.
fn precise(m: f64) -> String {
    if m.abs() < 10.0 {
        format!("{m:.2}")
    } else {
        format!("{m:.1}")
    }
}

/// `1234567` as `1,234,567` (integral figures only).
fn thousands(n: f64) -> String {
    if n.fract() != 0.0 || !n.is_finite() {
        return format!("{n}");
    }
    let digits = format!("{}", n.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// How a bar is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A figure within its bar.
    Pass,
    /// A figure over its bar (or missing).
    Fail,
    /// A baseline, measured to compare with.
    Baseline,
    /// A figure without a bar.
    Plain,
}

impl Style {
    fn fill(self) -> &'static str {
        match self {
            Style::Pass => "#2e7d32",
            Style::Fail => "#c62828",
            Style::Baseline => "#90a4ae",
            Style::Plain => "#1565c0",
        }
    }
}

/// One horizontal bar.
pub struct BarRow {
    pub label: String,
    /// `None`: not measured (a missed run); drawn as text only.
    pub value: Option<f64>,
    pub value_text: String,
    /// The bar the figure must stay within, drawn as a dashed mark.
    pub limit: Option<f64>,
    pub style: Style,
}

/// Bars under one heading.
pub struct BarGroup {
    pub title: String,
    pub rows: Vec<BarRow>,
}

/// Widest label column, px; labels longer than fit are cut with "...".
const MAX_LABEL_WIDTH: f64 = 470.0;
/// Rough advance of one character at the chart's 12 px sans-serif, px.
const CHAR_WIDTH: f64 = 6.6;
const PLOT_WIDTH: f64 = 400.0;
/// The column of figures, right of the plot.
const VALUE_WIDTH: f64 = 130.0;
const ROW_HEIGHT: f64 = 20.0;
const GROUP_HEIGHT: f64 = 26.0;
const TOP: f64 = 46.0;
const AXIS_HEIGHT: f64 = 36.0;

/// A horizontal bar chart, as a standalone SVG document. The scale starts at 0 (or at
/// the most negative figure) and ends past the largest figure or limit.
pub fn bar_chart(title: &str, unit: &str, groups: &[BarGroup]) -> String {
    let all = || groups.iter().flat_map(|g| &g.rows);
    let max = all()
        .flat_map(|r| [r.value, r.limit])
        .flatten()
        .fold(0.0_f64, f64::max);
    let min = all().filter_map(|r| r.value).fold(0.0_f64, f64::min);
    let step = nice_step((max - min).max(f64::EPSILON));
    let lo = (min / step).floor() * step;
    let hi = ((max / step).floor() + 1.0) * step;
    let longest = all()
        .map(|r| r.label.chars().count())
        .chain(groups.iter().map(|g| g.title.chars().count() / 2))
        .max()
        .unwrap_or(0);
    let label_width = (longest as f64 * CHAR_WIDTH + 24.0).clamp(120.0, MAX_LABEL_WIDTH);
    let max_chars = ((label_width - 24.0) / CHAR_WIDTH) as usize;
    // Wide enough for the title at 15 px bold, too.
    let width =
        (label_width + PLOT_WIDTH + VALUE_WIDTH).max(title.chars().count() as f64 * 9.0 + 20.0);
    let x = |v: f64| label_width + (v - lo) / (hi - lo) * PLOT_WIDTH;
    let rows: usize = groups.iter().map(|g| g.rows.len()).sum();
    let height = TOP + groups.len() as f64 * GROUP_HEIGHT + rows as f64 * ROW_HEIGHT + AXIS_HEIGHT;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        xml(title)
    );
    let plot_bottom = height - AXIS_HEIGHT;
    // Grid and axis.
    let mut t = lo;
    while t <= hi + step / 2.0 {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{plot_bottom:.1}" stroke="#e0e0e0"/>"##,
            x(t)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(t),
            plot_bottom + 14.0,
            xml(&fmt_tick(t, step))
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        label_width + PLOT_WIDTH / 2.0,
        plot_bottom + 30.0,
        xml(unit)
    );
    let mut y = TOP;
    for g in groups {
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
            y + 17.0,
            xml(&g.title)
        );
        y += GROUP_HEIGHT;
        for r in &g.rows {
            let mid = y + ROW_HEIGHT / 2.0;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                label_width - 8.0,
                mid + 4.0,
                xml(&clip(&r.label, max_chars))
            );
            if let Some(v) = r.value {
                let zero = x(0.0_f64.max(lo));
                let (a, b) = (zero.min(x(v)), zero.max(x(v)));
                let _ = writeln!(
                    s,
                    r#"<rect x="{a:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                    y + 3.0,
                    (b - a).max(1.0),
                    ROW_HEIGHT - 6.0,
                    r.style.fill()
                );
            }
            if let Some(l) = r.limit {
                let _ = writeln!(
                    s,
                    r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#212121" stroke-width="1.5" stroke-dasharray="3,2"/>"##,
                    x(l),
                    y + 1.0,
                    y + ROW_HEIGHT - 1.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                label_width + PLOT_WIDTH + 10.0,
                mid + 4.0,
                xml(&r.value_text)
            );
            y += ROW_HEIGHT;
        }
    }
    if all().any(|r| r.limit.is_some()) {
        s.push_str(r#"<text x="10" y="38" font-size="11">dashed mark: the bar</text>"#);
        s.push('\n');
    }
    s.push_str("</svg>\n");
    s
}

/// A step of 1, 2 or 5 times a power of ten giving about five ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    pow * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn fmt_tick(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10().floor()) as usize;
        format!("{v:.digits$}")
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}...", s.chars().take(n - 3).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Escapes text for XML content and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn machine() -> Machine {
        Machine {
            cpu_model: "Test CPU 9000".into(),
            cpus: 2,
            virtual_machine: true,
            kernel: "Linux 6.18.44-test #1 SMP x86_64".into(),
            memory_kib: Some(24_684_084),
            generated_at: "2026-11-26 18:00:00 UTC".into(),
            measured_at: Some("2026-11-26 17:39:49 UTC".into()),
            commit: "0123456789abcdef".into(),
        }
    }

    fn kernel_case(name: &str, delta: f64, bar: f64, lengths: &str) -> Value {
        json!({
            "name": name, "prefix_lengths": lengths, "program": "xdp_to_tenant",
            "frame_bytes": 64, "median_case_ns": 21.0 + delta, "median_baseline_ns": 21.0,
            "delta_ns": delta, "ratio": (21.0 + delta) / 21.0, "bar_ns": bar,
            "pass": delta <= bar, "case_ns": [40], "baseline_ns": [21],
        })
    }

    /// A report with the kernel cases and nothing else.
    fn kernel_only() -> Value {
        json!({
            "kernel": "6.18.44-test", "cpu": 0, "pairs": 21, "repeat": 1_000_000,
            "bar_ns": 35.0, "new_flow_bar_ns": 150.0, "tenants": {"count": 10_000},
            "cases": [
                kernel_case("known tenant v4 & co <fast>", 19.0, 35.0, "/32 | /64"),
                kernel_case("new flow v4", 160.0, 150.0, "/32 | /64"),
                kernel_case("two probes miss", 22.0, 35.0, "/32 /24 | /64 /48"),
            ],
        })
    }

    fn full() -> Value {
        let mut r = kernel_only();
        r["detection_latency"] = json!({
            "bar_ms": 1000.0, "timeout_s": 5.0, "runs": 3,
            "method": "t0 just before the attack tool is spawned",
            "cases": [
                {"case": "syn_flood_out", "kind": "flood_out", "tenant": "globex",
                 "action": "block", "attack": "hping3 -S --flood",
                 "flag_ms": [72.3, null, 59.0], "drop_ms": [74.2, 51.7, null],
                 "median_flag_ms": 72.3, "median_drop_ms": 74.2, "pass": true},
                {"case": "scan", "kind": "scan", "tenant": "globex", "action": "flag",
                 "flag_ms": [null, null, 900.0], "drop_ms": null,
                 "median_flag_ms": null, "median_drop_ms": null, "pass": false},
            ],
        });
        r["metrics_render"] = json!({
            "bar_ms": 50.0, "tenants": 10_000, "runs": 15, "profile": "release",
            "scrape_ms": 30.5, "daemon_get_ms": 61.0, "pass": false,
            "parts": [
                {"name": "read", "top_k": null, "median_ms": 10.25, "bytes": null},
                {"name": "render", "top_k": 1000, "median_ms": 20.25, "bytes": 2_440_034},
                {"name": "daemon", "top_k": 1000, "median_ms": 61.0, "bytes": null},
            ],
        });
        let side = |label: &str, mpps: f64| {
            json!({
                "label": label, "receiver": "xdp_to_tenant", "generator": "xdp_bench_gen",
                "frame_bytes": 64, "cores": 1, "median_mpps": mpps,
                "median_packets": 1_000_000, "median_refused_by_ring": 12,
                "median_seconds": 0.5, "mpps": [mpps, mpps + 0.1],
            })
        };
        r["throughput"] = json!({
            "method": "XDP live frames redirected through veth pairs",
            "pairs": 9, "ms_per_generator_run": 250, "frames_per_call": 32_768, "batch": 64,
            "cpus": 2,
            "limits": ["2 vCPUs: generator and receiver share a CPU"],
            "cases": [
                {"name": "drop path vs bare XDP_DROP", "ratio": 0.85, "bar": 0.8,
                 "bar_text": ">= 0.8 x XDP_DROP", "pass": true,
                 "case": side("warden drop path", 2.0), "baseline": side("XDP_DROP", 2.4)},
                {"name": "meter and pass vs bare XDP_PASS", "ratio": 0.7, "bar": 0.9,
                 "bar_text": ">= 0.9 x XDP_PASS", "pass": false,
                 "case": side("warden pass", 1.4), "baseline": side("XDP_PASS", 2.0)},
                {"name": "XDP_DROP, 2 cores vs 1 core", "ratio": 1.2, "bar": null,
                 "bar_text": "(what this machine allows)", "pass": true,
                 "case": side("XDP_DROP, 2 cores", 2.9), "baseline": side("XDP_DROP", 2.4)},
            ],
        });
        r["scale"] = json!({
            "method": "policy apply: the daemon's enforce path",
            "profile": "release",
            "policy": "each tenant one IPv4 /32",
            "cases": [
                {"case": "policy apply, 1000 tenants, to first enforced packet",
                 "figure": 12.5, "unit": "ms", "bar": null, "pass": null},
                {"case": "policy apply, 100000 tenants, to first enforced packet",
                 "figure": 2500.0, "unit": "ms", "bar": 2000.0, "pass": false},
                {"case": "full counter read, 100000 tenants",
                 "figure": 120.0, "unit": "ms", "bar": 250.0, "pass": true},
            ],
            "apply": [{
                "tenants": 1000, "runs": 5,
                "phases": APPLY_PHASES.iter().chain(&["total"]).map(|p| {
                    (format!("{p}_ms"), json!({"median": 1.5, "runs": [1.5]}))
                }).collect::<serde_json::Map<_, _>>(),
            }],
            "counter_read": {"tenants": 100_000, "median_ms": 120.0, "runs_ms": [120.0]},
            "daemon": null,
        });
        r
    }

    /// A minimal XML well-formedness check: every tag closed in order, one root,
    /// attributes quoted, no raw `<` or bare `&` in text or attribute values.
    fn well_formed(doc: &str) -> std::result::Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = doc.trim();
        let check_text = |t: &str| -> std::result::Result<(), String> {
            let mut r = t;
            while let Some(i) = r.find('&') {
                r = &r[i + 1..];
                let end = r.find(';').ok_or(format!("bare & in {t:?}"))?;
                let entity = &r[..end];
                if !["amp", "lt", "gt", "quot", "apos"].contains(&entity)
                    && !entity.starts_with('#')
                {
                    return Err(format!("unknown entity &{entity}; in {t:?}"));
                }
            }
            Ok(())
        };
        while !rest.is_empty() {
            let Some(open) = rest.find('<') else {
                check_text(rest)?;
                if stack.is_empty() {
                    return Err(format!("text outside the root: {rest:?}"));
                }
                break;
            };
            let text = &rest[..open];
            if !text.trim().is_empty() && stack.is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            check_text(text)?;
            rest = &rest[open..];
            let close = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if top != name.trim() {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(format!("bad tag name {name:?}"));
            }
            // Attributes: name="value" pairs, nothing else.
            let mut attrs = tag[name_end..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("unquoted attribute in <{tag}>"))?;
                let attr = attrs[..eq].trim();
                if attr.is_empty() || attr.contains(char::is_whitespace) {
                    return Err(format!("bad attribute name {attr:?} in <{tag}>"));
                }
                let value_end = attrs[eq + 2..]
                    .find('"')
                    .ok_or(format!("unterminated value in <{tag}>"))?;
                let value = &attrs[eq + 2..eq + 2 + value_end];
                if value.contains('<') {
                    return Err(format!("raw < in attribute of <{tag}>"));
                }
                check_text(value)?;
                attrs = attrs[eq + 2 + value_end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name.to_string());
            }
        }
        if let Some(open) = stack.pop() {
            return Err(format!("<{open}> never closed"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    #[test]
    fn the_well_formedness_check_rejects_broken_xml() {
        assert!(well_formed(r#"<svg a="1"><text>x &amp; y</text></svg>"#).is_ok());
        for bad in [
            r#"<svg><text>x</svg>"#,
            r#"<svg><text>a & b</text></svg>"#,
            r#"<svg><text x=1>a</text></svg>"#,
            r#"<svg><text>a < b</text></svg>"#,
            r#"<svg></svg><svg></svg>"#,
            r#"<svg>"#,
        ] {
            assert!(well_formed(bad).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn every_figure_is_in_a_table_with_its_bar_and_verdict() -> Result<()> {
        let doc = render(&full(), &machine())?;
        let md = &doc.markdown;
        // Kernel cases: figures, bar, verdict; `|` in a cell escaped.
        assert!(md.contains(
            "| known tenant v4 & co <fast> | /32 \\| /64 | xdp_to_tenant | 64 B | 40.0 | 21.0 \
             | +19.0 | 1.90 | 35 ns | PASS |"
        ));
        assert!(md.contains("| new flow v4 | /32 \\| /64 | xdp_to_tenant | 64 B | 181.0 | 21.0 | +160.0 | 8.62 | 150 ns | **FAIL** |"));
        // Latency: medians, every run, missed runs named.
        assert!(md.contains(
            "| syn_flood_out | hping3 -S --flood | flood_out | block | 72 | 74 | 72, missed, 59 \
             | 74, 52, missed | 1000 ms | PASS |"
        ));
        assert!(md.contains("| scan |  | scan | flag | missed (> 5 s) | - | missed, missed, 900 | - | 1000 ms | **FAIL** |"));
        // /metrics and scale.
        assert!(md.contains("| read + render (default K) | 30.50 | - |"));
        assert!(md.contains("| render (K = 1000) | 20.25 | 2.3 MiB |"));
        assert!(md.contains(
            "| policy apply, 100000 tenants, to first enforced packet | 2500.0 ms | <= 2000 ms \
             | **FAIL** |"
        ));
        assert!(md.contains(
            "| policy apply, 1000 tenants, to first enforced packet | 12.5 ms | - | no bar |"
        ));
        assert!(md.contains(
            "| 1,000 | 5 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 | 1.50 |"
        ));
        assert!(md.contains("Daemon memory: not measured in this run."));
        // Summary: 3 kernel + 2 throughput + 2 latency + 2 metrics + 2 scale verdicts (the
        // barless one is not a verdict); failures counted.
        assert!(
            md.contains("6 of 11 figures within their bar; **5 over**."),
            "{md}"
        );
        // The machine and the method.
        assert!(md.contains("| CPU | Test CPU 9000 |"));
        assert!(md.contains("| Memory | 23.5 GiB |"));
        assert!(md.contains("| Git commit | 0123456789abcdef |"));
        assert!(md.contains("ABBA order"));
        assert!(md.contains("As the report states it: policy apply: the daemon's enforce path"));
        // Throughput: the comparison, each side with its runs, the runtime's notes.
        assert!(md.contains(
            "| drop path vs bare XDP_DROP | warden drop path | 2.000 | XDP_DROP | 2.400 | 0.85 \
             | >= 0.8 x XDP_DROP | PASS |"
        ));
        assert!(md.contains(
            "| meter and pass vs bare XDP_PASS | warden pass | 1.400 | XDP_PASS | 2.000 | 0.70 \
             | >= 0.9 x XDP_PASS | **FAIL** |"
        ));
        assert!(md.contains(
            "| drop path vs bare XDP_DROP | baseline | xdp_to_tenant | xdp_bench_gen | 64 B | 1 \
             | 1,000,000 | 0.500 | 12 | - | 2.40, 2.50 |"
        ));
        assert!(md.contains("- Note: 2 vCPUs: generator and receiver share a CPU"));
        assert!(md.contains(
            "| XDP_DROP, 2 cores vs 1 core | XDP_DROP, 2 cores | 2.900 | XDP_DROP | 2.400 | 1.20 \
             | (what this machine allows) | reference, no bar |"
        ));
        let files: Vec<_> = doc.charts.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "kernel-micro.svg",
                "throughput.svg",
                "detection-latency.svg",
                "policy-apply.svg"
            ]
        );
        for f in files {
            assert!(
                md.contains(&format!("]({CHART_DIR}/{f})")),
                "{f} not linked"
            );
        }
        Ok(())
    }

    #[test]
    fn a_missing_section_says_not_measured_and_invents_nothing() -> Result<()> {
        let doc = render(&kernel_only(), &machine())?;
        let md = &doc.markdown;
        for title in [
            "Throughput on live frames",
            "Detection latency",
            "`/metrics` with many tenants",
            "Scale: policy apply, counter reads, daemon memory",
        ] {
            assert!(
                md.contains(&format!("## {title}\n\n{NOT_MEASURED}\n")),
                "{title} in {md}"
            );
        }
        assert!(md.contains("2 of 3 figures within their bar; **1 over**."));
        assert_eq!(doc.charts.len(), 1);
        assert!(!md.contains("detection-latency.svg"));

        // A null section (the latency labs skipped) is missing too.
        let mut r = kernel_only();
        r["detection_latency"] = Value::Null;
        assert!(render(&r, &machine())?
            .markdown
            .contains(&format!("## Detection latency\n\n{NOT_MEASURED}\n")));

        // Nothing at all: every section missing, no verdict, no chart.
        let doc = render(&json!({}), &machine())?;
        assert!(doc
            .markdown
            .contains("No figure with a bar was measured in this run."));
        assert_eq!(
            doc.markdown
                .matches(&format!("\n\n{NOT_MEASURED}\n"))
                .count(),
            5
        );
        assert!(doc.charts.is_empty());
        Ok(())
    }

    #[test]
    fn a_malformed_section_is_an_error_naming_the_key() {
        let mut r = full();
        r["cases"][1].as_object_mut().map(|c| c.remove("delta_ns"));
        let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
        assert!(e.contains("`cases`") && e.contains("delta_ns"), "{e}");

        let mut r = full();
        r["detection_latency"]["cases"][0]["flag_ms"] = json!(["soon"]);
        let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
        assert!(
            e.contains("detection_latency") && e.contains("flag_ms"),
            "{e}"
        );

        let mut r = full();
        r["throughput"]["cases"][0]["pass"] = json!(false);
        let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
        assert!(e.contains("throughput") && e.contains("pass"), "{e}");

        let mut r = full();
        r["scale"]["apply"][0]["phases"]
            .as_object_mut()
            .map(|p| p.remove("place_ms"));
        let e = format!("{:#}", render(&r, &machine()).err().expect("must fail"));
        assert!(e.contains("scale") && e.contains("place_ms"), "{e}");

        let mut r = full();
        r["metrics_render"]["pass"] = json!(true);
        assert!(
            render(&r, &machine()).is_err(),
            "a pass the figures contradict"
        );

        assert!(render(&json!([1, 2]), &machine()).is_err());
    }

    #[test]
    fn every_chart_is_well_formed_svg_with_escaped_labels() -> Result<()> {
        let doc = render(&full(), &machine())?;
        for c in &doc.charts {
            well_formed(&c.svg).map_err(|e| anyhow::anyhow!("{}: {e}", c.file))?;
            assert!(c
                .svg
                .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        }
        let kernel = &doc.charts[0].svg;
        assert!(kernel.contains("known tenant v4 &amp; co &lt;fast&gt;"));
        // One bar per case, and the bar of each drawn as a dashed mark.
        assert_eq!(kernel.matches("<rect ").count(), 1 + 3);
        assert_eq!(kernel.matches("stroke-dasharray").count(), 3);
        // A failing case is drawn in the failure colour.
        assert_eq!(kernel.matches(Style::Fail.fill()).count(), 1);
        // A missed run has no bar but says so.
        let throughput = &doc.charts[1].svg;
        assert_eq!(throughput.matches("<rect ").count(), 1 + 6);
        assert_eq!(throughput.matches(Style::Baseline.fill()).count(), 3);
        assert_eq!(throughput.matches(Style::Plain.fill()).count(), 1);
        assert!(throughput.contains("1.40 Mpps (0.70 x)"));
        let latency = &doc.charts[2].svg;
        assert_eq!(latency.matches("<rect ").count(), 1 + 5);
        assert_eq!(latency.matches("missed (&gt; 5 s)").count(), 4);
        Ok(())
    }

    #[test]
    fn the_scale_covers_every_figure_and_negative_figures() {
        let chart = bar_chart(
            "t",
            "ns",
            &[BarGroup {
                title: "g".into(),
                rows: vec![
                    BarRow {
                        label: "neg".into(),
                        value: Some(-3.0),
                        value_text: "-3".into(),
                        limit: None,
                        style: Style::Plain,
                    },
                    BarRow {
                        label: "pos".into(),
                        value: Some(42.0),
                        value_text: "42".into(),
                        limit: Some(50.0),
                        style: Style::Pass,
                    },
                ],
            }],
        );
        assert!(well_formed(&chart).is_ok());
        // Ticks from -20 to 60 by 20: the most negative figure and the limit both fit.
        assert!(chart.contains(">-20</text>") && chart.contains(">60</text>"));
        assert!(!chart.contains(">-40</text>") && !chart.contains(">80</text>"));
        assert_eq!(nice_step(7.0), 2.0);
        assert_eq!(nice_step(170.0), 50.0);
        assert_eq!(nice_step(0.3), 0.1);
    }

    #[test]
    fn writing_replaces_the_charts_and_removes_those_of_missing_sections() -> Result<()> {
        let root = std::env::temp_dir().join(format!("warden-report-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let written = write_document(&root, &render(&full(), &machine())?)?;
        assert_eq!(written.len(), 5);
        assert!(root.join(CHART_DIR).join(THROUGHPUT_CHART).exists());
        // A later run without throughput or scale: their charts go, the rest are rewritten.
        let doc = render(&kernel_only(), &machine())?;
        let written = write_document(&root, &doc)?;
        let dir = root.join(CHART_DIR);
        assert_eq!(written, [dir.join(KERNEL_CHART), root.join(DOCUMENT)]);
        for gone in [THROUGHPUT_CHART, LATENCY_CHART, APPLY_CHART] {
            assert!(!dir.join(gone).exists(), "{gone} left behind");
        }
        assert_eq!(fs::read_to_string(root.join(DOCUMENT))?, doc.markdown);
        fs::remove_dir_all(&root)?;
        Ok(())
    }

    #[test]
    fn dates_and_counts_are_formatted_exactly() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_868_800), "2000-03-01 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(1_795_716_919), "2026-11-26 18:15:19 UTC");
        assert_eq!(thousands(100_000.0), "100,000");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(2.5), "2.5");
    }
}
