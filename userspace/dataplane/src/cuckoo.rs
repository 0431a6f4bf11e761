//! Placement of keys into the kernel's cuckoo tables (see `warden_common::table`).
//!
//! Each key may live in one of two 4-slot buckets. Keys are placed in turn; when both
//! buckets are full, a resident key is evicted to its other bucket, and so on, for a
//! bounded number of steps. At the loads the tables are sized for (at most half the
//! slots) placement succeeds; a failure is reported, never papered over.

use warden_common::{
    table::{self, buckets128, buckets64},
    Bucket128, Bucket64, Slot128, Slot64,
};

/// Evictions tried for one key before giving up.
const MAX_KICKS: usize = 2_000;

/// A key could not be placed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{table} table: could not place {count} keys in {buckets} buckets of {slots}")]
pub struct TableFull {
    pub table: &'static str,
    pub count: usize,
    pub buckets: usize,
    pub slots: usize,
}

/// What the placement needs to know about a slot type.
pub trait Entry: Copy + PartialEq {
    /// The empty slot.
    const EMPTY: Self;
    /// Its two candidate buckets in a table of `2^bits` buckets.
    fn buckets(&self, bits: u32) -> (u32, u32);
    /// True for an empty slot.
    fn is_empty(&self) -> bool;
}

impl Entry for Slot64 {
    const EMPTY: Self = Slot64 {
        key: table::EMPTY,
        tenant: 0,
        _pad: 0,
    };
    fn buckets(&self, bits: u32) -> (u32, u32) {
        buckets64(self.key, bits)
    }
    fn is_empty(&self) -> bool {
        self.key == table::EMPTY
    }
}

impl Entry for Slot128 {
    const EMPTY: Self = Slot128 {
        hi: 0,
        lo: 0,
        meta: table::EMPTY_META,
        tenant: 0,
    };
    fn buckets(&self, bits: u32) -> (u32, u32) {
        buckets128(self.hi, self.lo, self.meta, bits)
    }
    fn is_empty(&self) -> bool {
        self.meta == table::EMPTY_META
    }
}

/// Places `entries` into `2^bits` buckets. Deterministic for the same input order.
pub fn place<E: Entry>(
    name: &'static str,
    bits: u32,
    entries: &[E],
) -> Result<Vec<[E; table::SLOTS]>, TableFull> {
    let n = 1usize << bits;
    let mut buckets = vec![[E::EMPTY; table::SLOTS]; n];
    let full = || TableFull {
        table: name,
        count: entries.len(),
        buckets: n,
        slots: table::SLOTS,
    };
    if entries.len() > n * table::SLOTS {
        return Err(full());
    }
    // xorshift64: a fixed seed keeps placement reproducible.
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for &e in entries {
        let mut cur = e;
        let (b1, b2) = cur.buckets(bits);
        let mut at = b1 as usize;
        if try_put(&mut buckets[b1 as usize], cur) || try_put(&mut buckets[b2 as usize], cur) {
            continue;
        }
        let mut placed = false;
        for _ in 0..MAX_KICKS {
            let victim_slot = (next() as usize) % table::SLOTS;
            let victim = std::mem::replace(&mut buckets[at][victim_slot], cur);
            cur = victim;
            let (v1, v2) = cur.buckets(bits);
            at = if v1 as usize == at {
                v2 as usize
            } else {
                v1 as usize
            };
            if try_put(&mut buckets[at], cur) {
                placed = true;
                break;
            }
        }
        if !placed {
            return Err(full());
        }
    }
    Ok(buckets)
}

fn try_put<E: Entry>(bucket: &mut [E; table::SLOTS], e: E) -> bool {
    match bucket.iter_mut().find(|s| s.is_empty()) {
        Some(s) => {
            *s = e;
            true
        }
        None => false,
    }
}

/// The placed buckets as the kernel's bucket type.
pub fn as_bucket64(b: Vec<[Slot64; table::SLOTS]>) -> Vec<Bucket64> {
    b.into_iter().map(|slots| Bucket64 { slots }).collect()
}

/// The placed buckets as the kernel's bucket type.
pub fn as_bucket128(b: Vec<[Slot128; table::SLOTS]>) -> Vec<Bucket128> {
    b.into_iter().map(|slots| Bucket128 { slots }).collect()
}

/// Finds a key the way the kernel does: its two buckets, in order.
#[cfg(test)]
pub fn lookup64(buckets: &[Bucket64], bits: u32, key: u64) -> Option<u32> {
    let (b1, b2) = buckets64(key, bits);
    [b1, b2]
        .iter()
        .flat_map(|b| buckets[*b as usize].slots.iter())
        .find(|s| s.key == key)
        .map(|s| s.tenant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_common::{table::key_v4, MAX_PREFIXES};

    #[test]
    fn a_full_generation_of_sequential_addresses_places_and_every_key_is_found() {
        let entries: Vec<Slot64> = (0..MAX_PREFIXES)
            .map(|i| Slot64 {
                key: key_v4(1, 32, 0xC612_0000 + i),
                tenant: i,
                _pad: 0,
            })
            .collect();
        let b = as_bucket64(place("ADDRS_V4", table::V4_BITS, &entries).unwrap());
        for e in &entries {
            assert_eq!(lookup64(&b, table::V4_BITS, e.key), Some(e.tenant));
        }
        assert_eq!(
            lookup64(&b, table::V4_BITS, key_v4(0, 32, 0xC612_0000)),
            None,
            "other generation"
        );
        let used: usize = b
            .iter()
            .flat_map(|b| b.slots.iter())
            .filter(|s| !s.is_empty())
            .count();
        assert_eq!(used, MAX_PREFIXES as usize);
    }

    #[test]
    fn more_keys_than_slots_is_refused() {
        let entries: Vec<Slot64> = (0..17)
            .map(|i| Slot64 {
                key: i,
                tenant: 0,
                _pad: 0,
            })
            .collect();
        let err = place("t", 2, &entries).unwrap_err();
        assert_eq!(err.count, 17);
    }

    #[test]
    fn ipv6_keys_place_and_are_found() {
        let entries: Vec<Slot128> = (0..MAX_PREFIXES as u64)
            .map(|i| Slot128 {
                hi: 0x2001_0db8_0000_0000 | i,
                lo: 0,
                meta: table::meta_v6(0, 64),
                tenant: i as u32,
            })
            .collect();
        let b = as_bucket128(place("ADDRS_V6", table::V6_BITS, &entries).unwrap());
        for e in entries.iter().step_by(997) {
            let (b1, b2) = buckets128(e.hi, e.lo, e.meta, table::V6_BITS);
            let found = [b1, b2]
                .iter()
                .flat_map(|x| b[*x as usize].slots.iter())
                .any(|s| s == e);
            assert!(found, "{e:?}");
        }
    }
}
