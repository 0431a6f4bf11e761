//! The L4 headers a packet carries: [`L4`] (TCP, UDP, ICMP and ICMPv6 messages, or raw
//! bytes), encoded for the IP family that carries them.

use std::net::Ipv6Addr;

use super::{len, proto, Mac};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    V4,
    V6,
}

/// An L4 header with its payload.
#[derive(Clone, Debug)]
pub enum L4 {
    /// No L4 header: the payload alone (protocol 59, "no next header", unless overridden).
    None { payload: Vec<u8> },
    /// TCP with a 20-byte header; `data_offset` is written as is (5 is right).
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        data_offset: u8,
        payload: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    /// ICMP echo request/reply; ICMPv6 (type 128/129) inside IPv6.
    Echo {
        reply: bool,
        id: u16,
        seq: u16,
        payload: Vec<u8>,
    },
    /// ICMP destination unreachable (type 3; ICMPv6 type 1 inside IPv6) with `code`,
    /// quoting the start of the packet it reports (from its IP header on).
    Unreachable { code: u8, quoted: Vec<u8> },
    /// ICMPv6 neighbour solicitation for `target`, with a source link-layer option.
    NeighborSolicitation { target: Ipv6Addr, source_mac: Mac },
    /// ICMPv6 neighbour advertisement for `target` (flags: R 0x80, S 0x40, O 0x20),
    /// with a target link-layer option.
    NeighborAdvertisement {
        target: Ipv6Addr,
        flags: u8,
        target_mac: Mac,
    },
}

impl L4 {
    /// TCP with the given flags and no payload.
    pub fn tcp(sport: u16, dport: u16, flags: u8) -> Self {
        L4::Tcp {
            sport,
            dport,
            flags,
            data_offset: 5,
            payload: Vec::new(),
        }
    }

    /// UDP with no payload.
    pub fn udp(sport: u16, dport: u16) -> Self {
        L4::Udp {
            sport,
            dport,
            payload: Vec::new(),
        }
    }

    /// An echo request with a few payload bytes.
    pub fn echo_request(id: u16, seq: u16) -> Self {
        L4::Echo {
            reply: false,
            id,
            seq,
            payload: b"warden!!".to_vec(),
        }
    }

    /// An echo reply with a few payload bytes.
    pub fn echo_reply(id: u16, seq: u16) -> Self {
        L4::Echo {
            reply: true,
            id,
            seq,
            payload: b"warden!!".to_vec(),
        }
    }

    /// ICMP port unreachable (code 3; ICMPv6: code 4) quoting `quoted`, the reported
    /// packet's bytes from its IP header on (see [`Ipv4::bytes`](super::Ipv4::bytes), [`Ipv6::bytes`](super::Ipv6::bytes)).
    pub fn port_unreachable(v6: bool, quoted: &[u8]) -> Self {
        L4::Unreachable {
            code: if v6 { 4 } else { 3 },
            quoted: quoted.to_vec(),
        }
    }

    /// Raw bytes with no L4 header.
    pub fn raw(payload: &[u8]) -> Self {
        L4::None {
            payload: payload.to_vec(),
        }
    }

    /// Replaces the payload (an unreachable's quoted packet; no effect on neighbour
    /// discovery messages).
    pub fn with_payload(mut self, bytes: &[u8]) -> Self {
        match &mut self {
            L4::None { payload }
            | L4::Tcp { payload, .. }
            | L4::Udp { payload, .. }
            | L4::Echo { payload, .. }
            | L4::Unreachable {
                quoted: payload, ..
            } => *payload = bytes.to_vec(),
            L4::NeighborSolicitation { .. } | L4::NeighborAdvertisement { .. } => {}
        }
        self
    }

    pub(super) fn proto(&self, family: Family) -> u8 {
        match self {
            L4::None { .. } => proto::NO_NEXT,
            L4::Tcp { .. } => proto::TCP,
            L4::Udp { .. } => proto::UDP,
            L4::Echo { .. } | L4::Unreachable { .. } if family == Family::V4 => proto::ICMP,
            L4::Echo { .. }
            | L4::Unreachable { .. }
            | L4::NeighborSolicitation { .. }
            | L4::NeighborAdvertisement { .. } => proto::ICMPV6,
        }
    }

    pub(super) fn encode(&self, family: Family) -> Vec<u8> {
        let mut h = Vec::new();
        match self {
            L4::None { payload } => h.extend_from_slice(payload),
            L4::Tcp {
                sport,
                dport,
                flags,
                data_offset,
                payload,
            } => {
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&1u32.to_be_bytes()); // sequence
                h.extend_from_slice(&0u32.to_be_bytes()); // acknowledgment
                h.push(data_offset << 4);
                h.push(*flags);
                h.extend_from_slice(&64240u16.to_be_bytes()); // window
                h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                h.extend_from_slice(payload);
            }
            L4::Udp {
                sport,
                dport,
                payload,
            } => {
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&((len::UDP + payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h.extend_from_slice(payload);
            }
            L4::Echo {
                reply,
                id,
                seq,
                payload,
            } => {
                let ty = match (family, reply) {
                    (Family::V4, false) => 8,
                    (Family::V4, true) => 0,
                    (Family::V6, false) => 128,
                    (Family::V6, true) => 129,
                };
                h.extend_from_slice(&[ty, 0, 0, 0]);
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                h.extend_from_slice(payload);
            }
            L4::Unreachable { code, quoted } => {
                let ty = if family == Family::V4 { 3 } else { 1 };
                // type, code, checksum, 4 unused bytes, then the quoted packet.
                h.extend_from_slice(&[ty, *code, 0, 0, 0, 0, 0, 0]);
                h.extend_from_slice(quoted);
            }
            L4::NeighborSolicitation { target, source_mac } => {
                h.extend_from_slice(&[135, 0, 0, 0, 0, 0, 0, 0]);
                h.extend_from_slice(&target.octets());
                h.extend_from_slice(&[1, 1]); // source link-layer address, 8 bytes
                h.extend_from_slice(source_mac);
            }
            L4::NeighborAdvertisement {
                target,
                flags,
                target_mac,
            } => {
                h.extend_from_slice(&[136, 0, 0, 0, *flags, 0, 0, 0]);
                h.extend_from_slice(&target.octets());
                h.extend_from_slice(&[2, 1]); // target link-layer address, 8 bytes
                h.extend_from_slice(target_mac);
            }
        }
        h
    }
}
