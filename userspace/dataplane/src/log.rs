//! The programs' attempt log ([`map::ATTEMPT_LOG`](warden_common::map::ATTEMPT_LOG)):
//! per CPU, the last [`LOG_SLOTS`] first contacts, their answers, accepted and SMTP
//! connections, read in place through a shared mapping of the map.
//!
//! The programs write an entry with a few stores to their CPU's own region and no lock
//! (the protocol is [`LogEntry`]'s); this reader keeps, per CPU, the number of the next
//! entry it expects and copies entries until it meets one not yet written. An entry
//! whose slot the CPU has written again before the reader came (more than
//! [`LOG_SLOTS`] entries between two reads) is lost, and counted in
//! [`AttemptLog::lost`].

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{fence, AtomicU64, Ordering},
};

use aya::maps::MapData;
use warden_common::{
    direction,
    facts::{event, Event, LogEntry, LOG_SLOTS},
};

use super::events::{decode_log_event, KernelEvent};

/// A shared read-only mapping of the attempt log, and where the reader is in each CPU's
/// region.
pub struct AttemptLog {
    /// Keeps the map's file descriptor open while mapped.
    _map: MapData,
    base: NonNull<LogEntry>,
    bytes: usize,
    /// Per CPU, the number of the next entry to read.
    next: Vec<u64>,
    lost: u64,
}

// SAFETY: the mapping is owned by this value alone and read only through `&mut self`;
// the kernel writing the shared pages concurrently is what the entry protocol covers.
unsafe impl Send for AttemptLog {}

impl AttemptLog {
    /// Maps the attempt log `map` (an array of [`LogEntry`] made with `BPF_F_MMAPABLE`,
    /// a whole number of CPU regions) and starts after the entries already in it: a
    /// reader taking over from an earlier daemon reads only what comes next.
    pub fn new(map: MapData) -> io::Result<Self> {
        let info = map.info().map_err(io::Error::other)?;
        let entry = std::mem::size_of::<LogEntry>();
        if info.value_size() as usize != entry
            || info.max_entries() == 0
            || info.max_entries() % LOG_SLOTS != 0
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the attempt log has {} entries of {} bytes; expected a multiple of {LOG_SLOTS} entries of {entry} bytes",
                    info.max_entries(),
                    info.value_size()
                ),
            ));
        }
        let cpus = (info.max_entries() / LOG_SLOTS) as usize;
        let bytes = info.max_entries() as usize * entry;
        // SAFETY: a read-only shared mapping of the map's values (the kernel allows it
        // for BPF_F_MMAPABLE arrays; each CPU region is 256 KiB, a whole number of
        // pages); the fd stays open in `_map` for as long as the mapping lives.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<LogEntry>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        let mut log = AttemptLog {
            _map: map,
            base,
            bytes,
            next: vec![0; cpus],
            lost: 0,
        };
        for cpu in 0..cpus {
            let newest = (0..LOG_SLOTS as usize)
                .map(|slot| log.seq(cpu * LOG_SLOTS as usize + slot))
                .max()
                .unwrap_or(0);
            log.next[cpu] = newest;
        }
        Ok(log)
    }

    /// CPU regions in the log.
    pub fn cpus(&self) -> usize {
        self.next.len()
    }

    /// Entries lost: written over by their CPU before they were read.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The `seq` word of entry `index`, read with acquire ordering.
    fn seq(&self, index: usize) -> u64 {
        // SAFETY: `index` is within the mapping (callers stay below cpus * LOG_SLOTS);
        // `seq` is an aligned u64 at the start of a 64-byte entry, which the kernel
        // writes with single 8-byte stores.
        let word = unsafe { &*self.base.as_ptr().add(index).cast::<AtomicU64>() };
        word.load(Ordering::Acquire)
    }

    /// Copies up to `max` new entries into `out`, CPU by CPU, decoding each: (entries
    /// taken, entries that did not decode).
    pub fn drain(&mut self, out: &mut Vec<KernelEvent>, max: usize) -> (u64, u64) {
        let mut errors = 0u64;
        let taken = self.take(max, |entry| match decode_log_event(&event_of(&entry)) {
            Ok(e) => out.push(e),
            Err(e) => {
                errors += 1;
                tracing::debug!(error = %e, "skipping an undecodable attempt-log entry");
            }
        });
        (taken, errors)
    }

    /// Hands up to `max` new entries to `each`, undecoded, CPU by CPU and in order
    /// within a CPU; returns how many.
    pub fn take(&mut self, max: usize, mut each: impl FnMut(LogEntry)) -> u64 {
        let mut taken = 0u64;
        let slots = u64::from(LOG_SLOTS);
        for cpu in 0..self.next.len() {
            while taken < max as u64 {
                let n = self.next[cpu];
                let index = cpu * LOG_SLOTS as usize + (n % slots) as usize;
                let before = self.seq(index);
                if before == 0 || before <= n {
                    // Being written, never written, or an older round: nothing new here.
                    break;
                }
                if before > n + 1 {
                    // The CPU came round again: entries up to `before - 1 - slots` were
                    // written over. The oldest that may still be whole comes next.
                    let oldest = before - slots;
                    self.lost += oldest - n;
                    self.next[cpu] = oldest;
                    continue;
                }
                // SAFETY: within the mapping; a volatile copy, as the kernel may be
                // writing it (checked below).
                let entry = unsafe { std::ptr::read_volatile(self.base.as_ptr().add(index)) };
                fence(Ordering::Acquire);
                if self.seq(index) != n + 1 {
                    // Written over while copied: loop to take the lap into account.
                    continue;
                }
                self.next[cpu] = n + 1;
                taken += 1;
                each(entry);
            }
        }
        taken
    }
}

impl Drop for AttemptLog {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of `bytes` bytes, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// The ring-buffer form of a log entry: what its ATTEMPT, OUTCOME, ACCEPTED or SMTP
/// [`Event`] says (an OUTCOME comes in, the rest go out).
pub fn event_of(e: &LogEntry) -> Event {
    let dir = if u32::from(e.kind) == event::OUTCOME {
        direction::IN
    } else {
        direction::OUT
    };
    Event {
        kind: u32::from(e.kind),
        tenant: e.tenant,
        at: e.at,
        local: e.local,
        remote: e.remote,
        family: e.family,
        proto: e.proto,
        detail: e.detail,
        dir: dir as u8,
        local_port: e.local_port,
        remote_port: e.remote_port,
        value: 0,
        threshold: 0,
    }
}
