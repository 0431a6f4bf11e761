//! Low-rate L2 spoofing is reported, not only dropped: arpspoof claiming the gateway at
//! its usual pace (one forged reply every 2 s) is flagged `spoof_arp` within its first
//! few replies, and a handful of frames from a foreign source MAC is flagged `spoof_mac`,
//! each flag naming what the frames claimed (address and MAC). globex's MAC is bound, so
//! its frames are its own whatever they claim. Honest ARP and traffic first raise nothing.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use serde_json::Value;
use warden_tests::{
    evidence::{dropped, flag, flags, wait_flag},
    lab::format_mac,
    topology::addr,
    wait::eventually_every,
    workloads::require,
};

use crate::common::honest_arp_answered;
use crate::{common::ping_received, detection::DetectionLab};

/// How long the flag may take: the first three forged replies at one every 2 s, the
/// once-a-second drop sampling and the flag write.
const L2_FLAG_TIMEOUT: Duration = Duration::from_secs(15);

/// The flag's top targets as (addr, mac) pairs.
fn claims(f: &Value) -> Vec<(String, String)> {
    f["top_targets"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|t| {
                    (
                        t["addr"].as_str().unwrap_or_default().to_string(),
                        t["mac"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until flag `id`'s evidence names `addr` claimed from `mac`.
fn expect_claim(
    lab: &DetectionLab,
    id: i64,
    addr: &str,
    mac: &str,
) -> Result<Vec<(String, String)>> {
    let want = (addr.to_string(), mac.to_string());
    eventually_every(Duration::from_secs(30), Duration::from_secs(1), || {
        let f = flag(&lab.lab, id)?;
        let got = claims(&f);
        ensure!(
            got.contains(&want),
            "flag {id} names {got:?}, not {want:?}: {f}"
        );
        Ok(Some(got))
    })
}

/// Honest ARP and pings from globex: answered, nothing dropped, nothing flagged.
fn honest_traffic_first(lab: &DetectionLab) -> Result<()> {
    let g = &lab.globex;
    honest_arp_answered(g)?;
    ensure!(ping_received(g, &["-c", "5", "-i", "0.1", "-W", "2"], addr::EXT_WAN1_V4)? == 5);
    ensure!(
        flags(&lab.lab, "")?.is_empty(),
        "honest traffic was flagged\n{}",
        lab.report()
    );
    Ok(())
}

#[test]
fn arpspoof_claiming_the_gateway_every_2_s_is_flagged_spoof_arp_naming_the_claim() -> Result<()> {
    require("arpspoof")?;
    let lab = DetectionLab::start("    macs: [GLOBEX_MAC]\n", "")?;
    honest_traffic_first(&lab)?;
    let mac = format_mac(lab.globex.mac("eth0")?);
    // arpspoof's own pace: a forged reply claiming the gateway every 2 s, to everyone.
    let start = Instant::now();
    let spoof = lab
        .globex
        .spawn(&["arpspoof", "-i", "eth0", addr::NODE_LAN0_V4])?;
    let found = wait_flag(&lab.lab, "globex", "spoof_arp", L2_FLAG_TIMEOUT)?;
    let drops = dropped(&lab, "globex", "out", "spoof_arp")?;
    let Some((f, took)) = found else {
        bail!(
            "arpspoof not flagged within {L2_FLAG_TIMEOUT:?} ({drops} spoof_arp drops)\narpspoof log:\n{}\n{}",
            spoof.log(),
            lab.report()
        );
    };
    let id = f["id"].as_i64().context("flag id")?;
    let named = expect_claim(&lab, id, addr::NODE_LAN0_V4, &mac)?;
    drop(spoof);
    println!(
        "arpspoof: flagged {took:.1?} after it started ({:.1?} until the claim was named), {drops} spoof_arp drops when flagged; figures {}; claims {named:?}",
        start.elapsed(),
        f["figures"]
    );
    ensure!(
        drops <= 5,
        "flagged only after {drops} forged replies were dropped"
    );
    Ok(())
}

#[test]
fn a_foreign_source_mac_sending_a_few_frames_is_flagged_spoof_mac_naming_the_mac() -> Result<()> {
    let lab = DetectionLab::start("    macs: [GLOBEX_MAC]\n", "")?;
    honest_traffic_first(&lab)?;
    let g = &lab.globex;
    let (real, gateway) = (g.mac("eth0")?, lab.node.mac("lan0")?);
    let foreign = [0x02, 0x66, 0x66, 0x66, 0x66, 0x01];
    // Changing a MAC flushes even permanent neighbour entries: pin the gateway again so
    // the pings leave as they are, with no ARP in between.
    let set_mac = |mac: [u8; 6]| -> Result<()> {
        g.set_mac("eth0", mac)?;
        g.neigh_permanent("eth0", addr::NODE_LAN0_V4, gateway)?;
        g.neigh_permanent("eth0", addr::NODE_LAN0_V6, gateway)
    };
    set_mac(foreign)?;
    // Five frames, one every 0.5 s, from globex's address and a MAC it does not own.
    let got = ping_received(g, &["-c", "5", "-i", "0.5", "-W", "1"], addr::EXT_WAN1_V4);
    set_mac(real)?;
    ensure!(got? == 0, "echoes from a foreign MAC got through");
    let drops = dropped(&lab, "globex", "out", "spoof_mac")?;
    ensure!(drops == 5, "spoof_mac drops {drops}, expected 5");
    let Some((f, took)) = wait_flag(&lab.lab, "globex", "spoof_mac", L2_FLAG_TIMEOUT)? else {
        bail!("5 frames from a foreign MAC not flagged\n{}", lab.report());
    };
    let id = f["id"].as_i64().context("flag id")?;
    let named = expect_claim(&lab, id, addr::GLOBEX_V4, &format_mac(foreign))?;
    println!(
        "foreign MAC: 5 frames dropped, flagged {took:.1?} after the last; figures {}; claims {named:?}",
        f["figures"]
    );
    Ok(())
}
