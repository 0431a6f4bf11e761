//! Attribution: whose packet this is. To a tenant, the owner of its destination address;
//! from a tenant, the tenant its port (interface, VLAN) is bound to, else the owner of
//! its source address or MAC, once the sender's binding holds (a spoofed packet is its
//! tenant's drop). The packet is counted in its tenant's counters, or in GLOBAL_COUNTERS
//! as no tenant's, where it is also passed or dropped.

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
    let port = if DIR == direction::OUT {
        by_port(hook, gen_config, gen, p)
    } else {
        lookup::NONE
    };
    if DIR == direction::OUT && p.unparsed && !iface_passes(hook, p) {
        return Err(unparsed::<DIR>(gen_config, gen, p, port, bytes));
    }
    let by_addr = lookup::by_address(gen_config, gen, p);
    let tenant = if DIR == direction::OUT {
        try_sender::<DIR, H>(hook, gen_config, gen, p, by_addr, port, bytes)?
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

/// The tenant the port of the from-tenant frame `p` is bound to: its outer VLAN's on
/// this interface, else the interface's; [`lookup::NONE`] when neither is bound (also
/// when the generation binds no port: no lookup then).
#[inline(always)]
fn by_port<H: Hook>(hook: &H, gen_config: &GenConfig, gen: u32, p: &Parsed) -> u32 {
    if gen_config.flags & gen_flags::ANY_PORTS == 0 {
        return lookup::NONE;
    }
    let ifindex = hook.ifindex();
    if p.vlan != 0 {
        let t = lookup::by_port(gen, ifindex, p.vlan);
        if t != lookup::NONE {
            return t;
        }
    }
    lookup::by_port(gen, ifindex, 0)
}

/// The verdict on a from-tenant frame nothing here can look into, which the interface
/// does not pass: its port's or bound MAC's tenant's drop, or nobody's.
#[inline(always)]
fn unparsed<const DIR: u32>(
    gen_config: &GenConfig,
    gen: u32,
    p: &Parsed,
    port: u32,
    bytes: u64,
) -> Verdict {
    let tenant = if port != lookup::NONE {
        port
    } else {
        by_mac(gen_config, gen, p.src_mac)
    };
    if tenant == lookup::NONE {
        count_global(global::UNPARSED, DIR, bytes);
        return Verdict::Drop;
    }
    count_tenant(tenant, DIR, bytes);
    drop_for(tenant, DIR, reason::UNPARSED)
}

/// The tenant that sent the from-tenant packet `p` (`by_addr` owns its source
/// address, `port` is its port's tenant), or the verdict on a packet whose binding
/// does not hold.
#[inline(always)]
fn try_sender<const DIR: u32, H: Hook>(
    hook: &H,
    gen_config: &GenConfig,
    gen: u32,
    p: &Parsed,
    by_addr: u32,
    port: u32,
    bytes: u64,
) -> Result<u32, Verdict> {
    if port != lookup::NONE {
        // Everything from a bound port is its tenant's, spoofed or not.
        if p.family == Family::None {
            return Ok(port);
        }
        return match from_port(hook, gen_config, gen, p, by_addr, port) {
            Sender::Spoofed(t, why) => {
                count_tenant(t, DIR, bytes);
                Err(drop_for(t, DIR, why))
            }
            _ => Ok(port),
        };
    }
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

/// The binding check of a from-tenant frame with an address (`by_addr` owns it) from
/// a port bound to `port`: the port's tenant's frame, or its spoof. A MAC of another
/// tenant is a spoofed MAC; with bound MACs, a claim must name the frame's own MAC, and
/// a frame must come from one of them; the source must be the tenant's own address
/// (or one nobody owns: DHCP, DAD, link-local ND).
#[inline(always)]
fn from_port<H: Hook>(
    hook: &H,
    gen_config: &GenConfig,
    gen: u32,
    p: &Parsed,
    by_addr: u32,
    port: u32,
) -> Sender {
    let by_mac = by_mac(gen_config, gen, p.src_mac);
    if by_mac != lookup::NONE {
        if by_mac != port {
            return Sender::Spoofed(port, reason::SPOOF_MAC);
        }
        if p.is_claim && hook.foreign_mac(neighbour::pack(p)) {
            return Sender::Spoofed(port, reason::SPOOF_ARP);
        }
    } else if macs_bound(gen, port) {
        return Sender::Spoofed(port, reason::SPOOF_MAC);
    }
    if by_addr == port || p.local_is_unowned() {
        return Sender::Tenant(port);
    }
    Sender::Spoofed(
        port,
        if p.is_claim {
            reason::SPOOF_ARP
        } else {
            reason::SPOOF_IP
        },
    )
}

/// Whether `tenant` has bound MACs in generation `gen`.
#[inline(always)]
fn macs_bound(gen: u32, tenant: u32) -> bool {
    match TENANT_CONFIG.get(tenant_config_index(gen, tenant)) {
        Some(c) => c.flags & tenant_flags::MACS_BOUND != 0,
        None => false,
    }
}

/// The binding check of a from-tenant frame with an address (`by_addr` owns it).
#[inline(always)]
fn sender<H: Hook>(hook: &H, gen_config: &GenConfig, gen: u32, p: &Parsed, by_addr: u32) -> Sender {
    if gen_config.flags & gen_flags::ANY_MACS == 0 {
        // No MAC bound anywhere in the generation: the address alone names the sender,
        // and no tenant has MACS_BOUND (no lookup of its settings, which the policy
        // stage reads again). The test stands in for `by_mac`'s own: no more branches
        // for the verifier than before.
        return if by_addr == lookup::NONE {
            Sender::Unknown
        } else {
            Sender::Tenant(by_addr)
        };
    }
    let by_mac = lookup::by_mac(gen, p.src_mac);
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
    if macs_bound(gen, by_addr) {
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
