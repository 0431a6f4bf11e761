//! Spreading a shaped tenant's flows over its leaf classes.
//!
//! A tenant's plan is one HTB class with `shape::LEAVES` leaves, each with a queue of its
//! own; HTB serves the backlogged leaves in turn, so flows in different leaves share the
//! plan evenly, where one FIFO lets each TCP stream keep what it grabbed early. A leaf
//! picked by hash would put two of eight flows in one leaf most of the time; instead a
//! new flow takes the tenant's next leaf in rotation, and the flow (the kernel's flow
//! hash of the packet, with the tenant) is remembered in `SHAPE_FLOWS`, looked up for
//! every shaped packet.
//!
//! `SHAPE_FLOWS` is a set-associative table in an array, as the address tables are: the
//! flow's set (one cache line of `shape::FLOW_WAYS` ways) is one array read, its ways
//! compared in registers, in a global function (`warden_shape_tc`); a hash-map probe
//! cost some 25 ns here, as much as the rest of the path. A way is one u64 (`shape::way`): the flow, its leaf and the period it was
//! last seen in (`jiffies >> shape::FLOW_PERIOD_SHIFT`, about a second). The table is written
//! for a new flow and, once a period per flow, to stamp it seen; never per packet.
//!
//! A new flow takes a free way of its set, or the way of a flow not seen for a whole
//! period, whose packets have long left their queue (so its new leaf, should it send
//! again, reorders nothing). When every way of the set holds a flow seen in this period
//! or the last, the new flow is not remembered: an active flow is never forgotten for a
//! new one; the new flow takes the leaf of its hash, the same for each of its packets,
//! and is counted per packet in `shape::stat::UNTRACKED`, until a way comes free.
//!
//! Written without a lock: two CPUs starting flows in one set at the same instant may
//! take the same way, and the flow that lost it is new again at its next packet; a
//! reader sees a way whole (an aligned 8-byte access). The rotation is read and then
//! added to with two instructions, not one fetch-add (ISA v3, see `police`): two CPUs
//! starting flows of one tenant at the same instant may give both the same leaf.

use aya_ebpf::{
    bindings::__sk_buff,
    helpers::{bpf_get_hash_recalc, generated::bpf_jiffies64},
};
use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{read_volatile, write_volatile},
};

use warden_common::shape::{stat, way, FLOW_SETS, FLOW_WAYS, LEAVES, MAX_SLOTS};

use crate::maps::shaping::{SHAPE_FLOWS, SHAPE_ROTOR, SHAPE_STATS};

/// One set of `SHAPE_FLOWS`: its ways (`shape::way`); 0 is a way never used.
#[repr(C)]
pub struct FlowSet {
    ways: [u64; FLOW_WAYS as usize],
}

const _: () = assert!(MAX_SLOTS <= 1 << way::TENANT_BITS);
const _: () = assert!(LEAVES <= 8 && LEAVES.is_power_of_two());
const _: () = assert!(FLOW_SETS.is_power_of_two());

/// Sends the tc packet `ctx` of tenant `tenant`, whose first leaf class is `first`
/// (`TenantConfig::shape_class`), to its flow's leaf (`skb->priority`). A global BPF
/// function, verified once on its own rather than again on every path through the
/// inlined entry (see `facts`): inlined, the set's ways (and the flow hash's two ways
/// to it) took the tc program's verification past half the verifier's limit.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_shape_tc(ctx: *mut __sk_buff, tenant: u32, first: u32) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name): `hash`
    // is readable by tc programs, the helper takes the same context, and tc programs may
    // write `priority`, which HTB reads as a class id when the packet is enqueued after
    // this program.
    unsafe {
        let hash = match (*ctx).hash {
            0 => bpf_get_hash_recalc(ctx) as u32,
            h => h,
        };
        (*ctx).priority = leaf_class(tenant, first, hash);
    }
    0
}

/// The class of the flow with hash `hash` of tenant `tenant`, whose first leaf class
/// is `first`.
#[inline(always)]
fn leaf_class(tenant: u32, first: u32, hash: u32) -> u32 {
    let flow = way::flow(tenant, hash);
    let Some(set) = SHAPE_FLOWS.get_ptr_mut(set_of(flow)) else {
        return first + untracked(hash);
    };
    // SAFETY: the helper takes no arguments and cannot fail; the verifier inlines it
    // into one load (the clock's own reading, `Clock::now`, costs a map lookup more).
    let seen = way::period(unsafe { bpf_jiffies64() });
    let ways = set.cast::<u64>();
    for i in 0..FLOW_WAYS {
        // SAFETY: `i` is below the set's ways; an array map value, shared by all CPUs,
        // read and written a whole aligned u64 at a time.
        unsafe {
            let w = ways.add(i as usize);
            let v = read_volatile(w);
            if v & way::FLOW == flow {
                if v >> way::SEEN_SHIFT != seen {
                    let stamped = (v & !(0xffff << way::SEEN_SHIFT)) | (seen << way::SEEN_SHIFT);
                    write_volatile(w, stamped);
                }
                return first + ((v >> way::LEAF_SHIFT) as u32 & (LEAVES - 1));
            }
        }
    }
    // A new flow: the first way never used, or whose flow was not seen in this period
    // nor the last. (A second pass, paid by new flows only: one pass carrying the free
    // way along multiplied the states the verifier walks.)
    for i in 0..FLOW_WAYS {
        // SAFETY: as above.
        unsafe {
            let w = ways.add(i as usize);
            let v = read_volatile(w);
            if v == 0 || (seen.wrapping_sub(v >> way::SEEN_SHIFT) & 0xffff) >= 2 {
                return first + new_flow(tenant, w, flow, seen, hash);
            }
        }
    }
    first + untracked(hash)
}

/// The set of the flow `flow` (a way's flow bits): one multiply (Fibonacci hashing).
#[inline(always)]
fn set_of(flow: u64) -> u32 {
    const BITS: u32 = FLOW_SETS.trailing_zeros();
    (flow.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as u32
}

/// Gives the flow `flow` the tenant's next leaf and remembers it in the way `w`, stamped
/// seen in `seen`; returns the leaf. Inlined like every stage: a function of its own is
/// compiled differently in the benchmark object, whose code must be the production
/// object's.
#[inline(always)]
fn new_flow(tenant: u32, w: *mut u64, flow: u64, seen: u64, hash: u32) -> u32 {
    let leaf = match SHAPE_ROTOR.get_ptr_mut(tenant) {
        // SAFETY: an array map value, shared by all CPUs: read, then added to atomically.
        Some(r) => unsafe {
            let n = read_volatile(r);
            atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(r, 1);
            n & (LEAVES - 1)
        },
        None => hash & (LEAVES - 1),
    };
    // SAFETY: the caller's way of a `SHAPE_FLOWS` set, written whole.
    unsafe { write_volatile(w, way::pack(flow, leaf, seen)) };
    count(stat::ASSIGNED);
    leaf
}

/// The leaf of a flow that cannot be remembered: its hash's, counted.
#[inline(always)]
fn untracked(hash: u32) -> u32 {
    count(stat::UNTRACKED);
    hash & (LEAVES - 1)
}

#[inline(always)]
fn count(which: u32) {
    if let Some(c) = SHAPE_STATS.get_ptr_mut(which) {
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe { *c += 1 };
    }
}
