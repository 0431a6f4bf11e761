//! The kernel<->user ABI of Warden.
//!
//! Everything the eBPF programs and the daemon must agree on lives here: map names,
//! map sizes, the layout of keys and values, and the numbering of directions, drop
//! reasons and counter slots. Types are `#[repr(C)]`, `Copy`, and free of implicit
//! padding so that both sides see the same bytes.
//!
//! # Generations
//! Policy lives in the kernel twice, as generation 0 and 1. Address, MAC and tenant
//! configuration entries carry their generation; [`map::ACTIVE`] names the one the
//! programs use. The daemon writes a whole new policy into the inactive generation and
//! then flips `ACTIVE` with one array write, so every packet sees one policy, never
//! half of two.
#![no_std]

/// Largest number of tenants one node can hold; dense tenant indexes are `0..MAX_TENANTS`.
pub const MAX_TENANTS: u32 = 131_072;

/// Address prefixes per family per generation.
pub const MAX_PREFIXES: u32 = 131_072;

/// Bound MACs per generation.
pub const MAX_MACS: u32 = 65_536;

/// Management prefixes (reachable by suspended tenants) per family.
pub const MAX_MANAGEMENT: u32 = 1_024;

/// Distinct prefix lengths per family a policy may use. Lookup is one hash probe per
/// length, longest first, so this bounds the per-packet cost.
pub const MAX_PREFIX_LENS: usize = 8;

/// Number of policy generations held in the kernel.
pub const GENERATIONS: u32 = 2;

/// Traffic direction, seen from the tenant.
///
/// `OUT` is traffic sent by the tenant (from-tenant), `IN` is traffic received by
/// the tenant (to-tenant). The numbering is part of counter indexes.
pub mod direction {
    /// Sent by the tenant.
    pub const OUT: u32 = 0;
    /// Received by the tenant.
    pub const IN: u32 = 1;
    /// Number of directions.
    pub const COUNT: u32 = 2;
    /// Label values, indexed by direction.
    pub const NAMES: [&str; 2] = ["out", "in"];
}

/// Why a packet was dropped: the index into [`DropCounters::packets`] and the
/// `reason` label of `warden_dropped_packets_total`.
pub mod reason {
    /// Over the tenant's bandwidth plan.
    pub const BANDWIDTH: usize = 0;
    /// From-tenant packet with a source address the tenant does not own.
    pub const SPOOF_IP: usize = 1;
    /// ARP or IPv6 neighbour discovery claiming an address the tenant does not own.
    pub const SPOOF_ARP: usize = 2;
    /// From-tenant frame with a source MAC not bound to the tenant.
    pub const SPOOF_MAC: usize = 3;
    /// Outbound SMTP refused by the tenant's mail policy.
    pub const SMTP: usize = 4;
    /// The tenant is suspended.
    pub const SUSPENDED: usize = 5;
    /// Number of reasons.
    pub const COUNT: usize = 6;
    /// Label values, indexed by reason.
    pub const NAMES: [&str; COUNT] = [
        "bandwidth",
        "spoof_ip",
        "spoof_arp",
        "spoof_mac",
        "smtp",
        "suspended",
    ];
}

/// Packet and byte counters, one per (tenant, direction) and per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets seen.
    pub packets: u64,
    /// Ethernet frame bytes as the hook sees them (no FCS).
    pub bytes: u64,
}

/// Dropped packets by reason, one per (tenant, direction) and per CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Indexed by [`reason`].
    pub packets: [u64; reason::COUNT],
}

/// Index of a tenant's slot in the per-(tenant, direction) arrays.
#[inline(always)]
pub const fn tenant_counter_index(tenant: u32, dir: u32) -> u32 {
    tenant * direction::COUNT + dir
}

/// Slots of [`map::GLOBAL_COUNTERS`]: traffic of no tenant, counted per direction at
/// `slot * direction::COUNT + dir`.
pub mod global {
    /// A parsed packet whose tenant-side address is no tenant's (or that has no IP or
    /// ARP address at all, like LLDP).
    pub const NO_TENANT: u32 = 0;
    /// A frame too short for the headers it announces, or with impossible header
    /// fields. Passed (metering fails open) and counted here.
    pub const MALFORMED: u32 = 1;
    /// From-tenant traffic whose sender is no tenant (source address and MAC bound to
    /// nobody): dropped as spoofed and counted here.
    pub const SPOOFED: u32 = 2;
    /// Number of slots.
    pub const SLOTS: u32 = 3;
    /// Number of entries in the map.
    pub const ENTRIES: u32 = SLOTS * super::direction::COUNT;
    /// Label values (`reason` of `warden_unattributed_packets_total`), indexed by slot.
    pub const NAMES: [&str; SLOTS as usize] = ["no_tenant", "malformed", "spoofed"];

    /// Index of a slot's counters for a direction.
    #[inline(always)]
    pub const fn index(slot: u32, dir: u32) -> u32 {
        slot * super::direction::COUNT + dir
    }
}

/// Value of the address and MAC maps: the dense index of the owning tenant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TenantRef {
    /// Dense tenant index, `< MAX_TENANTS`.
    pub index: u32,
}

/// Key of [`map::ADDRS_V4`]: an IPv4 prefix (host bits zero) in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKeyV4 {
    pub generation: u8,
    pub prefix_len: u8,
    pub _pad: [u8; 2],
    /// Network order.
    pub addr: [u8; 4],
}

/// Key of [`map::ADDRS_V6`]: an IPv6 prefix (host bits zero) in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKeyV6 {
    pub generation: u8,
    pub prefix_len: u8,
    pub _pad: [u8; 2],
    pub addr: [u8; 16],
}

/// Key of [`map::MACS`]: a MAC bound to a tenant in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MacKey {
    pub generation: u8,
    pub _pad: u8,
    pub mac: [u8; 6],
}

/// Per-generation facts the lookup needs: which prefix lengths exist, longest first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenConfig {
    pub v4_lens: [u8; MAX_PREFIX_LENS],
    pub v6_lens: [u8; MAX_PREFIX_LENS],
    pub v4_nlens: u8,
    pub v6_nlens: u8,
    /// [`gen_flags`] bits.
    pub flags: u8,
    pub _pad: [u8; 5],
}

/// Bits of [`GenConfig::flags`].
pub mod gen_flags {
    /// Some tenant has bound MACs: from-tenant frames are looked up by source MAC.
    pub const ANY_MACS: u8 = 1;
}

/// A token bucket's parameters in GCRA form (virtual scheduling): each unit costs
/// `cost_q10 / 1024` ns of the bucket's time, and the bucket may run up to `burst_ns`
/// ahead of the clock. `cost_q10 == 0` means unlimited.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rate {
    pub cost_q10: u64,
    pub burst_ns: u64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        cost_q10: 0,
        burst_ns: 0,
    };

    /// A byte rate from bits per second and a burst in bytes.
    pub const fn from_bits_per_second(bps: u64, burst_bytes: u64) -> Rate {
        if bps == 0 {
            return Rate::UNLIMITED;
        }
        let cost_q10 = (8_000_000_000u128 * 1024 / bps as u128) as u64;
        let burst_ns = (burst_bytes as u128 * 8_000_000_000 / bps as u128) as u64;
        Rate {
            cost_q10: if cost_q10 == 0 { 1 } else { cost_q10 },
            burst_ns,
        }
    }

    /// An event rate (e.g. new connections) per second with a burst of events.
    pub const fn from_events_per_second(per_second: f64, burst_events: u64) -> Rate {
        if per_second <= 0.0 {
            return Rate::UNLIMITED;
        }
        let ns = 1e9 / per_second;
        Rate {
            cost_q10: (ns * 1024.0) as u64,
            burst_ns: (ns * burst_events as f64) as u64,
        }
    }
}

/// A tenant's enforcement settings in one generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantConfig {
    /// [`tenant_flags`] bits.
    pub flags: u32,
    pub _pad: u32,
    /// Bandwidth plan per direction, in bytes.
    pub rate: [Rate; 2],
    /// New outbound SMTP connections, when [`tenant_flags::SMTP_RATE`] is set.
    pub smtp: Rate,
}

/// Bits of [`TenantConfig::flags`].
pub mod tenant_flags {
    /// Drop everything except traffic with the management prefixes.
    pub const SUSPENDED: u32 = 1;
    /// The tenant has bound MACs: from-tenant frames must carry one of them.
    pub const MACS_BOUND: u32 = 2;
    /// Outbound SMTP is allowed without limit.
    pub const SMTP_ALLOW: u32 = 4;
    /// New outbound SMTP connections are policed by [`TenantConfig::smtp`](super::TenantConfig).
    pub const SMTP_RATE: u32 = 8;
}

/// Index of a tenant's configuration in [`map::TENANT_CONFIG`].
#[inline(always)]
pub const fn tenant_config_index(generation: u32, tenant: u32) -> u32 {
    generation * MAX_TENANTS + tenant
}

/// Token bucket state shared by all CPUs: the theoretical arrival time (ns).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub tat: u64,
}

/// Buckets per tenant in [`map::BUCKETS`]: bandwidth out, bandwidth in, SMTP.
pub mod bucket {
    pub const PER_TENANT: u32 = 3;
    pub const SMTP: u32 = 2;
    /// Index of a tenant's bucket `which` (a direction, or [`SMTP`]).
    #[inline(always)]
    pub const fn index(tenant: u32, which: u32) -> u32 {
        tenant * PER_TENANT + which
    }
}

/// Map names, as the programs declare them and the daemon opens and pins them.
pub mod map {
    /// Array\[1\] of u32: the active generation. Written by the daemon (the flip).
    pub const ACTIVE: &str = "ACTIVE";
    /// Array\[GENERATIONS\] of [`GenConfig`](super::GenConfig). Written by the daemon.
    pub const GEN_CONFIG: &str = "GEN_CONFIG";
    /// Hash [`AddrKeyV4`](super::AddrKeyV4) -> [`TenantRef`](super::TenantRef). Written by the daemon.
    pub const ADDRS_V4: &str = "ADDRS_V4";
    /// Hash [`AddrKeyV6`](super::AddrKeyV6) -> [`TenantRef`](super::TenantRef). Written by the daemon.
    pub const ADDRS_V6: &str = "ADDRS_V6";
    /// Hash [`MacKey`](super::MacKey) -> [`TenantRef`](super::TenantRef). Written by the daemon.
    pub const MACS: &str = "MACS";
    /// Array of [`TenantConfig`](super::TenantConfig), index
    /// [`tenant_config_index`](super::tenant_config_index). Written by the daemon.
    pub const TENANT_CONFIG: &str = "TENANT_CONFIG";
    /// LPM trie `Key<[u8; 4]>` -> u8: management prefixes. Written by the daemon.
    pub const MANAGEMENT_V4: &str = "MANAGEMENT_V4";
    /// LPM trie `Key<[u8; 16]>` -> u8: management prefixes. Written by the daemon.
    pub const MANAGEMENT_V6: &str = "MANAGEMENT_V6";
    /// Array of [`Bucket`](super::Bucket), index [`bucket::index`](super::bucket::index).
    /// Written by the programs (atomically, shared by all CPUs); zeroed by the daemon.
    pub const BUCKETS: &str = "BUCKETS";
    /// Per-CPU array of [`Counters`](super::Counters), index
    /// [`tenant_counter_index`](super::tenant_counter_index). Written by the programs.
    pub const TENANT_COUNTERS: &str = "TENANT_COUNTERS";
    /// Per-CPU array of [`DropCounters`](super::DropCounters), index
    /// [`tenant_counter_index`](super::tenant_counter_index). Written by the programs.
    pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
    /// Per-CPU array of [`Counters`](super::Counters), index
    /// [`global::index`](super::global::index). Written by the programs.
    pub const GLOBAL_COUNTERS: &str = "GLOBAL_COUNTERS";

    /// Every map, in the order the daemon pins them.
    pub const ALL: [&str; 12] = [
        ACTIVE,
        GEN_CONFIG,
        ADDRS_V4,
        ADDRS_V6,
        MACS,
        TENANT_CONFIG,
        MANAGEMENT_V4,
        MANAGEMENT_V6,
        BUCKETS,
        TENANT_COUNTERS,
        DROP_COUNTERS,
        GLOBAL_COUNTERS,
    ];
}

/// Program names in the object, one per hook and direction.
pub mod program {
    /// XDP on a gateway's tenant-facing interface: traffic arriving is from the tenant.
    pub const XDP_FROM_TENANT: &str = "xdp_from_tenant";
    /// XDP on a host's NIC: traffic arriving is for the tenant.
    pub const XDP_TO_TENANT: &str = "xdp_to_tenant";
    /// tcx egress on a host's NIC: traffic leaving is from the tenant.
    pub const TC_FROM_TENANT: &str = "tc_from_tenant";
    /// tcx egress on a gateway's tenant-facing interface: traffic leaving is for the tenant.
    pub const TC_TO_TENANT: &str = "tc_to_tenant";
    /// Benchmark baseline: returns XDP_PASS and does nothing else.
    pub const XDP_PASS_BASELINE: &str = "xdp_pass_base";
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY (all below): #[repr(C)] integers and integer arrays with explicit padding.
    unsafe impl aya::Pod for Counters {}
    unsafe impl aya::Pod for DropCounters {}
    unsafe impl aya::Pod for TenantRef {}
    unsafe impl aya::Pod for AddrKeyV4 {}
    unsafe impl aya::Pod for AddrKeyV6 {}
    unsafe impl aya::Pod for MacKey {}
    unsafe impl aya::Pod for GenConfig {}
    unsafe impl aya::Pod for Rate {}
    unsafe impl aya::Pod for TenantConfig {}
    unsafe impl aya::Pod for Bucket {}
}

// No implicit padding: every size is the sum of its fields.
const _: () = assert!(core::mem::size_of::<Counters>() == 16);
const _: () = assert!(core::mem::size_of::<DropCounters>() == 8 * reason::COUNT);
const _: () = assert!(core::mem::size_of::<TenantRef>() == 4);
const _: () = assert!(core::mem::size_of::<AddrKeyV4>() == 8);
const _: () = assert!(core::mem::size_of::<AddrKeyV6>() == 20);
const _: () = assert!(core::mem::size_of::<MacKey>() == 8);
const _: () = assert!(core::mem::size_of::<GenConfig>() == 24);
const _: () = assert!(core::mem::size_of::<Rate>() == 16);
const _: () = assert!(core::mem::size_of::<TenantConfig>() == 56);
const _: () = assert!(core::mem::size_of::<Bucket>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_rates_convert_to_ns_per_byte_in_q10() {
        // 8 Mbit/s = 1 byte per microsecond.
        let r = Rate::from_bits_per_second(8_000_000, 1_000);
        assert_eq!(r.cost_q10, 1_000 * 1024);
        assert_eq!(r.burst_ns, 1_000_000);
        // 10 Gbit/s: 0.8 ns per byte keeps its fraction.
        assert_eq!(Rate::from_bits_per_second(10_000_000_000, 0).cost_q10, 819);
        assert_eq!(Rate::from_bits_per_second(0, 10), Rate::UNLIMITED);
    }

    #[test]
    fn event_rates_convert_to_ns_per_event() {
        let r = Rate::from_events_per_second(10.0, 5);
        assert_eq!(r.cost_q10, 100_000_000 * 1024);
        assert_eq!(r.burst_ns, 500_000_000);
    }
}
