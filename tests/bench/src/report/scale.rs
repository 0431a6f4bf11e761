//! The scale section: policy apply by phase up to 100,000 tenants, the full counter
//! read, the daemon's memory, and the apply chart.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, opt_num, pass_fail, precise, short, table, text, thousands},
    svg::{bar_chart, BarGroup, BarRow, Style},
    Chart, Part, Verdict, APPLY_CHART,
};

/// The phases of a policy apply, in the order the daemon runs them.
pub(super) const APPLY_PHASES: [&str; 8] = crate::bench_scale::ApplyRun::PHASES;

pub(super) fn scale_section(v: &Value) -> Result<Part> {
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
                outcome: pass.into(),
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
