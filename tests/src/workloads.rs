//! Workloads of the detection labs: real servers and clients from Debian packages, the
//! attack tools (nmap, hping3), and a random-source SYN flood generator, all inside lab
//! namespaces and all bounded in count and time.
//!
//! Servers ([`http_server`], [`smtp_sink`], [`socks_proxy`], [`http_proxy`],
//! [`socks_server`], [`dns_server`]) return the
//! [`Proc`] guard that stops them. Clients run as one shell script inside a namespace
//! (one `ip netns exec`, however many requests), each request with its own timeout and
//! the whole script with a deadline; they report a [`Tally`] of what succeeded, so a test
//! can tell a workload that ran from one that silently did nothing. Many clients come
//! from many source addresses by binding them (`curl --interface`, `dig -b`), which the
//! outside network of [`crate::topology::outside`] makes possible.
//!
//! Tools and their Debian packages (installed by `cargo xtask setup`): see [`TOOLS`].

use std::{
    fs::File,
    net::Ipv6Addr,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, ensure, Context as _, Result};

use crate::{
    lab::{check_test_address, Netns, Proc},
    wait::{eventually, give_up},
};

/// Programs the workloads start, with the Debian package that brings each.
pub const TOOLS: &[(&str, &str)] = &[
    ("busybox", "busybox"),
    ("curl", "curl"),
    ("swaks", "swaks"),
    ("microsocks", "microsocks"),
    ("tinyproxy", "tinyproxy"),
    ("danted", "dante-server"),
    ("dnsmasq", "dnsmasq-base"),
    ("dig", "bind9-dnsutils"),
    ("nmap", "nmap"),
    ("hping3", "hping3"),
    ("iperf3", "iperf3"),
    ("tcpdump", "tcpdump"),
    ("masscan", "masscan"),
    ("arpspoof", "dsniff"),
];

/// The Debian interpreter that has `aiosmtpd` (python3-aiosmtpd); named by path so that
/// a Python of a version manager earlier on PATH does not stand in for it.
const PYTHON: &str = "/usr/bin/python3";

/// How long a server may take to start listening.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails with the package to install unless `program` is on PATH (or is a path that exists).
pub fn require(program: &str) -> Result<PathBuf> {
    let package = TOOLS
        .iter()
        .find(|(p, _)| *p == program)
        .map_or(program, |(_, pkg)| pkg);
    let candidate = Path::new(program);
    if candidate.is_absolute() {
        ensure!(
            candidate.is_file(),
            "{program} not found (Debian package {package}): run cargo xtask setup"
        );
        return Ok(candidate.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("{program} not found on PATH (Debian package {package}): run cargo xtask setup")
        })
}

/// What a batch of client requests achieved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Requests that succeeded.
    pub ok: usize,
    /// Requests that failed (refused, timed out, wrong answer).
    pub failed: usize,
    /// Wall time of the batch.
    pub elapsed: Duration,
}

impl Tally {
    /// Fails unless every request succeeded.
    pub fn all_ok(&self, what: &str) -> Result<()> {
        ensure!(
            self.failed == 0 && self.ok > 0,
            "{what}: {} of {} requests failed",
            self.failed,
            self.ok + self.failed
        );
        Ok(())
    }
}

/// Quotes one shell word.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// A shell command line from words.
fn command_line(words: &[&str]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Runs one shell script of commands inside `ns`, each judged by its exit status, and
/// counts them. The whole script is killed at `deadline`.
fn run_batch(ns: &Netns, commands: &[String], deadline: Duration) -> Result<Tally> {
    ensure!(!commands.is_empty(), "an empty batch proves nothing");
    let mut script = String::new();
    for c in commands {
        script.push_str(c);
        script.push_str(" >/dev/null 2>&1 && echo ok || echo failed\n");
    }
    let start = Instant::now();
    let out = ns.exec_timeout(&["sh", "-c", &script], deadline)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().filter(|l| *l == "ok").count();
    let failed = text.lines().filter(|l| *l == "failed").count();
    ensure!(
        ok + failed == commands.len(),
        "batch in {} reported {} results for {} commands",
        ns.name(),
        ok + failed,
        commands.len()
    );
    Ok(Tally {
        ok,
        failed,
        elapsed: start.elapsed(),
    })
}

/// A web server (`busybox httpd`) on `port` of every address of `ns`, serving
/// `index.html` of `body_bytes` bytes from `dir` (created).
pub fn http_server(ns: &Netns, dir: &Path, port: u16, body_bytes: usize) -> Result<Proc> {
    let busybox = require("busybox")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let body: Vec<u8> = (0..body_bytes).map(|i| b'a' + (i % 26) as u8).collect();
    let index = dir.join("index.html");
    std::fs::write(&index, body).with_context(|| format!("writing {}", index.display()))?;
    let (busybox, dir) = (path_str(&busybox)?, path_str(dir)?);
    let port_s = port.to_string();
    let proc = ns.spawn(&[busybox, "httpd", "-f", "-p", &port_s, "-h", dir])?;
    ns.wait_tcp_listen(port, LISTEN_TIMEOUT)?;
    Ok(proc)
}

/// An SMTP server that accepts every message and discards it (`aiosmtpd` with its Sink
/// handler) on port 25 of every IPv4 address of `ns`.
pub fn smtp_sink(ns: &Netns) -> Result<Proc> {
    require(PYTHON)?;
    let mut proc = ns.spawn(&[
        PYTHON,
        "-m",
        "aiosmtpd",
        "-n",
        "-l",
        "0.0.0.0:25",
        "-c",
        "aiosmtpd.handlers.Sink",
    ])?;
    if let Err(err) = ns.wait_tcp_listen(25, LISTEN_TIMEOUT) {
        let log = proc.log();
        let _ = proc.try_wait();
        bail!("{err:#}; aiosmtpd (Debian package python3-aiosmtpd) log:\n{log}");
    }
    Ok(proc)
}

/// A SOCKS5 proxy (`microsocks`) listening on `addr:port`.
pub fn socks_proxy(ns: &Netns, addr: &str, port: u16) -> Result<Proc> {
    require("microsocks")?;
    check_test_address(addr)?;
    let port_s = port.to_string();
    let proc = ns.spawn(&["microsocks", "-i", addr, "-p", &port_s])?;
    ns.wait_tcp_listen(port, LISTEN_TIMEOUT)?;
    Ok(proc)
}

/// An HTTP proxy (`tinyproxy`, in the foreground) listening on `addr:port`, with its
/// configuration (and log) written to `dir`: plain GET and CONNECT to any port, for
/// any client. `extra` lines are added to the configuration (e.g. `ReversePath` lines and
/// `ReverseOnly Yes` for a reverse proxy).
pub fn http_proxy(ns: &Netns, dir: &Path, addr: &str, port: u16, extra: &str) -> Result<Proc> {
    require("tinyproxy")?;
    check_test_address(addr)?;
    let conf = write_config(
        dir,
        "tinyproxy.conf",
        &format!(
            "Port {port}\nListen {addr}\nTimeout 30\nMaxClients 200\nLogLevel Info\n\
             DisableViaHeader Yes\n{extra}"
        ),
    )?;
    let proc = ns.spawn(&["tinyproxy", "-d", "-c", &conf])?;
    ns.wait_tcp_listen(port, LISTEN_TIMEOUT)?;
    Ok(proc)
}

/// A SOCKS5 server (`danted`, in the foreground, no authentication) listening on
/// `addr:port` and connecting out from `external` (an interface of `ns`); configuration
/// and pid file in `dir`.
pub fn socks_server(ns: &Netns, dir: &Path, addr: &str, port: u16, external: &str) -> Result<Proc> {
    require("danted")?;
    check_test_address(addr)?;
    let conf = write_config(
        dir,
        "danted.conf",
        &format!(
            "logoutput: stderr\ninternal: {addr} port = {port}\nexternal: {external}\n\
             clientmethod: none\nsocksmethod: none\nuser.privileged: root\n\
             user.unprivileged: nobody\n\
             client pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}\n\
             socks pass {{ from: 0.0.0.0/0 to: 0.0.0.0/0 }}\n"
        ),
    )?;
    let pid = path_str(dir)?.to_owned() + "/danted.pid";
    let proc = ns.spawn(&["danted", "-f", &conf, "-p", &pid, "-N", "2"])?;
    ns.wait_tcp_listen(port, LISTEN_TIMEOUT)?;
    Ok(proc)
}

/// Writes `text` to `dir/name` (creating `dir`); returns the path as a string.
fn write_config(dir: &Path, name: &str, text: &str) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path_str(&path)?.to_owned())
}

/// A DNS server (`dnsmasq`, authoritative for nothing, no upstream) on `addr` port 53
/// that answers every name under `domain` with `answer`.
pub fn dns_server(ns: &Netns, addr: &str, domain: &str, answer: &str) -> Result<Proc> {
    require("dnsmasq")?;
    check_test_address(addr)?;
    check_test_address(answer)?;
    let listen = format!("--listen-address={addr}");
    let address = format!("--address=/{domain}/{answer}");
    let mut proc = ns.spawn(&[
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--except-interface=lo",
        &listen,
        &address,
        "--port=53",
        "--user=root",
        "--group=root",
        "--pid-file",
        "--log-facility=-",
        "--cache-size=0",
    ])?;
    eventually(LISTEN_TIMEOUT, || {
        if let Some(status) = proc.try_wait().map_err(give_up)? {
            return Err(give_up(anyhow!("exited ({status})")));
        }
        let out = ns.exec(&["ss", "-H", "-l", "-u", "-n", "sport = :53"])?;
        Ok(!out.stdout.trim_ascii().is_empty())
    })
    .with_context(|| format!("dnsmasq did not listen on {addr}:53; log:\n{}", proc.log()))?;
    Ok(proc)
}

/// A minimal DNS responder (a Python script) on UDP port 53 of each of `addrs`: every
/// A query is answered with `answer`. Stands in for many upstream servers at once (each
/// socket bound to its own address, so answers come from the address asked). It exits
/// by itself after `lifetime`.
pub fn dns_responders(
    ns: &Netns,
    addrs: &[String],
    answer: &str,
    lifetime: Duration,
) -> Result<Proc> {
    require(PYTHON)?;
    ensure!(!addrs.is_empty(), "no responder addresses");
    for a in addrs {
        check_test_address(a)?;
    }
    check_test_address(answer)?;
    let secs = lifetime.as_secs().max(1).to_string();
    let mut args = vec![PYTHON, "-c", DNS_RESPONDER, &secs, answer];
    args.extend(addrs.iter().map(String::as_str));
    let mut proc = ns.spawn(&args)?;
    let first = addrs[0].clone();
    eventually(LISTEN_TIMEOUT, || {
        if let Some(status) = proc.try_wait().map_err(give_up)? {
            return Err(give_up(anyhow!("exited ({status})")));
        }
        let filter = format!("src {first}:53");
        let out = ns.exec(&["ss", "-H", "-l", "-u", "-n", &filter])?;
        Ok(!out.stdout.trim_ascii().is_empty())
    })
    .with_context(|| format!("the DNS responders did not listen; log:\n{}", proc.log()))?;
    Ok(proc)
}

/// The responder of [`dns_responders`]: argv is lifetime (s), answer, addresses.
const DNS_RESPONDER: &str = r#"
import select, socket, sys, time
end = time.time() + int(sys.argv[1])
answer = socket.inet_aton(sys.argv[2])
socks = []
for a in sys.argv[3:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a, 53))
    socks.append(s)
while time.time() < end:
    ready, _, _ = select.select(socks, [], [], 0.5)
    for s in ready:
        q, peer = s.recvfrom(512)
        if len(q) < 17:
            continue
        end_q = q.index(0, 12) + 5
        head = q[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
        rr = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00<\x00\x04" + answer
        s.sendto(head + q[12:end_q] + rr, peer)
"#;

/// One HTTP GET of a batch: from `source` (bound, `None` = the route's choice), through
/// an optional SOCKS5 proxy (`host:port`).
#[derive(Clone, Debug)]
pub struct Fetch {
    pub source: Option<String>,
    pub url: String,
    pub socks: Option<String>,
}

/// Runs the fetches one after the other with `curl` (5 s each, and `deadline` for all).
/// A fetch succeeds on a 2xx answer with its whole body.
pub fn http_fetches(ns: &Netns, fetches: &[Fetch], deadline: Duration) -> Result<Tally> {
    http_fetches_via(ns, fetches, &[], deadline)
}

/// [`http_fetches`] with more `curl` options for every fetch, e.g. `--proxy URL` (a
/// plain GET through an HTTP proxy) or `--proxytunnel --proxy URL` (HTTP CONNECT).
pub fn http_fetches_via(
    ns: &Netns,
    fetches: &[Fetch],
    via: &[&str],
    deadline: Duration,
) -> Result<Tally> {
    require("curl")?;
    let commands: Vec<String> = fetches
        .iter()
        .map(|f| {
            let mut words = vec!["curl", "-sSf", "-o", "/dev/null", "--max-time", "5"];
            words.extend_from_slice(via);
            if let Some(src) = &f.source {
                words.extend_from_slice(&["--interface", src]);
            }
            if let Some(proxy) = &f.socks {
                words.extend_from_slice(&["--socks5", proxy]);
            }
            words.push(&f.url);
            command_line(&words)
        })
        .collect();
    run_batch(ns, &commands, deadline)
}

/// Sends one message to each of `servers` on port 25 with `swaks` (10 s each, `deadline`
/// for all). A message succeeds when the server accepted it (250 after DATA).
pub fn send_mail(
    ns: &Netns,
    servers: &[String],
    from: &str,
    to: &str,
    deadline: Duration,
) -> Result<Tally> {
    require("swaks")?;
    let commands: Vec<String> = servers
        .iter()
        .map(|server| {
            command_line(&[
                "swaks",
                "--server",
                server,
                "--port",
                "25",
                "--from",
                from,
                "--to",
                to,
                "--helo",
                "mail.lab.test",
                "--header",
                "Subject: warden lab",
                "--body",
                "A message of the detection lab.",
                "--timeout",
                "10",
            ])
        })
        .collect();
    run_batch(ns, &commands, deadline)
}

/// Asks `server` for each of `names`, each query from one of `sources` in turn, with
/// `dig` (2 s, one try each; `deadline` for all). A query succeeds when the answer is
/// exactly `answer`.
pub fn dns_queries(
    ns: &Netns,
    server: &str,
    sources: &[String],
    names: &[String],
    answer: &str,
    deadline: Duration,
) -> Result<Tally> {
    require("dig")?;
    ensure!(!sources.is_empty(), "no query sources");
    let at = format!("@{server}");
    let commands: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let dig = command_line(&[
                "dig",
                "+short",
                "+tries=1",
                "+time=2",
                "-b",
                &sources[i % sources.len()],
                &at,
                name,
                "A",
            ]);
            format!("test \"$({dig})\" = {}", quote(answer))
        })
        .collect();
    run_batch(ns, &commands, deadline)
}

/// Runs `masscan ARGS` in `ns` for at most `secs` seconds (bound the sweep with its
/// `--rate` and range); returns its standard output and error. masscan in a namespace
/// may keep "waiting" after its last probe whatever `--wait` says, so it is stopped with
/// SIGINT at `secs` (SIGKILL 5 s later); it fails unless masscan reported every probe
/// sent ("100.00% done").
pub fn masscan(ns: &Netns, args: &[&str], secs: u32) -> Result<String> {
    require("masscan")?;
    let limit = secs.to_string();
    let mut cmd = vec!["timeout", "-s", "INT", "-k", "5", &limit, "masscan"];
    cmd.extend_from_slice(args);
    let out = ns.exec_unchecked(&cmd, Duration::from_secs(u64::from(secs) + 20))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        text.contains("100.00% done"),
        "masscan {} did not send every probe within {secs} s ({}):\n{}",
        args.join(" "),
        out.status,
        text.chars()
            .rev()
            .take(2_000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    Ok(text)
}

/// Runs `nmap ARGS` in `ns` to completion within `timeout`; returns its standard output.
pub fn nmap(ns: &Netns, args: &[&str], timeout: Duration) -> Result<String> {
    require("nmap")?;
    let mut cmd = vec!["nmap"];
    cmd.extend_from_slice(args);
    let out = ns.exec_timeout(&cmd, timeout)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What an `hping3` run reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HpingReport {
    /// Packets it says it sent.
    pub transmitted: u64,
    /// Packets it says it received.
    pub received: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Runs `hping3 ARGS` in `ns` for at most `secs` seconds (stopped with SIGINT, after
/// which hping3 prints its statistics); also bound it in count with `-c` in `args`.
pub fn hping3(ns: &Netns, args: &[&str], secs: u32) -> Result<HpingReport> {
    require("hping3")?;
    let secs_s = secs.to_string();
    let mut cmd = vec!["timeout", "-s", "INT", &secs_s, "hping3"];
    cmd.extend_from_slice(args);
    let start = Instant::now();
    let out = ns.exec_unchecked(&cmd, Duration::from_secs(u64::from(secs) + 15))?;
    let elapsed = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("hping3 {} printed no statistics:\n{text}", args.join(" ")))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    ensure!(numbers.len() >= 2, "unreadable hping3 statistics: {line}");
    Ok(HpingReport {
        transmitted: numbers[0],
        received: numbers[1],
        elapsed,
    })
}

/// A random-source TCP SYN flood over IPv6: what to send and how fast at most.
#[derive(Clone, Debug)]
pub struct SynFlood {
    /// The namespace and interface it leaves by.
    pub ifname: String,
    /// The next hop's MAC (the frames go straight onto the link).
    pub dst_mac: [u8; 6],
    /// The sender's MAC.
    pub src_mac: [u8; 6],
    /// The attacked address and port.
    pub target: Ipv6Addr,
    pub port: u16,
    /// Distinct sources, each sending one SYN: all in [`SynFlood::SOURCES`], spread
    /// over it by a bijection of the packet number, so no two are equal.
    pub sources: u32,
    /// Send no faster than this (packets per second).
    pub max_pps: u32,
    /// Stop here even if not all were sent.
    pub deadline: Duration,
}

/// What a [`SynFlood`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FloodReport {
    /// Frames handed to the link (each from a different source).
    pub sent: u64,
    /// Frames the socket refused (a full queue); not retried.
    pub refused: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

impl SynFlood {
    /// The prefix every source comes from: 2001:db8:ff00::/40, routed nowhere in the lab,
    /// so the victim's answers go no further than the node.
    pub const SOURCES: &'static str = "2001:db8:ff00::/40";

    /// The `i`-th source address.
    pub fn source(i: u64) -> Ipv6Addr {
        // splitmix64's finaliser is a bijection of u64: distinct i, distinct sources.
        let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        let prefix: u128 = 0x2001_0db8_ff00_u128 << 80;
        Ipv6Addr::from(prefix | u128::from(x))
    }

    /// Sends the flood from `ns` (on a thread that joins it). Bounded by
    /// [`SynFlood::sources`] frames and [`SynFlood::deadline`].
    pub fn run(&self, ns: &Netns) -> Result<FloodReport> {
        check_test_address(&self.target.to_string())?;
        let ns_path = PathBuf::from("/run/netns").join(ns.name());
        let ifindex = ns.ifindex(&self.ifname)?;
        let flood = self.clone();
        thread::spawn(move || -> Result<FloodReport> {
            let f =
                File::open(&ns_path).with_context(|| format!("opening {}", ns_path.display()))?;
            // SAFETY: joins the namespace on this short-lived thread only.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns: {}", std::io::Error::last_os_error());
            }
            flood.send_all(ifindex)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))?
    }

    fn send_all(&self, ifindex: u32) -> Result<FloodReport> {
        // The receive timeout does not matter: the flood only sends.
        let sock = crate::rawframe::packet_socket(ifindex, Duration::from_secs(1))?;
        let mut frame = self.template();
        let start = Instant::now();
        let mut report = FloodReport::default();
        for i in 0..u64::from(self.sources) {
            if i % 1024 == 0 {
                let elapsed = start.elapsed();
                if elapsed >= self.deadline {
                    break;
                }
                // Pace: never ahead of max_pps.
                let due = Duration::from_secs_f64(i as f64 / f64::from(self.max_pps.max(1)));
                if due > elapsed {
                    thread::sleep(due - elapsed);
                }
            }
            self.fill(&mut frame, i);
            // SAFETY: sends `frame` (valid for its length) on the bound packet socket.
            let n = unsafe {
                libc::send(
                    sock.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == frame.len() as isize {
                report.sent += 1;
            } else {
                report.refused += 1;
            }
        }
        report.elapsed = start.elapsed();
        Ok(report)
    }

    /// Ethernet + IPv6 + TCP SYN (with an MSS option), addresses and checksum to fill.
    fn template(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(78);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&0x86dd_u16.to_be_bytes());
        // IPv6: version 6, payload 24 bytes, next header TCP, hop limit 64.
        f.extend_from_slice(&[0x60, 0, 0, 0, 0, 24, 6, 64]);
        f.extend_from_slice(&[0; 16]); // source, filled per frame
        f.extend_from_slice(&self.target.octets());
        // TCP: ports, sequence, ack, data offset 6 (one option word), SYN, window.
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&self.port.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x60, 0x02, 0xfa, 0xf0]);
        f.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        f.extend_from_slice(&[2, 4, 0x05, 0xa0]); // MSS 1440
        f
    }

    /// Writes the `i`-th source, source port, sequence number and TCP checksum.
    fn fill(&self, f: &mut [u8], i: u64) {
        f[22..38].copy_from_slice(&Self::source(i).octets());
        let sport = 1024 + (i % 64_000) as u16;
        f[54..56].copy_from_slice(&sport.to_be_bytes());
        f[58..62].copy_from_slice(&(i as u32).wrapping_mul(2_654_435_761).to_be_bytes());
        f[70..72].copy_from_slice(&[0, 0]);
        // Pseudo-header (addresses, length, next header) plus the TCP segment.
        let mut sum: u32 = 0;
        for chunk in f[22..54].chunks(2).chain(f[54..78].chunks(2)) {
            sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
        }
        sum += 24 + 6;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[70..72].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_sources_are_distinct_and_inside_their_prefix() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..200_000u64 {
            let s = SynFlood::source(i);
            let seg = s.segments();
            assert_eq!((seg[0], seg[1], seg[2] >> 8), (0x2001, 0x0db8, 0xff), "{s}");
            assert!(seen.insert(s), "source {i} repeats: {s}");
        }
    }

    #[test]
    fn flood_frames_carry_a_valid_tcp_checksum() {
        let flood = SynFlood {
            ifname: "eth0".into(),
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_mac: [2, 0, 0, 0, 0, 2],
            target: "2001:db8:2:1::10".parse().expect("address"),
            port: 80,
            sources: 1,
            max_pps: 1,
            deadline: Duration::from_secs(1),
        };
        let mut f = flood.template();
        assert_eq!(f.len(), 78);
        for i in [0, 1, 77_777] {
            flood.fill(&mut f, i);
            // Summing the pseudo-header and segment with the checksum in gives 0xffff.
            let mut sum: u32 = 24 + 6;
            for chunk in f[22..78].chunks(2) {
                sum += u32::from(u16::from_be_bytes([chunk[0], chunk[1]]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            assert_eq!(sum, 0xffff, "frame {i}");
        }
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(
            command_line(&["curl", "-o", "/dev/null"]),
            "'curl' '-o' '/dev/null'"
        );
    }
}
