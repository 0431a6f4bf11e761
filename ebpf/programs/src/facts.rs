//! Detection facts: first contacts and their answers, accepted connections, and flood
//! counts, turned into events only when something changes: first contacts and accepted
//! connections into the per-CPU attempt log, the rest into the ring buffer.
//!
//! Layout and formulas are the ABI in `warden_common::facts`; the daemon and the tests
//! predict slots with the same functions. Everything is an array: per packet at most a
//! few inlined array reads and writes, no hash-map insert, nothing that grows with the
//! traffic. What is lossy (the contact filter, the pending table, the sketch) is lossy
//! in bounded, counted ways.
//!
//! Cost by packet: an established TCP segment pays one flags test. A from-tenant SYN
//! of a known contact pays a hash and a filter word (and the time: see `clock`); a new
//! one, the pending write and the log entry besides. UDP pays that per datagram (there
//! is no handshake to tell a new flow by); answers pay a hash and a pending read. Flood counting pays, per class
//! whose threshold is set, a hash, two counters and a compare; a class without a
//! threshold is not counted at all, since nothing reads its counts.
//!
//! Past the cheap tests in [`record`], the work runs in global BPF functions
//! (`warden_facts_*`). The verifier checks a global function once, on its own, with
//! its inputs unknown; inlined, the same code was checked again for every path the
//! parser and the tenant lookup can take to reach it, which multiplied the verifier's
//! work on each program several times over. A global function takes the hook's
//! context and a few integers (where the headers are, whose packet, when), reads the
//! fields it needs from the packet again and the tenant's settings from the maps:
//! carrying them all through the inlined path instead cost more stack than the
//! verifier allows a program (512 bytes).

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{addr_of_mut, read_volatile, write_volatile},
};

use aya_ebpf::bindings::{__sk_buff, xdp_md};
use warden_common::{
    bucket, direction,
    facts::{
        class, contact_base, contact_key, contact_tag, contact_tagged, event, fact_counter,
        flood_quantum, outcome, pending_slot, sketch_base, sketch_index, sketch_key, sketch_tagged,
        Event, AMPLIFIER_PORTS, CONTACT_EPOCH_SHIFT, CONTACT_WORDS, FLOOD_EPOCH_SHIFT,
        FLOOD_LOCAL_BITS, LOG_BITS, LOG_SLOTS, REFLECTION_MIN_BYTES, REPORTED_SLOTS,
        SKETCH_COUNT_BITS, SKETCH_ROWS,
    },
    family,
    tcp_flags::{ACK as TCP_ACK, RST as TCP_RST, SYN as TCP_SYN},
    tenant_config_index, Rate, TenantConfig,
};

use crate::{
    clock::Clock,
    maps::{
        facts::{
            ATTEMPT_LOG, CONTACTS, EVENTS, FACT_COUNTERS, FLOOD_LOCAL, FLOOD_LOCAL_IN, PENDING,
            REPORTED, SKETCH,
        },
        metering::BUCKETS,
        policy::{GEN_CONFIG, TENANT_CONFIG},
    },
    parse::{
        self, load32, load_addr16, load_addr4, proto, ptr_at, split_ports, Addr, Family, Parsed,
        ICMPV6_UNREACHABLE, ICMP_UNREACHABLE,
    },
    police,
};

const ICMP_ECHO_REPLY: u16 = 0;
const ICMP_ECHO_REQUEST: u16 = 8;
const ICMPV6_ECHO_REQUEST: u16 = 128;
const ICMPV6_ECHO_REPLY: u16 = 129;

/// Bits of a sketch counter's count.
const COUNT_MASK: u64 = (1 << SKETCH_COUNT_BITS) - 1;

/// Adds 1 to a per-CPU fact counter.
#[inline(always)]
pub fn count(which: u32) {
    if let Some(c) = FACT_COUNTERS.get_ptr_mut(which) {
        // SAFETY: a per-CPU slot: no other program instance writes it concurrently.
        unsafe { *c += 1 };
    }
}

/// `warden_common::facts::fold_addr` of the address `w` holds (an [`Addr`] is the two
/// words `fold_addr` reads from the event form).
#[inline(always)]
fn fold(w: &Addr) -> u64 {
    w[0] ^ w[1].rotate_left(17)
}

/// Everything the fact path needs about one packet, read inside the global functions:
/// its addresses, ports and flags, its time and size, the tenant and its settings.
struct FactsIn {
    /// Tenant-side address.
    local: Addr,
    /// The other side's address.
    remote: Addr,
    /// A to-tenant ICMP error's quoted destination.
    quoted_dst: Addr,
    now: u64,
    /// Frame bytes.
    bytes: u64,
    /// The generation's event budget (`GenConfig::event_budget`).
    budget: Rate,
    flood_in_bytes: u64,
    tenant: u32,
    flood_out_syn: u32,
    flood_out_pkts: u32,
    flood_in_pkts: u32,
    /// Ports (TCP, UDP) or ICMP type and code, host order.
    sport: u16,
    dport: u16,
    quoted_sport: u16,
    quoted_dport: u16,
    /// 4 or 6.
    family: u8,
    l4_proto: u8,
    tcp_flags: u8,
    /// The quoted packet's protocol, 0 when there is none.
    quoted_proto: u8,
    /// A from-tenant SYN's contact key, 0 when not computed.
    syn_key: u64,
}

/// What an event says besides the packet's tenant, time and addresses.
struct What<'a> {
    kind: u32,
    dir: u32,
    proto: u8,
    detail: u8,
    local_port: u16,
    remote_port: u16,
    /// The remote address when it is not the packet's (an ICMP error's quoted
    /// destination).
    remote: Option<&'a Addr>,
    value: u64,
    threshold: u64,
}

/// Writes an address into an event's 16-byte field, word by word.
///
/// # Safety
/// `dst` must be valid for writes and 8-byte aligned.
#[inline(always)]
unsafe fn put(dst: *mut [u8; 16], w: &Addr) {
    let d = dst.cast::<u64>();
    unsafe {
        write_volatile(d, w[0]);
        write_volatile(d.add(1), w[1]);
    }
}

impl FactsIn {
    /// Writes an event about this packet straight into the ring; a full ring loses it
    /// (counted).
    #[inline(always)]
    fn send(&self, w: &What) {
        let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
            count(fact_counter::LOST_RING);
            return;
        };
        let e = entry.as_mut_ptr();
        // SAFETY: `e` is a reserved record of the right size, ours until submitted;
        // records are 8-byte aligned, and so are the address fields in them. Volatile
        // stores: LLVM merges plain stores of zeros into a `memset`, which for BPF is a
        // byte-by-byte loop.
        unsafe {
            write_volatile(addr_of_mut!((*e).kind), w.kind);
            write_volatile(addr_of_mut!((*e).tenant), self.tenant);
            write_volatile(addr_of_mut!((*e).at), self.now);
            put(addr_of_mut!((*e).local), &self.local);
            put(addr_of_mut!((*e).remote), w.remote.unwrap_or(&self.remote));
            write_volatile(addr_of_mut!((*e).family), self.family);
            write_volatile(addr_of_mut!((*e).proto), w.proto);
            write_volatile(addr_of_mut!((*e).detail), w.detail);
            write_volatile(addr_of_mut!((*e).dir), w.dir as u8);
            write_volatile(addr_of_mut!((*e).local_port), w.local_port);
            write_volatile(addr_of_mut!((*e).remote_port), w.remote_port);
            write_volatile(addr_of_mut!((*e).value), w.value);
            write_volatile(addr_of_mut!((*e).threshold), w.threshold);
        }
        entry.submit(0);
        count(fact_counter::SENT);
    }

    /// Whether the tenant's event budget (bucket `EVENTS`, rate `budget`; unlimited when
    /// its cost is 0) has room for one more event; counts the loss when not.
    #[inline(always)]
    fn within_budget(&self) -> bool {
        let budget = &self.budget;
        if budget.cost_q10 == 0 {
            return true;
        }
        let Some(b) = BUCKETS.get_ptr_mut(bucket::index(self.tenant, bucket::EVENTS)) else {
            return false;
        };
        if police::conforms(b, budget, self.now, 1, false) {
            return true;
        }
        count(fact_counter::LOST_BUDGET);
        false
    }

    /// Writes a first contact or an accepted connection (`kind`) into this CPU's
    /// attempt log, charged to the event budget (see `LogEntry` for the protocol).
    #[inline(always)]
    fn log(&self, kind: u32, proto: u8, local_port: u16, remote_port: u16) {
        if !self.within_budget() {
            return;
        }
        let Some(n) = FACT_COUNTERS.get_ptr_mut(fact_counter::LOGGED) else {
            return;
        };
        // SAFETY: a per-CPU slot: no other program instance writes it concurrently.
        let seq = unsafe { *n };
        // SAFETY: a helper without arguments.
        let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
        let slot = (cpu << LOG_BITS) | (seq as u32 & (LOG_SLOTS - 1));
        let Some(e) = ATTEMPT_LOG.get_ptr_mut(slot) else {
            count(fact_counter::LOST_LOG);
            return;
        };
        // SAFETY: an array map value in this CPU's region, written only by this CPU (a
        // program runs to its end on one CPU); the daemon reads it as `LogEntry`
        // describes. Volatile stores keep their order: `seq` cleared first, set last.
        unsafe {
            *n = seq + 1;
            write_volatile(addr_of_mut!((*e).seq), 0);
            write_volatile(addr_of_mut!((*e).at), self.now);
            write_volatile(addr_of_mut!((*e).tenant), self.tenant);
            write_volatile(addr_of_mut!((*e).kind), kind as u8);
            write_volatile(addr_of_mut!((*e).family), self.family);
            write_volatile(addr_of_mut!((*e).proto), proto);
            write_volatile(addr_of_mut!((*e).local_port), local_port);
            write_volatile(addr_of_mut!((*e).remote_port), remote_port);
            put(addr_of_mut!((*e).local), &self.local);
            put(addr_of_mut!((*e).remote), &self.remote);
            write_volatile(addr_of_mut!((*e).seq), seq + 1);
        }
    }
}

/// The contact filter word of `key`, and the two bits of `key` in it.
#[inline(always)]
fn contact_word(key: u64) -> (Option<*mut u64>, u64) {
    let word = CONTACTS.get_ptr_mut(key as u32 & (CONTACT_WORDS - 1));
    let bits = (1u64 << ((key >> 32) & 31)) | (1u64 << ((key >> 40) & 31));
    (word, bits)
}

/// The contact epoch of `now`, truncated to a word's high half.
#[inline(always)]
fn contact_epoch(now: u64) -> u64 {
    (now >> CONTACT_EPOCH_SHIFT) & 0xffff_ffff
}

/// The word's bits in the current contact epoch: a word of an older epoch is empty.
#[inline(always)]
fn epoch_bits(word: u64, epoch: u64) -> u64 {
    if word >> 32 == epoch {
        word & 0xffff_ffff
    } else {
        0
    }
}

/// Whether `key` is in the contact filter in contact epoch `epoch` (untruncated).
#[inline(always)]
fn contact_seen(key: u64, epoch: u64) -> bool {
    let (word, bits) = contact_word(key);
    let Some(w) = word else {
        return false;
    };
    // SAFETY: an array map value; an aligned 8-byte load is single-copy atomic.
    let cur = unsafe { read_volatile(w) };
    epoch_bits(cur, epoch & 0xffff_ffff) & bits == bits
}

/// Puts `key` in the contact filter; returns whether it was new this contact epoch.
/// The store is plain: two CPUs adding to one word at once may lose one's bits, which
/// only makes that key look new once more.
#[inline(always)]
fn contact_insert(key: u64, now: u64) -> bool {
    let epoch = contact_epoch(now);
    let (word, bits) = contact_word(key);
    let Some(w) = word else {
        return false;
    };
    // SAFETY: as in `contact_seen`; aligned 8-byte stores are single-copy atomic.
    unsafe {
        let have = epoch_bits(read_volatile(w), epoch);
        if have & bits == bits {
            return false;
        }
        write_volatile(w, (epoch << 32) | have | bits);
    }
    true
}

/// A from-tenant first contact with (remote, `port`, `proto`): recorded as pending
/// and logged as an ATTEMPT (budgeted). A repeat in this contact epoch does nothing.
#[inline(always)]
fn attempt(f: &FactsIn, proto: u8, local_port: u16, port: u16, key: u64) {
    let key = if key != 0 {
        key
    } else if proto == proto::TCP && f.syn_key != 0 {
        f.syn_key
    } else {
        contact_key(f.tenant, contact_tag::OUT, proto, port, fold(&f.remote))
    };
    if !contact_insert(key, f.now) {
        return;
    }
    if let Some(slot) = PENDING.get_ptr_mut(pending_slot(key)) {
        // SAFETY: an array map value. A blind store: reading the slot first (to count
        // what it overwrites) would wait for memory on every first contact; the daemon
        // counts overwrites instead. Two CPUs writing one slot at once leave one of the
        // two attempts: the other's answer is then simply not matched.
        unsafe { write_volatile(addr_of_mut!((*slot).tag), key) };
    }
    f.log(event::ATTEMPT, proto, local_port, port);
}

/// Whether an attempt with contact key `key` waits in its pending slot.
#[inline(always)]
fn pending_holds(key: u64) -> bool {
    match PENDING.get_ptr_mut(pending_slot(key)) {
        // SAFETY: an array map value; an aligned 8-byte load is single-copy atomic.
        Some(slot) => unsafe { read_volatile(addr_of_mut!((*slot).tag)) == key },
        None => false,
    }
}

/// A to-tenant answer from (`remote`, `port`, `proto`): if it answers the pending
/// attempt, clear the slot and send the OUTCOME (not budgeted: each clears an attempt
/// that was).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn answer(f: &FactsIn, proto: u8, remote: &Addr, port: u16, local_port: u16, result: u8, key: u64) {
    let key = if key != 0 {
        key
    } else {
        contact_key(f.tenant, contact_tag::OUT, proto, port, fold(remote))
    };
    let Some(slot) = PENDING.get_ptr_mut(pending_slot(key)) else {
        return;
    };
    // SAFETY: an array map value, as in `attempt`.
    unsafe {
        let tag = addr_of_mut!((*slot).tag);
        if read_volatile(tag) != key {
            return;
        }
        write_volatile(tag, 0);
    }
    f.send(&What {
        kind: event::OUTCOME,
        dir: direction::IN,
        proto,
        detail: result,
        local_port,
        remote_port: port,
        remote: Some(remote),
        value: 0,
        threshold: 0,
    });
}

/// A CPU's flood counts of one out class at one remote not yet added to the shared
/// sketch (the value of `FLOOD_LOCAL`). Named by tenant, class and folded address
/// rather than by the sketch key, so a packet that only adds to its batch makes no
/// sketch hash (the key is made when the batch goes to the sketch).
#[repr(C)]
pub struct FloodLocal {
    /// `flood epoch << 32 | tenant` of `units` (0: never used).
    who: u64,
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
    let who = slot_who(tenant, epoch);
    // SAFETY: this CPU's slot of a per-CPU array: no other program instance uses it
    // while this one runs (the hooks do not preempt each other on a CPU).
    unsafe {
        if (*l).who == who && (*l).addr == folded && (*l).klass == u64::from(klass) {
            let total = (*l).units + units;
            if total < quantum {
                (*l).units = total;
                return 0;
            }
            (*l).units = 0;
            return total;
        }
        if (*l).who >> 32 == epoch && (*l).units != 0 {
            return units;
        }
        // Free, of an older epoch (what it held can no longer count), or drained.
        (*l).who = who;
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
fn held_slot(
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
    // SAFETY: this CPU's slot of a per-CPU array, as in `batch`.
    let fits = unsafe {
        (*l).who == slot_who(tenant, epoch)
            && (*l).addr == folded
            && (*l).klass == u64::from(klass)
            && (*l).units + units < quantum
    };
    fits.then_some(l)
}

/// Adds `units` to a slot [`held_slot`] returned.
#[inline(always)]
fn add_held(slot: *mut FloodLocal, units: u64) {
    // SAFETY: as in `held_slot`: this CPU's slot, no other instance uses it meanwhile.
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
    who: u64,
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
fn slot_who(tenant: u32, epoch: u64) -> u64 {
    (epoch << 32) | u64::from(tenant)
}

/// Counts an inbound packet at the tenant address `local` in its CPU's slot when
/// both classes' units only add to it (the slot is this address's in this epoch and
/// stays below both batches: the steady state of a flood); returns whether it did
/// (else nothing was counted and the full path, [`flood_in`], must run).
#[inline(always)]
fn absorb_flood_in(tenant: u32, local: &Addr, cfg: &TenantConfig, bytes: u64, now: u64) -> bool {
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
fn absorb<const DATAGRAM: bool>(
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
        if (*l).who != slot_who(tenant, now >> FLOOD_EPOCH_SHIFT) || (*l).addr != folded {
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

/// Whether a datagram to `tenant` from `remote`'s port `sport` needs no facts: the
/// remote is already known to have spoken first in this contact epoch, and no attempt
/// of the tenant waits for it (the pending read keeps a filter false positive from
/// hiding a real answer).
#[inline(always)]
fn datagram_is_quiet(tenant: u32, remote: u64, sport: u16, now: u64) -> bool {
    let base = contact_base(tenant, proto::UDP, sport, remote);
    contact_seen(
        contact_tagged(base, contact_tag::IN_UDP),
        now >> CONTACT_EPOCH_SHIFT,
    ) && !pending_holds(contact_tagged(base, contact_tag::OUT))
}

/// Adds `units` to the sketch for (tenant, `klass`, the address `folded`) and, when
/// the estimate for this flood epoch goes above `threshold` (0: the class is not
/// counted at all), sends the FLOOD event once per key and epoch (not budgeted: one
/// per key and epoch, each needing a threshold's worth of packets). Units below the
/// class's batch gather in the CPU's slot first ([`batch`]): the shared counters are
/// atomic adds that every CPU seeing the key would otherwise contend for on every
/// packet of a flood.
#[inline(always)]
fn flood<const DIR: u32>(f: &FactsIn, klass: u8, folded: u64, units: u64, threshold: u64) {
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
fn flush<const DIR: u32>(f: &FactsIn, klass: u8, key: u64, units: u64, threshold: u64) {
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
    f.send(&What {
        kind: event::FLOOD,
        dir: DIR,
        proto: f.l4_proto,
        detail: klass,
        local_port,
        remote_port,
        remote: None,
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
fn ports<const DIR: u32>(f: &FactsIn) -> (u16, u16) {
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
fn reflection_sized(sport: u16, bytes: u64) -> bool {
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

/// A hook's context, through which the global fact functions read the packet.
///
/// The to-tenant functions take no SYN key: LLVM leaves an argument the callee never
/// reads unset at the call, and the verifier refuses an unset argument register.
pub trait Hook {
    /// Runs the facts of a packet going `DIR` (see [`record`] for the arguments).
    fn facts<const DIR: u32>(&self, tenant_gen: u32, at: u64, now: u64, syn_key: u64);
    /// The interface the packet arrived on (XDP) or leaves by (tc).
    fn ifindex(&self) -> u32;
    /// The verdict on a frame of a suspended tenant (`neighbour::suspended`): true to
    /// pass it; a drop is counted.
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, at: u64) -> bool;
    /// Whether a from-tenant claim names a MAC other than its frame's source
    /// (`neighbour::names_foreign_mac`).
    fn foreign_mac(&self, at: u64) -> bool;
}

/// An XDP hook's context.
pub struct XdpHook(pub *mut xdp_md);
/// A tc hook's context.
pub struct TcHook(pub *mut __sk_buff);

impl Hook for XdpHook {
    #[inline(always)]
    fn facts<const DIR: u32>(&self, tenant_gen: u32, at: u64, now: u64, syn_key: u64) {
        if DIR == direction::OUT {
            warden_facts_from_tenant_xdp(self.0, tenant_gen, at, now, syn_key);
        } else {
            warden_facts_to_tenant_xdp(self.0, tenant_gen, at, now);
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the kernel's xdp_md for this run.
        unsafe { (*self.0).ingress_ifindex }
    }

    #[inline(always)]
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, at: u64) -> bool {
        let r = if DIR == direction::OUT {
            crate::neighbour::warden_suspended_from_tenant_xdp(self.0, tenant, at)
        } else {
            crate::neighbour::warden_suspended_to_tenant_xdp(self.0, tenant, at)
        };
        r != 0
    }

    #[inline(always)]
    fn foreign_mac(&self, at: u64) -> bool {
        crate::neighbour::warden_foreign_mac_xdp(self.0, at) != 0
    }
}

impl Hook for TcHook {
    #[inline(always)]
    fn facts<const DIR: u32>(&self, tenant_gen: u32, at: u64, now: u64, syn_key: u64) {
        if DIR == direction::OUT {
            warden_facts_from_tenant_tc(self.0, tenant_gen, at, now, syn_key);
        } else {
            warden_facts_to_tenant_tc(self.0, tenant_gen, at, now);
        }
    }

    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: the kernel's __sk_buff for this run.
        unsafe { (*self.0).ifindex }
    }

    #[inline(always)]
    fn suspended_passes<const DIR: u32>(&self, tenant: u32, at: u64) -> bool {
        let r = if DIR == direction::OUT {
            crate::neighbour::warden_suspended_from_tenant_tc(self.0, tenant, at)
        } else {
            crate::neighbour::warden_suspended_to_tenant_tc(self.0, tenant, at)
        };
        r != 0
    }

    #[inline(always)]
    fn foreign_mac(&self, at: u64) -> bool {
        crate::neighbour::warden_foreign_mac_tc(self.0, at) != 0
    }
}

/// Where a packet's headers are, what they are, and the frame's size, packed into one
/// argument of the global functions (which take at most 5): the IP header's offset in
/// bits 0-7, the L4 header's in bits 8-23, bit 24 set for IPv6, the L4 protocol in
/// bits 32-39, the frame's bytes (at most [`MAX_BYTES`]) in bits 40-63.
#[inline(always)]
pub fn pack_at(p: &Parsed, v6: bool, bytes: u64) -> u64 {
    let bytes = if bytes > MAX_BYTES { MAX_BYTES } else { bytes };
    u64::from(p.l3_off)
        | (u64::from(p.l4_off) << 8)
        | (u64::from(v6) << 24)
        | (u64::from(p.l4_proto) << 32)
        | (bytes << 40)
}

/// The largest frame size [`pack_at`] carries (16 MiB; an skb is at most 64 KiB, or
/// 512 KiB with BIG TCP): a larger one would count as this many bytes.
const MAX_BYTES: u64 = (1 << 24) - 1;

/// The facts read an L4 header at most this far into the frame: a packet whose L4
/// header lies deeper (only long IPv6 extension chains put it there) tells the
/// detectors nothing. The bound keeps the verifier's packet ranges exact.
const MAX_L4_OFF: usize = 1024;

/// Records what the packet `p` of `tenant` (in generation `gen`), going `DIR`, tells
/// the detectors. Runs after the tenant is counted and the suspension check, before
/// blocks: blocked behaviour must keep its detection (and so its block) alive.
///
/// The tests here are all that packets without news pay: an established TCP segment
/// one flags test; a SYN to a contact already made a hash, a filter word and (with
/// flood counting on) its CPU's batch slot; an inbound SYN its CPU's batch slot (or,
/// with flood counting off, nothing more); a datagram from a remote that already spoke
/// first a hash, a filter word, a pending slot and the batch slot. While a packet only
/// adds to a batch, its flood counting is done here too. The rest goes to a global
/// function through `hook`.
#[inline(always)]
pub fn record<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    gen: u32,
    tenant: u32,
    cfg: &TenantConfig,
    bytes: u64,
    clock: &mut Clock,
) {
    let l4 = p.l4_proto;
    if l4 == 0 || p.is_claim {
        // No L4 header (a later fragment, ARP), or neighbour discovery.
        return;
    }
    // A from-tenant SYN's contact key, computed once here (0: none).
    let mut syn_key = 0;
    let v6 = match p.family {
        Family::V4 => false,
        Family::V6 => true,
        Family::None => return,
    };
    if l4 == proto::TCP {
        let flags = p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
        if DIR == direction::OUT {
            if flags & TCP_SYN == 0 {
                return;
            }
            if flags & TCP_ACK == 0 {
                // A SYN: nothing to do unless it is a first contact or floods count.
                let remote = fold(&p.remote);
                syn_key = contact_key(tenant, contact_tag::OUT, proto::TCP, p.dport, remote);
                let epoch = clock.now() >> CONTACT_EPOCH_SHIFT;
                if contact_seen(syn_key, epoch) {
                    // A known contact: only its flood count is left, and that is
                    // done here when it only adds to the CPU's batch.
                    if cfg.flood_out_syn == 0 {
                        return;
                    }
                    let flood_epoch = clock.now() >> FLOOD_EPOCH_SHIFT;
                    let threshold = cfg.flood_out_syn.into();
                    if let Some(slot) =
                        held_slot(tenant, class::SYN, remote, flood_epoch, 1, threshold)
                    {
                        add_held(slot, 1);
                        return;
                    }
                }
            }
        } else {
            if flags & (TCP_SYN | TCP_RST) == 0 {
                return;
            }
            if flags == TCP_SYN
                && (cfg.flood_in_pkts == 0 && cfg.flood_in_bytes == 0
                    || absorb_flood_in(tenant, &p.local, cfg, bytes, clock.now()))
            {
                // An inbound SYN only counts towards inbound floods: not at all, or
                // done here when it only adds to the CPU's batches.
                return;
            }
        }
    } else if DIR == direction::IN && l4 == proto::UDP {
        // The steady state of datagrams from one remote (a DNS server, a stream, a
        // flood): the remote is already known to have spoken first, no attempt of
        // the tenant waits for it, and its flood counts only add to the CPU's
        // batches. All are reads here (the first two remembered by the batch slot);
        // anything else takes the full path.
        let (remote, now) = (fold(&p.remote), clock.now());
        let quiet = if cfg.flood_in_pkts == 0 && cfg.flood_in_bytes == 0 {
            datagram_is_quiet(tenant, remote, p.sport, now)
        } else {
            absorb::<true>(tenant, &p.local, cfg, bytes, now, remote, p.sport)
        };
        if quiet {
            return;
        }
    }
    // Tenant indexes are below 2^31: the generation rides in the top bit.
    let tenant_gen = tenant | (gen << 31);
    hook.facts::<DIR>(tenant_gen, pack_at(p, v6, bytes), clock.now(), syn_key);
}

/// The facts of the packet in `data..data_end` described by `at` (see [`pack_at`]),
/// of the tenant and generation in `tenant_gen`, going `DIR`; `syn_key` is a
/// from-tenant SYN's contact key (0 for other packets).
#[inline(always)]
fn facts_at<const DIR: u32>(
    data: usize,
    data_end: usize,
    tenant_gen: u32,
    at: u64,
    now: u64,
    syn_key: u64,
) {
    let (tenant, gen) = (tenant_gen & !(1 << 31), tenant_gen >> 31);
    let Some(gc) = GEN_CONFIG.get(gen) else {
        return;
    };
    let Some(cfg) = TENANT_CONFIG.get(tenant_config_index(gen, tenant)) else {
        return;
    };
    let l3 = (at & 0xff) as usize;
    let l4 = ((at >> 8) & 0xffff) as usize;
    let v6 = at & (1 << 24) != 0;
    let l4_proto = (at >> 32) as u8;
    let bytes = at >> 40;
    if l4 > MAX_L4_OFF {
        return;
    }
    // The parser read all of this already; it is there.
    let (src, dst) = if v6 {
        let Ok(h) = ptr_at::<[u8; 40]>(data, data_end, l3) else {
            return;
        };
        // SAFETY: `ptr_at` checked the 40 bytes.
        unsafe { (load_addr16(h as usize + 8), load_addr16(h as usize + 24)) }
    } else {
        let Ok(h) = ptr_at::<[u8; 20]>(data, data_end, l3) else {
            return;
        };
        // SAFETY: `ptr_at` checked the 20 bytes.
        unsafe { (load_addr4(h as usize + 12), load_addr4(h as usize + 16)) }
    };
    let (local, remote) = if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    };
    let (mut sport, mut dport, mut tcp_flags) = (0, 0, 0);
    match l4_proto {
        proto::TCP => {
            let Ok(h) = ptr_at::<[u8; 14]>(data, data_end, l4) else {
                return;
            };
            // SAFETY: `ptr_at` checked the 14 bytes.
            (sport, dport) = split_ports(unsafe { load32(h as usize) });
            tcp_flags = unsafe { (*h)[13] };
        }
        proto::UDP => {
            let Ok(h) = ptr_at::<[u8; 4]>(data, data_end, l4) else {
                return;
            };
            // SAFETY: `ptr_at` checked the 4 bytes.
            (sport, dport) = split_ports(unsafe { load32(h as usize) });
        }
        proto::ICMP | proto::ICMPV6 => {
            let Ok(h) = ptr_at::<[u8; 2]>(data, data_end, l4) else {
                return;
            };
            let h = unsafe { &*h };
            (sport, dport) = (h[0].into(), h[1].into());
        }
        _ => {}
    }
    let error = (l4_proto == proto::ICMP && sport == ICMP_UNREACHABLE.into())
        || (l4_proto == proto::ICMPV6 && sport == ICMPV6_UNREACHABLE.into());
    let q = if DIR == direction::IN && error {
        parse::quoted(data, data_end, l4, v6)
    } else {
        parse::Quoted::NONE
    };
    let f = FactsIn {
        local,
        remote,
        quoted_dst: q.dst,
        now,
        bytes,
        budget: gc.event_budget,
        flood_in_bytes: cfg.flood_in_bytes,
        tenant,
        flood_out_syn: cfg.flood_out_syn,
        flood_out_pkts: cfg.flood_out_pkts,
        flood_in_pkts: cfg.flood_in_pkts,
        sport,
        dport,
        quoted_sport: q.sport,
        quoted_dport: q.dport,
        family: if v6 { family::V6 } else { family::V4 },
        l4_proto,
        tcp_flags,
        quoted_proto: q.proto,
        syn_key,
    };
    if DIR == direction::OUT {
        from_tenant(&f);
    } else {
        to_tenant(&f);
    }
}

// The global functions: one per direction and kind of hook context. Each is verified
// once, on its own (see the module doc), and returns 0.

/// The facts of a from-tenant packet at an XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_from_tenant_xdp(
    ctx: *mut xdp_md,
    tenant_gen: u32,
    at: u64,
    now: u64,
    syn_key: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_at::<{ direction::OUT }>(data, end, tenant_gen, at, now, syn_key);
    0
}

/// The facts of a to-tenant packet at an XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_to_tenant_xdp(
    ctx: *mut xdp_md,
    tenant_gen: u32,
    at: u64,
    now: u64,
) -> u32 {
    // SAFETY: as above.
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_at::<{ direction::IN }>(data, end, tenant_gen, at, now, 0);
    0
}

/// The facts of a from-tenant packet at a tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_from_tenant_tc(
    ctx: *mut __sk_buff,
    tenant_gen: u32,
    at: u64,
    now: u64,
    syn_key: u64,
) -> u32 {
    // SAFETY: as above.
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_at::<{ direction::OUT }>(data, end, tenant_gen, at, now, syn_key);
    0
}

/// The facts of a to-tenant packet at a tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_to_tenant_tc(
    ctx: *mut __sk_buff,
    tenant_gen: u32,
    at: u64,
    now: u64,
) -> u32 {
    // SAFETY: as above.
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_at::<{ direction::IN }>(data, end, tenant_gen, at, now, 0);
    0
}

#[inline(always)]
fn from_tenant(f: &FactsIn) {
    const OUT: u32 = direction::OUT;
    let remote = fold(&f.remote);
    match f.l4_proto {
        proto::TCP => {
            let flags = f.tcp_flags & (TCP_SYN | TCP_ACK);
            if flags == TCP_SYN {
                attempt(f, proto::TCP, f.sport, f.dport, 0);
                flood::<OUT>(f, class::SYN, remote, 1, f.flood_out_syn.into());
            } else if flags == TCP_SYN | TCP_ACK {
                // The tenant accepts a connection: an inbound client of a local port.
                let pair = remote ^ fold(&f.local);
                let key = contact_key(f.tenant, contact_tag::ACCEPTED, proto::TCP, f.sport, pair);
                if contact_insert(key, f.now) {
                    f.log(event::ACCEPTED, proto::TCP, f.sport, f.dport);
                }
            }
        }
        proto::UDP => {
            // A datagram to where the remote sent from first is a reply (a DNS
            // server answering): no attempt. Both keys come from one hash.
            let base = contact_base(f.tenant, proto::UDP, f.dport, remote);
            let reply = contact_tagged(base, contact_tag::IN_UDP);
            if !contact_seen(reply, f.now >> CONTACT_EPOCH_SHIFT) {
                let key = contact_tagged(base, contact_tag::OUT);
                attempt(f, proto::UDP, f.sport, f.dport, key);
            }
            if reflection_sized(f.sport, f.bytes) {
                flood::<OUT>(f, class::REPLY, remote, 1, f.flood_out_syn.into());
            } else {
                flood::<OUT>(f, class::PACKETS, remote, 1, f.flood_out_pkts.into());
            }
        }
        l4 => {
            // ICMP, ICMPv6 and any other protocol; `sport` is an ICMP type. The
            // protocols are spelled as constants.
            if l4 == proto::ICMP && f.sport == ICMP_ECHO_REQUEST {
                attempt(f, proto::ICMP, 0, 0, 0);
            } else if l4 == proto::ICMPV6 && f.sport == ICMPV6_ECHO_REQUEST {
                attempt(f, proto::ICMPV6, 0, 0, 0);
            }
            flood::<OUT>(f, class::PACKETS, remote, 1, f.flood_out_pkts.into());
        }
    }
}

#[inline(always)]
fn to_tenant(f: &FactsIn) {
    match f.l4_proto {
        proto::TCP => {
            let flags = f.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
            if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
                answer(
                    f,
                    proto::TCP,
                    &f.remote,
                    f.sport,
                    f.dport,
                    outcome::SUCCESS,
                    0,
                );
            } else if flags & TCP_RST != 0 {
                answer(
                    f,
                    proto::TCP,
                    &f.remote,
                    f.sport,
                    f.dport,
                    outcome::REFUSED,
                    0,
                );
            } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                flood_in(f);
            }
        }
        proto::UDP => {
            // Remember that the remote spoke first, so the tenant's answers are
            // replies; then see whether this answers the tenant's own attempt. Both
            // keys come from one hash.
            let base = contact_base(f.tenant, proto::UDP, f.sport, fold(&f.remote));
            contact_insert(contact_tagged(base, contact_tag::IN_UDP), f.now);
            let key = contact_tagged(base, contact_tag::OUT);
            answer(
                f,
                proto::UDP,
                &f.remote,
                f.sport,
                f.dport,
                outcome::SUCCESS,
                key,
            );
            flood_in(f);
        }
        l4 => {
            let ty = f.sport;
            if l4 == proto::ICMP && ty == ICMP_ECHO_REPLY {
                answer(f, proto::ICMP, &f.remote, 0, 0, outcome::SUCCESS, 0);
            } else if l4 == proto::ICMPV6 && ty == ICMPV6_ECHO_REPLY {
                answer(f, proto::ICMPV6, &f.remote, 0, 0, outcome::SUCCESS, 0);
            } else if f.quoted_proto != 0 {
                // An ICMP error quoting the tenant's attempt (parsed to-tenant only).
                let (proto, dst) = (f.quoted_proto, &f.quoted_dst);
                let (sport, dport) = (f.quoted_sport, f.quoted_dport);
                answer(f, proto, dst, dport, sport, outcome::UNREACHABLE, 0);
            }
            flood_in(f);
        }
    }
}

/// Unsolicited traffic at a tenant address: packets and bytes per flood epoch.
#[inline(always)]
fn flood_in(f: &FactsIn) {
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
        let who = slot_who(f.tenant, epoch);
        // SAFETY: this CPU's slot, as in `absorb_flood_in`.
        unsafe {
            let ours = if (*l).who == who && (*l).addr == folded {
                true
            } else if (*l).who >> 32 == epoch && ((*l).pkts != 0 || (*l).bytes != 0) {
                // Another address holds units of this epoch here: left alone, and
                // this packet goes to the sketch at once, as without the slots.
                false
            } else {
                // Free, of an older epoch (what it held can no longer count), or
                // drained: this address's now.
                (*l).who = who;
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
