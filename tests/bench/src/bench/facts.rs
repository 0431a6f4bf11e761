//! The fact maps the fact cases read and write from userspace, and the helpers they
//! share: the contact filter's bits, remotes in event form, the contact epoch, the fact
//! counters.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    Ebpf,
};
use warden_common::{
    facts::{
        contact_key, contact_tag, fact_counter, fold_addr, Event, Pending, CONTACT_EPOCH_SHIFT,
        CONTACT_WORDS,
    },
    map,
};
use warden_dataplane::log::{event_of, AttemptLog};

use super::{
    answer::answer_windows, new_flow::new_flow_remote, tracked::Tracked, ANSWER_RUNS,
    ANSWER_WINDOW, NEW_FLOW_PORT, PROBE_TENANT,
};

/// The fact maps the fact cases need from userspace, taken out of the object (the
/// programs keep using them; they are the daemon's pinned maps): the attempt log, to
/// read with a reader of our own (the daemon's reads it too: reading copies, it takes
/// nothing away) the attempts of new-flow runs and the answers of detection-event runs;
/// the contact filter, to set a new-flow run's words back to their loaded state; the
/// pending table, to write a detection-event run's attempts and to check the load; the
/// sketch, to check the load. Also the tracked remotes' load and the detection-event
/// windows. The event ring is the daemon's alone (a ring has one reader): the cases
/// count what the programs send into it by the fact counters.
pub(super) struct FactMaps {
    pub(super) log: AttemptLog,
    pub(super) contacts: Array<MapData, u64>,
    pub(super) pending: Array<MapData, Pending>,
    pub(super) sketch: Array<MapData, u64>,
    /// The tracked remotes' state, once loaded.
    pub(super) tracked: Option<Tracked>,
    /// Loads of the tracked remotes so far (one more each time the contact epoch moved
    /// on).
    pub(super) loads: u32,
    /// Of the new-flow runs timed: repetitions, and those the loaded filter took for
    /// known remotes (its false positives).
    pub(super) new_flow_reps: u64,
    pub(super) new_flow_known: u64,
    /// First remote of each detection-event window ([`answer_windows`]).
    pub(super) answer_windows: Vec<u32>,
}

impl FactMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<FactMaps> {
        let contacts = ebpf.take_map(map::CONTACTS).context("no CONTACTS map")?;
        let pending = ebpf.take_map(map::PENDING).context("no PENDING map")?;
        let sketch = ebpf.take_map(map::SKETCH).context("no SKETCH map")?;
        let log = match ebpf.take_map(map::ATTEMPT_LOG) {
            Some(aya::maps::Map::Array(data)) => data,
            _ => bail!("no ATTEMPT_LOG array in the object"),
        };
        Ok(FactMaps {
            log: AttemptLog::new(log).context("mapping ATTEMPT_LOG")?,
            contacts: Array::try_from(contacts).context("opening CONTACTS")?,
            pending: Array::try_from(pending).context("opening PENDING")?,
            sketch: Array::try_from(sketch).context("opening SKETCH")?,
            tracked: None,
            loads: 0,
            new_flow_reps: 0,
            new_flow_known: 0,
            answer_windows: answer_windows(PROBE_TENANT, ANSWER_RUNS, ANSWER_WINDOW)?,
        })
    }

    /// Every new entry of the attempt log, as events, with how many entries were
    /// written over unread since the last call.
    pub(super) fn drain(&mut self) -> (Vec<Event>, u64) {
        let lost_before = self.log.lost();
        let mut out = Vec::new();
        self.log.take(usize::MAX, |e| out.push(event_of(&e)));
        (out, self.log.lost() - lost_before)
    }

    /// Sets the contact filter words of the first `n` remotes of the new-flow frame of
    /// `tenant` back to their loaded state (the tracked remotes' bits, in the current
    /// contact epoch), and returns the repetitions that will be first contacts: all but
    /// those whose two bits the loaded words or the run's earlier remotes already hold
    /// (the filter's false positives), found by running the filter's formulas
    /// (`warden_common::facts`, as the programs use them) over the run.
    pub(super) fn arm_new_flows(&mut self, tenant: u32, n: u32) -> Result<Vec<u32>> {
        let tracked = self
            .tracked
            .as_ref()
            .context("the tracked remotes are not loaded")?;
        let mut words: std::collections::BTreeMap<u32, u32> = Default::default();
        let mut new = Vec::with_capacity(n as usize);
        for k in 0..n {
            let key = contact_key(
                tenant,
                contact_tag::OUT,
                6,
                NEW_FLOW_PORT,
                fold_addr(&remote16(new_flow_remote(k))),
            );
            let (w, bits) = filter_bits(key);
            let word = words.entry(w).or_insert(tracked.words[w as usize]);
            if *word & bits != bits {
                *word |= bits;
                new.push(k);
            }
        }
        for &w in words.keys() {
            let loaded = (tracked.epoch << 32) | u64::from(tracked.words[w as usize]);
            self.contacts
                .set(w, loaded, 0)
                .context("writing CONTACTS")?;
        }
        Ok(new)
    }
}

/// The word index and the two bits of a contact key in the filter (as the programs'
/// `contact_word`).
pub(super) fn filter_bits(key: u64) -> (u32, u32) {
    let bits = (1u32 << ((key >> 32) & 31)) | (1u32 << ((key >> 40) & 31));
    (key as u32 & (CONTACT_WORDS - 1), bits)
}

/// The contact epoch of the programs' clock now (`CLOCK_MONOTONIC_COARSE`).
pub(super) fn contact_epoch() -> Result<u64> {
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    Ok((ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) >> CONTACT_EPOCH_SHIFT)
}

/// Waits, when the coarse clock is within a second of a contact-epoch boundary, until
/// it is a second past it. The programs read the time through a per-CPU cache that may
/// trail the clock by a tick, so near a boundary they and this process can disagree on
/// the epoch: the filter words loaded for one epoch would then be empty for the other,
/// and a new-flow run would log every repetition (seen once in a full run: 12,288 logged
/// for 11,654 predicted). A run is a few milliseconds; an epoch is 2^36 ns (68.7 s).
pub(super) fn away_from_epoch_boundary() -> Result<()> {
    const MARGIN: u64 = 1_000_000_000;
    let epoch_ns = 1u64 << CONTACT_EPOCH_SHIFT;
    // SAFETY: clock_gettime writes into the timespec we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error()).context("clock_gettime");
    }
    let into = (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) % epoch_ns;
    let wait = if into < MARGIN {
        MARGIN - into
    } else if epoch_ns - into < MARGIN {
        epoch_ns - into + MARGIN
    } else {
        0
    };
    std::thread::sleep(std::time::Duration::from_nanos(wait));
    Ok(())
}

/// An IPv4 address in event form: network order in the first 4 bytes.
pub(super) fn remote16(a: Ipv4Addr) -> [u8; 16] {
    let mut out = [0; 16];
    out[..4].copy_from_slice(&a.octets());
    out
}

/// The fact counters summed over CPUs, by `fact_counter` index.
pub(super) fn fact_counters(ebpf: &Ebpf) -> Result<Vec<u64>> {
    let m = ebpf
        .map(map::FACT_COUNTERS)
        .context("no FACT_COUNTERS map")?;
    let a: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(m)?;
    (0..fact_counter::COUNT)
        .map(|i| Ok(a.get(&i, 0)?.iter().sum()))
        .collect()
}
