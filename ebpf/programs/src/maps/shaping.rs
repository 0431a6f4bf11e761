//! Egress shaping's flow spreading: which leaf class each shaped flow was given, the
//! rotation that gives them, and what it counted. Written by the programs; internal to
//! them (not pinned: a reload forgets the flows, which then take new leaves).

use aya_ebpf::maps::{Array, LruHashMap, PerCpuArray};

abi_map! {
    /// Key: tenant << 32 | the packet's flow hash. Value: the flow's leaf (below
    /// `shape::LEAVES`). Inserted here for a new flow only; the kernel forgets the flow
    /// seen least recently when it is full.
    SHAPE_FLOWS: LruHashMap<u64, u32> = LruHashMap::with_max_entries;
}

abi_map! {
    /// Index: tenant. Value: the count of its new flows, whose low bits are the leaf the
    /// next one gets. Written here, shared by all CPUs.
    SHAPE_ROTOR: Array<u32> = Array::with_max_entries;
}

abi_map! {
    /// Index: `shape::stat`. Value: per CPU, new shaped flows given a leaf, and those
    /// whose leaf could not be remembered. Written here.
    SHAPE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries;
}
