//! What the pipeline needs of the world: the two clocks, the sampled counters, and the
//! [`Effects`] it has on the kernel and the flag store.

use std::time::Duration;

use serde_json::Value;
use warden_policy::flag::{FlagAction, NewFlag, Sample};
use warden_policy::traffic::BlockTarget;

use crate::DropReason;
use warden_policy::tenant::TenantSlot;

/// Now, on the kernel's clock (CLOCK_MONOTONIC, the clock of every event and expiry) and
/// on the wall clock (for flags and samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// CLOCK_MONOTONIC.
    pub mono: Duration,
    /// Since the unix epoch.
    pub unix: Duration,
}

impl Now {
    /// Wall-clock time of the monotonic time `at`.
    fn unix_of(&self, at: Duration) -> Duration {
        if at <= self.mono {
            self.unix.saturating_sub(self.mono - at)
        } else {
            self.unix.saturating_add(at - self.mono)
        }
    }

    /// Unix seconds of the monotonic time `at`.
    pub fn unix_secs(&self, at: Duration) -> i64 {
        i64::try_from(self.unix_of(at).as_secs()).unwrap_or(i64::MAX)
    }

    /// Unix microseconds of the monotonic time `at`.
    pub fn unix_micros(&self, at: Duration) -> i64 {
        i64::try_from(self.unix_of(at).as_micros()).unwrap_or(i64::MAX)
    }

    /// Unix nanoseconds of the monotonic time `at` (until 2262).
    pub fn unix_nanos(&self, at: Duration) -> i64 {
        i64::try_from(self.unix_of(at).as_nanos()).unwrap_or(i64::MAX)
    }
}

/// Packets and bytes one way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// The drops that are detections, both directions together, in [`DropReason::ALL`]
/// order.
pub type DropTotals = [u64; DropReason::ALL.len()];

/// One tenant's counters as the sampler read them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    /// `[out, in]`.
    pub counters: [Volume; 2],
    /// Drops of the reasons that are detections.
    pub drops: DropTotals,
}

/// Every sampled tenant's counters, in dense tables indexed by tenant slot (a sample
/// of 100,000 tenants is some 5 MiB this way; a map of them was several times that,
/// built and freed every second).
#[derive(Clone, Debug, Default)]
pub struct TrafficTable {
    /// The sampled tenants' slots, ascending.
    slots: Vec<TenantSlot>,
    /// `[out, in]` by slot.
    counters: Vec<[Volume; 2]>,
    /// Drops of the reasons that are detections, by slot.
    drops: Vec<DropTotals>,
}

impl TrafficTable {
    /// The tables of the tenants in `slots` (each below both tables' lengths).
    pub fn new(
        mut slots: Vec<TenantSlot>,
        counters: Vec<[Volume; 2]>,
        drops: Vec<DropTotals>,
    ) -> TrafficTable {
        slots.sort_unstable();
        slots.dedup();
        slots.retain(|&s| s.index() < counters.len() && s.index() < drops.len());
        TrafficTable {
            slots,
            counters,
            drops,
        }
    }

    /// The sampled tenants' slots, ascending.
    pub fn slots(&self) -> &[TenantSlot] {
        &self.slots
    }

    /// The counters of the tenant in `slot`, when it was sampled.
    pub fn get(&self, slot: TenantSlot) -> Option<Traffic> {
        self.slots.binary_search(&slot).ok()?;
        Some(Traffic {
            counters: self.counters[slot.index()],
            drops: self.drops[slot.index()],
        })
    }

    /// The counters by slot, the tables' own (taken when the sample is done with).
    pub fn into_counters(self) -> Vec<[Volume; 2]> {
        self.counters
    }
}

/// Why an effect failed.
#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    /// The kernel's block table is full: the block is not in force.
    #[error("the kernel's block table is full")]
    BlocksFull,
    /// Anything else: the kernel or the database refused.
    #[error("{0:#}")]
    Failed(#[from] anyhow::Error),
}

/// What the pipeline does to the world: the kernel's runtime state and the flag store.
/// The daemon implements it over the dataplane and the store; tests record the calls.
pub trait Effects {
    /// Drops `target`'s traffic of `tenant` until `until` (monotonic), replacing an
    /// earlier expiry.
    fn block(
        &mut self,
        slot: TenantSlot,
        target: BlockTarget,
        until: Duration,
    ) -> Result<(), EffectError>;
    /// Stops dropping `target`'s traffic.
    fn unblock(&mut self, slot: TenantSlot, target: BlockTarget) -> Result<(), EffectError>;
    /// Polices `tenant` at `rate_bps` (or its plan when lower) until `until`; `None` lifts.
    fn throttle(
        &mut self,
        slot: TenantSlot,
        rate_bps: Option<u64>,
        until: Duration,
    ) -> Result<(), EffectError>;
    /// Contains `tenant`'s new outbound first contacts to `per_second` until `until`
    /// (monotonic); `None` lifts.
    fn contain(
        &mut self,
        slot: TenantSlot,
        contain: Option<(f64, Duration)>,
    ) -> Result<(), EffectError>;
    /// Captures the next `frames` frames of `tenant` as samples.
    fn capture(&mut self, slot: TenantSlot, frames: i32) -> Result<(), EffectError>;
    /// Deletes blocks expired at `now`; returns how many.
    fn sweep_blocks(&mut self, now: Duration) -> Result<usize, EffectError>;
    /// Suspends `tenant` (by id) for `reason`, audited as the ladder's. `Ok(false)` when it
    /// is suspended already (the daemon holds the suspensions; the pipeline keeps no copy).
    fn suspend(&mut self, tenant: &str, reason: &str) -> Result<bool, EffectError>;
    /// Opens a flag; returns its id.
    fn create_flag(&mut self, flag: NewFlag) -> Result<i64, EffectError>;
    /// Replaces a flag's evidence and moves its `last_seen` (unix seconds) forward.
    fn update_flag(
        &mut self,
        id: i64,
        last_seen: i64,
        figures: &Value,
        top_targets: &Value,
    ) -> Result<(), EffectError>;
    /// Records an action applied, extended or lifted because of flag `id`.
    fn record_action(&mut self, id: i64, action: &FlagAction) -> Result<(), EffectError>;
    /// Adds samples to flag `id` (the store keeps the first 64); returns how many it kept.
    fn add_samples(&mut self, id: i64, samples: &[Sample]) -> Result<usize, EffectError>;
}
