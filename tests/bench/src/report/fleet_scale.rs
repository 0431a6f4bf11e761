//! The fleet-scale section: 100,000 tenants in etcd (cold starts, a one-tenant change)
//! and the controller's flags over 10,000.

use std::fmt::Write as _;

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, pass_fail, precise, short, table, text, thousands},
    Part, Verdict,
};

pub(super) fn fleet_scale_section(v: &Value) -> Result<Part> {
    let (tenants, flags) = (num(v, "tenants")?, num(v, "flags")?);
    let mut md = String::new();
    writeln!(
        md,
        "{} tenants in a real etcd and {} published flags ({} daemon and controller, one \
         namespace lab). Bars (issue 18): a node's cold start to its first enforced packet \
         under 5 s, a one-tenant change enforced under 1 s, the controller's \
         `GET /api/v1/flags` under 200 ms, on the median (a cold start is one run).\n\n\
         Method: {}\n",
        thousands(tenants),
        thousands(flags),
        text(v, "daemon")?,
        text(v, "method")?,
    )?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for f in list(v, "figures").context("`figures`")? {
        let (name, bar) = (text(f, "name")?, num(f, "bar_ms")?);
        let (median, worst) = (num(f, "median_ms")?, num(f, "worst_ms")?);
        let pass = flag(f, "pass")?;
        if pass != (median <= bar) {
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
            format!("{bar:.0} ms"),
            pass_fail(pass).to_string(),
        ]);
        verdicts.push(Verdict {
            what: format!("fleet, {} tenants: {name}", thousands(tenants)),
            bar: format!("median <= {bar:.0} ms"),
            figure: format!("{median:.0} ms (worst {worst:.0})"),
            outcome: pass.into(),
        });
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
