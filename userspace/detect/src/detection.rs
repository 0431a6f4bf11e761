//! What the engine reports, and the episodes that decide when it reports.
//!
//! A (tenant, kind) is either quiet or in an episode. The first crossing of a threshold
//! opens an episode and reports a [`Detection`] with [`Status::Started`]; further crossings
//! only extend it (`last_seen`, peak figures, top targets). An episode ends once its
//! thresholds have not been crossed for the kind's quiet period; [`super::Engine::tick`]
//! then reports the same detection again with [`Status::Ended`] and its final evidence.
//! The next crossing opens a new episode, so the enforcement ladder sees one detection per
//! episode and escalates on repeats, not on the length of one attack.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use warden_policy::tenant::TenantSlot;
use warden_policy::Kind;

/// A destination or source an episode is about: a host, a port, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    /// The address, if the weight is about one address.
    pub addr: Option<IpAddr>,
    /// The port, if the weight is about one port.
    pub port: Option<u16>,
    /// The MAC, if the weight is about one (a spoofed frame's source MAC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<[u8; 6]>,
}

impl Target {
    /// One address, any port.
    pub fn host(addr: IpAddr) -> Target {
        Target {
            addr: Some(addr),
            port: None,
            mac: None,
        }
    }

    /// One port, any address.
    pub fn port(port: u16) -> Target {
        Target {
            addr: None,
            port: Some(port),
            mac: None,
        }
    }

    /// One address claimed from one MAC (a spoofed frame's).
    pub fn claim(addr: IpAddr, mac: [u8; 6]) -> Target {
        Target {
            addr: Some(addr),
            port: None,
            mac: Some(mac),
        }
    }
}

/// Whether a detection opens or closes an episode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A threshold was crossed while the (tenant, kind) was quiet: act on it.
    Started,
    /// The episode went quiet; the evidence is final.
    Ended,
}

/// One episode of one detector for one tenant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The detector.
    pub kind: Kind,
    /// Whether the episode starts or ends with this report.
    pub status: Status,
    /// The first crossing.
    pub first_seen: Duration,
    /// The latest crossing.
    pub last_seen: Duration,
    /// The measured figures, each the peak over the episode (rates, distinct counts,
    /// ratios, the TRW log likelihood ratio, ...).
    pub figures: Vec<(String, f64)>,
    /// The heaviest targets, heaviest first, at most `Limits::top_targets`; what the weight
    /// counts depends on the kind (see the detector modules).
    pub top_targets: Vec<(Target, u64)>,
    /// The thresholds the figures are measured against.
    pub thresholds: Vec<(String, f64)>,
}

impl Detection {
    /// The figure called `name`.
    pub fn figure(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

/// What a detector measured when it crossed a threshold.
#[derive(Debug, Default)]
pub(crate) struct Crossing {
    pub(crate) figures: Vec<(&'static str, f64)>,
    pub(crate) thresholds: Vec<(&'static str, f64)>,
    pub(crate) top_targets: Vec<(Target, u64)>,
}

/// Index of `kind` in [`Kind::ALL`].
fn kind_index(kind: Kind) -> usize {
    Kind::ALL
        .iter()
        .position(|k| *k == kind)
        .expect("Kind::ALL lists every kind")
}

/// A tenant's open episodes, one slot per kind.
#[derive(Debug, Default)]
pub(crate) struct Episodes {
    open: [Option<Detection>; Kind::ALL.len()],
    /// When the costly evidence of each kind was last gathered.
    evidence_at: [Option<Duration>; Kind::ALL.len()],
}

impl Episodes {
    /// Whether `kind` has an open episode whose costly evidence was gathered less than
    /// `fresh` before `at`; detectors skip gathering it then.
    pub(crate) fn fresh(&self, kind: Kind, at: Duration, fresh: Duration) -> bool {
        let i = kind_index(kind);
        self.open[i].is_some() && self.evidence_at[i].is_some_and(|t| at.saturating_sub(t) < fresh)
    }

    /// Notes that the costly evidence of `kind` was gathered at `at`.
    pub(crate) fn gathered(&mut self, kind: Kind, at: Duration) {
        self.evidence_at[kind_index(kind)] = Some(at);
    }

    /// Records a crossing; returns the detections to report (an ended stale episode and a
    /// started one, or nothing if an episode was already open).
    pub(crate) fn cross(
        &mut self,
        slot: TenantSlot,
        kind: Kind,
        at: Duration,
        quiet: Duration,
        top: usize,
        crossing: Crossing,
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        let open = &mut self.open[kind_index(kind)];
        if open
            .as_ref()
            .is_some_and(|d| at.saturating_sub(d.last_seen) >= quiet)
        {
            out.extend(open.take().map(ended));
        }
        match open {
            Some(d) => {
                d.last_seen = d.last_seen.max(at);
                merge(d, crossing, top);
            }
            None => {
                let mut d = Detection {
                    slot,
                    kind,
                    status: Status::Started,
                    first_seen: at,
                    last_seen: at,
                    figures: Vec::new(),
                    top_targets: Vec::new(),
                    thresholds: Vec::new(),
                };
                merge(&mut d, crossing, top);
                out.push(d.clone());
                *open = Some(d);
            }
        }
        out
    }

    /// Ends the episodes quiet at `now`; `quiet` gives each kind's quiet period.
    pub(crate) fn close(
        &mut self,
        now: Duration,
        quiet: impl Fn(Kind) -> Duration,
    ) -> Vec<Detection> {
        let mut out = Vec::new();
        for open in &mut self.open {
            if open
                .as_ref()
                .is_some_and(|d| now.saturating_sub(d.last_seen) >= quiet(d.kind))
            {
                out.extend(open.take().map(ended));
            }
        }
        out
    }

    /// The open episode of `kind`.
    pub(crate) fn get(&self, kind: Kind) -> Option<&Detection> {
        self.open[kind_index(kind)].as_ref()
    }

    /// Whether no episode is open.
    pub(crate) fn is_empty(&self) -> bool {
        self.open.iter().all(Option::is_none)
    }
}

fn ended(mut d: Detection) -> Detection {
    d.status = Status::Ended;
    d
}

/// Folds a crossing into an episode: peak figures, latest thresholds, heaviest targets.
fn merge(d: &mut Detection, crossing: Crossing, top: usize) {
    for (name, value) in crossing.figures {
        match d.figures.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = v.max(value),
            None => d.figures.push((name.to_owned(), value)),
        }
    }
    let same = d.thresholds.len() == crossing.thresholds.len()
        && d.thresholds
            .iter()
            .zip(&crossing.thresholds)
            .all(|((n, v), (cn, cv))| n == cn && v == cv);
    if !same && !crossing.thresholds.is_empty() {
        d.thresholds = crossing
            .thresholds
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
    }
    if crossing.top_targets.is_empty() {
        return;
    }
    for (target, weight) in crossing.top_targets {
        match d.top_targets.iter_mut().find(|(t, _)| *t == target) {
            Some((_, w)) => *w = (*w).max(weight),
            None => d.top_targets.push((target, weight)),
        }
    }
    sort_top(&mut d.top_targets, top);
}

/// Sorts heaviest first (ties by target, so reports are deterministic) and keeps `top`.
pub(crate) fn sort_top(targets: &mut Vec<(Target, u64)>, top: usize) {
    targets.sort_by(|(ta, wa), (tb, wb)| wb.cmp(wa).then(ta.cmp(tb)));
    targets.truncate(top);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossing(value: f64, target: u8) -> Crossing {
        Crossing {
            figures: vec![("pps", value)],
            thresholds: vec![("pps", 10.0)],
            top_targets: vec![(
                Target::host(IpAddr::from([198, 18, 0, target])),
                value as u64,
            )],
        }
    }

    #[test]
    fn an_episode_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let quiet = Duration::from_secs(30);
        let mut episodes = Episodes::default();
        let started = episodes.cross(
            TenantSlot(1),
            Kind::FloodOut,
            Duration::from_secs(1),
            quiet,
            10,
            crossing(20.0, 1),
        );
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].status, Status::Started);
        for s in 2..20 {
            let again = episodes.cross(
                TenantSlot(1),
                Kind::FloodOut,
                Duration::from_secs(s),
                quiet,
                10,
                crossing(s as f64 * 10.0, s as u8),
            );
            assert!(again.is_empty(), "an open episode is not reported again");
        }
        assert!(episodes
            .close(Duration::from_secs(48), |_| quiet)
            .is_empty());
        let ended = episodes.close(Duration::from_secs(49), |_| quiet);
        assert_eq!(ended.len(), 1);
        let d = &ended[0];
        assert_eq!(
            (d.status, d.first_seen, d.last_seen),
            (
                Status::Ended,
                Duration::from_secs(1),
                Duration::from_secs(19)
            )
        );
        assert_eq!(
            d.figure("pps"),
            Some(190.0),
            "figures are the peak of the episode"
        );
        assert_eq!(d.top_targets.len(), 10, "top targets are bounded");
        assert_eq!(d.top_targets[0].1, 190);
        assert!(episodes.is_empty());
    }

    #[test]
    fn a_crossing_after_the_quiet_period_ends_the_old_episode_and_starts_a_new_one() {
        let quiet = Duration::from_secs(30);
        let mut episodes = Episodes::default();
        episodes.cross(
            TenantSlot(1),
            Kind::Scan,
            Duration::ZERO,
            quiet,
            10,
            crossing(1.0, 1),
        );
        let out = episodes.cross(
            TenantSlot(1),
            Kind::Scan,
            Duration::from_secs(31),
            quiet,
            10,
            crossing(1.0, 1),
        );
        let statuses: Vec<_> = out.iter().map(|d| (d.status, d.first_seen)).collect();
        assert_eq!(
            statuses,
            [
                (Status::Ended, Duration::ZERO),
                (Status::Started, Duration::from_secs(31))
            ]
        );
    }
}
