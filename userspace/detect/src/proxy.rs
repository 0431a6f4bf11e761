//! `proxy`: one tenant address that takes connections from more than `inbound_clients`
//! sources, opens connections to more than `outbound_destinations` destinations, and
//! moves about as many bytes in as out, over its `window` (the counts and bytes of
//! [`crate::pipeline`]'s proxy windows, judged every second while the window is open).
//!
//! A relay forwards what it receives, so its inbound and outbound bytes track each
//! other; `correlation` is compared with their symmetry, min/max of the two (1 when
//! equal). A web server answering many clients calls few backends and sends far more
//! than it receives; a load balancer relays but to a handful of backends; a crawler and a
//! resolver take no inbound (TCP) clients. Stateless: a [`Fan`] carries the figures. Top
//! target: the address with its relayed bytes (the smaller side).

use super::detection::{Crossing, Target};
use super::fact::Fan;
use warden_policy::Proxy;

/// min/max of the two byte counts; 0 when nothing moved.
pub fn symmetry(in_bytes: u64, out_bytes: u64) -> f64 {
    let (lo, hi) = (in_bytes.min(out_bytes), in_bytes.max(out_bytes));
    if hi == 0 {
        0.0
    } else {
        lo as f64 / hi as f64
    }
}

pub(crate) fn proxy(cfg: &Proxy, f: &Fan) -> Option<Crossing> {
    let sym = symmetry(f.in_bytes, f.out_bytes);
    let relays = f.inbound_clients > cfg.inbound_clients
        && f.outbound_destinations > cfg.outbound_destinations
        && sym >= cfg.correlation;
    relays.then(|| Crossing {
        figures: vec![
            ("inbound_clients", f64::from(f.inbound_clients)),
            ("outbound_destinations", f64::from(f.outbound_destinations)),
            ("byte_symmetry", sym),
        ],
        thresholds: vec![
            ("inbound_clients", f64::from(cfg.inbound_clients)),
            (
                "outbound_destinations",
                f64::from(cfg.outbound_destinations),
            ),
            ("byte_symmetry", cfg.correlation),
        ],
        top_targets: vec![(Target::host(f.addr), f.in_bytes.min(f.out_bytes))],
    })
}
