//! The API's connections: accepted, admitted, timed and closed here rather than by
//! `axum::serve`, which has neither a header-read nor an idle timeout nor a connection
//! cap. Under it a client could hold a descriptor and a task for as long as it liked,
//! and 1,100 idle connections took every descriptor of a daemon with the default limit
//! of 1,024 (the counter sampler then failed with `Too many open files` and `warden
//! status` timed out).
//!
//! - Admission ([`Admission`]): at most `max_connections` open at once, and
//!   `max_connections_per_source` from one address (an IPv6 client by its /64, which one
//!   host can fill with addresses). The last `reserved_connections` are kept for loopback
//!   and `daemon.management` clients, which have no per-address cap, so an operator's
//!   `warden status` or `warden suspend` gets in while others hold the rest. A connection
//!   over a cap gets a fixed `503` with a JSON error and `Connection: close`, written
//!   straight to the fresh socket (no parse, no task), and is closed; over HTTPS it is
//!   closed unanswered, since only a TLS handshake could carry an answer.
//! - Timeouts ([`Activity`]): each connection's task follows what its connection does
//!   and closes it at the first deadline that passes: `idle_timeout` with no request
//!   under way, `header_timeout` from a request's first byte to the end of its header
//!   (a trickle of bytes does not extend it), `body_timeout` from the header to the end
//!   of the body, and `idle_timeout` again while the client takes no byte of a response.
//!   The handler's own work has no deadline: it is the daemon's, not the client's.
//! - Descriptors: [`raise_fd_limit`] at start, and [`caps`] keeps the connection cap
//!   [`FD_HEADROOM`] descriptors below the limit, for the maps, SQLite and the rest.
//!
//! Every refusal and every close for a timeout is counted ([`ConnMetrics`]).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use warden_policy::ApiLimits;

use crate::metrics::http::ConnFigures;

mod connection;

pub use connection::Timeouts;
use connection::{drive, Activity};

/// Descriptors kept free of API connections for everything else the daemon opens while
/// it runs: BPF maps, programs and links, SQLite and its journal, the events log,
/// webhook deliveries, the listener itself.
pub const FD_HEADROOM: u64 = 256;

/// TLS handshakes under way at once; a connection beyond is closed unread (a handshake
/// costs CPU, so this stays well below the connection cap).
const MAX_HANDSHAKES: usize = 256;

/// How long a shutdown waits for requests under way before it drops their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The API socket's listen backlog: connections the kernel completes while the accept
/// loop catches up. When it is full the kernel drops new SYNs, everyone's alike, and a
/// client retries a second later, so it is long enough for a flood arriving faster
/// than a busy daemon accepts (the kernel caps it at net.core.somaxconn, 4096 by
/// default).
const BACKLOG: u32 = 4096;

/// Refusals are logged at most this often (each one is counted).
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Why a connection was refused at accept, in the order of [`REFUSED_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `max_connections` open (for clients without the reserve: all but the reserve).
    MaxConnections = 0,
    /// `max_connections_per_source` open from this client's address.
    PerSource = 1,
    /// [`MAX_HANDSHAKES`] TLS handshakes under way.
    Handshakes = 2,
}

/// The `reason` label of `warden_api_connections_refused_total`.
pub const REFUSED_REASONS: [&str; 3] = [
    "max_connections",
    "max_connections_per_source",
    "max_handshakes",
];

/// Why the server closed a connection, in the order of [`CLOSED_REASONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No request under way for `idle_timeout`.
    Idle = 0,
    /// A request's header not complete `header_timeout` after its first byte.
    Header = 1,
    /// A request's body not complete `body_timeout` after its header.
    Body = 2,
    /// The client took no byte of a response for `idle_timeout`.
    Send = 3,
    /// The TLS handshake not done `header_timeout` after the accept.
    Handshake = 4,
}

/// The `reason` label of `warden_api_connections_closed_total`.
pub const CLOSED_REASONS: [&str; 5] = [
    "idle_timeout",
    "header_timeout",
    "body_timeout",
    "send_timeout",
    "handshake_timeout",
];

/// TLS handshake outcomes, in the order of [`TLS_OUTCOMES`].
#[derive(Debug, Clone, Copy)]
enum Handshake {
    Ok = 0,
    Failed = 1,
    TimedOut = 2,
    /// Closed unread: [`MAX_HANDSHAKES`] were under way.
    Refused = 3,
}

const TLS_OUTCOMES: [&str; 4] = ["ok", "failed", "timeout", "refused"];

/// What happened to the API's connections.
#[derive(Debug, Default)]
pub struct ConnMetrics {
    open: AtomicU64,
    refused: [AtomicU64; REFUSED_REASONS.len()],
    closed: [AtomicU64; CLOSED_REASONS.len()],
    tls: [AtomicU64; TLS_OUTCOMES.len()],
    tls_enabled: AtomicBool,
}

impl ConnMetrics {
    fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn closed(&self, why: Closed) {
        self.closed[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn handshake(&self, outcome: Handshake) {
        self.tls[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts, for `/metrics` ([`crate::metrics::http::render_connections`]).
    pub fn figures(&self) -> ConnFigures {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        let labelled = |names: &[&'static str], counts: &[AtomicU64]| {
            names.iter().copied().zip(counts.iter().map(get)).collect()
        };
        ConnFigures {
            open: get(&self.open),
            refused: labelled(&REFUSED_REASONS, &self.refused),
            closed: labelled(&CLOSED_REASONS, &self.closed),
            tls: self
                .tls_enabled
                .load(Ordering::Relaxed)
                .then(|| labelled(&TLS_OUTCOMES, &self.tls)),
            max_handshakes: MAX_HANDSHAKES,
        }
    }
}

/// Raises this process's soft limit on open descriptors to its hard limit (the soft
/// limit stays 1,024 under systemd for programs that still use `select`; this one does
/// not) and returns the limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// The API's listening socket on `addr`, with [`BACKLOG`].
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As TcpListener::bind: a restarted daemon binds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The soft limit on open descriptors now, and how many are open.
fn fd_usage() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let open = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok((limit.rlim_cur, open))
}

/// The connection caps in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Connections open at once, from everyone.
    pub total: usize,
    /// Connections open at once from one source without the reserve.
    pub per_source: usize,
    /// The part of `total` only loopback and management sources may use.
    pub reserved: usize,
}

/// The caps of `limits` with `fd_limit` descriptors allowed and `fds_open` in use: the
/// configured ones when they fit [`FD_HEADROOM`] below the limit, else lowered to fit,
/// with the warning to log.
pub fn caps(limits: &ApiLimits, fd_limit: u64, fds_open: u64) -> (Caps, Option<String>) {
    let wanted = Caps {
        total: limits.max_connections,
        per_source: limits.max_connections_per_source,
        reserved: limits.reserved_connections,
    };
    let usable = fd_limit.saturating_sub(fds_open.saturating_add(FD_HEADROOM));
    let usable = usize::try_from(usable).unwrap_or(usize::MAX);
    if wanted.total <= usable {
        return (wanted, None);
    }
    let total = usable.max(1);
    let lowered = Caps {
        total,
        per_source: wanted.per_source.min(total),
        reserved: wanted.reserved.min(total / 2),
    };
    let warning = format!(
        "daemon.api_limits.max_connections is {} but the descriptor limit is {fd_limit} with \
         {fds_open} open and {FD_HEADROOM} kept for the daemon: serving at most {} API \
         connections ({} reserved); raise LimitNOFILE to allow more",
        wanted.total, lowered.total, lowered.reserved
    );
    (lowered, Some(warning))
}

/// The address a client is counted by: IPv4 (also when it arrives IPv4-mapped on an
/// IPv6 socket) as it is, IPv6 by its /64, the least a host gets.
fn source_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// `ip` with an IPv4-mapped IPv6 address turned back into IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Default)]
struct Counts {
    /// Every open connection.
    total: usize,
    /// Those of sources without the reserve.
    others: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Who may open one more connection: the counts of open connections, and the caps.
#[derive(Debug)]
pub struct Admission {
    caps: Caps,
    counts: Mutex<Counts>,
    /// Keeps the open-connections gauge current.
    metrics: Arc<ConnMetrics>,
}

/// An admitted connection's place, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Arc<Admission>,
    /// The source it counts against, or `None` for a reserve source.
    source: Option<IpAddr>,
}

impl Admission {
    pub fn new(caps: Caps, metrics: Arc<ConnMetrics>) -> Arc<Admission> {
        Arc::new(Admission {
            caps,
            counts: Mutex::default(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Counting never panics midway; a poisoned lock still holds usable counts.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one more connection from `peer`, or says which cap it met. Everyone
    /// together holds at most `total`; sources without the reserve at most `total -
    /// reserved` of them, and `per_source` each (checked first: it names the client as
    /// the cause). A `reserve` source (loopback or management) has no per-address cap
    /// and its connections do not count against the others' share, so the reserve is
    /// there for it however the others behave.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, reserve: bool) -> Result<Slot, Refused> {
        let mut counts = self.lock();
        let source = if reserve {
            if counts.total >= self.caps.total {
                return Err(Refused::MaxConnections);
            }
            None
        } else {
            let key = source_key(peer);
            if counts.by_source.get(&key).copied().unwrap_or(0) >= self.caps.per_source {
                return Err(Refused::PerSource);
            }
            if counts.others >= self.caps.total.saturating_sub(self.caps.reserved)
                || counts.total >= self.caps.total
            {
                return Err(Refused::MaxConnections);
            }
            *counts.by_source.entry(key).or_default() += 1;
            counts.others += 1;
            Some(key)
        };
        counts.total += 1;
        self.metrics.open.fetch_add(1, Ordering::Relaxed);
        Ok(Slot {
            admission: self.clone(),
            source,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(key) = self.source {
            counts.others = counts.others.saturating_sub(1);
            if let Some(n) = counts.by_source.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.by_source.remove(&key);
                }
            }
        }
        self.admission.metrics.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The fixed answers to a refused plain-HTTP connection, one per reason.
struct Refusals([Vec<u8>; REFUSED_REASONS.len()]);

impl Refusals {
    fn new(caps: &Caps) -> Refusals {
        let answer = |message: String| {
            let body = serde_json::json!({ "error": message }).to_string();
            format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\nretry-after: 5\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        Refusals([
            answer(format!(
                "too many API connections (max_connections {}, {} of them reserved for \
                 loopback and daemon.management clients); try again later",
                caps.total, caps.reserved
            )),
            answer(format!(
                "too many API connections from this address (max_connections_per_source {}); \
                 close some or try again later",
                caps.per_source
            )),
            answer("too many TLS handshakes under way; try again later".to_owned()),
        ])
    }

    /// Answers `stream` with the 503 for `why`, without waiting: a fresh socket's send
    /// buffer takes it whole. What the client already sent is read first (a few KiB at
    /// most), since closing a socket with unread bytes resets it, and a reset can beat
    /// the answer to the client.
    fn answer(&self, stream: &TcpStream, why: Refused) {
        let mut sink = [0u8; 4096];
        for _ in 0..4 {
            match stream.try_read(&mut sink) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        let _ = stream.try_write(&self.0[why as usize]);
    }
}

/// How [`serve`] runs: the caps and timeouts, TLS, and who may use the reserve.
pub struct Config {
    pub caps: Caps,
    pub timeouts: Timeouts,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Whether a (canonical) client address may use the reserve: loopback and
    /// `daemon.management`, read for every connection so a policy apply takes effect.
    pub reserve: Box<dyn Fn(IpAddr) -> bool + Send + Sync>,
}

/// Serves `app` on `tcp` (HTTPS only with `config.tls`) until `shutdown` completes, then
/// waits for requests under way (at most [`SHUTDOWN_GRACE`]).
pub async fn serve(
    tcp: TcpListener,
    app: Router,
    config: Config,
    metrics: Arc<ConnMetrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let admission = Admission::new(config.caps, metrics.clone());
    let refusals = Refusals::new(&config.caps);
    let tls = config.tls.map(|c| {
        metrics.tls_enabled.store(true, Ordering::Relaxed);
        (
            tokio_rustls::TlsAcceptor::from(c),
            Arc::new(Semaphore::new(MAX_HANDSHAKES)),
        )
    });
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Refusals and accept errors can come by the thousand a second: logged at most
    // once a minute (each refusal is counted).
    let mut quiet_until: Option<Instant> = None;
    let mut may_log = move || {
        let now = Instant::now();
        let due = quiet_until.is_none_or(|until| now >= until);
        if due {
            quiet_until = Some(now + WARN_EVERY);
        }
        due
    };
    tokio::pin!(shutdown);
    loop {
        // Accepting comes before reaping ended tasks: under a flood the backlog must
        // drain first (the ended tasks only hold their results).
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = tcp.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of descriptors and the like: wait, then accept again.
                        if may_log() {
                            tracing::warn!(error = %e, "accepting an API connection failed (logged at most once a minute)");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let ip = canonical(peer.ip());
                let refused = match admission.admit(ip, (config.reserve)(ip)) {
                    Ok(slot) => match &tls {
                        None => {
                            tasks.spawn(connection(stream, peer, slot, None, app.clone(), config.timeouts, metrics.clone(), stopped.clone()));
                            None
                        }
                        Some((acceptor, handshakes)) => match handshakes.clone().try_acquire_owned() {
                            Ok(permit) => {
                                let tls = Some((acceptor.clone(), permit));
                                tasks.spawn(connection(stream, peer, slot, tls, app.clone(), config.timeouts, metrics.clone(), stopped.clone()));
                                None
                            }
                            Err(_) => {
                                metrics.handshake(Handshake::Refused);
                                Some(Refused::Handshakes)
                            }
                        },
                    },
                    Err(why) => {
                        if tls.is_none() {
                            refusals.answer(&stream, why);
                        }
                        Some(why)
                    }
                };
                if let Some(why) = refused {
                    metrics.refused(why);
                    if may_log() {
                        tracing::warn!(%peer, reason = REFUSED_REASONS[why as usize], "API connection refused (logged at most once a minute; counted in warden_api_connections_refused_total)");
                    }
                }
            }
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = ended {
                    tracing::error!(error = %e, "an API connection task failed");
                }
            }
        }
    }
    drop(tcp);
    let _ = stop.send(true);
    let open = admission.open();
    if open > 0 {
        tracing::info!(
            connections = open,
            "closing idle API connections; answering the requests under way"
        );
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = admission.open(),
            "API connections still open after {SHUTDOWN_GRACE:?}; closing them"
        );
        tasks.shutdown().await;
    }
}

/// One admitted connection, from the TLS handshake (with `tls`) to its end; holds its
/// `slot` until then.
#[allow(clippy::too_many_arguments)] // The connection's parts, each used once.
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    slot: Slot,
    tls: Option<(tokio_rustls::TlsAcceptor, tokio::sync::OwnedSemaphorePermit)>,
    app: Router,
    timeouts: Timeouts,
    metrics: Arc<ConnMetrics>,
    mut stopped: watch::Receiver<bool>,
) {
    let _slot = slot;
    // Responses are written whole; without Nagle a small one is not held back.
    let _ = stream.set_nodelay(true);
    let closed = match tls {
        None => {
            let activity = Arc::new(Activity::new(Instant::now()));
            drive(stream, app, activity, timeouts, stopped).await
        }
        Some((acceptor, permit)) => {
            let handshake = tokio::select! {
                shaken = tokio::time::timeout(timeouts.header, acceptor.accept(stream)) => shaken,
                // A shutdown ends handshakes at once: no request is under way yet.
                _ = stopped.wait_for(|stop| *stop) => return,
            };
            drop(permit);
            match handshake {
                Ok(Ok(stream)) => {
                    metrics.handshake(Handshake::Ok);
                    let activity = Arc::new(Activity::new(Instant::now()));
                    drive(stream, app, activity, timeouts, stopped).await
                }
                Ok(Err(e)) => {
                    metrics.handshake(Handshake::Failed);
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    metrics.handshake(Handshake::TimedOut);
                    Some(Closed::Handshake)
                }
            }
        }
    };
    if let Some(why) = closed {
        metrics.closed(why);
        tracing::debug!(%peer, reason = CLOSED_REASONS[why as usize], "API connection closed");
    }
}

/// The caps of `limits` for this process's descriptor limit, logging a lowering.
pub fn caps_for_process(limits: &ApiLimits) -> Caps {
    match fd_usage() {
        Ok((fd_limit, fds_open)) => {
            let (caps, warning) = caps(limits, fd_limit, fds_open);
            if let Some(warning) = warning {
                tracing::warn!("{warning}");
            }
            caps
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; API connection caps as configured");
            caps(limits, u64::MAX, 0).0
        }
    }
}

#[cfg(test)]
mod tests;
