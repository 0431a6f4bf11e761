//! Proxies (issue 19, point 4): real relays on globex, each relaying for 20 to 100
//! outside clients (distinct source addresses) to 20 to 100 outside web servers, are
//! flagged `proxy` under the documented defaults (`detection::DETECTORS` keeps them: more
//! than 10 clients and 15 destinations with symmetric bytes, judged every second while
//! the 60 s window is open) soon after the relaying starts: tinyproxy with plain GET and
//! with HTTP CONNECT (paced at one fetch a second, a relay in use rather than a burst),
//! danted (SOCKS5) and microsocks (SOCKS5). Relays that are no proxy
//! raise nothing under the same thresholds: a load balancer (tinyproxy as a reverse
//! proxy: 100 clients in, 4 backends out), a web server whose every page calls 4
//! backend services, and a mail server receiving from 30 senders and delivering to 30
//! relays. (The crawler, DNS servers and an outbound-only mail server are in
//! `detection` and `benign`, under the same thresholds.)
//!
//! Time to flag is printed with the fetches relayed by then, and judged only against a
//! generous bound ([`RELAY_FOR`]); the 30 s the issue asks for is what the print shows.
//! Every loop is bounded in count and time.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context as _, Result};
use warden_tests::{
    evidence::{flags, wait_flag, Evidence},
    lab::Proc,
    topology::{addr, outside},
    wait::eventually,
    workloads::{
        http_fetches_via, http_proxy, http_server, require, send_mail, smtp_sink, socks_proxy,
        socks_server, Fetch,
    },
};

use crate::detection::{crossed, DetectionLab, BENIGN_SETTLE};

/// Body of the outside web servers' page (bytes).
const PAGE: usize = 20_000;
/// Fetches between two looks at the flags.
const ROUND: u32 = 5;
/// How long a case relays at most before it gives up on the flag.
const RELAY_FOR: Duration = Duration::from_secs(60);
/// First outside client (live host index) and first outside web server.
const CLIENTS_FROM: u32 = 0x2000;
const SERVERS_FROM: u32 = 0x3000;

/// One relay case: the proxy's listen port and the `curl` options that go through it.
struct Relay {
    what: &'static str,
    port: u16,
    via: Vec<String>,
    clients: u32,
    destinations: u32,
    /// At most one round of fetches per this long (`None`: back to back).
    pace: Option<Duration>,
}

/// Fetch `i` of a relay: client `i mod clients`, server `i mod destinations`.
fn fetch(r: &Relay, i: u32) -> Fetch {
    Fetch {
        source: Some(outside::live_v4(CLIENTS_FROM + i % r.clients).to_string()),
        url: format!(
            "http://{}/",
            outside::live_v4(SERVERS_FROM + i % r.destinations)
        ),
        socks: None,
    }
}

/// Relays rounds of [`ROUND`] fetches through the proxy until globex is flagged `proxy`
/// (or [`RELAY_FOR`] passes); prints time to flag, clients, destinations and fetches
/// relayed by then, and checks the flag's evidence.
fn relay_is_flagged(lab: &DetectionLab, r: &Relay) -> Result<()> {
    let via: Vec<&str> = r.via.iter().map(String::as_str).collect();
    let start = Instant::now();
    let mut relayed = 0;
    let mut found = None;
    for round in 0.. {
        if start.elapsed() >= RELAY_FOR {
            break;
        }
        if let Some(pace) = r.pace {
            // Between paced rounds, keep looking for the flag (the time to flag is then
            // exact to a poll, not to a round).
            let wait = (start + pace * round).saturating_duration_since(Instant::now());
            if let Some((f, _)) = wait_flag(lab, "globex", "proxy", wait)? {
                found = Some(f);
                break;
            }
        }
        let fetches: Vec<Fetch> = (0..ROUND).map(|k| fetch(r, round * ROUND + k)).collect();
        let t = http_fetches_via(&lab.ext, &fetches, &via, Duration::from_secs(60))?;
        t.all_ok(&format!("fetches through {}", r.what))?;
        relayed += t.ok;
        if let Some((f, _)) = wait_flag(lab, "globex", "proxy", Duration::ZERO)? {
            found = Some(f);
            break;
        }
    }
    let Some(f) = found else {
        bail!(
            "{}: {relayed} fetches relayed for {} clients to {} servers in {:.1?}, no proxy flag\n{}",
            r.what,
            r.clients,
            r.destinations,
            start.elapsed(),
            lab.report()
        );
    };
    let took = start.elapsed();
    let id = f["id"].as_i64().context("flag id")?;
    let ev = Evidence::of(lab, id)?;
    let figure = |name: &str| {
        ev.figures
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    };
    println!(
        "{}: relaying for {} clients to {} servers{}: flagged proxy {took:.1?} after it started, \
         {relayed} fetches relayed by then (looked every {ROUND}); the flag counted {} clients, \
         {} destinations, byte symmetry {:.2}",
        r.what,
        r.clients,
        r.destinations,
        r.pace
            .map(|p| format!(" at {ROUND} fetches per {p:?}"))
            .unwrap_or_default(),
        figure("inbound_clients"),
        figure("outbound_destinations"),
        figure("byte_symmetry"),
    );
    println!(
        "{}: figures {:?}, thresholds {:?}, top targets {:?}",
        r.what, ev.figures, ev.thresholds, ev.targets
    );
    crossed(&ev)?;
    let port = format!("port {}", r.port);
    ensure!(
        ev.targets
            .iter()
            .any(|t| t == addr::GLOBEX_V4 || *t == port),
        "{}: the flag names neither the relaying address nor its port: {:?}",
        r.what,
        ev.targets
    );
    let kinds: Vec<String> = flags(lab, "")?
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or("?").to_owned())
        .collect();
    ensure!(
        kinds.iter().all(|k| k == "proxy"),
        "{}: the relay raised other flags too: {kinds:?}\n{}",
        r.what,
        lab.report()
    );
    lab.expect_counted("globex", "proxy")
}

/// The lab with the outside web servers up.
fn relay_lab() -> Result<(DetectionLab, Proc)> {
    let lab = DetectionLab::start("", "")?;
    let tmp = lab.lab.lab.tempdir().to_path_buf();
    let web = http_server(&lab.ext, &tmp.join("www-ext"), 80, PAGE)?;
    Ok((lab, web))
}

#[test]
fn tinyproxy_relaying_plain_gets_for_20_clients_to_20_servers_is_flagged_as_proxy() -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let dir = lab.lab.lab.tempdir().join("tinyproxy");
    let _proxy = http_proxy(&lab.globex, &dir, addr::GLOBEX_V4, 8888, "")?;
    let proxy = format!("http://{}:8888", addr::GLOBEX_V4);
    relay_is_flagged(
        &lab,
        &Relay {
            what: "tinyproxy GET",
            port: 8888,
            via: vec!["--proxy".into(), proxy],
            clients: 20,
            destinations: 20,
            pace: None,
        },
    )
}

#[test]
fn tinyproxy_tunnelling_http_connect_for_60_clients_to_60_servers_at_1_a_second_is_flagged_as_proxy(
) -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let dir = lab.lab.lab.tempdir().join("tinyproxy");
    let _proxy = http_proxy(&lab.globex, &dir, addr::GLOBEX_V4, 8888, "")?;
    let proxy = format!("http://{}:8888", addr::GLOBEX_V4);
    relay_is_flagged(
        &lab,
        &Relay {
            what: "tinyproxy CONNECT",
            port: 8888,
            via: vec!["--proxytunnel".into(), "--proxy".into(), proxy],
            clients: 60,
            destinations: 60,
            // A relay in use, not a burst: 1 fetch a second.
            pace: Some(Duration::from_secs(5)),
        },
    )
}

#[test]
fn danted_relaying_socks5_for_100_clients_to_100_servers_is_flagged_as_proxy() -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let dir = lab.lab.lab.tempdir().join("danted");
    let _proxy = socks_server(&lab.globex, &dir, addr::GLOBEX_V4, 1080, "eth0")?;
    relay_is_flagged(
        &lab,
        &Relay {
            what: "danted SOCKS5",
            port: 1080,
            via: vec!["--socks5".into(), format!("{}:1080", addr::GLOBEX_V4)],
            clients: 100,
            destinations: 100,
            pace: None,
        },
    )
}

#[test]
fn microsocks_relaying_for_20_clients_to_20_servers_is_flagged_once_and_seen_past_its_window(
) -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let _proxy = socks_proxy(&lab.globex, addr::GLOBEX_V4, 1080)?;
    let mut r = Relay {
        what: "microsocks",
        port: 1080,
        via: vec!["--socks5".into(), format!("{}:1080", addr::GLOBEX_V4)],
        clients: 20,
        destinations: 20,
        pace: None,
    };
    relay_is_flagged(&lab, &r)?;
    // The relay goes on for the same clients and servers, which the programs report
    // again only when their contact epoch turns: the detector must still see it in the
    // next window, and keep the one flag.
    r.pace = Some(Duration::from_secs(5));
    keeps_one_flag(&lab, &r, PROXY_WINDOW + Duration::from_secs(5))
}

/// The default `proxy.window`.
const PROXY_WINDOW: Duration = Duration::from_secs(60);

/// Relays on through `r` for `relay_for` (paced), then checks that globex has exactly
/// one `proxy` flag and that it was seen a window or more after it was first seen.
fn keeps_one_flag(lab: &DetectionLab, r: &Relay, relay_for: Duration) -> Result<()> {
    let via: Vec<&str> = r.via.iter().map(String::as_str).collect();
    let start = Instant::now();
    let mut relayed = 0;
    for round in 0.. {
        let next = start + r.pace.unwrap_or_default() * round;
        if next.duration_since(start) >= relay_for {
            break;
        }
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let fetches: Vec<Fetch> = (0..ROUND).map(|k| fetch(r, round * ROUND + k)).collect();
        let t = http_fetches_via(&lab.ext, &fetches, &via, Duration::from_secs(60))?;
        t.all_ok(&format!("fetches through {} after the flag", r.what))?;
        relayed += t.ok;
    }
    // The flag's evidence is rewritten every 10 s while the episode goes on. The first
    // window's closing report comes less than a window after the first crossing (the
    // window opened before it), so a flag last seen a window or more after it was first
    // seen was seen again in the next window.
    let window = i64::try_from(PROXY_WINDOW.as_secs())?;
    let seen = eventually(Duration::from_secs(15), || {
        let list = flags(lab, "tenant=globex&kind=proxy")?;
        ensure!(list.len() == 1, "{} proxy flags: {list:?}", list.len());
        let first = list[0]["first_seen"].as_i64().context("first_seen")?;
        let last = list[0]["last_seen"].as_i64().context("last_seen")?;
        Ok((last - first >= window).then_some(last - first))
    })
    .with_context(|| {
        format!(
            "{}: relaying on for {relay_for:?} ({relayed} fetches) did not keep the flag seen past its window\n{}",
            r.what,
            lab.report()
        )
    })?;
    println!(
        "{}: relayed {relayed} more fetches over {:.1?}; still one flag, last seen {seen} s after first seen",
        r.what,
        start.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Relays that are no proxy: the same thresholds, no flag of any kind.

/// Backends of the look-alikes: 4 outside hosts.
fn backends() -> Vec<String> {
    outside::live_v4_range(0x3800, 4)
}

/// `n` fetches of `path` on globex from `n` distinct outside clients.
fn clients_fetch(lab: &DetectionLab, path: &str, n: u32) -> Result<()> {
    let fetches: Vec<Fetch> = (0..n)
        .map(|i| Fetch {
            source: Some(outside::live_v4(CLIENTS_FROM + i).to_string()),
            url: format!("http://{}{path}", addr::GLOBEX_V4),
            socks: None,
        })
        .collect();
    let t = http_fetches_via(&lab.ext, &fetches, &[], Duration::from_secs(120))?;
    println!(
        "{n} clients fetched {path}: {} ok in {:.1?}",
        t.ok, t.elapsed
    );
    t.all_ok(path)
}

#[test]
fn a_load_balancer_relaying_100_clients_to_4_backends_raises_no_flag() -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let dir = lab.lab.lab.tempdir().join("balancer");
    // tinyproxy as a reverse proxy: /bN/ on globex:80 is backend N (no NAT: globex
    // opens its own connections to the backends).
    let paths: String = backends()
        .iter()
        .enumerate()
        .map(|(i, b)| format!("ReversePath \"/b{i}/\" \"http://{b}/\"\n"))
        .collect();
    let extra = format!("{paths}ReverseOnly Yes\n");
    let _lb = http_proxy(&lab.globex, &dir, addr::GLOBEX_V4, 80, &extra)?;
    // Two rounds: every backend serves 25 clients per round.
    for _ in 0..2 {
        for b in 0..4 {
            clients_fetch(&lab, &format!("/b{b}/"), 25)?;
        }
    }
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a load balancer with 100 clients and 4 backends")?;
    lab.control_scan()
}

/// A CGI page for busybox httpd that calls each backend (port 8080) before it answers
/// with `body` bytes.
fn write_backend_page(www: &Path, backends: &[String], body: usize) -> Result<()> {
    let cgi = www.join("cgi-bin");
    std::fs::create_dir_all(&cgi).with_context(|| format!("creating {}", cgi.display()))?;
    let calls: String = backends
        .iter()
        .map(|b| {
            format!("/usr/bin/curl -sSf -o /dev/null --max-time 3 http://{b}:8080/ || exit 1\n")
        })
        .collect();
    let script = format!(
        "#!/bin/sh\n{calls}printf 'Content-Type: text/plain\\r\\n\\r\\n'\nhead -c {body} /dev/zero | tr '\\0' a\n"
    );
    let page = cgi.join("page");
    std::fs::write(&page, script).with_context(|| format!("writing {}", page.display()))?;
    std::fs::set_permissions(&page, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", page.display()))
}

#[test]
fn a_web_server_calling_4_backends_for_each_of_100_clients_raises_no_flag() -> Result<()> {
    let (lab, _web) = relay_lab()?;
    let tmp = lab.lab.lab.tempdir().to_path_buf();
    let _services = http_server(&lab.ext, &tmp.join("www-backend"), 8080, 1_000)?;
    let www = tmp.join("www-globex");
    // A small page: its bytes out are about the bytes in of its 4 backend calls, so
    // byte symmetry alone would not tell it from a relay.
    write_backend_page(&www, &backends(), 4_000)?;
    let _site = http_server(&lab.globex, &www, 80, 100)?;
    clients_fetch(&lab, "/cgi-bin/page", 100)?;
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a web server calling 4 backends for 100 clients")?;
    lab.control_scan()
}

#[test]
fn a_mail_server_receiving_from_30_senders_and_delivering_to_30_relays_raises_no_flag() -> Result<()>
{
    require("swaks")?;
    // The relays are allow-listed, as a mail server's are, so `spam` stays quiet; what
    // keeps `proxy` quiet is that SMTP destinations are not proxy destinations.
    let relays = "198.19.3.0/24";
    let lab = DetectionLab::start(&format!("    smtp: allow\n    allow: [{relays}]\n"), "")?;
    let _relays = smtp_sink(&lab.ext)?;
    let _mta = smtp_sink(&lab.globex)?;
    let script: String = (0..30)
        .map(|i| {
            format!(
                "swaks --server {} --port 25 --local-interface {} --from sender{i}@outside.lab.test \
                 --to postmaster@globex.lab.test --helo outside.lab.test \
                 --body 'A message for the mail server.' --timeout 10 >/dev/null 2>&1 \
                 && echo ok || echo failed\n",
                addr::GLOBEX_V4,
                outside::live_v4(CLIENTS_FROM + i)
            )
        })
        .collect();
    let out = lab
        .ext
        .exec_timeout(&["sh", "-c", &script], Duration::from_secs(120))?;
    let received = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "ok")
        .count();
    ensure!(
        received == 30,
        "the mail server received {received} of 30 messages"
    );
    let sent = send_mail(
        &lab.globex,
        &outside::live_v4_range(0x301, 30),
        "mailer@globex.lab.test",
        "someone@outside.lab.test",
        Duration::from_secs(120),
    )?;
    println!(
        "mail server: received 30 messages from 30 senders, delivered {} of 30 to relays in {relays} in {:.1?}",
        sent.ok, sent.elapsed
    );
    sent.all_ok("mail to the allow-listed relays")?;
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a mail server receiving from 30 and delivering to 30")?;
    lab.control_scan()
}
