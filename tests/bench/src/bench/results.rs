//! The kernel micro part's results: the table on stdout and `target/bench/report.json`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use serde_json::json;
use warden_common::program;

use super::{
    cases::{Case, Flow, Policy},
    daemon::{self, DaemonCase},
    measure::Figures,
    BenchArgs, ANSWER_RUNS, ANSWER_WINDOW, BAR_NS, BENCH_EVENT_BUDGET, MICRO_SETUP,
    NEW_FLOW_BAR_NS, NEW_FLOW_MAX_REPEAT, TENANTS, WIDE, XDP_BENCH_ANSWER, XDP_BENCH_NEW_FLOW,
};
use crate::util;

pub(super) fn print_table(results: &[(&Case, Figures)]) {
    const COLUMNS: usize = 9;
    let headers = [
        "case", "lengths", "program", "frame", "case ns", "base ns", "delta ns", "ratio", "bar",
    ];
    let rows: Vec<[String; COLUMNS]> = results
        .iter()
        .map(|(c, f)| {
            [
                c.name.to_string(),
                c.policy.label().to_string(),
                c.program.to_string(),
                format!("{} B", c.frame.len()),
                format!("{:.1}", f.median_case),
                format!("{:.1}", f.median_base),
                format!("{:+.1}", f.delta()),
                format!("{:.2}", f.ratio()),
                format!(
                    "{} (<= {} ns)",
                    if f.pass(c.bar_ns) { "PASS" } else { "FAIL" },
                    c.bar_ns
                ),
            ]
        })
        .collect();
    // Text columns left-aligned, figures right-aligned.
    crate::util::print_aligned(headers, &rows, |i| (3..=7).contains(&i));
}

pub(super) fn write_report(
    args: &BenchArgs,
    cpu: usize,
    results: &[(&Case, Figures)],
    latency: Option<&crate::latency::LatencyReport>,
    tracked: serde_json::Value,
) -> Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("target"))
        .join("bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cases: Vec<_> = results
        .iter()
        .map(|(c, f)| {
            json!({
                "name": c.name,
                "prefix_lengths": c.policy.label(),
                "program": c.program,
                "baseline_program": program::XDP_PASS_BASELINE,
                "lands": c.lands.describe(),
                "frame_bytes": c.frame.len(),
                "median_case_ns": f.median_case,
                "median_baseline_ns": f.median_base,
                "delta_ns": f.delta(),
                "ratio": f.ratio(),
                "bar_ns": c.bar_ns,
                "pass": f.pass(c.bar_ns),
                "repeat": f.repeat,
                "new_flow_per_repetition": c.flow == Flow::New,
                "detection_event_per_repetition": c.flow == Flow::Answer,
                "case_ns": f.case_ns,
                "baseline_ns": f.base_ns,
            })
        })
        .collect();
    let report = json!({
        "method": "BPF_PROG_TEST_RUN mean ns per repetition (kernel-timed), \
                   interleaved baseline/case pairs taken in rounds over all cases, medians; \
                   the programs and maps of a release `warden run` started on the policy \
                   file, switched by SIGHUP",
        "setup": MICRO_SETUP,
        "kernel": kernel.trim(),
        "cpu": cpu,
        "pairs": args.pairs,
        "rounds": args.rounds,
        "repeat": args.repeat,
        "bar_ns": BAR_NS,
        "new_flow_bar_ns": NEW_FLOW_BAR_NS,
        "detection_latency": latency.map(|l| l.to_json()),
        "new_flow": format!(
            "{XDP_BENCH_NEW_FLOW}: each repetition contacts the next IPv4 destination, a \
             fresh remote, with the tracked remotes loaded; the filter words of a run's \
             remotes set back to their loaded state before it, so a repetition is a first \
             contact (filter insert, pending write, attempt log entry) unless the loaded \
             filter takes it for a known remote (a false positive, predicted exactly and \
             counted in tracked_remotes); log drained after each run; at most \
             {NEW_FLOW_MAX_REPEAT} repetitions per run; event budget lifted \
             ({BENCH_EVENT_BUDGET:?})"
        ),
        "detection_event": format!(
            "{XDP_BENCH_ANSWER}: each repetition a SYN-ACK from the next IPv6 remote \
             answering that remote's pending first contact, so each clears its pending \
             slot and writes an OUTCOME into its CPU's attempt log (checked: one log \
             entry per repetition, none lost, nothing sent into the ring, each entry read \
             back the OUTCOME SUCCESS of its remote's attempt, and in the first run every \
             attempt cleared); the pending attempts of a run are written before \
             it, for {ANSWER_WINDOW} consecutive remotes with distinct pending slots; a \
             timed sample is {ANSWER_RUNS} such runs"
        ),
        "tracked_remotes": tracked,
        "tenants": {
            "count": TENANTS,
            "policies": Policy::ALL.map(|p| {
                let (v4, v6) = p.lengths();
                json!({
                    "label": p.label(),
                    "v4_lens": v4,
                    "v6_lens": v6,
                    "bound_macs": if p.binds_macs() { TENANTS } else { 0 },
                    "tenants_on_short_prefixes": if p == Policy::TwoLengths { WIDE } else { 0 },
                })
            }),
        },
        "cases": cases,
    });
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
    fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Most the daemon's own program and its in-process case may differ by, in ns.
pub(super) const AGREE_NS: f64 = 5.0;

/// The daemon's own program's line, next to its in-process case.
pub(super) fn print_daemon(d: &DaemonCase, matching: f64) {
    let f = &d.figures;
    println!(
        "the daemon's own {} (bpftool prog run on its pin, {}): case {:.1} ns, base {:.1} ns, \
         delta {:+.1} ns ({}, bar {BAR_NS} ns); in-process \"{}\": {:+.1} ns; difference \
         {:+.1} ns ({}, within {AGREE_NS} ns); tag {} both, {} bytes translated",
        program::XDP_TO_TENANT,
        d.spec.frame_file,
        f.median_case,
        f.median_base,
        f.delta(),
        if f.pass(BAR_NS) { "PASS" } else { "FAIL" },
        d.spec.matching,
        matching,
        f.delta() - matching,
        if agrees(d, matching) {
            "agree"
        } else {
            "DISAGREE"
        },
        d.tag,
        d.bytes_xlated,
    );
}

fn agrees(d: &DaemonCase, matching: f64) -> bool {
    (d.figures.delta() - matching).abs() <= AGREE_NS
}

/// What a case of the daemon's own program fails: its bar, and agreement with its
/// in-process case.
pub(super) fn daemon_failures(d: &DaemonCase, matching: f64) -> Vec<String> {
    let mut failed = Vec::new();
    if !d.figures.pass(BAR_NS) {
        failed.push(format!(
            "the daemon's own program on {} (bar {BAR_NS} ns)",
            d.spec.frame_file
        ));
    }
    if !agrees(d, matching) {
        failed.push(format!(
            "the daemon's own program on {} and \"{}\" differ by more than {AGREE_NS} ns",
            d.spec.frame_file, d.spec.matching
        ));
    }
    failed
}

/// Adds `daemon_program` to report.json (nothing when no case of it ran).
pub(super) fn add_daemon_to_report(report: &Path, cases: &[(DaemonCase, f64)]) -> Result<()> {
    if cases.is_empty() {
        return Ok(());
    }
    let text =
        fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).context("report.json is not JSON")?;
    let rows: Vec<_> = cases
        .iter()
        .map(|(d, matching)| {
            let f = &d.figures;
            json!({
                "frame": d.spec.frame_file,
                "frame_bytes": d.spec.frame().len(),
                "matching_case": d.spec.matching,
                "matching_delta_ns": matching,
                "median_case_ns": f.median_case,
                "median_baseline_ns": f.median_base,
                "delta_ns": f.delta(),
                "difference_ns": f.delta() - matching,
                "agrees": agrees(d, *matching),
                "pass": f.pass(BAR_NS),
                "repeat": f.repeat,
                "case_ns": f.case_ns,
                "baseline_ns": f.base_ns,
            })
        })
        .collect();
    let first = &cases[0].0;
    v.as_object_mut()
        .context("report.json is not an object")?
        .insert(
            "daemon_program".into(),
            json!({
                "method": daemon::METHOD,
                "program": program::XDP_TO_TENANT,
                "tag": first.tag,
                "bytes_xlated": first.bytes_xlated,
                "agree_ns": AGREE_NS,
                "bar_ns": BAR_NS,
                "cases": rows,
            }),
        );
    let text = serde_json::to_string_pretty(&v).context("encoding the report")?;
    fs::write(report, text + "\n").with_context(|| format!("writing {}", report.display()))
}
