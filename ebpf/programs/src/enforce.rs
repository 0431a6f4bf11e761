//! The per-packet path shared by every hook: parse, find the tenant, check the
//! sender's binding (from-tenant only), count, then apply the tenant's policy:
//! suspension, SMTP, bandwidth.

use aya_ebpf::{helpers::generated::bpf_ktime_get_coarse_ns, maps::lpm_trie::Key};
use warden_common::{
    bucket, direction, gen_flags, global, reason, tenant_config_index, tenant_counter_index,
    tenant_flags, Counters, GenConfig,
};

use crate::{
    lookup,
    parse::{parse, proto, Family, Parsed},
    police, ACTIVE, BUCKETS, DROP_COUNTERS, GEN_CONFIG, GLOBAL_COUNTERS, MANAGEMENT_V4,
    MANAGEMENT_V6, TENANT_CONFIG, TENANT_COUNTERS,
};

/// Bytes of headers the parser may look at: Ethernet, one VLAN tag, IPv6 with
/// extension headers, and an L4 header.
pub const PARSE_DEPTH: u32 = 128;

/// What the hook should do with the packet.
pub enum Verdict {
    Pass,
    Drop,
}

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[inline(always)]
fn count_global(slot: u32, dir: u32, bytes: u64) {
    add(GLOBAL_COUNTERS.get_ptr_mut(global::index(slot, dir)), bytes);
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

#[inline(always)]
fn drop_for(tenant: u32, dir: u32, why: usize) -> Verdict {
    if let Some(d) = DROP_COUNTERS.get_ptr_mut(tenant_counter_index(tenant, dir)) {
        if why < reason::COUNT {
            // SAFETY: a per-CPU slot, as above.
            unsafe { (*d).packets[why] += 1 };
        }
    }
    Verdict::Drop
}

/// True when the remote side of `p` is a management address.
#[inline(always)]
fn remote_is_management(p: &Parsed) -> bool {
    match p.family {
        Family::V4 => MANAGEMENT_V4.get(Key::new(32, p.remote4)).is_some(),
        Family::V6 => MANAGEMENT_V6.get(Key::new(128, p.remote6)).is_some(),
        Family::None => false,
    }
}

/// Who sent a from-tenant frame, and whether its binding holds.
enum Sender {
    Tenant(u32),
    Spoofed(u32, usize),
    /// Nobody owns the sender's address or MAC.
    Unknown,
}

#[inline(always)]
fn sender(gc: &GenConfig, gen: u32, p: &Parsed, by_addr: u32) -> Sender {
    let by_mac = if gc.flags & gen_flags::ANY_MACS != 0 {
        lookup::by_mac(gen, p.src_mac)
    } else {
        lookup::NONE
    };
    let claim = if p.is_claim {
        reason::SPOOF_ARP
    } else {
        reason::SPOOF_IP
    };
    if by_mac != lookup::NONE {
        // A bound MAC must use its own tenant's addresses (or an unowned one).
        if by_addr == by_mac || p.local_is_unowned() {
            return Sender::Tenant(by_mac);
        }
        return Sender::Spoofed(by_mac, claim);
    }
    if by_addr == lookup::NONE {
        return Sender::Unknown;
    }
    let bound = match TENANT_CONFIG.get(tenant_config_index(gen, by_addr)) {
        Some(c) => c.flags & tenant_flags::MACS_BOUND != 0,
        None => false,
    };
    if bound {
        Sender::Spoofed(by_addr, reason::SPOOF_MAC)
    } else {
        Sender::Tenant(by_addr)
    }
}

/// The whole per-packet decision for a hook of direction `DIR`.
#[inline(always)]
pub fn handle<const DIR: u32>(data: usize, data_end: usize, bytes: u64) -> Verdict {
    let p = match parse::<DIR>(data, data_end) {
        Ok(p) => p,
        Err(_) => {
            count_global(global::MALFORMED, DIR, bytes);
            // To a tenant, fail open: our parser must not cut a tenant off. From a
            // tenant, fail closed: no stack sends headers shorter than announced, and
            // a first fragment too short for its ports would slip past SMTP policy.
            return if DIR == direction::OUT {
                Verdict::Drop
            } else {
                Verdict::Pass
            };
        }
    };

    // One read of the generation: every lookup below uses the same policy.
    let gen = ACTIVE.get(0).copied().unwrap_or(0);
    let Some(gc) = GEN_CONFIG.get(gen) else {
        count_global(global::NO_TENANT, DIR, bytes);
        return Verdict::Pass;
    };
    let by_addr = lookup::by_address(gc, gen, &p);

    let tenant = if DIR == direction::OUT && p.family == Family::None {
        // No address to check: a frame of a bound MAC is still its tenant's (and
        // its tenant's suspension applies), anything else passes unattributed.
        let by_mac = if gc.flags & gen_flags::ANY_MACS != 0 {
            lookup::by_mac(gen, p.src_mac)
        } else {
            lookup::NONE
        };
        if by_mac == lookup::NONE {
            count_global(global::NO_TENANT, DIR, bytes);
            return Verdict::Pass;
        }
        by_mac
    } else if DIR == direction::OUT {
        match sender(gc, gen, &p, by_addr) {
            Sender::Tenant(t) => t,
            Sender::Spoofed(t, why) => {
                add(
                    TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(t, DIR)),
                    bytes,
                );
                return drop_for(t, DIR, why);
            }
            Sender::Unknown if p.local_is_unowned() => {
                count_global(global::NO_TENANT, DIR, bytes);
                return Verdict::Pass;
            }
            Sender::Unknown => {
                // From a tenant port, with an address and MAC bound to nobody.
                count_global(global::SPOOFED, DIR, bytes);
                return Verdict::Drop;
            }
        }
    } else {
        if by_addr == lookup::NONE {
            count_global(global::NO_TENANT, DIR, bytes);
            return Verdict::Pass;
        }
        by_addr
    };

    add(
        TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(tenant, DIR)),
        bytes,
    );
    let Some(cfg) = TENANT_CONFIG.get(tenant_config_index(gen, tenant)) else {
        return Verdict::Pass;
    };
    // A suspended tenant keeps ARP and neighbour discovery (already checked for
    // spoofing above), or it could not reach its gateway to get to management.
    if cfg.flags & tenant_flags::SUSPENDED != 0 && !p.is_claim && !remote_is_management(&p) {
        return drop_for(tenant, DIR, reason::SUSPENDED);
    }
    // The coarse clock (the last tick: 4 ms at HZ=250) costs a fraction of the precise
    // one. Buckets charge exact costs, so the tick only shifts when within a tick a
    // packet is admitted, never the long-run rate.

    let mut now = 0;

    if DIR == direction::OUT
        && p.l4_proto == proto::TCP
        && matches!(p.dport, 25 | 465 | 587)
        && cfg.flags & tenant_flags::SMTP_ALLOW == 0
    {
        if cfg.flags & tenant_flags::SMTP_RATE == 0 {
            return drop_for(tenant, DIR, reason::SMTP);
        }
        if p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            now = unsafe { bpf_ktime_get_coarse_ns() };
            let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, bucket::SMTP)) else {
                return Verdict::Pass;
            };
            if !police::conforms(b, &cfg.smtp, now, 1, false) {
                return drop_for(tenant, DIR, reason::SMTP);
            }
        }
    }
    let rate = &cfg.rate[DIR as usize];
    if rate.cost_q10 != 0 {
        if now == 0 {
            now = unsafe { bpf_ktime_get_coarse_ns() };
        }
        if let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, DIR)) {
            if !police::conforms(b, rate, now, bytes, true) {
                return drop_for(tenant, DIR, reason::BANDWIDTH);
            }
        }
    }
    Verdict::Pass
}
