//! The controller as the API's [`Backend`]: every request an etcd read or transaction.
//! The API calls a backend off its async workers, so each call blocks on the fleet's
//! async client through the runtime's handle.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use warden_fleet::{Fleet, FleetError, PolicySnapshot};
use warden_policy::flag::{Flag, FlagDetail, FlagFilter, FlagState};
use warden_policy::fragments::fragments;
use warden_policy::suspension::{classify, Suspended, Suspension};
use warden_policy::time::system_clock;
use warden_policy::{DaemonConfig, Policy};
use warden_store::AuditEntry;

use crate::api::{Backend, Refusal};
use crate::auth::Role;
use crate::metrics::fleet::FleetFigures;
use crate::metrics::Snapshot;
use crate::views::{DirectionView, NodeView, PolicySource, PolicyView, StatusView, TenantView};

/// The fleet's API: see the module documentation.
pub struct Controller {
    fleet: Fleet,
    daemon: DaemonConfig,
    path: PathBuf,
    rt: tokio::runtime::Handle,
    started: Instant,
}

impl Controller {
    pub fn new(
        fleet: Fleet,
        daemon: DaemonConfig,
        path: PathBuf,
        rt: tokio::runtime::Handle,
    ) -> Self {
        Controller {
            fleet,
            daemon,
            path,
            rt,
            started: Instant::now(),
        }
    }

    pub(super) fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    pub(super) fn wait<T>(
        &self,
        f: impl Future<Output = Result<T, FleetError>>,
    ) -> Result<T, FleetError> {
        self.rt.block_on(f)
    }

    /// The fleet's policy, parsed (as a node parses it, without its own sections).
    fn policy(&self) -> Result<(PolicySnapshot, Policy), Refusal> {
        let snapshot = self.wait(self.fleet.read_policy()).map_err(refusal)?;
        let policy = warden_policy::parse(&snapshot.document(""), "fleet policy").map_err(|d| {
            Refusal::Internal(anyhow!("the fleet's policy in etcd does not parse:\n{d}"))
        })?;
        Ok((snapshot, policy))
    }

    fn suspended(&self) -> Result<BTreeMap<String, Suspended>, Refusal> {
        Ok(self
            .wait(self.fleet.suspensions())
            .map_err(refusal)?
            .1
            .tenants)
    }
}

/// How a fleet error reaches the API: a lost race is 409, etcd unreachable 503.
pub(super) fn refusal(e: FleetError) -> Refusal {
    match e {
        FleetError::Conflict { .. } | FleetError::Refused(_) => Refusal::Conflict(e.to_string()),
        FleetError::NotFound(_) => Refusal::NotFound(e.to_string()),
        FleetError::InvalidName { .. } | FleetError::TooLarge(_) => {
            Refusal::BadRequest(e.to_string())
        }
        FleetError::Unavailable { .. } => Refusal::Unavailable(e.to_string()),
        other => Refusal::Internal(anyhow::Error::new(other)),
    }
}

fn suspension_view(s: &Suspended) -> Suspension {
    Suspension {
        id: i64::try_from(s.seq).unwrap_or(i64::MAX),
        tenant: s.tenant.clone(),
        reason: s.reason.clone(),
        actor: s.actor.clone(),
        since: s.since,
        lifted_at: None,
        lifted_by: None,
        lift_reason: None,
        addresses: s.addresses.clone(),
        seq: Some(s.seq),
        lifted_seq: None,
    }
}

fn tenant_view(index: usize, t: &warden_policy::Tenant, s: Option<&Suspended>) -> TenantView {
    let plan = |bps: Option<u64>| DirectionView {
        plan_bps: bps,
        ..DirectionView::default()
    };
    TenantView {
        id: t.id.clone(),
        index: u32::try_from(index).unwrap_or(u32::MAX),
        addresses: t.addresses.clone(),
        state: if s.is_some() { "suspended" } else { "active" }.into(),
        suspension: s.map(suspension_view),
        why_suspended: s.map(|_| "suspended".to_owned()),
        out: plan(t.settings.bandwidth.egress),
        in_: plan(t.settings.bandwidth.ingress),
    }
}

impl Backend for Controller {
    fn snapshot(&self) -> Result<Snapshot> {
        let snapshot = self.wait(self.fleet.read_policy());
        Ok(Snapshot {
            policy_generation: snapshot.as_ref().map_or(0, |s| s.generation_number()),
            fleet: Some(FleetFigures {
                connected: snapshot.is_ok(),
                seconds_since_sync: snapshot.is_ok().then_some(0.0),
                generation: snapshot.map_or(0, |s| s.generation_number()),
                ..FleetFigures::default()
            }),
            ..Snapshot::default()
        })
    }

    fn status(&self) -> StatusView {
        let read = self.policy().ok();
        let suspended = self.suspended().map_or(0, |s| s.len());
        StatusView {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_seconds: self.started.elapsed().as_secs(),
            policy_file: self.path.clone(),
            policy_generation: read.as_ref().map_or(0, |(s, _)| s.generation_number()),
            policy_applied_at: read
                .as_ref()
                .and_then(|(s, _)| s.generation.as_ref())
                .map_or(0, |g| u64::try_from(g.at).unwrap_or(0)),
            kernel_generation: 0,
            tenants: read.as_ref().map_or(0, |(_, p)| p.tenants.len()),
            suspended,
            bpffs: PathBuf::new(),
            attachments: Vec::new(),
            interfaces: Vec::new(),
            maps: Vec::new(),
            detection: Default::default(),
            review: Default::default(),
            policy_revision: read.as_ref().map(|(s, _)| s.generation_revision),
            policy_source: read.as_ref().map(|(s, _)| PolicySource::Fleet {
                by: s.generation.as_ref().map(|g| g.actor.clone()),
                at: s.generation.as_ref().map(|g| g.at),
                generation: s.generation.as_ref().map(|g| g.generation),
            }),
            shaping: Default::default(),
        }
    }

    /// The fleet's `defaults` and `tenants` (a controller has no `daemon` or
    /// `interfaces`: each node's own file holds them).
    fn policy_view(&self, effective: bool) -> Result<PolicyView, Refusal> {
        let (snapshot, policy) = self.policy()?;
        let record = snapshot.generation.as_ref();
        let source = PolicySource::Fleet {
            by: record.map(|g| g.actor.clone()),
            at: record.map(|g| g.at),
            generation: record.map(|g| g.generation),
        };
        let applied_at = record.map_or(0, |g| u64::try_from(g.at).unwrap_or(0));
        Ok(PolicyView::of(
            &policy,
            effective,
            snapshot.generation_number(),
            applied_at,
            source,
            true,
        ))
    }

    fn tenants(&self) -> Result<Vec<TenantView>> {
        let (_, policy) = self.policy().map_err(|e| anyhow!("{e}"))?;
        let suspended = self.suspended().map_err(|e| anyhow!("{e}"))?;
        Ok(policy
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| tenant_view(i, t, suspended.get(&t.id)))
            .collect())
    }

    fn tenant(&self, id: &str) -> Result<Option<TenantView>> {
        Ok(self.tenants()?.into_iter().find(|t| t.id == id))
    }

    fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        if reason.trim().is_empty() {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        let (_, policy) = self.policy()?;
        let Some(t) = policy.tenant(tenant) else {
            return Err(Refusal::UnknownTenant(tenant.to_owned()));
        };
        let addresses = t.addresses.iter().map(ipnet::IpNet::trunc).collect();
        let s = self
            .wait(
                self.fleet
                    .suspend(tenant, addresses, reason, actor, system_clock()),
            )
            .map_err(refusal)?;
        tracing::info!(%tenant, %actor, seq = s.seq, "tenant suspended in the fleet");
        Ok(suspension_view(&s))
    }

    fn unsuspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal> {
        if reason.trim().is_empty() {
            return Err(Refusal::BadRequest("a reason is required".into()));
        }
        let now = system_clock();
        let lifted = match self.wait(self.fleet.unsuspend(tenant, reason, actor, now)) {
            Err(FleetError::NotFound(_)) => {
                return Err(Refusal::Conflict(format!(
                    "tenant {tenant:?} is not suspended"
                )))
            }
            other => other.map_err(refusal)?,
        };
        tracing::info!(%tenant, %actor, "suspension lifted in the fleet");
        Ok(Suspension {
            lifted_at: Some(now),
            lifted_by: Some(actor.to_owned()),
            lift_reason: Some(reason.to_owned()),
            ..suspension_view(&lifted)
        })
    }

    fn apply_text(&self, text: &[u8], name: &str, actor: &str, role: Role) -> Result<u64, Refusal> {
        Ok(self.apply_text_based(text, name, actor, role, None)?.0)
    }

    fn apply_text_based(
        &self,
        text: &[u8],
        name: &str,
        actor: &str,
        role: Role,
        base: Option<i64>,
    ) -> Result<(u64, Option<i64>), Refusal> {
        let text = std::str::from_utf8(text)
            .map_err(|_| Refusal::BadRequest("the policy is not UTF-8 text".into()))?;
        let (new, parts) = fragments(text, name).map_err(Refusal::InvalidPolicy)?;
        if !new.interfaces.is_empty() || new.daemon != DaemonConfig::default() {
            return Err(Refusal::BadRequest(
                "a fleet policy has `defaults` and `tenants` only: `daemon` and `interfaces` \
                 are each node's own file"
                    .into(),
            ));
        }
        let (snapshot, old) = self.policy()?;
        let exposures = classify(&old, &new, &self.suspended()?);
        if !exposures.is_empty() && role < Role::Admin {
            let rules: Vec<String> = exposures.iter().map(ToString::to_string).collect();
            return Err(Refusal::Forbidden(
                format!(
                    "policy refused: it would expose a suspended tenant (rule {}); only the admin \
                     role may apply it",
                    exposures[0].rule
                ),
                rules,
            ));
        }
        // The caller's base if it gave one, else the revision read here: either way the
        // write commits only if nobody wrote the policy since.
        let base = Some(base.unwrap_or(snapshot.generation_revision));
        let applied = self
            .wait(self.fleet.apply_policy(&parts, base, actor, system_clock()))
            .map_err(refusal)?;
        tracing::info!(generation = applied.generation, changed = applied.changed, removed = applied.removed, %actor, "fleet policy applied");
        Ok((applied.generation, Some(applied.revision)))
    }

    fn audit(&self, since: Option<i64>, limit: usize) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let entries = self.wait(self.fleet.audit(limit))?;
        Ok(entries
            .into_iter()
            .rev()
            .enumerate()
            .filter(|(_, e)| since.is_none_or(|s| e.at >= s))
            .map(|(i, e)| AuditEntry {
                id: i64::try_from(i).unwrap_or(i64::MAX),
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                detail: e.detail,
            })
            .collect())
    }

    fn flags(&self, filter: &FlagFilter) -> Result<Vec<Flag>> {
        self.fleet_flags(filter)
    }

    fn flag(&self, id: i64) -> Result<Option<FlagDetail>> {
        self.fleet_flag(id)
    }

    fn flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>, Refusal> {
        self.fleet_flag_pcap(id)
    }

    fn set_flag_state(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag, Refusal> {
        self.fleet_review(id, state, reason, actor)
    }

    fn management_contains(&self, ip: IpAddr) -> bool {
        self.daemon.management.iter().any(|n| n.contains(&ip))
    }

    fn nodes(&self) -> Result<Option<Vec<NodeView>>, Refusal> {
        let nodes = self.wait(self.fleet.nodes()).map_err(refusal)?;
        let generation = self
            .wait(self.fleet.read_policy())
            .map_err(refusal)?
            .generation_number();
        let now = system_clock();
        Ok(Some(
            nodes
                .into_iter()
                .map(|n| NodeView {
                    lag: generation.saturating_sub(n.applied_generation),
                    heartbeat_age_seconds: now.saturating_sub(n.heartbeat).max(0),
                    node: n.node,
                    version: n.version,
                    started_at: n.started_at,
                    applied_generation: n.applied_generation,
                    applied_revision: n.applied_revision,
                    attached: n.attached,
                    interfaces: n.interfaces,
                })
                .collect(),
        ))
    }
}
