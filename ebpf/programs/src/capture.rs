//! Frame capture for evidence: the first `SAMPLE_BYTES` bytes of a frame of a tenant
//! the daemon asked samples of (`TenantRuntime::capture`), sent as a `SampleEvent`.
//!
//! The frame is read with the hook's own helper (`bpf_xdp_load_bytes`,
//! `bpf_skb_load_bytes`), which copies what is there whether it sits in the linear area
//! or not, straight into the ring reservation. Samples are not charged to the event
//! budget: the daemon bounds them by the count it writes. A full ring loses the
//! sample (counted as `LOST_RING`); a frame the helper cannot read is sent with
//! `cap_len` 0 rather than lost, so the daemon still sees its length and time.
//!
//! Both are global BPF functions taking the hook's context: the verifier checks them
//! once, not once more for every path through the enforcement that can end in a
//! capture (see `facts`).

use core::{
    ffi::c_void,
    ptr::{addr_of_mut, write_volatile},
};

use aya_ebpf::{
    bindings::{__sk_buff, xdp_md},
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    maps::ring_buf::RingBufEntry,
};
use warden_common::facts::{event, fact_counter, SampleEvent, SAMPLE_BYTES};

use crate::{facts::count, maps::facts::EVENTS};

/// Reserves a sample record and fills everything but the frame bytes (zeroed);
/// returns it with the number of bytes to copy, in `1..=SAMPLE_BYTES`.
#[inline(always)]
fn reserve(tenant: u32, now: u64, dir: u32, len: u64) -> Option<(RingBufEntry<SampleEvent>, u32)> {
    let Some(mut entry) = EVENTS.reserve::<SampleEvent>(0) else {
        count(fact_counter::LOST_RING);
        return None;
    };
    let cap = if len >= SAMPLE_BYTES as u64 {
        SAMPLE_BYTES as u32
    } else {
        len as u32
    };
    // The helpers take a size the verifier can bound to 1..=SAMPLE_BYTES; a compare
    // that LLVM may move to another register does not tell it, a mask does. For
    // `cap` in 1..=SAMPLE_BYTES (every frame a hook sees) this is `cap` itself.
    let cap = (cap.wrapping_sub(1) & (SAMPLE_BYTES as u32 - 1)) + 1;
    let e = entry.as_mut_ptr();
    // SAFETY: `e` points at a reserved record of the right size, ours until submitted.
    unsafe {
        (*e).kind = event::SAMPLE;
        (*e).tenant = tenant;
        (*e).at = now;
        (*e).orig_len = len as u32;
        (*e).cap_len = cap;
        (*e).dir = dir;
        (*e)._pad = 0;
        // Word stores: a byte-wise memset loop would cost more than the capture.
        let words = addr_of_mut!((*e).data).cast::<u64>();
        for i in 0..SAMPLE_BYTES / 8 {
            write_volatile(words.add(i), 0);
        }
    }
    Some((entry, cap))
}

/// Submits a record from [`reserve`]; `read` false records that no byte was read.
#[inline(always)]
fn finish(mut entry: RingBufEntry<SampleEvent>, read: bool) {
    if !read {
        // SAFETY: the record is ours until submitted.
        unsafe { (*entry.as_mut_ptr()).cap_len = 0 };
    }
    entry.submit(0);
    count(fact_counter::SAMPLES);
}

/// Captures the `len`-byte frame of an XDP hook for `tenant`, going `dir`, at `now`.
/// Returns 0.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_capture_xdp(
    ctx: *mut xdp_md,
    tenant: u32,
    now: u64,
    dir: u32,
    len: u64,
) -> u32 {
    let Some((mut entry, cap)) = reserve(tenant, now, dir, len) else {
        return 0;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `data` holds SAMPLE_BYTES >= cap bytes of the reserved record; `ctx` is
    // the hook's context (the verifier types the argument by its name).
    let r = unsafe { bpf_xdp_load_bytes(ctx, 0, addr_of_mut!((*e).data).cast::<c_void>(), cap) };
    finish(entry, r == 0);
    0
}

/// Captures the `len`-byte frame of a tc hook, as [`warden_capture_xdp`].
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_capture_tc(
    ctx: *mut __sk_buff,
    tenant: u32,
    now: u64,
    dir: u32,
    len: u64,
) -> u32 {
    let Some((mut entry, cap)) = reserve(tenant, now, dir, len) else {
        return 0;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `data` holds SAMPLE_BYTES >= cap bytes of the reserved record; `ctx` is
    // the hook's context (the verifier types the argument by its name).
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.cast::<c_void>(),
            0,
            addr_of_mut!((*e).data).cast::<c_void>(),
            cap,
        )
    };
    finish(entry, r == 0);
    0
}
