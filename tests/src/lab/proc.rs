//! [`Proc`]: the guard of a background process started in a lab namespace, which kills
//! its process group on drop.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, ExitStatus},
    time::Duration,
};

use anyhow::{anyhow, Context as _, Result};

use super::{command::tail, STOP_GRACE};
use crate::wait::{eventually, give_up};

/// A background process started by [`Netns::spawn`](super::Netns::spawn). Dropping it sends SIGTERM to its
/// process group, then SIGKILL after a grace period.
#[derive(Debug)]
pub struct Proc {
    pub(super) child: Child,
    pub(super) shown: String,
    pub(super) log: PathBuf,
}

impl Proc {
    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has written so far.
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking on `{}`", self.shown))
    }

    /// Waits until its log contains `needle` (e.g. "Server listening"); fails if it
    /// exits first or `timeout` passes.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        eventually(timeout, || {
            if self.log().contains(needle) {
                return Ok(true);
            }
            if let Some(status) = self.try_wait().map_err(give_up)? {
                return Err(give_up(anyhow!("exited ({status})")));
            }
            Ok(false)
        })
        .with_context(|| {
            format!(
                "`{}` did not log {needle:?}; log:\n{}",
                self.shown,
                tail(&self.log())
            )
        })
    }

    /// Waits for it to exit on its own; kills it and fails after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Result<ExitStatus> {
        let exited = eventually(timeout, || self.try_wait().map_err(give_up));
        if exited.is_err() {
            self.terminate();
        }
        exited.with_context(|| {
            format!(
                "`{}` did not exit on its own and was killed; log:\n{}",
                self.shown,
                tail(&self.log())
            )
        })
    }

    /// Stops it: SIGTERM, then SIGKILL if it is still running after a grace period.
    pub fn stop(mut self) -> Result<ExitStatus> {
        self.terminate()
            .with_context(|| format!("stopping `{}`", self.shown))
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: killpg only sends a signal; the group leader is our unreaped child,
        // so the id cannot have been reused.
        unsafe { libc::killpg(pgid, libc::SIGTERM) };
        if let Ok(status) = eventually(STOP_GRACE, || {
            self.child.try_wait().context("waiting").map_err(give_up)
        }) {
            return Some(status);
        }
        // SAFETY: as above.
        unsafe { libc::killpg(pgid, libc::SIGKILL) };
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.terminate();
    }
}
