//! The packet's time: `bpf_ktime_get_coarse_ns`, read at most once per jiffy per CPU.
//!
//! The coarse clock (CLOCK_MONOTONIC_COARSE, the time at the last tick) costs a
//! fraction of the precise one, and nothing here needs better than a tick: buckets
//! charge exact costs, so the tick only shifts when within a tick a packet is
//! admitted, never the long-run rate; epochs and expiries are far longer than a tick.
//! Most packets need no time at all (an established flow of a tenant without a plan),
//! so it is read lazily, and every stage of a packet shares one reading.
//!
//! Even so the helper costs some 14 ns on this machine, as much as the rest of a
//! metered packet's path. The coarse clock only moves when the tick moves jiffies,
//! and `bpf_jiffies64` is inlined by the verifier into one load, so each CPU keeps its
//! last reading with the jiffy it was taken in (`CLOCK_CACHE`), and a packet in the
//! same jiffy takes that instead of calling the helper. The one difference from
//! calling it every time: a reading taken in the moment between the tick's jiffies
//! update and its clock update is one tick old and serves that CPU until the next
//! tick, so a CPU's time can trail the clock by one tick, once in a while; the clock's
//! own resolution is a tick.

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};

use crate::maps::metering::CLOCK_CACHE;

/// A CPU's last clock reading (the value of `CLOCK_CACHE`).
#[repr(C)]
pub struct ClockCache {
    /// `bpf_jiffies64` when it was taken.
    pub jiffies: u64,
    /// `bpf_ktime_get_coarse_ns`; 0 = none yet.
    pub now: u64,
}

/// The packet's time, read lazily.
pub struct Clock {
    /// 0 = not known yet.
    now: u64,
}

impl Clock {
    /// Not known yet.
    #[inline(always)]
    pub fn new() -> Self {
        Self { now: 0 }
    }

    /// The packet's time: on the first call this CPU's reading of the current jiffy
    /// (taken now if it has none), the same value after that.
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        if self.now != 0 {
            return self.now;
        }
        // SAFETY: the helper takes no arguments and cannot fail.
        let jiffies = unsafe { bpf_jiffies64() };
        let cache = CLOCK_CACHE.get_ptr_mut(0);
        if let Some(c) = cache {
            // SAFETY: a per-CPU slot: no other program instance touches it meanwhile.
            unsafe {
                if (*c).jiffies == jiffies && (*c).now != 0 {
                    self.now = (*c).now;
                    return self.now;
                }
            }
        }
        // SAFETY: the helper takes no arguments and cannot fail.
        self.now = unsafe { bpf_ktime_get_coarse_ns() };
        if let Some(c) = cache {
            // SAFETY: a per-CPU slot: no other program instance touches it meanwhile.
            unsafe {
                (*c).jiffies = jiffies;
                (*c).now = self.now;
            }
        }
        self.now
    }

    /// The exact time (`bpf_ktime_get_ns`: CLOCK_MONOTONIC, as the coarse clock, to the
    /// nanosecond). Only for captured samples, at most a few dozen per flag: the coarse
    /// clock gives a burst of frames one or two distinct times, and an analyst reads the
    /// gaps between frames in the pcap.
    #[inline(always)]
    pub fn precise(&self) -> u64 {
        // SAFETY: the helper takes no arguments and cannot fail.
        unsafe { bpf_ktime_get_ns() }
    }
}
