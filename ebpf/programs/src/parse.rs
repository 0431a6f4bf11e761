//! Header parsing: one bounds-checked accessor, one pass, one result struct.
//!
//! The parser never fails the program: a frame too short for what it announces is
//! reported as [`Malformed`] and the caller decides the verdict.

use core::mem::size_of;

use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};
use warden_common::direction;

/// Headers we read after the IPv6 header: at most 5 extension headers and then the
/// L4 header. A longer chain is malformed (its ports would be out of policy's sight).
const MAX_IPV6_EXT_HDRS: usize = 6;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// IP protocol numbers we look into.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
    pub const HOPOPTS: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const DSTOPTS: u8 = 60;
}

/// Which address family carried the tenant-side address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// No IP or ARP address (LLDP, double-tagged VLAN, other ethertypes).
    None,
    /// IPv4, or ARP for IPv4 over Ethernet.
    V4,
    /// IPv6 (ND is ICMPv6 and lands here too).
    V6,
}

/// Everything later stages need, extracted in one pass.
pub struct Parsed {
    pub family: Family,
    /// Source MAC of the frame.
    pub src_mac: [u8; 6],
    /// Tenant-side IPv4 address (network order) when `family == V4`: the source (or
    /// ARP sender) from the tenant, the destination (or ARP target) to it.
    pub addr4: [u8; 4],
    /// The other side's IPv4 address.
    pub remote4: [u8; 4],
    /// Tenant-side IPv6 address when `family == V6`; for a neighbour advertisement
    /// from the tenant, the advertised target (the address it claims).
    pub addr6: [u8; 16],
    /// The other side's IPv6 address.
    pub remote6: [u8; 16],
    /// ARP or IPv6 neighbour discovery: an address claim.
    pub is_claim: bool,
    /// IPv6 hop limit (ND is only ND at 255, RFC 4861 7.1).
    pub hop_limit: u8,

    /// L4 protocol, 0 when unknown or a non-first fragment.
    pub l4_proto: u8,
    /// Source and destination ports (TCP/UDP) or ICMP type and code, host order.
    pub sport: u16,
    pub dport: u16,
    /// TCP flags byte, 0 otherwise.
    pub tcp_flags: u8,
}

impl Parsed {
    /// The tenant-side address is one no tenant is expected to own: IPv4 0.0.0.0
    /// (DHCP, ARP probes), IPv6 `::` (DAD) or link-local fe80::/10.
    #[inline(always)]
    pub fn local_is_unowned(&self) -> bool {
        match self.family {
            Family::V4 => u32::from_ne_bytes(self.addr4) == 0,
            Family::V6 => {
                (self.addr6[0] == 0xfe && self.addr6[1] & 0xc0 == 0x80)
                    || u128::from_ne_bytes(self.addr6) == 0
            }
            Family::None => false,
        }
    }
}

/// The frame is shorter than its headers say, or a header field is impossible.
pub struct Malformed;

/// Bounds-checked pointer to a `T` at `off` bytes into the packet.
#[inline(always)]
pub fn ptr_at<T>(data: usize, data_end: usize, off: usize) -> Result<*const T, Malformed> {
    if data + off + size_of::<T>() > data_end {
        return Err(Malformed);
    }
    Ok((data + off) as *const T)
}

/// Parses a frame. `DIR` picks the tenant-side address: the source for traffic
/// from the tenant, the destination for traffic to it.
#[inline(always)]
pub fn parse<const DIR: u32>(data: usize, data_end: usize) -> Result<Parsed, Malformed> {
    let mut p = Parsed {
        family: Family::None,
        src_mac: [0; 6],
        addr4: [0; 4],
        remote4: [0; 4],
        addr6: [0; 16],
        remote6: [0; 16],
        is_claim: false,
        hop_limit: 0,
        l4_proto: 0,

        sport: 0,
        dport: 0,
        tcp_flags: 0,
    };
    let eth: *const EthHdr = ptr_at(data, data_end, 0)?;
    p.src_mac = unsafe { (*eth).src_addr };
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut off = EthHdr::LEN;
    if ether_type == ETH_P_8021Q || ether_type == ETH_P_8021AD {
        let vlan: *const VlanHdr = ptr_at(data, data_end, off)?;
        ether_type = u16::from_be(unsafe { (*vlan).ether_type });
        off += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IPV4 => parse_ipv4::<DIR>(data, data_end, off, &mut p)?,
        ETH_P_IPV6 => parse_ipv6::<DIR>(data, data_end, off, &mut p)?,
        ETH_P_ARP => parse_arp::<DIR>(data, data_end, off, &mut p)?,
        _ => {}
    }
    Ok(p)
}

#[inline(always)]
fn parse_ipv4<const DIR: u32>(
    data: usize,
    data_end: usize,
    off: usize,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    let ip: *const Ipv4Hdr = ptr_at(data, data_end, off)?;
    let vihl = unsafe { (*ip).vihl };
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if vihl >> 4 != 4 || ihl < Ipv4Hdr::LEN {
        return Err(Malformed);
    }
    // The whole header, options included, must be there even if nothing after it is read.
    if data + off + ihl > data_end {
        return Err(Malformed);
    }
    p.family = Family::V4;
    let (src, dst) = unsafe { ((*ip).src_addr, (*ip).dst_addr) };
    (p.addr4, p.remote4) = if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    };
    let frags = unsafe { (*ip).frags };
    let frag_offset = u16::from_be_bytes(frags) & 0x1fff;
    if frag_offset != 0 {
        // A later fragment carries no L4 header.
        return Ok(());
    }
    parse_l4::<DIR>(data, data_end, off + ihl, unsafe { (*ip).proto }, p)
}

#[inline(always)]
fn parse_ipv6<const DIR: u32>(
    data: usize,
    data_end: usize,
    off: usize,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    let ip: *const Ipv6Hdr = ptr_at(data, data_end, off)?;
    if unsafe { (*ip).vcf[0] } >> 4 != 6 {
        return Err(Malformed);
    }
    p.family = Family::V6;
    p.hop_limit = unsafe { (*ip).hop_limit };

    let (src, dst) = unsafe { ((*ip).src_addr, (*ip).dst_addr) };
    (p.addr6, p.remote6) = if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    };
    let mut next = unsafe { (*ip).next_hdr };
    let mut off = off + Ipv6Hdr::LEN;
    for _ in 0..MAX_IPV6_EXT_HDRS {
        match next {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let h: *const [u8; 2] = ptr_at(data, data_end, off)?;
                let (nh, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                off += (len as usize + 1) * 8;
                if data + off > data_end {
                    return Err(Malformed);
                }
            }
            proto::AH => {
                let h: *const [u8; 2] = ptr_at(data, data_end, off)?;
                let (nh, len) = unsafe { ((*h)[0], (*h)[1]) };
                next = nh;
                off += (len as usize + 2) * 4;
                if data + off > data_end {
                    return Err(Malformed);
                }
            }
            proto::FRAGMENT => {
                let h: *const [u8; 8] = ptr_at(data, data_end, off)?;
                let (nh, hi, lo) = unsafe { ((*h)[0], (*h)[2], (*h)[3]) };
                if u16::from_be_bytes([hi, lo]) & 0xfff8 != 0 {
                    // A later fragment carries no L4 header.
                    return Ok(());
                }
                next = nh;
                off += 8;
            }
            _ => return parse_l4::<DIR>(data, data_end, off, next, p),
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
    let a = unsafe { &*arp };
    p.is_claim = true;
    if a[0] != 0 || a[1] != 1 || a[2] != 0x08 || a[3] != 0x00 || a[4] != 6 || a[5] != 4 {
        // ARP for another hardware or protocol type names no tenant address.
        return Ok(());
    }
    p.family = Family::V4;
    let (sender, target) = ([a[14], a[15], a[16], a[17]], [a[24], a[25], a[26], a[27]]);
    (p.addr4, p.remote4) = if DIR == direction::OUT {
        (sender, target)
    } else {
        (target, sender)
    };
    Ok(())
}

/// ICMPv6 neighbour solicitation and advertisement.
const ND_NS: u8 = 135;
const ND_NA: u8 = 136;

#[inline(always)]
fn parse_l4<const DIR: u32>(
    data: usize,
    data_end: usize,
    off: usize,
    l4_proto: u8,
    p: &mut Parsed,
) -> Result<(), Malformed> {
    match l4_proto {
        proto::TCP => {
            // Ports, sequence, ack, data offset and flags: the first 14 bytes.
            let h: *const [u8; 20] = ptr_at(data, data_end, off)?;
            let h = unsafe { &*h };
            if (h[12] >> 4) < 5 {
                return Err(Malformed);
            }
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
            p.tcp_flags = h[13];
        }
        proto::UDP => {
            let h: *const [u8; 8] = ptr_at(data, data_end, off)?;
            let h = unsafe { &*h };
            p.sport = u16::from_be_bytes([h[0], h[1]]);
            p.dport = u16::from_be_bytes([h[2], h[3]]);
        }
        proto::ICMP => {
            let h: *const [u8; 4] = ptr_at(data, data_end, off)?;
            let h = unsafe { &*h };
            p.sport = h[0] as u16;
            p.dport = h[1] as u16;
        }
        proto::ICMPV6 => {
            let h: *const [u8; 4] = ptr_at(data, data_end, off)?;
            let (ty, code) = unsafe { ((*h)[0], (*h)[1]) };
            p.sport = ty as u16;
            p.dport = code as u16;
            // Receivers discard ND that crossed a router, so only hop limit 255 is
            // ND; anything else shaped like it is ordinary ICMPv6 (and so gets no
            // exemption from suspension).
            if (ty == ND_NS || ty == ND_NA) && p.hop_limit == 255 {
                // type, code, checksum, flags/reserved, then the 16-byte target.
                let nd: *const [u8; 24] = ptr_at(data, data_end, off)?;
                p.is_claim = true;
                if DIR == direction::OUT && ty == ND_NA {
                    // An advertisement claims its target address.
                    let nd = unsafe { &*nd };
                    let mut target = [0u8; 16];
                    target.copy_from_slice(&nd[8..24]);
                    p.addr6 = target;
                }
            }
        }
        _ => {}
    }
    p.l4_proto = l4_proto;
    Ok(())
}
