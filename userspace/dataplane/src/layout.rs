//! The maps the object must have, with their types and sizes, checked against pins an
//! earlier daemon left (an incompatible pin is refused by name), and the loader that
//! sizes the per-CPU attempt log.

use super::*;

/// The layout every map must have: (name, type, key size, value size, capacity).
pub(crate) fn expected_layout(log_cpus: u32) -> [(&'static str, MapType, u32, u32, u32); 22] {
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

/// The machine's possible CPUs (`/sys/devices/system/cpu/possible`), which the attempt
/// log is sized for.
pub(crate) fn possible_cpus() -> Result<u32> {
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
