//! What the API asks of the daemon. The server knows only this trait: the daemon
//! implements it (`crate::daemon`) and hands itself to [`super::serve`], so the API
//! depends on no part of the daemon and the daemon on nothing but this of the API.

use std::net::IpAddr;

use warden_policy::flag::{Flag, FlagDetail, FlagFilter, FlagState, FlagSummary};
use warden_policy::suspension::Suspension;
use warden_store::AuditEntry;

use crate::auth::Role;
use crate::metrics::Snapshot;
use crate::views::{HistoryView, NodeView, PolicyView, StatusView, TenantView};

/// Why a request to the daemon failed, for the API to map onto a status.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("no tenant {0:?}")]
    UnknownTenant(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid policy ({} errors)", .0.len())]
    InvalidPolicy(warden_policy::Diagnostics),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// The caller's role may not do this (a policy exposing suspended tenants): the
    /// message, and each rule broken.
    #[error("{0}")]
    Forbidden(String, Vec<String>),
    /// What the request needs is unreachable (a controller's etcd): 503.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The daemon as the API sees it. Every call may block (map syscalls, SQLite): the
/// handlers make them off the async workers.
pub trait Backend: Send + Sync + 'static {
    /// Counters and map fill for `/metrics`.
    fn snapshot(&self) -> anyhow::Result<Snapshot>;
    /// `GET /api/v1/status`.
    fn status(&self) -> StatusView;
    /// Every tenant, then the suspended tenants absent from the policy.
    fn tenants(&self) -> anyhow::Result<Vec<TenantView>>;
    /// One tenant, or `None` when no tenant has that id.
    fn tenant(&self, id: &str) -> anyhow::Result<Option<TenantView>>;
    /// Tenant `id`'s traffic history with `since <= at < until`. Only a daemon keeps
    /// one (a controller's nodes each keep their own).
    fn tenant_history(&self, id: &str, since: i64, until: i64) -> Result<HistoryView, Refusal> {
        let _ = (since, until);
        Err(Refusal::NotFound(format!(
            "no traffic history here: each node keeps its own; ask the node's API for \
             GET /api/v1/tenants/{id}/history"
        )))
    }
    /// Suspends a tenant, audited under `actor`.
    fn suspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal>;
    /// Lifts a tenant's suspension, audited under `actor`.
    fn unsuspend(&self, tenant: &str, reason: &str, actor: &str) -> Result<Suspension, Refusal>;
    /// Validates policy text and applies it as `actor` with `role`; the new generation.
    fn apply_text(&self, text: &[u8], name: &str, actor: &str, role: Role) -> Result<u64, Refusal>;
    /// [`Backend::apply_text`] based on `base`, the revision the caller's change is
    /// based on (`If-Match`): a fleet controller refuses it (409) when the fleet's policy
    /// moved since. The new generation, and the revision it was written at where there
    /// is one. A node has no revision: `base` is refused there (400).
    fn apply_text_based(
        &self,
        text: &[u8],
        name: &str,
        actor: &str,
        role: Role,
        base: Option<i64>,
    ) -> Result<(u64, Option<i64>), Refusal> {
        if base.is_some() {
            return Err(Refusal::BadRequest(
                "If-Match: this daemon has no fleet revision (send it to `warden controller`)"
                    .into(),
            ));
        }
        Ok((self.apply_text(text, name, actor, role)?, None))
    }
    /// `GET /api/v1/policy`: the policy in force, as applied or (`effective`) with
    /// `defaults` merged into every tenant.
    fn policy_view(&self, effective: bool) -> Result<PolicyView, Refusal>;
    /// `PUT /api/v1/policy?from_file=true`: drops a policy applied over the API and
    /// applies the daemon's own `-c` file again, as `actor` with `role`; the new
    /// generation. Only a daemon has such a file.
    fn apply_from_file(&self, actor: &str, role: Role) -> Result<u64, Refusal> {
        let _ = (actor, role);
        Err(Refusal::BadRequest(
            "from_file: this server has no policy file of its own to go back to (a fleet's \
             policy is applied with `warden policy apply FILE`)"
                .into(),
        ))
    }
    /// Audit entries, newest first.
    fn audit(&self, since: Option<i64>, limit: usize) -> anyhow::Result<Vec<AuditEntry>>;
    /// Flags `filter` matches, most recently seen first.
    fn flags(&self, filter: &FlagFilter) -> anyhow::Result<Vec<Flag>>;
    /// Counts per state of the flags `filter` matches (its state aside), and the newest
    /// flag id. By default counted from [`Backend::flags`]; a store counts in place.
    fn flag_summary(&self, filter: &FlagFilter) -> anyhow::Result<FlagSummary> {
        let all = self.flags(&FlagFilter {
            state: None,
            limit: None,
            offset: None,
            ..filter.clone()
        })?;
        let mut counts: std::collections::BTreeMap<String, u64> = FlagState::ALL
            .iter()
            .map(|s| (s.as_str().to_owned(), 0))
            .collect();
        for f in &all {
            *counts.entry(f.state.as_str().to_owned()).or_default() += 1;
        }
        let total = match filter.state {
            Some(s) => counts.get(s.as_str()).copied().unwrap_or(0),
            None => all.len() as u64,
        };
        let latest_id = self
            .flags(&FlagFilter::default())?
            .iter()
            .map(|f| f.id)
            .max();
        Ok(FlagSummary {
            counts,
            total,
            latest_id,
        })
    }
    /// Flag `id` with its actions and evidence counts, or `None`.
    fn flag(&self, id: i64) -> anyhow::Result<Option<FlagDetail>>;
    /// Flag `id`'s samples as a pcap file, or `None` when there is no such flag; a
    /// controller refuses (404) naming the node that keeps them and the node's own id.
    fn flag_pcap(&self, id: i64) -> Result<Option<Vec<u8>>, Refusal>;
    /// Moves flag `id` to `state` (a review by a person), audited under `actor`.
    fn set_flag_state(
        &self,
        id: i64,
        state: FlagState,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Flag, Refusal>;
    /// Whether a connection from `ip` may use the operators' reserve: the
    /// `daemon.management` networks in force (loopback always may).
    fn management_contains(&self, ip: IpAddr) -> bool;
    /// `GET /api/v1/nodes`: the fleet's nodes; `None` where there is no fleet (a node).
    fn nodes(&self) -> Result<Option<Vec<NodeView>>, Refusal> {
        Ok(None)
    }
}
