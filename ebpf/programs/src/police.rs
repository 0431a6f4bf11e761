//! Token buckets shared by all CPUs, in GCRA (virtual scheduling) form.
//!
//! The bucket holds one u64, the theoretical arrival time (TAT). A packet conforms
//! when TAT is at most `burst_ns` ahead of now; a conforming packet advances TAT by
//! its cost with an atomic add, so every CPU's traffic is charged to the one plan and
//! the long-run rate is exact.
//!
//! The decision reads TAT without a lock: CPUs deciding at the same instant may each
//! admit one packet on the same reading, so the momentary excess is bounded by one
//! packet per CPU, and it is charged all the same. The add is BPF's plain atomic add
//! (ISA v1); its result is not used, because fetch-add and compare-exchange need ISA
//! v3, which rustc's BPF target does not ask for.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use warden_common::{Bucket, Rate};

/// Charges `units` (bytes or events) to the bucket if the packet conforms; returns
/// whether it does. Non-conforming packets are not charged, so drops do not use up
/// the plan.
#[inline(always)]
pub fn conforms(bucket: *mut Bucket, rate: &Rate, now: u64, units: u64) -> bool {
    let cost = (units * rate.cost_q10) >> 10;
    // SAFETY: `bucket` points into an array map value that lives as long as the map.
    unsafe {
        let tat = core::ptr::addr_of_mut!((*bucket).tat);
        // An aligned 8-byte load or store is single-copy atomic on BPF.
        let cur = core::ptr::read_volatile(tat);
        if cur > now + rate.burst_ns {
            return false;
        }
        if cur < now {
            // Idle: credit does not accumulate beyond the burst.
            core::ptr::write_volatile(tat, now);
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(tat, cost);
    }
    true
}
