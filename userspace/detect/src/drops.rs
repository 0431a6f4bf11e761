//! `spoof_ip`, `spoof_arp`, `spoof_mac`, `bandwidth`: the dataplane already drops the
//! traffic; drops, at least `drops` within `window`, become a detection of the
//! kind matching the drop reason, provided the drops are at least `drop_ratio` of the
//! tenant's packets in that window. Top targets: see below (the spoofing kinds only).
//!
//! The ratio is what tells hogging from using a plan: a congestion-controlled transfer at
//! its plan loses a few packets in a hundred to the policer as it probes for capacity
//! (thousands of drops a minute at hundreds of Mbit/s; 5-8% of a TCP upload pressing on a
//! 30 Mbit/s plan over a 10 ms round trip in the demo lab), while a sender that ignores
//! its plan loses everything above it (a quarter of its packets at 1.33 times the plan,
//! two thirds at three times). `bandwidth` defaults to 0.25; the spoofing kinds to 0
//! (any share).
//!
//! A kind with a `drop_ratio` must also hold both conditions for [`SUSTAIN`]: a TCP
//! connection's slow start overshoots its plan once and may lose several percent of a
//! second's packets, then settles; a sender that ignores the plan keeps losing. The
//! pipeline reports such a kind every second the tenant has traffic, drops or not, so
//! the ratio is over all of the window's packets.
//!
//! Evidence of the spoofing kinds: what the dropped frames claimed. The programs report
//! each (reason, claimed address, source MAC) once per contact epoch ([`Claim`]); the
//! top targets are those claims (address and MAC), by how often each was reported
//! within the window.

use std::time::Duration;

use std::net::IpAddr;

use super::detection::{sort_top, Crossing, Target};
use super::fact::{Claim, DropReason, Drops};
use super::recent::{Counts, Recent};
use warden_policy::{self as policy, Detectors, Kind};

/// The detection kind of a drop reason.
pub fn kind(reason: DropReason) -> Kind {
    match reason {
        DropReason::SpoofIp => Kind::SpoofIp,
        DropReason::SpoofArp => Kind::SpoofArp,
        DropReason::SpoofMac => Kind::SpoofMac,
        DropReason::Bandwidth => Kind::Bandwidth,
    }
}

/// The settings of a drop reason's detector.
pub(crate) fn settings(d: &Detectors, reason: DropReason) -> &policy::Drops {
    match reason {
        DropReason::SpoofIp => &d.spoof_ip,
        DropReason::SpoofArp => &d.spoof_arp,
        DropReason::SpoofMac => &d.spoof_mac,
        DropReason::Bandwidth => &d.bandwidth,
    }
}

/// How long a kind with a `drop_ratio` must stay over both thresholds.
pub const SUSTAIN: Duration = Duration::from_secs(5);

const REASONS: [DropReason; 4] = [
    DropReason::SpoofIp,
    DropReason::SpoofArp,
    DropReason::SpoofMac,
    DropReason::Bandwidth,
];

/// Claims remembered per spoofing kind and tenant.
pub const CLAIMS: usize = 64;

/// One tenant's drop counts, per reason.
#[derive(Debug)]
pub(crate) struct DropState {
    /// Per reason: `[drops, offered packets]`.
    counts: [Counts<2>; 4],
    /// Per reason: since when both thresholds have held (kinds with a `drop_ratio`).
    held_since: [Option<Duration>; 4],
    /// Per spoofing kind (`spoof_ip`, `spoof_arp`, `spoof_mac`): what its frames claimed,
    /// with how often each was reported.
    claims: [Recent<(IpAddr, [u8; 6]), u64>; 3],
    /// Per spoofing kind: its window (claims older are forgotten).
    claim_windows: [Duration; 3],
}

impl DropState {
    pub(crate) fn new(d: &Detectors) -> Self {
        DropState {
            counts: REASONS.map(|r| Counts::new(settings(d, r).window)),
            held_since: [None; 4],
            claims: [
                Recent::new(CLAIMS),
                Recent::new(CLAIMS),
                Recent::new(CLAIMS),
            ],
            claim_windows: [d.spoof_ip.window, d.spoof_arp.window, d.spoof_mac.window],
        }
    }

    /// Notes what a spoofed frame claimed.
    pub(crate) fn claim(&mut self, c: &Claim) {
        let Some(i) = claim_index(c.kind) else {
            return;
        };
        self.claims[i].expire(c.at.saturating_sub(self.claim_windows[i]));
        self.claims[i].touch((c.addr, c.mac), c.at, |n| *n += 1);
    }

    /// Adds the claims of `kind` to a crossing as its top targets.
    pub(crate) fn evidence(&self, kind: Kind, crossing: &mut Crossing, top: usize) {
        let Some(i) = claim_index(kind) else {
            return;
        };
        let mut targets: Vec<(Target, u64)> = self.claims[i]
            .iter()
            .map(|((addr, mac), n)| (Target::claim(*addr, *mac), *n))
            .collect();
        crossing
            .figures
            .push(("claims_in_window", targets.len() as f64));
        sort_top(&mut targets, top);
        crossing.top_targets = targets;
    }

    pub(crate) fn observe(&mut self, cfg: &policy::Drops, f: &Drops) -> Option<Crossing> {
        let i = REASONS
            .iter()
            .position(|r| *r == f.reason)
            .expect("REASONS lists every reason");
        let [sum, offered] = self.counts[i].add(cfg.window, f.at, [f.count, f.offered]);
        let ratio = if offered == 0 {
            1.0
        } else {
            (sum as f64 / offered as f64).min(1.0)
        };
        let over = sum >= u64::from(cfg.drops) && ratio >= cfg.drop_ratio;
        let held = if cfg.drop_ratio > 0.0 {
            let since = &mut self.held_since[i];
            if !over {
                *since = None;
            }
            over && f.at.saturating_sub(*since.get_or_insert(f.at)) >= SUSTAIN
        } else {
            over
        };
        held.then(|| Crossing {
            figures: vec![("drops_in_window", sum as f64), ("drop_ratio", ratio)],
            thresholds: vec![
                ("drops_in_window", f64::from(cfg.drops)),
                ("drop_ratio", cfg.drop_ratio),
            ],
            top_targets: Vec::new(),
        })
    }

    /// Drops what has aged out; returns whether nothing is left.
    pub(crate) fn tick(&mut self, now: Duration) -> bool {
        let mut empty = true;
        for c in &mut self.counts {
            c.sums(now);
            empty &= c.is_empty();
        }
        for (claims, window) in self.claims.iter_mut().zip(self.claim_windows) {
            claims.expire(now.saturating_sub(window));
            empty &= claims.len() == 0;
        }
        empty
    }
}

/// The index of a spoofing kind in [`DropState::claims`].
fn claim_index(kind: Kind) -> Option<usize> {
    match kind {
        Kind::SpoofIp => Some(0),
        Kind::SpoofArp => Some(1),
        Kind::SpoofMac => Some(2),
        _ => None,
    }
}
