//! Blocks: a detection's block of the packet, if one is in force (the daemon writes
//! them into `BLOCKS` and marks their tenants in `TENANT_RUNTIME`). From the tenant its
//! victim or a destination port; to the tenant a blackholed tenant address or a
//! listening port.
//!
//! The lookups run in global BPF functions, one per direction, verified once each
//! rather than again on every path that reaches them (see `facts`).
//!
//! A lookup hashes its 24-byte key (`BlockKey`): some 20 ns, as much as the rest of a
//! datagram's path, paid by every packet of a flood at a blackholed address. So each
//! CPU keeps its recent lookups' answers (`BLOCK_CACHE`), each good for the clock tick
//! it was made in and the tenant's blocks version (`runtime_flags::BLOCKS_VERSION`,
//! counted up by the daemon after every write of the tenant's blocks): a packet with
//! the same key in the same tick under the same version takes the answer, which is the
//! lookup's exactly (expiry compared at the same time, the map as it was).

use core::{
    mem::MaybeUninit,
    ptr::{addr_of_mut, write_volatile},
};

use warden_common::{
    direction,
    facts::{fact_counter, runtime_flags, BlockKey},
    family,
    map::BLOCK_CACHE_SLOTS,
    reason,
};

use super::Stop;
use crate::{
    clock::Clock,
    facts,
    maps::runtime::{BLOCKS, BLOCK_CACHE},
    parse::{proto, Addr, Family, Parsed},
};

/// Blocks: the packet of `tenant`, whose runtime flags are `flags`, dropped for a
/// detection's block in force (counted in `fact_counter::BLOCKED` too). Looked up only
/// for tenants with blocks, and never for an address claim (ARP, ND) or a frame
/// without an address.
#[inline(always)]
pub fn try_blocks<const DIR: u32>(
    p: &Parsed,
    tenant: u32,
    flags: u32,
    clock: &mut Clock,
) -> Result<(), Stop> {
    if flags & runtime_flags::BLOCKS == 0 || p.is_claim || p.family == Family::None {
        return Ok(());
    }
    let now = clock.now();
    // The address a block names: the victim from the tenant, the tenant's own
    // address to it.
    let family = if p.family == Family::V4 {
        family::V4
    } else {
        family::V6
    };
    let addr = if DIR == direction::OUT {
        p.remote
    } else {
        p.local
    };
    let has_ports = p.l4_proto == proto::TCP || p.l4_proto == proto::UDP;
    let meta = block_meta(family, p.dport, has_ports);
    let version = flags & runtime_flags::BLOCKS_VERSION;
    let why = cached_block::<DIR>(tenant, meta, &addr, now, version);
    if why == NOT_BLOCKED {
        return Ok(());
    }
    facts::count(fact_counter::BLOCKED);
    // Only the two block reasons come back; anything else would be a bug here, and a
    // blocked packet is dropped all the same.
    let why = if why == reason::BLACKHOLE as u32 {
        reason::BLACKHOLE
    } else {
        reason::BLOCKED
    };
    Err(Stop::Drop(why))
}

/// A CPU's answer to one block lookup (the value of `BLOCK_CACHE`).
#[repr(C)]
pub struct BlockCached {
    /// The clock reading ([`Clock::now`]) the answer was looked up at: it holds for
    /// packets with that reading (0: never used; the clock is never 0).
    now: u64,
    /// The direction (bit 63), the block meta (bits 32-56) and the tenant (bits 0-31).
    key: u64,
    /// The address looked up.
    addr: Addr,
    /// The tenant's blocks version (`runtime_flags::BLOCKS_VERSION` bits) it was looked
    /// up under.
    version: u64,
    /// The answer: a drop reason, or [`NOT_BLOCKED`].
    why: u64,
}

/// The block of the packet (`tenant`, `meta`, `addr`, going `DIR`) at time `now`, the
/// tenant's blocks being at `version`: the answer this CPU looked up for the same key at
/// the same time and version, or a lookup, whose answer is kept for the rest of the
/// tick.
#[inline(always)]
fn cached_block<const DIR: u32>(
    tenant: u32,
    meta: u64,
    addr: &Addr,
    now: u64,
    version: u32,
) -> u32 {
    let key = u64::from(tenant) | (meta << 32) | (u64::from(DIR) << 63);
    let Some(c) = BLOCK_CACHE.get_ptr_mut(cache_slot(key, addr)) else {
        return lookup::<DIR>(tenant, meta, addr, now);
    };
    let version = u64::from(version);
    // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses it
    // while this one runs (the hooks do not preempt each other on a CPU).
    unsafe {
        if (*c).now == now
            && (*c).key == key
            && (*c).addr[0] == addr[0]
            && (*c).addr[1] == addr[1]
            && (*c).version == version
        {
            return (*c).why as u32;
        }
        let why = lookup::<DIR>(tenant, meta, addr, now);
        (*c).now = now;
        (*c).key = key;
        (*c).addr = *addr;
        (*c).version = version;
        (*c).why = u64::from(why);
        why
    }
}

/// The `BLOCK_CACHE` slot of a lookup: one multiply (Fibonacci hashing) of its key and
/// address.
#[inline(always)]
fn cache_slot(key: u64, addr: &Addr) -> u32 {
    const BITS: u32 = BLOCK_CACHE_SLOTS.trailing_zeros();
    let x = key ^ addr[0] ^ addr[1].rotate_left(17);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as u32
}

const _: () = assert!(BLOCK_CACHE_SLOTS.is_power_of_two());

/// The block lookup in `BLOCKS` (a global function per direction).
#[inline(always)]
fn lookup<const DIR: u32>(tenant: u32, meta: u64, addr: &Addr, now: u64) -> u32 {
    if DIR == direction::OUT {
        warden_blocked_from_tenant(tenant, meta, addr[0], addr[1], now)
    } else {
        warden_blocked_to_tenant(tenant, meta, addr[0], addr[1], now)
    }
}

/// "No block": what the block functions return for a packet they let through.
const NOT_BLOCKED: u32 = u32::MAX;

/// The packet's block key fields, packed into one argument of the block functions
/// (global functions take at most 5): family (4 or 6) in bits 0-7, the tenant-side
/// port (from the tenant: the destination port; to it: the listening port) in bits
/// 8-23, and bit 24 set when the packet has ports (TCP, UDP).
#[inline(always)]
fn block_meta(family: u8, port: u16, has_ports: bool) -> u64 {
    u64::from(family) | (u64::from(port) << 8) | (u64::from(has_ports) << 24)
}

/// The block of a from-tenant packet of `tenant`, to the address whose event-form
/// words are `w0`, `w1` (see [`blocked`]). A global BPF function, verified once on its
/// own rather than again on every path that reaches it (see `facts`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_blocked_from_tenant(
    tenant: u32,
    meta: u64,
    w0: u64,
    w1: u64,
    now: u64,
) -> u32 {
    blocked::<{ direction::OUT }>(tenant, meta, [w0, w1], now)
}

/// The block of a to-tenant packet of `tenant` at its address `w0`, `w1` (global, as
/// above).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_blocked_to_tenant(
    tenant: u32,
    meta: u64,
    w0: u64,
    w1: u64,
    now: u64,
) -> u32 {
    blocked::<{ direction::IN }>(tenant, meta, [w0, w1], now)
}

/// A detection's block of this packet, if one is in force: from the tenant, its
/// victim (`addr`) or its destination port; to the tenant, a blackholed tenant
/// address (`addr`) or a listening port. The drop reason to count, or [`NOT_BLOCKED`].
#[inline(always)]
fn blocked<const DIR: u32>(tenant: u32, meta: u64, addr: [u64; 2], now: u64) -> u32 {
    let addr_reason = if DIR == direction::OUT {
        reason::BLOCKED as u32
    } else {
        reason::BLACKHOLE as u32
    };
    if block_in_force(tenant, DIR as u8, meta as u8, 0, addr, now) {
        return addr_reason;
    }
    if meta & (1 << 24) != 0
        && block_in_force(tenant, DIR as u8, 0, (meta >> 8) as u16, [0; 2], now)
    {
        return reason::BLOCKED as u32;
    }
    NOT_BLOCKED
}

/// Whether BLOCKS holds the key (`tenant`, `dir`, `family`, `port`, `addr`) with an
/// expiry after `now`.
#[inline(always)]
fn block_in_force(tenant: u32, dir: u8, family: u8, port: u16, addr: [u64; 2], now: u64) -> bool {
    let mut key = MaybeUninit::<BlockKey>::uninit();
    let k = key.as_mut_ptr();
    // SAFETY: every field of the local is written before it is read. Volatile stores:
    // LLVM would merge stores of zeros into a byte-by-byte `memset` call.
    let key = unsafe {
        write_volatile(addr_of_mut!((*k).tenant), tenant);
        write_volatile(addr_of_mut!((*k).dir), dir);
        write_volatile(addr_of_mut!((*k).family), family);
        write_volatile(addr_of_mut!((*k).port), port);
        let a = addr_of_mut!((*k).addr).cast::<u64>();
        write_volatile(a, addr[0]);
        write_volatile(a.add(1), addr[1]);
        key.assume_init_ref()
    };
    // SAFETY: the value is copied out at once; the daemon replaces entries whole.
    match unsafe { BLOCKS.get(key) } {
        Some(v) => v.until_ns > now,
        None => false,
    }
}
