//! The start: everything that can be checked without touching the kernel first (the
//! policy, that each interface exists and its MTU fits the programs, the token file, the
//! TLS files, the state database against the kernel's record and the events log, the
//! API listener, the signal handlers); then the kernel part, all or nothing: a start that
//! fails undoes what it did to the pinned dataplane (see [`warden_dataplane::RolledBack`]):
//! what it created goes, and what it adopted from an earlier daemon, which enforces
//! whether or not a daemon runs, stays as it was, still enforcing.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use anyhow::{Context as _, Result};
use ipnet::IpNet;
use tokio::signal::unix::{signal, Signal, SignalKind};
use warden_dataplane::{self as dataplane, Dataplane, EventReader, TenantIndex};
use warden_detect::pipeline::Pipeline;
use warden_policy::suspension::{self, Suspension, SuspensionState};
use warden_policy::time::system_clock;
use warden_policy::{self as policy, DaemonConfig, Policy};

use super::detection::Detection;
use super::enforcement::Enforcement;
use super::review::Review;
use super::sampler::Sampler;
use super::{Daemon, Database, RunOptions};
use crate::auth::Tokens;

/// File in the state directory naming the eBPF object the pinned links run.
const OBJECT_MARKER: &str = "dataplane-object";

/// The signals the daemon acts on.
pub(super) struct Signals {
    pub(super) term: Signal,
    pub(super) int: Signal,
    pub(super) hup: Signal,
}

/// A started daemon: its owners, enforcing, and what its tasks and the API need.
pub(super) struct Started {
    pub(super) daemon: Arc<Daemon>,
    pub(super) listener: tokio::net::TcpListener,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) tokens: Tokens,
    pub(super) api_config: DaemonConfig,
    /// The programs' events, when they can be read.
    pub(super) events: Option<EventReader>,
    pub(super) signals: Signals,
}

/// `policy` moved into fresh allocations. A policy just read has its many small
/// allocations (ids, address lists) strewn between those of the YAML tree and the
/// drafts, all freed by now; copied, the copies fill the freed space more densely, the
/// originals are freed, and [`crate::memory::release_freed`] finds more whole pages to
/// give back.
pub(super) fn compacted(policy: Policy) -> Policy {
    let copy = policy.clone();
    drop(policy);
    copy
}

/// The policy to start with: the file's, or, when a policy applied over the API is kept
/// in the state directory (and the node is not in a fleet, whose own state persists),
/// that one under the file's restart-only sections ([`super::kept::merged`]).
fn with_kept(file: Policy, path: &Path) -> Result<(Policy, Option<super::kept::Kept>)> {
    let state_dir = file.daemon.state_dir.clone();
    let Some((kept, text)) = super::kept::read(&state_dir)? else {
        return Ok((file, None));
    };
    let kept_path = super::kept::path(&state_dir);
    if file.daemon.fleet.is_some() {
        tracing::warn!(kept = %kept_path.display(), "a policy applied over the API is kept, but this node is in a fleet: the fleet's policy is enforced and the kept copy ignored");
        return Ok((file, None));
    }
    let name = format!("{} (kept API apply)", kept_path.display());
    let api = policy::parse(&text, &name).map_err(|d| {
        anyhow::anyhow!(
            "the policy applied over the API and kept in {} does not parse; move it away to \
             start from {} alone:\n{d}",
            kept_path.display(),
            path.display()
        )
    })?;
    tracing::warn!(
        file = %path.display(),
        kept = %kept_path.display(),
        source = %kept.source(),
        "enforcing the policy applied over the API instead of the file's defaults and tenants (`warden policy apply --from-file` goes back to the file)"
    );
    Ok((super::kept::merged(file, api), Some(kept)))
}

/// Checks, then starts enforcing: see the module documentation.
pub(super) fn start(opts: &RunOptions) -> Result<Started> {
    crate::memory::tune();
    // API connections, maps, SQLite and the sampler share the descriptor limit; the API
    // keeps its cap below what this leaves (daemon.api_limits).
    match crate::api::raise_fd_limit() {
        Ok(limit) => tracing::info!(limit, "open descriptor limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open descriptor limit"),
    }
    let policy_path = opts.policy_path.as_path();
    let invalid = |d| anyhow::anyhow!("invalid policy:\n{d}");
    let file_bytes = policy::read_bytes(policy_path).map_err(invalid)?;
    let file_digest = super::kept::digest(&file_bytes);
    let policy =
        policy::parse_bytes_on_host(&file_bytes, &policy_path.display().to_string(), &|name| {
            dataplane::iface::check(name, true)
        })
        .map_err(invalid)?;
    drop(file_bytes);
    crate::logging::set_format(policy.daemon.log_format);
    let (policy, kept) = with_kept(policy, policy_path)?;
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
    // A fleet node enforces the fleet state it last applied (kept in the database) from
    // the start, whether or not etcd answers.
    let (policy, fleet) = match policy.daemon.fleet.clone() {
        Some(config) => {
            let usable = |name: &str| dataplane::iface::check(name, true);
            let (p, saved, local) =
                super::fleet::start_policy(policy_path, &store, &usable, &config)?;
            let node = super::fleet::FleetNode::new(config, saved)?;
            node.prefetch(&local);
            node.parsed_with(local);
            (compacted(p), Some(node))
        }
        None => (policy, None),
    };
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
    let signals = Signals {
        term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
        int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        hup: signal(SignalKind::hangup()).context("installing SIGHUP handler")?,
    };
    let dataplane = Dataplane::open(&policy.daemon.bpffs)
        .with_context(|| {
            format!(
                "opening the dataplane under {}",
                policy.daemon.bpffs.display()
            )
        })
        .map_err(crate::privileges::explain)?;
    if dataplane.adopted_maps() > 0 {
        tracing::info!(maps = dataplane.adopted_maps(), bpffs = %policy.daemon.bpffs.display(), "adopting pinned dataplane");
    }
    let marker = policy.daemon.state_dir.join(OBJECT_MARKER);
    let db = Database(Mutex::new(store));
    let review = Review::new(&policy.daemon.events_log_path());
    let mut enforcement = Enforcement::new(&policy, dataplane, index, suspensions, suspension_seq);
    if let Some(k) = &kept {
        enforcement.resume_generation(k.generation.saturating_sub(1));
    }
    let marker_before = std::fs::read_to_string(&marker).ok();
    let marker_before = marker_before.as_deref();
    if let Err(e) = start_enforcing(&mut enforcement, &db, policy, &marker, marker_before) {
        let done = roll_back(&mut enforcement, &db, &index_before, &marker, marker_before);
        let bpffs = enforcement.dataplane().bpffs().display().to_string();
        let undone = match done.failures.len() {
            0 => "undone".to_string(),
            n => format!("undone but for {n} steps (see the log)"),
        };
        let adopted = match enforcement.dataplane().adopted_maps() {
            0 => String::new(),
            _ => ", and the enforcement it adopted there runs on as it was".to_string(),
        };
        return Err(crate::privileges::explain(e.context(format!(
            "the start failed; what it did under {bpffs} was {undone}{adopted}"
        ))));
    }
    let suspended = enforcement.suspensions();
    if !suspended.is_empty() {
        let state = SuspensionState {
            seq: enforcement.suspension_seq(),
            tenants: enforcement.suspended(),
        };
        let line = suspension::events::snapshot_line(&state, "warden", "start", system_clock());
        review.log_suspension(&line, suspension::events::SNAPSHOT, "*");
    }
    tracing::info!(
        suspended = suspended.len(),
        seq = enforcement.suspension_seq(),
        tenants = %suspended.keys().cloned().collect::<Vec<_>>().join(","),
        "suspensions in force (state database, kernel record and events log agree)"
    );
    let mut pipeline = Pipeline::default();
    pipeline.configure(
        enforcement.policy(),
        |id| enforcement.slot(id),
        enforcement.generation(),
    );
    crate::memory::release_freed();
    let events = match enforcement.dataplane_mut().event_reader() {
        Ok(reader) => Some(reader),
        Err(e) => {
            tracing::error!(error = %e, "cannot read kernel events: scan, flood, spam and proxy detection are off");
            None
        }
    };
    for a in enforcement.dataplane().attachments() {
        tracing::info!(interface = %a.interface, mode = %a.mode, hook = %a.hook, program = %a.program, how = %a.how, "enforcing");
    }
    let daemon = Arc::new(Daemon {
        detection: Detection::new(pipeline, events.is_some()),
        in_force: RwLock::new(enforcement.policy().clone()),
        enforcement: Mutex::new(enforcement),
        db,
        review,
        sampler: Sampler::default(),
        history: Default::default(),
        apply_failures: AtomicU64::new(0),
        started: Instant::now(),
        started_at: system_clock(),
        policy_path: policy_path.to_path_buf(),
        origin: Mutex::new(super::kept::Origin { file_digest, kept }),
        fleet,
    });
    Ok(Started {
        daemon,
        listener,
        tls,
        tokens,
        api_config,
        events,
        signals,
    })
}

/// The kernel part of a start: the policy and suspensions into the maps (before any
/// program is attached or, when adopting, with one atomic flip, so no packet passes
/// unenforced), the programs onto the interfaces, the object marker written, the apply
/// audited, and last [`Dataplane::finish_start`]. On an error the caller rolls back.
fn start_enforcing(
    enforcement: &mut Enforcement,
    db: &Database,
    policy: Policy,
    marker: &Path,
    marker_before: Option<&str>,
) -> Result<()> {
    let interfaces: Vec<(String, policy::Mode)> = policy
        .interfaces
        .iter()
        .map(|i| (i.name.clone(), i.mode))
        .collect();
    let configured = policy.interfaces.clone();
    // From-tenant plans on host-mode interfaces are shaped: the qdisc is there before
    // the policy names its classes.
    let hosts: Vec<String> = interfaces
        .iter()
        .filter(|(_, mode)| *mode == policy::Mode::Host)
        .map(|(name, _)| name.clone())
        .collect();
    enforcement
        .dataplane_mut()
        .set_up_shaping(&hosts)
        .context("setting up egress shaping on the host-mode interfaces")?;
    // Policy and suspensions go into the kernel before any program is attached (or,
    // when adopting, with one atomic flip), so no packet passes unenforced.
    enforcement.put_policy(db, policy)?;
    // The kernel's record follows the store (after the flags: a crash in between leaves
    // the store ahead, which wins).
    enforcement.sync_record()?;
    // What each interface passes unparsed, in place before its programs see a frame.
    let dp = enforcement.dataplane_mut();
    dp.configure_interfaces(&configured)?;
    let object = dataplane::object_id();
    dp.attach(&interfaces, &object, marker_before.map(str::trim))?;
    std::fs::write(marker, &object).with_context(|| format!("writing {}", marker.display()))?;
    enforcement.audit_apply(db, "warden", &[])?;
    let dp = enforcement.dataplane_mut();
    dp.finish_start()
        .context("removing links of interfaces no longer in the policy")?;
    dp.forget_other_interfaces(&configured);
    match dp.remove_other_shaping() {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "removed egress shaping from interfaces no longer in host mode"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "removing egress shaping from interfaces no longer in host mode")
        }
    }
    Ok(())
}

/// Undoes a failed start: the dataplane's steps in reverse (pins, links and directories
/// it created go; the generation, management prefixes and programs it changed under
/// adopted pins are put back), then the tenant index and the object marker as they were.
fn roll_back(
    enforcement: &mut Enforcement,
    db: &Database,
    index_before: &[(String, u32)],
    marker: &Path,
    marker_before: Option<&str>,
) -> dataplane::RolledBack {
    let dp = enforcement.dataplane_mut();
    let done = dp.roll_back_start();
    for failure in &done.failures {
        tracing::error!(%failure, "could not undo a step of the failed start");
    }
    tracing::warn!(
        undone = done.undone,
        failed = done.failures.len(),
        bpffs = %dp.bpffs().display(),
        "start failed: undid what it did to the pinned dataplane"
    );
    if let Err(e) = db.lock().save_tenant_index(index_before) {
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
