//! The detection owner: the pipeline ([`warden_detect::pipeline`]), the task that feeds
//! it the programs' events, and its [`Effects`] on the world: kernel runtime state through
//! the enforcement owner's dataplane, flags in the state database, suspensions through
//! the audited path, flag events through the review owner.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use warden_dataplane::{self as dataplane, DataplaneError, EventReader, KernelEvent};
use warden_detect::pipeline::{
    EffectError, Effects, Flood, Frame, Now, Observation, Pipeline, PipelineStatus,
};
use warden_policy::flag::{FlagAction, NewFlag, Sample};
use warden_policy::tenant::TenantSlot;
use warden_policy::traffic::BlockTarget;
use warden_store::StoreError;

use super::enforcement::Enforcement;
use super::review::{Event, Review};
use super::{Daemon, Database, ACTOR};
use crate::api::Refusal;
use crate::metrics;
use crate::views::DetectionView;

/// Kernel events taken from the ring per batch.
const EVENT_BATCH: usize = 4_096;
/// How long the event task waits for events before handling overdue attempts anyway.
const EVENT_WAIT: Duration = Duration::from_millis(100);
/// Consecutive failed ring reads after which the event task gives up (detection from
/// counters goes on).
const EVENT_READ_ATTEMPTS: u32 = 10;

/// The detection pipeline and what the event task counts.
pub(super) struct Detection {
    pipeline: Mutex<Pipeline>,
    /// Whether the event task reads kernel events.
    events_read: AtomicBool,
    /// Ring-buffer records that could not be decoded (the event task's count).
    decode_errors: AtomicU64,
    /// Attempt-log entries written over before the event task read them.
    log_lost: AtomicU64,
}

impl Detection {
    /// The pipeline, configured with nothing; `reading` says whether an event task runs.
    pub(super) fn new(pipeline: Pipeline, reading: bool) -> Detection {
        Detection {
            pipeline: Mutex::new(pipeline),
            events_read: AtomicBool::new(reading),
            decode_errors: AtomicU64::new(0),
            log_lost: AtomicU64::new(0),
        }
    }

    /// The pipeline. In the daemon's lock order it comes first, before the enforcement
    /// owner.
    pub(super) fn lock(&self) -> MutexGuard<'_, Pipeline> {
        // A panic inside the pipeline leaves at worst a detection half-handled; its
        // actions expire on their own in the kernel, so keep detecting.
        self.pipeline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events lost: the programs' count (`lost` of `facts`: the ring full, no log
    /// region) and the attempt log's entries written over. Not the events a tenant's
    /// budget refused (`facts.over_budget`), which are no loss.
    fn events_lost(&self, facts: &dataplane::FactCounters) -> u64 {
        facts.lost() + self.log_lost.load(Ordering::Relaxed)
    }

    /// The pipeline's state for `warden status`, with the programs' fact counters.
    pub(super) fn view(
        &self,
        pipeline: &Pipeline,
        facts: &dataplane::FactCounters,
    ) -> DetectionView {
        let PipelineStatus {
            open_episodes,
            pending_attempts,
            active_blocks,
            active_throttles,
        } = pipeline.status();
        DetectionView {
            events_read: self.events_read.load(Ordering::Relaxed),
            events_sent: facts.delivered(),
            events_lost: self.events_lost(facts),
            events_over_budget: facts.over_budget,
            event_decode_errors: self.decode_errors.load(Ordering::Relaxed),
            open_episodes,
            pending_attempts,
            active_blocks,
            active_throttles,
            flags_opened: pipeline.counters().flags_opened,
        }
    }

    /// The pipeline's figures for `/metrics`.
    pub(super) fn figures(
        &self,
        pipeline: &Pipeline,
        facts: &dataplane::FactCounters,
    ) -> metrics::DetectionFigures {
        metrics::DetectionFigures {
            events_sent: facts.delivered(),
            events_lost: self.events_lost(facts),
            events_over_budget: facts.over_budget,
            event_decode_errors: self.decode_errors.load(Ordering::Relaxed),
            kernel_pending_overwritten: pipeline.pending_stats().overwritten,
            counters: pipeline.counters(),
            pending: pipeline.pending_stats(),
            proxy_windows: pipeline.proxy_window_stats(),
            engine: pipeline.engine_stats(),
            ladder: pipeline.ladder_stats(),
            status: pipeline.status(),
        }
    }
}

/// Now on the kernel's clock (that of its events and expiries) and the wall clock.
pub(super) fn now() -> Now {
    Now {
        mono: dataplane::monotonic_now(),
        unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    }
}

/// A kernel event as the detection pipeline takes it.
fn observation(e: KernelEvent) -> Observation {
    match e {
        KernelEvent::Attempt(c) => Observation::Attempt(c),
        KernelEvent::Outcome { contact, outcome } => Observation::Outcome { contact, outcome },
        KernelEvent::Accepted(c) => Observation::Accepted(c),
        KernelEvent::Spoof(c) => Observation::Spoof(c),
        KernelEvent::SmtpConnection(c) => Observation::SmtpConnection(c),
        KernelEvent::Flood(f) => Observation::Flood(Flood {
            slot: f.slot,
            at: f.at,
            dir: f.dir,
            addr: f.addr,
            class: f.class,
            per_second: f.per_second(),
        }),
        KernelEvent::Sample(s) => Observation::Frame(Frame {
            slot: s.slot,
            at: s.at,
            orig_len: s.orig_len,
            data: s.data,
        }),
    }
}

/// The pipeline's [`Effects`] on the daemon: the dataplane's runtime state, the state
/// database, the audited suspension path and the review workflow.
pub(super) struct Actuator<'a> {
    pub(super) enforcement: &'a mut Enforcement,
    pub(super) db: &'a Database,
    pub(super) review: &'a Review,
}

fn kernel(e: DataplaneError) -> EffectError {
    match e {
        DataplaneError::BlocksFull { .. } => EffectError::BlocksFull,
        other => EffectError::Failed(anyhow::Error::new(other)),
    }
}

fn stored(what: &'static str) -> impl FnOnce(StoreError) -> EffectError {
    move |e| EffectError::Failed(anyhow::Error::new(e).context(what))
}

impl Effects for Actuator<'_> {
    fn block(
        &mut self,
        slot: TenantSlot,
        target: BlockTarget,
        until: Duration,
    ) -> Result<(), EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.block(slot, target, until).map_err(kernel)
    }

    fn unblock(&mut self, slot: TenantSlot, target: BlockTarget) -> Result<(), EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.unblock(slot, target).map_err(kernel)
    }

    fn throttle(
        &mut self,
        slot: TenantSlot,
        rate_bps: Option<u64>,
        until: Duration,
    ) -> Result<(), EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.throttle(slot, rate_bps, until).map_err(kernel)
    }

    fn contain(
        &mut self,
        slot: TenantSlot,
        contain: Option<(f64, Duration)>,
    ) -> Result<(), EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.contain(slot, contain).map_err(kernel)
    }

    fn capture(&mut self, slot: TenantSlot, frames: i32) -> Result<(), EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.capture(slot, frames).map_err(kernel)
    }

    fn sweep_blocks(&mut self, now: Duration) -> Result<usize, EffectError> {
        let dp = self.enforcement.dataplane_mut();
        dp.sweep_blocks(now).map_err(kernel)
    }

    fn suspend(&mut self, tenant: &str, reason: &str) -> Result<bool, EffectError> {
        match self
            .enforcement
            .suspend(self.db, self.review, tenant, reason, ACTOR)
        {
            Ok(_) => Ok(true),
            // Suspended already: the enforcement owner holds the suspensions.
            Err(Refusal::Conflict(_)) => Ok(false),
            Err(e) => Err(EffectError::Failed(anyhow::Error::new(e))),
        }
    }

    fn create_flag(&mut self, flag: NewFlag) -> Result<i64, EffectError> {
        let created = self.db.lock().create_flag(flag);
        let flag = created.map_err(stored("creating a flag"))?;
        let policy = self.enforcement.policy();
        self.review
            .flag_event(self.db, policy, &flag, Event::Opened, ACTOR, None);
        Ok(flag.id)
    }

    fn update_flag(
        &mut self,
        id: i64,
        last_seen: i64,
        figures: &serde_json::Value,
        top_targets: &serde_json::Value,
    ) -> Result<(), EffectError> {
        self.db
            .lock()
            .update_flag_evidence(id, last_seen, figures, top_targets)
            .map(drop)
            .map_err(stored("updating a flag's evidence"))
    }

    fn record_action(&mut self, id: i64, action: &FlagAction) -> Result<(), EffectError> {
        self.db
            .lock()
            .record_flag_action(id, action)
            .map_err(stored("recording a flag action"))
    }

    fn add_samples(&mut self, id: i64, samples: &[Sample]) -> Result<usize, EffectError> {
        self.db
            .lock()
            .add_samples(id, samples)
            .map_err(stored("adding samples to a flag"))
    }
}

impl Daemon {
    /// Hands one batch of kernel events to the pipeline.
    fn observe(&self, events: &mut Vec<KernelEvent>) {
        let mut pipeline = self.detection.lock();
        let mut enforcement = self.lock_enforcement();
        let now = now();
        let mut fx = Actuator {
            enforcement: &mut enforcement,
            db: &self.db,
            review: &self.review,
        };
        pipeline.events(events.drain(..).map(observation), &now, &mut fx);
    }
}

/// The event task: reads kernel events in batches and hands each to the pipeline (off the
/// async workers: it writes maps and the database). Also runs when no event came within
/// [`EVENT_WAIT`], so unanswered attempts time out on time.
pub(super) async fn read_events(daemon: Arc<Daemon>, mut reader: EventReader) {
    let mut failures = 0;
    // One buffer, handed to the blocking pool and back, so an idle loop allocates nothing.
    let mut batch = Vec::new();
    loop {
        if let Err(e) = reader.read(&mut batch, EVENT_BATCH, EVENT_WAIT).await {
            failures += 1;
            if failures >= EVENT_READ_ATTEMPTS {
                tracing::error!(error = %e, "reading kernel events keeps failing; scan, flood, spam and proxy detection stop");
                daemon.detection.events_read.store(false, Ordering::Relaxed);
                return;
            }
            tracing::warn!(error = %e, "reading kernel events failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        failures = 0;
        let detection = &daemon.detection;
        detection
            .decode_errors
            .store(reader.decode_errors(), Ordering::Relaxed);
        detection
            .log_lost
            .store(reader.log_lost(), Ordering::Relaxed);
        let d = daemon.clone();
        let handled = tokio::task::spawn_blocking(move || {
            d.observe(&mut batch);
            batch
        })
        .await;
        batch = match handled {
            Ok(batch) => batch,
            Err(e) => {
                tracing::error!(error = %e, "handling kernel events failed");
                Vec::new()
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use warden_policy::traffic::{Direction, FloodClass};

    use super::*;

    #[test]
    fn a_flood_event_reaches_the_pipeline_as_its_rate_per_second() {
        let f = dataplane::FloodEvent {
            slot: TenantSlot(3),
            at: Duration::from_secs(7),
            dir: Direction::In,
            addr: IpAddr::from([198, 18, 0, 1]),
            class: FloodClass::InBytes,
            value: 1 << 30,
            threshold: 1,
        };
        let Observation::Flood(o) = observation(KernelEvent::Flood(f)) else {
            panic!("not a flood");
        };
        assert_eq!(
            (o.slot, o.at, o.dir, o.addr),
            (TenantSlot(3), f.at, f.dir, f.addr)
        );
        assert_eq!(o.class, FloodClass::InBytes);
        assert!((o.per_second - 1e9).abs() < 1.0, "{}", o.per_second);
    }

    #[test]
    fn a_captured_frame_keeps_its_slot_time_and_bytes() {
        let s = dataplane::SampleFrame {
            slot: TenantSlot(2),
            at: Duration::from_millis(5),
            dir: Direction::Out,
            orig_len: 1500,
            data: vec![1, 2, 3],
        };
        let o = observation(KernelEvent::Sample(s));
        assert_eq!(
            o,
            Observation::Frame(Frame {
                slot: TenantSlot(2),
                at: Duration::from_millis(5),
                orig_len: 1500,
                data: vec![1, 2, 3],
            })
        );
    }
}
