//! warden-dataplane: the only crate that uses aya.
//!
//! - Maps, programs and links are pinned under the policy's `bpffs` directory, so
//!   enforcement does not depend on the daemon: a daemon that dies leaves it running,
//!   and a restarted one adopts the pinned state without detaching, reloading or
//!   resetting counters ([`Dataplane::open`], [`Dataplane::attach`]).
//! - Starts are all or nothing ([`start`]): from [`Dataplane::open`] to
//!   [`Dataplane::finish_start`] what the start does is recorded, and a failed start
//!   undoes exactly that ([`Dataplane::roll_back_start`]), leaving what it adopted from an
//!   earlier daemon enforcing as it was.
//! - Policy goes into the inactive generation and is switched on with one write
//!   ([`Dataplane::apply`]); see `warden_common` for the generation scheme.
//! - Detection: the programs' ring buffer is read through an [`EventReader`] and decoded
//!   into [`KernelEvent`]s ([`events`]); the daemon's actions go back as blocks,
//!   throttles and capture requests ([`runtime`]).

mod attach;
mod batch;
mod compile;
pub mod cuckoo;
pub mod events;
mod generation;
pub mod iface;
mod index;
mod interfaces;
#[cfg(test)]
mod lab;
mod layout;
pub mod log;
pub mod record;
mod relink;
pub mod runtime;
pub mod shape;
mod start;

use std::{
    collections::{HashMap, HashSet},
    fs,
    path::{Path, PathBuf},
};

use aya::{
    maps::{lpm_trie::Key, Array, LpmTrie, Map, MapData, MapType, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        tc::{SchedClassifierLink, TcAttachOptions},
        xdp::XdpLink,
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader, Pod,
};
use ipnet::IpNet;
use warden_common::{
    bucket, direction, facts, gen_flags, global, map, program, reason, table, tenant_config_index,
    tenant_counter_index, Bucket, Bucket128, Bucket64, Counters, DropCounters, GenConfig, Slot128,
    Slot64, TenantConfig, GENERATIONS, MAX_MACS, MAX_PREFIXES, MAX_PREFIX_LENS, MAX_TENANTS,
};

pub use self::{
    compile::{
        bind_ports, burst_bytes, bytes_per_flood_epoch, compile, compile_with, ingress_burst_bytes,
        per_flood_epoch, CompileError, Compiled,
    },
    cuckoo::TableFull,
    events::{
        decode_event, flood_class, monotonic_now, DecodeError, EventReader, FloodEvent,
        KernelEvent, SampleFrame,
    },
    index::{IndexChanges, IndexError, TenantIndex},
    interfaces::bound_ifindexes,
    runtime::{block_key, block_of_key, throttle_rates, FactCounters, MapUsage},
    shape::ShapeStats,
    start::RolledBack,
};
pub use generation::{fill, gen_config, write_generation, GenTables, BATCH_BYTES, CAPACITIES};
pub use layout::loader;

use attach::Hook;
use generation::sync_trie;
use layout::{expected_layout, possible_cpus};
use warden_policy::tenant::TenantSlot;
use warden_policy::Mode;

/// The compiled eBPF object (built by `build.rs` through aya-build).
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/warden"));

/// `statfs` magic of a bpf filesystem.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Errors at the boundary between Warden and the kernel.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("{0} is not on a bpf filesystem (mount one: mount -t bpf bpf {0})")]
    NotBpffs(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "pinned map {path} does not match this Warden ({detail}); it was left by another \
         version: run `warden uninstall` (stops enforcement) before starting this one"
    )]
    IncompatiblePin { path: PathBuf, detail: String },
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("attaching {program} to interface {iface}: {source}")]
    Attach {
        iface: String,
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error(
        "attaching {program} to interface {iface}: the kernel refused it for the frame size \
         (ERANGE): the interface's MTU, or for a veth its peer's, is above {max}, the largest \
         the XDP programs attach at (they do not handle XDP fragments); lower it to {max} or less"
    )]
    FrameTooLarge {
        iface: String,
        program: &'static str,
        max: u32,
    },
    #[error("link {path}: {detail}")]
    Link { path: PathBuf, detail: String },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("interface {name}: {detail}")]
    Interface { name: String, detail: String },
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    TableFull(#[from] TableFull),
    #[error("the block map is full ({capacity} entries); the block was not added")]
    BlocksFull { capacity: u32 },
    #[error("invalid block: {0}")]
    InvalidBlock(String),
    #[error("invalid throttle: {0}")]
    InvalidThrottle(String),
    #[error("tenant index {0} is out of range")]
    TenantOutOfRange(u32),
    #[error("the event ring was already taken by an earlier event reader")]
    EventsTaken,
    #[error("suspension record {path}: {detail}")]
    Record { path: PathBuf, detail: String },
    #[error("egress shaping: {what}: {detail}")]
    Shaping { what: String, detail: String },
}

type Result<T, E = DataplaneError> = std::result::Result<T, E>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataplaneError + '_ {
    move |source| DataplaneError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |source| DataplaneError::Map { name, source }
}

/// One program attached to one interface.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attachment {
    pub interface: String,
    pub mode: String,
    pub hook: String,
    pub program: String,
    /// `adopted` (left running by an earlier daemon), `attached` or `replaced`.
    pub how: String,
}

/// Loaded (or adopted) maps and programs.
pub struct Dataplane {
    ebpf: Ebpf,
    bpffs: PathBuf,
    programs_loaded: bool,
    active: u32,
    /// The active generation's tenant settings (`TENANT_CONFIG`) by tenant slot, as
    /// last written; `None` when unknown (adopted and not yet rewritten). Nothing else
    /// of a generation is kept (see [`Dataplane::apply`]).
    active_configs: Option<HashMap<u32, TenantConfig>>,
    /// When the active generation was last switched.
    last_flip: Option<std::time::Instant>,
    attachments: Vec<Attachment>,
    adopted_maps: usize,
    /// Whether [`Dataplane::event_reader`] took the ring.
    events_taken: bool,
    /// What [`map::BLOCKS`] holds (key -> expiry in ns; the daemon is its only writer,
    /// and it is read back from the map at open), so sweeping needs no map walk.
    block_expiry: HashMap<facts::BlockKey, u64>,
    /// Blocks per tenant in `block_expiry`, to keep `runtime_flags::BLOCKS` exact.
    block_counts: HashMap<u32, u32>,
    /// Throttles set by this daemon, recomputed when a policy changes the plans.
    throttles: HashMap<u32, runtime::Throttle>,
    /// How long the phases of the last [`Dataplane::apply`] took.
    last_apply: ApplyTimings,
    /// Which buckets of each generation's half may hold entries ([`generation::HalfFill`]).
    half_fill: [generation::HalfFill; 2],
    /// Possible CPUs (the per-CPU maps' value count), read once at open: the daemon
    /// resets a slot per new tenant, and reading sysfs each time cost as much as the
    /// map writes.
    cpus: usize,
    /// The pinned suspension record ([`record`]), created at open when missing.
    record: record::RecordMap,
    /// What the start under way did, to undo should it fail ([`start`]); `None` once
    /// [`Dataplane::finish_start`] ended it.
    start: Option<start::Journal>,
    /// The HTB qdiscs of the host-mode interfaces ([`shape`]); `None` without any.
    shaper: Option<shape::Shaper>,
}

/// How long the phases of one [`Dataplane::apply`] took (for the scale benchmark).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyTimings {
    /// Placing the compiled policy into the generation's tables ([`GenTables::build`]).
    pub place: std::time::Duration,
    /// Writing the inactive generation (tables, tenant settings, GEN_CONFIG,
    /// management prefixes).
    pub write: std::time::Duration,
    /// The flip: ACTIVE set to the new generation.
    pub flip: std::time::Duration,
    /// Address and MAC buckets written (all of a half's when its content was not
    /// known, else those that hold an entry now or held one before).
    pub buckets_written: usize,
}

impl Dataplane {
    /// Opens the pinned maps under `bpffs` (creating and pinning those that do not
    /// exist yet). Programs are not loaded until something must be attached.
    ///
    /// This begins a start: what it creates, and what [`Dataplane::apply`] and
    /// [`Dataplane::attach`] change, is recorded until [`Dataplane::finish_start`], so
    /// [`Dataplane::roll_back_start`] can undo it. An open that fails undoes itself.
    pub fn open(bpffs: &Path) -> Result<Self> {
        let mut journal = start::Journal::default();
        match Self::open_recording(bpffs, &mut journal) {
            Ok(mut dp) => {
                dp.start = Some(journal);
                Ok(dp)
            }
            Err(e) => {
                let undone = journal.undo_files();
                for failure in &undone.failures {
                    tracing::error!(%failure, "could not undo part of a failed open");
                }
                Err(e)
            }
        }
    }

    fn open_recording(bpffs: &Path, journal: &mut start::Journal) -> Result<Self> {
        journal.create_dir_all(bpffs).map_err(io(bpffs))?;
        check_bpffs(bpffs)?;
        for sub in ["maps", "progs", "links"] {
            let d = bpffs.join(sub);
            journal.create_dir_all(&d).map_err(io(&d))?;
        }
        let mut adopted_maps = 0;
        let cpus = possible_cpus()?;
        for (name, ty, key, value, entries) in expected_layout(cpus) {
            let path = bpffs.join("maps").join(name);
            if !path.exists() {
                // Created and pinned by the load below (also if it fails part way).
                journal.push(start::Undo::Pin(path));
                continue;
            }
            let m = MapData::from_pin(&path).map_err(map_err(name))?;
            let info = m.info().map_err(map_err(name))?;
            let got = (
                info.map_type().ok(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
            );
            if got != (Some(ty), key, value, entries) {
                return Err(DataplaneError::IncompatiblePin {
                    path,
                    detail: format!(
                        "found {:?} key {} value {} entries {}, expected {ty:?} key {key} value {value} entries {entries}",
                        got.0, got.1, got.2, got.3
                    ),
                });
            }
            adopted_maps += 1;
        }
        // The suspension record is created below when missing: a failed start removes it.
        let record_pin = record::pin_path(bpffs);
        if !record_pin.exists() {
            journal.push(start::Undo::Pin(record_pin));
        }
        let paths: Vec<(&str, PathBuf)> = map::ALL
            .iter()
            .map(|n| (*n, bpffs.join("maps").join(n)))
            .collect();
        let mut loader = loader()?;
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        let ebpf = loader.load(OBJECT)?;
        let mut dp = Self {
            ebpf,
            bpffs: bpffs.to_path_buf(),
            programs_loaded: false,
            active: 0,
            active_configs: None,
            last_flip: None,
            attachments: Vec::new(),
            adopted_maps,
            events_taken: false,
            block_expiry: HashMap::new(),
            block_counts: HashMap::new(),
            throttles: HashMap::new(),
            last_apply: ApplyTimings::default(),
            half_fill: [
                generation::HalfFill::unknown(),
                generation::HalfFill::unknown(),
            ],
            cpus: cpus as usize,
            record: record::RecordMap::open_or_create(bpffs)?,
            start: None,
            shaper: None,
        };
        dp.active = dp
            .array::<u32>(map::ACTIVE)?
            .get(&0, 0)
            .map_err(map_err(map::ACTIVE))?
            % GENERATIONS;
        // Fresh maps hold zeroed buckets, which is not the empty marker, so the first
        // write of each half must be complete (as every write is).
        dp.load_blocks()?;
        Ok(dp)
    }

    /// The pinned suspension record: its sequence number and content, `None` when it was
    /// never written.
    pub fn suspension_record(&self) -> Result<Option<(u64, Vec<u8>)>> {
        self.record.read()
    }

    /// Replaces the pinned suspension record (see [`record::RecordMap::write`]).
    pub fn write_suspension_record(&mut self, seq: u64, bytes: &[u8]) -> Result<()> {
        self.record.write(seq, bytes)
    }

    /// How long the phases of the last [`Dataplane::apply`] took.
    pub fn last_apply(&self) -> ApplyTimings {
        self.last_apply
    }

    /// How many maps were already pinned (left by an earlier daemon) at open.
    pub fn adopted_maps(&self) -> usize {
        self.adopted_maps
    }

    /// The bpffs directory this dataplane pins under.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The generation packets use now.
    pub fn active_generation(&self) -> u32 {
        self.active
    }

    /// A tenant's packets and bytes, summed over CPUs: `[out, in]`.
    pub fn tenant_counters(&self, slot: TenantSlot) -> Result<[Counters; 2]> {
        let index = slot.0;
        let arr: PerCpuArray<&MapData, Counters> = self.per_cpu(map::TENANT_COUNTERS)?;
        let mut out = [Counters::default(); 2];
        for dir in 0..direction::COUNT {
            let v = arr
                .get(&tenant_counter_index(index, dir), 0)
                .map_err(map_err(map::TENANT_COUNTERS))?;
            out[dir as usize] = v.iter().fold(Counters::default(), |a, c| Counters {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
            });
        }
        Ok(out)
    }

    /// A tenant's drops by reason, summed over CPUs: `[out, in]`.
    pub fn drop_counters(&self, slot: TenantSlot) -> Result<[DropCounters; 2]> {
        let index = slot.0;
        let arr: PerCpuArray<&MapData, DropCounters> = self.per_cpu(map::DROP_COUNTERS)?;
        let mut out = [DropCounters::default(); 2];
        for dir in 0..direction::COUNT {
            let v = arr
                .get(&tenant_counter_index(index, dir), 0)
                .map_err(map_err(map::DROP_COUNTERS))?;
            for c in v.iter() {
                for (acc, x) in out[dir as usize].packets.iter_mut().zip(c.packets) {
                    *acc += x;
                }
            }
        }
        out[direction::OUT as usize].packets[reason::BANDWIDTH] += self.queue_drops(index);
        Ok(out)
    }

    /// Traffic of no tenant: `[slot][direction]`, slots as in `warden_common::global`.
    pub fn global_counters(&self) -> Result<[[Counters; 2]; global::SLOTS as usize]> {
        let arr: PerCpuArray<&MapData, Counters> = self.per_cpu(map::GLOBAL_COUNTERS)?;
        let mut out = [[Counters::default(); 2]; global::SLOTS as usize];
        for slot in 0..global::SLOTS {
            for dir in 0..direction::COUNT {
                let v = arr
                    .get(&global::index(slot, dir), 0)
                    .map_err(map_err(map::GLOBAL_COUNTERS))?;
                out[slot as usize][dir as usize] =
                    v.iter().fold(Counters::default(), |a, c| Counters {
                        packets: a.packets + c.packets,
                        bytes: a.bytes + c.bytes,
                    });
            }
        }
        Ok(out)
    }

    fn raw(&self, name: &'static str) -> Result<&Map> {
        self.ebpf.map(name).ok_or(DataplaneError::MissingMap(name))
    }

    fn raw_mut(&mut self, name: &'static str) -> Result<&mut Map> {
        self.ebpf
            .map_mut(name)
            .ok_or(DataplaneError::MissingMap(name))
    }

    fn per_cpu<V: Pod>(&self, name: &'static str) -> Result<PerCpuArray<&MapData, V>> {
        PerCpuArray::try_from(self.raw(name)?).map_err(map_err(name))
    }

    fn array<V: Pod>(&self, name: &'static str) -> Result<Array<&MapData, V>> {
        Array::try_from(self.raw(name)?).map_err(map_err(name))
    }

    fn array_mut<V: Pod>(&mut self, name: &'static str) -> Result<Array<&mut MapData, V>> {
        Array::try_from(self.raw_mut(name)?).map_err(map_err(name))
    }

    fn lpm_mut<K: Pod, V: Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<LpmTrie<&mut MapData, K, V>> {
        LpmTrie::try_from(self.raw_mut(name)?).map_err(map_err(name))
    }
}

fn check_bpffs(path: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|e| DataplaneError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e),
        })?;
    // SAFETY: statfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(DataplaneError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    if st.f_type as i64 != BPF_FS_MAGIC {
        return Err(DataplaneError::NotBpffs(path.to_path_buf()));
    }
    Ok(())
}

/// bpffs refuses names with dots (reserved), and interface names may have them
/// (`eth0.100`): escape `%` and `.` as `%25` and `%2e`.
fn escape_name(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

/// An error with its sources, for errors whose Display leaves out the OS error.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(&format!(": {s}"));
        cur = s.source();
    }
    text
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into()
        .map_err(|source| DataplaneError::Program { name, source })
}

/// A short, stable identifier of this build's eBPF object (FNV-1a 64).
pub fn object_id() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in OBJECT {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
