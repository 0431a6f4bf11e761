//! The enforcement owner: what the kernel enforces and why. It holds the policy in force
//! (and its generation), the dataplane that enforces it, the tenants' slots, and the
//! suspensions, once: the state database, the kernel's suspension record and the events
//! log are their durable copies, written through here ([`suspensions`]).
//!
//! Policy goes into the kernel in one step ([`Enforcement::write`]): suspensions above
//! the policy ([`warden_policy::suspension::holds`]), a slot for every tenant, the
//! compiled tables into the inactive generation, and the switch. On any error nothing
//! of the daemon's view changes and the kernel keeps enforcing the active generation.

mod reads;
mod suspensions;

pub(super) use reads::Rates;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use warden_dataplane::{self as dataplane, runtime::PolicyFill, Dataplane, TenantIndex};
use warden_policy::suspension::{self, Exposure, Holds, Suspended, Suspension};
use warden_policy::tenant::TenantSlot;
use warden_policy::{DaemonConfig, Policy};

use super::Database;
use crate::api::Refusal;
use crate::auth::Role;
use crate::metrics;

/// What the kernel enforces: the policy in force, the dataplane, the tenants' slots and
/// the suspensions. Behind one lock in the daemon: every operation is a handful of
/// syscalls.
pub(super) struct Enforcement {
    policy: Arc<Policy>,
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
    /// The active suspensions, by tenant: the daemon's one copy.
    suspensions: HashMap<String, Suspension>,
    /// The suspension sequence number of the last suspend or unsuspend (the store's, and
    /// the kernel record's once written).
    suspension_seq: u64,
    /// What the policy in force enforces as suspended, and why.
    holds: Holds,
    /// Counters of the tenants removed from the policy since start (metrics aggregates).
    retired: metrics::Totals,
    /// How long the phases of the last write took, ms (logged with the apply).
    last_phases: Vec<(&'static str, u64)>,
}

/// A policy accepted for an apply: what it exposes of the suspensions (audited) and the
/// tenants it removes, with their slots (their final counters go to the aggregates).
pub(super) struct Accepted {
    pub(super) policy: Policy,
    pub(super) exposures: Vec<Exposure>,
    pub(super) leaving: Vec<(String, TenantSlot)>,
}

impl Enforcement {
    /// Enforcement over `dataplane` with nothing applied yet: `policy` without tenants
    /// (the start writes the real one), the slots of `index`, and the `suspensions`
    /// recorded at sequence `suspension_seq`.
    pub(super) fn new(
        policy: &Policy,
        dataplane: Dataplane,
        index: TenantIndex,
        suspensions: HashMap<String, Suspension>,
        suspension_seq: u64,
    ) -> Enforcement {
        let mut nothing_yet = policy.clone();
        nothing_yet.tenants.clear();
        Enforcement {
            policy: Arc::new(nothing_yet),
            ids: Vec::new(),
            generation: 0,
            applied_at: SystemTime::now(),
            dataplane,
            index,
            fill: PolicyFill::default(),
            suspensions,
            suspension_seq,
            holds: Holds::default(),
            retired: metrics::Totals::default(),
            last_phases: Vec::new(),
        }
    }

    /// The policy in force.
    pub(super) fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// The policy generation in force (0 before the start applied one).
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// When the policy in force was applied (unix seconds).
    pub(super) fn applied_at_unix(&self) -> u64 {
        self.applied_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// Continues the generations of an earlier daemon: the next policy put in force is
    /// generation `last + 1` (a start that enforces a kept API apply again gives it the
    /// generation it had).
    pub(super) fn resume_generation(&mut self, last: u64) {
        self.generation = last;
    }

    pub(super) fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    pub(super) fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dataplane
    }

    /// How long the phases of the last policy write took, ms.
    pub(super) fn last_phases(&self) -> &[(&'static str, u64)] {
        &self.last_phases
    }

    /// The slot of tenant `id`.
    pub(super) fn slot(&self, id: &str) -> Option<TenantSlot> {
        self.index.get(id)
    }

    /// The active suspensions, by tenant.
    pub(super) fn suspensions(&self) -> &HashMap<String, Suspension> {
        &self.suspensions
    }

    /// The suspension sequence number in force.
    pub(super) fn suspension_seq(&self) -> u64 {
        self.suspension_seq
    }

    /// The active suspensions as the durable places keep them.
    pub(super) fn suspended(&self) -> BTreeMap<String, Suspended> {
        self.suspensions
            .iter()
            .map(|(t, s)| (t.clone(), s.suspended()))
            .collect()
    }

    /// Writes `policy` with the suspensions `suspended` into the kernel (see the module
    /// documentation) and returns the slots and holds that follow; the daemon's view is
    /// left as it was (the callers take them on success). Suspensions go above the
    /// policy: a tenant owning an address recorded with a suspension is suspended too,
    /// and a suspended id absent from the policy keeps its recorded addresses in an entry
    /// of its own.
    fn write(
        &mut self,
        policy: &Policy,
        suspended: &BTreeMap<String, Suspended>,
    ) -> Result<(Option<TenantIndex>, Holds, dataplane::IndexChanges)> {
        let mut t = std::time::Instant::now();
        let mut lap = |phase: &'static str, phases: &mut Vec<(&'static str, u64)>| {
            phases.push((phase, t.elapsed().as_millis() as u64));
            t = std::time::Instant::now();
        };
        let mut phases = Vec::new();
        let holds = suspension::holds(policy, suspended);
        let mut held: BTreeMap<String, Vec<IpNet>> = holds.extra.clone();
        for id in holds.retained() {
            held.entry(id.to_string()).or_default();
        }
        let wanted = || {
            policy
                .tenants
                .iter()
                .map(|t| t.id.as_str())
                .chain(holds.retained())
        };
        // The same tenants (a change of some tenants' settings): the index stays as it
        // is, not copied (its quarantined slots are released at the next sync instead).
        let same = wanted().count() == self.index.len()
            && wanted().all(|id| self.index.get(id).is_some())
            && {
                let ids: HashSet<&str> = wanted().collect();
                ids.len() == self.index.len()
            };
        let (next, changes) = if same {
            (None, dataplane::IndexChanges::default())
        } else {
            let mut index = self.index.clone();
            let changes = index.sync(wanted())?;
            (Some(index), changes)
        };
        let index = next.as_ref().unwrap_or(&self.index);
        lap("index", &mut phases);
        let mut compiled = dataplane::compile_with(policy, index, &holds.suspended_ids(), &held)?;
        let ifindexes = dataplane::bound_ifindexes(&policy.interfaces)
            .context("finding the interfaces bound to tenants")?;
        dataplane::bind_ports(&mut compiled, policy, index, &ifindexes)?;
        lap("compile", &mut phases);
        let added: Vec<TenantSlot> = changes.added.iter().map(|(_, slot)| *slot).collect();
        self.dataplane
            .reset_slots(&added)
            .context("zeroing new tenants' slots")?;
        // Classes before the switch that names them, removals after: no tenant is
        // unshaped in between.
        self.dataplane
            .shape(&mut compiled, &added)
            .context("setting up the shaping classes of egress plans")?;
        lap("shape", &mut phases);
        self.dataplane
            .apply(&compiled)
            .context("writing the policy into the kernel")?;
        lap("kernel", &mut phases);
        self.dataplane.finish_shaping();
        self.fill = PolicyFill::of(&compiled);
        drop(compiled);
        lap("finish", &mut phases);
        let kernel = self.dataplane.last_apply();
        tracing::debug!(
            ?phases,
            place_ms = kernel.place.as_millis() as u64,
            write_ms = kernel.write.as_millis() as u64,
            buckets = kernel.buckets_written,
            "policy written"
        );
        self.last_phases = phases;
        Ok((next, holds, changes))
    }

    /// Makes `policy` the policy in force: written into the kernel with the suspensions
    /// and their holds, its slots saved, its generation counted. Unaudited
    /// ([`Enforcement::audit_apply`]).
    pub(super) fn put_policy(&mut self, db: &Database, policy: Policy) -> Result<()> {
        let suspended = self.suspended();
        let (index, holds, changes) = self.write(&policy, &suspended)?;
        if let Some(index) = index {
            save_index(db, &index, &changes).context("saving tenant indexes")?;
            self.index = index;
        }
        self.holds = holds;
        self.ids = policy
            .tenants
            .iter()
            .map(|t| Arc::from(t.id.as_str()))
            .collect();
        self.policy = Arc::new(policy);
        self.generation += 1;
        self.applied_at = SystemTime::now();
        Ok(())
    }

    /// Checks that `policy` may replace the policy in force for `actor` with `role`:
    /// restart-only settings unchanged, and only an admin may expose a suspended tenant
    /// (its recorded addresses stay suspended either way: see
    /// [`warden_policy::suspension::holds`]).
    pub(super) fn accept(
        &self,
        policy: Policy,
        actor: &str,
        role: Role,
    ) -> Result<Accepted, Refusal> {
        // Management prefixes are enforced per generation like the rest; the listener,
        // paths, tokens and attachments are set up at start.
        let restart_only = |d: &DaemonConfig| DaemonConfig {
            management: Vec::new(),
            metrics_top_k: 0,
            ..d.clone()
        };
        if restart_only(&policy.daemon) != restart_only(&self.policy.daemon)
            || policy.interfaces != self.policy.interfaces
        {
            return Err(Refusal::BadRequest(
                "`interfaces` and `daemon` (except `management`, `metrics_top_k`) take effect at restart only; \
                 this policy changes them"
                    .into(),
            ));
        }
        let exposures = suspension::classify(&self.policy, &policy, &self.suspended());
        if !exposures.is_empty() && role < Role::Admin {
            let rules: Vec<String> = exposures.iter().map(ToString::to_string).collect();
            let first = &exposures[0];
            let exposed = first.tenant.clone().unwrap_or_else(|| {
                self.suspensions
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
        let leaving: Vec<(String, TenantSlot)> = self
            .policy
            .tenants
            .iter()
            .filter(|t| policy.tenant(&t.id).is_none())
            .filter_map(|t| self.index.get(&t.id).map(|i| (t.id.clone(), i)))
            .collect();
        Ok(Accepted {
            policy,
            exposures,
            leaving,
        })
    }

    /// Applies an accepted policy as `actor`, audited; then keeps the final counters of
    /// the tenants that left (and, from `detections_of`, their detection counts) in the
    /// metrics aggregates.
    pub(super) fn apply(
        &mut self,
        db: &Database,
        accepted: Accepted,
        actor: &str,
        detections_of: impl Fn(&str) -> [u64; warden_policy::Kind::ALL.len()],
    ) -> Result<u64> {
        let Accepted {
            policy,
            exposures,
            leaving,
        } = accepted;
        self.put_policy(db, policy)?;
        self.audit_apply(db, actor, &exposures)?;
        for (id, slot) in leaving {
            let counters = self.dataplane.tenant_counters(slot);
            let drops = self.dataplane.drop_counters(slot);
            match (counters, drops) {
                (Ok(c), Ok(d)) => self.retired.add_traffic(&c, &d),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(tenant = %id, error = %e, "reading a removed tenant's counters; the metrics aggregates lose them")
                }
            }
            self.retired.add_detections(&detections_of(&id));
        }
        Ok(self.generation)
    }

    /// Records the apply of the policy in force in the audit log.
    pub(super) fn audit_apply(
        &self,
        db: &Database,
        actor: &str,
        exposures: &[Exposure],
    ) -> Result<()> {
        let detail = serde_json::json!({
            "generation": self.generation,
            "tenants": self.policy.tenants.len(),
            "exposes": exposures,
        });
        db.lock()
            .record(actor, "policy.apply", "policy", &detail)
            .context("auditing the apply")?;
        if !exposures.is_empty() {
            let detail = serde_json::json!({
                "generation": self.generation,
                "exposures": exposures,
                "note": "applied by an admin (or SIGHUP); recorded suspended addresses stay suspended until unsuspended",
            });
            db.lock()
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
}

/// Saves the tenant index `index`, which `changes` made of the one in force: only the
/// changed rows, or (should the saved rows not be those in force, after a failed save)
/// every row.
pub(super) fn save_index(
    db: &Database,
    index: &TenantIndex,
    changes: &dataplane::IndexChanges,
) -> Result<()> {
    let added: Vec<(String, u32)> = changes
        .added
        .iter()
        .map(|(id, slot)| (id.clone(), slot.0))
        .collect();
    let removed: Vec<String> = changes.removed.iter().map(|(id, _)| id.clone()).collect();
    let db = db.lock();
    if let Err(e) = db.update_tenant_index(&added, &removed) {
        tracing::warn!(error = %e, "saving the tenant index's changes; saving it whole");
        db.save_tenant_index(&index.entries())?;
    }
    Ok(())
}
