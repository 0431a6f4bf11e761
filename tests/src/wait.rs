//! Waiting for a condition: [`eventually`] polls a check until it holds or a timeout
//! passes. Tests and lab helpers synchronise with it, never with a fixed sleep: a
//! fixed sleep is too short on a loaded machine and too long everywhere else.
//!
//! A check returns `Ok(true)` or `Ok(Some(value))` when the condition holds, and
//! `Ok(false)`, `Ok(None)` or an error while it does not yet; errors are retried (the
//! daemon may not answer yet) and the last one is what the timeout reports, so a check
//! that says *why* it is not done (`ensure!(n >= 5, "only {n} counted")`) gives the
//! clearest failure. An error made with [`give_up`] ends the wait at once: waiting
//! cannot help (the process being waited for exited).
//!
//! Sleeps that remain in the tests are not synchronisation: a workload's pacing, or a
//! deliberate wait for time to pass (an absence that needs time to show, a kernel lock
//! time), each with a comment saying which.
//!
//! ```
//! # fn main() -> anyhow::Result<()> {
//! use std::time::{Duration, Instant};
//! use warden_tests::wait::eventually;
//! let start = Instant::now();
//! let waited = eventually(Duration::from_secs(5), || {
//!     let waited = start.elapsed();
//!     Ok((waited >= Duration::from_millis(20)).then_some(waited))
//! })?;
//! assert!(waited >= Duration::from_millis(20));
//! # Ok(()) }
//! ```

use std::{
    fmt, thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Result};

/// The longest pause between two checks of [`eventually`].
pub const POLL_EVERY: Duration = Duration::from_millis(50);
/// The first pause: a condition that holds almost at once is seen almost at once; the
/// pause doubles up to the interval after that.
const FIRST_PAUSE: Duration = Duration::from_millis(1);

/// What a check returns when its condition holds: `true`, or `Some(value)`.
pub trait Ready {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// `Some` when the condition holds.
    fn ready(self) -> Option<Self::Value>;
}

impl Ready for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Ready for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// An error that ends [`eventually`] at once (made by [`give_up`]).
#[derive(Debug)]
pub struct GiveUp(pub anyhow::Error);

impl fmt::Display for GiveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for GiveUp {}

/// Marks `err` as final: the check that returns it ends [`eventually`] with `err`
/// instead of being asked again.
pub fn give_up(err: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(GiveUp(err.into()))
}

/// Polls `check` every [`POLL_EVERY`] at most (sooner at first) until its condition
/// holds, for at most `timeout` (always at least once); returns the check's value.
/// After `timeout`, fails with the last check's error (or saying it never held).
pub fn eventually<R: Ready>(
    timeout: Duration,
    check: impl FnMut() -> Result<R>,
) -> Result<R::Value> {
    eventually_every(timeout, POLL_EVERY, check)
}

/// [`eventually`] with pauses of at most `every`: for checks that are costly (a
/// scrape of a busy daemon, a ping) or conditions that change slowly.
pub fn eventually_every<R: Ready>(
    timeout: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<R>,
) -> Result<R::Value> {
    let start = Instant::now();
    let mut pause = FIRST_PAUSE.min(every);
    let mut checks = 0u32;
    loop {
        checks += 1;
        let last = match check() {
            Ok(r) => match r.ready() {
                Some(value) => return Ok(value),
                None => None,
            },
            Err(e) => match e.downcast::<GiveUp>() {
                Ok(GiveUp(e)) => return Err(e),
                Err(e) => Some(e),
            },
        };
        let waited = start.elapsed();
        if waited >= timeout {
            let why = format!("still not so after {waited:.1?} ({checks} checks)");
            return Err(match last {
                Some(e) => e.context(why),
                None => anyhow!(why),
            });
        }
        thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(every);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use anyhow::{bail, ensure};

    use super::*;

    #[test]
    fn eventually_returns_the_value_once_the_check_holds() {
        let n = Cell::new(0);
        let got = eventually(Duration::from_secs(5), || {
            n.set(n.get() + 1);
            ensure!(n.get() >= 3, "only {} checks", n.get());
            Ok(Some(n.get() * 10))
        })
        .expect("holds at the third check");
        assert_eq!((got, n.get()), (30, 3));
        eventually(Duration::ZERO, || Ok(true)).expect("a check that holds at once");
    }

    #[test]
    fn eventually_fails_after_the_timeout_with_the_last_error() {
        let n = Cell::new(0);
        let start = Instant::now();
        let err = eventually(Duration::from_millis(100), || -> Result<bool> {
            n.set(n.get() + 1);
            bail!("not yet at check {}", n.get())
        })
        .expect_err("never holds");
        assert!(start.elapsed() >= Duration::from_millis(100));
        let shown = format!("{err:#}");
        assert!(
            shown.starts_with("still not so after")
                && shown.ends_with(&format!("check {}", n.get())),
            "{shown}"
        );
        assert!(n.get() >= 3, "{} checks", n.get());
        let err = eventually(Duration::ZERO, || Ok(None::<u8>)).expect_err("never holds");
        assert!(format!("{err:#}").contains("(1 checks)"), "{err:#}");
    }

    #[test]
    fn a_check_that_gives_up_ends_the_wait_at_once() {
        let n = Cell::new(0);
        let err = eventually(Duration::from_secs(30), || -> Result<bool> {
            n.set(n.get() + 1);
            Err(give_up(anyhow!("the process exited")).context("waiting for its log"))
        })
        .expect_err("gave up");
        assert_eq!(n.get(), 1);
        assert_eq!(format!("{err:#}"), "the process exited");
    }
}
