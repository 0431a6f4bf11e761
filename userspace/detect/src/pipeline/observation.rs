//! What the pipeline is told of the programs: the daemon decodes their events (the
//! dataplane's `KernelEvent`s) and hands them over as [`Observation`]s, so detection
//! never sees the kernel's records.

use std::net::IpAddr;
use std::time::Duration;

use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::{Claim, Contact, Direction, FloodClass, Outcome};

/// One thing the programs saw. Times are CLOCK_MONOTONIC.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// A tenant's first contact with a remote endpoint.
    Attempt(Contact),
    /// The answer to an earlier attempt with the same endpoints.
    Outcome {
        /// The attempt answered (`at` is when the answer came).
        contact: Contact,
        /// How it was answered.
        outcome: Outcome,
    },
    /// The tenant accepted a connection from a new remote (`local`/`local_port` is the
    /// listening side).
    Accepted(Contact),
    /// A flood estimate crossed its threshold.
    Flood(Flood),
    /// A frame the programs captured because a flag asked for it.
    Frame(Frame),
    /// What a spoofed frame of the tenant claimed.
    Spoof(Claim),
    /// A connection of the tenant to an SMTP port (every one, not only first contacts).
    SmtpConnection(Contact),
}

impl Observation {
    /// The slot of the tenant it is about.
    pub fn slot(&self) -> TenantSlot {
        match self {
            Observation::Attempt(c) | Observation::Accepted(c) => c.slot,
            Observation::Outcome { contact, .. } => contact.slot,
            Observation::Flood(f) => f.slot,
            Observation::Frame(f) => f.slot,
            Observation::Spoof(c) => c.slot,
            Observation::SmtpConnection(c) => c.slot,
        }
    }
}

/// A flood estimate that crossed its threshold, as a rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flood {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When it crossed.
    pub at: Duration,
    /// Which way the flood goes.
    pub dir: Direction,
    /// Out: the victim; in: the attacked tenant address.
    pub addr: IpAddr,
    /// What was counted.
    pub class: FloodClass,
    /// The estimate per second (packets, or bytes for [`FloodClass::InBytes`]).
    pub per_second: f64,
}

/// A captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The tenant's slot.
    pub slot: TenantSlot,
    /// When it was captured.
    pub at: Duration,
    /// The frame's length on the wire (no FCS).
    pub orig_len: u32,
    /// The frame's first bytes, from the Ethernet header.
    pub data: Vec<u8>,
}
