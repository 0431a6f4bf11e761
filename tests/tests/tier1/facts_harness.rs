//! Reading what the programs report: records of the event ring and the attempt log,
//! the fact counters, the pending table, the contact filter and runtime maps, and the
//! run that checks a frame's verdict and counters and returns its records.

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray};
use warden::dataplane::log::event_of;
use warden_common::{
    facts::{
        contact_key, contact_tag, event, fact_counter, fold_addr, pending_slot, BlockKey,
        BlockValue, Event, Pending, SampleEvent, TenantRuntime, CONTACT_EPOCH_SHIFT, CONTACT_WORDS,
    },
    map, GenConfig, Rate,
};
use warden_tests::packets::Frame;

use crate::{fixture_policy::*, harness::*};

/// A ring-buffer record, decoded by its size and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Record {
    Event(Event),
    Sample(SampleEvent),
}

pub(crate) fn decode(bytes: &[u8]) -> Record {
    let kind = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes"));
    if kind == event::SAMPLE {
        assert_eq!(
            bytes.len(),
            std::mem::size_of::<SampleEvent>(),
            "sample record"
        );
        // SAFETY: the length is the type's size (checked above), and the type is plain
        // integers and arrays (`aya::Pod`): any bytes are a valid value.
        Record::Sample(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    } else {
        assert_eq!(bytes.len(), std::mem::size_of::<Event>(), "event record");
        // SAFETY: as above.
        Record::Event(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
    }
}

/// An IPv4 address in event form: network order in the first 4 bytes.
pub(crate) fn e4(a: Ipv4Addr) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a.octets());
    out
}

pub(crate) fn e6(a: Ipv6Addr) -> [u8; 16] {
    a.octets()
}

/// The key of a from-tenant attempt of `tenant` at (`remote`, `port`, `proto`).
pub(crate) fn attempt_key(tenant: u32, proto: u8, port: u16, remote: [u8; 16]) -> u64 {
    contact_key(tenant, contact_tag::OUT, proto, port, fold_addr(&remote))
}

/// An event of tenant A (time left 0: compared separately).
#[allow(clippy::too_many_arguments)]
pub(crate) fn ev(
    kind: u32,
    dir: u32,
    proto: u8,
    detail: u8,
    (local, local_port): ([u8; 16], u16),
    (remote, remote_port): ([u8; 16], u16),
) -> Event {
    Event {
        kind,
        tenant: TENANT_A,
        at: 0,
        local,
        remote,
        family: if local[4..] == [0; 12] && remote[4..] == [0; 12] {
            4
        } else {
            6
        },
        proto,
        detail,
        dir: dir as u8,
        local_port,
        remote_port,
        value: 0,
        threshold: 0,
    }
}

/// Checks that `got` is exactly the events `want`, in order, each stamped within the
/// clock window [t0, t1].
pub(crate) fn assert_events(what: &str, got: &[Record], want: &[Event], (t0, t1): (u64, u64)) {
    let events: Vec<Event> = got
        .iter()
        .map(|r| match r {
            Record::Event(e) => *e,
            Record::Sample(s) => panic!("{what}: a sample where events were expected: {s:?}"),
        })
        .collect();
    assert_eq!(
        events.len(),
        want.len(),
        "{what}: {} events, expected {}: {events:#?}",
        events.len(),
        want.len()
    );
    for (got, want) in events.iter().zip(want) {
        assert!(
            (t0..=t1).contains(&got.at),
            "{what}: event at {} outside the run [{t0}, {t1}]: {got:?}",
            got.at
        );
        assert_eq!(
            *got,
            Event {
                at: got.at,
                ..*want
            },
            "{what}"
        );
    }
}

/// The fact counters summed over CPUs, by `fact_counter` index.
pub(crate) type Facts = [u64; fact_counter::COUNT as usize];

pub(crate) fn fact_delta(before: &Facts, after: &Facts) -> Facts {
    std::array::from_fn(|i| after[i] - before[i])
}

/// A fact counter delta with only `entries` set.
pub(crate) fn facts_moved(entries: &[(u32, u64)]) -> Facts {
    let mut f = [0; fact_counter::COUNT as usize];
    for &(i, n) in entries {
        f[i as usize] = n;
    }
    f
}

impl TestDataplane {
    /// Every new entry of the attempt log, then every record in the ring, oldest first
    /// in each (the daemon's order: an attempt is logged before its answer can come).
    pub(crate) fn drain(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        self.log
            .take(usize::MAX, |e| out.push(Record::Event(event_of(&e))));
        assert_eq!(self.log.lost(), 0, "attempt-log entries written over");
        while let Some(item) = self.ring.next() {
            out.push(decode(&item));
        }
        out
    }

    pub(crate) fn fact_counters(&self) -> Facts {
        let m = self.ebpf.map(map::FACT_COUNTERS).expect("FACT_COUNTERS");
        let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(m).expect("a per-CPU array");
        std::array::from_fn(|i| {
            a.get(&(i as u32), 0)
                .expect("reading FACT_COUNTERS")
                .iter()
                .sum()
        })
    }

    /// The pending slot `key` maps to.
    pub(crate) fn pending(&self, key: u64) -> Pending {
        let m = self.ebpf.map(map::PENDING).expect("PENDING");
        let a: Array<&MapData, Pending> = Array::try_from(m).expect("an array");
        a.get(&pending_slot(key), 0).expect("reading PENDING")
    }

    pub(crate) fn word(&self, name: &str, index: u32) -> u64 {
        let m = self.ebpf.map(name).expect("the map");
        let a: Array<&MapData, u64> = Array::try_from(m).expect("an array");
        a.get(&index, 0).expect("reading a word")
    }

    pub(crate) fn runtime(&self, tenant: u32) -> TenantRuntime {
        let m = self.ebpf.map(map::TENANT_RUNTIME).expect("TENANT_RUNTIME");
        let a: Array<&MapData, TenantRuntime> = Array::try_from(m).expect("an array");
        a.get(&tenant, 0).expect("reading TENANT_RUNTIME")
    }

    /// Puts contact key `key` into the contact filter of the current contact epoch, as
    /// the programs would (its word's epoch and its two bits), keeping the word's bits
    /// of this epoch.
    pub(crate) fn mark_contact(&mut self, key: u64) {
        let epoch = (monotonic_ns() >> CONTACT_EPOCH_SHIFT) & 0xffff_ffff;
        let index = key as u32 & (CONTACT_WORDS - 1);
        let bits = (1u64 << ((key >> 32) & 31)) | (1u64 << ((key >> 40) & 31));
        let old = self.word(map::CONTACTS, index);
        let have = if old >> 32 == epoch {
            old & 0xffff_ffff
        } else {
            0
        };
        let m = self.ebpf.map_mut(map::CONTACTS).expect("CONTACTS");
        let mut a: Array<&mut MapData, u64> = Array::try_from(m).expect("an array");
        a.set(index, (epoch << 32) | have | bits, 0)
            .expect("writing CONTACTS");
    }

    pub(crate) fn set_runtime(&mut self, tenant: u32, rt: TenantRuntime) {
        let m = self
            .ebpf
            .map_mut(map::TENANT_RUNTIME)
            .expect("TENANT_RUNTIME");
        let mut a: Array<&mut MapData, TenantRuntime> = Array::try_from(m).expect("an array");
        a.set(tenant, rt, 0).expect("writing TENANT_RUNTIME");
    }

    pub(crate) fn set_block(&mut self, key: BlockKey, until_ns: u64) {
        let m = self.ebpf.map_mut(map::BLOCKS).expect("BLOCKS");
        let mut h: BpfHashMap<&mut MapData, BlockKey, BlockValue> =
            BpfHashMap::try_from(m).expect("a hash map");
        h.insert(key, BlockValue { until_ns }, 0)
            .expect("writing BLOCKS");
    }

    /// Replaces the event budget of generation 0 (the active one).
    pub(crate) fn set_event_budget(&mut self, rate: Rate) {
        let m = self.ebpf.map_mut(map::GEN_CONFIG).expect("GEN_CONFIG");
        let mut a: Array<&mut MapData, GenConfig> = Array::try_from(m).expect("an array");
        let mut gc = a.get(&0, 0).expect("reading GEN_CONFIG");
        gc.event_budget = rate;
        a.set(0, gc, 0).expect("writing GEN_CONFIG");
    }

    /// Runs `frame` through `prog` (`repeat` times), checks verdict and counters as
    /// `outcome` says, and returns the records it put in the ring with the run's clock
    /// window.
    pub(crate) fn run_facts(
        &mut self,
        prog: Prog,
        what: &str,
        frame: &Frame,
        outcome: RunOutcome,
        repeat: u32,
    ) -> (Vec<Record>, (u64, u64)) {
        let frame = frame.build();
        assert!(
            self.drain().is_empty(),
            "{what}: the ring was not empty before"
        );
        let before = self.snapshot().expect("reading counters");
        let t0 = monotonic_ns();
        let r = self.run_repeat(prog, &frame, repeat);
        let t1 = monotonic_ns();
        let after = self.snapshot().expect("reading counters");
        let r = r.unwrap_or_else(|e| panic!("{what} [{prog}]: {}", run_error(&e)));
        assert_eq!(
            r,
            prog.retval(outcome.verdict()),
            "{what} [{prog}]: verdict, expected {outcome}"
        );
        assert_eq!(
            changes(&before, &after),
            outcome.changes(prog.dir(), frame.len(), repeat.into()),
            "{what} [{prog}]: counters, expected {outcome}"
        );
        (self.drain(), (t0, t1))
    }
}

/// Other remotes nobody owns.
pub(crate) const U2: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 8);
pub(crate) const U3: Ipv4Addr = Ipv4Addr::new(198, 19, 7, 9);
pub(crate) const U2_6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2);
/// Another address of tenant A's /24.
pub(crate) const A2: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 11);

/// The from-tenant and to-tenant program of each hook.
pub(crate) const PAIRS: [(Prog, Prog); 2] =
    [(Prog::XdpFrom, Prog::XdpTo), (Prog::TcFrom, Prog::TcTo)];
