//! Attribution: whose packet this is. To a tenant, the owner of its destination address;
//! from a tenant, the owner of its source address or MAC, once the sender's binding holds
//! (a spoofed packet is its tenant's drop). The packet is counted in its tenant's
//! counters, or in GLOBAL_COUNTERS as no tenant's, where it is also passed or dropped.

use warden_common::{
    direction, gen_flags, global, reason, tenant_config_index, tenant_flags, GenConfig,
};

use super::{count_global, count_tenant, drop_for, Verdict};
use crate::{
    facts,
    hook::Hook,
    lookup,
    maps::policy::{ACTIVE, GEN_CONFIG, IFACES, TENANT_CONFIG},
    neighbour,
    parse::{Family, Parsed},
};

/// The tenant of the packet `p` going `DIR`, with the generation it was found in (every
/// later stage uses the same policy), the packet counted as its; or the verdict on a
/// packet of no tenant, counted as that, or on a spoofed one, counted as its tenant's
/// drop.
#[inline(always)]
pub fn try_attribute<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    bytes: u64,
) -> Result<(u32, u32), Verdict> {
    // One read of the generation: every lookup below uses the same policy.
    let gen = ACTIVE.get(0).copied().unwrap_or(0);
    let Some(gen_config) = GEN_CONFIG.get(gen) else {
        count_global(global::NO_TENANT, DIR, bytes);
        return Err(Verdict::Pass);
    };
    if DIR == direction::OUT && p.unparsed && !iface_passes(hook, p) {
        return Err(unparsed::<DIR>(gen_config, gen, p, bytes));
    }
    let by_addr = lookup::by_address(gen_config, gen, p);
    let tenant = if DIR == direction::OUT {
        try_sender::<DIR, H>(hook, gen_config, gen, p, by_addr, bytes)?
    } else {
        if by_addr == lookup::NONE {
            count_global(global::NO_TENANT, DIR, bytes);
            return Err(Verdict::Pass);
        }
        by_addr
    };
    count_tenant(tenant, DIR, bytes);
    Ok((tenant, gen))
}

/// The tenant of the bound MAC `mac` in generation `gen`, or [`lookup::NONE`] (also
/// when no tenant of the generation has bound MACs).
#[inline(always)]
fn by_mac(gen_config: &GenConfig, gen: u32, mac: [u8; 6]) -> u32 {
    if gen_config.flags & gen_flags::ANY_MACS != 0 {
        lookup::by_mac(gen, mac)
    } else {
        lookup::NONE
    }
}

/// The verdict on a from-tenant frame nothing here can look into, which the interface
/// does not pass: its bound MAC's tenant's drop, or nobody's.
#[inline(always)]
fn unparsed<const DIR: u32>(gen_config: &GenConfig, gen: u32, p: &Parsed, bytes: u64) -> Verdict {
    let tenant = by_mac(gen_config, gen, p.src_mac);
    if tenant == lookup::NONE {
        count_global(global::UNPARSED, DIR, bytes);
        return Verdict::Drop;
    }
    count_tenant(tenant, DIR, bytes);
    drop_for(tenant, DIR, reason::UNPARSED)
}

/// The tenant that sent the from-tenant packet `p` (`by_addr` owns its source
/// address), or the verdict on a packet whose binding does not hold.
#[inline(always)]
fn try_sender<const DIR: u32, H: Hook>(
    hook: &H,
    gen_config: &GenConfig,
    gen: u32,
    p: &Parsed,
    by_addr: u32,
    bytes: u64,
) -> Result<u32, Verdict> {
    if p.family == Family::None {
        // No address to check: a frame of a bound MAC is still its tenant's (and
        // its tenant's suspension applies), anything else passes unattributed.
        let tenant = by_mac(gen_config, gen, p.src_mac);
        if tenant == lookup::NONE {
            count_global(global::NO_TENANT, DIR, bytes);
            return Err(Verdict::Pass);
        }
        return Ok(tenant);
    }
    match sender(hook, gen_config, gen, p, by_addr) {
        Sender::Tenant(t) => Ok(t),
        Sender::Spoofed(t, why) => {
            count_tenant(t, DIR, bytes);
            facts::report_spoof(p, gen, t, why);
            Err(drop_for(t, DIR, why))
        }
        // A sender with no address of its own yet (DHCP, DAD, router solicitation,
        // MLD) may claim and talk to the link's multicast; anything else from an
        // unowned address (link-local unicast, say) cannot be told from a suspended
        // tenant's without a bound MAC, so it is dropped.
        Sender::Unknown if p.local_is_unowned() && (p.is_claim || remote_is_multicast(p)) => {
            count_global(global::NO_TENANT, DIR, bytes);
            Err(Verdict::Pass)
        }
        Sender::Unknown => {
            // From a tenant port, with an address and MAC bound to nobody.
            count_global(global::SPOOFED, DIR, bytes);
            Err(Verdict::Drop)
        }
    }
}

/// Who sent a from-tenant frame, and whether its binding holds.
enum Sender {
    Tenant(u32),
    /// The tenant's frame, with a binding that does not hold: dropped for the reason.
    Spoofed(u32, usize),
    /// Nobody owns the sender's address or MAC.
    Unknown,
}

/// The binding check of a from-tenant frame with an address (`by_addr` owns it).
#[inline(always)]
fn sender<H: Hook>(hook: &H, gen_config: &GenConfig, gen: u32, p: &Parsed, by_addr: u32) -> Sender {
    let by_mac = by_mac(gen_config, gen, p.src_mac);
    let claim = if p.is_claim {
        reason::SPOOF_ARP
    } else {
        reason::SPOOF_IP
    };
    if by_mac != lookup::NONE {
        // A claim must name the MAC that sends it: receivers record the link-layer
        // address in the claim (ARP sender, ND option), not the frame's source.
        if p.is_claim && hook.foreign_mac(neighbour::pack(p)) {
            return Sender::Spoofed(by_mac, reason::SPOOF_ARP);
        }
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

/// True when the remote side of `p` is a multicast or broadcast address: where a
/// sender without an address of its own (DHCP, DAD, MLD, router solicitation) talks.
#[inline(always)]
fn remote_is_multicast(p: &Parsed) -> bool {
    let first = p.remote[0].to_ne_bytes();
    match p.family {
        Family::V4 => (first[0] & 0xf0) == 0xe0 || p.remote[0] as u32 == u32::MAX,
        Family::V6 => first[0] == 0xff,
        Family::None => false,
    }
}

/// Whether the interface `hook` runs on passes the unparsed frame `p` from tenants
/// (`interfaces[].pass_ethertypes`). One hash lookup, paid only by unparsed frames.
#[inline(always)]
fn iface_passes<H: Hook>(hook: &H, p: &Parsed) -> bool {
    if p.ether_type == 0 {
        return false;
    }
    // SAFETY: the value is copied out at once; the daemon replaces entries whole.
    match unsafe { IFACES.get(hook.ifindex()) } {
        Some(c) => c.passes(p.ether_type),
        None => false,
    }
}
