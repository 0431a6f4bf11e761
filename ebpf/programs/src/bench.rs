//! The benchmark object, `warden-bench` (`cargo xtask bench`): the enforcing programs,
//! built from the same modules as the production object (`main.rs`), and the programs
//! only the benchmarks run: baselines, enforcing paths that move their frame on, and
//! live-frame load generators. Kept out of the object the daemon loads; the benchmark
//! checks that the enforcing programs here are the production object's, instruction for
//! instruction.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
#![deny(clippy::undocumented_unsafe_blocks)]

// The modules of both objects (`main.rs` declares the same list).
mod capture;
mod clock;
mod enforce;
mod entry;
mod facts;
mod hook;
mod lookup;
mod maps;
mod neighbour;
mod object;
mod parse;
mod police;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use warden_common::direction;

/// Benchmark baseline: the cost of running any XDP program at all.
#[xdp]
pub fn xdp_pass_base(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark baseline: the cost of running any tc program at all.
#[classifier]
pub fn tc_pass_base(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Benchmark only (`cargo xtask bench`): the from-tenant path, then the frame's
/// destination address is counted up by one in place (see [`bench_advance`]). A test
/// run's repetitions share the frame, so every repetition is a first contact with a new
/// remote: this measures the new-flow path (filter insert, pending write, attempt log
/// entry) that a repeated frame would otherwise skip, and loads the fact tables with
/// many remotes' state the way traffic does.
#[xdp]
pub fn xdp_bench_new_flow(ctx: XdpContext) -> u32 {
    let verdict = entry::xdp_handle::<{ direction::OUT }>(&ctx);
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
    let verdict = entry::xdp_handle::<{ direction::IN }>(&ctx);
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
    // SAFETY: the caller's promise: the 4 bytes are inside the (writable) frame.
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
