//! Small helpers shared by the tasks: running commands with clear errors.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

/// Runs a command to completion, failing with the command line when it fails.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Runs a command with its output captured and returns stdout; a failure names the
/// command and carries its stderr. Stdin is closed: nothing here may wait for a terminal.
pub fn capture(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a probe command (one that may legitimately be missing or fail) and returns its
/// output, or `None` when it could not be started at all.
pub fn probe(cmd: &mut Command) -> Option<Output> {
    cmd.stdin(Stdio::null()).output().ok()
}

/// The cargo that runs this task (`CARGO` is set by `cargo run`), so nested builds use
/// the same toolchain; plain `cargo` from PATH otherwise.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo build` of the daemon and of the lab's tools (the WAN delay line) that the
/// demo and the tests run.
pub fn cargo_build(release: bool) -> Result<()> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root()).args([
        "build",
        "--package",
        "warden",
        "--package",
        "warden-tests",
        "--bins",
    ]);

    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}
