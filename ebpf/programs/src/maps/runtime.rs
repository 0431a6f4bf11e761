//! The daemon's answers to detections, per tenant: blocks, throttles and frame capture.
//! Written by the daemon; the programs read them (and count capture down).

use aya_ebpf::maps::{Array, HashMap, PerCpuArray};
use warden_common::facts::{BlockKey, BlockValue, TenantRuntime};

use crate::enforce::BlockCached;

abi_map! {
    /// Index: tenant. Value: the daemon's runtime state for it (blocks present, throttle,
    /// frames to capture). Written by the daemon; `capture` counted down here.
    TENANT_RUNTIME: Array<TenantRuntime> = Array::with_max_entries;
}

abi_map! {
    /// Key: a block (tenant, direction, address or port). Value: its expiry. Written by
    /// the daemon; looked up here only for tenants whose runtime flags say they have
    /// blocks.
    BLOCKS: HashMap<BlockKey, BlockValue> = HashMap::with_max_entries;
}

abi_map! {
    /// Index: the slot of a lookup's key (`blocks::cache_slot`). Value: per CPU, a block
    /// lookup's answer and the clock tick it holds for (`enforce::BlockCached`). Written
    /// here; internal to the programs (a cache, not pinned by the daemon).
    BLOCK_CACHE: PerCpuArray<BlockCached> = PerCpuArray::with_max_entries;
}
