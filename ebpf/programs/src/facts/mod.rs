//! Detection facts: first contacts and their answers, accepted connections, and flood
//! counts, turned into events only when something changes: first contacts, their
//! answers and accepted connections into the per-CPU attempt log, the rest into the
//! ring buffer.
//!
//! Layout and formulas are the ABI in `warden_common::facts`; the daemon and the tests
//! predict slots with the same functions. Everything is an array: per packet at most a
//! few inlined array reads and writes, no hash-map insert, nothing that grows with the
//! traffic. What is lossy (the contact filter, the pending table, the sketch) is lossy
//! in bounded, counted ways.
//!
//! Cost by packet: an established TCP segment pays one flags test. A from-tenant SYN
//! of a known contact pays a hash and a filter word (and the time: see `clock`); a new
//! one, the pending write and the log entry besides. UDP pays that per datagram (there
//! is no handshake to tell a new flow by); answers pay a hash and a pending read. Flood
//! counting pays, per class whose threshold is set, a hash, two counters and a compare;
//! a class without a threshold is not counted at all, since nothing reads its counts.
//!
//! Past the cheap tests in [`record`], the work runs in global BPF functions
//! (`warden_facts_*`). The verifier checks a global function once, on its own, with
//! its inputs unknown; inlined, the same code was checked again for every path the
//! parser and the tenant lookup can take to reach it, which multiplied the verifier's
//! work on each program several times over. A global function takes the hook's
//! context and a few integers (where the headers are, whose packet, when), reads the
//! fields it needs from the packet again and the tenant's settings from the maps:
//! carrying them all through the inlined path instead cost more stack than the
//! verifier allows a program (512 bytes).
//!
//! Here: the per-packet tests ([`record`]), the global functions and what they read
//! from the packet, and the dispatch by protocol and direction. The structures, one
//! module each: [`contact`] (the contact filter), [`pending`] (first contacts and their
//! answers), [`flood`] (the per-CPU batches, the sketch and flood events), [`report`]
//! (events into the ring, entries into the attempt log, the event budget), [`spoof`]
//! (spoofing claims, each CPU's last one kept for the clock tick).

mod contact;
pub mod flood;
mod pending;
mod report;
pub mod spoof;

use aya_ebpf::bindings::{__sk_buff, xdp_md};
use warden_common::{
    direction,
    facts::{
        class, contact_base, contact_key, contact_tag, contact_tagged, event, outcome,
        CONTACT_EPOCH_SHIFT, FLOOD_EPOCH_SHIFT,
    },
    family, is_smtp_port,
    tcp_flags::{ACK as TCP_ACK, RST as TCP_RST, SYN as TCP_SYN},
    tenant_config_index, tenant_flags, Rate, TenantConfig,
};

pub use self::spoof::report_spoof;

use self::{
    contact::{contact_insert, contact_seen},
    flood::{absorb, absorb_flood_in, add_held, flood, flood_in, held_slot, reflection_sized},
    pending::{answer, attempt, datagram_is_quiet, warm_pending},
    report::warm_log,
};
use crate::{
    clock::Clock,
    hook::Hook,
    maps::{
        facts::FACT_COUNTERS,
        policy::{GEN_CONFIG, TENANT_CONFIG},
    },
    parse::{
        self, load32, load_addr16, load_addr4, proto, ptr_at, split_ports, Addr, Family, Parsed,
        ICMPV6_UNREACHABLE, ICMP_UNREACHABLE,
    },
};

const ICMP_ECHO_REPLY: u16 = 0;
const ICMP_ECHO_REQUEST: u16 = 8;
const ICMPV6_ECHO_REQUEST: u16 = 128;
const ICMPV6_ECHO_REPLY: u16 = 129;

/// Adds 1 to a per-CPU fact counter.
#[inline(always)]
pub fn count(which: u32) {
    if let Some(c) = FACT_COUNTERS.get_ptr_mut(which) {
        // SAFETY: a per-CPU slot: no other program instance writes it concurrently.
        unsafe { *c += 1 };
    }
}

/// `warden_common::facts::fold_addr` of the address `w` holds (an [`Addr`] is the two
/// words `fold_addr` reads from the event form).
#[inline(always)]
fn fold(w: &Addr) -> u64 {
    w[0] ^ w[1].rotate_left(17)
}

/// Everything the fact path needs about one packet, read inside the global functions:
/// its addresses, ports and flags, its time and size, the tenant and its settings.
struct PacketFacts {
    /// Tenant-side address.
    local: Addr,
    /// The other side's address.
    remote: Addr,
    /// A to-tenant ICMP error's quoted destination.
    quoted_dst: Addr,
    now: u64,
    /// Frame bytes.
    bytes: u64,
    /// The generation's event budget (`GenConfig::event_budget`).
    budget: Rate,
    flood_in_bytes: u64,
    tenant: u32,
    flood_out_syn: u32,
    flood_out_pkts: u32,
    flood_in_pkts: u32,
    /// Ports (TCP, UDP) or ICMP type and code, host order.
    sport: u16,
    dport: u16,
    quoted_sport: u16,
    quoted_dport: u16,
    /// A [`family`] number.
    family: u8,
    l4_proto: u8,
    tcp_flags: u8,
    /// The quoted packet's protocol, 0 when there is none.
    quoted_proto: u8,
    /// A from-tenant SYN's contact key, 0 when not computed.
    syn_key: u64,
    /// Warden's enforcement drops the packet: an attempt is logged as dropped.
    dropped: bool,
    /// Containment drops it: an attempt is logged as dropped and left out of the
    /// contact filter ([`Dropped::Contained`]).
    contained: bool,
    /// The tenant may send mail: its SMTP connections are logged.
    mail: bool,
}

/// Where a packet's headers are, what they are, and the frame's size, packed into one
/// argument of the global functions (which take at most 5): the IP header's offset in
/// bits 0-7, the L4 header's in bits 8-23, bit 24 set for IPv6, bit 25 set when Warden's
/// enforcement drops the packet ([`DROPPED_BIT`]), the L4 protocol in bits 32-39, the
/// frame's bytes (at most [`MAX_BYTES`]) in bits 40-63.
#[inline(always)]
pub fn pack_headers(p: &Parsed, v6: bool, drop: Dropped, bytes: u64) -> u64 {
    let bytes = if bytes > MAX_BYTES { MAX_BYTES } else { bytes };
    let drop_bits = match drop {
        Dropped::No => 0,
        Dropped::Yes => DROPPED_BIT,
        Dropped::Contained => DROPPED_BIT | CONTAINED_BIT,
    };
    u64::from(p.l3_off)
        | (u64::from(p.l4_off) << 8)
        | (u64::from(v6) << 24)
        | drop_bits
        | (u64::from(p.l4_proto) << 32)
        | (bytes << 40)
}

/// Whether, and how, Warden's enforcement drops a packet, as the facts see it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    No,
    /// Dropped (a block, SMTP, the plan): a first contact goes into the contact filter,
    /// so its retransmissions are no news.
    Yes,
    /// A first contact dropped by containment: kept out of the contact filter, so its
    /// retransmissions stay first contacts and containment keeps dropping them.
    Contained,
}

/// The bit of [`pack_headers`] that says Warden's enforcement drops the packet.
const DROPPED_BIT: u64 = 1 << 25;
/// The bit of [`pack_headers`] that says containment drops it ([`Dropped::Contained`]).
const CONTAINED_BIT: u64 = 1 << 26;

/// Whether the from-tenant packet `p` of `tenant` is a first contact not yet made in
/// this contact epoch: a SYN, a datagram that is not a reply (its remote has not sent
/// to the tenant from that port first) or an echo request, to a (remote, port) the
/// contact filter does not hold. What containment limits; the keys are the attempt's
/// (`pending::attempt`).
#[inline(always)]
pub fn is_new_contact(p: &Parsed, tenant: u32, now: u64) -> bool {
    let epoch = now >> CONTACT_EPOCH_SHIFT;
    let remote = fold(&p.remote);
    let key = match p.l4_proto {
        proto::TCP => {
            if p.tcp_flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
                return false;
            }
            contact_key(tenant, contact_tag::OUT, proto::TCP, p.dport, remote)
        }
        proto::UDP => {
            let base = contact_base(tenant, proto::UDP, p.dport, remote);
            if contact_seen(contact_tagged(base, contact_tag::IN_UDP), epoch) {
                return false;
            }
            contact_tagged(base, contact_tag::OUT)
        }
        l4 => {
            let echo = (l4 == proto::ICMP && p.sport == ICMP_ECHO_REQUEST)
                || (l4 == proto::ICMPV6 && p.sport == ICMPV6_ECHO_REQUEST);
            if !echo {
                return false;
            }
            contact_key(tenant, contact_tag::OUT, l4, 0, remote)
        }
    };
    !contact_seen(key, epoch)
}

/// The largest frame size [`pack_headers`] carries (16 MiB; an skb is at most 64 KiB,
/// or 512 KiB with BIG TCP): a larger one would count as this many bytes.
const MAX_BYTES: u64 = (1 << 24) - 1;

/// The facts read an L4 header at most this far into the frame: a packet whose L4
/// header lies deeper (only long IPv6 extension chains put it there) tells the
/// detectors nothing. The bound keeps the verifier's packet ranges exact.
const MAX_L4_OFF: usize = 1024;

/// Records what the packet `p` of `tenant` (in generation `gen`), going `DIR`, tells
/// the detectors; `dropped` says Warden's enforcement (a block, SMTP, the plan) drops
/// it. Runs after enforcement decided, whatever it decided: blocked behaviour must keep
/// its detection (and so its block) alive, and a first contact Warden drops is logged as
/// such ([`outcome::DROPPED`](warden_common::facts::outcome::DROPPED)).
///
/// The tests here are all that packets without news pay: an established TCP segment
/// one flags test; a SYN to a contact already made a hash, a filter word and (with
/// flood counting on) its CPU's batch slot; an inbound SYN its CPU's batch slot (or,
/// with flood counting off, nothing more); a datagram from a remote that already spoke
/// first a hash, a filter word, a pending slot and the batch slot. While a packet only
/// adds to a batch, its flood counting is done here too. The rest goes to a global
/// function through `hook`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn record<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    gen: u32,
    tenant: u32,
    cfg: &TenantConfig,
    bytes: u64,
    dropped: Dropped,
    clock: &mut Clock,
) {
    let l4 = p.l4_proto;
    if l4 == 0 || p.is_claim {
        // No L4 header (a later fragment, ARP), or neighbour discovery.
        return;
    }
    // A from-tenant SYN's contact key, computed once here (0: none).
    let mut syn_key = 0;
    let v6 = match p.family {
        Family::V4 => false,
        Family::V6 => true,
        Family::None => return,
    };
    if l4 == proto::TCP {
        if DIR == direction::OUT {
            match tcp_from_tenant_news(p, tenant, cfg, clock) {
                Some(key) => syn_key = key,
                None => return,
            }
        } else if !tcp_to_tenant_news(p, tenant, cfg, bytes, clock) {
            return;
        }
    } else if DIR == direction::IN
        && l4 == proto::UDP
        && !datagram_news(p, tenant, cfg, bytes, clock)
    {
        return;
    }
    // Tenant indexes are below 2^31: the generation rides in the top bit.
    let tenant_gen = tenant | (gen << 31);
    let headers = pack_headers(p, v6, dropped, bytes);
    hook.facts::<DIR>(tenant_gen, headers, clock.now(), syn_key);
}

/// Whether a from-tenant TCP segment `p` has news for the detectors: `Some` with the
/// contact key of a SYN (0 for a SYN-ACK) when it does; `None` for any other segment,
/// and for a SYN to a known contact whose flood count only adds to its CPU's batch
/// (added here).
#[inline(always)]
fn tcp_from_tenant_news(
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
    clock: &mut Clock,
) -> Option<u64> {
    let flags = p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
    if flags & TCP_SYN == 0 {
        return None;
    }
    if flags & TCP_ACK != 0 {
        // A SYN-ACK: the tenant accepts a connection.
        return Some(0);
    }
    // A SYN: nothing to do unless it is a first contact or floods count.
    let remote = fold(&p.remote);
    let syn_key = contact_key(tenant, contact_tag::OUT, proto::TCP, p.dport, remote);
    let epoch = clock.now() >> CONTACT_EPOCH_SHIFT;
    // Every SMTP connection of a tenant that may send mail is news (spam counts them).
    if contact_seen(syn_key, epoch) && !(sends_mail(cfg) && is_smtp_port(p.dport)) {
        // A known contact: only its flood count is left, and that is done here when it
        // only adds to the CPU's batch.
        if cfg.flood_out_syn == 0 {
            return None;
        }
        let flood_epoch = clock.now() >> FLOOD_EPOCH_SHIFT;
        let threshold = cfg.flood_out_syn.into();
        if let Some(slot) = held_slot(tenant, class::SYN, remote, flood_epoch, 1, threshold) {
            add_held(slot, 1);
            return None;
        }
    }
    Some(syn_key)
}

/// Whether the tenant may send mail (its SMTP is allowed or rate-limited, not blocked).
#[inline(always)]
fn sends_mail(cfg: &TenantConfig) -> bool {
    cfg.flags & (tenant_flags::SMTP_ALLOW | tenant_flags::SMTP_RATE) != 0
}

/// Whether a to-tenant TCP segment `p` has news for the detectors: a SYN-ACK or RST
/// (the answer to an attempt), or a SYN that counts towards inbound floods and does not
/// only add to its CPU's batches (added here when it does).
#[inline(always)]
fn tcp_to_tenant_news(
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
    bytes: u64,
    clock: &mut Clock,
) -> bool {
    let flags = p.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
    if flags & (TCP_SYN | TCP_RST) == 0 {
        return false;
    }
    // An inbound SYN only counts towards inbound floods: not at all, or done here when
    // it only adds to the CPU's batches.
    !(flags == TCP_SYN
        && (cfg.flood_in_pkts == 0 && cfg.flood_in_bytes == 0
            || absorb_flood_in(tenant, &p.local, cfg, bytes, clock.now())))
}

/// Whether a to-tenant datagram `p` has news for the detectors.
///
/// The steady state of datagrams from one remote (a DNS server, a stream, a flood) has
/// none: the remote is already known to have spoken first, no attempt of the tenant
/// waits for it, and its flood counts only add to the CPU's batches (added here). All
/// are reads here (the first two remembered by the batch slot); anything else takes the
/// full path.
#[inline(always)]
fn datagram_news(
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
    bytes: u64,
    clock: &mut Clock,
) -> bool {
    let (remote, now) = (fold(&p.remote), clock.now());
    let quiet = if cfg.flood_in_pkts == 0 && cfg.flood_in_bytes == 0 {
        datagram_is_quiet(tenant, remote, p.sport, now)
    } else {
        absorb::<true>(tenant, &p.local, cfg, bytes, now, remote, p.sport)
    };
    !quiet
}

// The global functions: one per direction and kind of hook context. Each is verified
// once, on its own (see the module doc), and returns 0.

/// The facts of a from-tenant packet at an XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_from_tenant_xdp(
    ctx: *mut xdp_md,
    tenant_gen: u32,
    headers: u64,
    now: u64,
    syn_key: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_of::<{ direction::OUT }>(data, end, tenant_gen, headers, now, syn_key);
    0
}

/// The facts of a to-tenant packet at an XDP hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_to_tenant_xdp(
    ctx: *mut xdp_md,
    tenant_gen: u32,
    headers: u64,
    now: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_of::<{ direction::IN }>(data, end, tenant_gen, headers, now, 0);
    0
}

/// The facts of a from-tenant packet at a tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_from_tenant_tc(
    ctx: *mut __sk_buff,
    tenant_gen: u32,
    headers: u64,
    now: u64,
    syn_key: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_of::<{ direction::OUT }>(data, end, tenant_gen, headers, now, syn_key);
    0
}

/// The facts of a to-tenant packet at a tc hook.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn warden_facts_to_tenant_tc(
    ctx: *mut __sk_buff,
    tenant_gen: u32,
    headers: u64,
    now: u64,
) -> u32 {
    // SAFETY: the hook's context (the verifier types the argument by its name).
    let (data, end) = unsafe { ((*ctx).data as usize, (*ctx).data_end as usize) };
    facts_of::<{ direction::IN }>(data, end, tenant_gen, headers, now, 0);
    0
}

/// The facts of the packet in `data..data_end` whose headers `headers` places (see
/// [`pack_headers`]), of the tenant and generation in `tenant_gen`, going `DIR`;
/// `syn_key` is a from-tenant SYN's contact key (0 for other packets).
#[inline(always)]
fn facts_of<const DIR: u32>(
    data: usize,
    data_end: usize,
    tenant_gen: u32,
    headers: u64,
    now: u64,
    syn_key: u64,
) {
    let (tenant, gen) = (tenant_gen & !(1 << 31), tenant_gen >> 31);
    let Some(gen_config) = GEN_CONFIG.get(gen) else {
        return;
    };
    let Some(cfg) = TENANT_CONFIG.get(tenant_config_index(gen, tenant)) else {
        return;
    };
    let l3 = (headers & 0xff) as usize;
    let l4 = ((headers >> 8) & 0xffff) as usize;
    let v6 = headers & (1 << 24) != 0;
    let l4_proto = (headers >> 32) as u8;
    let bytes = headers >> 40;
    if l4 > MAX_L4_OFF {
        return;
    }
    let Some((local, remote)) = addresses::<DIR>(data, data_end, l3, v6) else {
        return;
    };
    if DIR == direction::OUT && syn_key != 0 {
        // A from-tenant SYN: a first contact writes its pending slot and log entry,
        // lines seldom in cache. Loaded here, back to back, before anything waits on
        // them, their misses overlap each other's (and the filter word's, loaded by the
        // caller) instead of coming one after the other. Here rather than in the caller:
        // inlined into each hook, the loads multiplied the states the verifier walks
        // there. The SYN's flood counters are not loaded early: measured, loading the
        // batch slot and the two sketch counters here cost a first contact more than
        // the misses they were to hide (`cargo xtask bench`, new flow).
        warm_pending(syn_key);
        warm_log();
    }
    let Some((sport, dport, tcp_flags)) = l4_fields(data, data_end, l4, l4_proto) else {
        return;
    };
    let error = (l4_proto == proto::ICMP && sport == ICMP_UNREACHABLE.into())
        || (l4_proto == proto::ICMPV6 && sport == ICMPV6_UNREACHABLE.into());
    let q = if DIR == direction::IN && error {
        parse::quoted(data, data_end, l4, v6)
    } else {
        parse::Quoted::NONE
    };
    let f = PacketFacts {
        local,
        remote,
        quoted_dst: q.dst,
        now,
        bytes,
        budget: gen_config.event_budget,
        flood_in_bytes: cfg.flood_in_bytes,
        tenant,
        flood_out_syn: cfg.flood_out_syn,
        flood_out_pkts: cfg.flood_out_pkts,
        flood_in_pkts: cfg.flood_in_pkts,
        sport,
        dport,
        quoted_sport: q.sport,
        quoted_dport: q.dport,
        family: if v6 { family::V6 } else { family::V4 },
        l4_proto,
        tcp_flags,
        quoted_proto: q.proto,
        syn_key,
        dropped: headers & DROPPED_BIT != 0,
        contained: headers & CONTAINED_BIT != 0,
        mail: sends_mail(cfg),
    };
    if DIR == direction::OUT {
        from_tenant(&f);
    } else {
        to_tenant(&f);
    }
}

/// The (tenant-side, other side) addresses of the IP header at `l3`, which the parser
/// read already (so it is there).
#[inline(always)]
fn addresses<const DIR: u32>(
    data: usize,
    data_end: usize,
    l3: usize,
    v6: bool,
) -> Option<(Addr, Addr)> {
    let (src, dst) = if v6 {
        let h = ptr_at::<[u8; 40]>(data, data_end, l3).ok()?;
        // SAFETY: `ptr_at` checked the 40 bytes of the IPv6 header.
        unsafe { (load_addr16(h as usize + 8), load_addr16(h as usize + 24)) }
    } else {
        let h = ptr_at::<[u8; 20]>(data, data_end, l3).ok()?;
        // SAFETY: `ptr_at` checked the 20 bytes of the IPv4 header.
        unsafe { (load_addr4(h as usize + 12), load_addr4(h as usize + 16)) }
    };
    Some(if DIR == direction::OUT {
        (src, dst)
    } else {
        (dst, src)
    })
}

/// The source and destination port (ICMP: type and code) and TCP flags of the L4
/// header `l4_proto` at `l4`; zeros for another protocol.
#[inline(always)]
fn l4_fields(data: usize, data_end: usize, l4: usize, l4_proto: u8) -> Option<(u16, u16, u8)> {
    Some(match l4_proto {
        proto::TCP => {
            let h = ptr_at::<[u8; 14]>(data, data_end, l4).ok()?;
            // SAFETY: `ptr_at` checked the 14 bytes: ports, sequence, ack, offset, flags.
            let (ports, flags) = unsafe { (load32(h as usize), (*h)[13]) };
            let (sport, dport) = split_ports(ports);
            (sport, dport, flags)
        }
        proto::UDP => {
            let h = ptr_at::<[u8; 4]>(data, data_end, l4).ok()?;
            // SAFETY: `ptr_at` checked the 4 bytes of the ports.
            let (sport, dport) = split_ports(unsafe { load32(h as usize) });
            (sport, dport, 0)
        }
        proto::ICMP | proto::ICMPV6 => {
            let h = ptr_at::<[u8; 2]>(data, data_end, l4).ok()?;
            // SAFETY: `ptr_at` checked the 2 bytes of type and code.
            let h = unsafe { &*h };
            (h[0].into(), h[1].into(), 0)
        }
        _ => (0, 0, 0),
    })
}

#[inline(always)]
fn from_tenant(f: &PacketFacts) {
    const OUT: u32 = direction::OUT;
    let remote = fold(&f.remote);
    match f.l4_proto {
        proto::TCP => {
            let flags = f.tcp_flags & (TCP_SYN | TCP_ACK);
            if flags == TCP_SYN {
                attempt(f, proto::TCP, f.sport, f.dport, 0);
                if f.mail && is_smtp_port(f.dport) {
                    smtp_connection(f, remote);
                }
                flood::<OUT>(f, class::SYN, remote, 1, f.flood_out_syn.into());
            } else if flags == TCP_SYN | TCP_ACK {
                // The tenant accepts a connection: an inbound client of a local port.
                let pair = remote ^ fold(&f.local);
                let key = contact_key(f.tenant, contact_tag::ACCEPTED, proto::TCP, f.sport, pair);
                if contact_insert(key, f.now) {
                    f.log(event::ACCEPTED, proto::TCP, f.sport, f.dport, 0);
                }
            }
        }
        proto::UDP => {
            // A datagram to where the remote sent from first is a reply (a DNS
            // server answering): no attempt. Both keys come from one hash.
            let base = contact_base(f.tenant, proto::UDP, f.dport, remote);
            let reply = contact_tagged(base, contact_tag::IN_UDP);
            if !contact_seen(reply, f.now >> CONTACT_EPOCH_SHIFT) {
                let key = contact_tagged(base, contact_tag::OUT);
                attempt(f, proto::UDP, f.sport, f.dport, key);
            }
            if reflection_sized(f.sport, f.bytes) {
                flood::<OUT>(f, class::REPLY, remote, 1, f.flood_out_syn.into());
            } else {
                flood::<OUT>(f, class::PACKETS, remote, 1, f.flood_out_pkts.into());
            }
        }
        l4 => {
            // ICMP, ICMPv6 and any other protocol; `sport` is an ICMP type. The
            // protocols are spelled as constants.
            if l4 == proto::ICMP && f.sport == ICMP_ECHO_REQUEST {
                attempt(f, proto::ICMP, 0, 0, 0);
            } else if l4 == proto::ICMPV6 && f.sport == ICMPV6_ECHO_REQUEST {
                attempt(f, proto::ICMPV6, 0, 0, 0);
            }
            flood::<OUT>(f, class::PACKETS, remote, 1, f.flood_out_pkts.into());
        }
    }
}

/// A from-tenant SYN to an SMTP port of a tenant that may send mail: logged as one
/// SMTP connection, its retransmissions once (the key holds the tenant's port).
#[inline(always)]
fn smtp_connection(f: &PacketFacts, remote: u64) {
    let conn = remote ^ u64::from(f.sport).rotate_left(48);
    let key = contact_key(f.tenant, contact_tag::SMTP, proto::TCP, f.dport, conn);
    if contact_insert(key, f.now) {
        let detail = if f.dropped { outcome::DROPPED } else { 0 };
        f.log(event::SMTP, proto::TCP, f.sport, f.dport, detail);
    }
}

#[inline(always)]
fn to_tenant(f: &PacketFacts) {
    match f.l4_proto {
        proto::TCP => {
            let flags = f.tcp_flags & (TCP_SYN | TCP_ACK | TCP_RST);
            if flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK {
                answer(
                    f,
                    proto::TCP,
                    &f.remote,
                    f.sport,
                    f.dport,
                    outcome::SUCCESS,
                    0,
                );
            } else if flags & TCP_RST != 0 {
                answer(
                    f,
                    proto::TCP,
                    &f.remote,
                    f.sport,
                    f.dport,
                    outcome::REFUSED,
                    0,
                );
            } else if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
                flood_in(f);
            }
        }
        proto::UDP => {
            // Remember that the remote spoke first, so the tenant's answers are
            // replies; then see whether this answers the tenant's own attempt. Both
            // keys come from one hash.
            let base = contact_base(f.tenant, proto::UDP, f.sport, fold(&f.remote));
            contact_insert(contact_tagged(base, contact_tag::IN_UDP), f.now);
            let key = contact_tagged(base, contact_tag::OUT);
            answer(
                f,
                proto::UDP,
                &f.remote,
                f.sport,
                f.dport,
                outcome::SUCCESS,
                key,
            );
            flood_in(f);
        }
        l4 => {
            let ty = f.sport;
            if l4 == proto::ICMP && ty == ICMP_ECHO_REPLY {
                answer(f, proto::ICMP, &f.remote, 0, 0, outcome::SUCCESS, 0);
            } else if l4 == proto::ICMPV6 && ty == ICMPV6_ECHO_REPLY {
                answer(f, proto::ICMPV6, &f.remote, 0, 0, outcome::SUCCESS, 0);
            } else if f.quoted_proto != 0 {
                // An ICMP error quoting the tenant's attempt (parsed to-tenant only).
                let (proto, dst) = (f.quoted_proto, &f.quoted_dst);
                let (sport, dport) = (f.quoted_sport, f.quoted_dport);
                answer(f, proto, dst, dport, sport, outcome::UNREACHABLE, 0);
            }
            flood_in(f);
        }
    }
}
