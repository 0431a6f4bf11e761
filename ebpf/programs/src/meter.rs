//! Metering: find the tenant of a packet and count it, per CPU, in one array slot.

use aya_ebpf::maps::lpm_trie::Key;
use warden_common::{global, tenant_counter_index, Counters};

use crate::{
    parse::{parse, Family},
    GLOBAL_COUNTERS, TENANTS_V4, TENANTS_V6, TENANT_COUNTERS,
};

/// Bytes of headers the parser may look at: Ethernet, one VLAN tag, IPv6 with
/// extension headers, and an L4 header.
pub const PARSE_DEPTH: u32 = 128;

/// What the hook should do with the packet.
pub enum Verdict {
    Pass,
}

#[inline(always)]
fn add(counters: Option<*mut Counters>, bytes: u64) {
    if let Some(c) = counters {
        // SAFETY: a per-CPU slot: no other program instance writes it concurrently.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

/// Attributes the packet to a tenant (or to no tenant) and counts it.
#[inline(always)]
pub fn meter<const DIR: u32>(data: usize, data_end: usize, bytes: u64) -> Verdict {
    let parsed = match parse::<DIR>(data, data_end) {
        Ok(p) => p,
        Err(_) => {
            add(
                GLOBAL_COUNTERS.get_ptr_mut(global::index(global::MALFORMED, DIR)),
                bytes,
            );
            return Verdict::Pass;
        }
    };
    let tenant = match parsed.family {
        Family::V4 => TENANTS_V4.get(Key::new(32, parsed.addr4)),
        Family::V6 => TENANTS_V6.get(Key::new(128, parsed.addr6)),
        Family::None => None,
    };
    match tenant {
        Some(t) => add(
            TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(t.index, DIR)),
            bytes,
        ),
        None => add(
            GLOBAL_COUNTERS.get_ptr_mut(global::index(global::NO_TENANT, DIR)),
            bytes,
        ),
    }
    Verdict::Pass
}
