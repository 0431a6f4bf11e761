//! The kernel<->user ABI of Warden.
//!
//! Everything the eBPF programs and the daemon must agree on lives here: map names,
//! map sizes, the layout of keys and values, and the numbering of directions and
//! counter slots. Types are `#[repr(C)]`, `Copy`, and free of implicit padding so
//! that both sides see the same bytes.
#![no_std]

/// Largest number of tenants one node can hold; the dense tenant index is `0..MAX_TENANTS`.
pub const MAX_TENANTS: u32 = 131_072;

/// Largest number of address prefixes (per family) that can name tenants.
pub const MAX_PREFIXES: u32 = 262_144;

/// Traffic direction, seen from the tenant.
///
/// `OUT` is traffic sent by the tenant (from-tenant), `IN` is traffic received by
/// the tenant (to-tenant). The numbering is part of the counter index.
pub mod direction {
    /// Sent by the tenant.
    pub const OUT: u32 = 0;
    /// Received by the tenant.
    pub const IN: u32 = 1;
    /// Number of directions.
    pub const COUNT: u32 = 2;
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

/// Index of a tenant's counters in [`TENANT_COUNTERS`](map::TENANT_COUNTERS).
#[inline(always)]
pub const fn tenant_counter_index(tenant: u32, dir: u32) -> u32 {
    tenant * direction::COUNT + dir
}

/// Slots of [`GLOBAL_COUNTERS`](map::GLOBAL_COUNTERS): traffic that belongs to no
/// tenant, counted per direction at `slot * direction::COUNT + dir`.
pub mod global {
    /// A parsed packet whose tenant-side address is not a tenant's (or that has no
    /// IP or ARP address at all, like LLDP).
    pub const NO_TENANT: u32 = 0;
    /// A frame too short for the headers it announces, or with impossible header
    /// fields. Such frames are passed (metering fails open) and counted here.
    pub const MALFORMED: u32 = 1;
    /// Number of slots.
    pub const SLOTS: u32 = 2;
    /// Number of entries in the map.
    pub const ENTRIES: u32 = SLOTS * super::direction::COUNT;

    /// Index of a slot's counters for a direction.
    #[inline(always)]
    pub const fn index(slot: u32, dir: u32) -> u32 {
        slot * super::direction::COUNT + dir
    }
}

/// Value of the tenant LPM tries: the dense index of the tenant owning the prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantRef {
    /// Dense tenant index, `< MAX_TENANTS`.
    pub index: u32,
}

/// Map names, as the programs declare them and the daemon opens and pins them.
pub mod map {
    /// LPM trie, key `Key<[u8; 4]>` (IPv4 prefix, network order), value [`TenantRef`](super::TenantRef).
    /// Written by the daemon on policy apply.
    pub const TENANTS_V4: &str = "TENANTS_V4";
    /// LPM trie, key `Key<[u8; 16]>` (IPv6 prefix), value [`TenantRef`](super::TenantRef).
    /// Written by the daemon on policy apply.
    pub const TENANTS_V6: &str = "TENANTS_V6";
    /// Per-CPU array of [`Counters`](super::Counters), index
    /// [`tenant_counter_index`](super::tenant_counter_index). Written by the programs.
    pub const TENANT_COUNTERS: &str = "TENANT_COUNTERS";
    /// Per-CPU array of [`Counters`](super::Counters), index
    /// [`global::index`](super::global::index). Written by the programs.
    pub const GLOBAL_COUNTERS: &str = "GLOBAL_COUNTERS";
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
    // SAFETY: plain #[repr(C)] integers with no padding.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: plain #[repr(C)] integer.
    unsafe impl aya::Pod for super::TenantRef {}
}

const _: () = assert!(core::mem::size_of::<Counters>() == 16);
const _: () = assert!(core::mem::size_of::<TenantRef>() == 4);
