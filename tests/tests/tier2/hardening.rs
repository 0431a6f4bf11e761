//! Hardening: frames a tenant crafts to get around its suspension or its binding, sent
//! through a bridging gateway (the node bridges the tenants' ports and the outside host
//! on one segment, Warden in gateway mode on the tenants' ports), counted where they
//! would arrive. Each attack is shown to work in the same lab once Warden is gone, so
//! a zero means Warden stopped it, not that the lab lost it.

use std::{collections::BTreeSet, net::Ipv6Addr, time::Duration};

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    evidence::Metrics,
    lab::{format_mac, Netns},
    packets::Mac,
    rawframe::{self, marked},
    topology::{token, warden_binary, StandardLab},
    wait::eventually,
};

/// The bridged segment.
const SUSPECT_V4: [u8; 4] = [198, 18, 40, 10];
const VICTIM_V4: [u8; 4] = [198, 18, 40, 20];
const MALLORY_V4: [u8; 4] = [198, 18, 40, 30];
const OUT_V4: [u8; 4] = [198, 18, 40, 254];
const MGMT_V4: [u8; 4] = [198, 18, 40, 253];
const FOREIGN_V4: [u8; 4] = [198, 18, 40, 99];
const SUSPECT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, 0x10);
const OUT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, 0xfe);
const MGMT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x40, 0, 0, 0, 0, 0xfd);
const SUSPECT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x10);
const OUT_LL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe);

/// Frames per attack.
const N: u32 = 200;

/// The lab: the standard one (for its daemon plumbing) plus a bridged segment in the
/// node: `br0` over `bs0` (suspect), `bs1` (mallory), `bs2` (victim) and `bso` (the
/// outside host, which also holds the management addresses).
struct BridgeLab {
    suspect: Netns,
    mallory: Netns,
    victim: Netns,
    out: Netns,
    std: StandardLab,
}

fn v4s(a: [u8; 4]) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

impl BridgeLab {
    fn build() -> Result<BridgeLab> {
        let std = StandardLab::build("wh")?;
        let suspect = std.lab.netns("suspect")?;
        let mallory = std.lab.netns("mallory")?;
        let victim = std.lab.netns("victim")?;
        let out = std.lab.netns("out")?;
        let node = &std.node;
        node.ip(&["link", "add", "br0", "type", "bridge"])?;
        for (port, ns, v4, v6) in [
            ("bs0", &suspect, SUSPECT_V4, SUSPECT_V6.to_string()),
            ("bs1", &mallory, MALLORY_V4, "2001:db8:40::30".to_string()),
            ("bs2", &victim, VICTIM_V4, "2001:db8:40::20".to_string()),
            ("bso", &out, OUT_V4, OUT_V6.to_string()),
        ] {
            std.lab.link(node, port, ns, "eth0")?;
            node.ip(&["link", "set", port, "master", "br0"])?;
            node.quiet_ipv6(port)?;
            node.up(port)?;
            ns.quiet_ipv6("eth0")?;
            ns.addr("eth0", &format!("{}/24", v4s(v4)))?;
            ns.addr("eth0", &format!("{v6}/64"))?;
            ns.up("eth0")?;
        }
        out.addr("eth0", &format!("{}/24", v4s(MGMT_V4)))?;
        out.addr("eth0", &format!("{MGMT_V6}/64"))?;
        node.quiet_ipv6("br0")?;
        node.up("br0")?;
        std.lab.settle()?;
        Ok(BridgeLab {
            suspect,
            mallory,
            victim,
            out,
            std,
        })
    }

    fn policy(&self) -> Result<String> {
        let header = self.std.policy_header()?.replace(
            "  management:\n",
            &format!(
                "  management:\n    - {}/32\n    - {MGMT_V6}/128\n",
                v4s(MGMT_V4)
            ),
        );
        ensure!(
            header.contains("198.18.40.253/32"),
            "no management list in the header"
        );
        let victim_mac = format_mac(self.victim.mac("eth0")?);
        let mut policy = header;
        for port in ["bs0", "bs1", "bs2"] {
            policy += &format!("  - name: {port}\n    mode: gateway\n");
        }
        policy += "defaults:\n  smtp: block\ntenants:\n";
        policy += "  - id: suspect\n    addresses: [198.18.40.10/32, 2001:db8:40::10/128]\n";
        policy += "  - id: mallory\n    addresses: [198.18.40.30/32, 2001:db8:40::30/128]\n";
        policy += &format!(
            "  - id: victim\n    addresses: [198.18.40.20/32, 2001:db8:40::20/128]\n    macs: [{victim_mac}]\n"
        );
        Ok(policy)
    }
}

fn eth(dst: Mac, src: Mac, tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend(src);
    for (i, tpid) in tags.iter().enumerate() {
        f.extend(tpid.to_be_bytes());
        f.extend((10 + i as u16 * 10).to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f
}

/// IPv4/UDP to port 9 with `payload`, lengths right.
fn udp4(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend(src);
    p.extend(dst);
    p.extend([0x9c, 0x40, 0, 9]);
    p.extend((8 + payload.len() as u16).to_be_bytes());
    p.extend([0, 0]);
    p.extend(payload);
    p
}

/// IPv6 with `next` and `hop_limit` around `payload`, payload length right.
fn ip6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend((payload.len() as u16).to_be_bytes());
    p.extend([next, hop_limit]);
    p.extend(src.octets());
    p.extend(dst.octets());
    p.extend(payload);
    p
}

/// An NS for `target` with a source link-layer option of `mac`, then `extra` bytes.
fn ns_shaped(target: Ipv6Addr, mac: Mac, extra: &[u8]) -> Vec<u8> {
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend(target.octets());
    m.extend([1, 1]);
    m.extend(mac);
    m.extend(extra);
    m
}

/// A TCP SYN from port 40000 to `port` carrying `payload` (as data after the header).
fn tcp_syn(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0x9c, 0x40];
    t.extend(port.to_be_bytes());
    t.extend([0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend(payload);
    t
}

/// An ARP reply of hardware type `htype`: `spa` is at `sha`, to `tha`/`tpa`.
fn arp_reply(htype: u16, sha: Mac, spa: [u8; 4], tha: Mac, tpa: [u8; 4]) -> Vec<u8> {
    let mut a = htype.to_be_bytes().to_vec();
    a.extend([0x08, 0x00, 6, 4, 0, 2]);
    a.extend(sha);
    a.extend(spa);
    a.extend(tha);
    a.extend(tpa);
    a
}

/// The crafted attacks from the suspended tenant: (name, frames). Sequence numbers are
/// `base + i` with a base per attack.
fn attacks(suspect: Mac, out: Mac) -> Vec<(&'static str, u32, Vec<Vec<u8>>)> {
    let qinq = [0x88a8, 0x8100];
    let build =
        |base: u32, f: &dyn Fn(u32) -> Vec<u8>| (0..N).map(|i| f(base + i)).collect::<Vec<_>>();
    vec![
        (
            "QinQ IPv4 UDP from its own address",
            1_000,
            build(1_000, &|s| {
                let mut f = eth(out, suspect, &qinq, 0x0800);
                f.extend(udp4(SUSPECT_V4, OUT_V4, &marked(s)));
                f
            }),
        ),
        (
            "QinQ IPv4 UDP from a foreign address",
            2_000,
            build(2_000, &|s| {
                let mut f = eth(out, suspect, &qinq, 0x0800);
                f.extend(udp4(FOREIGN_V4, OUT_V4, &marked(s)));
                f
            }),
        ),
        (
            "QinQ IPv6 with a bad payload length",
            3_000,
            build(3_000, &|s| {
                let mut f = eth(out, suspect, &qinq, 0x86dd);
                let mut p = ip6(
                    SUSPECT_V6,
                    OUT_V6,
                    17,
                    64,
                    &[&[0x9c, 0x40, 0, 9, 0, 20, 0, 0][..], &marked(s)].concat(),
                );
                p[4..6].copy_from_slice(&1000u16.to_be_bytes());
                f.extend(p);
                f
            }),
        ),
        (
            "three VLAN tags",
            4_000,
            build(4_000, &|s| {
                let mut f = eth(out, suspect, &[0x88a8, 0x8100, 0x8100], 0x0800);
                f.extend(udp4(SUSPECT_V4, OUT_V4, &marked(s)));
                f
            }),
        ),
        (
            "NS-shaped ICMPv6, 1,000 bytes, hop limit 255, to an outside global address",
            5_000,
            build(5_000, &|s| {
                let mut extra = marked(s).to_vec();
                extra.resize(1000, 0x5a);
                let mut f = eth(out, suspect, &[], 0x86dd);
                f.extend(ip6(
                    SUSPECT_V6,
                    OUT_V6,
                    58,
                    255,
                    &ns_shaped(OUT_V6, suspect, &extra),
                ));
                f
            }),
        ),
        (
            "NS-shaped ICMPv6 with data, to a link-local address",
            6_000,
            build(6_000, &|s| {
                let mut extra = marked(s).to_vec();
                extra.resize(400, 0x5a);
                let mut f = eth(out, suspect, &[], 0x86dd);
                f.extend(ip6(
                    SUSPECT_V6,
                    OUT_LL,
                    58,
                    255,
                    &ns_shaped(OUT_LL, suspect, &extra),
                ));
                f
            }),
        ),
        (
            "link-local UDP to the outside host's link-local address",
            7_000,
            build(7_000, &|s| {
                let mut f = eth(out, suspect, &[], 0x86dd);
                let udp = [&[0x9c, 0x40, 0, 9, 0, 20, 0, 0][..], &marked(s)].concat();
                f.extend(ip6(SUSPECT_LL, OUT_LL, 17, 64, &udp));
                f
            }),
        ),
        (
            "link-local TCP SYN to the outside host's link-local address",
            8_000,
            build(8_000, &|s| {
                let mut f = eth(out, suspect, &[], 0x86dd);
                f.extend(ip6(SUSPECT_LL, OUT_LL, 6, 64, &tcp_syn(22, &marked(s))));
                f
            }),
        ),
        // Unicast: a bridge keeps LLDP's own group address to itself.
        (
            "LLDP-typed frame",
            9_000,
            build(9_000, &|s| {
                let mut f = eth(out, suspect, &[], 0x88cc);
                f.extend(marked(s));
                f.resize(60, 0);
                f
            }),
        ),
    ]
}

/// The management controls: what a suspended tenant keeps.
fn to_management(suspect: Mac, out: Mac) -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let s = 20_000 + i;
            if i % 2 == 0 {
                let mut f = eth(out, suspect, &[0x88a8, 0x8100], 0x0800);
                f.extend(udp4(SUSPECT_V4, MGMT_V4, &marked(s)));
                f
            } else {
                let mut f = eth(out, suspect, &[], 0x86dd);
                let udp = [&[0x9c, 0x40, 0, 9, 0, 20, 0, 0][..], &marked(s)].concat();
                f.extend(ip6(SUSPECT_V6, MGMT_V6, 17, 64, &udp));
                f
            }
        })
        .collect()
}

/// Sends every attack and the management controls from the suspect and returns what
/// arrived at the outside host, per attack name.
fn run_attacks(lab: &BridgeLab) -> Result<(Vec<(String, usize)>, usize)> {
    let (suspect, out) = (lab.suspect.mac("eth0")?, lab.out.mac("eth0")?);
    let counter = rawframe::Counter::start(&lab.out, "eth0", Duration::from_secs(60))?;
    let attacks = attacks(suspect, out);
    for (_, _, frames) in &attacks {
        rawframe::send(
            &lab.suspect,
            "eth0",
            frames.clone(),
            Duration::from_micros(200),
        )?;
    }
    rawframe::send(
        &lab.suspect,
        "eth0",
        to_management(suspect, out),
        Duration::from_micros(200),
    )?;
    let seen: BTreeSet<u32> = counter.finish(Duration::from_millis(500))?;
    let arrived = attacks
        .iter()
        .map(|(name, base, _)| {
            let n = seen.range(*base..*base + N).count();
            (name.to_string(), n)
        })
        .collect();
    let management = seen.range(20_000..20_000 + N).count();
    Ok((arrived, management))
}

/// The outside host's neighbour entry for `ip`: its MAC, if any.
fn neighbour_mac(ns: &Netns, ip: [u8; 4]) -> Result<Option<String>> {
    let v: Value =
        serde_json::from_str(&ns.ip(&["-j", "neigh", "show", "dev", "eth0", &v4s(ip)])?)?;
    Ok(v[0]["lladdr"].as_str().map(str::to_string))
}

/// Sends mallory's ARP reply of hardware type 6 claiming the victim's address to the
/// outside host (5 copies), once the outside host's entry for the victim is fresh and
/// past the kernel's lock time: then the claim would move it to mallory's MAC.
fn send_arp_type6_claim(lab: &BridgeLab) -> Result<()> {
    let (mallory, out) = (lab.mallory.mac("eth0")?, lab.out.mac("eth0")?);
    // The victim knows the outside host's MAC for good: its ARP requests (probes of its
    // own entry) would refresh the outside host's entry for it at any moment, and a claim
    // within the lock time after that is ignored.
    lab.victim.neigh_permanent("eth0", &v4s(OUT_V4), out)?;
    // A fresh, reachable entry for the victim, then past the kernel's 1 s lock time.
    lab.out.ip(&["neigh", "flush", "dev", "eth0"])?;
    let ping = lab.out.exec_unchecked(
        &[
            "ping",
            "-n",
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            &v4s(VICTIM_V4),
        ],
        Duration::from_secs(10),
    )?;
    ensure!(
        ping.status.success(),
        "the outside host cannot reach the victim"
    );
    // Not synchronisation: the kernel ignores a claim within `locktime` (1 s) of the
    // entry's last update, so this time must pass.
    std::thread::sleep(Duration::from_millis(1_500));
    let mut f = eth(out, mallory, &[], 0x0806);
    f.extend(arp_reply(6, mallory, VICTIM_V4, out, OUT_V4));
    rawframe::send(&lab.mallory, "eth0", vec![f; 5], Duration::from_millis(20))?;
    Ok(())
}

/// Frames of no tenant Warden could not look into (`unparsed`), from tenants' ports.
fn unparsed_drops(lab: &BridgeLab) -> Result<f64> {
    Ok(Metrics::fetch(&lab.std)?.sum(
        "warden_unattributed_packets_total",
        &[("direction", "out"), ("reason", "unparsed")],
    ))
}

#[test]
fn crafted_frames_from_a_suspended_tenant_leave_nothing_but_management_through_a_bridging_gateway(
) -> Result<()> {
    let lab = BridgeLab::build()?;
    let path = lab.std.write_policy_as("hardening.yaml", &lab.policy()?)?;
    let warden = warden_binary()?;
    let daemon = lab
        .std
        .start_daemon(&warden, &path, &["--detach-on-exit"])?;
    // The segment works before the suspension.
    let ping = lab.suspect.exec_unchecked(
        &["ping", "-n", "-c", "2", "-W", "2", &v4s(OUT_V4)],
        Duration::from_secs(10),
    )?;
    ensure!(
        ping.status.success(),
        "suspect cannot reach the outside host before its suspension"
    );
    let r = lab.std.request(
        "POST",
        "/api/v1/tenants/suspect/suspend",
        Some(r#"{"reason":"tier2 hardening"}"#),
        Some(token::ADMIN),
    )?;
    ensure!(r.status == 200, "suspend: {} {}", r.status, r.body);

    // What a suspended tenant keeps: ARP, ND and management, both families.
    for mgmt in [v4s(MGMT_V4), MGMT_V6.to_string()] {
        lab.suspect.ip(&["neigh", "flush", "dev", "eth0"])?;
        let ping = lab.suspect.exec_unchecked(
            &["ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", &mgmt],
            Duration::from_secs(15),
        )?;
        ensure!(
            ping.status.success(),
            "the suspended tenant cannot reach management {mgmt} (neighbour resolution must still work): {}",
            String::from_utf8_lossy(&ping.stdout)
        );
    }
    let blocked = lab.suspect.exec_unchecked(
        &["ping", "-n", "-c", "2", "-W", "1", &v4s(OUT_V4)],
        Duration::from_secs(10),
    )?;
    ensure!(
        !blocked.status.success(),
        "the suspended tenant still reaches the outside host"
    );

    let (arrived, management) = run_attacks(&lab)?;
    for (name, n) in &arrived {
        eprintln!("with Warden: {name}: {n} of {N} arrived");
    }
    eprintln!("with Warden: to management: {management} of {N} arrived");
    ensure!(
        management == N as usize,
        "only {management} of {N} frames to management arrived"
    );
    let leaked: Vec<_> = arrived.iter().filter(|(_, n)| *n > 0).collect();
    ensure!(leaked.is_empty(), "frames got through: {leaked:?}");

    // ARP with hardware type 6 from another tenant claiming the victim's bound address.
    let victim_mac = format_mac(lab.victim.mac("eth0")?);
    let before = unparsed_drops(&lab)?;
    send_arp_type6_claim(&lab)?;
    // Once Warden has counted the claims as dropped, they cannot arrive any more.
    eventually(Duration::from_secs(10), || {
        let n = unparsed_drops(&lab)? - before;
        ensure!(n >= 5.0, "{n} of the 5 claims counted as unparsed drops");
        Ok(true)
    })?;
    let after = neighbour_mac(&lab.out, VICTIM_V4)?;
    eprintln!("with Warden: the victim's entry after the type-6 claim: {after:?}");
    ensure!(
        after.as_deref() == Some(victim_mac.as_str()),
        "the outside host's entry for the victim is {after:?}, not {victim_mac}"
    );
    let v: Value = serde_json::from_str(&lab.std.get("/api/v1/tenants/suspect")?)?;
    ensure!(v["state"] == "suspended", "suspect is {}", v["state"]);

    // Without Warden the same frames get through: the lab delivers what it is given.
    daemon.stop().context("stopping the daemon")?;
    let (arrived, _) = run_attacks(&lab)?;
    for (name, n) in &arrived {
        eprintln!("without Warden: {name}: {n} of {N} arrived");
        ensure!(
            *n == N as usize,
            "without Warden only {n} of {N} of {name} arrived: the lab, not Warden, stops them"
        );
    }
    let mallory_mac = format_mac(lab.mallory.mac("eth0")?);
    send_arp_type6_claim(&lab)?;
    eventually(Duration::from_secs(5), || {
        let after = neighbour_mac(&lab.out, VICTIM_V4)?;
        ensure!(
            after.as_deref() == Some(mallory_mac.as_str()),
            "the entry is {after:?}"
        );
        Ok(true)
    })
    .context("without Warden the type-6 claim did not move the entry: the test proves nothing")?;
    eprintln!("without Warden: the type-6 claim moved the victim's entry to mallory's MAC");
    Ok(())
}
