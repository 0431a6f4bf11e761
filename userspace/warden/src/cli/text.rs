//! How the CLI prints the daemon's answers: tables, rates and flags as text.

use serde_json::Value;
use warden_policy::time::rfc3339;

use crate::views::{DetectionView, Flag, FlagDetail, InterfaceView, ReviewStats, TenantView};

/// Renders rows as a left-aligned table with two spaces between columns and no trailing
/// spaces (PRODUCT.md: "human output is an aligned table"), with `comfy-table`: no
/// borders, no padding but two spaces after each column, no wrapping to the terminal.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(header.to_vec())
        .add_rows(rows.iter().cloned());
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let mut out = t.trim_fmt();
    out.push('\n');
    out
}

/// Formats a bit rate with SI units, e.g. `12.3 Mbit/s`.
pub fn fmt_bps(bps: f64) -> String {
    let units = [("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)];
    for (u, f) in units {
        if bps >= f {
            return format!("{:.1} {u}", bps / f);
        }
    }
    format!("{bps:.0} bit/s")
}

/// The review-workflow lines of `warden status`.
/// `warden status`'s interfaces: each port's hooks and the tenants bound to it (`-`:
/// frames are attributed by source address and MAC only).
pub(super) fn interface_table(is: &[InterfaceView]) -> String {
    let rows: Vec<Vec<String>> = is
        .iter()
        .map(|i| {
            let vlans: Vec<String> = i
                .vlans
                .iter()
                .map(|v| format!("{}={}", v.id, v.tenant))
                .collect();
            vec![
                i.name.clone(),
                i.mode.clone(),
                i.attachment.clone(),
                i.tenant.clone().unwrap_or_else(|| "-".into()),
                if vlans.is_empty() {
                    "-".into()
                } else {
                    vlans.join(", ")
                },
            ]
        })
        .collect();
    table(
        &["INTERFACE", "MODE", "ATTACHMENT", "TENANT", "VLANS"],
        &rows,
    )
}

pub(super) fn review_text(r: &ReviewStats) -> String {
    format!(
        "notifications: {} pending, {} delivered, {} failed attempts, {} abandoned, {} dropped\n\
         deadlines: {} tenants suspended, {} passed without suspension, {} failed suspensions\n\
         events log: {} lines written, {} lost\n",
        r.pending,
        r.delivered,
        r.failures,
        r.abandoned,
        r.dropped,
        r.deadline_suspensions,
        r.deadlines_passed,
        r.deadline_suspend_failures,
        r.events_written,
        r.events_failed,
    )
}

/// The detection lines of `warden status`.
pub(super) fn detection_text(d: &DetectionView) -> String {
    let reading = if d.events_read {
        "reading kernel events"
    } else {
        "NOT reading kernel events (scan, flood, spam and proxy detection are off)"
    };
    format!(
        "detection: {reading}\n\
         events: {} sent, {} lost, {} over a tenant's budget, {} undecodable\n\
         in force: {} blocks, {} throttled tenants\n\
         open episodes {}, attempts awaiting an answer {}, flags opened {}\n",
        d.events_sent,
        d.events_lost,
        d.events_over_budget,
        d.event_decode_errors,
        d.active_blocks,
        d.active_throttles,
        d.open_episodes,
        d.pending_attempts,
        d.flags_opened,
    )
}

/// The per-tenant table shown by `warden tenants` and the demo.
pub fn tenant_table(ts: &[TenantView]) -> String {
    let plan = |p: Option<u64>| p.map(|b| fmt_bps(b as f64)).unwrap_or_else(|| "-".into());
    let drops = |t: &TenantView| {
        let out = t.out.drops.iter().map(|(r, n)| (format!("{r}/out"), *n));
        let inn = t.in_.drops.iter().map(|(r, n)| (format!("{r}/in"), *n));
        let mut all: Vec<(String, u64)> = out.chain(inn).collect();
        all.sort();
        if all.is_empty() {
            return "-".to_string();
        }
        all.iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<Vec<String>> = ts
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.state.clone(),
                fmt_bps(t.out.bps),
                plan(t.out.plan_bps),
                fmt_bps(t.in_.bps),
                plan(t.in_.plan_bps),
                t.out.packets.to_string(),
                t.in_.packets.to_string(),
                drops(t),
            ]
        })
        .collect();
    let header = [
        "TENANT", "STATE", "OUT RATE", "OUT PLAN", "IN RATE", "IN PLAN", "OUT PKTS", "IN PKTS",
        "DROPS",
    ];
    table(&header, &rows)
}

/// The table `warden flags` prints, with a NODE column after TENANT when any flag names
/// the fleet node that raised it (through a controller, or a fleet node's own API).
pub fn flag_table(fs: &[Flag]) -> String {
    let nodes = fs.iter().any(|f| f.node.is_some());
    let rows: Vec<Vec<String>> = fs
        .iter()
        .map(|f| {
            let mut row = vec![f.id.to_string(), f.tenant.clone()];
            if nodes {
                row.push(f.node.clone().unwrap_or_else(|| "-".to_string()));
            }
            row.extend([
                f.kind.to_string(),
                f.state.to_string(),
                rfc3339(f.first_seen),
                rfc3339(f.last_seen),
                top_targets(&f.top_targets)
                    .into_iter()
                    .next()
                    .map_or_else(|| "-".to_string(), |(t, _)| t),
            ]);
            row
        })
        .collect();
    let mut header = vec!["ID", "TENANT"];
    if nodes {
        header.push("NODE");
    }
    header.extend(["KIND", "STATE", "FIRST SEEN", "LAST SEEN", "TOP TARGET"]);
    table(&header, &rows)
}

/// A target as text: a string as is, `{addr, port}` as `addr:port`, anything else as JSON.
fn target_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("addr") || o.contains_key("port") => {
            let addr = o.get("addr").and_then(Value::as_str);
            let port = o.get("port").and_then(Value::as_u64);
            let text = match (addr, port) {
                (Some(a), Some(p)) if a.contains(':') => format!("[{a}]:{p}"),
                (Some(a), Some(p)) => format!("{a}:{p}"),
                (Some(a), None) => a.to_string(),
                (None, Some(p)) => format!("port {p}"),
                (None, None) => "any".to_string(),
            };
            // A spoofing claim: the address as claimed from that MAC.
            match o.get("mac").and_then(Value::as_str) {
                Some(mac) => format!("{text} from {mac}"),
                None => text,
            }
        }
        other => other.to_string(),
    }
}

/// The top targets of a flag as (target, count) pairs, whatever shape the detector wrote:
/// `[[target, count], ...]`, `[{..., "count": n}, ...]`, `[target, ...]` or `{target: count}`.
pub fn top_targets(v: &Value) -> Vec<(String, Option<String>)> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    (target_text(&pair[0]), Some(pair[1].to_string()))
                }
                Value::Object(o) => {
                    let count_key = ["count", "weight", "packets", "pps", "bytes"]
                        .into_iter()
                        .find(|k| o.contains_key(*k));
                    let count = count_key.map(|k| o[k].to_string());
                    let target = match o.get("target") {
                        Some(t) => target_text(t),
                        None => {
                            let mut rest = o.clone();
                            if let Some(k) = count_key {
                                rest.remove(k);
                            }
                            target_text(&Value::Object(rest))
                        }
                    };
                    (target, count)
                }
                other => (target_text(other), None),
            })
            .collect(),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.to_string())))
            .collect(),
        Value::Null => Vec::new(),
        other => vec![(target_text(other), None)],
    }
}

/// `key  value` lines for a JSON object of figures or thresholds.
fn figure_rows(v: &Value) -> Vec<Vec<String>> {
    match v {
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                vec![k.clone(), v]
            })
            .collect(),
        Value::Null => Vec::new(),
        other => vec![vec!["value".into(), other.to_string()]],
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// What `warden flag show` prints.
pub fn flag_text(d: &FlagDetail) -> String {
    let f = &d.flag;
    let mut out = format!(
        "flag {}: {} by tenant {}, {}\n",
        f.id, f.kind, f.tenant, f.state
    );
    let opt = |t: Option<i64>| t.map_or_else(|| "-".to_string(), rfc3339);
    let mut about = vec![
        vec!["first seen".into(), rfc3339(f.first_seen)],
        vec!["last seen".into(), rfc3339(f.last_seen)],
        vec!["policy generation".into(), f.policy_generation.to_string()],
        vec!["deadline".into(), opt(f.deadline)],
    ];
    if let Some(r) = &f.state_reason {
        about.push(vec!["reason".into(), r.clone()]);
    }
    if let Some(n) = &f.node {
        about.push(vec!["node".into(), n.clone()]);
    }
    for row in &about {
        out += &format!("{:<19}{}\n", format!("{}:", row[0]), row[1]);
    }
    // Figures and thresholds side by side where they share a key.
    let figures = figure_rows(&f.figures);
    let thresholds = figure_rows(&f.thresholds);
    let mut rows: Vec<Vec<String>> = figures
        .iter()
        .map(|r| {
            let t = thresholds
                .iter()
                .find(|t| t[0] == r[0])
                .map_or_else(|| "-".to_string(), |t| t[1].clone());
            vec![r[0].clone(), r[1].clone(), t]
        })
        .collect();
    for t in &thresholds {
        if !figures.iter().any(|r| r[0] == t[0]) {
            rows.push(vec![t[0].clone(), "-".into(), t[1].clone()]);
        }
    }
    out += "\nfigures:\n";
    if rows.is_empty() {
        out += "  none\n";
    } else {
        out += &indent(&table(&["FIGURE", "MEASURED", "THRESHOLD"], &rows));
    }
    out += "\ntop targets:\n";
    let targets = top_targets(&f.top_targets);
    if targets.is_empty() {
        out += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = targets
            .into_iter()
            .map(|(t, c)| vec![t, c.unwrap_or_else(|| "-".into())])
            .collect();
        out += &indent(&table(&["TARGET", "COUNT"], &rows));
    }
    out += "\nactions:\n";
    if d.actions.is_empty() {
        out += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = d
            .actions
            .iter()
            .map(|a| {
                vec![
                    rfc3339(a.at),
                    a.decision.as_str().to_string(),
                    a.action.as_str().to_string(),
                    a.target.clone(),
                    opt(a.until),
                    a.by.clone(),
                ]
            })
            .collect();
        out += &indent(&table(
            &["AT", "DECISION", "ACTION", "TARGET", "UNTIL", "BY"],
            &rows,
        ));
    }
    out += &format!(
        "\nsamples: {} kept, {} refused (get them with --pcap FILE)\n",
        d.samples, d.samples_refused
    );
    out
}
