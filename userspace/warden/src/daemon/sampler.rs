//! The counter sampler: once a second ([`SAMPLE_INTERVAL`]) it reads every tenant's
//! counters once, keeps the rates the API shows, and runs the detection pipeline's tick
//! on the same reading (drop deltas, proxy windows, expiries).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use warden_detect::{fact::DropReason, pipeline::Volume};

use super::detection::{now, Actuator};
use super::enforcement::Rates;
use super::Daemon;

/// How often counters are sampled for rates, and the detection pipeline ticks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a generation is in force before the one it replaced is emptied
/// ([`warden_dataplane::Dataplane::settle_inactive_half`]): long past any packet that
/// read the old one, and out of the way of a burst of applies.
const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// One reading of every tenant's counters.
struct Reading {
    at: Instant,
    /// `[out, in]` by tenant slot.
    counters: Vec<[Volume; 2]>,
}

#[derive(Default)]
struct State {
    last: Option<Reading>,
    rates: Rates,
}

/// The sampler's last reading and the rates it gave.
#[derive(Default)]
pub(super) struct Sampler {
    state: Mutex<State>,
}

impl Sampler {
    /// `f` of the rates over the last interval. In the daemon's lock order the sampler
    /// comes after the enforcement owner.
    pub(super) fn with_rates<T>(&self, f: impl FnOnce(&Rates) -> T) -> T {
        f(&self.lock().rates)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Daemon {
    /// The once-a-second work: reads every tenant's counters once, updates the rates the
    /// API shows, and runs the pipeline's tick on them.
    fn sample(&self) -> Result<()> {
        let mut pipeline = self.detection.lock();
        let mut enforcement = self.lock_enforcement();
        // The shaping queues' drops join the tenants' `bandwidth` drops.
        if let Err(e) = enforcement.dataplane_mut().refresh_shaping_drops() {
            tracing::warn!(error = %e, "reading the shaping queues' drops");
        }
        let at = Instant::now();
        let traffic = enforcement.traffic()?;
        let mut state = self.sampler.lock();
        // Refilled in place: a second table beside the last one would be some 5 MiB
        // more every second at 100,000 tenants.
        let State { last, rates } = &mut *state;
        rates.clear();
        rates.reserve(traffic.slots().len());
        if let Some(last) = last {
            let secs = at.duration_since(last.at).as_secs_f64().max(1e-3);
            for &i in traffic.slots() {
                let Some(c) = traffic.get(i).map(|t| t.counters) else {
                    continue;
                };
                // A slot given to a new tenant since was zeroed: its counters start
                // again below the old reading, and its first rate reads 0.
                let prev = last.counters.get(i.index()).copied().unwrap_or_default();
                let rate = |d: usize| {
                    (
                        c[d].bytes.saturating_sub(prev[d].bytes) as f64 * 8.0 / secs,
                        c[d].packets.saturating_sub(prev[d].packets) as f64 / secs,
                    )
                };
                rates.insert(i, [rate(0), rate(1)]);
            }
        }
        // Egress plans still policed get their shaping queue once their tenant needs
        // it (out at half its plan, or policed drops).
        let bandwidth = DropReason::ALL
            .iter()
            .position(|r| *r == DropReason::Bandwidth)
            .expect("bandwidth is a drop reason");
        let grown = enforcement.dataplane_mut().grow_shaping(|slot| {
            let out = rates.get(&slot)?[0].0;
            Some((out, traffic.get(slot)?.drops[bandwidth]))
        });
        if let Err(e) = grown {
            tracing::warn!(error = %e, "making the shaping classes of tenants that need them");
        }
        drop(state);
        let now = now();
        let mut fx = Actuator {
            enforcement: &mut enforcement,
            db: &self.db,
            review: &self.review,
        };
        pipeline.tick(&now, &traffic, &mut fx);
        self.sampler.lock().last = Some(Reading {
            at,
            counters: traffic.into_counters(),
        });
        Ok(())
    }
}

/// The sampler task: [`Daemon::sample`] every [`SAMPLE_INTERVAL`], off the async
/// workers, then the memory the tick, the API and the pipeline freed given back.
pub(super) async fn run(daemon: Arc<Daemon>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let r = tokio::task::spawn_blocking(move || {
            if let Err(e) = d.sample() {
                tracing::warn!(error = %format!("{e:#}"), "sampling counters failed");
            }
            if let Err(e) = d.record_history() {
                tracing::warn!(error = %format!("{e:#}"), "recording traffic history failed");
            }
            // After a start: the generation not in force is emptied, a part per tick,
            // while nothing changes, so the next policy change writes only what its
            // policy fills.
            match d
                .lock_enforcement()
                .dataplane_mut()
                .settle_inactive_half(SETTLE_AFTER)
            {
                Ok(0) => {}
                Ok(n) => tracing::debug!(buckets = n, "emptied of the inactive generation"),
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "emptying the inactive generation's tables failed (the next apply writes them whole)"
                ),
            }
            // What the tick, the API and the pipeline freed since the last one (a
            // /metrics scrape of 100,000 tenants alone is tens of MiB): well under a
            // millisecond when there is little, a few when there is.
            crate::memory::release_freed();
        })
        .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "sampling task failed");
        }
    }
}
