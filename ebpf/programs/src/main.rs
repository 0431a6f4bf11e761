//! Warden's kernel programs: one thin entry per hook and direction, all calling the
//! same metering path with the direction as a constant.
//!
//! | hook        | host mode        | gateway mode     |
//! |-------------|------------------|------------------|
//! | XDP ingress | `xdp_to_tenant`  | `xdp_from_tenant`|
//! | tcx egress  | `tc_from_tenant` | `tc_to_tenant`   |
//!
//! Metering fails open: a frame Warden cannot parse is passed and counted as malformed,
//! because dropping traffic we do not understand would make Warden the outage.
#![no_std]
#![no_main]

mod meter;
mod parse;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    macros::{classifier, map, xdp},
    maps::{LpmTrie, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use warden_common::{direction, global, Counters, TenantRef, MAX_PREFIXES, MAX_TENANTS};

use crate::meter::Verdict;

/// Key: IPv4 prefix of a tenant (network order). Value: the tenant's dense index.
/// Written by the daemon on policy apply; read here.
#[map(name = "TENANTS_V4")]
static TENANTS_V4: LpmTrie<[u8; 4], TenantRef> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

/// Key: IPv6 prefix of a tenant. Value: the tenant's dense index.
/// Written by the daemon on policy apply; read here.
#[map(name = "TENANTS_V6")]
static TENANTS_V6: LpmTrie<[u8; 16], TenantRef> = LpmTrie::with_max_entries(MAX_PREFIXES, 0);

/// Key: `tenant * 2 + direction`. Value: per-CPU packets and bytes.
/// Written here; read (summed over CPUs) by the daemon.
#[map(name = "TENANT_COUNTERS")]
static TENANT_COUNTERS: PerCpuArray<Counters> =
    PerCpuArray::with_max_entries(MAX_TENANTS * direction::COUNT, 0);

/// Key: `slot * 2 + direction` (see `warden_common::global`). Value: per-CPU packets
/// and bytes of traffic that belongs to no tenant. Written here; read by the daemon.
#[map(name = "GLOBAL_COUNTERS")]
static GLOBAL_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(global::ENTRIES, 0);

#[inline(always)]
fn xdp_verdict(v: Verdict) -> u32 {
    match v {
        Verdict::Pass => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn tc_verdict(v: Verdict) -> i32 {
    match v {
        // TCX_NEXT: let later programs in the tcx chain see the packet too.
        Verdict::Pass => TC_ACT_UNSPEC,
    }
}

#[inline(always)]
fn xdp_meter<const DIR: u32>(ctx: &XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    xdp_verdict(meter::meter::<DIR>(
        data,
        data_end,
        (data_end - data) as u64,
    ))
}

#[inline(always)]
fn tc_meter<const DIR: u32>(ctx: &TcContext) -> i32 {
    let len = ctx.len();
    // Headers of locally built or GRO'd skbs can sit outside the linear area;
    // pull enough of them to parse, once, only when they are not there yet.
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < meter::PARSE_DEPTH && len > linear {
        let want = if len < meter::PARSE_DEPTH {
            len
        } else {
            meter::PARSE_DEPTH
        };
        // A failed pull leaves the skb as it was; the parser then sees a short frame.
        let _ = ctx.pull_data(want);
    }
    tc_verdict(meter::meter::<DIR>(ctx.data(), ctx.data_end(), len as u64))
}

/// XDP on a gateway's tenant-facing interface: arriving traffic is from the tenant.
#[xdp]
pub fn xdp_from_tenant(ctx: XdpContext) -> u32 {
    xdp_meter::<{ direction::OUT }>(&ctx)
}

/// XDP on a host's NIC: arriving traffic is for the tenant.
#[xdp]
pub fn xdp_to_tenant(ctx: XdpContext) -> u32 {
    xdp_meter::<{ direction::IN }>(&ctx)
}

/// tcx egress on a host's NIC: leaving traffic is from the tenant.
#[classifier]
pub fn tc_from_tenant(ctx: TcContext) -> i32 {
    tc_meter::<{ direction::OUT }>(&ctx)
}

/// tcx egress on a gateway's tenant-facing interface: leaving traffic is for the tenant.
#[classifier]
pub fn tc_to_tenant(ctx: TcContext) -> i32 {
    tc_meter::<{ direction::IN }>(&ctx)
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
