//! Prometheus text exposition of a counter snapshot. Pure: the daemon takes the
//! snapshot, this module only formats it.

use std::fmt::Write as _;

use warden_common::Counters;

/// Everything `/metrics` shows, read from the dataplane in one go.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Per tenant: id and `[out, in]` counters.
    pub tenants: Vec<(String, [Counters; 2])>,
    /// Traffic of no tenant: `[out, in]`.
    pub no_tenant: [Counters; 2],
    /// Frames too short or impossible to parse: `[out, in]`.
    pub malformed: [Counters; 2],
    /// Policies applied since start.
    pub policy_generation: u64,
    /// `(map, entries, capacity)`.
    pub maps: Vec<(String, u64, u64)>,
}

const DIRS: [&str; 2] = ["out", "in"];

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
    let mut out = String::with_capacity(256 + s.tenants.len() * 256);
    header(
        &mut out,
        "warden_tenant_bytes_total",
        "counter",
        "Ethernet frame bytes per tenant; direction out = sent by the tenant, in = received.",
    );
    for (id, c) in &s.tenants {
        for (d, dir) in DIRS.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_tenant_bytes_total{{tenant=\"{}\",direction=\"{dir}\"}} {}",
                escape(id),
                c[d].bytes
            );
        }
    }
    header(
        &mut out,
        "warden_tenant_packets_total",
        "counter",
        "Packets per tenant; direction out = sent by the tenant, in = received.",
    );
    for (id, c) in &s.tenants {
        for (d, dir) in DIRS.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_tenant_packets_total{{tenant=\"{}\",direction=\"{dir}\"}} {}",
                escape(id),
                c[d].packets
            );
        }
    }
    header(
        &mut out,
        "warden_unattributed_packets_total",
        "counter",
        "Packets that belong to no tenant, by reason (no_tenant, malformed).",
    );
    for (reason, c) in [("no_tenant", &s.no_tenant), ("malformed", &s.malformed)] {
        for (d, dir) in DIRS.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_unattributed_packets_total{{direction=\"{dir}\",reason=\"{reason}\"}} {}",
                c[d].packets
            );
        }
    }
    header(
        &mut out,
        "warden_unattributed_bytes_total",
        "counter",
        "Bytes that belong to no tenant, by reason (no_tenant, malformed).",
    );
    for (reason, c) in [("no_tenant", &s.no_tenant), ("malformed", &s.malformed)] {
        for (d, dir) in DIRS.iter().enumerate() {
            let _ = writeln!(
                out,
                "warden_unattributed_bytes_total{{direction=\"{dir}\",reason=\"{reason}\"}} {}",
                c[d].bytes
            );
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
        "warden_map_entries",
        "gauge",
        "Entries in each bounded kernel map.",
    );
    for (m, entries, _) in &s.maps {
        let _ = writeln!(out, "warden_map_entries{{map=\"{m}\"}} {entries}");
    }
    header(
        &mut out,
        "warden_map_capacity",
        "gauge",
        "Capacity of each bounded kernel map.",
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
    fn tenant_series_carry_tenant_and_direction() {
        let s = Snapshot {
            tenants: vec![(
                "acme".into(),
                [
                    Counters {
                        packets: 3,
                        bytes: 300,
                    },
                    Counters {
                        packets: 5,
                        bytes: 700,
                    },
                ],
            )],
            policy_generation: 2,
            ..Default::default()
        };
        let text = render(&s);
        assert!(text.contains("warden_tenant_bytes_total{tenant=\"acme\",direction=\"out\"} 300\n"));
        assert!(text.contains("warden_tenant_bytes_total{tenant=\"acme\",direction=\"in\"} 700\n"));
        assert!(text.contains("warden_tenant_packets_total{tenant=\"acme\",direction=\"out\"} 3\n"));
        assert!(text.contains("warden_tenant_packets_total{tenant=\"acme\",direction=\"in\"} 5\n"));
        assert!(text.contains("warden_policy_generation 2\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let s = Snapshot {
            tenants: vec![("a\"b\\c".into(), Default::default())],
            ..Default::default()
        };
        assert!(render(&s).contains("tenant=\"a\\\"b\\\\c\""));
    }
}
