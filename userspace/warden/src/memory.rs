//! How the daemon's heap gives memory back to the system.
//!
//! At 100,000 tenants a policy read (its text, the YAML tree, the drafts) and a policy
//! replacement (old and new side by side) pass through hundreds of MiB, and every
//! `/metrics` scrape and counter sample builds tables of a few tens of MiB that live for
//! milliseconds. glibc's allocator keeps freed memory in its arenas by default, and it
//! raises its mmap threshold to the size of the largest block freed (up to 32 MiB), so
//! after the first such table every later one comes from an arena too: the daemon's
//! resident size would settle at the highest peak it ever had. Two settings keep it at
//! what is live:
//!
//! - [`tune`] fixes the mmap threshold at [`MMAP_THRESHOLD`]: blocks that large (hash
//!   tables and vectors over all tenants) are mapped on their own and unmapped when
//!   freed;
//! - [`release_freed`], called after every policy read and after every counter sample
//!   (once a second), returns the free pages of every arena: the small allocations of
//!   the YAML tree and drafts, and whatever the API and the pipeline freed since. It
//!   walks the free lists only: well under a millisecond when little was freed, a few
//!   when much was, some 100 ms right after a 100,000-tenant policy read.
//!
//! Elsewhere than glibc both do nothing.

use std::time::Instant;

/// Allocations of at least this many bytes get their own mapping, returned to the
/// system when freed. 256 KiB: one table of 1,000 tenants' counters and up (an mmap
/// and its page faults cost microseconds next to building such a table).
pub const MMAP_THRESHOLD: usize = 256 * 1024;

/// Sets the allocator up for a long-running daemon (see the module documentation).
/// Call once, before the policy is read.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only changes glibc's allocation parameters; it is safe to call
        // at any time, from any thread.
        if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) } != 1 {
            tracing::warn!(
                threshold = MMAP_THRESHOLD,
                "could not set the allocator's mmap threshold: freed memory may stay resident"
            );
        }
    }
}

/// Returns the free pages of every allocator arena to the system; how long it took is
/// logged at debug level.
pub fn release_freed() {
    let started = Instant::now();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives back free pages of glibc's own arenas, under each
    // arena's lock; it touches no live allocation.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let released = false;
    tracing::debug!(
        released,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "returned freed memory to the system"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line["VmRSS:".len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_small_allocations_leave_the_resident_set() {
        tune();
        // 128 MiB in small blocks (as a YAML tree is), touched, then freed, with one
        // block allocated after them still live: the allocator cannot just shrink its
        // heap from the top, the freed pages are inside it.
        let blocks: Vec<Vec<u8>> = (0..512 * 1024).map(|i| vec![i as u8; 240]).collect();
        let pin = vec![1u8; 240];
        let full = resident_kib();
        drop(blocks);
        release_freed();
        let after = resident_kib();
        std::hint::black_box(&pin);
        // Other tests run in parallel threads and allocate too: ask for most of it back,
        // not all of it.
        assert!(
            full.saturating_sub(after) > 80 * 1024,
            "resident {full} KiB with the blocks, {after} KiB after freeing and releasing"
        );
    }
}
