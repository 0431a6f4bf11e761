//! Egress shaping's flow spreading: which leaf class each shaped flow was given, the
//! rotation that gives them, and what it counted. Written by the programs; internal to
//! them (not pinned: a reload forgets the flows, which then take new leaves).

use aya_ebpf::maps::{Array, PerCpuArray};

use crate::enforce::FlowSet;

abi_map! {
    /// Index: a flow's set (`enforce::spread`). Value: the set's ways, each a flow (its
    /// tenant and flow hash), its leaf (below `shape::LEAVES`) and the period it was last
    /// seen in. Written here for a new flow, and once a period to stamp a flow seen.
    SHAPE_FLOWS: Array<FlowSet> = Array::with_max_entries;
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
