//! The veth throughput section: each comparison's rates and ratio against its bar, and
//! its chart.

use std::fmt::Write as _;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, opt_num, pass_fail, short, table, text, thousands},
    svg::{bar_chart, BarGroup, BarRow, Style},
    Chart, Outcome, Part, Verdict, THROUGHPUT_CHART,
};

pub(super) fn throughput_section(v: &Value) -> Result<Part> {
    let mut md = String::new();
    // The part ran but the load could not be generated (the kernel refused live
    // frames): every comparison is listed with its bar as not measured, and why.
    if let Some(reason) = v.get("not_measured") {
        let reason = reason
            .as_str()
            .with_context(|| format!("`not_measured` holds {reason}, not text"))?;
        return not_measured_section(v, reason);
    }
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
    write_limits(&mut md, v)?;
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
        if c.get("not_measured").is_some() {
            bail!("{name} is not measured in a section that was: {}", short(c));
        }
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
                outcome: pass.into(),
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

/// The section when no comparison could be measured: the reason, and each comparison
/// with its bar and a "not measured" verdict (never a figure, never a pass).
fn not_measured_section(v: &Value, reason: &str) -> Result<Part> {
    let mut md = String::new();
    writeln!(md, "**Not measured in this run**: {reason}.\n")?;
    let limits = write_limits(&mut md, v)?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for c in list(v, "cases")? {
        let name = text(c, "name")?;
        let case_reason = text(c, "not_measured")
            .with_context(|| format!("{name} has figures in a section that was not measured"))?;
        let bar_text = text(c, "bar_text")?;
        let figure = format!("not measured: {case_reason}");
        rows.push(vec![name.to_string(), bar_text.to_string(), figure.clone()]);
        if opt_num(c, "bar")?.is_some() {
            verdicts.push(Verdict {
                what: format!("throughput: {name}"),
                bar: bar_text.to_string(),
                figure,
                outcome: Outcome::NotMeasured,
            });
        }
    }
    if limits != 0 {
        md.push('\n');
    }
    md.push_str(&table(&["comparison", "bar", "verdict"], rows));
    Ok(Part {
        markdown: md,
        verdicts,
        charts: Vec::new(),
    })
}

/// Writes the section's `limits`, one note line each; returns how many there were.
fn write_limits(md: &mut String, v: &Value) -> Result<usize> {
    let limits = list(v, "limits")?;
    for limit in limits {
        let limit = limit
            .as_str()
            .with_context(|| format!("`limits` holds {limit}, not text"))?;
        writeln!(md, "- Note: {limit}")?;
    }
    Ok(limits.len())
}
