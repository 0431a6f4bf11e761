//! Frame builders for `BPF_PROG_TEST_RUN` fixtures and benchmarks.
//!
//! A [`Frame`] is Ethernet, up to a few VLAN tags, and one L3 payload: [`Ipv4`],
//! [`Ipv6`] (with a chain of [`Ext`] headers), [`Arp`], or raw bytes behind any
//! ethertype. Length fields (IPv4 total length, IPv6 payload length, UDP length,
//! extension header lengths) are always consistent with what was built; checksums are
//! left zero because the programs under test do not verify them. [`Frame::truncate`]
//! cuts the finished bytes without fixing any length, which is how malformed frames
//! are made.
//!
//! ```
//! use std::net::Ipv4Addr;
//! use warden_tests::packets::{tcp, Frame, Ipv4, L4};
//!
//! let syn = Frame::new(
//!     Ipv4::new(Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2))
//!         .l4(L4::tcp(40000, 80, tcp::SYN)),
//! )
//! .vlan(100)
//! .build();
//! assert_eq!(syn.len(), 14 + 4 + 20 + 20);
//! ```
//!
//! This file holds the vocabulary (sizes, numbers, MACs) and the [`Frame`]; the packets
//! are in `l3` (IPv4, IPv6 and its extension headers, ARP) and `l4` (TCP, UDP, ICMP).

mod l3;
mod l4;

use std::net::Ipv6Addr;

pub use l3::{Arp, Ext, Ipv4, Ipv6};
pub use l4::L4;

/// An Ethernet MAC address.
pub type Mac = [u8; 6];

/// Header sizes, for cutting frames at header boundaries.
pub mod len {
    /// Ethernet header without tags.
    pub const ETH: usize = 14;
    /// One 802.1Q / 802.1AD tag.
    pub const VLAN: usize = 4;
    /// IPv4 header without options.
    pub const IPV4: usize = 20;
    /// IPv6 fixed header.
    pub const IPV6: usize = 40;
    /// ARP for IPv4 over Ethernet.
    pub const ARP: usize = 28;
    /// TCP header without options.
    pub const TCP: usize = 20;
    /// UDP header.
    pub const UDP: usize = 8;
    /// ICMP / ICMPv6 echo header.
    pub const ICMP_ECHO: usize = 8;
}

/// Ethertypes the builders write.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN_8021Q: u16 = 0x8100;
    pub const VLAN_8021AD: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    pub const LLDP: u16 = 0x88cc;
}

/// IP protocol / IPv6 next-header numbers the builders write.
pub mod proto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const GRE: u8 = 47;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const NO_NEXT: u8 = 59;
    pub const DSTOPTS: u8 = 60;
}

/// TCP flag bits (byte 13 of the header).
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Default source MAC of built frames (locally administered).
pub const SRC_MAC: Mac = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC of built frames (locally administered).
pub const DST_MAC: Mac = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet frame under construction.
#[derive(Clone, Debug)]
pub struct Frame {
    dst_mac: Mac,
    src_mac: Mac,
    /// Tags in wire order: `(tpid, tci)`.
    tags: Vec<(u16, u16)>,
    l3: L3,
    /// Length to pad to with bytes after the L3 packet (Ethernet padding), not
    /// covered by any length field.
    pad_to: Option<usize>,
    truncate: Option<usize>,
}

/// What follows the Ethernet header (and tags).
#[derive(Clone, Debug)]
pub enum L3 {
    Ipv4(Ipv4),
    Ipv6(Ipv6),
    Arp(Arp),
    /// Any ethertype with opaque bytes (LLDP, 802.3 length fields, garbage).
    Raw {
        ethertype: u16,
        bytes: Vec<u8>,
    },
}

impl From<Ipv4> for L3 {
    fn from(p: Ipv4) -> Self {
        L3::Ipv4(p)
    }
}

impl From<Ipv6> for L3 {
    fn from(p: Ipv6) -> Self {
        L3::Ipv6(p)
    }
}

impl From<Arp> for L3 {
    fn from(p: Arp) -> Self {
        L3::Arp(p)
    }
}

impl Frame {
    /// A frame carrying `l3`, with [`SRC_MAC`] and [`DST_MAC`] and no tag.
    pub fn new(l3: impl Into<L3>) -> Self {
        Self {
            dst_mac: DST_MAC,
            src_mac: SRC_MAC,
            tags: Vec::new(),
            l3: l3.into(),
            pad_to: None,
            truncate: None,
        }
    }

    /// A frame with an arbitrary ethertype and payload.
    pub fn raw(ethertype: u16, bytes: &[u8]) -> Self {
        Self::new(L3::Raw {
            ethertype,
            bytes: bytes.to_vec(),
        })
    }

    /// Sets the Ethernet addresses.
    pub fn macs(mut self, src: Mac, dst: Mac) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Sets the Ethernet source address alone (the sender's binding is checked on it).
    pub fn src_mac(mut self, src: Mac) -> Self {
        self.src_mac = src;
        self
    }

    /// Adds an 802.1Q tag (TPID 0x8100) with VLAN id `vid`, inside any tag already added.
    pub fn vlan(self, vid: u16) -> Self {
        self.tag(ethertype::VLAN_8021Q, vid)
    }

    /// Adds an 802.1AD service tag (TPID 0x88a8) with VLAN id `vid`.
    pub fn vlan_ad(self, vid: u16) -> Self {
        self.tag(ethertype::VLAN_8021AD, vid)
    }

    /// Adds a tag with any TPID; the TCI's PCP and DEI bits are zero.
    pub fn tag(mut self, tpid: u16, vid: u16) -> Self {
        self.tags.push((tpid, vid & 0x0fff));
        self
    }

    /// Pads the frame with zero bytes after the L3 packet until it is `total` bytes
    /// long (like Ethernet's 60-byte minimum); no length field covers the padding.
    pub fn pad_to(mut self, total: usize) -> Self {
        self.pad_to = Some(total);
        self
    }

    /// Cuts the built frame to its first `n` bytes (no-op if it is shorter), leaving
    /// every length field as it was: the frame then announces more than it carries.
    pub fn truncate(mut self, n: usize) -> Self {
        self.truncate = Some(n);
        self
    }

    /// Offset of the L3 header: Ethernet plus tags.
    pub fn l3_offset(&self) -> usize {
        len::ETH + len::VLAN * self.tags.len()
    }

    /// The frame's bytes.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        let (ethertype, l3) = self.l3.encode();
        for (tpid, tci) in &self.tags {
            out.extend_from_slice(&tpid.to_be_bytes());
            out.extend_from_slice(&tci.to_be_bytes());
        }
        out.extend_from_slice(&ethertype.to_be_bytes());
        out.extend_from_slice(&l3);
        if let Some(total) = self.pad_to {
            if out.len() < total {
                out.resize(total, 0);
            }
        }
        if let Some(n) = self.truncate {
            out.truncate(n);
        }
        out
    }
}

impl L3 {
    fn encode(&self) -> (u16, Vec<u8>) {
        match self {
            L3::Ipv4(p) => (ethertype::IPV4, p.encode()),
            L3::Ipv6(p) => (ethertype::IPV6, p.encode()),
            L3::Arp(p) => (ethertype::ARP, p.encode()),
            L3::Raw { ethertype, bytes } => (*ethertype, bytes.clone()),
        }
    }
}

/// The solicited-node multicast address of `addr` (ff02::1:ffXX:XXXX).
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::new(
        0xff02,
        0,
        0,
        0,
        0,
        1,
        0xff00 | u16::from(o[13]),
        u16::from_be_bytes([o[14], o[15]]),
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    #[test]
    fn ipv4_tcp_has_consistent_lengths_and_addresses() {
        let f = Frame::new(Ipv4::new(A, B).l4(L4::tcp(1, 2, tcp::SYN))).build();
        assert_eq!(f.len(), 54);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 40);
        assert_eq!(f[23], proto::TCP);
        assert_eq!(&f[26..30], &A.octets());
        assert_eq!(&f[30..34], &B.octets());
        assert_eq!(f[14 + 20 + 12], 0x50);
        assert_eq!(f[14 + 20 + 13], tcp::SYN);
    }

    #[test]
    fn ipv4_options_raise_ihl_and_fragment_fields_are_encoded() {
        let f = Frame::new(
            Ipv4::new(A, B)
                .options(2)
                .fragment(185, true)
                .l4(L4::udp(1, 2)),
        )
        .build();
        assert_eq!(f[14], 0x47);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 28 + 8);
        assert_eq!(u16::from_be_bytes([f[20], f[21]]), 0x2000 | 185);
        assert_eq!(f.len(), 14 + 28 + 8);
    }

    #[test]
    fn vlan_tags_come_before_the_ethertype() {
        let f = Frame::new(Arp::request(SRC_MAC, A, B))
            .vlan_ad(10)
            .vlan(20)
            .build();
        assert_eq!(
            &f[12..22],
            &[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20, 0x08, 0x06]
        );
        assert_eq!(f.len(), 14 + 8 + 28);
    }

    #[test]
    fn ipv6_extension_chain_links_next_headers_and_lengths() {
        let f = Frame::new(
            Ipv6::new(A6, B6)
                .ext(Ext::HOP_BY_HOP)
                .ext(Ext::Routing { segment: B6 })
                .ext(Ext::DEST_OPTS)
                .l4(L4::tcp(1, 2, tcp::ACK)),
        )
        .build();
        let ip = 14;
        assert_eq!(f[ip + 6], proto::HOPOPTS);
        let hbh = ip + 40;
        assert_eq!((f[hbh], f[hbh + 1]), (proto::ROUTING, 0));
        let rh = hbh + 8;
        assert_eq!((f[rh], f[rh + 1]), (proto::DSTOPTS, 2));
        let dst = rh + 24;
        assert_eq!((f[dst], f[dst + 1]), (proto::TCP, 0));
        let payload_len = u16::from_be_bytes([f[ip + 4], f[ip + 5]]) as usize;
        assert_eq!(payload_len, 8 + 24 + 8 + 20);
        assert_eq!(f.len(), ip + 40 + payload_len);
    }

    #[test]
    fn ipv6_fragment_header_encodes_offset_and_more_flag() {
        let f = Frame::new(Ipv6::new(A6, B6).fragment(3, true).l4(L4::udp(1, 2))).build();
        let fh = 14 + 40;
        assert_eq!(f[fh], proto::UDP);
        assert_eq!(u16::from_be_bytes([f[fh + 2], f[fh + 3]]), (3 << 3) | 1);
    }

    #[test]
    fn neighbor_solicitation_goes_to_the_solicited_node_group() {
        let f = Frame::new(Ipv6::new(A6, solicited_node(B6)).hop_limit(255).l4(
            L4::NeighborSolicitation {
                target: B6,
                source_mac: SRC_MAC,
            },
        ))
        .build();
        assert_eq!(f[14 + 6], proto::ICMPV6);
        assert_eq!(f[14 + 40], 135);
        assert_eq!(&f[14 + 24..14 + 40], &solicited_node(B6).octets());
        assert_eq!(f.len(), 14 + 40 + 32);
    }

    #[test]
    fn port_unreachable_quotes_the_reported_packet_after_an_8_byte_header() {
        let probe = Ipv4::new(A, B).l4(L4::udp(40000, 161));
        let quoted = probe.bytes();
        assert_eq!(quoted.len(), 20 + 8);
        let f = Frame::new(Ipv4::new(B, A).l4(L4::port_unreachable(false, &quoted))).build();
        let icmp = 14 + 20;
        assert_eq!(f[14 + 9], proto::ICMP);
        assert_eq!(&f[icmp..icmp + 2], &[3, 3]);
        assert_eq!(&f[icmp + 8..], &quoted[..]);

        let probe6 = Ipv6::new(A6, B6).l4(L4::udp(40000, 161));
        let f =
            Frame::new(Ipv6::new(B6, A6).l4(L4::port_unreachable(true, &probe6.bytes()))).build();
        let icmp = 14 + 40;
        assert_eq!(f[14 + 6], proto::ICMPV6);
        assert_eq!(&f[icmp..icmp + 2], &[1, 4]);
        assert_eq!(f.len(), icmp + 8 + 40 + 8);
    }

    #[test]
    fn truncate_cuts_without_fixing_lengths_and_pad_to_pads() {
        let full = Frame::new(Ipv4::new(A, B).l4(L4::udp(1, 2)));
        let cut = full.clone().truncate(30).build();
        assert_eq!(cut.len(), 30);
        let padded = full.pad_to(60).build();
        assert_eq!(padded.len(), 60);
        assert_eq!(u16::from_be_bytes([padded[16], padded[17]]), 28);
    }
}
