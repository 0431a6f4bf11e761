//! What the daemon concluded, read through its API: flags (polled until they appear),
//! their evidence (figures, thresholds, top targets, actions, captured samples as pcap),
//! and `/metrics` series.
//!
//! The readers are tolerant of representation (a figure list may be a JSON object of
//! name to value or a list of `[name, value]` pairs; a target may be `{addr, port}`
//! alone or with its weight) but strict about substance: a check fails when the
//! evidence is missing, empty, or names the wrong thing.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;

use crate::{lab::Proc, topology::StandardLab, wait::eventually_every};

/// How often [`wait_flag`] asks.
const POLL: Duration = Duration::from_millis(100);

/// Flags matching `query` (`tenant=globex&kind=scan`; empty for all).
pub fn flags(lab: &StandardLab, query: &str) -> Result<Vec<Value>> {
    let path = if query.is_empty() {
        "/api/v1/flags".to_string()
    } else {
        format!("/api/v1/flags?{query}")
    };
    let body = lab.get(&path)?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
    match v {
        Value::Array(list) => Ok(list),
        other => bail!("{path} is not a list: {other}"),
    }
}

/// One flag with its actions and sample count (`GET /api/v1/flags/{id}`).
pub fn flag(lab: &StandardLab, id: i64) -> Result<Value> {
    let path = format!("/api/v1/flags/{id}");
    let body = lab.get(&path)?;
    serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))
}

/// Polls until a flag of `tenant` and `kind` exists; returns it and how long that took,
/// or `None` after `timeout` (an API error ends the wait with that error).
pub fn wait_flag(
    lab: &StandardLab,
    tenant: &str,
    kind: &str,
    timeout: Duration,
) -> Result<Option<(Value, Duration)>> {
    let start = Instant::now();
    let query = format!("tenant={tenant}&kind={kind}");
    let found = eventually_every(timeout, POLL, || {
        Ok(match flags(lab, &query) {
            Ok(list) => list.into_iter().next().map(Ok),
            Err(e) => Some(Err(e)),
        })
    });
    match found {
        Ok(flag) => Ok(Some((flag?, start.elapsed()))),
        // Only the wait itself fails: no such flag within `timeout`.
        Err(_) => Ok(None),
    }
}

/// A numeric entry of a figures or thresholds value, whichever shape it has.
pub fn named_number(v: &Value, name: &str) -> Option<f64> {
    match v {
        Value::Object(map) => map.get(name).and_then(Value::as_f64),
        Value::Array(list) => list.iter().find_map(|e| match e {
            Value::Array(pair) if pair.len() == 2 && pair[0] == name => pair[1].as_f64(),
            Value::Object(o) if o.get("name").and_then(Value::as_str) == Some(name) => {
                o.get("value").and_then(Value::as_f64)
            }
            _ => None,
        }),
        _ => None,
    }
}

/// Every (name, number) of a figures or thresholds value.
pub fn numbers(v: &Value) -> Vec<(String, f64)> {
    match v {
        Value::Object(map) => map
            .iter()
            .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|e| match e {
                Value::Array(pair) if pair.len() == 2 => {
                    Some((pair[0].as_str()?.to_string(), pair[1].as_f64()?))
                }
                Value::Object(o) => Some((
                    o.get("name")?.as_str()?.to_string(),
                    o.get("value")?.as_f64()?,
                )),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// What the top targets name: each address as itself, each port as `port N`.
pub fn target_names(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_targets(v, &mut out);
    out
}

fn collect_targets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(addr) = map.get("addr").and_then(Value::as_str) {
                out.push(addr.to_string());
            }
            if let Some(port) = map.get("port").and_then(Value::as_u64) {
                out.push(format!("port {port}"));
            }
            for (k, x) in map {
                if k != "addr" && k != "port" {
                    collect_targets(x, out);
                }
            }
        }
        Value::Array(list) => list.iter().for_each(|x| collect_targets(x, out)),
        _ => {}
    }
}

/// An enforcement action recorded on a flag.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRecord {
    pub at: i64,
    pub action: String,
    pub target: String,
    pub until: Option<i64>,
}

/// The evidence of one flag, checked to be there.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub id: i64,
    pub figures: Vec<(String, f64)>,
    pub thresholds: Vec<(String, f64)>,
    /// See [`target_names`].
    pub targets: Vec<String>,
    pub actions: Vec<ActionRecord>,
    pub samples: u64,
}

impl Evidence {
    /// Reads the flag `id` and fails unless it has figures, thresholds and top targets.
    pub fn of(lab: &StandardLab, id: i64) -> Result<Evidence> {
        let v = flag(lab, id)?;
        let figures = numbers(&v["figures"]);
        let thresholds = numbers(&v["thresholds"]);
        let targets = target_names(&v["top_targets"]);
        ensure!(!figures.is_empty(), "flag {id} has no figures: {v}");
        ensure!(!thresholds.is_empty(), "flag {id} has no thresholds: {v}");
        ensure!(!targets.is_empty(), "flag {id} has no top targets: {v}");
        let actions = v["actions"]
            .as_array()
            .with_context(|| format!("flag {id} has no action list: {v}"))?
            .iter()
            .map(|a| {
                Ok(ActionRecord {
                    at: a["at"]
                        .as_i64()
                        .with_context(|| format!("action without time: {a}"))?,
                    action: a["action"].as_str().unwrap_or_default().to_string(),
                    target: a["target"].as_str().unwrap_or_default().to_string(),
                    until: a["until"].as_i64(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Evidence {
            id,
            figures,
            thresholds,
            targets,
            actions,
            samples: v["samples"].as_u64().unwrap_or(0),
        })
    }

    /// Fails unless the top targets name `what` (an address, or `port N`).
    pub fn names(&self, what: &str) -> Result<()> {
        ensure!(
            self.targets.iter().any(|t| t == what),
            "flag {}: top targets {:?} do not name {what}",
            self.id,
            self.targets
        );
        Ok(())
    }

    /// The first recorded action called `action` (e.g. `block`), failing if none.
    pub fn action(&self, action: &str) -> Result<&ActionRecord> {
        self.actions
            .iter()
            .find(|a| a.action == action)
            .with_context(|| format!("flag {}: no {action} among {:?}", self.id, self.actions))
    }
}

/// The flag's samples as `tcpdump -nn -tt --time-stamp-precision=nano -r` prints them,
/// one line a packet starting with its unix time to the nanosecond, fetched from
/// `/api/v1/flags/{id}/pcap` with curl inside the node namespace into `dir`.
pub fn pcap_packets(lab: &StandardLab, id: i64, dir: &Path) -> Result<Vec<String>> {
    let file = dir.join(format!("flag-{id}.pcap"));
    let file_s = file.to_str().context("pcap path is not UTF-8")?;
    let url = format!("http://{}/api/v1/flags/{id}/pcap", lab.api());
    let out = lab.node.exec(&[
        "curl",
        "-sS",
        "-f",
        "-o",
        file_s,
        "-w",
        "%{content_type}",
        &url,
    ])?;
    let ctype = String::from_utf8_lossy(&out.stdout);
    ensure!(
        ctype == "application/vnd.tcpdump.pcap",
        "flag {id} pcap has content type {ctype}"
    );
    let out = std::process::Command::new("tcpdump")
        .args(["-nn", "-tt", "--time-stamp-precision=nano", "-r"])
        .arg(&file)
        .output()
        .context("running tcpdump")?;
    ensure!(
        out.status.success(),
        "tcpdump could not read flag {id}'s pcap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// One `/metrics` scrape.
#[derive(Clone, Debug)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    /// Scrapes the daemon.
    pub fn fetch(lab: &StandardLab) -> Result<Metrics> {
        Ok(Metrics {
            text: lab.get("/metrics")?,
        })
    }

    /// The exposition as received.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every series of `name`: its labels and value.
    pub fn series(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (n, labels) = match series.split_once('{') {
                    Some((n, rest)) => (n, rest.strip_suffix('}')?),
                    None => (series, ""),
                };
                if n != name {
                    return None;
                }
                Some((parse_labels(labels), value.parse().ok()?))
            })
            .collect()
    }

    /// The sum of the series of `name` whose labels include all of `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series(name)
            .into_iter()
            .filter(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, v)| v)
            .fold(0.0, |a, b| a + b)
    }

    /// Whether any series of `name` exists.
    pub fn has(&self, name: &str) -> bool {
        !self.series(name).is_empty()
    }

    /// Lines of series whose name starts with one of `prefixes`, for reports.
    pub fn lines_of(&self, prefixes: &[&str]) -> Vec<&str> {
        self.text
            .lines()
            .filter(|l| !l.starts_with('#') && prefixes.iter().any(|p| l.starts_with(p)))
            .collect()
    }
}

/// `a="x",b="y"` (values without escaped quotes, as the daemon's labels are).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split("\",")
        .filter_map(|kv| {
            let (k, v) = kv.split_once("=\"")?;
            Some((k.to_string(), v.trim_end_matches('"').to_string()))
        })
        .collect()
}

/// `tenant` packets dropped in `direction` for `reason`, from `/metrics`.
pub fn dropped(lab: &StandardLab, tenant: &str, direction: &str, reason: &str) -> Result<u64> {
    Ok(Metrics::fetch(lab)?.sum(
        "warden_dropped_packets_total",
        &[
            ("tenant", tenant),
            ("direction", direction),
            ("reason", reason),
        ],
    ) as u64)
}

/// What the daemon made of the lab so far, for a failure message: every flag, the
/// detection, drop and event series that are not zero, and the daemon's last log lines.
pub fn state_report(lab: &StandardLab, daemon: &Proc) -> String {
    let mut out = String::new();
    match flags(lab, "") {
        Ok(list) => {
            out.push_str(&format!("flags ({}):\n", list.len()));
            for f in list {
                out.push_str(&format!("  {f}\n"));
            }
        }
        Err(err) => out.push_str(&format!("flags: {err:#}\n")),
    }
    match Metrics::fetch(lab) {
        Ok(m) => {
            out.push_str("metrics:\n");
            for l in m.lines_of(&[
                "warden_detections_total",
                "warden_dropped_packets_total",
                "warden_events_lost_total",
                "warden_events_over_budget_total",
                "warden_map_entries",
                "warden_tenant_packets_total",
            ]) {
                if !l.ends_with(" 0") {
                    out.push_str(&format!("  {l}\n"));
                }
            }
        }
        Err(err) => out.push_str(&format!("metrics: {err:#}\n")),
    }
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().collect();
    out.push_str("daemon log (last 40 lines):\n");
    for l in &lines[lines.len().saturating_sub(40)..] {
        out.push_str(&format!("  {l}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn figures_read_from_objects_and_pair_lists() {
        let obj = json!({"pps": 5.0, "syn_pps": 2500.5});
        let pairs = json!([["pps", 5.0], ["syn_pps", 2500.5]]);
        for v in [&obj, &pairs] {
            assert_eq!(named_number(v, "syn_pps"), Some(2500.5));
            assert_eq!(named_number(v, "bps"), None);
            assert_eq!(numbers(v).len(), 2);
        }
        assert!(numbers(&json!(null)).is_empty());
    }

    #[test]
    fn targets_name_addresses_and_ports_in_any_shape() {
        let pairs =
            json!([[{"addr": "198.19.0.1", "port": null}, 9], [{"addr": null, "port": 22}, 4]]);
        let objects =
            json!([{"addr": "198.19.0.1", "port": null, "count": 9}, {"port": 22, "count": 4}]);
        for v in [&pairs, &objects] {
            assert_eq!(target_names(v), vec!["198.19.0.1", "port 22"]);
        }
    }

    #[test]
    fn metric_series_sum_by_label_subset() {
        let m = Metrics {
            text: "# HELP x y\nwarden_dropped_packets_total{tenant=\"g\",direction=\"out\",reason=\"blocked\"} 7\n\
                   warden_dropped_packets_total{tenant=\"g\",direction=\"in\",reason=\"blocked\"} 3\n\
                   warden_events_lost_total 12\n"
                .into(),
        };
        assert_eq!(
            m.sum("warden_dropped_packets_total", &[("tenant", "g")]),
            10.0
        );
        assert_eq!(
            m.sum(
                "warden_dropped_packets_total",
                &[("direction", "in"), ("reason", "blocked")]
            ),
            3.0
        );
        assert_eq!(m.sum("warden_events_lost_total", &[]), 12.0);
        assert!(!m.has("warden_detections_total"));
    }
}
