//! Token buckets shared by all CPUs, in GCRA (virtual scheduling) form.
//!
//! The bucket holds one u64, the theoretical arrival time (TAT). `TAT - now` is the
//! virtual queue: how far the tenant is ahead of its plan. A packet conforms while
//! that backlog is at most `burst_ns`; a conforming packet advances TAT by its cost
//! with an atomic add, so every CPU's traffic is charged to the one plan and the
//! long-run rate is exact.
//!
//! Byte plans also drop early, as RED does on a real queue: past half the burst, a
//! packet is dropped with a probability that rises to [`EARLY_MAX`] at the full burst.
//! Without it a TCP sender runs the bucket dry and loses whole bursts of segments,
//! falls back to timeouts and gets a fraction of its plan; with it, it sees isolated
//! losses, backs off through fast recovery and keeps the plan busy.
//!
//! The decision reads TAT without a lock: CPUs deciding at the same instant may each
//! admit one packet on the same reading, so the momentary excess is bounded by one
//! packet per CPU, and it is charged all the same. The add is BPF's plain atomic add
//! (ISA v1); its result is not used, because fetch-add and compare-exchange need ISA
//! v3, which rustc's BPF target does not ask for.

use aya_ebpf::helpers::bpf_get_prandom_u32;
use core::intrinsics::{atomic_xadd, AtomicOrdering};

use warden_common::{Bucket, Rate};

/// Drop probability at a full bucket, out of 2^32 (here 1/8).
const EARLY_MAX: u64 = 1 << 29;

/// Charges `units` (bytes or events) to the bucket if the packet conforms; returns
/// whether it does. Dropped packets are not charged, so drops do not use up the plan.
/// `early` enables the early drop (for byte plans carrying TCP).
#[inline(always)]
pub fn conforms(bucket: *mut Bucket, rate: &Rate, now: u64, units: u64, early: bool) -> bool {
    let cost = (units * rate.cost_q10) >> 10;
    // SAFETY: `bucket` points into an array map value that lives as long as the map.
    unsafe {
        let tat = core::ptr::addr_of_mut!((*bucket).tat);
        // An aligned 8-byte load or store is single-copy atomic on BPF.
        let cur = core::ptr::read_volatile(tat);
        if cur > now {
            let backlog = cur - now;
            if backlog > rate.burst_ns {
                return false;
            }
            let half = rate.burst_ns / 2;
            if early && backlog > half && half > 0 {
                // p = EARLY_MAX * (backlog - half) / half, compared with a uniform u32.
                let p = EARLY_MAX * (backlog - half) / half;
                if u64::from(bpf_get_prandom_u32()) < p {
                    return false;
                }
            }
        } else {
            // Idle: credit does not accumulate beyond the burst.
            core::ptr::write_volatile(tat, now);
        }
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(tat, cost);
    }
    true
}
