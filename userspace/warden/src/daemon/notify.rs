//! systemd's service notification protocol (sd_notify(3)), written here in a few lines
//! rather than linking libsystemd: one datagram of `KEY=VALUE` lines to the unix socket
//! named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace).
//!
//! `READY=1` is sent once the first policy is enforced (programs attached, policy and
//! suspensions written, the API listener bound), so `systemctl start` and units ordered
//! after Warden wait for enforcement, not for a process to exist. With `WatchdogSec=`,
//! `WATCHDOG=1` is sent every half period while the enforcement owner answers; a daemon
//! wedged on it stops pinging and systemd restarts it (the pins keep enforcing).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::time::Duration;

use super::Daemon;

/// Sends `state` to systemd. `Ok(false)`: not run under a notifying service manager.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// Tells systemd the daemon is ready; a failure is logged (the unit's start then times
/// out and says so), never fatal to enforcement.
pub fn ready(generation: u64) {
    let state = format!(
        "READY=1\nSTATUS=enforcing policy generation {generation}\nMAINPID={}",
        std::process::id()
    );
    match notify(&state) {
        Ok(true) => tracing::info!(generation, "told systemd: ready"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "cannot send READY=1 to NOTIFY_SOCKET"),
    }
}

/// Tells systemd the daemon is stopping (best effort).
pub fn stopping() {
    if let Err(e) = notify("STOPPING=1") {
        tracing::warn!(error = %e, "cannot send STOPPING=1 to NOTIFY_SOCKET");
    }
}

/// The watchdog period systemd asked for (`WATCHDOG_USEC`, for this process).
pub fn watchdog_period() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the watchdog every half `period` for as long as the enforcement owner can be
/// taken within that half period.
pub(super) async fn watchdog(daemon: Arc<Daemon>, period: Duration) {
    let half = period / 2;
    let mut tick = tokio::time::interval(half);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let alive = tokio::task::spawn_blocking(move || drop(d.lock_enforcement()));
        match tokio::time::timeout(half, alive).await {
            Ok(Ok(())) => {
                if let Err(e) = notify("WATCHDOG=1") {
                    tracing::warn!(error = %e, "cannot send WATCHDOG=1 to NOTIFY_SOCKET");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "watchdog check panicked; not pinging"),
            Err(_) => tracing::error!(
                waited_ms = half.as_millis() as u64,
                "enforcement owner busy past half the watchdog period; not pinging"
            ),
        }
    }
}
