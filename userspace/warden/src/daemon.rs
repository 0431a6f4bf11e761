//! `warden run`: load policy, open (or adopt) the pinned dataplane, apply policy and
//! suspensions, attach, sample counters, run the detection pipeline ([`crate::watch`]:
//! kernel events in one task, its once-a-second tick with the sampler), serve the API
//! and metrics, reload on SIGHUP.
//!
//! Enforcement does not depend on this process: on SIGTERM, SIGINT or a crash the
//! pinned programs keep enforcing the last applied policy. Only `--detach-on-exit`
//! (or `warden uninstall`) removes them.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, SignalKind};
use warden_common::{reason, DropCounters};

use crate::{
    auth::{Role, Tokens},
    metrics,
    notify::{self, Event},
};
use warden_dataplane::{
    self as dataplane, runtime::PolicyFill, Attachment, Dataplane, DataplaneError, EventReader,
    FactCounters, KernelEvent, TenantIndex,
};
use warden_detect::pipeline::{
    self as watch, DropTotals, EffectError, Effects, Flood, Frame, Now, Observation, TrafficTable,
    Volume, Watch, WatchStatus,
};
use warden_detect::DropReason;
use warden_policy::traffic::BlockTarget;
use warden_policy::{
    self as policy,
    flag::{Flag, FlagAction, FlagDetail, FlagFilter, FlagState, NewFlag, Sample as FlagSample},
    suspension::{self, Exposure, Holds, Suspended, Suspension, SuspensionState},
    time::{rfc3339, system_clock},
    Policy,
};
use warden_store::{self as store, FlagError, NewSuspension, Store, StoreError};

/// How often counters are sampled for rates, and the detection pipeline ticks.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// File in the state directory naming the eBPF object the pinned links run.
const OBJECT_MARKER: &str = "dataplane-object";

/// Kernel events taken from the ring per batch.
const EVENT_BATCH: usize = 4_096;
/// How long the event task waits for events before handling overdue attempts anyway.
const EVENT_WAIT: Duration = Duration::from_millis(100);
/// Consecutive failed ring reads after which the event task gives up (detection from
/// counters goes on).
const EVENT_READ_ATTEMPTS: u32 = 10;

/// One direction of a tenant's traffic, as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DirectionView {
    pub packets: u64,
    pub bytes: u64,
    /// Bits per second over the last sample interval.
    pub bps: f64,
    /// Packets per second over the last sample interval.
    pub pps: f64,
    /// Bandwidth plan in bits per second; `None` is unlimited.
    pub plan_bps: Option<u64>,
    /// Dropped packets by reason (only reasons with drops).
    pub drops: HashMap<String, u64>,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantView {
    pub id: String,
    pub index: u32,
    pub addresses: Vec<IpNet>,
    /// `active` or `suspended`.
    pub state: String,
    /// Its own suspension, if it is suspended itself.
    pub suspension: Option<Suspension>,
    /// Why it is enforced as suspended, when it is: its own suspension, an address
    /// recorded with another tenant's suspension, or a suspended id no longer in the
    /// policy whose recorded addresses stay suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why_suspended: Option<String>,
    pub out: DirectionView,
    #[serde(rename = "in")]
    pub in_: DirectionView,
}

/// The daemon's status, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    pub version: String,
    pub uptime_seconds: u64,
    pub policy_file: PathBuf,
    pub policy_generation: u64,
    pub policy_applied_at: u64,
    pub kernel_generation: u32,
    pub tenants: usize,
    pub suspended: usize,
    pub bpffs: PathBuf,
    pub attachments: Vec<Attachment>,
    pub maps: Vec<MapFill>,
    /// Detection: kernel events and actions in force.
    #[serde(default)]
    pub detection: DetectionView,
    /// Review workflow: notifications, deadlines, events log.
    #[serde(default)]
    pub review: notify::ReviewStats,
}

/// The detection pipeline's state, as `GET /api/v1/status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectionView {
    /// Whether kernel events are being read.
    pub events_read: bool,
    /// Events the programs delivered (into the ring or the attempt log).
    pub events_sent: u64,
    /// Events lost: over a tenant's budget, with the ring full, or written over in the
    /// attempt log before the daemon read them (`warden_events_lost_total`).
    pub events_lost: u64,
    /// Records that could not be decoded.
    pub event_decode_errors: u64,
    /// Episodes open.
    pub open_episodes: usize,
    /// Connection attempts waiting for their answer.
    pub pending_attempts: usize,
    /// Kernel blocks in force (victims, ports, blackholes, listen ports).
    pub active_blocks: usize,
    /// Tenants throttled.
    pub active_throttles: usize,
    /// Flags opened since start.
    pub flags_opened: u64,
}

/// Fill of one bounded map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapFill {
    pub map: String,
    pub entries: u64,
    pub capacity: u64,
}

/// Why a request to the daemon failed, for the API to map onto a status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no tenant {0:?}")]
    UnknownTenant(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid policy ({} errors)", .0.len())]
    InvalidPolicy(policy::Diagnostics),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller's role may not do this (a policy exposing suspended tenants): the
    /// message, and each rule broken.
    #[error("{0}")]
    Forbidden(String, Vec<String>),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

struct Sample {
    at: Instant,
    /// `[out, in]` by tenant slot.
    counters: Vec<[Volume; 2]>,
}

/// Now on the kernel's clock (that of its events and expiries) and the wall clock.
fn now() -> Now {
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
        KernelEvent::Flood(f) => Observation::Flood(Flood {
            slot: f.tenant,
            at: f.at,
            dir: f.dir,
            addr: f.addr,
            class: f.class,
            per_second: f.per_second(),
        }),
        KernelEvent::Sample(s) => Observation::Frame(Frame {
            slot: s.tenant,
            at: s.at,
            orig_len: s.orig_len,
            data: s.data,
        }),
    }
}

/// The drop counter of each reason that is a detection.
fn drop_counter(r: DropReason) -> usize {
    match r {
        DropReason::SpoofIp => reason::SPOOF_IP,
        DropReason::SpoofArp => reason::SPOOF_ARP,
        DropReason::SpoofMac => reason::SPOOF_MAC,
        DropReason::Bandwidth => reason::BANDWIDTH,
    }
}

/// The totals of the drops that are detections, of all `drops` by reason.
fn detected_drops(drops: &[u64; reason::COUNT]) -> DropTotals {
    DropReason::ALL.map(|r| drops[drop_counter(r)])
}

/// Mutable daemon state. One lock: every operation is a handful of syscalls.
struct Inner {
    policy: Policy,
    /// `policy.tenants`' ids, in the same order, shared with each `/metrics` snapshot
    /// (so a scrape allocates no string per tenant).
    ids: Vec<Arc<str>>,
    generation: u64,
    applied_at: SystemTime,
    dataplane: Dataplane,
    index: TenantIndex,
    /// What the applied policy fills of the kernel maps (not the compiled policy itself:
    /// the dataplane keeps what it needs of that, and the rest is tens of MiB at
    /// 100,000 tenants).
    fill: PolicyFill,
    suspensions: HashMap<String, Suspension>,
    /// The suspension sequence number of the last suspend or unsuspend (the store's, and
    /// the kernel record's once written).
    suspension_seq: u64,
    /// What the policy in force enforces as suspended, and why.
    holds: Holds,
    store: Store,
    rates: HashMap<u32, [(f64, f64); 2]>,
    /// Counters of the tenants removed from the policy since start (metrics aggregates).
    retired: metrics::Totals,
    last: Option<Sample>,
    /// The review workflow: notification counters and the events log.
    review: notify::Review,
}

/// State shared by the API handlers and the background tasks.
///
/// Lock order: `watch` before `inner`, always; never `watch` while holding `inner`.
pub struct Shared {
    /// The detection pipeline.
    watch: Mutex<Watch>,
    inner: Mutex<Inner>,
    /// Whether the event task reads kernel events.
    events_read: AtomicBool,
    /// Ring-buffer records that could not be decoded (the event task's count).
    event_decode_errors: AtomicU64,
    /// Attempt-log entries written over before the event task read them.
    log_lost: AtomicU64,
    /// Policies refused (invalid, or changing restart-only settings) or that failed
    /// to reach the kernel, since start.
    apply_failures: std::sync::atomic::AtomicU64,
    started: Instant,
    policy_path: PathBuf,
    tokens: Tokens,
    /// `daemon.management` in force, for the API's connection reserve: read for every
    /// connection, so kept apart from `inner`, which an apply holds for seconds.
    management: std::sync::RwLock<Arc<Vec<ipnet::IpNet>>>,
}

impl Inner {
    /// The active suspensions as the durable places keep them.
    fn suspended(&self) -> BTreeMap<String, Suspended> {
        self.suspensions
            .iter()
            .map(|(t, s)| (t.clone(), s.suspended()))
            .collect()
    }

    /// Applies `policy` with `suspended` to the kernel; on any error nothing of the
    /// daemon's view changes and the kernel keeps enforcing the active generation.
    fn enforce(
        &mut self,
        policy: &Policy,
        suspended: &BTreeMap<String, Suspended>,
    ) -> Result<(TenantIndex, Holds)> {
        enforce(
            &mut self.dataplane,
            &mut self.fill,
            &self.index,
            policy,
            suspended,
        )
    }

    /// Enforces the policy in force with the suspensions `suspended` (no copy of the
    /// policy: 100,000 tenants are tens of MiB), and takes the index and holds that
    /// follow (a suspended id absent from the policy keeps a slot until it is lifted).
    fn enforce_suspensions(&mut self, suspended: &BTreeMap<String, Suspended>) -> Result<()> {
        let (index, holds) = enforce(
            &mut self.dataplane,
            &mut self.fill,
            &self.index,
            &self.policy,
            suspended,
        )?;
        if index.entries() != self.index.entries() {
            if let Err(e) = self.store.save_tenant_index(&index.entries()) {
                tracing::error!(error = %e, "saving tenant indexes after a suspension change");
            }
        }
        self.index = index;
        self.holds = holds;
        Ok(())
    }

    /// Writes `suspended` at `seq` as the kernel's pinned suspension record.
    fn write_record(&mut self, seq: u64, suspended: &BTreeMap<String, Suspended>) -> Result<()> {
        let state = SuspensionState {
            seq,
            tenants: suspended.clone(),
        };
        self.dataplane
            .write_suspension_record(seq, &state.to_record())
            .context("writing the kernel's suspension record")
    }

    /// Makes the kernel's record say what the store says, when it does not already.
    fn sync_record(&mut self) -> Result<()> {
        let want = SuspensionState {
            seq: self.suspension_seq,
            tenants: self.suspended(),
        };
        let have = match self.dataplane.suspension_record()? {
            Some((seq, bytes)) => SuspensionState::from_record(seq, &bytes).ok(),
            None => None,
        };
        if have.as_ref() != Some(&want) {
            self.write_record(want.seq, &want.tenants)?;
            tracing::info!(
                seq = want.seq,
                suspended = want.tenants.len(),
                "kernel's suspension record written"
            );
        }
        Ok(())
    }

    fn apply_policy(&mut self, policy: Policy, actor: &str, exposures: &[Exposure]) -> Result<()> {
        self.put_policy(policy)?;
        self.audit_apply(actor, exposures)
    }

    /// Enforces `policy` (see [`Inner::enforce`]) with the suspensions and their holds,
    /// and makes it the policy in force, unaudited ([`Inner::audit_apply`]).
    fn put_policy(&mut self, policy: Policy) -> Result<()> {
        let suspended = self.suspended();
        let (index, holds) = self.enforce(&policy, &suspended)?;
        self.store
            .save_tenant_index(&index.entries())
            .context("saving tenant indexes")?;
        self.index = index;
        self.holds = holds;
        self.ids = policy
            .tenants
            .iter()
            .map(|t| Arc::from(t.id.as_str()))
            .collect();
        self.policy = policy;
        self.generation += 1;
        self.applied_at = SystemTime::now();
        Ok(())
    }

    /// Records the apply of the policy in force in the audit log.
    fn audit_apply(&self, actor: &str, exposures: &[Exposure]) -> Result<()> {
        let detail = serde_json::json!({
            "generation": self.generation,
            "tenants": self.policy.tenants.len(),
            "exposes": exposures,
        });
        self.store
            .record(actor, "policy.apply", "policy", &detail)
            .context("auditing the apply")?;
        if !exposures.is_empty() {
            let detail = serde_json::json!({
                "generation": self.generation,
                "exposures": exposures,
                "note": "applied by an admin (or SIGHUP); recorded suspended addresses stay suspended until unsuspended",
            });
            self.store
                .record(actor, "policy.expose", "policy", &detail)
                .context("auditing what the policy exposes")?;
            for e in exposures {
                tracing::warn!(generation = self.generation, %actor, rule = %e.rule, tenant = e.tenant.as_deref().unwrap_or("*"), detail = %e.detail, "applied policy exposes a suspended tenant");
            }
        }
        for (id, hold) in &self.holds.tenants {
            if !matches!(hold, suspension::Hold::Own) || self.holds.extra.contains_key(id) {
                tracing::warn!(tenant = %id, why = %self.holds.why(id).unwrap_or_default(), "enforced as suspended whatever the policy says");
            }
        }
        tracing::info!(generation = self.generation, tenants = self.policy.tenants.len(), %actor, "policy applied");
        Ok(())
    }

    fn tenant_view(&self, t: &policy::Tenant) -> Result<TenantView> {
        self.view(
            &t.id,
            &t.addresses,
            [t.settings.bandwidth.egress, t.settings.bandwidth.ingress],
        )
    }

    /// The view of a suspended tenant absent from the policy (its recorded addresses
    /// still enforced under its id).
    fn retained_view(&self, id: &str) -> Result<TenantView> {
        let addresses = self.holds.extra.get(id).cloned().unwrap_or_default();
        self.view(id, &addresses, [None, None])
    }

    fn view(&self, id: &str, addresses: &[IpNet], plans: [Option<u64>; 2]) -> Result<TenantView> {
        let index = self.index.get(id).context("tenant without index")?;
        let c = self.dataplane.tenant_counters(index)?;
        let d = self.dataplane.drop_counters(index)?;
        let r = self.rates.get(&index).copied().unwrap_or_default();
        let dir = |i: usize| DirectionView {
            packets: c[i].packets,
            bytes: c[i].bytes,
            bps: r[i].0,
            pps: r[i].1,
            plan_bps: plans[i],
            drops: drops_map(&d[i]),
        };
        let why_suspended = self.holds.why(id);
        Ok(TenantView {
            id: id.to_string(),
            index,
            addresses: addresses.to_vec(),
            state: if why_suspended.is_some() {
                "suspended"
            } else {
                "active"
            }
            .to_string(),
            suspension: self.suspensions.get(id).cloned(),
            why_suspended,
            out: dir(0),
            in_: dir(1),
        })
    }

    fn map_fill(&self) -> Vec<MapFill> {
        self.dataplane
            .map_usage(&self.fill, self.index.len())
            .into_iter()
            .map(|m| MapFill {
                map: m.map.to_string(),
                entries: m.entries,
                capacity: m.capacity,
            })
            .collect()
    }

    /// The settings `tenant` is under (the defaults for a tenant no longer in the policy).
    fn settings_of(&self, tenant: &str) -> &policy::TenantSettings {
        self.policy
            .tenant(tenant)
            .map_or(&self.policy.defaults, |t| &t.settings)
    }

    /// Something happened to `flag`: written to the events log, and for the events the
    /// tenant is told about queued for its webhook (see [`notify`]). Never fails: a
    /// notification that cannot be queued is logged and counted.
    fn flag_event(&self, flag: &Flag, event: Event, actor: &str, reason: Option<&str>) {
        let now = system_clock();
        self.review.log_event(flag, event, actor, reason, now);
        if !event.notifies_tenant() {
            return;
        }
        if self.settings_of(&flag.tenant).notify.webhook.is_none() {
            if event == Event::Opened {
                tracing::info!(flag = flag.id, tenant = %flag.tenant, "no notify.webhook for the tenant: it is not notified and the flag gets no deadline");
            }
            return;
        }
        let body = notify::message(flag, event, actor, reason, now);
        match self
            .store
            .queue_notification(flag.id, event.as_str(), &body, notify::MAX_PENDING)
        {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.review.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(flag = flag.id, tenant = %flag.tenant, event = event.as_str(), max = notify::MAX_PENDING, "notification outbox full: notification dropped");
            }
            Err(e) => {
                self.review.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(flag = flag.id, tenant = %flag.tenant, event = event.as_str(), error = %e, "could not queue a notification: dropped");
            }
        }
    }

    /// Suspends a tenant at the next suspension sequence number: the kernel's record,
    /// then the kernel's flags, then the store (recorded and audited), then the events
    /// log. If a kernel write or the store fails, what was written is put back, so no
    /// suspension is enforced unaudited; a crash in between leaves the kernel ahead of
    /// the store, which the next start refuses to overlook (the restore records it).
    fn suspend(&mut self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        let Some(t) = self.policy.tenant(tenant) else {
            return Err(Refusal::UnknownTenant(tenant.to_string()));
        };
        if reason.trim().is_empty() {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        if let Some(s) = self.suspensions.get(tenant) {
            return Err(Refusal::Conflict(format!(
                "tenant {tenant:?} is already suspended by {} since {}",
                s.actor,
                rfc3339(s.since)
            )));
        }
        let addresses: Vec<IpNet> = t.addresses.iter().map(IpNet::trunc).collect();
        let before = self.suspended();
        let old_seq = self.suspension_seq;
        let seq = old_seq + 1;
        let mut after = before.clone();
        after.insert(
            tenant.to_string(),
            Suspended {
                tenant: tenant.to_string(),
                addresses: addresses.clone(),
                reason: reason.to_string(),
                actor: actor.to_string(),
                since: system_clock(),
                seq,
            },
        );
        self.write_record(seq, &after)?;
        if let Err(e) = self.enforce_suspensions(&after) {
            self.undo_record(old_seq, &before, tenant);
            return Err(e.into());
        }
        match self.store.suspend_with(NewSuspension {
            tenant,
            reason,
            actor,
            addresses: &addresses,
            seq: Some(seq),
        }) {
            Ok(s) => {
                let recorded_since = after.get(tenant).map(|r| r.since);
                self.suspensions.insert(tenant.to_string(), s.clone());
                self.suspension_seq = seq;
                if recorded_since != Some(s.since) {
                    // The store's clock ticked between the two writes: the record keeps
                    // the store's time, so a restore brings back the same suspension.
                    let exact = self.suspended();
                    if let Err(e) = self.write_record(seq, &exact) {
                        tracing::warn!(error = %format!("{e:#}"), %tenant, "rewriting the kernel's suspension record with the stored time");
                    }
                }
                let line = suspension::events::suspended_line(&s.suspended());
                self.review
                    .log_durable(&line, suspension::events::SUSPENDED, tenant);
                tracing::warn!(%tenant, %actor, %reason, seq, "tenant suspended");
                Ok(s)
            }
            Err(e) => {
                if let Err(undo) = self.enforce_suspensions(&before) {
                    tracing::error!(error = %format!("{undo:#}"), %tenant, "could not lift an unrecorded suspension");
                }
                self.undo_record(old_seq, &before, tenant);
                Err(Refusal::Internal(
                    anyhow::Error::new(e).context("recording the suspension"),
                ))
            }
        }
    }

    /// Puts the kernel's record back after a suspension that was not recorded.
    fn undo_record(&mut self, seq: u64, suspended: &BTreeMap<String, Suspended>, tenant: &str) {
        if let Err(e) = self.write_record(seq, suspended) {
            tracing::error!(error = %format!("{e:#}"), %tenant, "could not put the kernel's suspension record back; the next start will refuse until `warden state restore` records the suspension");
        }
    }

    /// Each tenant's counters and drops, read once (in a few batch reads of every slot
    /// up to the highest in use, as `/metrics` does, not four syscalls a tenant).
    fn traffic(&self) -> Result<TrafficTable> {
        let indexes: Vec<u32> = self
            .policy
            .tenants
            .iter()
            .filter_map(|t| self.index.get(&t.id))
            .collect();
        let slots = indexes.iter().max().map_or(0, |m| m + 1);
        let counters = self.dataplane.all_tenant_counters(slots)?;
        let drops = self.dataplane.all_drop_totals(slots)?;
        let volumes = counters
            .iter()
            .map(|c| {
                c.map(|c| Volume {
                    packets: c.packets,
                    bytes: c.bytes,
                })
            })
            .collect();
        let detected = drops.iter().map(detected_drops).collect();
        Ok(TrafficTable::new(indexes, volumes, detected))
    }
}

/// [`Inner::enforce`] on the daemon's parts, so the policy in force can be enforced
/// again without copying it. Suspensions go above the policy ([`suspension::holds`]): a
/// tenant owning an address recorded with a suspension is suspended too, and a
/// suspended id absent from the policy keeps its recorded addresses in an entry of its
/// own.
fn enforce(
    dataplane: &mut Dataplane,
    fill: &mut PolicyFill,
    index: &TenantIndex,
    policy: &Policy,
    suspended: &BTreeMap<String, Suspended>,
) -> Result<(TenantIndex, Holds)> {
    let holds = suspension::holds(policy, suspended);
    let mut held: BTreeMap<String, Vec<IpNet>> = holds.extra.clone();
    for id in holds.retained() {
        held.entry(id.to_string()).or_default();
    }
    let mut index = index.clone();
    let changes = index.sync(
        policy
            .tenants
            .iter()
            .map(|t| t.id.as_str())
            .chain(holds.retained()),
    )?;
    let compiled = dataplane::compile_with(policy, &index, &holds.suspended_ids(), &held)?;
    let added: Vec<u32> = changes.added.iter().map(|(_, slot)| *slot).collect();
    dataplane
        .reset_slots(&added)
        .context("zeroing new tenants' slots")?;
    dataplane
        .apply(&compiled)
        .context("writing the policy into the kernel")?;
    *fill = PolicyFill::of(&compiled);
    Ok((index, holds))
}

/// The pipeline's [`Effects`] on the daemon: the dataplane's runtime state and the store.
struct Actuator<'a> {
    inner: &'a mut Inner,
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
        tenant: u32,
        target: BlockTarget,
        until: Duration,
    ) -> Result<(), EffectError> {
        self.inner
            .dataplane
            .block(tenant, target, until)
            .map_err(kernel)
    }

    fn unblock(&mut self, tenant: u32, target: BlockTarget) -> Result<(), EffectError> {
        self.inner.dataplane.unblock(tenant, target).map_err(kernel)
    }

    fn throttle(
        &mut self,
        tenant: u32,
        rate_bps: Option<u64>,
        until: Duration,
    ) -> Result<(), EffectError> {
        self.inner
            .dataplane
            .throttle(tenant, rate_bps, until)
            .map_err(kernel)
    }

    fn capture(&mut self, tenant: u32, frames: i32) -> Result<(), EffectError> {
        self.inner.dataplane.capture(tenant, frames).map_err(kernel)
    }

    fn sweep_blocks(&mut self, now: Duration) -> Result<usize, EffectError> {
        self.inner.dataplane.sweep_blocks(now).map_err(kernel)
    }

    fn suspend(&mut self, tenant: &str, reason: &str) -> Result<(), EffectError> {
        match self.inner.suspend(tenant, reason, watch::ACTOR) {
            Ok(_) | Err(Refusal::Conflict(_)) => Ok(()),
            Err(e) => Err(EffectError::Failed(anyhow::Error::new(e))),
        }
    }

    fn create_flag(&mut self, flag: NewFlag) -> Result<i64, EffectError> {
        let flag = self
            .inner
            .store
            .create_flag(flag)
            .map_err(stored("creating a flag"))?;
        self.inner
            .flag_event(&flag, Event::Opened, watch::ACTOR, None);
        Ok(flag.id)
    }

    fn update_flag(
        &mut self,
        id: i64,
        last_seen: i64,
        figures: &serde_json::Value,
        top_targets: &serde_json::Value,
    ) -> Result<(), EffectError> {
        self.inner
            .store
            .update_flag_evidence(id, last_seen, figures, top_targets)
            .map(drop)
            .map_err(stored("updating a flag's evidence"))
    }

    fn record_action(&mut self, id: i64, action: &FlagAction) -> Result<(), EffectError> {
        self.inner
            .store
            .record_flag_action(id, action)
            .map_err(stored("recording a flag action"))
    }

    fn add_samples(&mut self, id: i64, samples: &[FlagSample]) -> Result<usize, EffectError> {
        self.inner
            .store
            .add_samples(id, samples)
            .map_err(stored("adding samples to a flag"))
    }
}

/// The programs' fact counters; zero when they cannot be read (an object without
/// detection maps), so `/metrics` and status keep answering.
fn fact_counters(inner: &Inner) -> FactCounters {
    inner.dataplane.fact_counters().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "reading the fact counters failed");
        FactCounters::default()
    })
}

fn drops_map(d: &DropCounters) -> HashMap<String, u64> {
    reason::NAMES
        .iter()
        .zip(d.packets)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.to_string(), n))
        .collect()
}

/// `policy` moved into fresh allocations. A policy just read has its many small
/// allocations (ids, address lists) strewn between those of the YAML tree and the
/// drafts, all freed by now; copied, the copies fill the freed space more densely, the
/// originals are freed, and [`crate::memory::release_freed`] finds more whole pages to
/// give back.
fn compacted(policy: Policy) -> Policy {
    let copy = policy.clone();
    drop(policy);
    copy
}

/// The programs' run statistics while the kernel counts them
/// (`kernel.bpf_stats_enabled` = 1), else `None`.
fn program_runs(inner: &Inner) -> Option<Vec<metrics::ProgramRuns>> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    match std::fs::read_to_string(SYSCTL) {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => return None,
        Err(e) => {
            tracing::debug!(error = %e, "reading {SYSCTL}; no program statistics");
            return None;
        }
    }
    match inner.dataplane.program_runs() {
        Ok(runs) => Some(
            runs.into_iter()
                .map(|(program, runs, run_time_ns)| metrics::ProgramRuns {
                    program: program.to_string(),
                    runs,
                    run_time_ns,
                })
                .collect(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading the programs' run statistics");
            None
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the kernel half-written in a way
        // the next apply would not repair (generations), so keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pipeline and the daemon state, locked in the one order allowed.
    fn lock_both(&self) -> (MutexGuard<'_, Watch>, MutexGuard<'_, Inner>) {
        // A panic inside the pipeline leaves at worst a detection half-handled; its
        // actions expire on their own in the kernel, so keep detecting.
        let watch = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        (watch, self.lock())
    }

    /// Handles one batch of kernel events.
    fn process_events(&self, events: &mut Vec<KernelEvent>) {
        let (mut watch, mut inner) = self.lock_both();
        let now = now();
        watch.events(
            events.drain(..).map(observation),
            &now,
            &mut Actuator { inner: &mut inner },
        );
    }

    /// The token table for the API.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// Counters and map fill for `/metrics`.
    pub fn snapshot(&self) -> Result<metrics::Snapshot> {
        let (watch, inner) = self.lock_both();
        let indexes = inner
            .policy
            .tenants
            .iter()
            .map(|t| inner.index.get(&t.id).context("tenant without index"))
            .collect::<Result<Vec<u32>>>()?;
        // Every slot up to the highest in use, in a few batch reads (not four syscalls
        // a tenant: /metrics must stay fast with 10,000 tenants).
        let slots = indexes.iter().max().map_or(0, |m| m + 1);
        let counters = inner.dataplane.all_tenant_counters(slots)?;
        let drops = inner.dataplane.all_drop_counters(slots)?;
        let mut tenants = Vec::with_capacity(inner.policy.tenants.len());
        for ((t, id), index) in inner.policy.tenants.iter().zip(&inner.ids).zip(indexes) {
            tenants.push(metrics::TenantSample {
                id: id.clone(),
                counters: counters[index as usize],
                drops: drops[index as usize],
                suspended: inner.holds.tenants.contains_key(&t.id),
                detections: watch.detections_of(&t.id),
            });
        }
        let events = fact_counters(&inner);
        let detection = metrics::DetectionSample {
            events_sent: events.delivered(),
            events_lost: events.lost() + self.log_lost.load(Ordering::Relaxed),
            event_decode_errors: self.event_decode_errors.load(Ordering::Relaxed),
            kernel_pending_overwritten: watch.pending_stats().overwritten,
            counters: watch.counters(),
            pending: watch.pending_stats(),
            fan: watch.fan_stats(),
            engine: watch.engine_stats(),
            ladder: watch.ladder_stats(),
            status: watch.status(),
        };
        drop(watch);
        Ok(metrics::Snapshot {
            review: Self::review_stats(&inner),
            detection,
            tenants,
            top_k: metrics::TopK(inner.policy.daemon.metrics_top_k),
            retired: inner.retired,
            programs: program_runs(&inner),
            unattributed: inner.dataplane.global_counters()?,
            policy_generation: inner.generation,
            policy_apply_failures: self
                .apply_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            maps: inner
                .map_fill()
                .into_iter()
                .map(|m| (m.map, m.entries, m.capacity))
                .collect(),
        })
    }

    /// Every tenant with counters, rates, drops and state, then the suspended tenants
    /// absent from the policy (their recorded addresses are still enforced).
    pub fn tenants(&self) -> Result<Vec<TenantView>> {
        let inner = self.lock();
        let mut views = inner
            .policy
            .tenants
            .iter()
            .map(|t| inner.tenant_view(t))
            .collect::<Result<Vec<_>>>()?;
        for id in inner.holds.retained() {
            views.push(inner.retained_view(id)?);
        }
        Ok(views)
    }

    /// One tenant (of the policy, or suspended and absent from it), or `None` when no
    /// tenant has that id.
    pub fn tenant(&self, id: &str) -> Result<Option<TenantView>> {
        let inner = self.lock();
        if let Some(t) = inner.policy.tenant(id) {
            return inner.tenant_view(t).map(Some);
        }
        if inner.holds.retained().any(|r| r == id) {
            return inner.retained_view(id).map(Some);
        }
        Ok(None)
    }

    /// Daemon status.
    pub fn status(&self) -> StatusView {
        let (watch, inner) = self.lock_both();
        let events = fact_counters(&inner);
        let WatchStatus {
            open_episodes,
            pending_attempts,
            active_blocks,
            active_throttles,
        } = watch.status();
        let detection = DetectionView {
            events_read: self.events_read.load(Ordering::Relaxed),
            events_sent: events.delivered(),
            events_lost: events.lost() + self.log_lost.load(Ordering::Relaxed),
            event_decode_errors: self.event_decode_errors.load(Ordering::Relaxed),
            open_episodes,
            pending_attempts,
            active_blocks,
            active_throttles,
            flags_opened: watch.counters().flags_opened,
        };
        drop(watch);
        StatusView {
            review: Self::review_stats(&inner),
            detection,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.started.elapsed().as_secs(),
            policy_file: self.policy_path.clone(),
            policy_generation: inner.generation,
            policy_applied_at: inner
                .applied_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            kernel_generation: inner.dataplane.active_generation(),
            tenants: inner.policy.tenants.len(),
            suspended: inner.suspensions.len(),
            bpffs: inner.dataplane.bpffs().to_path_buf(),
            attachments: inner.dataplane.attachments().to_vec(),
            maps: inner.map_fill(),
        }
    }

    /// The `daemon.management` networks in force.
    pub fn management(&self) -> Arc<Vec<ipnet::IpNet>> {
        self.management
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the policy file and applies it; on any error the old policy stays. Whoever
    /// can signal the daemon is root on the box: the reload counts as an admin's, and a
    /// policy exposing suspended tenants is applied with the same audit entry.
    pub fn reload(&self, actor: &str) -> Result<u64, Refusal> {
        let r = policy::load(&self.policy_path)
            .map_err(Refusal::InvalidPolicy)
            .and_then(|policy| self.apply(compacted(policy), actor, Role::Admin));
        crate::memory::release_freed();
        self.count_failure(r)
    }

    /// Validates policy text (as sent to `PUT /api/v1/policy`: bytes, which must be UTF-8)
    /// and applies it, as `actor` with `role`: a policy exposing suspended tenants needs an
    /// admin.
    pub fn apply_text(
        &self,
        text: &[u8],
        name: &str,
        actor: &str,
        role: Role,
    ) -> Result<u64, Refusal> {
        let r = policy::parse_bytes(text, name)
            .map_err(Refusal::InvalidPolicy)
            .and_then(|policy| self.apply(compacted(policy), actor, role));
        crate::memory::release_freed();
        self.count_failure(r)
    }

    fn count_failure(&self, r: Result<u64, Refusal>) -> Result<u64, Refusal> {
        if r.is_err() {
            self.apply_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn apply(&self, policy: Policy, actor: &str, role: Role) -> Result<u64, Refusal> {
        let (mut watch, mut inner) = self.lock_both();
        // Management prefixes are enforced per generation like the rest; the listener,
        // paths, tokens and attachments are set up at start.
        let restart_only = |d: &policy::DaemonConfig| policy::DaemonConfig {
            management: Vec::new(),
            metrics_top_k: 0,
            ..d.clone()
        };
        if restart_only(&policy.daemon) != restart_only(&inner.policy.daemon)
            || policy.interfaces != inner.policy.interfaces
        {
            return Err(Refusal::BadRequest(
                "`interfaces` and `daemon` (except `management`, `metrics_top_k`) take effect at restart only; \
                 this policy changes them"
                    .into(),
            ));
        }
        // Suspension above policy: only an admin may apply a policy that would expose a
        // suspended tenant, and it is audited; its recorded addresses stay suspended
        // either way (see `suspension::holds`).
        let exposures = suspension::classify(&inner.policy, &policy, &inner.suspended());
        if !exposures.is_empty() && role < Role::Admin {
            let rules: Vec<String> = exposures.iter().map(ToString::to_string).collect();
            let first = &exposures[0];
            let exposed = first.tenant.clone().unwrap_or_else(|| {
                inner
                    .suspensions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            tracing::warn!(%actor, role = role.as_str(), rules = %rules.join("; "), "policy refused: it would expose suspended tenants");
            return Err(Refusal::Forbidden(
                format!(
                    "policy refused: it would expose suspended tenant {} (rule {}{}); only the \
                     admin role may apply it (audited), and suspended addresses stay suspended \
                     until unsuspended",
                    exposed,
                    first.rule,
                    if exposures.len() > 1 {
                        format!(", and {} more", exposures.len() - 1)
                    } else {
                        String::new()
                    }
                ),
                rules,
            ));
        }

        // Tenants leaving the policy: their final counters stay in the metrics
        // aggregates. Their slots are quarantined for a generation, so they still hold
        // those counters right after the apply.
        let leaving: Vec<(String, u32)> = inner
            .policy
            .tenants
            .iter()
            .filter(|t| policy.tenant(&t.id).is_none())
            .filter_map(|t| inner.index.get(&t.id).map(|i| (t.id.clone(), i)))
            .collect();
        inner.apply_policy(policy, actor, &exposures)?;
        *self.management.write().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(inner.policy.daemon.management.clone());
        for (id, slot) in leaving {
            let counters = inner.dataplane.tenant_counters(slot);
            let drops = inner.dataplane.drop_counters(slot);
            match (counters, drops) {
                (Ok(c), Ok(d)) => inner.retired.add_traffic(&c, &d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(tenant = %id, error = %e, "reading a removed tenant's counters; the metrics aggregates lose them")
                }
            }
            inner.retired.add_detections(&watch.detections_of(&id));
        }
        watch.configure(&inner.policy, |id| inner.index.get(id), inner.generation);
        Ok(inner.generation)
    }

    /// Suspends a tenant: enforced in the kernel, then recorded and audited. If the
    /// record fails the kernel is put back, so no suspension is enforced unaudited.
    pub fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        let (mut watch, mut inner) = self.lock_both();
        let s = inner.suspend(tenant, reason, actor)?;
        watch.note_suspension(tenant);
        Ok(s)
    }

    /// Lifts a suspension at the next suspension sequence number: recorded and audited
    /// first (and written to the events log), then the kernel's record, then the flags. A
    /// crash in between leaves the store ahead, which wins at the next start. A suspended
    /// tenant no longer in the policy can be lifted too (its held addresses are released).
    pub fn unsuspend(
        &self,
        tenant: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Suspension, Refusal> {
        let (mut watch, mut inner) = self.lock_both();
        if reason.trim().is_empty() {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        let Some(current) = inner.suspensions.get(tenant).cloned() else {
            if inner.policy.tenant(tenant).is_none() {
                return Err(Refusal::UnknownTenant(tenant.to_string()));
            }
            return Err(Refusal::Conflict(format!(
                "tenant {tenant:?} is not suspended"
            )));
        };
        let seq = inner.suspension_seq + 1;
        let s = inner
            .store
            .unsuspend_with(tenant, reason, actor, Some(seq))
            .context("recording the lift")?;
        inner.suspensions.remove(tenant);
        inner.suspension_seq = seq;
        let line = suspension::events::unsuspended_line(
            &current.suspended(),
            actor,
            reason,
            s.lifted_at.unwrap_or_else(system_clock),
            seq,
        );
        inner
            .review
            .log_durable(&line, suspension::events::UNSUSPENDED, tenant);
        watch.lift_suspension(tenant);
        let suspended = inner.suspended();
        if let Err(e) = inner.write_record(seq, &suspended) {
            tracing::error!(error = %format!("{e:#}"), %tenant, "the kernel's suspension record still holds the lifted suspension; the state database is ahead and wins at the next start");
        }
        inner.enforce_suspensions(&suspended)?;
        tracing::warn!(%tenant, %actor, %reason, seq, "suspension lifted");
        Ok(s)
    }

    /// Audit entries, newest first.
    pub fn audit(&self, since: Option<i64>, limit: usize) -> Result<Vec<warden_store::AuditEntry>> {
        Ok(self.lock().store.audit(since, limit)?)
    }

    /// Flags `filter` matches, most recently seen first.
    pub fn flags(&self, filter: &FlagFilter) -> Result<Vec<Flag>> {
        Ok(self.lock().store.flags(filter)?)
    }

    /// Flag `id` with its actions and evidence counts, or `None`.
    pub fn flag(&self, id: i64) -> Result<Option<FlagDetail>> {
        Ok(self.lock().store.flag(id)?)
    }

    /// Flag `id`'s samples as a pcap file, or `None` when there is no such flag.
    pub fn flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let inner = self.lock();
        if inner.store.flag(id)?.is_none() {
            return Ok(None);
        }
        let samples = inner.store.flag_samples(id)?;
        drop(inner);
        let mut out = Vec::new();
        store::pcap::write_pcap(&mut out, &samples).context("writing pcap")?;
        Ok(Some(out))
    }

    /// Moves flag `id` to `state` (a review by a person), audited by the store under `actor`.
    pub fn set_flag_state(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag, Refusal> {
        let inner = self.lock();
        let r = inner.store.set_flag_state(id, state, reason, actor);
        if let Ok(flag) = &r {
            inner.flag_event(
                flag,
                Event::of_state(state),
                actor,
                flag.state_reason.as_deref(),
            );
        }
        drop(inner);
        match r {
            Ok(flag) => {
                tracing::info!(flag = id, tenant = %flag.tenant, %state, %actor, "flag reviewed");
                Ok(flag)
            }
            Err(StoreError::Flag(e @ FlagError::NotFound(_))) => {
                Err(Refusal::NotFound(e.to_string()))
            }
            Err(StoreError::Flag(e @ FlagError::Transition { .. })) => {
                Err(Refusal::Conflict(e.to_string()))
            }
            Err(e @ StoreError::ReasonRequired) => Err(Refusal::BadRequest(e.to_string())),
            Err(e) => Err(Refusal::Internal(
                anyhow::Error::new(e).context("recording the review"),
            )),
        }
    }

    /// Notifications due now, each with the webhook to send it to (`None`: no longer
    /// configured) and, for a flag's first notice, the deadline its delivery starts.
    fn due_notifications(&self) -> Result<Vec<Outgoing>> {
        let inner = self.lock();
        let now = system_clock();
        let due = inner.store.due_notifications(now, notify::BATCH)?;
        let mut out = Vec::with_capacity(due.len());
        for n in due {
            let url = inner.settings_of(&n.tenant).notify.webhook.clone();
            let deadline = match inner.store.flag(n.flag_id)? {
                Some(d) if n.event == Event::Opened.as_str() && d.flag.state == FlagState::Open => {
                    let review = inner.settings_of(&n.tenant).detectors.review(d.flag.kind);
                    let secs = i64::try_from(review.deadline.as_secs()).unwrap_or(i64::MAX);
                    Some(now.saturating_add(secs))
                }
                _ => None,
            };
            out.push(Outgoing {
                body: notify::outgoing_body(&n, deadline),
                notification: n,
                url,
                deadline,
            });
        }
        Ok(out)
    }

    /// Records how sending `o` went: delivered (a first notice also moves its flag to
    /// `notified` with its deadline), or failed (retried with backoff, or abandoned).
    fn delivery_outcome(&self, o: &Outgoing, result: Result<(), String>) -> Result<()> {
        let inner = self.lock();
        let n = &o.notification;
        let counters = &inner.review.counters;
        match result {
            Ok(()) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                inner.store.notification_delivered(n.id)?;
                tracing::info!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, event = %n.event, "notification delivered");
                if let Some(deadline) = o.deadline {
                    if let Some(flag) =
                        inner
                            .store
                            .mark_flag_notified(n.flag_id, deadline, watch::ACTOR)?
                    {
                        inner.flag_event(&flag, Event::Notified, watch::ACTOR, None);
                    }
                }
            }
            Err(error) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                let now = system_clock();
                let next = notify::next_attempt(n.queued_at, now, n.attempts + 1);
                inner.store.notification_failed(n.id, &error, next)?;
                match next {
                    Some(at) => {
                        tracing::warn!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, attempts = n.attempts + 1, retry_in_s = at - now, %error, "webhook delivery failed; retrying")
                    }
                    None => {
                        tracing::error!(notification = n.id, flag = n.flag_id, tenant = %n.tenant, attempts = n.attempts + 1, %error, "webhook delivery failed for 24 h; notification abandoned");
                        if let Some(d) = inner.store.flag(n.flag_id)? {
                            inner.flag_event(
                                &d.flag,
                                Event::NotificationAbandoned,
                                watch::ACTOR,
                                Some(&error),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Acts on `notified` flags past their deadline: suspends the tenant and escalates the
    /// flag when the kind's `suspend_on_deadline` says so, else records once that the
    /// deadline passed (the flag stays `notified` for the security team).
    fn sweep_deadlines(&self) -> Result<()> {
        let (mut watch, mut inner) = self.lock_both();
        let now = system_clock();
        for flag in inner.store.flags_past_deadline(now)? {
            let review = inner.settings_of(&flag.tenant).detectors.review(flag.kind);
            let deadline = flag.deadline.map_or_else(String::new, rfc3339);
            if !review.suspend_on_deadline {
                inner.store.mark_deadline_passed(flag.id, watch::ACTOR)?;
                inner
                    .review
                    .counters
                    .deadlines_passed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(flag = flag.id, tenant = %flag.tenant, kind = %flag.kind, %deadline, "flag unanswered at its deadline; the policy does not suspend for this kind");
                inner.flag_event(&flag, Event::DeadlinePassed, watch::ACTOR, None);
                continue;
            }
            let reason = format!(
                "flag {}: {} notified, no answer by the deadline {deadline}",
                flag.id, flag.kind
            );
            match inner.suspend(&flag.tenant, &reason, watch::ACTOR) {
                Ok(_) => {
                    watch.note_suspension(&flag.tenant);
                    inner
                        .review
                        .counters
                        .deadline_suspensions
                        .fetch_add(1, Ordering::Relaxed);
                    inner.flag_event(&flag, Event::Suspended, watch::ACTOR, Some(&reason));
                }
                // Already suspended (by a person or the ladder): the escalation stands.
                Err(Refusal::Conflict(_)) => {}
                // The tenant left the policy: nothing to suspend; reported once.
                Err(Refusal::UnknownTenant(_)) => {
                    inner.store.mark_deadline_passed(flag.id, watch::ACTOR)?;
                    tracing::warn!(flag = flag.id, tenant = %flag.tenant, "flag unanswered at its deadline, but the tenant is no longer in the policy: not suspended");
                    inner.flag_event(&flag, Event::DeadlinePassed, watch::ACTOR, None);
                    continue;
                }
                Err(e) => {
                    inner
                        .review
                        .counters
                        .deadline_suspend_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(flag = flag.id, tenant = %flag.tenant, error = %format!("{e:#}"), "could not suspend at the deadline; trying again at the next sweep");
                    continue;
                }
            }
            let escalated = inner.store.set_flag_state(
                flag.id,
                FlagState::Escalated,
                Some(&reason),
                watch::ACTOR,
            )?;
            tracing::warn!(flag = flag.id, tenant = %flag.tenant, kind = %flag.kind, "flag unanswered at its deadline: tenant suspended, flag escalated");
            inner.flag_event(&escalated, Event::Escalated, watch::ACTOR, Some(&reason));
        }
        Ok(())
    }

    /// The review workflow's figures.
    fn review_stats(inner: &Inner) -> notify::ReviewStats {
        let counts = inner.store.notification_counts().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting notifications failed");
            store::NotificationCounts::default()
        });
        inner.review.stats(counts.pending, counts.abandoned)
    }

    /// The once-a-second work: reads every tenant's counters once, updates the rates the
    /// API shows, and runs the pipeline's tick on them (drops, proxy windows, expiries).
    fn sample(&self) -> Result<()> {
        let (mut watch, mut inner) = self.lock_both();
        let at = Instant::now();
        let traffic = inner.traffic()?;
        let mut rates = HashMap::with_capacity(traffic.slots().len());
        if let Some(last) = &inner.last {
            let secs = at.duration_since(last.at).as_secs_f64().max(1e-3);
            for &i in traffic.slots() {
                let Some(c) = traffic.get(i).map(|t| t.counters) else {
                    continue;
                };
                // A slot given to a new tenant since was zeroed: its counters start
                // again below the old reading, and its first rate reads 0.
                let prev = last.counters.get(i as usize).copied().unwrap_or_default();
                let rate = |d: usize| {
                    (
                        c[d].bytes.saturating_sub(prev[d].bytes) as f64 * 8.0 / secs,
                        c[d].packets.saturating_sub(prev[d].packets) as f64 / secs,
                    )
                };
                rates.insert(i, [rate(0), rate(1)]);
            }
        }
        inner.rates = rates;
        let now = now();
        watch.tick(&now, &traffic, &mut Actuator { inner: &mut inner });
        inner.last = Some(Sample {
            at,
            counters: traffic.into_counters(),
        });
        Ok(())
    }
}

/// A notification on its way out.
struct Outgoing {
    notification: store::Notification,
    /// Where to.
    url: Option<String>,
    /// What is sent.
    body: serde_json::Value,
    /// The deadline delivery starts, for a flag's first notice.
    deadline: Option<i64>,
}

/// The notification task: every [`notify::EVERY`], sends the due notifications (up to
/// [`notify::BATCH`] at once, each bounded by [`notify::SEND_TIMEOUT`]).
async fn review_loop(shared: Arc<Shared>) {
    let client = match reqwest::Client::builder()
        .timeout(notify::SEND_TIMEOUT)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the webhook client: notifications and deadlines are off");
            return;
        }
    };
    let mut tick = tokio::time::interval(notify::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let due = match tokio::task::spawn_blocking(move || s.due_notifications()).await {
            Ok(Ok(due)) => due,
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "reading due notifications failed");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "notification task failed");
                Vec::new()
            }
        };
        let mut sends = tokio::task::JoinSet::new();
        for o in due {
            let client = client.clone();
            sends.spawn(async move {
                let r = match &o.url {
                    Some(url) => notify::deliver(&client, url, &o.body).await,
                    None => Err("no notify.webhook configured for the tenant any more".into()),
                };
                (o, r)
            });
        }
        while let Some(done) = sends.join_next().await {
            let Ok((o, r)) = done else { continue };
            let s = shared.clone();
            let recorded = tokio::task::spawn_blocking(move || s.delivery_outcome(&o, r)).await;
            if let Ok(Err(e)) = recorded {
                tracing::error!(error = %format!("{e:#}"), "recording a delivery failed; it is retried");
            }
        }
    }
}

/// The deadline task: every [`notify::EVERY`], acts on flags past their deadline (apart
/// from the deliveries, so a slow webhook never delays a suspension).
async fn deadline_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(notify::EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        match tokio::task::spawn_blocking(move || s.sweep_deadlines()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "deadline sweep failed"),
            Err(e) => tracing::error!(error = %e, "deadline sweep task failed"),
        }
    }
}

/// Options of `warden run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    /// Remove programs, links and maps on exit instead of leaving them enforcing.
    pub detach_on_exit: bool,
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// A start is all or nothing. What can be checked without touching the kernel is checked
/// first (the policy, and that each interface exists and its MTU fits the programs; the
/// token file, TLS files, state database, the API listener). Then a start that fails
/// undoes what it did to the pinned dataplane (see [`dataplane::RolledBack`]): what it
/// created goes, and what it adopted from an earlier daemon, which enforces whether or
/// not a daemon runs, stays as it was, still enforcing.
pub async fn run(opts: RunOptions) -> Result<()> {
    crate::memory::tune();
    // API connections, maps, SQLite and the sampler share the descriptor limit; the API
    // keeps its cap below what this leaves (daemon.api_limits).
    match crate::api::raise_fd_limit() {
        Ok(limit) => tracing::info!(limit, "open descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open descriptor limit"),
    }
    let policy_path = opts.policy_path.as_path();
    let policy = policy::load_on_host(policy_path, &|name| dataplane::iface::check(name, true))
        .map_err(|d| anyhow::anyhow!("invalid policy:\n{d}"))?;
    let policy = compacted(policy);
    let tokens = match &policy.daemon.tokens {
        Some(path) => {
            Tokens::load(path).with_context(|| format!("loading tokens from {}", path.display()))?
        }
        None => {
            tracing::warn!("no daemon.tokens file: every write to the API will be refused");
            Tokens::empty()
        }
    };
    // Before anything touches the kernel: a bad certificate or key stops the start here.
    let tls = match &policy.daemon.tls {
        Some(files) => Some(crate::api::tls_config(files)?),
        None => None,
    };
    let api_config = policy.daemon.clone();
    // The state database, checked against the kernel's pinned suspension record and the
    // events log before anything is written: a database that is missing, empty or older
    // than they are stops the start here, with every pinned program still enforcing.
    let checked = crate::state::open_checked(&policy, policy_path)?;
    if let Some(note) = &checked.reconciled.note {
        tracing::warn!("{note}");
    }
    let store = checked.store;
    let suspension_seq = checked.state.seq;
    let index_before = store.tenant_index()?;
    let index = TenantIndex::from_entries(&index_before)?;
    let mut suspensions: HashMap<String, Suspension> = store
        .active_suspensions()?
        .into_iter()
        .map(|s| (s.tenant.clone(), s))
        .collect();
    // Suspensions recorded before addresses were kept: their tenant's addresses now.
    for s in suspensions.values_mut() {
        if !s.addresses.is_empty() {
            continue;
        }
        let Some(t) = policy.tenant(&s.tenant) else {
            tracing::warn!(tenant = %s.tenant, "suspended tenant not in the policy and no addresses recorded with its suspension: nothing of it to hold");
            continue;
        };
        let addresses: Vec<IpNet> = t.addresses.iter().map(IpNet::trunc).collect();
        if store.fill_suspension_addresses(&s.tenant, &addresses)? {
            tracing::info!(tenant = %s.tenant, addresses = ?addresses, "recorded the suspended tenant's addresses (its suspension predates address records)");
            s.addresses = addresses;
        }
    }
    // The listener and the signal handlers too: an address in use stops the start
    // before the kernel is touched.
    let listen = policy.daemon.listen;
    let listener = crate::api::listen(listen).with_context(|| format!("listening on {listen}"))?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let dataplane = Dataplane::open(&policy.daemon.bpffs).with_context(|| {
        format!(
            "opening the dataplane under {}",
            policy.daemon.bpffs.display()
        )
    })?;
    if dataplane.adopted_maps() > 0 {
        tracing::info!(maps = dataplane.adopted_maps(), bpffs = %policy.daemon.bpffs.display(), "adopting pinned dataplane");
    }
    let marker = policy.daemon.state_dir.join(OBJECT_MARKER);
    let interfaces: Vec<(String, policy::Mode)> = policy
        .interfaces
        .iter()
        .map(|i| (i.name.clone(), i.mode))
        .collect();
    let events_log = policy.daemon.events_log_path();
    let mut nothing_yet = policy.clone();
    nothing_yet.tenants.clear();
    let mut inner = Inner {
        policy: nothing_yet,
        ids: Vec::new(),
        generation: 0,
        applied_at: SystemTime::now(),
        dataplane,
        index,
        fill: PolicyFill::default(),
        suspensions,
        suspension_seq,
        holds: Holds::default(),
        store,
        rates: HashMap::new(),
        retired: metrics::Totals::default(),
        last: None,
        review: notify::Review::new(&events_log),
    };
    let marker_before = std::fs::read_to_string(&marker).ok();
    let marker_before = marker_before.as_deref();
    if let Err(e) = start_enforcing(&mut inner, policy, &interfaces, &marker, marker_before) {
        let done = roll_back_start(&mut inner, &index_before, &marker, marker_before);
        let bpffs = inner.dataplane.bpffs().display().to_string();
        let undone = match done.failures.len() {
            0 => "undone".to_string(),
            n => format!("undone but for {n} steps (see the log)"),
        };
        let adopted = match inner.dataplane.adopted_maps() {
            0 => String::new(),
            _ => ", and the enforcement it adopted there runs on as it was".to_string(),
        };
        return Err(e.context(format!(
            "the start failed; what it did under {bpffs} was {undone}{adopted}"
        )));
    }
    if !inner.suspensions.is_empty() {
        let state = SuspensionState {
            seq: inner.suspension_seq,
            tenants: inner.suspended(),
        };
        let line = suspension::events::snapshot_line(&state, "warden", "start", system_clock());
        inner
            .review
            .log_durable(&line, suspension::events::SNAPSHOT, "*");
    }
    tracing::info!(
        suspended = inner.suspensions.len(),
        seq = inner.suspension_seq,
        tenants = %inner.suspensions.keys().cloned().collect::<Vec<_>>().join(","),
        "suspensions in force (state database, kernel record and events log agree)"
    );
    let mut watch = Watch::default();
    watch.configure(&inner.policy, |id| inner.index.get(id), inner.generation);
    for tenant in inner.suspensions.keys() {
        watch.note_suspension(tenant);
    }
    crate::memory::release_freed();
    let reader = match inner.dataplane.event_reader() {
        Ok(reader) => Some(reader),
        Err(e) => {
            tracing::error!(error = %e, "cannot read kernel events: scan, flood, spam and proxy detection are off");
            None
        }
    };
    for a in inner.dataplane.attachments() {
        tracing::info!(interface = %a.interface, mode = %a.mode, hook = %a.hook, program = %a.program, how = %a.how, "enforcing");
    }
    let bpffs = inner.dataplane.bpffs().to_path_buf();
    let management = Arc::new(inner.policy.daemon.management.clone());
    let shared = Arc::new(Shared {
        watch: Mutex::new(watch),
        inner: Mutex::new(inner),
        events_read: AtomicBool::new(reader.is_some()),
        event_decode_errors: AtomicU64::new(0),
        log_lost: AtomicU64::new(0),
        started: Instant::now(),
        policy_path: policy_path.to_path_buf(),
        tokens,
        apply_failures: std::sync::atomic::AtomicU64::new(0),
        management: std::sync::RwLock::new(management),
    });

    let sampler = tokio::spawn({
        let shared = shared.clone();
        async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let shared = shared.clone();
                let r = tokio::task::spawn_blocking(move || {
                    if let Err(e) = shared.sample() {
                        tracing::warn!(error = %format!("{e:#}"), "sampling counters failed");
                    }
                    // What the tick, the API and the pipeline freed since the last one
                    // (a /metrics scrape of 100,000 tenants alone is tens of MiB): well
                    // under a millisecond when there is little, a few when there is.
                    crate::memory::release_freed();
                })
                .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "sampling task failed");
                }
            }
        }
    });
    let events = reader.map(|reader| tokio::spawn(read_events(shared.clone(), reader)));
    let review = tokio::spawn(review_loop(shared.clone()));
    let deadlines = tokio::spawn(deadline_loop(shared.clone()));
    let reloader = tokio::spawn({
        let shared = shared.clone();
        async move {
            while hup.recv().await.is_some() {
                let shared = shared.clone();
                let r = tokio::task::spawn_blocking(move || shared.reload("SIGHUP")).await;
                match r {
                    Ok(Ok(g)) => tracing::info!(generation = g, "policy reloaded on SIGHUP"),
                    Ok(Err(Refusal::InvalidPolicy(errors))) => {
                        tracing::error!(%errors, "policy reload rejected; previous policy stays")
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %format!("{e:#}"), "policy reload rejected; previous policy stays")
                    }
                    Err(e) => tracing::error!(error = %e, "policy reload task failed"),
                }
            }
        }
    });

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%listen, scheme, "serving API and /metrics");
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    };
    let tokens = shared.tokens().clone();
    let served =
        crate::api::serve(listener, tls, shared.clone(), tokens, &api_config, shutdown).await;
    sampler.abort();
    reloader.abort();
    review.abort();
    deadlines.abort();
    let _ = sampler.await;
    let _ = reloader.await;
    let _ = review.await;
    let _ = deadlines.await;
    if let Some(events) = events {
        events.abort();
        let _ = events.await;
    }
    served?;
    drop(shared);
    if opts.detach_on_exit {
        let n = Dataplane::uninstall(&bpffs)?;
        tracing::info!(pins = n, bpffs = %bpffs.display(), "detached and removed all pinned state");
    } else {
        tracing::info!(bpffs = %bpffs.display(), "exiting; pinned programs keep enforcing");
    }
    Ok(())
}

/// The kernel part of a start: the policy and suspensions into the maps (before any
/// program is attached or, when adopting, with one atomic flip, so no packet passes
/// unenforced), the programs onto the interfaces, the object marker written, the apply
/// audited, and last [`Dataplane::finish_start`]. On an error the caller rolls back.
fn start_enforcing(
    inner: &mut Inner,
    policy: Policy,
    interfaces: &[(String, policy::Mode)],
    marker: &Path,
    marker_before: Option<&str>,
) -> Result<()> {
    // Policy and suspensions go into the kernel before any program is attached (or,
    // when adopting, with one atomic flip), so no packet passes unenforced.
    inner.put_policy(policy)?;
    // The kernel's record follows the store (after the flags: a crash in between leaves
    // the store ahead, which wins).
    inner.sync_record()?;
    // What each interface passes unparsed, in place before its programs see a frame.
    let configured = inner.policy.interfaces.clone();
    inner.dataplane.configure_interfaces(&configured)?;
    let object = dataplane::object_id();
    inner
        .dataplane
        .attach(interfaces, &object, marker_before.map(str::trim))?;
    std::fs::write(marker, &object).with_context(|| format!("writing {}", marker.display()))?;
    inner.audit_apply("warden", &[])?;
    inner
        .dataplane
        .finish_start()
        .context("removing links of interfaces no longer in the policy")?;
    inner.dataplane.forget_other_interfaces(&configured);
    Ok(())
}

/// Undoes a failed start: the dataplane's steps in reverse (pins, links and directories
/// it created go; the generation, management prefixes and programs it changed under
/// adopted pins are put back), then the tenant index and the object marker as they were.
fn roll_back_start(
    inner: &mut Inner,
    index_before: &[(String, u32)],
    marker: &Path,
    marker_before: Option<&str>,
) -> dataplane::RolledBack {
    let done = inner.dataplane.roll_back_start();
    for failure in &done.failures {
        tracing::error!(%failure, "could not undo a step of the failed start");
    }
    tracing::warn!(
        undone = done.undone,
        failed = done.failures.len(),
        bpffs = %inner.dataplane.bpffs().display(),
        "start failed: undid what it did to the pinned dataplane"
    );
    if let Err(e) = inner.store.save_tenant_index(index_before) {
        tracing::error!(error = %e, "could not put the tenant index back");
    }
    // Only a marker this start wrote is put back.
    if std::fs::read_to_string(marker).ok().as_deref() == marker_before {
        return done;
    }
    let restored = match marker_before {
        Some(text) => std::fs::write(marker, text),
        None => match std::fs::remove_file(marker) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            other => other,
        },
    };
    if let Err(e) = restored {
        tracing::error!(error = %e, marker = %marker.display(), "could not put the object marker back");
    }
    done
}

/// The event task: reads kernel events in batches and hands each to the pipeline (off the
/// async workers: it writes maps and the database). Also runs when no event came within
/// [`EVENT_WAIT`], so unanswered attempts time out on time.
async fn read_events(shared: Arc<Shared>, mut reader: EventReader) {
    let mut failures = 0;
    // One buffer, handed to the blocking pool and back, so an idle loop allocates nothing.
    let mut batch = Vec::new();
    loop {
        if let Err(e) = reader.read(&mut batch, EVENT_BATCH, EVENT_WAIT).await {
            failures += 1;
            if failures >= EVENT_READ_ATTEMPTS {
                tracing::error!(error = %e, "reading kernel events keeps failing; scan, flood, spam and proxy detection stop");
                shared.events_read.store(false, Ordering::Relaxed);
                return;
            }
            tracing::warn!(error = %e, "reading kernel events failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        failures = 0;
        shared
            .event_decode_errors
            .store(reader.decode_errors(), Ordering::Relaxed);
        shared.log_lost.store(reader.log_lost(), Ordering::Relaxed);
        let s = shared.clone();
        let handled = tokio::task::spawn_blocking(move || {
            s.process_events(&mut batch);
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

/// `warden uninstall`: removes every pinned program, link and map under `bpffs`.
pub fn uninstall(bpffs: &Path) -> Result<usize> {
    Ok(Dataplane::uninstall(bpffs)?)
}
