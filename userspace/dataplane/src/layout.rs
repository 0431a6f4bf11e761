//! The maps the object must have, with their types and sizes, checked against pins an
//! earlier daemon left (an incompatible pin is refused by name), and the loader that
//! sizes the per-CPU attempt log.

use super::*;

/// The layout every pinned map must have: (name, type, key size, value size, capacity),
/// from the table in `warden_common::map`, with the attempt log sized for `log_cpus`.
pub(crate) fn expected_layout(
    log_cpus: u32,
) -> [(&'static str, MapType, u32, u32, u32); map::PINNED.len()] {
    map::PINNED.map(|d| {
        let entries = if d.name == map::ATTEMPT_LOG {
            facts::log_entries(log_cpus)
        } else {
            d.max_entries
        };
        let kind = match d.kind {
            map::Kind::Hash => MapType::Hash,
            map::Kind::Array => MapType::Array,
            map::Kind::PerCpuArray => MapType::PerCpuArray,
            map::Kind::LruHash => MapType::LruHash,
            map::Kind::LpmTrie => MapType::LpmTrie,
            map::Kind::RingBuf => MapType::RingBuf,
        };
        (d.name, kind, d.key_size, d.value_size, entries)
    })
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
