//! The policy fixtures: the address plan (tenants, wide tenants, remotes), the tenants'
//! configuration compiled as the daemon compiles a policy, and the writes of the policy,
//! the management prefixes, ACTIVE and buckets into the maps.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap as BpfHashMap, MapData,
    },
    Ebpf,
};
use warden_common::{
    bucket,
    facts::{runtime_flags, BlockKey, BlockValue, TenantRuntime},
    map, tenant_flags, Bucket, GenConfig, Rate, TenantConfig,
};
use warden_dataplane::{write_generation, Compiled};
use warden_tests::packets::Mac;

use super::{
    cases::Policy, ANSWER_BASE, EXHAUSTED_TENANT, HUGE_PLAN, LOADERS, LOADER_FIRST, LOADER_STRIDE,
    LOADER_SYN_THRESHOLD, MANAGEMENT_V4, MANAGEMENT_V6, POLICED_TENANT, SHAPED_TENANT, SMALL_PLAN,
    SUSPENDED_TENANT, TENANTS, TRACKED_BASE, WIDE,
};

/// IPv4 /32 of tenant `i`: 198.18.0.0 + i (198.18.0.0 - 198.19.134.159).
pub(super) fn host_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

/// IPv4 /24 of a wide tenant `i` (generation 1): 198.19.(192 + i - first wide).0/24.
pub(super) fn wide_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 19, 192 + (i - (TENANTS - WIDE)) as u8, 0)
}

/// The IPv6 address tenant `i` sends from (in its /64).
pub(super) fn host_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net_v6(i)) + 0x10)
}

/// Tracked remote `k` (`k >= TRACKED_REMOTES`: a fresh one, never contacted).
pub(super) fn tracked_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(TRACKED_BASE) + u128::from(k))
}

/// Detection-event remote `k`.
pub(super) fn answer_remote(k: u32) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(ANSWER_BASE) + u128::from(k))
}

/// The tenant that contacted tracked remotes `j * PER_LOADER..(j + 1) * PER_LOADER`.
pub(super) fn loader_tenant(j: u32) -> u32 {
    LOADER_FIRST + j * LOADER_STRIDE
}

pub(super) fn is_loader(i: u32) -> bool {
    i >= LOADER_FIRST
        && (i - LOADER_FIRST).is_multiple_of(LOADER_STRIDE)
        && i < loader_tenant(LOADERS)
}

/// IPv6 /64 of tenant `i`: 2001:db8:0:i::/64.
pub(super) fn net_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, (i >> 16) as u16, i as u16, 0, 0, 0, 0)
}

/// IPv6 /48 of a wide tenant `i` (generation 1): 2001:db8:1xx::/48.
pub(super) fn wide_v6(i: u32) -> Ipv6Addr {
    let j = (i - (TENANTS - WIDE)) as u16;
    Ipv6Addr::new(0x2001, 0xdb8, 0x100 + j, 0, 0, 0, 0, 0)
}

/// The MAC bound to tenant `i`.
pub(super) fn tenant_mac(i: u32) -> Mac {
    let [_, a, b, c] = i.to_be_bytes();
    [0x02, 0x57, 0, a, b, c]
}

pub(super) fn tenant_config(policy: Policy, i: u32) -> TenantConfig {
    // Flood counting as the daemon compiles a policy's defaults: every tenant's SYNs,
    // datagrams and inbound packets are counted, as on a production node.
    let d = warden_policy::Detectors::default();
    let mut cfg = TenantConfig {
        flood_out_syn: warden_dataplane::per_flood_epoch(d.flood_out.syn_pps),
        flood_out_pkts: warden_dataplane::per_flood_epoch(d.flood_out.pps),
        flood_in_pkts: warden_dataplane::per_flood_epoch(d.flood_in.pps),
        flood_in_bytes: warden_dataplane::bytes_per_flood_epoch(d.flood_in.bps),
        ..TenantConfig::default()
    };
    if policy.binds_macs() {
        cfg.flags |= tenant_flags::MACS_BOUND;
    }
    if is_loader(i) {
        cfg.flood_out_syn = LOADER_SYN_THRESHOLD;
    }
    match i {
        SUSPENDED_TENANT => cfg.flags |= tenant_flags::SUSPENDED,
        POLICED_TENANT => cfg.rate = [HUGE_PLAN, HUGE_PLAN],
        EXHAUSTED_TENANT => cfg.rate = [SMALL_PLAN, SMALL_PLAN],
        SHAPED_TENANT => {
            cfg.rate = [SMALL_PLAN, SMALL_PLAN];
            // A class id as the daemon writes one (this slot is past the daemon's
            // limit, but the programs take any nonzero class).
            cfg.shape_class = (warden_common::shape::MAJOR << 16) | 2;
        }
        _ => {}
    }
    cfg
}

pub(super) fn mask4(addr: Ipv4Addr, plen: u8) -> [u8; 4] {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    (u32::from(addr) & mask).to_be_bytes()
}

pub(super) fn mask6(addr: Ipv6Addr, plen: u8) -> [u8; 16] {
    let mask = u128::MAX.checked_shl(128 - u32::from(plen)).unwrap_or(0);
    (u128::from(addr) & mask).to_be_bytes()
}

pub(super) fn map_mut<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("no {name} map in the object"))
}

/// `policy` as the daemon compiles it (`warden_dataplane::compile`'s output).
pub(super) fn compile(policy: Policy) -> Compiled {
    let mut c = Compiled::default();
    for i in 0..TENANTS {
        let ((a4, l4), (a6, l6)) = policy.prefixes(i);
        c.v4.insert((l4, mask4(a4, l4)), i);
        c.v6.insert((l6, mask6(a6, l6)), i);
        if policy.binds_macs() {
            c.macs.insert(tenant_mac(i), i);
        }
        c.configs.insert(i, tenant_config(policy, i));
    }
    let (lens4, lens6) = policy.lengths();
    (c.v4_lens, c.v6_lens) = (lens4.to_vec(), lens6.to_vec());
    c
}

/// Writes `policy` into its generation exactly as `Dataplane::apply` would
/// (`warden_dataplane::write_generation`: the daemon's placement and GEN_CONFIG).
pub(super) fn write_policy(ebpf: &mut Ebpf, policy: Policy) -> Result<()> {
    let c = compile(policy);
    write_generation(ebpf, policy.generation(), &c)
        .with_context(|| format!("writing the {} policy", policy.label()))
}

/// A few management prefixes, so the suspended case pays for a real trie miss.
pub(super) fn write_management(ebpf: &mut Ebpf) -> Result<()> {
    {
        let mut t: LpmTrie<&mut MapData, [u8; 4], u8> =
            LpmTrie::try_from(map_mut(ebpf, map::MANAGEMENT_V4)?)?;
        for net in MANAGEMENT_V4 {
            t.insert(&Key::new(24, net.octets()), 1u8, 0)
                .context("writing MANAGEMENT_V4")?;
        }
    }
    let mut t: LpmTrie<&mut MapData, [u8; 16], u8> =
        LpmTrie::try_from(map_mut(ebpf, map::MANAGEMENT_V6)?)?;
    t.insert(&Key::new(48, MANAGEMENT_V6.octets()), 1u8, 0)
        .context("writing MANAGEMENT_V6")?;
    Ok(())
}

/// The flip: ACTIVE\[0\] = `gen`.
pub(super) fn set_active(ebpf: &mut Ebpf, gen: u32) -> Result<()> {
    let mut m: Array<&mut MapData, u32> = Array::try_from(map_mut(ebpf, map::ACTIVE)?)?;
    m.set(0, gen, 0).context("writing ACTIVE")
}

/// Replaces generation `gen`'s event budget (written by `write_generation` as the
/// daemon's).
pub(super) fn set_event_budget(ebpf: &mut Ebpf, gen: u32, budget: Rate) -> Result<()> {
    let mut m: Array<&mut MapData, GenConfig> = Array::try_from(map_mut(ebpf, map::GEN_CONFIG)?)?;
    let mut gc = m.get(&gen, 0).context("reading GEN_CONFIG")?;
    gc.event_budget = budget;
    m.set(gen, gc, 0).context("writing GEN_CONFIG")
}

pub(super) fn set_bucket(ebpf: &mut Ebpf, tenant: u32, which: u32, tat: u64) -> Result<()> {
    let mut m: Array<&mut MapData, Bucket> = Array::try_from(map_mut(ebpf, map::BUCKETS)?)?;
    m.set(bucket::index(tenant, which), Bucket { tat }, 0)
        .context("writing BUCKETS")
}

/// Blackholes `tenant`'s IPv4 address until `until` as the daemon does
/// (`Dataplane::block` with a blackhole target): its entry in BLOCKS and the BLOCKS
/// runtime flag.
pub(super) fn blackhole(ebpf: &mut Ebpf, tenant: u32, until: u64) -> Result<()> {
    let target = warden_policy::traffic::BlockTarget::Blackhole(host_v4(tenant).into());
    let key = warden_dataplane::block_key(target, warden_policy::tenant::TenantSlot(tenant));
    {
        let mut m: BpfHashMap<&mut MapData, BlockKey, BlockValue> =
            BpfHashMap::try_from(map_mut(ebpf, map::BLOCKS)?)?;
        m.insert(key, BlockValue { until_ns: until }, 0)
            .context("writing BLOCKS")?;
    }
    let mut m: Array<&mut MapData, TenantRuntime> =
        Array::try_from(map_mut(ebpf, map::TENANT_RUNTIME)?)?;
    let rt = TenantRuntime {
        flags: runtime_flags::BLOCKS,
        ..TenantRuntime::default()
    };
    m.set(tenant, rt, 0).context("writing TENANT_RUNTIME")
}
