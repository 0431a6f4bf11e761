//! The kernel micro cases: the policies the bench measures in turn, and every case's
//! program, frame, bar and where one run of it must land (verdict and counter).

use std::net::{Ipv4Addr, Ipv6Addr};

use warden_common::{direction, program, reason};
use warden_tests::packets::{tcp, Frame, Ipv4, Ipv6, L4};

use super::{
    answer::answer_frame,
    fixtures::{host_v4, host_v6, net_v6, tenant_mac, wide_v4, wide_v6},
    BAR_NS, BLACKHOLED_CASE, BLACKHOLED_TENANT, DATAGRAM_CASE, EXHAUSTED_TENANT, FOREIGN_TENANT,
    NEW_FLOW_BAR_NS, NEW_FLOW_FIRST_REMOTE, NEW_FLOW_PORT, OUTSIDE_V4, OUTSIDE_V6, POLICED_TENANT,
    PROBE_TENANT, SHAPED_TENANT, SUSPENDED_TENANT, TC_BAR_NS, TC_DROP, TC_PASS, TENANTS,
    UNKNOWN_V4, UNKNOWN_V6, WIDE, WIDE_TENANT, XDP_BENCH_ANSWER, XDP_BENCH_NEW_FLOW, XDP_DROP,
    XDP_PASS,
};

/// The policies the bench measures, in order; the daemon is switched to each (its
/// file rewritten, SIGHUP) just before its cases run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    /// Every tenant on a /32 and a /64, with a bound MAC.
    OneLength,
    /// The last [`WIDE`] tenants on a /24 and a /48, with bound MACs.
    TwoLengths,
    /// Every tenant on a /32 and a /64, no MAC bound anywhere.
    NoMacs,
}

impl Policy {
    pub(super) const ALL: [Policy; 3] = [Policy::OneLength, Policy::TwoLengths, Policy::NoMacs];

    pub(super) fn label(self) -> &'static str {
        match self {
            Policy::OneLength => "/32 | /64",
            Policy::TwoLengths => "/32 /24 | /64 /48",
            Policy::NoMacs => "/32 | /64, no MACs",
        }
    }

    pub(super) fn binds_macs(self) -> bool {
        self != Policy::NoMacs
    }

    /// Prefix lengths in use, longest first: (IPv4, IPv6).
    pub(super) fn lengths(self) -> (&'static [u8], &'static [u8]) {
        match self {
            Policy::OneLength | Policy::NoMacs => (&[32], &[64]),
            Policy::TwoLengths => (&[32, 24], &[64, 48]),
        }
    }

    /// Tenant `i`'s prefixes: ((IPv4, length), (IPv6, length)).
    pub(super) fn prefixes(self, i: u32) -> ((Ipv4Addr, u8), (Ipv6Addr, u8)) {
        if self == Policy::TwoLengths && i >= TENANTS - WIDE {
            ((wide_v4(i), 24), (wide_v6(i), 48))
        } else {
            ((host_v4(i), 32), (net_v6(i), 64))
        }
    }
}

/// One measured case: a program, a frame, and where one run of it must land.
pub(super) struct Case {
    pub(super) name: &'static str,
    pub(super) policy: Policy,
    pub(super) program: &'static str,
    pub(super) frame: Vec<u8>,
    pub(super) lands: Lands,
    /// Most the case may cost over the baseline, in ns.
    pub(super) bar_ns: f64,
    /// The repetitions of a run are one flow, or each a new one.
    pub(super) flow: Flow,
}

/// What the repetitions of one test run are to the fact path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// The same frame, so the same flow: facts see a first contact at most once.
    Repeated,
    /// [`XDP_BENCH_NEW_FLOW`] moves the destination on: every repetition a first
    /// contact of the tenant [`Lands`] names.
    New,
    /// [`XDP_BENCH_ANSWER`] moves the source on: every repetition answers a pending
    /// first contact of the tenant [`Lands`] names (an OUTCOME into the attempt log).
    Answer,
}

/// Where a run lands: the verdict and the one counter it moves.
#[derive(Clone, Copy)]
pub(super) enum Lands {
    /// Passed, counted to the tenant.
    Tenant { index: u32, dir: u32 },
    /// Passed, counted as NO_TENANT.
    NoTenant { dir: u32 },
    /// Dropped for `reason`, counted to the tenant and in that reason.
    Dropped { index: u32, dir: u32, reason: usize },
    /// Dropped, sender is no tenant: counted as SPOOFED.
    Spoofed { dir: u32 },
}

impl Lands {
    /// The return value of an XDP program landing here.
    pub(super) fn verdict(self) -> u32 {
        match self {
            Lands::Tenant { .. } | Lands::NoTenant { .. } => XDP_PASS,
            Lands::Dropped { .. } | Lands::Spoofed { .. } => XDP_DROP,
        }
    }

    fn passes(self) -> bool {
        matches!(self, Lands::Tenant { .. } | Lands::NoTenant { .. })
    }

    pub(super) fn describe(self) -> String {
        let d = |dir: u32| direction::NAMES[dir as usize];
        match self {
            Lands::Tenant { index, dir } => format!("pass, tenant {index} {}", d(dir)),
            Lands::NoTenant { dir } => format!("pass, no_tenant {}", d(dir)),
            Lands::Dropped { index, dir, reason } => {
                format!("drop {}, tenant {index} {}", reason::NAMES[reason], d(dir))
            }
            Lands::Spoofed { dir } => format!("drop, spoofed {}", d(dir)),
        }
    }
}

impl Case {
    /// Whether the case's program is a tc one (timed against the tc baseline).
    pub(super) fn is_tc(&self) -> bool {
        is_tc(self.program)
    }

    /// The return value of the case's program.
    pub(super) fn verdict(&self) -> u32 {
        match (self.is_tc(), self.lands.passes()) {
            (false, _) => self.lands.verdict(),
            (true, true) => TC_PASS,
            (true, false) => TC_DROP,
        }
    }
}

/// Whether `program` is one of the tc programs the bench loads.
pub(super) fn is_tc(program: &str) -> bool {
    program == program::TC_FROM_TENANT || program == program::TC_PASS_BASELINE
}

pub(super) fn cases() -> Vec<Case> {
    // Outside every tenant prefix and every management prefix, in every policy.
    let (outside, outside6) = (OUTSIDE_V4, OUTSIDE_V6);
    let (unknown4, unknown6) = (UNKNOWN_V4, UNKNOWN_V6);
    let host6 = host_v6;
    let syn = || L4::tcp(40000, 443, tcp::SYN);
    let to = |dst: Ipv4Addr| {
        Frame::new(Ipv4::new(outside, dst).l4(syn()))
            .pad_to(64)
            .build()
    };
    // A datagram from outside, as a DNS answer or a UDP flood arrives.
    let udp_to = |dst: Ipv4Addr| {
        Frame::new(Ipv4::new(outside, dst).l4(L4::udp(53, 40000)))
            .pad_to(64)
            .build()
    };
    let (to_tenant, from_tenant) = (program::XDP_TO_TENANT, program::XDP_FROM_TENANT);
    let (out, inn) = (direction::OUT, direction::IN);
    vec![
        Case {
            name: "known tenant v4, to-tenant (meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "known tenant v6, from-tenant (MAC + address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(host6(PROBE_TENANT), outside6).l4(syn()))
                .src_mac(tenant_mac(PROBE_TENANT))
                .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "unknown address v4, to-tenant",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(unknown4),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "spoofed source, from-tenant (another tenant's address: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(FOREIGN_TENANT), outside).l4(syn()))
                .src_mac(tenant_mac(PROBE_TENANT))
                .pad_to(64)
                .build(),
            lands: Lands::Dropped {
                index: PROBE_TENANT,
                dir: out,
                reason: reason::SPOOF_IP,
            },
        },
        Case {
            name: "suspended tenant, to-tenant (management miss: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(SUSPENDED_TENANT)),
            lands: Lands::Dropped {
                index: SUSPENDED_TENANT,
                dir: inn,
                reason: reason::SUSPENDED,
            },
        },
        Case {
            name: "policed, conforming (GCRA, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(POLICED_TENANT)),
            lands: Lands::Tenant {
                index: POLICED_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "tcx from-tenant, policed egress, conforming (GCRA, pass)",
            bar_ns: TC_BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: program::TC_FROM_TENANT,
            frame: Frame::new(Ipv4::new(host_v4(POLICED_TENANT), outside).l4(syn()))
                .pad_to(64)
                .build(),
            lands: Lands::Tenant {
                index: POLICED_TENANT,
                dir: out,
            },
        },
        Case {
            name: "tcx from-tenant, shaped egress (skb->priority set, no policer, pass)",
            bar_ns: TC_BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: program::TC_FROM_TENANT,
            frame: Frame::new(Ipv4::new(host_v4(SHAPED_TENANT), outside).l4(syn()))
                .pad_to(64)
                .build(),
            lands: Lands::Tenant {
                index: SHAPED_TENANT,
                dir: out,
            },
        },
        Case {
            name: "policed, plan exhausted (GCRA, drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: to(host_v4(EXHAUSTED_TENANT)),
            lands: Lands::Dropped {
                index: EXHAUSTED_TENANT,
                dir: inn,
                reason: reason::BANDWIDTH,
            },
        },
        Case {
            name: DATAGRAM_CASE,
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: udp_to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "policed, plan exhausted, UDP datagram (GCRA, drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: udp_to(host_v4(EXHAUSTED_TENANT)),
            lands: Lands::Dropped {
                index: EXHAUSTED_TENANT,
                dir: inn,
                reason: reason::BANDWIDTH,
            },
        },
        Case {
            name: BLACKHOLED_CASE,
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: udp_to(host_v4(BLACKHOLED_TENANT)),
            lands: Lands::Dropped {
                index: BLACKHOLED_TENANT,
                dir: inn,
                reason: reason::BLACKHOLE,
            },
        },
        Case {
            name: "known tenant v4, to-tenant (/32 probe, /24 hit)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(Ipv4Addr::from(u32::from(wide_v4(WIDE_TENANT)) + 99)),
            lands: Lands::Tenant {
                index: WIDE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "known tenant v4, to-tenant (/32 hit)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(host_v4(PROBE_TENANT)),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "unknown address v4, to-tenant (two probes miss)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: to(unknown4),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "unknown address v6, to-tenant (two probes miss)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: to_tenant,
            frame: Frame::new(Ipv6::new(outside6, unknown6).l4(syn())).build(),
            lands: Lands::NoTenant { dir: inn },
        },
        Case {
            name: "unknown sender v6, from-tenant (MAC miss, two probes miss: drop)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::TwoLengths,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(unknown6, outside6).l4(syn())).build(),
            lands: Lands::Spoofed { dir: out },
        },
        Case {
            name: "known tenant v4, from-tenant (no MAC lookup, address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(PROBE_TENANT), outside).l4(syn()))
                .pad_to(64)
                .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "known tenant v6, from-tenant (no MAC lookup, address binding, meter, pass)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::NoMacs,
            program: from_tenant,
            frame: Frame::new(Ipv6::new(host6(PROBE_TENANT), outside6).l4(syn())).build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "new flow v4, from-tenant (SYN, first contact: filter, pending, event)",
            bar_ns: NEW_FLOW_BAR_NS,
            flow: Flow::New,
            policy: Policy::OneLength,
            program: XDP_BENCH_NEW_FLOW,
            frame: Frame::new(
                Ipv4::new(host_v4(PROBE_TENANT), NEW_FLOW_FIRST_REMOTE).l4(L4::tcp(
                    40000,
                    NEW_FLOW_PORT,
                    tcp::SYN,
                )),
            )
            .src_mac(tenant_mac(PROBE_TENANT))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "detection event v6, to-tenant (SYN-ACK answers a pending first contact: \
                   OUTCOME into the attempt log)",
            bar_ns: NEW_FLOW_BAR_NS,
            flow: Flow::Answer,
            policy: Policy::OneLength,
            program: XDP_BENCH_ANSWER,
            frame: answer_frame(0),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
        Case {
            name: "established flow v4, from-tenant (ACK segment: no facts)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: from_tenant,
            frame: Frame::new(Ipv4::new(host_v4(PROBE_TENANT), outside).l4(L4::tcp(
                40000,
                443,
                tcp::ACK,
            )))
            .src_mac(tenant_mac(PROBE_TENANT))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: out,
            },
        },
        Case {
            name: "established flow v4, to-tenant (ACK segment: no facts)",
            bar_ns: BAR_NS,
            flow: Flow::Repeated,
            policy: Policy::OneLength,
            program: to_tenant,
            frame: Frame::new(Ipv4::new(outside, host_v4(PROBE_TENANT)).l4(L4::tcp(
                443,
                40000,
                tcp::ACK,
            )))
            .pad_to(64)
            .build(),
            lands: Lands::Tenant {
                index: PROBE_TENANT,
                dir: inn,
            },
        },
    ]
}
