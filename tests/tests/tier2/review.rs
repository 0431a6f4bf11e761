//! The review workflow of clause 3.1.3.14 end to end: a real scan raises a flag, the
//! tenant's webhook is notified (through a receiver outage), the deadline runs from the
//! delivery, and an unanswered flag suspends its tenant only where the policy says so; an
//! acknowledged flag stops the clock. Every state change is one line of the events log.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs::File,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    evidence::{flag, state_report, wait_flag, Metrics},
    lab::{Netns, Proc},
    topology::{outside, token, warden_binary, StandardLab},
    wait::{eventually, eventually_every},
    workloads::nmap,
};

/// Where the receiver listens, inside the node namespace (where the daemon runs).
const RECEIVER_PORT: u16 = 9480;
/// The scan detector's deadline in the lab policies, in seconds.
const DEADLINE_S: u64 = 4;
/// How long a test waits for a flag the scan should raise.
const FLAG_TIMEOUT: Duration = Duration::from_secs(30);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    body: Value,
    /// The status it answered.
    status: u16,
}

/// A webhook receiver on 127.0.0.1:[`RECEIVER_PORT`] in a namespace: answers 500 to the
/// first `fail_first` requests (the outage), 204 after. Stops when dropped.
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Receiver {
    fn start(ns: &Netns, fail_first: usize) -> Result<Receiver> {
        let path = PathBuf::from("/run/netns").join(ns.name());
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn({
            let (got, stop) = (got.clone(), stop.clone());
            move || -> Result<()> {
                let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                // SAFETY: joins the namespace on this thread only; the fd is valid.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    let e = anyhow::anyhow!("setns: {}", std::io::Error::last_os_error());
                    let _ = ready_tx.send(Err(anyhow::anyhow!("{e}")));
                    return Err(e);
                }
                let listener = match TcpListener::bind(("127.0.0.1", RECEIVER_PORT)) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!("bind: {e}")));
                        bail!("bind: {e}");
                    }
                };
                listener.set_nonblocking(true)?;
                let _ = ready_tx.send(Ok(()));
                let served = AtomicUsize::new(0);
                // Bounded: stops when the test drops the receiver, or after 10 minutes.
                let until = Instant::now() + Duration::from_secs(600);
                while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let n = served.fetch_add(1, Ordering::Relaxed);
                            let status = if n < fail_first { 500 } else { 204 };
                            match serve(stream, status) {
                                Ok(body) => got
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push(Received { body, status }),
                                Err(e) => eprintln!("receiver: {e:#}"),
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            // Pacing of the non-blocking accept, which checks `stop`.
                            thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("the receiver did not start")??;
        Ok(Receiver {
            got,
            stop,
            thread: Some(thread),
        })
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one HTTP/1.1 request, answers `status`, returns the JSON body.
fn serve(stream: TcpStream, status: u16) -> Result<Value> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    ensure!(
        line.starts_with("POST /hook "),
        "unexpected request line {line:?}"
    );
    let mut length = None;
    let mut json = false;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = Some(v.trim().parse::<usize>()?),
                "content-type" => json = v.trim().starts_with("application/json"),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length.context("request without Content-Length")?];
    reader.read_exact(&mut body)?;
    let reason = if status == 500 {
        "Internal Server Error"
    } else {
        "No Content"
    };
    let mut w = stream;
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    ensure!(json, "the notification is not sent as application/json");
    Ok(serde_json::from_slice(&body)?)
}

/// The lab policy: the demo's daemon and interfaces, the default webhook at the receiver,
/// and a scan detector with a [`DEADLINE_S`] deadline; `globex` and `initech` are extra
/// YAML lines for those tenants.
fn start(lab: &StandardLab, globex: &str, initech: &str) -> Result<Proc> {
    let policy = format!(
        "{}defaults:
  smtp: block
  notify:
    webhook: http://127.0.0.1:{RECEIVER_PORT}/hook
  detectors:
    scan:
      action: flag
      distinct_targets: 50
      window: 30s
      deadline: {DEADLINE_S}s
tenants:
  - id: acme
    addresses: [198.18.1.1/32, 2001:db8:1::1/128]
  - id: globex
    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]
{globex}  - id: initech
    addresses: [198.18.2.130/32, 2001:db8:2:2::10/128]
{initech}",
        lab.policy_header()?
    );
    let path = lab.write_policy_as("review.yaml", &policy)?;
    lab.start_daemon(&warden_binary()?, &path, &["--detach-on-exit"])
}

/// A vertical scan of 100 ports of a live outside host (closed ports refuse): flagged as
/// `scan` within seconds.
pub(crate) fn scan_from(ns: &Netns, host: u32) -> Result<()> {
    let target = outside::live_v4(host).to_string();
    nmap(
        ns,
        &[
            "-n",
            "-Pn",
            "-sS",
            "--max-retries",
            "0",
            "-p",
            "1-100",
            &target,
        ],
        Duration::from_secs(60),
    )?;
    Ok(())
}

fn json_of(body: &str) -> Result<Value> {
    serde_json::from_str(body).with_context(|| format!("not JSON: {body}"))
}

/// The flag of `tenant`'s scan, waited for; its id.
fn scan_flag(lab: &StandardLab, daemon: &Proc, tenant: &str) -> Result<i64> {
    match wait_flag(lab, tenant, "scan", FLAG_TIMEOUT)? {
        Some((f, took)) => {
            println!("{tenant}: scan flagged after {took:?}");
            f["id"]
                .as_i64()
                .with_context(|| format!("flag without id: {f}"))
        }
        None => bail!(
            "no scan flag for {tenant} within {FLAG_TIMEOUT:?}\n{}",
            state_report(lab, daemon)
        ),
    }
}

/// Polls flag `id` until `pred` holds on it, for at most `timeout`.
fn wait_for_flag(
    lab: &StandardLab,
    id: i64,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually_every(timeout, Duration::from_millis(100), || {
        let f = flag(lab, id)?;
        ensure!(pred(&f), "{f}");
        Ok(Some(f))
    })
    .with_context(|| format!("flag {id} not {what}"))
}

fn tenant(lab: &StandardLab, id: &str) -> Result<Value> {
    json_of(&lab.get(&format!("/api/v1/tenants/{id}"))?)
}

/// Whether `count` pings from `ns` to a live outside host all come back.
fn pings(ns: &Netns, count: u32) -> Result<bool> {
    let c = count.to_string();
    let dst = outside::live_v4(7).to_string();
    let out = ns.exec_unchecked(
        &["ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "1", &dst],
        Duration::from_secs(30),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.contains(&format!("{count} packets transmitted, {count} received")))
}

/// The events log's flag lines, by flag id: the event names in order. The suspension
/// lines the log also holds (with a `suspension_seq`, no flag) are left out.
fn events_by_flag(lab: &StandardLab) -> Result<BTreeMap<i64, Vec<String>>> {
    let path = lab.rundir()?.join("state").join("events.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let v = json_of(line)?;
        if !v["suspension_seq"].is_null() {
            continue;
        }
        for key in ["at", "ts", "actor", "tenant", "kind", "state", "event"] {
            ensure!(!v[key].is_null(), "events log line without {key}: {line}");
        }
        let id = v["flag"]
            .as_i64()
            .with_context(|| format!("no flag: {line}"))?;
        out.entry(id)
            .or_default()
            .push(v["event"].as_str().unwrap_or("").to_string());
    }
    Ok(out)
}

/// The (flag, event) pairs the receiver accepted (answered 2xx), each notification id once.
fn accepted(received: &[Received]) -> Result<BTreeSet<(i64, String)>> {
    let mut ids = BTreeSet::new();
    let mut out = BTreeSet::new();
    for r in received.iter().filter(|r| r.status < 300) {
        let b = &r.body;
        let id = b["notification"]
            .as_i64()
            .with_context(|| format!("no notification id: {b}"))?;
        ensure!(ids.insert(id), "notification {id} accepted twice");
        for key in ["tenant", "kind", "state", "figures", "first_seen", "at"] {
            ensure!(!b[key].is_null(), "notification without {key}: {b}");
        }
        out.insert((
            b["flag"].as_i64().context("no flag")?,
            b["event"].as_str().context("no event")?.to_string(),
        ));
    }
    Ok(out)
}

#[test]
fn unanswered_flags_suspend_only_where_the_policy_says_and_notices_survive_an_outage() -> Result<()>
{
    let lab = StandardLab::build_outside("wr")?;
    // Outage: the first three deliveries are refused with 500.
    let receiver = Receiver::start(&lab.node, 3)?;
    let daemon = start(
        &lab,
        "    detectors:\n      scan:\n        suspend_on_deadline: true\n",
        "    detectors:\n      scan:\n        suspend_on_deadline: false\n",
    )?;
    ensure!(
        pings(&lab.globex, 3)? && pings(&lab.initech, 3)?,
        "no connectivity before the test"
    );
    thread::scope(|s| -> Result<()> {
        let g = s.spawn(|| scan_from(&lab.globex, 0x100));
        let i = s.spawn(|| scan_from(&lab.initech, 0x200));
        g.join().map_err(|_| anyhow::anyhow!("scan panicked"))??;
        i.join().map_err(|_| anyhow::anyhow!("scan panicked"))??;
        Ok(())
    })?;
    let g = scan_flag(&lab, &daemon, "globex")?;
    let i = scan_flag(&lab, &daemon, "initech")?;

    // Notified (after the outage) with a deadline DEADLINE_S from delivery.
    for id in [g, i] {
        let f = wait_for_flag(&lab, id, Duration::from_secs(20), "notified", |f| {
            f["state"] != "open"
        })?;
        let deadline = f["deadline"]
            .as_i64()
            .context("notified without deadline")?;
        let first = f["first_seen"].as_i64().context("first_seen")?;
        ensure!(
            deadline >= first + DEADLINE_S as i64,
            "deadline {deadline} is not counted from delivery (first seen {first}): {f}"
        );
    }

    // globex: unanswered past the deadline -> suspended by warden, flag escalated.
    let escalated = wait_for_flag(
        &lab,
        g,
        Duration::from_secs(DEADLINE_S + 10),
        "escalated",
        |f| f["state"] == "escalated",
    )
    .with_context(|| state_report(&lab, &daemon))?;
    let t = tenant(&lab, "globex")?;
    ensure!(t["state"] == "suspended", "globex not suspended: {t}");
    let suspension = &t["suspension"];
    ensure!(
        suspension["actor"] == "warden"
            && suspension["reason"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("flag {g}")),
        "suspension not by warden naming the flag: {suspension}"
    );
    ensure!(
        escalated["state_reason"]
            .as_str()
            .unwrap_or("")
            .contains("deadline"),
        "escalated without a reason: {escalated}"
    );
    ensure!(
        !pings(&lab.globex, 3)?,
        "suspended globex still reaches out"
    );

    // initech: its kind does not suspend -> once the deadline sweep has passed its flag
    // (one deadline_passed event), still notified, tenant active, traffic flows.
    eventually(Duration::from_secs(10), || {
        let events = events_by_flag(&lab)?;
        let got = events.get(&i).map(Vec::as_slice).unwrap_or_default();
        ensure!(
            got.iter().any(|e| e == "deadline_passed"),
            "initech's flag events: {got:?}"
        );
        Ok(true)
    })
    .context("the deadline sweep did not pass initech's flag")?;
    let f = flag(&lab, i)?;
    ensure!(f["state"] == "notified", "initech's flag moved: {f}");
    let t = tenant(&lab, "initech")?;
    ensure!(t["state"] == "active", "initech suspended: {t}");
    ensure!(pings(&lab.initech, 3)?, "initech lost connectivity");

    // The receiver saw every notification despite the outage; failures were counted.
    let want: BTreeSet<(i64, String)> = [
        (g, "opened".to_string()),
        (i, "opened".to_string()),
        (g, "escalated".to_string()),
    ]
    .into();
    eventually(Duration::from_secs(15), || {
        let got = accepted(&receiver.received())?;
        ensure!(got == want, "receiver accepted {got:?}, want {want:?}");
        Ok(true)
    })?;
    let refused = receiver
        .received()
        .iter()
        .filter(|r| r.status == 500)
        .count();
    ensure!(refused == 3, "receiver refused {refused} requests, not 3");
    for r in receiver.received() {
        if r.body["event"] == "opened" && r.status < 300 {
            ensure!(
                r.body["deadline_ts"].as_i64().is_some(),
                "an opened notice without its deadline: {}",
                r.body
            );
        }
    }
    let m = Metrics::fetch(&lab)?;
    let failures = m.sum("warden_webhook_failures_total", &[]);
    let delivered = m.sum("warden_webhook_notifications_total", &[]);
    ensure!(
        failures == 3.0 && delivered == 3.0,
        "metrics: {failures} failures, {delivered} delivered (want 3, 3)"
    );
    let status = json_of(&lab.get("/api/v1/status")?)?;
    let review = &status["review"];
    ensure!(
        review["pending"] == 0
            && review["failures"] == 3
            && review["delivered"] == 3
            && review["deadline_suspensions"] == 1
            && review["deadlines_passed"] == 1,
        "status review: {review}"
    );

    // One events-log line per state change.
    let events = events_by_flag(&lab)?;
    ensure!(
        events.get(&g).map(Vec::as_slice)
            == Some(&["opened", "notified", "suspended", "escalated"].map(String::from)[..]),
        "globex flag events: {:?}",
        events.get(&g)
    );
    ensure!(
        events.get(&i).map(Vec::as_slice)
            == Some(&["opened", "notified", "deadline_passed"].map(String::from)[..]),
        "initech flag events: {:?}",
        events.get(&i)
    );
    // The suspension itself, with its addresses, for a rebuild of a lost database.
    let log = std::fs::read_to_string(lab.rundir()?.join("state").join("events.jsonl"))?;
    ensure!(
        log.lines()
            .filter_map(|l| json_of(l).ok())
            .any(|v| v["event"] == "tenant_suspended"
                && v["tenant"] == "globex"
                && v["actor"] == "warden"
                && v["addresses"].as_array().is_some_and(|a| !a.is_empty())),
        "no tenant_suspended line for globex in the events log:\n{log}"
    );
    drop(daemon);
    Ok(())
}

#[test]
fn an_acknowledged_flag_stops_the_clock() -> Result<()> {
    let lab = StandardLab::build_outside("wk")?;
    let receiver = Receiver::start(&lab.node, 0)?;
    let daemon = start(
        &lab,
        "    detectors:\n      scan:\n        suspend_on_deadline: true\n",
        "",
    )?;
    scan_from(&lab.globex, 0x300)?;
    let g = scan_flag(&lab, &daemon, "globex")?;
    wait_for_flag(&lab, g, Duration::from_secs(10), "notified", |f| {
        f["state"] == "notified"
    })?;
    let r = lab.request(
        "POST",
        &format!("/api/v1/flags/{g}/ack"),
        Some("{}"),
        Some(token::OPERATOR),
    )?;
    ensure!(r.status == 200, "ack: {} {}", r.status, r.body);
    // Well past the deadline: nothing happens. Not synchronisation: an absence needs
    // the time to pass (an acked flag leaves no trace of the sweep to wait for).
    thread::sleep(Duration::from_secs(DEADLINE_S + 3));
    let f = flag(&lab, g)?;
    ensure!(f["state"] == "acked", "acked flag moved: {f}");
    let t = tenant(&lab, "globex")?;
    ensure!(t["state"] == "active", "globex suspended after ack: {t}");
    ensure!(pings(&lab.globex, 3)?, "globex lost connectivity");
    let got = accepted(&receiver.received())?;
    let want: BTreeSet<(i64, String)> =
        [(g, "opened".to_string()), (g, "acked".to_string())].into();
    ensure!(got == want, "receiver accepted {got:?}, want {want:?}");
    let events = events_by_flag(&lab)?;
    ensure!(
        events.get(&g).map(Vec::as_slice)
            == Some(&["opened", "notified", "acked"].map(String::from)[..]),
        "globex flag events: {:?}",
        events.get(&g)
    );
    drop(daemon);
    Ok(())
}

/// The daemon's `review` status, polled until `pred` holds, for at most `timeout`.
fn wait_review(
    lab: &StandardLab,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Result<Value> {
    eventually_every(timeout, Duration::from_millis(100), || {
        let review = json_of(&lab.get("/api/v1/status")?)?["review"].clone();
        ensure!(pred(&review), "{review}");
        Ok(Some(review))
    })
    .with_context(|| format!("status review not {what}"))
}

#[test]
fn a_notice_queued_while_the_receiver_is_down_survives_a_daemon_restart() -> Result<()> {
    let lab = StandardLab::build_outside("wq")?;
    // No receiver yet: every delivery is refused at connect.
    let daemon = start(&lab, "", "")?;
    scan_from(&lab.initech, 0x400)?;
    let i = scan_flag(&lab, &daemon, "initech")?;
    let review = wait_review(&lab, Duration::from_secs(10), "failing", |r| {
        r["failures"].as_u64().unwrap_or(0) >= 2 && r["pending"] == 1
    })?;
    println!("before the restart: {review}");
    let f = flag(&lab, i)?;
    ensure!(
        f["state"] == "open" && f["deadline"].is_null(),
        "a flag whose notice was not delivered has a deadline: {f}"
    );
    daemon.stop()?;

    let receiver = Receiver::start(&lab.node, 0)?;
    let daemon = start(&lab, "", "")?;
    let f = wait_for_flag(&lab, i, Duration::from_secs(20), "notified", |f| {
        f["state"] == "notified"
    })
    .with_context(|| state_report(&lab, &daemon))?;
    ensure!(
        f["deadline"].as_i64().is_some(),
        "notified without deadline: {f}"
    );
    let got = accepted(&receiver.received())?;
    let want: BTreeSet<(i64, String)> = [(i, "opened".to_string())].into();
    ensure!(got == want, "receiver accepted {got:?}, want {want:?}");
    wait_review(&lab, Duration::from_secs(5), "drained", |r| {
        r["pending"] == 0 && r["delivered"] == 1
    })?;
    let events = events_by_flag(&lab)?;
    ensure!(
        events
            .get(&i)
            .is_some_and(|e| e.starts_with(&["opened".to_string(), "notified".to_string()])),
        "initech flag events: {:?}",
        events.get(&i)
    );
    drop(daemon);
    Ok(())
}
