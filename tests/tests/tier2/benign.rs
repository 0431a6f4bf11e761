//! Scan detection a security team can trust: the benign workloads that plain TRW took for
//! scans (a crawler meeting an overloaded server, mail Warden itself blocks, a monitoring
//! host with hosts down, a recursive resolver with silent upstreams) raise no flag, and
//! the scanners (nmap connect and SYN scans, a masscan sweep) are still flagged, with
//! their time to flag printed.
//!
//! Every workload runs under the lab's detection policy (`detection::DETECTORS`: the
//! documented `scan` defaults, `min_failed_targets` 10 among them, with `distinct_targets`
//! 50 over 30 s), real tools in lab namespaces, bounded in count and time. Each benign test
//! ends with the control scan, so its silence means something.

use std::{thread, time::Duration};

use anyhow::{bail, ensure, Context as _, Result};
use warden_tests::{
    evidence::{dropped, wait_flag, Evidence},
    lab::Netns,
    topology::outside,
    workloads::{dns_responders, http_server, masscan, nmap, require, smtp_sink},
};

use crate::detection::{
    crawl_100_outside_servers, crossed, DetectionLab, BENIGN_SETTLE, FLAG_TIMEOUT,
};

/// Runs `script` with `sh` in `ns` (bounded by `timeout`); counts its output lines that
/// are exactly `ok` and `failed`.
fn tally(ns: &Netns, script: &str, timeout: Duration) -> Result<(usize, usize)> {
    let out = ns.exec_timeout(&["sh", "-c", script], timeout)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = text.lines().filter(|l| *l == "ok").count();
    let failed = text.lines().filter(|l| *l == "failed").count();
    Ok((ok, failed))
}

/// `cmd` as a background job of a script that prints `ok` or `failed` for it.
fn job(cmd: &str) -> String {
    format!("( {cmd} >/dev/null 2>&1 && echo ok || echo failed ) &\n")
}

#[test]
fn a_crawler_whose_overloaded_server_drops_5_syns_in_a_second_raises_no_flag() -> Result<()> {
    require("nft")?;
    let lab = DetectionLab::start("", "")?;
    let tmp = lab.lab.lab.tempdir().to_path_buf();
    let _web = http_server(&lab.ext, &tmp.join("www-ext"), 80, 20_000)?;
    // The overloaded server: its listen backlog is full, so the kernel drops the SYNs of
    // five sites it serves on ports 8081-8085 (emulated with a drop rule: a full backlog
    // drops SYNs silently too).
    let busy = outside::live_v4(0xa00).to_string();
    let rule = format!("ip daddr {busy} tcp dport 8081-8085 drop");
    lab.ext.exec(&["nft", "add table ip overload"])?;
    lab.ext.exec(&[
        "nft",
        "add chain ip overload input { type filter hook input priority 0; }",
    ])?;
    lab.ext
        .exec(&["nft", &format!("add rule ip overload input {rule}")])?;
    // The crawler meets the overloaded server first, five fetches at once: the worst order
    // for a walk that forgets what came before.
    let script: String = (8081..=8085)
        .map(|p| {
            job(&format!(
                "curl -sSf -o /dev/null --max-time 3 http://{busy}:{p}/"
            ))
        })
        .chain(["wait\n".to_string()])
        .collect();
    let (ok, failed) = tally(&lab.globex, &script, Duration::from_secs(20))?;
    ensure!(
        (ok, failed) == (0, 5),
        "the overloaded server answered {ok} of 5 fetches"
    );
    let t = crawl_100_outside_servers(&lab.globex)?;
    println!(
        "crawler: 5 SYNs to one overloaded server dropped within a second, then {} of 100 servers fetched in {:.1?}",
        t.ok, t.elapsed
    );
    t.all_ok("crawler")?;
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a crawler meeting an overloaded server")?;
    println!("crawler with an overloaded server: 0 flags");
    lab.control_scan()
}

#[test]
fn mail_blocked_by_policy_retried_to_12_mail_servers_raises_no_flag() -> Result<()> {
    // globex may not send mail (the lab's default `smtp: block`): Warden drops every SYN.
    // Twelve servers, over `min_failed_targets`: only not counting Warden's own drops as
    // the tenant's failures keeps it quiet.
    let lab = DetectionLab::start("", "")?;
    let _sink = smtp_sink(&lab.ext)?;
    let servers = outside::live_v4_range(0x301, 12);
    let script: String = servers
        .iter()
        .map(|s| {
            job(&format!(
                "swaks --server {s} --port 25 --from a@globex.lab.test --to b@outside.lab.test --timeout 5"
            ))
        })
        .chain(["wait\n".to_string()])
        .collect();
    require("swaks")?;
    let (ok, failed) = tally(&lab.globex, &script, Duration::from_secs(40))?;
    let drops = dropped(&lab, "globex", "out", "smtp")?;
    println!("blocked mail: {ok} of 12 delivered, {failed} failed; out/smtp drops {drops}");
    ensure!(ok == 0 && failed == 12, "mail got through a blocked policy");
    ensure!(
        drops >= 12,
        "only {drops} SMTP SYNs dropped\n{}",
        lab.report()
    );
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("mail that Warden itself blocks")?;
    println!("mail blocked by policy: 0 flags");
    lab.control_scan()
}

#[test]
fn a_monitoring_host_pinging_100_hosts_every_10_s_with_10_down_raises_no_flag() -> Result<()> {
    let lab = DetectionLab::start("", "")?;
    // Every tenth target is down (an address nobody answers on).
    let targets: Vec<String> = (0..100u32)
        .map(|i| {
            if i % 10 == 5 {
                outside::dark_v4(0xd00 + i).to_string()
            } else {
                outside::live_v4(0xd00 + i).to_string()
            }
        })
        .collect();
    // Three rounds, 10 s apart, each pinging all targets at once.
    let round: String = targets
        .iter()
        .map(|t| job(&format!("ping -n -c 1 -W 1 {t}")))
        .collect();
    let script = format!("for r in 1 2 3; do\n{round}wait\nsleep 9\ndone\n");
    let (ok, failed) = tally(&lab.globex, &script, Duration::from_secs(60))?;
    println!("monitoring: 3 rounds, {ok} replies, {failed} down");
    ensure!(
        (ok, failed) == (270, 30),
        "monitoring rounds: {ok} replies and {failed} down, expected 270 and 30"
    );
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a monitoring host with 10 of 100 targets down")?;
    println!("monitoring host with 10% down: 0 flags");
    lab.control_scan()
}

#[test]
fn a_recursive_resolver_with_12_silent_upstreams_of_60_raises_no_flag() -> Result<()> {
    require("dig")?;
    let lab = DetectionLab::start("", "")?;
    let live = outside::live_v4_range(0xe01, 48);
    let answer = outside::live_v4(0xe00).to_string();
    let _upstreams = dns_responders(&lab.ext, &live, &answer, Duration::from_secs(120))?;
    // 48 answering upstreams and 12 silent ones (nobody there), asked at once, the way a
    // resolver fans a burst of names out; then a second burst of new names.
    let silent: Vec<String> = (0..12u32)
        .map(|i| outside::dark_v4(0xe01 + i).to_string())
        .collect();
    let mut upstreams = live.clone();
    for (i, s) in silent.iter().enumerate() {
        upstreams.insert(i * 5 + 2, s.clone());
    }
    let burst = |n: usize| -> String {
        upstreams
            .iter()
            .enumerate()
            .map(|(i, u)| {
                job(&format!(
                    "test \"$(dig +short +tries=1 +time=2 @{u} name{n}-{i}.lab.test A)\" = {answer}"
                ))
            })
            .chain(["wait\n".to_string()])
            .collect()
    };
    let script = format!("{}{}", burst(1), burst(2));
    let (ok, failed) = tally(&lab.globex, &script, Duration::from_secs(60))?;
    println!("resolver: {ok} answers, {failed} unanswered from 60 upstreams, 2 bursts");
    ensure!(
        (ok, failed) == (96, 24),
        "resolver: {ok} answered and {failed} not, expected 96 and 24"
    );
    thread::sleep(BENIGN_SETTLE);
    lab.expect_no_flags("a recursive resolver with silent upstreams")?;
    println!("resolver with silent upstreams: 0 flags");
    lab.control_scan()
}

/// Runs `scan` from globex while waiting for its scan flag; prints and returns the time
/// to flag.
fn flagged_while(
    lab: &DetectionLab,
    what: &str,
    scan: impl FnOnce() -> Result<String> + Send,
) -> Result<Duration> {
    let (out, found) = thread::scope(|s| -> Result<_> {
        let scanner = s.spawn(scan);
        let found = wait_flag(&lab.lab, "globex", "scan", FLAG_TIMEOUT);
        let out = scanner
            .join()
            .map_err(|_| anyhow::anyhow!("{what}: scanner thread panicked"))??;
        Ok((out, found?))
    })?;
    let Some((f, took)) = found else {
        bail!(
            "{what}: no scan flag within {FLAG_TIMEOUT:?}\nscanner:\n{out}\n{}",
            lab.report()
        );
    };
    let id = f["id"].as_i64().context("flag id")?;
    let ev = Evidence::of(&lab.lab, id)?;
    crossed(&ev)?;
    println!(
        "{what}: flagged {took:.2?} after it started; figures {:?}; top targets {:?}",
        ev.figures, ev.targets
    );
    lab.expect_counted("globex", "scan")?;
    Ok(took)
}

#[test]
fn nmap_connect_and_syn_scans_and_a_masscan_sweep_are_still_flagged() -> Result<()> {
    require("nmap")?;
    require("masscan")?;
    let live = format!("{}-100", outside::live_v4(0x101));
    let dark = format!("{}-100", outside::dark_v4(1));
    let connect = ["-n", "-Pn", "-sT", "--max-retries", "0", "-p", "23", &live];
    let syn = ["-n", "-Pn", "-sS", "--max-retries", "0", "-p", "22", &dark];
    let mut times = Vec::new();
    for (what, args) in [("nmap connect scan", &connect), ("nmap SYN scan", &syn)] {
        let lab = DetectionLab::start("", "")?;
        let took = flagged_while(&lab, what, || {
            nmap(&lab.globex, args, Duration::from_secs(90))
        })?;
        times.push((what, took));
    }
    // masscan's own stack, randomised over 64 hosts x 50 ports at 1,000 probes a second
    // (3,200 probes; masscan keeps its rate loosely on a loaded machine: bounded at 60 s).
    let lab = DetectionLab::start("", "")?;
    let sweep = format!("{}/26", outside::live_v4(0x1400));
    let took = flagged_while(&lab, "masscan sweep", || {
        masscan(
            &lab.globex,
            &["--rate", "1000", "--wait", "0", "-p", "1-50", &sweep],
            60,
        )
    })?;
    times.push(("masscan sweep", took));
    println!("time to flag: {times:?}");
    Ok(())
}
