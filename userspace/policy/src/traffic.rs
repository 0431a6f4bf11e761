//! Traffic vocabulary: which way traffic goes, as seen from the tenant, and the
//! protocols and outcomes of a tenant's first contacts. The dataplane decodes the
//! programs' events into these and the detectors reason in them.

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
}

impl Outcome {
    /// Whether the attempt failed; a missing answer is a failure (TRW counts it so).
    pub fn failed(self) -> bool {
        self != Outcome::Success
    }
}
