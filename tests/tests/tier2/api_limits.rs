//! The HTTP API under connection floods, on a real daemon (`daemon.api_limits` with
//! short timeouts): 5,000 idle and 1,000 slowloris connections from the outside host are
//! admitted or refused with a 503 exactly as the caps say, every admitted one is closed
//! by the server at its idle or header timeout, the management console still gets in,
//! and `GET /api/v1/status` from a fresh loopback client answers throughout. Also:
//! oversized bodies get 413, a stalled body is closed, the daemon stops promptly with
//! idle and half-sent connections open, and a daemon held to 1,024 descriptors lowers its
//! cap and keeps sampling and answering `warden status` and `warden suspend` under 1,100
//! connections (the failure measured before the API had limits).

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    lab::Netns,
    topology::{addr, outside, token, warden_binary, StandardLab},
    wait::{eventually, eventually_every},
};

/// `daemon.api_limits` of the flood test, and what the test expects from them.
const MAX_CONNECTIONS: usize = 3_000;
const PER_SOURCE: usize = 40;
const RESERVED: usize = 50;
const HEADER_TIMEOUT: Duration = Duration::from_secs(7);
const IDLE_TIMEOUT: Duration = Duration::from_secs(8);
const BODY_TIMEOUT: Duration = Duration::from_secs(3);

/// The flood: 6,000 connections, every sixth a slowloris, the first 1,000 from 10 heavy
/// sources (100 each, over the per-source cap), the rest from 200 light ones (25 each).
const FLOOD: usize = 6_000;
const HEAVY: usize = 1_000;
const HEAVY_SOURCES: usize = 10;
const LIGHT_SOURCES: usize = 200;
/// A slowloris sends one byte of its header this often.
const TRICKLE: Duration = Duration::from_secs(5);
const SLOW_HEADER: &[u8] = b"GET /api/v1/status HTTP/1.1\r\nHost: warden\r\n\r\n";

/// How late a close may come after its deadline on a busy shared machine, and how early
/// (clock reads on both sides).
const LATE: Duration = Duration::from_secs(3);
const EARLY: Duration = Duration::from_millis(50);

/// How often the fresh-client probe asks for the status, and the most it may take.
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_BOUND: Duration = Duration::from_secs(2);

/// The demo policy listening where the outside host reaches it, with `limits` as its
/// `daemon.api_limits`.
fn policy_with_limits(lab: &StandardLab, limits: &str) -> Result<String> {
    let text = lab.policy_text()?;
    let listen = "  listen: 127.0.0.1:9477\n";
    let anchor = "  open_metrics: true\n";
    ensure!(
        text.contains(listen) && text.contains(anchor),
        "configs/demo.yaml no longer has `{}` and `{}`",
        listen.trim(),
        anchor.trim()
    );
    Ok(text
        .replace(listen, "  listen: 0.0.0.0:9477\n")
        .replace(anchor, &format!("{anchor}  api_limits: {limits}\n")))
}

fn flood_limits() -> String {
    format!(
        "{{max_connections: {MAX_CONNECTIONS}, max_connections_per_source: {PER_SOURCE}, \
         reserved_connections: {RESERVED}, header_timeout: {}s, idle_timeout: {}s, \
         body_timeout: {}s}}",
        HEADER_TIMEOUT.as_secs(),
        IDLE_TIMEOUT.as_secs(),
        BODY_TIMEOUT.as_secs()
    )
}

/// The API as the outside host reaches it (the node's wan1 address).
fn api_outside() -> SocketAddrV4 {
    SocketAddrV4::new(
        addr::NODE_WAN1_V4.parse().expect("lab address"),
        warden_tests::topology::API
            .parse::<SocketAddr>()
            .expect("API address")
            .port(),
    )
}

/// Raises this process's soft descriptor limit to its hard limit (the daemon, started
/// after, inherits it) and checks it fits the flood.
fn raise_fd_limit(needed: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit only reads the struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    ensure!(
        limit.rlim_cur >= needed,
        "the descriptor limit is {} (hard); this test needs {needed}",
        limit.rlim_cur
    );
    Ok(())
}

/// Runs `f` on a thread that has joined network namespace `ns`: sockets it creates
/// belong there, whichever thread uses them later.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> JoinHandle<Result<T>> {
    let path = PathBuf::from("/run/netns").join(ns.name());
    std::thread::spawn(move || {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on this thread only; the descriptor is valid for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!(
                "setns({}): {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        f()
    })
}

fn joined<T>(handle: JoinHandle<Result<T>>) -> Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a test thread panicked"))?
}

/// A TCP connection from source address `src` to `dst`, with `connect` bounded by
/// `timeout`.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> Result<TcpStream> {
    // SAFETY: socket() has no memory arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket that nothing else owns; the stream closes it.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    ensure!(r == 0, "SO_SNDTIMEO: {}", std::io::Error::last_os_error());
    // The port is picked at connect, per destination: picking it at bind would search
    // for one free across every address, slower with each of the thousands held.
    let one: libc::c_int = 1;
    // SAFETY: `one` is a valid c_int for the duration of the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    ensure!(
        r == 0,
        "IP_BIND_ADDRESS_NO_PORT: {}",
        std::io::Error::last_os_error()
    );
    let local = sockaddr(SocketAddrV4::new(src, 0));
    // SAFETY: `local` is a valid sockaddr_in of `len` bytes for the call.
    if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) } != 0 {
        bail!("bind {src}: {}", std::io::Error::last_os_error());
    }
    let remote = sockaddr(dst);
    // SAFETY: `remote` is a valid sockaddr_in of `len` bytes for the call.
    if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) } != 0 {
        bail!(
            "connect {src} -> {dst}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(stream)
}

/// An answer read off a connection: what arrived and how the connection ended.
#[derive(Debug, Default)]
struct Answer {
    data: Vec<u8>,
    /// When and how it ended (`eof`, `reset`, or an error), if it did.
    ended: Option<(Instant, String)>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    fn status(&self) -> Option<u16> {
        let text = self.text();
        let rest = text.strip_prefix("HTTP/1.1 ")?;
        rest.get(..3)?.parse().ok()
    }

    fn body(&self) -> String {
        self.text()
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default()
    }

    /// Reads what is there without waiting (the stream is non-blocking).
    fn pump(&mut self, stream: &mut TcpStream, now: Instant) {
        let mut buf = [0u8; 4096];
        while self.ended.is_none() {
            match stream.read(&mut buf) {
                Ok(0) => self.ended = Some((now, "eof".into())),
                Ok(n) => self.data.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.ended = Some((now, "reset".into()))
                }
                Err(e) => self.ended = Some((now, format!("error: {e}"))),
            }
        }
    }
}

/// Sends `request` on `stream` and reads until the server closes or `timeout` passes.
fn exchange(stream: &mut TcpStream, request: &[u8], timeout: Duration) -> Result<Answer> {
    stream.write_all(request).context("sending the request")?;
    stream.set_nonblocking(true)?;
    let mut answer = Answer::default();
    let deadline = Instant::now() + timeout;
    while answer.ended.is_none() && Instant::now() < deadline {
        poll_readable(&[stream.as_raw_fd()], Duration::from_millis(20))?;
        answer.pump(stream, Instant::now());
    }
    Ok(answer)
}

/// Waits at most `wait` for any of `fds` to be readable (or closed); returns the
/// indexes of those that are.
fn poll_readable(fds: &[i32], wait: Duration) -> Result<Vec<usize>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `polled` is a valid array of `len` pollfd structs for the call.
    let n = unsafe {
        libc::poll(
            polled.as_mut_ptr(),
            polled.len() as libc::nfds_t,
            wait.as_millis() as libc::c_int,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == ErrorKind::Interrupted {
            return Ok(Vec::new());
        }
        bail!("poll: {e}");
    }
    Ok(polled
        .iter()
        .enumerate()
        .filter(|(_, p)| p.revents != 0)
        .map(|(i, _)| i)
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Slowloris,
}

/// What the caps make of a connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    PerSource,
    MaxConnections,
}

/// Connection `i` of the flood: its kind and source (an index into the live outside
/// hosts).
fn plan(i: usize) -> (Kind, usize) {
    let kind = if i % 6 == 5 {
        Kind::Slowloris
    } else {
        Kind::Idle
    };
    let source = if i < HEAVY {
        i % HEAVY_SOURCES
    } else {
        HEAVY_SOURCES + (i - HEAVY) % LIGHT_SOURCES
    };
    (kind, source)
}

fn source_addr(source: usize) -> Ipv4Addr {
    outside::live_v4(1 + source as u32)
}

/// The caps' verdicts on the flood opened in order with none closed meanwhile (the
/// server admits in accept order, which is connect order from one thread).
fn model() -> Vec<Outcome> {
    let mut per_source = vec![0usize; HEAVY_SOURCES + LIGHT_SOURCES];
    let mut others = 0;
    (0..FLOOD)
        .map(|i| {
            let (_, source) = plan(i);
            if per_source[source] >= PER_SOURCE {
                Outcome::PerSource
            } else if others >= MAX_CONNECTIONS - RESERVED {
                Outcome::MaxConnections
            } else {
                per_source[source] += 1;
                others += 1;
                Outcome::Accepted
            }
        })
        .collect()
}

/// One flood connection as the outside host saw it.
#[derive(Debug)]
struct Seen {
    kind: Kind,
    source: usize,
    connected: Instant,
    first_byte: Option<Instant>,
    sent: usize,
    answer: Answer,
}

/// What the flood thread saw.
struct FloodReport {
    conns: Vec<Seen>,
    opened_in: Duration,
    /// A new outside source while the others' share is taken.
    stranger: Answer,
    /// The management console (198.18.3.253) at the same time.
    console: Answer,
}

/// Opens the flood from the outside host, asks as a stranger and as the console while it
/// holds, trickles the slowloris bytes, and reads every connection until the server
/// closes it (bounded).
fn flood() -> Result<FloodReport> {
    let api = api_outside();
    let started = Instant::now();
    let mut streams = Vec::with_capacity(FLOOD);
    let mut conns = Vec::with_capacity(FLOOD);
    let mut slowest = (Duration::ZERO, 0);
    for i in 0..FLOOD {
        let (kind, source) = plan(i);
        let t = Instant::now();
        let stream = connect_from(source_addr(source), api, Duration::from_secs(5))
            .with_context(|| format!("flood connection {i}"))?;
        if t.elapsed() > slowest.0 {
            slowest = (t.elapsed(), i);
        }
        stream.set_nonblocking(true)?;
        streams.push(stream);
        conns.push(Seen {
            kind,
            source,
            connected: Instant::now(),
            first_byte: None,
            sent: 0,
            answer: Answer::default(),
        });
    }
    let opened_in = started.elapsed();
    eprintln!(
        "flood: {FLOOD} connections opened in {opened_in:?} (slowest connect {:?}, #{})",
        slowest.0, slowest.1
    );

    let pump_all = |streams: &mut [TcpStream], conns: &mut [Seen], wait: Duration| -> Result<()> {
        let open: Vec<usize> = (0..conns.len())
            .filter(|&i| conns[i].answer.ended.is_none())
            .collect();
        let fds: Vec<i32> = open.iter().map(|&i| streams[i].as_raw_fd()).collect();
        let ready = poll_readable(&fds, wait)?;
        let now = Instant::now();
        for k in ready {
            let i = open[k];
            conns[i].answer.pump(&mut streams[i], now);
        }
        Ok(())
    };
    // Read the refusals (their close times are judged below) until every connection the
    // caps refuse has its answer; at most LATE, and the checks below name any that did
    // not get one. The check itself waits in poll(2), so no pause between checks.
    let refused: Vec<usize> = (0..FLOOD)
        .zip(model())
        .filter(|(_, o)| *o != Outcome::Accepted)
        .map(|(i, _)| i)
        .collect();
    let _ = eventually_every(LATE, Duration::from_millis(1), || {
        pump_all(&mut streams, &mut conns, Duration::from_millis(20))?;
        Ok(refused.iter().all(|&i| conns[i].answer.ended.is_some()))
    });

    // While the others' share is taken: a new outside source is refused, the console
    // (a management address) gets in.
    let request = b"GET /api/v1/status HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n";
    let stranger_src = outside::live_v4(1 + (HEAVY_SOURCES + LIGHT_SOURCES + 50) as u32);
    let mut s = connect_from(stranger_src, api, Duration::from_secs(5))?;
    let stranger = exchange(&mut s, request, Duration::from_secs(10))?;
    let console_src: Ipv4Addr = addr::CONSOLE_V4.parse()?;
    let mut c = connect_from(console_src, api, Duration::from_secs(5))?;
    let console = exchange(&mut c, request, Duration::from_secs(10))?;

    // The slowloris start their headers, a byte every TRICKLE.
    let deadline = Instant::now() + IDLE_TIMEOUT + HEADER_TIMEOUT + Duration::from_secs(20);
    loop {
        let now = Instant::now();
        for (i, c) in conns.iter_mut().enumerate() {
            if c.kind != Kind::Slowloris || c.answer.ended.is_some() || !c.answer.data.is_empty() {
                continue;
            }
            let due = c.first_byte.map_or(now, |f| f + TRICKLE * c.sent as u32);
            if now >= due && c.sent < SLOW_HEADER.len() {
                // A refused write (the server closed) shows on the read side.
                if streams[i].write(&SLOW_HEADER[c.sent..=c.sent]).is_ok() {
                    c.first_byte.get_or_insert(now);
                    c.sent += 1;
                }
            }
        }
        pump_all(&mut streams, &mut conns, Duration::from_millis(20))?;
        if conns.iter().all(|c| c.answer.ended.is_some()) || Instant::now() >= deadline {
            break;
        }
    }
    Ok(FloodReport {
        conns,
        opened_in,
        stranger,
        console,
    })
}

/// One status probe: when it started, how long it took, and the status or error.
type Probe = (Instant, Duration, Result<u16, String>);

/// Fresh-client status probes from the node's loopback until `stop` (at most 120 s).
fn probe_status(stop: Arc<AtomicBool>) -> Result<Vec<Probe>> {
    let api: SocketAddr = warden_tests::topology::API.parse()?;
    let request = b"GET /api/v1/status HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n";
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let started = Instant::now();
        let outcome = (|| -> Result<u16> {
            let mut s = TcpStream::connect_timeout(&api, PROBE_BOUND * 5)?;
            let answer = exchange(&mut s, request, PROBE_BOUND * 5)?;
            answer
                .status()
                .with_context(|| format!("no HTTP answer: {:?}", answer.text()))
        })();
        samples.push((
            started,
            started.elapsed(),
            outcome.map_err(|e| format!("{e:#}")),
        ));
        // Pacing: a fresh client every PROBE_EVERY while the flood runs.
        std::thread::sleep(PROBE_EVERY);
    }
    Ok(samples)
}

/// `name{labels}` values from a Prometheus text page.
fn sample(text: &str, series: &str) -> Result<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .with_context(|| format!("no {series} in /metrics"))?
        .trim()
        .parse()
        .with_context(|| format!("{series} is not a count"))
}

fn refused(reason: &str) -> String {
    format!("warden_api_connections_refused_total{{reason=\"{reason}\"}}")
}

fn closed(reason: &str) -> String {
    format!("warden_api_connections_closed_total{{reason=\"{reason}\"}}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[test]
fn connection_floods_are_capped_and_timed_out_while_status_keeps_answering() -> Result<()> {
    raise_fd_limit(FLOOD as u64 + 2_000)?;
    let lab = StandardLab::build_outside("wfl")?;
    let policy = lab.write_policy_as("flood.yaml", &policy_with_limits(&lab, &flood_limits())?)?;
    let mut daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    let before = lab.get("/metrics")?;

    let stop = Arc::new(AtomicBool::new(false));
    let prober = in_netns(&lab.node, {
        let stop = stop.clone();
        move || probe_status(stop)
    });
    let flood_started = Instant::now();
    let flooded = joined(in_netns(&lab.ext, flood));
    stop.store(true, Ordering::Relaxed);
    let probes = joined(prober)?;
    let report = flooded?;
    let after = lab.get("/metrics")?;

    // The fresh client was answered throughout, and quickly.
    ensure!(
        probes.len() >= 20,
        "only {} status probes ran",
        probes.len()
    );
    let failed: Vec<_> = probes.iter().filter(|(_, _, r)| *r != Ok(200)).collect();
    ensure!(failed.is_empty(), "status probes that failed: {failed:?}");
    let mut latencies: Vec<Duration> = probes.iter().map(|(_, d, _)| *d).collect();
    latencies.sort();
    let mut slowest: Vec<&Probe> = probes.iter().collect();
    slowest.sort_by_key(|(_, d, _)| std::cmp::Reverse(*d));
    for (at, took, _) in slowest.iter().take(3) {
        eprintln!(
            "slow status probe: {took:?}, started {:?} after the flood began",
            at.saturating_duration_since(flood_started)
        );
    }
    let max = *latencies.last().expect("probes");
    eprintln!(
        "status from a fresh loopback client during the flood: {} probes, median {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        max
    );
    ensure!(max < PROBE_BOUND, "a status probe took {max:?}");

    // Nothing was closed before the flood was open, so the caps decided exactly as the
    // model says, connection by connection.
    ensure!(
        report.opened_in < IDLE_TIMEOUT - Duration::from_secs(3),
        "opening the flood took {:?}; the first connections' idle timeout would interfere",
        report.opened_in
    );
    let expected = model();
    let mut counts = [0usize; 3];
    let mut per_source_accepted = vec![0usize; HEAVY_SOURCES + LIGHT_SOURCES];
    let (mut idle_closed, mut slow_closed) = (Vec::new(), Vec::new());
    for (i, (c, want)) in report.conns.iter().zip(&expected).enumerate() {
        let (ended, how) = c
            .answer
            .ended
            .as_ref()
            .with_context(|| format!("connection {i} ({:?}) never closed: {c:?}", c.kind))?;
        let got = match c.answer.status() {
            Some(503) => {
                let body: Value = serde_json::from_str(&c.answer.body())
                    .with_context(|| format!("connection {i}: 503 body {:?}", c.answer.text()))?;
                let error = body["error"].as_str().unwrap_or_default();
                ensure!(
                    c.answer.text().contains("\r\nconnection: close\r\n"),
                    "connection {i}: 503 without connection: close: {:?}",
                    c.answer.text()
                );
                ensure!(
                    *ended - c.connected < LATE,
                    "connection {i}: refused but closed only after {:?}",
                    *ended - c.connected
                );
                if error.contains(&format!("max_connections_per_source {PER_SOURCE}")) {
                    Outcome::PerSource
                } else if error.contains(&format!("max_connections {MAX_CONNECTIONS}")) {
                    Outcome::MaxConnections
                } else {
                    bail!("connection {i}: 503 with error {error:?}")
                }
            }
            Some(other) => bail!("connection {i}: answered {other}: {:?}", c.answer.text()),
            None => {
                ensure!(
                    c.answer.data.is_empty(),
                    "connection {i}: got {:?}",
                    c.answer.text()
                );
                ensure!(
                    how == "eof" || how == "reset",
                    "connection {i} ended with {how}"
                );
                per_source_accepted[c.source] += 1;
                match c.kind {
                    Kind::Idle => idle_closed.push((i, *ended - c.connected)),
                    Kind::Slowloris => {
                        let first = c
                            .first_byte
                            .with_context(|| format!("slowloris {i} never sent a byte"))?;
                        slow_closed.push((i, *ended - first, *ended - c.connected, c.sent));
                    }
                }
                Outcome::Accepted
            }
        };
        ensure!(
            got == *want,
            "connection {i}: {got:?}, the caps say {want:?}"
        );
        counts[got as usize] += 1;
    }
    eprintln!(
        "flood outcome: {} accepted ({} idle, {} slowloris), {} refused per source, {} refused over max_connections",
        counts[0],
        idle_closed.len(),
        slow_closed.len(),
        counts[1],
        counts[2]
    );
    ensure!(
        counts[0] == MAX_CONNECTIONS - RESERVED,
        "accepted {counts:?}"
    );
    ensure!(
        per_source_accepted.iter().all(|&n| n <= PER_SOURCE),
        "a source had more than {PER_SOURCE}: {per_source_accepted:?}"
    );

    // Every admitted connection was closed by the server at its deadline: an idle one
    // IDLE_TIMEOUT after it opened, a slowloris HEADER_TIMEOUT after its first byte
    // (its byte every TRICKLE did not extend it), both within the idle timeout.
    let span = |v: &mut Vec<Duration>| {
        v.sort();
        (v[0], percentile(v, 0.5), v[v.len() - 1])
    };
    let mut idle: Vec<Duration> = idle_closed.iter().map(|(_, d)| *d).collect();
    let mut slow: Vec<Duration> = slow_closed.iter().map(|(_, d, _, _)| *d).collect();
    let (imin, imed, imax) = span(&mut idle);
    let (smin, smed, smax) = span(&mut slow);
    eprintln!(
        "idle connections closed {imin:?} / {imed:?} / {imax:?} (min/median/max) after opening \
         (idle_timeout {IDLE_TIMEOUT:?}); slowloris closed {smin:?} / {smed:?} / {smax:?} after \
         their first byte (header_timeout {HEADER_TIMEOUT:?})"
    );
    for (i, after) in &idle_closed {
        ensure!(
            *after + EARLY >= IDLE_TIMEOUT && *after < IDLE_TIMEOUT + LATE,
            "idle connection {i} closed {after:?} after opening"
        );
    }
    for (i, after_first, after_open, sent) in &slow_closed {
        ensure!(
            *after_first + EARLY >= HEADER_TIMEOUT && *after_first < HEADER_TIMEOUT + LATE,
            "slowloris {i} closed {after_first:?} after its first byte"
        );
        ensure!(
            *after_open < IDLE_TIMEOUT + LATE,
            "slowloris {i} closed {after_open:?} after opening"
        );
        ensure!(
            *sent >= 2,
            "slowloris {i} sent {sent} bytes: the trickle never ran"
        );
    }

    // The console got in while the others' share was full; a new source did not.
    ensure!(
        report.console.status() == Some(200),
        "the management console got {:?}",
        report.console.text()
    );
    ensure!(
        report.stranger.status() == Some(503)
            && report
                .stranger
                .body()
                .contains(&format!("max_connections {MAX_CONNECTIONS}")),
        "a new outside source got {:?}",
        report.stranger.text()
    );

    // The metrics count every refusal and every close, and nothing is left open but
    // the scrape itself.
    let delta =
        |series: &str| -> Result<u64> { Ok(sample(&after, series)? - sample(&before, series)?) };
    for (series, want) in [
        (refused("max_connections_per_source"), counts[1]),
        (refused("max_connections"), counts[2] + 1),
        (closed("idle_timeout"), idle_closed.len()),
        (closed("header_timeout"), slow_closed.len()),
        (closed("body_timeout"), 0),
        (closed("send_timeout"), 0),
    ] {
        let got = delta(&series)?;
        ensure!(got == want as u64, "{series} rose by {got}, want {want}");
    }
    ensure!(
        sample(&after, "warden_api_connections_open")? == 1,
        "connections open after the flood:\n{after}"
    );
    let log = daemon.log();
    ensure!(
        !log.contains("Too many open files"),
        "the daemon ran out of descriptors:\n{log}"
    );
    ensure!(daemon.try_wait()?.is_none(), "the daemon exited:\n{log}");
    Ok(())
}

/// A request of `head` (without the blank line) and `body`, from the node's loopback;
/// reads until the server closes (at most `timeout`). Returns the answer and when it
/// was sent.
fn raw(
    lab: &StandardLab,
    head: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(Answer, Instant)> {
    let mut request = format!("{head}\r\nHost: warden\r\n\r\n").into_bytes();
    request.extend_from_slice(&body);
    joined(in_netns(&lab.node, move || {
        let api: SocketAddr = warden_tests::topology::API.parse()?;
        let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(5))?;
        let sent = Instant::now();
        Ok((exchange(&mut s, &request, timeout)?, sent))
    }))
}

fn chunked(chunks: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..chunks {
        body.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        body.extend(std::iter::repeat_n(b'x', size));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

#[test]
fn oversized_bodies_get_413_and_a_stalled_body_is_closed() -> Result<()> {
    let lab = StandardLab::build("wfb")?;
    let policy = lab.write_policy_as(
        "bodies.yaml",
        &policy_with_limits(
            &lab,
            "{header_timeout: 2s, idle_timeout: 3s, body_timeout: 2s}",
        )?,
    )?;
    let _daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    let before = lab.get("/metrics")?;
    let auth = |t: &str| format!("Authorization: Bearer {t}");
    let wait = Duration::from_secs(10);

    // Over 64 MiB declared: refused before a byte of it is read.
    let (a, _) = raw(
        &lab,
        &format!(
            "PUT /api/v1/policy HTTP/1.1\r\n{}\r\nContent-Length: {}",
            auth(token::OPERATOR),
            (64 << 20) + 1
        ),
        Vec::new(),
        wait,
    )?;
    ensure!(a.status() == Some(413), "oversized policy: {:?}", a.text());
    let v: Value = serde_json::from_str(&a.body()).context("413 body")?;
    ensure!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("over the limit of 67108864 bytes for PUT /api/v1/policy")),
        "413 error: {v}"
    );
    // Without a token the answer is 401, whatever the size.
    let (a, _) = raw(
        &lab,
        &format!(
            "PUT /api/v1/policy HTTP/1.1\r\nContent-Length: {}",
            (64 << 20) + 1
        ),
        Vec::new(),
        wait,
    )?;
    ensure!(
        a.status() == Some(401),
        "oversized policy without a token: {:?}",
        a.text()
    );
    // A suspension's reason of 100 KB, chunked: refused once past 64 KiB; nothing done.
    let (a, _) = raw(
        &lab,
        &format!(
            "POST /api/v1/tenants/acme/suspend HTTP/1.1\r\n{}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
            auth(token::ADMIN)
        ),
        chunked(10, 10_000),
        wait,
    )?;
    ensure!(a.status() == Some(413), "oversized suspend: {:?}", a.text());
    let acme: Value = serde_json::from_str(&lab.get("/api/v1/tenants/acme")?)?;
    ensure!(acme["state"] != "suspended", "acme was suspended: {acme}");

    // A body that stops arriving is closed at body_timeout.
    let (a, sent) = raw(
        &lab,
        &format!(
            "PUT /api/v1/policy HTTP/1.1\r\n{}\r\nContent-Length: 1000",
            auth(token::OPERATOR)
        ),
        b"daemon: {}\n".to_vec(),
        wait,
    )?;
    let (ended, how) = a
        .ended
        .clone()
        .context("the stalled body was never closed")?;
    let after = ended - sent;
    eprintln!("stalled body: closed ({how}) {after:?} after the header (body_timeout 2s)");
    ensure!(a.data.is_empty(), "stalled body answered: {:?}", a.text());
    ensure!(
        after + EARLY >= Duration::from_secs(2) && after < Duration::from_secs(2) + LATE,
        "stalled body closed after {after:?}"
    );

    let after = lab.get("/metrics")?;
    let delta =
        |series: &str| -> Result<u64> { Ok(sample(&after, series)? - sample(&before, series)?) };
    for (series, want) in [
        (
            "warden_api_body_too_large_total{route=\"/api/v1/policy\"}",
            1,
        ),
        (
            "warden_api_body_too_large_total{route=\"/api/v1/tenants/{id}/suspend\"}",
            1,
        ),
        (closed("body_timeout").as_str(), 1),
    ] {
        let got = delta(series)?;
        ensure!(got == want, "{series} rose by {got}, want {want}");
    }
    Ok(())
}

#[test]
fn the_daemon_stops_promptly_with_idle_and_half_sent_connections_open() -> Result<()> {
    let lab = StandardLab::build_outside("wfs")?;
    let policy = lab.write_policy_as("stop.yaml", &policy_with_limits(&lab, &flood_limits())?)?;
    let daemon = lab.start_daemon(&warden_binary()?, &policy, &["--detach-on-exit"])?;
    // 200 idle and 100 with half a header, from the outside host.
    let mut held = joined(in_netns(&lab.ext, || {
        let api = api_outside();
        let mut held = Vec::new();
        for i in 0..300 {
            let src = source_addr(i % LIGHT_SOURCES);
            let mut s = connect_from(src, api, Duration::from_secs(5))?;
            if i % 3 == 0 {
                s.write_all(b"GET /api/v1/sta")?;
            }
            s.set_nonblocking(true)?;
            held.push((s, Answer::default()));
        }
        Ok(held)
    }))?;
    eventually(Duration::from_secs(10), || {
        let open = sample(&lab.get("/metrics")?, "warden_api_connections_open")?;
        ensure!(open >= 301, "{open} connections open (the scrape included)");
        Ok(true)
    })
    .context("the daemon never held the 300 connections")?;
    let asked = Instant::now();
    let status = daemon.stop()?;
    let took = asked.elapsed();
    eprintln!("daemon stopped in {took:?} with 300 connections open: {status}");
    ensure!(
        status.success(),
        "the daemon did not stop cleanly: {status}"
    );
    // Every held connection closed, unanswered. The check waits in poll(2) itself.
    eventually_every(Duration::from_secs(5), Duration::from_millis(1), || {
        let fds: Vec<i32> = held
            .iter()
            .filter(|(_, a)| a.ended.is_none())
            .map(|(s, _)| s.as_raw_fd())
            .collect();
        poll_readable(&fds, Duration::from_millis(20))?;
        let now = Instant::now();
        for (s, answer) in held.iter_mut().filter(|(_, a)| a.ended.is_none()) {
            answer.pump(s, now);
        }
        let open = held.iter().filter(|(_, a)| a.ended.is_none()).count();
        ensure!(open == 0, "{open} held connections still open");
        Ok(true)
    })?;
    for (_, answer) in &held {
        ensure!(answer.data.is_empty(), "a held connection: {answer:?}");
    }
    Ok(())
}

/// The issue this guards against, as measured before the API had limits: a daemon held
/// to 1,024 descriptors (a unit without `LimitNOFILE` and nothing to raise to) and 1,100
/// idle connections. Now the daemon lowers its connection cap to fit, refuses the rest,
/// its counter sampler keeps its descriptors, and `warden status` and `warden suspend`
/// answer.
#[test]
fn a_daemon_held_to_1024_descriptors_lowers_its_cap_and_keeps_working() -> Result<()> {
    const HELD: usize = 1_100;
    raise_fd_limit(HELD as u64 + 1_000)?;
    let lab = StandardLab::build_outside("wfd")?;
    let policy = lab.write_policy_as("fd.yaml", &policy_with_limits(&lab, "{}")?)?;
    let warden = warden_binary()?;
    let warden = warden.to_str().context("warden path is not UTF-8")?;
    let policy = policy.to_str().context("policy path is not UTF-8")?;
    let mut daemon = lab.node.spawn(&[
        "prlimit",
        "--nofile=1024:1024",
        warden,
        "run",
        "-c",
        policy,
        "--detach-on-exit",
    ])?;
    daemon
        .wait_log("serving API", Duration::from_secs(30))
        .context("the daemon did not start")?;
    let log = daemon.log();
    let cap: usize = log
        .split("serving at most ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("the daemon did not log a lowered cap:\n{log}"))?;
    eprintln!("with 1024 descriptors the daemon serves at most {cap} API connections");
    ensure!(
        (1..1024 - 256).contains(&cap),
        "cap {cap} is not below the limit"
    );

    // Outside sources share all but the default reserve of 32.
    let share = cap - 32;
    // 1,100 idle connections from 100 outside sources (11 each, under the per-source cap).
    let held = joined(in_netns(&lab.ext, || {
        let api = api_outside();
        (0..HELD)
            .map(|i| connect_from(source_addr(i % 100), api, Duration::from_secs(5)))
            .collect::<Result<Vec<_>>>()
    }))?;
    let refused = eventually_every(Duration::from_secs(20), Duration::from_millis(100), || {
        let refused = sample(&lab.get("/metrics")?, &refused("max_connections"))?;
        ensure!(
            refused as usize + share >= HELD,
            "only {refused} refused with a cap of {cap}"
        );
        Ok(Some(refused))
    })?;
    // Not synchronisation: several counter-sampler ticks (1 s each) must pass with every
    // admitted connection held, to show the sampler keeps its descriptors.
    std::thread::sleep(Duration::from_secs(3));
    let text = lab.get("/metrics")?;
    let open = sample(&text, "warden_api_connections_open")? as usize;
    eprintln!("{open} open (the scrape included), {refused} refused");
    ensure!(
        open == share + 1 && refused as usize == HELD - share,
        "{open} open and {refused} refused; the others' share is {share}"
    );
    for args in [
        vec!["status"],
        vec![
            "--token",
            token::ADMIN,
            "suspend",
            "acme",
            "--reason",
            "fd test",
        ],
        vec![
            "--token",
            token::ADMIN,
            "unsuspend",
            "acme",
            "--reason",
            "fd test",
        ],
    ] {
        let mut full = vec![warden];
        full.extend_from_slice(&args);
        let started = Instant::now();
        let out = lab.node.exec_unchecked(&full, Duration::from_secs(30))?;
        eprintln!(
            "$ warden {} -> {} in {:?}",
            args.join(" "),
            out.status,
            started.elapsed()
        );
        ensure!(
            out.status.success(),
            "warden {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = daemon.log();
    for bad in ["Too many open files", "sampling counters failed"] {
        ensure!(!log.contains(bad), "the daemon logged {bad:?}:\n{log}");
    }
    ensure!(daemon.try_wait()?.is_none(), "the daemon exited:\n{log}");
    drop(held);
    Ok(())
}
