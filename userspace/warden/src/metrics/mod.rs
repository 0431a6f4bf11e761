//! Every Prometheus family Warden exports, written here and nowhere else. Pure: the
//! daemon takes a [`Snapshot`] of its counters, the API counts its requests and
//! connections ([`http::ApiFigures`]); this module only formats them, in the
//! `prometheus` crate's model and with its text encoder ([`family`]), except the
//! per-tenant families, which the 10,000-tenant bench keeps hand-written ([`tenants`]).

mod family;
pub mod fleet;
pub mod http;
mod review;
mod tenants;

#[cfg(test)]
mod tests;

use warden_common::{direction, global, reason, Counters, DropCounters};

use warden_detect as detect;
use warden_detect::ladder::LadderStats;
use warden_detect::pipeline::{PendingStats, PipelineCounters, PipelineStatus, ProxyWindowStats};
use warden_policy::{Kind, DEFAULT_TOP_K};

use family::Family;

/// One tenant's figures.
#[derive(Debug, Default, Clone)]
pub struct TenantSeries {
    /// Shared with the daemon's list of ids: a scrape of 100,000 tenants copies none.
    pub id: std::sync::Arc<str>,
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
pub struct DetectionFigures {
    /// Events the programs sent.
    pub events_sent: u64,
    /// Events lost: the ring full, or attempt-log entries written over before read.
    pub events_lost: u64,
    /// Events a tenant's event budget refused (not lost: refused by design).
    pub events_over_budget: u64,
    /// Ring records that did not decode.
    pub event_decode_errors: u64,
    /// Kernel pending attempts overwritten before their answer.
    pub kernel_pending_overwritten: u64,
    pub counters: PipelineCounters,
    pub pending: PendingStats,
    pub proxy_windows: ProxyWindowStats,
    pub engine: detect::Stats,
    pub ladder: LadderStats,
    pub status: PipelineStatus,
}

/// The per-tenant series bound (`daemon.metrics_top_k`): at most this many tenants get
/// per-tenant series; the aggregates cover every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK(pub usize);

impl Default for TopK {
    fn default() -> Self {
        TopK(DEFAULT_TOP_K)
    }
}

/// Counters summed over tenants (the `warden_tenants_*` aggregates).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// `[out, in]`.
    pub counters: [Counters; 2],
    /// `[out, in]`.
    pub drops: [DropCounters; 2],
    /// Per kind, in [`Kind::ALL`] order.
    pub detections: [u64; Kind::ALL.len()],
}

impl Totals {
    /// Adds one tenant's traffic and drops.
    pub fn add_traffic(&mut self, counters: &[Counters; 2], drops: &[DropCounters; 2]) {
        for d in 0..2 {
            self.counters[d].packets = self.counters[d].packets.wrapping_add(counters[d].packets);
            self.counters[d].bytes = self.counters[d].bytes.wrapping_add(counters[d].bytes);
            for (acc, n) in self.drops[d].packets.iter_mut().zip(drops[d].packets) {
                *acc = acc.wrapping_add(n);
            }
        }
    }

    /// Adds one tenant's detections.
    pub fn add_detections(&mut self, detections: &[u64; Kind::ALL.len()]) {
        for (acc, n) in self.detections.iter_mut().zip(detections) {
            *acc = acc.wrapping_add(*n);
        }
    }
}

/// One kernel program's run statistics (`BPF_OBJ_GET_INFO_BY_FD`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProgramRuns {
    /// The program's name (`warden_common::program`).
    pub program: String,
    /// Runs counted while `kernel.bpf_stats_enabled` was 1.
    pub runs: u64,
    /// Time spent in those runs, nanoseconds.
    pub run_time_ns: u64,
}

/// Egress shaping's figures (docs/policy.md, "Shaped and policed plans").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShapingFigures {
    /// New shaped flows given a leaf class (the tenant's next) since the programs were
    /// loaded.
    pub flows: u64,
    /// Shaped packets whose flow could not be remembered (the flow table's insert
    /// failed), each put in the leaf of its flow hash.
    pub untracked_packets: u64,
    /// Tenant classes on each host-mode interface's HTB qdisc.
    pub classes: u64,
    /// Egress plans still policed: their class is made when the tenant needs it.
    pub pending: u64,
}

/// Everything `/metrics` shows, read from the dataplane in one go.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Every tenant of the policy (the renderer picks the top K).
    pub tenants: Vec<TenantSeries>,
    /// How many tenants get per-tenant series.
    pub top_k: TopK,
    /// Tenants removed from the policy since the daemon started, so the aggregates
    /// do not fall when a tenant leaves.
    pub retired: Totals,
    /// Per-program run statistics; `None` while `kernel.bpf_stats_enabled` is 0 (the
    /// kernel does not count then, so no figure is exported).
    pub programs: Option<Vec<ProgramRuns>>,
    /// Traffic of no tenant: `[slot][direction]`, slots as in `warden_common::global`.
    pub unattributed: [[Counters; 2]; global::SLOTS as usize],
    /// Policies applied since start.
    pub policy_generation: u64,
    /// Policies refused or failed since start.
    pub policy_apply_failures: u64,
    /// `(map, entries, capacity)`.
    pub maps: Vec<(String, u64, u64)>,
    /// Detection.
    pub detection: DetectionFigures,
    /// Review workflow (engineer R): webhook notifications, deadlines, events log.
    pub review: crate::views::ReviewStats,
    /// Fleet mode's figures; `None` for a node alone.
    pub fleet: Option<fleet::FleetFigures>,
    /// Egress shaping; `None` without a dataplane (the fleet controller).
    pub shaping: Option<ShapingFigures>,
}

/// Which tenants get per-tenant series: indexes into `tenants`, in their order there.
///
/// At most `k`. Suspended tenants come first, then tenants with a detection, then the
/// rest by cumulative bytes (both directions) since their counters started; ties go to
/// the smaller id, so the choice is deterministic. Cumulative bytes, not a recent rate:
/// the renderer is stateless (every scrape, from any number of Prometheus servers, sees
/// the same set), and the set changes slowly, so a tenant's series do not flap in and
/// out between scrapes (a counter that disappears and comes back loses its increases
/// to `rate()`). A tenant that turns abusive recently gets in through its detection
/// even with little history; every tenant's traffic is in the aggregates.
pub fn select_top_k(tenants: &[TenantSeries], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..tenants.len()).collect();
    if k < tenants.len() {
        let key = |i: &usize| {
            let t = &tenants[*i];
            let bytes = t.counters[0].bytes.saturating_add(t.counters[1].bytes);
            (
                std::cmp::Reverse(t.suspended),
                std::cmp::Reverse(t.detections.iter().any(|n| *n > 0)),
                std::cmp::Reverse(bytes),
                &*t.id,
            )
        };
        order.select_nth_unstable_by(k - 1, |a, b| key(a).cmp(&key(b)));
        order.truncate(k);
        order.sort_unstable();
    }
    order
}

/// Renders the snapshot in the Prometheus text format (version 0.0.4): the bounded
/// families with the `prometheus` crate's model and encoder ([`family`]), the per-tenant
/// ones by hand ([`tenants`] says why, with the bench figures).
pub fn render(s: &Snapshot) -> String {
    let selected: Vec<&TenantSeries> = select_top_k(&s.tenants, s.top_k.0)
        .into_iter()
        .map(|i| &s.tenants[i])
        .collect();
    let mut out = String::with_capacity(4096 + selected.len() * 2560);
    let ids = tenants::escaped_ids(&selected);
    tenants::render_traffic(&mut out, &selected, &ids);
    render_aggregates(&mut out, s, selected.len());
    for (name, packets, help) in [
        ("warden_unattributed_packets_total", true, "Packets of no tenant, by reason: no_tenant (passed), malformed (passed), spoofed (dropped: from a tenant port, sender bound to nobody)."),
        ("warden_unattributed_bytes_total", false, "Bytes of no tenant, by reason (see warden_unattributed_packets_total)."),
    ] {
        let mut f = Family::counter(name, help);
        for (slot, reason) in global::NAMES.into_iter().enumerate() {
            for (d, dir) in direction::NAMES.into_iter().enumerate() {
                let c = s.unattributed[slot][d];
                let v = if packets { c.packets } else { c.bytes };
                f.count(&[("direction", dir), ("reason", reason)], v);
            }
        }
        f.write(&mut out);
    }
    Family::gauge(
        "warden_policy_generation",
        "Policies applied since the daemon started.",
    )
    .count(&[], s.policy_generation)
    .write(&mut out);
    Family::counter(
        "warden_policy_apply_failures_total",
        "Policies refused (invalid, or changing restart-only settings) or not written to the kernel.",
    )
    .count(&[], s.policy_apply_failures)
    .write(&mut out);
    tenants::render_detections(&mut out, &selected, &ids);
    render_detection(&mut out, s);
    review::render(&mut out, &s.review);
    fleet::render(&mut out, s.fleet.as_ref());
    let mut entries = Family::gauge(
        "warden_map_entries",
        "Entries in use in each kernel map that refuses new entries when full: the policy tables (per policy generation: ADDRS_V4 and ADDRS_V6 prefixes, MACS, TENANT_COUNTERS tenants), the management tries (prefixes) and BLOCKS (kernel blocks). The fixed detection tables (CONTACTS bloom filter, PENDING, SKETCH count-min sketch, REPORTED) are not listed: they never refuse an entry; PENDING overwrites are counted in warden_detection_dropped_total{reason=\"kernel_pending_overwritten\"}, and the filter and sketch trade collisions for a fixed size by design (docs/detection-design.md).",
    );
    let mut capacity = Family::gauge(
        "warden_map_capacity",
        "Capacity of each map in warden_map_entries (per policy generation for the policy tables).",
    );
    for (m, n, cap) in &s.maps {
        entries.count(&[("map", m.as_str())], *n);
        capacity.count(&[("map", m.as_str())], *cap);
    }
    entries.write(&mut out);
    capacity.write(&mut out);
    render_programs(&mut out, s);
    render_shaping(&mut out, s.shaping.as_ref());
    out
}

/// Egress shaping: the programs' flow spreading, and the classes the daemon made.
fn render_shaping(out: &mut String, shaping: Option<&ShapingFigures>) {
    let Some(s) = shaping else {
        return;
    };
    Family::counter(
        "warden_shaping_flows_total",
        "New flows of shaped tenants given a leaf class (the tenant's next, in rotation) by the tc program since it was loaded.",
    )
    .count(&[], s.flows)
    .write(out);
    Family::counter(
        "warden_shaping_untracked_packets_total",
        "Shaped packets whose flow the tc program could not remember (its flow table refused the insert), each put in the leaf of its flow hash instead of its own.",
    )
    .count(&[], s.untracked_packets)
    .write(out);
    Family::gauge(
        "warden_shaping_classes",
        "Tenant classes (egress plans shaped) on each host-mode interface's HTB qdisc.",
    )
    .count(&[], s.classes)
    .write(out);
    Family::gauge(
        "warden_shaping_pending",
        "Egress plans still policed: their class is made when the tenant needs it.",
    )
    .count(&[], s.pending)
    .write(out);
}

/// The kernel programs' run statistics, only while the kernel counts them.
fn render_programs(out: &mut String, s: &Snapshot) {
    Family::gauge(
        "warden_program_stats_enabled",
        "1 while kernel.bpf_stats_enabled is 1, so the kernel counts program runs and run time (warden_program_runs_total, warden_program_run_seconds_total). The daemon does not turn it on: it costs two clock reads per program run (per packet), and is the operator's choice (sysctl kernel.bpf_stats_enabled=1).",
    )
    .count(&[], u64::from(s.programs.is_some()))
    .write(out);
    let Some(programs) = &s.programs else {
        return;
    };
    let mut runs = Family::counter(
        "warden_program_runs_total",
        "Runs of each Warden kernel program (one per packet at its hook), counted by the kernel only while kernel.bpf_stats_enabled is 1; exported only then.",
    );
    let mut seconds = Family::counter(
        "warden_program_run_seconds_total",
        "Time spent in each Warden kernel program, counted by the kernel only while kernel.bpf_stats_enabled is 1; exported only then.",
    );
    for p in programs {
        runs.count(&[("program", p.program.as_str())], p.runs);
        seconds.sample(
            &[("program", p.program.as_str())],
            p.run_time_ns as f64 / 1e9,
        );
    }
    runs.write(out);
    seconds.write(out);
}

/// The aggregates over every tenant, whatever the top-K: tenant counts and the sums of
/// the per-tenant families.
fn render_aggregates(out: &mut String, s: &Snapshot, exported: usize) {
    let mut totals = s.retired;
    let mut suspended = 0u64;
    for t in &s.tenants {
        totals.add_traffic(&t.counters, &t.drops);
        totals.add_detections(&t.detections);
        suspended += u64::from(t.suspended);
    }
    for (name, help, value) in [
        (
            "warden_tenants",
            "Tenants in the applied policy.",
            s.tenants.len() as u64,
        ),
        (
            "warden_tenants_suspended",
            "Tenants suspended now.",
            suspended,
        ),
        (
            "warden_metrics_top_k",
            "At most this many tenants get per-tenant series (daemon.metrics_top_k).",
            s.top_k.0 as u64,
        ),
        (
            "warden_tenants_omitted",
            "Tenants left out of the per-tenant series by the top-K bound (their traffic, drops and detections are still in the warden_tenants_* sums).",
            (s.tenants.len() - exported) as u64,
        ),
    ] {
        Family::gauge(name, help).count(&[], value).write(out);
    }
    const SUM: &str = "Summed over every tenant of the policy, and over the tenants removed from it since the daemon started (so it does not fall when a tenant leaves; it restarts from the current tenants' counters when the daemon restarts).";
    for (name, what, packets) in [
        (
            "warden_tenants_bytes_total",
            "Ethernet frame bytes of all tenants by direction (out = sent by the tenant).",
            false,
        ),
        (
            "warden_tenants_packets_total",
            "Packets of all tenants by direction.",
            true,
        ),
    ] {
        let mut f = Family::counter(name, &format!("{what} {SUM}"));
        for (d, dir) in direction::NAMES.into_iter().enumerate() {
            let c = totals.counters[d];
            f.count(
                &[("direction", dir)],
                if packets { c.packets } else { c.bytes },
            );
        }
        f.write(out);
    }
    let mut f = Family::counter(
        "warden_tenants_dropped_packets_total",
        &format!("Packets of all tenants dropped by enforcement, by direction and reason. {SUM}"),
    );
    for (d, dir) in direction::NAMES.into_iter().enumerate() {
        for (r, reason) in reason::NAMES.into_iter().enumerate() {
            f.count(
                &[("direction", dir), ("reason", reason)],
                totals.drops[d].packets[r],
            );
        }
    }
    f.write(out);
    let mut f = Family::counter(
        "warden_tenants_detections_total",
        &format!("Detections started, all tenants, by kind. {SUM}"),
    );
    for (kind, n) in Kind::ALL.iter().zip(totals.detections) {
        f.count(&[("kind", kind.as_str())], n);
    }
    f.write(out);
}

/// The detection families but the per-tenant one.
fn render_detection(out: &mut String, s: &Snapshot) {
    let d = &s.detection;
    for (name, help, value) in [
        (
            "warden_events_sent_total",
            "Detection events the kernel programs sent to the daemon.",
            d.events_sent,
        ),
        (
            "warden_events_lost_total",
            "Detection events lost: the ring buffer was full, or attempt-log entries were written over before the daemon read them. Events over a tenant's event budget are not counted here (warden_events_over_budget_total).",
            d.events_lost,
        ),
        (
            "warden_events_over_budget_total",
            "Detection events the kernel programs did not send because the tenant was over its event budget (2,000/s, 500 back to back): refused by design, not lost.",
            d.events_over_budget,
        ),
        (
            "warden_event_decode_errors_total",
            "Ring-buffer records the daemon could not decode (skipped).",
            d.event_decode_errors,
        ),
    ] {
        Family::counter(name, help).count(&[], value).write(out);
    }
    let c = &d.counters;
    let mut f = Family::counter(
        "warden_detection_dropped_total",
        "What a bounded detection structure could not keep, by reason (each is counted, never silent).",
    );
    for (why, n) in [
        ("kernel_pending_overwritten", d.kernel_pending_overwritten),
        ("pending_evicted", d.pending.evicted),
        ("unknown_tenant", c.unknown_tenant_events),
        ("fan_address", d.proxy_windows.addresses_refused),
        ("fan_distinct", d.proxy_windows.distinct_refused),
        ("fan_port", d.proxy_windows.ports_refused),
        ("detector_tenants", d.engine.refused_facts),
        ("detector_memory", d.engine.evicted),
        ("episode_targets", c.targets_refused),
        ("ladder_active_full", d.ladder.refused_full),
        ("ladder_trackers_full", d.ladder.untracked_full),
        ("samples_unattached", c.samples_unattached),
    ] {
        f.count(&[("reason", why)], n);
    }
    f.write(out);
    let mut f = Family::counter(
        "warden_action_failures_total",
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
        f.count(&[("action", action), ("reason", why)], n);
    }
    f.write(out);
    let mut f = Family::gauge(
        "warden_actions_active",
        "Detection actions in force: kernel blocks (victims, ports, blackholes, listen ports) and throttled tenants.",
    );
    for (action, n) in [
        ("block", d.status.active_blocks),
        ("throttle", d.status.active_throttles),
    ] {
        f.count(&[("action", action)], n as u64);
    }
    f.write(out);
    Family::gauge(
        "warden_pending_attempts",
        "Connection attempts waiting for their answer (resolved as unanswered after 500 ms).",
    )
    .count(&[], d.status.pending_attempts as u64)
    .write(out);
}
