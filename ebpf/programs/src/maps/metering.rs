//! Metering: the counters the daemon reads, the token buckets of plans and budgets, and
//! the clock they are read against. Written by the programs.

use aya_ebpf::maps::{Array, PerCpuArray};
use warden_common::{Bucket, Counters, DropCounters};

use crate::clock::ClockCache;

abi_map! {
    /// Index: tenant * 4 + (out, in, smtp, events). Value: token bucket state, shared by
    /// all CPUs and updated atomically here; zeroed by the daemon when a tenant slot is
    /// reused.
    BUCKETS: Array<Bucket> = Array::with_max_entries;
}

abi_map! {
    /// Index: tenant * 2 + direction. Value: per-CPU packets and bytes seen. Written here.
    TENANT_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index: tenant * 2 + direction. Value: per-CPU drops by reason. Written here.
    DROP_COUNTERS: PerCpuArray<DropCounters> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index: slot * 2 + direction (see `warden_common::global`). Value: per-CPU packets
    /// and bytes of traffic that belongs to no tenant. Written here.
    GLOBAL_COUNTERS: PerCpuArray<Counters> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index 0. Value: per-CPU, the CPU's last clock reading and its jiffy
    /// (`clock::ClockCache`). Written here; internal to the programs (a cache, not
    /// pinned by the daemon).
    CLOCK_CACHE: PerCpuArray<ClockCache> = PerCpuArray::with_max_entries;
}
