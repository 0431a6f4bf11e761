//! `cargo xtask bench` and `cargo xtask bench-report`: set the machine up, then run the
//! benchmark crate (`tests/bench`, binary `warden-bench`). The benchmarks embed the eBPF
//! object, so they are a crate of their own that xtask builds only after setup.

use anyhow::{Context as _, Result};

use crate::{setup, util};

/// Runs `warden-bench TASK ARGS...` (a debug build: it runs the parts whose figures a
/// debug build would distort in a release build of itself) after setup.
pub fn run(task: &str, args: &[String]) -> Result<()> {
    setup::run()?;
    let mut cmd = util::cargo();
    cmd.args(["run", "--quiet", "--package", "warden-bench", "--", task])
        .args(args);
    util::run(&mut cmd).with_context(|| format!("warden-bench {task}"))
}
