//! Spreading a shaped tenant's flows over its leaf classes.
//!
//! A tenant's plan is one HTB class with `shape::LEAVES` leaves, each with a queue of its
//! own; HTB serves the backlogged leaves in turn, so flows in different leaves share the
//! plan evenly, where one FIFO lets each TCP stream keep what it grabbed early. A leaf
//! picked by hash would put two of eight flows in one leaf most of the time; instead a
//! new flow takes the tenant's next leaf in rotation, and the flow (the kernel's flow
//! hash of the packet, with the tenant) is remembered in an LRU hash, looked up for
//! every shaped packet and written only for a new flow. When the table is full, the
//! kernel forgets the flow seen least recently: if it sends again it is a new flow, and
//! takes the next leaf (its packets still in the old leaf's queue may then arrive after
//! its new ones). A flow that cannot be remembered (the insert fails) takes the leaf of
//! its hash, counted per packet in `shape::stat::UNTRACKED`.
//!
//! The rotation is read and then added to with two instructions, not one fetch-add
//! (ISA v3, see `police`): two CPUs starting flows of one tenant at the same instant
//! may give both the same leaf.

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::read_volatile,
};

use warden_common::shape::{stat, LEAVES};

use crate::maps::shaping::{SHAPE_FLOWS, SHAPE_ROTOR, SHAPE_STATS};

/// The class of the flow with hash `hash` of tenant `tenant`, whose first leaf class
/// is `first` (`TenantConfig::shape_class`).
#[inline(always)]
pub fn leaf_class(tenant: u32, first: u32, hash: u32) -> u32 {
    let key = (u64::from(tenant) << 32) | u64::from(hash);
    if let Some(leaf) = SHAPE_FLOWS.get_ptr(key) {
        // SAFETY: a map value, read while the program runs (the LRU may reuse it for
        // another flow meanwhile: the value is then that flow's leaf, still a leaf).
        return first + (unsafe { read_volatile(leaf) } & (LEAVES - 1));
    }
    first + new_flow(tenant, key, hash)
}

/// Gives the flow `key` the tenant's next leaf and remembers it; returns the leaf.
/// Inlined like every stage: a function of its own is compiled differently in the
/// benchmark object, whose code must be the production object's.
#[inline(always)]
fn new_flow(tenant: u32, key: u64, hash: u32) -> u32 {
    let leaf = match SHAPE_ROTOR.get_ptr_mut(tenant) {
        // SAFETY: an array map value, shared by all CPUs: read, then added to atomically.
        Some(r) => unsafe {
            let n = read_volatile(r);
            atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(r, 1);
            n & (LEAVES - 1)
        },
        None => hash & (LEAVES - 1),
    };
    let (leaf, counted) = match SHAPE_FLOWS.insert(key, leaf, 0) {
        Ok(()) => (leaf, stat::ASSIGNED),
        Err(_) => (hash & (LEAVES - 1), stat::UNTRACKED),
    };
    if let Some(c) = SHAPE_STATS.get_ptr_mut(counted) {
        // SAFETY: this CPU's slot of a per-CPU array.
        unsafe { *c += 1 };
    }
    leaf
}
