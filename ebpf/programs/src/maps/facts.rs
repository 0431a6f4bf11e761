//! Detection facts: what the programs observe for the detectors (see `crate::facts` and
//! `warden_common::facts`). Written by the programs; the daemon reads the events, the
//! attempt log and the counters.

use aya_ebpf::maps::{Array, PerCpuArray, RingBuf};
use warden_common::facts::{LogEntry, Pending};

use crate::facts::{
    flood::{FloodLocal, FloodLocalIn},
    spoof::SpoofCached,
};

abi_map! {
    /// Index: `key & (CONTACT_WORDS - 1)` of a `contact_key`. Value: a bloom-filter word,
    /// contact epoch in the high half, bits in the low half (see `warden_common::facts`).
    /// Written here.
    CONTACTS: Array<u64> = Array::with_max_entries;
}

abi_map! {
    /// Index: `(key >> 16) & (PENDING_SLOTS - 1)` of an attempt's `contact_key`. Value:
    /// the attempt waiting for its answer (tag 0 = empty). Written here.
    PENDING: Array<Pending> = Array::with_max_entries;
}

abi_map! {
    /// Index: `sketch_index(sketch_key(..), row)`. Value: an epoch-tagged count of the
    /// flood sketch, shared by all CPUs and added to atomically. Written here.
    SKETCH: Array<u64> = Array::with_max_entries;
}

abi_map! {
    /// Index: `flood::out_slot` of (tenant, out class, folded remote). Value: per CPU,
    /// the flood counts of that key not yet added to SKETCH (`flood::FloodLocal`).
    /// Written here; internal to the programs (not pinned by the daemon).
    FLOOD_LOCAL: PerCpuArray<FloodLocal> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index: `flood::in_slot` of (tenant, folded tenant address). Value: per CPU, the
    /// inbound flood counts (packets and bytes) of one tenant address not yet added to
    /// SKETCH (`flood::FloodLocalIn`). Written here; internal to the programs (not
    /// pinned by the daemon).
    FLOOD_LOCAL_IN: PerCpuArray<FloodLocalIn> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index: `(key >> 20) & (REPORTED_SLOTS - 1)` of a `sketch_key`. Value: `epoch << 32
    /// | key as u32` of the flood event last sent from that slot. Written here.
    REPORTED: Array<u64> = Array::with_max_entries;
}

abi_map! {
    /// Events (`warden_common::facts::Event`) and captured frames (`SampleEvent`) for
    /// the daemon. Written here, read by the daemon.
    EVENTS: RingBuf = RingBuf::with_byte_size;
}

abi_map! {
    /// Index: a `fact_counter`. Value: per-CPU count of events sent and lost, log entries
    /// written (each CPU's next log entry number), samples, blocked packets. Written
    /// here.
    FACT_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries;
}

abi_map! {
    /// Index: `cpu * LOG_SLOTS + n % LOG_SLOTS` for a CPU's log entry `n`. Value: a
    /// first contact or accepted connection (`warden_common::facts::LogEntry`).
    /// Memory-mappable: the daemon reads it in place. Sized for `LOG_DEFAULT_CPUS` in
    /// the object; the daemon sizes it for the machine's possible CPUs when it creates
    /// it. Written here.
    ATTEMPT_LOG: Array<LogEntry> = Array::with_max_entries;
}

abi_map! {
    /// Index 0. Value: per CPU, the last spoofing claim passed on to be reported and the
    /// clock tick it holds for (`facts::spoof::SpoofCached`). Written here; internal to
    /// the programs (a cache, not pinned by the daemon).
    SPOOF_CACHE: PerCpuArray<SpoofCached> = PerCpuArray::with_max_entries;
}
