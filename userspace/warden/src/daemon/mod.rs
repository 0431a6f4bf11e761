//! `warden run`: the daemon, as owners wired together.
//!
//! - [`enforcement`]: the policy in force and its generations, the dataplane, the
//!   tenants' slots and the suspensions (held once; the database, the kernel's record
//!   and the events log are their durable copies);
//! - [`detection`]: the detection pipeline, fed the programs' events by its own task;
//! - [`sampler`]: every tenant's counters once a second, for the API's rates and the
//!   pipeline's tick;
//! - [`history`]: each tenant's traffic every 10 s, kept in the database for the
//!   console's charts;
//! - [`review`]: notifications, deadlines, the outbox and the events log;
//! - the state database ([`Database`]), which they share, one operation at a time.
//!
//! [`run`] checks and starts them ([`start`]), spawns their tasks, serves the API (which
//! knows the daemon only as an [`api::Backend`], implemented in [`requests`]) and shuts
//! them down in order. Lock order: the pipeline, then enforcement, then the policy's
//! origin ([`kept`]), then the sampler's rates; the database's lock is taken for one operation at a time and never held while
//! taking another.
//!
//! Enforcement does not depend on this process: on SIGTERM, SIGINT or a crash the
//! pinned programs keep enforcing the last applied policy. Only `--detach-on-exit`
//! (or `warden uninstall`) removes them.

mod detection;
mod enforcement;
mod fleet;
mod history;
mod kept;
pub mod notify;
mod requests;
mod review;
mod sampler;
mod start;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use anyhow::Result;
use tokio::signal::unix::Signal;
use warden_dataplane::Dataplane;
use warden_policy::Policy;
use warden_store::Store;

pub(crate) use review::EventsLog;
pub use sampler::SAMPLE_INTERVAL;

use crate::api::{self, Refusal};
use detection::Detection;
use enforcement::Enforcement;
use history::History;
use review::Review;
use sampler::Sampler;

/// The actor of what the daemon does on its own: the ladder's actions and suspensions,
/// deadlines, deliveries.
const ACTOR: &str = warden_detect::pipeline::ACTOR;

/// Options of `warden run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub policy_path: PathBuf,
    /// Remove programs, links and maps on exit instead of leaving them enforcing.
    pub detach_on_exit: bool,
}

/// The state database, shared by the owners: one connection (`Store` is not `Sync`),
/// locked for one operation at a time.
struct Database(Mutex<Store>);

impl Database {
    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic during a statement leaves SQLite's transaction rolled back.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The owners, as the tasks and the API share them.
struct Daemon {
    detection: Detection,
    enforcement: Mutex<Enforcement>,
    db: Database,
    review: Review,
    sampler: Sampler,
    /// The tenants' traffic history steps (after the sampler in the lock order).
    history: History,
    /// The policy in force, for readers that must not wait for an apply (the review
    /// tasks, and the API's connection reserve, read for every connection). Written
    /// by the apply, under the enforcement lock.
    in_force: RwLock<Arc<Policy>>,
    /// Policies refused (invalid, or changing restart-only settings) or that failed
    /// to reach the kernel, since start.
    apply_failures: AtomicU64,
    started: Instant,
    /// When the daemon started (unix seconds), for the fleet registration.
    started_at: i64,
    policy_path: PathBuf,
    /// Where the policy in force came from: the `-c` file, or an API apply kept in the
    /// state directory ([`kept`]).
    origin: Mutex<kept::Origin>,
    /// Fleet mode's state (`daemon.fleet`); `None` for a node alone.
    fleet: Option<fleet::FleetNode>,
}

impl Daemon {
    fn lock_enforcement(&self) -> MutexGuard<'_, Enforcement> {
        // A panic while holding the lock cannot leave the kernel half-written in a way
        // the next apply would not repair (generations), so keep serving.
        self.enforcement.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_origin(&self) -> MutexGuard<'_, kept::Origin> {
        self.origin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy in force.
    fn policy(&self) -> Arc<Policy> {
        self.in_force
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `policy` the one [`Daemon::policy`] returns.
    fn publish(&self, policy: &Arc<Policy>) {
        *self.in_force.write().unwrap_or_else(|e| e.into_inner()) = policy.clone();
    }

    /// Acts on flags past their deadline ([`Review::sweep_deadlines`]), suspending
    /// through the audited path.
    fn sweep_deadlines(&self) -> Result<()> {
        let mut enforcement = self.lock_enforcement();
        let policy = enforcement.policy().clone();
        self.review
            .sweep_deadlines(&self.db, &policy, |tenant, reason| {
                enforcement.suspend(&self.db, &self.review, tenant, reason, ACTOR)?;
                Ok::<(), Refusal>(())
            })
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
///
/// A start is all or nothing ([`start`]): what can be checked without touching the
/// kernel is checked first, and a start that fails after that undoes what it did to the
/// pinned dataplane. Then every owner's task is spawned, the API served, and on a signal
/// the tasks are stopped in order: first those that take new work (reloads, deliveries,
/// deadlines), then the sampler and the event reader.
pub async fn run(opts: RunOptions) -> Result<()> {
    let start::Started {
        daemon,
        listener,
        tls,
        tokens,
        api_config,
        events,
        signals,
    } = start::start(&opts)?;
    let bpffs = daemon.lock_enforcement().dataplane().bpffs().to_path_buf();

    let reloads = tokio::spawn(requests::reload_on_hangup(daemon.clone(), signals.hup));
    let deliveries = tokio::spawn(review::deliveries(daemon.clone()));
    let deadlines = tokio::spawn(review::deadlines(daemon.clone()));
    let sampler = tokio::spawn(sampler::run(daemon.clone()));
    let events = events.map(|reader| tokio::spawn(detection::read_events(daemon.clone(), reader)));
    let watchdog = notify::watchdog_period()
        .map(|period| tokio::spawn(notify::watchdog(daemon.clone(), period)));
    // Enforcing since start() returned: the first policy is attached and written, and the
    // API listener is bound (connections queue until served below).
    notify::ready(daemon.lock_enforcement().generation());
    let fleet_sync = daemon
        .fleet
        .is_some()
        .then(|| tokio::spawn(fleet::run(daemon.clone())));

    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %api_config.listen, scheme, "serving API and /metrics");
    let backend: Arc<dyn api::Backend> = daemon.clone();
    let served = api::serve(
        listener,
        tls,
        backend,
        tokens,
        &api_config,
        stopped(signals.term, signals.int),
    )
    .await;

    notify::stopping();
    for task in [reloads, deliveries, deadlines, sampler]
        .into_iter()
        .chain(watchdog)
    {
        task.abort();
        let _ = task.await;
    }
    for task in [events, fleet_sync].into_iter().flatten() {
        task.abort();
        let _ = task.await;
    }
    served?;
    drop(daemon);
    if opts.detach_on_exit {
        let n = Dataplane::uninstall(&bpffs)?;
        tracing::info!(pins = n, bpffs = %bpffs.display(), "detached and removed all pinned state");
    } else {
        tracing::info!(bpffs = %bpffs.display(), "exiting; pinned programs keep enforcing");
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
async fn stopped(mut term: Signal, mut int: Signal) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// `warden uninstall`: removes every pinned program, link and map under `bpffs`.
pub fn uninstall(bpffs: &Path) -> Result<usize> {
    Ok(Dataplane::uninstall(bpffs)?)
}
