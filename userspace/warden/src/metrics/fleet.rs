//! Fleet mode's families (docs/fleet-design.md): whether the node reaches etcd, how old
//! its fleet state is, and how often it had to read everything again.

use super::Family;

/// Why a node read the whole fleet state again instead of resuming its watch.
pub const RESYNC_REASONS: [&str; 4] = ["start", "reconnect", "compacted", "scope"];

/// A fleet node's figures, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetFigures {
    /// Whether the node's watch on etcd is up.
    pub connected: bool,
    /// Seconds since the node last knew its state to be etcd's (`None`: never since
    /// start; the state in force then is the local copy).
    pub seconds_since_sync: Option<f64>,
    /// Full reads, by [`RESYNC_REASONS`] index.
    pub resyncs: [u64; 4],
    /// The fleet policy generation in force.
    pub generation: u64,
    /// Flags raised here and not yet published.
    pub flags_queued: u64,
}

/// The fleet families; nothing without fleet mode.
pub(super) fn render(out: &mut String, fleet: Option<&FleetFigures>) {
    let Some(f) = fleet else {
        return;
    };
    Family::gauge(
        "warden_fleet_connected",
        "1 while this node's watch on the fleet's etcd is up; 0 while it enforces its last applied state alone.",
    )
    .count(&[], u64::from(f.connected))
    .write(out);
    Family::gauge(
        "warden_fleet_last_sync_seconds",
        "Seconds since this node last knew its policy and suspensions to be the fleet's (since start when it never did: -1).",
    )
    .sample(&[], f.seconds_since_sync.unwrap_or(-1.0))
    .write(out);
    let mut resyncs = Family::counter(
        "warden_fleet_resyncs_total",
        "Full reads of the fleet state, by reason: start, reconnect (the watch could not resume), compacted (etcd had compacted the revision the watch resumed from), scope (a reload changed the tenants the node's interfaces are bound to).",
    );
    for (reason, n) in RESYNC_REASONS.into_iter().zip(f.resyncs) {
        resyncs.count(&[("reason", reason)], n);
    }
    resyncs.write(out);
    Family::gauge(
        "warden_fleet_policy_generation",
        "The fleet policy generation this node enforces (0: none yet).",
    )
    .count(&[], f.generation)
    .write(out);
    Family::gauge(
        "warden_fleet_flags_queued",
        "Flags raised on this node and not yet published to the fleet (etcd unreachable).",
    )
    .count(&[], f.flags_queued)
    .write(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_alone_exports_no_fleet_family() {
        let mut out = String::new();
        render(&mut out, None);
        assert!(out.is_empty());
    }

    #[test]
    fn a_disconnected_node_reports_0_and_its_sync_age() {
        let mut out = String::new();
        let f = FleetFigures {
            connected: false,
            seconds_since_sync: Some(12.5),
            resyncs: [1, 0, 2, 0],
            generation: 7,
            flags_queued: 3,
        };
        render(&mut out, Some(&f));
        for line in [
            "warden_fleet_connected 0\n",
            // Written by the `prometheus` crate as the float it is (it was `12.500`).
            "warden_fleet_last_sync_seconds 12.5\n",
            "warden_fleet_resyncs_total{reason=\"compacted\"} 2\n",
            "warden_fleet_policy_generation 7\n",
            "warden_fleet_flags_queued 3\n",
        ] {
            assert!(out.contains(line), "missing {line:?} in\n{out}");
        }
    }
}
