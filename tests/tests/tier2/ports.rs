//! Port bindings on the standard lab: the node's wan0 (host mode, acme's own server)
//! bound to acme. Spoofed datagrams from acme's server are acme's `spoof_ip` drops, not
//! unattributed ones, and the spoof_ip detector flags acme; none reach the receiver.
//! In gateway mode, VLAN 100 on lan0 bound to globex: spoofed datagrams on that VLAN are
//! globex's, untagged ones on the same port (no interface tenant) stay unattributed.
//! In both, `GET /api/v1/status` and `warden status` (text and `--json`) show each
//! interface's attachment and the tenants bound to it.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    evidence::{dropped, wait_flag},
    lab::Netns,
    packets::{Frame, Ipv4, L4},
    rawframe,
    topology::{addr, token, warden_binary, StandardLab},
    wait::eventually,
    workloads::hping3,
};

/// Where the spoofed datagrams claim to come from: nobody's address.
const FOREIGN: &str = "198.18.10.77";
/// The receiver's UDP port.
const PORT: &str = "7777";

/// The lab's policy with wan0 bound to acme and the spoof_ip detector flagging.
fn bound_policy(lab: &StandardLab) -> Result<String> {
    let header = lab.policy_header()?;
    let unbound = "  - name: wan0\n    mode: host\n";
    ensure!(
        header.contains(unbound),
        "the lab's interfaces changed:\n{header}"
    );
    let header = header.replace(
        unbound,
        "  - name: wan0\n    mode: host\n    tenant: acme\n",
    );
    Ok(format!(
        "{header}defaults:\n  smtp: block\n  detectors:\n    spoof_ip: {{ action: flag, drops: 100, window: 60s }}\ntenants:\n  - id: acme\n    addresses: [198.18.1.1/32, 2001:db8:1::1/128]\n"
    ))
}

/// Counts UDP datagrams to [`PORT`] arriving at `ns` (before routing, so also those
/// the receiver's reverse-path filter would drop), by source: acme's and [`FOREIGN`].
fn count_arrivals(ns: &Netns) -> Result<()> {
    ns.exec(&["nft", "add", "table", "inet", "wcount"])?;
    ns.exec(&[
        "nft",
        "add chain inet wcount pre { type filter hook prerouting priority -300 ; }",
    ])?;
    for src in [FOREIGN, addr::ACME_V4] {
        ns.exec(&[
            "nft",
            &format!("add rule inet wcount pre ip saddr {src} udp dport {PORT} counter"),
        ])?;
    }
    Ok(())
}

/// Datagrams counted from `src` by [`count_arrivals`].
fn arrivals(ns: &Netns, src: &str) -> Result<u64> {
    let out = ns.exec(&["nft", "-j", "list", "chain", "inet", "wcount", "pre"])?;
    let v: Value = serde_json::from_slice(&out.stdout).context("nft JSON")?;
    let rules = v["nftables"].as_array().context("nft: no list")?;
    for rule in rules.iter().filter_map(|r| r.get("rule")) {
        let text = rule["expr"].to_string();
        if text.contains(&format!("\"{src}\"")) {
            let counter = rule["expr"]
                .as_array()
                .and_then(|e| e.iter().find_map(|x| x.get("counter")))
                .context("rule without a counter")?;
            return counter["packets"].as_u64().context("no packet count");
        }
    }
    anyhow::bail!("no counter for {src}: {v}")
}

fn unattributed_spoofed(lab: &StandardLab) -> Result<u64> {
    let text = lab.get("/metrics")?;
    let series = "warden_unattributed_packets_total{direction=\"out\",reason=\"spoofed\"} ";
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .context("series missing")?
        .parse()
        .context("bad value")
}

/// An interface as the status should show it: name, mode, bound tenant, VLAN tenants.
type Binding<'a> = (&'a str, &'a str, Option<&'a str>, &'a [(u16, &'a str)]);

/// Checks that the status document's `interfaces` are `expected`, in order, each
/// attached (`xdp attached` among its hooks on a fresh lab).
fn check_bindings(doc: &Value, expected: &[Binding], whose: &str) -> Result<()> {
    let got = doc["interfaces"]
        .as_array()
        .with_context(|| format!("{whose}: no interfaces list: {doc}"))?;
    ensure!(
        got.len() == expected.len(),
        "{whose}: {} interfaces, expected {}: {doc}",
        got.len(),
        expected.len()
    );
    for (i, (name, mode, tenant, vlans)) in got.iter().zip(expected) {
        let want_vlans: Vec<Value> = vlans
            .iter()
            .map(|(id, t)| serde_json::json!({"id": id, "tenant": t}))
            .collect();
        ensure!(
            i["name"] == *name
                && i["mode"] == *mode
                && i["tenant"] == serde_json::json!(tenant)
                && i["vlans"] == Value::Array(want_vlans),
            "{whose}: interface {i} is not {name} ({mode}) bound to {tenant:?}, VLANs {vlans:?}"
        );
        let attachment = i["attachment"].as_str().unwrap_or_default();
        ensure!(
            attachment.split(", ").any(|h| h == "xdp attached"),
            "{whose}: {name}'s attachment is {attachment:?}"
        );
    }
    Ok(())
}

/// The bindings as the status API, `warden status --json` and `warden status` show
/// them; `row` is the text table's row of the bound interface, its columns split.
fn check_status(lab: &StandardLab, expected: &[Binding], row: &[&str]) -> Result<()> {
    let api: Value = serde_json::from_str(&lab.get("/api/v1/status")?)?;
    check_bindings(&api, expected, "GET /api/v1/status")?;
    ensure!(
        api["attachments"].as_array().is_some_and(|a| !a.is_empty()),
        "the status lost its attachments: {api}"
    );
    let json: Value = serde_json::from_str(&warden_cli(lab, &["status", "--json"])?)?;
    check_bindings(&json, expected, "warden status --json")?;
    let text = warden_cli(lab, &["status"])?;
    let has_row = text.lines().any(|l| {
        let cols: Vec<&str> = l
            .split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        cols.len() == row.len() && cols.iter().zip(row).all(|(c, w)| c == w || w.is_empty())
    });
    ensure!(
        text.contains("interfaces:\nINTERFACE  ") && has_row,
        "warden status has no row {row:?}:\n{text}"
    );
    Ok(())
}

/// `warden ARGS` (viewer token) in the node namespace: its standard output; an error
/// when it exits non-zero.
fn warden_cli(lab: &StandardLab, args: &[&str]) -> Result<String> {
    let warden = warden_binary()?;
    let mut cmd = vec![warden.to_str().context("utf-8")?, "--token", token::VIEWER];
    cmd.extend_from_slice(args);
    let out = lab.node.exec_unchecked(&cmd, Duration::from_secs(30))?;
    ensure!(
        out.status.success(),
        "warden {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn spoofed_datagrams_from_a_host_port_bound_to_acme_are_acmes_spoof_ip_and_flag_acme() -> Result<()>
{
    let lab = StandardLab::build("wpb")?;
    let warden = warden_binary()?;
    let path = lab.write_policy_as("ports.yaml", &bound_policy(&lab)?)?;
    let _daemon = lab.start_daemon(&warden, &path, &[])?;
    check_status(
        &lab,
        &[
            ("wan0", "host", Some("acme"), &[]),
            ("lan0", "gateway", None, &[]),
            ("lan1", "gateway", None, &[]),
        ],
        &["wan0", "host", "", "acme", "-"],
    )?;
    count_arrivals(&lab.ext)?;

    // Control: acme's own address gets through, so the receiver's counter counts.
    let own = hping3(
        &lab.node,
        &[
            "-2",
            "-c",
            "20",
            "-i",
            "u2000",
            "-p",
            PORT,
            addr::EXT_WAN0_V4,
        ],
        20,
    )?;
    ensure!(own.transmitted == 20, "hping3 sent {}", own.transmitted);
    eventually(Duration::from_secs(5), || {
        Ok(arrivals(&lab.ext, addr::ACME_V4)? == 20)
    })
    .context("acme's own 20 datagrams did not all arrive")?;

    let spoof_before = dropped(&lab, "acme", "out", "spoof_ip")?;
    let unattributed_before = unattributed_spoofed(&lab)?;
    let sent = hping3(
        &lab.node,
        &[
            "-2",
            "-c",
            "200",
            "-i",
            "u2000",
            "-a",
            FOREIGN,
            "-p",
            PORT,
            addr::EXT_WAN0_V4,
        ],
        30,
    )?;
    ensure!(sent.transmitted == 200, "hping3 sent {}", sent.transmitted);
    eventually(Duration::from_secs(10), || {
        Ok(dropped(&lab, "acme", "out", "spoof_ip")? - spoof_before >= 200)
    })
    .context("acme's spoof_ip drops did not reach 200")?;
    let charged = dropped(&lab, "acme", "out", "spoof_ip")? - spoof_before;
    let unattributed = unattributed_spoofed(&lab)? - unattributed_before;
    let leaked = arrivals(&lab.ext, FOREIGN)?;
    eprintln!("spoofed 200: acme spoof_ip +{charged}, unattributed spoofed +{unattributed}, received {leaked}");
    ensure!(
        charged == 200,
        "acme's spoof_ip drops grew by {charged}, not 200"
    );
    ensure!(
        unattributed == 0,
        "{unattributed} spoofed datagrams counted as no tenant's"
    );
    ensure!(
        leaked == 0,
        "{leaked} spoofed datagrams reached the receiver"
    );

    let flag = wait_flag(&lab, "acme", "spoof_ip", Duration::from_secs(30))?;
    ensure!(flag.is_some(), "no spoof_ip flag for acme");
    Ok(())
}

/// globex's VLAN on lan0, and the address the crafted frames go to (the node has none
/// there: XDP drops or counts the frames before anything routes them).
const VLAN: u16 = 100;
const NODE_VLAN_V4: &str = "198.18.50.1";

#[test]
fn spoofed_datagrams_on_a_gateway_vlan_bound_to_globex_are_globexs_and_untagged_ones_are_nobodys(
) -> Result<()> {
    let lab = StandardLab::build("wpv")?;
    let warden = warden_binary()?;
    let header = lab.policy_header()?;
    let unbound = "  - name: lan0\n    mode: gateway\n";
    ensure!(
        header.contains(unbound),
        "the lab's interfaces changed:\n{header}"
    );
    let header = header.replace(
        unbound,
        "  - name: lan0\n    mode: gateway\n    vlans: [{id: 100, tenant: globex}]\n",
    );
    let text = format!(
        "{header}defaults:\n  smtp: block\ntenants:\n  - id: globex\n    addresses: [198.18.2.10/32, 2001:db8:2:1::10/128]\n"
    );
    let path = lab.write_policy_as("vlans.yaml", &text)?;
    let _daemon = lab.start_daemon(&warden, &path, &[])?;
    check_status(
        &lab,
        &[
            ("wan0", "host", None, &[]),
            ("lan0", "gateway", None, &[(VLAN, "globex")]),
            ("lan1", "gateway", None, &[]),
        ],
        &["lan0", "gateway", "", "-", "100=globex"],
    )?;

    // Crafted frames from globex's port (this kernel has no VLAN devices): UDP from
    // nobody's address, tagged with globex's VLAN or not.
    let (g, node_mac) = (&lab.globex, lab.node.mac("lan0")?);
    let globex_mac = g.mac("eth0")?;
    let frames = |n: usize, tagged: bool| -> Result<Vec<Vec<u8>>> {
        let (src, dst): (Ipv4Addr, Ipv4Addr) = (FOREIGN.parse()?, NODE_VLAN_V4.parse()?);
        let f = Frame::new(Ipv4::new(src, dst).l4(L4::udp(40000, 7777))).macs(globex_mac, node_mac);
        let f = if tagged { f.vlan(VLAN) } else { f };
        Ok(vec![f.build(); n])
    };

    let spoof_before = dropped(&lab, "globex", "out", "spoof_ip")?;
    let unattributed_before = unattributed_spoofed(&lab)?;
    let sent = rawframe::send(g, "eth0", frames(200, true)?, Duration::from_micros(500))?;
    ensure!(sent == 200, "sent {sent} tagged frames");
    eventually(Duration::from_secs(10), || {
        Ok(dropped(&lab, "globex", "out", "spoof_ip")? - spoof_before >= 200)
    })
    .context("globex's spoof_ip drops did not reach 200")?;
    let charged = dropped(&lab, "globex", "out", "spoof_ip")? - spoof_before;
    ensure!(
        charged == 200,
        "globex's spoof_ip drops grew by {charged}, not 200"
    );
    let unattributed = unattributed_spoofed(&lab)? - unattributed_before;
    ensure!(
        unattributed == 0,
        "{unattributed} tagged frames counted as no tenant's"
    );

    // Untagged on the same port: no binding covers it, so as without bindings.
    let sent = rawframe::send(g, "eth0", frames(50, false)?, Duration::from_micros(500))?;
    ensure!(sent == 50, "sent {sent} untagged frames");
    eventually(Duration::from_secs(10), || {
        Ok(unattributed_spoofed(&lab)? - unattributed_before >= 50)
    })
    .context("the untagged spoofed frames were not counted unattributed")?;
    let charged_after = dropped(&lab, "globex", "out", "spoof_ip")? - spoof_before;
    let unattributed = unattributed_spoofed(&lab)? - unattributed_before;
    eprintln!(
        "VLAN 100: globex spoof_ip +{charged_after}; untagged: unattributed spoofed +{unattributed}"
    );
    ensure!(
        charged_after == 200,
        "untagged frames were charged to globex"
    );
    ensure!(
        unattributed == 50,
        "unattributed spoofed grew by {unattributed}, not 50"
    );
    Ok(())
}
