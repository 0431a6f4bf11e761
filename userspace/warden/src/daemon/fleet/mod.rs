//! Fleet mode on a node (docs/fleet-design.md): the policy's `defaults` and `tenants`
//! and the suspensions come from the fleet's etcd; the node's own file gives `daemon`
//! and `interfaces`. What the node last applied is kept in its state database and is
//! what it enforces from start until etcd answers, and whenever etcd is unreachable.
//!
//! - this module: the node's fleet state, the start policy, applying a fleet state
//!   through the daemon's ordinary apply (two generations, all or nothing);
//! - [`sync`]: the task that reads, watches and registers, with retry and backoff.

mod flags;
mod sync;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use warden_fleet::{Connect, Fleet, Layout, PolicySnapshot, Scope, TlsFiles};
use warden_policy::fragments::{assemble, bound_tenants_in, fleet_sections_in};
use warden_policy::suspension::Suspended;
use warden_policy::{self as policy, FleetConfig, Policy};
use warden_store::{FleetState, Store};

use super::{Daemon, Database};
use crate::api::Refusal;
use crate::auth::Role;
use crate::metrics::fleet::FleetFigures;

pub(super) use sync::run;

/// The actor a fleet suspension is lifted under when its lift is seen as a deletion.
const FLEET_ACTOR: &str = "fleet";

/// A fleet node's state beside the daemon's owners.
pub(super) struct FleetNode {
    pub(super) config: FleetConfig,
    pub(super) layout: Layout,
    /// The fleet state in force (as saved in the state database).
    applied: Mutex<FleetState>,
    /// The node's file as the policy in force was parsed with (`None`: not known, the
    /// next apply parses the whole document): with it and [`FleetNode::applied`] the
    /// policy in force is that document's, so a change of tenants alone is parsed alone.
    local: Mutex<Option<String>>,
    /// A save failed: the saved rows may differ from [`FleetNode::applied`], so the next
    /// save writes every tenant.
    save_whole: AtomicBool,
    /// Held through each [`Daemon::apply_fleet`]: an apply builds on the policy in force
    /// and the state applied, so a SIGHUP's and the session's applies take turns.
    applying: Mutex<()>,
    connected: AtomicBool,
    last_sync: Mutex<Option<Instant>>,
    /// Full reads by [`crate::metrics::fleet::RESYNC_REASONS`] index.
    resyncs: [AtomicU64; 4],
    /// Whether the current session got as far as watching (its failure then retries
    /// from the shortest backoff).
    was_watching: AtomicBool,
    /// The flag versions the fleet has.
    published: flags::Published,
    /// Told at each reload of the file: the session checks whether the tenants it is
    /// scoped to changed.
    reloaded: tokio::sync::Notify,
    /// The policy as the last session had watched it (as of its revision): a session
    /// after a lost connection resumes from it, watching from that revision, instead
    /// of reading the policy again; `None` after a start, a compaction, a rescoping,
    /// or a session that failed before it watched (the next one reads everything).
    resume: Mutex<Option<PolicySnapshot>>,
    /// The read of the node's part of the policy started during the daemon's start
    /// ([`FleetNode::prefetch`]), for the first session to take.
    prefetched: Mutex<Option<tokio::task::JoinHandle<Result<Prefetched>>>>,
    /// The prefetch's parse of the document its read makes (the text and the outcome),
    /// for the first apply of that document.
    preparsed: Mutex<Option<(String, Result<Policy, policy::Diagnostics>)>>,
}

/// What [`FleetNode::prefetch`] read, and its parse of the document that makes.
type Prefetched = (
    PolicySnapshot,
    Option<(String, Result<Policy, policy::Diagnostics>)>,
);

/// Why the node read everything again (index into the metric's reasons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Resync {
    Start = 0,
    Reconnect = 1,
    Compacted = 2,
    /// A reload changed the tenants the node's interfaces are bound to.
    Scope = 3,
}

impl FleetNode {
    pub(super) fn new(config: FleetConfig, applied: FleetState) -> Result<Self> {
        let layout = Layout::new(&config.prefix).context("daemon.fleet.prefix")?;
        Ok(FleetNode {
            config,
            layout,
            applied: Mutex::new(applied),
            local: Mutex::new(None),
            save_whole: AtomicBool::new(false),
            applying: Mutex::new(()),
            connected: AtomicBool::new(false),
            last_sync: Mutex::new(None),
            resyncs: Default::default(),
            was_watching: AtomicBool::new(false),
            published: flags::Published::default(),
            reloaded: tokio::sync::Notify::new(),
            resume: Mutex::new(None),
            prefetched: Mutex::new(None),
            preparsed: Mutex::new(None),
        })
    }

    /// Starts reading the node's part of the fleet's policy (the scope of the file
    /// `local`) while the rest of the start runs (loading and verifying the programs
    /// takes seconds): the first session takes this read instead of making its own.
    pub(super) fn prefetch(&self, local: &str) {
        let (connect, layout, scope) =
            (self.connect_options(), self.layout.clone(), scope_of(local));
        let (applied, local) = (self.applied().clone(), local.to_owned());
        let read = tokio::spawn(async move {
            let fleet = Fleet::connect(&connect, layout).await?;
            let snapshot = fleet.read_policy_in(scope).await?;
            // The whole document the first apply will parse, parsed meanwhile too.
            let update = sync::update_of(&applied, &snapshot, None);
            if update.tenants.is_empty() && update.defaults == applied.defaults {
                // Nothing to apply (a restart that kept up): nothing to parse.
                return Ok((snapshot, None));
            }
            let mut next = applied;
            update.apply_to(&mut next);
            let name = format!("fleet generation {}", update.generation);
            let parsed = tokio::task::spawn_blocking(move || {
                let text = document(&local, &next);
                let parsed = policy::parse(&text, &name);
                (text, parsed)
            })
            .await?;
            Ok((snapshot, Some(parsed)))
        });
        *self.prefetched.lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
    }

    /// Drops the prefetch's parse (some 100 MB at 100,000 tenants) once the first
    /// apply had its chance to take it.
    fn forget_preparsed(&self) {
        self.preparsed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    /// The parse [`FleetNode::prefetch`] made of `text`, if it was of that document.
    fn take_preparsed(&self, text: &str) -> Option<Result<Policy, policy::Diagnostics>> {
        let mut kept = self.preparsed.lock().unwrap_or_else(|p| p.into_inner());
        match kept.take() {
            Some((t, parsed)) if t == text => Some(parsed),
            _ => None,
        }
    }

    /// The read [`FleetNode::prefetch`] started, when it succeeded for `scope`; after
    /// a failure the session reads (and reports the error) itself.
    async fn take_prefetched(&self, scope: &Scope) -> Option<PolicySnapshot> {
        let read = self
            .prefetched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        match read.await {
            Ok(Ok((snapshot, parsed))) if snapshot.scope() == scope => {
                *self.preparsed.lock().unwrap_or_else(|p| p.into_inner()) = parsed;
                Some(snapshot)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %format!("{e:#}"), "fleet: the read started with the daemon failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "fleet: the read started with the daemon did not finish");
                None
            }
            // Read for another scope (a SIGHUP rebound the interfaces meanwhile).
            Ok(Ok(_)) => None,
        }
    }

    /// The policy a session watched until its connection was lost.
    fn keep_resume(&self, watched: PolicySnapshot) {
        *self.resume.lock().unwrap_or_else(|p| p.into_inner()) = Some(watched);
    }

    /// The policy to resume from, if the last session kept one (taken: a session keeps
    /// its own when it ends).
    fn take_resume(&self) -> Option<PolicySnapshot> {
        self.resume.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(super) fn connect_options(&self) -> Connect {
        Connect {
            endpoints: self.config.endpoints.clone(),
            tls: self.config.tls.as_ref().map(|t| TlsFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            }),
            timeout: Duration::from_secs(5),
            user: None,
        }
    }

    pub(super) fn applied(&self) -> MutexGuard<'_, FleetState> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy in force was parsed from `local` and the fleet state applied.
    pub(super) fn parsed_with(&self, local: String) {
        *self.local.lock().unwrap_or_else(|p| p.into_inner()) = Some(local);
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
        if up {
            self.synced();
        }
    }

    /// The node knows its state to be the fleet's as of now.
    pub(super) fn synced(&self) {
        *self.last_sync.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    pub(super) fn count_resync(&self, why: Resync) {
        self.resyncs[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The figures for `/metrics`; `flags_queued` from [`Daemon::unpublished_flags`].
    pub(super) fn figures(&self, flags_queued: u64) -> FleetFigures {
        let last = *self.last_sync.lock().unwrap_or_else(|p| p.into_inner());
        FleetFigures {
            connected: self.connected.load(Ordering::Relaxed),
            seconds_since_sync: last.map(|t| t.elapsed().as_secs_f64()),
            resyncs: std::array::from_fn(|i| self.resyncs[i].load(Ordering::Relaxed)),
            generation: self.applied().generation,
            flags_queued,
        }
    }
}

/// The local file's text, refused if it holds the fleet's sections (they come from
/// etcd; appended to the file's own they would be duplicate keys).
pub(super) fn local_text(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let found = fleet_sections_in(&text);
    if let Some((key, line, col)) = found.first() {
        bail!(
            "{}:{line}:{col}: `{key}` in a fleet node's file: with daemon.fleet, defaults and \
             tenants come from the fleet (apply them through `warden controller`); remove it",
            path.display()
        );
    }
    Ok(text)
}

/// The part of the fleet's policy the node with this file needs (docs/fleet-design.md,
/// "What a node watches"): its tenants when every interface is a host-mode port bound
/// to one, else all of it.
pub(super) fn scope_of(local: &str) -> Scope {
    bound_tenants_in(local).map_or(Scope::All, Scope::Tenants)
}

/// The policy document of `state` on this node: the file's text and the fleet's sections.
fn document(local: &str, state: &FleetState) -> String {
    assemble(
        local,
        state.defaults.as_deref(),
        state.tenants.values().map(String::as_str),
    )
}

/// How long a start waits for etcd when the saved state cannot make a policy.
const START_READ: Duration = Duration::from_secs(10);

/// The start policy of a fleet node: its file with the fleet state it last applied
/// (none yet: the file alone, no tenants). `usable` checks interfaces as at any start.
/// When that is no policy because the file binds an interface to a tenant the saved
/// state lacks (a node that never synced, an interface bound anew), the node's part of
/// the fleet state is read from etcd (for up to [`START_READ`]) and saved: only the fleet
/// holds that tenant, and the node cannot enforce a binding to a tenant it never read.
pub(super) fn start_policy(
    path: &Path,
    store: &Store,
    usable: policy::InterfaceCheck<'_>,
    config: &FleetConfig,
) -> Result<(Policy, FleetState, String)> {
    let local = local_text(path)?;
    let saved = store.fleet_state()?.unwrap_or_default();
    let name = format!(
        "{} + fleet state (generation {})",
        path.display(),
        saved.generation
    );
    let (policy, saved) = match policy::parse_on_host(&document(&local, &saved), &name, usable) {
        Ok(p) => (p, saved),
        Err(d) => {
            let read = read_at_start(&local, config).with_context(|| {
                format!(
                    "the saved fleet state does not make a valid policy:\n{d}\nand the fleet \
                     state could not be read from etcd to start with instead"
                )
            })?;
            let name = format!("{} + fleet generation {}", path.display(), read.generation);
            let p =
                policy::parse_on_host(&document(&local, &read), &name, usable).map_err(|d| {
                    anyhow::anyhow!(
                        "the fleet state read from etcd does not make a valid policy:\n{d}"
                    )
                })?;
            store.save_fleet_state(&read)?;
            (p, read)
        }
    };
    tracing::info!(
        generation = saved.generation,
        revision = saved.revision,
        tenants = saved.tenants.len(),
        suspended = saved.suspended.len(),
        "fleet mode: starting from the last applied fleet state"
    );
    Ok((policy, saved, local))
}

/// The node's part of the fleet's policy ([`scope_of`] its file), read from etcd during
/// the start (the daemon's runtime is multi-threaded: this worker blocks, others run).
fn read_at_start(local: &str, config: &FleetConfig) -> Result<FleetState> {
    let node = FleetNode::new(config.clone(), FleetState::default())?;
    let scope = scope_of(local);
    let read = async {
        let fleet = Fleet::connect(&node.connect_options(), node.layout.clone()).await?;
        anyhow::Ok(fleet.read_policy_in(scope).await?)
    };
    let handle = tokio::runtime::Handle::current();
    let snapshot =
        tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(START_READ, read)))
            .map_err(|_| anyhow::anyhow!("etcd did not answer within {START_READ:?}"))??;
    tracing::info!(
        generation = snapshot.generation_number(),
        tenants = snapshot.tenants.len(),
        "fleet mode: the saved state lacks what the file binds; read the fleet's instead"
    );
    Ok(FleetState {
        revision: snapshot.revision,
        generation: snapshot.generation_number(),
        defaults: snapshot.defaults,
        tenants: snapshot.tenants,
        suspended: Vec::new(),
    })
}

impl Daemon {
    fn fleet_node(&self) -> Option<&FleetNode> {
        self.fleet.as_ref()
    }

    /// Applies a fleet policy update (`actor`: who applied it in the fleet), then saves
    /// the state it makes as the state to start from. The file is re-read, so a SIGHUP's
    /// edit of `daemon` or `interfaces` is checked as ever. When the file and `defaults`
    /// are those the policy in force was parsed with, only the changed tenants are parsed
    /// ([`Policy::with_tenant_changes`], its checks against every other tenant); else, or
    /// when it declines, the whole document is parsed. Only the changed tenants' rows are
    /// saved.
    pub(super) fn apply_fleet(&self, update: FleetUpdate, actor: &str) -> Result<u64, Refusal> {
        let node = self
            .fleet_node()
            .ok_or_else(|| anyhow::anyhow!("not a fleet node"))?;
        let _turn = node.applying.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_fleet_in_turn(node, update, actor)
    }

    /// [`Daemon::apply_fleet`], its turn (`FleetNode::applying`) held by the caller.
    fn apply_fleet_in_turn(
        &self,
        node: &FleetNode,
        update: FleetUpdate,
        actor: &str,
    ) -> Result<u64, Refusal> {
        let local = local_text(&self.policy_path).map_err(Refusal::Internal)?;
        let name = format!("fleet generation {}", update.generation);
        let started = Instant::now();
        let same_base = {
            let parsed = node.local.lock().unwrap_or_else(|p| p.into_inner());
            parsed.as_deref() == Some(local.as_str()) && node.applied().defaults == update.defaults
        };
        let changes: Vec<(&str, Option<&str>)> = update
            .tenants
            .iter()
            .map(|(id, text)| (id.as_str(), text.as_deref()))
            .collect();
        let incremental = same_base
            .then(|| {
                let in_force = self.lock_enforcement().policy().clone();
                in_force.with_tenant_changes(&changes)
            })
            .flatten();
        let whole = incremental.is_none();
        let parsed = match incremental {
            Some(p) => Ok(p),
            None => {
                let mut next = node.applied().clone();
                update.apply_to(&mut next);
                let text = document(&local, &next);
                drop(next);
                let parsed = match node.take_preparsed(&text) {
                    Some(parsed) => parsed,
                    None => policy::parse(&text, &name),
                };
                parsed.map(super::start::compacted)
            }
        };
        let parse = started.elapsed();
        let r = parsed
            .map_err(Refusal::InvalidPolicy)
            .and_then(|p| self.apply(p, actor, Role::Admin));
        let enforced = started.elapsed();
        crate::memory::release_freed();
        let generation = self.count_failure(r)?;
        node.parsed_with(local);
        let mut applied = node.applied();
        update.apply_to(&mut applied);
        let changed: Vec<&str> = changes.iter().map(|(id, _)| *id).collect();
        save(&self.db, node, &applied, &changed);
        // Where a large fleet's apply spends its time (docs/fleet-design.md, figures).
        tracing::info!(
            fleet_generation = applied.generation,
            tenants = applied.tenants.len(),
            changed = changed.len(),
            parsed = if whole { "whole" } else { "changed" },
            parse_ms = parse.as_millis() as u64,
            enforce_ms = (enforced - parse).as_millis() as u64,
            save_ms = (started.elapsed() - enforced).as_millis() as u64,
            "fleet state applied"
        );
        Ok(generation)
    }

    /// Takes a fleet generation whose `defaults` and tenants (of this node's scope) are
    /// those in force: recorded as applied (and saved) without a policy apply.
    pub(super) fn note_fleet_generation(&self, generation: u64, revision: i64) {
        let Some(node) = self.fleet_node() else {
            return;
        };
        let mut applied = node.applied();
        if applied.generation == generation && applied.revision >= revision {
            return;
        }
        applied.generation = generation;
        applied.revision = applied.revision.max(revision);
        save(&self.db, node, &applied, &[]);
    }

    /// SIGHUP on a fleet node: the file re-read with the fleet state in force.
    pub(super) fn reload_fleet(&self) -> Result<u64, Refusal> {
        let Some(node) = self.fleet_node() else {
            return Err(Refusal::Internal(anyhow::anyhow!("not a fleet node")));
        };
        // Interfaces bound anew may need other tenants: the session compares its scope
        // with the file's and reads them.
        node.reloaded.notify_one();
        // The state applied as of this turn: an apply of the session's just before is
        // kept, not undone.
        let _turn = node.applying.lock().unwrap_or_else(|p| p.into_inner());
        let update = {
            let applied = node.applied();
            FleetUpdate {
                revision: applied.revision,
                generation: applied.generation,
                defaults: applied.defaults.clone(),
                tenants: Vec::new(),
            }
        };
        self.apply_fleet_in_turn(node, update, "SIGHUP")
    }

    /// Makes the node's suspensions by the fleet those in `fleet`: suspends what the
    /// fleet suspended and the node did not, lifts what the node suspended for the fleet
    /// and the fleet no longer does. The node's own suspensions (its ladder's) stay.
    pub(super) fn sync_suspensions<'s>(&self, fleet: impl IntoIterator<Item = &'s Suspended>) {
        let Some(node) = self.fleet_node() else {
            return;
        };
        let wanted: Vec<&Suspended> = fleet.into_iter().collect();
        let wanted_ids: BTreeSet<&str> = wanted.iter().map(|s| s.tenant.as_str()).collect();
        let held: Vec<String> = node.applied().suspended.clone();
        for s in &wanted {
            self.fleet_suspend(node, s);
        }
        for tenant in held.iter().filter(|t| !wanted_ids.contains(t.as_str())) {
            self.fleet_unsuspend(node, tenant);
        }
    }

    pub(super) fn fleet_suspend(&self, node: &FleetNode, s: &Suspended) {
        let already = self
            .lock_enforcement()
            .suspensions()
            .contains_key(&s.tenant);
        if !already {
            let actor = format!("{FLEET_ACTOR}:{}", s.actor);
            let r = self.lock_enforcement().suspend(
                &self.db,
                &self.review,
                &s.tenant,
                &s.reason,
                &actor,
            );
            match r {
                Ok(_) => {
                    tracing::info!(tenant = %s.tenant, by = %s.actor, reason = %s.reason, "suspended by the fleet")
                }
                Err(e) => {
                    tracing::error!(tenant = %s.tenant, error = %e, "cannot enforce the fleet's suspension");
                    return;
                }
            }
        }
        let mut applied = node.applied();
        if !applied.suspended.contains(&s.tenant) {
            applied.suspended.push(s.tenant.clone());
            applied.suspended.sort();
            save(&self.db, node, &applied, &[]);
        }
    }

    pub(super) fn fleet_unsuspend(&self, node: &FleetNode, tenant: &str) {
        if !node.applied().suspended.iter().any(|t| t == tenant) {
            // Not the fleet's: a suspension the node's ladder imposed stays.
            return;
        }
        let r = {
            let mut pipeline = self.detection.lock();
            let mut enforcement = self.lock_enforcement();
            let r = enforcement.unsuspend(
                &self.db,
                &self.review,
                tenant,
                "lifted in the fleet",
                FLEET_ACTOR,
            );
            if r.is_ok() {
                pipeline.suspension_lifted(tenant);
            }
            r
        };
        match r {
            Ok(_) => tracing::info!(%tenant, "suspension lifted by the fleet"),
            // Lifted here already: only the record of it being the fleet's goes.
            Err(Refusal::Conflict(_)) => {}
            Err(e) => {
                tracing::error!(%tenant, error = %e, "cannot lift the fleet's suspension");
                return;
            }
        }
        let mut applied = node.applied();
        applied.suspended.retain(|t| t != tenant);
        save(&self.db, node, &applied, &[]);
    }
}

/// Saves the fleet state: its revision, generation, defaults and suspensions, and the
/// rows of the tenants in `changed` (every tenant's after a failed save). A failure is
/// logged (enforcement is already done, and the next save writes every tenant).
fn save(db: &Database, node: &FleetNode, state: &FleetState, changed: &[&str]) {
    let whole = node.save_whole.swap(false, Ordering::Relaxed);
    let db = db.lock();
    let r = if whole {
        db.save_fleet_state(state)
    } else {
        db.save_fleet_changes(state, changed)
    };
    if let Err(e) = r {
        node.save_whole.store(true, Ordering::Relaxed);
        tracing::error!(error = %e, "cannot save the fleet state: a restart before the next save starts from an older one");
    }
}

/// A change of the fleet state to apply: the new revision, generation and `defaults`,
/// and the tenants that changed (new fragment, or `None`: removed).
#[derive(Debug, Clone, Default)]
pub(super) struct FleetUpdate {
    pub(super) revision: i64,
    pub(super) generation: u64,
    pub(super) defaults: Option<String>,
    pub(super) tenants: Vec<(String, Option<String>)>,
}

impl FleetUpdate {
    /// Makes `state` the state after this update (its suspensions stay).
    fn apply_to(&self, state: &mut FleetState) {
        state.revision = self.revision;
        state.generation = self.generation;
        state.defaults.clone_from(&self.defaults);
        for (id, text) in &self.tenants {
            match text {
                Some(text) => {
                    state.tenants.insert(id.clone(), text.clone());
                }
                None => {
                    state.tenants.remove(id);
                }
            }
        }
    }
}
