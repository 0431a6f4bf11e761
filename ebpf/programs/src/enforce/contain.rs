//! Containment: while a scan (or a flood whose victims rotate) is blocked, the tenant's
//! new outbound first contacts pass at the rate the daemon set
//! (`TenantRuntime::contain`), one at a time, and the rest are dropped as `blocked`.
//! Per-target blocks follow a detection's targets; a randomised sweep has a new target
//! with every probe, so only a limit on first contacts holds it to a few probes after
//! the flag. Established flows (no SYN), replies to remotes that spoke first and
//! contacts already made pass untouched.
//!
//! Cost: one flags test for a tenant not contained; a contained tenant's candidate
//! pays the contact filter's hash and word read, and a first contact the bucket.

use core::ptr::addr_of_mut;

use warden_common::{
    direction,
    facts::{runtime_flags, TenantRuntime},
};

use super::Stop;
use crate::{clock::Clock, facts, parse::Parsed, police};

/// Containment of the packet `p` of `tenant`, whose runtime entry is `entry` with flags
/// `flags`: a from-tenant first contact over the containment rate is dropped. The
/// containment ends at its expiry even when the daemon is not there to lift it.
#[inline(always)]
pub fn try_contain<const DIR: u32>(
    p: &Parsed,
    tenant: u32,
    entry: Option<*mut TenantRuntime>,
    flags: u32,
    clock: &mut Clock,
) -> Result<(), Stop> {
    if DIR != direction::OUT || flags & runtime_flags::CONTAIN == 0 || p.is_claim {
        return Ok(());
    }
    let Some(rt) = entry else {
        return Ok(());
    };
    let now = clock.now();
    // SAFETY: an array map value; the daemon writes `contain` and its expiry, the
    // programs the bucket (see `police`).
    let (rate, until) = unsafe { ((*rt).contain, (*rt).contain_until_ns) };
    if now >= until || !facts::is_new_contact(p, tenant, now) {
        return Ok(());
    }
    // SAFETY: as above; `contain_tat` is a u64 at an 8-byte aligned offset, laid out as
    // a `Bucket`.
    let bucket = unsafe { addr_of_mut!((*rt).contain_tat) }.cast();
    if police::conforms(bucket, &rate, now, 1, false) {
        Ok(())
    } else {
        Err(Stop::Contain)
    }
}
