//! The contact filter ([`CONTACTS`]): a blocked bloom filter of contacts, one u64 word
//! per block tagged with its contact epoch (see `warden_common::facts`).

use core::ptr::{read_volatile, write_volatile};

use warden_common::facts::{CONTACT_EPOCH_SHIFT, CONTACT_WORDS};

use crate::maps::facts::CONTACTS;

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
pub(super) fn contact_seen(key: u64, epoch: u64) -> bool {
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
pub(super) fn contact_insert(key: u64, now: u64) -> bool {
    let epoch = contact_epoch(now);
    let (word, bits) = contact_word(key);
    let Some(w) = word else {
        return false;
    };
    // SAFETY: an array map value; aligned 8-byte loads and stores are single-copy
    // atomic.
    unsafe {
        let have = epoch_bits(read_volatile(w), epoch);
        if have & bits == bits {
            return false;
        }
        write_volatile(w, (epoch << 32) | have | bits);
    }
    true
}
