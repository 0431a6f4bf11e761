//! Suspending and lifting: the daemon's one copy of the suspensions and their durable
//! copies (the state database, the kernel's suspension record, the events log), kept in
//! step at one suspension sequence number.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use warden_policy::suspension::{self, Suspended, Suspension, SuspensionState};
use warden_policy::time::{rfc3339, system_clock};
use warden_store::NewSuspension;

use super::super::review::Review;
use super::super::Database;
use super::Enforcement;
use crate::api::Refusal;

impl Enforcement {
    /// Writes the policy in force again with the suspensions `suspended` (no copy of the
    /// policy: 100,000 tenants are tens of MiB), and takes the slots and holds that
    /// follow (a suspended id absent from the policy keeps a slot until it is lifted).
    fn rewrite_suspensions(
        &mut self,
        db: &Database,
        suspended: &BTreeMap<String, Suspended>,
    ) -> Result<()> {
        let policy = self.policy.clone();
        let (index, holds, changes) = self.write(&policy, suspended)?;
        if let Some(index) = index {
            if let Err(e) = super::save_index(db, &index, &changes) {
                tracing::error!(error = %format!("{e:#}"), "saving tenant indexes after a suspension change");
            }
            self.index = index;
        }
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
    pub(in crate::daemon) fn sync_record(&mut self) -> Result<()> {
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

    /// Puts the kernel's record back after a suspension that was not recorded.
    fn undo_record(&mut self, seq: u64, suspended: &BTreeMap<String, Suspended>, tenant: &str) {
        if let Err(e) = self.write_record(seq, suspended) {
            tracing::error!(error = %format!("{e:#}"), %tenant, "could not put the kernel's suspension record back; the next start will refuse until `warden state restore` records the suspension");
        }
    }

    /// Suspends a tenant at the next suspension sequence number: the kernel's record,
    /// then the kernel's flags, then the store (recorded and audited), then the events
    /// log. If a kernel write or the store fails, what was written is put back, so no
    /// suspension is enforced unaudited; a crash in between leaves the kernel ahead of
    /// the store, which the next start refuses to overlook (the restore records it).
    pub(in crate::daemon) fn suspend(
        &mut self,
        db: &Database,
        review: &Review,
        tenant: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Suspension, Refusal> {
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
        if let Err(e) = self.rewrite_suspensions(db, &after) {
            self.undo_record(old_seq, &before, tenant);
            return Err(e.into());
        }
        let recorded = db.lock().suspend_with(NewSuspension {
            tenant,
            reason,
            actor,
            addresses: &addresses,
            seq: Some(seq),
        });
        match recorded {
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
                review.log_suspension(&line, suspension::events::SUSPENDED, tenant);
                tracing::warn!(%tenant, %actor, %reason, seq, "tenant suspended");
                Ok(s)
            }
            Err(e) => {
                if let Err(undo) = self.rewrite_suspensions(db, &before) {
                    tracing::error!(error = %format!("{undo:#}"), %tenant, "could not lift an unrecorded suspension");
                }
                self.undo_record(old_seq, &before, tenant);
                Err(Refusal::Internal(
                    anyhow::Error::new(e).context("recording the suspension"),
                ))
            }
        }
    }

    /// Lifts a suspension at the next suspension sequence number: recorded and audited
    /// first (and written to the events log), then the kernel's record, then the flags. A
    /// crash in between leaves the store ahead, which wins at the next start. A suspended
    /// tenant no longer in the policy can be lifted too (its held addresses are released).
    pub(in crate::daemon) fn unsuspend(
        &mut self,
        db: &Database,
        review: &Review,
        tenant: &str,
        reason: &str,
        actor: &str,
    ) -> Result<Suspension, Refusal> {
        if reason.trim().is_empty() {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        let Some(current) = self.suspensions.get(tenant).cloned() else {
            if self.policy.tenant(tenant).is_none() {
                return Err(Refusal::UnknownTenant(tenant.to_string()));
            }
            return Err(Refusal::Conflict(format!(
                "tenant {tenant:?} is not suspended"
            )));
        };
        let seq = self.suspension_seq + 1;
        let s = db
            .lock()
            .unsuspend_with(tenant, reason, actor, Some(seq))
            .context("recording the lift")?;
        self.suspensions.remove(tenant);
        self.suspension_seq = seq;
        let line = suspension::events::unsuspended_line(
            &current.suspended(),
            actor,
            reason,
            s.lifted_at.unwrap_or_else(system_clock),
            seq,
        );
        review.log_suspension(&line, suspension::events::UNSUSPENDED, tenant);
        let suspended = self.suspended();
        if let Err(e) = self.write_record(seq, &suspended) {
            tracing::error!(error = %format!("{e:#}"), %tenant, "the kernel's suspension record still holds the lifted suspension; the state database is ahead and wins at the next start");
        }
        self.rewrite_suspensions(db, &suspended)?;
        tracing::warn!(%tenant, %actor, %reason, seq, "suspension lifted");
        Ok(s)
    }
}
