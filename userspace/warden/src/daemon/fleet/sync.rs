//! The fleet task of a node: connect, read the policy and the suspensions at one
//! revision each, apply what differs from what is in force, register under a lease, then
//! watch both from the revision read and apply each change as it comes. Any failure
//! keeps what is in force, marks the node disconnected and tries again with backoff
//! (0.5 s doubling to 30 s); a watch whose revision etcd has compacted reads everything
//! again (counted).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use warden_fleet::keys::PolicyKey;
use warden_fleet::records::{decode, DecisionRecord, NodeRecord};
use warden_fleet::{Change, Fleet, FleetError, PolicySnapshot, Registration, Scope};
use warden_policy::suspension::Suspended;
use warden_policy::time::system_clock;
use warden_store::FleetState;

use super::{FleetNode, FleetUpdate, Resync};
use crate::daemon::Daemon;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The registration's lease; renewed every [`RENEW_EVERY`].
const LEASE_TTL: i64 = 10;
const RENEW_EVERY: Duration = Duration::from_secs(3);
/// How often new and changed flags are looked for and published.
const PUBLISH_EVERY: Duration = Duration::from_millis(500);

/// How a session with etcd ended.
enum Ended {
    /// The watch's start revision was compacted: read everything again.
    Compacted,
    /// A reload bound the interfaces to other tenants: read the new scope at once.
    Rescoped,
    /// Anything else: reconnect after a backoff.
    Failed(anyhow::Error),
}

/// Runs until the daemon stops (the task is aborted).
pub(in crate::daemon) async fn run(daemon: Arc<Daemon>) {
    let mut backoff = FIRST_BACKOFF;
    let mut why = Resync::Start;
    loop {
        let Some(node) = daemon.fleet.as_ref() else {
            return;
        };
        match session(&daemon, node, why).await {
            Ended::Compacted => {
                tracing::warn!(
                    "fleet watch revision compacted: reading the whole fleet state again"
                );
                why = Resync::Compacted;
                backoff = FIRST_BACKOFF;
            }
            Ended::Rescoped => {
                tracing::info!("fleet: the interfaces' tenants changed: reading the new scope");
                why = Resync::Scope;
                backoff = FIRST_BACKOFF;
            }
            Ended::Failed(e) => {
                node.set_connected(false);
                // A session that got as far as watching was a success: its failure is
                // retried after the shortest backoff, not after the one earlier
                // failures had grown.
                if node.connected_before_failure() {
                    backoff = FIRST_BACKOFF;
                }
                tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "fleet: etcd unreachable or session failed; enforcing the last applied state");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                why = Resync::Reconnect;
            }
        }
    }
}

impl FleetNode {
    /// Whether the session that just failed had got as far as watching (then the next
    /// attempt starts again from the shortest backoff).
    fn connected_before_failure(&self) -> bool {
        self.was_watching
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }
}

async fn session(daemon: &Arc<Daemon>, node: &FleetNode, why: Resync) -> Ended {
    match try_session(daemon, node, why).await {
        Ok(()) => Ended::Rescoped,
        Err(e)
            if matches!(
                e.downcast_ref::<FleetError>(),
                Some(FleetError::Compacted(_))
            ) =>
        {
            Ended::Compacted
        }
        Err(e) => Ended::Failed(e),
    }
}

/// The part of the fleet's policy this node's file asks for.
fn file_scope(daemon: &Daemon) -> Result<Scope> {
    Ok(super::scope_of(&super::local_text(&daemon.policy_path)?))
}

/// A session with etcd until it fails (`Err`) or a reload changes the node's scope
/// (`Ok`: read again at once).
async fn try_session(daemon: &Arc<Daemon>, node: &FleetNode, why: Resync) -> Result<()> {
    let scope = file_scope(daemon)?;
    // The first session's full read was started with the daemon: taken before this
    // session can fail, so a read that succeeded is never left held.
    let prefetched = match why {
        Resync::Start => node.take_prefetched(&scope).await,
        _ => None,
    };
    let fleet = Fleet::connect(&node.connect_options(), node.layout.clone()).await?;
    // After a lost connection: the policy as last watched, and the watch resumed from
    // its revision (a compacted one ends the session, and the next reads everything).
    let kept = match why {
        Resync::Reconnect => node.take_resume().filter(|s| *s.scope() == scope),
        _ => None,
    };
    let resumed = kept.is_some();
    let snapshot = match kept.or(prefetched) {
        Some(s) => s,
        None => fleet.read_policy_in(scope.clone()).await?,
    };
    let (susp_rev, suspensions) = fleet.suspensions().await?;
    if resumed {
        tracing::info!(scope = %describe(&scope), revision = snapshot.revision, "fleet: resuming from the revision last watched");
    } else {
        node.count_resync(why);
        tracing::info!(scope = %describe(&scope), tenants = snapshot.tenants.len(), "fleet: policy read");
    }
    // Refused (the node cannot take this policy): the next apply compares every tenant
    // again, not only those its events touched.
    let applied = apply_snapshot(daemon, &snapshot, None).await;
    node.forget_preparsed();
    let mut compare_all = !applied?;
    // The fleet's suspensions as this session knows them (of the node's scope): after
    // each policy apply they are enforced again, so a suspension that arrived before its
    // tenant's policy (the two are watched apart) is enforced once the tenant is.
    let mut wanted: BTreeMap<String, Suspended> = suspensions.tenants;
    wanted.retain(|tenant, _| scope.covers(tenant));
    resync_suspensions(daemon, &wanted).await?;
    node.set_connected(true);
    tracing::info!(
        generation = snapshot.generation_number(),
        revision = snapshot.revision,
        "fleet: in sync"
    );

    super::flags::publish(daemon, node, &fleet).await?;
    let (decisions_rev, decisions) = fleet.decisions(&node.config.node).await?;
    super::flags::apply_decisions(daemon, decisions).await?;
    let mut registration = register(daemon, node, &fleet).await?;
    let mut policy_watch = match fleet
        .watch(&node.layout.policy_dir(), snapshot.revision)
        .await
    {
        Ok(w) => w,
        Err(e) => {
            // Not compacted: the next session may resume from it still.
            if !matches!(e, FleetError::Compacted(_)) {
                node.keep_resume(snapshot);
            }
            return Err(e.into());
        }
    };
    let mut susp_watch = fleet.watch(&node.layout.suspended_dir(), susp_rev).await?;
    let decisions_dir = node.layout.node_decisions_dir(&node.config.node)?;
    let mut decision_watch = fleet.watch(&decisions_dir, decisions_rev).await?;
    let mut publish = tokio::time::interval(PUBLISH_EVERY);
    node.was_watching
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut watched = snapshot;
    // The tenants whose version in force may have changed since the last apply (those
    // staged above the committed generation stay until a generation settles them).
    let mut touched: BTreeSet<String> = BTreeSet::new();
    let mut renew = tokio::time::interval(RENEW_EVERY);
    let ended: Result<()> = async {
        loop {
            tokio::select! {
                changes = policy_watch.next() => {
                    if policy_events(node, &mut watched, &mut touched, &changes?)? {
                        let ids = (!compare_all).then_some(&touched);
                        if apply_snapshot(daemon, &watched, ids).await? {
                            touched.retain(|id| watched.is_pending(id));
                            compare_all = false;
                        }
                        resync_suspensions(daemon, &wanted).await?;
                        update_registration(daemon, node, &fleet, registration.lease).await?;
                    }
                    node.synced();
                }
                changes = susp_watch.next() => {
                    suspension_events(daemon, node, &scope, &mut wanted, changes?).await?;
                    node.synced();
                }
                () = node.reloaded.notified() => {
                    if file_scope(daemon)? != scope {
                        return Ok(());
                    }
                }
                changes = decision_watch.next() => {
                    let decisions = decisions_in(&decisions_dir, changes?)?;
                    super::flags::apply_decisions(daemon, decisions).await?;
                    super::flags::publish(daemon, node, &fleet).await?;
                }
                _ = publish.tick() => super::flags::publish(daemon, node, &fleet).await?,
                _ = renew.tick() => {
                    if registration.renew().await? == 0 {
                        registration = register(daemon, node, &fleet).await?;
                    } else {
                        // The heartbeat the controller shows (GET /api/v1/nodes).
                        update_registration(daemon, node, &fleet, registration.lease).await?;
                    }
                    node.synced();
                }
            }
        }
    }
    .await;
    // What this session watched, for the next to resume from: unless the watch's
    // revision was compacted (then it reads everything) or the scope changed.
    let compacted = ended.as_ref().is_err_and(|e| {
        matches!(
            e.downcast_ref::<FleetError>(),
            Some(FleetError::Compacted(_))
        )
    });
    if ended.is_err() && !compacted {
        node.keep_resume(watched);
    }
    ended
}

/// Takes policy changes into `watched`; true when a whole apply has arrived (its
/// generation event).
fn policy_events(
    node: &FleetNode,
    watched: &mut PolicySnapshot,
    touched: &mut BTreeSet<String>,
    changes: &[Change],
) -> Result<bool> {
    let mut ready = false;
    for c in changes {
        if let Some(PolicyKey::Tenant(id, _)) = node.layout.policy_key(&c.key) {
            if watched.scope().covers(id) && !touched.contains(id) {
                touched.insert(id.to_owned());
            }
        }
        ready |= watched.apply_event(&node.layout, &c.key, c.value.as_deref(), c.mod_revision)?;
    }
    Ok(ready)
}

/// The scope for logs: "all tenants" or the tenants' ids.
fn describe(scope: &Scope) -> String {
    match scope {
        Scope::All => "all tenants".to_owned(),
        Scope::Tenants(ids) => ids.iter().cloned().collect::<Vec<_>>().join(","),
    }
}

/// The decisions among `changes` (deletions are not decisions), by flag id.
fn decisions_in(dir: &str, changes: Vec<Change>) -> Result<Vec<(i64, DecisionRecord)>> {
    let mut out = Vec::new();
    for c in changes {
        let (Some(value), Some(id)) = (&c.value, c.key.strip_prefix(dir)) else {
            continue;
        };
        let id = id
            .parse::<i64>()
            .with_context(|| format!("{}: not a flag id", c.key))?;
        out.push((id, decode(&c.key, value)?));
    }
    Ok(out)
}

/// Enforces every suspension in `wanted` and lifts the fleet's others
/// ([`Daemon::sync_suspensions`]).
async fn resync_suspensions(
    daemon: &Arc<Daemon>,
    wanted: &BTreeMap<String, Suspended>,
) -> Result<()> {
    let wanted: Vec<Suspended> = wanted.values().cloned().collect();
    blocking(daemon, move |d| d.sync_suspensions(&wanted)).await
}

async fn suspension_events(
    daemon: &Arc<Daemon>,
    node: &FleetNode,
    scope: &Scope,
    wanted: &mut BTreeMap<String, Suspended>,
    changes: Vec<Change>,
) -> Result<()> {
    let dir = node.layout.suspended_dir();
    for c in changes {
        let Some(tenant) = node.layout.name_in(&dir, &c.key).map(str::to_owned) else {
            continue;
        };
        if !scope.covers(&tenant) {
            // Another server's tenant: nothing of it is enforced here.
            continue;
        }
        if let Some(value) = &c.value {
            let s: Suspended = decode(&c.key, value)?;
            wanted.insert(tenant, s.clone());
            blocking(daemon, move |d| {
                if let Some(node) = d.fleet.as_ref() {
                    d.fleet_suspend(node, &s);
                }
            })
            .await?;
        } else {
            wanted.remove(&tenant);
            blocking(daemon, move |d| {
                if let Some(node) = d.fleet.as_ref() {
                    d.fleet_unsuspend(node, &tenant);
                }
            })
            .await?;
        }
    }
    Ok(())
}

/// What `snapshot` changes of the fleet state in force: `touched` names the tenants
/// that may differ (`None`: any may, every tenant is compared).
pub(super) fn update_of(
    applied: &FleetState,
    snapshot: &PolicySnapshot,
    touched: Option<&BTreeSet<String>>,
) -> FleetUpdate {
    let mut tenants = Vec::new();
    match touched {
        Some(ids) => {
            for id in ids {
                let next = snapshot.tenants.get(id);
                if applied.tenants.get(id) != next {
                    tenants.push((id.clone(), next.cloned()));
                }
            }
        }
        None => {
            for (id, text) in &snapshot.tenants {
                if applied.tenants.get(id) != Some(text) {
                    tenants.push((id.clone(), Some(text.clone())));
                }
            }
            for id in applied.tenants.keys() {
                if !snapshot.tenants.contains_key(id) {
                    tenants.push((id.clone(), None));
                }
            }
        }
    }
    FleetUpdate {
        revision: snapshot.revision,
        generation: snapshot.generation_number(),
        defaults: snapshot.defaults.clone(),
        tenants,
    }
}

/// Applies what `snapshot` changes of the state in force (`touched`: see [`update_of`]),
/// if anything. False when the node refused it (what it changes is still to apply).
async fn apply_snapshot(
    daemon: &Arc<Daemon>,
    snapshot: &PolicySnapshot,
    touched: Option<&BTreeSet<String>>,
) -> Result<bool> {
    let Some(node) = daemon.fleet.as_ref() else {
        return Ok(true);
    };
    let (update, unchanged) = {
        let applied = node.applied();
        let update = update_of(&applied, snapshot, touched);
        let unchanged = update.tenants.is_empty() && applied.defaults == update.defaults;
        (update, unchanged)
    };
    if unchanged {
        // Nothing this node enforces changed (on a node scoped to its tenants: another
        // tenant's apply): the generation is taken without an apply.
        let (generation, revision) = (snapshot.generation_number(), snapshot.revision);
        blocking(daemon, move |d| {
            d.note_fleet_generation(generation, revision)
        })
        .await?;
        return Ok(true);
    }
    let actor = match &snapshot.generation {
        Some(g) => format!("fleet:{}", g.actor),
        None => "fleet".to_owned(),
    };
    let generation = update.generation;
    let r = blocking(daemon, move |d| d.apply_fleet(update, &actor)).await?;
    match r {
        Ok(local) => {
            tracing::info!(
                fleet_generation = generation,
                local_generation = local,
                "fleet policy applied"
            );
            Ok(true)
        }
        // A fleet policy this node cannot take (its interfaces, a kernel table full):
        // the previous one stays in force; the next apply is tried as it comes.
        Err(e) => {
            tracing::error!(fleet_generation = generation, error = %format!("{e:#}"), "fleet policy refused on this node; the previous one stays");
            Ok(false)
        }
    }
}

async fn register(daemon: &Arc<Daemon>, node: &FleetNode, fleet: &Fleet) -> Result<Registration> {
    let record = node_record(daemon, node);
    Ok(fleet.register(&record, LEASE_TTL).await?)
}

async fn update_registration(
    daemon: &Arc<Daemon>,
    node: &FleetNode,
    fleet: &Fleet,
    lease: i64,
) -> Result<()> {
    let record = node_record(daemon, node);
    Ok(fleet.update_registration(&record, lease).await?)
}

fn node_record(daemon: &Daemon, node: &FleetNode) -> NodeRecord {
    let applied = node.applied().clone();
    let enforcement = daemon.lock_enforcement();
    let attached = !enforcement.dataplane().attachments().is_empty();
    let interfaces = enforcement
        .policy()
        .interfaces
        .iter()
        .map(|i| format!("{}:{}", i.name, i.mode))
        .collect();
    NodeRecord {
        node: node.config.node.clone(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: daemon.started_at,
        heartbeat: system_clock(),
        applied_generation: applied.generation,
        applied_revision: applied.revision,
        attached,
        interfaces,
    }
}

/// Runs `f` on the blocking pool (kernel maps and SQLite block).
async fn blocking<T: Send + 'static>(
    daemon: &Arc<Daemon>,
    f: impl FnOnce(&Daemon) -> T + Send + 'static,
) -> Result<T> {
    let d = daemon.clone();
    tokio::task::spawn_blocking(move || f(&d))
        .await
        .context("fleet apply task")
}
