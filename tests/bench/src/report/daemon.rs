//! The daemon's sections: detection latency (attack start to flag and first drop) and
//! the `/metrics` render.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::{
    fields::{flag, list, ms_runs, num, opt_num, pass_fail, table, text},
    svg::{bar_chart, BarGroup, BarRow, Style},
    Chart, Part, Verdict, LATENCY_CHART,
};

pub(super) fn latency_section(v: &Value) -> Result<Part> {
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
            outcome: pass.into(),
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

pub(super) fn metrics_section(v: &Value) -> Result<Part> {
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
        outcome: (scrape <= bar).into(),
    }];
    if let Some(daemon) = opt_num(v, "daemon_get_ms")? {
        verdicts.push(Verdict {
            what: format!("GET /metrics of the daemon, {tenants} tenants"),
            bar: format!("<= {bar} ms"),
            figure: format!("{daemon:.1} ms"),
            outcome: (daemon <= bar).into(),
        });
    }
    Part::checked(v, md, verdicts)
}
