//! The dataplane: the only module that touches aya.
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

mod batch;
mod compile;
pub mod cuckoo;
pub mod events;
pub mod iface;
mod index;
mod interfaces;
#[cfg(test)]
mod lab;
pub mod log;
pub mod record;
mod relink;
pub mod runtime;
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
    bucket, direction, facts, gen_flags, global, map, program, table, tenant_config_index,
    tenant_counter_index, Bucket, Bucket128, Bucket64, Counters, DropCounters, GenConfig,
    IfaceConfig, Slot128, Slot64, TenantConfig, GENERATIONS, MAX_IFACES, MAX_MACS, MAX_MANAGEMENT,
    MAX_PREFIXES, MAX_PREFIX_LENS, MAX_TENANTS,
};

pub use self::{
    compile::{
        burst_bytes, bytes_per_flood_epoch, compile, compile_with, per_flood_epoch, CompileError,
        Compiled,
    },
    cuckoo::TableFull,
    events::{
        decode_event, monotonic_now, Contact, DecodeError, EventReader, FloodClass, FloodEvent,
        KernelEvent, SampleFrame,
    },
    index::{IndexChanges, IndexError, TenantIndex},
    runtime::{throttle_rates, BlockTarget, FactCounters, MapUsage},
    start::RolledBack,
};
use crate::policy::Mode;

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

/// Which programs go where, per mode: (XDP ingress program, tcx egress program).
fn programs_for(mode: Mode) -> [(&'static str, Hook); 2] {
    match mode {
        Mode::Host => [
            (program::XDP_TO_TENANT, Hook::Xdp),
            (program::TC_FROM_TENANT, Hook::TcxEgress),
        ],
        Mode::Gateway => [
            (program::XDP_FROM_TENANT, Hook::Xdp),
            (program::TC_TO_TENANT, Hook::TcxEgress),
        ],
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Hook {
    Xdp,
    TcxEgress,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcxEgress => "tcx-egress",
        }
    }
}

/// The layout every map must have: (name, type, key size, value size, capacity).
fn expected_layout(log_cpus: u32) -> [(&'static str, MapType, u32, u32, u32); 22] {
    use std::mem::size_of;
    let s = |n: usize| n as u32;
    [
        (map::ACTIVE, MapType::Array, 4, 4, 1),
        (
            map::GEN_CONFIG,
            MapType::Array,
            4,
            s(size_of::<GenConfig>()),
            GENERATIONS,
        ),
        (
            map::ADDRS_V4,
            MapType::Array,
            4,
            s(size_of::<Bucket64>()),
            table::V4_BUCKETS * GENERATIONS,
        ),
        (
            map::ADDRS_V6,
            MapType::Array,
            4,
            s(size_of::<Bucket128>()),
            table::V6_BUCKETS * GENERATIONS,
        ),
        (
            map::MACS,
            MapType::Array,
            4,
            s(size_of::<Bucket64>()),
            table::MAC_BUCKETS * GENERATIONS,
        ),
        (
            map::TENANT_CONFIG,
            MapType::Array,
            4,
            s(size_of::<TenantConfig>()),
            MAX_TENANTS * GENERATIONS,
        ),
        (map::MANAGEMENT_V4, MapType::LpmTrie, 8, 1, MAX_MANAGEMENT),
        (map::MANAGEMENT_V6, MapType::LpmTrie, 20, 1, MAX_MANAGEMENT),
        (
            map::BUCKETS,
            MapType::Array,
            4,
            s(size_of::<Bucket>()),
            MAX_TENANTS * bucket::PER_TENANT,
        ),
        (
            map::TENANT_COUNTERS,
            MapType::PerCpuArray,
            4,
            16,
            MAX_TENANTS * direction::COUNT,
        ),
        (
            map::DROP_COUNTERS,
            MapType::PerCpuArray,
            4,
            s(size_of::<DropCounters>()),
            MAX_TENANTS * direction::COUNT,
        ),
        (
            map::GLOBAL_COUNTERS,
            MapType::PerCpuArray,
            4,
            16,
            global::ENTRIES,
        ),
        (map::CONTACTS, MapType::Array, 4, 8, facts::CONTACT_WORDS),
        (
            map::PENDING,
            MapType::Array,
            4,
            s(size_of::<facts::Pending>()),
            facts::PENDING_SLOTS,
        ),
        (
            map::SKETCH,
            MapType::Array,
            4,
            8,
            facts::SKETCH_ROWS * facts::SKETCH_WIDTH,
        ),
        (map::REPORTED, MapType::Array, 4, 8, facts::REPORTED_SLOTS),
        // A ring buffer has no keys or values; its size is its entries.
        (
            map::EVENTS,
            MapType::RingBuf,
            0,
            0,
            facts::EVENTS_RING_BYTES,
        ),
        (
            map::TENANT_RUNTIME,
            MapType::Array,
            4,
            s(size_of::<facts::TenantRuntime>()),
            MAX_TENANTS,
        ),
        (
            map::BLOCKS,
            MapType::Hash,
            s(size_of::<facts::BlockKey>()),
            s(size_of::<facts::BlockValue>()),
            facts::MAX_BLOCKS,
        ),
        (
            map::FACT_COUNTERS,
            MapType::PerCpuArray,
            4,
            8,
            facts::fact_counter::COUNT,
        ),
        (
            map::ATTEMPT_LOG,
            MapType::Array,
            4,
            s(size_of::<facts::LogEntry>()),
            facts::log_entries(log_cpus),
        ),
        (
            map::IFACES,
            MapType::Hash,
            4,
            s(size_of::<IfaceConfig>()),
            MAX_IFACES,
        ),
    ]
}

/// Value bytes per `BPF_MAP_UPDATE_BATCH`: large enough that a 100,000-tenant apply
/// takes a few dozen syscalls, small enough that the buffers stay small on machines
/// with many CPUs (per-CPU values are one per CPU).
pub const BATCH_BYTES: usize = 1 << 20;

/// Entries of `entry_bytes` each per batch call: as many as fit [`BATCH_BYTES`], at
/// least one.
fn batch_entries(entry_bytes: usize) -> usize {
    (BATCH_BYTES / entry_bytes.max(1)).max(1)
}

/// The machine's possible CPUs (`/sys/devices/system/cpu/possible`), which the attempt
/// log is sized for.
fn possible_cpus() -> Result<u32> {
    aya::util::nr_cpus()
        .map(|n| n as u32)
        .map_err(|(path, e)| DataplaneError::Io {
            path: path.into(),
            source: e,
        })
}

/// A loader of [`OBJECT`] with the attempt log sized for this machine's possible CPUs
/// (the object's own size is [`facts::LOG_DEFAULT_CPUS`]). Tests and the bench load the
/// object through it, as the daemon does.
pub fn loader() -> Result<EbpfLoader<'static>> {
    let mut loader = EbpfLoader::new();
    loader.map_max_entries(map::ATTEMPT_LOG, facts::log_entries(possible_cpus()?));
    Ok(loader)
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
            .collect();
        // Sorted input makes placement (and so the diff against the last write) stable.
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

/// Loaded (or adopted) maps and programs.
pub struct Dataplane {
    ebpf: Ebpf,
    bpffs: PathBuf,
    programs_loaded: bool,
    active: u32,
    /// What each generation holds; `None` when unknown (adopted and not yet rewritten)
    /// or not kept (the inactive half after an apply, see [`Dataplane::apply`]).
    mirror: [Option<GenTables>; 2],
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
    /// Possible CPUs (the per-CPU maps' value count), read once at open: the daemon
    /// resets a slot per new tenant, and reading sysfs each time cost as much as the
    /// map writes.
    cpus: usize,
    /// The pinned suspension record ([`record`]), created at open when missing.
    record: record::RecordMap,
    /// What the start under way did, to undo should it fail ([`start`]); `None` once
    /// [`Dataplane::finish_start`] ended it.
    start: Option<start::Journal>,
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
            mirror: [None, None],
            last_flip: None,
            attachments: Vec::new(),
            adopted_maps,
            events_taken: false,
            block_expiry: HashMap::new(),
            block_counts: HashMap::new(),
            throttles: HashMap::new(),
            last_apply: ApplyTimings::default(),
            cpus: cpus as usize,
            record: record::RecordMap::open_or_create(bpffs)?,
            start: None,
        };
        dp.active = dp
            .array::<u32>(map::ACTIVE)?
            .get(&0, 0)
            .map_err(map_err(map::ACTIVE))?
            % GENERATIONS;
        // Fresh maps hold zeroed buckets, which is not the empty marker, so the first
        // write of each half must be complete: the mirror stays unknown either way.
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

    fn load_programs(&mut self) -> Result<()> {
        if self.programs_loaded {
            return Ok(());
        }
        for name in [program::XDP_FROM_TENANT, program::XDP_TO_TENANT] {
            let prog: &mut Xdp = program_mut(&mut self.ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        for name in [program::TC_FROM_TENANT, program::TC_TO_TENANT] {
            let prog: &mut SchedClassifier = program_mut(&mut self.ebpf, name)?;
            prog.load()
                .map_err(|source| DataplaneError::Program { name, source })?;
        }
        self.programs_loaded = true;
        Ok(())
    }

    /// Makes the pinned links match `interfaces`: links of the same object version
    /// are adopted as they are (no gap, no reload); links of another version or of the
    /// wrong program are replaced atomically; missing ones are attached and pinned.
    /// Pinned links of interfaces no longer configured are removed by
    /// [`Dataplane::finish_start`], once the whole start has succeeded.
    ///
    /// `object_id` identifies this build's eBPF object; `previous` is the id recorded
    /// when the pinned links were made (None when unknown).
    pub fn attach(
        &mut self,
        interfaces: &[(String, Mode)],
        object_id: &str,
        previous: Option<&str>,
    ) -> Result<()> {
        let same_version = previous == Some(object_id);
        self.attachments.clear();
        for (iface, mode) in interfaces {
            for (prog, hook) in programs_for(*mode) {
                let dir = self.bpffs.join("links").join(hook.name());
                self.create_dirs(&dir)?;
                let name = escape_name(iface);
                let pin = dir.join(&name);
                let marker = dir.join(format!("{name}@{prog}"));
                let existing = match PinnedLink::from_pin(&pin) {
                    Ok(l) => Some(l),
                    Err(_) if !pin.exists() => None,
                    Err(e) => {
                        return Err(DataplaneError::Link {
                            path: pin,
                            detail: error_chain(&e),
                        })
                    }
                };
                let how = match existing {
                    Some(_) if same_version && marker.exists() => "adopted",
                    Some(link) => {
                        self.load_programs()?;
                        self.replace(link, prog, hook, &pin, iface)?;
                        "replaced"
                    }
                    None => {
                        self.load_programs()?;
                        self.attach_new(prog, hook, &pin, iface)?;
                        "attached"
                    }
                };
                if !marker.exists() {
                    fs::create_dir(&marker).map_err(io(&marker))?;
                    self.record(start::Undo::Dir(marker));
                }
                self.attachments.push(Attachment {
                    interface: iface.clone(),
                    mode: mode.to_string(),
                    hook: hook.name().to_string(),
                    program: prog.to_string(),
                    how: how.to_string(),
                });
            }
        }
        Ok(())
    }

    fn attach_new(
        &mut self,
        prog: &'static str,
        hook: Hook,
        pin: &Path,
        iface: &str,
    ) -> Result<()> {
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.to_string(),
            program: prog,
            source,
        };
        let fd_link: FdLink = match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program_mut(&mut self.ebpf, prog)?;
                let id = p.attach(iface, XdpMode::default()).map_err(|e| match e {
                    aya::programs::ProgramError::SyscallError(ref s)
                        if s.io_error.raw_os_error() == Some(libc::ERANGE) =>
                    {
                        DataplaneError::FrameTooLarge {
                            iface: iface.to_string(),
                            program: prog,
                            max: iface::xdp_max_mtu(),
                        }
                    }
                    other => attach_err(other),
                })?;
                let link = p.take_link(id).map_err(attach_err)?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| DataplaneError::Link {
                        path: pin.to_path_buf(),
                        detail: format!("XDP attached without a BPF link: {e}"),
                    })?
            }
            Hook::TcxEgress => {
                let p: &mut SchedClassifier = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_with_options(
                        iface,
                        TcAttachType::Egress,
                        TcAttachOptions::TcxOrder(LinkOrder::default()),
                    )
                    .map_err(attach_err)?;
                let link = p.take_link(id).map_err(attach_err)?;
                link.try_into()
                    .map_err(|e: aya::programs::links::LinkError| DataplaneError::Link {
                        path: pin.to_path_buf(),
                        detail: format!("tcx attached without a BPF link: {e}"),
                    })?
            }
        };
        fd_link.pin(pin).map_err(|e| DataplaneError::Link {
            path: pin.to_path_buf(),
            detail: error_chain(&e),
        })?;
        self.record(start::Undo::Pin(pin.to_path_buf()));
        Ok(())
    }

    fn replace(
        &mut self,
        link: PinnedLink,
        prog: &'static str,
        hook: Hook,
        pin: &Path,
        iface: &str,
    ) -> Result<()> {
        let attach_err = |source| DataplaneError::Attach {
            iface: iface.to_string(),
            program: prog,
            source,
        };
        let link_err = |e: aya::programs::links::LinkError| DataplaneError::Link {
            path: pin.to_path_buf(),
            detail: e.to_string(),
        };
        // The pin stays in place throughout: the kernel swaps the program under the
        // link in one step, so the interface is never without enforcement.
        let fd_link = FdLink::from(link);
        // The program it runs now, to swap back should the start fail.
        let before = fd_link.info().map_err(link_err).and_then(|info| {
            relink::open_program(info.program_id()).map_err(|e| DataplaneError::Link {
                path: pin.to_path_buf(),
                detail: format!("opening the program it runs: {e}"),
            })
        })?;
        match hook {
            Hook::Xdp => {
                let p: &mut Xdp = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_to_link(XdpLink::try_from(fd_link).map_err(link_err)?)
                    .map_err(attach_err)?;
                // Hand the link back to the pin alone.
                let _ = p.take_link(id).map_err(attach_err)?;
            }
            Hook::TcxEgress => {
                let p: &mut SchedClassifier = program_mut(&mut self.ebpf, prog)?;
                let id = p
                    .attach_to_link(SchedClassifierLink::try_from(fd_link).map_err(link_err)?)
                    .map_err(attach_err)?;
                let _ = p.take_link(id).map_err(attach_err)?;
            }
        }
        self.record(start::Undo::Program {
            link: pin.to_path_buf(),
            program: before,
        });
        Ok(())
    }

    fn pin_programs(&mut self) -> Result<()> {
        let dir = self.bpffs.join("progs");
        for name in program::ENFORCING {
            let path = dir.join(name);
            if path.exists() {
                fs::remove_file(&path).map_err(io(&path))?;
            }
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or(DataplaneError::MissingProgram(name))?;
            prog.pin(&path).map_err(|e| DataplaneError::Link {
                path: path.clone(),
                detail: error_chain(&e),
            })?;
        }
        Ok(())
    }

    /// What is attached where (after [`Dataplane::attach`]).
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Removes every pin under `bpffs`: links first (which detaches the programs),
    /// then programs and maps. Enforcement stops.
    pub fn uninstall(bpffs: &Path) -> Result<usize> {
        let mut removed = 0;
        for sub in ["links/xdp", "links/tcx-egress", "links", "progs", "maps"] {
            let dir = bpffs.join(sub);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let p = entry.map_err(io(&dir))?.path();
                if p.is_dir() {
                    fs::remove_dir(&p).map_err(io(&p))?;
                } else {
                    fs::remove_file(&p).map_err(io(&p))?;
                    removed += 1;
                }
            }
        }
        for sub in ["links", "progs", "maps"] {
            let dir = bpffs.join(sub);
            if dir.exists() {
                fs::remove_dir(&dir).map_err(io(&dir))?;
            }
        }
        Ok(removed)
    }

    /// Zeroes a slot's counters, drops, buckets and runtime state (throttle, capture)
    /// and deletes its blocks, for a tenant that was just given it.
    pub fn reset_slot(&mut self, index: u32) -> Result<()> {
        self.reset_slots(&[index])
    }

    /// [`Dataplane::reset_slot`] of every slot in `slots`, with one
    /// `BPF_MAP_UPDATE_BATCH` per map (per [`BATCH_BYTES`] of values) instead of a few
    /// syscalls per slot: a policy that brings 100,000 new tenants resets them all in a
    /// few dozen syscalls. On an error some of the slots may be reset and others not;
    /// the caller applies nothing then (a slot is reset again when next handed out).
    pub fn reset_slots(&mut self, slots: &[u32]) -> Result<()> {
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
    fn zero_entries(&mut self, name: &'static str, keys: &[u32], entry_bytes: usize) -> Result<()> {
        let per_call = batch_entries(entry_bytes);
        let zeros = vec![0u8; entry_bytes * keys.len().min(per_call)];
        for chunk in keys.chunks(per_call) {
            self.update_batch(name, chunk, &zeros[..chunk.len() * entry_bytes])?;
        }
        Ok(())
    }

    /// Sets entry `keys[i]` of the array `name` to `values[i]`, in batches.
    fn set_entries<V: Pod>(
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
    fn update_batch(&mut self, name: &'static str, keys: &[u32], values: &[u8]) -> Result<()> {
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
        let old = self.mirror[target as usize].take();
        self.write_buckets(
            map::ADDRS_V4,
            target * table::V4_BUCKETS,
            &tables.v4,
            old.as_ref().map(|o| o.v4.as_slice()),
        )?;
        self.write_buckets(
            map::ADDRS_V6,
            target * table::V6_BUCKETS,
            &tables.v6,
            old.as_ref().map(|o| o.v6.as_slice()),
        )?;
        self.write_buckets(
            map::MACS,
            target * table::MAC_BUCKETS,
            &tables.macs,
            old.as_ref().map(|o| o.macs.as_slice()),
        )?;
        {
            let (mut keys, mut values) = (Vec::new(), Vec::new());
            for (&index, cfg) in &new.configs {
                if old.as_ref().and_then(|o| o.configs.get(&index)) != Some(cfg) {
                    keys.push(tenant_config_index(target, index));
                    values.push(*cfg);
                }
            }
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
        };
        self.active = target;
        self.last_flip = Some(std::time::Instant::now());
        self.mirror[target as usize] = Some(tables);
        // The half just left is not kept: at 100,000 tenants a half's tables are some
        // 30 MiB (buckets and settings). The next apply writes that half whole, which
        // the batched writes do in tens of milliseconds, instead of only what changed.
        self.mirror[1 - target as usize] = None;
        // The policy is in force now; a throttle left at a rate the new plan undercuts
        // is wrong but not unsafe (it expires), so this cannot fail the apply.
        if let Err(e) = self.refresh_throttles() {
            tracing::warn!(error = %e, "recomputing throttles for the new plans");
        }
        Ok(())
    }

    /// Writes the buckets of one generation's half that differ from what it held
    /// (all of them when that is unknown), in batches.
    fn write_buckets<B: Pod + PartialEq>(
        &mut self,
        name: &'static str,
        base: u32,
        new: &[B],
        old: Option<&[B]>,
    ) -> Result<()> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (i, b) in new.iter().enumerate() {
            if old.map(|o| &o[i]) != Some(b) {
                keys.push(base + i as u32);
                values.push(*b);
            }
        }
        self.set_entries(name, &keys, &values)
    }

    /// Management prefixes are not generational: new ones go in before stale ones
    /// go out, so a suspended tenant never loses its console in between.
    fn sync_management(&mut self, wanted: &[IpNet]) -> Result<()> {
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

    /// A tenant's packets and bytes, summed over CPUs: `[out, in]`.
    pub fn tenant_counters(&self, index: u32) -> Result<[Counters; 2]> {
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
    pub fn drop_counters(&self, index: u32) -> Result<[DropCounters; 2]> {
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

/// Makes an LPM trie hold exactly `wanted` (prefix length, network): inserts first,
/// then removes what is no longer wanted.
fn sync_trie<const N: usize>(
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

/// What the lookup needs to know of a generation: the prefix lengths in use, longest
/// first (`compile` refuses more than `MAX_PREFIX_LENS`), and whether any MAC is bound.
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

/// A short, stable identifier of this build's eBPF object (FNV-1a 64).
pub fn object_id() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in OBJECT {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The tenant-facing map names and their per-generation entry counts in `c`.
pub fn fill(c: &Compiled, tenants: usize) -> HashMap<&'static str, u64> {
    HashMap::from([
        (map::ADDRS_V4, c.v4.len() as u64),
        (map::ADDRS_V6, c.v6.len() as u64),
        (map::MACS, c.macs.len() as u64),
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
