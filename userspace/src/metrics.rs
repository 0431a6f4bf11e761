//! Prometheus text exposition of a counter snapshot. Pure: the daemon takes the
//! snapshot, this module only formats it.

use std::fmt::Write as _;

use warden_common::{direction, global, reason, Counters, DropCounters};

use crate::detect;
use crate::enforce::LadderStats;
use crate::policy::Kind;
use crate::watch::{FanStats, PendingStats, WatchCounters, WatchStatus};

/// One tenant's figures.
#[derive(Debug, Default, Clone)]
pub struct TenantSample {
    pub id: String,
    /// `[out, in]`.
    pub counters: [Counters; 2],
    /// `[out, in]`.
    pub drops: [DropCounters; 2],
    pub suspended: bool,
    /// Started detections per kind, in [`Kind::ALL`] order.
    pub detections: [u64; Kind::ALL.len()],
}

/// The detection pipeline's figures.
#[derive(Debug, Default, Clone)]
pub struct DetectionSample {
    /// Events the programs sent.
    pub events_sent: u64,
    /// Events the programs could not deliver (budget and ring).
    pub events_lost: u64,
    /// Ring records that did not decode.
    pub event_decode_errors: u64,
    /// Kernel pending attempts overwritten before their answer.
    pub kernel_pending_overwritten: u64,
    pub counters: WatchCounters,
    pub pending: PendingStats,
    pub fan: FanStats,
    pub engine: detect::Stats,
    pub ladder: LadderStats,
    pub status: WatchStatus,
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
    /// Detection.
    pub detection: DetectionSample,
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
    render_detection(&mut out, s);
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

/// The detection families.
fn render_detection(out: &mut String, s: &Snapshot) {
    header(
        out,
        "warden_detections_total",
        "counter",
        "Detections started (episodes opened), per tenant and kind, whatever the action.",
    );
    for t in &s.tenants {
        for (kind, n) in Kind::ALL.iter().zip(t.detections) {
            let _ = writeln!(
                out,
                "warden_detections_total{{tenant=\"{}\",kind=\"{kind}\"}} {n}",
                escape(&t.id)
            );
        }
    }
    let d = &s.detection;
    for (name, help, value) in [
        (
            "warden_events_sent_total",
            "Detection events the kernel programs sent to the daemon.",
            d.events_sent,
        ),
        (
            "warden_events_lost_total",
            "Detection events the kernel programs could not deliver: over a tenant's event budget or with the ring buffer full.",
            d.events_lost,
        ),
        (
            "warden_event_decode_errors_total",
            "Ring-buffer records the daemon could not decode (skipped).",
            d.event_decode_errors,
        ),
    ] {
        header(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let c = &d.counters;
    header(
        out,
        "warden_detection_dropped_total",
        "counter",
        "What a bounded detection structure could not keep, by reason (each is counted, never silent).",
    );
    for (why, n) in [
        ("kernel_pending_overwritten", d.kernel_pending_overwritten),
        ("pending_evicted", d.pending.evicted),
        ("unknown_tenant", c.unknown_tenant_events),
        ("fan_address", d.fan.addresses_refused),
        ("fan_distinct", d.fan.distinct_refused),
        ("fan_port", d.fan.ports_refused),
        ("detector_tenants", d.engine.refused_facts),
        ("detector_memory", d.engine.evicted),
        ("episode_targets", c.targets_refused),
        ("ladder_active_full", d.ladder.refused_full),
        ("ladder_trackers_full", d.ladder.untracked_full),
        ("samples_unattached", c.samples_unattached),
    ] {
        let _ = writeln!(
            out,
            "warden_detection_dropped_total{{reason=\"{why}\"}} {n}"
        );
    }
    header(
        out,
        "warden_action_failures_total",
        "counter",
        "Detection actions that could not be carried out, by action and reason (table_full: the kernel's block table).",
    );
    for (action, why, n) in [
        ("block", "table_full", c.blocks_full),
        ("block", "error", c.failed_block),
        ("unblock", "error", c.failed_unblock),
        ("throttle", "error", c.failed_throttle),
        ("capture", "error", c.failed_capture),
        ("sweep", "error", c.failed_sweep),
        ("suspend", "error", c.failed_suspend),
        ("flag", "error", c.failed_flag),
    ] {
        let _ = writeln!(
            out,
            "warden_action_failures_total{{action=\"{action}\",reason=\"{why}\"}} {n}"
        );
    }
    header(
        out,
        "warden_actions_active",
        "gauge",
        "Detection actions in force: kernel blocks (victims, ports, blackholes, listen ports) and throttled tenants.",
    );
    for (action, n) in [
        ("block", d.status.active_blocks),
        ("throttle", d.status.active_throttles),
    ] {
        let _ = writeln!(out, "warden_actions_active{{action=\"{action}\"}} {n}");
    }
    header(
        out,
        "warden_pending_attempts",
        "gauge",
        "Connection attempts waiting for their answer (resolved as unanswered after 500 ms).",
    );
    let _ = writeln!(out, "warden_pending_attempts {}", d.status.pending_attempts);
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
                detections: [0, 2, 0, 0, 0, 0, 0, 0, 1],
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
            "warden_detections_total{tenant=\"acme\",kind=\"scan\"} 0\n",
            "warden_detections_total{tenant=\"acme\",kind=\"flood_out\"} 2\n",
            "warden_detections_total{tenant=\"acme\",kind=\"bandwidth\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }

    #[test]
    fn detection_families_export_events_drops_failures_and_actions() {
        let mut s = Snapshot::default();
        s.detection.events_sent = 10;
        s.detection.events_lost = 7;
        s.detection.pending.evicted = 3;
        s.detection.counters.blocks_full = 2;
        s.detection.status.active_blocks = 4;
        let text = render(&s);
        for line in [
            "# TYPE warden_events_lost_total counter\n",
            "warden_events_lost_total 7\n",
            "warden_events_sent_total 10\n",
            "warden_detection_dropped_total{reason=\"pending_evicted\"} 3\n",
            "warden_action_failures_total{action=\"block\",reason=\"table_full\"} 2\n",
            "warden_actions_active{action=\"block\"} 4\n",
            "# TYPE warden_detections_total counter\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // Every family is declared once.
        let mut seen = std::collections::HashSet::new();
        for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(l.to_owned()), "declared twice: {l}");
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
