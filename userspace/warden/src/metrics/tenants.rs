//! The per-tenant families (bytes, packets, drops, suspension, detections of the top-K
//! tenants), written by hand in the text format 0.0.4.
//!
//! Kept hand-written on purpose, because the 10,000-tenant `/metrics` bench measured the
//! `prometheus` crate (0.14, families in its `proto` model, encoded one at a time by its
//! `TextEncoder`, as the other families are in [`super::family`]) too slow here: these
//! are 32 series per tenant, 32,000 at the default K (1,000) and 320,000 at the largest,
//! and the crate allocates a `Metric`, a `LabelPair` with two `String`s per label and a
//! `String` per value for each. `warden-bench metrics`, release build, median of 15 runs
//! each, 8 alternating runs of each build on 2 shared cores (load 4-6): render at
//! K = 1,000 16.6-46.6 ms with the crate against 2.4-6.6 ms all by hand (main before
//! the crate); at K = 10,000 283-414 ms against 34-68 ms; the daemon's whole
//! `GET /metrics` 41.7-61.9 ms (over the 50 ms bar in 5 of 8 runs) against 19.2-30.0 ms.
//! Written here, each series costs one `write!` into the exposition. The bounded
//! families go through the crate. The output is the crate's format: the same escaping
//! (`\`, `"`, newline in label values), HELP then TYPE; values are exact integers (the
//! crate's f64 values read the same up to 2^53, and Prometheus keeps f64).

use std::fmt::Write as _;

use warden_common::{direction, reason};
use warden_policy::Kind;

use super::TenantSeries;

/// A label value in the text format: `\`, `"` and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The tenants' ids, escaped once for every family.
pub(super) fn escaped_ids(selected: &[&TenantSeries]) -> Vec<String> {
    selected.iter().map(|t| escape(&t.id)).collect()
}

/// Bytes, packets, drops and suspension of the selected tenants (`ids` from
/// [`escaped_ids`]). A family is left out when no tenant is selected, as the crate does.
pub(super) fn render_traffic(out: &mut String, selected: &[&TenantSeries], ids: &[String]) {
    if selected.is_empty() {
        return;
    }
    for (name, packets, help) in [
        ("warden_tenant_bytes_total", false, "Ethernet frame bytes per tenant as the hook sees them; direction out = sent by the tenant, in = received. Only the top-K tenants (daemon.metrics_top_k); every tenant is in warden_tenants_bytes_total."),
        ("warden_tenant_packets_total", true, "Packets per tenant; direction out = sent by the tenant, in = received. Only the top-K tenants."),
    ] {
        header(out, name, "counter", help);
        for (t, id) in selected.iter().zip(ids) {
            for (d, dir) in direction::NAMES.iter().enumerate() {
                let c = t.counters[d];
                let v = if packets { c.packets } else { c.bytes };
                let _ = writeln!(out, "{name}{{tenant=\"{id}\",direction=\"{dir}\"}} {v}");
            }
        }
    }
    header(
        out,
        "warden_dropped_packets_total",
        "counter",
        "Packets dropped by enforcement, per tenant, direction and reason. Only the top-K tenants.",
    );
    for (t, id) in selected.iter().zip(ids) {
        for (d, dir) in direction::NAMES.iter().enumerate() {
            for (r, name) in reason::NAMES.iter().enumerate() {
                let _ = writeln!(out, "warden_dropped_packets_total{{tenant=\"{id}\",direction=\"{dir}\",reason=\"{name}\"}} {}", t.drops[d].packets[r]);
            }
        }
    }
    header(
        out,
        "warden_tenant_suspended",
        "gauge",
        "1 while the tenant is suspended. Only the top-K tenants (suspended tenants are picked first).",
    );
    for (t, id) in selected.iter().zip(ids) {
        let _ = writeln!(
            out,
            "warden_tenant_suspended{{tenant=\"{id}\"}} {}",
            u8::from(t.suspended)
        );
    }
}

/// Detections of the selected tenants per kind.
pub(super) fn render_detections(out: &mut String, selected: &[&TenantSeries], ids: &[String]) {
    if selected.is_empty() {
        return;
    }
    header(
        out,
        "warden_detections_total",
        "counter",
        "Detections started (episodes opened), per tenant and kind, whatever the action. Only the top-K tenants (tenants with a detection are picked before the others); every tenant is in warden_tenants_detections_total.",
    );
    for (t, id) in selected.iter().zip(ids) {
        for (kind, n) in Kind::ALL.iter().zip(t.detections) {
            let _ = writeln!(
                out,
                "warden_detections_total{{tenant=\"{id}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
}
