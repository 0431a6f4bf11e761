//! The fleet's section: policy change to 20 nodes, suspension, scan to the controller.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde_json::Value;

use super::{
    fields::{flag, list, num, pass_fail, precise, short, table, text},
    Part, Verdict,
};

pub(super) fn fleet_section(v: &Value) -> Result<Part> {
    let mut md = String::new();
    let runs = |key: &str| -> Result<String> {
        let r: Option<Vec<String>> = list(v, key)?
            .iter()
            .map(|x| x.as_f64().map(precise))
            .collect();
        match r {
            Some(r) => Ok(r.join(", ")),
            None => bail!("`{key}` holds a non-number: {}", short(v)),
        }
    };
    writeln!(
        md,
        "{} nodes on a {}-member etcd, {} binaries. Method: {}.\n",
        num(v, "nodes")?,
        num(v, "etcd_members")?,
        text(v, "binaries")?,
        text(v, "method")?,
    )?;
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    for f in list(v, "figures")? {
        let (name, ms, bar, pass) = (
            text(f, "name")?,
            num(f, "ms")?,
            num(f, "bar_ms")?,
            flag(f, "pass")?,
        );
        if pass != (ms <= bar) {
            bail!(
                "`pass` of {name:?} does not follow from its figures: {}",
                short(f)
            );
        }
        rows.push(vec![
            name.to_string(),
            precise(ms),
            format!("{bar:.0} ms"),
            pass_fail(pass).to_string(),
        ]);
        verdicts.push(Verdict {
            what: format!("fleet: {name}"),
            bar: format!("<= {bar:.0} ms"),
            figure: format!("{ms:.0} ms"),
            outcome: pass.into(),
        });
    }
    md.push_str(&table(&["figure", "ms", "bar", "verdict"], rows));
    writeln!(
        md,
        "\nPolicy change, each run (ms): {} (p50 {}, p99 {}); the CLI returned after (ms): {}; \
         the first node enforced after (ms): {}.  \
         \nSuspension, each run (ms after the CLI returned): {}.  \
         \nScan: scan start to the controller {} ms.",
        runs("policy_change_ms")?,
        precise(num(v, "policy_change_p50_ms")?),
        precise(num(v, "policy_change_p99_ms")?),
        runs("policy_cli_return_ms")?,
        runs("policy_first_node_ms")?,
        runs("suspension_ms")?,
        precise(num(v, "scan_start_to_controller_ms")?),
    )?;
    Part::checked(v, md, verdicts)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{super::Outcome, fleet_section};

    fn sample(p99: f64, pass: bool) -> serde_json::Value {
        json!({
            "method": "m", "binaries": "release", "nodes": 22, "etcd_members": 3,
            "figures": [
                {"name": "policy change to all 20 nodes, p99", "ms": p99, "bar_ms": 1000.0, "pass": pass},
                {"name": "scan on node 7 to the controller", "ms": 41.1, "bar_ms": 2000.0, "pass": true},
            ],
            "policy_change_ms": [p99, 800.0], "policy_change_p50_ms": 800.0,
            "policy_change_p99_ms": p99, "policy_cli_return_ms": [200.0, 150.0], "policy_first_node_ms": [300.0, 250.0],
            "suspension_ms": [500.0], "scan_start_to_controller_ms": 621.4,
            "pass": pass,
        })
    }

    #[test]
    fn the_fleet_section_lists_each_figure_with_its_bar_and_verdict() {
        let part = fleet_section(&sample(1329.6, false)).expect("well formed");
        assert_eq!(part.verdicts.len(), 2);
        assert!(
            part.verdicts[0].outcome == Outcome::Fail && part.verdicts[1].outcome == Outcome::Pass
        );
        assert!(part.markdown.contains("policy change to all 20 nodes, p99"));
        assert!(part.markdown.contains("1000 ms"));
    }

    #[test]
    fn a_verdict_that_does_not_follow_from_its_figure_is_an_error() {
        assert!(fleet_section(&sample(1329.6, true)).is_err());
    }
}
