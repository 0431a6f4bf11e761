//! The eBPF object of the throughput part: loaded, its two-tenant policy written, the
//! receivers' programs attached, and the warden counters read.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
    Ebpf,
};
use warden_common::{
    bucket, direction, map, program, reason, tenant_counter_index, Bucket, Counters, DropCounters,
    TenantConfig,
};
use warden_dataplane::{write_generation, Compiled};

use super::{
    lab::{enter_netns, Lab, HOLD_PAIR},
    Rx, EXHAUSTED, FLOOD_IN_BYTES, FLOOD_IN_PKTS, HUGE_PLAN, METERED, SMALL_PLAN,
};

pub(super) fn load() -> Result<Ebpf> {
    crate::util::load_xdp(&[
        program::XDP_TO_TENANT,
        program::XDP_DROP_BASELINE,
        program::XDP_PASS_BASELINE,
        program::XDP_BENCH_GEN,
        program::XDP_BENCH_GEN_SOURCES,
    ])
}

pub(super) fn tenant_v4(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i)
}

pub(super) fn tenant_v6(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, i as u16, 0, 0, 0, 0)
}

/// The two tenants, written as the daemon writes a generation, and the exhausted
/// tenant's inbound bucket set an hour ahead.
pub(super) fn write_policy(ebpf: &mut Ebpf) -> Result<()> {
    let mut c = Compiled::default();
    for (i, plan) in [(METERED, HUGE_PLAN), (EXHAUSTED, SMALL_PLAN)] {
        c.v4.insert((32, tenant_v4(i).octets()), i);
        c.v6.insert((64, tenant_v6(i).octets()), i);
        let cfg = TenantConfig {
            rate: [plan, plan],
            flood_in_pkts: FLOOD_IN_PKTS,
            flood_in_bytes: FLOOD_IN_BYTES,
            ..Default::default()
        };
        c.configs.insert(i, cfg);
    }
    (c.v4_lens, c.v6_lens) = (vec![32], vec![64]);
    write_generation(ebpf, 0, &c).context("writing the bench policy")?;
    let mut active: Array<&mut MapData, u32> =
        Array::try_from(ebpf.map_mut(map::ACTIVE).context("no ACTIVE map")?)?;
    active.set(0, 0, 0).context("writing ACTIVE")?;
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let mut buckets: Array<&mut MapData, Bucket> =
        Array::try_from(ebpf.map_mut(map::BUCKETS).context("no BUCKETS map")?)?;
    buckets
        .set(
            bucket::index(EXHAUSTED, direction::IN),
            Bucket {
                tat: now + 3_600_000_000_000,
            },
            0,
        )
        .context("writing BUCKETS")
}

/// (metered tenant's inbound packets, exhausted tenant's inbound bandwidth drops),
/// summed over CPUs.
pub(super) fn warden_counts(ebpf: &Ebpf) -> Result<(u64, u64)> {
    let counters: PerCpuArray<&MapData, Counters> = PerCpuArray::try_from(
        ebpf.map(map::TENANT_COUNTERS)
            .context("no TENANT_COUNTERS map")?,
    )?;
    let drops: PerCpuArray<&MapData, DropCounters> =
        PerCpuArray::try_from(ebpf.map(map::DROP_COUNTERS).context("no DROP_COUNTERS")?)?;
    let passed = counters
        .get(&tenant_counter_index(METERED, direction::IN), 0)?
        .iter()
        .map(|c| c.packets)
        .sum();
    let dropped = drops
        .get(&tenant_counter_index(EXHAUSTED, direction::IN), 0)?
        .iter()
        .map(|d| d.packets[reason::BANDWIDTH])
        .sum();
    Ok((passed, dropped))
}

pub(super) fn xdp<'a>(ebpf: &'a Ebpf, name: &str) -> Result<&'a Xdp> {
    ebpf.program(name)
        .with_context(|| format!("no program {name}"))?
        .try_into()
        .with_context(|| format!("{name} is not an XDP program"))
}

/// Attaches the receivers' programs, each in the receiving namespace (the attach
/// resolves the interface and talks netlink in the calling thread's namespace).
pub(super) fn attach(ebpf: &mut Ebpf, lab: &Lab) -> Result<()> {
    let receivers = [
        (Rx::Warden.names().1, program::XDP_TO_TENANT),
        (Rx::Drop.names().1, program::XDP_DROP_BASELINE),
        (Rx::Pass.names().1, program::XDP_PASS_BASELINE),
    ];
    let generators = [
        (HOLD_PAIR.0, program::XDP_BENCH_GEN),
        (HOLD_PAIR.1, program::XDP_BENCH_GEN_SOURCES),
    ];
    for (ns, programs) in [(&lab.rx_ns, &receivers[..]), (&lab.gen_ns, &generators[..])] {
        std::thread::scope(|s| {
            s.spawn(|| -> Result<()> {
                enter_netns(ns)?;
                for &(dev, name) in programs {
                    let prog: &mut Xdp = ebpf
                        .program_mut(name)
                        .with_context(|| format!("no program {name}"))?
                        .try_into()?;
                    prog.attach(dev, XdpMode::Driver)
                        .with_context(|| format!("attaching {name} to {dev}"))?;
                }
                Ok(())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the attach thread panicked"))?
        })?;
    }
    Ok(())
}
