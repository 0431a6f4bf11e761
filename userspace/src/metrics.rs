//! Prometheus text exposition of a counter snapshot. Pure: the daemon takes the
//! snapshot, this module only formats it.

use std::fmt::Write as _;

use warden_common::{direction, global, reason, Counters, DropCounters};

/// One tenant's figures.
#[derive(Debug, Default, Clone)]
pub struct TenantSample {
    pub id: String,
    /// `[out, in]`.
    pub counters: [Counters; 2],
    /// `[out, in]`.
    pub drops: [DropCounters; 2],
    pub suspended: bool,
}

/// Everything `/metrics` shows, read from the dataplane in one go.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub tenants: Vec<TenantSample>,
    /// Traffic of no tenant: `[slot][direction]`, slots as in `warden_common::global`.
    pub unattributed: [[Counters; 2]; global::SLOTS as usize],
    /// Policies applied since start.
    pub policy_generation: u64,
    /// Policies refused or failed since start.
    pub policy_apply_failures: u64,
    /// `(map, entries, capacity)`.
    pub maps: Vec<(String, u64, u64)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders the snapshot in the Prometheus text format (version 0.0.4).
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(1024 + s.tenants.len() * 512);
    header(&mut out, "warden_tenant_bytes_total", "counter",
        "Ethernet frame bytes per tenant as the hook sees them; direction out = sent by the tenant, in = received.");
    for t in &s.tenants {
        for (d, dir) in direction::NAMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_tenant_bytes_total{{tenant=\"{}\",direction=\"{dir}\"}} {}",
                escape(&t.id),
                t.counters[d].bytes
            );
        }
    }
    header(
        &mut out,
        "warden_tenant_packets_total",
        "counter",
        "Packets per tenant; direction out = sent by the tenant, in = received.",
    );
    for t in &s.tenants {
        for (d, dir) in direction::NAMES.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_tenant_packets_total{{tenant=\"{}\",direction=\"{dir}\"}} {}",
                escape(&t.id),
                t.counters[d].packets
            );
        }
    }
    header(
        &mut out,
        "warden_dropped_packets_total",
        "counter",
        "Packets dropped by enforcement, per tenant, direction and reason.",
    );
    for t in &s.tenants {
        for (d, dir) in direction::NAMES.iter().enumerate() {
            for (r, name) in reason::NAMES.iter().enumerate() {
                let _ = writeln!(out, "warden_dropped_packets_total{{tenant=\"{}\",direction=\"{dir}\",reason=\"{name}\"}} {}", escape(&t.id), t.drops[d].packets[r]);
            }
        }
    }
    header(
        &mut out,
        "warden_tenant_suspended",
        "gauge",
        "1 while the tenant is suspended.",
    );
    for t in &s.tenants {
        let _ = writeln!(
            out,
            "warden_tenant_suspended{{tenant=\"{}\"}} {}",
            escape(&t.id),
            u8::from(t.suspended)
        );
    }
    for (name, field, help) in [
        ("warden_unattributed_packets_total", 0, "Packets of no tenant, by reason: no_tenant (passed), malformed (passed), spoofed (dropped: from a tenant port, sender bound to nobody)."),
        ("warden_unattributed_bytes_total", 1, "Bytes of no tenant, by reason (see warden_unattributed_packets_total)."),
    ] {
        header(&mut out, name, "counter", help);
        for (slot, reason) in global::NAMES.iter().enumerate() {
            for (d, dir) in direction::NAMES.iter().enumerate() {
                let c = s.unattributed[slot][d];
                let v = if field == 0 { c.packets } else { c.bytes };
                let _ = writeln!(out, "{name}{{direction=\"{dir}\",reason=\"{reason}\"}} {v}");
            }
        }
    }
    header(
        &mut out,
        "warden_policy_generation",
        "gauge",
        "Policies applied since the daemon started.",
    );
    let _ = writeln!(out, "warden_policy_generation {}", s.policy_generation);
    header(
        &mut out,
        "warden_policy_apply_failures_total",
        "counter",
        "Policies refused (invalid, or changing restart-only settings) or not written to the kernel.",
    );
    let _ = writeln!(
        out,
        "warden_policy_apply_failures_total {}",
        s.policy_apply_failures
    );
    header(
        &mut out,
        "warden_map_entries",
        "gauge",
        "Entries in each bounded kernel map (per policy generation).",
    );
    for (m, entries, _) in &s.maps {
        let _ = writeln!(out, "warden_map_entries{{map=\"{m}\"}} {entries}");
    }
    header(
        &mut out,
        "warden_map_capacity",
        "gauge",
        "Capacity of each bounded kernel map (per policy generation).",
    );
    for (m, _, cap) in &s.maps {
        let _ = writeln!(out, "warden_map_capacity{{map=\"{m}\"}} {cap}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_series_carry_tenant_direction_and_reason() {
        let mut drops = [DropCounters::default(); 2];
        drops[0].packets[reason::SPOOF_IP] = 7;
        let s = Snapshot {
            tenants: vec![TenantSample {
                id: "acme".into(),
                counters: [
                    Counters {
                        packets: 3,
                        bytes: 300,
                    },
                    Counters {
                        packets: 5,
                        bytes: 700,
                    },
                ],
                drops,
                suspended: true,
            }],
            policy_generation: 2,
            ..Default::default()
        };
        let text = render(&s);
        for line in [
            "warden_tenant_bytes_total{tenant=\"acme\",direction=\"out\"} 300\n",
            "warden_tenant_bytes_total{tenant=\"acme\",direction=\"in\"} 700\n",
            "warden_tenant_packets_total{tenant=\"acme\",direction=\"out\"} 3\n",
            "warden_tenant_packets_total{tenant=\"acme\",direction=\"in\"} 5\n",
            "warden_dropped_packets_total{tenant=\"acme\",direction=\"out\",reason=\"spoof_ip\"} 7\n",
            "warden_dropped_packets_total{tenant=\"acme\",direction=\"in\",reason=\"bandwidth\"} 0\n",
            "warden_tenant_suspended{tenant=\"acme\"} 1\n",
            "warden_unattributed_packets_total{direction=\"out\",reason=\"spoofed\"} 0\n",
            "warden_policy_generation 2\n",
            "warden_policy_apply_failures_total 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let s = Snapshot {
            tenants: vec![TenantSample {
                id: "a\"b\\c".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(render(&s).contains("tenant=\"a\\\"b\\\\c\""));
    }
}
