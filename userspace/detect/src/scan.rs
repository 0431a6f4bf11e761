//! `scan`: threshold random walk (TRW; Jung, Paxson, Berger, Balakrishnan, "Fast Portscan
//! Detection Using Sequential Hypothesis Testing", 2004) plus a bound on failed distinct
//! targets per window.
//!
//! Only *first contacts* count: the first attempt at an endpoint (address, port, protocol)
//! the tenant has not contacted within `Limits::contact_memory`. Keying on the endpoint
//! rather than the host makes one walk catch both shapes: a horizontal scan (one port, many
//! hosts) and a vertical one (one host, many ports) each produce a new endpoint per probe.
//!
//! With θ0 = `success_prob_benign`, θ1 = `success_prob_scanner`, a success adds
//! ln(θ1/θ0) to the log likelihood ratio and a failure (refused, unreachable, no answer)
//! adds ln((1-θ1)/(1-θ0)). At ln η1 = ln(`detection_rate`/`false_positive_rate`) the tenant
//! is a scanner; at ln η0 = ln((1-`detection_rate`)/(1-`false_positive_rate`)) it is benign
//! and the walk restarts at 0. After a detection the walk restarts too, so a scan that goes
//! on keeps its episode open.
//!
//! Fire-and-forget scanners (UDP, or SYNs whose answers go elsewhere) and scans of networks
//! with many live hosts can keep the walk low; they are caught by the second test: more
//! than `distinct_targets` failed first contacts within `window`. Counting only failures
//! keeps a crawler that reaches hundreds of servers well inside the bound.
//!
//! Top targets: hosts and ports by failed first contacts in the window.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use super::detection::{sort_top, Crossing, Target};
use warden_policy::traffic::Proto;

use super::fact::Attempt;
use super::recent::Recent;
use warden_policy::Scan;

/// Slack for comparing sums of logarithms with the thresholds, so that n steps of exactly
/// ln η1 / n cross.
const EPSILON: f64 = 1e-9;

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

/// The TRW step sizes and thresholds of one configuration, in logs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Walk {
    /// Added on a successful first contact (negative).
    pub success: f64,
    /// Added on a failed first contact (positive).
    pub failure: f64,
    /// ln η1: scanner at or above.
    pub upper: f64,
    /// ln η0: benign at or below.
    pub lower: f64,
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
        }
    }

    /// First contacts, all failed, that a fresh walk needs to reach ln η1:
    /// ⌈ln η1 / ln((1-θ1)/(1-θ0))⌉.
    pub fn failures_to_detect(&self) -> u64 {
        (self.upper / self.failure).ceil().max(1.0) as u64
    }
}

/// One tenant's scan state.
#[derive(Debug)]
pub(crate) struct ScanState {
    /// The log likelihood ratio of the current walk.
    llr: f64,
    /// First contacts in the current walk.
    steps: u64,
    /// Endpoints contacted within the contact memory.
    seen: Recent<Endpoint, ()>,
    /// Failed first contacts within `window`, oldest first, at most the contact cap.
    failed: VecDeque<(Duration, Endpoint)>,
    cap: usize,
    /// Failed first contacts dropped from `failed` because it was full.
    dropped: u64,
}

impl ScanState {
    pub(crate) fn new(cap: usize) -> Self {
        ScanState {
            llr: 0.0,
            steps: 0,
            seen: Recent::new(cap),
            failed: VecDeque::new(),
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
        let endpoint = Endpoint::new(a.remote, a.port, a.proto);
        if !self.seen.touch(endpoint, a.at, |_| ()) {
            return None;
        }
        let walk = Walk::new(cfg);
        self.steps += 1;
        if a.outcome.failed() {
            self.llr += walk.failure;
            if self.failed.len() >= self.cap {
                self.failed.pop_front();
                self.dropped += 1;
            }
            self.failed.push_back((a.at, endpoint));
        } else {
            self.llr += walk.success;
        }
        let llr = self.llr;
        let steps = self.steps;
        let scanner = llr >= walk.upper - EPSILON;
        if scanner || llr <= walk.lower + EPSILON {
            self.llr = 0.0;
            self.steps = 0;
        }
        let distinct = self.failed.len() > cfg.distinct_targets as usize;
        if !scanner && !distinct {
            return None;
        }
        let mut crossing = Crossing {
            figures: Vec::new(),
            thresholds: vec![
                ("trw_log_ratio", walk.upper),
                ("failed_targets_in_window", f64::from(cfg.distinct_targets)),
            ],
            top_targets: Vec::new(),
        };
        if scanner {
            crossing.figures.push(("trw_log_ratio", llr));
            crossing.figures.push(("trw_first_contacts", steps as f64));
        }
        crossing
            .figures
            .push(("failed_targets_in_window", self.failed.len() as f64));
        Some(crossing)
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
    }

    /// Drops what has aged out; returns whether nothing is left worth keeping.
    pub(crate) fn tick(&mut self, now: Duration, window: Duration, memory: Duration) -> bool {
        self.expire(now, window, memory);
        self.seen.len() == 0 && self.failed.is_empty()
    }

    /// Endpoints remembered plus failed contacts queued.
    pub(crate) fn remembered(&self) -> usize {
        self.seen.len() + self.failed.len()
    }

    /// Endpoints and failures forgotten because the memory was full.
    pub(crate) fn evicted(&self) -> u64 {
        self.seen.evicted() + self.dropped
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
