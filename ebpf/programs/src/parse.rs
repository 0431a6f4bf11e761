//! Header parsing: one bounds-checked accessor, one pass, one result struct.
//!
//! The parser never fails the program: a frame too short for what it announces is
//! reported as [`Malformed`] and the caller decides the verdict. A frame it does not
//! understand (another ethertype, more than two VLAN tags, ARP for another hardware
//! type) is reported in [`Parsed::unparsed`]: from a tenant it is dropped unless the
//! interface passes that ethertype, since enforcement cannot see inside it.

use core::mem::size_of;

use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};
use warden_common::direction;

/// VLAN tags followed to the inner frame: 802.1ad + 802.1Q (QinQ) or two 802.1Q tags.
/// A third tag makes the frame unparsed.
const MAX_VLAN_TAGS: usize = 2;

/// Headers we read after the IPv6 header: at most 5 extension headers and then the
/// L4 header. A longer chain is malformed (its ports would be out of policy's sight).
const MAX_IPV6_EXT_HDRS: usize = 6;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// IP protocol numbers we look into: the transport protocols (shared with the daemon)
/// and the IPv6 extension headers the parser walks.
pub mod proto {
    pub use warden_common::proto::{ICMP, ICMPV6, TCP, UDP};
    pub const HOPOPTS: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const DSTOPTS: u8 = 60;
}

/// Which address family carried the tenant-side address.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Family {
    /// No IP or ARP address (LLDP, other ethertypes, unparsed frames).
    None = 0,
    /// IPv4, or ARP for IPv4 over Ethernet.
    V4 = 1,
    /// IPv6 (ND is ICMPv6 and lands here too).
    V6 = 2,
}

/// An address as the 16 bytes of its event form (network order; IPv4 in the first 4
/// bytes, the rest zero), held as two native-endian words: the 16 bytes of an array
/// become 16 separate values in LLVM, each with its own stack slot when spilled, and
/// a program has 512 bytes of stack.
pub type Addr = [u64; 2];

/// An IPv4 address (network order bytes) as an [`Addr`].
#[inline(always)]
pub fn addr4(a: [u8; 4]) -> Addr {
    [u64::from(u32::from_ne_bytes(a)), 0]
}

/// Sixteen bytes (network order) as an [`Addr`].
#[inline(always)]
pub fn addr16(b: &[u8]) -> Addr {
    [
        u64::from_ne_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        u64::from_ne_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    ]
}

/// The IPv4 address in an [`Addr`], as its network order bytes.
#[inline(always)]
pub fn v4_bytes(a: &Addr) -> [u8; 4] {
    (a[0] as u32).to_ne_bytes()
}

/// The address in an [`Addr`], as its 16 network order bytes.
#[inline(always)]
pub fn v6_bytes(a: &Addr) -> [u8; 16] {
    let (x, y) = (a[0].to_ne_bytes(), a[1].to_ne_bytes());
    [
        x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], y[0], y[1], y[2], y[3], y[4], y[5], y[6],
        y[7],
    ]
}

/// Everything later stages need, extracted in one pass.
///
/// Its address is never taken past the parser: LLVM then keeps its fields in
/// registers and stack slots. A `Parsed` in memory (handed to a function that is not
/// inlined) gets its arrays zeroed by calls to a byte-by-byte `memset`, which cost
/// every packet some 40 ns; later stages take what they need as plain values.
pub struct Parsed {
    pub family: Family,
    /// Source MAC of the frame.
    pub src_mac: [u8; 6],
    /// The tenant-side address: the source (or ARP sender) from the tenant, the
    /// destination (or ARP target) to it; for a neighbour advertisement from the
    /// tenant, the advertised target (the address it claims). See [`Addr`].
    pub local: Addr,
    /// The other side's address.
    pub remote: Addr,
    /// ARP or IPv6 neighbour discovery: an address claim.
    pub is_claim: bool,
    /// IPv6 hop limit (ND is only ND at 255, RFC 4861 7.1).
    pub hop_limit: u8,
    /// A frame the programs do not understand: an ethertype other than IPv4, IPv6 and
    /// ARP after at most two VLAN tags, a third tag, or ARP for another hardware or
    /// protocol type. Not malformed (it may be valid), but nothing in it can be checked.
    pub unparsed: bool,
    /// The innermost ethertype of an unparsed frame, for the interface's list of
    /// ethertypes to pass; 0 for frames no list may pass (a third VLAN tag, ARP for
    /// another hardware type).
    pub ether_type: u16,
    /// The outer VLAN tag's VLAN id; 0 for an untagged frame (or a priority tag).
    pub vlan: u16,

    /// L4 protocol, 0 when unknown or a non-first fragment.
    pub l4_proto: u8,
    /// Source and destination ports (TCP/UDP) or ICMP type and code, host order.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte, 0 otherwise.
    pub tcp_flags: u8,
    /// Offsets of the IP header and (when `l4_proto != 0`) the L4 header: the fact
    /// stage reads the packet again from there (see `facts`).
    pub l3_off: u8,
    pub l4_off: u16,
}

impl Parsed {
    /// The tenant-side address is one no tenant is expected to own: IPv4 0.0.0.0
    /// (DHCP, ARP probes), IPv6 `::` (DAD) or link-local fe80::/10.
    #[inline(always)]
    pub fn local_is_unowned(&self) -> bool {
        match self.family {
            Family::V4 => self.local[0] == 0,
            Family::V6 => {
                let first = self.local[0].to_ne_bytes();
                (first[0] == 0xfe && first[1] & 0xc0 == 0x80)
                    || (self.local[0] == 0 && self.local[1] == 0)
            }
            Family::None => false,
        }
    }
}

/// The frame is shorter than its headers say, or a header field is impossible.
pub struct Malformed;

/// One load of 2, 4 or 8 packet bytes at `at`, in memory order (a native-endian value
/// of the bytes: `from_be` gives a network-order field's value), at any alignment.
///
/// Header fields are rarely aligned to their size (an IPv4 address after a 14-byte
/// Ethernet header is 2-byte aligned), so LLVM, which must assume the BPF target
/// cannot load across alignment, reads them byte by byte and puts the bytes together:
/// 22 instructions for an IPv4 header's two addresses, some 90 for an IPv6 header's,
/// on every packet. The verifier allows an unaligned packet load wherever the CPU
/// does (every architecture with efficient unaligned access: x86-64, arm64), so one
/// BPF load does it.
///
/// # Safety
/// `at` must point into the packet with the bytes bounds-checked against
/// `data_end` (by [`ptr_at`]).
#[inline(always)]
pub unsafe fn load16(at: usize) -> u16 {
    let v: u64;
    // SAFETY: the caller's bounds check covers the 2 bytes; the asm only reads them.
    unsafe {
        core::arch::asm!("{0} = *(u16 *)({1} + 0)", out(reg) v, in(reg) at,
            options(pure, readonly, nostack, preserves_flags));
    }
    v as u16
}

/// [`load16`] for 4 bytes.
///
/// # Safety
/// As [`load16`].
#[inline(always)]
pub unsafe fn load32(at: usize) -> u32 {
    let v: u64;
    // SAFETY: the caller's bounds check covers the 4 bytes; the asm only reads them.
    unsafe {
        core::arch::asm!("{0} = *(u32 *)({1} + 0)", out(reg) v, in(reg) at,
            options(pure, readonly, nostack, preserves_flags));
    }
    v as u32
}

/// [`load16`] for 8 bytes.
///
/// # Safety
/// As [`load16`].
#[inline(always)]
pub unsafe fn load64(at: usize) -> u64 {
    let v: u64;
    // SAFETY: the caller's bounds check covers the 8 bytes; the asm only reads them.
    unsafe {
        core::arch::asm!("{0} = *(u64 *)({1} + 0)", out(reg) v, in(reg) at,
            options(pure, readonly, nostack, preserves_flags));
    }
    v
}

/// The 16 bytes at `at` as an [`Addr`]: two loads.
///
/// # Safety
/// As [`load16`].
#[inline(always)]
pub unsafe fn load_addr16(at: usize) -> Addr {
    // SAFETY: the caller's bounds check covers all 16 bytes.
    unsafe { [load64(at), load64(at + 8)] }
}

/// The 4 bytes at `at` as an IPv4 [`Addr`]: one load.
///
/// # Safety
/// As [`load16`].
#[inline(always)]
pub unsafe fn load_addr4(at: usize) -> Addr {
    // SAFETY: the caller's bounds check covers the 4 bytes.
    [u64::from(unsafe { load32(at) }), 0]
}

/// Bounds-checked pointer to a `T` at `off` bytes into the packet.
#[inline(always)]
pub fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Result<*const T, Malformed> {
    if data + off + size_of::<T>() > data_end {
        return Err(Malformed);
    }
    Ok((data + off) as *const T)
}

/// Parses a frame of `len` bytes (the whole frame, which for a tc hook may reach past
/// `data_end`, the end of the linear part). `DIR` picks the tenant-side address: the
/// source for traffic from the tenant, the destination for traffic to it.
#[inline(always)]
pub fn parse<const DIR: u32>(data: usize, data_end: usize, len: u64) -> Result<Parsed, Malformed> {
    let mut p = Parsed {
        family: Family::None,
        src_mac: [0; 6],
        local: [0; 2],
        remote: [0; 2],
        is_claim: false,
        hop_limit: 0,
        unparsed: false,
        ether_type: 0,
        vlan: 0,
        l4_proto: 0,

        sport: 0,
        dport: 0,
        tcp_flags: 0,
        l3_off: 0,
        l4_off: 0,
    };
    let eth: *const EthHdr = ptr_at(data, data_end, 0)?;
    // SAFETY: `ptr_at` checked the 14 bytes of the Ethernet header (source MAC at 6..12,
    // ethertype at 12..14); `EthHdr` is packed, so its fields need no alignment.
    let (src_mac, ether_type) = unsafe { ((*eth).src_addr, (*eth).ether_type) };
    p.src_mac = src_mac;
    let mut ether_type = u16::from_be(ether_type);
    let mut off = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let vlan: *const VlanHdr = ptr_at(data, data_end, off)?;
        // SAFETY: `ptr_at` checked the 4 bytes of the tag (TCI, then ethertype).
        let (tci, inner) = unsafe { ((*vlan).tci, (*vlan).ether_type) };
        if off == EthHdr::LEN {
            p.vlan = u16::from_be_bytes(tci) & 0x0fff;
        }
        ether_type = u16::from_be(inner);
        off += VlanHdr::LEN;
    }
    // At most 22: Ethernet and two tags.
    p.l3_off = off as u8;
    match ether_type {
        ETH_P_IPV4 => parse_ipv4::<DIR>(data, data_end, len, off, &mut p)?,
        ETH_P_IPV6 => parse_ipv6::<DIR>(data, data_end, len, off, &mut p)?,
        ETH_P_ARP => parse_arp::<DIR>(data, data_end, off, &mut p)?,
        ETH_P_8021Q | ETH_P_8021AD => p.unparsed = true,
        other => {
            p.unparsed = true;
            p.ether_type = other;
        }
    }
    Ok(p)
}

/// The offset (from the frame's start) of the end of an IP packet that starts at `off`
/// and announces `ip_len` bytes (IPv4 total length, IPv6 40 + payload length). Headers
/// are read only before it: a from-tenant packet whose headers lie past its own end
/// would show policy ports its receiver never reads. The frame must hold the whole
/// packet; bytes after it (Ethernet padding) are allowed. A length field of 0 (`ip_len
/// == zero`) is a BIG TCP packet only when the frame is longer than any length field
/// could say; then the frame's end is the packet's.
///
/// An offset, not a pointer: the verifier bounds packet reads only by comparisons with
/// the real `data_end`, which [`ptr_in`] still makes.
#[inline(always)]
fn ip_end(len: u64, off: usize, ip_len: usize, zero: usize) -> Result<usize, Malformed> {
    let end = if ip_len == zero && len > (off + 65_535 + zero) as u64 {
        return Ok(len as usize);
    } else {
        off + ip_len
    };
    if end as u64 > len {
        return Err(Malformed);
    }
    Ok(end)
}

/// [`ptr_at`] for a header that must also lie before `end`, the offset of the end of
/// the IP packet it belongs to (see [`ip_end`]).
#[inline(always)]
pub fn ptr_in<T>(
    data: usize,
    data_end: usize,
    end: usize,
    off: usize,
) -> Result<*const T, Malformed> {
    if off + size_of::<T>() > end {
        return Err(Malformed);
    }
    ptr_at(data, data_end, off)
}

#[inline(always)]
fn parse_ipv4<const DIR: u32>(
    data: usize,
    data_end: usize,
    len: u64,
    off: usize,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    let ip: *const Ipv4Hdr = ptr_at(data, data_end, off)?;
    // SAFETY: `ptr_at` checked the 20 bytes of the fixed header; version and IHL are byte 0.
    let vihl = unsafe { (*ip).vihl };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Malformed);
    }
    let at = ip as usize;
    // SAFETY: the total length is bytes 2..4 of the 20 `ptr_at` checked.
    let total = u16::from_be(unsafe { load16(at + 2) }) as usize;
    if total != 0 && total < ihl {
        return Err(Malformed);
    }
    let end = ip_end(len, off, total, 0)?;
    // The whole header, options included, must be there even if nothing after it is read.
    if off + ihl > end || data + off + ihl > data_end {
        return Err(Malformed);
    }
    p.family = Family::V4;
    // SAFETY: the addresses are bytes 12..20 of the 20 `ptr_at` checked.
    let (src, dst) = unsafe { (load_addr4(at + 12), load_addr4(at + 16)) };
    (p.local, p.remote) = if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    };
    // SAFETY: the flags and fragment offset are bytes 6..8 of the 20 `ptr_at` checked.
    let frag_offset = u16::from_be(unsafe { load16(at + 6) }) & 0x1fff;
    if frag_offset != 0 {
        // A later fragment carries no L4 header.
        return Ok(());
    }
    // SAFETY: the protocol is byte 9 of the 20 `ptr_at` checked.
    parse_l4::<DIR>(data, data_end, end, off + ihl, unsafe { (*ip).proto }, p)
}

#[inline(always)]
fn parse_ipv6<const DIR: u32>(
    data: usize,
    data_end: usize,
    len: u64,
    off: usize,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    let ip: *const Ipv6Hdr = ptr_at(data, data_end, off)?;
    // SAFETY: `ptr_at` checked the 40 bytes of the fixed header; the version is in byte 0.
    if unsafe { (*ip).vcf[0] } >> 4 != 6 {
        return Err(Malformed);
    }
    // SAFETY: the payload length is bytes 4..6 of the 40 `ptr_at` checked.
    let payload = u16::from_be(unsafe { load16(ip as usize + 4) }) as usize;
    let end = ip_end(len, off, Ipv6Hdr::LEN + payload, Ipv6Hdr::LEN)?;
    p.family = Family::V6;
    // SAFETY: the hop limit is byte 7 of the 40 `ptr_at` checked.
    p.hop_limit = unsafe { (*ip).hop_limit };

    // SAFETY: the addresses are bytes 8..40 of the 40 `ptr_at` checked.
    let (src, dst) = unsafe { (load_addr16(ip as usize + 8), load_addr16(ip as usize + 24)) };
    (p.local, p.remote) = if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    };
    // SAFETY: the next header is byte 6 of the 40 `ptr_at` checked.
    let mut next = unsafe { (*ip).next_hdr };
    let mut off = off + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT_HDRS {
        match next {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let h: *const [u8; 2] = ptr_in(data, data_end, end, off)?;
                // SAFETY: `ptr_in` checked the 2 bytes.
                let (nh, hlen) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                off += (hlen as usize + 1) * 8;
                if off > end || data + off > data_end {
                    return Err(Malformed);
                }
            }
            proto::AH => {
                let h: *const [u8; 2] = ptr_in(data, data_end, end, off)?;
                // SAFETY: `ptr_in` checked the 2 bytes.
                let (nh, hlen) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                off += (hlen as usize + 2) * 4;
                if off > end || data + off > data_end {
                    return Err(Malformed);
                }
            }
            proto::FRAGMENT => {
                let h: *const [u8; 8] = ptr_in(data, data_end, end, off)?;
                // SAFETY: `ptr_in` checked the 8 bytes.
                let (nh, hi, lo) = unsafe { ((*h)[0], (*h)[2], (*h)[3]) };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment carries no L4 header.
                    return Ok(());
                }
                next = nh;
                off += 8;
            }
            _ => return parse_l4::<DIR>(data, data_end, end, off, next, p),
        }
    }
    // A chain longer than we follow hides its L4 header (and so its ports) from
    // policy: malformed, so the caller can refuse it from a tenant (RFC 7112 asks
    // for the whole chain in the first fragment anyway).
    Err(Malformed)
}

#[inline(always)]
fn parse_arp<const DIR: u32>(
    data: usize,
    data_end: usize,
    off: usize,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    // Ethernet/IPv4 ARP: htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4) tha(6) tpa(4).
    let arp: *const [u8; 28] = ptr_at(data, data_end, off)?;
    // SAFETY: `ptr_at` checked the 28 bytes.
    let a = unsafe { &*arp };
    p.is_claim = true;
    if a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0x00 || a[4] != 6 || a[5] != 4 {
        // ARP for another hardware or protocol type names no address Warden can
        // check, yet a receiver on Ethernet may still take its claim (Linux accepts
        // IEEE 802 ARP, type 6): unparsed, never passable from a tenant.
        p.unparsed = true;
        return Ok(());
    }
    p.family = Family::V4;
    let sender = addr4([a[14], a[15], a[16], a[17]]);
    let target = addr4([a[24], a[25], a[26], a[27]]);
    (p.local, p.remote) = if DIR == direction::OUT {
        (sender, target)
    } else {
        (target, sender)
    };
    Ok(())
}

/// The packet an ICMP or ICMPv6 error quotes, reduced to what names the attempt it
/// answers: where it went and to which port.
pub struct Quoted {
    /// The quoted packet's L4 protocol; 0 when nothing usable was quoted.
    pub proto: u8,
    /// The quoted destination.
    pub dst: Addr,
    /// The quoted source and destination ports, host order (0 for ICMP).
    pub sport: u16,
    pub dport: u16,
}

impl Quoted {
    /// Nothing quoted.
    pub const NONE: Quoted = Quoted {
        proto: 0,
        dst: [0; 2],
        sport: 0,
        dport: 0,
    };
}

/// ICMP and ICMPv6 destination unreachable.
pub const ICMP_UNREACHABLE: u8 = 3;
pub const ICMPV6_UNREACHABLE: u8 = 1;
/// An ICMP error's header before the quoted packet: type, code, checksum, 4 unused.
const ICMP_ERROR_HDR: usize = 8;

/// Reads the packet quoted by the ICMP (`v6` false) or ICMPv6 error whose header is
/// at `icmp_off`: an IPv4 header without options, or an IPv6 fixed header, then the
/// first 4 bytes of its L4 header. Anything else (options, extension headers, a later
/// fragment, a quote too short) is [`Quoted::NONE`]: the detectors only lose a fact,
/// the packet is never failed for it.
#[inline(always)]
pub fn quoted(data: usize, data_end: usize, icmp_off: usize, v6: bool) -> Quoted {
    let inner = icmp_off + ICMP_ERROR_HDR;
    let mut q = Quoted::NONE;
    if !v6 {
        // IPv4 header (20) and the ports (4).
        let Ok(h) = ptr_at::<[u8; 24]>(data, data_end, inner) else {
            return Quoted::NONE;
        };
        // SAFETY: `ptr_at` checked the 24 bytes.
        let h = unsafe { &*h };
        let frag_offset = u16::from_be_bytes([h[6], h[7]]) & 0x1fff;
        if h[0] != 0x45 || frag_offset != 0 {
            return Quoted::NONE;
        }
        q.proto = h[9];
        q.dst = addr4([h[16], h[17], h[18], h[19]]);
        if q.proto == proto::TCP || q.proto == proto::UDP {
            q.sport = u16::from_be_bytes([h[20], h[21]]);
            q.dport = u16::from_be_bytes([h[22], h[23]]);
        }
    } else {
        // IPv6 fixed header (40) and the ports (4).
        let Ok(h) = ptr_at::<[u8; 44]>(data, data_end, inner) else {
            return Quoted::NONE;
        };
        // SAFETY: `ptr_at` checked the 44 bytes.
        let h = unsafe { &*h };
        if h[0] >> 4 != 6 {
            return Quoted::NONE;
        }
        q.proto = h[6];
        q.dst = addr16(&h[24..40]);
        if q.proto == proto::TCP || q.proto == proto::UDP {
            q.sport = u16::from_be_bytes([h[40], h[41]]);
            q.dport = u16::from_be_bytes([h[42], h[43]]);
        }
    }
    q
}

/// Source and destination port (host order) of the 4 bytes of a TCP or UDP header's
/// ports as loaded by [`load32`].
#[inline(always)]
pub fn split_ports(ports: u32) -> (u16, u16) {
    let [s0, s1, d0, d1] = ports.to_ne_bytes();
    (u16::from_be_bytes([s0, s1]), u16::from_be_bytes([d0, d1]))
}

/// ICMPv6 neighbour discovery (RFC 4861): router solicitation and advertisement,
/// neighbour solicitation and advertisement, redirect.
pub const ND_RS: u8 = 133;
pub const ND_RA: u8 = 134;
pub const ND_NS: u8 = 135;
pub const ND_NA: u8 = 136;
pub const ND_REDIRECT: u8 = 137;

/// Frames shorter than this may carry padding after their packet: 60 bytes of minimum
/// Ethernet frame, 64 with a VLAN tag added after padding.
const MIN_FRAME: u64 = 64;

/// The frame of `len` bytes holds nothing after offset `end` but the padding of a
/// minimum-size frame.
#[inline(always)]
pub fn nothing_after(len: u64, end: usize) -> bool {
    len <= MIN_FRAME || len == end as u64
}

#[inline(always)]
fn parse_l4<const DIR: u32>(
    data: usize,
    data_end: usize,
    end: usize,
    off: usize,
    l4_proto: u8,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    match l4_proto {
        proto::TCP => {
            // Ports, sequence, ack, data offset and flags: the first 14 bytes.
            let h: *const [u8; 20] = ptr_in(data, data_end, end, off)?;
            // SAFETY: `ptr_in` checked the 20 bytes.
            let (ports, off_flags) = unsafe { (load32(h as usize), load16(h as usize + 12)) };
            // Data offset (the high nibble of byte 12) and flags (byte 13).
            let [data_off, flags] = off_flags.to_ne_bytes();
            if data_off < 0x50 {
                return Err(Malformed);
            }
            (p.sport, p.dport) = split_ports(ports);
            p.tcp_flags = flags;
        }
        proto::UDP => {
            let h: *const [u8; 8] = ptr_in(data, data_end, end, off)?;
            // SAFETY: `ptr_in` checked the 8 bytes.
            (p.sport, p.dport) = split_ports(unsafe { load32(h as usize) });
        }
        proto::ICMP => {
            let h: *const [u8; 4] = ptr_in(data, data_end, end, off)?;
            // SAFETY: `ptr_in` checked the 4 bytes.
            let h = unsafe { &*h };
            p.sport = h[0] as u16;
            p.dport = h[1] as u16;
        }
        proto::ICMPV6 => {
            let h: *const [u8; 4] = ptr_in(data, data_end, end, off)?;
            // SAFETY: `ptr_in` checked the 4 bytes.
            let (ty, code) = unsafe { ((*h)[0], (*h)[1]) };
            p.sport = ty as u16;
            p.dport = code as u16;
            // Receivers discard ND that crossed a router, so only hop limit 255 is
            // ND; anything else shaped like it is ordinary ICMPv6 (and so gets no
            // exemption from suspension).
            if (ty == ND_NS || ty == ND_NA || ty == ND_RS) && p.hop_limit == 255 {
                // A router solicitation claims its source, as a solicitation does.
                p.is_claim = true;
            }
            if (ty == ND_NS || ty == ND_NA) && p.hop_limit == 255 {
                // type, code, checksum, flags/reserved, then the 16-byte target.
                let nd: *const [u8; 24] = ptr_in(data, data_end, end, off)?;
                if DIR == direction::OUT && ty == ND_NA {
                    // An advertisement claims its target address.
                    // SAFETY: `ptr_in` checked the 24 bytes.
                    let nd = unsafe { &*nd };
                    p.local = addr16(&nd[8..24]);
                }
            }
        }
        _ => {}
    }
    p.l4_proto = l4_proto;
    // The L4 header lies within the frame, which is far shorter than 64 KiB.
    p.l4_off = off as u16;
    Ok(())
}
