//! The per-packet path shared by every hook: parse, find the tenant, check the
//! sender's binding (from-tenant only), count, then apply the tenant's policy:
//! suspension, then (with the tenant's runtime state) capture, detection facts,
//! blocks, SMTP, and bandwidth (or a detection's throttle).

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    mem::MaybeUninit,
    ptr::{addr_of_mut, read_volatile, write_volatile},
};

use warden_common::{
    bucket, direction,
    facts::{fact_counter, runtime_flags, BlockKey},
    family, gen_flags, global, is_smtp_port, reason, tcp_flags, tenant_config_index,
    tenant_counter_index, tenant_flags, Counters, GenConfig, Rate,
};

use crate::{
    clock::Clock,
    facts::{self, Hook},
    lookup,
    maps::{
        metering::{BUCKETS, DROP_COUNTERS, GLOBAL_COUNTERS, TENANT_COUNTERS},
        policy::{ACTIVE, GEN_CONFIG, IFACES, TENANT_CONFIG},
        runtime::{BLOCKS, TENANT_RUNTIME},
    },
    neighbour,
    parse::{parse, proto, Family, Parsed},
    police,
};

/// Bytes of headers the parser may look at: Ethernet, two VLAN tags, IPv6 with
/// extension headers, and an L4 header.
pub const PARSE_DEPTH: u32 = 132;

/// What the hook should do with the packet.
pub enum Verdict {
    Pass,
    Drop,
}

/// A frame the daemon asked to capture: the hook (which has the context to read the
/// frame with) sends it after [`handle`] returns, whatever the verdict.
pub struct Sample {
    /// The tenant, or [`lookup::NONE`]: no capture.
    pub tenant: u32,
    /// The packet's time.
    pub now: u64,
}

impl Sample {
    /// Nothing to capture.
    pub const NONE: Sample = Sample {
        tenant: lookup::NONE,
        now: 0,
    };
}

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

/// Who sent a from-tenant frame, and whether its binding holds.
enum Sender {
    Tenant(u32),
    Spoofed(u32, usize),
    /// Nobody owns the sender's address or MAC.
    Unknown,
}

#[inline(always)]
fn sender<H: Hook>(hook: &H, gc: &GenConfig, gen: u32, p: &Parsed, by_addr: u32) -> Sender {
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

/// "No block": what the block functions return for a packet they let through.
const NOT_BLOCKED: u32 = u32::MAX;

/// The packet's block key fields, packed into one argument of the block functions
/// (global functions take at most 5): family (4 or 6) in bits 0-7, the tenant-side
/// port (from the tenant: the destination port; to it: the listening port) in bits
/// 8-23, and bit 24 set when the packet has ports (TCP, UDP).
#[inline(always)]
fn block_meta(family: u8, port: u16, has_ports: bool) -> u64 {
    u64::from(family) | (u64::from(port) << 8) | (u64::from(has_ports) << 24)
}

/// The block of a from-tenant packet of `tenant`, to the address whose event-form
/// words are `w0`, `w1` (see [`blocked`]). A global BPF function, verified once on its
/// own rather than again on every path that reaches it (see `facts`).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_blocked_from_tenant(
    tenant: u32,
    meta: u64,
    w0: u64,
    w1: u64,
    now: u64,
) -> u32 {
    blocked::<{ direction::OUT }>(tenant, meta, [w0, w1], now)
}

/// The block of a to-tenant packet of `tenant` at its address `w0`, `w1` (global, as
/// above).
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_blocked_to_tenant(
    tenant: u32,
    meta: u64,
    w0: u64,
    w1: u64,
    now: u64,
) -> u32 {
    blocked::<{ direction::IN }>(tenant, meta, [w0, w1], now)
}

/// A detection's block of this packet, if one is in force: from the tenant, its
/// victim (`addr`) or its destination port; to the tenant, a blackholed tenant
/// address (`addr`) or a listening port. The drop reason to count, or [`NOT_BLOCKED`].
#[inline(always)]
fn blocked<const DIR: u32>(tenant: u32, meta: u64, addr: [u64; 2], now: u64) -> u32 {
    let addr_reason = if DIR == direction::OUT {
        reason::BLOCKED as u32
    } else {
        reason::BLACKHOLE as u32
    };
    if block_in_force(tenant, DIR as u8, meta as u8, 0, addr, now) {
        return addr_reason;
    }
    if meta & (1 << 24) != 0
        && block_in_force(tenant, DIR as u8, 0, (meta >> 8) as u16, [0; 2], now)
    {
        return reason::BLOCKED as u32;
    }
    NOT_BLOCKED
}

/// Whether BLOCKS holds the key (`tenant`, `dir`, `family`, `port`, `addr`) with an
/// expiry after `now`.
#[inline(always)]
fn block_in_force(tenant: u32, dir: u8, family: u8, port: u16, addr: [u64; 2], now: u64) -> bool {
    let mut key = MaybeUninit::<BlockKey>::uninit();
    let k = key.as_mut_ptr();
    // SAFETY: every field of the local is written before it is read. Volatile stores:
    // LLVM would merge stores of zeros into a byte-by-byte `memset` call.
    let key = unsafe {
        write_volatile(addr_of_mut!((*k).tenant), tenant);
        write_volatile(addr_of_mut!((*k).dir), dir);
        write_volatile(addr_of_mut!((*k).family), family);
        write_volatile(addr_of_mut!((*k).port), port);
        let a = addr_of_mut!((*k).addr).cast::<u64>();
        write_volatile(a, addr[0]);
        write_volatile(a.add(1), addr[1]);
        key.assume_init_ref()
    };
    // SAFETY: the value is copied out at once; the daemon replaces entries whole.
    match unsafe { BLOCKS.get(key) } {
        Some(v) => v.until_ns > now,
        None => false,
    }
}

/// The whole per-packet decision for a hook of direction `DIR`. A frame to capture is
/// left in `sample` for the hook.
#[inline(always)]
pub fn handle<const DIR: u32, H: Hook>(
    hook: &H,
    data: usize,
    data_end: usize,
    bytes: u64,
    sample: &mut Sample,
) -> Verdict {
    let p = match parse::<DIR>(data, data_end, bytes) {
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
    if DIR == direction::OUT && p.unparsed && !iface_passes(hook, &p) {
        // From a tenant port, a frame nothing here can look into: its bound MAC's
        // tenant's drop, or nobody's.
        let by_mac = if gc.flags & gen_flags::ANY_MACS != 0 {
            lookup::by_mac(gen, p.src_mac)
        } else {
            lookup::NONE
        };
        if by_mac == lookup::NONE {
            count_global(global::UNPARSED, DIR, bytes);
            return Verdict::Drop;
        }
        add(
            TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(by_mac, DIR)),
            bytes,
        );
        return drop_for(by_mac, DIR, reason::UNPARSED);
    }
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
        match sender(hook, gc, gen, &p, by_addr) {
            Sender::Tenant(t) => t,
            Sender::Spoofed(t, why) => {
                add(
                    TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(t, DIR)),
                    bytes,
                );
                return drop_for(t, DIR, why);
            }
            // A sender with no address of its own yet (DHCP, DAD, router
            // solicitation, MLD) may claim and talk to the link's multicast; anything
            // else from an unowned address (link-local unicast, say) cannot be told
            // from a suspended tenant's without a bound MAC, so it is dropped.
            Sender::Unknown if p.local_is_unowned() && (p.is_claim || remote_is_multicast(&p)) => {
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
    // spoofing above), or it could not reach its gateway to get to management; only
    // as the protocols have them (`neighbour`), so nothing rides on them. What it keeps
    // goes on through the rest of its policy (SMTP, plan).
    if cfg.flags & tenant_flags::SUSPENDED != 0
        && !hook.suspended_passes::<DIR>(tenant, neighbour::pack(&p))
    {
        // Counted as `suspended` by the check.
        return Verdict::Drop;
    }
    let mut clock = Clock::new();

    // The daemon's runtime state for the tenant: read once; most tenants have none,
    // which one load of `flags` and `capture` together (the first 8 bytes) tells.
    let runtime = TENANT_RUNTIME.get_ptr_mut(tenant);
    let mut rt_flags = 0;
    if let Some(rt) = runtime {
        // SAFETY: an array map value, 8-byte aligned; `capture` is counted down
        // atomically, the rest only read (the daemon writes the whole value).
        unsafe {
            let head = read_volatile(rt.cast::<u64>());
            if head != 0 {
                rt_flags = read_volatile(addr_of_mut!((*rt).flags));
                let capture = addr_of_mut!((*rt).capture);
                if read_volatile(capture) > 0 {
                    atomic_xadd::<i32, i32, { AtomicOrdering::Relaxed }>(capture, -1);
                    sample.tenant = tenant;
                    sample.now = clock.now();
                }
            }
        }
    }

    // Facts first: traffic a block drops must still keep its detection alive.
    facts::record::<DIR, H>(hook, &p, gen, tenant, cfg, bytes, &mut clock);

    if rt_flags & runtime_flags::BLOCKS != 0 && !p.is_claim && p.family != Family::None {
        let now = clock.now();
        // The address a block names: the victim from the tenant, the tenant's own
        // address to it.
        let family = if p.family == Family::V4 {
            family::V4
        } else {
            family::V6
        };
        let addr = if DIR == direction::OUT {
            p.remote
        } else {
            p.local
        };
        let has_ports = p.l4_proto == proto::TCP || p.l4_proto == proto::UDP;
        let meta = block_meta(family, p.dport, has_ports);
        let why = if DIR == direction::OUT {
            warden_blocked_from_tenant(tenant, meta, addr[0], addr[1], now)
        } else {
            warden_blocked_to_tenant(tenant, meta, addr[0], addr[1], now)
        };
        if why != NOT_BLOCKED {
            facts::count(fact_counter::BLOCKED);
            // Only the two block reasons come back; anything else would be a bug
            // here, and a blocked packet is dropped all the same.
            let why = if why == reason::BLACKHOLE as u32 {
                reason::BLACKHOLE
            } else {
                reason::BLOCKED
            };
            return drop_for(tenant, DIR, why);
        }
    }

    if DIR == direction::OUT
        && p.l4_proto == proto::TCP
        && is_smtp_port(p.dport)
        && cfg.flags & tenant_flags::SMTP_ALLOW == 0
    {
        if cfg.flags & tenant_flags::SMTP_RATE == 0 {
            return drop_for(tenant, DIR, reason::SMTP);
        }
        if p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
            let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, bucket::SMTP)) else {
                return Verdict::Pass;
            };
            if !police::conforms(b, &cfg.smtp, clock.now(), 1, false) {
                return drop_for(tenant, DIR, reason::SMTP);
            }
        }
    }
    // A detection's throttle replaces the plan (the same bucket) until it expires,
    // even if the daemon is not there to lift it.
    let mut rate: &Rate = &cfg.rate[DIR as usize];
    if rt_flags & runtime_flags::THROTTLE != 0 {
        if let Some(rt) = runtime {
            // SAFETY: an array map value, read only.
            let rt = unsafe { &*rt };
            if clock.now() < rt.throttle_until_ns {
                rate = &rt.throttle[DIR as usize];
            }
        }
    }
    if rate.cost_q10 != 0 {
        if let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, DIR)) {
            if !police::conforms(b, rate, clock.now(), bytes, true) {
                return drop_for(tenant, DIR, reason::BANDWIDTH);
            }
        }
    }
    Verdict::Pass
}
