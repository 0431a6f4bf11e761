//! The detection pipeline: kernel events and counters become facts, the detectors turn
//! facts into detections, the enforcement ladder turns detections into decisions, and
//! the decisions become kernel actions, flags with evidence, and metrics.
//!
//! ```text
//! observations ─events()──▶ pending (attempt ⇄ outcome) ─┐
//!                           proxy windows ───────────────┼─▶ detect::Engine ─▶ Ladder ─▶ Effects
//! sampler ─────tick()─────▶ drop deltas, window ends ────┘     (episodes)      (decisions)  kernel, store
//! ```
//!
//! Facts:
//! - ATTEMPT waits in `pending` for its OUTCOME; unanswered after
//!   [`PENDING_TIMEOUT`] (500 ms) it is [`NoAnswer`](crate::Outcome::NoAnswer). An attempt
//!   Warden's own enforcement dropped comes with its outcome,
//!   [`Dropped`](crate::Outcome::Dropped), and waits for nothing. Each becomes an
//!   [`Attempt`] fact at the attempt's start; a TCP attempt to port 25, 465 or 587 is also
//!   an [`Smtp`] fact with the same outcome.
//! - ACCEPTED and ATTEMPT events feed the proxy windows ([`proxy_windows`]): every
//!   second each tenant address is judged on its running counts, and is a
//!   [`Fan`](crate::Fan) fact the first time in a `proxy.window` they cross the
//!   thresholds and again when the window ends.
//! - FLOOD becomes a [`Rate`] fact whose one known field (by class) is the event's rate:
//!   `syn_pps` (SYN), `pps` (packets, inbound packets), `reply_pps` (reflection),
//!   `bps` (inbound bytes × 8).
//! - Every second ([`Pipeline::tick`]), the per-second increase of the tenant's
//!   `spoof_ip`, `spoof_arp`, `spoof_mac` and `bandwidth` drops (both directions) is a
//!   [`Drops`] fact. While the tenant is throttled its bandwidth drops are the throttle's
//!   own doing and are not reported.
//!
//! Acting: a started episode goes to [`Ladder::on_detection`] with its target (see
//! [`target`]); a further target the same episode reaches (a second flood victim) goes to
//! [`Ladder::on_new_target`]; every second each target seen again is refreshed
//! ([`Ladder::refresh`]), so a throttle or block lasts while the behaviour goes on and
//! expires `expire_after` (a block: `block_for`) after it stops. The decisions become
//! [`Effects`]: a throttle reduces the whole tenant to `throttle_to` (several throttles of a
//! tenant: the lowest rate until the latest expiry); a block cuts only its target; a
//! suspension goes through the daemon's audited suspension path.
//!
//! Flags: a decision at `flag` or above opens one flag per episode with its figures,
//! thresholds and top targets (a flood's figures add the peak of the tenant's packets and
//! bits per second in the flood's direction, `tenant_out_pps` ..., as the programs report
//! a flood only when it crosses its threshold), asks the kernel for [`CAPTURE_FRAMES`] frames of the tenant
//! as samples, and records every Apply, Extend (at most one per tenth of the action's
//! lifetime, between 1 s and 60 s apart) and Lift. The flag's evidence is rewritten at most
//! every [`EVIDENCE_EVERY`] while the episode lasts, and a last time when it ends.
//! `observe` detections are counted in metrics only.
//!
//! Nothing here touches the kernel or the database directly: everything goes through
//! [`Effects`], so the whole pipeline runs under test without either.

mod act;
mod effects;
mod observation;
mod pending;
mod proxy_windows;
pub mod target;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warden_common::SMTP_PORTS;
use warden_policy::flag::{Sample, MAX_SAMPLES_PER_FLAG};
use warden_policy::traffic::{BlockTarget, FloodClass, Outcome, Proto};
use warden_policy::{Detectors, Kind, Policy};

use crate::ladder::{DetectionKey, Ladder, Target};
use crate::{
    Attempt, Detection, DropReason, Drops, Engine, Fact, Limits, Rate, Smtp, SmtpConnection,
    Status, TenantConfig,
};
use warden_policy::tenant::TenantSlot;

pub use effects::{DropTotals, EffectError, Effects, Now, Traffic, TrafficTable, Volume};
pub use observation::{Flood, Frame, Observation};
pub use pending::{
    PendingKey, PendingStats, CAPACITY as PENDING_CAPACITY, TIMEOUT as PENDING_TIMEOUT,
};
pub use proxy_windows::{ProxyWindowStats, MAX_ADDRESSES as PROXY_WINDOW_ADDRESSES};

use pending::{Pending, ANSWER_LATENESS};
use proxy_windows::{ProxyJudge, ProxyWindows};

/// Frames the kernel captures of a tenant when a flag opens: as many as a flag keeps.
pub const CAPTURE_FRAMES: i32 = MAX_SAMPLES_PER_FLAG as i32;
/// Targets one episode acts on (victims of one flood, ports of one scan); further ones
/// are counted and left alone.
pub const MAX_TARGETS_PER_EPISODE: usize = 256;
/// How often an open flag's evidence is rewritten while its episode goes on.
pub const EVIDENCE_EVERY: Duration = Duration::from_secs(10);
/// How often expired kernel blocks are deleted.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// The actor of the ladder's actions and suspensions.
pub const ACTOR: &str = "warden";

/// Counters of what the pipeline could not keep or do, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipelineCounters {
    /// Events about a tenant index the policy does not have (ignored).
    pub unknown_tenant_events: u64,
    /// Captured frames that arrived with no flag of their tenant to attach to.
    pub samples_unattached: u64,
    /// Targets beyond [`MAX_TARGETS_PER_EPISODE`], not acted on.
    pub targets_refused: u64,
    /// Blocks the kernel refused because its block table was full.
    pub blocks_full: u64,
    /// Failed kernel writes, per action.
    pub failed_block: u64,
    pub failed_unblock: u64,
    pub failed_throttle: u64,
    pub failed_capture: u64,
    pub failed_sweep: u64,
    /// Suspensions the ladder decided that could not be carried out.
    pub failed_suspend: u64,
    /// Failed flag writes (create, evidence, actions, samples).
    pub failed_flag: u64,
    /// Started detections.
    pub detections: u64,
    /// Flags opened.
    pub flags_opened: u64,
}

/// The pipeline's state at a glance, for `warden status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStatus {
    /// Episodes open.
    pub open_episodes: usize,
    /// Attempts waiting for their answer.
    pub pending_attempts: usize,
    /// Kernel blocks the ladder holds in force.
    pub active_blocks: usize,
    /// Tenants throttled by the ladder.
    pub active_throttles: usize,
}

/// What the pipeline knows of a tenant from the policy.
#[derive(Debug)]
struct TenantDetectors {
    id: String,
    detectors: Arc<Detectors>,
}

/// When a target of an episode was last seen, and up to when it was refreshed.
#[derive(Clone, Copy, Debug)]
struct Seen {
    last: Duration,
    refreshed: Duration,
}

/// A tenant's traffic rates over the last sample interval.
#[derive(Clone, Copy, Debug)]
struct Rates {
    at: Duration,
    packets: [u64; 2],
    bytes: [u64; 2],
    /// `[out, in]` packets per second; `None` until two samples were taken.
    pps: Option<[f64; 2]>,
    /// `[out, in]` bits per second.
    bps: [f64; 2],
}

/// An open episode of one (tenant, kind).
#[derive(Debug)]
struct Episode {
    tenant: String,
    flag: Option<i64>,
    /// Floods: the peak of the tenant's packets and bits per second in the flood's
    /// direction while the episode is open (the programs report a flood when it crosses
    /// its threshold, so the detection's own figure is the threshold's rate).
    peak: Option<(f64, f64)>,
    targets: BTreeMap<Target, Seen>,
    /// When the flag's evidence was last written (monotonic).
    evidence_at: Duration,
    /// The episode's `last_seen` as last written.
    evidence_seen: Duration,
}

/// A temporary action the ladder holds in force.
#[derive(Clone, Copy, Debug)]
struct InForce {
    flag: Option<i64>,
    /// The expiry last recorded on the flag.
    recorded_until: Duration,
}

/// The pipeline's state. See the module documentation.
#[derive(Debug)]
pub struct Pipeline {
    engine: Engine,
    ladder: Ladder,
    pending: Pending,
    proxy_windows: ProxyWindows,
    tenants: HashMap<TenantSlot, TenantDetectors>,
    ids: HashMap<String, TenantSlot>,
    generation: u64,
    episodes: HashMap<(TenantSlot, Kind), Episode>,
    in_force: HashMap<DetectionKey, InForce>,
    /// Per tenant, its throttles: rate and expiry.
    throttles: HashMap<TenantSlot, BTreeMap<DetectionKey, (u64, Duration)>>,
    /// Per kernel block, the detections holding it and their expiries.
    blocks: HashMap<(TenantSlot, BlockTarget), BTreeMap<DetectionKey, Duration>>,
    /// Per tenant, the blocks that contain its first contacts (`scan`, `flood_out`):
    /// rate and expiry.
    contained: HashMap<TenantSlot, BTreeMap<DetectionKey, (f64, Duration)>>,
    /// The flag the tenant's latest capture was asked for.
    capture_for: HashMap<TenantSlot, i64>,
    /// Started detections per tenant id, by kind in [`Kind::ALL`] order (only tenants
    /// with one: `/metrics` looks every tenant up here on every scrape).
    detections: HashMap<String, [u64; Kind::ALL.len()]>,
    /// Each tenant's latest rates, and the `[sent, received]` bytes they were taken at
    /// (the tenant's latest).
    rates: HashMap<TenantSlot, Rates>,
    /// Each tenant's latest drop totals, as [`DropReason::ALL`], and packets both ways.
    drops: HashMap<TenantSlot, ([u64; 4], u64)>,
    last_sweep: Option<Duration>,
    counters: PipelineCounters,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline::new(Limits::default(), Pending::default())
    }
}

impl Pipeline {
    fn new(limits: Limits, pending: Pending) -> Pipeline {
        Pipeline {
            engine: Engine::new(TenantConfig::default(), limits),
            ladder: Ladder::new(),
            pending,
            proxy_windows: ProxyWindows::default(),
            tenants: HashMap::new(),
            ids: HashMap::new(),
            generation: 0,
            episodes: HashMap::new(),
            in_force: HashMap::new(),
            throttles: HashMap::new(),
            blocks: HashMap::new(),
            contained: HashMap::new(),
            capture_for: HashMap::new(),
            detections: HashMap::new(),
            rates: HashMap::new(),
            drops: HashMap::new(),
            last_sweep: None,
            counters: PipelineCounters::default(),
        }
    }

    /// Takes the applied policy (generation `generation`, each tenant at the slot
    /// `slot_of` gives its id): configures every tenant's detectors and forgets tenants
    /// that left (their episodes, waiting attempts, windows, escalation and actions; the
    /// kernel resets a slot when it is reused).
    pub fn configure(
        &mut self,
        policy: &Policy,
        slot_of: impl Fn(&str) -> Option<TenantSlot>,
        generation: u64,
    ) {
        self.generation = generation;
        // The tenants kept at their slots keep their entries (a 100,000-tenant policy
        // changed in one tenant allocates nothing for the others).
        let mut before = std::mem::take(&mut self.tenants);
        let mut tenants = HashMap::with_capacity(policy.tenants.len());
        let mut new_ids = Vec::new();
        for t in &policy.tenants {
            let Some(i) = slot_of(&t.id) else {
                continue;
            };
            self.engine
                .configure(i, TenantConfig::from_settings(&t.settings));
            let entry = match before.remove(&i) {
                Some(mut kept) if kept.id == t.id => {
                    if !Arc::ptr_eq(&kept.detectors, &t.settings.detectors) {
                        kept.detectors = t.settings.detectors.clone();
                    }
                    kept
                }
                other => {
                    if let Some(old) = other {
                        // Another tenant had this slot: it left.
                        before.insert(i, old);
                    }
                    new_ids.push((t.id.clone(), i));
                    TenantDetectors {
                        id: t.id.clone(),
                        detectors: t.settings.detectors.clone(),
                    }
                }
            };
            if let Some(previous) = tenants.insert(i, entry) {
                // Two policy tenants at one slot cannot happen (the index is one to
                // one); should it, the earlier one is forgotten as having left.
                before.insert(i, previous);
            }
        }
        // What is left of `before` left the policy (or its slot went to another tenant).
        for (i, old) in before {
            if self.ids.get(&old.id) == Some(&i) {
                self.ids.remove(&old.id);
            }
            self.forget(i, &old.id);
        }
        for (id, i) in new_ids {
            self.ids.insert(id, i);
        }
        self.tenants = tenants;
    }

    fn forget(&mut self, slot: TenantSlot, id: &str) {
        tracing::info!(tenant = %id, %slot, "tenant left the policy; forgetting its detection state");
        self.engine.forget(slot);
        self.pending.forget(slot);
        self.proxy_windows.forget(slot);
        self.episodes.retain(|(i, _), _| *i != slot);
        self.ladder.forget_tenant(id);
        self.in_force.retain(|k, _| k.tenant != id);
        self.throttles.remove(&slot);
        self.blocks.retain(|(i, _), _| *i != slot);
        self.capture_for.remove(&slot);
        self.rates.remove(&slot);
        self.drops.remove(&slot);
        self.detections.remove(id);
    }

    /// A person lifted `tenant`'s suspension: it starts again at its policy's actions.
    pub fn suspension_lifted(&mut self, tenant: &str) {
        self.ladder.forget_escalation(tenant);
    }

    /// Handles one batch of kernel events, then the attempts whose answer is overdue.
    pub fn events(
        &mut self,
        events: impl IntoIterator<Item = Observation>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        let mut facts: Vec<(Fact, Option<u16>)> = Vec::new();
        let mut samples: BTreeMap<TenantSlot, Vec<Sample>> = BTreeMap::new();
        for event in events {
            let slot = event.slot();
            let Some(t) = self.tenants.get(&slot) else {
                self.counters.unknown_tenant_events += 1;
                continue;
            };
            let window = t.detectors.proxy.window;
            let bytes = self.rates.get(&slot).map(|r| r.bytes);
            match event {
                Observation::Attempt(c) => {
                    let key = PendingKey {
                        slot,
                        proto: c.proto,
                        remote: c.remote,
                        port: c.remote_port,
                    };
                    if let Some(evicted) = self.pending.insert(key, c.at) {
                        push_attempt(&mut facts, evicted);
                    }
                    self.proxy_windows.attempted(&c, window, bytes);
                }
                Observation::Outcome {
                    contact: c,
                    outcome: Outcome::Dropped,
                } => {
                    // Warden dropped the attempt itself: nothing waits for an answer.
                    let key = PendingKey {
                        slot,
                        proto: c.proto,
                        remote: c.remote,
                        port: c.remote_port,
                    };
                    self.pending.note_dropped();
                    push_attempt(&mut facts, key.attempt(c.at, Outcome::Dropped));
                }
                Observation::Outcome {
                    contact: c,
                    outcome,
                } => {
                    let key = PendingKey {
                        slot,
                        proto: c.proto,
                        remote: c.remote,
                        port: c.remote_port,
                    };
                    // An answer without its attempt (lost to the budget, or past the
                    // timeout) is still an answer to a first contact: use it, at its time.
                    let attempt = self
                        .pending
                        .resolve(key, outcome, c.at)
                        .unwrap_or_else(|| key.attempt(c.at, outcome));
                    push_attempt(&mut facts, attempt);
                }
                Observation::Accepted(c) => self.proxy_windows.accepted(&c, window, bytes),
                Observation::Spoof(c) => facts.push((Fact::Claim(c), None)),
                Observation::SmtpConnection(c) => {
                    let conn = SmtpConnection {
                        slot,
                        server: c.remote,
                        at: c.at,
                    };
                    facts.push((Fact::SmtpConnection(conn), Some(c.remote_port)));
                }
                Observation::Flood(f) => facts.push((Fact::Rate(rate(&f)), None)),
                Observation::Frame(s) => samples.entry(slot).or_default().push(Sample {
                    at_ns: now.unix_nanos(s.at),
                    data: s.data,
                    orig_len: s.orig_len,
                }),
            }
        }
        for attempt in self
            .pending
            .expire(now.mono.saturating_sub(ANSWER_LATENESS))
        {
            push_attempt(&mut facts, attempt);
        }
        for (fact, port) in facts {
            self.feed(fact, port, now, fx);
        }
        for (slot, samples) in samples {
            match self.capture_for.get(&slot) {
                Some(&flag) => {
                    if let Err(e) = fx.add_samples(flag, &samples) {
                        self.failed("flag", slot, &e);
                    }
                }
                None => self.counters.samples_unattached += samples.len() as u64,
            }
        }
    }

    /// The once-a-second work: drop deltas and byte counters from `traffic`, overdue
    /// attempts, the proxy windows' judgement, ended episodes, refreshes of ongoing
    /// ones, expired actions, and every [`SWEEP_EVERY`] a sweep of expired kernel blocks.
    pub fn tick(&mut self, now: &Now, traffic: &TrafficTable, fx: &mut impl Effects) {
        let mut facts: Vec<(Fact, Option<u16>)> = Vec::new();
        for &slot in traffic.slots() {
            if !self.tenants.contains_key(&slot) {
                continue;
            }
            let Some(t) = traffic.get(slot) else {
                continue;
            };
            let bytes = [t.counters[0].bytes, t.counters[1].bytes];
            self.proxy_windows.note_bytes(slot, bytes);
            self.note_rates(slot, &t, now.mono);
            let totals = t.drops;
            let packets = t.counters[0].packets.saturating_add(t.counters[1].packets);
            let Some((previous, previous_packets)) = self.drops.insert(slot, (totals, packets))
            else {
                // The first sample after start: earlier drops are history, not news.
                continue;
            };
            let throttled = self.throttles.contains_key(&slot);
            for (i, reason) in DropReason::ALL.iter().enumerate() {
                let count = totals[i].saturating_sub(previous[i]);
                let offered = packets.saturating_sub(previous_packets);
                // Bandwidth is judged on its share of all the window's packets (see
                // `detect::drops`), so it is reported every second with traffic.
                let report = match reason {
                    DropReason::Bandwidth => !throttled && offered > 0,
                    _ => count > 0,
                };
                if !report {
                    continue;
                }
                let drops = Drops {
                    slot,
                    reason: *reason,
                    count,
                    offered,
                    at: now.mono,
                };
                facts.push((Fact::Drops(drops), None));
            }
        }
        for attempt in self
            .pending
            .expire(now.mono.saturating_sub(ANSWER_LATENESS))
        {
            push_attempt(&mut facts, attempt);
        }
        let judge = Judge {
            tenants: &self.tenants,
            rates: &self.rates,
        };
        for report in self.proxy_windows.tick(now.mono, &judge) {
            facts.push((Fact::Fan(report.fan), report.port));
        }
        for (fact, port) in facts {
            self.feed(fact, port, now, fx);
        }
        for d in self.engine.tick(now.mono) {
            self.detected(d, None, now, fx);
        }
        self.refresh(now, fx);
        let lifts = self.ladder.tick(now.mono);
        self.act_on(lifts, None, None, now, fx);
        if self
            .last_sweep
            .is_none_or(|t| now.mono.saturating_sub(t) >= SWEEP_EVERY)
        {
            self.last_sweep = Some(now.mono);
            match fx.sweep_blocks(now.mono) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(blocks = n, "swept expired kernel blocks"),
                Err(e) => {
                    self.counters.failed_sweep += 1;
                    tracing::warn!(error = %e, "sweeping expired kernel blocks failed");
                }
            }
        }
    }

    /// Started detections per kind of `tenant`, in [`Kind::ALL`] order.
    pub fn detections_of(&self, tenant: &str) -> [u64; Kind::ALL.len()] {
        self.detections.get(tenant).copied().unwrap_or_default()
    }

    /// Counters for metrics.
    pub fn counters(&self) -> PipelineCounters {
        self.counters
    }

    /// The waiting attempts' counters.
    pub fn pending_stats(&self) -> PendingStats {
        self.pending.stats()
    }

    /// The proxy windows' counters.
    pub fn proxy_window_stats(&self) -> ProxyWindowStats {
        self.proxy_windows.stats()
    }

    /// The detectors' counters.
    pub fn engine_stats(&self) -> crate::Stats {
        self.engine.stats()
    }

    /// The ladder's sizes and counters.
    pub fn ladder_stats(&self) -> crate::ladder::LadderStats {
        self.ladder.stats()
    }

    /// The state at a glance.
    pub fn status(&self) -> PipelineStatus {
        PipelineStatus {
            open_episodes: self.episodes.len(),
            pending_attempts: self.pending.len(),
            active_blocks: self.blocks.len(),
            active_throttles: self.throttles.len(),
        }
    }

    /// Feeds one fact to the detectors and acts on what it started, ended or continued.
    /// `port` is the listen port of a proxy window or the port of an SMTP connection.
    fn feed(&mut self, fact: Fact, port: Option<u16>, now: &Now, fx: &mut impl Effects) {
        let (detections, crossed) = self.engine.observe_crossed(fact);
        for d in detections {
            self.detected(d, Some((&fact, port)), now, fx);
        }
        if let Some(kind) = crossed {
            self.continued(fact.slot(), kind, &fact, port, now, fx);
        }
    }

    /// An episode started (acted on) or ended (its final evidence written).
    fn detected(
        &mut self,
        d: Detection,
        cause: Option<(&Fact, Option<u16>)>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        match d.status {
            Status::Ended => {
                let Some(episode) = self.episodes.remove(&(d.slot, d.kind)) else {
                    return;
                };
                tracing::info!(tenant = %episode.tenant, kind = %d.kind, flag = ?episode.flag, "detection ended");
                if let Some(flag) = episode.flag {
                    self.write_evidence(flag, d.slot, &d, episode.peak, now, fx);
                }
            }
            Status::Started => {
                let Some(t) = self.tenants.get(&d.slot) else {
                    return;
                };
                let Some((fact, port)) = cause else {
                    return;
                };
                let id = t.id.clone();
                let response = t.detectors.response(d.kind);
                // `Kind`'s variants are declared in `Kind::ALL` order (a test checks).
                self.detections.entry(id.clone()).or_default()[d.kind as usize] += 1;
                self.counters.detections += 1;
                let target = target::of(&d, fact, port);
                tracing::info!(
                    tenant = %id, kind = %d.kind, target = %target,
                    figures = %target::figures(&d.figures), "detection started"
                );
                let seen = Seen {
                    last: d.last_seen,
                    refreshed: d.last_seen,
                };
                self.episodes.insert(
                    (d.slot, d.kind),
                    Episode {
                        tenant: id.clone(),
                        flag: None,
                        peak: self.flood_rate(d.slot, d.kind),
                        targets: BTreeMap::from([(target.clone(), seen)]),
                        evidence_at: now.mono,
                        evidence_seen: d.last_seen,
                    },
                );
                let key = DetectionKey {
                    tenant: id,
                    kind: d.kind,
                    target,
                };
                let decisions = self.ladder.on_detection(&key, &response, now.mono);
                self.act_on(decisions, Some(&d), Some(&response), now, fx);
            }
        }
    }

    /// A fact crossed `kind`'s thresholds: notes when its target was seen, and acts on a
    /// target the open episode had not reached before.
    fn continued(
        &mut self,
        slot: TenantSlot,
        kind: Kind,
        fact: &Fact,
        port: Option<u16>,
        now: &Now,
        fx: &mut impl Effects,
    ) {
        let (Some(episode), Some(d)) = (
            self.episodes.get_mut(&(slot, kind)),
            self.engine.open(slot, kind),
        ) else {
            return;
        };
        let target = target::of(d, fact, port);
        let at = fact.at();
        if let Some(seen) = episode.targets.get_mut(&target) {
            seen.last = seen.last.max(at);
            return;
        }
        if episode.targets.len() >= MAX_TARGETS_PER_EPISODE {
            self.counters.targets_refused += 1;
            return;
        }
        episode.targets.insert(
            target.clone(),
            Seen {
                last: at,
                refreshed: at,
            },
        );
        let Some(t) = self.tenants.get(&slot) else {
            return;
        };
        let response = t.detectors.response(kind);
        let key = DetectionKey {
            tenant: t.id.clone(),
            kind,
            target,
        };
        tracing::info!(tenant = %key.tenant, %kind, target = %key.target, "detection reached a further target");
        let decisions = self.ladder.on_new_target(&key, &response, now.mono);
        self.act_on(decisions, None, Some(&response), now, fx);
    }

    /// Keeps the actions of ongoing episodes alive and their flags' evidence current.
    fn refresh(&mut self, now: &Now, fx: &mut impl Effects) {
        let mut open: Vec<(TenantSlot, Kind)> = self.episodes.keys().copied().collect();
        open.sort_unstable();
        for (slot, kind) in open {
            let Some(t) = self.tenants.get(&slot) else {
                continue;
            };
            let response = t.detectors.response(kind);
            let rate = self.flood_rate(slot, kind);
            let Some(episode) = self.episodes.get_mut(&(slot, kind)) else {
                continue;
            };
            if let Some((pps, bps)) = rate {
                let (peak_pps, peak_bps) = episode.peak.get_or_insert((0.0, 0.0));
                *peak_pps = peak_pps.max(pps);
                *peak_bps = peak_bps.max(bps);
            }
            let mut decisions = Vec::new();
            for (target, seen) in &mut episode.targets {
                if seen.last <= seen.refreshed {
                    continue;
                }
                seen.refreshed = seen.last;
                let key = DetectionKey {
                    tenant: episode.tenant.clone(),
                    kind,
                    target: target.clone(),
                };
                decisions.extend(self.ladder.refresh(&key, &response, seen.last));
            }
            let evidence = match (episode.flag, self.engine.open(slot, kind)) {
                (Some(flag), Some(d))
                    if d.last_seen > episode.evidence_seen
                        && now.mono.saturating_sub(episode.evidence_at) >= EVIDENCE_EVERY =>
                {
                    episode.evidence_at = now.mono;
                    episode.evidence_seen = d.last_seen;
                    Some((flag, d.clone(), episode.peak))
                }
                _ => None,
            };
            self.act_on(decisions, None, Some(&response), now, fx);
            if let Some((flag, d, peak)) = evidence {
                self.write_evidence(flag, slot, &d, peak, now, fx);
            }
        }
    }

    /// Updates a tenant's rates from a new sample of its counters.
    fn note_rates(&mut self, slot: TenantSlot, t: &Traffic, at: Duration) {
        let packets = [t.counters[0].packets, t.counters[1].packets];
        let bytes = [t.counters[0].bytes, t.counters[1].bytes];
        let (pps, bps) = match self.rates.get(&slot) {
            Some(prev) if at > prev.at => {
                let secs = (at - prev.at).as_secs_f64();
                let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
                (
                    Some([0, 1].map(|d| per_second(packets[d], prev.packets[d]))),
                    [0, 1].map(|d| per_second(bytes[d], prev.bytes[d]) * 8.0),
                )
            }
            _ => (None, [0.0; 2]),
        };
        self.rates.insert(
            slot,
            Rates {
                at,
                packets,
                bytes,
                pps,
                bps,
            },
        );
    }

    /// A flood episode's evidence of magnitude: the tenant's packets and bits per second
    /// in the flood's direction over the last sample interval.
    fn flood_rate(&self, slot: TenantSlot, kind: Kind) -> Option<(f64, f64)> {
        let dir = match kind {
            Kind::FloodOut => 0,
            Kind::FloodIn => 1,
            _ => return None,
        };
        let r = self.rates.get(&slot)?;
        Some((r.pps?[dir], r.bps[dir]))
    }
}

/// What the proxy windows need of the policy and the latest counters.
struct Judge<'a> {
    tenants: &'a HashMap<TenantSlot, TenantDetectors>,
    rates: &'a HashMap<TenantSlot, Rates>,
}

impl ProxyJudge for Judge<'_> {
    fn window(&self, slot: TenantSlot) -> Option<Duration> {
        self.tenants.get(&slot).map(|t| t.detectors.proxy.window)
    }

    fn crosses(&self, fan: &crate::Fan) -> bool {
        self.tenants
            .get(&fan.slot)
            .is_some_and(|t| crate::proxy::proxy(&t.detectors.proxy, fan).is_some())
    }

    fn bytes(&self, slot: TenantSlot) -> Option<[u64; 2]> {
        self.rates.get(&slot).map(|r| r.bytes)
    }
}

/// The attempt fact, and for TCP to an SMTP port the SMTP fact with the port.
fn push_attempt(facts: &mut Vec<(Fact, Option<u16>)>, a: Attempt) {
    facts.push((Fact::Attempt(a), None));
    if a.proto == Proto::Tcp && SMTP_PORTS.contains(&a.port) {
        let smtp = Smtp {
            slot: a.slot,
            server: a.remote,
            outcome: a.outcome,
            at: a.at,
        };
        facts.push((Fact::Smtp(smtp), Some(a.port)));
    }
}

/// The rate fact of a flood event: the class's own field is the event's rate per second,
/// the others are unknown (0).
fn rate(f: &Flood) -> Rate {
    let per_second = f.per_second;
    let mut r = Rate {
        slot: f.slot,
        remote: f.addr,
        dir: f.dir,
        pps: 0.0,
        syn_pps: 0.0,
        reply_pps: 0.0,
        bps: 0.0,
        at: f.at,
    };
    match f.class {
        FloodClass::Syn => r.syn_pps = per_second,
        FloodClass::Packets | FloodClass::InPackets => r.pps = per_second,
        FloodClass::Reply => r.reply_pps = per_second,
        FloodClass::InBytes => r.bps = per_second * 8.0,
    }
    r
}
