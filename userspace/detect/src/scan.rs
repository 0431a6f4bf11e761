//! `scan`: a sequential probability ratio test on first-contact outcomes (after the
//! threshold random walk, TRW: Jung, Paxson, Berger, Balakrishnan, "Fast Portscan
//! Detection Using Sequential Hypothesis Testing", 2004), made to hold for busy clients,
//! plus a bound on failed first contacts per window.
//!
//! Only *first contacts* count: the first attempt at an endpoint (address, port, protocol)
//! the tenant has not contacted within `Limits::contact_memory`. A first contact Warden's
//! own enforcement dropped (a block, the SMTP policy, the plan, a throttle) is neither a
//! success nor a failure of the tenant: it is counted apart
//! (`dropped_by_warden_in_window`). A suspended tenant's packets report nothing.
//!
//! The sequential test, per destination port class ([`PortClass`]: echo, DNS, web, mail,
//! other TCP, other UDP), over the last `window`:
//!
//! - A *failure* is a failed first contact (refused, unreachable, no answer), counted once
//!   per destination host and second: retransmissions are not first contacts, and a
//!   host's further ports failing within a second of its counted failure (one overloaded
//!   or filtered server) add nothing. A success counts once per first contact.
//! - With θ0 = `success_prob_benign`, θ1 = `success_prob_scanner`, the log likelihood
//!   ratio of the class's S successes and F failures in the window is
//!   S·ln(θ1/θ0) + F·ln((1-θ1)/(1-θ0)). At ln η1 = ln(`detection_rate`/`false_positive_rate`)
//!   *and* at least `min_failed_targets` failures in the class, the tenant is a scanner.
//!   The walk is judged after every first contact, so a fresh scanner is flagged after
//!   max(⌈ln η1 / ln((1-θ1)/(1-θ0))⌉, `min_failed_targets`) failed destinations.
//! - Successes are not forgotten when the walk looks benign (TRW restarts at ln η0): they
//!   leave only with the window. So a busy client's burst of failures (a monitoring round
//!   whose silent hosts time out together after its replies, one overloaded site, a set
//!   of silent upstreams) is weighed against that client's successes in the same class,
//!   and a crawler's web successes do not hide probes of SSH (another class).
//!
//! Fire-and-forget scanners (UDP, or SYNs whose answers go elsewhere), vertical scans of
//! one host (its ports fail within a second: few failures per host) and scans of networks
//! with many live hosts can keep the test low; they are caught by the second test: more
//! than `distinct_targets` failed first contacts (endpoints) within `window`. Counting only
//! failures keeps a crawler that reaches hundreds of servers well inside the bound.
//!
//! Top targets: hosts and ports by failed first contacts in the window.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::detection::{sort_top, Crossing, Target};
use warden_policy::traffic::{Outcome, Proto};

use super::fact::Attempt;
use super::recent::Recent;
use warden_policy::Scan;

/// Slack for comparing sums of logarithms with the thresholds, so that n steps of exactly
/// ln η1 / n cross.
const EPSILON: f64 = 1e-9;

/// A host's failures within this long of its counted one are one failure.
pub const HOST_FAILURE_SPAN: Duration = Duration::from_secs(1);

/// An endpoint the tenant contacted, packed so that it hashes in two words: the address
/// as IPv6 (IPv4 mapped) and port, protocol and address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Endpoint(u128, u32);

impl Endpoint {
    fn new(addr: IpAddr, port: u16, proto: Proto) -> Endpoint {
        let (bits, v4) = match addr {
            IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 1),
            IpAddr::V6(a) => (u128::from(a), 0),
        };
        Endpoint(bits, u32::from(port) << 16 | (proto as u32) << 8 | v4)
    }

    fn addr(self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.0);
        match (self.1 & 1, v6.to_ipv4_mapped()) {
            (1, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        }
    }

    fn port(self) -> u16 {
        (self.1 >> 16) as u16
    }
}

/// The destination port classes the sequential test runs in, apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PortClass {
    /// ICMP / ICMPv6 echo.
    Echo,
    /// DNS: UDP or TCP 53 and 853.
    Dns,
    /// Web: TCP 80, 443, 8080, 8443; UDP 443 (QUIC).
    Web,
    /// Mail submission and relay: TCP 25, 465, 587.
    Mail,
    /// Any other TCP port.
    OtherTcp,
    /// Any other UDP port.
    OtherUdp,
}

impl PortClass {
    /// Every class, in index order.
    pub const ALL: [PortClass; 6] = [
        PortClass::Echo,
        PortClass::Dns,
        PortClass::Web,
        PortClass::Mail,
        PortClass::OtherTcp,
        PortClass::OtherUdp,
    ];

    /// The class of a first contact with `port` over `proto`.
    pub fn of(proto: Proto, port: u16) -> PortClass {
        match (proto, port) {
            (Proto::Icmp, _) => PortClass::Echo,
            (_, 53 | 853) => PortClass::Dns,
            (Proto::Tcp, 80 | 443 | 8080 | 8443) | (Proto::Udp, 443) => PortClass::Web,
            (Proto::Tcp, 25 | 465 | 587) => PortClass::Mail,
            (Proto::Tcp, _) => PortClass::OtherTcp,
            (Proto::Udp, _) => PortClass::OtherUdp,
        }
    }
}

/// The test's step sizes and thresholds of one configuration, in logs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Walk {
    /// Added per success (negative).
    pub success: f64,
    /// Added per failure (positive).
    pub failure: f64,
    /// ln η1: scanner at or above (with enough failures).
    pub upper: f64,
    /// ln η0: what TRW would call benign; reported for reference, the window forgets
    /// instead.
    pub lower: f64,
    /// Failures of the class needed besides the ratio (`min_failed_targets`).
    pub min_failures: u64,
}

impl Walk {
    /// The walk of `cfg`.
    pub fn new(cfg: &Scan) -> Walk {
        let (t0, t1) = (cfg.success_prob_benign, cfg.success_prob_scanner);
        let (pd, pf) = (cfg.detection_rate, cfg.false_positive_rate);
        Walk {
            success: (t1 / t0).ln(),
            failure: ((1.0 - t1) / (1.0 - t0)).ln(),
            upper: (pd / pf).ln(),
            lower: ((1.0 - pd) / (1.0 - pf)).ln(),
            min_failures: u64::from(cfg.min_failed_targets),
        }
    }

    /// Failed destinations, with no success in the window, that a tenant needs to be
    /// flagged: max(⌈ln η1 / ln((1-θ1)/(1-θ0))⌉, `min_failed_targets`).
    pub fn failures_to_detect(&self) -> u64 {
        ((self.upper / self.failure).ceil().max(1.0) as u64).max(self.min_failures)
    }

    /// The log likelihood ratio of `successes` and `failures`.
    pub fn ratio(&self, successes: u64, failures: u64) -> f64 {
        successes as f64 * self.success + failures as f64 * self.failure
    }

    /// Whether `successes` and `failures` make a scanner.
    pub fn scanner(&self, successes: u64, failures: u64) -> bool {
        failures >= self.min_failures && self.ratio(successes, failures) >= self.upper - EPSILON
    }
}

/// One port class's successes and failures in the window, oldest first.
#[derive(Debug, Default)]
struct ClassWindow {
    /// (when, failed).
    steps: VecDeque<(Duration, bool)>,
    successes: u64,
    failures: u64,
}

impl ClassWindow {
    fn push(&mut self, at: Duration, failed: bool, cap: usize) {
        if self.steps.len() >= cap {
            self.pop();
        }
        self.steps.push_back((at, failed));
        self.count(failed, true);
    }

    fn pop(&mut self) {
        if let Some((_, failed)) = self.steps.pop_front() {
            self.count(failed, false);
        }
    }

    fn count(&mut self, failed: bool, add: bool) {
        let n = if failed {
            &mut self.failures
        } else {
            &mut self.successes
        };
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
    }

    fn expire(&mut self, cutoff: Duration) {
        while self.steps.front().is_some_and(|(at, _)| *at < cutoff) {
            self.pop();
        }
    }
}

/// One tenant's scan state.
#[derive(Debug)]
pub(crate) struct ScanState {
    /// Per [`PortClass`], the window of the sequential test.
    classes: [ClassWindow; PortClass::ALL.len()],
    /// Endpoints contacted within the contact memory.
    seen: Recent<Endpoint, ()>,
    /// Per host, when its last counted failure was (kept for [`HOST_FAILURE_SPAN`]).
    host_failed: HashMap<IpAddr, Duration>,
    /// Failed first contacts within `window`, oldest first, at most the contact cap.
    failed: VecDeque<(Duration, Endpoint)>,
    /// First contacts Warden's enforcement dropped within `window`, oldest first.
    dropped_by_warden: VecDeque<Duration>,
    cap: usize,
    /// Failed first contacts dropped from `failed` because it was full.
    dropped: u64,
}

impl ScanState {
    pub(crate) fn new(cap: usize) -> Self {
        ScanState {
            classes: Default::default(),
            seen: Recent::new(cap),
            host_failed: HashMap::new(),
            failed: VecDeque::new(),
            dropped_by_warden: VecDeque::new(),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    /// Feeds one attempt; returns the figures if a test crossed. The costly part of the
    /// evidence is left to [`ScanState::evidence`], which the engine calls only when the
    /// episode needs it.
    pub(crate) fn observe(
        &mut self,
        cfg: &Scan,
        a: &Attempt,
        memory: Duration,
    ) -> Option<Crossing> {
        self.expire(a.at, cfg.window, memory);
        if a.outcome == Outcome::Dropped {
            // Warden's own doing: not the tenant's success or failure.
            if self.dropped_by_warden.len() >= self.cap {
                self.dropped_by_warden.pop_front();
            }
            self.dropped_by_warden.push_back(a.at);
            return None;
        }
        let endpoint = Endpoint::new(a.remote, a.port, a.proto);
        if !self.seen.touch(endpoint, a.at, |_| ()) {
            return None;
        }
        let class = PortClass::of(a.proto, a.port);
        let failed = a.outcome.failed();
        if failed {
            if self.failed.len() >= self.cap {
                self.failed.pop_front();
                self.dropped += 1;
            }
            self.failed.push_back((a.at, endpoint));
        }
        let counted = !failed || self.count_host_failure(a.remote, a.at);
        let window = &mut self.classes[class as usize];
        if counted {
            window.push(a.at, failed, self.cap);
        }
        let walk = Walk::new(cfg);
        let (successes, failures) = (window.successes, window.failures);
        let scanner = failed && counted && walk.scanner(successes, failures);
        let distinct = self.failed.len() > cfg.distinct_targets as usize;
        if !scanner && !distinct {
            return None;
        }
        let mut crossing = Crossing {
            figures: Vec::new(),
            thresholds: vec![
                ("trw_log_ratio", walk.upper),
                ("trw_failed_destinations", walk.min_failures as f64),
                ("failed_targets_in_window", f64::from(cfg.distinct_targets)),
            ],
            top_targets: Vec::new(),
        };
        if scanner {
            crossing
                .figures
                .push(("trw_log_ratio", walk.ratio(successes, failures)));
            crossing
                .figures
                .push(("trw_failed_destinations", failures as f64));
            crossing.figures.push(("trw_successes", successes as f64));
            crossing.figures.push((class_figure(class), 1.0));
        }
        crossing
            .figures
            .push(("failed_targets_in_window", self.failed.len() as f64));
        crossing.figures.push((
            "dropped_by_warden_in_window",
            self.dropped_by_warden.len() as f64,
        ));
        Some(crossing)
    }

    /// Whether a failure at `host` at `at` counts: not within [`HOST_FAILURE_SPAN`] of
    /// the host's last counted one.
    fn count_host_failure(&mut self, host: IpAddr, at: Duration) -> bool {
        if let Some(last) = self.host_failed.get(&host) {
            if at.abs_diff(*last) < HOST_FAILURE_SPAN {
                return false;
            }
        }
        if self.host_failed.len() >= self.cap {
            let cutoff = at.saturating_sub(HOST_FAILURE_SPAN);
            self.host_failed.retain(|_, t| *t >= cutoff);
            if self.host_failed.len() >= self.cap {
                self.host_failed.clear();
            }
        }
        self.host_failed.insert(host, at);
        true
    }

    /// Adds the costly evidence to a crossing: distinct failed hosts and ports, top targets.
    pub(crate) fn evidence(&self, crossing: &mut Crossing, top: usize) {
        let mut hosts: HashMap<IpAddr, u64> = HashMap::new();
        let mut ports: HashMap<u16, u64> = HashMap::new();
        for (_, endpoint) in &self.failed {
            *hosts.entry(endpoint.addr()).or_default() += 1;
            *ports.entry(endpoint.port()).or_default() += 1;
        }
        crossing
            .figures
            .push(("failed_hosts_in_window", hosts.len() as f64));
        crossing
            .figures
            .push(("failed_ports_in_window", ports.len() as f64));
        let mut targets: Vec<(Target, u64)> = hosts
            .into_iter()
            .map(|(a, n)| (Target::host(a), n))
            .chain(ports.into_iter().map(|(p, n)| (Target::port(p), n)))
            .collect();
        sort_top(&mut targets, top);
        crossing.top_targets = targets;
    }

    fn expire(&mut self, now: Duration, window: Duration, memory: Duration) {
        self.seen.expire(now.saturating_sub(memory));
        let cutoff = now.saturating_sub(window);
        while self.failed.front().is_some_and(|(at, _)| *at < cutoff) {
            self.failed.pop_front();
        }
        while self
            .dropped_by_warden
            .front()
            .is_some_and(|at| *at < cutoff)
        {
            self.dropped_by_warden.pop_front();
        }
        for class in &mut self.classes {
            class.expire(cutoff);
        }
    }

    /// Drops what has aged out; returns whether nothing is left worth keeping.
    pub(crate) fn tick(&mut self, now: Duration, window: Duration, memory: Duration) -> bool {
        self.expire(now, window, memory);
        let cutoff = now.saturating_sub(HOST_FAILURE_SPAN * 2);
        self.host_failed.retain(|_, t| *t >= cutoff);
        self.seen.len() == 0
            && self.failed.is_empty()
            && self.dropped_by_warden.is_empty()
            && self.classes.iter().all(|c| c.steps.is_empty())
    }

    /// Endpoints remembered plus failed contacts and test steps queued.
    pub(crate) fn remembered(&self) -> usize {
        let steps: usize = self.classes.iter().map(|c| c.steps.len()).sum();
        self.seen.len() + self.failed.len() + steps
    }

    /// Endpoints and failures forgotten because the memory was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.seen.evicted() + self.dropped
    }
}

/// The figure naming the class whose test crossed (value 1).
fn class_figure(class: PortClass) -> &'static str {
    match class {
        PortClass::Echo => "trw_class_echo",
        PortClass::Dns => "trw_class_dns",
        PortClass::Web => "trw_class_web",
        PortClass::Mail => "trw_class_mail",
        PortClass::OtherTcp => "trw_class_other_tcp",
        PortClass::OtherUdp => "trw_class_other_udp",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_endpoints_keep_address_family_and_port() {
        let v4: IpAddr = "198.18.0.1".parse().expect("address");
        let mapped: IpAddr = "::ffff:198.18.0.1".parse().expect("address");
        let a = Endpoint::new(v4, 443, Proto::Tcp);
        let b = Endpoint::new(mapped, 443, Proto::Tcp);
        assert_ne!(a, b);
        assert_eq!((a.addr(), a.port(), b.addr()), (v4, 443, mapped));
        assert_ne!(a, Endpoint::new(v4, 443, Proto::Udp));
    }
}
