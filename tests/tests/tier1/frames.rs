//! Frame builders the fixtures share (on top of `warden_tests::packets`).

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_tests::packets::{proto, tcp, Ext, Frame, Ipv4, Ipv6, Mac, L4};

pub(crate) fn ip4(src: Ipv4Addr, dst: Ipv4Addr, l4: L4) -> Frame {
    Frame::new(Ipv4::new(src, dst).l4(l4))
}

pub(crate) fn ip6(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Frame {
    Frame::new(Ipv6::new(src, dst).l4(l4))
}

pub(crate) fn v4(src: Ipv4Addr, dst: Ipv4Addr) -> Ipv4 {
    Ipv4::new(src, dst)
}

pub(crate) fn v6(src: Ipv6Addr, dst: Ipv6Addr) -> Ipv6 {
    Ipv6::new(src, dst)
}

pub(crate) fn syn() -> L4 {
    L4::tcp(40000, 443, tcp::SYN)
}

/// A TCP SYN (a new connection) to `port`.
pub(crate) fn syn_to(port: u16) -> L4 {
    L4::tcp(40000, port, tcp::SYN)
}

pub(crate) fn udp() -> L4 {
    L4::udp(40000, 53)
}

pub(crate) fn ns(target: Ipv6Addr, mac: Mac) -> L4 {
    L4::NeighborSolicitation {
        target,
        source_mac: mac,
    }
}

pub(crate) fn na(target: Ipv6Addr, mac: Mac) -> L4 {
    L4::NeighborAdvertisement {
        target,
        flags: 0x20,
        target_mac: mac,
    }
}

/// Neighbour discovery: hop limit 255.
pub(crate) fn nd(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Frame {
    Frame::new(v6(src, dst).hop_limit(255).l4(l4))
}

/// IPv6 with hop-by-hop, routing (24 bytes) and destination options, then `l4`.
pub(crate) fn three_ext(src: Ipv6Addr, dst: Ipv6Addr, l4: L4) -> Frame {
    Frame::new(
        v6(src, dst)
            .ext(Ext::HOP_BY_HOP)
            .ext(Ext::Routing { segment: dst })
            .ext(Ext::DEST_OPTS)
            .l4(l4),
    )
}

/// An LLDP PDU (chassis id, port id, TTL, end).
pub(crate) const LLDP: [u8; 16] = [
    0x02, 0x07, 0x04, 0x02, 0, 0, 0, 0, 0x01, 0x04, 0x03, 0x02, 0x00, 0x78, 0, 0,
];
/// LLDP's nearest-bridge multicast address.
pub(crate) const LLDP_MAC: Mac = [0x01, 0x80, 0xc2, 0, 0, 0x0e];

/// An ICMPv6 message of `body` (type, code, ... as given) with hop limit 255.
pub(crate) fn icmp6_nd(src: Ipv6Addr, dst: Ipv6Addr, body: &[u8]) -> Frame {
    Frame::new(
        v6(src, dst)
            .hop_limit(255)
            .proto(proto::ICMPV6)
            .l4(L4::raw(body)),
    )
}

/// An NS body for `target` followed by `options` (raw bytes).
pub(crate) fn ns_body(target: Ipv6Addr, options: &[u8]) -> Vec<u8> {
    let mut b = vec![135, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&target.octets());
    b.extend_from_slice(options);
    b
}

/// A link-layer address option (1: source, 2: target) naming `mac`.
pub(crate) fn lladdr_opt(kind: u8, mac: Mac) -> [u8; 8] {
    [kind, 1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]]
}
