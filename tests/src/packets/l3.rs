//! The L3 packets a [`Frame`](super::Frame) carries: [`Ipv4`], [`Ipv6`] with its chain of
//! [`Ext`] headers, and [`Arp`]; each encodes its length fields from what it holds.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ethertype, l4::Family, len, proto, Mac, L4};

/// An IPv4 packet.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    version: u8,
    /// Header length in 32-bit words as written; `None` means 5 plus the options.
    ihl: Option<u8>,
    /// Option bytes (a multiple of 4 after padding with End-of-Options).
    options: Vec<u8>,
    ttl: u8,
    /// Fragment offset in 8-byte units.
    frag_offset: u16,
    more_fragments: bool,
    dont_fragment: bool,
    /// Protocol number when it should differ from what `l4` implies.
    proto: Option<u8>,
    l4: L4,
}

impl Ipv4 {
    /// A packet from `src` to `dst` with no L4 header yet (protocol 59, empty).
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        Self {
            src,
            dst,
            version: 4,
            ihl: None,
            options: Vec::new(),
            ttl: 64,
            frag_offset: 0,
            more_fragments: false,
            dont_fragment: false,
            proto: None,
            l4: L4::None {
                payload: Vec::new(),
            },
        }
    }

    /// Sets the L4 header and payload.
    pub fn l4(mut self, l4: L4) -> Self {
        self.l4 = l4;
        self
    }

    /// Adds `words` 32-bit words of options (NOPs), so the header is `5 + words` long
    /// and `ihl` says so.
    pub fn options(mut self, words: u8) -> Self {
        self.options = vec![1; usize::from(words) * 4];
        self
    }

    /// Writes `ihl` into the header as is, whatever the real header length; values
    /// below 5 make an impossible header. Options already added are still written.
    pub fn ihl(mut self, ihl: u8) -> Self {
        self.ihl = Some(ihl & 0x0f);
        self
    }

    /// Writes another version number into the first nibble.
    pub fn version(mut self, version: u8) -> Self {
        self.version = version & 0x0f;
        self
    }

    /// Makes the packet a fragment at `offset` 8-byte units, with or without MF.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.frag_offset = offset & 0x1fff;
        self.more_fragments = more;
        self
    }

    /// Sets the DF bit.
    pub fn dont_fragment(mut self) -> Self {
        self.dont_fragment = true;
        self
    }

    /// Writes `proto` as the protocol number instead of the one `l4` implies.
    pub fn proto(mut self, proto: u8) -> Self {
        self.proto = Some(proto);
        self
    }

    /// The packet's bytes from the IP header on (what an ICMP error quotes).
    pub fn bytes(&self) -> Vec<u8> {
        self.encode()
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let l4 = self.l4.encode(Family::V4);
        let header_len = len::IPV4 + self.options.len();
        let ihl = self.ihl.unwrap_or((header_len / 4) as u8);
        let total = (header_len + l4.len()) as u16;
        let mut frags = self.frag_offset;
        if self.more_fragments {
            frags |= 0x2000;
        }
        if self.dont_fragment {
            frags |= 0x4000;
        }
        let mut h = Vec::with_capacity(header_len + l4.len());
        h.push((self.version << 4) | ihl);
        h.push(0); // DSCP/ECN
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&0x1234u16.to_be_bytes()); // identification
        h.extend_from_slice(&frags.to_be_bytes());
        h.push(self.ttl);
        h.push(self.proto.unwrap_or_else(|| self.l4.proto(Family::V4)));
        h.extend_from_slice(&[0, 0]); // checksum: not verified by the programs
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&self.options);
        h.extend_from_slice(&l4);
        h
    }
}

/// An IPv6 packet.
#[derive(Clone, Debug)]
pub struct Ipv6 {
    src: Ipv6Addr,
    dst: Ipv6Addr,
    version: u8,
    hop_limit: u8,
    ext: Vec<Ext>,
    /// Next-header number after the last extension header when it should differ
    /// from what `l4` implies.
    proto: Option<u8>,
    l4: L4,
}

/// An IPv6 extension header.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// Hop-by-hop options, `8 * (1 + extra)` bytes of PadN.
    HopByHop { extra: u8 },
    /// Segment routing header (type 4) with one segment: 24 bytes.
    Routing { segment: Ipv6Addr },
    /// Destination options, `8 * (1 + extra)` bytes of PadN.
    DestOpts { extra: u8 },
    /// Fragment header: `offset` in 8-byte units, M flag, identification.
    Fragment { offset: u16, more: bool, id: u32 },
    /// Authentication header with a 12-byte ICV: 24 bytes.
    Ah { spi: u32 },
}

impl Ext {
    /// Hop-by-hop options, 8 bytes.
    pub const HOP_BY_HOP: Ext = Ext::HopByHop { extra: 0 };
    /// Destination options, 8 bytes.
    pub const DEST_OPTS: Ext = Ext::DestOpts { extra: 0 };

    fn proto(&self) -> u8 {
        match self {
            Ext::HopByHop { .. } => proto::HOPOPTS,
            Ext::Routing { .. } => proto::ROUTING,
            Ext::DestOpts { .. } => proto::DSTOPTS,
            Ext::Fragment { .. } => proto::FRAGMENT,
            Ext::Ah { .. } => proto::AH,
        }
    }

    fn encode(&self, next: u8) -> Vec<u8> {
        match *self {
            Ext::HopByHop { extra } | Ext::DestOpts { extra } => {
                let total = 8 * (1 + usize::from(extra));
                let mut h = vec![next, extra];
                // One PadN option filling the rest of the header.
                h.push(1);
                h.push((total - 4) as u8);
                h.resize(total, 0);
                h
            }
            Ext::Routing { segment } => {
                // next, hdr ext len (8-byte units after the first 8), type 4 (SRH),
                // segments left, last entry, flags, tag(2), one segment.
                let mut h = vec![next, 2, 4, 0, 0, 0, 0, 0];
                h.extend_from_slice(&segment.octets());
                h
            }
            Ext::Fragment { offset, more, id } => {
                let off = ((offset & 0x1fff) << 3) | u16::from(more);
                let mut h = vec![next, 0];
                h.extend_from_slice(&off.to_be_bytes());
                h.extend_from_slice(&id.to_be_bytes());
                h
            }
            Ext::Ah { spi } => {
                // Payload length is in 4-byte units minus 2: (4 + 2) * 4 = 24 bytes.
                let mut h = vec![next, 4, 0, 0];
                h.extend_from_slice(&spi.to_be_bytes());
                h.extend_from_slice(&1u32.to_be_bytes()); // sequence number
                h.resize(24, 0); // ICV
                h
            }
        }
    }
}

impl Ipv6 {
    /// A packet from `src` to `dst` with no extension headers and no L4 header yet
    /// (next header 59, empty).
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        Self {
            src,
            dst,
            version: 6,
            hop_limit: 64,
            ext: Vec::new(),
            proto: None,
            l4: L4::None {
                payload: Vec::new(),
            },
        }
    }

    /// Sets the L4 header and payload.
    pub fn l4(mut self, l4: L4) -> Self {
        self.l4 = l4;
        self
    }

    /// Appends an extension header to the chain.
    pub fn ext(mut self, ext: Ext) -> Self {
        self.ext.push(ext);
        self
    }

    /// Appends a fragment header at `offset` 8-byte units, with or without M.
    pub fn fragment(self, offset: u16, more: bool) -> Self {
        self.ext(Ext::Fragment {
            offset,
            more,
            id: 0x0bad_cafe,
        })
    }

    /// Writes another version number into the first nibble.
    pub fn version(mut self, version: u8) -> Self {
        self.version = version & 0x0f;
        self
    }

    /// Sets the hop limit (255 for neighbour discovery).
    pub fn hop_limit(mut self, hop_limit: u8) -> Self {
        self.hop_limit = hop_limit;
        self
    }

    /// Writes `proto` as the next header after the chain instead of what `l4` implies.
    pub fn proto(mut self, proto: u8) -> Self {
        self.proto = Some(proto);
        self
    }

    /// The packet's bytes from the IP header on (what an ICMPv6 error quotes).
    pub fn bytes(&self) -> Vec<u8> {
        self.encode()
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let last = self.proto.unwrap_or_else(|| self.l4.proto(Family::V6));
        let mut payload = Vec::new();
        for (i, ext) in self.ext.iter().enumerate() {
            let next = self.ext.get(i + 1).map_or(last, Ext::proto);
            payload.extend_from_slice(&ext.encode(next));
        }
        payload.extend_from_slice(&self.l4.encode(Family::V6));
        let first = self.ext.first().map_or(last, Ext::proto);
        let mut h = Vec::with_capacity(len::IPV6 + payload.len());
        h.extend_from_slice(&[self.version << 4, 0, 0, 0]); // traffic class, flow label 0
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.push(first);
        h.push(self.hop_limit);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        h.extend_from_slice(&payload);
        h
    }
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Debug)]
pub struct Arp {
    htype: u16,
    ptype: u16,
    op: u16,
    sender_mac: Mac,
    sender_ip: Ipv4Addr,
    target_mac: Mac,
    target_ip: Ipv4Addr,
}

impl Arp {
    /// "Who has `target_ip`? Tell `sender_ip`."
    pub fn request(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Self {
        Self {
            htype: 1,
            ptype: ethertype::IPV4,
            op: 1,
            sender_mac,
            sender_ip,
            target_mac: [0; 6],
            target_ip,
        }
    }

    /// "`sender_ip` is at `sender_mac`", sent to `target_mac`/`target_ip`.
    pub fn reply(
        sender_mac: Mac,
        sender_ip: Ipv4Addr,
        target_mac: Mac,
        target_ip: Ipv4Addr,
    ) -> Self {
        Self {
            htype: 1,
            ptype: ethertype::IPV4,
            op: 2,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        }
    }

    /// Writes another hardware type (1 is Ethernet).
    pub fn htype(mut self, htype: u16) -> Self {
        self.htype = htype;
        self
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(len::ARP);
        h.extend_from_slice(&self.htype.to_be_bytes());
        h.extend_from_slice(&self.ptype.to_be_bytes());
        h.push(6); // hardware address length
        h.push(4); // protocol address length
        h.extend_from_slice(&self.op.to_be_bytes());
        h.extend_from_slice(&self.sender_mac);
        h.extend_from_slice(&self.sender_ip.octets());
        h.extend_from_slice(&self.target_mac);
        h.extend_from_slice(&self.target_ip.octets());
        h
    }
}
