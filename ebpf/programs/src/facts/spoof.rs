//! Spoofing claims: what a tenant's spoofed frame claimed, reported once per contact
//! epoch by [`report::warden_report_spoof`](super::report::warden_report_spoof).
//!
//! A spoofer sends the same claim over and over (a flood from a forged source, ARP
//! replies for the gateway), and every one of those frames would pay the clock, a call,
//! a hash and a filter word to learn that its claim was already reported. So each CPU
//! keeps the last claim it passed on with the clock tick it did so in (`SPOOF_CACHE`):
//! a frame with the same claim in the same tick stops at that compare. That answer is
//! the global function's exactly: within a tick the CPU's time (`Clock`) stands still,
//! so the call would find the claim's key in the filter, put there by the first call.

use aya_ebpf::helpers::generated::bpf_jiffies64;
use warden_common::family;

use super::report;
use crate::{
    clock::Clock,
    maps::facts::SPOOF_CACHE,
    parse::{Family, Parsed},
};

/// A CPU's last claim passed on (the value of `SPOOF_CACHE`).
#[repr(C)]
pub struct SpoofCached {
    /// `bpf_jiffies64` when it was passed on; 0 = none yet.
    jiffies: u64,
    /// Tenant, generation, reason and family, packed as [`report_spoof`] packs them
    /// (never 0: the family is 4 or 6).
    meta: u64,
    /// The claimed address's two words.
    addr: [u64; 2],
    /// The frame's source MAC.
    mac: u64,
}

/// Reports a from-tenant frame `p` of `tenant` (generation `gen`) dropped for `why`, a
/// spoofing reason: what it claims, once per contact epoch (see
/// [`report::warden_report_spoof`]). Paid only by spoofed frames; a repeat of this
/// CPU's last claim within the clock tick pays a per-CPU slot and a compare.
#[inline(always)]
pub fn report_spoof(p: &Parsed, gen: u32, tenant: u32, why: usize) {
    let family = match p.family {
        Family::V4 => family::V4,
        Family::V6 => family::V6,
        Family::None => return,
    };
    let m = p.src_mac;
    let mac = u64::from_le_bytes([m[0], m[1], m[2], m[3], m[4], m[5], 0, 0]);
    let meta =
        u64::from(tenant | (gen << 31)) | ((why as u64 & 0xff) << 32) | (u64::from(family) << 40);
    let addr = p.local;
    // SAFETY: the helper takes no arguments and cannot fail (the verifier inlines it
    // into one load).
    let jiffies = unsafe { bpf_jiffies64() };
    if let Some(c) = SPOOF_CACHE.get_ptr_mut(0) {
        // SAFETY: a per-CPU slot: no other program instance touches it meanwhile.
        unsafe {
            if (*c).jiffies == jiffies
                && (*c).meta == meta
                && (*c).addr[0] == addr[0]
                && (*c).addr[1] == addr[1]
                && (*c).mac == mac
            {
                return;
            }
            *c = SpoofCached {
                jiffies,
                meta,
                addr,
                mac,
            };
        }
    }
    let now = Clock::new().now();
    report::warden_report_spoof(meta, addr[0], addr[1], mac, now);
}
