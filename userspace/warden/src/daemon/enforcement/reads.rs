//! What the enforcement owner tells the rest: tenants with their counters, the map fill,
//! the counters the sampler and `/metrics` read (every slot up to the highest in use, in
//! a few batch reads, not four syscalls a tenant), and the programs' own statistics.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use warden_common::{reason, DropCounters};
use warden_dataplane::FactCounters;
use warden_detect::pipeline::{DropTotals, TrafficTable, Volume};
use warden_detect::DropReason;
use warden_policy::tenant::TenantSlot;
use warden_policy::{Kind, Tenant};

use super::Enforcement;
use crate::metrics;
use crate::views::{
    AttachmentView, DetectionView, DirectionView, InterfaceView, MapFill, ReviewStats, ShapingView,
    StatusView, TenantView,
};

/// A tenant's rates over the last sample interval: `[out, in]` of (bits, packets) per
/// second, by slot.
pub(in crate::daemon) type Rates = HashMap<TenantSlot, [(f64, f64); 2]>;

impl Enforcement {
    /// Every tenant with counters, rates, drops and state, then the suspended tenants
    /// absent from the policy (their recorded addresses are still enforced).
    pub(in crate::daemon) fn tenants(&self, rates: &Rates) -> Result<Vec<TenantView>> {
        let mut views = self
            .policy
            .tenants
            .iter()
            .map(|t| self.tenant_view(t, rates))
            .collect::<Result<Vec<_>>>()?;
        for id in self.holds.retained() {
            views.push(self.retained_view(id, rates)?);
        }
        Ok(views)
    }

    /// One tenant (of the policy, or suspended and absent from it), or `None` when no
    /// tenant has that id.
    pub(in crate::daemon) fn tenant(&self, id: &str, rates: &Rates) -> Result<Option<TenantView>> {
        if let Some(t) = self.policy.tenant(id) {
            return self.tenant_view(t, rates).map(Some);
        }
        if self.holds.retained().any(|r| r == id) {
            return self.retained_view(id, rates).map(Some);
        }
        Ok(None)
    }

    fn tenant_view(&self, t: &Tenant, rates: &Rates) -> Result<TenantView> {
        let plans = [t.settings.bandwidth.egress, t.settings.bandwidth.ingress];
        self.view(&t.id, &t.addresses, plans, rates)
    }

    /// The view of a suspended tenant absent from the policy (its recorded addresses
    /// still enforced under its id).
    fn retained_view(&self, id: &str, rates: &Rates) -> Result<TenantView> {
        let addresses = self.holds.extra.get(id).cloned().unwrap_or_default();
        self.view(id, &addresses, [None, None], rates)
    }

    fn view(
        &self,
        id: &str,
        addresses: &[IpNet],
        plans: [Option<u64>; 2],
        rates: &Rates,
    ) -> Result<TenantView> {
        let slot = self.index.get(id).context("tenant without index")?;
        let c = self.dataplane.tenant_counters(slot)?;
        let d = self.dataplane.drop_counters(slot)?;
        let r = rates.get(&slot).copied().unwrap_or_default();
        let dir = |i: usize| DirectionView {
            packets: c[i].packets,
            bytes: c[i].bytes,
            bps: r[i].0,
            pps: r[i].1,
            plan_bps: plans[i],
            drops: drops_map(&d[i]),
        };
        let why_suspended = self.holds.why(id);
        Ok(TenantView {
            id: id.to_string(),
            index: slot.0,
            addresses: addresses.to_vec(),
            state: if why_suspended.is_some() {
                "suspended"
            } else {
                "active"
            }
            .to_string(),
            suspension: self.suspensions.get(id).cloned(),
            why_suspended,
            out: dir(0),
            in_: dir(1),
        })
    }

    /// The fill of every bounded map.
    pub(in crate::daemon) fn map_fill(&self) -> Vec<MapFill> {
        self.dataplane
            .map_usage(&self.fill, self.index.len())
            .into_iter()
            .map(|m| MapFill {
                map: m.map.to_string(),
                entries: m.entries,
                capacity: m.capacity,
            })
            .collect()
    }

    /// The daemon's status, with the detection and review figures the other owners keep.
    pub(in crate::daemon) fn status(
        &self,
        uptime_seconds: u64,
        policy_file: PathBuf,
        detection: DetectionView,
        review: ReviewStats,
    ) -> StatusView {
        let attachments: Vec<AttachmentView> = self
            .dataplane
            .attachments()
            .iter()
            .map(|a| AttachmentView {
                interface: a.interface.clone(),
                mode: a.mode.clone(),
                hook: a.hook.clone(),
                program: a.program.clone(),
                how: a.how.clone(),
            })
            .collect();
        StatusView {
            // `interfaces` take effect at start only (an apply that changes them is
            // refused), so the policy's are the bindings in force.
            interfaces: InterfaceView::list(&self.policy.interfaces, &attachments),
            attachments,
            review,
            detection,
            version: crate::VERSION.to_string(),
            uptime_seconds,
            policy_file,
            policy_generation: self.generation,
            policy_applied_at: self
                .applied_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            kernel_generation: self.dataplane.active_generation(),
            tenants: self.policy.tenants.len(),
            suspended: self.suspensions.len(),
            bpffs: self.dataplane.bpffs().to_path_buf(),
            maps: self.map_fill(),
            policy_revision: None,
            policy_source: None,
            shaping: match self.dataplane.shaping() {
                Some(s) => ShapingView {
                    mode: s.mode,
                    fq: s.fq,
                    interfaces: s.interfaces,
                    classes: s.classes,
                    pending: s.pending,
                },
                None => ShapingView {
                    mode: "police".into(),
                    ..ShapingView::default()
                },
            },
        }
    }

    /// Each tenant's counters and the drops that are detections, read once, as the
    /// detection pipeline and the sampler take them.
    pub(in crate::daemon) fn traffic(&self) -> Result<TrafficTable> {
        let slots: Vec<TenantSlot> = self
            .policy
            .tenants
            .iter()
            .filter_map(|t| self.index.get(&t.id))
            .collect();
        let count = slots.iter().max().map_or(0, |m| m.0 + 1);
        let counters = self.dataplane.all_tenant_counters(count)?;
        let detected = self.dataplane.all_drop_totals_as(count, detected_drops)?;
        let volumes = counters
            .iter()
            .map(|c| {
                c.map(|c| Volume {
                    packets: c.packets,
                    bytes: c.bytes,
                })
            })
            .collect();
        Ok(TrafficTable::new(slots, volumes, detected))
    }

    /// Each tenant's cumulative `[out bytes, in bytes, out packets, in packets, drops]`
    /// (drops of every reason, both directions), for the traffic history.
    pub(in crate::daemon) fn history_reading(&self) -> Result<crate::daemon::history::Reading> {
        let tenants: Vec<(&Arc<str>, TenantSlot)> = self
            .policy
            .tenants
            .iter()
            .zip(&self.ids)
            .filter_map(|(t, id)| self.index.get(&t.id).map(|s| (id, s)))
            .collect();
        let count = tenants.iter().map(|(_, s)| s.0 + 1).max().unwrap_or(0);
        let counters = self.dataplane.all_tenant_counters(count)?;
        let drops = self
            .dataplane
            .all_drop_totals_as(count, |d| d.iter().sum::<u64>())?;
        Ok(tenants
            .into_iter()
            .filter_map(|(id, s)| {
                let c = counters.get(s.index())?;
                let d = *drops.get(s.index())?;
                Some((
                    Arc::clone(id),
                    [c[0].bytes, c[1].bytes, c[0].packets, c[1].packets, d],
                ))
            })
            .collect())
    }

    /// Every tenant's series for `/metrics`, with its detections from `detections_of`.
    pub(in crate::daemon) fn tenant_series(
        &self,
        detections_of: impl Fn(&str) -> [u64; Kind::ALL.len()],
    ) -> Result<Vec<metrics::TenantSeries>> {
        let slots = self
            .policy
            .tenants
            .iter()
            .map(|t| self.index.get(&t.id).context("tenant without index"))
            .collect::<Result<Vec<TenantSlot>>>()?;
        // Every slot up to the highest in use, in a few batch reads (not four syscalls
        // a tenant: /metrics must stay fast with 10,000 tenants).
        let count = slots.iter().max().map_or(0, |m| m.0 + 1);
        let counters = self.dataplane.all_tenant_counters(count)?;
        let drops = self.dataplane.all_drop_counters(count)?;
        let mut tenants = Vec::with_capacity(self.policy.tenants.len());
        for ((t, id), slot) in self.policy.tenants.iter().zip(&self.ids).zip(slots) {
            tenants.push(metrics::TenantSeries {
                id: id.clone(),
                counters: counters[slot.index()],
                drops: drops[slot.index()],
                suspended: self.holds.tenants.contains_key(&t.id),
                detections: detections_of(&t.id),
            });
        }
        Ok(tenants)
    }

    /// The counters of the tenants removed since start.
    pub(in crate::daemon) fn retired(&self) -> metrics::Totals {
        self.retired
    }

    /// The programs' fact counters; zero when they cannot be read (an object without
    /// detection maps), so `/metrics` and status keep answering.
    pub(in crate::daemon) fn fact_counters(&self) -> FactCounters {
        self.dataplane.fact_counters().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "reading the fact counters failed");
            FactCounters::default()
        })
    }

    /// Egress shaping's figures: the programs' counters (zero when they cannot be
    /// read, so `/metrics` keeps answering) and the classes made and pending.
    pub(in crate::daemon) fn shaping_figures(&self) -> metrics::ShapingFigures {
        let stats = self.dataplane.shape_stats().unwrap_or_else(|e| {
            tracing::debug!(error = %e, "reading the shaping counters failed");
            warden_dataplane::ShapeStats::default()
        });
        let (classes, pending) = self
            .dataplane
            .shaping()
            .map_or((0, 0), |s| (s.classes as u64, s.pending as u64));
        metrics::ShapingFigures {
            flows: stats.flows,
            untracked_packets: stats.untracked_packets,
            classes,
            pending,
        }
    }

    /// The programs' run statistics while the kernel counts them
    /// (`kernel.bpf_stats_enabled` = 1), else `None`.
    pub(in crate::daemon) fn program_runs(&self) -> Option<Vec<metrics::ProgramRuns>> {
        const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
        match std::fs::read_to_string(SYSCTL) {
            Ok(v) if v.trim() == "1" => {}
            Ok(_) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "reading {SYSCTL}; no program statistics");
                return None;
            }
        }
        match self.dataplane.program_runs() {
            Ok(runs) => Some(
                runs.into_iter()
                    .map(|(program, runs, run_time_ns)| metrics::ProgramRuns {
                        program: program.to_string(),
                        runs,
                        run_time_ns,
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "reading the programs' run statistics");
                None
            }
        }
    }
}

fn drops_map(d: &DropCounters) -> HashMap<String, u64> {
    reason::NAMES
        .iter()
        .zip(d.packets)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.to_string(), n))
        .collect()
}

/// The drop counter of each reason that is a detection.
fn drop_counter(r: DropReason) -> usize {
    match r {
        DropReason::SpoofIp => reason::SPOOF_IP,
        DropReason::SpoofArp => reason::SPOOF_ARP,
        DropReason::SpoofMac => reason::SPOOF_MAC,
        DropReason::Bandwidth => reason::BANDWIDTH,
    }
}

/// The totals of the drops that are detections, of all `drops` by reason.
fn detected_drops(drops: &[u64; reason::COUNT]) -> DropTotals {
    DropReason::ALL.map(|r| drops[drop_counter(r)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detected_drops_are_taken_in_the_pipelines_order() {
        let mut drops = [0u64; reason::COUNT];
        drops[reason::SPOOF_IP] = 1;
        drops[reason::SPOOF_ARP] = 2;
        drops[reason::SPOOF_MAC] = 3;
        drops[reason::BANDWIDTH] = 4;
        assert_eq!(detected_drops(&drops), [1, 2, 3, 4]);
        let names: Vec<&str> = DropReason::ALL
            .map(|r| reason::NAMES[drop_counter(r)])
            .to_vec();
        assert_eq!(names, ["spoof_ip", "spoof_arp", "spoof_mac", "bandwidth"]);
    }
}
