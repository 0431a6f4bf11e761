//! How far the daemon is behind in reading the event ring. The ring is the daemon's to
//! read (a ring has one reader); a detection-event run sends an OUTCOME per repetition
//! into it, and a run started while the daemon is still reading the previous one's
//! would find the ring full and time the lost-event path. This watches the ring's two
//! positions through a read-only mapping of its position pages, reading no record.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{bail, Context as _, Result};
use aya::maps::{Map, MapData};

/// A read-only mapping of an event ring's consumer and producer pages.
pub(super) struct RingWatch {
    /// Keeps the map's file descriptor open while mapped.
    _map: MapData,
    base: NonNull<u8>,
    page: usize,
}

impl RingWatch {
    /// Maps the position pages of the ring `map` (the first page holds the consumer
    /// position, the second the producer's).
    pub(super) fn new(map: Map) -> Result<RingWatch> {
        let Map::RingBuf(map) = map else {
            bail!("the EVENTS map is not a ring buffer");
        };
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .context("the page size")?;
        // SAFETY: a read-only shared mapping of the ring's first two pages (the kernel
        // allows any read-only mapping of a ring buffer map); the fd stays open in
        // `_map` for as long as the mapping lives.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()).context("mapping the EVENTS ring");
        }
        let base = NonNull::new(ptr.cast::<u8>()).context("mmap returned null")?;
        Ok(RingWatch {
            _map: map,
            base,
            page,
        })
    }

    /// Bytes sent into the ring that the daemon has not read yet.
    pub(super) fn backlog(&self) -> u64 {
        let at = |offset: usize| {
            // SAFETY: each position is an aligned u64 at the start of its page, inside
            // the mapping; the kernel and the reader update them atomically.
            unsafe { (*self.base.as_ptr().add(offset).cast::<AtomicU64>()).load(Ordering::Acquire) }
        };
        at(self.page).wrapping_sub(at(0))
    }
}

impl Drop for RingWatch {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, used by nothing after this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), 2 * self.page) };
    }
}
