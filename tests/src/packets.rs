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

use std::net::{Ipv4Addr, Ipv6Addr};

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

    fn encode(&self) -> Vec<u8> {
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

    fn encode(&self) -> Vec<u8> {
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

    fn encode(&self) -> Vec<u8> {
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
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
    /// packet's bytes from its IP header on (see [`Ipv4::bytes`], [`Ipv6::bytes`]).
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

    fn proto(&self, family: Family) -> u8 {
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

    fn encode(&self, family: Family) -> Vec<u8> {
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
