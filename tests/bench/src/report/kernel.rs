//! The kernel micro-benchmarks' section: every case against its bar, and its chart.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, pass_fail, table, text, thousands},
    svg::{bar_chart, BarGroup, BarRow, Style},
    Chart, Part, Verdict, KERNEL_CHART,
};

pub(super) fn kernel_section(report: &serde_json::Map<String, Value>) -> Result<Part> {
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
                "IPv4 lengths",
                "IPv6 lengths",
                "bound MACs",
                "tenants on the shorter prefixes",
            ],
            rows,
        ));
        md.push('\n');
    }
    if let Some(setup) = top.get("setup").and_then(Value::as_str) {
        writeln!(md, "Programs and maps: {setup}.\n")?;
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
            outcome: pass.into(),
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
    if let Some(d) = top.get("daemon_program").filter(|d| d.is_object()) {
        let (part, verdict) = daemon_program(d)?;
        md.push_str(&part);
        verdicts.extend(verdict);
    }
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

/// The daemon's own program, each case next to its in-process case: the paragraph
/// saying how the two are made the same, a table and the verdicts (each case's bar,
/// their agreement).
fn daemon_program(d: &Value) -> Result<(String, Vec<Verdict>)> {
    let mut md = String::new();
    let (bar, agree) = (num(d, "bar_ns")?, num(d, "agree_ns")?);
    writeln!(
        md,
        "\nThe daemon's own program, `{}` (tag {}, {} bytes translated): {}.\n",
        text(d, "program")?,
        text(d, "tag")?,
        num(d, "bytes_xlated")?,
        text(d, "method")?,
    )?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for c in list(d, "cases")? {
        let matching = text(c, "matching_case")?;
        let frame = text(c, "frame")?;
        let (delta, difference) = (num(c, "delta_ns")?, num(c, "difference_ns")?);
        let (pass, agrees) = (flag(c, "pass")?, flag(c, "agrees")?);
        rows.push(vec![
            format!("`{frame}` ({} B)", num(c, "frame_bytes")?),
            format!("{:.1}", num(c, "median_case_ns")?),
            format!("{:.1}", num(c, "median_baseline_ns")?),
            format!("{delta:+.1}"),
            matching.to_string(),
            format!("{:+.1}", num(c, "matching_delta_ns")?),
            format!("{difference:+.1}"),
            pass_fail(pass && agrees).to_string(),
        ]);
        verdicts.push(Verdict {
            what: format!("per-packet cost: the daemon's own program on {frame}"),
            bar: format!("<= {bar} ns over XDP_PASS"),
            figure: format!("{delta:+.1} ns"),
            outcome: pass.into(),
        });
        verdicts.push(Verdict {
            what: format!("the daemon's own program on {frame} against \"{matching}\""),
            bar: format!("within {agree} ns"),
            figure: format!("{difference:+.1} ns"),
            outcome: agrees.into(),
        });
    }
    md.push_str(&table(
        &[
            "frame (daemon's pinned program, bpftool prog run)",
            "case ns",
            "base ns",
            "delta ns",
            "in-process case",
            "its delta ns",
            "difference ns",
            "verdict",
        ],
        rows,
    ));
    Ok((md, verdicts))
}
