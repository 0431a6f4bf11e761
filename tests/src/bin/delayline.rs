//! `delayline IF_A IF_B DELAY_MS`: forwards every frame that arrives on IF_A out of IF_B
//! and back, each DELAY_MS milliseconds later, unchanged: a wire with a WAN's delay for
//! the namespace lab (see `warden_tests::delayline`). Runs until SIGTERM or SIGINT, then
//! prints what each direction forwarded and dropped to stderr.

use std::{mem, process::ExitCode, time::Duration};

use anyhow::{bail, Context as _, Result};
use warden_tests::delayline::{Config, DelayLine, READY};

const USAGE: &str = "usage: delayline IF_A IF_B DELAY_MS";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("delayline: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [if_a, if_b, delay_ms] = args.as_slice() else {
        bail!("{USAGE}");
    };
    let ms: f64 = delay_ms
        .parse()
        .ok()
        .filter(|ms: &f64| ms.is_finite() && (0.0..=10_000.0).contains(ms))
        .with_context(|| {
            format!("DELAY_MS {delay_ms:?} is not a number of milliseconds (0 to 10000)\n{USAGE}")
        })?;
    let config = Config::new(if_a, if_b, Duration::from_secs_f64(ms / 1000.0));

    // Blocked before the threads start, so they inherit the mask and the signals wait
    // for sigtimedwait below instead of killing the process with frames in flight.
    let signals = termination_signals()?;
    let line = DelayLine::start(&config)?;
    eprintln!(
        "delayline {if_a} <-> {if_b}: {delay_ms} ms each way, queues of {} frames or {} MiB",
        config.queue_frames,
        config.queue_bytes >> 20
    );
    eprintln!("{READY}");

    loop {
        if let Some(signal) = wait_signal(&signals, Duration::from_millis(200)) {
            eprintln!("delayline: signal {signal}, stopping");
            break;
        }
        if line.failed() {
            break;
        }
    }
    let stats = line.stop()?;
    for direction in &stats {
        eprintln!("delayline {direction}");
    }
    Ok(())
}

/// SIGTERM and SIGINT, blocked in this thread and every thread started after it.
fn termination_signals() -> Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { mem::zeroed() };
    // SAFETY: set is a valid sigset_t; the signal numbers are valid.
    let rc = unsafe {
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut())
    };
    if rc != 0 {
        bail!("blocking SIGTERM and SIGINT failed (error {rc})");
    }
    Ok(set)
}

/// A pending signal of `set`, waiting at most `timeout`.
fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: set and ts are valid; no siginfo is asked for.
    let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (signal > 0).then_some(signal)
}
