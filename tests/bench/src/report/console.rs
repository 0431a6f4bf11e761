//! The console's section: the queue of many flags in a browser, and the API alone.

use std::fmt::Write as _;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, opt_num, pass_fail, precise, short, table, text, thousands},
    Part, Verdict,
};

pub(super) fn console_section(v: &Value) -> Result<Part> {
    let flags = num(v, "flags")?;
    let mut md = String::new();
    writeln!(
        md,
        "{} flags in the daemon's store ({} daemon), {} fresh page loads in headless \
         Chromium; the API routes alone {} times each. Bars (issue 21): the queue's first \
         page in under {} ms, a filter change in under {} ms, on the median over the runs; \
         the worst run is shown beside it.\n",
        thousands(flags),
        text(v, "daemon")?,
        num(v, "runs")?,
        num(v, "api_runs")?,
        num(v, "first_page_bar_ms")?,
        num(v, "filter_bar_ms")?,
    )?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for key in ["browser", "server"] {
        for f in list(v, key).with_context(|| format!("`{key}`"))? {
            let (name, bar) = (text(f, "name")?, opt_num(f, "bar_ms")?);
            let (median, worst) = (num(f, "median_ms")?, num(f, "worst_ms")?);
            let pass = match f.get("pass") {
                None | Some(Value::Null) => None,
                Some(_) => Some(flag(f, "pass")?),
            };
            if pass != bar.map(|b| median <= b) {
                bail!(
                    "`pass` of {name:?} does not follow from its figures: {}",
                    short(f)
                );
            }
            let runs: Vec<String> = list(f, "runs_ms")?
                .iter()
                .map(|r| r.as_f64().map(precise))
                .collect::<Option<_>>()
                .with_context(|| format!("`runs_ms` of {name:?} holds a non-number"))?;
            rows.push(vec![
                name.to_string(),
                precise(median),
                precise(worst),
                runs.join(", "),
                bar.map_or_else(|| "-".into(), |b| format!("{b:.0} ms")),
                pass.map_or("no bar", pass_fail).to_string(),
            ]);
            if let (Some(bar), Some(pass)) = (bar, pass) {
                verdicts.push(Verdict {
                    what: format!("console, {} flags: {name}", thousands(flags)),
                    bar: format!("median <= {bar:.0} ms"),
                    figure: format!("{median:.0} ms (worst {worst:.0})"),
                    outcome: pass.into(),
                });
            }
        }
    }
    md.push_str(&table(
        &[
            "figure",
            "median ms",
            "worst ms",
            "runs ms",
            "bar",
            "verdict",
        ],
        rows,
    ));
    Part::checked(v, md, verdicts)
}
