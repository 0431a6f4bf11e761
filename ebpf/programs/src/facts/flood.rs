//! Flood counting: packets (and inbound bytes) per (tenant, address, class) and flood
//! epoch in a count-min sketch ([`SKETCH`]), batched per CPU first ([`FLOOD_LOCAL`],
//! [`FLOOD_LOCAL_IN`]), and the FLOOD event once per key and epoch when an estimate
//! crosses its threshold ([`REPORTED`]).

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{read_volatile, write_volatile},
};

use warden_common::{
    direction,
    facts::{
        class, event, flood_quantum, sketch_base, sketch_index, sketch_key, sketch_tagged,
        AMPLIFIER_PORTS, FLOOD_EPOCH_SHIFT, FLOOD_LOCAL_BITS, REFLECTION_MIN_BYTES, REPORTED_SLOTS,
        SKETCH_COUNT_BITS, SKETCH_ROWS,
    },
    proto, TenantConfig,
};

use super::{fold, pending::datagram_is_quiet, report::EventFields, PacketFacts};
use crate::{
    maps::facts::{FLOOD_LOCAL, FLOOD_LOCAL_IN, REPORTED, SKETCH},
    parse::Addr,
};

/// Bits of a sketch counter's count.
const COUNT_MASK: u64 = (1 << SKETCH_COUNT_BITS) - 1;

/// A CPU's flood counts of one out class at one remote not yet added to the shared
/// sketch (the value of `FLOOD_LOCAL`). Named by tenant, class and folded address
/// rather than by the sketch key, so a packet that only adds to its batch makes no
/// sketch hash (the key is made when the batch goes to the sketch).
#[repr(C)]
pub struct FloodLocal {
    /// `flood epoch << 32 | tenant` of `units` (0: never used).
    owner: u64,
    /// The folded remote address.
    addr: u64,
    /// The class.
    klass: u64,
    units: u64,
}

/// The `FLOOD_LOCAL` slot of (tenant, class, folded address): one multiply, as
/// [`in_slot`].
#[inline(always)]
fn out_slot(tenant: u32, klass: u8, folded: u64) -> u32 {
    let x = folded ^ (u64::from(tenant) << 32 | u64::from(tenant)) ^ (u64::from(klass) << 56);
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FLOOD_LOCAL_BITS)) as u32
}

/// Counts `units` of (tenant, `klass`, `folded`) in this CPU's slot when they are
/// below the class's batch; returns what goes to the shared sketch now (0: nothing
/// yet). A slot another key holds in this epoch with units not yet added is left
/// alone: the packet goes to the sketch at once, as it would without the slots.
#[inline(always)]
fn batch(tenant: u32, klass: u8, folded: u64, epoch: u64, units: u64, threshold: u64) -> u64 {
    let quantum = flood_quantum(threshold);
    if units >= quantum {
        return units;
    }
    let Some(l) = FLOOD_LOCAL.get_ptr_mut(out_slot(tenant, klass, folded)) else {
        return units;
    };
    let owner = batch_owner(tenant, epoch);
    // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses it
    // while this one runs (the hooks do not preempt each other on a CPU).
    unsafe {
        if (*l).owner == owner && (*l).addr == folded && (*l).klass == u64::from(klass) {
            let total = (*l).units + units;
            if total < quantum {
                (*l).units = total;
                return 0;
            }
            (*l).units = 0;
            return total;
        }
        if (*l).owner >> 32 == epoch && (*l).units != 0 {
            return units;
        }
        // Free, of an older epoch (what it held can no longer count), or drained.
        (*l).owner = owner;
        (*l).addr = folded;
        (*l).klass = u64::from(klass);
        (*l).units = units;
    }
    0
}

/// This CPU's batch slot of (tenant, `klass`, `folded`) when `units` only add to it
/// (the slot holds that key in `epoch` and stays below the class's batch: the steady
/// state of a flood), so the packet's counting needs nothing else; `None` when the
/// full path ([`batch`], and a flush to the sketch) is needed. Nothing is written here.
#[inline(always)]
pub(super) fn held_slot(
    tenant: u32,
    klass: u8,
    folded: u64,
    epoch: u64,
    units: u64,
    threshold: u64,
) -> Option<*mut FloodLocal> {
    let quantum = flood_quantum(threshold);
    if units >= quantum {
        return None;
    }
    let l = FLOOD_LOCAL.get_ptr_mut(out_slot(tenant, klass, folded))?;
    // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses it
    // while this one runs.
    let fits = unsafe {
        (*l).owner == batch_owner(tenant, epoch)
            && (*l).addr == folded
            && (*l).klass == u64::from(klass)
            && (*l).units + units < quantum
    };
    fits.then_some(l)
}

/// Adds `units` to a slot [`held_slot`] returned.
#[inline(always)]
pub(super) fn add_held(slot: *mut FloodLocal, units: u64) {
    // SAFETY: this CPU's slot of a per-CPU array (from `held_slot`): no other program
    // instance uses it while this one runs.
    unsafe { (*slot).units += units };
}

/// A CPU's inbound flood counts at one tenant address not yet added to the shared
/// sketch (the value of `FLOOD_LOCAL_IN`): both classes in one slot, named by the
/// tenant and the folded address rather than by a sketch key, so the steady state of
/// an inbound flood needs no hash beyond the slot's index (the sketch keys are made
/// only when a batch goes to the sketch).
///
/// The slot also remembers the last remote whose datagrams it found to need no facts
/// (see [`absorb`]), so the steady state of one remote's datagrams skips the
/// contact hash and its two reads.
#[repr(C)]
pub struct FloodLocalIn {
    /// `flood epoch << 32 | tenant` of the counts (0: never used).
    owner: u64,
    /// The folded tenant address.
    addr: u64,
    /// Packets and bytes not yet in the sketch.
    pkts: u64,
    bytes: u64,
    /// The folded remote address of the datagrams found to need no facts.
    quiet_remote: u64,
    /// Their source port plus [`QUIET`]; 0: none yet in this flood epoch.
    quiet_port: u64,
}

/// Marks [`FloodLocalIn::quiet_port`] as holding a port.
const QUIET: u64 = 1 << 16;

/// The `FLOOD_LOCAL_IN` slot of (tenant, folded address): one multiply (Fibonacci
/// hashing), whose top bits depend on every bit of both.
#[inline(always)]
fn in_slot(tenant: u32, folded: u64) -> u32 {
    let x = folded ^ (u64::from(tenant) << 32 | u64::from(tenant));
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - FLOOD_LOCAL_BITS)) as u32
}

/// The owner word of a batch slot (`FLOOD_LOCAL`, `FLOOD_LOCAL_IN`) held by `tenant` in
/// flood epoch `epoch`.
#[inline(always)]
fn batch_owner(tenant: u32, epoch: u64) -> u64 {
    (epoch << 32) | u64::from(tenant)
}

/// Counts an inbound packet at the tenant address `local` in its CPU's slot when
/// both classes' units only add to it (the slot is this address's in this epoch and
/// stays below both batches: the steady state of a flood); returns whether it did
/// (else nothing was counted and the full path, [`flood_in`], must run).
#[inline(always)]
pub(super) fn absorb_flood_in(
    tenant: u32,
    local: &Addr,
    cfg: &TenantConfig,
    bytes: u64,
    now: u64,
) -> bool {
    absorb::<false>(tenant, local, cfg, bytes, now, 0, 0)
}

/// [`absorb_flood_in`] and, with `DATAGRAM`, the same for a datagram from `remote`'s
/// port `sport`, which must also need no facts ([`datagram_is_quiet`]): its remote
/// spoke first and no attempt of the tenant waits for it.
///
/// The slot remembers the last remote and port it found so, and a datagram from them
/// is not checked again while the slot stays this address's: the rest of the flood
/// epoch, which lies within one contact epoch. That holds because the check cannot
/// turn false within a contact epoch: filter bits are only added, and an attempt to
/// the remote's port, the one way its pending slot gets the key, is made only while
/// the remote is not known to have spoken first. (Two CPUs storing one filter word at
/// once may lose one's bits, which can make a reply an attempt once; its answer is then
/// missed by this CPU's slot until the flood epoch ends.)
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn absorb<const DATAGRAM: bool>(
    tenant: u32,
    local: &Addr,
    cfg: &TenantConfig,
    bytes: u64,
    now: u64,
    remote: u64,
    sport: u16,
) -> bool {
    let folded = fold(local);
    let Some(l) = FLOOD_LOCAL_IN.get_ptr_mut(in_slot(tenant, folded)) else {
        return false;
    };
    let (pkts, octets) = (u64::from(cfg.flood_in_pkts), cfg.flood_in_bytes);
    // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses it
    // while this one runs (the hooks do not preempt each other on a CPU).
    unsafe {
        if (*l).owner != batch_owner(tenant, now >> FLOOD_EPOCH_SHIFT) || (*l).addr != folded {
            return false;
        }
        let (p, b) = ((*l).pkts + 1, (*l).bytes + bytes);
        // A class that is counted and would reach its batch (a batch of 0 or 1: every
        // packet goes to the sketch) takes the full path. A class that is not counted
        // only gathers here, never sent.
        if (pkts != 0 && p >= flood_quantum(pkts)) || (octets != 0 && b >= flood_quantum(octets)) {
            return false;
        }
        if DATAGRAM {
            let port = u64::from(sport) | QUIET;
            if (*l).quiet_remote != remote || (*l).quiet_port != port {
                if !datagram_is_quiet(tenant, remote, sport, now) {
                    return false;
                }
                (*l).quiet_remote = remote;
                (*l).quiet_port = port;
            }
        }
        (*l).pkts = p;
        (*l).bytes = b;
    }
    true
}

/// Adds `units` to the sketch for (tenant, `klass`, the address `folded`) and, when
/// the estimate for this flood epoch goes above `threshold` (0: the class is not
/// counted at all), sends the FLOOD event once per key and epoch (not budgeted: one
/// per key and epoch, each needing a threshold's worth of packets). Units below the
/// class's batch gather in the CPU's slot first ([`batch`]): the shared counters are
/// atomic adds that every CPU seeing the key would otherwise contend for on every
/// packet of a flood.
#[inline(always)]
pub(super) fn flood<const DIR: u32>(
    f: &PacketFacts,
    klass: u8,
    folded: u64,
    units: u64,
    threshold: u64,
) {
    if threshold == 0 {
        return;
    }
    let epoch = f.now >> FLOOD_EPOCH_SHIFT;
    let units = batch(f.tenant, klass, folded, epoch, units, threshold);
    if units != 0 {
        let key = sketch_key(f.tenant, klass, folded);
        flush::<DIR>(f, klass, key, units, threshold);
    }
}

/// Adds `units` (not 0) to the sketch counters of `key` in this flood epoch, and sends
/// the FLOOD event when the estimate goes above `threshold` (see [`flood`]).
#[inline(always)]
fn flush<const DIR: u32>(f: &PacketFacts, klass: u8, key: u64, units: u64, threshold: u64) {
    let epoch = f.now >> FLOOD_EPOCH_SHIFT;
    let tag = (epoch & 0xffff) << SKETCH_COUNT_BITS;
    let (Some(c0), Some(c1)) = (
        SKETCH.get_ptr_mut(sketch_index(key, 0)),
        SKETCH.get_ptr_mut(sketch_index(key, 1)),
    ) else {
        return;
    };
    // Both counters are read before either is added to: the atomic add waits for
    // memory and holds back every later load, so read one row at a time, a new key
    // would wait for memory twice in a row.
    // SAFETY: array map values shared by all CPUs, aligned 8-byte loads.
    let (cur0, cur1) = unsafe { (read_volatile(c0), read_volatile(c1)) };
    let n0 = bump(c0, cur0, tag, units);
    let n1 = bump(c1, cur1, tag, units);
    let estimate = if n0 < n1 { n0 } else { n1 };
    if estimate <= threshold {
        return;
    }
    let Some(r) = REPORTED.get_ptr_mut((key >> 20) as u32 & (REPORTED_SLOTS - 1)) else {
        return;
    };
    let mark = (epoch << 32) | (key & 0xffff_ffff);
    // SAFETY: an array map value; CPUs racing here may each send the event once.
    unsafe {
        if read_volatile(r) == mark {
            return;
        }
        write_volatile(r, mark);
    }
    // The packet that crossed gives the protocol and ports, as an example.
    let (local_port, remote_port) = ports::<DIR>(f);
    f.send(&EventFields {
        kind: event::FLOOD,
        dir: DIR,
        proto: f.l4_proto,
        detail: klass,
        local_port,
        remote_port,
        value: estimate,
        threshold,
    });
}

const _: () = assert!(SKETCH_ROWS == 2, "flood() reads and adds to two rows");

/// Adds `units` to the sketch counter `c`, which read `cur`, in the flood epoch tagged
/// `tag`; returns the counter's count after the add.
#[inline(always)]
fn bump(c: *mut u64, cur: u64, tag: u64, units: u64) -> u64 {
    // SAFETY: an array map value shared by all CPUs: the add is atomic; the restart of
    // a counter from an older epoch is a plain store, and CPUs racing on it lose at most
    // their own few packets of the new epoch.
    unsafe {
        if cur & !COUNT_MASK == tag {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(c, units);
            (cur & COUNT_MASK) + units
        } else {
            write_volatile(c, tag | units);
            units
        }
    }
}

/// (tenant-side port, remote port) of a TCP or UDP packet going `DIR`; 0 and 0 for
/// other protocols (whose ports hold an ICMP type and code).
#[inline(always)]
fn ports<const DIR: u32>(f: &PacketFacts) -> (u16, u16) {
    if f.l4_proto != proto::TCP && f.l4_proto != proto::UDP {
        (0, 0)
    } else if DIR == direction::OUT {
        (f.sport, f.dport)
    } else {
        (f.dport, f.sport)
    }
}

/// Whether a from-tenant UDP datagram of `bytes` from `sport` is a reflection-sized
/// reply of an amplifier's service.
#[inline(always)]
pub(super) fn reflection_sized(sport: u16, bytes: u64) -> bool {
    if bytes <= REFLECTION_MIN_BYTES {
        return false;
    }
    let mut i = 0;
    while i < AMPLIFIER_PORTS.len() {
        if AMPLIFIER_PORTS[i] == sport {
            return true;
        }
        i += 1;
    }
    false
}

/// Unsolicited traffic at a tenant address: packets and bytes per flood epoch.
#[inline(always)]
pub(super) fn flood_in(f: &PacketFacts) {
    const IN: u32 = direction::IN;
    let (pkts, bytes) = (u64::from(f.flood_in_pkts), f.flood_in_bytes);
    if pkts == 0 && bytes == 0 {
        return;
    }
    let folded = fold(&f.local);
    let epoch = f.now >> FLOOD_EPOCH_SHIFT;
    // What goes to the sketch now, per class: by default the packet itself.
    let (mut send_p, mut send_b) = (1, f.bytes);
    if let Some(l) = FLOOD_LOCAL_IN.get_ptr_mut(in_slot(f.tenant, folded)) {
        let (qp, qb) = (flood_quantum(pkts), flood_quantum(bytes));
        let owner = batch_owner(f.tenant, epoch);
        // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses
        // it while this one runs.
        unsafe {
            let ours = if (*l).owner == owner && (*l).addr == folded {
                true
            } else if (*l).owner >> 32 == epoch && ((*l).pkts != 0 || (*l).bytes != 0) {
                // Another address holds units of this epoch here: left alone, and
                // this packet goes to the sketch at once, as without the slots.
                false
            } else {
                // Free, of an older epoch (what it held can no longer count), or
                // drained: this address's now.
                (*l).owner = owner;
                (*l).addr = folded;
                (*l).pkts = 0;
                (*l).bytes = 0;
                (*l).quiet_port = 0;
                true
            };
            if ours {
                let (p, b) = ((*l).pkts + 1, (*l).bytes + f.bytes);
                // Each class's units stay while below its batch, and go to the
                // sketch together once they reach it.
                (send_p, send_b) = (0, 0);
                if p >= qp {
                    (*l).pkts = 0;
                    send_p = p;
                } else {
                    (*l).pkts = p;
                }
                if b >= qb {
                    (*l).bytes = 0;
                    send_b = b;
                } else {
                    (*l).bytes = b;
                }
            }
        }
    }
    // Both classes' keys come from one hash, made only when a batch goes out.
    if (pkts != 0 && send_p != 0) || (bytes != 0 && send_b != 0) {
        let base = sketch_base(f.tenant, folded);
        if pkts != 0 && send_p != 0 {
            let key = sketch_tagged(base, class::IN_PACKETS);
            flush::<IN>(f, class::IN_PACKETS, key, send_p, pkts);
        }
        if bytes != 0 && send_b != 0 {
            let key = sketch_tagged(base, class::IN_BYTES);
            flush::<IN>(f, class::IN_BYTES, key, send_b, bytes);
        }
    }
}
