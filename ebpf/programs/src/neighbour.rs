//! ARP and neighbour discovery judged in full, and what a suspended tenant keeps.
//!
//! A suspended tenant keeps ARP and ND only as the protocols have them
//! ([`is_neighbour`]), and management; a claim that names another MAC than the one
//! sending it is a spoof ([`names_foreign_mac`]). Judging them reads the link-layer addresses they carry (ARP's
//! sender hardware address, ND's options, walked) and checks their kind, size and
//! destination.
//!
//! All of it runs in global BPF functions, one per hook type and direction, each
//! verified once on its own: inlined, the ND walk multiplied the verifier's states on
//! every path after the parser (past the limit), and even the few instructions of the
//! suspended branch, repeated in each of the thousands of states that reach it, cost
//! the verifier a third more. The callers pass only where the headers are
//! ([`pack`]); the functions read the rest from the frame.

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    maps::lpm_trie::Key,
};
use warden_common::{direction, reason, tenant_counter_index};

use crate::{
    maps::{
        metering::DROP_COUNTERS,
        policy::{MANAGEMENT_V4, MANAGEMENT_V6},
    },
    parse::{
        load16, load64, nothing_after, proto, ptr_at, Family, Parsed, ND_NA, ND_NS, ND_RA,
        ND_REDIRECT, ND_RS,
    },
};

/// Where the message of `p` is, for the functions here: the IP (or ARP) header's
/// offset in bits 0-7, the L4 header's in bits 8-23, the family in bits 24-25, bit 26
/// for a claim, the L4 protocol in bits 32-39. Conversions only, no branch: a branch
/// here would split the caller's paths.
#[inline(always)]
pub fn pack(p: &Parsed) -> u64 {
    u64::from(p.l3_off)
        | (u64::from(p.l4_off) << 8)
        | ((p.family as u64) << 24)
        | (u64::from(p.is_claim) << 26)
        | (u64::from(p.l4_proto) << 32)
}

/// Options followed at most (every one a multiple of 8 bytes).
const MAX_OPTIONS: usize = 8;
/// The furthest offset in the frame an option is read from: keeps the verifier's
/// packet offsets bounded. No ND message we accept reaches it.
const MAX_OFF: usize = 512;
/// The most bytes (message and options) an ND message from a tenant may have: an NS
/// or NA with a link-layer address and a nonce is 40, room for two more options.
/// Router advertisements to a tenant carry prefixes and more.
const MAX_FROM_TENANT: usize = 56;
const MAX_TO_TENANT: usize = 256;

/// Where the IPv6 header's payload length, hop limit and addresses are, from the
/// header's start.
const PAYLOAD_LEN_AT: usize = 4;
const HOP_LIMIT_AT: usize = 7;
const SRC_AT: usize = 8;
const DST_AT: usize = 24;
/// Where ARP's sender hardware and protocol addresses and target protocol address are.
const ARP_SHA_AT: usize = 8;
const ARP_SPA_AT: usize = 14;
const ARP_TPA_AT: usize = 24;
/// Where IPv4's source and destination are.
const V4_SRC_AT: usize = 12;
const V4_DST_AT: usize = 16;
/// The IPv6 fixed header's size.
const IPV6_LEN: usize = 40;
/// The parser's bound on the IP header's offset (Ethernet and two VLAN tags) and on an
/// L4 header's; they bound the packet offsets for the verifier here.
const MAX_L3_OFF: usize = 22;
const MAX_L4_OFF: usize = 1024;
/// Where the source MAC is in the frame.
const SRC_MAC_AT: usize = 6;
/// The low 6 bytes (memory order) of a word loaded from memory: a MAC.
const MAC_MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]);

/// ARP's fixed size for IPv4 over Ethernet, and its first 8 bytes then: hardware type
/// 1, protocol type 0x0800, address sizes 6 and 4, then the operation's high byte 0.
const ARP_LEN: usize = 28;
const ARP_ETHERNET_IPV4: [u8; 7] = [0, 1, 0x08, 0x00, 6, 4, 0];

/// A message of the parts the walkers and judges here need, read once from the frame
/// (`data`..`data_end`, `bytes` long) whose headers `headers` places (see [`pack`]).
struct Msg {
    data: usize,
    data_end: usize,
    bytes: u64,
    l3: usize,
    off: usize,
    /// The frame's source MAC in the low 6 bytes (memory order).
    mac: u64,
}

/// What the frame is to the judges here.
enum Kind {
    /// IPv4-over-Ethernet ARP (the parser took no other kind as a claim).
    Arp,
    /// ICMPv6 neighbour discovery of type `ty`, hop limit 255.
    Nd {
        ty: u8,
        code: u8,
        end: usize,
        dst: [u8; 2],
    },
    /// Anything else, including ICMPv6 shaped like ND without hop limit 255, which
    /// receivers discard.
    Other,
}

/// Reads where the frame's message is and what kind it is.
#[inline(always)]
fn read(data: usize, data_end: usize, bytes: u64, headers: u64) -> (Msg, Kind) {
    let l3 = (headers & 0xff) as usize;
    let off = ((headers >> 8) & 0xffff) as usize;
    let family = (headers >> 24) & 3;
    let claim = headers & (1 << 26) != 0;
    let l4 = (headers >> 32) as u8;
    let mut m = Msg {
        data,
        data_end,
        bytes,
        l3,
        off,
        mac: 0,
    };
    if l3 > MAX_L3_OFF || off > MAX_L4_OFF {
        return (m, Kind::Other);
    }
    let Ok(e) = ptr_at::<[u8; 14]>(data, data_end, 0) else {
        return (m, Kind::Other);
    };
    // SAFETY: `ptr_at` checked the 14 bytes of the Ethernet header.
    m.mac = unsafe { load64(e as usize + SRC_MAC_AT) } & MAC_MASK;
    if family == Family::V4 as u64 && claim {
        return (m, Kind::Arp);
    }
    if family != Family::V6 as u64 || l4 != proto::ICMPV6 {
        return (m, Kind::Other);
    }
    let (Ok(ip), Ok(h)) = (
        ptr_at::<[u8; 40]>(data, data_end, l3),
        ptr_at::<[u8; 4]>(data, data_end, off),
    ) else {
        return (m, Kind::Other);
    };
    // SAFETY: `ptr_at` checked the 40 and the 4 bytes.
    let (ip, payload, h) = unsafe {
        (
            &*ip,
            u16::from_be(load16(ip as usize + PAYLOAD_LEN_AT)),
            &*h,
        )
    };
    if ip[HOP_LIMIT_AT] != 255 || !(ND_RS..=ND_REDIRECT).contains(&h[0]) {
        return (m, Kind::Other);
    }
    let end = l3 + IPV6_LEN + payload as usize;
    let dst = [ip[DST_AT], ip[DST_AT + 1]];
    (
        m,
        Kind::Nd {
            ty: h[0],
            code: h[1],
            end,
            dst,
        },
    )
}

/// The size of an ND message's fixed part, by type.
#[inline(always)]
fn nd_body(ty: u8) -> usize {
    match ty {
        ND_RS => 8,
        ND_RA => 16,
        ND_NS | ND_NA => 24,
        _ => 40,
    }
}

/// Walks the ND options from `at` to `end`. With `FOREIGN`, true as soon as a
/// link-layer address option names another MAC than the frame's, or when the options
/// cannot be followed to the end (a receiver may still read one we did not: Linux
/// walks them all). Without, true when the options lead exactly to `end`. Exits early
/// rather than keeping a flag: a flag set in the loop would double the verifier's
/// states on every turn.
#[inline(always)]
fn walk<const FOREIGN: bool>(m: &Msg, mut at: usize, end: usize) -> bool {
    // An option with a link-layer address is [type, 1, mac]: its word, type aside.
    let own = (m.mac << 16) | (1 << 8);
    for _ in 0..MAX_OPTIONS {
        if at == end {
            return !FOREIGN;
        }
        if at > end || at > MAX_OFF {
            return FOREIGN;
        }
        let Ok(o) = ptr_at::<[u8; 8]>(m.data, m.data_end, at) else {
            return FOREIGN;
        };
        // SAFETY: `ptr_at` checked the 8 bytes.
        let (o, w) = unsafe { (&*o, load64(o as usize)) };
        if o[1] == 0 {
            return FOREIGN;
        }
        // Types 1 and 2: the source and target link-layer address options.
        if FOREIGN && o[0].wrapping_sub(1) < 2 && (w & !0xff) != own {
            return true;
        }
        at += o[1] as usize * 8;
    }
    FOREIGN
}

/// Whether the frame is ARP or ND as the protocols have them, what a suspended tenant
/// keeps. ARP: a request or reply, nothing after it but the padding of a minimum
/// frame. ND: code 0, right after the fixed header, nothing after the packet, a kind
/// `DIR` allows (from a tenant RS, NS, NA; to it also RA and redirect), within the size
/// bound, with well-formed options, and from a tenant addressed to the link only
/// (link-local unicast or link-scope multicast): an ND-shaped packet carrying data, or
/// routed anywhere, is not.
#[inline(always)]
fn is_neighbour<const DIR: u32>(m: &Msg, kind: &Kind) -> bool {
    match *kind {
        Kind::Arp => {
            let Ok(a) = ptr_at::<[u8; ARP_LEN]>(m.data, m.data_end, m.l3) else {
                return false;
            };
            // SAFETY: `ptr_at` checked the 28 bytes.
            let a = unsafe { &*a };
            a[..7] == ARP_ETHERNET_IPV4
                && a[7].wrapping_sub(1) < 2
                && nothing_after(m.bytes, m.l3 + ARP_LEN)
        }
        Kind::Nd { ty, code, end, dst } => {
            let allowed = DIR == direction::IN || matches!(ty, ND_RS | ND_NS | ND_NA);
            let max = if DIR == direction::OUT {
                MAX_FROM_TENANT
            } else {
                MAX_TO_TENANT
            };
            let on_link = DIR == direction::IN
                || (dst[0] == 0xfe && dst[1] & 0xc0 == 0x80)
                || (dst[0] == 0xff && dst[1] == 0x02);
            let body = nd_body(ty);
            allowed
                && on_link
                && code == 0
                && m.off == m.l3 + IPV6_LEN
                && nothing_after(m.bytes, end)
                && end >= m.off + body
                && end - m.off <= max
                && walk::<false>(m, m.off + body, end)
        }
        Kind::Other => false,
    }
}

/// Whether a claim names another MAC than its frame's source (receivers record the
/// claim's address, not the frame's): ARP's sender hardware address, or an ND
/// link-layer address option (or options that cannot be followed).
#[inline(always)]
fn names_foreign_mac(m: &Msg, kind: &Kind) -> bool {
    match *kind {
        Kind::Arp => {
            let Ok(a) = ptr_at::<[u8; ARP_LEN]>(m.data, m.data_end, m.l3) else {
                return true;
            };
            // SAFETY: `ptr_at` checked the 28 bytes.
            let sha = unsafe { load64(a as usize + ARP_SHA_AT) } & MAC_MASK;
            sha != m.mac
        }
        Kind::Nd { ty, end, .. } => walk::<true>(m, m.off + nd_body(ty), end),
        Kind::Other => false,
    }
}

/// Whether the other side of the frame (the destination from a tenant, the source to
/// it) is a management address, read from the frame whose headers `headers` places.
#[inline(always)]
fn remote_is_management<const DIR: u32>(data: usize, data_end: usize, headers: u64) -> bool {
    let l3 = (headers & 0xff) as usize;
    let family = (headers >> 24) & 3;
    let claim = headers & (1 << 26) != 0;
    if l3 > MAX_L3_OFF {
        return false;
    }
    if family == Family::V4 as u64 {
        // ARP: the target from a tenant, the sender to it; IPv4 likewise.
        let (from, to) = if claim {
            (ARP_SPA_AT, ARP_TPA_AT)
        } else {
            (V4_SRC_AT, V4_DST_AT)
        };
        let field = if DIR == direction::OUT { to } else { from };
        let Ok(a) = ptr_at::<[u8; 4]>(data, data_end, l3 + field) else {
            return false;
        };
        // SAFETY: `ptr_at` checked the 4 bytes.
        return MANAGEMENT_V4.get(Key::new(32, unsafe { *a })).is_some();
    }
    if family == Family::V6 as u64 {
        let field = if DIR == direction::OUT {
            DST_AT
        } else {
            SRC_AT
        };
        let Ok(a) = ptr_at::<[u8; 16]>(data, data_end, l3 + field) else {
            return false;
        };
        // SAFETY: `ptr_at` checked the 16 bytes.
        return MANAGEMENT_V6.get(Key::new(128, unsafe { *a })).is_some();
    }
    false
}

/// The verdict on a frame of a suspended `tenant` going `DIR`: 1 (pass) for ARP or ND
/// as the protocols have them and for management traffic, else 0 (drop), counted as
/// `suspended`.
#[inline(always)]
fn suspended<const DIR: u32>(
    data: usize,
    data_end: usize,
    bytes: u64,
    tenant: u32,
    headers: u64,
) -> u32 {
    let (m, kind) = read(data, data_end, bytes, headers);
    if is_neighbour::<DIR>(&m, &kind) || remote_is_management::<DIR>(data, data_end, headers) {
        return 1;
    }
    if let Some(d) = DROP_COUNTERS.get_ptr_mut(tenant_counter_index(tenant, DIR)) {
        // SAFETY: a per-CPU slot: no other program instance writes it concurrently.
        unsafe { (*d).packets[reason::SUSPENDED] += 1 };
    }
    0
}

// One global function per hook type and direction: each is verified once, on its own.

/// [`suspended`] at a from-tenant XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_suspended_from_tenant_xdp(
    ctx: *mut xdp_md,
    tenant: u32,
    headers: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    suspended::<{ direction::OUT }>(data, end, (end - data) as u64, tenant, headers)
}

/// [`suspended`] at a to-tenant XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_suspended_to_tenant_xdp(
    ctx: *mut xdp_md,
    tenant: u32,
    headers: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    suspended::<{ direction::IN }>(data, end, (end - data) as u64, tenant, headers)
}

/// [`suspended`] at a from-tenant tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_suspended_from_tenant_tc(
    ctx: *mut __sk_buff,
    tenant: u32,
    headers: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end, len) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize, (*ctx).len) };
    suspended::<{ direction::OUT }>(data, end, len.into(), tenant, headers)
}

/// [`suspended`] at a to-tenant tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_suspended_to_tenant_tc(
    ctx: *mut __sk_buff,
    tenant: u32,
    headers: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end, len) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize, (*ctx).len) };
    suspended::<{ direction::IN }>(data, end, len.into(), tenant, headers)
}

/// Whether a from-tenant claim at an XDP hook names a MAC other than its frame's
/// source ([`names_foreign_mac`]): 1 or 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_foreign_mac_xdp(ctx: *mut xdp_md, headers: u64) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    let (m, kind) = read(data, end, (end - data) as u64, headers);
    u32::from(names_foreign_mac(&m, &kind))
}

/// [`warden_foreign_mac_xdp`] at a tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_foreign_mac_tc(ctx: *mut __sk_buff, headers: u64) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end, len) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize, (*ctx).len) };
    let (m, kind) = read(data, end, len.into(), headers);
    u32::from(names_foreign_mac(&m, &kind))
}
