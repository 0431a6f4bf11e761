//! Tenant lookup: for each prefix length in use (longest first), mask the address and
//! probe the cuckoo table (see `warden_common::table`): at most two inlined array
//! reads per length, no hash-map call, cost independent of the number of tenants.

use warden_common::{
    table::{self, buckets128, buckets64, key_mac, key_port, key_v4, meta_v6},
    Bucket128, Bucket64, GenConfig, MAX_PREFIX_LENS,
};

use crate::{
    maps::policy::{ADDRS_V4, ADDRS_V6, MACS},
    parse::{v4_bytes, v6_bytes, Family, Parsed},
};

/// "No tenant". Lookups return a plain index rather than `Option<u32>`: LLVM may copy
/// the undefined payload of a `None` between registers, and the verifier rejects any
/// read of an uninitialised register.
pub const NONE: u32 = u32::MAX;

#[inline(always)]
fn in_bucket64(b: Option<&Bucket64>, key: u64) -> u32 {
    if let Some(b) = b {
        for s in &b.slots {
            if s.key == key {
                return s.tenant;
            }
        }
    }
    NONE
}

#[inline(always)]
fn in_bucket128(b: Option<&Bucket128>, hi: u64, lo: u64, meta: u32) -> u32 {
    if let Some(b) = b {
        for s in &b.slots {
            if s.meta == meta && s.hi == hi && s.lo == lo {
                return s.tenant;
            }
        }
    }
    NONE
}

/// The tenant owning the tenant-side address of `p` in generation `gen`.
#[inline(always)]
pub fn by_address(gc: &GenConfig, gen: u32, p: &Parsed) -> u32 {
    match p.family {
        Family::V4 => v4(gc, gen, u32::from_be_bytes(v4_bytes(&p.local))),
        Family::V6 => v6(gc, gen, u128::from_be_bytes(v6_bytes(&p.local))),
        Family::None => NONE,
    }
}

#[inline(always)]
fn v4(gc: &GenConfig, gen: u32, a: u32) -> u32 {
    let n = gc.v4_nlens as usize;
    let base = gen * table::V4_BUCKETS;
    for i in 0..MAX_PREFIX_LENS {
        if i >= n {
            break;
        }
        let len = gc.v4_lens[i] as u32;
        let masked = if len == 0 {
            0
        } else {
            a & (u32::MAX << (32 - len))
        };
        let key = key_v4(gen, len, masked);
        let (b1, b2) = table::buckets64(key, table::V4_BITS);
        let t = in_bucket64(ADDRS_V4.get(base + b1), key);
        if t != NONE {
            return t;
        }
        let t = in_bucket64(ADDRS_V4.get(base + b2), key);
        if t != NONE {
            return t;
        }
    }
    NONE
}

#[inline(always)]
fn mask64(x: u64, bits: u32) -> u64 {
    match bits {
        0 => 0,
        b if b >= 64 => x,
        b => x & (u64::MAX << (64 - b)),
    }
}

#[inline(always)]
fn v6(gc: &GenConfig, gen: u32, a: u128) -> u32 {
    let (hi, lo) = ((a >> 64) as u64, a as u64);
    let n = gc.v6_nlens as usize;
    let base = gen * table::V6_BUCKETS;
    for i in 0..MAX_PREFIX_LENS {
        if i >= n {
            break;
        }
        let len = gc.v6_lens[i] as u32;
        let (mhi, mlo) = (mask64(hi, len), mask64(lo, len.saturating_sub(64)));
        let meta = meta_v6(gen, len);
        let (b1, b2) = buckets128(mhi, mlo, meta, table::V6_BITS);
        let t = in_bucket128(ADDRS_V6.get(base + b1), mhi, mlo, meta);
        if t != NONE {
            return t;
        }
        let t = in_bucket128(ADDRS_V6.get(base + b2), mhi, mlo, meta);
        if t != NONE {
            return t;
        }
    }
    NONE
}

/// The tenant a source MAC is bound to in generation `gen`.
#[inline(always)]
pub fn by_mac(gen: u32, mac: [u8; 6]) -> u32 {
    let key = key_mac(gen, mac);
    let base = gen * table::MAC_BUCKETS;
    let (b1, b2) = buckets64(key, table::MAC_BITS);
    let t = in_bucket64(MACS.get(base + b1), key);
    if t != NONE {
        return t;
    }
    in_bucket64(MACS.get(base + b2), key)
}

/// The tenant the port (`ifindex`, outer VLAN id `vlan`, 0 for the whole interface) is
/// bound to in generation `gen`. Ports live in the MAC table (see `table::key_port`).
#[inline(always)]
pub fn by_port(gen: u32, ifindex: u32, vlan: u16) -> u32 {
    let key = key_port(gen, ifindex, vlan);
    let base = gen * table::MAC_BUCKETS;
    let (b1, b2) = buckets64(key, table::MAC_BITS);
    let t = in_bucket64(MACS.get(base + b1), key);
    if t != NONE {
        return t;
    }
    in_bucket64(MACS.get(base + b2), key)
}
