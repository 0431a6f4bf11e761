//! Fan-in and fan-out per tenant address, judged while the `proxy` detector's window is
//! open.
//!
//! Per tenant address it keeps the distinct remotes the address accepted connections
//! from (clients), the distinct remotes it opened first contacts to (destinations), and
//! accepted connections per listen port (the listen port with the most clients is the
//! target a proxy block would cut). TCP first contacts to an SMTP port (25, 465, 587) are
//! not destinations: a mail server relays by design, and its outbound mail is the `smtp`
//! policy's and the `spam` detector's to judge.
//!
//! Which remotes count: the programs report a remote once per contact epoch
//! ([`CONTACT_EPOCH_SHIFT`], about 68.7 s), at its first use in the epoch, so a proxy
//! that keeps relaying for the same clients to the same destinations is reported again
//! only when the epoch turns, not in every window. A remote therefore counts from its
//! report until one `window` after the end of the contact epoch it was reported in: a
//! remote still in use is reported again before that, and one no longer in use stops
//! counting within an epoch and a window. The distinct counts are of the remotes that
//! count now.
//!
//! Windows: a tenant's window opens at its first ACCEPTED or ATTEMPT event and lasts the
//! tenant's `proxy.window`; when it ends and the tenant still has remotes that count, the
//! next one opens at once, so a relay that keeps going is judged in window after window.
//! Every second ([`ProxyWindows::tick`]) each address is judged on its running counts and
//! the bytes since its window opened: the first time in a window that they cross the
//! thresholds, the address is reported at once (one [`Closed`] report mid-window, never
//! more), and when the window ends every address with remotes is reported with the
//! window's final figures (which keeps an open episode going, or lets it end).
//!
//! Bytes: the programs count bytes per tenant and direction, not per address, so every
//! address of a tenant gets the tenant's received and sent bytes since its window opened
//! (the difference of the tenant's counters, sampled every second). For the usual
//! one-address tenant that is exact to a second; a tenant with several addresses is
//! judged on its total.
//!
//! Bounds: at most [`MAX_ADDRESSES`] addresses with remotes over all tenants, and per
//! address [`MAX_DISTINCT`] clients and destinations and [`MAX_PORTS`] listen ports.
//! What does not fit is counted in [`ProxyWindowStats`]; a full distinct set keeps its
//! count at the bound, far above any proxy threshold.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::Fan;
use warden_common::facts::CONTACT_EPOCH_SHIFT;
use warden_common::is_smtp_port;
use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::{Contact, Proto};

/// Tenant addresses with remotes, over all tenants.
pub const MAX_ADDRESSES: usize = 65_536;
/// Distinct clients, and distinct destinations, remembered per address.
pub const MAX_DISTINCT: usize = 4_096;
/// Listen ports counted per address.
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

/// The end of the contact epoch `at` falls in (the programs' `now >> CONTACT_EPOCH_SHIFT`).
pub fn contact_epoch_end(at: Duration) -> Duration {
    let ns = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
    let next = (ns >> CONTACT_EPOCH_SHIFT).saturating_add(1);
    Duration::from_nanos(next.checked_shl(CONTACT_EPOCH_SHIFT).unwrap_or(u64::MAX))
}

/// Distinct remotes, each counting until its own time.
#[derive(Debug, Default)]
struct Remotes {
    until: HashMap<IpAddr, Duration>,
    /// The same entries, soonest first.
    order: BTreeSet<(Duration, IpAddr)>,
}

impl Remotes {
    /// Makes `remote` count until `until` (or later, if it already did); a full set
    /// refuses a new remote and counts it in `refused`.
    fn note(&mut self, remote: IpAddr, until: Duration, refused: &mut u64) {
        let full = self.until.len() >= MAX_DISTINCT;
        match self.until.get_mut(&remote) {
            Some(t) if *t >= until => {}
            Some(t) => {
                self.order.remove(&(*t, remote));
                *t = until;
                self.order.insert((until, remote));
            }
            None if full => *refused += 1,
            None => {
                self.until.insert(remote, until);
                self.order.insert((until, remote));
            }
        }
    }

    /// Forgets the remotes that no longer count at `now`.
    fn expire(&mut self, now: Duration) {
        while let Some(&(t, remote)) = self.order.first() {
            if t > now {
                break;
            }
            self.order.pop_first();
            self.until.remove(&remote);
        }
    }

    fn count(&self) -> u32 {
        u32::try_from(self.until.len()).unwrap_or(u32::MAX)
    }

    fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

/// One address's remotes and listen ports, and whether its current window reported it.
#[derive(Debug, Default)]
struct Address {
    clients: Remotes,
    destinations: Remotes,
    ports: HashMap<u16, u32>,
    /// Reported mid-window in the tenant's current window.
    reported: bool,
}

impl Address {
    /// The listen port with the most accepted connections (the lower port on a tie).
    fn top_port(&self) -> Option<u16> {
        self.ports
            .iter()
            .max_by(|(pa, na), (pb, nb)| na.cmp(nb).then(pb.cmp(pa)))
            .map(|(p, _)| *p)
    }

    fn is_empty(&self) -> bool {
        self.clients.is_empty() && self.destinations.is_empty()
    }
}

/// One tenant's window.
#[derive(Debug)]
struct Window {
    end: Duration,
    /// The tenant's `[sent, received]` byte counters when the window opened; `None` until
    /// the first sample after it did.
    bytes: Option<[u64; 2]>,
}

/// A report on one address: its figures, and its busiest listen port.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Closed {
    /// The fact (`at`: when it was judged, the window's end for a closing report).
    pub fan: Fan,
    /// The listen port with the most clients, if the address accepted any.
    pub port: Option<u16>,
}

/// What [`ProxyWindows::tick`] needs of each tenant's policy.
pub trait ProxyJudge {
    /// The tenant's `proxy.window`; `None` for a tenant the policy no longer has.
    fn window(&self, slot: TenantSlot) -> Option<Duration>;
    /// Whether the figures cross the tenant's `proxy` thresholds.
    fn crosses(&self, fan: &Fan) -> bool;
    /// The tenant's latest `[sent, received]` byte counters.
    fn bytes(&self, slot: TenantSlot) -> Option<[u64; 2]>;
}

/// Every tenant's open window and every address's remotes.
#[derive(Debug, Default)]
pub struct ProxyWindows {
    windows: HashMap<TenantSlot, Window>,
    addresses: HashMap<(TenantSlot, IpAddr), Address>,
    stats: ProxyWindowStats,
}

impl ProxyWindows {
    /// The tenant accepted a connection: `c.remote` is a client of `c.local:c.local_port`.
    /// `window` is the tenant's `proxy.window`, `bytes` its latest `[sent, received]`
    /// counters.
    pub fn accepted(&mut self, c: &Contact, window: Duration, bytes: Option<[u64; 2]>) {
        let stats = &mut self.stats;
        let Some(a) = address(
            &mut self.windows,
            &mut self.addresses,
            stats,
            c,
            window,
            bytes,
        ) else {
            return;
        };
        a.clients.note(
            c.remote,
            counts_until(c.at, window),
            &mut stats.distinct_refused,
        );
        let room = a.ports.len() < MAX_PORTS;
        match a.ports.get_mut(&c.local_port) {
            Some(n) => *n = n.saturating_add(1),
            None if room => {
                a.ports.insert(c.local_port, 1);
            }
            None => stats.ports_refused += 1,
        }
    }

    /// The tenant made a first contact from `c.local` to `c.remote` (not counted when it
    /// is TCP to an SMTP port).
    pub fn attempted(&mut self, c: &Contact, window: Duration, bytes: Option<[u64; 2]>) {
        if c.proto == Proto::Tcp && is_smtp_port(c.remote_port) {
            return;
        }
        let stats = &mut self.stats;
        if let Some(a) = address(
            &mut self.windows,
            &mut self.addresses,
            stats,
            c,
            window,
            bytes,
        ) {
            a.destinations.note(
                c.remote,
                counts_until(c.at, window),
                &mut stats.distinct_refused,
            );
        }
    }

    /// The tenant's latest `[sent, received]` byte counters: the start of a window that
    /// opened before any sample.
    pub fn note_bytes(&mut self, slot: TenantSlot, bytes: [u64; 2]) {
        if let Some(w) = self.windows.get_mut(&slot) {
            w.bytes.get_or_insert(bytes);
        }
    }

    /// The once-a-second judgement at `now`: forgets remotes that no longer count,
    /// reports each address whose running figures cross its tenant's thresholds for the
    /// first time in the window, and ends the windows due (reporting every address with
    /// remotes, and opening the tenant's next window at once while it has some). Reports
    /// are ordered by tenant and address.
    pub fn tick(&mut self, now: Duration, judge: &impl ProxyJudge) -> Vec<Closed> {
        let mut out = Vec::new();
        for ((slot, addr), a) in &mut self.addresses {
            a.clients.expire(now);
            a.destinations.expire(now);
            let Some(w) = self.windows.get(slot) else {
                continue;
            };
            let [sent, received] = match (w.bytes, judge.bytes(*slot)) {
                (Some(start), Some(end)) => [
                    end[0].saturating_sub(start[0]),
                    end[1].saturating_sub(start[1]),
                ],
                _ => [0, 0],
            };
            let ends = w.end <= now;
            let fan = Fan {
                slot: *slot,
                addr: *addr,
                inbound_clients: a.clients.count(),
                outbound_destinations: a.destinations.count(),
                in_bytes: received,
                out_bytes: sent,
                at: if ends { w.end } else { now },
            };
            let report = if ends {
                a.reported = false;
                !a.is_empty()
            } else if !a.reported && judge.crosses(&fan) {
                a.reported = true;
                true
            } else {
                false
            };
            if report {
                out.push(Closed {
                    fan,
                    port: a.top_port(),
                });
            }
        }
        self.addresses.retain(|_, a| !a.is_empty());
        let due: Vec<TenantSlot> = self
            .windows
            .iter()
            .filter(|(_, w)| w.end <= now)
            .map(|(slot, _)| *slot)
            .collect();
        let active: HashSet<TenantSlot> = if due.is_empty() {
            HashSet::new()
        } else {
            self.addresses.keys().map(|(slot, _)| *slot).collect()
        };
        for slot in due {
            self.windows.remove(&slot);
            let Some(len) = judge.window(slot) else {
                self.forget(slot);
                continue;
            };
            if active.contains(&slot) {
                self.windows.insert(
                    slot,
                    Window {
                        end: now.saturating_add(len),
                        bytes: judge.bytes(slot),
                    },
                );
            }
        }
        out.sort_by_key(|c| (c.fan.slot, c.fan.addr));
        out
    }

    /// Drops the window and remotes of a tenant that left the policy.
    pub fn forget(&mut self, slot: TenantSlot) {
        self.windows.remove(&slot);
        self.addresses.retain(|(s, _), _| *s != slot);
    }

    /// Addresses with remotes.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.addresses.len()
    }

    /// Counters.
    pub fn stats(&self) -> ProxyWindowStats {
        self.stats
    }
}

/// The state of `c.local`, opening its tenant's window if none is open; `None` when the
/// address table is full.
fn address<'a>(
    windows: &mut HashMap<TenantSlot, Window>,
    addresses: &'a mut HashMap<(TenantSlot, IpAddr), Address>,
    stats: &mut ProxyWindowStats,
    c: &Contact,
    window: Duration,
    bytes: Option<[u64; 2]>,
) -> Option<&'a mut Address> {
    windows.entry(c.slot).or_insert_with(|| Window {
        end: c.at.saturating_add(window),
        bytes,
    });
    let key = (c.slot, c.local);
    if !addresses.contains_key(&key) && addresses.len() >= MAX_ADDRESSES {
        stats.addresses_refused += 1;
        return None;
    }
    Some(addresses.entry(key).or_default())
}

/// Until when a remote reported at `at` counts: one window past the end of its contact
/// epoch (see the module documentation).
fn counts_until(at: Duration, window: Duration) -> Duration {
    contact_epoch_end(at).saturating_add(window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::symmetry;
    use std::cell::Cell;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The start of a contact epoch, so tests know where epochs turn.
    const EPOCH: u64 = 1 << CONTACT_EPOCH_SHIFT;

    fn epoch(n: u64) -> Duration {
        Duration::from_nanos(n * EPOCH)
    }

    /// Times from the start of epoch 100.
    fn t(s: u64) -> Duration {
        epoch(100) + secs(s)
    }

    const TENANT_ADDR: [u8; 4] = [198, 18, 1, 1];
    const W: Duration = Duration::from_secs(60);

    fn contact(remote: u32, local_port: u16, at: Duration) -> Contact {
        Contact {
            slot: TenantSlot(2),
            at,
            proto: Proto::Tcp,
            local: IpAddr::from(TENANT_ADDR),
            local_port,
            remote: IpAddr::from((0xC613_0000u32 | remote).to_be_bytes()),
            remote_port: 443,
        }
    }

    /// A tenant with thresholds 5 and 5 (more than), symmetry 0.8, `W`, and byte
    /// counters the test sets.
    struct Judge {
        bytes: Cell<Option<[u64; 2]>>,
        window: Option<Duration>,
    }

    impl Judge {
        fn new() -> Judge {
            Judge {
                bytes: Cell::new(Some([0, 0])),
                window: Some(W),
            }
        }
    }

    impl ProxyJudge for Judge {
        fn window(&self, _: TenantSlot) -> Option<Duration> {
            self.window
        }
        fn crosses(&self, f: &Fan) -> bool {
            f.inbound_clients > 5
                && f.outbound_destinations > 5
                && symmetry(f.in_bytes, f.out_bytes) >= 0.8
        }
        fn bytes(&self, _: TenantSlot) -> Option<[u64; 2]> {
            self.bytes.get()
        }
    }

    /// `n` clients on port 3128 and `n` destinations from `first`, at `at`.
    fn relay(f: &mut ProxyWindows, first: u32, n: u32, at: Duration) {
        for i in first..first + n {
            f.accepted(&contact(i, 3128, at), W, Some([0, 0]));
            f.attempted(&contact(10_000 + i, 0, at), W, Some([0, 0]));
        }
    }

    fn counts(c: &Closed) -> (u32, u32, Duration) {
        (c.fan.inbound_clients, c.fan.outbound_destinations, c.fan.at)
    }

    #[test]
    fn a_relay_is_reported_as_soon_as_it_crosses_and_once_per_window() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        relay(&mut f, 0, 4, t(1));
        judge.bytes.set(Some([1_000, 1_000]));
        assert!(f.tick(t(2), &judge).is_empty(), "4 and 4 are under 5 and 5");
        relay(&mut f, 4, 4, t(3));
        judge.bytes.set(Some([2_000, 2_100]));
        let out = f.tick(t(4), &judge);
        assert_eq!(out.len(), 1, "crossed mid-window: {out:?}");
        assert_eq!(counts(&out[0]), (8, 8, t(4)));
        assert_eq!(out[0].port, Some(3128));
        assert_eq!((out[0].fan.out_bytes, out[0].fan.in_bytes), (2_000, 2_100));
        relay(&mut f, 8, 10, t(5));
        for s in 6..61 {
            assert!(f.tick(t(s), &judge).is_empty(), "reported again at {s}");
        }
        // The window (opened at 1 s) ends at 61 s with its final figures.
        let out = f.tick(t(61), &judge);
        assert_eq!(out.len(), 1);
        assert_eq!(counts(&out[0]), (18, 18, t(61)));
    }

    #[test]
    fn a_relay_that_keeps_going_without_new_reports_is_reported_again_next_window() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        // Every remote reported once, early in epoch 100: the kernel will not report
        // them again before epoch 101 (68.7 s), though the relay goes on.
        relay(&mut f, 0, 10, t(1));
        judge.bytes.set(Some([10_000, 10_000]));
        assert_eq!(f.tick(t(2), &judge).len(), 1);
        judge.bytes.set(Some([60_000, 60_000]));
        assert_eq!(f.tick(t(61), &judge).len(), 1, "the window's end");
        // The next window opened at once; one second of relaying crosses again.
        judge.bytes.set(Some([61_000, 61_000]));
        let out = f.tick(t(62), &judge);
        assert_eq!(out.len(), 1, "seen again in the next window: {out:?}");
        assert_eq!(counts(&out[0]), (10, 10, t(62)));
        assert!(f.tick(t(63), &judge).is_empty(), "once per window");
    }

    #[test]
    fn remotes_count_until_one_window_after_their_contact_epoch_then_the_windows_stop() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        relay(&mut f, 0, 10, t(1));
        let until = epoch(101) + W;
        let mut now = t(1);
        let mut reports = 0;
        while now < until + secs(130) {
            now += secs(1);
            judge.bytes.set(Some([now.as_secs(), now.as_secs()]));
            for c in f.tick(now, &judge) {
                reports += 1;
                assert!(c.fan.at < until, "{c:?} counted after {until:?}");
                assert_eq!(c.fan.inbound_clients, 10);
            }
        }
        assert!(reports >= 3, "{reports} reports over two windows");
        assert_eq!(f.addresses(), 0, "nothing counts any more");
        assert!(f.windows.is_empty(), "no window opens without remotes");
    }

    #[test]
    fn a_remote_reported_again_in_the_next_epoch_keeps_counting() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        relay(&mut f, 0, 10, t(1));
        // Epoch 101: the relay's remotes are reported again at their first use.
        f.tick(epoch(101) + secs(5), &judge);
        relay(&mut f, 0, 10, epoch(101) + secs(10));
        let out = f.tick(epoch(102) + W - secs(1), &judge);
        let c = out.last().copied().map(|c| c.fan.inbound_clients);
        assert!(
            f.addresses() == 1 && (c.is_none() || c == Some(10)),
            "still counting: {out:?}"
        );
        f.tick(epoch(102) + W, &judge);
        assert_eq!(f.addresses(), 0);
    }

    #[test]
    fn a_web_server_and_a_load_balancer_do_not_cross() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        // Web server: 200 clients, 4 backends, ten times more bytes out than in.
        for i in 0..200 {
            f.accepted(&contact(i, 443, t(1)), W, Some([0, 0]));
        }
        for b in 0..4 {
            f.attempted(&contact(50_000 + b, 0, t(1)), W, Some([0, 0]));
        }
        for s in 2..61 {
            judge.bytes.set(Some([s * 10_000, s * 1_000]));
            assert!(f.tick(t(s), &judge).is_empty(), "web server at {s}");
        }
        // A load balancer: as many bytes each way, still 4 backends.
        for s in 61..121 {
            judge.bytes.set(Some([s * 10_000, s * 10_000]));
            let out = f.tick(t(s), &judge);
            assert!(
                out.iter().all(|c| !judge.crosses(&c.fan)),
                "load balancer at {s}: {out:?}"
            );
        }
    }

    #[test]
    fn smtp_destinations_are_not_counted() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        for i in 0..10 {
            f.accepted(&contact(i, 25, t(1)), W, Some([0, 0]));
            let mut c = contact(10_000 + i, 0, t(1));
            c.remote_port = [25, 465, 587][i as usize % 3];
            f.attempted(&c, W, Some([0, 0]));
        }
        judge.bytes.set(Some([5_000, 5_000]));
        assert!(f.tick(t(2), &judge).is_empty());
        let out = f.tick(t(61), &judge);
        assert_eq!(counts(&out[0]), (10, 0, t(61)), "a mail relay's MX are not");
    }

    #[test]
    fn a_window_opened_before_any_sample_starts_at_the_next_sample() {
        let mut f = ProxyWindows::default();
        let judge = Judge::new();
        f.attempted(&contact(1, 0, t(0)), secs(10), None);
        f.note_bytes(TenantSlot(2), [100, 200]);
        f.note_bytes(TenantSlot(2), [150, 260]);
        judge.bytes.set(Some([400, 500]));
        let out = f.tick(t(10), &judge);
        assert_eq!((out[0].fan.out_bytes, out[0].fan.in_bytes), (300, 300));
        assert_eq!(out[0].port, None, "no clients, no listen port");
    }

    #[test]
    fn a_tenant_gone_from_the_policy_is_forgotten_when_its_window_ends() {
        let mut f = ProxyWindows::default();
        let mut judge = Judge::new();
        relay(&mut f, 0, 3, t(0));
        judge.window = None;
        f.tick(t(60), &judge);
        assert_eq!(f.addresses(), 0);
        assert!(f.windows.is_empty());
    }

    #[test]
    fn distinct_sets_and_the_address_table_are_bounded_and_count_what_they_refuse() {
        let mut f = ProxyWindows::default();
        for i in 0..(MAX_DISTINCT as u32 + 10) {
            f.attempted(&contact(i, 0, t(0)), W, None);
        }
        assert_eq!(f.stats().distinct_refused, 10);
        for p in 0..(MAX_PORTS as u16 + 2) {
            f.accepted(&contact(1, 1 + p, t(0)), W, None);
        }
        assert_eq!(f.stats().ports_refused, 2);
        let out = f.tick(t(60), &Judge::new());
        assert_eq!(out[0].fan.outbound_destinations, MAX_DISTINCT as u32);
        f.forget(TenantSlot(2));
        // One tenant, many addresses: the table stops at its bound.
        for i in 0..(MAX_ADDRESSES as u32 + 5) {
            let mut c = contact(1, 0, t(61));
            c.local = IpAddr::from(i.to_be_bytes());
            f.attempted(&c, W, None);
        }
        assert_eq!(f.addresses(), MAX_ADDRESSES);
        assert_eq!(f.stats().addresses_refused, 5);
        f.forget(TenantSlot(2));
        assert_eq!(f.addresses(), 0);
    }

    #[test]
    fn busiest_port_ties_go_to_the_lower_port() {
        let mut f = ProxyWindows::default();
        f.accepted(&contact(1, 3128, t(0)), secs(5), None);
        f.accepted(&contact(2, 1080, t(0)), secs(5), None);
        let out = f.tick(t(5), &Judge::new());
        assert_eq!(out[0].port, Some(1080));
    }

    #[test]
    fn contact_epochs_end_where_the_programs_turn_them() {
        assert_eq!(contact_epoch_end(epoch(3)), epoch(4));
        assert_eq!(
            contact_epoch_end(epoch(4) - Duration::from_nanos(1)),
            epoch(4)
        );
        assert_eq!(contact_epoch_end(Duration::ZERO), epoch(1));
    }
}
