//! What the API and SIGHUP ask of the daemon: the [`Backend`] the API serves from, and
//! the policy reload. Each request takes the owners it needs in the daemon's lock order.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::signal::unix::Signal;
use warden_policy::flag::{Flag, FlagDetail, FlagFilter, FlagState, FlagSummary};
use warden_policy::suspension::Suspension;
use warden_policy::{self as policy, Policy};
use warden_store::{AuditEntry, FlagError, StoreError};

use super::review::Event;
use super::start::compacted;
use super::Daemon;
use crate::api::{Backend, Refusal};
use crate::auth::Role;
use crate::metrics::{self, TopK};
use crate::views::{
    HistoryPointView, HistoryView, PolicySource, PolicyView, StatusView, TenantView,
};

/// What an apply does with the kept copy of an API apply ([`super::kept`]).
pub(super) enum Keep<'a> {
    /// Nothing: the origin stays (a fleet apply).
    Unchanged,
    /// Keep this document, sent under `name`, as the policy in force.
    Api { text: &'a str, name: &'a str },
    /// Drop the kept copy: the `-c` file, whose bytes hash to `digest`, is in force.
    File { digest: [u8; 32] },
}

/// What a SIGHUP did.
pub(super) enum Reloaded {
    /// The file applied, at this generation.
    Applied(u64),
    /// The file is as it was and an API apply is in force: nothing to do.
    Unchanged(String),
}

impl Daemon {
    /// Re-reads the policy file and applies it; on any error the old policy stays. Whoever
    /// can signal the daemon is root on the box: the reload counts as an admin's, and a
    /// policy exposing suspended tenants is applied with the same audit entry. While a
    /// policy applied over the API is kept, the file is not applied: unchanged, nothing
    /// happens; changed, the reload is refused (`warden policy apply --from-file` goes
    /// back to it).
    fn reload(&self, actor: &str) -> Result<Reloaded, Refusal> {
        if self.fleet.is_some() {
            return self.reload_fleet().map(Reloaded::Applied);
        }
        let r = self.read_file().and_then(|(bytes, digest)| {
            if let Some(note) = self.kept_in_force(&digest)? {
                return Ok(Reloaded::Unchanged(note));
            }
            let policy =
                policy::parse_bytes(&bytes, &self.file_name()).map_err(Refusal::InvalidPolicy)?;
            drop(bytes);
            self.apply_keeping(compacted(policy), actor, Role::Admin, Keep::File { digest })
                .map(Reloaded::Applied)
        });
        crate::memory::release_freed();
        match r {
            Ok(Reloaded::Applied(g)) => Ok(Reloaded::Applied(g)),
            Ok(unchanged) => Ok(unchanged),
            Err(e) => self.count_failure(Err(e)).map(Reloaded::Applied),
        }
    }

    fn file_name(&self) -> String {
        self.policy_path.display().to_string()
    }

    /// The `-c` file's bytes and their digest.
    fn read_file(&self) -> Result<(Vec<u8>, [u8; 32]), Refusal> {
        let bytes = policy::read_bytes(&self.policy_path).map_err(Refusal::InvalidPolicy)?;
        let digest = super::kept::digest(&bytes);
        Ok((bytes, digest))
    }

    /// With an API apply kept: `Some` note when the file is unchanged since it was last
    /// read, a refusal naming both when it changed. `None` when the file is in force.
    fn kept_in_force(&self, digest: &[u8; 32]) -> Result<Option<String>, Refusal> {
        let origin = self.lock_origin();
        let Some(kept) = &origin.kept else {
            return Ok(None);
        };
        let applied = kept.source();
        if origin.file_digest == *digest {
            return Ok(Some(format!(
                "{} is unchanged; the policy applied over the API ({applied}) stays in force",
                self.file_name()
            )));
        }
        Err(Refusal::Conflict(format!(
            "{} changed, but the policy in force was applied over the API ({applied}) and is \
             kept in {}: it stays; `warden policy apply --from-file` applies the file instead",
            self.file_name(),
            super::kept::path(&self.policy().daemon.state_dir).display()
        )))
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
        self.apply_keeping(policy, actor, role, Keep::Unchanged)
    }

    /// [`Daemon::apply`], keeping or dropping the API's copy as `keep` says: a copy to
    /// keep is written (fsynced) before the kernel is touched and put in place after, so
    /// an apply that cannot be kept is not made.
    pub(super) fn apply_keeping(
        &self,
        policy: Policy,
        actor: &str,
        role: Role,
        keep: Keep<'_>,
    ) -> Result<u64, Refusal> {
        let started = std::time::Instant::now();
        let mut pipeline = self.detection.lock();
        let mut enforcement = self.lock_enforcement();
        let accepted = enforcement.accept(policy, actor, role)?;
        let accept_ms = started.elapsed().as_millis() as u64;
        let state_dir = enforcement.policy().daemon.state_dir.clone();
        let mut pending = None;
        if let Keep::Api { text, name } = &keep {
            let kept = super::kept::Kept {
                generation: enforcement.generation() + 1,
                by: actor.to_owned(),
                at: warden_policy::time::system_clock(),
                name: (*name).to_owned(),
            };
            let written = super::kept::prepare(&state_dir, &kept, text).map_err(|e| {
                Refusal::Internal(e.context("the policy was not applied: it could not be kept"))
            })?;
            pending = Some((written, kept));
        }
        let applying = std::time::Instant::now();
        let generation =
            enforcement.apply(&self.db, accepted, actor, |id| pipeline.detections_of(id))?;
        let apply_ms = applying.elapsed().as_millis() as u64;
        let configuring = std::time::Instant::now();
        self.publish(enforcement.policy());
        pipeline.configure(enforcement.policy(), |id| enforcement.slot(id), generation);
        drop(pipeline);
        tracing::info!(
            generation,
            accept_ms,
            apply_ms,
            write = ?enforcement.last_phases(),
            configure_ms = configuring.elapsed().as_millis() as u64,
            "policy apply phases"
        );
        let mut origin = self.lock_origin();
        match keep {
            Keep::Unchanged => {}
            Keep::Api { .. } => {
                if let Some((written, kept)) = pending {
                    written.commit().map_err(|e| {
                        Refusal::Internal(e.context(format!(
                            "policy generation {generation} is in force but could not be kept: \
                             a restart or SIGHUP would go back to the -c file"
                        )))
                    })?;
                    origin.kept = Some(kept);
                }
            }
            Keep::File { digest } => {
                origin.file_digest = digest;
                if let Some(dropped) = origin.kept.take() {
                    super::kept::remove(&state_dir).map_err(|e| {
                        Refusal::Internal(e.context(format!(
                            "the -c file is in force (generation {generation}), but the kept \
                             API apply could not be removed: a restart would enforce it again"
                        )))
                    })?;
                    self.audit_back_to_file(actor, generation, &dropped)?;
                }
            }
        }
        Ok(generation)
    }

    /// Records that the `-c` file replaced a kept API apply.
    fn audit_back_to_file(
        &self,
        actor: &str,
        generation: u64,
        dropped: &super::kept::Kept,
    ) -> Result<(), Refusal> {
        let detail = serde_json::json!({
            "generation": generation,
            "file": self.policy_path,
            "dropped": {
                "generation": dropped.generation,
                "by": dropped.by,
                "at": dropped.at,
                "name": dropped.name,
            },
        });
        self.db
            .lock()
            .record(actor, "policy.from_file", "policy", &detail)
            .context("auditing the return to the policy file")?;
        tracing::info!(generation, %actor, file = %self.policy_path.display(), dropped = %dropped.source(), "policy file in force again; the policy applied over the API was dropped");
        Ok(())
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
            shaping: Some(enforcement.shaping_figures()),
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
        let mut view = enforcement.status(
            self.started.elapsed().as_secs(),
            self.policy_path.clone(),
            detection,
            self.review.stats(&self.db),
        );
        view.policy_source = Some(self.source());
        view
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

    fn tenant_history(&self, id: &str, since: i64, until: i64) -> Result<HistoryView, Refusal> {
        if self.tenant(id)?.is_none() {
            return Err(Refusal::UnknownTenant(id.to_owned()));
        }
        let points = self
            .db
            .lock()
            .history(id, since, until)
            .map_err(anyhow::Error::from)?;
        Ok(HistoryView {
            tenant: id.to_owned(),
            step_seconds: warden_store::HISTORY_STEP,
            keep_seconds: warden_store::HISTORY_KEEP,
            tenants_per_step: warden_store::HISTORY_TENANTS_PER_STEP,
            left_out_since_start: self.history.left_out(),
            recording_since: self.history.recording_since(),
            since,
            until,
            points: points
                .iter()
                .map(|p| HistoryPointView::of(p, warden_store::HISTORY_STEP))
                .collect(),
        })
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
            .and_then(|policy| {
                // parse_bytes accepted it, so it is UTF-8.
                let text = String::from_utf8_lossy(text);
                let keep = Keep::Api { text: &text, name };
                self.apply_keeping(compacted(policy), actor, role, keep)
            });
        crate::memory::release_freed();
        self.count_failure(r)
    }

    /// Drops a kept API apply and applies the `-c` file (whatever it holds now).
    fn apply_from_file(&self, actor: &str, role: Role) -> Result<u64, Refusal> {
        self.not_in_fleet("the policy")?;
        let r = self.read_file().and_then(|(bytes, digest)| {
            let policy =
                policy::parse_bytes(&bytes, &self.file_name()).map_err(Refusal::InvalidPolicy)?;
            drop(bytes);
            self.apply_keeping(compacted(policy), actor, role, Keep::File { digest })
        });
        crate::memory::release_freed();
        self.count_failure(r)
    }

    fn policy_view(&self, effective: bool) -> Result<PolicyView, Refusal> {
        // One snapshot: the apply writes the policy, its generation and its origin under
        // the enforcement lock.
        let (policy, generation, applied_at, source) = {
            let enforcement = self.lock_enforcement();
            (
                enforcement.policy().clone(),
                enforcement.generation(),
                enforcement.applied_at_unix(),
                self.source(),
            )
        };
        Ok(PolicyView::of(
            &policy, effective, generation, applied_at, source, false,
        ))
    }

    fn audit(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(self.db.lock().audit(since, limit)?)
    }

    fn flags(&self, filter: &FlagFilter) -> Result<Vec<Flag>> {
        let filter = filter.for_store_of(self.own_node());
        let flags = self.db.lock().flags(&filter)?;
        Ok(flags.into_iter().map(|f| self.named(f)).collect())
    }

    fn flag_summary(&self, filter: &FlagFilter) -> Result<FlagSummary> {
        let filter = filter.for_store_of(self.own_node());
        Ok(self.db.lock().flag_summary(&filter)?)
    }

    fn flag(&self, id: i64) -> Result<Option<FlagDetail>> {
        let detail = self.db.lock().flag(id)?;
        Ok(detail.map(|d| FlagDetail {
            flag: self.named(d.flag),
            ..d
        }))
    }

    fn flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>, Refusal> {
        let samples = {
            let db = self.db.lock();
            if db.flag(id).map_err(anyhow::Error::from)?.is_none() {
                return Ok(None);
            }
            db.flag_samples(id).map_err(anyhow::Error::from)?
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
                Ok(self.named(flag))
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

impl Daemon {
    /// This daemon's fleet node name (`daemon.fleet.node`); `None` outside a fleet.
    fn own_node(&self) -> Option<&str> {
        self.fleet.as_ref().map(|n| n.config.node.as_str())
    }

    /// A flag of the store as the API shows it: with the node that raised it, this one.
    fn named(&self, flag: Flag) -> Flag {
        Flag {
            node: self.own_node().map(str::to_owned),
            ..flag
        }
    }

    /// Where the policy in force came from.
    fn source(&self) -> PolicySource {
        if self.fleet.is_some() {
            return PolicySource::Fleet {
                by: None,
                at: None,
                generation: None,
            };
        }
        match &self.lock_origin().kept {
            Some(kept) => kept.source(),
            None => PolicySource::File {
                path: self.policy_path.clone(),
            },
        }
    }
}

/// The reload task: re-reads and applies the policy file on every SIGHUP.
pub(super) async fn reload_on_hangup(daemon: Arc<Daemon>, mut hup: Signal) {
    while hup.recv().await.is_some() {
        let d = daemon.clone();
        let r = tokio::task::spawn_blocking(move || d.reload("SIGHUP")).await;
        match r {
            Ok(Ok(Reloaded::Applied(g))) => {
                tracing::info!(generation = g, "policy reloaded on SIGHUP")
            }
            Ok(Ok(Reloaded::Unchanged(note))) => tracing::info!("SIGHUP: {note}"),
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
