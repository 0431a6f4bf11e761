//! `spoof_ip`, `spoof_arp`, `spoof_mac`, `bandwidth`: the dataplane already drops the
//! traffic; sustained drops, more than `drops` within `window`, become a detection of the
//! kind matching the drop reason. No top targets: the dataplane reports counts only.

use std::time::Duration;

use super::detection::Crossing;
use super::fact::{DropReason, Drops};
use super::recent::Counts;
use crate::policy::{self, Detectors, Kind};

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

const REASONS: [DropReason; 4] = [
    DropReason::SpoofIp,
    DropReason::SpoofArp,
    DropReason::SpoofMac,
    DropReason::Bandwidth,
];

/// One tenant's drop counts, per reason.
#[derive(Debug)]
pub(crate) struct DropState {
    counts: [Counts<1>; 4],
}

impl DropState {
    pub(crate) fn new(d: &Detectors) -> Self {
        DropState {
            counts: REASONS.map(|r| Counts::new(settings(d, r).window)),
        }
    }

    pub(crate) fn observe(&mut self, cfg: &policy::Drops, f: &Drops) -> Option<Crossing> {
        let i = REASONS
            .iter()
            .position(|r| *r == f.reason)
            .expect("REASONS lists every reason");
        let [sum] = self.counts[i].add(cfg.window, f.at, [f.count]);
        (sum > u64::from(cfg.drops)).then(|| Crossing {
            figures: vec![("drops_in_window", sum as f64)],
            thresholds: vec![("drops_in_window", f64::from(cfg.drops))],
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
        empty
    }
}
