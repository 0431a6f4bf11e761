//! warden-detect: detection as pure logic (no aya, no SQLite, no async runtime, no
//! clock): the detectors ([`Engine`], this module), the enforcement ladder ([`ladder`]:
//! detections to decisions) and the detection pipeline ([`pipeline`]: the programs'
//! observations and counters to facts, and decisions to [`pipeline::Effects`] the daemon
//! carries out).
//!
//! The engine turns facts into detections, one per episode.
//!
//! Input is a stream of small [`Fact`]s (connection attempts with their outcome, flood
//! estimates per address, SMTP connections, per-window fan-in/fan-out, drop counts); output is
//! [`Detection`]s for the enforcement ladder and the evidence store. Thresholds come from
//! the policy ([`warden_policy::Detectors`]); destinations in a tenant's `allow` list are
//! exempt. Nothing here touches the kernel, a clock or I/O: the caller passes the time in
//! every fact and in [`Engine::tick`].
//!
//! Re-emission: see [`detection`] — one [`Status::Started`] report when an episode opens,
//! one [`Status::Ended`] report from [`Engine::tick`] when it has been quiet for the kind's
//! window (at least [`Limits::min_quiet`]); [`Engine::open`] shows an open episode's
//! current evidence.
//!
//! Memory is bounded by [`Limits`]: at most `tenants` tenants with state (facts for further
//! tenants are counted in [`Stats::refused_facts`] and ignored until one is forgotten or
//! goes idle), and per tenant at most `remotes_per_tenant` endpoints in the scan memory,
//! failed contacts in the scan window, and mail servers in the spam window. A full memory
//! forgets its oldest entry ([`Stats::evicted`]); a forgotten endpoint contacted again
//! counts as a first contact again, which can only make the scan test more sensitive.

pub mod detection;
mod drops;
pub mod fact;
mod flood;
pub mod ladder;
pub mod pipeline;
mod proxy;
mod recent;
pub mod scan;
mod spam;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use warden_policy::tenant::TenantSlot;

pub use detection::{Detection, Status, Target};
pub use fact::{Attempt, Claim, DropReason, Drops, Fact, Fan, Rate, Smtp, SmtpConnection};
pub use proxy::symmetry;
pub use scan::Walk;
pub use spam::MIN_CONNECTIONS_FOR_RATIO;

use detection::{Crossing, Episodes};
use drops::DropState;
use scan::ScanState;
use spam::SpamState;
use warden_policy::traffic::{Direction, Outcome, Proto};
use warden_policy::{self as policy, Detectors, Kind, TenantSettings};

/// What the engine needs of a tenant's policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TenantConfig {
    /// Thresholds and windows per kind (shared with the policy).
    pub detectors: Arc<Detectors>,
    /// Destinations exempt from detection (`allow`).
    pub allow: Vec<IpNet>,
    /// Whether the tenant may send mail (`smtp` is not `block`); only then is `spam` run.
    pub mail: bool,
}

impl TenantConfig {
    /// The part of a tenant's settings the engine uses.
    pub fn from_settings(settings: &TenantSettings) -> TenantConfig {
        TenantConfig {
            detectors: settings.detectors.clone(),
            allow: settings.allow.clone(),
            mail: settings.smtp != policy::Smtp::Block,
        }
    }

    fn allows(&self, addr: IpAddr) -> bool {
        self.allow.iter().any(|net| net.contains(&addr))
    }

    /// How long `kind` must stay under its thresholds before its episode ends.
    fn quiet(&self, kind: Kind, floor: Duration) -> Duration {
        let d = &self.detectors;
        let window = match kind {
            Kind::Scan => d.scan.window,
            Kind::FloodOut => d.flood_out.window,
            Kind::FloodIn => Duration::ZERO,
            Kind::Spam => d.spam.window,
            Kind::Proxy => d.proxy.window,
            Kind::SpoofIp => d.spoof_ip.window,
            Kind::SpoofArp => d.spoof_arp.window,
            Kind::SpoofMac => d.spoof_mac.window,
            Kind::Bandwidth => d.bandwidth.window,
        };
        window.max(floor)
    }
}

/// Memory bounds and reporting limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tenants with state at once.
    pub tenants: usize,
    /// Remotes remembered per tenant and structure (scan endpoints, scan failures, mail
    /// servers).
    pub remotes_per_tenant: usize,
    /// How long an endpoint stays contacted: a contact after this is a first contact again.
    pub contact_memory: Duration,
    /// Top targets per detection.
    pub top_targets: usize,
    /// The shortest quiet period that ends an episode.
    pub min_quiet: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tenants: 65_536,
            remotes_per_tenant: 4_096,
            contact_memory: Duration::from_secs(3_600),
            top_targets: 10,
            min_quiet: Duration::from_secs(30),
        }
    }
}

/// How often the costly part of scan evidence is refreshed while an episode is open.
const EVIDENCE_EVERY: Duration = Duration::from_secs(1);

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Facts ignored because `Limits::tenants` tenants already had state.
    pub refused_facts: u64,
    /// Entries forgotten because a per-tenant memory was full.
    pub evicted: u64,
}

/// One tenant's detector state.
#[derive(Debug)]
struct TenantState {
    scan: ScanState,
    spam: SpamState,
    drops: DropState,
    episodes: Episodes,
}

impl TenantState {
    fn new(cfg: &TenantConfig, limits: &Limits) -> Self {
        TenantState {
            scan: ScanState::new(limits.remotes_per_tenant),
            spam: SpamState::new(limits.remotes_per_tenant, cfg.detectors.spam.window),
            drops: DropState::new(&cfg.detectors),
            episodes: Episodes::default(),
        }
    }

    fn evicted(&self) -> u64 {
        self.scan.evicted() + self.spam.evicted()
    }
}

/// The detectors of every tenant.
#[derive(Debug)]
pub struct Engine {
    defaults: TenantConfig,
    configs: HashMap<TenantSlot, TenantConfig>,
    tenants: HashMap<TenantSlot, TenantState>,
    limits: Limits,
    /// Evictions of tenants whose state was dropped.
    evicted_gone: u64,
    refused_facts: u64,
}

impl Engine {
    /// An engine that applies `defaults` to tenants without a configuration of their own.
    pub fn new(defaults: TenantConfig, limits: Limits) -> Engine {
        Engine {
            defaults,
            configs: HashMap::new(),
            tenants: HashMap::new(),
            limits,
            evicted_gone: 0,
            refused_facts: 0,
        }
    }

    /// Sets a tenant's configuration; its state is kept and the new thresholds apply from
    /// the next fact.
    pub fn configure(&mut self, slot: TenantSlot, config: TenantConfig) {
        self.configs.insert(slot, config);
    }

    /// Drops a tenant's configuration and state (the tenant left the policy); open episodes
    /// end without a report.
    pub fn forget(&mut self, slot: TenantSlot) {
        self.configs.remove(&slot);
        if let Some(state) = self.tenants.remove(&slot) {
            self.evicted_gone += state.evicted();
        }
    }

    /// Feeds one fact; returns the detections it starts (and, if it restarts a stale
    /// episode the last tick has not ended yet, that episode's end).
    pub fn observe(&mut self, fact: impl Into<Fact>) -> Vec<Detection> {
        self.observe_crossed(fact).0
    }

    /// Like [`Engine::observe`], and also says which kind's thresholds the fact crossed,
    /// if any: a fact that crossed either started an episode or kept an open one going.
    /// The caller uses it to tell which targets of an open episode are still being hit
    /// (a flood's second victim, the SMTP port of the latest connections).
    pub fn observe_crossed(&mut self, fact: impl Into<Fact>) -> (Vec<Detection>, Option<Kind>) {
        let fact = fact.into();
        let slot = fact.slot();
        let cfg = self.configs.get(&slot).unwrap_or(&self.defaults);
        let limits = &self.limits;
        let known = self.tenants.len() < limits.tenants || self.tenants.contains_key(&slot);
        if !known {
            self.refused_facts += 1;
            return (Vec::new(), None);
        }
        let state = self
            .tenants
            .entry(slot)
            .or_insert_with(|| TenantState::new(cfg, limits));
        let at = fact.at();
        let d = &cfg.detectors;
        let (kind, crossing) = match fact {
            Fact::Attempt(a) => {
                if cfg.allows(a.remote) {
                    return (Vec::new(), None);
                }
                let crossing = state.scan.observe(&d.scan, &a, limits.contact_memory);
                (Kind::Scan, crossing)
            }
            Fact::Rate(r) => match r.dir {
                Direction::Out if cfg.allows(r.remote) => return (Vec::new(), None),
                Direction::Out => (Kind::FloodOut, flood::flood_out(&d.flood_out, &r)),
                Direction::In => (Kind::FloodIn, flood::flood_in(&d.flood_in, &r)),
            },
            Fact::Smtp(s) => {
                if !cfg.mail || cfg.allows(s.server) {
                    return (Vec::new(), None);
                }
                (Kind::Spam, state.spam.observe(&d.spam, &s))
            }
            Fact::SmtpConnection(c) => {
                if !cfg.mail || cfg.allows(c.server) {
                    return (Vec::new(), None);
                }
                (Kind::Spam, state.spam.connection(&d.spam, &c))
            }
            Fact::Fan(f) => (Kind::Proxy, proxy::proxy(&d.proxy, &f)),
            Fact::Drops(f) => {
                let settings = drops::settings(d, f.reason);
                (drops::kind(f.reason), state.drops.observe(settings, &f))
            }
            Fact::Claim(c) => {
                state.drops.claim(&c);
                return (Vec::new(), None);
            }
        };
        let Some(mut crossing): Option<Crossing> = crossing else {
            return (Vec::new(), None);
        };
        // Scan and spam evidence walks the tenant's memory: gather it when an episode opens
        // and then at most every EVIDENCE_EVERY, not on every crossing of a long attack.
        let gather = !state.episodes.fresh(kind, at, EVIDENCE_EVERY);
        if gather {
            match kind {
                Kind::Scan => state.scan.evidence(&mut crossing, limits.top_targets),
                Kind::Spam => state.spam.evidence(&mut crossing, limits.top_targets),
                Kind::SpoofIp | Kind::SpoofArp | Kind::SpoofMac => {
                    state
                        .drops
                        .evidence(kind, &mut crossing, limits.top_targets)
                }
                _ => {}
            }
        }
        let quiet = cfg.quiet(kind, limits.min_quiet);
        let out = state
            .episodes
            .cross(slot, kind, at, quiet, limits.top_targets, crossing);
        if gather {
            state.episodes.gathered(kind, at);
        }
        (out, Some(kind))
    }

    /// Advances time to `now`: ages windows out, ends quiet episodes (reported with
    /// [`Status::Ended`], ordered by tenant and kind) and frees the state of idle tenants.
    pub fn tick(&mut self, now: Duration) -> Vec<Detection> {
        let mut out = Vec::new();
        let mut idle = Vec::new();
        for (slot, state) in &mut self.tenants {
            let cfg = self.configs.get(slot).unwrap_or(&self.defaults);
            let d = &cfg.detectors;
            let floor = self.limits.min_quiet;
            out.extend(state.episodes.close(now, |kind| cfg.quiet(kind, floor)));
            let scan_empty = state
                .scan
                .tick(now, d.scan.window, self.limits.contact_memory);
            let spam_empty = state.spam.tick(now, d.spam.window);
            let drops_empty = state.drops.tick(now);
            if scan_empty && spam_empty && drops_empty && state.episodes.is_empty() {
                idle.push(*slot);
            }
        }
        for slot in idle {
            if let Some(state) = self.tenants.remove(&slot) {
                self.evicted_gone += state.evicted();
            }
        }
        out.sort_by_key(|d| (d.slot, d.kind));
        out
    }

    /// The open episode of `kind` for `tenant`, with its evidence so far.
    pub fn open(&self, slot: TenantSlot, kind: Kind) -> Option<&Detection> {
        self.tenants.get(&slot)?.episodes.get(kind)
    }

    /// Remotes the tenant's state remembers (scan endpoints and failures, mail servers).
    pub fn remembered(&self, slot: TenantSlot) -> usize {
        self.tenants
            .get(&slot)
            .map_or(0, |s| s.scan.remembered() + s.spam.remembered())
    }

    /// Tenants with state.
    pub fn tenants(&self) -> usize {
        self.tenants.len()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> Stats {
        Stats {
            refused_facts: self.refused_facts,
            evicted: self.evicted_gone
                + self.tenants.values().map(TenantState::evicted).sum::<u64>(),
        }
    }
}
