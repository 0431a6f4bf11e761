//! Fan-in and fan-out per tenant address, over the `proxy` detector's window.
//!
//! A window opens at a tenant's first ACCEPTED or ATTEMPT event and lasts the tenant's
//! `proxy.window`. Per tenant address it counts the distinct remotes the address accepted
//! connections from (clients), the distinct remotes it opened first contacts to
//! (destinations), and accepted connections per listen port. When the window ends, each
//! address with any of them becomes one [`Fan`] fact, and the listen port with the most
//! clients is the target a proxy block would cut.
//!
//! Bytes: the programs count bytes per tenant and direction, not per address, so every
//! address of a tenant gets the tenant's received and sent bytes over the window (the
//! difference of the tenant's counters, sampled every second, at the window's start and
//! end). For the usual one-address tenant that is exact to a second; a tenant with several
//! addresses is judged on its total.
//!
//! Bounds: at most [`MAX_ADDRESSES`] addresses with an open window over all tenants, and
//! per address [`MAX_DISTINCT`] clients and destinations and [`MAX_PORTS`] listen ports.
//! What does not fit is counted in [`ProxyWindowStats`]; a full distinct set keeps its count at
//! the bound, far above any proxy threshold.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::Fan;
use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::Contact;

/// Tenant addresses with an open window, over all tenants.
pub const MAX_ADDRESSES: usize = 65_536;
/// Distinct clients, and distinct destinations, remembered per address and window.
pub const MAX_DISTINCT: usize = 4_096;
/// Listen ports counted per address and window.
pub const MAX_PORTS: usize = 64;

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxyWindowStats {
    /// Events for an address that found the address table full.
    pub addresses_refused: u64,
    /// Remotes not remembered because an address's distinct set was full.
    pub distinct_refused: u64,
    /// Accepted connections not counted by port because the port table was full.
    pub ports_refused: u64,
}

/// One address's counts in the current window.
#[derive(Debug, Default)]
struct Address {
    clients: HashSet<IpAddr>,
    destinations: HashSet<IpAddr>,
    ports: HashMap<u16, u32>,
}

impl Address {
    /// The listen port with the most accepted connections (the lower port on a tie).
    fn top_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .max_by(|(pa, na), (pb, nb)| na.cmp(nb).then(pb.cmp(pa)))
            .map(|(p, _)| *p)
    }
}

/// One tenant's window.
#[derive(Debug)]
struct Window {
    end: Duration,
    /// The tenant's `[sent, received]` byte counters when the window opened; `None` until
    /// the first sample after it did.
    bytes: Option<[u64; 2]>,
    addresses: HashMap<IpAddr, Address>,
}

/// A window that ended: the fact for one address, and its busiest listen port.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Closed {
    /// The fact.
    pub fan: Fan,
    /// The listen port with the most clients, if the address accepted any.
    pub port: Option<u16>,
}

/// Every tenant's open window.
#[derive(Debug, Default)]
pub struct ProxyWindows {
    windows: HashMap<TenantSlot, Window>,
    addresses: usize,
    stats: ProxyWindowStats,
}

impl ProxyWindows {
    /// The tenant accepted a connection: `c.remote` is a client of `c.local:c.local_port`.
    /// `window` is the tenant's `proxy.window`, `bytes` its latest `[sent, received]`
    /// counters.
    pub fn accepted(&mut self, c: &Contact, window: Duration, bytes: Option<[u64; 2]>) {
        let stats = &mut self.stats;
        let Some(a) = Self::address(
            &mut self.windows,
            &mut self.addresses,
            stats,
            c,
            window,
            bytes,
        ) else {
            return;
        };
        remember(&mut a.clients, c.remote, &mut stats.distinct_refused);
        let room = a.ports.len() < MAX_PORTS;
        match a.ports.get_mut(&c.local_port) {
            Some(n) => *n += 1,
            None if room => {
                a.ports.insert(c.local_port, 1);
            }
            None => stats.ports_refused += 1,
        }
    }

    /// The tenant made a first contact from `c.local` to `c.remote`.
    pub fn attempted(&mut self, c: &Contact, window: Duration, bytes: Option<[u64; 2]>) {
        let stats = &mut self.stats;
        if let Some(a) = Self::address(
            &mut self.windows,
            &mut self.addresses,
            stats,
            c,
            window,
            bytes,
        ) {
            remember(&mut a.destinations, c.remote, &mut stats.distinct_refused);
        }
    }

    /// The tenant's latest `[sent, received]` byte counters: the start of a window that
    /// opened before any sample.
    pub fn note_bytes(&mut self, slot: TenantSlot, bytes: [u64; 2]) {
        if let Some(w) = self.windows.get_mut(&slot) {
            w.bytes.get_or_insert(bytes);
        }
    }

    /// Ends the windows due at `now`; `bytes` gives a tenant's latest counters. Returns
    /// one fact per address that had clients or destinations, ordered by tenant and address.
    pub fn close(
        &mut self,
        now: Duration,
        bytes: impl Fn(TenantSlot) -> Option<[u64; 2]>,
    ) -> Vec<Closed> {
        let due: Vec<TenantSlot> = self
            .windows
            .iter()
            .filter(|(_, w)| w.end <= now)
            .map(|(t, _)| *t)
            .collect();
        let mut out = Vec::new();
        for slot in due {
            let Some(w) = self.windows.remove(&slot) else {
                continue;
            };
            self.addresses -= w.addresses.len();
            let [sent, received] = match (w.bytes, bytes(slot)) {
                (Some(start), Some(end)) => [
                    end[0].saturating_sub(start[0]),
                    end[1].saturating_sub(start[1]),
                ],
                _ => [0, 0],
            };
            for (addr, a) in w.addresses {
                if a.clients.is_empty() && a.destinations.is_empty() {
                    continue;
                }
                out.push(Closed {
                    fan: Fan {
                        slot,
                        addr,
                        inbound_clients: count(&a.clients),
                        outbound_destinations: count(&a.destinations),
                        in_bytes: received,
                        out_bytes: sent,
                        at: w.end,
                    },
                    port: a.top_port(),
                });
            }
        }
        out.sort_by_key(|c| (c.fan.slot, c.fan.addr));
        out
    }

    /// Drops the window of a tenant that left the policy.
    pub fn forget(&mut self, slot: TenantSlot) {
        if let Some(w) = self.windows.remove(&slot) {
            self.addresses -= w.addresses.len();
        }
    }

    /// Addresses with an open window.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.addresses
    }

    /// Counters.
    pub fn stats(&self) -> ProxyWindowStats {
        self.stats
    }

    /// The counts of `c.local` in its tenant's window, opening the window if none is open;
    /// `None` when the address table is full.
    fn address<'a>(
        windows: &'a mut HashMap<TenantSlot, Window>,
        addresses: &mut usize,
        stats: &mut ProxyWindowStats,
        c: &Contact,
        window: Duration,
        bytes: Option<[u64; 2]>,
    ) -> Option<&'a mut Address> {
        let w = windows.entry(c.slot).or_insert_with(|| Window {
            end: c.at.saturating_add(window),
            bytes,
            addresses: HashMap::new(),
        });
        if !w.addresses.contains_key(&c.local) {
            if *addresses >= MAX_ADDRESSES {
                stats.addresses_refused += 1;
                return None;
            }
            *addresses += 1;
        }
        Some(w.addresses.entry(c.local).or_default())
    }
}

/// Adds `remote` to a bounded set; a full set counts the refusal.
fn remember(set: &mut HashSet<IpAddr>, remote: IpAddr, refused: &mut u64) {
    if set.len() < MAX_DISTINCT || set.contains(&remote) {
        set.insert(remote);
    } else {
        *refused += 1;
    }
}

fn count(set: &HashSet<IpAddr>) -> u32 {
    u32::try_from(set.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Proto;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const TENANT_ADDR: [u8; 4] = [198, 18, 1, 1];

    fn contact(remote: u32, local_port: u16, at: Duration) -> Contact {
        Contact {
            slot: TenantSlot(2),
            at,
            proto: Proto::Tcp,
            local: IpAddr::from(TENANT_ADDR),
            local_port,
            remote: IpAddr::from((0xC613_0000u32 | remote).to_be_bytes()),
            remote_port: 40_000,
        }
    }

    #[test]
    fn a_window_reports_distinct_clients_destinations_bytes_and_the_busiest_port() {
        let mut f = ProxyWindows::default();
        let w = secs(60);
        f.accepted(&contact(1, 1080, secs(10)), w, Some([1_000, 5_000]));
        for i in 1..=30 {
            f.accepted(&contact(i, 1080, secs(11)), w, Some([0, 0]));
        }
        for i in 1..=3 {
            f.accepted(&contact(100 + i, 8080, secs(12)), w, None);
        }
        for i in 0..70 {
            f.attempted(&contact(1_000 + i, 0, secs(20)), w, None);
        }
        // The same destination twice is one destination.
        f.attempted(&contact(1_000, 0, secs(21)), w, None);
        assert!(f.close(secs(69), |_| None).is_empty(), "not due");
        let bytes = HashMap::from([(TenantSlot(2), [901_000, 1_005_000])]);
        let out = f.close(secs(70), |s| bytes.get(&s).copied());
        assert_eq!(
            out,
            [Closed {
                fan: Fan {
                    slot: TenantSlot(2),
                    addr: IpAddr::from(TENANT_ADDR),
                    inbound_clients: 33,
                    outbound_destinations: 70,
                    in_bytes: 1_000_000,
                    out_bytes: 900_000,
                    at: secs(70),
                },
                port: Some(1080),
            }]
        );
        assert_eq!(f.addresses(), 0);
        assert!(
            f.close(secs(1_000), |s| bytes.get(&s).copied()).is_empty(),
            "reported once"
        );
    }

    #[test]
    fn a_window_opened_before_any_sample_starts_at_the_next_sample() {
        let mut f = ProxyWindows::default();
        f.attempted(&contact(1, 0, secs(0)), secs(10), None);
        f.note_bytes(TenantSlot(2), [100, 200]);
        f.note_bytes(TenantSlot(2), [150, 260]);
        let out = f.close(secs(10), |s| (s == TenantSlot(2)).then_some([400, 500]));
        assert_eq!((out[0].fan.out_bytes, out[0].fan.in_bytes), (300, 300));
        assert_eq!(out[0].port, None, "no clients, no listen port");
    }

    #[test]
    fn distinct_sets_and_the_address_table_are_bounded_and_count_what_they_refuse() {
        let mut f = ProxyWindows::default();
        let w = secs(60);
        for i in 0..(MAX_DISTINCT as u32 + 10) {
            f.attempted(&contact(i, 0, secs(0)), w, None);
        }
        assert_eq!(f.stats().distinct_refused, 10);
        for p in 0..(MAX_PORTS as u16 + 2) {
            f.accepted(&contact(1, 1 + p, secs(0)), w, None);
        }
        assert_eq!(f.stats().ports_refused, 2);
        let out = f.close(secs(60), |_| None);
        assert_eq!(out[0].fan.outbound_destinations, MAX_DISTINCT as u32);
        // One tenant, many addresses: the table stops at its bound.
        for i in 0..(MAX_ADDRESSES as u32 + 5) {
            let mut c = contact(1, 0, secs(100));
            c.local = IpAddr::from(i.to_be_bytes());
            f.attempted(&c, w, None);
        }
        assert_eq!(f.addresses(), MAX_ADDRESSES);
        assert_eq!(f.stats().addresses_refused, 5);
        f.forget(TenantSlot(2));
        assert_eq!(f.addresses(), 0);
    }

    #[test]
    fn busiest_port_ties_go_to_the_lower_port() {
        let mut f = ProxyWindows::default();
        f.accepted(&contact(1, 3128, secs(0)), secs(5), None);
        f.accepted(&contact(2, 1080, secs(0)), secs(5), None);
        let out = f.close(secs(5), |_| None);
        assert_eq!(out[0].port, Some(1080));
    }
}
