//! Running the workspace's commands with clear errors: shared by xtask (which must not
//! link the daemon) and the benchmarks, so both build and run things the same way.

use std::{
    ffi::OsString,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("warden-tests sits inside the workspace")
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

/// The stdout of a finished command that had to succeed; else an error naming `what`
/// with its exit status and stderr.
pub fn succeeded(what: &str, out: std::process::Output) -> Result<String> {
    if !out.status.success() {
        bail!(
            "{what}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cargo that runs the caller (`CARGO` is set by `cargo run`), so nested builds use
/// the same toolchain; plain `cargo` from PATH otherwise. Runs in the workspace root.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root());
    cmd
}

/// `cargo build` arguments for the daemon and the lab's tools (the WAN delay line, the
/// detection-latency harness) that the demo, the tests and the benches run; `cargo
/// test` of a package does not build another package's binaries.
pub const BUILD_DAEMON_AND_TOOLS: [&str; 6] = [
    "build",
    "--package",
    "warden",
    "--package",
    "warden-tests",
    "--bins",
];

/// Builds the daemon and the lab's tools ([`BUILD_DAEMON_AND_TOOLS`]).
pub fn cargo_build(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(BUILD_DAEMON_AND_TOOLS);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}
