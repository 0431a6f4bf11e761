//! What the API and SIGHUP ask of the daemon: the [`Backend`] the API serves from, and
//! the policy reload. Each request takes the owners it needs in the daemon's lock order.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::signal::unix::Signal;
use warden_policy::flag::{Flag, FlagDetail, FlagFilter, FlagState};
use warden_policy::suspension::Suspension;
use warden_policy::{self as policy, Policy};
use warden_store::{AuditEntry, FlagError, StoreError};

use super::review::Event;
use super::start::compacted;
use super::Daemon;
use crate::api::{Backend, Refusal};
use crate::auth::Role;
use crate::metrics::{self, TopK};
use crate::views::{StatusView, TenantView};

impl Daemon {
    /// Re-reads the policy file and applies it; on any error the old policy stays. Whoever
    /// can signal the daemon is root on the box: the reload counts as an admin's, and a
    /// policy exposing suspended tenants is applied with the same audit entry.
    fn reload(&self, actor: &str) -> Result<u64, Refusal> {
        if self.fleet.is_some() {
            return self.reload_fleet();
        }
        let r = policy::load(&self.policy_path)
            .map_err(Refusal::InvalidPolicy)
            .and_then(|policy| self.apply(compacted(policy), actor, Role::Admin));
        crate::memory::release_freed();
        self.count_failure(r)
    }

    /// Refuses a write a fleet node takes from the fleet only: two paths would diverge.
    fn not_in_fleet(&self, what: &str) -> Result<(), Refusal> {
        match &self.fleet {
            Some(f) => Err(Refusal::BadRequest(format!(
                "this node is fleet node {:?}: {what} come from the fleet; write through `warden controller` (--api)",
                f.config.node
            ))),
            None => Ok(()),
        }
    }

    pub(super) fn count_failure(&self, r: Result<u64, Refusal>) -> Result<u64, Refusal> {
        if r.is_err() {
            self.apply_failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Applies `policy` as `actor` with `role` (see `Enforcement::accept`), then
    /// configures the pipeline for it.
    pub(super) fn apply(&self, policy: Policy, actor: &str, role: Role) -> Result<u64, Refusal> {
        let mut pipeline = self.detection.lock();
        let mut enforcement = self.lock_enforcement();
        let accepted = enforcement.accept(policy, actor, role)?;
        let generation =
            enforcement.apply(&self.db, accepted, actor, |id| pipeline.detections_of(id))?;
        self.publish(enforcement.policy());
        pipeline.configure(enforcement.policy(), |id| enforcement.slot(id), generation);
        Ok(generation)
    }
}

impl Backend for Daemon {
    fn snapshot(&self) -> Result<metrics::Snapshot> {
        let pipeline = self.detection.lock();
        let enforcement = self.lock_enforcement();
        let tenants = enforcement.tenant_series(|id| pipeline.detections_of(id))?;
        let facts = enforcement.fact_counters();
        let detection = self.detection.figures(&pipeline, &facts);
        drop(pipeline);
        let policy = enforcement.policy();
        Ok(metrics::Snapshot {
            review: self.review.stats(&self.db),
            detection,
            tenants,
            top_k: TopK(policy.daemon.metrics_top_k),
            retired: enforcement.retired(),
            programs: enforcement.program_runs(),
            unattributed: enforcement.dataplane().global_counters()?,
            policy_generation: enforcement.generation(),
            policy_apply_failures: self.apply_failures.load(Ordering::Relaxed),
            fleet: self
                .fleet
                .as_ref()
                .map(|f| f.figures(self.unpublished_flags(f))),
            maps: enforcement
                .map_fill()
                .into_iter()
                .map(|m| (m.map, m.entries, m.capacity))
                .collect(),
        })
    }

    fn status(&self) -> StatusView {
        let pipeline = self.detection.lock();
        let enforcement = self.lock_enforcement();
        let detection = self.detection.view(&pipeline, &enforcement.fact_counters());
        drop(pipeline);
        enforcement.status(
            self.started.elapsed().as_secs(),
            self.policy_path.clone(),
            detection,
            self.review.stats(&self.db),
        )
    }

    fn tenants(&self) -> Result<Vec<TenantView>> {
        let enforcement = self.lock_enforcement();
        self.sampler.with_rates(|rates| enforcement.tenants(rates))
    }

    fn tenant(&self, id: &str) -> Result<Option<TenantView>> {
        let enforcement = self.lock_enforcement();
        self.sampler
            .with_rates(|rates| enforcement.tenant(id, rates))
    }

    /// Suspends a tenant: enforced in the kernel, then recorded and audited. If the
    /// record fails the kernel is put back, so no suspension is enforced unaudited.
    fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        self.not_in_fleet("suspensions")?;
        let mut enforcement = self.lock_enforcement();
        enforcement.suspend(&self.db, &self.review, tenant, reason, actor)
    }

    fn unsuspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        self.not_in_fleet("suspensions")?;
        let mut pipeline = self.detection.lock();
        let mut enforcement = self.lock_enforcement();
        let s = enforcement.unsuspend(&self.db, &self.review, tenant, reason, actor)?;
        pipeline.suspension_lifted(tenant);
        Ok(s)
    }

    /// Validates policy text (as sent to `PUT /api/v1/policy`: bytes, which must be UTF-8)
    /// and applies it, as `actor` with `role`: a policy exposing suspended tenants needs an
    /// admin.
    fn apply_text(&self, text: &[u8], name: &str, actor: &str, role: Role) -> Result<u64, Refusal> {
        self.not_in_fleet("the policy")?;
        let r = policy::parse_bytes(text, name)
            .map_err(Refusal::InvalidPolicy)
            .and_then(|policy| self.apply(compacted(policy), actor, role));
        crate::memory::release_freed();
        self.count_failure(r)
    }

    fn audit(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(self.db.lock().audit(since, limit)?)
    }

    fn flags(&self, filter: &FlagFilter) -> Result<Vec<Flag>> {
        Ok(self.db.lock().flags(filter)?)
    }

    fn flag(&self, id: i64) -> Result<Option<FlagDetail>> {
        Ok(self.db.lock().flag(id)?)
    }

    fn flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let samples = {
            let db = self.db.lock();
            if db.flag(id)?.is_none() {
                return Ok(None);
            }
            db.flag_samples(id)?
        };
        let mut out = Vec::new();
        warden_store::pcap::write_pcap(&mut out, &samples).context("writing pcap")?;
        Ok(Some(out))
    }

    fn set_flag_state(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag, Refusal> {
        let r = self.db.lock().set_flag_state(id, state, reason, actor);
        if let Ok(flag) = &r {
            self.review.flag_event(
                &self.db,
                &self.policy(),
                flag,
                Event::of_state(state),
                actor,
                flag.state_reason.as_deref(),
            );
        }
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

    fn management_contains(&self, ip: IpAddr) -> bool {
        let policy = self.policy();
        policy.daemon.management.iter().any(|net| net.contains(&ip))
    }
}

/// The reload task: re-reads and applies the policy file on every SIGHUP.
pub(super) async fn reload_on_hangup(daemon: Arc<Daemon>, mut hup: Signal) {
    while hup.recv().await.is_some() {
        let d = daemon.clone();
        let r = tokio::task::spawn_blocking(move || d.reload("SIGHUP")).await;
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
