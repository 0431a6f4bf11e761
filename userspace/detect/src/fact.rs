//! The facts the dataplane reports: small `Copy` records, one per observation.
//!
//! Times are offsets from one monotonic epoch the caller chooses (the daemon uses the
//! kernel's boot clock); the engine only compares and subtracts them.

use std::net::IpAddr;
use std::time::Duration;

use warden_policy::tenant::TenantSlot;
pub use warden_policy::traffic::Claim;
use warden_policy::traffic::{Direction, Outcome, Proto};

/// An outbound connection attempt by a tenant, reported once its outcome is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attempt {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The destination.
    pub remote: IpAddr,
    /// The destination port (0 for ICMP).
    pub port: u16,
    /// The protocol.
    pub proto: Proto,
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started.
    pub at: Duration,
}

/// A flood estimate between a tenant and one address: the programs count per victim (out)
/// or per tenant address (in) in a count-min sketch over ~1 s flood epochs and report an
/// estimate when it crosses its threshold; the pipeline turns that report into this fact,
/// with the one figure the report is about and the others 0. (There are no per-address
/// counters: the sketch is what bounds the kernel's memory.)
///
/// Every figure leaves out segments of TCP connections the receiver accepted (it answered
/// the SYN): their pace is set by the receiver's own congestion control, so a bulk transfer
/// is never a flood. That traffic is policed by the rate plan and detected as `bandwidth`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// For [`Direction::Out`] the receiver; for [`Direction::In`] the tenant's address.
    pub remote: IpAddr,
    /// Which way.
    pub dir: Direction,
    /// Packets per second, all classes below included.
    pub pps: f64,
    /// TCP SYNs (without ACK) per second.
    pub syn_pps: f64,
    /// Reflection-sized replies per second: UDP from a service port (DNS, NTP, SSDP, memcached,
    /// ...) larger than 512 bytes, the traffic of an abused amplifier.
    pub reply_pps: f64,
    /// Bits per second of the same packets.
    pub bps: f64,
    /// When the estimate crossed its threshold.
    pub at: Duration,
}

/// An outbound SMTP first contact (ports 25, 465, 587) by a tenant allowed to send mail,
/// with its outcome: the failure ratio's measure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smtp {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The mail server.
    pub server: IpAddr,
    /// How the connection attempt ended.
    pub outcome: Outcome,
    /// When it started.
    pub at: Duration,
}

/// A connection of a tenant allowed to send mail to an SMTP port: every one the
/// programs saw (retransmissions once), first contact or not.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SmtpConnection {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The mail server.
    pub server: IpAddr,
    /// When its SYN was sent.
    pub at: Duration,
}

/// One tenant address's fan-in and fan-out over one window of the `proxy` detector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fan {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// The tenant's address.
    pub addr: IpAddr,
    /// Distinct sources that opened connections to `addr`.
    pub inbound_clients: u32,
    /// Distinct destinations `addr` opened connections to.
    pub outbound_destinations: u32,
    /// Bytes received by `addr` on those inbound connections.
    pub in_bytes: u64,
    /// Bytes sent by `addr` on those outbound connections.
    pub out_bytes: u64,
    /// End of the window.
    pub at: Duration,
}

/// Why the dataplane dropped a tenant's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A source IP the tenant does not own.
    SpoofIp,
    /// An ARP or IPv6 ND claim for an address the tenant does not own.
    SpoofArp,
    /// A source MAC the tenant does not own.
    SpoofMac,
    /// Over the tenant's rate plan.
    Bandwidth,
}

impl DropReason {
    /// Every reason, in the order [`crate::pipeline::DropTotals`] counts them.
    pub const ALL: [DropReason; 4] = [
        DropReason::SpoofIp,
        DropReason::SpoofArp,
        DropReason::SpoofMac,
        DropReason::Bandwidth,
    ];
}

/// Packets the dataplane dropped since the previous report for this tenant and reason.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Drops {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// Why.
    pub reason: DropReason,
    /// How many since the previous report.
    pub count: u64,
    /// Packets the tenant sent and received over the same interval, dropped ones
    /// included (the denominator of the drop ratio).
    pub offered: u64,
    /// When counted.
    pub at: Duration,
}

/// Anything the engine observes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fact {
    /// See [`Attempt`].
    Attempt(Attempt),
    /// See [`Rate`].
    Rate(Rate),
    /// See [`Smtp`].
    Smtp(Smtp),
    /// See [`Fan`].
    Fan(Fan),
    /// See [`Drops`].
    Drops(Drops),
    /// What a spoofed frame claimed: evidence for the spoofing kinds.
    Claim(Claim),
    /// See [`SmtpConnection`].
    SmtpConnection(SmtpConnection),
}

impl Fact {
    /// The slot of the tenant the fact is about.
    pub fn slot(&self) -> TenantSlot {
        match self {
            Fact::Attempt(f) => f.slot,
            Fact::Rate(f) => f.slot,
            Fact::Smtp(f) => f.slot,
            Fact::Fan(f) => f.slot,
            Fact::Drops(f) => f.slot,
            Fact::Claim(f) => f.slot,
            Fact::SmtpConnection(f) => f.slot,
        }
    }

    /// When it was observed.
    pub fn at(&self) -> Duration {
        match self {
            Fact::Attempt(f) => f.at,
            Fact::Rate(f) => f.at,
            Fact::Smtp(f) => f.at,
            Fact::Fan(f) => f.at,
            Fact::Drops(f) => f.at,
            Fact::Claim(f) => f.at,
            Fact::SmtpConnection(f) => f.at,
        }
    }
}

macro_rules! from_fact {
    ($($ty:ident),*) => {
        $(impl From<$ty> for Fact {
            fn from(f: $ty) -> Fact {
                Fact::$ty(f)
            }
        })*
    };
}

from_fact!(Attempt, Rate, Smtp, Fan, Drops, Claim, SmtpConnection);
