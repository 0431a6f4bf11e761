//! Enforcement: bandwidth plans, address binding, SMTP policy, suspension across a
//! daemon crash, and rejected policies, each with real traffic on the standard lab.

use std::{collections::HashMap, path::Path, time::Duration};

use anyhow::{ensure, Context as _, Result};
use aya::maps::{Map, MapData};
use serde_json::Value;
use warden_tests::{
    lab::{format_mac, Netns, Proc},
    noise::{per_second, sample_tx_bytes, until_met, Verdict},
    topology::{addr, token, warden_binary, LabOptions, StandardLab},
    wait::eventually,
};

use crate::common::*;

/// Tenants of the standard lab with their servers' MACs bound.
fn tenants_yaml(lab: &StandardLab, globex: &str, initech: &str, acme: &str) -> Result<String> {
    let gm = format_mac(lab.globex.mac("eth0")?);
    let im = format_mac(lab.initech.mac("eth0")?);
    Ok(format!(
        "tenants:
  - id: acme
    addresses: [198.18.1.1/32, 2001:db8:1::1/128]
{acme}
  - id: globex
    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]
    macs: [{gm}]
{globex}
  - id: initech
    addresses: [198.18.2.130/32, 2001:db8:2:2::10/128]
    macs: [{im}]
{initech}
"
    ))
}

fn start(lab: &StandardLab, name: &str, policy: &str, args: &[&str]) -> Result<Proc> {
    let path = lab.write_policy_as(name, policy)?;
    lab.start_daemon(&warden_binary()?, &path, args)
}

/// A tenant's drops by reason for one direction ("out" or "in"), from the API.
fn drops(lab: &StandardLab, tenant: &str, dir: &str) -> Result<HashMap<String, u64>> {
    let v: Value = serde_json::from_str(&lab.get(&format!("/api/v1/tenants/{tenant}"))?)?;
    Ok(serde_json::from_value(v[dir]["drops"].clone())?)
}

fn drop_count(lab: &StandardLab, tenant: &str, dir: &str, reason: &str) -> Result<u64> {
    Ok(drops(lab, tenant, dir)?.get(reason).copied().unwrap_or(0))
}

/// A `warden_unattributed_packets_total` series from `/metrics`.
fn unattributed(lab: &StandardLab, reason: &str, dir: &str) -> Result<u64> {
    let text = lab.get("/metrics")?;
    let series =
        format!("warden_unattributed_packets_total{{direction=\"{dir}\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .context("series missing")?
        .parse()
        .context("bad value")
}

/// One iperf3 measurement: the receiver's rate over the whole run and per interval.
struct Measured {
    offered_bps: f64,
    received_bps: f64,
    intervals_bps: Vec<f64>,
}

/// Runs iperf3 from `client` to `server_ns` (listening on `server_addr`), `secs` long.
/// Rates are converted from payload to Ethernet frame bits (what plans police).
fn iperf(
    server_ns: &Netns,
    server_addr: &str,
    client: &Netns,
    port: u16,
    udp_bps: Option<u64>,
    secs: u32,
) -> Result<Measured> {
    let p = port.to_string();
    let server = server_ns.spawn(&["iperf3", "-s", "-1", "-J", "-p", &p, "-B", server_addr])?;
    server_ns.wait_tcp_listen(port, Duration::from_secs(10))?;
    let t = secs.to_string();
    let rate;
    let mut cmd = vec!["iperf3", "-c", server_addr, "-p", &p, "-t", &t, "-J"];
    let (frame, payload) = match udp_bps {
        Some(bps) => {
            rate = bps.to_string();
            // 4 MiB socket buffers: the receiver must not be the one that drops.
            cmd.extend_from_slice(&["-u", "-b", &rate, "-l", "1400", "-w", "4M"]);

            (1400.0 + 8.0 + 20.0 + 14.0, 1400.0)
        }
        // MSS 1448 with timestamps on a 1500-byte MTU. Reads of 16 KiB: iperf3's
        // default 128 KiB is 51 ms of a 20 Mbit/s stream, which would quantize its
        // per-second figures by +-5%, the very margin the plan test checks.
        None => {
            cmd.extend_from_slice(&["-l", "16K"]);
            (1448.0 + 32.0 + 20.0 + 14.0, 1448.0)
        }
    };

    let out = client.exec_timeout(&cmd, Duration::from_secs(u64::from(secs) + 30))?;
    let client_json: Value = serde_json::from_slice(&out.stdout).context("iperf3 client JSON")?;
    let log_path = server.log_path().to_path_buf();
    server.wait(Duration::from_secs(15))?;
    let log = std::fs::read_to_string(&log_path)?;
    let server_json: Value =
        serde_json::from_str(&log).with_context(|| format!("iperf3 server JSON:\n{log}"))?;
    let f = frame / payload;
    // For UDP, bytes received over the time the sender sent: the server's own timer
    // also runs while it waits for the first datagram, which understates a rate.
    let sent_secs = client_json["end"]["sum_sent"]["seconds"]
        .as_f64()
        .context("no send time")?;
    let received_bytes = server_json["end"]["sum_received"]["bytes"]
        .as_f64()
        .context("no bytes")?;
    let received = if udp_bps.is_some() {
        Some(received_bytes * 8.0 / sent_secs)
    } else {
        server_json["end"]["sum_received"]["bits_per_second"].as_f64()
    };
    let received = received.context("no receiver rate")?;

    let offered = client_json["end"]["sum_sent"]["bits_per_second"]
        .as_f64()
        .context("no sender rate")?;
    let intervals = server_json["intervals"]
        .as_array()
        .context("no intervals")?
        .iter()
        .filter(|i| i["sum"]["seconds"].as_f64().unwrap_or(0.0) > 0.9)
        .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
        .map(|b| b * f)
        .collect();
    Ok(Measured {
        offered_bps: offered * f,
        received_bps: received * f,
        intervals_bps: intervals,
    })
}

/// The plans of the bandwidth test: 20 and 200 Mbit/s, both directions, both modes.
///
/// The UDP case offers 3x the 200 Mbit/s plan to one host, about 53,600 datagrams per
/// second: over `flood_out.pps` (20,000), so with the default action the victim would be
/// blocked as a flood's. Here the detector only observes: this test measures the plan.
fn plans_policy(lab: &StandardLab) -> Result<String> {
    Ok(format!(
        "{}defaults:\n  smtp: block\n  detectors:\n    flood_out: {{ action: observe, ceiling: observe }}\n    flood_in: {{ action: observe, ceiling: observe }}\n{}",
        lab.policy_header()?,
        tenants_yaml(
            lab,
            "    bandwidth: { egress: 20Mbit, ingress: 200Mbit }",
            "    bandwidth: { egress: 200Mbit, ingress: 20Mbit }",
            "    bandwidth: { egress: 20Mbit, ingress: 20Mbit }",
        )?
    ))
}

/// (what, tenant, direction, server ns, server address, client ns, plan in bit/s)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a Netns,
    &'a str,
    &'a Netns,
    f64,
);

fn plan_cases(lab: &StandardLab) -> [Case<'_>; 5] {
    [
        (
            "globex out (gateway, XDP)",
            "globex",
            "out",
            &lab.ext,
            addr::EXT_WAN1_V4,
            &lab.globex,
            20e6,
        ),
        (
            "initech out (gateway, XDP)",
            "initech",
            "out",
            &lab.ext,
            addr::EXT_WAN1_V4,
            &lab.initech,
            200e6,
        ),
        (
            "initech in (gateway, tcx)",
            "initech",
            "in",
            &lab.initech,
            addr::INITECH_V4,
            &lab.ext,
            20e6,
        ),
        (
            "globex in (gateway, tcx)",
            "globex",
            "in",
            &lab.globex,
            addr::GLOBEX_V4,
            &lab.ext,
            200e6,
        ),
        (
            "acme out (host, tcx)",
            "acme",
            "out",
            &lab.ext,
            addr::EXT_WAN0_V4,
            &lab.node,
            20e6,
        ),
    ]
}

/// A tenant's packets seen and dropped for bandwidth in one direction.
fn seen_and_dropped(lab: &StandardLab, tenant: &str, dir: &str) -> Result<(u64, u64)> {
    let v: Value = serde_json::from_str(&lab.get(&format!("/api/v1/tenants/{tenant}"))?)?;
    let seen = v[dir]["packets"].as_u64().context("packets")?;
    Ok((seen, v[dir]["drops"]["bandwidth"].as_u64().unwrap_or(0)))
}

#[test]
fn bandwidth_plans_deliver_udp_at_three_times_the_plan_at_the_plan_within_5_percent_and_the_burst(
) -> Result<()> {
    // No WAN delay here: the userspace delay line would be one more place where
    // 600 Mbit/s of UDP competes for this machine's two cores.
    let lab = StandardLab::build("wt")?;
    let _daemon = start(
        &lab,
        "plans.yaml",
        &plans_policy(&lab)?,
        &["--detach-on-exit"],
    )?;
    let mut port = 5300;
    for (what, tenant, dir, sns, saddr, cns, plan) in plan_cases(&lab) {
        // An ingress plan's default burst (200 ms of it) is spent on top of the plan
        // once, at the start: over 4 s, 5% more.
        let secs = 4;
        let ceiling = 0.05
            + if dir == "in" {
                INGRESS_BURST_SECONDS / f64::from(secs)
            } else {
                0.0
            };
        until_met(what, |attempt| {
            port += 1;
            let before = seen_and_dropped(&lab, tenant, dir)?;
            let udp = iperf(sns, saddr, cns, port, Some((plan * 3.0) as u64), secs)?;
            let after = seen_and_dropped(&lab, tenant, dir)?;
            let passed = (after.0 - before.0) - (after.1 - before.1);
            // Datagrams of 1400 bytes: 1442-byte frames.
            let warden_bps = passed as f64 * 1442.0 * 8.0 / f64::from(secs);
            let delivered = udp.received_bps / plan - 1.0;
            eprintln!(
                "{what}: plan {:.0} Mbit/s; UDP offered {:.1}, Warden passed {:.2}, receiver got {:.2} Mbit/s ({:+.1}%){}",
                plan / 1e6, udp.offered_bps / 1e6, warden_bps / 1e6, udp.received_bps / 1e6, delivered * 100.0,
                if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() }
            );
            if udp.offered_bps <= 2.5 * plan {
                return Ok(Verdict::Short(format!(
                    "could only offer {:.1} Mbit/s",
                    udp.offered_bps / 1e6
                )));
            }
            ensure!(after.1 > before.1, "{what}: nothing dropped for bandwidth");
            ensure!(
                delivered <= ceiling,
                "{what}: UDP delivered {:.2} Mbit/s for a {:.0} Mbit/s plan (at most {:+.0}%)",
                udp.received_bps / 1e6,
                plan / 1e6,
                ceiling * 100.0
            );
            Ok(if delivered < -0.05 {
                Verdict::Short(format!(
                    "UDP delivered {:.2} Mbit/s for a {:.0} Mbit/s plan (Warden passed {:.2})",
                    udp.received_bps / 1e6,
                    plan / 1e6,
                    warden_bps / 1e6
                ))
            } else {
                Verdict::Met
            })
        })?;
    }
    // A sender that keeps ignoring its plan (two thirds of its packets dropped for longer
    // than the detector's 5 s hold) is a `bandwidth` detection; TCP pressing on its plan
    // is not (the TCP test checks that). initech and globex had two cases each, back to
    // back for initech; acme had one, of 4 s: not yet held long enough.
    let before = lab.get("/api/v1/flags?kind=bandwidth&tenant=acme")?;
    ensure!(
        before.trim() == "[]",
        "acme's 4 s are shorter than the hold, yet: {before}"
    );
    let (what, _, _, sns, saddr, cns, plan) = plan_cases(&lab)
        .into_iter()
        .find(|c| c.1 == "acme")
        .context("the acme case")?;
    iperf(sns, saddr, cns, port + 1, Some((plan * 3.0) as u64), 8)?;
    let flags: serde_json::Value =
        serde_json::from_str(&lab.get("/api/v1/flags?kind=bandwidth&tenant=acme")?)?;
    let tenants: Vec<&str> = flags
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["tenant"].as_str()).collect())
        .unwrap_or_default();
    eprintln!("{what} for 8 s: bandwidth flags {flags}");
    ensure!(
        tenants == ["acme"],
        "8 s at three times the plan: expected one bandwidth flag for acme, got {flags}"
    );
    Ok(())
}

#[test]
fn bandwidth_plans_let_tcp_reach_80_percent_and_never_exceed_plan_plus_burst() -> Result<()> {
    // A WAN's round trip (10 ms): at the lab's bare 0.07 ms, TCP's smallest window (two
    // segments per round trip) is already ~300 Mbit/s, so it could only slow down to a
    // plan through timeouts. Tenants' real peers are milliseconds away.
    let lab = StandardLab::build_with(
        "wt",
        LabOptions {
            wan_delay_ms: Some(5),
        },
    )?;
    let _daemon = start(
        &lab,
        "plans.yaml",
        &plans_policy(&lab)?,
        &["--detach-on-exit"],
    )?;
    // The node interface each case's policed traffic leaves by, before the WAN delay
    // line: its kernel byte counter is where "never more than plan + 5% in any second"
    // is measured. At the receiver the lab's userspace delay line adds its own
    // scheduling jitter, which moved single receiver seconds up to +5.5% while the
    // average was at the plan; those peaks are reported, not judged.
    let egress = ["wan1", "wan1", "lan1", "lan0", "wan0"];
    let mut port = 5400;
    for ((what, _, dir, sns, saddr, cns, plan), ifname) in plan_cases(&lab).into_iter().zip(egress)
    {
        // A policer lets a second carry the plan and its burst: an egress plan's default
        // burst is 20 ms of it (within the 5%), an ingress plan's 200 ms, so TCP reaches
        // its plan at 1 ms too (tier2 shaping).
        let ceiling = 1.05
            + if dir == "in" {
                INGRESS_BURST_SECONDS
            } else {
                0.0
            };
        until_met(what, |attempt| {
            port += 1;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let sampler = sample_tx_bytes(lab.node.name(), ifname, stop.clone(), 60);
            let tcp = iperf(sns, saddr, cns, port, None, 5);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let samples = sampler
                .join()
                .map_err(|_| anyhow::anyhow!("sampler panicked"))??;
            let tcp = tcp?;
            // Per-second rates at the policer's output; the first second holds the start
            // (the burst), the last may be partial: both count, nothing is skipped.
            let per_second = per_second(&samples);
            let max = per_second.iter().cloned().fold(0.0, f64::max);
            let receiver_max = tcp.intervals_bps.iter().cloned().fold(0.0, f64::max);
            eprintln!(
                "{what}: plan {:.0} Mbit/s; TCP delivered {:.2} Mbit/s ({:.1}% of plan); highest second leaving {ifname} {:.2} Mbit/s ({:+.1}%), at the receiver {:.2} ({:+.1}%){}",
                plan / 1e6, tcp.received_bps / 1e6, tcp.received_bps / plan * 100.0,
                max / 1e6, (max / plan - 1.0) * 100.0, receiver_max / 1e6, (receiver_max / plan - 1.0) * 100.0,
                if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() }
            );
            ensure!(
                per_second.len() >= 4,
                "{what}: only {} per-second samples",
                per_second.len()
            );
            ensure!(
                max <= ceiling * plan,
                "{what}: a second leaving {ifname} carried {:.2} Mbit/s, over plan + {:.0}%",
                max / 1e6,
                (ceiling - 1.0) * 100.0
            );
            Ok(if tcp.received_bps < 0.8 * plan {
                Verdict::Short(format!(
                    "TCP reached only {:.1}% of the plan",
                    tcp.received_bps / plan * 100.0
                ))
            } else {
                Verdict::Met
            })
        })?;
    }
    // TCP pressing on its plan loses some packets to the policer, and that is no abuse.
    let flags = lab.get("/api/v1/flags")?;
    ensure!(
        flags.trim() == "[]",
        "TCP within its plan raised flags: {flags}"
    );
    Ok(())
}

#[test]
fn spoofed_sources_arp_poisoning_and_foreign_macs_are_dropped_and_legitimate_traffic_is_not(
) -> Result<()> {
    let lab = StandardLab::build("wt")?;
    let policy = format!(
        "{}defaults:\n  smtp: block\n{}",
        lab.policy_header()?,
        tenants_yaml(&lab, "", "", "")?
    );
    let _daemon = start(&lab, "binding.yaml", &policy, &["--detach-on-exit"])?;
    let g = &lab.globex;

    // Legitimate traffic first: every echo answered, nothing dropped.
    ensure!(ping_received(g, &["-c", "10", "-i", "0.02", "-W", "2"], addr::EXT_WAN1_V4)? == 10);
    ensure!(
        ping_received(
            g,
            &["-6", "-c", "10", "-i", "0.02", "-W", "2"],
            addr::EXT_WAN1_V6
        )? == 10
    );
    ensure!(
        drops(&lab, "globex", "out")?.is_empty(),
        "legitimate traffic was dropped"
    );

    // Source addresses globex does not own: initech's, and nobody's (IPv4 and IPv6).
    for (spoofed, dst, v6) in [
        (addr::INITECH_V4, addr::EXT_WAN1_V4, false),
        ("198.18.2.99", addr::EXT_WAN1_V4, false),
        (addr::INITECH_V6, addr::EXT_WAN1_V6, true),
        ("2001:db8:2:1::99", addr::EXT_WAN1_V6, true),
    ] {
        let plen = if v6 { "128" } else { "32" };
        g.ip(&[
            "addr",
            "add",
            &format!("{spoofed}/{plen}"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        let mut args = vec!["-c", "10", "-i", "0.02", "-W", "1", "-I", spoofed];
        if v6 {
            args.insert(0, "-6");
        }
        let got = ping_received(g, &args, dst)?;
        g.ip(&["addr", "del", &format!("{spoofed}/{plen}"), "dev", "eth0"])?;
        ensure!(got == 0, "{got} echoes from spoofed {spoofed} got through");
    }
    // globex's bound MAC with initech's address and with nobody's: both spoof_ip of
    // globex (the MAC says who sent them).
    let spoof_ip = drop_count(&lab, "globex", "out", "spoof_ip")?;
    ensure!(
        spoof_ip == 40,
        "globex spoof_ip drops {spoof_ip}, expected 40"
    );

    // ARP poisoning: gratuitous ARP replies claiming the gateway's address and an
    // unused one. With arp_accept=1 the node would learn them; Warden drops them.
    lab.node.sysctl("net/ipv4/conf/lan0/arp_accept", "1")?;
    for claim in [addr::NODE_LAN0_V4, "198.18.2.50"] {
        let out = g.exec_unchecked(
            &[
                "arping", "-c", "5", "-w", "2000000", "-P", "-U", "-S", claim, "-i", "eth0", claim,
            ],
            Duration::from_secs(20),
        )?;
        ensure!(out.status.code().is_some(), "arping did not run");
    }
    let spoof_arp = drop_count(&lab, "globex", "out", "spoof_arp")?;
    ensure!(
        spoof_arp == 10,
        "globex spoof_arp drops {spoof_arp}, expected 10"
    );
    let neigh = lab.node.ip(&["neigh", "show", "dev", "lan0"])?;
    ensure!(
        !neigh.contains("198.18.2.50"),
        "poisoned entry learned:\n{neigh}"
    );
    // An honest ARP request from globex for its gateway is answered.
    honest_arp_answered(g)?;

    // A foreign source MAC (MAC flooding, or a hijacked server): all dropped; with
    // globex's address as spoof_mac of globex, with nobody's address as unattributed.
    let real = g.mac("eth0")?;
    let gateway = lab.node.mac("lan0")?;
    // Changing a MAC flushes even permanent neighbour entries: pin the gateway again
    // so the test's IP packets leave as they are, with no ARP in between.
    let set_mac = |mac: [u8; 6]| -> Result<()> {
        g.set_mac("eth0", mac)?;
        g.neigh_permanent("eth0", addr::NODE_LAN0_V4, gateway)?;
        g.neigh_permanent("eth0", addr::NODE_LAN0_V6, gateway)
    };
    let spoofed_before = unattributed(&lab, "spoofed", "out")?;
    set_mac([0x02, 0x66, 0x66, 0x66, 0x66, 0x01])?;
    let got = ping_received(g, &["-c", "10", "-i", "0.02", "-W", "1"], addr::EXT_WAN1_V4)?;
    g.ip(&["addr", "add", "198.18.2.99/32", "dev", "eth0"])?;
    let got_nobody = ping_received(
        g,
        &["-c", "10", "-i", "0.02", "-W", "1", "-I", "198.18.2.99"],
        addr::EXT_WAN1_V4,
    )?;
    g.ip(&["addr", "del", "198.18.2.99/32", "dev", "eth0"])?;
    set_mac(real)?;
    ensure!(
        got == 0 && got_nobody == 0,
        "{got} + {got_nobody} echoes from a foreign MAC got through"
    );
    let spoof_mac = drop_count(&lab, "globex", "out", "spoof_mac")?;
    let nobody = unattributed(&lab, "spoofed", "out")? - spoofed_before;
    eprintln!(
        "foreign MAC: spoof_mac {spoof_mac}, unattributed spoofed {nobody}, drops {:?}",
        drops(&lab, "globex", "out")?
    );
    ensure!(
        spoof_mac == 10,
        "globex spoof_mac drops {spoof_mac}, expected 10"
    );
    ensure!(
        nobody == 10,
        "unattributed spoofed drops {nobody}, expected 10"
    );

    // Legitimate traffic still flows, and the neighbour tenant saw nothing.
    ensure!(ping_received(g, &["-c", "10", "-i", "0.02", "-W", "2"], addr::EXT_WAN1_V4)? == 10);
    ensure!(
        drops(&lab, "initech", "out")?.is_empty(),
        "initech was charged for globex's spoofing"
    );
    eprintln!("drops of globex: spoof_ip {spoof_ip}, spoof_arp {spoof_arp}, spoof_mac {spoof_mac}; legitimate pings 30/30");
    Ok(())
}

/// Tries a TCP connection; true when it is established within 2 s.
fn connects(ns: &Netns, dst: &str, port: u16) -> Result<bool> {
    let out = ns.exec_unchecked(
        &["nc", "-z", "-w", "2", dst, &port.to_string()],
        Duration::from_secs(10),
    )?;
    Ok(out.status.success())
}

#[test]
fn smtp_is_blocked_allowed_or_rate_limited_as_each_tenant_is_configured() -> Result<()> {
    let lab = StandardLab::build("wt")?;
    let policy = format!(
        "{}defaults:\n  smtp: block\n{}",
        lab.policy_header()?,
        tenants_yaml(&lab, "", "    smtp: 6/min", "    smtp: allow")?
    );
    let _daemon = start(&lab, "smtp.yaml", &policy, &["--detach-on-exit"])?;
    let mut sinks = Vec::new();
    for port in ["25", "465", "587", "8080"] {
        sinks.push(lab.ext.spawn(&[
            "socat",
            &format!("TCP-LISTEN:{port},fork,reuseaddr"),
            "OPEN:/dev/null",
        ])?);
        lab.ext
            .wait_tcp_listen(port.parse()?, Duration::from_secs(10))?;
    }
    // globex: blocked on every submission port, other ports fine.
    for port in [25, 465, 587] {
        ensure!(
            !connects(&lab.globex, addr::EXT_WAN1_V4, port)?,
            "globex reached port {port}"
        );
    }
    ensure!(
        connects(&lab.globex, addr::EXT_WAN1_V4, 8080)?,
        "globex could not reach port 8080"
    );
    ensure!(
        drop_count(&lab, "globex", "out", "smtp")? >= 3,
        "globex SMTP drops not counted"
    );
    // acme (host mode): allowed.
    for port in [25, 465, 587] {
        ensure!(
            connects(&lab.node, addr::EXT_WAN0_V4, port)?,
            "acme could not reach port {port}"
        );
    }
    ensure!(drop_count(&lab, "acme", "out", "smtp")? == 0);
    // initech: 6 new connections a minute, burst 1: the first connects, the next
    // one right after it does not.
    ensure!(
        connects(&lab.initech, addr::EXT_WAN1_V4, 25)?,
        "initech's first SMTP connection failed"
    );
    ensure!(
        !connects(&lab.initech, addr::EXT_WAN1_V4, 25)?,
        "initech's second SMTP connection was not limited"
    );
    ensure!(
        connects(&lab.initech, addr::EXT_WAN1_V4, 8080)?,
        "initech's other traffic was limited"
    );
    let limited = drop_count(&lab, "initech", "out", "smtp")?;
    ensure!(limited >= 1, "initech SMTP drops not counted");
    eprintln!("smtp: globex blocked on 25/465/587, acme allowed, initech 1st connect ok then {limited} SYN(s) dropped");
    Ok(())
}

fn sum_pinned(path: &Path, index: u32) -> Result<[warden_common::Counters; 2]> {
    let map = Map::PerCpuArray(MapData::from_pin(path)?);
    kernel_counters(&map, index)
}

#[test]
fn a_suspended_tenant_passes_nothing_but_management_across_sigkill_and_restart() -> Result<()> {
    let lab = StandardLab::build("wt")?;
    let policy_path = lab.write_policy()?;
    let warden = warden_binary()?;
    let d1 = lab.start_daemon(&warden, &policy_path, &[])?;
    ensure!(
        ping_received(
            &lab.globex,
            &["-c", "3", "-i", "0.05", "-W", "2"],
            addr::EXT_WAN1_V4
        )? == 3
    );

    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/suspend",
        Some(r#"{"reason":"tier2: abuse report 42"}"#),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200, "suspend: {} {}", r.status, r.body);
    let index = api_counters(&lab)?["globex"].0;
    let before = api_counters(&lab)?["globex"].1;

    // Traffic flows throughout: 400 echoes to the outside, 400 to the console, 8 s.
    let outside = lab.globex.spawn(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.02",
        "-c",
        "400",
        "-W",
        "1",
        addr::EXT_WAN1_V4,
    ])?;
    let console = lab.globex.spawn(&[
        "ping",
        "-n",
        "-q",
        "-i",
        "0.02",
        "-c",
        "400",
        "-W",
        "1",
        addr::CONSOLE_V4,
    ])?;
    // The kernel counts globex's echoes (two pings of 50 a second) while the daemon runs...
    let pinned = lab.pinned_map(warden_common::map::TENANT_COUNTERS)?;
    let counted_more = |than: [warden_common::Counters; 2]| {
        eventually(Duration::from_secs(10), || {
            let now = sum_pinned(&pinned, index)?;
            ensure!(
                now[0].packets >= than[0].packets + 25,
                "{} packets out counted, from {}",
                now[0].packets,
                than[0].packets
            );
            Ok(true)
        })
    };
    counted_more(sum_pinned(&pinned, index)?).context("the echoes were not counted")?;
    // SIGKILL: no cleanup runs.
    ensure!(
        // SAFETY: kill only sends a signal to the daemon we started.
        unsafe { libc::kill(d1.pid() as i32, libc::SIGKILL) } == 0,
        "kill -9 failed"
    );
    drop(d1);
    // ... and after it died.
    counted_more(sum_pinned(&pinned, index)?)
        .context("nothing counted while the daemon was dead")?;

    let mut d2 = lab.start_daemon(&warden, &policy_path, &[])?;
    d2.wait_log("how=adopted", Duration::from_secs(5))?;
    ensure!(
        !d2.log().contains("how=attached") && !d2.log().contains("how=replaced"),
        "restart re-attached:\n{}",
        d2.log()
    );
    // Its exit status is "no reply", which is the point; the counts below judge it.
    let _ = outside.wait(Duration::from_secs(40))?;
    let console_ok = console.wait(Duration::from_secs(40))?;
    ensure!(console_ok.success(), "console pings failed");
    let after = api_counters(&lab)?["globex"].1;
    // Every echo counted exactly once across the crash and restart: 800 out.
    ensure!(
        after[0].packets == before[0].packets + 800,
        "counters reset or missed packets: before {before:?} after {after:?}"
    );
    let suspended_drops = drop_count(&lab, "globex", "out", "suspended")?;
    ensure!(
        suspended_drops == 400,
        "suspended drops {suspended_drops}, expected the 400 outside echoes"
    );
    // The outside host saw none of the 400 echoes: every reply that came back was from the console.
    let in_delta = after[1].packets - before[1].packets;
    ensure!(
        in_delta == 400,
        "globex received {in_delta} packets; expected exactly the 400 console replies"
    );

    // Lift it: traffic flows again. Both acts are in the audit log with who and why.
    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/unsuspend",
        Some(r#"{"reason":"tier2: resolved"}"#),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200, "unsuspend: {} {}", r.status, r.body);
    ensure!(
        ping_received(
            &lab.globex,
            &["-c", "5", "-i", "0.05", "-W", "2"],
            addr::EXT_WAN1_V4
        )? == 5
    );
    let audit: Value = serde_json::from_str(&lab.get("/api/v1/audit")?)?;
    let acts: Vec<(String, String)> = audit
        .as_array()
        .context("audit list")?
        .iter()
        .filter(|e| e["target"] == "globex")
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["actor"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    ensure!(
        acts.contains(&("suspend".into(), "lab-admin".into()))
            && acts.contains(&("unsuspend".into(), "lab-admin".into())),
        "audit: {acts:?}"
    );
    eprintln!("suspension: 0/400 outside echoes passed, 400/400 console echoes passed, {suspended_drops} drops; counters {before:?} -> {after:?} across SIGKILL + adopt");

    // Suspend again, then start from nothing (pins removed): the suspension comes
    // back from the state database before the first packet.
    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/suspend",
        Some(r#"{"reason":"tier2: again"}"#),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200);
    d2.stop()?;
    let bpffs = lab.lab.bpffs()?;
    let out = std::process::Command::new(&warden)
        .args(["uninstall", "--bpffs"])
        .arg(&bpffs)
        .output()?;
    ensure!(
        out.status.success(),
        "uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d3 = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    ensure!(
        d3.log().contains("how=attached"),
        "fresh start did not attach"
    );
    ensure!(
        ping_received(
            &lab.globex,
            &["-c", "10", "-i", "0.02", "-W", "1"],
            addr::EXT_WAN1_V4
        )? == 0,
        "suspension lost across a fresh start"
    );
    ensure!(
        ping_received(
            &lab.globex,
            &["-c", "5", "-i", "0.02", "-W", "2"],
            addr::CONSOLE_V4
        )? == 5
    );
    Ok(())
}

#[test]
fn a_policy_with_errors_is_rejected_whole_and_the_old_one_keeps_enforcing() -> Result<()> {
    let lab = StandardLab::build("wt")?;
    let policy_path = lab.write_policy()?;
    let warden = warden_binary()?;
    let mut daemon = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    let _sink = lab
        .ext
        .spawn(&["socat", "TCP-LISTEN:25,fork,reuseaddr", "OPEN:/dev/null"])?;
    lab.ext.wait_tcp_listen(25, Duration::from_secs(10))?;
    ensure!(
        !connects(&lab.globex, addr::EXT_WAN1_V4, 25)?,
        "smtp should start blocked"
    );
    let generation = |lab: &StandardLab| -> Result<u64> {
        let v: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
        v["policy_generation"].as_u64().context("no generation")
    };
    ensure!(generation(&lab)? == 1);

    // Three errors, and an smtp change that must not take effect.
    let header = lab.policy_header()?;
    let bad = format!(
        "{header}defaults:\n  smtp: allow\n  colour: blue\ntenants:\n  - id: acme\n    addresses: [198.18.1.1/32, 198.18.1.300/32]\n  - id: globex\n    addresses: [198.18.1.0/24]\n  - id: initech\n    addresses: [198.18.2.130/32]\n"
    );
    let header_lines = header.lines().count();
    let r = lab.request("PUT", "/api/v1/policy", Some(&bad), Some(token::OPERATOR))?;
    ensure!(r.status == 422, "bad policy: {} {}", r.status, r.body);
    let v: Value = serde_json::from_str(&r.body)?;
    let errors: Vec<&str> = v["errors"]
        .as_array()
        .context("errors list")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    eprintln!("rejected with:\n{}", errors.join("\n"));
    ensure!(errors.len() == 3, "expected 3 errors, got {errors:?}");
    ensure!(
        errors[0].starts_with(&format!(
            "<request>:{}:3: unknown key `colour`",
            header_lines + 3
        )),
        "{}",
        errors[0]
    );
    ensure!(
        errors[1].contains(&format!(":{}:", header_lines + 6))
            && errors[1].contains("198.18.1.300"),
        "{}",
        errors[1]
    );
    ensure!(errors[2].contains("overlaps"), "{}", errors[2]);
    ensure!(generation(&lab)? == 1, "generation moved");
    ensure!(
        !connects(&lab.globex, addr::EXT_WAN1_V4, 25)?,
        "the rejected policy took effect"
    );

    // Writes need the right role.
    let r = lab.request("PUT", "/api/v1/policy", Some(&bad), None)?;
    ensure!(r.status == 401, "no token: {}", r.status);
    let r = lab.request("PUT", "/api/v1/policy", Some(&bad), Some(token::VIEWER))?;
    ensure!(r.status == 403, "viewer: {}", r.status);
    let r = lab.request(
        "POST",
        "/api/v1/tenants/globex/suspend",
        Some(r#"{"reason":"x"}"#),
        Some(token::OPERATOR),
    )?;
    ensure!(r.status == 403, "operator suspending: {}", r.status);

    // SIGHUP with a broken file: rejected, old policy stays.
    std::fs::write(&policy_path, &bad)?;
    // SAFETY: signals the daemon we started.
    ensure!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) } == 0);
    daemon.wait_log("policy reload rejected", Duration::from_secs(10))?;
    ensure!(generation(&lab)? == 1, "generation moved on a bad SIGHUP");

    // `warden policy check` lists every error; `warden policy apply` of a good one works.
    let check = std::process::Command::new(&warden)
        .args(["policy", "check"])
        .arg(&policy_path)
        .output()?;
    ensure!(
        check.status.code() == Some(1),
        "check exit {:?}",
        check.status.code()
    );
    let stderr = String::from_utf8_lossy(&check.stderr);
    ensure!(stderr.contains("3 error(s)"), "policy check:\n{stderr}");
    let good = lab.write_policy_as(
        "good.yaml",
        &lab.policy_text()?
            .replace("defaults:\n  smtp: block", "defaults:\n  smtp: allow"),
    )?;
    let good = good.to_str().context("utf-8 path")?;
    let out = lab.node.exec(&[
        warden.to_str().context("utf-8")?,
        "--token",
        token::OPERATOR,
        "policy",
        "apply",
        good,
    ])?;
    eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
    ensure!(generation(&lab)? == 2, "good policy not applied");
    ensure!(
        connects(&lab.globex, addr::EXT_WAN1_V4, 25)?,
        "the applied policy did not take effect"
    );

    // Management prefixes change hot; the listener does not.
    let text = lab
        .policy_text()?
        .replace("defaults:\n  smtp: block", "defaults:\n  smtp: allow");
    let more_mgmt = text.replace(
        "    - 198.18.3.253/32\n",
        "    - 198.18.3.253/32\n    - 198.18.3.252/32\n",
    );
    ensure!(more_mgmt != text, "the demo policy's management list moved");
    let r = lab.request(
        "PUT",
        "/api/v1/policy",
        Some(&more_mgmt),
        Some(token::OPERATOR),
    )?;
    ensure!(
        r.status == 200 && generation(&lab)? == 3,
        "management change: {} {}",
        r.status,
        r.body
    );
    let moved = more_mgmt.replace("listen: 127.0.0.1:9477", "listen: 127.0.0.1:9478");
    let r = lab.request("PUT", "/api/v1/policy", Some(&moved), Some(token::OPERATOR))?;
    ensure!(
        r.status == 400 && r.body.contains("restart"),
        "listen change: {} {}",
        r.status,
        r.body
    );
    ensure!(
        generation(&lab)? == 3,
        "a refused policy moved the generation"
    );
    // Every refusal counted: the bad PUT, the bad SIGHUP and the listener change.
    // (The 401/403 attempts never reached the policy.)
    let metrics = lab.get("/metrics")?;
    ensure!(
        metrics
            .lines()
            .any(|l| l == "warden_policy_apply_failures_total 3"),
        "apply failures not counted as 3:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("apply_failures"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    Ok(())
}

/// `warden CLI ARGS` in the node namespace: exit code, stdout, stderr.
fn warden_cli(lab: &StandardLab, args: &[&str]) -> Result<(i32, String, String)> {
    let warden = warden_binary()?;
    let mut cmd = vec![warden.to_str().context("utf-8")?];
    cmd.extend_from_slice(args);
    let out = lab.node.exec_unchecked(&cmd, Duration::from_secs(30))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The policy generation, its source and globex's egress plan, from the API.
fn policy_state(lab: &StandardLab) -> Result<(u64, Value, Option<u64>)> {
    let status: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
    let globex: Value = serde_json::from_str(&lab.get("/api/v1/tenants/globex")?)?;
    Ok((
        status["policy_generation"]
            .as_u64()
            .context("no generation")?,
        status["policy_source"].clone(),
        globex["out"]["plan_bps"].as_u64(),
    ))
}

/// Sends SIGHUP to `daemon` and waits for `needle` in its log.
fn hangup(daemon: &mut Proc, needle: &str) -> Result<()> {
    // SAFETY: signals the daemon this test started.
    ensure!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGHUP) } == 0);
    daemon.wait_log(needle, Duration::from_secs(10))
}

#[test]
fn policy_show_and_diff_then_an_api_applied_plan_kept_across_sighup_and_sigkill_until_from_file(
) -> Result<()> {
    let lab = StandardLab::build("wk")?;
    let policy_path = lab.write_policy()?;
    let file = policy_path.to_str().context("utf-8")?.to_owned();
    let warden = warden_binary()?;
    let mut d1 = lab.start_daemon(&warden, &policy_path, &[])?;
    let (generation, source, plan) = policy_state(&lab)?;
    ensure!(generation == 1 && plan == Some(30_000_000));
    ensure!(
        source["kind"] == "file" && source["path"] == file.as_str(),
        "source at start: {source}"
    );

    // `policy show` prints a policy `policy diff` finds identical; `--effective` has
    // every detector of every tenant.
    let (code, shown, err) = warden_cli(&lab, &["policy", "show"])?;
    ensure!(code == 0, "policy show (exit {code}): {err}");
    ensure!(
        shown.starts_with(&format!(
            "# policy generation 1 (file {file}), as applied\n"
        )),
        "{shown}"
    );
    let shown_path = lab.write_policy_as("shown.yaml", &shown)?;
    let shown_path = shown_path.to_str().context("utf-8")?;
    let (code, out, err) = warden_cli(&lab, &["policy", "diff", shown_path, "--exit-code"])?;
    ensure!(
        code == 0 && out.contains("no changes from the running policy (generation 1"),
        "diff of the shown policy (exit {code}): {out}{err}"
    );
    let (code, effective, _) = warden_cli(&lab, &["policy", "show", "--effective"])?;
    ensure!(code == 0 && effective.matches("suspend_on_deadline: false").count() == 9 * 4);
    let (code, json, _) = warden_cli(&lab, &["policy", "show", "--json"])?;
    let v: Value = serde_json::from_str(&json)?;
    ensure!(code == 0 && v["policy_generation"] == 1 && v["effective"] == false);

    // A plan change: `policy diff` names it (exit 0, or 1 with --exit-code), and a
    // file with an error is reported as `policy check` reports it (exit 1).
    let text = lab.policy_text()?;
    let planned = text.replace("egress: 30Mbit", "egress: 20Mbit");
    ensure!(planned != text, "the demo policy's globex plan moved");
    let plan_path = lab.write_policy_as("plan.yaml", &planned)?;
    let plan_path = plan_path.to_str().context("utf-8")?;
    let (code, out, _) = warden_cli(&lab, &["policy", "diff", plan_path])?;
    let line = "~ tenant globex: bandwidth.egress: 30Mbit -> 20Mbit";
    ensure!(
        code == 0 && out.contains("1 change(s)") && out.contains(line),
        "diff (exit {code}):\n{out}"
    );
    let (code, _, _) = warden_cli(&lab, &["policy", "diff", plan_path, "--exit-code"])?;
    ensure!(code == 1, "diff --exit-code of a change: exit {code}");
    let broken = lab.write_policy_as(
        "broken.yaml",
        &planned.replace("smtp: block", "smtp: sometimes"),
    )?;
    let (code, out, err) =
        warden_cli(&lab, &["policy", "diff", broken.to_str().context("utf-8")?])?;
    ensure!(
        code == 1 && out.is_empty() && err.contains("`sometimes`") && err.contains(": 1 error(s)"),
        "diff of an invalid file (exit {code}): {out}{err}"
    );

    // Applied over the API: in force, and kept.
    let (code, out, err) = warden_cli(
        &lab,
        &["--token", token::OPERATOR, "policy", "apply", plan_path],
    )?;
    ensure!(code == 0, "apply (exit {code}): {out}{err}");
    let (generation, source, plan) = policy_state(&lab)?;
    ensure!(
        generation == 2 && plan == Some(20_000_000),
        "{generation} {plan:?}"
    );
    ensure!(
        source["kind"] == "api" && source["by"] == "lab-operator" && source["generation"] == 2,
        "source after the apply: {source}"
    );
    let (_, status, _) = warden_cli(&lab, &["status"])?;
    ensure!(
        status.contains("policy generation 2 (api by lab-operator at ")
            && status.contains(", generation 2)"),
        "status:\n{status}"
    );

    // SIGHUP of a changed -c file: refused with one line naming the file and the apply.
    std::fs::write(
        &policy_path,
        text.replace("egress: 30Mbit", "egress: 40Mbit"),
    )?;
    hangup(&mut d1, "policy reload rejected")?;
    let refused = d1
        .log()
        .lines()
        .find(|l| l.contains("policy reload rejected"))
        .map(str::to_owned)
        .context("no refusal line")?;
    ensure!(
        refused.contains(&format!("{file} changed"))
            && refused.contains("api by lab-operator at ")
            && refused.contains("generation 2")
            && refused.contains("--from-file"),
        "refusal line: {refused}"
    );
    let (generation, _, plan) = policy_state(&lab)?;
    ensure!(
        generation == 2 && plan == Some(20_000_000),
        "after SIGHUP: {generation} {plan:?}"
    );

    // SIGKILL and restart on the changed file: the kept apply is enforced again, at its
    // generation.
    // SAFETY: kill only sends a signal to the daemon we started.
    ensure!(unsafe { libc::kill(d1.pid() as i32, libc::SIGKILL) } == 0);
    drop(d1);
    let mut d2 = lab.start_daemon(&warden, &policy_path, &["--detach-on-exit"])?;
    ensure!(
        d2.log()
            .contains("enforcing the policy applied over the API"),
        "{}",
        d2.log()
    );
    let (generation, source, plan) = policy_state(&lab)?;
    ensure!(
        generation == 2 && plan == Some(20_000_000) && source["kind"] == "api",
        "after the restart: generation {generation}, plan {plan:?}, source {source}"
    );
    let (_, tenants, _) = warden_cli(&lab, &["tenants"])?;
    eprintln!("after SIGKILL + restart:\n{tenants}");
    // An unchanged file on SIGHUP: nothing to do.
    hangup(&mut d2, "is unchanged; the policy applied over the API")?;
    ensure!(policy_state(&lab)?.0 == 2);

    // Back to the file: a viewer may not; an operator may, audited.
    let (code, _, _) = warden_cli(
        &lab,
        &["--token", token::VIEWER, "policy", "apply", "--from-file"],
    )?;
    ensure!(code == 4, "viewer --from-file: exit {code}");
    let (code, out, err) = warden_cli(
        &lab,
        &["--token", token::OPERATOR, "policy", "apply", "--from-file"],
    )?;
    ensure!(code == 0, "--from-file (exit {code}): {out}{err}");
    let (generation, source, plan) = policy_state(&lab)?;
    ensure!(
        generation == 3 && plan == Some(40_000_000) && source["kind"] == "file",
        "after --from-file: generation {generation}, plan {plan:?}, source {source}"
    );
    let audit: Value = serde_json::from_str(&lab.get("/api/v1/audit")?)?;
    let entry = audit
        .as_array()
        .context("audit list")?
        .iter()
        .find(|e| e["action"] == "policy.from_file")
        .context("no policy.from_file audit entry")?;
    ensure!(
        entry["actor"] == "lab-operator" && entry["detail"]["dropped"]["generation"] == 2,
        "audit entry {entry}"
    );
    // And SIGHUP applies the file again.
    hangup(&mut d2, "policy reloaded on SIGHUP")?;
    ensure!(policy_state(&lab)?.0 == 4);
    Ok(())
}
