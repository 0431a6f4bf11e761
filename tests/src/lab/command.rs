//! Running the lab's commands: with stdin closed, output captured and a deadline at which
//! the command's whole process group is killed; errors name the command and its output.

use std::{
    io::Read,
    os::unix::process::CommandExt as _,
    process::{Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::wait::{eventually_every, give_up};

/// How long reader threads may take to drain a finished command's pipes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Error messages carry at most this much of a command's output.
const OUTPUT_TAIL: usize = 2000;

pub(super) fn ip_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    cmd
}

/// Runs a command with stdin closed and output captured, killing its process group at
/// `timeout`. Returns the output whatever the exit status.
pub(super) fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<Output> {
    let shown = show(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().with_context(|| format!("starting `{shown}`"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let finished = eventually_every(timeout, Duration::from_millis(20), || {
        child
            .try_wait()
            .with_context(|| format!("waiting for `{shown}`"))
            .map_err(give_up)
    });
    if finished.is_err() {
        // SAFETY: killpg only sends a signal; our child is not reaped yet, so its id
        // (= its group id) cannot have been reused.
        unsafe { libc::killpg(child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = child.wait();
    }
    let stdout = stdout.recv_timeout(DRAIN_TIMEOUT).unwrap_or_default();
    let stderr = stderr.recv_timeout(DRAIN_TIMEOUT).unwrap_or_default();
    let status = finished.with_context(|| {
        format!(
            "`{shown}` did not finish within {timeout:?} and was killed{}",
            describe_output(&stdout, &stderr)
        )
    })?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// [`run_bounded`], failing on a non-zero exit.
pub(super) fn run_checked(cmd: Command, timeout: Duration) -> Result<Output> {
    let shown = show(&cmd);
    let out = run_bounded(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}){}",
            out.status,
            describe_output(&out.stdout, &out.stderr)
        );
    }
    Ok(out)
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn describe_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::new();
    for (name, bytes) in [("stderr", stderr), ("stdout", stdout)] {
        let s = String::from_utf8_lossy(bytes);
        if !s.trim().is_empty() {
            text.push_str(&format!("\n{name}: {}", tail(s.trim())));
        }
    }
    text
}

pub(super) fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

pub(super) fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
