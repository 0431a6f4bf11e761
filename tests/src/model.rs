//! A reference model of the kernel programs' verdict and counters, written from the
//! contract (README "What it enforces", `ebpf/programs/src/parse.rs`, `enforce/` and
//! `neighbour.rs` as documented), in plain Rust over a frame's bytes.
//!
//! The differential test (Tier 1, `differential`) feeds the same frames to the four
//! programs and to [`expect`] and compares verdict and counter changes: a difference is
//! a bug in one of them, and the model, being simple code that reads like the
//! documentation, is the one to trust first. It covers what decides a verdict without
//! time: parsing (VLAN stacks, IPv4 options and fragments, IPv6 extension chains, ARP,
//! ND), attribution (addresses, bound MACs), binding (spoofing), suspension with its
//! neighbour and management exemptions, unparsed frames and the interface's passed
//! ethertypes, and SMTP block/allow. Rates (bandwidth plans, SMTP rates, throttles) and
//! detections' blocks depend on the clock and the daemon; the policies the test uses
//! have none.

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_common::reason;

/// A MAC address.
pub type Mac = [u8; 6];

/// One tenant as the model sees it.
#[derive(Clone, Debug, Default)]
pub struct Tenant {
    /// The kernel's slot for it.
    pub index: u32,
    pub v4: Vec<(Ipv4Addr, u8)>,
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// Bound MACs: its frames must come from one of them.
    pub macs: Vec<Mac>,
    pub suspended: bool,
    /// Outbound SMTP allowed (otherwise blocked).
    pub smtp_allow: bool,
}

/// What the programs are configured with.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub tenants: Vec<Tenant>,
    pub management_v4: Vec<(Ipv4Addr, u8)>,
    pub management_v6: Vec<(Ipv6Addr, u8)>,
    /// Ethertypes the interface the programs run on passes unparsed from tenants.
    pub pass_ethertypes: Vec<u16>,
}

/// Where a passed packet is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Tenant(u32),
    NoTenant,
    Malformed,
}

/// A verdict with the counters it moves (one packet of the frame's length each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Passed; counted in the slot.
    Pass(Slot),
    /// Dropped: counted to the tenant and in its drops for `reason`.
    Drop { tenant: u32, reason: usize },
    /// Dropped from a sender bound to nobody: global SPOOFED.
    Spoofed,
    /// Dropped from a tenant, malformed: global MALFORMED.
    MalformedDrop,
    /// Dropped from a tenant, unparsed, from no bound MAC: global UNPARSED.
    UnparsedDrop,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_ARP: u16 = 0x0806;
const ETH_8021Q: u16 = 0x8100;
const ETH_8021AD: u16 = 0x88a8;

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

const ND_RS: u8 = 133;
const ND_RA: u8 = 134;
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;
const ND_REDIRECT: u8 = 137;

/// What the parser found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Family {
    None,
    V4,
    V6,
}

#[derive(Clone, Debug)]
struct Parsed {
    family: Family,
    src_mac: Mac,
    /// 4 or 16 bytes.
    local: Vec<u8>,
    remote: Vec<u8>,
    is_claim: bool,
    unparsed: bool,
    ether_type: u16,
    l3: usize,
    l4: usize,
    l4_proto: u8,
    dport: u16,
}

struct Malformed;

/// The frame's `n` bytes at `at`, if it has them.
fn get(f: &[u8], at: usize, n: usize) -> Option<&[u8]> {
    f.get(at..at.checked_add(n)?)
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// `n` bytes at `at` that must lie before `end` (the IP packet's) and in the frame.
fn within(f: &[u8], end: usize, at: usize, n: usize) -> Result<&[u8], Malformed> {
    if at + n > end {
        return Err(Malformed);
    }
    get(f, at, n).ok_or(Malformed)
}

/// The end of an IP packet at `off` announcing `ip_len` bytes (see the kernel's
/// `ip_end`): a length field of 0 counts as the frame's only past 64 KiB.
fn ip_end(len: usize, off: usize, ip_len: usize, zero: usize) -> Result<usize, Malformed> {
    let end = if ip_len == zero && len > off + 65_535 + zero {
        len
    } else {
        off + ip_len
    };
    if end > len {
        return Err(Malformed);
    }
    Ok(end)
}

fn parse(f: &[u8], out: bool) -> Result<Parsed, Malformed> {
    let eth = get(f, 0, 14).ok_or(Malformed)?;
    let mut p = Parsed {
        family: Family::None,
        src_mac: eth[6..12].try_into().expect("6 bytes"),
        local: Vec::new(),
        remote: Vec::new(),
        is_claim: false,
        unparsed: false,
        ether_type: 0,
        l3: 0,
        l4: 0,
        l4_proto: 0,
        dport: 0,
    };
    let mut et = be16(&eth[12..14]);
    let mut off = 14;
    for _ in 0..2 {
        if et != ETH_8021Q && et != ETH_8021AD {
            break;
        }
        let tag = get(f, off, 4).ok_or(Malformed)?;
        et = be16(&tag[2..4]);
        off += 4;
    }
    p.l3 = off;
    match et {
        ETH_IPV4 => parse_v4(f, off, out, &mut p)?,
        ETH_IPV6 => parse_v6(f, off, out, &mut p)?,
        ETH_ARP => {
            let a = get(f, off, 28).ok_or(Malformed)?;
            p.is_claim = true;
            if a[..6] != [0, 1, 0x08, 0x00, 6, 4] {
                p.unparsed = true;
            } else {
                p.family = Family::V4;
                let (sender, target) = (a[14..18].to_vec(), a[24..28].to_vec());
                (p.local, p.remote) = if out {
                    (sender, target)
                } else {
                    (target, sender)
                };
            }
        }
        ETH_8021Q | ETH_8021AD => p.unparsed = true,
        other => {
            p.unparsed = true;
            p.ether_type = other;
        }
    }
    Ok(p)
}

fn parse_v4(f: &[u8], off: usize, out: bool, p: &mut Parsed) -> Result<(), Malformed> {
    let h = get(f, off, 20).ok_or(Malformed)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if h[0] >> 4 != 4 || ihl < 20 {
        return Err(Malformed);
    }
    let total = usize::from(be16(&h[2..4]));
    if total != 0 && total < ihl {
        return Err(Malformed);
    }
    let end = ip_end(f.len(), off, total, 0)?;
    if off + ihl > end || off + ihl > f.len() {
        return Err(Malformed);
    }
    p.family = Family::V4;
    let (src, dst) = (h[12..16].to_vec(), h[16..20].to_vec());
    (p.local, p.remote) = if out { (src, dst) } else { (dst, src) };
    if be16(&h[6..8]) & 0x1fff != 0 {
        return Ok(());
    }
    parse_l4(f, end, off + ihl, h[9], out, p)
}

fn parse_v6(f: &[u8], off: usize, out: bool, p: &mut Parsed) -> Result<(), Malformed> {
    let h = get(f, off, 40).ok_or(Malformed)?;
    if h[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let payload = usize::from(be16(&h[4..6]));
    let end = ip_end(f.len(), off, 40 + payload, 40)?;
    p.family = Family::V6;
    let hop_limit = h[7];
    let (src, dst) = (h[8..24].to_vec(), h[24..40].to_vec());
    (p.local, p.remote) = if out { (src, dst) } else { (dst, src) };
    let mut next = h[6];
    let mut off = off + 40;
    for _ in 0..6 {
        match next {
            0 | 43 | 60 => {
                let e = within(f, end, off, 2)?;
                next = e[0];
                off += (usize::from(e[1]) + 1) * 8;
                if off > end || off > f.len() {
                    return Err(Malformed);
                }
            }
            51 => {
                let e = within(f, end, off, 2)?;
                next = e[0];
                off += (usize::from(e[1]) + 2) * 4;
                if off > end || off > f.len() {
                    return Err(Malformed);
                }
            }
            44 => {
                let e = within(f, end, off, 8)?;
                if be16(&e[2..4]) & 0xfff8 != 0 {
                    return Ok(());
                }
                next = e[0];
                off += 8;
            }
            _ => {
                return parse_l4_v6(f, end, off, next, hop_limit, out, p);
            }
        }
    }
    Err(Malformed)
}

fn parse_l4_v6(
    f: &[u8],
    end: usize,
    off: usize,
    proto: u8,
    hop_limit: u8,
    out: bool,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    if proto == ICMPV6 {
        let h = within(f, end, off, 4)?;
        let ty = h[0];
        if matches!(ty, ND_NS | ND_NA | ND_RS) && hop_limit == 255 {
            p.is_claim = true;
        }
        if matches!(ty, ND_NS | ND_NA) && hop_limit == 255 {
            let nd = within(f, end, off, 24)?;
            if out && ty == ND_NA {
                p.local = nd[8..24].to_vec();
            }
        }
        p.l4_proto = proto;
        p.l4 = off;
        return Ok(());
    }
    parse_l4(f, end, off, proto, out, p)
}

fn parse_l4(
    f: &[u8],
    end: usize,
    off: usize,
    proto: u8,
    _out: bool,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    match proto {
        TCP => {
            let h = within(f, end, off, 20)?;
            if h[12] < 0x50 {
                return Err(Malformed);
            }
            p.dport = be16(&h[2..4]);
        }
        UDP => {
            let h = within(f, end, off, 8)?;
            p.dport = be16(&h[2..4]);
        }
        ICMP | ICMPV6 => {
            within(f, end, off, 4)?;
        }
        _ => {}
    }
    p.l4_proto = proto;
    p.l4 = off;
    Ok(())
}

fn in_v4(addr: &[u8], net: Ipv4Addr, plen: u8) -> bool {
    let a = u32::from_be_bytes(addr.try_into().expect("4 bytes"));
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    a & mask == u32::from(net) & mask
}

fn in_v6(addr: &[u8], net: Ipv6Addr, plen: u8) -> bool {
    let a = u128::from_be_bytes(addr.try_into().expect("16 bytes"));
    let mask = u128::MAX.checked_shl(128 - u32::from(plen)).unwrap_or(0);
    a & mask == u128::from(net) & mask
}

impl Policy {
    fn tenant(&self, index: u32) -> &Tenant {
        self.tenants
            .iter()
            .find(|t| t.index == index)
            .expect("an index the model returned")
    }

    /// The tenant owning `addr` by the longest matching prefix.
    fn by_address(&self, family: Family, addr: &[u8]) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        for t in &self.tenants {
            let lens: Vec<u8> = match family {
                Family::V4 => {
                    t.v4.iter()
                        .filter(|(n, l)| in_v4(addr, *n, *l))
                        .map(|(_, l)| *l)
                        .collect()
                }
                Family::V6 => {
                    t.v6.iter()
                        .filter(|(n, l)| in_v6(addr, *n, *l))
                        .map(|(_, l)| *l)
                        .collect()
                }
                Family::None => Vec::new(),
            };
            for l in lens {
                if best.is_none_or(|(b, _)| l > b) {
                    best = Some((l, t.index));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    fn by_mac(&self, mac: &Mac) -> Option<u32> {
        self.tenants
            .iter()
            .find(|t| t.macs.contains(mac))
            .map(|t| t.index)
    }

    fn any_macs(&self) -> bool {
        self.tenants.iter().any(|t| !t.macs.is_empty())
    }

    fn is_management(&self, addr: &[u8]) -> bool {
        match addr.len() {
            4 => self.management_v4.iter().any(|(n, l)| in_v4(addr, *n, *l)),
            16 => self.management_v6.iter().any(|(n, l)| in_v6(addr, *n, *l)),
            _ => false,
        }
    }
}

impl Parsed {
    fn local_is_unowned(&self) -> bool {
        match self.family {
            Family::V4 => self.local == [0, 0, 0, 0],
            Family::V6 => {
                (self.local[0] == 0xfe && self.local[1] & 0xc0 == 0x80)
                    || self.local.iter().all(|b| *b == 0)
            }
            Family::None => false,
        }
    }

    fn remote_is_multicast(&self) -> bool {
        match self.family {
            Family::V4 => self.remote[0] & 0xf0 == 0xe0 || self.remote == [0xff; 4],
            Family::V6 => self.remote[0] == 0xff,
            Family::None => false,
        }
    }
}

/// Nothing after `end` but the padding of a minimum frame.
fn nothing_after(len: usize, end: usize) -> bool {
    len <= 64 || len == end
}

/// An ND message: (type, code, end of packet, first 2 bytes of its destination).
fn nd_message(f: &[u8], p: &Parsed) -> Option<(u8, u8, usize, [u8; 2])> {
    if p.family != Family::V6 || p.l4_proto != ICMPV6 || p.l4 > 1024 {
        return None;
    }
    let ip = get(f, p.l3, 40)?;
    let h = get(f, p.l4, 4)?;
    if ip[7] != 255 || !(ND_RS..=ND_REDIRECT).contains(&h[0]) {
        return None;
    }
    let end = p.l3 + 40 + usize::from(be16(&ip[4..6]));
    Some((h[0], h[1], end, [ip[24], ip[25]]))
}

fn nd_body(ty: u8) -> usize {
    match ty {
        ND_RS => 8,
        ND_RA => 16,
        ND_NS | ND_NA => 24,
        _ => 40,
    }
}

/// Walks ND options from `at` to `end`; with `foreign`, true on an option naming
/// another MAC than `mac` or on options that cannot be followed; without, true when
/// they end exactly at `end` (within 8 options and offset 512).
fn walk(f: &[u8], mac: &Mac, mut at: usize, end: usize, foreign: bool) -> bool {
    for _ in 0..8 {
        if at == end {
            return !foreign;
        }
        if at > end || at > 512 {
            return foreign;
        }
        let Some(o) = get(f, at, 8) else {
            return foreign;
        };
        if o[1] == 0 {
            return foreign;
        }
        if foreign && (o[0] == 1 || o[0] == 2) && (o[1] != 1 || o[2..8] != mac[..]) {
            return true;
        }
        at += usize::from(o[1]) * 8;
    }
    foreign
}

fn is_arp_claim(p: &Parsed) -> bool {
    p.family == Family::V4 && p.is_claim
}

fn is_neighbour(f: &[u8], p: &Parsed, out: bool) -> bool {
    if is_arp_claim(p) {
        let Some(a) = get(f, p.l3, 28) else {
            return false;
        };
        return a[..7] == [0, 1, 0x08, 0x00, 6, 4, 0]
            && (a[7] == 1 || a[7] == 2)
            && nothing_after(f.len(), p.l3 + 28);
    }
    let Some((ty, code, end, dst)) = nd_message(f, p) else {
        return false;
    };
    let allowed = !out || matches!(ty, ND_RS | ND_NS | ND_NA);
    let max = if out { 56 } else { 256 };
    let on_link =
        !out || (dst[0] == 0xfe && dst[1] & 0xc0 == 0x80) || (dst[0] == 0xff && dst[1] == 0x02);
    let body = nd_body(ty);
    allowed
        && on_link
        && code == 0
        && p.l4 == p.l3 + 40
        && nothing_after(f.len(), end)
        && end >= p.l4 + body
        && end - p.l4 <= max
        && walk(f, &p.src_mac, p.l4 + body, end, false)
}

fn names_foreign_mac(f: &[u8], p: &Parsed) -> bool {
    if is_arp_claim(p) {
        return match get(f, p.l3, 28) {
            Some(a) => a[8..14] != p.src_mac[..],
            None => true,
        };
    }
    match nd_message(f, p) {
        Some((ty, _, end, _)) => walk(f, &p.src_mac, p.l4 + nd_body(ty), end, true),
        None => false,
    }
}

/// The other side's address as the suspension's management check reads it from the
/// frame: ARP's target (from a tenant) or sender (to it), IP's destination or source.
fn remote_for_management(f: &[u8], p: &Parsed, out: bool) -> Option<Vec<u8>> {
    let at = match p.family {
        Family::V4 if p.is_claim => p.l3 + if out { 24 } else { 14 },
        Family::V4 => p.l3 + if out { 16 } else { 12 },
        Family::V6 => p.l3 + if out { 24 } else { 8 },
        Family::None => return None,
    };
    let n = if p.family == Family::V6 { 16 } else { 4 };
    get(f, at, n).map(<[u8]>::to_vec)
}

/// What the programs do with `frame` from a tenant (`out`) or to one, under `policy`.
pub fn expect(policy: &Policy, frame: &[u8], out: bool) -> Expect {
    let Ok(p) = parse(frame, out) else {
        return if out {
            Expect::MalformedDrop
        } else {
            Expect::Pass(Slot::Malformed)
        };
    };
    let any_macs = policy.any_macs();
    let mac_tenant = || {
        if any_macs {
            policy.by_mac(&p.src_mac)
        } else {
            None
        }
    };
    if out && p.unparsed && !(p.ether_type != 0 && policy.pass_ethertypes.contains(&p.ether_type)) {
        return match mac_tenant() {
            Some(t) => Expect::Drop {
                tenant: t,
                reason: reason::UNPARSED,
            },
            None => Expect::UnparsedDrop,
        };
    }
    let by_addr = policy.by_address(p.family, &p.local);
    let tenant = if out && p.family == Family::None {
        match mac_tenant() {
            Some(t) => t,
            None => return Expect::Pass(Slot::NoTenant),
        }
    } else if out {
        let claim = if p.is_claim {
            reason::SPOOF_ARP
        } else {
            reason::SPOOF_IP
        };
        match mac_tenant() {
            Some(m) => {
                if p.is_claim && names_foreign_mac(frame, &p) {
                    return Expect::Drop {
                        tenant: m,
                        reason: reason::SPOOF_ARP,
                    };
                }
                if by_addr == Some(m) || p.local_is_unowned() {
                    m
                } else {
                    return Expect::Drop {
                        tenant: m,
                        reason: claim,
                    };
                }
            }
            None => match by_addr {
                Some(t) if !policy.tenant(t).macs.is_empty() => {
                    return Expect::Drop {
                        tenant: t,
                        reason: reason::SPOOF_MAC,
                    }
                }
                Some(t) => t,
                None if p.local_is_unowned() && (p.is_claim || p.remote_is_multicast()) => {
                    return Expect::Pass(Slot::NoTenant)
                }
                None => return Expect::Spoofed,
            },
        }
    } else {
        match by_addr {
            Some(t) => t,
            None => return Expect::Pass(Slot::NoTenant),
        }
    };
    let t = policy.tenant(tenant);
    if t.suspended {
        let management = remote_for_management(frame, &p, out)
            .is_some_and(|remote| policy.is_management(&remote));
        if !is_neighbour(frame, &p, out) && !management {
            return Expect::Drop {
                tenant,
                reason: reason::SUSPENDED,
            };
        }
    }
    if out && p.l4_proto == TCP && matches!(p.dport, 25 | 465 | 587) && !t.smtp_allow {
        return Expect::Drop {
            tenant,
            reason: reason::SMTP,
        };
    }
    Expect::Pass(Slot::Tenant(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            tenants: vec![
                Tenant {
                    index: 3,
                    v4: vec![(Ipv4Addr::new(198, 18, 1, 0), 24)],
                    v6: vec![(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0), 48)],
                    ..Tenant::default()
                },
                Tenant {
                    index: 9,
                    v4: vec![(Ipv4Addr::new(198, 18, 5, 0), 24)],
                    suspended: true,
                    ..Tenant::default()
                },
            ],
            management_v4: vec![(Ipv4Addr::new(198, 18, 254, 0), 24)],
            ..Policy::default()
        }
    }

    /// Ethernet + IPv4 TCP SYN from `src` to `dst`:`port`.
    fn syn(src: [u8; 4], dst: [u8; 4], port: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&[0x9c, 0x40]);
        f.extend_from_slice(&port.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        f
    }

    #[test]
    fn a_tenants_syn_passes_its_smtp_is_dropped_and_a_suspended_one_reaches_only_management() {
        let p = policy();
        let a = [198, 18, 1, 10];
        let s = [198, 18, 5, 5];
        let out = [198, 19, 0, 1];
        assert_eq!(
            expect(&p, &syn(a, out, 443), true),
            Expect::Pass(Slot::Tenant(3))
        );
        assert_eq!(
            expect(&p, &syn(a, out, 25), true),
            Expect::Drop {
                tenant: 3,
                reason: reason::SMTP
            }
        );
        assert_eq!(
            expect(&p, &syn(s, out, 443), true),
            Expect::Drop {
                tenant: 9,
                reason: reason::SUSPENDED
            }
        );
        assert_eq!(
            expect(&p, &syn(s, [198, 18, 254, 1], 443), true),
            Expect::Pass(Slot::Tenant(9))
        );
        assert_eq!(expect(&p, &syn(out, a, 443), true), Expect::Spoofed);
        assert_eq!(
            expect(&p, &syn(out, a, 443), false),
            Expect::Pass(Slot::Tenant(3))
        );
    }

    #[test]
    fn truncated_and_overlong_ip_lengths_are_malformed_both_ways() {
        let p = policy();
        let mut f = syn([198, 18, 1, 10], [198, 19, 0, 1], 443);
        f[17] = 200;
        assert_eq!(expect(&p, &f, true), Expect::MalformedDrop);
        assert_eq!(expect(&p, &f, false), Expect::Pass(Slot::Malformed));
        let short = &syn([198, 18, 1, 10], [198, 19, 0, 1], 443)[..40];
        assert_eq!(expect(&p, short, true), Expect::MalformedDrop);
    }

    #[test]
    fn other_ethertypes_are_unparsed_from_tenants_unless_passed() {
        let mut p = policy();
        let mut lldp = vec![0x01, 0x80, 0xc2, 0, 0, 0x0e, 2, 0, 0, 0, 0, 1, 0x88, 0xcc];
        lldp.extend_from_slice(&[0; 46]);
        assert_eq!(expect(&p, &lldp, true), Expect::UnparsedDrop);
        assert_eq!(expect(&p, &lldp, false), Expect::Pass(Slot::NoTenant));
        p.pass_ethertypes.push(0x88cc);
        assert_eq!(expect(&p, &lldp, true), Expect::Pass(Slot::NoTenant));
    }
}
