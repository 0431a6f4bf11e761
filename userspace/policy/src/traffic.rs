//! Traffic vocabulary: which way traffic goes, as seen from the tenant, the protocols
//! and outcomes of a tenant's first contacts, and what a block cuts. The dataplane
//! decodes the programs' events into these and writes blocks from them; the detectors
//! and the ladder reason in them.

use std::net::IpAddr;
use std::time::Duration;

use crate::tenant::TenantSlot;

/// Which way traffic goes, seen from the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by the tenant (`out` in metrics and the API).
    Out,
    /// Received by the tenant (`in`).
    In,
}

/// A transport protocol of a connection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP: a SYN.
    Tcp,
    /// UDP: a datagram to a port the tenant had not talked to.
    Udp,
    /// ICMP or ICMPv6: an echo request (port 0).
    Icmp,
}

/// How a connection attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Answered: SYN-ACK, a UDP reply, an echo reply.
    Success,
    /// TCP RST.
    Refused,
    /// ICMP destination or port unreachable.
    Unreachable,
    /// Nothing came back before the dataplane's timeout.
    NoAnswer,
    /// Warden's own enforcement dropped the attempt (a block, the SMTP policy, the plan
    /// or a throttle): it never left, so it says nothing of the remote.
    Dropped,
}

impl Outcome {
    /// Whether the remote turned the attempt down or never answered; a missing answer is
    /// a failure (TRW counts it so). An attempt Warden dropped is not: the tenant did not
    /// fail, Warden stopped it.
    pub fn failed(self) -> bool {
        matches!(
            self,
            Outcome::Refused | Outcome::Unreachable | Outcome::NoAnswer
        )
    }
}

/// What a block drops: the ladder decides it, the dataplane writes it as one key of the
/// programs' block map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockTarget {
    /// From-tenant traffic to this address (a flood's victim, a scanned host).
    Victim(IpAddr),
    /// From-tenant traffic to this destination port, any host (a horizontal scan, SMTP).
    Port(u16),
    /// To-tenant traffic at this tenant address (an inbound flood's target).
    Blackhole(IpAddr),
    /// To-tenant traffic to this tenant port, any address (a relaying listener).
    ListenPort(u16),
}

/// The endpoints of a connection attempt, answer or accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When the programs saw it (CLOCK_MONOTONIC).
    pub at: Duration,
    /// The transport protocol.
    pub proto: Proto,
    /// The tenant-side address.
    pub local: IpAddr,
    /// The tenant-side port (ICMP: 0).
    pub local_port: u16,
    /// The other side's address.
    pub remote: IpAddr,
    /// The other side's port (ICMP: 0).
    pub remote_port: u16,
}

/// What a tenant's spoofed frame claimed, as the programs report it (once per contact
/// epoch for each kind, address and MAC): the evidence of a spoofing detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When the programs dropped it (CLOCK_MONOTONIC).
    pub at: Duration,
    /// `SpoofIp`, `SpoofArp` or `SpoofMac`: why it was dropped.
    pub kind: crate::Kind,
    /// The address it claimed: its source, the ARP sender, the advertised ND target.
    pub addr: IpAddr,
    /// The frame's source MAC.
    pub mac: [u8; 6],
}

/// What a flood estimate counts (the programs number them in `warden_common::facts::class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FloodClass {
    /// Out: TCP SYNs without ACK at one victim (threshold `flood_out.syn_pps`).
    Syn,
    /// Out: UDP, ICMP and other non-TCP packets at one victim (`flood_out.pps`).
    Packets,
    /// Out: reflection-sized UDP replies from an amplifier port (`flood_out.syn_pps`).
    Reply,
    /// In: unsolicited packets at one tenant address (`flood_in.pps`).
    InPackets,
    /// In: bytes of those packets (`flood_in.bps / 8`).
    InBytes,
}

impl FloodClass {
    /// The direction of the traffic the class counts.
    pub fn direction(self) -> Direction {
        match self {
            FloodClass::Syn | FloodClass::Packets | FloodClass::Reply => Direction::Out,
            FloodClass::InPackets | FloodClass::InBytes => Direction::In,
        }
    }
}
