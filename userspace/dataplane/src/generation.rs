//! Writing a policy: the compiled tables go into the inactive generation in batches, and
//! one array write switches to it, so no packet sees half a policy; new tenants' slots
//! are zeroed first.

use super::*;

/// Value bytes per `BPF_MAP_UPDATE_BATCH`: large enough that a 100,000-tenant apply
/// takes a few dozen syscalls, small enough that the buffers stay small on machines
/// with many CPUs (per-CPU values are one per CPU).
pub const BATCH_BYTES: usize = 1 << 20;

/// Entries of `entry_bytes` each per batch call: as many as fit [`BATCH_BYTES`], at
/// least one.
pub(crate) fn batch_entries(entry_bytes: usize) -> usize {
    (BATCH_BYTES / entry_bytes.max(1)).max(1)
}

/// Capacities of the bounded maps, for `warden_map_capacity` (per generation where
/// the map holds two).
pub const CAPACITIES: [(&str, u32); 4] = [
    (map::ADDRS_V4, MAX_PREFIXES),
    (map::ADDRS_V6, MAX_PREFIXES),
    (map::MACS, MAX_MACS),
    (map::TENANT_COUNTERS, MAX_TENANTS),
];

/// One generation's tables as placed in the kernel.
pub struct GenTables {
    /// `ADDRS_V4` buckets of this generation's half.
    pub v4: Vec<Bucket64>,
    /// `ADDRS_V6` buckets of this generation's half.
    pub v6: Vec<Bucket128>,
    /// `MACS` buckets of this generation's half.
    pub macs: Vec<Bucket64>,
    /// `TENANT_CONFIG` entries by tenant index.
    pub configs: HashMap<u32, TenantConfig>,
}

impl GenTables {
    /// Places a compiled policy for `generation` exactly as [`Dataplane::apply`] does
    /// (tests and benchmarks write maps through this too).
    pub fn build(generation: u32, c: &Compiled) -> Result<Self> {
        let v4: Vec<Slot64> =
            c.v4.iter()
                .map(|(&(len, net), &t)| Slot64 {
                    key: table::key_v4(generation, len.into(), u32::from_be_bytes(net)),
                    tenant: t,
                    _pad: 0,
                })
                .collect();
        let v6: Vec<Slot128> =
            c.v6.iter()
                .map(|(&(len, net), &t)| {
                    let a = u128::from_be_bytes(net);
                    Slot128 {
                        hi: (a >> 64) as u64,
                        lo: a as u64,
                        meta: table::meta_v6(generation, len.into()),
                        tenant: t,
                    }
                })
                .collect();
        let macs: Vec<Slot64> = c
            .macs
            .iter()
            .map(|(&mac, &t)| Slot64 {
                key: table::key_mac(generation, mac),
                tenant: t,
                _pad: 0,
            })
            .chain(c.ports.iter().map(|(&(ifindex, vlan), &t)| Slot64 {
                key: table::key_port(generation, ifindex, vlan),
                tenant: t,
                _pad: 0,
            }))
            .collect();
        // Sorted input makes placement stable: the same policy gives the same tables.
        let sorted64 = |mut v: Vec<Slot64>| {
            v.sort_by_key(|s| s.key);
            v
        };
        let mut v6 = v6;
        v6.sort_by_key(|s| (s.meta, s.hi, s.lo));
        Ok(Self {
            v4: cuckoo::as_bucket64(cuckoo::place(map::ADDRS_V4, table::V4_BITS, &sorted64(v4))?),
            v6: cuckoo::as_bucket128(cuckoo::place(map::ADDRS_V6, table::V6_BITS, &v6)?),
            macs: cuckoo::as_bucket64(cuckoo::place(map::MACS, table::MAC_BITS, &sorted64(macs))?),
            configs: c.configs.clone(),
        })
    }
}

/// Buckets emptied per table per [`Dataplane::settle_inactive_half`]: a whole IPv4 or
/// IPv6 half (4 and 8 MiB) and half the MAC one, tens of milliseconds of batched
/// writes; a half is known two ticks after it can be settled.
pub const SETTLE_CHUNK: usize = 65_536;

/// Which buckets of each table may hold an entry in one generation's half (a bit per
/// bucket: 32 KiB for the three tables): those this daemon last wrote an entry into,
/// and every bucket whose content it does not know (after a start, until emptied by
/// [`Dataplane::settle_inactive_half`] or written by an apply). Kept so the next write
/// of the half touches only these and the ones its policy fills: a one-tenant policy
/// writes a few buckets instead of 20 MiB.
pub(crate) struct HalfFill {
    v4: Vec<u64>,
    v6: Vec<u64>,
    macs: Vec<u64>,
    /// The marks are the buckets an apply wrote entries into (nothing to settle), not
    /// buckets of unknown content.
    exact: bool,
}

impl HalfFill {
    /// Every bucket marked: nothing known of the half.
    pub(crate) fn unknown() -> Self {
        let all = |n: u32| vec![u64::MAX; (n as usize).div_ceil(64)];
        Self {
            v4: all(table::V4_BUCKETS),
            v6: all(table::V6_BUCKETS),
            macs: all(table::MAC_BUCKETS),
            exact: false,
        }
    }

    fn of(v4: &[Bucket64], v6: &[Bucket128], macs: &[Bucket64]) -> Self {
        fn marks<B>(buckets: &[B], used: impl Fn(&B) -> bool) -> Vec<u64> {
            let mut bits = vec![0u64; buckets.len().div_ceil(64)];
            for (i, b) in buckets.iter().enumerate() {
                if used(b) {
                    bits[i / 64] |= 1 << (i % 64);
                }
            }
            bits
        }
        let used64 = |b: &Bucket64| b.slots.iter().any(|s| s.key != table::EMPTY);
        Self {
            v4: marks(v4, used64),
            v6: marks(v6, |b: &Bucket128| {
                b.slots.iter().any(|s| s.meta != table::EMPTY_META)
            }),
            macs: marks(macs, used64),
            exact: true,
        }
    }
}

/// The bucket indices a bitmap (a bit per bucket, lowest first) marks, at most `limit`.
fn marked(words: impl Iterator<Item = u64>, limit: usize) -> Vec<u32> {
    words
        .enumerate()
        .flat_map(|(w, mut word)| {
            std::iter::from_fn(move || {
                (word != 0).then(|| {
                    let bit = word.trailing_zeros() as usize;
                    word &= word - 1;
                    (w * 64 + bit) as u32
                })
            })
        })
        .take(limit)
        .collect()
}

impl Dataplane {
    /// Zeroes a slot's counters, drops, buckets and runtime state (throttle, capture)
    /// and deletes its blocks, for a tenant that was just given it.
    pub fn reset_slot(&mut self, slot: TenantSlot) -> Result<()> {
        self.reset_slots(&[slot])
    }

    /// [`Dataplane::reset_slot`] of every slot in `slots`, with one
    /// `BPF_MAP_UPDATE_BATCH` per map (per [`BATCH_BYTES`] of values) instead of a few
    /// syscalls per slot: a policy that brings 100,000 new tenants resets them all in a
    /// few dozen syscalls. On an error some of the slots may be reset and others not;
    /// the caller applies nothing then (a slot is reset again when next handed out).
    pub fn reset_slots(&mut self, slots: &[TenantSlot]) -> Result<()> {
        let slots: Vec<u32> = slots.iter().map(|s| s.0).collect();
        let slots = slots.as_slice();
        if slots.is_empty() {
            return Ok(());
        }
        // Each CPU's value of a per-CPU array sits at a multiple of 8 bytes.
        let per_cpu = |size: usize| size.next_multiple_of(8) * self.cpus;
        let (counters, drops) = (
            per_cpu(std::mem::size_of::<Counters>()),
            per_cpu(std::mem::size_of::<DropCounters>()),
        );
        let per_direction: Vec<u32> = slots
            .iter()
            .flat_map(|&slot| (0..direction::COUNT).map(move |d| tenant_counter_index(slot, d)))
            .collect();
        self.zero_entries(map::TENANT_COUNTERS, &per_direction, counters)?;
        self.zero_entries(map::DROP_COUNTERS, &per_direction, drops)?;
        let buckets: Vec<u32> = slots
            .iter()
            .flat_map(|&slot| (0..bucket::PER_TENANT).map(move |w| bucket::index(slot, w)))
            .collect();
        self.zero_entries(map::BUCKETS, &buckets, std::mem::size_of::<Bucket>())?;
        if self.ebpf.map(map::TENANT_RUNTIME).is_some() {
            let idle = vec![facts::TenantRuntime::default(); slots.len()];
            self.set_entries(map::TENANT_RUNTIME, slots, &idle)?;
        }
        for &slot in slots {
            // Blocks and throttles the daemon set for the slot's previous holder.
            if self.block_counts.contains_key(&slot) || self.throttles.contains_key(&slot) {
                self.reset_runtime(slot)?;
            }
        }
        Ok(())
    }

    /// Sets the entries `keys` of the array or per-CPU array `name` to zeros,
    /// `entry_bytes` per entry (every CPU's value for a per-CPU array). Counters, drops
    /// and buckets are plain integers, so zero bytes are their defaults.
    pub(crate) fn zero_entries(
        &mut self,
        name: &'static str,
        keys: &[u32],
        entry_bytes: usize,
    ) -> Result<()> {
        let per_call = batch_entries(entry_bytes);
        let zeros = vec![0u8; entry_bytes * keys.len().min(per_call)];
        for chunk in keys.chunks(per_call) {
            self.update_batch(name, chunk, &zeros[..chunk.len() * entry_bytes])?;
        }
        Ok(())
    }

    /// Sets entry `keys[i]` of the array `name` to `values[i]`, in batches.
    pub(crate) fn set_entries<V: Pod>(
        &mut self,
        name: &'static str,
        keys: &[u32],
        values: &[V],
    ) -> Result<()> {
        if keys.len() != values.len() {
            return Err(DataplaneError::Io {
                path: format!("map {name} (BPF_MAP_UPDATE_BATCH)").into(),
                source: std::io::Error::other(format!(
                    "{} keys for {} values",
                    keys.len(),
                    values.len()
                )),
            });
        }
        let size = std::mem::size_of::<V>();
        let per_call = batch_entries(size);
        for (k, v) in keys.chunks(per_call).zip(values.chunks(per_call)) {
            // SAFETY: `V: Pod` is plain data without padding, so its bytes are
            // initialised; the slice covers exactly `v.len()` values.
            let bytes = unsafe {
                std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v))
            };
            self.update_batch(name, k, bytes)?;
        }
        Ok(())
    }

    /// One `BPF_MAP_UPDATE_BATCH` (which aya does not wrap) of the array or per-CPU
    /// array `name`: `values` holds one value per key (every CPU's for a per-CPU
    /// array), laid out as the kernel expects.
    pub(crate) fn update_batch(
        &mut self,
        name: &'static str,
        keys: &[u32],
        values: &[u8],
    ) -> Result<()> {
        use batch::BatchAttr;
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let fail = |source: std::io::Error| DataplaneError::Io {
            path: format!("map {name} (BPF_MAP_UPDATE_BATCH)").into(),
            source,
        };
        if keys.is_empty() {
            return Ok(());
        }
        let fd = match self.raw_mut(name)? {
            Map::Array(data) | Map::PerCpuArray(data) => data.fd().as_fd().as_raw_fd(),
            _ => return Err(fail(std::io::Error::other("not an array"))),
        };
        if !values.len().is_multiple_of(keys.len()) {
            return Err(fail(std::io::Error::other(format!(
                "{} value bytes for {} keys",
                values.len(),
                keys.len()
            ))));
        }
        let count = u32::try_from(keys.len())
            .map_err(|_| fail(std::io::Error::other("batch too large")))?;
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the attr points at `keys` and `values`, which outlive the call and
        // hold `count` keys and `count` values of the map's value size (callers pass
        // the map's layout, checked against the pins at open); the kernel writes back
        // only `count`.
        unsafe { batch::run(batch::UPDATE, &mut attr) }.map_err(fail)?;
        if attr.count != count {
            return Err(fail(std::io::Error::other(format!(
                "wrote {} of {count} entries",
                attr.count
            ))));
        }
        Ok(())
    }

    /// Writes `new` into the inactive generation, then makes it active with one
    /// write. A failure before the flip leaves the active generation untouched. After
    /// the flip, throttles set by this daemon are recomputed against the new plans.
    pub fn apply(&mut self, new: &Compiled) -> Result<()> {
        self.record_active();
        let target = 1 - self.active;
        // Packets that read the generation before the last flip may still be using
        // the half we are about to rewrite; programs run for microseconds, so a short
        // wait since that flip makes the half ours alone.
        if let Some(at) = self.last_flip {
            let quiet = std::time::Duration::from_millis(10);
            if let Some(left) = quiet.checked_sub(at.elapsed()) {
                std::thread::sleep(left);
            }
        }
        let placing = std::time::Instant::now();
        let tables = GenTables::build(target, new)?;
        let writing = std::time::Instant::now();
        // Only the buckets that hold an entry now or held one when this half was last
        // written: the rest are empty on both sides. A half whose content is not known
        // (adopted at open, or a write that failed part way) is written whole.
        let GenTables {
            v4,
            v6,
            macs,
            configs,
        } = tables;
        let fill = HalfFill::of(&v4, &v6, &macs);
        // Not known until every write below succeeded.
        let before = std::mem::replace(&mut self.half_fill[target as usize], HalfFill::unknown());
        let (v4_base, v6_base, mac_base) = (
            target * table::V4_BUCKETS,
            target * table::V6_BUCKETS,
            target * table::MAC_BUCKETS,
        );
        let mut buckets_written = 0;
        buckets_written += self.write_changed(map::ADDRS_V4, v4_base, &v4, &fill.v4, &before.v4)?;
        buckets_written += self.write_changed(map::ADDRS_V6, v6_base, &v6, &fill.v6, &before.v6)?;
        buckets_written +=
            self.write_changed(map::MACS, mac_base, &macs, &fill.macs, &before.macs)?;
        self.half_fill[target as usize] = fill;
        // Some 18 MiB at 100,000 tenants: gone before anything else is allocated.
        drop((v4, v6, macs));
        {
            let (keys, values): (Vec<u32>, Vec<TenantConfig>) = configs
                .iter()
                .map(|(&index, cfg)| (tenant_config_index(target, index), *cfg))
                .unzip();
            self.set_entries(map::TENANT_CONFIG, &keys, &values)?;
        }
        self.array_mut::<GenConfig>(map::GEN_CONFIG)?
            .set(target, gen_config(new), 0)
            .map_err(map_err(map::GEN_CONFIG))?;
        self.sync_management(&new.management)?;
        let flipping = std::time::Instant::now();
        // The flip: from the next packet on, every lookup uses the new generation.
        self.array_mut::<u32>(map::ACTIVE)?
            .set(0, target, 0)
            .map_err(map_err(map::ACTIVE))?;
        self.last_apply = ApplyTimings {
            place: writing - placing,
            write: flipping - writing,
            flip: flipping.elapsed(),
            buckets_written,
        };
        self.active = target;
        self.last_flip = Some(std::time::Instant::now());
        // Of the generation in force only its tenants' settings are kept (tenants are
        // pointed at their shaping classes and throttled against their plans in place)
        // and which of its buckets hold entries ([`HalfFill`], 32 KiB); its address and
        // MAC buckets (some 18 MiB at 100,000 tenants) are not: the next apply to a half
        // writes the buckets that hold or held an entry, in batches (all of them at
        // 100,000 tenants, which takes tens of milliseconds; a few for a small policy).
        self.active_configs = Some(configs);
        // The policy is in force now; a throttle left at a rate the new plan undercuts
        // is wrong but not unsafe (it expires), so this cannot fail the apply.
        if let Err(e) = self.refresh_throttles() {
            tracing::warn!(error = %e, "recomputing throttles for the new plans");
        }
        Ok(())
    }

    /// Points the settings of `slots` in the active generation at their shaping class
    /// (made since that generation was written), in place: only `shape_class` changes,
    /// so a packet reading the entry meanwhile sees the tenant policed or shaped.
    pub(crate) fn point_at_classes(&mut self, slots: &[u32]) -> Result<()> {
        if slots.is_empty() {
            return Ok(());
        }
        let active = self.active;
        let Some(configs) = self.active_configs.as_mut() else {
            return Err(DataplaneError::Shaping {
                what: "pointing tenants at their shaping classes".into(),
                detail: "the active generation's settings are not known".into(),
            });
        };
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for &slot in slots {
            if let Some(cfg) = configs.get_mut(&slot) {
                cfg.shape_class = warden_common::shape::class_id(slot);
                keys.push(tenant_config_index(active, slot));
                values.push(*cfg);
            }
        }
        self.set_entries(map::TENANT_CONFIG, &keys, &values)
    }

    /// Empties, a part at a time, the inactive generation's half when its content is
    /// not known (after a start: adopted, or left by the generation the start's first
    /// apply replaced; a half an apply wrote is known and left alone), once the active
    /// generation has been in force for `idle`: at most [`SETTLE_CHUNK`] buckets per
    /// table per call, so the enforcement lock is held for tens of milliseconds. Once a half is known, the next apply to it
    /// writes only the buckets its policy fills or filled instead of the whole half
    /// (20 MiB). The daemon calls this from its once-a-second tick, so the whole write
    /// is not on a policy change's path. How many buckets it emptied.
    pub fn settle_inactive_half(&mut self, idle: std::time::Duration) -> Result<usize> {
        let target = 1 - self.active;
        let in_force = self.last_flip.is_some_and(|at| at.elapsed() >= idle);
        if !in_force || self.starting() || self.half_fill[target as usize].exact {
            return Ok(0);
        }
        let mut fill = std::mem::replace(&mut self.half_fill[target as usize], HalfFill::unknown());
        let r = (|| {
            Ok(self.settle_table(
                map::ADDRS_V4,
                target * table::V4_BUCKETS,
                &mut fill.v4,
                Bucket64::EMPTY,
            )? + self.settle_table(
                map::ADDRS_V6,
                target * table::V6_BUCKETS,
                &mut fill.v6,
                Bucket128::EMPTY,
            )? + self.settle_table(
                map::MACS,
                target * table::MAC_BUCKETS,
                &mut fill.macs,
                Bucket64::EMPTY,
            )?)
        })();
        // On an error the buckets of the failed batch stay marked (not known).
        fill.exact = [&fill.v4, &fill.v6, &fill.macs]
            .iter()
            .all(|m| m.iter().all(|w| *w == 0));
        self.half_fill[target as usize] = fill;
        r
    }

    /// Empties the first [`SETTLE_CHUNK`] marked buckets of `marks` and unmarks them:
    /// the half is not in force, and the next apply to it writes what its policy needs.
    fn settle_table<B: Pod>(
        &mut self,
        name: &'static str,
        base: u32,
        marks: &mut [u64],
        empty: B,
    ) -> Result<usize> {
        let marked = marked(marks.iter().copied(), SETTLE_CHUNK);
        if marked.is_empty() {
            return Ok(0);
        }
        let keys: Vec<u32> = marked.iter().map(|i| base + i).collect();
        self.set_entries(name, &keys, &vec![empty; keys.len()])?;
        for i in &marked {
            marks[*i as usize / 64] &= !(1 << (i % 64));
        }
        Ok(marked.len())
    }

    /// Writes the buckets of one table's half that `now` or `before` marks (the ones
    /// that hold an entry now, and those that held one or whose content is not known
    /// before), or every bucket when most of them are marked; how many were written.
    fn write_changed<B: Pod>(
        &mut self,
        name: &'static str,
        base: u32,
        buckets: &[B],
        now: &[u64],
        before: &[u64],
    ) -> Result<usize> {
        let marked = marked(now.iter().zip(before).map(|(a, b)| a | b), usize::MAX);
        if marked.len() * 2 > buckets.len() {
            self.write_buckets(name, base, buckets)?;
            return Ok(buckets.len());
        }
        let keys: Vec<u32> = marked.iter().map(|i| base + i).collect();
        let values: Vec<B> = marked.iter().map(|&i| buckets[i as usize]).collect();
        self.set_entries(name, &keys, &values)?;
        Ok(marked.len())
    }

    /// Writes every bucket of one generation's half, in batches.
    pub(crate) fn write_buckets<B: Pod>(
        &mut self,
        name: &'static str,
        base: u32,
        buckets: &[B],
    ) -> Result<()> {
        let keys: Vec<u32> = (0..buckets.len()).map(|i| base + i as u32).collect();
        self.set_entries(name, &keys, buckets)
    }

    /// Management prefixes are not generational: new ones go in before stale ones
    /// go out, so a suspended tenant never loses its console in between.
    pub(crate) fn sync_management(&mut self, wanted: &[IpNet]) -> Result<()> {
        self.record_management()?;
        let (mut v4, mut v6) = (HashSet::new(), HashSet::new());
        for n in wanted.iter().map(|n| n.trunc()) {
            match n {
                IpNet::V4(n) => v4.insert((u32::from(n.prefix_len()), n.network().octets())),
                IpNet::V6(n) => v6.insert((u32::from(n.prefix_len()), n.network().octets())),
            };
        }
        sync_trie(
            &mut self.lpm_mut(map::MANAGEMENT_V4)?,
            map::MANAGEMENT_V4,
            &v4,
        )?;
        sync_trie(
            &mut self.lpm_mut(map::MANAGEMENT_V6)?,
            map::MANAGEMENT_V6,
            &v6,
        )
    }
}

/// Makes an LPM trie hold exactly `wanted` (prefix length, network): inserts first,
/// then removes what is no longer wanted.
pub(crate) fn sync_trie<const N: usize>(
    t: &mut LpmTrie<&mut MapData, [u8; N], u8>,
    name: &'static str,
    wanted: &HashSet<(u32, [u8; N])>,
) -> Result<()>
where
    [u8; N]: Pod,
{
    let have: Vec<Key<[u8; N]>> = t.keys().collect::<Result<_, _>>().map_err(map_err(name))?;
    for (len, net) in wanted {
        t.insert(&Key::new(*len, *net), 1, 0)
            .map_err(map_err(name))?;
    }
    for k in have {
        if !wanted.contains(&(k.prefix_len(), k.data())) {
            t.remove(&k).map_err(map_err(name))?;
        }
    }
    Ok(())
}

/// What the lookup needs to know of a generation: the prefix lengths in use, longest
/// first (`compile` refuses more than `MAX_PREFIX_LENS`), and whether any MAC or port is
/// bound.
pub fn gen_config(c: &Compiled) -> GenConfig {
    let mut gc = GenConfig::default();
    for (i, l) in c.v4_lens.iter().take(MAX_PREFIX_LENS).enumerate() {
        gc.v4_lens[i] = *l;
    }
    for (i, l) in c.v6_lens.iter().take(MAX_PREFIX_LENS).enumerate() {
        gc.v6_lens[i] = *l;
    }
    gc.v4_nlens = c.v4_lens.len().min(MAX_PREFIX_LENS) as u8;
    gc.v6_nlens = c.v6_lens.len().min(MAX_PREFIX_LENS) as u8;
    if !c.macs.is_empty() {
        gc.flags |= gen_flags::ANY_MACS;
    }
    if !c.ports.is_empty() {
        gc.flags |= gen_flags::ANY_PORTS;
    }
    gc.event_budget = warden_common::facts::EVENT_BUDGET;
    gc
}

/// Writes a whole generation (tables, tenant settings, GEN_CONFIG) into the maps of a
/// loaded object, without diffing and without the flip: for the Tier 1 fixtures and the
/// benchmark, which drive the programs through BPF_PROG_TEST_RUN with exactly what
/// [`Dataplane::apply`] would write.
pub fn write_generation(ebpf: &mut Ebpf, generation: u32, c: &Compiled) -> Result<()> {
    fn write_all<B: Pod>(ebpf: &mut Ebpf, name: &'static str, base: u32, new: &[B]) -> Result<()> {
        let m = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
        let mut a: Array<&mut MapData, B> = Array::try_from(m).map_err(map_err(name))?;
        for (i, b) in new.iter().enumerate() {
            a.set(base + i as u32, *b, 0).map_err(map_err(name))?;
        }
        Ok(())
    }
    let t = GenTables::build(generation, c)?;
    write_all(ebpf, map::ADDRS_V4, generation * table::V4_BUCKETS, &t.v4)?;
    write_all(ebpf, map::ADDRS_V6, generation * table::V6_BUCKETS, &t.v6)?;
    write_all(ebpf, map::MACS, generation * table::MAC_BUCKETS, &t.macs)?;
    let name = map::TENANT_CONFIG;
    let m = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    let mut a: Array<&mut MapData, TenantConfig> = Array::try_from(m).map_err(map_err(name))?;
    for (&i, cfg) in &t.configs {
        a.set(tenant_config_index(generation, i), *cfg, 0)
            .map_err(map_err(name))?;
    }
    let name = map::GEN_CONFIG;
    let m = ebpf.map_mut(name).ok_or(DataplaneError::MissingMap(name))?;
    let mut a: Array<&mut MapData, GenConfig> = Array::try_from(m).map_err(map_err(name))?;
    a.set(generation, gen_config(c), 0).map_err(map_err(name))
}

/// The tenant-facing map names and their per-generation entry counts in `c`.
pub fn fill(c: &Compiled, tenants: usize) -> HashMap<&'static str, u64> {
    HashMap::from([
        (map::ADDRS_V4, c.v4.len() as u64),
        (map::ADDRS_V6, c.v6.len() as u64),
        (map::MACS, (c.macs.len() + c.ports.len()) as u64),
        (map::TENANT_COUNTERS, tenants as u64),
    ])
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn a_batch_holds_at_most_batch_bytes_of_values_and_at_least_one_entry() {
        assert_eq!(batch_entries(8), BATCH_BYTES / 8);
        // Per-CPU drop counters of a large machine: each call stays within the bound.
        let per_cpu = std::mem::size_of::<DropCounters>() * 256;
        assert!(batch_entries(per_cpu) * per_cpu <= BATCH_BYTES);
        assert_eq!(
            batch_entries(BATCH_BYTES * 2),
            1,
            "one entry larger than the bound"
        );
        assert_eq!(batch_entries(0), BATCH_BYTES);
    }
}
