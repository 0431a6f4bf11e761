//! What the fact path reports: events into the ring buffer ([`EVENTS`]); first contacts,
//! accepted and SMTP connections (charged to the tenant's event budget) and the answers
//! to first contacts (not charged) into this CPU's attempt log ([`ATTEMPT_LOG`]).

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use warden_common::{
    bucket, direction,
    facts::{contact_key, contact_tag, event, fact_counter, Event, LOG_BITS, LOG_SLOTS},
};

use super::{contact::contact_insert, count, PacketFacts};
use crate::{
    maps::{
        facts::{ATTEMPT_LOG, EVENTS, FACT_COUNTERS},
        metering::BUCKETS,
        policy::GEN_CONFIG,
    },
    parse::Addr,
    police,
};

/// A from-tenant frame of the tenant in `meta` dropped for spoofing: reported as one
/// SPOOF event the first time in the contact epoch the tenant's frames claim this
/// (reason, address, MAC), charged to the event budget. `meta` packs the tenant (bits
/// 0-30), the generation (bit 31), the reason (bits 32-39) and the family (bits 40-47);
/// `addr` is the claimed address's two words, `mac` the source MAC (see
/// `warden_common::facts::event::SPOOF`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_report_spoof(
    meta: u64,
    addr0: u64,
    addr1: u64,
    mac: u64,
    now: u64,
) -> u32 {
    let tenant = meta as u32 & !(1 << 31);
    let gen = (meta as u32) >> 31;
    let why = (meta >> 32) as u8;
    let family = (meta >> 40) as u8;
    let claim = addr0 ^ addr1.rotate_left(17) ^ mac.rotate_left(29);
    let key = contact_key(tenant, contact_tag::SPOOF, why, 0, claim);
    if !contact_insert(key, now) {
        return 0;
    }
    let Some(gen_config) = GEN_CONFIG.get(gen) else {
        return 0;
    };
    let budget = &gen_config.event_budget;
    if budget.cost_q10 != 0 {
        let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, bucket::EVENTS)) else {
            return 0;
        };
        if !police::conforms(b, budget, now, 1, false) {
            count(fact_counter::OVER_BUDGET);
            return 0;
        }
    }
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        count(fact_counter::LOST_RING);
        return 0;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is a reserved record of the right size, ours until submitted; records
    // are 8-byte aligned, and so are the address fields in them. Volatile stores, as in
    // `send`.
    unsafe {
        write_volatile(addr_of_mut!((*e).kind), event::SPOOF);
        write_volatile(addr_of_mut!((*e).tenant), tenant);
        write_volatile(addr_of_mut!((*e).at), now);
        put(addr_of_mut!((*e).local), &[addr0, addr1]);
        put(addr_of_mut!((*e).remote), &[0, 0]);
        write_volatile(addr_of_mut!((*e).family), family);
        write_volatile(addr_of_mut!((*e).proto), 0);
        write_volatile(addr_of_mut!((*e).detail), why);
        write_volatile(addr_of_mut!((*e).dir), direction::OUT as u8);
        write_volatile(addr_of_mut!((*e).local_port), 0);
        write_volatile(addr_of_mut!((*e).remote_port), 0);
        write_volatile(addr_of_mut!((*e).value), mac);
        write_volatile(addr_of_mut!((*e).threshold), 0);
    }
    entry.submit(0);
    count(fact_counter::SENT);
    0
}

/// Loads the first word of this CPU's next attempt-log entry, and discards it: a first
/// contact writes the entry later, and the load starts its miss early (see `facts_of`).
#[inline(always)]
pub(super) fn warm_log() {
    let Some(n) = FACT_COUNTERS.get_ptr_mut(fact_counter::LOGGED) else {
        return;
    };
    // SAFETY: a per-CPU slot, read.
    let seq = unsafe { read_volatile(n) };
    // SAFETY: a helper without arguments.
    let cpu = unsafe { aya_ebpf::helpers::bpf_get_smp_processor_id() };
    if let Some(e) = ATTEMPT_LOG.get_ptr_mut((cpu << LOG_BITS) | (seq as u32 & (LOG_SLOTS - 1))) {
        // SAFETY: an array map value; an aligned 8-byte load.
        let _ = unsafe { read_volatile(addr_of_mut!((*e).seq)) };
    }
}

/// What an event says besides the packet's tenant, time and addresses.
pub(super) struct EventFields {
    /// An `event` kind.
    pub kind: u32,
    /// A direction.
    pub dir: u32,
    pub proto: u8,
    /// FLOOD: a `class`.
    pub detail: u8,
    pub local_port: u16,
    pub remote_port: u16,
    /// FLOOD: the estimate so far.
    pub value: u64,
    /// FLOOD: the threshold it crossed.
    pub threshold: u64,
}

/// Writes an address into an event's 16-byte field, word by word.
///
/// # Safety
/// `dst` must be valid for writes and 8-byte aligned.
#[inline(always)]
unsafe fn put(dst: *mut [u8; 16], w: &Addr) {
    let d = dst.cast::<u64>();
    // SAFETY: the caller's promise: 16 writable bytes at `dst`, 8-byte aligned.
    unsafe {
        write_volatile(d, w[0]);
        write_volatile(d.add(1), w[1]);
    }
}

impl PacketFacts {
    /// Writes an event about this packet straight into the ring; a full ring loses it
    /// (counted).
    #[inline(always)]
    pub(super) fn send(&self, w: &EventFields) {
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
            put(addr_of_mut!((*e).remote), &self.remote);
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
    /// its cost is 0) has room for one more event; counts the refusal (`OVER_BUDGET`,
    /// apart from ring loss) when not.
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
        count(fact_counter::OVER_BUDGET);
        false
    }

    /// Writes a first contact, an accepted connection or an SMTP connection (`kind`,
    /// with its `detail`) into this CPU's attempt log, charged to the event budget (see
    /// `LogEntry` for the protocol).
    #[inline(always)]
    pub(super) fn log(&self, kind: u32, proto: u8, local_port: u16, remote_port: u16, detail: u8) {
        if !self.within_budget() {
            return;
        }
        self.log_entry(kind, proto, local_port, remote_port, detail, &self.remote);
    }

    /// Writes an entry about this packet into this CPU's attempt log, not charged to
    /// the event budget: `remote` is the other side (an ICMP error's quoted destination
    /// for its OUTCOME). A few stores to memory this CPU owns, where a ring record
    /// takes a lock and a position shared with every CPU and the reader.
    #[inline(always)]
    pub(super) fn log_entry(
        &self,
        kind: u32,
        proto: u8,
        local_port: u16,
        remote_port: u16,
        detail: u8,
        remote: &Addr,
    ) {
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
            write_volatile(addr_of_mut!((*e).detail), detail);
            write_volatile(addr_of_mut!((*e).local_port), local_port);
            write_volatile(addr_of_mut!((*e).remote_port), remote_port);
            put(addr_of_mut!((*e).local), &self.local);
            put(addr_of_mut!((*e).remote), remote);
            write_volatile(addr_of_mut!((*e).seq), seq + 1);
        }
    }
}
