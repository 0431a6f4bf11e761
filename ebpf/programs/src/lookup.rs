//! Tenant lookup: one exact-match hash probe per prefix length in use, longest first.
//!
//! An LPM trie walk costs 55-110 ns at 10,000-100,000 prefixes; a hash probe costs
//! 11-19 ns. Policies use few distinct prefix lengths (hosts, a subnet size or two),
//! so probing each length in turn is cheaper and its cost does not grow with tenants.

use warden_common::{AddrKeyV4, AddrKeyV6, GenConfig, MacKey, MAX_PREFIX_LENS};

use crate::{
    parse::{Family, Parsed},
    ADDRS_V4, ADDRS_V6, MACS,
};

/// "No tenant". Lookups return a plain index rather than `Option<u32>`: LLVM may copy
/// the undefined payload of a `None` between registers, and the verifier rejects any
/// read of an uninitialised register.
pub const NONE: u32 = u32::MAX;

/// The tenant owning the tenant-side address of `p` in generation `gen`.
#[inline(always)]
pub fn by_address(gc: &GenConfig, gen: u8, p: &Parsed) -> u32 {
    match p.family {
        Family::V4 => v4(gc, gen, p.addr4),
        Family::V6 => v6(gc, gen, &p.addr6),
        Family::None => NONE,
    }
}

#[inline(always)]
fn v4(gc: &GenConfig, gen: u8, addr: [u8; 4]) -> u32 {
    let a = u32::from_be_bytes(addr);
    let n = gc.v4_nlens as usize;
    for i in 0..MAX_PREFIX_LENS {
        if i >= n {
            break;
        }
        let len = gc.v4_lens[i];
        let masked = if len == 0 {
            0
        } else {
            a & (u32::MAX << (32 - len as u32))
        };
        let key = AddrKeyV4 {
            generation: gen,
            prefix_len: len,
            _pad: [0; 2],
            addr: masked.to_be_bytes(),
        };
        if let Some(t) = unsafe { ADDRS_V4.get(&key) } {
            return t.index;
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
fn v6(gc: &GenConfig, gen: u8, addr: &[u8; 16]) -> u32 {
    let a = u128::from_be_bytes(*addr);
    let (hi, lo) = ((a >> 64) as u64, a as u64);
    let n = gc.v6_nlens as usize;
    for i in 0..MAX_PREFIX_LENS {
        if i >= n {
            break;
        }
        let len = gc.v6_lens[i] as u32;
        let mhi = mask64(hi, len);
        let mlo = mask64(lo, len.saturating_sub(64));
        let masked = ((mhi as u128) << 64) | mlo as u128;
        let key = AddrKeyV6 {
            generation: gen,
            prefix_len: len as u8,
            _pad: [0; 2],
            addr: masked.to_be_bytes(),
        };
        if let Some(t) = unsafe { ADDRS_V6.get(&key) } {
            return t.index;
        }
    }
    NONE
}

/// The tenant a source MAC is bound to in generation `gen`.
#[inline(always)]
pub fn by_mac(gen: u8, mac: [u8; 6]) -> u32 {
    let key = MacKey {
        generation: gen,
        _pad: 0,
        mac,
    };
    match unsafe { MACS.get(&key) } {
        Some(t) => t.index,
        None => NONE,
    }
}
