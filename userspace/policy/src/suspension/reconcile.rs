//! At start: may the daemon take the store's suspensions as the truth? Only when the store
//! is at least as new as every other durable place (the kernel's pinned record, the events
//! log). Otherwise the store was lost, emptied or rolled back, and reading it as "no
//! suspensions" would lift suspensions nobody lifted: the daemon refuses to start, with a
//! message saying what is still in force and how to restore ([`Lost::message`]).

use std::path::PathBuf;

use super::SuspensionState;

/// What the state database holds, as far as suspensions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFound {
    /// No database file (or no state directory).
    Missing,
    /// A database file of 0 bytes.
    Empty,
    /// A database, with its suspension state.
    State(SuspensionState),
}

/// The store may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// The kernel's record differs from the store and must be rewritten from it.
    pub rewrite_record: bool,
    /// What a person should be told (the store was ahead of the kernel's record).
    pub note: Option<String>,
}

/// Why the store cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// No database file.
    Missing,
    /// A 0-byte database file.
    Empty,
    /// The database is at a lower sequence than `source` (at `authority`).
    Older {
        store: u64,
        authority: u64,
        source: Source,
    },
    /// At the kernel record's sequence but without some of its suspensions.
    Lacks { store: u64, tenants: Vec<String> },
}

/// Which durable place is newer than the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The pinned suspension record.
    Kernel,
    /// The events log.
    EventsLog,
}

/// A refusal: the store is missing, empty or older than what the kernel or the events log
/// hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// Why.
    pub why: Why,
    /// The kernel's record, when there is one.
    pub kernel: Option<SuspensionState>,
    /// The highest sequence in the events log, and the state it rebuilds to.
    pub events_log: Option<SuspensionState>,
}

/// The paths a refusal names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The database file.
    pub db: PathBuf,
    /// The policy file the daemon was started with.
    pub config: PathBuf,
    /// The events log.
    pub events_log: PathBuf,
    /// Where the dataplane is pinned.
    pub bpffs: PathBuf,
}

/// Decides whether the store's suspensions can be used at start. `kernel` is the pinned
/// record (`None`: nothing pinned, e.g. after a reboot or `warden uninstall`); `events_log`
/// is the log's rebuilt state (`None`: no log, or no suspension line in it).
pub fn reconcile(
    store: &StoreFound,
    kernel: Option<&SuspensionState>,
    events_log: Option<&SuspensionState>,
) -> Result<Reconciled, Lost> {
    let lost = |why| Lost {
        why,
        kernel: kernel.cloned(),
        events_log: events_log.cloned(),
    };
    let k = kernel.map_or(0, |s| s.seq);
    let e = events_log.map_or(0, |s| s.seq);
    let state = match store {
        StoreFound::Missing | StoreFound::Empty if k.max(e) == 0 => {
            return Ok(Reconciled {
                rewrite_record: kernel.is_some_and(|k| !k.tenants.is_empty()),
                note: None,
            })
        }
        StoreFound::Missing => return Err(lost(Why::Missing)),
        StoreFound::Empty => return Err(lost(Why::Empty)),
        StoreFound::State(s) => s,
    };
    if state.seq < k {
        return Err(lost(Why::Older {
            store: state.seq,
            authority: k,
            source: Source::Kernel,
        }));
    }
    if state.seq < e {
        return Err(lost(Why::Older {
            store: state.seq,
            authority: e,
            source: Source::EventsLog,
        }));
    }
    if let Some(kernel) = kernel.filter(|r| r.seq == state.seq) {
        let missing: Vec<String> = kernel
            .tenants
            .keys()
            .filter(|t| !state.tenants.contains_key(*t))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(lost(Why::Lacks {
                store: state.seq,
                tenants: missing,
            }));
        }
    }
    let note = kernel.filter(|r| r.seq < state.seq).map(|r| {
        let lifted: Vec<&str> = r
            .tenants
            .keys()
            .filter(|t| !state.tenants.contains_key(*t))
            .map(String::as_str)
            .collect();
        let added: Vec<&str> = state
            .tenants
            .keys()
            .filter(|t| !r.tenants.contains_key(*t))
            .map(String::as_str)
            .collect();
        format!(
            "the state database is ahead of the kernel's suspension record (sequence {} > {}): \
             the daemon stopped between recording a change and writing it to the kernel; the \
             database's audited state is applied (lifted: {}; suspended: {})",
            state.seq,
            r.seq,
            list(&lifted),
            list(&added)
        )
    });
    Ok(Reconciled {
        rewrite_record: kernel != Some(state),
        note,
    })
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

impl Lost {
    /// The suspension state to show as still in force: the kernel's, else the log's.
    pub fn in_force(&self) -> Option<&SuspensionState> {
        self.kernel.as_ref().or(self.events_log.as_ref())
    }

    /// The error the daemon exits with: what is wrong with which file, what is still in
    /// force, and the commands that put it right.
    pub fn message(&self, paths: &Paths) -> String {
        let db = paths.db.display();
        let what = match &self.why {
            Why::Missing => {
                let dir = paths.db.parent().filter(|d| !d.exists());
                match dir {
                    Some(d) => format!("is missing (so is its directory {})", d.display()),
                    None => "is missing".to_string(),
                }
            }
            Why::Empty => "is empty (0 bytes)".to_string(),
            Why::Older {
                store,
                authority,
                source,
            } => format!(
                "is at suspension sequence {store}, older than {} at {authority} (its \
                 write-ahead log was lost, or it is an old copy)",
                match source {
                    Source::Kernel => format!(
                        "the kernel's suspension record under {}",
                        paths.bpffs.display()
                    ),
                    Source::EventsLog => format!("the events log {}", paths.events_log.display()),
                }
            ),
            Why::Lacks { store, tenants } => format!(
                "is at the kernel record's suspension sequence {store} but lacks the \
                 suspensions of {}",
                tenants.join(", ")
            ),
        };
        let authority = self
            .kernel
            .as_ref()
            .map_or(0, |k| k.seq)
            .max(self.events_log.as_ref().map_or(0, |e| e.seq));
        let mut m = format!("refusing to start: the state database {db} {what}.\n");
        match (&self.kernel, &self.events_log) {
            (Some(k), _) => {
                m += &format!(
                    "The pinned dataplane under {} still enforces {} suspension(s) (sequence {}):\n{}",
                    paths.bpffs.display(),
                    k.tenants.len(),
                    k.seq,
                    k.describe()
                );
                m += "Warden does not take a lost database as \"no suspensions\": nothing pinned was \
                      changed, and the programs keep enforcing them while the daemon is down.\n";
            }
            (None, Some(e)) => {
                m += &format!(
                    "Nothing is pinned under {} (a reboot or `warden uninstall`), but the events log {} \
                     records {} suspension(s) in force at sequence {}:\n{}",
                    paths.bpffs.display(),
                    paths.events_log.display(),
                    e.tenants.len(),
                    e.seq,
                    e.describe()
                );
                m += "Warden does not take a lost database as \"no suspensions\"; nothing is attached \
                      until it starts.\n";
            }
            (None, None) => {}
        }
        m += &format!(
            "To rebuild the database's suspensions (audited), run:\n    warden state restore -c {}",
            paths.config.display()
        );
        m += &format!(
            "\nthen start the daemon again. Or put back a copy of {db} at suspension sequence {authority} \
             or later (with its -wal file).",
        );
        if !paths.events_log.exists() {
            m += &format!(
                "\nThe events log {} is gone too: the restore rebuilds from the kernel's record (add \
                 --events-log COPY to also read a copy kept elsewhere). Keep the events log \
                 outside state_dir (daemon.events_log), or back it up: after a reboot it is the \
                 only other place suspensions are kept.",
                paths.events_log.display()
            );
        }
        m
    }
}
