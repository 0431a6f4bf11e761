//! The per-packet path shared by every hook, as stages, each a `try_` function that
//! lets the packet on or ends its path with a verdict (or, for the tenant's policy, a
//! drop reason):
//!
//! 1. parse (`parse`): a malformed frame is dropped from a tenant, passed to one;
//! 2. attribute ([`attribute`]): find the tenant, check the sender's binding (from-tenant
//!    only), count the packet in its tenant's counters, or as no tenant's;
//! 3. suspension ([`try_suspension`]);
//! 4. the tenant's runtime state ([`runtime_of`]): frame capture for the daemon;
//! 5. blocks ([`blocks`]), containment ([`contain`]), SMTP ([`try_smtp`]), the plan or a detection's throttle
//!    ([`try_plan`]), which decide the verdict: from a shaped tenant on a tc hook, the
//!    plan is its HTB class's queue, which the packet is sent to, not a policer;
//! 6. detection facts (`facts::record`), whatever the verdict: traffic a block drops
//!    must keep its detection, and so its block, alive; a first contact these stages
//!    dropped is logged as dropped by Warden (`outcome::DROPPED`), so the detectors do
//!    not take Warden's own drops for the tenant's failures. (A suspended tenant's
//!    packets stop at 3 and report nothing.)
//!
//! Every stage is inlined into the hook's program (`#[inline(always)]`: a stage costs
//! neither a call nor a copy); the heavy work past them runs in global BPF functions,
//! verified once each (see `facts`).

mod attribute;
mod blocks;
mod contain;
mod spread;

pub use blocks::BlockCached;
pub use spread::{warden_shape_tc, FlowSet};

use core::{
    intrinsics::{atomic_xadd, AtomicOrdering},
    ptr::{addr_of_mut, read_volatile},
};

use warden_common::{
    bucket, direction,
    facts::{runtime_flags, TenantRuntime},
    global, is_smtp_port, reason, tcp_flags, tenant_config_index, tenant_counter_index,
    tenant_flags, Counters, Rate, TenantConfig,
};

use crate::{
    clock::Clock,
    facts,
    hook::Hook,
    lookup,
    maps::{
        metering::{BUCKETS, DROP_COUNTERS, GLOBAL_COUNTERS, TENANT_COUNTERS},
        policy::TENANT_CONFIG,
        runtime::TENANT_RUNTIME,
    },
    neighbour,
    parse::{parse, proto, Parsed},
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

/// How a stage of the tenant's policy ends the packet's path early.
enum Stop {
    /// Pass the packet as it is, without the later stages.
    Pass,
    /// Drop it; the stage counted the drop.
    Dropped,
    /// Drop it for this reason (a [`reason`]), counted as the tenant's drop.
    Drop(usize),
    /// Drop a first contact for containment ([`contain`]): counted as `blocked`.
    Contain,
}

/// A frame the daemon asked to capture: the hook (which has the context to read the
/// frame with) sends it after [`handle`] returns, whatever the verdict.
pub struct Capture {
    /// The tenant, or [`lookup::NONE`]: no capture.
    pub tenant: u32,
    /// The frame's own time, to the nanosecond ([`Clock::precise`]).
    pub now: u64,
}

impl Capture {
    /// Nothing to capture.
    pub const NONE: Capture = Capture {
        tenant: lookup::NONE,
        now: 0,
    };
}

#[inline(always)]
fn count_global(slot: u32, dir: u32, bytes: u64) {
    add(GLOBAL_COUNTERS.get_ptr_mut(global::index(slot, dir)), bytes);
}

/// Counts the packet of `bytes` in its tenant's counters.
#[inline(always)]
fn count_tenant(tenant: u32, dir: u32, bytes: u64) {
    add(
        TENANT_COUNTERS.get_ptr_mut(tenant_counter_index(tenant, dir)),
        bytes,
    );
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

/// Counts a drop of `tenant`'s packet for `why` (a [`reason`]) and returns the verdict.
#[inline(always)]
fn drop_for(tenant: u32, dir: u32, why: usize) -> Verdict {
    if let Some(d) = DROP_COUNTERS.get_ptr_mut(tenant_counter_index(tenant, dir)) {
        if why < reason::COUNT {
            // SAFETY: a per-CPU slot: no other program instance writes it concurrently;
            // `why` is checked to be an index of the array.
            unsafe { (*d).packets[why] += 1 };
        }
    }
    Verdict::Drop
}

/// The whole per-packet decision for a hook of direction `DIR`. A frame to capture is
/// left in `capture` for the hook.
#[inline(always)]
pub fn handle<const DIR: u32, H: Hook>(
    hook: &H,
    data: usize,
    data_end: usize,
    bytes: u64,
    capture: &mut Capture,
) -> Verdict {
    let Ok(p) = parse::<DIR>(data, data_end, bytes) else {
        count_global(global::MALFORMED, DIR, bytes);
        // To a tenant, fail open: our parser must not cut a tenant off. From a
        // tenant, fail closed: no stack sends headers shorter than announced, and
        // a first fragment too short for its ports would slip past SMTP policy.
        return if DIR == direction::OUT {
            Verdict::Drop
        } else {
            Verdict::Pass
        };
    };
    let (tenant, gen) = match attribute::try_attribute::<DIR, H>(hook, &p, bytes) {
        Ok(attributed) => attributed,
        Err(verdict) => return verdict,
    };
    match try_tenant_policy::<DIR, H>(hook, &p, tenant, gen, bytes, capture) {
        Ok(()) | Err(Stop::Pass) => Verdict::Pass,
        Err(Stop::Dropped) => Verdict::Drop,
        Err(Stop::Drop(why)) => drop_for(tenant, DIR, why),
        Err(Stop::Contain) => drop_for(tenant, DIR, reason::BLOCKED),
    }
}

/// The tenant's policy, in generation `gen`, on its packet `p`: the stages after
/// attribution, in order.
#[inline(always)]
fn try_tenant_policy<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    tenant: u32,
    gen: u32,
    bytes: u64,
    capture: &mut Capture,
) -> Result<(), Stop> {
    let Some(cfg) = TENANT_CONFIG.get(tenant_config_index(gen, tenant)) else {
        return Err(Stop::Pass);
    };
    try_suspension::<DIR, H>(hook, p, tenant, cfg)?;
    let mut clock = Clock::new();
    let runtime = runtime_of(tenant, &mut clock, capture);
    // Enforcement decides first; the facts are recorded whatever it decided: traffic a
    // block drops must keep its detection (and so its block) alive, and a first contact
    // Warden itself drops is reported as such, not as the tenant's failed attempt.
    let verdict = try_enforcement::<DIR, H>(hook, p, tenant, cfg, runtime, bytes, &mut clock);
    let dropped = match verdict {
        Ok(()) | Err(Stop::Pass) => facts::Dropped::No,
        Err(Stop::Dropped | Stop::Drop(_)) => facts::Dropped::Yes,
        Err(Stop::Contain) => facts::Dropped::Contained,
    };
    facts::record::<DIR, H>(hook, p, gen, tenant, cfg, bytes, dropped, &mut clock);
    verdict
}

/// Blocks, SMTP and the plan, in order: the stages that may drop a packet for Warden's
/// own reasons.
#[inline(always)]
fn try_enforcement<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
    runtime: Runtime,
    bytes: u64,
    clock: &mut Clock,
) -> Result<(), Stop> {
    blocks::try_blocks::<DIR>(p, tenant, runtime.flags, clock)?;
    contain::try_contain::<DIR>(p, tenant, runtime.entry, runtime.flags, clock)?;
    try_smtp::<DIR>(p, tenant, cfg, clock)?;
    try_plan::<DIR, H>(hook, tenant, cfg, runtime, bytes, clock)
}

/// Suspension: a suspended tenant's packet is dropped (counted as `suspended` by the
/// check), except what it keeps.
///
/// A suspended tenant keeps ARP and neighbour discovery (already checked for spoofing
/// by attribution), or it could not reach its gateway to get to management; only as
/// the protocols have them (`neighbour`), so nothing rides on them. What it keeps goes
/// on through the rest of its policy (SMTP, plan).
#[inline(always)]
fn try_suspension<const DIR: u32, H: Hook>(
    hook: &H,
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
) -> Result<(), Stop> {
    if cfg.flags & tenant_flags::SUSPENDED != 0
        && !hook.suspended_passes::<DIR>(tenant, neighbour::pack(p))
    {
        return Err(Stop::Dropped);
    }
    Ok(())
}

/// The daemon's runtime state for a tenant, as its packet found it.
#[derive(Clone, Copy)]
struct Runtime {
    /// The tenant's entry of `TENANT_RUNTIME`.
    entry: Option<*mut TenantRuntime>,
    /// Its [`runtime_flags`]; 0 when the tenant has no runtime state.
    flags: u32,
}

/// The daemon's runtime state for the tenant; a frame the daemon asked to capture goes
/// into `capture` (its count is taken down).
///
/// Read once: most tenants have none, which one load of `flags` and `capture` together
/// (the first 8 bytes) tells.
#[inline(always)]
fn runtime_of(tenant: u32, clock: &mut Clock, capture: &mut Capture) -> Runtime {
    let entry = TENANT_RUNTIME.get_ptr_mut(tenant);
    let mut flags = 0;
    if let Some(rt) = entry {
        // SAFETY: an array map value, 8-byte aligned; `capture` is counted down
        // atomically, the rest only read (the daemon writes the whole value).
        unsafe {
            let head = read_volatile(rt.cast::<u64>());
            if head != 0 {
                flags = read_volatile(addr_of_mut!((*rt).flags));
                let count = addr_of_mut!((*rt).capture);
                if read_volatile(count) > 0 {
                    atomic_xadd::<i32, i32, { AtomicOrdering::Relaxed }>(count, -1);
                    capture.tenant = tenant;
                    capture.now = clock.precise();
                }
            }
        }
    }
    Runtime { entry, flags }
}

/// SMTP: the tenant's mail policy on its TCP to the SMTP ports: blocked, allowed, or new
/// connections (SYNs) policed by its SMTP rate.
#[inline(always)]
fn try_smtp<const DIR: u32>(
    p: &Parsed,
    tenant: u32,
    cfg: &TenantConfig,
    clock: &mut Clock,
) -> Result<(), Stop> {
    if DIR == direction::OUT
        && p.l4_proto == proto::TCP
        && is_smtp_port(p.dport)
        && cfg.flags & tenant_flags::SMTP_ALLOW == 0
    {
        if cfg.flags & tenant_flags::SMTP_RATE == 0 {
            return Err(Stop::Drop(reason::SMTP));
        }
        if p.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
            let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, bucket::SMTP)) else {
                return Err(Stop::Pass);
            };
            if !police::conforms(b, &cfg.smtp, clock.now(), 1, false) {
                return Err(Stop::Drop(reason::SMTP));
            }
        }
    }
    Ok(())
}

/// The plan: the tenant's bandwidth in this direction, or a detection's throttle, which
/// replaces the plan (the same bucket) until it expires, even if the daemon is not there
/// to lift it.
///
/// From a shaped tenant (`shape_class` set) on a hook that can queue (tc egress, host
/// mode), the plan is the HTB class the packet is steered into (its flow's leaf,
/// [`spread`]): a queue TCP can live with, where a policer drops whole windows at sub-millisecond round trips. A throttle
/// still polices on top. On XDP (gateway mode's from-tenant hook) the plan is policed.
#[inline(always)]
fn try_plan<const DIR: u32, H: Hook>(
    hook: &H,
    tenant: u32,
    cfg: &TenantConfig,
    runtime: Runtime,
    bytes: u64,
    clock: &mut Clock,
) -> Result<(), Stop> {
    let shaped = DIR == direction::OUT
        && H::QUEUES
        && cfg.shape_class != 0
        && hook.shape(tenant, cfg.shape_class);
    // No policer for a shaped plan (an Option, not a reference to an unlimited Rate:
    // that constant would become a read-only data map of the object).
    let mut rate: Option<&Rate> = if shaped {
        None
    } else {
        Some(&cfg.rate[DIR as usize])
    };
    if runtime.flags & runtime_flags::THROTTLE != 0 {
        if let Some(rt) = runtime.entry {
            // SAFETY: an array map value, read only.
            let rt = unsafe { &*rt };
            if clock.now() < rt.throttle_until_ns {
                rate = Some(&rt.throttle[DIR as usize]);
            }
        }
    }
    let Some(rate) = rate else {
        return Ok(());
    };
    if rate.cost_q10 != 0 {
        if let Some(b) = BUCKETS.get_ptr_mut(bucket::index(tenant, DIR)) {
            if !police::conforms(b, rate, clock.now(), bytes, true) {
                return Err(Stop::Drop(reason::BANDWIDTH));
            }
        }
    }
    Ok(())
}
