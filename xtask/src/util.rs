//! Small helpers shared by the tasks: running commands with clear errors (the common
//! ones are `warden_tests::cmd`'s, shared with the benchmarks).

use std::process::{Command, Output, Stdio};

pub use warden_tests::cmd::{capture, cargo, cargo_build, run, workspace_root};

/// Runs a probe command (one that may legitimately be missing or fail) and returns its
/// output, or `None` when it could not be started at all.
pub fn probe(cmd: &mut Command) -> Option<Output> {
    cmd.stdin(Stdio::null()).output().ok()
}
