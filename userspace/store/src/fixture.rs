//! The stores the store's unit tests open: a fresh directory each, with a clock the test
//! moves by hand.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use super::Store;

/// Where a fixture's clock starts (unix seconds).
pub const T0: i64 = 1_700_000_000;

/// A store directory and the clock every store opened on it reads.
pub struct Fixture {
    dir: tempfile::TempDir,
    now: Arc<AtomicI64>,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("create temp dir"),
            now: Arc::new(AtomicI64::new(T0)),
        }
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Opens (or reopens) the store in the fixture's directory.
    pub fn open(&self) -> Store {
        let now = Arc::clone(&self.now);
        Store::open_with_clock(
            self.state_dir(),
            Box::new(move || now.load(Ordering::SeqCst)),
        )
        .expect("open store")
    }

    /// Moves the clock `secs` ahead; returns the new time.
    pub fn advance(&self, secs: i64) -> i64 {
        self.now.fetch_add(secs, Ordering::SeqCst) + secs
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: i64) {
        self.now.store(t, Ordering::SeqCst);
    }
}
