//! Runtime state the daemon writes back into the kernel as detections are acted on:
//! blocks and blackholes ([`map::BLOCKS`]), throttles and packet capture
//! ([`map::TENANT_RUNTIME`]), and the programs' fact counters ([`map::FACT_COUNTERS`]).
//!
//! None of it is part of a policy generation: it follows detections. Every expiry is
//! CLOCK_MONOTONIC time ([`super::monotonic_now`]) and is enforced by the programs
//! themselves, so a temporary action ends on time even while the daemon is down; the
//! daemon only deletes what expired ([`Dataplane::sweep_blocks`]).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray};
use warden_common::{
    direction,
    facts::{fact_counter, runtime_flags, BlockKey, BlockValue, TenantRuntime, MAX_BLOCKS},
    family, map, reason, tenant_config_index, Counters, DropCounters, Rate, TenantConfig,
    MAX_TENANTS,
};

use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::BlockTarget;

use super::{
    burst_bytes, map_err, Compiled, Dataplane, DataplaneError, Result, ShapeStats, CAPACITIES,
};

/// The key the programs look up for `target` of the tenant in `slot` (see [`BlockKey`]).
pub fn block_key(target: BlockTarget, slot: TenantSlot) -> BlockKey {
    let (dir, addr, port) = match target {
        BlockTarget::Victim(a) => (direction::OUT, Some(a), 0),
        BlockTarget::Port(p) => (direction::OUT, None, p),
        BlockTarget::Blackhole(a) => (direction::IN, Some(a), 0),
        BlockTarget::ListenPort(p) => (direction::IN, None, p),
    };
    let (family, addr) = match addr {
        None => (family::ANY, [0; 16]),
        Some(IpAddr::V4(a)) => {
            let mut b = [0; 16];
            b[..4].copy_from_slice(&a.octets());
            (family::V4, b)
        }
        Some(IpAddr::V6(a)) => (family::V6, a.octets()),
    };
    BlockKey {
        tenant: slot.0,
        dir: dir as u8,
        family,
        port,
        addr,
    }
}

/// The slot and target of a key written by [`block_key`]; `None` for a key no target
/// makes.
pub fn block_of_key(k: &BlockKey) -> Option<(TenantSlot, BlockTarget)> {
    let addr = match k.family {
        family::V4 => Some(IpAddr::V4(Ipv4Addr::new(
            k.addr[0], k.addr[1], k.addr[2], k.addr[3],
        ))),
        family::V6 => Some(IpAddr::V6(Ipv6Addr::from(k.addr))),
        family::ANY if k.addr == [0; 16] => None,
        _ => return None,
    };
    let target = match (u32::from(k.dir), addr, k.port) {
        (direction::OUT, Some(a), 0) => BlockTarget::Victim(a),
        (direction::OUT, None, p) if p != 0 => BlockTarget::Port(p),
        (direction::IN, Some(a), 0) => BlockTarget::Blackhole(a),
        (direction::IN, None, p) if p != 0 => BlockTarget::ListenPort(p),
        _ => return None,
    };
    Some((TenantSlot(k.tenant), target))
}

/// Port 0 with any host would match every portless packet (ICMP): refused.
fn check_block(target: BlockTarget) -> Result<()> {
    match target {
        BlockTarget::Port(0) | BlockTarget::ListenPort(0) => Err(DataplaneError::InvalidBlock(
            format!("{target:?}: port 0 would block every ICMP packet; block a host instead"),
        )),
        _ => Ok(()),
    }
}

/// The programs' fact counters, summed over CPUs (names as
/// [`fact_counter::NAMES`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FactCounters {
    /// Events sent.
    pub sent: u64,
    /// Events not sent: over the tenant's budget (refused by design, not lost;
    /// `warden_events_over_budget_total`).
    pub over_budget: u64,
    /// Events not sent: the ring buffer was full.
    pub lost_ring: u64,
    /// Attempt-log entries written.
    pub logged: u64,
    /// Attempt-log entries not written (a CPU without a region).
    pub lost_log: u64,
    /// Frames captured.
    pub samples: u64,
    /// Packets dropped by a block or blackhole.
    pub blocked: u64,
}

impl FactCounters {
    /// The counters from their per-CPU sums, indexed by [`fact_counter`].
    pub fn from_sums(sums: &[u64; fact_counter::COUNT as usize]) -> FactCounters {
        let at = |i: u32| sums[i as usize];
        FactCounters {
            sent: at(fact_counter::SENT),
            over_budget: at(fact_counter::OVER_BUDGET),
            lost_ring: at(fact_counter::LOST_RING),
            logged: at(fact_counter::LOGGED),
            lost_log: at(fact_counter::LOST_LOG),
            samples: at(fact_counter::SAMPLES),
            blocked: at(fact_counter::BLOCKED),
        }
    }

    /// Events the kernel had to lose: the ring full, or no attempt-log region (part of
    /// `warden_events_lost_total`; the reader adds the log entries written over before
    /// it read them). Events over a tenant's budget are not lost but refused: see
    /// [`FactCounters::over_budget`].
    pub fn lost(&self) -> u64 {
        self.lost_ring + self.lost_log
    }

    /// Events delivered: into the ring or the attempt log.
    pub fn delivered(&self) -> u64 {
        self.sent + self.logged
    }
}

/// Entries in use and capacity of one bounded kernel map (`warden_map_entries`,
/// `warden_map_capacity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapUsage {
    /// The map's name ([`map`]).
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// What an applied policy fills of the kernel maps, for [`Dataplane::map_usage`]: the
/// counts of a [`Compiled`] policy without the policy (kept for as long as it is in
/// force, so it stays small).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyFill {
    /// Entries of [`map::ADDRS_V4`], [`map::ADDRS_V6`] and [`map::MACS`] per generation.
    pub v4: u64,
    pub v6: u64,
    pub macs: u64,
    /// The management prefixes.
    pub management: Vec<ipnet::IpNet>,
}

impl PolicyFill {
    /// What `c` fills.
    pub fn of(c: &Compiled) -> PolicyFill {
        PolicyFill {
            v4: c.v4.len() as u64,
            v6: c.v6.len() as u64,
            macs: c.macs.len() as u64,
            management: c.management.clone(),
        }
    }
}

/// A throttle as the daemon asked for it, kept to recompute after a policy change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Throttle {
    rate_bps: u64,
    until: Duration,
}

/// The slower of two rates; an unlimited rate is never the slower. On a tie the first
/// (the plan, with its own burst) wins.
fn slower(plan: Rate, throttle: Rate) -> Rate {
    if plan.cost_q10 == 0 || (throttle.cost_q10 != 0 && throttle.cost_q10 > plan.cost_q10) {
        throttle
    } else {
        plan
    }
}

/// The rates a throttle to `rate_bps` puts in force, per direction: the lower of it
/// (with the default burst of [`burst_bytes`]) and the policy's plan.
pub fn throttle_rates(plan: [Rate; 2], rate_bps: u64) -> [Rate; 2] {
    let t = Rate::from_bits_per_second(rate_bps, burst_bytes(rate_bps, None));
    [slower(plan[0], t), slower(plan[1], t)]
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Whether a map error is the kernel's "no such element".
fn is_not_found(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Whether a map error is the kernel's "map full".
fn is_full(e: &MapError) -> bool {
    matches!(e, MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::E2BIG))
}

impl Dataplane {
    /// Takes the event ring out of the dataplane (once; a second call is an error).
    pub fn event_reader(&mut self) -> Result<super::EventReader> {
        if self.events_taken {
            return Err(DataplaneError::EventsTaken);
        }
        let m = self
            .ebpf
            .take_map(map::EVENTS)
            .ok_or(DataplaneError::MissingMap(map::EVENTS))?;
        let ring = aya::maps::RingBuf::try_from(m).map_err(map_err(map::EVENTS))?;
        let log = self
            .ebpf
            .take_map(map::ATTEMPT_LOG)
            .ok_or(DataplaneError::MissingMap(map::ATTEMPT_LOG))?;
        let log = match log {
            aya::maps::Map::Array(data) => data,
            _ => return Err(DataplaneError::MissingMap(map::ATTEMPT_LOG)),
        };
        let log = super::log::AttemptLog::new(log).map_err(|e| DataplaneError::Io {
            path: self.bpffs.join("maps").join(map::ATTEMPT_LOG),
            source: e,
        })?;
        self.events_taken = true;
        Ok(super::EventReader::new(ring, Some(log)))
    }

    /// Inserts or refreshes a block until `until` (CLOCK_MONOTONIC), sets
    /// [`runtime_flags::BLOCKS`] for the tenant and counts its blocks version up. A full
    /// map is
    /// [`DataplaneError::BlocksFull`] (nothing changes).
    pub fn block(&mut self, slot: TenantSlot, target: BlockTarget, until: Duration) -> Result<()> {
        let slot = slot.0;
        check_slot(slot)?;
        check_block(target)?;
        let key = block_key(target, TenantSlot(slot));
        let until_ns = nanos(until);
        self.blocks_map_mut()?
            .insert(key, BlockValue { until_ns }, 0)
            .map_err(|e| {
                if is_full(&e) {
                    DataplaneError::BlocksFull {
                        capacity: MAX_BLOCKS,
                    }
                } else {
                    map_err(map::BLOCKS)(e)
                }
            })?;
        if self.block_expiry.insert(key, until_ns).is_none() {
            *self.block_counts.entry(slot).or_insert(0) += 1;
        }
        // After the write: the programs' kept answers for the tenant give way.
        self.update_runtime(slot, |r| {
            r.flags = runtime_flags::next_blocks_version(r.flags) | runtime_flags::BLOCKS;
        })
    }

    /// Removes a block (nothing to do when there is none) and clears
    /// [`runtime_flags::BLOCKS`] when the tenant has no blocks left.
    pub fn unblock(&mut self, slot: TenantSlot, target: BlockTarget) -> Result<()> {
        let slot = slot.0;
        check_slot(slot)?;
        self.remove_block(&block_key(target, TenantSlot(slot)))
    }

    /// Throttles the tenant to the lower of `rate_bps` and its policy plan per
    /// direction until `until` (CLOCK_MONOTONIC), or lifts the throttle (`None`). The
    /// programs ignore an expired throttle on their own. A policy applied later
    /// recomputes the throttle against the new plan ([`Dataplane::apply`]).
    pub fn throttle(
        &mut self,
        slot: TenantSlot,
        rate_bps: Option<u64>,
        until: Duration,
    ) -> Result<()> {
        let slot = slot.0;
        check_slot(slot)?;
        match rate_bps {
            Some(0) => Err(DataplaneError::InvalidThrottle(
                "a throttle to 0 bit/s would be unlimited; suspend or block instead".into(),
            )),
            Some(rate_bps) => {
                let plan = self.active_plan(slot)?;
                let rates = throttle_rates(plan, rate_bps);
                self.update_runtime(slot, |r| {
                    r.flags |= runtime_flags::THROTTLE;
                    r.throttle = rates;
                    r.throttle_until_ns = nanos(until);
                })?;
                self.throttles.insert(slot, Throttle { rate_bps, until });
                Ok(())
            }
            None => {
                self.update_runtime(slot, |r| {
                    r.flags &= !runtime_flags::THROTTLE;
                    r.throttle = [Rate::UNLIMITED; 2];
                    r.throttle_until_ns = 0;
                })?;
                self.throttles.remove(&slot);
                Ok(())
            }
        }
    }

    /// Contains the tenant until `until` (CLOCK_MONOTONIC): its new outbound first
    /// contacts pass at `per_second`, one at a time, the rest are dropped as `blocked`
    /// (see the programs' `enforce::contain`); or lifts the containment (`None`). The
    /// programs ignore an expired containment on their own.
    pub fn contain(&mut self, slot: TenantSlot, contain: Option<(f64, Duration)>) -> Result<()> {
        let slot = slot.0;
        check_slot(slot)?;
        match contain {
            Some((per_second, _)) if !(per_second > 0.0 && per_second.is_finite()) => {
                Err(DataplaneError::InvalidThrottle(format!(
                    "a containment at {per_second} first contacts a second would be unlimited; block instead"
                )))
            }
            Some((per_second, until)) => self.update_runtime(slot, |r| {
                r.flags |= runtime_flags::CONTAIN;
                r.contain = Rate::from_events_per_second(per_second, 1);
                r.contain_until_ns = nanos(until);
            }),
            None => self.update_runtime(slot, |r| {
                r.flags &= !runtime_flags::CONTAIN;
                r.contain = Rate::UNLIMITED;
                r.contain_until_ns = 0;
            }),
        }
    }

    /// Asks the programs to capture the tenant's next `frames` frames as sample events
    /// (0 or less stops a capture under way).
    pub fn capture(&mut self, slot: TenantSlot, frames: i32) -> Result<()> {
        let slot = slot.0;
        check_slot(slot)?;
        self.update_runtime(slot, |r| r.capture = frames.max(0))
    }

    /// Deletes blocks whose expiry is at or before `now` (the programs already ignore
    /// them) and clears [`runtime_flags::BLOCKS`] of tenants left without any; returns
    /// how many were deleted. Works from the daemon's copy of the map: no map walk.
    pub fn sweep_blocks(&mut self, now: Duration) -> Result<usize> {
        let now = nanos(now);
        let expired: Vec<BlockKey> = self
            .block_expiry
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in &expired {
            self.remove_block(key)?;
        }
        Ok(expired.len())
    }

    /// Every block in the kernel with its expiry, read from the map (e.g. after a
    /// restart adopted it); expired ones not yet swept included.
    pub fn blocks(&self) -> Result<Vec<(TenantSlot, BlockTarget, Duration)>> {
        Ok(self
            .blocks_raw()?
            .into_iter()
            .filter_map(|(k, v)| match block_of_key(&k) {
                Some((slot, target)) => Some((slot, target, Duration::from_nanos(v.until_ns))),
                None => {
                    tracing::warn!(?k, "ignoring a block key Warden does not write");
                    None
                }
            })
            .collect())
    }

    /// How many blocks the tenant has in the kernel (expired ones not yet swept
    /// included).
    pub fn block_count(&self, slot: TenantSlot) -> u32 {
        self.block_counts.get(&slot.0).copied().unwrap_or(0)
    }

    /// Tenants with a throttle set by this daemon and its expiry.
    pub fn throttles(&self) -> impl Iterator<Item = (TenantSlot, Duration)> + '_ {
        self.throttles
            .iter()
            .map(|(t, th)| (TenantSlot(*t), th.until))
    }

    /// A tenant's runtime state as the programs see it.
    pub fn runtime(&self, slot: TenantSlot) -> Result<TenantRuntime> {
        let slot = slot.0;
        check_slot(slot)?;
        self.array::<TenantRuntime>(map::TENANT_RUNTIME)?
            .get(&slot, 0)
            .map_err(map_err(map::TENANT_RUNTIME))
    }

    /// The programs' fact counters, summed over CPUs.
    pub fn fact_counters(&self) -> Result<FactCounters> {
        let arr: PerCpuArray<&MapData, u64> = self.per_cpu(map::FACT_COUNTERS)?;
        let mut sums = [0u64; fact_counter::COUNT as usize];
        for (i, sum) in sums.iter_mut().enumerate() {
            let v = arr
                .get(&(i as u32), 0)
                .map_err(map_err(map::FACT_COUNTERS))?;
            *sum = v.iter().fold(0u64, |a, x| a.wrapping_add(*x));
        }
        Ok(FactCounters::from_sums(&sums))
    }

    /// The shaping counters (`SHAPE_STATS`), summed over CPUs, read in one
    /// `BPF_MAP_LOOKUP_BATCH`.
    pub fn shape_stats(&self) -> Result<ShapeStats> {
        use warden_common::shape::stat;
        let sums = self.per_cpu_batch::<u64>(map::SHAPE_STATS, stat::COUNT, |a, b| {
            *a = a.wrapping_add(*b)
        })?;
        let at = |i: u32| sums.get(i as usize).copied().unwrap_or(0);
        Ok(ShapeStats {
            flows: at(stat::ASSIGNED),
            untracked_packets: at(stat::UNTRACKED),
        })
    }

    /// Entries in use and capacity of the bounded maps: those a policy fills (`p`, with
    /// [`CAPACITIES`], per generation), [`map::BLOCKS`] and the management tries.
    pub fn map_usage(&self, p: &PolicyFill, tenants: usize) -> Vec<MapUsage> {
        let fill = |m: &str| match m {
            map::ADDRS_V4 => p.v4,
            map::ADDRS_V6 => p.v6,
            map::MACS => p.macs,
            map::TENANT_COUNTERS => tenants as u64,
            _ => 0,
        };
        let mut out: Vec<MapUsage> = CAPACITIES
            .iter()
            .map(|(m, cap)| MapUsage {
                map: m,
                entries: fill(m),
                capacity: u64::from(*cap),
            })
            .collect();
        out.push(MapUsage {
            map: map::BLOCKS,
            entries: self.block_expiry.len() as u64,
            capacity: u64::from(MAX_BLOCKS),
        });
        // The management tries hold the distinct prefixes (not generational).
        let prefixes: std::collections::HashSet<ipnet::IpNet> =
            p.management.iter().map(|n| n.trunc()).collect();
        let v4 = prefixes.iter().filter(|n| n.addr().is_ipv4()).count() as u64;
        for (m, entries) in [
            (map::MANAGEMENT_V4, v4),
            (map::MANAGEMENT_V6, prefixes.len() as u64 - v4),
        ] {
            out.push(MapUsage {
                map: m,
                entries,
                capacity: u64::from(warden_common::MAX_MANAGEMENT),
            });
        }
        out
    }

    /// Packets and bytes `[out, in]` of tenant slots `0..slots`, summed over CPUs: what
    /// [`Dataplane::tenant_counters`] gives per slot, in a few batch syscalls
    /// (`/metrics` reads every tenant on every scrape).
    pub fn all_tenant_counters(&self, slots: u32) -> Result<Vec<[Counters; 2]>> {
        let flat = self.per_cpu_batch(
            map::TENANT_COUNTERS,
            slots * direction::COUNT,
            |a: &mut Counters, c| {
                a.packets = a.packets.wrapping_add(c.packets);
                a.bytes = a.bytes.wrapping_add(c.bytes);
            },
        )?;
        Ok(flat.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
    }

    /// Drops by reason `[out, in]` of tenant slots `0..slots`, summed over CPUs, as
    /// [`Dataplane::drop_counters`] gives them per slot.
    pub fn all_drop_counters(&self, slots: u32) -> Result<Vec<[DropCounters; 2]>> {
        let flat = self.per_cpu_batch(map::DROP_COUNTERS, slots * direction::COUNT, add_drops)?;
        Ok(flat
            .chunks_exact(2)
            .enumerate()
            .map(|(slot, c)| {
                let mut out = c[0];
                out.packets[reason::BANDWIDTH] += self.queue_drops(slot as u32);
                [out, c[1]]
            })
            .collect())
    }

    /// Drops by reason of tenant slots `0..slots`, summed over CPUs and both directions
    /// (what the once-a-second sample needs), read as [`Dataplane::all_drop_counters`]
    /// but folded while reading: half the memory, and no table of both directions.
    pub fn all_drop_totals(&self, slots: u32) -> Result<Vec<[u64; reason::COUNT]>> {
        self.all_drop_totals_as(slots, |totals| *totals)
    }

    /// [`Dataplane::all_drop_totals`], each slot's totals handed to `fold` as they are
    /// read and only what it returns kept: the sample keeps 4 of the 9 reasons, the
    /// traffic history their sum, so neither holds a table of every reason (some 7 MiB
    /// at 100,000 tenants).
    pub fn all_drop_totals_as<T>(
        &self,
        slots: u32,
        fold: impl Fn(&[u64; reason::COUNT]) -> T,
    ) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(slots as usize);
        let mut first: Option<DropCounters> = None;
        self.per_cpu_batch_each(
            map::DROP_COUNTERS,
            slots * direction::COUNT,
            add_drops,
            |d: DropCounters| match first.take() {
                None => first = Some(d),
                Some(mut both) => {
                    add_drops(&mut both, &d);
                    both.packets[reason::BANDWIDTH] += self.queue_drops(out.len() as u32);
                    out.push(fold(&both.packets));
                }
            },
        )?;
        Ok(out)
    }

    /// Entries `0..n` of the per-CPU array `name`, each summed over CPUs with `add`,
    /// read with `BPF_MAP_LOOKUP_BATCH` (which aya does not wrap) in chunks.
    fn per_cpu_batch<V: aya::Pod + Default>(
        &self,
        name: &'static str,
        n: u32,
        add: impl Fn(&mut V, &V),
    ) -> Result<Vec<V>> {
        let mut out = Vec::with_capacity(n as usize);
        self.per_cpu_batch_each(name, n, add, |v| out.push(v))?;
        Ok(out)
    }

    /// [`Dataplane::per_cpu_batch`], handing each entry's sum to `each` in index order
    /// instead of collecting them: a reader that folds entries together never holds
    /// them all.
    fn per_cpu_batch_each<V: aya::Pod + Default>(
        &self,
        name: &'static str,
        n: u32,
        add: impl Fn(&mut V, &V),
        mut each: impl FnMut(V),
    ) -> Result<()> {
        use super::batch::{self, BatchAttr};
        use std::os::fd::{AsFd as _, AsRawFd as _};
        const CHUNK: u32 = 4096;
        let fail = |detail: String| DataplaneError::Io {
            path: format!("map {name} (BPF_MAP_LOOKUP_BATCH)").into(),
            source: std::io::Error::other(detail),
        };
        let aya::maps::Map::PerCpuArray(data) = self.raw(name)? else {
            return Err(fail("not a per-CPU array".into()));
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let cpus = aya::util::nr_cpus().map_err(|(path, e)| DataplaneError::Io {
            path: path.into(),
            source: e,
        })?;
        // The kernel lays out each CPU's value at a multiple of 8 bytes.
        let stride = std::mem::size_of::<V>().next_multiple_of(8);
        let mut done = 0usize;
        let mut keys = vec![0u32; CHUNK as usize];
        let mut values = vec![0u8; CHUNK as usize * stride * cpus];
        let (mut prev, mut next) = (0u32, 0u32);
        while done < n as usize {
            let want = (n - done as u32).min(CHUNK);
            let mut attr = BatchAttr {
                in_batch: if done == 0 {
                    0
                } else {
                    &prev as *const u32 as u64
                },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: want,
                map_fd: fd as u32,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: `attr` points at buffers of `want` keys and `want` per-CPU values
            // (each `cpus` strides) and at `prev`/`next`, all alive across the call;
            // the kernel writes no more than `count` elements.
            let r = unsafe { batch::run(batch::LOOKUP, &mut attr) };
            let end = if let Err(e) = r {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    return Err(DataplaneError::Io {
                        path: format!("map {name} (BPF_MAP_LOOKUP_BATCH)").into(),
                        source: e,
                    });
                }
                true
            } else {
                false
            };
            let got = (attr.count as usize).min(want as usize);
            for (i, key) in keys.iter().enumerate().take(got) {
                if *key as usize != done {
                    return Err(fail(format!("key {key} where {} was due", done)));
                }
                let mut sum = V::default();
                for c in 0..cpus {
                    let off = (i * cpus + c) * stride;
                    // SAFETY: `off + size_of::<V>()` is inside `values` (i < want <=
                    // CHUNK), V is plain data (Pod), and the read is unaligned-safe.
                    let v: V = unsafe { std::ptr::read_unaligned(values.as_ptr().add(off).cast()) };
                    add(&mut sum, &v);
                }
                each(sum);
                done += 1;
            }
            if end && done < n as usize {
                return Err(fail(format!("{} entries, {n} wanted", done)));
            }
            if got == 0 && done < n as usize {
                return Err(fail("no entries returned".into()));
            }
            prev = next;
        }
        Ok(())
    }

    /// `(program, runs, run time in ns)` of each pinned program, from the kernel's
    /// program info (`BPF_OBJ_GET_INFO_BY_FD` on `progs/NAME` under bpffs); programs
    /// not pinned yet are left out. The kernel counts only while
    /// `kernel.bpf_stats_enabled` is 1.
    pub fn program_runs(&self) -> Result<Vec<(&'static str, u64, u64)>> {
        use warden_common::program;
        let dir = self.bpffs.join("progs");
        let mut out = Vec::new();
        for name in program::ENFORCING {
            let path = dir.join(name);
            if !path.exists() {
                continue;
            }
            let info = aya::programs::ProgramInfo::from_pin(&path)
                .map_err(|source| DataplaneError::Program { name, source })?;
            out.push((
                name,
                info.run_count(),
                u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            ));
        }
        Ok(out)
    }

    /// Reads the blocks back from the kernel (at open: a restarted daemon adopts the
    /// blocks it left). A missing map (an object without detection) has no blocks.
    pub(super) fn load_blocks(&mut self) -> Result<()> {
        self.block_expiry.clear();
        self.block_counts.clear();
        if self.ebpf.map(map::BLOCKS).is_none() {
            return Ok(());
        }
        for (k, v) in self.blocks_raw()? {
            self.block_expiry.insert(k, v.until_ns);
            *self.block_counts.entry(k.tenant).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Forgets a tenant slot's runtime state for a new tenant: zeroes its
    /// TENANT_RUNTIME entry and deletes its blocks.
    pub(super) fn reset_runtime(&mut self, tenant: u32) -> Result<()> {
        if self.block_counts.contains_key(&tenant) {
            let keys: Vec<BlockKey> = self
                .block_expiry
                .keys()
                .filter(|k| k.tenant == tenant)
                .copied()
                .collect();
            for k in keys {
                self.remove_block(&k)?;
            }
        }
        self.throttles.remove(&tenant);
        if self.ebpf.map(map::TENANT_RUNTIME).is_some() {
            self.array_mut::<TenantRuntime>(map::TENANT_RUNTIME)?
                .set(tenant, TenantRuntime::default(), 0)
                .map_err(map_err(map::TENANT_RUNTIME))?;
        }
        Ok(())
    }

    /// Recomputes every throttle this daemon set against the plans of the generation
    /// just activated; throttles that expired are forgotten.
    pub(super) fn refresh_throttles(&mut self) -> Result<()> {
        let now = super::monotonic_now();
        self.throttles.retain(|_, t| t.until > now);
        let live: Vec<(u32, Throttle)> = self.throttles.iter().map(|(k, v)| (*k, *v)).collect();
        for (slot, t) in live {
            self.throttle(TenantSlot(slot), Some(t.rate_bps), t.until)?;
        }
        Ok(())
    }

    /// The tenant's plan per direction in the active generation.
    fn active_plan(&self, tenant: u32) -> Result<[Rate; 2]> {
        if let Some(cfg) = self.active_configs.as_ref().and_then(|c| c.get(&tenant)) {
            return Ok(cfg.rate);
        }
        Ok(self
            .array::<TenantConfig>(map::TENANT_CONFIG)?
            .get(&tenant_config_index(self.active, tenant), 0)
            .map_err(map_err(map::TENANT_CONFIG))?
            .rate)
    }

    /// Read-modify-write of a tenant's whole TENANT_RUNTIME entry. The programs only
    /// count `capture` down, so a frame captured in between may be captured once more.
    fn update_runtime(&mut self, tenant: u32, f: impl FnOnce(&mut TenantRuntime)) -> Result<()> {
        let mut arr: Array<&mut MapData, TenantRuntime> = self.array_mut(map::TENANT_RUNTIME)?;
        let mut r = arr.get(&tenant, 0).map_err(map_err(map::TENANT_RUNTIME))?;
        f(&mut r);
        arr.set(tenant, r, 0).map_err(map_err(map::TENANT_RUNTIME))
    }

    /// Deletes a block from the kernel and the daemon's copy; with the tenant's last
    /// block, clears its flag. A block already gone from the kernel is not an error.
    fn remove_block(&mut self, key: &BlockKey) -> Result<()> {
        let deleted = match self.blocks_map_mut()?.remove(key) {
            Ok(()) => true,
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(map_err(map::BLOCKS)(e)),
        };
        let known = self.block_expiry.remove(key).is_some();
        if !deleted && !known {
            return Ok(());
        }
        let left = match self.block_counts.get_mut(&key.tenant) {
            Some(n) if known => {
                *n = n.saturating_sub(1);
                *n
            }
            Some(n) => *n,
            None => 0,
        };
        if left == 0 {
            self.block_counts.remove(&key.tenant);
        }
        // After the delete: the programs' kept answers for the tenant give way.
        self.update_runtime(key.tenant, |r| {
            r.flags = runtime_flags::next_blocks_version(r.flags);
            if left == 0 {
                r.flags &= !runtime_flags::BLOCKS;
            }
        })
    }

    fn blocks_raw(&self) -> Result<Vec<(BlockKey, BlockValue)>> {
        let m = self.raw(map::BLOCKS)?;
        let blocks: BpfHashMap<&MapData, BlockKey, BlockValue> =
            BpfHashMap::try_from(m).map_err(map_err(map::BLOCKS))?;
        let mut out = Vec::new();
        for entry in blocks.iter() {
            match entry {
                Ok(kv) => out.push(kv),
                // Deleted between listing its key and reading it.
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(map_err(map::BLOCKS)(e)),
            }
        }
        Ok(out)
    }

    fn blocks_map_mut(&mut self) -> Result<BpfHashMap<&mut MapData, BlockKey, BlockValue>> {
        BpfHashMap::try_from(self.raw_mut(map::BLOCKS)?).map_err(map_err(map::BLOCKS))
    }
}

fn check_slot(slot: u32) -> Result<()> {
    if slot >= MAX_TENANTS {
        return Err(DataplaneError::TenantOutOfRange(slot));
    }
    Ok(())
}

/// Adds drops `c` to `a`, reason by reason.
fn add_drops(a: &mut DropCounters, c: &DropCounters) {
    for (acc, x) in a.packets.iter_mut().zip(c.packets) {
        *acc = acc.wrapping_add(x);
    }
}

#[cfg(test)]
mod tests;
