//! The state database's suspensions against the other durable places: the check before
//! `warden run` uses the database, and `warden state restore`, which rebuilds the
//! database's suspensions after it was lost (see [`crate::suspension`] for the design).
//!
//! Neither writes anything pinned: the check only reads the kernel's suspension record,
//! and a refused start leaves every pinned program and map as it was, still enforcing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use warden_policy::{
    suspension::{
        self, events::EventsLogState, reconcile::Paths, Reconciled, StoreFound, SuspensionState,
    },
    Policy,
};

use warden_store::{self as store, Store, StoreError, DB_FILE};

use warden_dataplane::record::{self, RecordMap};

use crate::daemon::EventsLog;

/// The kernel's pinned suspension record under `bpffs`, read without creating anything;
/// `None` when nothing is pinned or nothing was written yet.
pub fn kernel_record(bpffs: &Path) -> Result<Option<SuspensionState>> {
    let path = record::pin_path(bpffs);
    let context = || {
        format!(
            "reading the kernel's suspension record {}; the pinned programs may still enforce \
             suspensions, so nothing is decided without it (if it is damaged beyond use, \
             `warden uninstall` removes it with all enforcement)",
            path.display()
        )
    };
    let Some(map) = RecordMap::open_pinned(bpffs).with_context(context)? else {
        return Ok(None);
    };
    let Some((seq, bytes)) = map.read().with_context(context)? else {
        return Ok(None);
    };
    let state = SuspensionState::from_record(seq, &bytes)
        .map_err(anyhow::Error::msg)
        .with_context(context)?;
    Ok(Some(state))
}

/// The state database found at start, and what the other places hold.
pub struct Checked {
    /// The database, open.
    pub store: Store,
    /// Its suspensions.
    pub state: SuspensionState,
    /// What the check decided (whether the kernel's record must be rewritten, a note).
    pub reconciled: Reconciled,
    /// The kernel's record, if any.
    pub kernel: Option<SuspensionState>,
}

/// Opens the state database for `warden run -c config` after checking it against the
/// kernel's record and the events log; refuses (an error saying what is still in force and
/// how to restore) when it is missing, empty or older than either. A missing database is
/// not created when the check refuses.
pub fn open_checked(policy: &Policy, config: &Path) -> Result<Checked> {
    let daemon = &policy.daemon;
    let kernel = kernel_record(&daemon.bpffs)?;
    let events_log = daemon.events_log_path();
    let logged = match EventsLogState::read(&events_log) {
        Ok(Some(log)) if log.last_seq() > 0 => {
            for bad in &log.bad_lines {
                tracing::warn!(line = %bad, "unreadable suspension line in the events log");
            }
            Some(suspension::rebuild(None, Some(&log)).state)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(path = %events_log.display(), error = %e, "cannot read the events log; the state database is checked against the kernel's record only");
            None
        }
    };
    let db = daemon.state_dir.join(DB_FILE);
    let paths = Paths {
        db: db.clone(),
        config: config.to_path_buf(),
        events_log,
        bpffs: daemon.bpffs.clone(),
    };
    let found = match std::fs::metadata(&db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFound::Missing,
        Err(e) => return Err(e).with_context(|| format!("{}", db.display())),
        Ok(m) if m.len() == 0 => StoreFound::Empty,
        Ok(_) => StoreFound::State(SuspensionState::default()),
    };
    let (store, found) = match found {
        StoreFound::State(_) => {
            let store = Store::open(&daemon.state_dir)?;
            let state = store.suspension_state()?;
            (Some(store), StoreFound::State(state))
        }
        other => (None, other),
    };
    let reconciled = suspension::reconcile(&found, kernel.as_ref(), logged.as_ref())
        .map_err(|lost| anyhow::anyhow!("{}", lost.message(&paths)))?;
    let (store, state) = match (store, found) {
        (Some(store), StoreFound::State(state)) => (store, state),
        _ => {
            // Missing or empty, and nothing anywhere says a suspension ever existed.
            let store = Store::open(&daemon.state_dir)?;
            let state = store.suspension_state()?;
            (store, state)
        }
    };
    Ok(Checked {
        store,
        state,
        reconciled,
        kernel,
    })
}

/// Options of `warden state restore`.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The policy file (its `daemon` section says where everything is).
    pub config: PathBuf,
    /// Events logs to read (default: the policy's `daemon.events_log`), oldest first.
    pub events_logs: Vec<PathBuf>,
    /// Who restores (audited).
    pub actor: String,
}

/// What a restore did, for the command to print.
#[derive(Debug)]
pub struct RestoreReport {
    /// The database.
    pub db: PathBuf,
    /// Where the state came from.
    pub sources: Vec<String>,
    /// The rebuilt state.
    pub state: SuspensionState,
    /// What changed in the database; `None` when it was already as new.
    pub restored: Option<store::Restored>,
    /// What a person should know.
    pub warnings: Vec<String>,
    /// Whether a suspension record was pinned (the programs kept enforcing).
    pub pinned: bool,
}

/// `warden state restore`: rebuilds the database's suspensions from the kernel's pinned
/// record and the events log (the newer of the record and the log's last snapshot, then
/// every later change in the log), audited. Touches nothing pinned.
pub fn restore(opts: &RestoreOptions) -> Result<RestoreReport> {
    let policy = warden_policy::load(&opts.config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let daemon = &policy.daemon;
    let kernel = kernel_record(&daemon.bpffs)?;
    let logs = if opts.events_logs.is_empty() {
        vec![daemon.events_log_path()]
    } else {
        opts.events_logs.clone()
    };
    let mut sources = Vec::new();
    let mut warnings = Vec::new();
    match &kernel {
        Some(k) => sources.push(format!(
            "the kernel's suspension record {} (sequence {}, {} suspended)",
            record::pin_path(&daemon.bpffs).display(),
            k.seq,
            k.tenants.len()
        )),
        None => warnings.push(format!(
            "no suspension record is pinned under {}: the events log is the only source",
            daemon.bpffs.display()
        )),
    }
    let mut log = EventsLogState::default();
    let mut any_log = false;
    for path in &logs {
        let before = log.events.len();
        let found = log
            .add_file(path)
            .with_context(|| format!("reading the events log {}", path.display()))?;
        if found {
            any_log = true;
            sources.push(format!(
                "the events log {} ({} suspension lines)",
                path.display(),
                log.events.len() - before
            ));
        } else {
            warnings.push(format!("the events log {} does not exist", path.display()));
        }
    }
    if kernel.is_none() && log.events.is_empty() {
        bail!(
            "nothing to restore from: no suspension record is pinned under {} and {} holds no \
             suspension line{}",
            daemon.bpffs.display(),
            logs.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if any_log { "" } else { " (not found)" }
        );
    }
    let rebuilt = suspension::rebuild(kernel.as_ref(), Some(&log));
    warnings.extend(rebuilt.warnings.iter().cloned());
    let db = daemon.state_dir.join(DB_FILE);
    set_aside_orphaned_log(&db, &mut warnings)?;
    let store = Store::open(&daemon.state_dir).with_context(|| {
        format!(
            "opening {} to restore into; if it is damaged, move it aside (mv {0} {0}.damaged, \
             with its -wal and -shm files) and run this again",
            db.display()
        )
    })?;
    let detail = serde_json::json!({
        "base": rebuilt.base,
        "applied_from_events_log": rebuilt.applied,
        "sources": sources,
        "warnings": warnings,
    });
    let restored = match store.restore_suspensions(&rebuilt.state, &opts.actor, &detail) {
        Ok(r) => Some(r),
        Err(StoreError::NotOlder { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    if restored.is_some() {
        let line = suspension::events::snapshot_line(
            &rebuilt.state,
            &opts.actor,
            "restore",
            warden_policy::time::system_clock(),
        );
        let events = EventsLog::new(&daemon.events_log_path());
        if let Err(e) = events.append_durable(&line) {
            warnings.push(format!(
                "could not write the restored state to the events log {}: {e}",
                daemon.events_log_path().display()
            ));
        }
    }
    Ok(RestoreReport {
        db,
        sources,
        state: rebuilt.state,
        restored,
        warnings,
        pinned: kernel.is_some(),
    })
}

/// A database file that is gone or empty cannot take its old write-ahead log back (SQLite
/// would replay pages of another database into the new one): the `-wal` and `-shm` files
/// left beside it are renamed out of the way, kept for a person to look at.
fn set_aside_orphaned_log(db: &Path, warnings: &mut Vec<String>) -> Result<()> {
    let lost = match std::fs::metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(e).with_context(|| db.display().to_string()),
        Ok(m) => m.len() == 0,
    };
    if !lost {
        return Ok(());
    }
    let stamp = warden_policy::time::system_clock();
    for suffix in ["-wal", "-shm"] {
        let mut from = db.as_os_str().to_owned();
        from.push(suffix);
        let from = PathBuf::from(from);
        if !from.exists() {
            continue;
        }
        let mut to = from.as_os_str().to_owned();
        to.push(format!(".orphaned-{stamp}"));
        let to = PathBuf::from(to);
        std::fs::rename(&from, &to)
            .with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        warnings.push(format!(
            "{} belonged to a database that is gone or empty: moved to {}",
            from.display(),
            to.display()
        ));
    }
    Ok(())
}

impl RestoreReport {
    /// What the command prints.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for s in &self.sources {
            out += &format!("read {s}\n");
        }
        for w in &self.warnings {
            out += &format!("warning: {w}\n");
        }
        match &self.restored {
            Some(r) => {
                out += &format!(
                    "{}: suspensions restored from sequence {} to {} (audited as suspensions.restore)\n",
                    self.db.display(),
                    r.from_seq,
                    r.to_seq
                );
                if !r.suspended.is_empty() {
                    out += &format!("  suspension recorded again: {}\n", r.suspended.join(", "));
                }
                if !r.lifted.is_empty() {
                    out += &format!("  recorded as lifted: {}\n", r.lifted.join(", "));
                }
            }
            None => {
                out += &format!(
                    "{}: nothing to restore: it is at suspension sequence {} or later already\n",
                    self.db.display(),
                    self.state.seq
                );
            }
        }
        out += &format!(
            "{} suspension(s) in force at sequence {}:\n{}",
            self.state.tenants.len(),
            self.state.seq,
            self.state.describe()
        );
        out += if self.pinned {
            "start the daemon again (warden run -c FILE): it adopts the pinned programs, which \
             kept enforcing throughout\n"
        } else {
            "start the daemon again (warden run -c FILE): nothing is pinned, so nothing is \
             enforced until it has attached\n"
        };
        out
    }
}
