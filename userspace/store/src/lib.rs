//! warden-store: the SQLite state that must survive a restart (flags and their evidence,
//! suspensions, the audit log, the notification outbox, the tenant index); the only crate
//! that uses rusqlite.
//!
//! One database, `warden.db`, in the configured `state_dir`. Every write runs in one
//! `BEGIN IMMEDIATE` transaction, and every state change a person makes writes its audit row
//! in that same transaction, so the log never claims a change that did not happen nor misses
//! one that did. Commits are fsynced (`synchronous=FULL` on a write-ahead log).
//!
//! The schema is versioned with `PRAGMA user_version` and migrated forward in code
//! (the `schema` module); a database from a newer warden is refused rather than guessed at.
//!
//! [`Store`] is `Send` but not `Sync`: the daemon keeps it behind a `std::sync::Mutex`.

mod audit;
mod flags;
mod fleet;
mod history;
mod notifications;
pub mod pcap;
mod schema;
mod suspensions;
mod tenant_index;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use warden_policy::time::{rfc3339, system_clock};

pub use audit::AuditEntry;
pub use flags::FlagError;
pub use fleet::FleetState;
pub use history::{HistoryPoint, HISTORY_KEEP, HISTORY_STEP, HISTORY_TENANTS_PER_STEP};
pub use notifications::{Notification, NotificationCounts};
pub use suspensions::{NewSuspension, Restored};

/// File name of the database inside `state_dir`.
pub const DB_FILE: &str = "warden.db";

/// How long a statement waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The source of "now" for timestamps: unix seconds.
pub type Clock = Box<dyn Fn() -> i64 + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("{}: cannot create state directory: {source}", path.display())]
    CreateDir {
        /// The state directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// SQLite failed while doing `op`.
    #[error("{}: {op}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing, e.g. `suspend tenant`.
        op: &'static str,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database was written by a newer warden whose schema this one does not know.
    #[error(
        "{}: database schema version {found} is newer than this warden supports ({supported}); \
         run a newer warden or point state_dir at another directory",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// `user_version` found in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// SQLite did not switch the database to write-ahead logging (e.g. an unsupported file system).
    #[error("{}: cannot enable write-ahead logging: journal mode is `{mode}`", path.display())]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The tenant already has an active suspension.
    #[error("tenant `{tenant}` is already suspended (since {})", rfc3339(*since))]
    AlreadySuspended {
        /// The tenant.
        tenant: String,
        /// When the active suspension began (unix seconds).
        since: i64,
    },
    /// The tenant has no active suspension to lift.
    #[error("tenant `{tenant}` is not suspended")]
    NotSuspended {
        /// The tenant.
        tenant: String,
    },
    /// A suspend or unsuspend expected another suspension sequence number: something else
    /// changed the suspensions meanwhile.
    #[error(
        "the suspension sequence moved: this change was to be number {expected}, but the \
         database is at {found}"
    )]
    SequenceMoved {
        /// The number the change was given.
        expected: u64,
        /// The database's sequence before it.
        found: u64,
    },
    /// A restore found the database as new as what it would restore from.
    #[error(
        "nothing to restore: the database is at suspension sequence {store}, the rebuilt state at \
         {target}"
    )]
    NotOlder {
        /// The database's sequence.
        store: u64,
        /// The rebuilt state's sequence.
        target: u64,
    },
    /// Suspending and unsuspending need a non-blank reason.
    #[error("a reason is required")]
    ReasonRequired,
    /// A tenant index to save names a tenant or a slot twice.
    #[error("invalid tenant index: {0}")]
    InvalidTenantIndex(String),
    /// The saved fleet state cannot be written or read back (fleet mode).
    #[error("fleet state: {0}")]
    FleetState(String),
    /// A flag operation was refused (unknown flag, review move not allowed).
    #[error(transparent)]
    Flag(#[from] flags::FlagError),
}

/// The result type of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A failure inside a transaction: SQLite's (given the path and operation on the way out) or
/// one of the store's own.
enum TxError {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for TxError {
    fn from(e: rusqlite::Error) -> Self {
        TxError::Sql(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

/// The warden database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    clock: Clock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `state_dir/warden.db`, with timestamps from the system clock.
    ///
    /// Creates `state_dir` with mode 0700 if it does not exist, sets write-ahead logging,
    /// `synchronous=FULL`, foreign keys and a 5 s busy timeout, and migrates the schema.
    pub fn open(state_dir: &Path) -> Result<Store> {
        Self::open_with_clock(state_dir, Box::new(system_clock))
    }

    /// Like [`Store::open`], with timestamps from `clock` (unix seconds).
    pub fn open_with_clock(state_dir: &Path, clock: Clock) -> Result<Store> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|source| StoreError::CreateDir {
                path: state_dir.to_owned(),
                source,
            })?;
        let path = state_dir.join(DB_FILE);
        let sql = |op| {
            let path = path.clone();
            move |source| StoreError::Sqlite { path, op, source }
        };
        let conn = Connection::open(&path).map_err(sql("open database"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sql("set busy timeout"))?;
        // Before anything writes to the file, so a newer warden's database is left untouched.
        schema::check_not_newer(&conn, &path)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sql("set journal_mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NoWal { path, mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql("enable foreign keys"))?;
        let store = Store { conn, path, clock };
        schema::migrate(&store)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Now, by the store's clock.
    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Runs `f` in one immediate transaction, committed when `f` succeeds and rolled back
    /// otherwise. `op` names the operation in errors.
    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, TxError>,
    ) -> Result<T> {
        let run = || -> Result<T, TxError> {
            let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        run().map_err(|e| match e {
            TxError::Sql(source) => self.sql_error(op, source),
            TxError::Store(e) => e,
        })
    }

    /// Runs the read-only `f` on the connection. `op` names the operation in errors.
    fn read<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        f(&self.conn).map_err(|source| self.sql_error(op, source))
    }

    fn sql_error(&self, op: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }
}
