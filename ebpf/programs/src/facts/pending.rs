//! First contacts and their answers: an attempt is put in the contact filter and the
//! pending table ([`PENDING`]) and logged; an answer that finds its attempt there
//! clears it and is logged as an OUTCOME.

use core::ptr::{addr_of_mut, read_volatile, write_volatile};

use warden_common::{
    facts::{
        contact_base, contact_key, contact_tag, contact_tagged, event, outcome, pending_slot,
        CONTACT_EPOCH_SHIFT,
    },
    proto,
};

use super::{
    contact::{contact_insert, contact_seen},
    fold, PacketFacts,
};
use crate::{maps::facts::PENDING, parse::Addr};

/// A from-tenant first contact with (remote, `port`, `proto`): recorded as pending
/// and logged as an ATTEMPT (budgeted). A repeat in this contact epoch does nothing.
/// One Warden drops is put in the filter (its retransmissions are no news) and logged
/// as dropped, but not made pending: no answer will come; one containment drops is
/// logged as dropped and not put in the filter.
#[inline(always)]
pub(super) fn attempt(f: &PacketFacts, proto: u8, local_port: u16, port: u16, key: u64) {
    let key = if key != 0 {
        key
    } else if proto == proto::TCP && f.syn_key != 0 {
        f.syn_key
    } else {
        contact_key(f.tenant, contact_tag::OUT, proto, port, fold(&f.remote))
    };
    if f.contained {
        // Not put in the filter: a retransmission is a first contact again, and
        // containment drops it again (each logged, within the event budget).
        f.log(event::ATTEMPT, proto, local_port, port, outcome::DROPPED);
        return;
    }
    if !contact_insert(key, f.now) {
        return;
    }
    if f.dropped {
        f.log(event::ATTEMPT, proto, local_port, port, outcome::DROPPED);
        return;
    }
    if let Some(slot) = PENDING.get_ptr_mut(pending_slot(key)) {
        // SAFETY: an array map value. A blind store: reading the slot first (to count
        // what it overwrites) would wait for memory on every first contact; the daemon
        // counts overwrites instead. Two CPUs writing one slot at once leave one of the
        // two attempts: the other's answer is then simply not matched.
        unsafe { write_volatile(addr_of_mut!((*slot).tag), key) };
    }
    f.log(event::ATTEMPT, proto, local_port, port, 0);
}

/// Loads the pending slot of `key`, and discards it: a first contact writes the slot
/// later, and the load starts its miss early (see `facts_of`).
#[inline(always)]
pub(super) fn warm_pending(key: u64) {
    if let Some(slot) = PENDING.get_ptr_mut(pending_slot(key)) {
        // SAFETY: an array map value; an aligned 8-byte load.
        let _ = unsafe { read_volatile(addr_of_mut!((*slot).tag)) };
    }
}

/// Whether an attempt with contact key `key` waits in its pending slot.
#[inline(always)]
pub(super) fn pending_holds(key: u64) -> bool {
    match PENDING.get_ptr_mut(pending_slot(key)) {
        // SAFETY: an array map value; an aligned 8-byte load is single-copy atomic.
        Some(slot) => unsafe { read_volatile(addr_of_mut!((*slot).tag)) == key },
        None => false,
    }
}

/// A to-tenant answer from (`remote`, `port`, `proto`): if it answers the pending
/// attempt, clear the slot and write the OUTCOME into this CPU's attempt log, next to
/// the attempts (not budgeted: each clears an attempt that was).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn answer(
    f: &PacketFacts,
    proto: u8,
    remote: &Addr,
    port: u16,
    local_port: u16,
    result: u8,
    key: u64,
) {
    let key = if key != 0 {
        key
    } else {
        contact_key(f.tenant, contact_tag::OUT, proto, port, fold(remote))
    };
    let Some(slot) = PENDING.get_ptr_mut(pending_slot(key)) else {
        return;
    };
    // SAFETY: an array map value; aligned 8-byte loads and stores are single-copy
    // atomic (two CPUs answering one attempt at once may both find it and send).
    unsafe {
        let tag = addr_of_mut!((*slot).tag);
        if read_volatile(tag) != key {
            return;
        }
        write_volatile(tag, 0);
    }
    f.log_entry(event::OUTCOME, proto, local_port, port, result, remote);
}

/// Whether a datagram to `tenant` from `remote`'s port `sport` needs no facts: the
/// remote is already known to have spoken first in this contact epoch, and no attempt
/// of the tenant waits for it (the pending read keeps a filter false positive from
/// hiding a real answer).
#[inline(always)]
pub(super) fn datagram_is_quiet(tenant: u32, remote: u64, sport: u16, now: u64) -> bool {
    let base = contact_base(tenant, proto::UDP, sport, remote);
    contact_seen(
        contact_tagged(base, contact_tag::IN_UDP),
        now >> CONTACT_EPOCH_SHIFT,
    ) && !pending_holds(contact_tagged(base, contact_tag::OUT))
}
