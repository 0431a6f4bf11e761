//! Running `tc` from iproute2: one command, a batch of them, or a listing read a line
//! at a time. Its own error messages are passed on with the command that failed.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
};

use crate::{DataplaneError, Result};

pub(super) fn tc_error(what: impl Into<String>, detail: impl Into<String>) -> DataplaneError {
    DataplaneError::Shaping {
        what: what.into(),
        detail: detail.into(),
    }
}

/// Runs `tc ARGS`, returning its standard output.
pub(super) fn tc(args: &[&str]) -> Result<String> {
    let out = Command::new("tc").args(args).output().map_err(|e| {
        tc_error(
            format!("running tc {}", args.join(" ")),
            format!("{e} (egress shaping needs tc from iproute2 on the PATH)"),
        )
    })?;
    if !out.status.success() {
        return Err(tc_error(
            format!("tc {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `commands` (one `tc` command line each, without `tc`) in one `tc -batch`.
pub(super) fn tc_batch(commands: &[String]) -> Result<()> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("tc")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tc_error(
                "running tc -batch",
                format!("{e} (egress shaping needs tc from iproute2 on the PATH)"),
            )
        })?;
    let text = commands.join("\n") + "\n";
    let written = child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(text.as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| tc_error("waiting for tc -batch", e.to_string()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        // tc names the failed line as "Command failed -:N".
        let failed = err
            .lines()
            .find_map(|l| l.trim().strip_prefix("Command failed -:"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .and_then(|n| commands.get(n.saturating_sub(1)))
            .map_or(String::new(), |c| format!(" (at `tc {c}`)"));
        return Err(tc_error(
            format!("tc -batch of {} commands{failed}", commands.len()),
            err.trim().to_string(),
        ));
    }
    if let Some(Err(e)) = written {
        return Err(tc_error("writing to tc -batch", e.to_string()));
    }
    Ok(())
}

/// Runs `tc ARGS`, handing each line of its output to `f` as it comes: nothing of a
/// long listing is held.
pub(super) fn tc_lines(args: &[&str], mut f: impl FnMut(&str)) -> Result<()> {
    let what = || format!("tc {}", args.join(" "));
    let mut child = Command::new("tc")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            tc_error(
                format!("running {}", what()),
                format!("{e} (egress shaping needs tc from iproute2 on the PATH)"),
            )
        })?;
    let mut read = Ok(());
    if let Some(stdout) = child.stdout.take() {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => f(line.trim_end()),
                Err(e) => {
                    read = Err(tc_error(format!("reading {}", what()), e.to_string()));
                    break;
                }
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| tc_error(format!("waiting for {}", what()), e.to_string()))?;
    if !out.status.success() {
        return Err(tc_error(
            what(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    read
}
