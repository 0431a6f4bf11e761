//! Warden's kernel programs: one thin entry per hook and direction, all calling the
//! same path ([`enforce::handle`]) with the direction as a constant.
//!
//! | hook        | host mode        | gateway mode     |
//! |-------------|------------------|------------------|
//! | XDP ingress | `xdp_to_tenant`  | `xdp_from_tenant`|
//! | tcx egress  | `tc_from_tenant` | `tc_to_tenant`   |
//!
//! Parsing fails open: a frame Warden cannot parse is passed and counted as malformed,
//! because dropping traffic we do not understand would make Warden the outage.
//! Enforcement fails closed where the policy says so: a suspended tenant, a spoofed
//! sender or traffic over plan is dropped.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod enforce;
mod lookup;
mod parse;
mod police;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{classifier, map, xdp},
    maps::{Array, LpmTrie, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use warden_common::{
    bucket, direction, global, table, Bucket, Bucket128, Bucket64, Counters, DropCounters,
    GenConfig, TenantConfig, GENERATIONS, MAX_MANAGEMENT, MAX_TENANTS,
};

use crate::enforce::Verdict;

/// Index 0: the active policy generation (0 or 1). Written by the daemon (the flip).
#[map(name = "ACTIVE")]
static ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Index: generation. Value: the prefix lengths in use, longest first. Written by the daemon.
#[map(name = "GEN_CONFIG")]
static GEN_CONFIG: Array<GenConfig> = Array::with_max_entries(GENERATIONS, 0);

/// Index: generation * V4_BUCKETS + bucket. Value: a cuckoo bucket of IPv4 prefixes
/// -> tenant index (see `warden_common::table`). Written by the daemon.
#[map(name = "ADDRS_V4")]
static ADDRS_V4: Array<Bucket64> = Array::with_max_entries(table::V4_BUCKETS * GENERATIONS, 0);

/// Index: generation * V6_BUCKETS + bucket. Value: a cuckoo bucket of IPv6 prefixes
/// -> tenant index. Written by the daemon.
#[map(name = "ADDRS_V6")]
static ADDRS_V6: Array<Bucket128> = Array::with_max_entries(table::V6_BUCKETS * GENERATIONS, 0);

/// Index: generation * MAC_BUCKETS + bucket. Value: a cuckoo bucket of bound MACs ->
/// tenant index. Written by the daemon.
#[map(name = "MACS")]
static MACS: Array<Bucket64> = Array::with_max_entries(table::MAC_BUCKETS * GENERATIONS, 0);

/// Index: generation * MAX_TENANTS + tenant. Value: enforcement settings. Written by the daemon.
#[map(name = "TENANT_CONFIG")]
static TENANT_CONFIG: Array<TenantConfig> = Array::with_max_entries(MAX_TENANTS * GENERATIONS, 0);

/// Key: IPv4 management prefix. Value: unused. Written by the daemon.
#[map(name = "MANAGEMENT_V4")]
static MANAGEMENT_V4: LpmTrie<[u8; 4], u8> = LpmTrie::with_max_entries(MAX_MANAGEMENT, 0);

/// Key: IPv6 management prefix. Value: unused. Written by the daemon.
#[map(name = "MANAGEMENT_V6")]
static MANAGEMENT_V6: LpmTrie<[u8; 16], u8> = LpmTrie::with_max_entries(MAX_MANAGEMENT, 0);

/// Index: tenant * 3 + (out, in, smtp). Value: token bucket state, shared by all CPUs
/// and updated atomically here; zeroed by the daemon when a tenant slot is reused.
#[map(name = "BUCKETS")]
static BUCKETS: Array<Bucket> = Array::with_max_entries(MAX_TENANTS * bucket::PER_TENANT, 0);

/// Index: tenant * 2 + direction. Value: per-CPU packets and bytes seen. Written here.
#[map(name = "TENANT_COUNTERS")]
static TENANT_COUNTERS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(MAX_TENANTS * direction::COUNT, 0);

/// Index: tenant * 2 + direction. Value: per-CPU drops by reason. Written here.
#[map(name = "DROP_COUNTERS")]
static DROP_COUNTERS: PerCpuArray<DropCounters> =
    PerCpuArray::with_max_entries(MAX_TENANTS * direction::COUNT, 0);

/// Index: slot * 2 + direction (see `warden_common::global`). Value: per-CPU packets
/// and bytes of traffic that belongs to no tenant. Written here.
#[map(name = "GLOBAL_COUNTERS")]
static GLOBAL_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(global::ENTRIES, 0);

#[inline(always)]
fn xdp_verdict(v: Verdict) -> u32 {
    match v {
        Verdict::Pass => xdp_action::XDP_PASS,
        Verdict::Drop => xdp_action::XDP_DROP,
    }
}

#[inline(always)]
fn tc_verdict(v: Verdict) -> i32 {
    match v {
        // TCX_NEXT: let later programs in the tcx chain see the packet too.
        Verdict::Pass => TC_ACT_UNSPEC,
        Verdict::Drop => TC_ACT_SHOT,
    }
}

#[inline(always)]
fn xdp_handle<const DIR: u32>(ctx: &XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    xdp_verdict(enforce::handle::<DIR>(
        data,
        data_end,
        (data_end - data) as u64,
    ))
}

#[inline(always)]
fn tc_handle<const DIR: u32>(ctx: &TcContext) -> i32 {
    let len = ctx.len();
    // Headers of locally built or GRO'd skbs can sit outside the linear area;
    // pull enough of them to parse, once, only when they are not there yet.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < enforce::PARSE_DEPTH && len > linear {
        let want = if len < enforce::PARSE_DEPTH {
            len
        } else {
            enforce::PARSE_DEPTH
        };
        // A failed pull leaves the skb as it was; the parser then sees a short frame.
        let _ = ctx.pull_data(want);
    }
    tc_verdict(enforce::handle::<DIR>(
        ctx.data(),
        ctx.data_end(),
        len as u64,
    ))
}

/// XDP on a gateway's tenant-facing interface: arriving traffic is from the tenant.
#[xdp]
pub fn xdp_from_tenant(ctx: XdpContext) -> u32 {
    xdp_handle::<{ direction::OUT }>(&ctx)
}

/// XDP on a host's NIC: arriving traffic is for the tenant.
#[xdp]
pub fn xdp_to_tenant(ctx: XdpContext) -> u32 {
    xdp_handle::<{ direction::IN }>(&ctx)
}

/// tcx egress on a host's NIC: leaving traffic is from the tenant.
#[classifier]
pub fn tc_from_tenant(ctx: TcContext) -> i32 {
    tc_handle::<{ direction::OUT }>(&ctx)
}

/// tcx egress on a gateway's tenant-facing interface: leaving traffic is for the tenant.
#[classifier]
pub fn tc_to_tenant(ctx: TcContext) -> i32 {
    tc_handle::<{ direction::IN }>(&ctx)
}

/// Benchmark baseline: the cost of running any XDP program at all.
#[xdp]
pub fn xdp_pass_base(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
