//! `flood_out` and `flood_in`: rate samples over thresholds. Stateless: each [`Rate`]
//! already is the average over one window, so one sample over a threshold is a flood for
//! that window.
//!
//! `flood_out` (one victim): SYNs over `syn_pps`, reflection-sized replies over `syn_pps`
//! too (each is an amplified answer, as costly to the victim as a connection attempt), or
//! packets over `pps`. `flood_in` (one tenant address): packets over `pps` or bits over
//! `bps`. Accepted TCP connections are not in the samples (see [`Rate`]), so a large
//! transfer or a busy web server is never a flood. Top targets: the victim with its pps.

use super::detection::{Crossing, Target};
use warden_policy::traffic::Direction;

use super::fact::Rate;
use warden_policy::{FloodIn, FloodOut};

/// The crossing of an outbound sample, if any.
pub(crate) fn flood_out(cfg: &FloodOut, r: &Rate) -> Option<Crossing> {
    if r.dir != Direction::Out {
        return None;
    }
    let (pps, syn_pps) = (cfg.pps as f64, cfg.syn_pps as f64);
    let checks = [
        ("syn_pps", r.syn_pps, syn_pps),
        ("reply_pps", r.reply_pps, syn_pps),
        ("pps", r.pps, pps),
    ];
    crossing(&checks, r)
}

/// The crossing of an inbound sample, if any.
pub(crate) fn flood_in(cfg: &FloodIn, r: &Rate) -> Option<Crossing> {
    if r.dir != Direction::In {
        return None;
    }
    let checks = [
        ("pps", r.pps, cfg.pps as f64),
        ("bps", r.bps, cfg.bps as f64),
    ];
    crossing(&checks, r)
}

/// Reports every figure over its threshold, or nothing if none is.
fn crossing(checks: &[(&'static str, f64, f64)], r: &Rate) -> Option<Crossing> {
    let crossed: Vec<_> = checks.iter().filter(|(_, v, t)| v > t).collect();
    if crossed.is_empty() {
        return None;
    }
    Some(Crossing {
        figures: crossed.iter().map(|(n, v, _)| (*n, *v)).collect(),
        thresholds: crossed.iter().map(|(n, _, t)| (*n, *t)).collect(),
        top_targets: vec![(Target::host(r.remote), r.pps.max(0.0) as u64)],
    })
}
