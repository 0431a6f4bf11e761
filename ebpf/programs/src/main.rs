//! Warden's kernel programs: one thin entry per hook and direction, all calling the
//! same path ([`enforce::handle`]) with the direction as a constant.
//!
//! | hook        | host mode        | gateway mode     |
//! |-------------|------------------|------------------|
//! | XDP ingress | `xdp_to_tenant`  | `xdp_from_tenant`|
//! | tcx egress  | `tc_from_tenant` | `tc_to_tenant`   |
//!
//! Past the tenant's policy checks, the detection facts, blocks and frame capture run
//! in global BPF functions (`warden_facts_*`, `warden_blocked_*`, `warden_capture_*`),
//! which the verifier checks once each rather than on every path through the inlined
//! entry (see `facts`).
//!
//! To a tenant, parsing fails open: a frame Warden cannot parse is passed and counted
//! as malformed, because dropping traffic we do not understand would make Warden the
//! outage. From a tenant it fails closed: a malformed frame, or one the programs do not
//! understand (another ethertype, a third VLAN tag, ARP for another hardware type) and
//! the interface does not pass, is dropped, since what it hides could get around
//! policy. Enforcement fails closed where the policy says so: a suspended tenant, a
//! spoofed sender or traffic over plan is dropped.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
// The workspace denies this lint; the eBPF branch of issue 17 documents every `unsafe`
// here and replaces this allow with a deny.
#![allow(clippy::undocumented_unsafe_blocks)]

mod capture;
mod clock;
mod enforce;
mod facts;
mod lookup;
mod neighbour;
mod parse;
mod police;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use warden_common::{
    bucket, direction,
    facts::{
        fact_counter, log_entries, BlockKey, BlockValue, LogEntry, Pending, TenantRuntime,
        CONTACT_WORDS, EVENTS_RING_BYTES, FLOOD_LOCAL_SLOTS, LOG_DEFAULT_CPUS, MAX_BLOCKS,
        PENDING_SLOTS, REPORTED_SLOTS, SKETCH_ROWS, SKETCH_WIDTH,
    },
    global, table, Bucket, Bucket128, Bucket64, Counters, DropCounters, GenConfig, IfaceConfig,
    TenantConfig, GENERATIONS, MAX_IFACES, MAX_MANAGEMENT, MAX_TENANTS,
};

use crate::{
    clock::ClockCache,
    enforce::{Sample, Verdict},
    facts::{TcHook, XdpHook},
};

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

/// Index: tenant * 4 + (out, in, smtp, events). Value: token bucket state, shared by all
/// CPUs and updated atomically here; zeroed by the daemon when a tenant slot is reused.
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

/// Index: `key & (CONTACT_WORDS - 1)` of a `contact_key`. Value: a bloom-filter word,
/// contact epoch in the high half, bits in the low half (see `warden_common::facts`).
/// Written here.
#[map(name = "CONTACTS")]
static CONTACTS: Array<u64> = Array::with_max_entries(CONTACT_WORDS, 0);

/// Index: `(key >> 16) & (PENDING_SLOTS - 1)` of an attempt's `contact_key`. Value: the
/// attempt waiting for its answer (tag 0 = empty). Written here.
#[map(name = "PENDING")]
static PENDING: Array<Pending> = Array::with_max_entries(PENDING_SLOTS, 0);

/// Index: `sketch_index(sketch_key(..), row)`. Value: an epoch-tagged count of the flood
/// sketch, shared by all CPUs and added to atomically. Written here.
#[map(name = "SKETCH")]
static SKETCH: Array<u64> = Array::with_max_entries(SKETCH_ROWS * SKETCH_WIDTH, 0);

/// Index: `facts::out_slot` of (tenant, out class, folded remote). Value: per CPU, the
/// flood counts of that key not yet added to SKETCH (`facts::FloodLocal`). Written here;
/// internal to the programs (not pinned by the daemon).
#[map(name = "FLOOD_LOCAL")]
static FLOOD_LOCAL: PerCpuArray<crate::facts::FloodLocal> =
    PerCpuArray::with_max_entries(FLOOD_LOCAL_SLOTS, 0);

/// Index: `facts::in_slot` of (tenant, folded tenant address). Value: per CPU, the
/// inbound flood counts (packets and bytes) of one tenant address not yet added to
/// SKETCH (`facts::FloodLocalIn`). Written here; internal to the programs (not pinned
/// by the daemon).
#[map(name = "FLOOD_LOCAL_IN")]
static FLOOD_LOCAL_IN: PerCpuArray<crate::facts::FloodLocalIn> =
    PerCpuArray::with_max_entries(FLOOD_LOCAL_SLOTS, 0);

/// Index: `(key >> 20) & (REPORTED_SLOTS - 1)` of a `sketch_key`. Value: `epoch << 32 |
/// key as u32` of the flood event last sent from that slot. Written here.
#[map(name = "REPORTED")]
static REPORTED: Array<u64> = Array::with_max_entries(REPORTED_SLOTS, 0);

/// Events (`warden_common::facts::Event`) and captured frames (`SampleEvent`) for the
/// daemon. Written here, read by the daemon.
#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_RING_BYTES, 0);

/// Index: tenant. Value: the daemon's runtime state for it (blocks present, throttle,
/// frames to capture). Written by the daemon; `capture` counted down here.
#[map(name = "TENANT_RUNTIME")]
static TENANT_RUNTIME: Array<TenantRuntime> = Array::with_max_entries(MAX_TENANTS, 0);

/// Key: a block (tenant, direction, address or port). Value: its expiry. Written by the
/// daemon; looked up here only for tenants whose runtime flags say they have blocks.
#[map(name = "BLOCKS")]
static BLOCKS: HashMap<BlockKey, BlockValue> = HashMap::with_max_entries(MAX_BLOCKS, 0);

/// Key: ifindex of an attached interface. Value: what it passes from tenants that the
/// programs do not parse (`IfaceConfig`). Written by the daemon; looked up here only
/// for such frames.
#[map(name = "IFACES")]
static IFACES: HashMap<u32, IfaceConfig> = HashMap::with_max_entries(MAX_IFACES, 0);

/// Index 0. Value: per-CPU, the CPU's last clock reading and its jiffy
/// (`clock::ClockCache`). Written here; internal to the programs (a cache, not pinned
/// by the daemon).
#[map(name = "CLOCK_CACHE")]
static CLOCK_CACHE: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries(1, 0);

/// Index: a `fact_counter`. Value: per-CPU count of events sent and lost, log entries
/// written (each CPU's next log entry number), samples, blocked packets. Written here.
#[map(name = "FACT_COUNTERS")]
static FACT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(fact_counter::COUNT, 0);

/// Index: `cpu * LOG_SLOTS + n % LOG_SLOTS` for a CPU's log entry `n`. Value: a first
/// contact or accepted connection (`warden_common::facts::LogEntry`). Memory-mappable:
/// the daemon reads it in place. Sized here for `LOG_DEFAULT_CPUS`; the daemon sizes it
/// for the machine's possible CPUs when it creates it. Written here.
#[map(name = "ATTEMPT_LOG")]
static ATTEMPT_LOG: Array<LogEntry> = Array::with_max_entries(
    log_entries(LOG_DEFAULT_CPUS),
    aya_ebpf::bindings::BPF_F_MMAPABLE,
);

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
    let len = (data_end - data) as u64;
    let mut sample = Sample::NONE;
    let hook = XdpHook(ctx.ctx);
    let verdict = enforce::handle::<DIR, _>(&hook, data, data_end, len, &mut sample);
    if sample.tenant != lookup::NONE {
        capture::warden_capture_xdp(ctx.ctx, sample.tenant, sample.now, DIR, len);
    }
    xdp_verdict(verdict)
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
    let mut sample = Sample::NONE;
    let hook = TcHook(ctx.as_ptr().cast());
    let (data, data_end) = (ctx.data(), ctx.data_end());
    let verdict = enforce::handle::<DIR, _>(&hook, data, data_end, len.into(), &mut sample);
    if sample.tenant != lookup::NONE {
        capture::warden_capture_tc(hook.0, sample.tenant, sample.now, DIR, len.into());
    }
    tc_verdict(verdict)
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

/// Benchmark only (`cargo xtask bench`): the from-tenant path, then the frame's
/// destination address is counted up by one in place (see [`bench_advance`]). A test
/// run's repetitions share the frame, so every repetition is a first contact with a new
/// remote: this measures the new-flow path (filter insert, pending write, attempt log
/// entry) that a repeated frame would otherwise skip, and loads the fact tables with
/// many remotes' state the way traffic does.
#[xdp]
pub fn xdp_bench_new_flow(ctx: XdpContext) -> u32 {
    let verdict = xdp_handle::<{ direction::OUT }>(&ctx);
    bench_advance::<false>(&ctx);
    verdict
}

/// Benchmark only (`cargo xtask bench`): the to-tenant path, then the frame's source
/// address is counted up by one in place (see [`bench_advance`]). Run on a remote's
/// answer (a SYN-ACK) with the remotes' attempts pending, every repetition answers a
/// different pending first contact: this measures the detection-event path (pending
/// match, ring-buffer OUTCOME) that a repeated frame would take once.
#[xdp]
pub fn xdp_bench_answer(ctx: XdpContext) -> u32 {
    let verdict = xdp_handle::<{ direction::IN }>(&ctx);
    bench_advance::<true>(&ctx);
    verdict
}

/// Counts an address of an untagged frame up by one in place: the source (`SRC`) or
/// destination of an IPv4 header without options (the whole address), or of an IPv6
/// header (its last 32 bits). Other frames are left alone.
#[inline(always)]
fn bench_advance<const SRC: bool>(ctx: &XdpContext) {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // Ethernet (14) and an IPv4 header without options (20).
    let Ok(h) = parse::ptr_at::<[u8; 34]>(data, data_end, 0) else {
        return;
    };
    let h = h as *mut u8;
    // SAFETY: bounds checked above (and below for IPv6); XDP frames are writable.
    unsafe {
        if *h.add(12) == 0x08 && *h.add(13) == 0x00 && *h.add(14) == 0x45 {
            count_up(h.add(if SRC { 26 } else { 30 }));
        } else if *h.add(12) == 0x86 && *h.add(13) == 0xdd {
            // Ethernet (14) and the IPv6 header (40).
            if let Ok(h6) = parse::ptr_at::<[u8; 54]>(data, data_end, 0) {
                count_up((h6 as *mut u8).add(if SRC { 34 } else { 50 }));
            }
        }
    }
}

/// Adds one to the big-endian u32 at `p`.
///
/// # Safety
/// `p..p + 4` must be inside the frame.
#[inline(always)]
unsafe fn count_up(p: *mut u8) {
    let p = p as *mut [u8; 4];
    unsafe { *p = u32::from_be_bytes(*p).wrapping_add(1).to_be_bytes() };
}

/// Benchmark baseline (`cargo xtask bench`, throughput): drops every frame and does
/// nothing else.
#[xdp]
pub fn xdp_drop_base(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Benchmark only (`cargo xtask bench`, throughput): the load generator. Run with
/// `BPF_F_TEST_XDP_LIVE_FRAMES` on a context whose ingress interface is one end of a
/// veth pair, it sends every frame out of that interface, to the program under test
/// on the peer.
#[xdp]
pub fn xdp_bench_gen(ctx: XdpContext) -> u32 {
    // SAFETY: the context pointer is the kernel's xdp_md for this run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    // SAFETY: a helper call with plain integer arguments.
    unsafe { aya_ebpf::helpers::bpf_redirect(ifindex, 0) as u32 }
}

/// Benchmark only (`cargo xtask bench`, throughput): the load generator of the
/// many-sources flood. The template frame is untagged IPv6 with a UDP payload that
/// starts with two big-endian words (offset 62): N >= 1 sources to spread over, and the
/// first source's low 32 bits. Each frame's IPv6 source gets the low 32 bits `first +
/// random % N` (the random number is drawn for N = 1 too, so a fixed source costs the
/// generator the same). Then, as [`xdp_bench_gen`], out of the context's interface.
#[xdp]
pub fn xdp_bench_gen_sources(ctx: XdpContext) -> u32 {
    let (data, data_end) = (ctx.data(), ctx.data_end());
    // Ethernet (14), IPv6 (40), UDP (8), then the source count and the first source.
    if let Ok(h) = parse::ptr_at::<[u8; 70]>(data, data_end, 0) {
        let h = h as *mut [u8; 70];
        // SAFETY: bounds checked above; live frames are writable.
        unsafe {
            if (*h)[12] == 0x86 && (*h)[13] == 0xdd {
                let n = u32::from_be_bytes([(*h)[62], (*h)[63], (*h)[64], (*h)[65]]);
                let first = u32::from_be_bytes([(*h)[66], (*h)[67], (*h)[68], (*h)[69]]);
                let r = aya_ebpf::helpers::bpf_get_prandom_u32();
                if n != 0 {
                    let low = (h as *mut u8).add(34) as *mut [u8; 4];
                    *low = first.wrapping_add(r % n).to_be_bytes();
                }
            }
        }
    }
    // SAFETY: the context pointer is the kernel's xdp_md for this run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    // SAFETY: a helper call with plain integer arguments.
    unsafe { aya_ebpf::helpers::bpf_redirect(ifindex, 0) as u32 }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
