//! The maps, declared once: each one's name, kind, key and value size, capacity and
//! flags ([`Def`]), in the table [`PINNED`] (the maps the daemon pins) and
//! [`INTERNAL`] (the programs' own).
//!
//! Everything else is derived from the table. The programs declare each map by a static
//! of the same name, sized from its row, and fail to build when the static's kind, key
//! or value type disagrees with the row (`warden-ebpf`, module `maps`); the daemon
//! checks maps pinned by an earlier daemon against [`PINNED`] before adopting them; a
//! Tier 1 test checks that the loaded object holds exactly the maps of the table, as
//! the table has them.

use core::mem::size_of;

use crate::{
    bucket, direction,
    facts::{self, BlockKey, BlockValue, LogEntry, Pending, TenantRuntime},
    global, shape, table, Bucket, Bucket128, Bucket64, Counters, DropCounters, GenConfig,
    IfaceConfig, TenantConfig, GENERATIONS, MAX_IFACES, MAX_MANAGEMENT, MAX_TENANTS,
};

/// A map's kind, numbered as the kernel's `bpf_map_type`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`.
    Array = 2,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`.
    PerCpuArray = 6,
    /// `BPF_MAP_TYPE_LRU_HASH`.
    LruHash = 9,
    /// `BPF_MAP_TYPE_LPM_TRIE`.
    LpmTrie = 11,
    /// `BPF_MAP_TYPE_RINGBUF`: no keys or values; its capacity is its size in bytes.
    RingBuf = 27,
}

/// One map of the object as the kernel sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Def {
    /// The map's name in the object, its pin's file name, and the programs' static.
    pub name: &'static str,
    pub kind: Kind,
    /// Bytes of a key (an array's index is a u32; an LPM trie's key is the prefix length,
    /// a u32, then the data).
    pub key_size: u32,
    /// Bytes of a value (per CPU for the per-CPU kinds).
    pub value_size: u32,
    /// Entries (a ring buffer: bytes). [`ATTEMPT_LOG`]'s is resized at load, see there.
    pub max_entries: u32,
    /// `map_flags` at creation.
    pub flags: u32,
}

/// `BPF_F_NO_PREALLOC`: entries allocated when inserted (the kernel requires it of LPM
/// tries).
pub const NO_PREALLOC: u32 = 1;
/// `BPF_F_MMAPABLE`: an array the daemon can map into its memory.
pub const MMAPABLE: u32 = 1 << 10;

/// Array\[1\] of u32: the active generation. Written by the daemon (the flip).
pub const ACTIVE: &str = "ACTIVE";
/// Array\[GENERATIONS\] of [`GenConfig`](super::GenConfig). Written by the daemon.
pub const GEN_CONFIG: &str = "GEN_CONFIG";
/// Array of [`Bucket64`](super::Bucket64), index generation * V4_BUCKETS + bucket:
/// IPv4 prefixes -> tenant. Written by the daemon.
pub const ADDRS_V4: &str = "ADDRS_V4";
/// Array of [`Bucket128`](super::Bucket128), index generation * V6_BUCKETS + bucket:
/// IPv6 prefixes -> tenant. Written by the daemon.
pub const ADDRS_V6: &str = "ADDRS_V6";
/// Array of [`Bucket64`](super::Bucket64), index generation * MAC_BUCKETS + bucket:
/// bound MACs ([`table::key_mac`](super::table::key_mac)) and bound ports
/// ([`table::key_port`](super::table::key_port)) -> tenant. Written by the daemon.
pub const MACS: &str = "MACS";
/// Array of [`TenantConfig`](super::TenantConfig), index
/// [`tenant_config_index`](super::tenant_config_index). Written by the daemon.
pub const TENANT_CONFIG: &str = "TENANT_CONFIG";
/// LPM trie `Key<[u8; 4]>` -> u8: management prefixes. Written by the daemon.
pub const MANAGEMENT_V4: &str = "MANAGEMENT_V4";
/// LPM trie `Key<[u8; 16]>` -> u8: management prefixes. Written by the daemon.
pub const MANAGEMENT_V6: &str = "MANAGEMENT_V6";
/// Array of [`Bucket`](super::Bucket), index [`bucket::index`](super::bucket::index).
/// Written by the programs (atomically, shared by all CPUs); zeroed by the daemon.
pub const BUCKETS: &str = "BUCKETS";
/// Per-CPU array of [`Counters`](super::Counters), index
/// [`tenant_counter_index`](super::tenant_counter_index). Written by the programs.
pub const TENANT_COUNTERS: &str = "TENANT_COUNTERS";
/// Per-CPU array of [`DropCounters`](super::DropCounters), index
/// [`tenant_counter_index`](super::tenant_counter_index). Written by the programs.
pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
/// Per-CPU array of [`Counters`](super::Counters), index
/// [`global::index`](super::global::index). Written by the programs.
pub const GLOBAL_COUNTERS: &str = "GLOBAL_COUNTERS";
/// Array of u64 words, [`CONTACT_WORDS`](crate::facts::CONTACT_WORDS): the contact
/// filter. Written by the programs.
pub const CONTACTS: &str = "CONTACTS";
/// Array of [`Pending`](crate::facts::Pending), [`PENDING_SLOTS`](crate::facts::PENDING_SLOTS).
/// Written by the programs.
pub const PENDING: &str = "PENDING";
/// Array of u64, `SKETCH_ROWS * SKETCH_WIDTH`: the flood sketch. Written by the programs.
pub const SKETCH: &str = "SKETCH";
/// Array of u64, [`REPORTED_SLOTS`](crate::facts::REPORTED_SLOTS): flood events sent
/// this epoch (epoch << 32 | key tag). Written by the programs.
pub const REPORTED: &str = "REPORTED";
/// Ring buffer of [`Event`](crate::facts::Event) and
/// [`SampleEvent`](crate::facts::SampleEvent). Written by the programs.
pub const EVENTS: &str = "EVENTS";
/// Array of [`TenantRuntime`](crate::facts::TenantRuntime), index tenant. Written by
/// the daemon (the programs count `capture` down).
pub const TENANT_RUNTIME: &str = "TENANT_RUNTIME";
/// Hash [`BlockKey`](crate::facts::BlockKey) -> [`BlockValue`](crate::facts::BlockValue),
/// [`MAX_BLOCKS`](crate::facts::MAX_BLOCKS) entries. Written by the daemon.
pub const BLOCKS: &str = "BLOCKS";
/// Per-CPU array of u64, [`fact_counter`](crate::facts::fact_counter). Written by the
/// programs.
pub const FACT_COUNTERS: &str = "FACT_COUNTERS";
/// Array of [`LogEntry`](crate::facts::LogEntry), memory-mappable,
/// [`log_entries`](crate::facts::log_entries) of the possible CPUs. Written by the
/// programs, read by the daemon through a mapping. The object sizes it for
/// [`LOG_DEFAULT_CPUS`](crate::facts::LOG_DEFAULT_CPUS); the daemon's loader resizes it
/// for the machine's possible CPUs before creating it.
pub const ATTEMPT_LOG: &str = "ATTEMPT_LOG";
/// Hash ifindex (u32) -> [`IfaceConfig`](super::IfaceConfig), [`MAX_IFACES`](super::MAX_IFACES)
/// entries: what each attached interface passes that the programs do not parse.
/// Written by the daemon; read by the programs only for such frames.
pub const IFACES: &str = "IFACES";

/// Per-CPU array, [`FLOOD_LOCAL_SLOTS`](crate::facts::FLOOD_LOCAL_SLOTS): each CPU's
/// outbound flood counts not yet added to [`SKETCH`]. The programs' own.
pub const FLOOD_LOCAL: &str = "FLOOD_LOCAL";
/// Per-CPU array, [`FLOOD_LOCAL_SLOTS`](crate::facts::FLOOD_LOCAL_SLOTS): each CPU's
/// inbound flood counts not yet added to [`SKETCH`]. The programs' own.
pub const FLOOD_LOCAL_IN: &str = "FLOOD_LOCAL_IN";
/// Per-CPU array\[1\]: each CPU's last clock reading. The programs' own.
pub const CLOCK_CACHE: &str = "CLOCK_CACHE";
/// Per-CPU array, [`BLOCK_CACHE_SLOTS`]: each CPU's last block lookups, each good for
/// the clock tick it was made in while the tenant's blocks version stands. The
/// programs' own.
pub const BLOCK_CACHE: &str = "BLOCK_CACHE";
/// Array of sets, [`shape::FLOW_SETS`](crate::shape::FLOW_SETS), each
/// [`shape::FLOW_WAYS`](crate::shape::FLOW_WAYS) u64 ways (a flow: its tenant and flow
/// hash, its leaf, the period it was last seen in): the leaf class each shaped flow was
/// given. The programs' own.
pub const SHAPE_FLOWS: &str = "SHAPE_FLOWS";
/// Array of u32, index tenant, [`shape::MAX_SLOTS`](crate::shape::MAX_SLOTS): the leaf
/// the tenant's next new flow gets (a rotation). The programs' own.
pub const SHAPE_ROTOR: &str = "SHAPE_ROTOR";
/// Per-CPU array of u64, [`shape::stat`](crate::shape::stat): new shaped flows, given a
/// leaf or not remembered. The programs' own.
pub const SHAPE_STATS: &str = "SHAPE_STATS";
/// Slots of [`BLOCK_CACHE`] per CPU.
pub const BLOCK_CACHE_SLOTS: u32 = 64;
/// Per-CPU array\[1\]: each CPU's last spoofing claim reported (or found already
/// reported) and the clock tick it holds for. The programs' own.
pub const SPOOF_CACHE: &str = "SPOOF_CACHE";

const fn def(name: &'static str, kind: Kind, key: usize, value: usize, max_entries: u32) -> Def {
    Def {
        name,
        kind,
        key_size: key as u32,
        value_size: value as u32,
        max_entries,
        flags: 0,
    }
}

/// An array (or per-CPU array) of `max_entries` values of `value` bytes.
const fn array(name: &'static str, kind: Kind, value: usize, max_entries: u32) -> Def {
    def(name, kind, size_of::<u32>(), value, max_entries)
}

/// An LPM trie key: the prefix length, then `data` bytes.
const fn lpm_key(data: usize) -> usize {
    size_of::<u32>() + data
}

/// Every map the daemon pins (under `<bpffs>/maps/<name>`), in the order it pins them.
pub const PINNED: [Def; 22] = [
    array(ACTIVE, Kind::Array, size_of::<u32>(), 1),
    array(GEN_CONFIG, Kind::Array, size_of::<GenConfig>(), GENERATIONS),
    array(
        ADDRS_V4,
        Kind::Array,
        size_of::<Bucket64>(),
        table::V4_BUCKETS * GENERATIONS,
    ),
    array(
        ADDRS_V6,
        Kind::Array,
        size_of::<Bucket128>(),
        table::V6_BUCKETS * GENERATIONS,
    ),
    array(
        MACS,
        Kind::Array,
        size_of::<Bucket64>(),
        table::MAC_BUCKETS * GENERATIONS,
    ),
    array(
        TENANT_CONFIG,
        Kind::Array,
        size_of::<TenantConfig>(),
        MAX_TENANTS * GENERATIONS,
    ),
    Def {
        flags: NO_PREALLOC,
        ..def(MANAGEMENT_V4, Kind::LpmTrie, lpm_key(4), 1, MAX_MANAGEMENT)
    },
    Def {
        flags: NO_PREALLOC,
        ..def(MANAGEMENT_V6, Kind::LpmTrie, lpm_key(16), 1, MAX_MANAGEMENT)
    },
    array(
        BUCKETS,
        Kind::Array,
        size_of::<Bucket>(),
        MAX_TENANTS * bucket::PER_TENANT,
    ),
    array(
        TENANT_COUNTERS,
        Kind::PerCpuArray,
        size_of::<Counters>(),
        MAX_TENANTS * direction::COUNT,
    ),
    array(
        DROP_COUNTERS,
        Kind::PerCpuArray,
        size_of::<DropCounters>(),
        MAX_TENANTS * direction::COUNT,
    ),
    array(
        GLOBAL_COUNTERS,
        Kind::PerCpuArray,
        size_of::<Counters>(),
        global::ENTRIES,
    ),
    array(
        CONTACTS,
        Kind::Array,
        size_of::<u64>(),
        facts::CONTACT_WORDS,
    ),
    array(
        PENDING,
        Kind::Array,
        size_of::<Pending>(),
        facts::PENDING_SLOTS,
    ),
    array(
        SKETCH,
        Kind::Array,
        size_of::<u64>(),
        facts::SKETCH_ROWS * facts::SKETCH_WIDTH,
    ),
    array(
        REPORTED,
        Kind::Array,
        size_of::<u64>(),
        facts::REPORTED_SLOTS,
    ),
    def(EVENTS, Kind::RingBuf, 0, 0, facts::EVENTS_RING_BYTES),
    array(
        TENANT_RUNTIME,
        Kind::Array,
        size_of::<TenantRuntime>(),
        MAX_TENANTS,
    ),
    def(
        BLOCKS,
        Kind::Hash,
        size_of::<BlockKey>(),
        size_of::<BlockValue>(),
        facts::MAX_BLOCKS,
    ),
    array(
        FACT_COUNTERS,
        Kind::PerCpuArray,
        size_of::<u64>(),
        facts::fact_counter::COUNT,
    ),
    Def {
        flags: MMAPABLE,
        ..array(
            ATTEMPT_LOG,
            Kind::Array,
            size_of::<LogEntry>(),
            facts::log_entries(facts::LOG_DEFAULT_CPUS),
        )
    },
    def(
        IFACES,
        Kind::Hash,
        size_of::<u32>(),
        size_of::<IfaceConfig>(),
        MAX_IFACES,
    ),
];

/// The programs' own maps: created with the object, never pinned or read by the daemon.
/// Their value types are the programs' (private, not shared), so their sizes are
/// written here as numbers, which the programs check against those types when they
/// build.
pub const INTERNAL: [Def; 8] = [
    array(FLOOD_LOCAL, Kind::PerCpuArray, 32, facts::FLOOD_LOCAL_SLOTS),
    array(
        FLOOD_LOCAL_IN,
        Kind::PerCpuArray,
        48,
        facts::FLOOD_LOCAL_SLOTS,
    ),
    array(CLOCK_CACHE, Kind::PerCpuArray, 16, 1),
    array(BLOCK_CACHE, Kind::PerCpuArray, 48, BLOCK_CACHE_SLOTS),
    array(SPOOF_CACHE, Kind::PerCpuArray, 40, 1),
    array(
        SHAPE_FLOWS,
        Kind::Array,
        size_of::<u64>() * shape::FLOW_WAYS as usize,
        shape::FLOW_SETS,
    ),
    array(SHAPE_ROTOR, Kind::Array, size_of::<u32>(), shape::MAX_SLOTS),
    array(
        SHAPE_STATS,
        Kind::PerCpuArray,
        size_of::<u64>(),
        shape::stat::COUNT,
    ),
];

/// The names of [`PINNED`], in its order.
pub const ALL: [&str; PINNED.len()] = {
    let mut names = [""; PINNED.len()];
    let mut i = 0;
    while i < PINNED.len() {
        names[i] = PINNED[i].name;
        i += 1;
    }
    names
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The row of the map called `name`, in [`PINNED`] or [`INTERNAL`].
pub const fn find(name: &str) -> Option<Def> {
    let mut i = 0;
    while i < PINNED.len() {
        if same(PINNED[i].name, name) {
            return Some(PINNED[i]);
        }
        i += 1;
    }
    let mut i = 0;
    while i < INTERNAL.len() {
        if same(INTERNAL[i].name, name) {
            return Some(INTERNAL[i]);
        }
        i += 1;
    }
    None
}

// Names are unique across the table, and fit the kernel's 16-byte map name (15 and a NUL).
const _: () = {
    let mut i = 0;
    while i < PINNED.len() + INTERNAL.len() {
        let d = if i < PINNED.len() {
            PINNED[i]
        } else {
            INTERNAL[i - PINNED.len()]
        };
        assert!(
            d.name.len() <= 15,
            "a map name longer than the kernel keeps"
        );
        let mut j = 0;
        let mut seen = 0;
        while j < PINNED.len() + INTERNAL.len() {
            let e = if j < PINNED.len() {
                PINNED[j]
            } else {
                INTERNAL[j - PINNED.len()]
            };
            if same(d.name, e.name) {
                seen += 1;
            }
            j += 1;
        }
        assert!(seen == 1, "a map name twice in the table");
        i += 1;
    }
};
